/**
 * `/files`: sharing files in a room over HTTP, beside the socket. A file
 * is uploaded with `POST /files?room=ROOM` (the raw bytes as the body,
 * authorized by the uploader's live connection: `Authorization: Bearer
 * SESSION`), then shared by a `file` command on the socket, which stores a
 * `file` line like any chat line; `GET /files/ID` serves the bytes. The
 * bytes never go through the hub: a large frame would stall every
 * client's outbox behind it.
 *
 * Serving is made safe for what users upload: `nosniff`, a
 * `Content-Security-Policy: sandbox` (an HTML or SVG file never runs
 * script on this origin), inline only for images whose bytes are PNG,
 * JPEG, GIF or WebP, and an attachment with the original name otherwise.
 * A direct message's file is served only to its two parties, who prove it
 * with their own session (`Authorization: Bearer`); other files are
 * served to anyone holding their link (an unguessable 128-bit id).
 *
 * A refused upload is answered as soon as its declared or streamed size
 * passes the limit, and its connection closed without reading the rest
 * (see {@linkcode closingResponse}).
 *
 * @module
 */

import { checkOrigin, type OriginOptions } from "../admission.ts";
import { type FileSharing, TokenBucket } from "../connection.ts";
import type { RoomEngine } from "../engine.ts";
import type { Logger } from "../log.ts";
import { type FileInfo, validateRoomName } from "../protocol.ts";
import {
  cleanFileName,
  fileInfo,
  type FileRecord,
  FileStore,
  type LineKept,
  mediaType,
  type Received,
  StorageFull,
} from "../store/files.ts";
import {
  EngineSessions,
  type LocalLookup,
  LocalSessions,
  type SessionDirectory,
  SessionsUnavailable,
} from "./sessions.ts";

/**
 * Bytes a user may upload per minute when no rate is given: five largest
 * files a minute, a burst of photos, and not a disk filled by one script.
 */
export const DEFAULT_UPLOAD_RATE = 50 * 1024 * 1024;

/**
 * How often uploads whose line left history (or that nobody shared) are
 * looked for, besides after each shared line.
 */
export const SWEEP_MS = 30_000;

/** Bytes read from disk at a time when serving. */
const SERVE_CHUNK_BYTES = 64 * 1024;

/** What `GET /files/ID` answers with besides the bytes, whatever the file. */
const SAFE_HEADERS: Record<string, string> = {
  "x-content-type-options": "nosniff",
  "content-security-policy": "sandbox",
  "cross-origin-resource-policy": "same-origin",
  "cache-control": "private, max-age=31536000, immutable",
  "accept-ranges": "bytes",
};

/** Options of {@linkcode Files.open}. */
export interface FilesOptions {
  /** The directory files live in (shared by every node with `--redis`). */
  dir: string;
  /** Remove `dir` at shutdown (a temporary one). */
  removeOnShutdown?: boolean;
  /** Largest upload, in bytes. */
  maxFileSize: number;
  /** Bytes all files may take together; the oldest go first past it. */
  maxBytes: number;
  /** Bytes a user may upload per minute; 0 for no limit. */
  uploadRate: number;
  /** Which origins may upload (the socket's rule). */
  origins: OriginOptions;
  /** This process's connections, by session secret. */
  localSession: LocalLookup;
  /** Where the rooms are; when shared, other nodes' sessions are asked too. */
  engine: RoomEngine;
  /** Whether a room's history still holds a line. */
  lineKept: LineKept;
  /** True once the server is stopping: uploads are then refused. */
  isShuttingDown: () => boolean;
  /** Where failures are logged. */
  logger: Logger;
}

/** An HTTP refusal: status, `error` code, and what to do about it. */
export interface Refusal {
  /** The HTTP status. */
  status: number;
  /** The JSON body's `error` code. */
  error: string;
  /** The JSON body's `message`: what was wrong and what was expected. */
  message: string;
  /** Headers to add (`Retry-After`, `Allow`, `WWW-Authenticate`). */
  headers?: Record<string, string>;
}

/**
 * The files of a server: the store, the routes, who may upload and read,
 * and the sweep that deletes files whose line left history. It is also
 * what `file` commands share uploads through ({@linkcode FileSharing}).
 *
 * @example
 * ```ts
 * import { Files } from "./http.ts";
 * import { LocalEngine } from "../engine.ts";
 * import { silentLogger } from "../log.ts";
 * const files = await Files.open({
 *   engine: new LocalEngine({ history: null }),
 *   dir: await Deno.makeTempDir(),
 *   removeOnShutdown: true,
 *   maxFileSize: 1024,
 *   maxBytes: 1024 * 1024,
 *   uploadRate: 0,
 *   origins: { allowedOrigins: [], requireOrigin: false },
 *   localSession: () => undefined,
 *   lineKept: () => undefined,
 *   isShuttingDown: () => false,
 *   logger: silentLogger,
 * });
 * const response = await files.route(new Request("http://127.0.0.1/files"));
 * console.log(response.status); // 200: the limits
 * await files.shutdown();
 * ```
 */
export class Files implements FileSharing {
  /** Where the bytes and records are. */
  readonly store: FileStore;
  #options: FilesOptions;
  #sessions: SessionDirectory;
  /** Upload budgets by user name. */
  #buckets = new Map<string, TokenBucket>();
  #timer: ReturnType<typeof setInterval>;
  #sweeping: Promise<unknown> = Promise.resolve();
  /**
   * Records of shares still being written: a line's storing settles them
   * after the request that posted it, so shutdown waits for them.
   */
  #recording = new Set<Promise<unknown>>();
  /** Set by shutdown: no sweep starts after it. */
  #closed = false;

  private constructor(
    store: FileStore,
    sessions: SessionDirectory,
    options: FilesOptions,
  ) {
    this.store = store;
    this.#sessions = sessions;
    this.#options = options;
    this.#timer = setInterval(() => this.sweep(), SWEEP_MS);
  }

  /**
   * Opens the store in `dir` (made if needed). Throws
   * {@linkcode FilesDirError} when the directory cannot be used.
   */
  static async open(options: FilesOptions): Promise<Files> {
    let store: FileStore;
    try {
      store = await FileStore.open(options.dir, { maxBytes: options.maxBytes });
    } catch (error) {
      if (error instanceof Deno.errors.NotCapable) throw error;
      throw new FilesDirError(options.dir, error);
    }
    const local = new LocalSessions(options.localSession);
    const sessions = options.engine.shared
      ? new EngineSessions(options.engine, local)
      : local;
    return new Files(store, sessions, options);
  }

  /** Answers a request for `/files` or `/files/ID`. */
  route(request: Request): Promise<Response> {
    return this.#route(request).then((response) => {
      for (const [name, value] of Object.entries(this.#cors(request))) {
        response.headers.set(name, value);
      }
      return response;
    });
  }

  async #route(request: Request): Promise<Response> {
    const { pathname, searchParams } = new URL(request.url);
    const method = request.method;
    if (method === "OPTIONS") return this.#preflight(request);
    if (pathname === "/files") {
      if (method === "POST") return await this.#upload(request, searchParams);
      if (method === "GET" || method === "HEAD") {
        return Response.json({
          maxFileSize: this.#options.maxFileSize,
          uploadRate: this.#options.uploadRate,
        });
      }
      return refuse(request, methodNotAllowed("GET, HEAD, POST"));
    }
    const id = pathname.slice("/files/".length);
    if (method !== "GET" && method !== "HEAD") {
      return refuse(request, methodNotAllowed("GET, HEAD"));
    }
    return await this.#download(request, id);
  }

  // ------------------------------------------------------------- upload

  async #upload(request: Request, query: URLSearchParams): Promise<Response> {
    const checked = await this.#admitUpload(request, query);
    if ("status" in checked) return refuse(request, checked);
    const { room, username, name, declaredType, bucket, reserved } = checked;
    let used = 0;
    let received;
    try {
      received = await this.store.receive(request.body, {
        maxBytes: this.#options.maxFileSize,
        budget: reserved,
      });
      if (received.ok) used = received.size;
    } finally {
      bucket?.giveBack(reserved - used);
    }
    if (!received.ok) return this.#refuseReceived(received);
    if (received.size === 0) {
      await this.store.discard(received);
      return json(400, {
        error: "empty_file",
        message: "the file is empty; expected its bytes as the body",
      });
    }
    return await this.#store(received, { name, declaredType, room, username });
  }

  /** Stores a received upload and answers 201 with what it is. */
  async #store(
    received: Received & { ok: true },
    meta: {
      name: string;
      declaredType: string;
      room: string;
      username: string;
    },
  ): Promise<Response> {
    let record: FileRecord;
    try {
      record = await this.store.commit(received, {
        name: meta.name,
        declaredType: meta.declaredType,
        room: meta.room,
        uploader: meta.username,
      });
    } catch (error) {
      if (error instanceof StorageFull) {
        return json(507, { error: "storage_full", message: error.message });
      }
      this.#options.logger.log("error", "file_store_failed", {
        cause: (error as Error)?.message ?? String(error),
      });
      return json(500, {
        error: "storage_failed",
        message: "the file could not be stored; try again",
      });
    }
    return json(201, fileInfo(record));
  }

  /**
   * The checks made before a byte of the body is read: not stopping, an
   * allowed origin, a valid room, a live session in it, a name, a
   * declared size within the limit, and budget left.
   */
  async #admitUpload(
    request: Request,
    query: URLSearchParams,
  ): Promise<
    Refusal | {
      room: string;
      username: string;
      name: string;
      declaredType: string;
      bucket: TokenBucket | undefined;
      /** Budget taken from the bucket for this body (Infinity: no limit). */
      reserved: number;
    }
  > {
    if (this.#options.isShuttingDown()) {
      return {
        status: 503,
        error: "unavailable",
        message: "server shutting down",
      };
    }
    const origin = checkOrigin(request.headers, this.#options.origins);
    if (!origin.ok) {
      return { status: 403, error: "origin", message: origin.reason };
    }
    const room = validateRoomName(query.get("room") ?? "");
    if (!room.ok) {
      return { status: 400, error: "invalid_room", message: room.text };
    }
    const username = await this.#member(request, room.value);
    if (typeof username !== "string") return username;
    const name = fileName(request.headers.get("x-filename"));
    if (name === null) {
      return {
        status: 400,
        error: "invalid_filename",
        message:
          "X-Filename is not percent-encoded UTF-8; expected encodeURIComponent(name)",
      };
    }
    const max = this.#options.maxFileSize;
    const declared = declaredLength(request.headers);
    if (declared !== null && declared > max) return tooLarge(max);
    // The budget is taken before a byte is read, so that uploads at once
    // share it; what a body does not use is given back.
    const bucket = this.#bucket(username);
    const reserved =
      bucket?.takeUpTo(performance.now(), declared ?? Infinity) ??
        Infinity;
    if (bucket !== undefined && reserved < (declared ?? 1)) {
      bucket.giveBack(reserved);
      return this.#overRate(bucket, declared ?? 1);
    }
    return {
      room: room.value,
      username,
      name,
      declaredType: mediaType(request.headers.get("content-type")),
      bucket,
      reserved,
    };
  }

  /** Why a body was not received in full, as HTTP; the connection closes. */
  #refuseReceived(received: Received & { ok: false }): Response {
    switch (received.reason) {
      case "too_large":
        return closingResponse(tooLarge(this.#options.maxFileSize), true);
      case "rate":
        return closingResponse(this.#overRate(undefined, received.size), true);
      case "timeout":
        return closingResponse({
          status: 408,
          error: "upload_timeout",
          message: "the upload stalled; nothing was stored",
        }, true);
      case "aborted":
        return json(400, {
          error: "upload_aborted",
          message: "the upload ended before its end; nothing was stored",
        });
    }
  }

  #overRate(bucket: TokenBucket | undefined, bytes: number): Refusal {
    const rate = this.#options.uploadRate;
    const missing = bucket === undefined
      ? bytes
      : bytes - bucket.available(performance.now());
    const seconds = Math.max(1, Math.ceil(missing / (rate / 60)));
    return {
      status: 429,
      error: "upload_rate_limited",
      message: `over your upload quota of ${
        megabytes(rate)
      } per minute; try again in ${seconds} s`,
      headers: { "retry-after": String(seconds) },
    };
  }

  /** This user's upload budget; undefined when uploads are not limited. */
  #bucket(username: string): TokenBucket | undefined {
    const rate = this.#options.uploadRate;
    if (rate === 0) return undefined;
    let bucket = this.#buckets.get(username);
    if (bucket === undefined) {
      if (this.#buckets.size >= 10_000) this.#pruneBuckets();
      bucket = new TokenBucket({
        ratePerSecond: rate / 60,
        burst: Math.max(rate, this.#options.maxFileSize),
      });
      this.#buckets.set(username, bucket);
    }
    return bucket;
  }

  /** Forgets full buckets: their users may upload as if new. */
  #pruneBuckets(): void {
    const now = performance.now();
    for (const [name, bucket] of this.#buckets) {
      if (bucket.available(now) >= bucket.burst) this.#buckets.delete(name);
    }
  }

  // ----------------------------------------------------------- download

  async #download(request: Request, id: string): Promise<Response> {
    const record = await this.store.get(id);
    if (record === null) return notFound(id);
    const denied = await this.#mayRead(request, record);
    if (denied !== null) return refuse(request, denied);
    const file = await this.store.openBytes(record);
    if (file === null) return notFound(id);
    return serveFile(request, record, file);
  }

  /**
   * Null when the requester may read the file: anyone for a file shared
   * in the room; the two parties of a direct message (the uploader alone
   * before it is shared), proven by their session.
   */
  async #mayRead(request: Request, record: FileRecord): Promise<
    Refusal | null
  > {
    const shared = record.shared;
    if (shared !== undefined && shared.to === undefined) return null;
    const username = await this.#member(request, record.room);
    if (typeof username !== "string") return username;
    const parties = [record.uploader, shared?.to];
    if (parties.includes(username)) return null;
    return {
      status: 403,
      error: "forbidden",
      message: shared === undefined
        ? "this file is not shared yet; only its uploader may read it"
        : "this file was shared in a direct message you are not part of",
    };
  }

  /** The requester's name in `room`, by its session, or the refusal. */
  async #member(request: Request, room: string): Promise<string | Refusal> {
    const session = bearer(request.headers.get("authorization"));
    if (session === null) {
      return unauthorized(
        "no session; send Authorization: Bearer SESSION, the session your welcome gave",
      );
    }
    let username: string | null;
    try {
      username = await this.#sessions.member(session, room);
    } catch (error) {
      if (!(error instanceof SessionsUnavailable)) throw error;
      return {
        status: 503,
        error: "unavailable",
        message: "the chat store is unreachable; try again shortly",
      };
    }
    if (username === null) {
      return unauthorized(
        `the session is not a live connection in room "${room}"; connect (or reconnect) and use the session of your latest welcome`,
      );
    }
    return username;
  }

  // ------------------------------------------------- sharing and sweep

  /** Marks an upload shared in a line (see {@linkcode FileSharing}). */
  share(
    id: string,
    who: { room: string; uploader: string; to?: string },
  ): Promise<{ ok: true; file: FileInfo } | { ok: false; text: string }> {
    return this.store.share(id, who);
  }

  /**
   * Records the line that shared an upload once it is stored, then sweeps.
   * Shutdown waits for it, the line's store included.
   */
  async shared(id: string, lineId: Promise<number | null>): Promise<void> {
    const recording = lineId.then(async (stored) => {
      await this.store.shared(id, stored);
      return stored;
    });
    this.#recording.add(recording);
    let stored: number | null;
    try {
      stored = await recording;
    } finally {
      this.#recording.delete(recording);
    }
    if (stored !== null) this.sweep();
  }

  /**
   * Deletes uploads whose line left their room's history, and those
   * nobody shared in time; one sweep at a time. Resolves when done.
   */
  sweep(): Promise<void> {
    if (this.#closed) return Promise.resolve();
    const run = this.#sweeping.then(() =>
      this.store.sweep(this.#options.lineKept)
    )
      .then(() => {}, (error) => {
        this.#options.logger.log("error", "file_sweep_failed", {
          cause: (error as Error)?.message ?? String(error),
        });
      });
    this.#sweeping = run;
    return run;
  }

  /** Stops sweeping, waits for shares being recorded, removes a temporary directory. */
  async shutdown(): Promise<void> {
    this.#closed = true;
    clearInterval(this.#timer);
    await Promise.allSettled(this.#recording);
    await this.#sweeping;
    if (this.#options.removeOnShutdown) {
      await Deno.remove(this.store.dir, { recursive: true }).catch(() => {});
    }
  }

  // --------------------------------------------------------------- CORS

  /** CORS headers for an allowed origin other than the page's own. */
  #cors(request: Request): Record<string, string> {
    const origin = request.headers.get("origin");
    if (origin === null) return {};
    if (!checkOrigin(request.headers, this.#options.origins).ok) return {};
    return {
      "access-control-allow-origin": origin,
      "access-control-expose-headers":
        "content-length, content-range, content-disposition, etag, retry-after",
      vary: "Origin",
    };
  }

  #preflight(request: Request): Response {
    if (Object.keys(this.#cors(request)).length === 0) {
      return json(403, {
        error: "origin",
        message: "this origin may not use /files",
      });
    }
    return new Response(null, {
      status: 204,
      headers: {
        "access-control-allow-methods": "GET, HEAD, POST",
        "access-control-allow-headers":
          "authorization, content-type, x-filename, range, if-none-match",
        "access-control-max-age": "600",
      },
    });
  }
}

/** The files directory cannot be made or written. */
export class FilesDirError extends Error {
  /** The directory. */
  readonly path: string;

  /** Creates the error; `cause` is what the file system said. */
  constructor(path: string, cause: unknown) {
    super(
      `cannot use ${path} for files: ${(cause as Error)?.message ?? cause}`,
      { cause },
    );
    this.name = "FilesDirError";
    this.path = path;
  }
}

// ---------------------------------------------------------------- serving

/**
 * The file's bytes with its headers: the whole file (200), one range of
 * it (206), none (304, 416), or only the headers (HEAD).
 */
function serveFile(
  request: Request,
  record: FileRecord,
  file: Deno.FsFile,
): Response {
  const etag = `"${record.hash}"`;
  const headers = new Headers({
    ...SAFE_HEADERS,
    "content-type": record.type,
    etag,
    "content-disposition": disposition(record),
  });
  if (matchesEtag(request.headers.get("if-none-match"), etag)) {
    file.close();
    return new Response(null, { status: 304, headers });
  }
  const wanted = request.headers.get("if-range");
  const range = wanted === null || wanted === etag
    ? parseRange(request.headers.get("range"), record.size)
    : null;
  if (range === "unsatisfiable") {
    file.close();
    headers.set("content-range", `bytes */${record.size}`);
    return new Response(null, { status: 416, headers });
  }
  const start = range?.start ?? 0;
  const length = range === null ? record.size : range.end - range.start + 1;
  headers.set("content-length", String(length));
  if (range !== null) {
    headers.set(
      "content-range",
      `bytes ${range.start}-${range.end}/${record.size}`,
    );
  }
  const status = range === null ? 200 : 206;
  if (request.method === "HEAD") {
    file.close();
    return new Response(null, { status, headers });
  }
  return new Response(fileSlice(file, start, length), { status, headers });
}

/** `length` bytes of `file` from `start`, read as they are sent. */
function fileSlice(
  file: Deno.FsFile,
  start: number,
  length: number,
): ReadableStream<Uint8Array> {
  let left = length;
  let closed = false;
  const close = (): void => {
    if (!closed) file.close();
    closed = true;
  };
  return new ReadableStream({
    async start() {
      if (start > 0) await file.seek(start, Deno.SeekMode.Start);
    },
    async pull(controller) {
      if (left === 0) {
        close();
        controller.close();
        return;
      }
      const buffer = new Uint8Array(Math.min(SERVE_CHUNK_BYTES, left));
      const read = await file.read(buffer);
      if (read === null) {
        close();
        controller.error(new Error("the file ended early"));
        return;
      }
      left -= read;
      controller.enqueue(buffer.subarray(0, read));
    },
    cancel() {
      close();
    },
  });
}

/** `inline` for a sniffed image, else an attachment, with the name. */
function disposition(record: FileRecord): string {
  const fallback = record.name.replace(/[^\x20-\x7e]|["\\%]/g, "_");
  const encoded = encodeURIComponent(record.name).replace(
    /['()*]/g,
    (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`,
  );
  return `${
    record.image ? "inline" : "attachment"
  }; filename="${fallback}"; filename*=UTF-8''${encoded}`;
}

/** True when `If-None-Match` names this ETag (or is `*`). */
function matchesEtag(header: string | null, etag: string): boolean {
  if (header === null) return false;
  return header.split(",").some((tag) => {
    const trimmed = tag.trim();
    return trimmed === "*" || trimmed === etag || trimmed === `W/${etag}`;
  });
}

/**
 * One byte range of `Range: bytes=…` (`a-b`, `a-`, `-n`), clipped to the
 * file; null to send it whole (no range, several, or not bytes), or
 * `unsatisfiable`.
 *
 * @example
 * ```ts
 * import { parseRange } from "./http.ts";
 * parseRange("bytes=0-9", 100); // { start: 0, end: 9 }
 * parseRange("bytes=-10", 100); // { start: 90, end: 99 }
 * parseRange("bytes=200-", 100); // "unsatisfiable"
 * ```
 */
export function parseRange(
  header: string | null,
  size: number,
): { start: number; end: number } | "unsatisfiable" | null {
  if (header === null) return null;
  const match = /^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$/i.exec(header);
  if (match === null) return null;
  const [, first, last] = match;
  if (first === "" && last === "") return null;
  if (first === "") {
    const suffix = Number(last);
    if (suffix === 0 || size === 0) return "unsatisfiable";
    return { start: Math.max(0, size - suffix), end: size - 1 };
  }
  const start = Number(first);
  const end = last === "" ? size - 1 : Math.min(Number(last), size - 1);
  if (start >= size || end < start) return "unsatisfiable";
  return { start, end };
}

// --------------------------------------------------------------- helpers

/**
 * A refusal of an upload, answered without reading the rest of its body
 * and with its connection closed, so a client offering a gigabyte sends
 * little more than what was read.
 *
 * Deno (2.9) drains an unread request body before it reuses the
 * connection, whatever `Connection: close` says. What closes it instead
 * (measured over raw TCP, 1 GiB offered): a response body that fails
 * after the answer is written makes Deno drop the connection. A body
 * never read is first taken out of Deno's hands (a reader made and let
 * go), so it is not drained while the answer is written, and the answer
 * has its `Content-Length` (complete before the close). A body partly
 * read has been cancelled (draining starts): the answer is then sent
 * chunked, so the failure comes before Deno considers it complete.
 */
export function closingResponse(refusal: Refusal, bodyRead: boolean): Response {
  const text = new TextEncoder().encode(
    JSON.stringify({ error: refusal.error, message: refusal.message }) + "\n",
  );
  const headers: Record<string, string> = {
    "content-type": "application/json",
    connection: "close",
    ...refusal.headers,
  };
  if (!bodyRead) headers["content-length"] = String(text.length);
  // The failure comes a turn later: a body failing in the turn it is first
  // read is logged by Deno as an uncaught error. A body cancelled first
  // (the connection went) stops that turn's timer.
  let failing: ReturnType<typeof setTimeout> | undefined;
  const body = new ReadableStream<Uint8Array>({
    start(controller) {
      controller.enqueue(text);
    },
    pull(controller) {
      const { promise, resolve } = Promise.withResolvers<void>();
      failing = setTimeout(() => {
        controller.error(new Error("closing the connection after a refusal"));
        resolve();
      }, 0);
      return promise;
    },
    cancel() {
      clearTimeout(failing);
    },
  });
  return new Response(body, { status: refusal.status, headers });
}

/**
 * A refusal before any of the body was read: with a body, closing the
 * connection ({@linkcode closingResponse}); without one, a plain answer.
 */
function refuse(request: Request, refusal: Refusal): Response {
  if (request.body === null || request.bodyUsed) {
    return json(refusal.status, {
      error: refusal.error,
      message: refusal.message,
    }, refusal.headers);
  }
  // Taken out of Deno's hands, unread: see closingResponse.
  request.body.getReader().releaseLock();
  return closingResponse(refusal, false);
}

function json(
  status: number,
  body: unknown,
  headers: Record<string, string> = {},
): Response {
  return Response.json(body, { status, headers });
}

function tooLarge(max: number): Refusal {
  return {
    status: 413,
    error: "file_too_large",
    message: `the file is larger than ${megabytes(max)} (${max} bytes)`,
  };
}

function unauthorized(message: string): Refusal {
  return {
    status: 401,
    error: "unauthorized",
    message,
    headers: { "www-authenticate": 'Bearer realm="hubchat"' },
  };
}

function methodNotAllowed(allow: string): Refusal {
  return {
    status: 405,
    error: "method_not_allowed",
    message: `method not allowed; use ${allow}`,
    headers: { allow },
  };
}

function notFound(id: string): Response {
  return json(404, {
    error: "not_found",
    message: `no file "${
      id.slice(0, 64)
    }": it never existed, or it was deleted (files go when their line leaves history, or when storage is full)`,
  });
}

/** A size for people: `10 MiB`, `512 KiB`. */
function megabytes(bytes: number): string {
  if (bytes >= 1024 * 1024) {
    return `${Math.round(bytes / 1024 / 1024 * 10) / 10} MiB`;
  }
  return `${Math.round(bytes / 1024 * 10) / 10} KiB`;
}

/** `Authorization: Bearer SESSION`'s session (32 hex digits), or null. */
function bearer(header: string | null): string | null {
  const match = /^\s*Bearer\s+([0-9a-f]{32})\s*$/i.exec(header ?? "");
  return match === null ? null : match[1].toLowerCase();
}

/** The `Content-Length` of a request, or null when it gives none. */
function declaredLength(headers: Headers): number | null {
  const header = headers.get("content-length");
  if (header === null || !/^\s*\d+\s*$/.test(header)) return null;
  return Number(header);
}

/**
 * `X-Filename` (percent-encoded UTF-8) as a clean display name; `file`
 * when absent; null when it does not decode.
 */
function fileName(header: string | null): string | null {
  if (header === null) return cleanFileName("");
  try {
    return cleanFileName(decodeURIComponent(header));
  } catch {
    return null;
  }
}

/**
 * Shared files on disk: the bytes of every upload, kept outside the message
 * path (a `file` line carries only what {@linkcode FileInfo} says), under
 * one directory that several nodes may share (a mounted volume).
 *
 * | path                      | what                                              |
 * | ------------------------- | ------------------------------------------------- |
 * | `DIR/blobs/SHA256`        | the content, once per distinct content            |
 * | `DIR/uploads/ID`          | a hard link to its blob: what `GET /files/ID` reads |
 * | `DIR/uploads/ID.json`     | the upload's record ({@linkcode FileRecord})      |
 * | `DIR/tmp/RANDOM.part`     | an upload on its way in                           |
 *
 * An upload is streamed into a temporary file while its SHA-256 is computed
 * (`node:crypto`'s incremental hash: WebCrypto digests only whole buffers)
 * and its first bytes are sniffed; nothing is ever held whole in memory.
 * Once complete it is renamed to its content's name (or dropped when that
 * content is already stored: the same file uploaded twice is stored once),
 * hard-linked under its upload id, and its record written to a temporary
 * name and renamed. A crash mid-upload leaves only a `.part` file, which is
 * never served or counted and is removed once stale.
 *
 * Each upload has its own random id (128 bits), so a file shared in a
 * direct message cannot be found by guessing, and its record says who may
 * read it. The hard link keeps an upload's bytes whatever happens to its
 * blob: two nodes deleting and storing the same content at once can at
 * worst store it twice, never lose it. Records are read from disk when
 * asked for, so a node always sees what another node wrote.
 *
 * @module
 */

import { createHash } from "node:crypto";
import type { FileInfo } from "../protocol.ts";

/** Largest upload when none is given: 10 MiB, photos and documents. */
export const DEFAULT_MAX_FILE_SIZE = 10 * 1024 * 1024;

/**
 * Bytes all files may take together when no cap is given: 1 GiB, a
 * hundred largest uploads. Past it the oldest files go first.
 */
export const DEFAULT_FILES_MAX_BYTES = 1024 * 1024 * 1024;

/**
 * How long an upload may send nothing before it is abandoned: a stalled
 * client must not hold a temporary file (and its slot) for ever.
 */
export const UPLOAD_IDLE_MS = 30_000;

/**
 * Age (since its last write) past which a `.part` file is abandoned: far
 * past {@linkcode UPLOAD_IDLE_MS}, so no upload still under way is touched,
 * on this node or another sharing the directory.
 */
export const STALE_PART_MS = 10 * 60_000;

/**
 * How long an upload may wait to be shared in a `file` line (or a line
 * that failed to be stored) before it is deleted: an upload nobody shared
 * is nobody's.
 */
export const UNSHARED_MS = 60 * 60_000;

/** Longest file name kept, in characters: enough for any real name. */
export const MAX_NAME_CHARS = 255;

/** An upload's id: 128 random bits, hex. */
const UPLOAD_ID = /^[0-9a-f]{32}$/;

/** A stored upload, as its `.json` record says. */
export interface FileRecord {
  /** Its id (32 hex digits), also its URL's last part. */
  id: string;
  /** SHA-256 of its content, hex: its blob's name and its ETag. */
  hash: string;
  /** The name it was uploaded under: display text only, never a path. */
  name: string;
  /** Its size in bytes. */
  size: number;
  /** Its media type, as served. */
  type: string;
  /** True when its bytes are a PNG, JPEG, GIF or WebP (served inline). */
  image: boolean;
  /** The room it was uploaded to (and may be shared in). */
  room: string;
  /** Who uploaded it. */
  uploader: string;
  /** When it was stored (ms since the epoch): the oldest go first. */
  storedAt: number;
  /** Set once a `file` line shares it. */
  shared?: {
    /** The recipient when shared in a direct message. */
    to?: string;
    /** The line's id, once stored. */
    lineId?: number;
    /** When it was shared (ms since the epoch). */
    at: number;
  };
}

/** What {@linkcode FileStore.receive} made of an upload's body. */
export type Received =
  | {
    ok: true;
    /** The temporary file holding it. */
    part: string;
    hash: string;
    size: number;
    /** The image type its first bytes say, or null. */
    sniffed: string | null;
  }
  | {
    ok: false;
    /** `too_large`, `timeout`, `aborted` (the peer went), or `rate`. */
    reason: "too_large" | "timeout" | "aborted" | "rate";
    /** Bytes read before it stopped. */
    size: number;
  };

/** Options of {@linkcode FileStore.open}. */
export interface FileStoreOptions {
  /** Bytes all files may take together; the oldest go first past it. */
  maxBytes?: number;
}

/** Options of {@linkcode FileStore.receive}. */
export interface ReceiveOptions {
  /** Most bytes accepted: one more and the upload is refused. */
  maxBytes: number;
  /**
   * Most bytes this uploader may still send now (its rate budget); past
   * it the upload is refused with reason `rate`. Default: no limit.
   */
  budget?: number;
  /** How long a pause between two chunks may last. Default 30 s. */
  idleMs?: number;
}

/** What an upload is, besides its bytes. */
export interface UploadMeta {
  /** The display name (already cleaned: {@linkcode cleanFileName}). */
  name: string;
  /** The media type the client gave (normalized: {@linkcode mediaType}). */
  declaredType: string;
  room: string;
  uploader: string;
}

/**
 * Tells whether a room's history still holds a line: true or false, or
 * undefined when this node cannot tell (the file is then kept).
 */
export type LineKept = (room: string, lineId: number) => boolean | undefined;

/**
 * The files of one directory. Open with {@linkcode FileStore.open}.
 *
 * @example
 * ```ts
 * import { FileStore } from "./files.ts";
 * const dir = await Deno.makeTempDir();
 * const store = await FileStore.open(dir);
 * const body = new Blob(["hello"]).stream();
 * const received = await store.receive(body, { maxBytes: 1024 });
 * if (received.ok) {
 *   const record = await store.commit(received, {
 *     name: "hello.txt",
 *     declaredType: "text/plain",
 *     room: "lobby",
 *     uploader: "ann",
 *   });
 *   console.log(record.size); // 5
 * }
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export class FileStore {
  /** The directory. */
  readonly dir: string;
  /** Bytes all files may take together. */
  readonly maxBytes: number;
  #blobs: string;
  #uploads: string;
  #tmp: string;
  /** One change to the store at a time on this node (commit, sweep). */
  #lock: Promise<unknown> = Promise.resolve();

  private constructor(dir: string, options: FileStoreOptions) {
    this.dir = dir;
    this.maxBytes = options.maxBytes ?? DEFAULT_FILES_MAX_BYTES;
    this.#blobs = `${dir}/blobs`;
    this.#uploads = `${dir}/uploads`;
    this.#tmp = `${dir}/tmp`;
  }

  /**
   * Opens (making it if needed) the store in `dir` and removes what a
   * crash left: stale `.part` files. Throws when the directory cannot be
   * made or written.
   */
  static async open(
    dir: string,
    options: FileStoreOptions = {},
  ): Promise<FileStore> {
    const store = new FileStore(dir.replace(/\/+$/, "") || "/", options);
    for (const sub of [store.#blobs, store.#uploads, store.#tmp]) {
      await Deno.mkdir(sub, { recursive: true });
    }
    await store.removeStaleParts();
    return store;
  }

  /**
   * Streams an upload's body into a temporary file, hashing and counting
   * it; stops (and removes the file) as soon as it passes `maxBytes` or
   * the budget, when it pauses longer than `idleMs`, or when the peer goes.
   * The body is cancelled whenever it is not read to its end.
   */
  async receive(
    body: ReadableStream<Uint8Array> | null,
    options: ReceiveOptions,
  ): Promise<Received> {
    const part = `${this.#tmp}/${randomHex()}.part`;
    const file = await Deno.open(part, { write: true, createNew: true });
    const out = new BufferedWriter(file);
    const hash = createHash("sha256");
    const head = new Uint8Array(16);
    const limit = Math.min(options.maxBytes, options.budget ?? Infinity);
    let size = 0;
    let failure: Exclude<Received, { ok: true }>["reason"] | null = null;
    const reader = body?.getReader();
    try {
      while (reader !== undefined) {
        const next = await readWithin(reader, options.idleMs ?? UPLOAD_IDLE_MS);
        if (next === "timeout" || next === "aborted") {
          failure = next;
          break;
        }
        if (next.done) break;
        const chunk = next.value;
        if (size < head.length) {
          head.set(chunk.subarray(0, head.length - size), size);
        }
        size += chunk.length;
        if (size > limit) {
          failure = size > options.maxBytes ? "too_large" : "rate";
          break;
        }
        hash.update(chunk);
        await out.write(chunk);
      }
      if (failure === null) await out.flush();
    } catch (error) {
      file.close();
      await Deno.remove(part).catch(() => {});
      await reader?.cancel().catch(() => {});
      throw error;
    }
    file.close();
    if (failure !== null) {
      await Deno.remove(part).catch(() => {});
      // Stop reading the rest: the HTTP side then closes the connection.
      reader?.cancel().catch(() => {});
      return { ok: false, reason: failure, size };
    }
    return {
      ok: true,
      part,
      hash: hash.digest("hex"),
      size,
      sniffed: sniffImage(head.subarray(0, Math.min(size, head.length))),
    };
  }

  /** Drops what {@linkcode FileStore.receive} received, unstored. */
  async discard(received: Received): Promise<void> {
    if (received.ok) await Deno.remove(received.part).catch(() => {});
  }

  /**
   * Stores a received upload: makes room for it (oldest files first, see
   * {@linkcode FileStore.maxBytes}), names its content by hash (once per
   * content), links it under a new upload id and writes its record. Throws
   * {@linkcode StorageFull} when it is larger than the whole store.
   */
  commit(
    received: Received & { ok: true },
    meta: UploadMeta,
  ): Promise<FileRecord> {
    return this.#exclusive(() => this.#commit(received, meta));
  }

  async #commit(
    received: Received & { ok: true },
    meta: UploadMeta,
  ): Promise<FileRecord> {
    try {
      if (received.size > this.maxBytes) {
        throw new StorageFull(received.size, this.maxBytes);
      }
      const records = await this.records();
      await this.#makeRoom(records, received);
      const record: FileRecord = {
        id: randomHex(),
        hash: received.hash,
        name: meta.name,
        size: received.size,
        type: servedType(meta.declaredType, received.sniffed),
        image: received.sniffed !== null,
        room: meta.room,
        uploader: meta.uploader,
        storedAt: Date.now(),
      };
      await this.#link(received, record.id);
      await this.#writeRecord(record);
      return record;
    } finally {
      await Deno.remove(received.part).catch(() => {});
    }
  }

  /** Deletes the oldest uploads until `received` fits under the cap. */
  async #makeRoom(
    records: FileRecord[],
    received: { hash: string; size: number },
  ): Promise<void> {
    let used = contentBytes([...records, received]);
    const oldestFirst = records.toSorted((a, b) => a.storedAt - b.storedAt);
    const left = new Map<string, number>();
    for (const record of records) {
      left.set(record.hash, (left.get(record.hash) ?? 0) + 1);
    }
    for (const record of oldestFirst) {
      if (used <= this.maxBytes) break;
      await this.#delete(record);
      const remaining = left.get(record.hash)! - 1;
      left.set(record.hash, remaining);
      if (remaining === 0 && record.hash !== received.hash) used -= record.size;
    }
  }

  /**
   * Puts the content under its hash (unless stored already) and links the
   * upload's name to it. A blob deleted by another node between the two
   * is stored again from the temporary file.
   */
  async #link(
    received: { part: string; hash: string },
    id: string,
  ): Promise<void> {
    const blob = `${this.#blobs}/${received.hash}`;
    const upload = `${this.#uploads}/${id}`;
    for (let tries = 0; tries < 3; tries++) {
      try {
        await Deno.link(blob, upload);
        return;
      } catch (error) {
        if (!(error instanceof Deno.errors.NotFound)) throw error;
      }
      // Not stored yet: a copy of the part under a temporary name, renamed
      // into place, so the part stays for a retry.
      const copy = `${this.#tmp}/${randomHex()}.part`;
      await Deno.link(received.part, copy);
      await Deno.rename(copy, blob);
    }
    throw new Error(`cannot link upload ${id} to its content`);
  }

  /**
   * An upload's record, read from disk (so what another node wrote is
   * seen at once), or null when there is none (or `id` is no upload id).
   */
  async get(id: string): Promise<FileRecord | null> {
    if (!UPLOAD_ID.test(id)) return null;
    try {
      return JSON.parse(
        await Deno.readTextFile(`${this.#uploads}/${id}.json`),
      ) as FileRecord;
    } catch (error) {
      if (error instanceof Deno.errors.NotFound) return null;
      if (error instanceof SyntaxError) return null;
      throw error;
    }
  }

  /** Opens an upload's bytes for reading; null when they are gone. */
  async openBytes(record: FileRecord): Promise<Deno.FsFile | null> {
    try {
      return await Deno.open(`${this.#uploads}/${record.id}`);
    } catch (error) {
      if (error instanceof Deno.errors.NotFound) return null;
      throw error;
    }
  }

  /**
   * Marks an upload shared in a line of `room` by `uploader` (to `to`, for
   * a direct message), before the line is stored: from then on only the
   * two parties of a direct message may read it. Says why not when there
   * is no such upload of theirs in that room, or it was shared already.
   */
  async share(
    id: string,
    who: { room: string; uploader: string; to?: string },
  ): Promise<{ ok: true; file: FileInfo } | { ok: false; text: string }> {
    const record = await this.get(id);
    if (
      record === null || record.uploader !== who.uploader ||
      record.room !== who.room
    ) {
      return {
        ok: false,
        text:
          `no upload "${id}" of yours in room "${who.room}"; upload it with POST /files?room=${who.room} first`,
      };
    }
    if (record.shared !== undefined) {
      return { ok: false, text: `upload "${id}" was shared already` };
    }
    record.shared = { at: Date.now() };
    if (who.to !== undefined) record.shared.to = who.to;
    await this.#writeRecord(record);
    return { ok: true, file: fileInfo(record) };
  }

  /** Records the id of the line that shared an upload (or, with null, that none could be stored: it may be shared again). */
  async shared(id: string, lineId: number | null): Promise<void> {
    const record = await this.get(id);
    if (record?.shared === undefined) return;
    if (lineId === null) delete record.shared;
    else record.shared.lineId = lineId;
    await this.#writeRecord(record);
  }

  /** Every upload's record, read from disk. */
  async records(): Promise<FileRecord[]> {
    const records: FileRecord[] = [];
    for await (const entry of Deno.readDir(this.#uploads)) {
      if (!entry.name.endsWith(".json")) continue;
      const record = await this.get(entry.name.slice(0, -5));
      if (record !== null) records.push(record);
    }
    return records;
  }

  /** Bytes the stored contents take (each distinct content once). */
  async used(): Promise<number> {
    return contentBytes(await this.records());
  }

  /**
   * Deletes uploads whose line has fallen out of their room's history
   * (as `kept` says), uploads nobody shared within
   * {@linkcode UNSHARED_MS}, and stale `.part` files. Returns the ids
   * deleted.
   */
  sweep(kept: LineKept, now: number = Date.now()): Promise<string[]> {
    return this.#exclusive(async () => {
      const deleted: string[] = [];
      for (const record of await this.records()) {
        const lineId = record.shared?.lineId;
        const gone = lineId === undefined
          ? now - (record.shared?.at ?? record.storedAt) > UNSHARED_MS
          : kept(record.room, lineId) === false;
        if (!gone) continue;
        await this.#delete(record);
        deleted.push(record.id);
      }
      await this.removeStaleParts(now);
      return deleted;
    });
  }

  /** Removes `.part` files untouched for {@linkcode STALE_PART_MS}. */
  async removeStaleParts(now: number = Date.now()): Promise<void> {
    for await (const entry of Deno.readDir(this.#tmp)) {
      if (!entry.name.endsWith(".part")) continue;
      const path = `${this.#tmp}/${entry.name}`;
      try {
        const info = await Deno.stat(path);
        const touched = info.mtime?.getTime() ?? 0;
        if (now - touched > STALE_PART_MS) await Deno.remove(path);
      } catch {
        // Gone already (another node cleaned it, or it was stored).
      }
    }
  }

  /**
   * Deletes an upload: its record first (it is then no longer served),
   * its link, and its content when no other upload links to it.
   */
  async #delete(record: FileRecord): Promise<void> {
    await removeIfThere(`${this.#uploads}/${record.id}.json`);
    await removeIfThere(`${this.#uploads}/${record.id}`);
    const blob = `${this.#blobs}/${record.hash}`;
    try {
      // The blob's own name is its one link left: nobody else uses it.
      if ((await Deno.stat(blob)).nlink === 1) await removeIfThere(blob);
    } catch (error) {
      if (!(error instanceof Deno.errors.NotFound)) throw error;
    }
  }

  /** Writes a record to a temporary name and renames it into place. */
  async #writeRecord(record: FileRecord): Promise<void> {
    const temp = `${this.#tmp}/${randomHex()}.json.part`;
    await Deno.writeTextFile(temp, JSON.stringify(record));
    await Deno.rename(temp, `${this.#uploads}/${record.id}.json`);
  }

  /** Runs changes one at a time on this node. */
  #exclusive<T>(change: () => Promise<T>): Promise<T> {
    const run = this.#lock.then(change, change);
    this.#lock = run.catch(() => {});
    return run;
  }
}

/** An upload larger than the whole store may hold: it cannot be kept. */
export class StorageFull extends Error {
  /** Creates the error for an upload of `size` bytes and a cap of `cap`. */
  constructor(size: number, cap: number) {
    super(
      `the file (${size} bytes) is larger than all files may take together (${cap} bytes)`,
    );
    this.name = "StorageFull";
  }
}

/**
 * What a `file` line says of an upload.
 *
 * @example
 * ```ts
 * import { fileInfo } from "./files.ts";
 * fileInfo({
 *   id: "0123456789abcdef0123456789abcdef", hash: "ab", name: "cat.png",
 *   size: 3, type: "image/png", image: true, room: "lobby", uploader: "ann",
 *   storedAt: 0,
 * }).url; // "/files/0123456789abcdef0123456789abcdef"
 * ```
 */
export function fileInfo(record: FileRecord): FileInfo {
  return {
    id: record.id,
    name: record.name,
    size: record.size,
    type: record.type,
    url: `/files/${record.id}`,
  };
}

/** Magic bytes of the image types served inline. */
const IMAGE_MAGIC: readonly {
  type: string;
  test: (b: Uint8Array) => boolean;
}[] = [
  {
    type: "image/png",
    test: (b) =>
      startsWith(b, [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
  },
  { type: "image/jpeg", test: (b) => startsWith(b, [0xff, 0xd8, 0xff]) },
  {
    type: "image/gif",
    test: (b) => ascii(b, 0, 6) === "GIF87a" || ascii(b, 0, 6) === "GIF89a",
  },
  {
    type: "image/webp",
    test: (b) => ascii(b, 0, 4) === "RIFF" && ascii(b, 8, 12) === "WEBP",
  },
];

/**
 * The image type a file's first bytes say (PNG, JPEG, GIF or WebP), or
 * null: what the client claims is never trusted for that.
 *
 * @example
 * ```ts
 * import { sniffImage } from "./files.ts";
 * sniffImage(new Uint8Array([0xff, 0xd8, 0xff, 0xe0])); // "image/jpeg"
 * sniffImage(new TextEncoder().encode("<svg>")); // null
 * ```
 */
export function sniffImage(head: Uint8Array): string | null {
  for (const magic of IMAGE_MAGIC) if (magic.test(head)) return magic.type;
  return null;
}

function startsWith(bytes: Uint8Array, prefix: number[]): boolean {
  return bytes.length >= prefix.length &&
    prefix.every((byte, i) => bytes[i] === byte);
}

function ascii(bytes: Uint8Array, from: number, to: number): string {
  if (bytes.length < to) return "";
  return String.fromCharCode(...bytes.subarray(from, to));
}

/** A type and subtype of RFC 9110's token characters, lower case. */
const MEDIA_TYPE =
  /^[a-z0-9][a-z0-9!#$&^_.+-]{0,126}\/[a-z0-9][a-z0-9!#$&^_.+-]{0,126}$/;

/**
 * A `Content-Type` header as a bare media type (no parameters, lower
 * case), or `application/octet-stream` for none or nonsense.
 *
 * @example
 * ```ts
 * import { mediaType } from "./files.ts";
 * mediaType("Text/Plain; charset=utf-8"); // "text/plain"
 * mediaType("not a type"); // "application/octet-stream"
 * ```
 */
export function mediaType(header: string | null): string {
  const base = (header ?? "").split(";")[0].trim().toLowerCase();
  return MEDIA_TYPE.test(base) ? base : "application/octet-stream";
}

/**
 * The type a file is served with: its sniffed image type, else what the
 * client declared, except a sniffable image type its bytes belie (then
 * `application/octet-stream`).
 *
 * @example
 * ```ts
 * import { servedType } from "./files.ts";
 * servedType("image/png", null); // "application/octet-stream"
 * servedType("application/pdf", null); // "application/pdf"
 * servedType("text/plain", "image/gif"); // "image/gif"
 * ```
 */
export function servedType(declared: string, sniffed: string | null): string {
  if (sniffed !== null) return sniffed;
  if (IMAGE_MAGIC.some((magic) => magic.type === declared)) {
    return "application/octet-stream";
  }
  return declared;
}

/**
 * Control characters (C0, DEL, C1) and the invisible marks that reorder
 * text (bidi embeddings, overrides, isolates), which could disguise a name.
 */
const UNSAFE_IN_NAME =
  // deno-lint-ignore no-control-regex -- control characters are what it finds
  /[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/g;

/**
 * A file name made safe to show and to put in a header: NFC, without
 * control or bidi characters, `/` and `\` replaced by `_` (so it never
 * reads as a path), trimmed, at most {@linkcode MAX_NAME_CHARS}
 * characters; `file` when nothing is left. It is display text only: no
 * file on disk is ever named after it.
 *
 * @example
 * ```ts
 * import { cleanFileName } from "./files.ts";
 * cleanFileName("../../etc/passwd"); // ".._.._etc_passwd"
 * cleanFileName("a\u0000b.txt"); // "ab.txt"
 * ```
 */
export function cleanFileName(raw: string): string {
  const cleaned = raw.normalize("NFC").replace(UNSAFE_IN_NAME, "")
    .replace(/[\/\\]/g, "_").trim();
  const name = [...cleaned].slice(0, MAX_NAME_CHARS).join("");
  return name === "" || name === "." || name === ".." ? "file" : name;
}

/**
 * Bytes the contents of `uploads` take on disk: each distinct content (by
 * hash) once, however many uploads link to it.
 */
function contentBytes(
  uploads: readonly { hash: string; size: number }[],
): number {
  const sizes = new Map<string, number>();
  for (const { hash, size } of uploads) sizes.set(hash, size);
  let bytes = 0;
  for (const size of sizes.values()) bytes += size;
  return bytes;
}

/**
 * Bytes gathered before a write to disk: a network chunk is 64 KiB or
 * less, and a write per chunk cost about a sixth of the upload rate
 * (`bench/files.ts --uploads 20 --size 10`: 149 to 171 MiB/s in three runs
 * writing each chunk, 183 to 194 MiB/s with this buffer). One per upload
 * in flight.
 */
const WRITE_BUFFER_BYTES = 256 * 1024;

/** Writes to a file in blocks of {@linkcode WRITE_BUFFER_BYTES}. */
class BufferedWriter {
  #file: Deno.FsFile;
  #buffer = new Uint8Array(WRITE_BUFFER_BYTES);
  #used = 0;

  constructor(file: Deno.FsFile) {
    this.#file = file;
  }

  /** Adds bytes, writing whenever the buffer is full. */
  async write(bytes: Uint8Array): Promise<void> {
    let at = 0;
    while (at < bytes.length) {
      const take = Math.min(
        bytes.length - at,
        this.#buffer.length - this.#used,
      );
      this.#buffer.set(bytes.subarray(at, at + take), this.#used);
      this.#used += take;
      at += take;
      if (this.#used === this.#buffer.length) await this.flush();
    }
  }

  /** Writes what the buffer holds. */
  async flush(): Promise<void> {
    let offset = 0;
    while (offset < this.#used) {
      offset += await this.#file.write(
        this.#buffer.subarray(offset, this.#used),
      );
    }
    this.#used = 0;
  }
}

async function removeIfThere(path: string): Promise<void> {
  try {
    await Deno.remove(path);
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  }
}

/**
 * The reader's next chunk, or `timeout` when none came within `ms`, or
 * `aborted` when the stream failed (the peer went away).
 */
async function readWithin(
  reader: ReadableStreamDefaultReader<Uint8Array>,
  ms: number,
): Promise<ReadableStreamReadResult<Uint8Array> | "timeout" | "aborted"> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const expired = new Promise<"timeout">((resolve) => {
    timer = setTimeout(() => resolve("timeout"), ms);
  });
  try {
    return await Promise.race([
      reader.read().catch(() => "aborted" as const),
      expired,
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** 128 random bits, as 32 hex digits: an id, or a temporary file's name. */
function randomHex(): string {
  return crypto.getRandomValues(new Uint8Array(16)).toHex();
}

/**
 * A WebSocket client on raw TCP that can misbehave on purpose (never read,
 * never answer a ping, drop the connection without a close frame), the
 * buffered TCP connection under it, and raw upgrade requests for checking
 * refusals by their status line and body.
 *
 * @module
 */

import assert from "node:assert/strict";
import type { ServerMessage } from "../protocol.ts";
import { closePayload, encodeFrame, Opcode } from "../tools/ws_frame.ts";
import { parseFrame } from "./chat_client.ts";
import { WAIT_MS, within } from "./wait.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** An HTTP response as read off a raw socket. */
export interface RawReply {
  /** The status code. */
  status: number;
  /** Headers, lower-cased names. */
  headers: Headers;
  /** The body, decoded as UTF-8 (empty for 101). */
  body: string;
}

/** One WebSocket frame as it came off the wire. */
export interface WsFrame {
  /** The FIN bit. */
  fin: boolean;
  /** The opcode: 0 continuation, 1 text, 2 binary, 8 close, 9 ping, 10 pong. */
  opcode: number;
  /** The (unmasked) payload. */
  payload: Uint8Array;
}

const WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

async function expectedAccept(key: string): Promise<string> {
  const digest = await crypto.subtle.digest(
    "SHA-1",
    encoder.encode(key + WS_GUID),
  );
  return btoa(String.fromCharCode(...new Uint8Array(digest)));
}

/**
 * The bytes of `parts`, one after the other, in one new array: frames to
 * send in one write, or fragments to read as one message.
 *
 * @example
 * ```ts
 * import { concatBytes } from "./raw_websocket.ts";
 * concatBytes([new Uint8Array([1]), new Uint8Array([2, 3])]); // [1, 2, 3]
 * ```
 */
export function concatBytes(parts: Uint8Array[]): Uint8Array {
  const joined = new Uint8Array(
    parts.reduce((sum, part) => sum + part.length, 0),
  );
  let offset = 0;
  for (const part of parts) {
    joined.set(part, offset);
    offset += part.length;
  }
  return joined;
}

function indexOfBytes(haystack: Uint8Array, needle: Uint8Array): number {
  outer: for (let i = 0; i + needle.length <= haystack.length; i++) {
    for (let j = 0; j < needle.length; j++) {
      if (haystack[i + j] !== needle[j]) continue outer;
    }
    return i;
  }
  return -1;
}

/**
 * A TCP connection to the server, with buffered reads that are bounded in
 * time. At most one read is in flight; `close` waits for it to settle.
 *
 * @example
 * ```ts
 * import { RawConnection } from "./raw_websocket.ts";
 * const connection = await RawConnection.connect(8080);
 * await connection.write(new TextEncoder().encode("GET /healthz HTTP/1.1\r\n\r\n"));
 * (await connection.readResponse()).status; // 200
 * await connection.close();
 * ```
 */
export class RawConnection {
  /** The TCP connection. */
  readonly conn: Deno.TcpConn;
  #buffer: Uint8Array = new Uint8Array(0);
  #reading: Promise<Uint8Array | null> | undefined;
  #eof = false;
  #closed = false;

  private constructor(conn: Deno.TcpConn) {
    this.conn = conn;
  }

  /** Connects to 127.0.0.1 on `port`. */
  static async connect(port: number): Promise<RawConnection> {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    return new RawConnection(conn);
  }

  /** Bytes read from the socket and not yet consumed. */
  get buffered(): number {
    return this.#buffer.length;
  }

  /** True once the peer closed its side (or reset the connection). */
  get eof(): boolean {
    return this.#eof;
  }

  /** Writes every byte. */
  async write(bytes: Uint8Array): Promise<void> {
    let written = 0;
    while (written < bytes.length) {
      written += await this.conn.write(bytes.subarray(written));
    }
  }

  async #readChunk(): Promise<Uint8Array | null> {
    const chunk = new Uint8Array(64 * 1024);
    try {
      const n = await this.conn.read(chunk);
      return n === null ? null : chunk.subarray(0, n);
    } catch (error) {
      if (error instanceof Deno.errors.ConnectionReset) return null;
      throw error;
    }
  }

  /** Reads one more chunk into the buffer; false at end of stream. */
  async fill(what: string, deadline: number): Promise<boolean> {
    if (this.#eof) return false;
    this.#reading ??= this.#readChunk();
    const ms = Math.max(1, deadline - Date.now());
    const chunk = await within(this.#reading, what, ms);
    this.#reading = undefined;
    if (chunk === null) {
      this.#eof = true;
      return false;
    }
    this.#buffer = this.#buffer.length === 0
      ? chunk
      : concatBytes([this.#buffer, chunk]);
    return true;
  }

  /** Takes exactly `n` bytes, reading as needed; null if the stream ends. */
  async readExact(
    n: number,
    what: string,
    deadline: number,
  ): Promise<Uint8Array | null> {
    while (this.#buffer.length < n) {
      if (!(await this.fill(what, deadline))) return null;
    }
    const bytes = this.#buffer.subarray(0, n);
    this.#buffer = this.#buffer.subarray(n);
    return bytes;
  }

  /** Takes everything up to and including `delimiter`; null at the end. */
  async readUntil(
    delimiter: Uint8Array,
    what: string,
    deadline: number,
  ): Promise<Uint8Array | null> {
    let from = 0;
    for (;;) {
      const at = indexOfBytes(this.#buffer.subarray(from), delimiter);
      if (at >= 0) return this.readExact(from + at + delimiter.length, what, 0);
      from = Math.max(0, this.#buffer.length - delimiter.length + 1);
      if (!(await this.fill(what, deadline))) return null;
    }
  }

  /** Takes everything until the peer closes. */
  async readToEnd(what: string, deadline: number): Promise<Uint8Array> {
    while (await this.fill(what, deadline)) {
      // Keep reading.
    }
    const rest = this.#buffer;
    this.#buffer = new Uint8Array(0);
    return rest;
  }

  /**
   * Reads an HTTP/1.1 response: status line and headers, then a body of
   * `content-length` bytes, or a chunked body, or (101) none.
   */
  async readResponse(ms: number = WAIT_MS): Promise<RawReply> {
    const deadline = Date.now() + ms;
    const head = await this.readUntil(
      encoder.encode("\r\n\r\n"),
      "an HTTP response head",
      deadline,
    );
    if (head === null) throw new Error("connection closed before a response");
    const lines = decoder.decode(head).split("\r\n");
    const match = /^HTTP\/1\.1 (\d{3})/.exec(lines[0]);
    if (!match) throw new Error(`bad status line: ${lines[0]}`);
    const status = Number(match[1]);
    const headers = new Headers();
    for (const line of lines.slice(1)) {
      if (line === "") continue;
      const colon = line.indexOf(":");
      headers.append(line.slice(0, colon).trim(), line.slice(colon + 1).trim());
    }
    let body = "";
    const length = headers.get("content-length");
    if (status === 101 || status === 204 || status === 304) {
      body = "";
    } else if (length !== null) {
      const bytes = await this.readExact(
        Number(length),
        "an HTTP body",
        deadline,
      );
      if (bytes === null) throw new Error("connection closed inside a body");
      body = decoder.decode(bytes);
    } else if (headers.get("transfer-encoding")?.includes("chunked")) {
      const parts: Uint8Array[] = [];
      for (;;) {
        const sizeLine = await this.readUntil(
          encoder.encode("\r\n"),
          "a chunk size",
          deadline,
        );
        if (sizeLine === null) throw new Error("connection closed in a chunk");
        const size = parseInt(decoder.decode(sizeLine), 16);
        const chunk = await this.readExact(size + 2, "a chunk", deadline);
        if (chunk === null) throw new Error("connection closed in a chunk");
        if (size === 0) break;
        parts.push(chunk.subarray(0, size));
      }
      body = parts.map((part) => decoder.decode(part)).join("");
    } else {
      body = decoder.decode(await this.readToEnd("an HTTP body", deadline));
    }
    return { status, headers, body };
  }

  /** Closes the connection (idempotent) and waits for a pending read. */
  async close(): Promise<void> {
    if (!this.#closed) {
      this.#closed = true;
      try {
        this.conn.close();
      } catch {
        // Already closed.
      }
    }
    const reading = this.#reading;
    this.#reading = undefined;
    if (reading) await reading.catch(() => null);
  }
}

/** What {@linkcode upgradeRequest} puts in besides the path. */
export interface UpgradeRequestOptions {
  /** The server's port on 127.0.0.1, for the Host header. */
  port: number;
  /** The `Sec-WebSocket-Key`; a fresh random one by default. */
  key?: string;
  /** More header lines, like `"Origin: http://evil.example"`. */
  headers?: string[];
}

/**
 * The opening handshake's request, as bytes to write to a raw socket.
 *
 * @example
 * ```ts
 * import { upgradeRequest } from "./raw_websocket.ts";
 * const bytes = upgradeRequest("/ws?username=ann", { port: 8080 });
 * new TextDecoder().decode(bytes).startsWith("GET /ws?username=ann"); // true
 * ```
 */
export function upgradeRequest(
  path: string,
  options: UpgradeRequestOptions,
): Uint8Array {
  return encoder.encode([
    `GET ${path} HTTP/1.1`,
    `Host: 127.0.0.1:${options.port}`,
    "Upgrade: websocket",
    "Connection: Upgrade",
    `Sec-WebSocket-Key: ${options.key ?? newKey()}`,
    "Sec-WebSocket-Version: 13",
    ...options.headers ?? [],
    "",
    "",
  ].join("\r\n"));
}

/** A fresh random `Sec-WebSocket-Key`. */
function newKey(): string {
  return btoa(
    String.fromCharCode(...crypto.getRandomValues(new Uint8Array(16))),
  );
}

/** The query string part of the chat path for `username`. */
function chatPath(username?: string): string {
  return username === undefined
    ? "/ws"
    : `/ws?username=${encodeURIComponent(username)}`;
}

/**
 * Sends a WebSocket upgrade for `username` over raw TCP and returns the
 * server's answer, then closes the connection. For checking refusals
 * (400, 409, 503) by their status line and body.
 *
 * @example
 * ```ts
 * import { rawUpgradeReply } from "./raw_websocket.ts";
 * const port = 8080; // a running server's
 * const reply = await rawUpgradeReply(port, "a<b");
 * reply.status; // 400
 * ```
 */
export function rawUpgradeReply(
  port: number,
  username?: string,
): Promise<RawReply> {
  return upgradeReplyAt(port, chatPath(username));
}

/**
 * Sends a WebSocket upgrade to any path, with extra header lines, over raw
 * TCP; returns the server's answer and closes the connection.
 *
 * @example
 * ```ts
 * import { upgradeReplyAt } from "./raw_websocket.ts";
 * const port = 8080; // a running server's
 * const origin = ["Origin: https://elsewhere.example"];
 * const reply = await upgradeReplyAt(port, "/ws?username=a", origin);
 * ```
 */
export async function upgradeReplyAt(
  port: number,
  path: string,
  extraHeaders: string[] = [],
): Promise<RawReply> {
  const connection = await RawConnection.connect(port);
  try {
    await connection.write(
      upgradeRequest(path, { port, headers: extraHeaders }),
    );
    return await connection.readResponse();
  } finally {
    await connection.close();
  }
}

/**
 * A WebSocket client on raw TCP. It does only what it is told: it reads
 * frames only when asked, answers pings only if asked, and can vanish
 * without a close frame. Frames it sends are masked, as a client's must be.
 *
 * @example
 * ```ts
 * import { RawWebSocket } from "./raw_websocket.ts";
 * const raw = await RawWebSocket.connect(8080, "ann");
 * await raw.next("the welcome"); // { type: "welcome", ... }
 * await raw.close(); // gone without a close frame
 * ```
 */
export class RawWebSocket {
  /** The TCP connection under it. */
  readonly connection: RawConnection;
  /** The 101 response. */
  readonly handshake: RawReply;
  /** Pings received while reading. */
  pings = 0;
  #queue: ServerMessage[] = [];

  private constructor(connection: RawConnection, handshake: RawReply) {
    this.connection = connection;
    this.handshake = handshake;
  }

  /**
   * Connects and completes the opening handshake (checking the 101 and its
   * `Sec-WebSocket-Accept`); reads nothing past the response head.
   */
  static async connect(
    port: number,
    username?: string,
    extraHeaders: string[] = [],
  ): Promise<RawWebSocket> {
    const connection = await RawConnection.connect(port);
    try {
      const key = newKey();
      await connection.write(
        upgradeRequest(chatPath(username), {
          port,
          key,
          headers: extraHeaders,
        }),
      );
      const reply = await connection.readResponse();
      assert.equal(
        reply.status,
        101,
        `raw upgrade refused: ${reply.status} ${reply.body}`,
      );
      assert.equal(
        reply.headers.get("sec-websocket-accept"),
        await expectedAccept(key),
      );
      return new RawWebSocket(connection, reply);
    } catch (error) {
      await connection.close();
      throw error;
    }
  }

  /** Sends one frame, masked. */
  async sendFrame(
    opcode: number,
    payload: Uint8Array,
    fin = true,
  ): Promise<void> {
    await this.connection.write(encodeFrame({ opcode, payload, fin }));
  }

  /** Sends a text frame. */
  sendText(text: string): Promise<void> {
    return this.connection.write(
      encodeFrame({ opcode: Opcode.text, payload: text }),
    );
  }

  /** Sends text frames back to back, all in one TCP write. */
  async sendTexts(texts: string[]): Promise<void> {
    const frames = texts.map((text) =>
      encodeFrame({ opcode: Opcode.text, payload: text })
    );
    await this.connection.write(concatBytes(frames));
  }

  /** Sends a close frame with a code and reason. */
  sendClose(code = 1000, reason = ""): Promise<void> {
    return this.sendFrame(Opcode.close, closePayload(code, reason));
  }

  /** Reads one frame; null if the connection ended. Server frames are unmasked. */
  async readFrame(ms: number = WAIT_MS): Promise<WsFrame | null> {
    const deadline = Date.now() + ms;
    const what = "a WebSocket frame";
    const head = await this.connection.readExact(2, what, deadline);
    if (head === null) return null;
    const fin = (head[0] & 0x80) !== 0;
    const opcode = head[0] & 0x0f;
    assert.equal(head[1] & 0x80, 0, "server frames must not be masked");
    let length = head[1] & 0x7f;
    if (length === 126) {
      const ext = await this.connection.readExact(2, what, deadline);
      if (ext === null) return null;
      length = new DataView(ext.buffer, ext.byteOffset, 2).getUint16(0);
    } else if (length === 127) {
      const ext = await this.connection.readExact(8, what, deadline);
      if (ext === null) return null;
      length = Number(
        new DataView(ext.buffer, ext.byteOffset, 8).getBigUint64(0),
      );
    }
    const payload = await this.connection.readExact(length, what, deadline);
    if (payload === null) return null;
    return { fin, opcode, payload: payload.slice() };
  }

  /**
   * Reads frames until a text message or a close frame (pings are counted,
   * and answered only if `answerPings`). Returns the text message's
   * messages, or the close code and reason, or null when the connection
   * ended without a close frame.
   */
  async readEvent(
    options: { answerPings?: boolean; ms?: number } = {},
  ): Promise<
    | { kind: "messages"; messages: ServerMessage[] }
    | { kind: "close"; code: number; reason: string }
    | null
  > {
    const deadline = Date.now() + (options.ms ?? WAIT_MS);
    let parts: Uint8Array[] = [];
    for (;;) {
      const frame = await this.readFrame(Math.max(1, deadline - Date.now()));
      if (frame === null) return null;
      switch (frame.opcode) {
        case Opcode.ping:
          this.pings++;
          if (options.answerPings) {
            await this.sendFrame(Opcode.pong, frame.payload);
          }
          continue;
        case Opcode.pong:
          continue;
        case Opcode.close: {
          const view = new DataView(
            frame.payload.buffer,
            frame.payload.byteOffset,
            frame.payload.length,
          );
          const code = frame.payload.length >= 2 ? view.getUint16(0) : 1005;
          const reason = decoder.decode(frame.payload.subarray(2));
          return { kind: "close", code, reason };
        }
        case Opcode.text:
        case Opcode.continuation:
          parts.push(frame.payload);
          if (!frame.fin) continue;
          {
            const bytes = concatBytes(parts);
            parts = [];
            return {
              kind: "messages",
              messages: parseFrame(decoder.decode(bytes)),
            };
          }
        default:
          throw new Error(`unexpected opcode ${frame.opcode} from server`);
      }
    }
  }

  /**
   * The next message, read as a well-behaved client would: pings are
   * answered, frames are split into messages. Throws if the connection
   * ends (with or without a close frame) first.
   */
  async next(what = "a message", ms: number = WAIT_MS): Promise<ServerMessage> {
    const deadline = Date.now() + ms;
    while (this.#queue.length === 0) {
      const event = await this.readEvent({
        answerPings: true,
        ms: Math.max(1, deadline - Date.now()),
      }).catch((error: Error) => {
        throw new Error(`${what}: ${error.message}`);
      });
      if (event === null || event.kind === "close") {
        throw new Error(
          `connection ended before ${what}: ${JSON.stringify(event)}`,
        );
      }
      this.#queue.push(...event.messages);
    }
    return this.#queue.shift()!;
  }

  /** Drops the TCP connection, with no close frame. */
  close(): Promise<void> {
    return this.connection.close();
  }
}

/**
 * A minimal WebSocket client over raw TCP, for the load and soak tools.
 *
 * Deno's WebSocket dispatches one MessageEvent per frame, which costs more
 * than everything else the tool does per delivery (profiled: ~50 % of its
 * CPU). Reading the socket ourselves costs one op per read of many frames,
 * and the frames are scanned as bytes, never decoded.
 *
 * @module
 */

import { indexOfBytes } from "./bytes.ts";
import { withTimeout } from "./wait.ts";
import { closePayload, encodeFrame, Opcode } from "./ws_frame.ts";

const encoder = new TextEncoder();

/** Read buffers of all clients together stay under this: 64 MiB. */
const READ_BUFFER_BUDGET = 64 * 1024 * 1024;

/** Largest per-client read buffer: 64 KiB, a socket buffer's worth. */
const MAX_READ_BUFFER = 64 * 1024;

/** Smallest per-client read buffer: 4 KiB, a page. */
const MIN_READ_BUFFER = 4 * 1024;

/**
 * Each client's read buffer when `clients` read at once: a socket buffer's
 * worth, less when that would take all of them over 64 MiB, never under a
 * page.
 *
 * @example
 * ```ts
 * import { readBufferSize } from "./ws_client.ts";
 * readBufferSize(100); // 65536
 * readBufferSize(10_000); // 6710
 * ```
 */
export function readBufferSize(clients: number): number {
  return Math.max(
    MIN_READ_BUFFER,
    Math.min(MAX_READ_BUFFER, Math.floor(READ_BUFFER_BUDGET / clients)),
  );
}

/** Largest server frame accepted: a welcome to 100,000 users fits. */
const MAX_FRAME_BYTES = 64 * 1024 * 1024;

/** Largest HTTP response head accepted during the handshake. */
const MAX_HANDSHAKE_BYTES = 16 * 1024;

/** A connection past its HTTP 101, with bytes already read after the head. */
export interface Handshake {
  /** The upgraded connection. */
  conn: Deno.Conn;
  /** Bytes read past the response head (the first frames, maybe). */
  rest: Uint8Array;
}

/**
 * Connects and upgrades to WebSocket by hand. Throws an Error saying what
 * the server answered (e.g. `HTTP 409`) or that it timed out.
 *
 * @example
 * ```ts
 * import { handshake } from "./ws_client.ts";
 * const { conn } = await handshake("ws://127.0.0.1:8080/ws", "ann", 10_000);
 * conn.close();
 * ```
 */
export async function handshake(
  wsUrl: string,
  username: string,
  timeoutMs: number,
): Promise<Handshake> {
  const url = new URL(wsUrl);
  url.searchParams.set("username", username);
  const port = Number(url.port || (url.protocol === "wss:" ? 443 : 80));
  const hostname = url.hostname.replace(/^\[|\]$/g, "");
  const conn = url.protocol === "wss:"
    ? await Deno.connectTls({ hostname, port })
    : await Deno.connect({ hostname, port });
  const key = btoa(
    String.fromCharCode(...crypto.getRandomValues(new Uint8Array(16))),
  );
  const request = `GET ${url.pathname}${url.search} HTTP/1.1\r\n` +
    `Host: ${url.host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
    `Sec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n\r\n`;
  let pending: Promise<number | null> | null = null;
  try {
    await conn.write(encoder.encode(request));
    const buf = new Uint8Array(MAX_HANDSHAKE_BYTES);
    let got = 0;
    const deadline = performance.now() + timeoutMs;
    let headEnd = -1;
    while (headEnd === -1) {
      if (got === buf.length) {
        throw new Error(`HTTP response head over ${buf.length} bytes`);
      }
      const left = deadline - performance.now();
      if (left <= 0) throw new Error("timeout waiting for HTTP 101");
      pending = conn.read(buf.subarray(got));
      const n = await withTimeout(pending, left, -1);
      if (n === -1) throw new Error("timeout waiting for HTTP 101");
      pending = null;
      if (n === null) throw new Error("server closed during the handshake");
      got += n;
      const at = indexOfBytes(buf, CRLFCRLF, Math.max(0, got - n - 3), got);
      if (at !== -1) headEnd = at + 4;
    }
    const head = new TextDecoder("latin1").decode(buf.subarray(0, headEnd));
    const status = head.slice(0, head.indexOf("\r\n"));
    if (!/^HTTP\/1\.[01] 101/.test(status)) {
      const body = new TextDecoder().decode(buf.subarray(headEnd, got));
      throw new Error(`${status.slice(9)} ${body.slice(0, 80)}`.trim());
    }
    return { conn, rest: buf.slice(headEnd, got) };
  } catch (error) {
    try {
      conn.close();
    } catch {
      // Already closed.
    }
    if (pending !== null) await pending.catch(() => null);
    throw error;
  }
}

const CRLFCRLF = encoder.encode("\r\n\r\n");

/** Called with each complete text frame: `buf[start, end)` is its payload. */
export type TextHandler = (
  buf: Uint8Array,
  start: number,
  end: number,
  now: number,
) => void;

/**
 * One client connection: reads frames, answers pings, writes in order.
 *
 * @example
 * ```ts
 * import { handshake, RawClient } from "./ws_client.ts";
 * const shake = await handshake("ws://127.0.0.1:8080/ws", "ann", 10_000);
 * const client = new RawClient(shake, {
 *   onText: (buf, start, end) => console.log(end - start, "bytes"),
 *   onEnd: () => console.log("closed"),
 *   bufferSize: 65_536,
 * });
 * await client.close(5_000);
 * ```
 */
export class RawClient {
  /** Close code from the server's close frame, if it sent one. */
  serverCloseCode: number | null = null;
  /** True once the read loop ended (EOF, error or close); the socket is closed then. */
  ended = false;
  #conn: Deno.Conn;
  #onText: TextHandler;
  #onEnd: () => void;
  #out: Uint8Array[] = [];
  #writing: Promise<void> | null = null;
  #sentClose = false;
  #closed = false;
  #reading: Promise<void>;
  #fragments: Uint8Array[] = [];

  /** Starts reading `shake`'s connection; `onEnd` runs once it is over. */
  constructor(
    shake: Handshake,
    handlers: { onText: TextHandler; onEnd: () => void; bufferSize: number },
  ) {
    this.#conn = shake.conn;
    this.#onText = handlers.onText;
    this.#onEnd = handlers.onEnd;
    this.#reading = this.#readLoop(shake.rest, handlers.bufferSize);
  }

  /** Queues a frame; frames leave in order, batched into few writes. */
  send(frame: Uint8Array): void {
    if (this.#sentClose || this.#closed) return;
    this.#out.push(frame);
    if (this.#writing === null) this.#writing = this.#flush();
  }

  async #flush(): Promise<void> {
    try {
      while (this.#out.length > 0 && !this.#closed) {
        let chunk: Uint8Array;
        if (this.#out.length === 1) chunk = this.#out[0];
        else {
          let size = 0;
          for (const f of this.#out) size += f.length;
          chunk = new Uint8Array(size);
          let at = 0;
          for (const f of this.#out) {
            chunk.set(f, at);
            at += f.length;
          }
        }
        this.#out = [];
        let off = 0;
        while (off < chunk.length) {
          off += await this.#conn.write(chunk.subarray(off));
        }
      }
    } catch {
      // The connection is gone; the read loop reports it.
      this.#out = [];
    } finally {
      this.#writing = null;
    }
  }

  async #readLoop(first: Uint8Array, bufferSize: number): Promise<void> {
    let buf = new Uint8Array(Math.max(bufferSize, first.length));
    buf.set(first);
    let have = first.length;
    try {
      let parseNow = have > 0;
      for (;;) {
        if (!parseNow) {
          const n = await this.#conn.read(buf.subarray(have));
          if (n === null) break;
          have += n;
        }
        parseNow = false;
        const now = performance.now();
        let pos = 0;
        while (have - pos >= 2) {
          const b0 = buf[pos];
          const b1 = buf[pos + 1];
          const len7 = b1 & 0x7f;
          const masked = (b1 & 0x80) !== 0;
          const head = 2 + (len7 === 126 ? 2 : len7 === 127 ? 8 : 0) +
            (masked ? 4 : 0);
          if (have - pos < head) break;
          let len = len7;
          if (len7 === 126) len = buf[pos + 2] * 256 + buf[pos + 3];
          else if (len7 === 127) {
            len = 0;
            for (let j = 2; j < 10; j++) len = len * 256 + buf[pos + j];
          }
          if (len > MAX_FRAME_BYTES) {
            throw new Error(`server frame of ${len} bytes`);
          }
          if (head + len > buf.length - pos) {
            // Too big to fit where it starts: move it to a larger buffer.
            let size = buf.length;
            while (size < head + len) size *= 2;
            const bigger = new Uint8Array(size);
            bigger.set(buf.subarray(pos, have));
            buf = bigger;
            have -= pos;
            pos = 0;
            break;
          }
          if (have - pos < head + len) break;
          const start = pos + head;
          const end = start + len;
          if (masked) {
            for (let j = start; j < end; j++) {
              buf[j] ^= buf[start - 4 + ((j - start) & 3)];
            }
          }
          this.#frame(b0, buf, start, end, now);
          pos = end;
        }
        if (pos > 0) {
          buf.copyWithin(0, pos, have);
          have -= pos;
        }
        if (have === 0 && buf.length > bufferSize) {
          buf = new Uint8Array(bufferSize);
        }
      }
    } catch {
      // Reset, closed under us, or garbage: the connection is over.
    }
    this.ended = true;
    // Free the socket now: an owner that drops a client its server ended
    // (soak's reconnects replace it) would otherwise never close it.
    this.#closeConn();
    this.#onEnd();
  }

  /** Closes the TCP connection once; later sends are dropped. */
  #closeConn(): void {
    if (this.#closed) return;
    this.#closed = true;
    try {
      this.#conn.close();
    } catch {
      // Already closed.
    }
  }

  #frame(
    b0: number,
    buf: Uint8Array,
    start: number,
    end: number,
    now: number,
  ): void {
    const fin = (b0 & 0x80) !== 0;
    const opcode = b0 & 0x0f;
    if (opcode === 1 && fin) {
      this.#onText(buf, start, end, now);
    } else if (opcode === 1 || opcode === 0) {
      this.#fragments.push(buf.slice(start, end));
      if (fin) {
        let size = 0;
        for (const f of this.#fragments) size += f.length;
        const whole = new Uint8Array(size);
        let at = 0;
        for (const f of this.#fragments) {
          whole.set(f, at);
          at += f.length;
        }
        this.#fragments = [];
        this.#onText(whole, 0, size, now);
      }
    } else if (opcode === 9) {
      this.send(
        encodeFrame({
          opcode: Opcode.pong,
          payload: buf.subarray(start, end),
          mask: "zero",
        }),
      );
    } else if (opcode === 8) {
      this.serverCloseCode = end - start >= 2
        ? buf[start] * 256 + buf[start + 1]
        : 1005;
      if (!this.#sentClose) {
        this.send(
          encodeFrame({
            opcode: Opcode.close,
            payload: buf.subarray(start, Math.min(end, start + 2)),
            mask: "zero",
          }),
        );
        this.#sentClose = true;
      }
    }
  }

  /**
   * Closing handshake (code 1000), then the TCP close; waits at most
   * `capMs` for the server's answer.
   */
  async close(capMs: number): Promise<void> {
    if (!this.#closed) {
      if (!this.#sentClose && !this.ended) {
        this.send(
          encodeFrame({
            opcode: Opcode.close,
            payload: closePayload(1000),
            mask: "zero",
          }),
        );
        this.#sentClose = true;
      }
      await withTimeout(this.#reading, capMs, undefined);
      this.#closeConn();
    }
    await this.#reading;
    if (this.#writing !== null) await this.#writing;
  }
}

/**
 * Finds WebSocket close frames in a server-to-client byte stream fed in
 * pieces of any size (a stalled client's backlog): headers are read, every
 * payload skipped but a close frame's code.
 *
 * @example
 * ```ts
 * import { FrameScanner } from "./ws_client.ts";
 * const scanner = new FrameScanner();
 * scanner.push(new Uint8Array([0x81, 1, 0x41, 0x88, 2, 0x0f])); // text "A", close...
 * scanner.push(new Uint8Array([0xa8])); // ...code 4008
 * scanner.closeCode; // 4008
 * ```
 */
export class FrameScanner {
  /** The code of the last close frame seen (1005 if it had none), or null. */
  closeCode: number | null = null;
  #header: number[] = [];
  #skip = 0;
  #inClose = false;
  #closePayload: number[] = [];

  /** Reads the next bytes of the stream. */
  push(chunk: Uint8Array): void {
    let i = 0;
    while (i < chunk.length) {
      if (this.#skip > 0) {
        const n = Math.min(this.#skip, chunk.length - i);
        if (this.#inClose) {
          for (let j = 0; j < n && this.#closePayload.length < 2; j++) {
            this.#closePayload.push(chunk[i + j]);
          }
        }
        i += n;
        this.#skip -= n;
        if (this.#skip === 0 && this.#inClose) this.#finishClose();
        continue;
      }
      this.#header.push(chunk[i++]);
      if (this.#header.length < 2) continue;
      const len7 = this.#header[1] & 0x7f;
      const need = 2 + (len7 === 126 ? 2 : len7 === 127 ? 8 : 0) +
        ((this.#header[1] & 0x80) ? 4 : 0);
      if (this.#header.length < need) continue;
      let length = len7;
      if (len7 === 126) length = this.#header[2] * 256 + this.#header[3];
      if (len7 === 127) {
        length = 0;
        for (let j = 2; j < 10; j++) length = length * 256 + this.#header[j];
      }
      this.#inClose = (this.#header[0] & 0x0f) === 8;
      this.#closePayload = [];
      this.#header = [];
      this.#skip = length;
      if (length === 0 && this.#inClose) this.#finishClose();
    }
  }

  #finishClose(): void {
    this.closeCode = this.#closePayload.length === 2
      ? this.#closePayload[0] * 256 + this.#closePayload[1]
      : 1005;
    this.#inClose = false;
  }
}

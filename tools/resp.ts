/**
 * Just enough of Redis's wire protocol (RESP2) for the tools and the tests
 * to ask a redis-server they started whether it is up, and to set and read
 * a key: commands encoded as arrays of bulk strings, and replies decoded
 * (simple strings, errors, integers, bulk strings, arrays, nulls). One
 * command per connection, every step bounded in time.
 *
 * This is not a Redis client for the server (hubchat uses
 * npm:@redis/client): no pipelining, no pub/sub, no RESP3, no binary values.
 *
 * @module
 */

import { withTimeout } from "./wait.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** A reply: text, an integer, null (nil), or an array of replies. */
export type RespReply = string | number | null | RespReply[];

/**
 * An error reply (`-ERR ...`, `-LOADING ...`): its text, with the error's
 * kind (the first word, like `ERR` or `LOADING`) apart.
 *
 * @example
 * ```ts
 * import { RespError } from "./resp.ts";
 * const error = new RespError("LOADING Redis is loading the dataset");
 * error.kind; // "LOADING"
 * ```
 */
export class RespError extends Error {
  /** The first word of the reply: `ERR`, `WRONGTYPE`, `LOADING`... */
  readonly kind: string;

  /** An error reply's text, without the leading `-`. */
  constructor(text: string) {
    super(text);
    this.name = "RespError";
    this.kind = text.split(" ", 1)[0];
  }
}

/**
 * A command as Redis reads it: an array of bulk strings.
 *
 * @example
 * ```ts
 * import { encodeCommand } from "./resp.ts";
 * new TextDecoder().decode(encodeCommand(["GET", "k"]));
 * // "*2\r\n$3\r\nGET\r\n$1\r\nk\r\n"
 * ```
 */
export function encodeCommand(args: readonly string[]): Uint8Array {
  let text = `*${args.length}\r\n`;
  for (const arg of args) {
    text += `$${encoder.encode(arg).length}\r\n${arg}\r\n`;
  }
  return encoder.encode(text);
}

/** One decoded reply and where the bytes after it start. */
export interface Decoded {
  /** The reply (an error reply is a {@linkcode RespError}). */
  value: RespReply | RespError;
  /** Offset of the first byte after the reply. */
  end: number;
}

/** CR LF, the end of every RESP header line. */
const CRLF = [13, 10] as const;

/** Where the CR LF that ends the line starting at `from` is, or -1. */
function lineEnd(buf: Uint8Array, from: number): number {
  for (let i = from; i + 1 < buf.length; i++) {
    if (buf[i] === CRLF[0] && buf[i + 1] === CRLF[1]) return i;
  }
  return -1;
}

/**
 * Decodes one reply at `offset`; null when `buf` does not hold all of it
 * yet. Throws an Error for bytes that are not RESP2.
 *
 * @example
 * ```ts
 * import { decodeReply } from "./resp.ts";
 * const bytes = new TextEncoder().encode("*2\r\n:1\r\n$-1\r\n");
 * decodeReply(bytes); // { value: [1, null], end: 13 }
 * decodeReply(bytes.subarray(0, 6)); // null: more to come
 * ```
 */
export function decodeReply(buf: Uint8Array, offset = 0): Decoded | null {
  const stop = lineEnd(buf, offset + 1);
  if (offset >= buf.length || stop < 0) return null;
  const type = String.fromCharCode(buf[offset]);
  const line = decoder.decode(buf.subarray(offset + 1, stop));
  const next = stop + 2;
  switch (type) {
    case "+":
      return { value: line, end: next };
    case "-":
      return { value: new RespError(line), end: next };
    case ":":
      return { value: Number(line), end: next };
    case "$": {
      const length = Number(line);
      if (length < 0) return { value: null, end: next };
      if (buf.length < next + length + 2) return null;
      const text = decoder.decode(buf.subarray(next, next + length));
      return { value: text, end: next + length + 2 };
    }
    case "*": {
      const length = Number(line);
      if (length < 0) return { value: null, end: next };
      const items: RespReply[] = [];
      let at = next;
      for (let i = 0; i < length; i++) {
        const item = decodeReply(buf, at);
        if (item === null) return null;
        if (item.value instanceof RespError) throw item.value;
        items.push(item.value);
        at = item.end;
      }
      return { value: items, end: at };
    }
    default:
      throw new Error(
        `a Redis reply starts with "${type}" (byte ${
          buf[offset]
        }); expected one of + - : $ *`,
      );
  }
}

/** Bytes read from Redis at a time: replies here are small. */
const READ_CHUNK = 16 * 1024;

/**
 * Sends one command to the Redis at `127.0.0.1:port` on a connection of its
 * own and resolves with the reply; throws a {@linkcode RespError} for an
 * error reply, and an Error when there is no reply within `timeoutMs` (the
 * connection is closed either way).
 *
 * @example
 * ```ts ignore
 * import { respCommand } from "./resp.ts";
 * await respCommand(6379, ["SET", "k", "v"]); // "OK"
 * await respCommand(6379, ["GET", "k"]); // "v"
 * ```
 */
export async function respCommand(
  port: number,
  args: readonly string[],
  timeoutMs: number,
): Promise<RespReply> {
  const conn = await withTimeout(
    Deno.connect({ hostname: "127.0.0.1", port }),
    timeoutMs,
    null,
  );
  if (conn === null) {
    throw new Error(
      `Redis on 127.0.0.1:${port} did not accept a connection within ${timeoutMs} ms`,
    );
  }
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    conn.close(); // ends the pending read
  }, timeoutMs);
  try {
    await conn.write(encodeCommand(args));
    let buf = new Uint8Array(0);
    const chunk = new Uint8Array(READ_CHUNK);
    for (;;) {
      const n = await conn.read(chunk).catch(() => null);
      if (n === null) {
        throw new Error(
          `Redis on 127.0.0.1:${port} closed the connection or took over ${timeoutMs} ms ` +
            `to answer ${args[0]}; expected a reply`,
        );
      }
      const joined = new Uint8Array(buf.length + n);
      joined.set(buf);
      joined.set(chunk.subarray(0, n), buf.length);
      buf = joined;
      const reply = decodeReply(buf);
      if (reply === null) continue;
      if (reply.value instanceof RespError) throw reply.value;
      return reply.value;
    }
  } finally {
    clearTimeout(timer);
    if (!timedOut) conn.close();
  }
}

/**
 * An HTTP upload over a raw TCP socket, for tests that need what `fetch`
 * hides: how much of a body the server took before it answered, whether it
 * closed the connection instead of reading the rest.
 *
 * @module
 */

import { sleep, withTimeout } from "../tools/wait.ts";

/** What to offer: a request head and a body of `total` bytes. */
export interface OfferOptions {
  /** The port of a server on 127.0.0.1. */
  port: number;
  /** Path and query, like `/files?room=lobby`. */
  path: string;
  /** Request headers (`host` is added). */
  headers: Record<string, string>;
  /** Bytes of body offered in all. */
  total: number;
  /** Send `Transfer-Encoding: chunked` instead of a `Content-Length`. */
  chunked?: boolean;
  /** Give up (and close) after this many milliseconds. Default 20 s. */
  timeoutMs?: number;
}

/** What came of an offer. */
export interface OfferResult {
  /** The response's status, or 0 when none came. */
  status: number;
  /** The response as received (head and body). */
  response: string;
  /** Bytes of body the server accepted before the socket stopped taking them. */
  sent: number;
  /** True when the server closed (or reset) the connection. */
  closed: boolean;
}

/** Bytes written per call: 64 KiB of the letter "a". */
const PIECE = new Uint8Array(64 * 1024).fill(97);

/**
 * Offers an upload and reads the answer while sending: sending stops when
 * the server closes the connection, when `stopAfter` or `total` is reached
 * (then it waits for the answer), or at the timeout. The socket is closed
 * before it returns.
 *
 * @example
 * ```ts
 * import { offerUpload } from "./raw_upload.ts";
 * const result = await offerUpload({
 *   port: 8080,
 *   path: "/files?room=lobby",
 *   headers: { authorization: "Bearer 0123456789abcdef0123456789abcdef" },
 *   total: 1024 ** 3,
 * });
 * console.log(result.status, result.sent, result.closed);
 * ```
 */
export async function offerUpload(options: OfferOptions): Promise<OfferResult> {
  const conn = await Deno.connect({
    hostname: "127.0.0.1",
    port: options.port,
  });
  const deadline = performance.now() + (options.timeoutMs ?? 20_000);
  const head = [`POST ${options.path} HTTP/1.1`, "host: 127.0.0.1"];
  for (const [name, value] of Object.entries(options.headers)) {
    head.push(`${name}: ${value}`);
  }
  head.push(
    options.chunked
      ? "transfer-encoding: chunked"
      : `content-length: ${options.total}`,
  );
  const result: OfferResult = {
    status: 0,
    response: "",
    sent: 0,
    closed: false,
  };
  const reading = (async () => {
    const buffer = new Uint8Array(4096);
    const decoder = new TextDecoder();
    try {
      for (;;) {
        const read = await conn.read(buffer);
        if (read === null) break;
        result.response += decoder.decode(buffer.subarray(0, read));
        result.status ||= Number(
          /^HTTP\/1\.1 (\d{3})/.exec(result.response)?.[1] ?? 0,
        );
      }
    } catch {
      // Reset by the server: closed all the same.
    }
    result.closed = true;
  })();
  const stopAt = options.total;
  try {
    await writeAll(
      conn,
      new TextEncoder().encode(head.join("\r\n") + "\r\n\r\n"),
    );
    while (
      result.sent < stopAt && !result.closed && performance.now() < deadline
    ) {
      const piece = PIECE.subarray(
        0,
        Math.min(PIECE.length, stopAt - result.sent),
      );
      const write = writeAll(conn, options.chunked ? chunk(piece) : piece)
        .then(() => true, () => false);
      // A server that neither reads nor closes leaves the write pending;
      // withTimeout clears its timer when the write settles first.
      const done = await withTimeout(write, 500, null);
      if (done === null) {
        if (result.status !== 0) break;
        if (!(await write)) break;
      } else if (!done) {
        break;
      }
      result.sent += piece.length;
    }
    if (options.chunked && result.sent === options.total && !result.closed) {
      await writeAll(conn, new TextEncoder().encode("0\r\n\r\n"));
    }
  } catch {
    // The server closed the connection while we wrote.
  }
  while (
    !result.closed && result.status === 0 && performance.now() < deadline
  ) {
    await sleep(10);
  }
  // A closing server closes within moments of answering.
  for (let waited = 0; !result.closed && waited < 1000; waited += 10) {
    await sleep(10);
  }
  try {
    conn.close();
  } catch {
    // Closed already.
  }
  await reading;
  return result;
}

/** A piece as one chunk of a chunked body. */
function chunk(piece: Uint8Array): Uint8Array {
  const size = new TextEncoder().encode(piece.length.toString(16) + "\r\n");
  const framed = new Uint8Array(size.length + piece.length + 2);
  framed.set(size);
  framed.set(piece, size.length);
  framed.set([13, 10], size.length + piece.length);
  return framed;
}

async function writeAll(conn: Deno.Conn, bytes: Uint8Array): Promise<void> {
  let offset = 0;
  while (offset < bytes.length) {
    offset += await conn.write(bytes.subarray(offset));
  }
}

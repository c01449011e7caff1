/**
 * The chat lines the load and soak tools send and read: each run's texts
 * carry its id, sender, sequence number and send time
 * (`<run>:<sender>:<seq>:<µs>:xxx`), and each line a server sends is
 * classified from its bytes, without JSON.parse.
 *
 * @module
 */

import { bytesAt, indexOfBytes } from "./bytes.ts";
import { encodeFrame, Opcode } from "./ws_frame.ts";

/** What one line of a server frame turned out to be. */
export type LineKind =
  | "message"
  | "foreign"
  | "join"
  | "leave"
  | "welcome"
  | "error"
  | "other";

/** One line of a server frame, as {@linkcode parseServerLine} sees it. */
export interface ParsedLine {
  /** The line's type. */
  kind: LineKind;
  /** For `message`: sender index. */
  sender: number;
  /** For `message`: sequence number. */
  seq: number;
  /** For `message`: send time, µs of `performance.now()`. */
  sentUs: number;
}

/**
 * Four random base-36 characters that mark one run's texts, so lines from
 * other runs or other people are told apart.
 *
 * @example
 * ```ts
 * import { runId } from "./chat_lines.ts";
 * runId(); // e.g. "k3x9"
 * ```
 */
export function runId(): string {
  const n = crypto.getRandomValues(new Uint32Array(1))[0] % 36 ** 4;
  return n.toString(36).padStart(4, "0");
}

/**
 * Builds a chat text of exactly `size` ASCII bytes:
 * `<run>:<sender>:<seq>:<sentUs>:` padded with `x`.
 *
 * @example
 * ```ts
 * import { encodeText } from "./chat_lines.ts";
 * encodeText("ab12", { sender: 0, seq: 7, sentUs: 1234, size: 40 });
 * // "ab12:0:7:1234:xxxxxxxxxxxxxxxxxxxxxxxxxx"
 * ```
 */
export function encodeText(
  run: string,
  fields: { sender: number; seq: number; sentUs: number; size: number },
): string {
  const head = `${run}:${fields.sender}:${fields.seq}:${fields.sentUs}:`;
  if (head.length >= fields.size) return head;
  return head + "x".repeat(fields.size - head.length);
}

/**
 * The frame that sends `text` (a run's ASCII text, see {@linkcode
 * encodeText}) as a chat message. The all-zero mask leaves the payload as
 * it is: no pass over it.
 *
 * @example
 * ```ts
 * import { messageFrame } from "./chat_lines.ts";
 * messageFrame("hi").length; // 2 + 4 + 31
 * ```
 */
export function messageFrame(text: string): Uint8Array {
  return encodeFrame({
    opcode: Opcode.text,
    payload: `{"type":"message","text":"${text}"}`,
    mask: "zero",
  });
}

const encoder = new TextEncoder();

const decoder = new TextDecoder();

const TYPE_KEY = encoder.encode('"type":"');

const TEXT_KEY = encoder.encode('"text":"');

const TYPE_MESSAGE = encoder.encode('message"');

const TYPE_JOIN = encoder.encode('join"');

const TYPE_LEAVE = encoder.encode('leave"');

const TYPE_WELCOME = encoder.encode('welcome"');

const TYPE_ERROR = encoder.encode('error"');

/** Where {@linkcode scanUint} leaves the number it read. */
const scratchNumber = [0];

/** Reads decimal digits ending with `:`; the position after it, or -1. */
function scanUint(buf: Uint8Array, pos: number, end: number): number {
  let value = 0;
  let i = pos;
  for (; i < end; i++) {
    const c = buf[i];
    if (c === 58) break; // ":"
    if (c < 48 || c > 57) return -1;
    value = value * 10 + (c - 48);
  }
  if (i === pos || i >= end) return -1;
  scratchNumber[0] = value;
  return i + 1;
}

/**
 * Classifies one line of a frame (one JSON message, as UTF-8 bytes) without
 * JSON.parse: finds `"type":"` and, for messages, `"text":"`. A JSON string
 * cannot hold an unescaped `"`, so the first `"type":"` is the real key, and
 * the run's texts are plain ASCII. Fills `out` for messages of `run`.
 *
 * @example
 * ```ts
 * import { type ParsedLine, scanLine } from "./chat_lines.ts";
 * const bytes = new TextEncoder().encode('{"type":"message","text":"ab12:0:7:99:x"}');
 * const out: ParsedLine = { kind: "other", sender: 0, seq: 0, sentUs: 0 };
 * scanLine(bytes, 0, bytes.length, new TextEncoder().encode("ab12"), out);
 * // "message"; out.seq is 7
 * ```
 */
export function scanLine(
  buf: Uint8Array,
  start: number,
  end: number,
  run: Uint8Array,
  out: ParsedLine,
): LineKind {
  const t = indexOfBytes(buf, TYPE_KEY, start, end);
  if (t === -1) return "other";
  const v = t + TYPE_KEY.length;
  const c = buf[v];
  if (c === 109 /* m */ && bytesAt(buf, TYPE_MESSAGE, v, end)) {
    const k = indexOfBytes(buf, TEXT_KEY, start, end);
    if (k === -1) return "foreign";
    let p = k + TEXT_KEY.length;
    if (!bytesAt(buf, run, p, end) || buf[p + run.length] !== 58) {
      return "foreign";
    }
    p = scanUint(buf, p + run.length + 1, end);
    if (p < 0) return "foreign";
    out.sender = scratchNumber[0];
    p = scanUint(buf, p, end);
    if (p < 0) return "foreign";
    out.seq = scratchNumber[0];
    p = scanUint(buf, p, end);
    if (p < 0) return "foreign";
    out.sentUs = scratchNumber[0];
    return "message";
  }
  if (c === 106 /* j */ && bytesAt(buf, TYPE_JOIN, v, end)) return "join";
  if (c === 108 /* l */ && bytesAt(buf, TYPE_LEAVE, v, end)) return "leave";
  if (c === 119 /* w */ && bytesAt(buf, TYPE_WELCOME, v, end)) {
    return "welcome";
  }
  if (c === 101 /* e */ && bytesAt(buf, TYPE_ERROR, v, end)) return "error";
  return "other";
}

/**
 * Classifies one server line (one JSON message) the way the load tool's fast
 * path does; for messages of this run it also gives sender, seq, send time.
 *
 * @example
 * ```ts
 * import { parseServerLine } from "./chat_lines.ts";
 * parseServerLine(
 *   '{"type":"message","username":"u","text":"ab12:0:7:99:xx","timestamp":"t"}',
 *   "ab12",
 * ); // { kind: "message", sender: 0, seq: 7, sentUs: 99 }
 * ```
 */
export function parseServerLine(line: string, run: string): ParsedLine {
  const out: ParsedLine = { kind: "other", sender: -1, seq: -1, sentUs: -1 };
  const bytes = encoder.encode(line);
  out.kind = scanLine(bytes, 0, bytes.length, encoder.encode(run), out);
  return out;
}

/**
 * Calls `each` with the bounds of every non-empty `\n`-separated line in
 * `buf[from, to)`: the lines of one frame, in place.
 *
 * @example
 * ```ts
 * import { forEachLine } from "./chat_lines.ts";
 * const buf = new TextEncoder().encode("a\n\nbc");
 * forEachLine(buf, 0, buf.length, (start, end) => console.log(start, end));
 * // 0 1, then 3 5
 * ```
 */
export function forEachLine(
  buf: Uint8Array,
  from: number,
  to: number,
  each: (start: number, end: number) => void,
): void {
  let start = from;
  while (start < to) {
    // A plain loop: TypedArray#indexOf has no end bound and would run on
    // into the next frames of the read buffer.
    let end = start;
    while (end < to && buf[end] !== 10) end++;
    if (end > start) each(start, end);
    start = end + 1;
  }
}

/**
 * The `code` of a server `error` line, for counting; "unparseable_line"
 * when the line is not JSON.
 *
 * @example
 * ```ts
 * import { errorCode } from "./chat_lines.ts";
 * const line = new TextEncoder().encode('{"type":"error","code":"rate_limited"}');
 * errorCode(line, 0, line.length); // "rate_limited"
 * ```
 */
export function errorCode(buf: Uint8Array, start: number, end: number): string {
  try {
    return String(JSON.parse(decoder.decode(buf.subarray(start, end))).code);
  } catch {
    return "unparseable_line";
  }
}

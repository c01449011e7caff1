/**
 * Byte-string search in place, for scanning frames without decoding them.
 *
 * @module
 */

/**
 * First index of `pattern` in `buf[from, to)`, or -1.
 *
 * @example
 * ```ts
 * import { indexOfBytes } from "./bytes.ts";
 * const buf = new TextEncoder().encode("ab\r\n\r\nc");
 * indexOfBytes(buf, new TextEncoder().encode("\r\n\r\n"), 0, buf.length); // 2
 * ```
 */
export function indexOfBytes(
  buf: Uint8Array,
  pattern: Uint8Array,
  from: number,
  to: number,
): number {
  const first = pattern[0];
  const last = to - pattern.length;
  outer: for (let i = from; i <= last; i++) {
    if (buf[i] !== first) continue;
    for (let j = 1; j < pattern.length; j++) {
      if (buf[i + j] !== pattern[j]) continue outer;
    }
    return i;
  }
  return -1;
}

/**
 * True when `buf` holds `pattern` at `at`, entirely before `end`.
 *
 * @example
 * ```ts
 * import { bytesAt } from "./bytes.ts";
 * const buf = new TextEncoder().encode('"type":"join"');
 * bytesAt(buf, new TextEncoder().encode('join"'), 8, buf.length); // true
 * ```
 */
export function bytesAt(
  buf: Uint8Array,
  pattern: Uint8Array,
  at: number,
  end: number,
): boolean {
  if (at + pattern.length > end) return false;
  for (let j = 0; j < pattern.length; j++) {
    if (buf[at + j] !== pattern[j]) return false;
  }
  return true;
}

/**
 * An entry's checks, for store/history.ts: whether an append can be
 * stored, found out before it is given an id, so that a refused one uses
 * none; and the stored line an entry makes, wherever one is made.
 *
 * @module
 */

import { storedLine } from "../protocol.ts";
import { isFileInfo } from "./file_info.ts";
import type { HistoryEntry, StoredMessage } from "./history.ts";

/**
 * The line `entry` is stored as, with id `id` in `room`: a `message` line,
 * or with a file a `file` line (protocol.ts's `storedLine`), frozen as
 * every stored line is. Appending, loading and carrying over an earlier
 * version's history all make their lines here.
 *
 * @example
 * ```ts
 * import { storedMessage } from "./history_entry.ts";
 * const line = storedMessage("lobby", 1, {
 *   username: "ann",
 *   text: "hi",
 *   timestamp: "2026-11-22T10:00:00.000Z",
 * });
 * line.type; // "message"
 * Object.isFrozen(line); // true
 * ```
 */
export function storedMessage(
  room: string,
  id: number,
  entry: HistoryEntry,
): StoredMessage {
  return Object.freeze(storedLine({ ...entry, id, room }));
}

/**
 * An upper bound on the size of an entry as two bytes per UTF-16 unit of
 * every field, plus some per field: an entry over `MAX_ENTRY_BYTES`
 * (history.ts) is refused.
 *
 * @example
 * ```ts
 * import { MAX_ENTRY_BYTES } from "./history.ts";
 * import { entryBytes } from "./history_entry.ts";
 * const timestamp = new Date().toISOString();
 * entryBytes({ username: "ann", text: "hi", timestamp }) <= MAX_ENTRY_BYTES; // true
 * ```
 */
export function entryBytes(entry: HistoryEntry): number {
  let bytes = 64 + 2 * (entry.username.length + entry.text.length +
        entry.timestamp.length);
  if (entry.to !== undefined) bytes += 16 + 2 * entry.to.length;
  if (entry.file !== undefined) {
    bytes += 16 + 2 * JSON.stringify(entry.file).length;
  }
  return bytes;
}

/**
 * Why an entry cannot be stored in `room` (a TypeError saying which field
 * is wrong), or undefined when it can. Its size is {@linkcode entryBytes}'s
 * to tell.
 *
 * @example
 * ```ts
 * import { invalidEntry } from "./history_entry.ts";
 * const timestamp = new Date().toISOString();
 * invalidEntry("lobby", { username: "ann", text: "hi", timestamp }); // undefined
 * invalidEntry("lobby", { username: "", text: "hi", timestamp }); // a TypeError
 * ```
 */
export function invalidEntry(
  room: string,
  entry: HistoryEntry,
): Error | undefined {
  if (typeof room !== "string" || room.length === 0) {
    return new TypeError("history: room must be a non-empty string");
  }
  if (typeof entry !== "object" || entry === null) {
    return new TypeError("history: entry must be an object");
  }
  const { username, text, timestamp, to, file } = entry;
  if (typeof username !== "string" || username.length === 0) {
    return new TypeError("history: entry.username must be a non-empty string");
  }
  if (typeof text !== "string") {
    return new TypeError("history: entry.text must be a string");
  }
  if (typeof timestamp !== "string") {
    return new TypeError("history: entry.timestamp must be a string");
  }
  if (to !== undefined && (typeof to !== "string" || to.length === 0)) {
    return new TypeError(
      "history: entry.to must be a non-empty string, or absent for a public message",
    );
  }
  // What loading takes for a file line: one it would refuse blocks a start.
  if (file !== undefined && !isFileInfo(file)) {
    return new TypeError(
      `history: entry.file must be a file's description (id, name, type and url strings, size an integer), or absent for a chat line; got ${
        Deno.inspect(file, { breakLength: Infinity })
      }`,
    );
  }
  return undefined;
}

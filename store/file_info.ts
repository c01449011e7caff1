/**
 * Reading a shared file's description back from a stored line, where it
 * was written as JSON: by history.ts (its log) and kv_migration.ts (an
 * earlier version's KV blocks); history_entry.ts refuses to store one that
 * would not read back.
 *
 * @module
 */

import type { FileInfo } from "../protocol.ts";

/**
 * True when `value`, parsed from a stored line, is a file's description.
 *
 * @example
 * ```ts
 * import { isFileInfo } from "./file_info.ts";
 * isFileInfo({ id: "f00d", name: "a.png", size: 3, type: "image/png", url: "/files/f00d" }); // true
 * isFileInfo({ id: "f00d" }); // false
 * ```
 */
export function isFileInfo(value: unknown): value is FileInfo {
  if (typeof value !== "object" || value === null) return false;
  const { id, name, size, type, url } = value as Record<string, unknown>;
  return typeof id === "string" && typeof name === "string" &&
    Number.isSafeInteger(size) && typeof type === "string" &&
    typeof url === "string";
}

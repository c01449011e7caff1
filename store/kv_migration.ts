/**
 * Reads the history an earlier hubchat kept in Deno KV, so that
 * {@linkcode History.open} can carry it over into its log file (see
 * history.ts, "Files of earlier versions").
 *
 * The KV layout it reads (`R` is a room's name):
 *
 * | key                             | value                                           |
 * | ------------------------------- | ----------------------------------------------- |
 * | `["room", R, "meta"]`           | `{ lastId, trimmedId }` (both numbers, 0: none) |
 * | `["room", R, "block", firstId]` | UTF-8 lines, one JSON array per message         |
 * | `["room", R, "msg", id]`        | the layout before blocks: ignored               |
 *
 * A block line is `[id, username, text, timestamp]`, with `to` fifth for a
 * direct message, or `[id, username, caption, timestamp, to or null, file]`
 * for a shared file. Messages at or below a room's `trimmedId` were trimmed
 * away and are skipped.
 *
 * @module
 */

import type { FileInfo } from "../protocol.ts";
import { isFileInfo } from "./file_info.ts";
import type { HistoryEntry, StoredMessage } from "./history.ts";
import { storedMessage } from "./history_entry.ts";

/** One room of an earlier version's KV history. */
export interface KvRoom {
  /** The newest id it gave (0: none). */
  lastId: number;
  /** The newest id it trimmed away (0: none). */
  trimmedId: number;
  /** Its messages above `trimmedId`, ascending ids. */
  messages: StoredMessage[];
}

/** The first 16 bytes of every SQLite database file, Deno KV's included. */
export const SQLITE_MAGIC = "SQLite format 3\0";

/** True when `head` (a file's first bytes) starts a SQLite database. */
export function isSqlite(head: Uint8Array): boolean {
  if (head.length < SQLITE_MAGIC.length) return false;
  for (let i = 0; i < SQLITE_MAGIC.length; i++) {
    if (head[i] !== SQLITE_MAGIC.charCodeAt(i)) return false;
  }
  return true;
}

const decoder = new TextDecoder("utf-8", { fatal: true });

/** The messages in a block's value, or undefined when it is no block. */
function parseBlock(
  room: string,
  firstId: number,
  value: Uint8Array,
): StoredMessage[] | undefined {
  let text: string;
  try {
    text = decoder.decode(value);
  } catch {
    return undefined;
  }
  if (!text.endsWith("\n")) return undefined;
  const messages: StoredMessage[] = [];
  let previous = firstId - 1;
  for (const line of text.slice(0, -1).split("\n")) {
    let fields: unknown;
    try {
      fields = JSON.parse(line);
    } catch {
      return undefined;
    }
    if (!Array.isArray(fields) || fields.length < 4 || fields.length > 6) {
      return undefined;
    }
    const [id, username, text, timestamp, to, file] = fields;
    if (
      !Number.isSafeInteger(id) || typeof username !== "string" ||
      typeof text !== "string" || typeof timestamp !== "string" ||
      (fields.length === 5 && typeof to !== "string") ||
      (fields.length === 6 &&
        ((to !== null && typeof to !== "string") || !isFileInfo(file))) ||
      (messages.length === 0 ? id !== firstId : id <= previous)
    ) return undefined;
    const entry: HistoryEntry = { username, text, timestamp };
    if (typeof to === "string") entry.to = to;
    if (fields.length === 6) entry.file = file as FileInfo;
    messages.push(storedMessage(room, id, entry));
    previous = id;
  }
  return messages;
}

function isMeta(
  value: unknown,
): value is { lastId: number; trimmedId: number } {
  if (typeof value !== "object" || value === null) return false;
  const { lastId, trimmedId } = value as Record<string, unknown>;
  return Number.isSafeInteger(lastId) && Number.isSafeInteger(trimmedId);
}

function unexpected(key: Deno.KvKey): Error {
  return new Error(
    `history: unexpected entry ${
      Deno.inspect(key)
    } in the store; is this a hubchat history database?`,
  );
}

/**
 * Every room of the Deno KV history at `path`, opened and closed here.
 * Throws when Deno KV cannot open it, or when it holds anything hubchat
 * never wrote.
 *
 * @example
 * ```ts
 * import { readKvHistory } from "./kv_migration.ts";
 * const dir = await Deno.makeTempDir();
 * const kv = await Deno.openKv(`${dir}/old.kv`);
 * await kv.set(["room", "lobby", "meta"], { lastId: 3, trimmedId: 3 });
 * kv.close();
 * (await readKvHistory(`${dir}/old.kv`)).get("lobby")?.lastId; // 3
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export async function readKvHistory(
  path: string,
): Promise<Map<string, KvRoom>> {
  if (typeof Deno.openKv !== "function") {
    throw new Error(
      "it is an earlier version's Deno KV file, and carrying it over needs Deno KV (--unstable-kv, which deno.json sets)",
    );
  }
  const kv = await Deno.openKv(path);
  const rooms = new Map<string, KvRoom>();
  const room = (name: string): KvRoom => {
    let state = rooms.get(name);
    if (state === undefined) {
      state = { lastId: 0, trimmedId: -1, messages: [] };
      rooms.set(name, state);
    }
    return state;
  };
  try {
    for await (const { key, value } of kv.list({ prefix: ["room"] })) {
      const [, name, kind, firstId] = key;
      if (typeof name !== "string") throw unexpected(key);
      if (kind === "meta" && key.length === 3) {
        if (!isMeta(value)) throw unexpected(key);
        const state = room(name);
        state.lastId = Math.max(state.lastId, value.lastId);
        state.trimmedId = value.trimmedId;
      } else if (
        kind === "block" && key.length === 4 && Number.isSafeInteger(firstId)
      ) {
        if (!(value instanceof Uint8Array)) throw unexpected(key);
        const messages = parseBlock(name, firstId as number, value);
        if (messages === undefined) throw unexpected(key);
        const state = room(name);
        const last = state.messages.at(-1);
        if (last !== undefined && last.id >= messages[0].id) {
          throw unexpected(key);
        }
        for (const message of messages) state.messages.push(message);
        state.lastId = Math.max(state.lastId, messages.at(-1)!.id);
      } else if (!(kind === "msg" && key.length === 4)) {
        throw unexpected(key);
      }
    }
  } finally {
    kv.close();
  }
  for (const state of rooms.values()) {
    // A room without a meta key: everything below its first block is gone.
    if (state.trimmedId < 0) {
      state.trimmedId = Math.max(0, (state.messages[0]?.id ?? 1) - 1);
    }
    const trimmedId = state.trimmedId;
    state.messages = state.messages.filter((message) => message.id > trimmedId);
  }
  return rooms;
}

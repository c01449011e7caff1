/**
 * What store/history_test.ts and store/history_durability_test.ts share:
 * bounded tests, entries, a room's lines read straight from a history
 * file, what a power loss would leave of one, and a history file that
 * fails as a full disk does (degraded_test.ts's too).
 *
 * @module
 */

import assert from "node:assert/strict";
import {
  COMPACT_MIN_BYTES,
  type HistoryEntry,
  MAX_COMMIT_BYTES,
  type StoredMessage,
} from "./history.ts";
import type { HistoryFile } from "./history_file.ts";
import { within } from "../testing/wait.ts";

/** Longest any one test may take; a hang fails instead of stalling CI. */
const TEST_DEADLINE_MS = 30_000;

/**
 * A test bounded by {@linkcode TEST_DEADLINE_MS}: one that hangs fails.
 *
 * @example
 * ```ts
 * import { History } from "./history.ts";
 * import { test } from "./history_test_util.ts";
 * test("a history in memory opens and closes", async () => {
 *   const history = await History.open(":memory:");
 *   await history.close();
 * });
 * ```
 */
export function test(name: string, body: () => Promise<void>): void {
  Deno.test(name, () => within(body(), name, TEST_DEADLINE_MS));
}

/**
 * Who an {@linkcode entry} is for.
 *
 * @example
 * ```ts
 * import type { EntryOptions } from "./history_test_util.ts";
 * const direct: EntryOptions = { to: "ann" };
 * ```
 */
export interface EntryOptions {
  /** The recipient of a direct message; absent for a public one. */
  to?: string;
}

/**
 * An entry from `username`, stamped at one fixed time: public, or direct
 * to `options.to`.
 *
 * @example
 * ```ts
 * import { entry } from "./history_test_util.ts";
 * entry("ann", "hello"); // a public line
 * entry("bob", "psst", { to: "ann" }); // a direct one
 * ```
 */
export function entry(
  username: string,
  text: string,
  options: EntryOptions = {},
): HistoryEntry {
  const value: HistoryEntry = {
    username,
    text,
    timestamp: "2026-11-22T10:00:00.000Z",
  };
  if (options.to !== undefined) value.to = options.to;
  return value;
}

/**
 * The ids of `messages`, in their order.
 *
 * @example
 * ```ts
 * import { History } from "./history.ts";
 * import { entry, ids } from "./history_test_util.ts";
 * const history = await History.open(":memory:");
 * await history.append("lobby", entry("ann", "hello"));
 * ids(history.recent("lobby")); // [1]
 * await history.close();
 * ```
 */
export function ids(messages: StoredMessage[]): number[] {
  return messages.map((message) => message.id);
}

/**
 * The integers from `from` to `to`, both included: the ids a test expects.
 *
 * @example
 * ```ts
 * import { range } from "./history_test_util.ts";
 * range(3, 5); // [3, 4, 5]
 * range(1, 0); // []
 * ```
 */
export function range(from: number, to: number): number[] {
  const out: number[] = [];
  for (let i = from; i <= to; i++) out.push(i);
  return out;
}

/**
 * What one room's part of the file holds, read straight from the file by
 * the rule history.ts documents (not by its code).
 *
 * @example
 * ```ts
 * import { readRoom, type StoredRoom } from "./history_test_util.ts";
 * async function keptIds(path: string): Promise<number[]> {
 *   const lobby: StoredRoom = await readRoom(path, "lobby");
 *   return lobby.live;
 * }
 * ```
 */
export interface StoredRoom {
  /** The room's newest id and newest trimmed id, as a reopen finds them. */
  meta: { lastId: number; trimmedId: number };
  /** Every line id of the room in the file, in file order. */
  all: number[];
  /** The ids a reopen keeps: the room's last `limit` lines. */
  live: number[];
  /** Every line record of the room, in file order. */
  messages: Record<string, unknown>[];
  /** The file's size in bytes. */
  fileBytes: number;
}

/**
 * Reads a room's records from a history file (see history.ts's docs),
 * asserting that the file holds whole records and that the room's ids
 * ascend.
 *
 * @example
 * ```ts
 * import { History } from "./history.ts";
 * import { withTempDir } from "../testing/temp_dir.ts";
 * import { entry, readRoom } from "./history_test_util.ts";
 * await withTempDir(async (dir) => {
 *   const history = await History.open(`${dir}/history.db`);
 *   await history.append("lobby", entry("ann", "hello"));
 *   await history.close();
 *   (await readRoom(`${dir}/history.db`, "lobby")).all; // [1]
 * });
 * ```
 */
export async function readRoom(
  path: string,
  room: string,
): Promise<StoredRoom> {
  const bytes = await Deno.readFile(path);
  const text = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  assert.ok(text.endsWith("\n"), "the file holds whole records");
  const [first, ...records] = text.slice(0, -1).split("\n").map((line) =>
    JSON.parse(line) as Record<string, unknown>
  );
  assert.equal(first.hubchat, "history");
  assert.equal(first.version, 1);
  const limit = first.limit as number;
  const meta = { lastId: 0, trimmedId: 0 };
  const out: StoredRoom = {
    meta,
    all: [],
    live: [],
    messages: [],
    fileBytes: bytes.length,
  };
  for (const record of records) {
    if (record.room !== room || record.type === "reserve") continue;
    if (record.type === "meta") {
      meta.lastId = Math.max(meta.lastId, record.lastId as number);
      meta.trimmedId = Math.max(meta.trimmedId, record.trimmedId as number);
      continue;
    }
    const id = record.id as number;
    assert.ok(id > (out.all.at(-1) ?? 0), "ids ascend within a room");
    out.all.push(id);
    out.messages.push(record);
  }
  const above = out.all.filter((id) => id > meta.trimmedId);
  out.live = above.slice(Math.max(0, above.length - limit));
  if (above.length > limit) {
    meta.trimmedId = above[above.length - limit - 1];
  }
  meta.lastId = Math.max(meta.lastId, out.all.at(-1) ?? 0);
  return out;
}

/**
 * The ids of a room's lines in the file that a reopen keeps, after checking
 * that the file stays bounded: at most twice what it keeps, or
 * `COMPACT_MIN_BYTES` (history.ts), plus one commit.
 *
 * @example
 * ```ts
 * import { History } from "./history.ts";
 * import { withTempDir } from "../testing/temp_dir.ts";
 * import { entry, storedIds } from "./history_test_util.ts";
 * await withTempDir(async (dir) => {
 *   const history = await History.open(`${dir}/history.db`, { limit: 1 });
 *   await history.append("lobby", entry("ann", "1"));
 *   await history.append("lobby", entry("ann", "2"));
 *   await history.close();
 *   await storedIds(`${dir}/history.db`, "lobby"); // [2]
 * });
 * ```
 */
export async function storedIds(path: string, room: string): Promise<number[]> {
  const stored = await readRoom(path, room);
  const keptBytes = stored.messages
    .filter((record) => stored.live.includes(record.id as number))
    .reduce((sum, record) => sum + JSON.stringify(record).length + 1, 0);
  assert.ok(
    stored.fileBytes <=
      Math.max(COMPACT_MIN_BYTES, 2 * keptBytes) + MAX_COMMIT_BYTES,
    `${stored.fileBytes} bytes in the file`,
  );
  return stored.live;
}

/**
 * What a power loss would leave of a history file: see
 * {@linkcode durableFile}.
 *
 * @example
 * ```ts
 * import type { DurableFile } from "./history_test_util.ts";
 * function survivors(durable: DurableFile, before: Uint8Array): Uint8Array {
 *   return durable.synced ?? before; // nothing synced: what was before
 * }
 * ```
 */
export interface DurableFile {
  /** Wraps the history's file: `HistoryOptions.wrapFile` (history.ts). */
  wrap: (file: HistoryFile) => HistoryFile;
  /**
   * The file's bytes as the latest sync that succeeded found them when it
   * began: what survives a power loss now. Undefined before any.
   */
  readonly synced: Uint8Array | undefined;
  /** Syncs begun so far. */
  readonly syncs: number;
}

/**
 * Notes what each sync of the history file at `path` makes durable (its
 * bytes when the sync begins). `hold`, if given, is awaited once each sync
 * is done, with the sync's number (from 1): a test orders syncs with it,
 * and its rejection fails that sync.
 *
 * @example
 * ```ts
 * import { History } from "./history.ts";
 * import { withTempDir } from "../testing/temp_dir.ts";
 * import { durableFile, entry } from "./history_test_util.ts";
 * await withTempDir(async (dir) => {
 *   const durable = durableFile(`${dir}/history.db`);
 *   const history = await History.open(`${dir}/history.db`, {
 *     wrapFile: durable.wrap,
 *   });
 *   await history.append("lobby", entry("ann", "hello"));
 *   durable.synced; // the file with line 1's reservation: its first line waits for it
 *   await history.close();
 * });
 * ```
 */
export function durableFile(
  path: string,
  hold?: (sync: number) => Promise<void>,
): DurableFile {
  let synced: Uint8Array | undefined;
  let syncs = 0;
  let latest = 0;
  return {
    wrap: (file) => ({
      write: (bytes) => file.write(bytes),
      truncate: (length) => file.truncate(length),
      async sync(): Promise<void> {
        const sync = ++syncs;
        const bytes = Deno.readFileSync(path);
        await file.sync();
        await hold?.(sync);
        // A sync that began later covers more.
        if (sync > latest) {
          latest = sync;
          synced = bytes;
        }
      },
    }),
    get synced() {
      return synced;
    },
    get syncs() {
      return syncs;
    },
  };
}

/**
 * Puts `bytes` at `path` as a power loss leaves them, for the next boot:
 * every boot record names an earlier boot, so loading takes nothing past
 * `bytes` as surviving.
 *
 * @example
 * ```ts
 * import { afterPowerLoss } from "./history_test_util.ts";
 * import { withTempDir } from "../testing/temp_dir.ts";
 * await withTempDir(async (dir) => {
 *   await afterPowerLoss(
 *     `${dir}/history.db`,
 *     new TextEncoder().encode('{"type":"boot","id":"0f6a"}\n'),
 *   ); // the file holds '{"type":"boot","id":"an earlier boot"}\n'
 * });
 * ```
 */
export async function afterPowerLoss(
  path: string,
  bytes: Uint8Array,
): Promise<void> {
  const text = new TextDecoder().decode(bytes).replaceAll(
    /"type":"boot","id":"[^"]*"/g,
    '"type":"boot","id":"an earlier boot"',
  );
  await Deno.writeTextFile(path, text);
}

/**
 * Wraps a history's file (`HistoryOptions.wrapFile`, history.ts) to fail
 * on purpose while `failing()` says so, as a full disk does: a failed
 * write first writes half of what it was given, then throws ENOSPC.
 *
 * @example
 * ```ts
 * import { History } from "./history.ts";
 * import { withTempDir } from "../testing/temp_dir.ts";
 * import { entry, failingFile } from "./history_test_util.ts";
 * await withTempDir(async (dir) => {
 *   let full = false;
 *   const history = await History.open(`${dir}/history.db`, {
 *     wrapFile: failingFile(() => full),
 *   });
 *   full = true;
 *   await history.append("lobby", entry("ann", "lost")).catch(() => {}); // refused
 *   full = false;
 *   await history.append("lobby", entry("ann", "kept")); // stored, id 2
 *   await history.close();
 * });
 * ```
 */
export function failingFile(
  failing: () => boolean,
): (file: HistoryFile) => HistoryFile {
  return (file) => ({
    write(bytes: Uint8Array): void {
      if (!failing()) return file.write(bytes);
      file.write(bytes.subarray(0, bytes.length >> 1));
      throw new Error("No space left on device (os error 28)");
    },
    truncate: (length) => file.truncate(length),
    sync: () => file.sync(),
  });
}

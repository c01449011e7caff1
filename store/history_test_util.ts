/**
 * What store/history_test.ts and store/history_durability_test.ts share:
 * bounded tests, entries, and a room's lines read straight from a history
 * file.
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
import { within } from "../testing/wait.ts";

/** Longest any one test may take; a hang fails instead of stalling CI. */
const TEST_DEADLINE_MS = 30_000;

/** A test bounded by {@linkcode TEST_DEADLINE_MS}. */
export function test(name: string, body: () => Promise<void>): void {
  Deno.test(name, () => within(body(), name, TEST_DEADLINE_MS));
}

/** Runs `body` with a fresh temporary directory, removed afterwards. */
export async function withTempDir(
  body: (dir: string) => Promise<void>,
): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "hubchat_history_" });
  try {
    await body(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

export function entry(
  username: string,
  text: string,
  to?: string,
): HistoryEntry {
  const value: HistoryEntry = {
    username,
    text,
    timestamp: "2026-11-22T10:00:00.000Z",
  };
  if (to !== undefined) value.to = to;
  return value;
}

export function ids(messages: StoredMessage[]): number[] {
  return messages.map((message) => message.id);
}

export function range(from: number, to: number): number[] {
  const out: number[] = [];
  for (let i = from; i <= to; i++) out.push(i);
  return out;
}

/**
 * What one room's part of the file holds, read straight from the file by
 * the rule history.ts documents (not by its code).
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

/** Reads a room's records from a history file (see history.ts's docs). */
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
 * {@linkcode COMPACT_MIN_BYTES}, plus one commit.
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

/**
 * Loading, for store/history.ts: a history's rooms filled from what is on
 * disk, its history file's records (history.ts's module documentation says
 * what they are, and what a reopen must see) or an earlier version's Deno
 * KV rooms.
 *
 * @module
 */

import { type FileInfo, utf8Length } from "../protocol.ts";
import { isFileInfo } from "./file_info.ts";
import type { HistoryEntry, StoredMessage } from "./history.ts";
import { storedMessage } from "./history_entry.ts";
import { anyRecordAfter, type Header, parseRecord } from "./history_file.ts";
import { type RoomTable, trimRoom } from "./history_rooms.ts";
import type { KvRoom } from "./kv_migration.ts";

const decoder = new TextDecoder("utf-8", { fatal: true });

/**
 * What loading a file found: where whole records end (the file is cut
 * there, past a torn tail), and the limit its lines were trimmed under (a
 * history of another limit compacts it at once).
 *
 * @example
 * ```ts
 * import type { Loaded } from "./history_load.ts";
 * // A new file, or one whose header never reached the disk whole.
 * const fresh: Loaded = { limit: 100, length: 0 };
 * ```
 */
export interface Loaded {
  /** The limit its lines were trimmed under. */
  limit: number;
  /** Bytes of whole records; anything after is a torn tail. */
  length: number;
}

/**
 * How a file is loaded into the rooms: see {@linkcode loadHistoryFile}.
 *
 * @example
 * ```ts
 * import { currentBootId } from "./history_file.ts";
 * import type { LoadOptions } from "./history_load.ts";
 * const options: LoadOptions = { limit: 100, bootId: currentBootId() };
 * ```
 */
export interface LoadOptions {
  /**
   * Lines kept per room from now on (the history's limit): a smaller one
   * than the file's trims more.
   */
  limit: number;
  /**
   * This boot's id (see "Ids after a power loss" in history.ts); undefined
   * when unknown, so that only a clean close makes ids go on exactly.
   */
  bootId: string | undefined;
}

/** What the records read so far say, while a file is loaded. */
interface Replay {
  /** The rooms the file's lines go to. */
  rooms: RoomTable;
  /** The limit the file's lines were trimmed under. */
  limit: number;
  /** The last record read was `closed`. */
  closedCleanly: boolean;
  /** The boot id of the last `boot` record read (undefined: unknown). */
  lastBoot: string | undefined;
}

/**
 * Reads the file's records into the rooms, trimmed under the file's
 * limit, then under `options.limit`, and sets where each room's ids go on:
 * right after its newest line when the file was closed cleanly or last
 * written in this boot, past its reservations otherwise. Throws when it
 * is not a history file or is damaged anywhere but at its tail.
 *
 * @example
 * ```ts
 * import { headerLine } from "./history_file.ts";
 * import { loadHistoryFile } from "./history_load.ts";
 * import { RoomTable } from "./history_rooms.ts";
 * const whole = headerLine(100) +
 *   '{"type":"message","id":1,"room":"lobby","username":"ann",' +
 *   '"text":"hi","timestamp":"2026-11-22T10:00:00.000Z"}\n';
 * const torn = '{"type":"message","id":2,"ro'; // a power loss mid-write
 * const rooms = new RoomTable();
 * const loaded = loadHistoryFile(
 *   new TextEncoder().encode(whole + torn),
 *   rooms,
 *   { limit: 100, bootId: undefined },
 * );
 * loaded.length; // whole.length: the torn line is cut off
 * rooms.recent("lobby"); // [line 1]
 * ```
 */
export function loadHistoryFile(
  bytes: Uint8Array,
  rooms: RoomTable,
  options: LoadOptions,
): Loaded {
  if (bytes.length === 0) return { limit: options.limit, length: 0 };
  // A newline byte is never part of a longer character: what follows the
  // last one is the torn tail, whatever character it stops in.
  const whole = bytes.lastIndexOf(0x0a) + 1;
  if (whole === 0) {
    // No whole line: a header that never reached the disk whole is
    // written again.
    return { limit: headerLimit(new TextDecoder().decode(bytes)), length: 0 };
  }
  const text = decoder.decode(bytes.subarray(0, whole));
  const newline = text.indexOf("\n");
  const limit = headerLimit(text.slice(0, newline));
  const replay: Replay = {
    rooms,
    limit,
    closedCleanly: false,
    lastBoot: undefined,
  };
  let offset = newline + 1;
  let length = offset;
  let lineNumber = 1;
  while (offset < text.length) {
    lineNumber++;
    const end = text.indexOf("\n", offset); // `text` ends with one
    const record = parseRecord(text.slice(offset, end));
    if (record === undefined || !loadRecord(record, replay)) {
      if (!anyRecordAfter(text, end + 1)) break; // torn tail
      throw new Error(
        `line ${lineNumber} is not a history record, and records follow it`,
      );
    }
    offset = end + 1;
    length = offset;
  }
  // Closed cleanly, or the process died in this boot: every line
  // written is here. Otherwise (a power loss) lines that were shown may
  // be gone: ids go on past the reservations.
  const exact = replay.closedCleanly ||
    (replay.lastBoot !== undefined && replay.lastBoot === options.bootId);
  // What the run saw: each room's last `limit` lines; a smaller limit
  // now trims more.
  for (const state of rooms.values()) {
    trimRoom(state, options.limit);
    state.nextId =
      (exact ? state.lastId : Math.max(state.lastId, state.reserved)) + 1;
    state.reserving = state.reserved;
  }
  // `length` counts characters; the file's bytes are what matter.
  const byteLength = length === text.length
    ? whole
    : utf8Length(text.slice(0, length));
  return { limit, length: byteLength };
}

/** The limit a file's first line gives; throws when it is no header. */
function headerLimit(line: string): number {
  let header: Partial<Header>;
  try {
    header = JSON.parse(line) ?? {};
  } catch {
    header = {};
  }
  if (
    header.hubchat !== "history" || header.version !== 1 ||
    !Number.isSafeInteger(header.limit) || header.limit! < 1
  ) {
    throw new Error("its first line is not a hubchat history header");
  }
  return header.limit!;
}

/**
 * Applies one record while loading; false when it does not fit. A room
 * starts with no ids reserved: only the file's records reserve them.
 */
function loadRecord(record: Record<string, unknown>, replay: Replay): boolean {
  const rooms = replay.rooms;
  replay.closedCleanly = record.type === "closed";
  if (record.type === "closed") return true;
  if (record.type === "boot") {
    // No id: opened where the boot was unknown.
    if (record.id !== undefined && typeof record.id !== "string") return false;
    replay.lastBoot = record.id;
    return true;
  }
  if (record.type === "reserve") {
    const { room, upTo } = record;
    if (typeof room !== "string" || !Number.isSafeInteger(upTo)) {
      return false;
    }
    const state = rooms.room(room, 0);
    state.reserved = Math.max(state.reserved, upTo as number);
    return true;
  }
  if (record.type === "meta") {
    const { room, lastId, trimmedId, reserved } = record;
    if (
      typeof room !== "string" || !Number.isSafeInteger(lastId) ||
      !Number.isSafeInteger(trimmedId) ||
      (reserved !== undefined && !Number.isSafeInteger(reserved))
    ) return false;
    const state = rooms.room(room, 0);
    state.lastId = Math.max(state.lastId, lastId as number);
    state.trimmedId = Math.max(state.trimmedId, trimmedId as number);
    state.reserved = Math.max(state.reserved, (reserved as number) ?? 0);
    return true;
  }
  const line = lineFromRecord(record);
  if (line === undefined) return false;
  const state = rooms.room(line.room, 0);
  const previous = state.kept.at(-1)?.id ?? state.trimmedId;
  if (line.id <= previous) return false;
  state.kept.push(line);
  state.lastId = Math.max(state.lastId, line.id);
  trimRoom(state, replay.limit);
  return true;
}

/** A stored line read back from its record, or undefined if it is none. */
function lineFromRecord(
  record: Record<string, unknown>,
): StoredMessage | undefined {
  const { type, id, room, username, text, timestamp, to, file } = record;
  if (
    (type !== "message" && type !== "file") || !Number.isSafeInteger(id) ||
    typeof room !== "string" || room.length === 0 ||
    typeof username !== "string" || typeof timestamp !== "string" ||
    (to !== undefined && typeof to !== "string")
  ) return undefined;
  if (type === "message" && typeof text !== "string") return undefined;
  if (
    type === "file" && (!isFileInfo(file) ||
      (text !== undefined && typeof text !== "string"))
  ) return undefined;
  const entry: HistoryEntry = {
    username,
    text: (text as string | undefined) ?? "",
    timestamp,
  };
  if (to !== undefined) entry.to = to as string;
  if (type === "file") entry.file = file as FileInfo;
  return storedMessage(room, id as number, entry);
}

/**
 * Takes over the rooms of an earlier version's Deno KV file, trimmed to
 * their last `limit` lines. Their ids go on right after each room's newest: Deno KV
 * synced every commit.
 *
 * @example
 * ```ts
 * import { adoptKvRooms } from "./history_load.ts";
 * import { RoomTable } from "./history_rooms.ts";
 * import type { KvRoom } from "./kv_migration.ts";
 * // As readKvHistory (kv_migration.ts) reads them: lobby's lines all trimmed.
 * const kvRooms = new Map<string, KvRoom>([
 *   ["lobby", { lastId: 7, trimmedId: 7, messages: [] }],
 * ]);
 * const rooms = new RoomTable();
 * adoptKvRooms(kvRooms, rooms, 100);
 * rooms.latestId("lobby"); // 7: its next line is 8
 * ```
 */
export function adoptKvRooms(
  kvRooms: Map<string, KvRoom>,
  rooms: RoomTable,
  limit: number,
): void {
  for (const [name, room] of kvRooms) {
    const state = rooms.room(name, 0);
    state.kept = room.messages;
    state.lastId = room.lastId;
    state.trimmedId = room.trimmedId;
    trimRoom(state, limit);
    state.nextId = state.lastId + 1;
    // Deno KV synced every commit: nothing shown was lost.
    state.reserved = state.reserving = state.lastId;
  }
}

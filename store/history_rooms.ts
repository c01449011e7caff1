/**
 * What a history keeps of its rooms in memory, for store/history.ts: each
 * room's kept lines and ids, which its reads answer from and its appends
 * and loading add to.
 *
 * @module
 */

import type { ResumeResult, StoredMessage } from "./history.ts";

/**
 * What is known of one room; `kept` from `head` on is what is stored.
 *
 * @example
 * ```ts
 * import { RoomTable, type RoomState } from "./history_rooms.ts";
 * const lobby: RoomState = new RoomTable().room("lobby", 0);
 * lobby.nextId; // 1: the id its first line gets
 * ```
 */
export interface RoomState {
  /** The room's name. */
  name: string;
  /** Stored lines, ascending ids; those from `head` on are kept. */
  kept: StoredMessage[];
  /** Index of the oldest kept line in `kept`. */
  head: number;
  /** The newest stored id (0: none yet). */
  lastId: number;
  /** The newest id trimmed away (0: none); every kept id is above it. */
  trimmedId: number;
  /** The id the next append gets. */
  nextId: number;
  /**
   * Ids up to this one are reserved by a synced `reserve` record: a power
   * loss cannot make them be given again (see "Ids after a power loss" in
   * history.ts).
   */
  reserved: number;
  /** The newest reservation written, synced or not (at least `reserved`). */
  reserving: number;
}

/**
 * Every room's kept lines, in memory: what the history's reads answer
 * from, and what appends and loading add to.
 *
 * Invariants, per room: `kept` ascends by id; the lines from `head` on are
 * kept (at most the history's limit of them, once trimmed by
 * {@linkcode trimRoom}); every kept id is above `trimmedId`; `lastId` is
 * the newest stored id.
 *
 * @example
 * ```ts
 * import { RoomTable, trimRoom } from "./history_rooms.ts";
 * const rooms = new RoomTable();
 * const lobby = rooms.room("lobby", 0);
 * for (const id of [1, 2, 3]) {
 *   lobby.kept.push({
 *     type: "message",
 *     id,
 *     room: "lobby",
 *     username: "ann",
 *     text: `${id}`,
 *     timestamp: "2026-11-22T10:00:00.000Z",
 *   });
 *   lobby.lastId = id;
 * }
 * trimRoom(lobby, 2); // line 1 trimmed away
 * rooms.since("lobby", 0).gap; // true: line 1 is no longer kept
 * rooms.since("lobby", 1).messages.length; // 2
 * ```
 */
export class RoomTable {
  readonly #rooms = new Map<string, RoomState>();

  /** The room's state, or undefined when it has none. */
  get(name: string): RoomState | undefined {
    return this.#rooms.get(name);
  }

  /**
   * The room's state, made if new: no lines yet, ids from 1, reserved (and
   * reserving) up to `reserved`.
   */
  room(name: string, reserved: number): RoomState {
    let state = this.#rooms.get(name);
    if (state === undefined) {
      state = {
        name,
        kept: [],
        head: 0,
        lastId: 0,
        trimmedId: 0,
        nextId: 1,
        reserved,
        reserving: reserved,
      };
      this.#rooms.set(name, state);
    }
    return state;
  }

  /** Every room's state. */
  values(): Iterable<RoomState> {
    return this.#rooms.values();
  }

  /** The room's kept lines, oldest first, in a new array. */
  recent(room: string): StoredMessage[] {
    const state = this.#rooms.get(room);
    return state === undefined ? [] : state.kept.slice(state.head);
  }

  /**
   * What a client that last saw line `lastSeenId` (an integer ≥ 0) of the
   * room missed: see `History.since` (history.ts).
   */
  since(room: string, lastSeenId: number): ResumeResult {
    const state = this.#rooms.get(room);
    if (state === undefined) {
      return { messages: [], gap: lastSeenId > 0 };
    }
    if (lastSeenId > state.lastId) {
      return { messages: this.recent(room), gap: true };
    }
    const kept = state.kept;
    // First kept index whose id is above lastSeenId (ids ascend).
    let low = state.head;
    let high = kept.length;
    while (low < high) {
      const middle = (low + high) >>> 1;
      if (kept[middle].id <= lastSeenId) low = middle + 1;
      else high = middle;
    }
    return { messages: kept.slice(low), gap: lastSeenId < state.trimmedId };
  }

  /** The id of the room's newest stored line; 0 when it has none. */
  latestId(room: string): number {
    return this.#rooms.get(room)?.lastId ?? 0;
  }

  /** The rooms that have stored lines, sorted. */
  names(): string[] {
    const rooms: string[] = [];
    for (const state of this.#rooms.values()) {
      if (state.kept.length > state.head) rooms.push(state.name);
    }
    return rooms.sort();
  }
}

/**
 * Trims a room to its last `limit` lines: the newest trimmed id becomes its
 * `trimmedId`.
 *
 * @example
 * ```ts
 * import { RoomTable, trimRoom } from "./history_rooms.ts";
 * const lobby = new RoomTable().room("lobby", 0);
 * trimRoom(lobby, 100); // nothing to trim
 * ```
 */
export function trimRoom(state: RoomState, limit: number): void {
  const drop = state.kept.length - state.head - limit;
  if (drop <= 0) return;
  state.head += drop;
  state.trimmedId = state.kept[state.head - 1].id;
  // Let go of trimmed lines once they are most of the array.
  if (state.head >= 64 && state.head * 2 >= state.kept.length) {
    state.kept = state.kept.slice(state.head);
    state.head = 0;
  }
}

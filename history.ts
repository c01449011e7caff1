/**
 * Durable per-room chat history on Deno KV.
 *
 * Every chat message gets an `id`, strictly increasing within its room
 * (1, 2, 3, … per room) and continuing after a restart. The last
 * {@linkcode DEFAULT_HISTORY_LIMIT} messages of each room are kept, in KV and
 * in memory; older ones are deleted in the same commits that push them out,
 * so the store stays bounded. Reads come from memory and never touch KV.
 *
 * Writes are group-committed: every append made during one event-loop turn
 * goes into one `kv.atomic()` commit at the end of the turn, and the appends
 * resolve, in id order, only once that commit is durable. A caller that
 * broadcasts a message after `await history.append(...)` therefore never
 * shows anyone a message a crash could lose, and pays a turn of latency, not
 * one commit per message.
 *
 * KV key layout (`R` is the room's name, a string):
 *
 * | key                      | value                                           |
 * | ------------------------ | ----------------------------------------------- |
 * | `["room", R, "meta"]`    | `{ lastId, trimmedId }` (both numbers, 0: none) |
 * | `["room", R, "msg", id]` | `{ username, text, timestamp, to? }`            |
 *
 * `lastId` is the newest stored id, `trimmedId` the newest id trimmed away;
 * `id` is a number, so a room's messages list in id order.
 *
 * The meta key is written in the same atomic commit as the messages it
 * describes, so the two never disagree.
 *
 * @module
 */

/**
 * Messages kept per room when no `limit` is given. A joiner's `welcome`
 * carries them all, so this bounds that frame (100 × 2000 characters is
 * under 1 MiB even at worst) and the memory and disk a room can hold, while
 * covering what a reader scrolls back through or a briefly dropped client
 * missed.
 */
export const DEFAULT_HISTORY_LIMIT = 100;

/** Deno KV refuses an atomic operation with more mutations than this. */
export const KV_MAX_MUTATIONS = 1000;

/**
 * Deno KV refuses an atomic operation whose keys and values add up to more
 * than this (a key counts twice when set: once as a key, once with its value).
 */
export const KV_MAX_COMMIT_BYTES = 800 * 1024;

/** Deno KV refuses an atomic operation whose set keys total more than this. */
export const KV_MAX_COMMIT_KEY_BYTES = 80 * 1024;

/** Deno KV refuses a key longer than this, in encoded bytes. */
export const KV_MAX_KEY_BYTES = 2048;

/** Deno KV refuses a value longer than this, once serialized. */
export const KV_MAX_VALUE_BYTES = 64 * 1024;

/**
 * An upper bound on the serialized size of a room's meta value: two numbers
 * in an object with two short property names.
 */
const META_VALUE_BYTES = 64;

/** A chat message as the caller stamped it, before it has an id. */
export interface HistoryEntry {
  /** The sender. */
  username: string;
  /** The chat text. */
  text: string;
  /** When the server stamped it (ISO 8601, UTC, milliseconds). */
  timestamp: string;
  /** The recipient, for a direct message; absent for a public one. */
  to?: string;
}

/**
 * A message as stored: ready to be serialized as a `message` frame, or as an
 * element of `welcome`'s `history`. Stored messages are frozen.
 */
export interface StoredMessage extends HistoryEntry {
  /** Always `"message"`: a stored message is a chat line. */
  type: "message";
  /** Strictly increasing within the room, from 1; never reused once seen. */
  id: number;
  /** The room it was said in. */
  room: string;
}

/** What a client that reconnects missed; see {@linkcode History.since}. */
export interface ResumeResult {
  /** The kept messages after the client's last id that it may see. */
  messages: StoredMessage[];
  /**
   * True when the client missed messages that are no longer kept (or its
   * last id is unknown here), so `messages` does not follow on from what it
   * has: it should clear its view and show `messages` as the history.
   */
  gap: boolean;
}

/** Options for {@linkcode History.open}. */
export interface HistoryOptions {
  /** Messages kept per room, at least 1. Default {@linkcode DEFAULT_HISTORY_LIMIT}. */
  limit?: number;
}

/** What is known of one room; `kept` is what is durably in KV. */
interface RoomState {
  name: string;
  /** Stored messages, ascending ids, at most `limit` of them. */
  kept: StoredMessage[];
  /** The newest stored id (0: none yet). */
  lastId: number;
  /** The newest id trimmed away (0: none); every kept id is above it. */
  trimmedId: number;
  /** The id the next append gets. */
  nextId: number;
  /** Encoded size of this room's message keys. */
  msgKeyBytes: number;
  /** Encoded size of this room's meta key. */
  metaKeyBytes: number;
}

/** An append waiting for its commit. */
interface PendingAppend {
  message: StoredMessage;
  state: RoomState;
  /** Upper bound on the serialized size of its KV value. */
  valueBytes: number;
  resolve: (message: StoredMessage) => void;
  reject: (error: Error) => void;
}

/** The value stored at a message key. */
interface StoredValue {
  username: string;
  text: string;
  timestamp: string;
  to?: string;
}

/** The value stored at a room's meta key. */
interface MetaValue {
  lastId: number;
  trimmedId: number;
}

const encoder = new TextEncoder();

/** Encoded size of a string key part: tag, UTF-8 bytes, escaped NULs, end. */
function keyPartBytes(part: string): number {
  let nuls = 0;
  for (let i = part.indexOf("\0"); i !== -1; i = part.indexOf("\0", i + 1)) {
    nuls++;
  }
  return 2 + encoder.encode(part).length + nuls;
}

/**
 * An upper bound on the V8-serialized size of a message value: at most two
 * bytes per UTF-16 unit of every name and string, plus tags and lengths.
 */
function valueBytes(value: StoredValue): number {
  let bytes = 16;
  for (const [name, field] of Object.entries(value)) {
    bytes += 16 + 2 * name.length + 2 * (field as string).length;
  }
  return bytes;
}

/** Encoded size of `["room", room, "msg", id]`: three strings, one number. */
function messageKeyBytes(room: string): number {
  return keyPartBytes("room") + keyPartBytes(room) + keyPartBytes("msg") + 9;
}

function messageKey(room: string, id: number): Deno.KvKey {
  return ["room", room, "msg", id];
}

function metaKey(room: string): Deno.KvKey {
  return ["room", room, "meta"];
}

function toValue(message: StoredMessage): StoredValue {
  const value: StoredValue = {
    username: message.username,
    text: message.text,
    timestamp: message.timestamp,
  };
  if (message.to !== undefined) value.to = message.to;
  return value;
}

function toMessage(
  room: string,
  id: number,
  value: StoredValue,
): StoredMessage {
  const message: StoredMessage = {
    type: "message",
    id,
    room,
    username: value.username,
    text: value.text,
    timestamp: value.timestamp,
  };
  if (value.to !== undefined) message.to = value.to;
  return Object.freeze(message);
}

function isStoredValue(value: unknown): value is StoredValue {
  if (typeof value !== "object" || value === null) return false;
  const { username, text, timestamp, to } = value as Record<string, unknown>;
  return typeof username === "string" && typeof text === "string" &&
    typeof timestamp === "string" &&
    (to === undefined || typeof to === "string");
}

function isMetaValue(value: unknown): value is MetaValue {
  if (typeof value !== "object" || value === null) return false;
  const { lastId, trimmedId } = value as Record<string, unknown>;
  return Number.isSafeInteger(lastId) && Number.isSafeInteger(trimmedId);
}

/** True when `forUser` may see the message: public, or a DM they are in. */
function visibleTo(message: StoredMessage, forUser: string): boolean {
  return message.to === undefined || message.to === forUser ||
    message.username === forUser;
}

/** Why an entry cannot be stored, or undefined when it can. */
function invalidEntry(room: string, entry: HistoryEntry): Error | undefined {
  if (typeof room !== "string" || room.length === 0) {
    return new TypeError("history: room must be a non-empty string");
  }
  if (typeof entry !== "object" || entry === null) {
    return new TypeError("history: entry must be an object");
  }
  const { username, text, timestamp, to } = entry;
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
  return undefined;
}

/** The parent directory of a file path, or undefined when there is none. */
function parentDirectory(path: string): string | undefined {
  const cut = Math.max(path.lastIndexOf("/"), path.lastIndexOf("\\"));
  return cut > 0 ? path.slice(0, cut) : undefined;
}

/**
 * The chat history of every room, backed by one Deno KV database.
 *
 * Guarantees: ids are strictly increasing per room and continue after a
 * restart; `append` resolves only once its message is durably stored, and
 * appends resolve in the order they were made; reads return only stored
 * messages. If a commit fails, exactly the appends in it reject and their ids
 * are never seen (ids may then skip, but never repeat once seen).
 *
 * @example
 * ```ts
 * import { History } from "./history.ts";
 * const history = await History.open(":memory:", { limit: 100 });
 * const stored = await history.append("lobby", {
 *   username: "ann",
 *   text: "hello",
 *   timestamp: new Date().toISOString(),
 * });
 * stored.id; // 1
 * history.recent("lobby", "bob"); // [stored]
 * history.since("lobby", 0, "bob"); // { messages: [stored], gap: false }
 * await history.close();
 * ```
 */
export class History {
  /** Messages kept per room. */
  readonly limit: number;
  #kv: Deno.Kv;
  #rooms = new Map<string, RoomState>();
  /** Appends not yet handed to a commit, in the order they were made. */
  #queue: PendingAppend[] = [];
  /** The end-of-turn flush, while one is scheduled. */
  #timer: ReturnType<typeof setImmediate> | undefined;
  /** The commit loop, while it runs. */
  #draining: Promise<void> | undefined;
  #commits = 0;
  #closing: Promise<void> | undefined;

  private constructor(kv: Deno.Kv, limit: number) {
    this.#kv = kv;
    this.limit = limit;
  }

  /**
   * Opens (or creates) the history stored at `path`, creating its parent
   * directory if missing, and loads every room's kept messages. `":memory:"`
   * keeps it in memory only (tests).
   *
   * @example
   * ```ts
   * import { History } from "./history.ts";
   * const dir = await Deno.makeTempDir(); // a server would use "data/"
   * const history = await History.open(`${dir}/chat/history.db`);
   * await history.close();
   * await Deno.remove(dir, { recursive: true });
   * ```
   */
  static async open(
    path: string,
    options: HistoryOptions = {},
  ): Promise<History> {
    const limit = checkLimit(options.limit);
    if (path !== ":memory:" && !/^[a-z][a-z0-9+.-]*:\/\//i.test(path)) {
      const parent = parentDirectory(path);
      if (parent !== undefined) await Deno.mkdir(parent, { recursive: true });
    }
    let kv: Deno.Kv;
    try {
      kv = await Deno.openKv(path);
    } catch (error) {
      throw new Error(
        `history: cannot open the store at "${path}": ${describe(error)}`,
        { cause: error },
      );
    }
    return await History.fromKv(kv, { limit });
  }

  /**
   * Wraps a KV database that is already open. The history owns it from then
   * on: {@linkcode History.close} closes it.
   *
   * @example
   * ```ts
   * import { History } from "./history.ts";
   * const history = await History.fromKv(await Deno.openKv(":memory:"));
   * await history.close();
   * ```
   */
  static async fromKv(
    kv: Deno.Kv,
    options: HistoryOptions = {},
  ): Promise<History> {
    const history = new History(kv, checkLimit(options.limit));
    try {
      await history.#load();
    } catch (error) {
      kv.close();
      throw error;
    }
    return history;
  }

  /**
   * Gives the entry the room's next id and stores it. The id is assigned at
   * once, so ids follow the order of the calls; the promise resolves (in
   * that same order) once the message is durably stored, with the stored,
   * frozen message. Broadcast it then, not before.
   *
   * Rejects with a TypeError or RangeError, using no id, when the entry
   * cannot be stored; with an Error when the history is closed or the
   * commit fails (the message is then not stored and its id never seen).
   *
   * @example
   * ```ts
   * import { History } from "./history.ts";
   * const history = await History.open(":memory:");
   * const message = await history.append("lobby", {
   *   username: "ann",
   *   text: "psst",
   *   timestamp: new Date().toISOString(),
   *   to: "bob",
   * });
   * // { type: "message", id: 1, room: "lobby", username: "ann", ... }
   * await history.close();
   * ```
   */
  append(room: string, entry: HistoryEntry): Promise<StoredMessage> {
    const invalid = invalidEntry(room, entry);
    if (invalid !== undefined) return Promise.reject(invalid);
    if (this.#closing !== undefined) {
      return Promise.reject(
        new Error(
          `history: closed; cannot store a message in room "${room}"`,
        ),
      );
    }
    let state = this.#rooms.get(room);
    if (state === undefined) {
      const keyBytes = messageKeyBytes(room);
      if (keyBytes > KV_MAX_KEY_BYTES) {
        return Promise.reject(
          new RangeError(
            `history: room name is too long to be stored (its keys would be ${keyBytes} bytes; the limit is ${KV_MAX_KEY_BYTES})`,
          ),
        );
      }
      state = this.#room(room);
    }
    const id = state.nextId;
    const message = toMessage(room, id, entry);
    const bytes = valueBytes(toValue(message));
    if (bytes > KV_MAX_VALUE_BYTES) {
      return Promise.reject(
        new RangeError(
          `history: message is too large to be stored (up to ${bytes} bytes once serialized; the limit is ${KV_MAX_VALUE_BYTES})`,
        ),
      );
    }
    state.nextId++;
    return new Promise((resolve, reject) => {
      this.#queue.push({ message, state, valueBytes: bytes, resolve, reject });
      this.#schedule();
    });
  }

  /**
   * The room's kept messages that `forUser` may see (public ones, and direct
   * messages they sent or received), oldest first: the `history` of a
   * `welcome`. Pass `""` for public messages only.
   *
   * @example
   * ```ts
   * import { History } from "./history.ts";
   * const history = await History.open(":memory:");
   * history.recent("lobby", "ann"); // []
   * await history.close();
   * ```
   */
  recent(room: string, forUser: string): StoredMessage[] {
    const kept = this.#rooms.get(room)?.kept ?? [];
    return kept.filter((message) => visibleTo(message, forUser));
  }

  /**
   * What a client that last saw message `lastSeenId` of the room missed,
   * for `forUser`. `lastSeenId` 0 means it saw nothing.
   *
   * - `gap` is false when every message after `lastSeenId` is still kept:
   *   `messages` are exactly those (that `forUser` may see), with no
   *   duplicate and no hole. Precisely, `gap` is true iff `lastSeenId` is
   *   below the newest id trimmed away, which is `oldest kept id - 1` (ids
   *   skipped by failed commits were never stored, so they are no gap).
   * - `gap` is true, too, when `lastSeenId` is above {@linkcode latestId}:
   *   the client saw ids this store does not know (its data was wiped or
   *   restored from a backup), so nothing it holds can be trusted to follow
   *   on; `messages` is then all that is kept, as from {@linkcode recent}.
   *
   * Throws a RangeError when `lastSeenId` is not an integer ≥ 0.
   *
   * @example
   * ```ts
   * import { History } from "./history.ts";
   * const history = await History.open(":memory:");
   * const timestamp = new Date().toISOString();
   * await history.append("lobby", { username: "ann", text: "1", timestamp });
   * await history.append("lobby", { username: "ann", text: "2", timestamp });
   * history.since("lobby", 1, "bob"); // { messages: [message 2], gap: false }
   * history.since("lobby", 9, "bob"); // { messages: [1, 2], gap: true }
   * await history.close();
   * ```
   */
  since(room: string, lastSeenId: number, forUser: string): ResumeResult {
    if (!Number.isSafeInteger(lastSeenId) || lastSeenId < 0) {
      throw new RangeError(
        `history: lastSeenId must be an integer >= 0, got ${lastSeenId}`,
      );
    }
    const state = this.#rooms.get(room);
    if (state === undefined) {
      return { messages: [], gap: lastSeenId > 0 };
    }
    if (lastSeenId > state.lastId) {
      return { messages: this.recent(room, forUser), gap: true };
    }
    const kept = state.kept;
    // First kept index whose id is above lastSeenId (ids ascend).
    let low = 0;
    let high = kept.length;
    while (low < high) {
      const middle = (low + high) >>> 1;
      if (kept[middle].id <= lastSeenId) low = middle + 1;
      else high = middle;
    }
    const messages: StoredMessage[] = [];
    for (let i = low; i < kept.length; i++) {
      if (visibleTo(kept[i], forUser)) messages.push(kept[i]);
    }
    return { messages, gap: lastSeenId < state.trimmedId };
  }

  /**
   * The id of the room's newest stored message; 0 when it has none. Appends
   * still waiting for their commit are not counted.
   *
   * @example
   * ```ts
   * import { History } from "./history.ts";
   * const history = await History.open(":memory:");
   * history.latestId("lobby"); // 0
   * await history.close();
   * ```
   */
  latestId(room: string): number {
    return this.#rooms.get(room)?.lastId ?? 0;
  }

  /**
   * The rooms that have stored messages, sorted.
   *
   * @example
   * ```ts
   * import { History } from "./history.ts";
   * const history = await History.open(":memory:");
   * history.listRooms(); // []
   * await history.close();
   * ```
   */
  listRooms(): string[] {
    const rooms: string[] = [];
    for (const state of this.#rooms.values()) {
      if (state.kept.length > 0) rooms.push(state.name);
    }
    return rooms.sort();
  }

  /**
   * KV commits made so far (loading excluded): for tests and metrics. One
   * turn's appends take one commit unless they exceed KV's limits.
   */
  get commits(): number {
    return this.#commits;
  }

  /**
   * Stops taking appends, waits until every pending one has settled, then
   * closes the KV database. Calling it again returns the same promise.
   *
   * @example
   * ```ts
   * import { History } from "./history.ts";
   * const history = await History.open(":memory:");
   * await history.close();
   * ```
   */
  close(): Promise<void> {
    this.#closing ??= this.#shutdown();
    return this.#closing;
  }

  async #shutdown(): Promise<void> {
    if (this.#timer !== undefined) {
      clearImmediate(this.#timer);
      this.#timer = undefined;
    }
    while (this.#draining !== undefined || this.#queue.length > 0) {
      await this.#flush();
    }
    this.#kv.close();
  }

  #room(name: string): RoomState {
    let state = this.#rooms.get(name);
    if (state === undefined) {
      state = {
        name,
        kept: [],
        lastId: 0,
        trimmedId: 0,
        nextId: 1,
        msgKeyBytes: messageKeyBytes(name),
        metaKeyBytes: keyPartBytes("room") + keyPartBytes(name) +
          keyPartBytes("meta"),
      };
      this.#rooms.set(name, state);
    }
    return state;
  }

  #schedule(): void {
    if (this.#timer !== undefined || this.#draining !== undefined) return;
    this.#timer = setImmediate(this.#onTurnEnd);
  }

  #onTurnEnd = (): void => {
    this.#timer = undefined;
    void this.#flush();
  };

  /** Starts the commit loop unless it runs; resolves when it stops. */
  #flush(): Promise<void> {
    if (this.#draining === undefined && this.#queue.length > 0) {
      this.#draining = this.#drain();
    }
    return this.#draining ?? Promise.resolve();
  }

  /**
   * Commits queued appends, one chunk after another, until none is left.
   * Appends made while a commit is in flight wait for it, then go together
   * into the next one. Only called with a non-empty queue, so it awaits
   * before it clears `#draining`, after `#flush` has set it.
   */
  async #drain(): Promise<void> {
    for (;;) {
      const count = this.#chunkLength();
      if (count === 0) break;
      const chunk = this.#queue.splice(0, count);
      await this.#commit(chunk);
    }
    this.#draining = undefined;
  }

  /**
   * How many queued appends (from the front) fit in one atomic commit.
   * Costs are upper bounds: every append may push out one old message (a
   * delete), every room touched rewrites its meta key.
   */
  #chunkLength(): number {
    const queue = this.#queue;
    const added = new Map<RoomState, number>();
    let mutations = 0;
    let bytes = 0;
    let keyBytes = 0;
    let count = 0;
    for (; count < queue.length; count++) {
      const { state, valueBytes } = queue[count];
      const before = added.get(state);
      let m = 1;
      let b = 2 * state.msgKeyBytes + valueBytes;
      let k = state.msgKeyBytes;
      if (before === undefined) {
        m += 1;
        b += 2 * state.metaKeyBytes + META_VALUE_BYTES;
        k += state.metaKeyBytes;
      }
      if (state.kept.length + (before ?? 0) >= this.limit) {
        m += 1;
        b += state.msgKeyBytes;
      }
      if (
        count > 0 &&
        (mutations + m > KV_MAX_MUTATIONS || bytes + b > KV_MAX_COMMIT_BYTES ||
          keyBytes + k > KV_MAX_COMMIT_KEY_BYTES)
      ) break;
      mutations += m;
      bytes += b;
      keyBytes += k;
      added.set(state, (before ?? 0) + 1);
    }
    return count;
  }

  /**
   * Stores one chunk in one atomic commit, then updates the rooms and
   * settles the chunk's appends in order. Never throws: a failed commit
   * rejects the chunk's appends and leaves the rooms as they were.
   */
  async #commit(chunk: PendingAppend[]): Promise<void> {
    const byRoom = new Map<RoomState, StoredMessage[]>();
    for (const { state, message } of chunk) {
      const list = byRoom.get(state);
      if (list === undefined) byRoom.set(state, [message]);
      else list.push(message);
    }
    const updates: {
      state: RoomState;
      kept: StoredMessage[];
      meta: MetaValue;
    }[] = [];
    try {
      const operation = this.#kv.atomic();
      for (const [state, added] of byRoom) {
        const all = state.kept.concat(added);
        const drop = Math.max(0, all.length - this.limit);
        // Pushed-out old messages are deleted; pushed-out new ones (a burst
        // longer than the limit) are simply never written.
        const oldDropped = Math.min(drop, state.kept.length);
        for (let i = 0; i < oldDropped; i++) {
          operation.delete(messageKey(state.name, state.kept[i].id));
        }
        for (let i = drop - oldDropped; i < added.length; i++) {
          operation.set(
            messageKey(state.name, added[i].id),
            toValue(added[i]),
          );
        }
        const meta: MetaValue = {
          lastId: added[added.length - 1].id,
          trimmedId: drop > 0 ? all[drop - 1].id : state.trimmedId,
        };
        operation.set(metaKey(state.name), meta);
        updates.push({ state, kept: drop > 0 ? all.slice(drop) : all, meta });
      }
      const result = await operation.commit();
      if (!result.ok) throw new Error("the atomic commit was refused");
    } catch (error) {
      const reason = describe(error);
      for (const { message, reject } of chunk) {
        reject(
          new Error(
            `history: message ${message.id} in room "${message.room}" was not stored: ${reason}`,
            { cause: error },
          ),
        );
      }
      return;
    }
    this.#commits++;
    for (const { state, kept, meta } of updates) {
      state.kept = kept;
      state.lastId = meta.lastId;
      state.trimmedId = meta.trimmedId;
    }
    for (const { message, resolve } of chunk) resolve(message);
  }

  /** Reads every room's kept messages; trims rooms over the limit. */
  async #load(): Promise<void> {
    const metas = new Map<string, MetaValue>();
    for await (const { key, value } of this.#kv.list({ prefix: ["room"] })) {
      const [, name, kind, id] = key;
      if (typeof name !== "string") throw unexpected(key);
      if (kind === "meta" && key.length === 3) {
        if (!isMetaValue(value)) throw unexpected(key);
        metas.set(name, value);
      } else if (
        kind === "msg" && key.length === 4 && Number.isSafeInteger(id) &&
        isStoredValue(value)
      ) {
        this.#room(name).kept.push(toMessage(name, id as number, value));
      } else {
        throw unexpected(key);
      }
    }
    for (const state of this.#rooms.values()) {
      const meta = metas.get(state.name);
      const newest = state.kept.at(-1)?.id ?? 0;
      state.lastId = Math.max(meta?.lastId ?? 0, newest);
      state.trimmedId = meta?.trimmedId ??
        Math.max(0, (state.kept[0]?.id ?? 1) - 1);
      state.nextId = state.lastId + 1;
      if (state.kept.length > this.limit) await this.#trimLoaded(state);
    }
  }

  /** Deletes what a smaller limit than the last run's no longer keeps. */
  async #trimLoaded(state: RoomState): Promise<void> {
    const drop = state.kept.length - this.limit;
    // One delete per message plus the meta key, within KV's mutation limit.
    const step = KV_MAX_MUTATIONS - 1;
    for (let start = 0; start < drop; start += step) {
      const end = Math.min(drop, start + step);
      const operation = this.#kv.atomic();
      for (let i = start; i < end; i++) {
        operation.delete(messageKey(state.name, state.kept[i].id));
      }
      const meta: MetaValue = {
        lastId: state.lastId,
        trimmedId: state.kept[end - 1].id,
      };
      operation.set(metaKey(state.name), meta);
      const result = await operation.commit();
      if (!result.ok) {
        throw new Error(
          `history: could not trim room "${state.name}" to ${this.limit} messages`,
        );
      }
      state.trimmedId = meta.trimmedId;
    }
    state.kept = state.kept.slice(drop);
  }
}

function checkLimit(limit: number | undefined): number {
  const value = limit ?? DEFAULT_HISTORY_LIMIT;
  if (!Number.isSafeInteger(value) || value < 1) {
    throw new RangeError(
      `history: limit must be an integer >= 1, got ${limit}`,
    );
  }
  return value;
}

function unexpected(key: Deno.KvKey): Error {
  return new Error(
    `history: unexpected entry ${
      Deno.inspect(key)
    } in the store; is this a hubchat history database?`,
  );
}

function describe(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

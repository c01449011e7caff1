/**
 * Durable per-room chat history on Deno KV.
 *
 * Every chat message gets an `id`, strictly increasing within its room
 * (1, 2, 3, … per room) and continuing after a restart. The last
 * {@linkcode DEFAULT_HISTORY_LIMIT} messages of each room are kept, in
 * memory and in KV; older ones are trimmed away in the same commits that
 * push them out, so the store stays bounded. Reads come from memory and
 * never touch KV.
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
 * | key                             | value                                           |
 * | ------------------------------- | ----------------------------------------------- |
 * | `["room", R, "meta"]`           | `{ lastId, trimmedId }` (both numbers, 0: none) |
 * | `["room", R, "block", firstId]` | a `Uint8Array`: a block of consecutive messages |
 *
 * `lastId` is the newest stored id, `trimmedId` the newest id trimmed away.
 *
 * Messages are stored in blocks, not one key per message, so that a commit
 * costs a few mutations per room however many messages it carries. A
 * block's value is UTF-8 text: one JSON array per message, each followed by
 * a newline, either `[id, username, text, timestamp]` or, for a direct
 * message, `[id, username, text, timestamp, to]`, or for a shared file
 * `[id, username, caption, timestamp, to or null, file]`. Its key holds the id of
 * its first message, and ids ascend within a block and from one block to the
 * next. A block holds at most {@linkcode BLOCK_MESSAGES} messages and, unless
 * it holds only one, at most {@linkcode BLOCK_BYTES} bytes.
 *
 * Only a room's newest block takes new messages: a commit rewrites it with
 * the new ones appended, starting new blocks as it fills, and deletes every
 * block whose messages are all trimmed away (ids ≤ `trimmedId`). So KV may
 * still hold up to `BLOCK_MESSAGES - 1` trimmed messages, in a room's oldest
 * block; loading skips them, as it skips everything at or below `trimmedId`.
 *
 * The meta key is written in the same atomic commit as the blocks it
 * describes, so the two never disagree. Keys of the earlier
 * one-key-per-message layout (`["room", R, "msg", id]`) are ignored when
 * loading: their messages are not shown, but ids continue after the meta's
 * `lastId`, so none is reused.
 *
 * @module
 */

import {
  type FileInfo,
  type StoredLine,
  storedLine,
  utf8Length,
} from "../protocol.ts";

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
 * Most messages one KV block holds. Each commit rewrites its room's newest
 * block, so this bounds that rewrite and the trimmed messages KV may still
 * hold, while a busy room's commit still carries many messages per key.
 */
export const BLOCK_MESSAGES = 64;

/**
 * Most bytes one KV block holds, unless it holds a single message: a new
 * block is started rather than take one past this. Below
 * {@linkcode KV_MAX_VALUE_BYTES}, which any one storable message fits in.
 */
export const BLOCK_BYTES = 48 * 1024;

/**
 * An upper bound on the serialized size of a room's meta value: two numbers
 * in an object with two short property names.
 */
const META_VALUE_BYTES = 64;

/** A chat message as the caller stamped it, before it has an id. */
export interface HistoryEntry {
  /** The sender. */
  username: string;
  /** The chat text, or a shared file's caption ("" for none). */
  text: string;
  /** When the server stamped it (ISO 8601, UTC, milliseconds). */
  timestamp: string;
  /** The recipient, for a direct message; absent for a public one. */
  to?: string;
  /** For a shared file: what it is (the line is then a `file` line). */
  file?: FileInfo;
}

/**
 * A line as stored: ready to be serialized as a `message` or `file` frame,
 * or as an element of `welcome`'s `history`. Stored lines are frozen.
 */
export type StoredMessage = StoredLine;

/** What a client that reconnects missed; see {@linkcode History.since}. */
export interface ResumeResult {
  /** The kept messages after the client's last id, oldest first. */
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
  /**
   * Told after every commit: null when it stored its messages, the error
   * when it failed (a full disk, say; those messages were refused). Once
   * per commit, not per message: the operator's view of the store.
   */
  onCommit?: (error: Error | null) => void;
}

/**
 * One block in KV, as this process knows it. Not changed once in a room's
 * `blocks` (a commit works on copies, so a failed one leaves the room as
 * stored), except that `bytes` is dropped when a newer block exists.
 */
interface Block {
  /** Its first message's id: the last part of its key. */
  firstId: number;
  /** Its last message's id. */
  lastId: number;
  /** Messages in it. */
  count: number;
  /** Bytes in its value. */
  length: number;
  /**
   * Its value in `bytes[0, length)`, kept only while it is its room's newest
   * block (the one that takes new messages). Bytes past `length` are spare
   * capacity, scratch space for the next commit.
   */
  bytes: Uint8Array | undefined;
}

/** What is known of one room; `kept` and `blocks` are what is durably in KV. */
interface RoomState {
  name: string;
  /** Stored messages, ascending ids, at most `limit` of them. */
  kept: StoredMessage[];
  /**
   * The room's blocks in KV, ascending; each holds an id above `trimmedId`.
   * The last one takes new messages while it has room.
   */
  blocks: Block[];
  /** The newest stored id (0: none yet). */
  lastId: number;
  /** The newest id trimmed away (0: none); every kept id is above it. */
  trimmedId: number;
  /** The id the next append gets. */
  nextId: number;
  /** Encoded size of this room's block keys (an upper bound). */
  blockKeyBytes: number;
  /** Encoded size of this room's meta key. */
  metaKeyBytes: number;
}

/** An append waiting for its commit. */
interface PendingAppend {
  message: StoredMessage;
  state: RoomState;
  /** The message's line in a block, without its newline. */
  line: string;
  /** Bytes the line takes in a block: UTF-8, with its newline. */
  lineBytes: number;
  resolve: (message: StoredMessage) => void;
  reject: (error: Error) => void;
}

/** The value stored at a room's meta key. */
interface MetaValue {
  lastId: number;
  trimmedId: number;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder("utf-8", { fatal: true });

/**
 * Whether a line of `lineBytes` goes into a new block after one holding
 * `count` lines of `length` bytes: the one rule both the commit-size
 * estimate and the writer follow.
 */
function startsNewBlock(
  count: number,
  length: number,
  lineBytes: number,
): boolean {
  return count > 0 &&
    (count >= BLOCK_MESSAGES || length + lineBytes > BLOCK_BYTES);
}

/** Encoded size of a string key part: tag, UTF-8 bytes, escaped NULs, end. */
function keyPartBytes(part: string): number {
  let nuls = 0;
  for (let i = part.indexOf("\0"); i !== -1; i = part.indexOf("\0", i + 1)) {
    nuls++;
  }
  return 2 + utf8Length(part) + nuls;
}

/**
 * An upper bound on the V8-serialized size of a message as an object of its
 * string fields: at most two bytes per UTF-16 unit of every name and string,
 * plus tags and lengths. A message over {@linkcode KV_MAX_VALUE_BYTES} by
 * this measure is refused, as when each message had a key of its own, even
 * though its line in a block may be smaller.
 */
function valueBytes(entry: HistoryEntry): number {
  let bytes = 16 +
    (16 + 2 * "username".length + 2 * entry.username.length) +
    (16 + 2 * "text".length + 2 * entry.text.length) +
    (16 + 2 * "timestamp".length + 2 * entry.timestamp.length);
  if (entry.to !== undefined) {
    bytes += 16 + 2 * "to".length + 2 * entry.to.length;
  }
  if (entry.file !== undefined) {
    bytes += 16 + 2 * "file".length + 2 * JSON.stringify(entry.file).length;
  }
  return bytes;
}

/** Encoded size of `["room", room, "block", id]`: three strings, one number. */
function blockKeyBytes(room: string): number {
  return keyPartBytes("room") + keyPartBytes(room) + keyPartBytes("block") + 9;
}

function blockKey(room: string, firstId: number): Deno.KvKey {
  return ["room", room, "block", firstId];
}

function metaKey(room: string): Deno.KvKey {
  return ["room", room, "meta"];
}

/** A message's line in a block (see the module docs), without its newline. */
function toLine(message: StoredMessage): string {
  const fields: (number | string | null | FileInfo)[] = [
    message.id,
    message.username,
    message.text ?? "",
    message.timestamp,
  ];
  if (message.type === "file") fields.push(message.to ?? null, message.file);
  else if (message.to !== undefined) fields.push(message.to);
  return JSON.stringify(fields);
}

function toMessage(
  room: string,
  id: number,
  entry: HistoryEntry,
): StoredMessage {
  return Object.freeze(storedLine({ ...entry, id, room }));
}

/** True when a block line's sixth field is a file's description. */
function isFileInfo(value: unknown): value is FileInfo {
  if (typeof value !== "object" || value === null) return false;
  const { id, name, size, type, url } = value as Record<string, unknown>;
  return typeof id === "string" && typeof name === "string" &&
    Number.isSafeInteger(size) && typeof type === "string" &&
    typeof url === "string";
}

/**
 * The messages in a block's value, or undefined when it is not a block: not
 * UTF-8, a line that is not a message, or ids that do not ascend from
 * `firstId`.
 */
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
    if (fields.length === 6) entry.file = file;
    messages.push(toMessage(room, id, entry));
    previous = id;
  }
  return messages;
}

function isMetaValue(value: unknown): value is MetaValue {
  if (typeof value !== "object" || value === null) return false;
  const { lastId, trimmedId } = value as Record<string, unknown>;
  return Number.isSafeInteger(lastId) && Number.isSafeInteger(trimmedId);
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
 * Which step of {@linkcode History.open} failed:
 *
 * - `"folder"`: the file's folder could not be created;
 * - `"file"`: the file could not be opened (or created) for reading and
 *   writing;
 * - `"locked"`: another history (another hubchat, most likely) holds the
 *   file's lock;
 * - `"store"`: Deno KV could not open it (it is not a KV database, or
 *   its folder takes no new files: SQLite writes its journal beside it);
 * - `"load"`: it opened, but what it holds could not be loaded (another
 *   program's KV database, say).
 */
export type HistoryOpenStep =
  | "folder"
  | "file"
  | "locked"
  | "store"
  | "load";

/**
 * {@linkcode History.open} could not use its path; `cause` is the error of
 * the step that failed. A command line words it for its user (main.ts
 * does, naming `--data`).
 *
 * @example
 * ```ts
 * import { History, HistoryOpenError } from "./history.ts";
 * const dir = await Deno.makeTempDir();
 * await Deno.writeTextFile(`${dir}/file`, "");
 * try {
 *   await History.open(`${dir}/file/history.kv`);
 * } catch (error) {
 *   if (error instanceof HistoryOpenError) {
 *     console.log(error.step, error.blocker); // "folder", `${dir}/file`
 *   }
 * }
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export class HistoryOpenError extends Error {
  /** The path that was given. */
  readonly path: string;
  /** The step that failed. */
  readonly step: HistoryOpenStep;
  /** For `"folder"`: the folder that could not be created. */
  readonly folder: string | undefined;
  /**
   * For `"folder"`: the file that stands where a folder of the path should
   * be, when that is why, as in `notes/history.kv` when `notes` is a file.
   */
  readonly blocker: string | undefined;

  /** Creates the error; `cause` is what the failing step threw. */
  constructor(
    path: string,
    step: HistoryOpenStep,
    cause: unknown,
    where: { folder?: string; blocker?: string } = {},
  ) {
    super(
      `history: cannot open the store at "${path}" (${step}): ${
        describe(cause)
      }`,
      { cause },
    );
    this.name = "HistoryOpenError";
    this.path = path;
    this.step = step;
    this.folder = where.folder;
    this.blocker = where.blocker;
  }
}

/**
 * Creates the folder of the file at `path`, opens the file for reading and
 * writing (creating it empty, which Deno KV takes as a new store), so that
 * a path that cannot be used fails with the operating system's reason
 * rather than SQLite's "unable to open database file", and takes its
 * exclusive lock; returns the open, locked file.
 */
async function lockFile(path: string): Promise<Deno.FsFile> {
  const folder = parentDirectory(path);
  if (folder !== undefined) {
    try {
      await Deno.mkdir(folder, { recursive: true });
    } catch (error) {
      throw new HistoryOpenError(path, "folder", error, {
        folder,
        blocker: await fileInTheWay(folder),
      });
    }
  }
  let file: Deno.FsFile;
  try {
    file = await Deno.open(path, { read: true, write: true, create: true });
  } catch (error) {
    throw new HistoryOpenError(path, "file", error);
  }
  // flock, which SQLite's own (POSIX) locks on the file do not touch.
  if (!(await file.tryLock(true))) {
    file.close();
    throw new HistoryOpenError(
      path,
      "locked",
      new Error("its lock is held by another open history"),
    );
  }
  return file;
}

/**
 * The nearest of `folder` and its ancestors that exists, when it is not a
 * folder: the file that kept `mkdir` from making `folder`.
 */
async function fileInTheWay(folder: string): Promise<string | undefined> {
  for (
    let path: string | undefined = folder;
    path !== undefined;
    path = parentDirectory(path)
  ) {
    let info: Deno.FileInfo;
    try {
      info = await Deno.stat(path);
    } catch {
      continue;
    }
    return info.isDirectory ? undefined : path;
  }
  return undefined;
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
 * history.recent("lobby"); // [stored]
 * history.since("lobby", 0); // { messages: [stored], gap: false }
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
  /**
   * The store's file, open and locked while this history uses it (see
   * {@linkcode History.open}); closed after the store, never before: closing
   * any descriptor of a file drops the POSIX locks SQLite holds on it.
   */
  #lock: Deno.FsFile | undefined;

  #onCommit?: (error: Error | null) => void;

  private constructor(kv: Deno.Kv, options: HistoryOptions) {
    this.#kv = kv;
    this.limit = checkLimit(options.limit);
    this.#onCommit = options.onCommit;
  }

  /**
   * Opens (or creates) the history stored at `path`, creating its parent
   * directory if missing, and loads every room's kept messages. `":memory:"`
   * keeps it in memory only (tests).
   *
   * Whether the path can be used is found out by using it: the folder is
   * created and the file opened for reading and writing before Deno KV
   * opens it (Deno KV opens a read-only file and fails only at the first
   * write). The file stays open, with an exclusive lock (`flock`), until
   * {@linkcode History.close}: a second history on the same file, in this
   * process or another, would reuse ids and overwrite blocks, so it is
   * refused. Any failure is a {@linkcode HistoryOpenError} saying which
   * step failed.
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
    const local = path !== ":memory:" && !/^[a-z][a-z0-9+.-]*:\/\//i.test(path);
    const lock = local ? await lockFile(path) : undefined;
    let kv: Deno.Kv;
    try {
      kv = await Deno.openKv(path);
    } catch (error) {
      lock?.close();
      throw new HistoryOpenError(path, "store", error);
    }
    let history: History;
    try {
      history = await History.fromKv(kv, { ...options, limit });
    } catch (error) {
      lock?.close();
      throw new HistoryOpenError(path, "load", error);
    }
    history.#lock = lock;
    return history;
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
    const history = new History(kv, options);
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
    const existing = this.#rooms.get(room);
    if (existing === undefined) {
      const keyBytes = blockKeyBytes(room);
      if (keyBytes > KV_MAX_KEY_BYTES) {
        return Promise.reject(
          new RangeError(
            `history: room name is too long to be stored (its keys would be ${keyBytes} bytes; the limit is ${KV_MAX_KEY_BYTES})`,
          ),
        );
      }
    }
    const bytes = valueBytes(entry);
    if (bytes > KV_MAX_VALUE_BYTES) {
      return Promise.reject(
        new RangeError(
          `history: message is too large to be stored (up to ${bytes} bytes once serialized; the limit is ${KV_MAX_VALUE_BYTES})`,
        ),
      );
    }
    // A new room starts at id 1; its state is made only for a message that
    // will be stored, so a refused one leaves nothing behind.
    const message = toMessage(room, existing?.nextId ?? 1, entry);
    const line = toLine(message);
    const lineBytes = utf8Length(line) + 1;
    if (lineBytes > KV_MAX_VALUE_BYTES) {
      return Promise.reject(
        new RangeError(
          `history: message is too large to be stored (${lineBytes} bytes once encoded; the limit is ${KV_MAX_VALUE_BYTES})`,
        ),
      );
    }
    const state = existing ?? this.#room(room);
    state.nextId++;
    return new Promise((resolve, reject) => {
      this.#queue.push({ message, state, line, lineBytes, resolve, reject });
      this.#schedule();
    });
  }

  /**
   * The room's kept messages, direct ones included, oldest first, in a new
   * array. Who may read which is the room's rule, not the store's.
   *
   * @example
   * ```ts
   * import { History } from "./history.ts";
   * const history = await History.open(":memory:");
   * history.recent("lobby"); // []
   * await history.close();
   * ```
   */
  recent(room: string): StoredMessage[] {
    return this.#rooms.get(room)?.kept.slice() ?? [];
  }

  /**
   * What a client that last saw message `lastSeenId` of the room missed,
   * direct messages included. `lastSeenId` 0 means it saw nothing.
   *
   * - `gap` is false when every message after `lastSeenId` is still kept:
   *   `messages` are exactly those, with no duplicate and no hole. Precisely, `gap` is true iff `lastSeenId` is
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
   * history.since("lobby", 1); // { messages: [message 2], gap: false }
   * history.since("lobby", 9); // { messages: [1, 2], gap: true }
   * await history.close();
   * ```
   */
  since(room: string, lastSeenId: number): ResumeResult {
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
      return { messages: this.recent(room), gap: true };
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
    return { messages: kept.slice(low), gap: lastSeenId < state.trimmedId };
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
    this.#lock?.close();
  }

  #room(name: string): RoomState {
    let state = this.#rooms.get(name);
    if (state === undefined) {
      state = {
        name,
        kept: [],
        blocks: [],
        lastId: 0,
        trimmedId: 0,
        nextId: 1,
        blockKeyBytes: blockKeyBytes(name),
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
   * Costs are upper bounds. Every room touched rewrites its meta key and its
   * newest block (or starts one); every block the appends fill starts
   * another; and every old message an append pushes out may empty one more
   * block, to delete, while blocks are left (each holds a kept message, so
   * pushing out `d` messages deletes at most `d` of them).
   */
  #chunkLength(): number {
    const queue = this.#queue;
    const rooms = new Map<RoomState, ChunkRoom>();
    let mutations = 0;
    let bytes = 0;
    let keyBytes = 0;
    let count = 0;
    for (; count < queue.length; count++) {
      const { state, lineBytes } = queue[count];
      let room = rooms.get(state);
      let m = 0;
      let b = lineBytes;
      let k = 0;
      if (room === undefined) {
        const open = openBlock(state);
        room = {
          added: 0,
          blockCount: open?.count ?? 0,
          blockLength: open?.length ?? 0,
          deletes: 0,
        };
        m += 2;
        b += 2 * state.metaKeyBytes + META_VALUE_BYTES +
          2 * state.blockKeyBytes + room.blockLength;
        k += state.metaKeyBytes + state.blockKeyBytes;
      }
      const newBlock = startsNewBlock(
        room.blockCount,
        room.blockLength,
        lineBytes,
      );
      if (newBlock) {
        m += 1;
        b += 2 * state.blockKeyBytes;
        k += state.blockKeyBytes;
      }
      const deletes = state.kept.length + room.added >= this.limit &&
        room.deletes < state.blocks.length;
      if (deletes) {
        m += 1;
        b += state.blockKeyBytes;
      }
      if (
        count > 0 &&
        (mutations + m > KV_MAX_MUTATIONS || bytes + b > KV_MAX_COMMIT_BYTES ||
          keyBytes + k > KV_MAX_COMMIT_KEY_BYTES)
      ) break;
      mutations += m;
      bytes += b;
      keyBytes += k;
      if (newBlock) {
        room.blockCount = 0;
        room.blockLength = 0;
      }
      room.blockCount++;
      room.blockLength += lineBytes;
      if (deletes) room.deletes++;
      room.added++;
      rooms.set(state, room);
    }
    return count;
  }

  /**
   * Stores one chunk in one atomic commit, then updates the rooms and
   * settles the chunk's appends in order. Never throws: a failed commit
   * rejects the chunk's appends and leaves the rooms as they were.
   */
  async #commit(chunk: PendingAppend[]): Promise<void> {
    const byRoom = new Map<RoomState, PendingAppend[]>();
    for (const append of chunk) {
      const list = byRoom.get(append.state);
      if (list === undefined) byRoom.set(append.state, [append]);
      else list.push(append);
    }
    const updates: RoomUpdate[] = [];
    try {
      const operation = this.#kv.atomic();
      for (const [state, added] of byRoom) {
        updates.push(this.#stage(operation, state, added));
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
      this.#onCommit?.(
        error instanceof Error ? error : new Error(reason, { cause: error }),
      );
      return;
    }
    this.#commits++;
    this.#onCommit?.(null);
    for (const update of updates) {
      const { state } = update;
      state.kept = update.kept;
      state.lastId = update.meta.lastId;
      state.trimmedId = update.meta.trimmedId;
      const blocks = state.blocks;
      if (update.replacesLast) blocks.pop();
      for (const block of update.written) blocks.push(block);
      if (update.deletes > 0) blocks.splice(0, update.deletes);
      // Only the newest block keeps its bytes, to take the next messages.
      for (let i = blocks.length - 2; i >= 0; i--) {
        if (blocks[i].bytes === undefined) break;
        blocks[i].bytes = undefined;
      }
    }
    for (const { message, resolve } of chunk) resolve(message);
  }

  /**
   * Adds one room's part of a commit to `operation`: its new messages
   * appended to its newest block (and to new ones as blocks fill), the
   * blocks left holding only trimmed messages deleted, its meta rewritten.
   * Returns what the room becomes if the commit succeeds; changes nothing
   * in the room itself.
   */
  #stage(
    operation: Deno.AtomicOperation,
    state: RoomState,
    added: PendingAppend[],
  ): RoomUpdate {
    const { name, kept } = state;
    const total = kept.length + added.length;
    const drop = Math.max(0, total - this.limit);
    let trimmedId = state.trimmedId;
    if (drop > 0) {
      trimmedId = drop <= kept.length
        ? kept[drop - 1].id
        : added[drop - kept.length - 1].message.id;
    }
    const nextKept: StoredMessage[] = [];
    for (let i = Math.min(drop, kept.length); i < kept.length; i++) {
      nextKept.push(kept[i]);
    }
    // Pushed-out new messages (a burst longer than the limit) are simply
    // never written.
    const firstWritten = Math.max(0, drop - kept.length);
    for (let i = firstWritten; i < added.length; i++) {
      nextKept.push(added[i].message);
    }

    // Pack the new lines into the newest block and new ones, then encode
    // each block's new lines with one call.
    const written: Block[] = [];
    const lines: string[][] = [];
    const starts: number[] = [];
    const open = openBlock(state);
    let block: Block | undefined = open === undefined ? undefined : { ...open };
    let blockLines: string[] = [];
    for (let i = firstWritten; i < added.length; i++) {
      const { message, line, lineBytes } = added[i];
      if (
        block === undefined ||
        startsNewBlock(block.count, block.length, lineBytes)
      ) {
        block = {
          firstId: message.id,
          lastId: message.id,
          count: 0,
          length: 0,
          bytes: undefined,
        };
      }
      if (block !== written.at(-1)) {
        written.push(block);
        blockLines = [];
        lines.push(blockLines);
        starts.push(block.length);
      }
      blockLines.push(line);
      block.length += lineBytes;
      block.count++;
      block.lastId = message.id;
    }
    for (let i = 0; i < written.length; i++) {
      const block = written[i];
      const text = lines[i].join("\n") + "\n";
      const start = starts[i];
      let bytes = block.bytes;
      if (bytes === undefined || bytes.length < block.length) {
        // Room to grow, so that appends seldom copy the block.
        const grown = new Uint8Array(
          Math.min(
            Math.max(KV_MAX_VALUE_BYTES, block.length),
            Math.max(256, 2 * block.length),
          ),
        );
        if (bytes !== undefined) grown.set(bytes.subarray(0, start));
        bytes = grown;
        block.bytes = bytes;
      }
      const { written: encoded } = encoder.encodeInto(
        text,
        bytes.subarray(start),
      );
      if (start + encoded !== block.length) {
        throw new Error("history: a block's size was miscounted");
      }
      operation.set(
        blockKey(name, block.firstId),
        bytes.subarray(0, block.length),
      );
    }
    // The open block is rewritten (not deleted) when it took messages.
    const replacesLast = open !== undefined &&
      written[0]?.firstId === open.firstId;
    const last = state.blocks.length - (replacesLast ? 1 : 0);
    let deletes = 0;
    while (deletes < last && state.blocks[deletes].lastId <= trimmedId) {
      operation.delete(blockKey(name, state.blocks[deletes].firstId));
      deletes++;
    }
    const meta: MetaValue = {
      lastId: added[added.length - 1].message.id,
      trimmedId,
    };
    operation.set(metaKey(name), meta);
    return { state, kept: nextKept, meta, written, replacesLast, deletes };
  }

  /**
   * Reads every room's blocks and meta; keeps in memory the last `limit`
   * messages above each room's `trimmedId`, and trims rooms holding more.
   */
  async #load(): Promise<void> {
    const metas = new Map<string, MetaValue>();
    const stored = new Map<string, StoredMessage[]>();
    for await (const { key, value } of this.#kv.list({ prefix: ["room"] })) {
      const [, name, kind, firstId] = key;
      if (typeof name !== "string") throw unexpected(key);
      if (kind === "meta" && key.length === 3) {
        if (!isMetaValue(value)) throw unexpected(key);
        metas.set(name, value);
        this.#room(name);
      } else if (
        kind === "block" && key.length === 4 && Number.isSafeInteger(firstId)
      ) {
        if (!(value instanceof Uint8Array)) throw unexpected(key);
        const messages = parseBlock(name, firstId as number, value);
        if (messages === undefined) throw unexpected(key);
        const state = this.#room(name);
        const previous = stored.get(name);
        if (previous !== undefined && previous.at(-1)!.id >= messages[0].id) {
          throw unexpected(key);
        }
        state.blocks.push({
          firstId: firstId as number,
          lastId: messages.at(-1)!.id,
          count: messages.length,
          length: value.length,
          bytes: value,
        });
        if (previous === undefined) stored.set(name, messages);
        else for (const message of messages) previous.push(message);
      } else if (kind === "msg" && key.length === 4) {
        // The earlier one-key-per-message layout: ignored.
      } else {
        throw unexpected(key);
      }
    }
    for (const state of this.#rooms.values()) {
      const meta = metas.get(state.name);
      const messages = stored.get(state.name) ?? [];
      const newest = messages.at(-1)?.id ?? 0;
      state.lastId = Math.max(meta?.lastId ?? 0, newest);
      state.trimmedId = meta?.trimmedId ??
        Math.max(0, (messages[0]?.id ?? 1) - 1);
      state.nextId = state.lastId + 1;
      let first = 0;
      while (
        first < messages.length && messages[first].id <= state.trimmedId
      ) first++;
      const drop = first + Math.max(0, messages.length - first - this.limit);
      if (drop > first) state.trimmedId = messages[drop - 1].id;
      state.kept = messages.slice(drop);
      for (let i = 0; i < state.blocks.length - 1; i++) {
        state.blocks[i].bytes = undefined;
      }
      const oldest = state.blocks[0];
      if (
        drop > first ||
        (oldest !== undefined && oldest.lastId <= state.trimmedId)
      ) {
        await this.#trimLoaded(state);
      }
    }
  }

  /**
   * Stores a room's `trimmedId` after loading raised it (a smaller limit
   * than the last run's), and deletes the blocks that hold only messages
   * trimmed away.
   */
  async #trimLoaded(state: RoomState): Promise<void> {
    const meta: MetaValue = {
      lastId: state.lastId,
      trimmedId: state.trimmedId,
    };
    let dead = 0;
    while (
      dead < state.blocks.length && state.blocks[dead].lastId <= meta.trimmedId
    ) dead++;
    // Deletes plus the meta key, within KV's mutation limit; the meta goes
    // in the first commit, so a crash part way leaves dead blocks that the
    // next load deletes.
    const step = KV_MAX_MUTATIONS - 1;
    let start = 0;
    do {
      const end = Math.min(dead, start + step);
      const operation = this.#kv.atomic();
      for (let i = start; i < end; i++) {
        operation.delete(blockKey(state.name, state.blocks[i].firstId));
      }
      if (start === 0) operation.set(metaKey(state.name), meta);
      const result = await operation.commit();
      if (!result.ok) {
        throw new Error(
          `history: could not trim room "${state.name}" to ${this.limit} messages`,
        );
      }
      start = end;
    } while (start < dead);
    state.blocks = state.blocks.slice(dead);
  }
}

/** A room's newest block, while it may take more messages. */
function openBlock(state: RoomState): Block | undefined {
  const block = state.blocks.at(-1);
  return block?.bytes === undefined ? undefined : block;
}

/** What {@linkcode History} `#chunkLength` tracks of each room in a chunk. */
interface ChunkRoom {
  /** The room's appends in the chunk so far. */
  added: number;
  /** Messages in the block being filled. */
  blockCount: number;
  /** Bytes in the block being filled. */
  blockLength: number;
  /** Blocks the chunk may delete. */
  deletes: number;
}

/** What a room becomes if a commit succeeds. */
interface RoomUpdate {
  state: RoomState;
  kept: StoredMessage[];
  meta: MetaValue;
  /** The blocks set, ascending; the first may replace the newest stored. */
  written: Block[];
  /** True when `written[0]` is the room's newest block, rewritten. */
  replacesLast: boolean;
  /** Blocks deleted from the front of the room's `blocks`. */
  deletes: number;
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

/**
 * Durable per-room chat history in one append-only file.
 *
 * Every chat line gets an `id`, strictly increasing within its room (1, 2,
 * 3, … per room) and continuing after a restart. The last
 * {@linkcode DEFAULT_HISTORY_LIMIT} lines of each room are kept in memory;
 * reads come from memory and never touch the file.
 *
 * Writes are group-committed: every append made during one event-loop turn
 * is written with one `write` at the end of the turn, and the appends
 * resolve, in id order, once that write returned. A caller that broadcasts
 * a line after `await history.append(...)` therefore never shows anyone a
 * line that a crash of the process (even SIGKILL) could lose: it is in the
 * kernel. What a power loss can cost depends on {@linkcode FsyncMode}:
 * `"periodic"` (the default) makes the file durable with `fdatasync` at most
 * {@linkcode FSYNC_INTERVAL_MS} after a write, so a power loss can cost the
 * lines of the last second or so; `"always"` waits for `fdatasync` before a
 * commit's lines resolve (lines that arrive meanwhile gather into the next
 * commit), so it costs none.
 *
 * ## The file
 *
 * UTF-8 text, one JSON object per line (`\n`-terminated):
 *
 * | record                                                      | what                                                                                  |
 * | ----------------------------------------------------------- | ------------------------------------------------------------------------------------- |
 * | `{"hubchat":"history","version":1,"limit":N}`               | the first line: what the file is, and the limit its lines were trimmed under          |
 * | `{"type":"message","id":…,"room":…}` or `{"type":"file",…}` | a stored line, exactly as sent to clients (protocol.ts's `StoredLine`)                |
 * | `{"type":"meta","room":R,"lastId":N,"trimmedId":N}`         | written by a compaction: room R's newest id and the newest id trimmed away (0: none) |
 * | `{"type":"reserve","room":R,"upTo":N}`                      | room R's ids up to N are reserved (see "Ids after a power loss")                      |
 * | `{"type":"boot","id":B}` or `{"type":"boot"}`               | written and synced by each open: this boot's id B, or none where it is unknown        |
 * | `{"type":"closed"}`                                         | written by a clean close                                                              |
 *
 * Within a room, ids ascend from one line to the next. A room's kept lines
 * are its last `limit` lines (after its meta record, if any); those before
 * them were trimmed away, and the newest of those is its `trimmedId`.
 * Loading follows that rule, so a restart sees what the run saw.
 *
 * Trimming does not rewrite anything: the file grows, and once it is
 * twice the size of what the last compaction kept (and at least
 * {@linkcode COMPACT_MIN_BYTES}), a compaction writes the kept lines and a
 * meta record per room to `PATH.compact` in the background (in pieces,
 * commits going on between them), makes it durable, then, between two
 * commits, appends what was committed meanwhile, syncs again and renames
 * it over the file. A crash at any point leaves either file whole. Once
 * renamed, the new file is written through even if its folder cannot be
 * synced; that is told, and the folder is synced with the next sync.
 *
 * A write that fails (a full disk) is cut back off the file, so the file
 * only ever holds whole commits; a line half written when the power went
 * (the file's tail, after its last newline, even one that stops inside a
 * character) is dropped when loading.
 *
 * ## Ids after a power loss
 *
 * With `fsync: "periodic"`, a power loss can take lines that clients were
 * shown; their ids must never be given again (a client that saw one would
 * take a new line of that id for the one it saw). So a room reserves ids
 * {@linkcode ID_RESERVATION} at a time, with a
 * `{"type":"reserve","room":R,"upTo":N}` record written ahead of need and
 * synced with the periodic sync; a line whose id is past the synced
 * reservations (a room's first, or a burst) waits for that sync. Each open
 * writes `{"type":"boot","id":B}` (Linux's boot id; `{"type":"boot"}` where
 * there is none) and syncs it before any line is shown, and a clean close
 * writes `{"type":"closed"}`. Loading a file that was closed cleanly, or last
 * written in this boot (the process died, the kernel kept what it wrote),
 * continues each room's ids after its newest line; any other file (a power
 * loss, a kernel crash) continues them after its newest reservation, so
 * ids skip. Meta records carry `reserved` too.
 *
 * ## Files of earlier versions
 *
 * hubchat kept history in Deno KV before. A `--data` file that is a Deno KV
 * (SQLite) database is carried over when it is opened: its kept lines are
 * written to a new log file, the old file is kept beside it as
 * `PATH.deno-kv` (a hard link; delete it once satisfied), and the new file
 * takes its place.
 *
 * @module
 */

import { type FileInfo, type StoredLine, utf8Length } from "../protocol.ts";
import { type CompactedRoom, Compactor } from "./compaction.ts";
import { entryBytes, invalidEntry, storedMessage } from "./history_entry.ts";
import {
  bootLine,
  currentBootId,
  describe,
  DiskFile,
  type FolderSync,
  headerLine,
  type HistoryFile,
  HistoryOpenError,
  lockFile,
  NO_FILE,
  startsWithHeader,
  syncFolder,
} from "./history_file.ts";
import { adoptKvRooms, type Loaded, loadHistoryFile } from "./history_load.ts";
import { type RoomState, RoomTable, trimRoom } from "./history_rooms.ts";
import { isSqlite, type KvRoom, readKvHistory } from "./kv_migration.ts";

/**
 * Lines kept per room when no `limit` is given. A joiner's `welcome`
 * carries them all, so this bounds that frame (100 × 2000 characters is
 * under 1 MiB even at worst) and the memory and disk a room can hold, while
 * covering what a reader scrolls back through or a briefly dropped client
 * missed.
 */
export const DEFAULT_HISTORY_LIMIT = 100;

/**
 * Most bytes one commit writes (unless one line is bigger): a turn that
 * brings more is written in several commits, so that one `write` and its
 * buffer stay bounded.
 */
export const MAX_COMMIT_BYTES = 800 * 1024;

/**
 * Largest entry stored, measured as two bytes per UTF-16 unit of its
 * strings plus some per field: far above what the protocol lets a client
 * send (2000 characters), so only a bug reaches it.
 */
export const MAX_ENTRY_BYTES = 64 * 1024;

/** Longest room name stored, in UTF-8 bytes. */
export const MAX_ROOM_BYTES = 2000;

/**
 * How long a written line may wait for `fdatasync` with `fsync: "periodic"`:
 * what a power loss can cost, at most (plus the sync itself).
 */
export const FSYNC_INTERVAL_MS = 1000;

/**
 * Ids a room reserves at a time (see "Ids after a power loss"): after a
 * power loss, a room's ids skip at most about this many.
 */
export const ID_RESERVATION = 10_000;

/**
 * The file is compacted only when it is at least this big (and twice what
 * its kept lines take): compactions stay rare however small the history.
 */
export const COMPACT_MIN_BYTES = 8 * 1024 * 1024;

/**
 * When a stored line is made durable against a power loss (a crash of the
 * process alone loses nothing either way):
 *
 * - `"periodic"`: `fdatasync` at most {@linkcode FSYNC_INTERVAL_MS} after a
 *   write; lines are sent once written. A power loss can cost the last
 *   second of lines.
 * - `"always"`: lines are sent only after `fdatasync` returned.
 */
export type FsyncMode = "periodic" | "always";

/** A chat line as the caller stamped it, before it has an id. */
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
  /** Lines kept per room, at least 1. Default {@linkcode DEFAULT_HISTORY_LIMIT}. */
  limit?: number;
  /** When lines are made durable against a power loss. Default `"periodic"`. */
  fsync?: FsyncMode;
  /**
   * Told after every commit: null when it stored its lines, the error when
   * it failed (a full disk, say; those lines were refused). Once per
   * commit, not per line: the operator's view of the store. A periodic
   * `fdatasync` that fails is told too.
   */
  onCommit?: (error: Error | null) => void;
  /**
   * Wraps the file the history writes through (tests make it fail on
   * purpose); applied again to the new file after each compaction.
   */
  wrapFile?: (file: HistoryFile) => HistoryFile;
  /**
   * Wraps how a compaction's rename over the file is made durable (tests
   * make it fail on purpose).
   */
  wrapFolderSync?: (sync: FolderSync) => FolderSync;
}

/** An append waiting for its commit. */
interface PendingAppend {
  message: StoredMessage;
  state: RoomState;
  /** The line's record: its JSON, without the newline. */
  record: string;
  done: AppendDone;
}

/**
 * Told once an append settles: with the stored line and its record (the
 * line's JSON, as sent to clients), or with why it was not stored.
 */
export type AppendDone = (
  result: StoredMessage | Error,
  record?: string,
) => void;

const encoder = new TextEncoder();

/**
 * The chat history of every room, backed by one append-only file.
 *
 * Guarantees: ids are strictly increasing per room and continue after a
 * restart; `append` resolves only once its line is written to the file
 * (and synced, with `fsync: "always"`), and appends resolve in the order
 * they were made; reads return only stored lines. If a commit fails,
 * exactly the appends in it reject and their ids are never seen (ids may
 * then skip, but never repeat once seen).
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
  /** Lines kept per room. */
  readonly limit: number;
  /** When lines are synced. */
  readonly fsync: FsyncMode;
  /** The open, locked file; undefined for `:memory:`. */
  #disk: DiskFile | undefined;
  /** Compacts the file; undefined for `:memory:`. */
  #compactor: Compactor | undefined;
  #file: HistoryFile = NO_FILE;
  #wrap: ((file: HistoryFile) => HistoryFile) | undefined;
  readonly #folderSync: FolderSync;
  #rooms = new RoomTable();
  /** Appends not yet handed to a commit, in the order they were made. */
  #queue: PendingAppend[] = [];
  /** The end-of-turn commit, while one is scheduled. */
  #timer: ReturnType<typeof setImmediate> | undefined;
  /** The commit loop, while it awaits (a sync, a compaction). */
  #draining: Promise<void> | undefined;
  /** Bytes of whole commits in the file: where the next write goes. */
  #length = 0;
  /** True when a failed write may have left bytes past `#length`. */
  #torn = false;
  /** Size of the file after the last compaction (or load). */
  #compacted = 0;
  /** The periodic sync, while one is due. */
  #syncTimer: ReturnType<typeof setTimeout> | undefined;
  /** The sync under way, if any. */
  #syncing: Promise<void> | undefined;
  /** Bytes were written since the last sync began. */
  #dirty = false;
  /** A reservation was written while a sync ran: sync again after it. */
  #syncAgain = false;
  #commits = 0;
  #closing: Promise<void> | undefined;
  /** Scratch space the records of a commit are encoded into. */
  #buffer = new Uint8Array(16 * 1024);
  #onCommit?: (error: Error | null) => void;
  /** This boot's id, written at each open (see "Ids after a power loss"). */
  #bootId: string | undefined;
  /**
   * A compaction's rename is not durable yet (its folder sync failed): the
   * next sync of the file syncs the folder too, and only one that does
   * counts reservations written since as synced.
   */
  #folderUnsynced = false;
  /**
   * Reservations written and not yet synced, in the order written: each
   * with where it was written, and its number among all written.
   */
  #pending: { state: RoomState; upTo: number; at: number; seq: number }[] = [];
  /** Reservations written so far: the newest one's `seq`. */
  #reservations = 0;

  private constructor(options: HistoryOptions) {
    this.limit = checkLimit(options.limit);
    this.fsync = checkFsync(options.fsync);
    this.#onCommit = options.onCommit;
    this.#wrap = options.wrapFile;
    this.#folderSync = options.wrapFolderSync?.(syncFolder) ?? syncFolder;
  }

  /**
   * Opens (or creates) the history stored at `path`, creating its parent
   * directory if missing, and loads every room's kept lines. `":memory:"`
   * keeps it in memory only (tests, and no history across restarts).
   *
   * Whether the path can be used is found out by using it: the folder is
   * created, the file opened for reading and writing, and a file created
   * (and removed) beside it, where compactions write. The file stays open,
   * with an exclusive lock (`flock`), until {@linkcode History.close}: a
   * second history on the same file, in this process or another, would
   * reuse ids, so it is refused. An earlier version's Deno KV file is
   * carried over (see the module's docs). Any failure is a
   * {@linkcode HistoryOpenError} saying which step failed.
   *
   * @example
   * ```ts
   * import { History } from "./history.ts";
   * const dir = await Deno.makeTempDir(); // a server would use "data/"
   * const history = await History.open(`${dir}/chat/history.log`);
   * await history.close();
   * await Deno.remove(dir, { recursive: true });
   * ```
   */
  static async open(
    path: string,
    options: HistoryOptions = {},
  ): Promise<History> {
    const history = new History(options);
    if (path === ":memory:") {
      history.#file = history.#wrap?.(NO_FILE) ?? NO_FILE;
      return history;
    }
    const file = await lockFile(path);
    try {
      await history.#openFile(path, file);
    } catch (error) {
      for (
        const open of new Set([
          file,
          history.#compactor?.retired,
          history.#disk?.file,
        ])
      ) {
        try {
          open?.close();
        } catch {
          // Closed already.
        }
      }
      throw error;
    }
    return history;
  }

  /** Loads (or carries over, or starts) the locked file at `path`. */
  async #openFile(path: string, file: Deno.FsFile): Promise<void> {
    this.#bootId = currentBootId();
    // What a new file starts with, whether a compaction writes it or not.
    const head = headerLine(this.limit) + bootLine(this.#bootId);
    this.#compactor = new Compactor(path, head, this.#folderSync);
    this.#use(file);
    try {
      await this.#compactor.probe();
    } catch (error) {
      throw new HistoryOpenError(path, "beside", error);
    }
    const bytes = await Deno.readFile(path);
    if (isSqlite(bytes)) {
      let rooms: Map<string, KvRoom>;
      try {
        rooms = await readKvHistory(path);
      } catch (error) {
        const step = /unexpected entry/.test(describe(error))
          ? "load"
          : "store";
        throw new HistoryOpenError(path, step, error);
      }
      adoptKvRooms(rooms, this.#rooms, this.limit);
      try {
        // The old file stays beside the new one until the user removes it.
        await Deno.remove(`${path}.deno-kv`).catch(() => {});
        await Deno.link(path, `${path}.deno-kv`);
        await this.#compact();
      } catch (error) {
        throw new HistoryOpenError(path, "beside", error);
      }
      return;
    }
    let loaded: Loaded;
    try {
      loaded = loadHistoryFile(bytes, this.#rooms, {
        limit: this.limit,
        bootId: this.#bootId,
      });
    } catch (error) {
      const step = bytes.length > 0 && !startsWithHeader(bytes)
        ? "store"
        : "load";
      throw new HistoryOpenError(path, step, error);
    }
    const disk = this.#disk!;
    try {
      if (loaded.length === 0) {
        // A new file (or one whose header never reached the disk whole).
        const header = encoder.encode(head);
        disk.truncate(0);
        disk.write(header);
        await disk.sync();
        this.#length = this.#compacted = header.length;
      } else if (loaded.limit !== this.limit) {
        this.#length = loaded.length;
        await this.#compact();
      } else {
        // Past a torn tail (a power loss mid-write), cut off, or at the end;
        // synced before any line is shown, so that after a power loss the
        // file no longer passes for closed cleanly.
        this.#file.truncate(loaded.length);
        const boot = encoder.encode(bootLine(this.#bootId));
        this.#file.write(boot);
        await this.#file.sync();
        this.#length = this.#compacted = loaded.length + boot.length;
      }
    } catch (error) {
      throw new HistoryOpenError(path, "file", error);
    }
  }

  /** Writes through `file` from now on. */
  #use(file: Deno.FsFile): void {
    this.#disk = new DiskFile(file);
    this.#file = this.#wrap?.(this.#disk) ?? this.#disk;
  }

  /**
   * Gives the entry the room's next id and stores it. The id is assigned at
   * once, so ids follow the order of the calls; the promise resolves (in
   * that same order) once the line is stored, with the stored, frozen line.
   * Broadcast it then, not before.
   *
   * Rejects with a TypeError or RangeError, using no id, when the entry
   * cannot be stored; with an Error when the history is closed or the
   * commit fails (the line is then not stored and its id never seen).
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
    return new Promise((resolve, reject) => {
      this.appendThen(room, entry, (result) => {
        if (result instanceof Error) reject(result);
        else resolve(result);
      });
    });
  }

  /**
   * {@linkcode History.append} with a callback: `done` is called once the
   * line is stored, with the line and its record (its JSON as sent to
   * clients, so that it is serialized once), or with the error. It is
   * called at once, using no id, when the entry cannot be stored.
   *
   * @example
   * ```ts
   * import { History } from "./history.ts";
   * const history = await History.open(":memory:");
   * history.appendThen("lobby", {
   *   username: "ann",
   *   text: "hi",
   *   timestamp: new Date().toISOString(),
   * }, (line, record) => console.log(line, record));
   * await history.close(); // logs the line, then '{"type":"message",...}'
   * ```
   */
  appendThen(room: string, entry: HistoryEntry, done: AppendDone): void {
    const invalid = invalidEntry(room, entry);
    if (invalid !== undefined) return done(invalid);
    if (this.#closing !== undefined) {
      return done(
        new Error(
          `history: closed; cannot store a message in room "${room}"`,
        ),
      );
    }
    const existing = this.#rooms.get(room);
    if (existing === undefined) {
      const roomBytes = utf8Length(room);
      if (roomBytes > MAX_ROOM_BYTES) {
        return done(
          new RangeError(
            `history: room name is too long to be stored (${roomBytes} bytes; the limit is ${MAX_ROOM_BYTES})`,
          ),
        );
      }
    }
    const bytes = entryBytes(entry);
    if (bytes > MAX_ENTRY_BYTES) {
      return done(
        new RangeError(
          `history: message is too large to be stored (up to ${bytes} bytes; the limit is ${MAX_ENTRY_BYTES})`,
        ),
      );
    }
    // A new room starts at id 1; its state is made only for a line that
    // will be stored, so a refused one leaves nothing behind.
    const message = storedMessage(room, existing?.nextId ?? 1, entry);
    const record = JSON.stringify(message);
    const state = existing ?? this.#room(room);
    state.nextId++;
    this.#queue.push({ message, state, record, done });
    if (this.#timer === undefined && this.#draining === undefined) {
      this.#timer = setImmediate(this.#onTurnEnd);
    }
  }

  /**
   * The room's kept lines, direct ones included, oldest first, in a new
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
    return this.#rooms.recent(room);
  }

  /**
   * What a client that last saw line `lastSeenId` of the room missed,
   * direct lines included. `lastSeenId` 0 means it saw nothing.
   *
   * - `gap` is false when every line after `lastSeenId` is still kept:
   *   `messages` are exactly those, with no duplicate and no hole.
   *   Precisely, `gap` is true iff `lastSeenId` is below the newest id
   *   trimmed away (ids skipped by failed commits were never stored, so
   *   they are no gap).
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
    return this.#rooms.since(room, lastSeenId);
  }

  /**
   * The id of the room's newest stored line; 0 when it has none. Appends
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
    return this.#rooms.latestId(room);
  }

  /**
   * The rooms that have stored lines, sorted.
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
    return this.#rooms.names();
  }

  /**
   * Commits made so far (loading excluded): for tests and metrics. One
   * turn's appends take one commit unless they exceed
   * {@linkcode MAX_COMMIT_BYTES}.
   */
  get commits(): number {
    return this.#commits;
  }

  /** Compactions made so far (loading's included): for tests. */
  get compactions(): number {
    return this.#compactions;
  }
  #compactions = 0;

  /**
   * Stops taking appends, waits until every pending one has settled, syncs
   * the file and closes it. Calling it again returns the same promise.
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
    await this.#compactor?.writing;
    while (
      this.#draining !== undefined || this.#queue.length > 0 ||
      this.#compactionReady()
    ) {
      await (this.#draining ?? this.#startDrain());
    }
    if (this.#syncTimer !== undefined) {
      clearTimeout(this.#syncTimer);
      this.#syncTimer = undefined;
    }
    await this.#syncing;
    if (this.#disk !== undefined) {
      try {
        // Closed cleanly: ids go on exactly after the newest line.
        this.#file.write(encoder.encode('{"type":"closed"}\n'));
        this.#dirty = true;
      } catch {
        // Ids skip past the reservations at the next start: harmless.
      }
    }
    if (this.#dirty || this.#folderUnsynced) await this.#syncNow();
    this.#disk?.file.close();
    this.#compactor?.retired?.close();
  }

  /** The room's state, made if new. */
  #room(name: string): RoomState {
    return this.#rooms.room(
      name,
      // In memory, nothing survives a power loss to be given again.
      this.#disk === undefined ? Number.MAX_SAFE_INTEGER : 0,
    );
  }

  /**
   * The turn's end: its appends are written now, each commit at once when
   * nothing needs awaiting (the default), or by the commit loop.
   */
  #onTurnEnd = (): void => {
    this.#timer = undefined;
    if (this.#draining !== undefined) return;
    if (
      this.fsync === "periodic" && !this.#compactionReady() &&
      !mustWait(this.#queue)
    ) {
      while (this.#queue.length > 0) {
        this.#commit(this.#takeChunk());
      }
      this.#maybeCompact();
      return;
    }
    this.#startDrain();
  };

  /** Starts the commit loop; `#draining` is set while it runs. */
  #startDrain(): Promise<void> {
    const run = this.#drain().finally(() => {
      if (this.#draining !== run) return;
      this.#draining = undefined;
      // Appends made (or a compaction readied) as it ended found it
      // running and scheduled nothing.
      if (
        (this.#queue.length > 0 || this.#compactionReady()) &&
        this.#timer === undefined
      ) {
        this.#timer = setImmediate(this.#onTurnEnd);
      }
    });
    this.#draining = run;
    return run;
  }

  /**
   * Finishes a compaction whose new file is ready, then commits queued
   * appends until none is left; with `fsync: "always"`, or when a line's
   * id is past its room's synced reservation, a commit waits for its sync. Appends made meanwhile wait, then go together into the
   * next commit.
   */
  async #drain(): Promise<void> {
    for (;;) {
      if (this.#compactionReady()) {
        try {
          await this.#finishCompaction();
        } catch (error) {
          this.#compactionFailed(error);
        }
      }
      if (this.#queue.length === 0) break;
      const chunk = this.#takeChunk();
      if (this.fsync === "always" || mustWait(chunk)) {
        const written = this.#write(chunk);
        if (written === undefined) continue;
        const covered = this.#reservations;
        try {
          await this.#syncFile();
        } catch (error) {
          this.#fail(chunk, error, written);
          continue;
        }
        this.#promote(covered);
        this.#dirty = false;
        this.#settle(chunk);
      } else {
        this.#commit(chunk);
      }
      this.#maybeCompact();
    }
  }

  /** The queued appends (from the front) of the next commit. */
  #takeChunk(): PendingAppend[] {
    const queue = this.#queue;
    let bytes = 0;
    let count = 0;
    while (count < queue.length) {
      bytes += queue[count].record.length + 1;
      if (count > 0 && bytes > MAX_COMMIT_BYTES) break;
      count++;
    }
    return count === queue.length ? queue.splice(0) : queue.splice(0, count);
  }

  /** Writes a chunk and settles it (`fsync: "periodic"`). */
  #commit(chunk: PendingAppend[]): void {
    const before = this.#write(chunk);
    if (before === undefined) return;
    if (this.#pending.at(-1)?.at === before) {
      // A reservation is synced at once, ahead of need.
      this.#syncSoon();
    } else {
      this.#dirty = true;
      this.#syncTimer ??= setTimeout(this.#onSyncTimer, FSYNC_INTERVAL_MS);
    }
    this.#settle(chunk);
  }

  /**
   * Writes the chunk's records in one write; returns the length the file
   * had before, or undefined when the write failed (the chunk is then
   * rejected and the file cut back).
   */
  #write(chunk: PendingAppend[]): number | undefined {
    const before = this.#length;
    let text = "";
    for (const { record, message, state } of chunk) {
      // Reserved ahead: half a reservation before a room runs out.
      if (message.id + ID_RESERVATION / 2 > state.reserving) {
        state.reserving = message.id + ID_RESERVATION;
        this.#pending.push({
          state,
          upTo: state.reserving,
          at: before,
          seq: ++this.#reservations,
        });
        text += `{"type":"reserve","room":${
          JSON.stringify(state.name)
        },"upTo":${state.reserving}}\n`;
      }
      text += record + "\n";
    }
    let buffer = this.#buffer;
    if (buffer.length < text.length * 3) {
      buffer = this.#buffer = new Uint8Array(text.length * 3);
    }
    const { written } = encoder.encodeInto(text, buffer);
    try {
      if (this.#torn) {
        this.#file.truncate(before);
        this.#torn = false;
      }
      this.#file.write(buffer.subarray(0, written));
    } catch (error) {
      this.#fail(chunk, error, before);
      return undefined;
    }
    this.#length = before + written;
    // A compaction under way copies what was written meanwhile.
    this.#compactor?.wrote(before, buffer, written);
    if (buffer.length > 1024 * 1024) this.#buffer = new Uint8Array(16 * 1024);
    return before;
  }

  /** Rejects a chunk that was not stored, and cuts the file back. */
  #fail(chunk: PendingAppend[], error: unknown, length: number): void {
    this.#length = length;
    // Reservations cut off with the write: reserved again next time.
    while (this.#pending.length > 0 && this.#pending.at(-1)!.at >= length) {
      const { state } = this.#pending.pop()!;
      state.reserving = state.reserved;
      for (const other of this.#pending) {
        if (other.state === state) {
          state.reserving = Math.max(state.reserving, other.upTo);
        }
      }
    }
    this.#compactor?.cutBack(length);
    try {
      this.#file.truncate(length);
      this.#torn = false;
    } catch {
      this.#torn = true; // cut before the next write, or that fails too
    }
    const reason = describe(error);
    for (const { message, done } of chunk) {
      tell(
        done,
        new Error(
          `history: message ${message.id} in room "${message.room}" was not stored: ${reason}`,
          { cause: error },
        ),
      );
    }
    this.#onCommit?.(asError(error));
  }

  /** A stored chunk: its rooms take its lines, its appends resolve. */
  #settle(chunk: PendingAppend[]): void {
    this.#commits++;
    this.#onCommit?.(null);
    const limit = this.limit;
    for (const { message, state } of chunk) {
      state.kept.push(message);
      state.lastId = message.id;
      if (state.kept.length - state.head > limit) trimRoom(state, limit);
    }
    for (const { message, record, done } of chunk) {
      tell(done, message, record);
    }
  }

  #onSyncTimer = (): void => {
    this.#syncTimer = undefined;
    if (!this.#dirty || this.#closing !== undefined) return;
    // One sync at a time: written meanwhile, synced at the next tick.
    if (this.#syncing !== undefined) {
      this.#syncTimer = setTimeout(this.#onSyncTimer, FSYNC_INTERVAL_MS);
    } else {
      void this.#syncNow();
    }
  };

  /** Syncs now, or right after the sync under way. */
  #syncSoon(): void {
    this.#dirty = true;
    if (this.#syncing !== undefined) {
      this.#syncAgain = true;
      return;
    }
    if (this.#syncTimer !== undefined) {
      clearTimeout(this.#syncTimer);
      this.#syncTimer = undefined;
    }
    void this.#syncNow();
  }

  /** Syncs what was written; a failure is told as a failed commit. */
  async #syncNow(): Promise<void> {
    this.#dirty = false;
    const covered = this.#reservations;
    const syncing = this.#syncFile().then(
      () => this.#promote(covered),
      (error) => {
        this.#dirty = true;
        this.#onCommit?.(asError(error));
      },
    );
    this.#syncing = syncing;
    await syncing;
    if (this.#syncing === syncing) this.#syncing = undefined;
    if (this.#syncAgain && this.#closing === undefined) {
      this.#syncAgain = false;
      void this.#syncNow();
      return;
    }
    // Written while it ran (or a failed sync): synced within the interval.
    if (this.#dirty && this.#closing === undefined) {
      this.#syncTimer ??= setTimeout(this.#onSyncTimer, FSYNC_INTERVAL_MS);
    }
  }

  /** Syncs the file, and its folder while `#folderUnsynced`. */
  async #syncFile(): Promise<void> {
    const folder = this.#folderUnsynced;
    this.#folderUnsynced = false;
    try {
      await this.#file.sync();
      if (folder) await this.#compactor!.syncFolder();
    } catch (error) {
      if (folder) this.#folderUnsynced = true;
      throw error;
    }
  }

  /**
   * The reservations written up to the `covered`th are synced: their ids
   * cannot be given again after a power loss. A sync covers those written
   * before it began, whatever other syncs or compactions did meanwhile.
   */
  #promote(covered: number): void {
    const pending = this.#pending;
    let count = 0;
    while (count < pending.length && pending[count].seq <= covered) count++;
    for (const { state, upTo } of pending.splice(0, count)) {
      if (upTo > state.reserved) state.reserved = upTo;
    }
  }

  #compactionDue(): boolean {
    return this.#length > Math.max(COMPACT_MIN_BYTES, 2 * this.#compacted);
  }

  /** True when a compaction's new file is ready to replace the file. */
  #compactionReady(): boolean {
    return this.#compactor?.ready ?? false;
  }

  /** Starts a compaction in the background when one is due. */
  #maybeCompact(): void {
    const compactor = this.#compactor;
    if (
      compactor === undefined || compactor.busy ||
      this.#closing !== undefined || !this.#compactionDue()
    ) return;
    compactor.start(
      this.#compactedRooms(),
      () => {
        // Finished by the commit loop, between two commits.
        if (this.#draining === undefined) void this.#startDrain();
      },
      (error) => this.#compactionFailed(error),
    );
  }

  /** A compaction failed: told, and tried again once the file grew more. */
  #compactionFailed(error: unknown): void {
    this.#compacted = this.#length;
    this.#onCommit?.(asError(error));
  }

  /** Compacts now, with nothing else going on (while opening). */
  async #compact(): Promise<void> {
    await this.#compactor!.writeNow(this.#compactedRooms());
    await this.#finishCompaction();
  }

  /** Every room as a compaction writes it: as it is now. */
  #compactedRooms(): CompactedRoom[] {
    const rooms: CompactedRoom[] = [];
    for (const state of this.#rooms.values()) {
      rooms.push({
        name: state.name,
        lines: state.kept.slice(state.head),
        lastId: state.lastId,
        trimmedId: state.trimmedId,
        // Synced with the new file, before it replaces the old one.
        reserved: state.reserving,
      });
    }
    return rooms;
  }

  /**
   * Puts a compaction's new file in place of the file (see
   * {@linkcode Compactor.finish}) and writes through it from then on. No
   * commit runs meanwhile.
   */
  async #finishCompaction(): Promise<void> {
    const { file, length, kept, folderError } = await this.#compactor!.finish(
      this.#disk!.file,
    );
    this.#use(file);
    this.#length = length;
    // Next time the file is twice what is kept now (what was written
    // meanwhile is mostly trimmed soon).
    this.#compacted = kept;
    this.#torn = false;
    this.#compactions++;
    if (folderError === undefined) {
      // The new file holds every reservation, synced, under its name.
      this.#promote(this.#reservations);
      this.#folderUnsynced = false;
      this.#dirty = false;
      return;
    }
    // Until the folder is synced, a power loss may bring back the old
    // file: reservations not synced in it stay unsynced. They are all in
    // the new file, before anything a failed write could cut off.
    for (const reservation of this.#pending) reservation.at = 0;
    this.#folderUnsynced = true;
    this.#dirty = true;
    this.#syncTimer ??= setTimeout(this.#onSyncTimer, FSYNC_INTERVAL_MS);
    this.#onCommit?.(folderError);
  }
}

/**
 * True when a line's id is past its room's synced reservation: its commit
 * waits for the sync that makes the reservation durable.
 */
function mustWait(appends: PendingAppend[]): boolean {
  for (const { message, state } of appends) {
    if (message.id > state.reserved) return true;
  }
  return false;
}

/**
 * Tells one append how it settled. A callback that throws leaves the rest
 * of its commit to be told: its error is thrown again on its own.
 */
function tell(
  done: AppendDone,
  result: StoredMessage | Error,
  record?: string,
): void {
  try {
    done(result, record);
  } catch (error) {
    queueMicrotask(() => {
      throw error;
    });
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

function checkFsync(mode: FsyncMode | undefined): FsyncMode {
  const value = mode ?? "periodic";
  if (value !== "periodic" && value !== "always") {
    throw new RangeError(
      `history: fsync must be "periodic" or "always", got ${mode}`,
    );
  }
  return value;
}

function asError(error: unknown): Error {
  return error instanceof Error
    ? error
    : new Error(describe(error), { cause: error });
}

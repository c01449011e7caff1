/**
 * Compaction of a history file, for store/history.ts: the file only ever
 * grows, so once it is twice what its rooms keep, a new file of just that
 * is written beside it and renamed over it (history.ts's module
 * documentation says when, and what a crash at any point leaves).
 *
 * @module
 */

import type { StoredMessage } from "./history.ts";
import {
  describe,
  DiskFile,
  type FolderSync,
  syncFolder,
} from "./history_file.ts";

const encoder = new TextEncoder();

/**
 * One room as a compaction writes it.
 *
 * @example
 * ```ts
 * import type { CompactedRoom } from "./compaction.ts";
 * const room: CompactedRoom = {
 *   name: "lobby",
 *   lines: [], // every line trimmed away
 *   lastId: 7,
 *   trimmedId: 7,
 *   reserved: 10_007,
 * };
 * ```
 */
export interface CompactedRoom {
  name: string;
  /** Its kept lines, ascending ids. */
  lines: StoredMessage[];
  /** Its newest stored id. */
  lastId: number;
  /** The newest id trimmed away (0: none). */
  trimmedId: number;
  /** Ids reserved: the new file is synced before it replaces the old one. */
  reserved: number;
}

/**
 * A compaction's new file, in place of the old one: what
 * {@linkcode Compactor.finish} returns.
 *
 * @example
 * ```ts
 * import type { Compacted } from "./compaction.ts";
 * function describeCompaction({ length, kept }: Compacted): string {
 *   return `${kept} bytes kept, ${length - kept} committed meanwhile`;
 * }
 * ```
 */
export interface Compacted {
  /** The new file, open and locked: the history writes through it now. */
  file: Deno.FsFile;
  /** Its size: the snapshot, and what was committed while it was written. */
  length: number;
  /** The snapshot's size: what the file keeps. */
  kept: number;
  /**
   * Why the folder could not be synced after the rename, when it could not:
   * the new file is the file all the same, but until
   * {@linkcode Compactor.syncFolder} succeeds a power loss may bring back
   * the one it replaced.
   */
  folderError?: Error;
}

/** A compaction's new file, written and synced, not yet in place. */
interface Snapshot {
  file: Deno.FsFile;
  /** Bytes written to it. */
  length: number;
}

/**
 * Characters of snapshot text written in one piece before a compaction
 * lets commits run again: a piece of 1 MiB takes a few milliseconds to
 * build and write, so commits wait no longer than that, and a history of
 * many megabytes still takes few pieces.
 */
const SNAPSHOT_PIECE_CHARS = 1024 * 1024;

/**
 * Compacts one history file: writes what its rooms keep to `PATH.compact`
 * in the background (commits go on meanwhile, and are copied too), then
 * renames it over the file. The history drives it: it says when one is due
 * ({@linkcode Compactor.start}), tells it of every write
 * ({@linkcode Compactor.wrote}, {@linkcode Compactor.cutBack}), and puts
 * the new file in place between two commits ({@linkcode Compactor.finish}).
 * A crash at any point leaves either file whole.
 *
 * Invariants: one compaction at a time (the history starts one only when
 * none is `busy`): `writing`, then `ready`, until `finish`. What the
 * history writes meanwhile is gathered from the call to `start` (made in
 * the turn that took its rooms) until it is finished or failed, so the new
 * file misses no commit.
 *
 * @example
 * ```ts
 * import { Compactor } from "./compaction.ts";
 * import { headerLine } from "./history_file.ts";
 * const dir = await Deno.makeTempDir();
 * const path = `${dir}/history.log`;
 * const old = await Deno.open(path, { read: true, write: true, create: true });
 * const compactor = new Compactor(path, headerLine(100));
 * await compactor.probe(); // a new file can be made beside it
 * await compactor.writeNow([
 *   { name: "lobby", lines: [], lastId: 7, trimmedId: 7, reserved: 7 },
 * ]);
 * const { file } = await compactor.finish(old); // renamed over `path`
 * // `old` stays open and locked: compactor.retired.
 * file.close();
 * compactor.retired?.close();
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export class Compactor {
  /** The history file's path. */
  readonly #path: string;
  /** What every new file starts with: its header and this boot's record. */
  readonly #head: string;
  /** A compaction writing its new file, while it does. */
  #writing: Promise<void> | undefined;
  /** A compaction's new file, ready to replace the file between commits. */
  #snapshot: Snapshot | undefined;
  /** What was written while a compaction's new file was being written. */
  #tail: { start: number; bytes: Uint8Array }[] | undefined;
  /** The file the last compaction replaced, still locked (see `finish`). */
  #retired: Deno.FsFile | undefined;
  /** Makes a rename over `#path` durable. */
  readonly #syncFolder: FolderSync;

  /**
   * Compacts the file at `path`; each new file starts with `head`, and
   * `folderSync` makes its rename durable.
   */
  constructor(path: string, head: string, folderSync: FolderSync = syncFolder) {
    this.#path = path;
    this.#head = head;
    this.#syncFolder = folderSync;
  }

  /** A compaction writing its new file, while one does: awaited to close. */
  get writing(): Promise<void> | undefined {
    return this.#writing;
  }

  /**
   * True when a compaction's new file is ready for
   * {@linkcode Compactor.finish}.
   */
  get ready(): boolean {
    return this.#snapshot !== undefined;
  }

  /** True while a compaction is under way: writing, or ready. */
  get busy(): boolean {
    return this.#writing !== undefined || this.#snapshot !== undefined;
  }

  /**
   * The file the last compaction replaced, still open and locked until the
   * next one replaces it; the history closes it when it closes.
   */
  get retired(): Deno.FsFile | undefined {
    return this.#retired;
  }

  /** Throws when no file can be made beside the file (as compactions do). */
  async probe(): Promise<void> {
    const scratch = `${this.#path}.compact`;
    // Left by a run that died compacting (the lock says it is no more),
    // or never there: either way, a file can be made here.
    const probe = await Deno.open(scratch, {
      write: true,
      create: true,
      truncate: true,
    });
    probe.close();
    await Deno.remove(scratch);
  }

  /**
   * Starts writing a new file of `rooms` in the background; `ready` is
   * told once it is (then {@linkcode Compactor.finish} it, between two
   * commits), `failed` if it fails.
   */
  start(
    rooms: CompactedRoom[],
    ready: () => void,
    failed: (error: unknown) => void,
  ): void {
    this.#writing = this.#writeSnapshot(rooms).then(
      (snapshot) => {
        this.#writing = undefined;
        this.#snapshot = snapshot;
        ready();
      },
      (error) => {
        this.#writing = undefined;
        this.#tail = undefined;
        failed(error);
      },
    );
  }

  /** Writes a new file of `rooms` now (while opening); then finish it. */
  async writeNow(rooms: CompactedRoom[]): Promise<void> {
    this.#snapshot = await this.#writeSnapshot(rooms);
  }

  /**
   * The history wrote the first `length` bytes of `buffer` at `start`: a
   * compaction under way copies them into its new file too.
   */
  wrote(start: number, buffer: Uint8Array, length: number): void {
    this.#tail?.push({ start, bytes: buffer.slice(0, length) });
  }

  /** The history cut its file back to `length` bytes (a failed write). */
  cutBack(length: number): void {
    if (this.#tail !== undefined) {
      this.#tail = this.#tail.filter((written) => written.start < length);
    }
  }

  /**
   * Writes the kept lines and a meta record per room to `PATH.compact`,
   * and syncs it; commits go on meanwhile (into the file, and into
   * `#tail`, for {@linkcode Compactor.finish} to copy). Yields to the
   * event loop between pieces, so a big history pauses nothing.
   */
  async #writeSnapshot(rooms: CompactedRoom[]): Promise<Snapshot> {
    const scratch = `${this.#path}.compact`;
    this.#tail = [];
    const file = await Deno.open(scratch, {
      read: true,
      write: true,
      create: true,
      truncate: true,
    });
    try {
      const disk = new DiskFile(file);
      let length = 0;
      let text = this.#head;
      const flush = () => {
        const bytes = encoder.encode(text);
        disk.write(bytes);
        length += bytes.length;
        text = "";
      };
      for (const room of rooms) {
        for (const line of room.lines) text += JSON.stringify(line) + "\n";
        text += JSON.stringify({
          type: "meta",
          room: room.name,
          lastId: room.lastId,
          trimmedId: room.trimmedId,
          reserved: room.reserved,
        }) + "\n";
        if (text.length >= SNAPSHOT_PIECE_CHARS) {
          flush();
          await new Promise((resolve) => setImmediate(resolve));
        }
      }
      flush();
      await file.syncData();
      return { file, length };
    } catch (error) {
      file.close();
      await Deno.remove(scratch).catch(() => {});
      throw error;
    }
  }

  /**
   * Copies what was committed while the snapshot was written, syncs it,
   * locks the new file and renames it over the old one, `current`, which
   * stays open and locked until the next compaction, so that a second
   * hubchat that opened it just before the rename still finds it locked
   * (it then sees the path name another file, and tries again). The
   * history runs no commit meanwhile. Once renamed, the new file is
   * returned whatever follows: a failed folder sync is its `folderError`.
   */
  async finish(current: Deno.FsFile): Promise<Compacted> {
    const { file, length } = this.#snapshot!;
    const tail = this.#tail ?? [];
    this.#snapshot = undefined;
    this.#tail = undefined;
    const path = this.#path;
    let total = length;
    try {
      const disk = new DiskFile(file);
      for (const { bytes } of tail) {
        disk.write(bytes);
        total += bytes.length;
      }
      if (tail.length > 0) await file.syncData();
      if (!file.tryLockSync(true)) {
        throw new Error(
          `history: ${path}.compact is locked by another process`,
        );
      }
      await Deno.rename(`${path}.compact`, path);
    } catch (error) {
      file.close();
      await Deno.remove(`${path}.compact`).catch(() => {});
      throw error;
    }
    // The path names the new file now: it is the one written through.
    this.#retired?.close();
    this.#retired = current;
    let folderError: Error | undefined;
    try {
      await this.syncFolder();
    } catch (error) {
      folderError = error as Error;
    }
    return { file, length: total, kept: length, folderError };
  }

  /**
   * Makes the last rename over the file durable; throws an Error saying so
   * when the folder cannot be synced.
   */
  async syncFolder(): Promise<void> {
    const path = this.#path;
    try {
      await this.#syncFolder(path);
    } catch (error) {
      throw new Error(
        `history: a compaction renamed a new file over "${path}", but its folder could not be synced: ${
          describe(error)
        }; expected the sync to succeed, since until it does a power loss may bring back the file it replaced (it is tried again with each sync)`,
        { cause: error },
      );
    }
  }
}

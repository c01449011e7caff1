/**
 * The history file itself, for store/history.ts: opening and locking it,
 * writing and syncing it, the records that frame it (the header, the boot
 * record), and reading its lines back as records. What the records are and
 * mean is in history.ts's module documentation ("The file").
 *
 * @module
 */

/**
 * Where a history writes: its file, or for `:memory:` nothing. Tests wrap
 * it (`HistoryOptions.wrapFile`, history.ts) to make writes fail.
 *
 * @example
 * ```ts
 * import type { HistoryFile } from "./history_file.ts";
 * // A file that counts its syncs, as a test wraps one.
 * let syncs = 0;
 * const counting = (file: HistoryFile): HistoryFile => ({
 *   write: (bytes) => file.write(bytes),
 *   truncate: (length) => file.truncate(length),
 *   sync() {
 *     syncs++;
 *     return file.sync();
 *   },
 * });
 * ```
 */
export interface HistoryFile {
  /** Appends all of `bytes`, or throws (a short write is retried). */
  write(bytes: Uint8Array): void;
  /**
   * Cuts the file back to `length` bytes, where the next write goes: what
   * a failed write left is removed.
   */
  truncate(length: number): void;
  /** Makes everything written durable (`fdatasync`). */
  sync(): Promise<void>;
}

/**
 * The first line's fields.
 *
 * @example
 * ```ts
 * import type { Header } from "./history_file.ts";
 * const header: Header = { hubchat: "history", version: 1, limit: 100 };
 * ```
 */
export interface Header {
  hubchat: "history";
  version: 1;
  limit: number;
}

/**
 * This boot of the machine (Linux's boot id), or undefined where there is
 * none: a file last written in this boot lost nothing to a power loss.
 *
 * @example
 * ```ts
 * import { currentBootId } from "./history_file.ts";
 * currentBootId(); // "0f6a6b1c-…" on Linux, undefined elsewhere
 * ```
 */
export function currentBootId(): string | undefined {
  try {
    return Deno.readTextFileSync("/proc/sys/kernel/random/boot_id").trim();
  } catch {
    return undefined;
  }
}

/** What the first line of every history file starts with. */
const HEADER_START = '{"hubchat":"history",';

/**
 * The first line of a file trimmed under `limit`, with its newline.
 *
 * @example
 * ```ts
 * import { headerLine } from "./history_file.ts";
 * headerLine(100); // '{"hubchat":"history","version":1,"limit":100}\n'
 * ```
 */
export function headerLine(limit: number): string {
  const header: Header = { hubchat: "history", version: 1, limit };
  return JSON.stringify(header) + "\n";
}

/**
 * The record an open writes in the boot `bootId`, with its newline; one
 * without an id where there is no boot id (see "Ids after a power loss" in
 * history.ts). Either way, a file with one after its last `closed` was not
 * closed cleanly.
 *
 * @example
 * ```ts
 * import { bootLine } from "./history_file.ts";
 * bootLine("0f6a"); // '{"type":"boot","id":"0f6a"}\n'
 * bootLine(undefined); // '{"type":"boot"}\n'
 * ```
 */
export function bootLine(bootId: string | undefined): string {
  return JSON.stringify({ type: "boot", id: bootId }) + "\n";
}

/** The parent directory of a file path, or undefined when there is none. */
function parentDirectory(path: string): string | undefined {
  const cut = Math.max(path.lastIndexOf("/"), path.lastIndexOf("\\"));
  return cut > 0 ? path.slice(0, cut) : undefined;
}

/**
 * Which step of `History.open` (history.ts) failed:
 *
 * - `"folder"`: the file's folder could not be created;
 * - `"file"`: the file could not be opened (or created) for reading and
 *   writing;
 * - `"locked"`: another history (another hubchat, most likely) holds the
 *   file's lock;
 * - `"beside"`: no new file can be made beside it (its folder is
 *   read-only): compaction and carrying over an earlier version's file
 *   need one;
 * - `"store"`: it is not a history file (nor an earlier version's Deno KV
 *   one), or Deno KV could not open the earlier version's file;
 * - `"load"`: it is a history, but what it holds could not be loaded (a
 *   damaged file, another program's KV database).
 *
 * @example
 * ```ts
 * import type { HistoryOpenStep } from "./history_file.ts";
 * const step: HistoryOpenStep = "locked";
 * ```
 */
export type HistoryOpenStep =
  | "folder"
  | "file"
  | "locked"
  | "beside"
  | "store"
  | "load";

/**
 * `History.open` (history.ts) could not use its path; `cause` is the error of
 * the step that failed. A command line words it for its user (main.ts
 * does, naming `--data`).
 *
 * @example
 * ```ts
 * import { History } from "./history.ts";
 * import { HistoryOpenError } from "./history_file.ts";
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
 * Tries to open and lock the file this many times before giving up. A
 * retry is needed only when a compaction renamed a new file over the path
 * between the open and the check; five in a row means another history
 * keeps replacing it, not bad luck.
 */
const LOCK_ATTEMPTS = 5;

/**
 * Creates the folder of the file at `path`, opens the file for reading and
 * writing (creating it empty), and takes its exclusive lock (`flock`);
 * returns the open, locked file. A compaction renames a new file over the
 * path: a lock taken on the file it replaced is let go and taken again.
 * Fails with a {@linkcode HistoryOpenError} (`"folder"`, `"file"` or
 * `"locked"`).
 *
 * @example
 * ```ts
 * import { lockFile } from "./history_file.ts";
 * const dir = await Deno.makeTempDir();
 * const file = await lockFile(`${dir}/chat/history.log`);
 * // A second lockFile of the same path now fails: "locked".
 * file.close();
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export async function lockFile(path: string): Promise<Deno.FsFile> {
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
  for (let attempt = 1;; attempt++) {
    let file: Deno.FsFile;
    try {
      file = await Deno.open(path, { read: true, write: true, create: true });
    } catch (error) {
      throw new HistoryOpenError(path, "file", error);
    }
    if (!(await file.tryLock(true))) {
      file.close();
      throw new HistoryOpenError(
        path,
        "locked",
        new Error("its lock is held by another open history"),
      );
    }
    let current = false;
    try {
      current = (await file.stat()).ino === (await Deno.stat(path)).ino;
    } catch {
      // Renamed away between the two: try again.
    }
    if (current) return file;
    file.close();
    if (attempt === LOCK_ATTEMPTS) {
      throw new HistoryOpenError(
        path,
        "locked",
        new Error("another open history keeps replacing the file"),
      );
    }
  }
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
 * The history file itself: writes at its end, syncs its data.
 *
 * @example
 * ```ts
 * import { DiskFile } from "./history_file.ts";
 * const path = await Deno.makeTempFile();
 * const disk = new DiskFile(await Deno.open(path, { write: true }));
 * disk.write(new TextEncoder().encode("ab\n"));
 * disk.truncate(2); // "ab"; the next write goes there
 * await disk.sync();
 * disk.file.close();
 * await Deno.remove(path);
 * ```
 */
export class DiskFile implements HistoryFile {
  /** The open file, written where it stands (its end, for a history). */
  readonly file: Deno.FsFile;

  /** Writes through `file`. */
  constructor(file: Deno.FsFile) {
    this.file = file;
  }

  /** Writes all of `bytes`, however many writes that takes. */
  write(bytes: Uint8Array): void {
    let done = 0;
    while (done < bytes.length) {
      done += this.file.writeSync(done === 0 ? bytes : bytes.subarray(done));
    }
  }

  /** Cuts the file to `length` bytes, and writes there next. */
  truncate(length: number): void {
    this.file.truncateSync(length);
    this.file.seekSync(length, Deno.SeekMode.Start);
  }

  /** `fdatasync`: what was written survives a power loss. */
  sync(): Promise<void> {
    return this.file.syncData();
  }
}

/**
 * `:memory:`: nothing is written, and nothing can fail.
 *
 * @example
 * ```ts
 * import { NO_FILE } from "./history_file.ts";
 * NO_FILE.write(new Uint8Array(3)); // written nowhere
 * await NO_FILE.sync();
 * ```
 */
export const NO_FILE: HistoryFile = {
  write(): void {},
  truncate(): void {},
  sync: () => Promise.resolve(),
};

/**
 * Makes a rename in the folder of `path` durable: {@linkcode syncFolder}, or
 * what a test wraps it in (`HistoryOptions.wrapFolderSync`, history.ts) to
 * make it fail on purpose.
 *
 * @example
 * ```ts
 * import { type FolderSync, syncFolder } from "./history_file.ts";
 * // A folder sync that counts its calls, as a test wraps one.
 * let calls = 0;
 * const counting: FolderSync = (path) => {
 *   calls++;
 *   return syncFolder(path);
 * };
 * ```
 */
export type FolderSync = (path: string) => Promise<void>;

/**
 * Makes a rename in the folder of `path` durable.
 *
 * @example
 * ```ts
 * import { syncFolder } from "./history_file.ts";
 * const dir = await Deno.makeTempDir();
 * await Deno.writeTextFile(`${dir}/new`, "");
 * await Deno.rename(`${dir}/new`, `${dir}/history.log`);
 * await syncFolder(`${dir}/history.log`); // the rename survives a power loss
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export async function syncFolder(path: string): Promise<void> {
  const folder = parentDirectory(path) ?? ".";
  const handle = await Deno.open(folder, { read: true });
  try {
    await handle.sync();
  } finally {
    handle.close();
  }
}

/**
 * True when the file starts as a history file does.
 *
 * @example
 * ```ts
 * import { headerLine, startsWithHeader } from "./history_file.ts";
 * startsWithHeader(new TextEncoder().encode(headerLine(100))); // true
 * startsWithHeader(new TextEncoder().encode("notes\n")); // false
 * ```
 */
export function startsWithHeader(bytes: Uint8Array): boolean {
  const head = new TextDecoder().decode(bytes.subarray(0, HEADER_START.length));
  return head === HEADER_START;
}

/**
 * A record's object, or undefined when the line is not JSON of one.
 *
 * @example
 * ```ts
 * import { parseRecord } from "./history_file.ts";
 * parseRecord('{"type":"closed"}'); // { type: "closed" }
 * parseRecord('{"type":"clo'); // undefined: torn
 * parseRecord("[1]"); // undefined: not an object
 * ```
 */
export function parseRecord(line: string): Record<string, unknown> | undefined {
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch {
    return undefined;
  }
  return typeof value === "object" && value !== null && !Array.isArray(value)
    ? value as Record<string, unknown>
    : undefined;
}

/**
 * True when any whole line after `offset` parses as a record: a line that
 * is not one is damage, not a torn tail, when records follow it.
 *
 * @example
 * ```ts
 * import { anyRecordAfter } from "./history_file.ts";
 * anyRecordAfter('garbage\n{"type":"closed"}\n', 0); // true
 * anyRecordAfter('garbage\n{"type":"clo', 0); // false: a torn tail
 * ```
 */
export function anyRecordAfter(text: string, offset: number): boolean {
  while (offset < text.length) {
    const end = text.indexOf("\n", offset);
    if (end === -1) return false;
    if (parseRecord(text.slice(offset, end)) !== undefined) return true;
    offset = end + 1;
  }
  return false;
}

/**
 * What went wrong, in words: an error's message, or anything else thrown
 * as a string.
 *
 * @example
 * ```ts
 * import { describe } from "./history_file.ts";
 * describe(new Error("No space left on device")); // "No space left on device"
 * describe(28); // "28"
 * ```
 */
export function describe(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/**
 * A Deno script run as a child process for a test: its standard output read
 * as lines with bounded waits, its standard error kept for error messages,
 * its resident memory read from /proc, and a stop that always ends it.
 *
 * Both output streams are read from the start, so a chatty child never
 * blocks on a full pipe, and {@linkcode DenoChild.stop} waits for them to
 * end, so a test that stops its children passes Deno's sanitizers.
 *
 * @module
 */

import { withTimeout } from "../tools/wait.ts";
import { Inbox } from "./inbox.ts";

/** The repository's root: children run from it, with its deno.json. */
const ROOT = new URL("../", import.meta.url);

/** The repository's deno.json, whose unstable flags (KV) children need. */
const CONFIG = new URL("deno.json", ROOT).pathname;

/**
 * Default bound on waiting for one line of a child's output, in
 * milliseconds: the first line waits for Deno to start and load the
 * script, which has taken seconds on a loaded 2-core machine.
 *
 * @example
 * ```ts
 * import { CHILD_WAIT_MS, DenoChild } from "./child_process.ts";
 * const child = DenoChild.spawn("slow.ts");
 * await child.nextLine("the first line", CHILD_WAIT_MS * 2);
 * ```
 */
export const CHILD_WAIT_MS = 20_000;

/**
 * How long a stopped child may take to exit, in milliseconds, before it is
 * killed outright: a server's clean shutdown takes well under a second.
 */
const STOP_MS = 10_000;

/**
 * How much of a child's standard error is kept, in characters: the end of
 * it explains a failure, and a bound keeps a chatty child from growing the
 * test process.
 */
const KEPT_STDERR_CHARS = 1024 * 1024;

/** How a child ended, and what it printed that was not read. */
export interface ChildExit {
  /** The exit status. */
  status: Deno.CommandStatus;
  /**
   * Standard output not read with {@linkcode DenoChild.nextLine}: the
   * unread lines, each with its `\n`, then an unfinished last line if any.
   */
  stdout: string;
  /** Standard error (its last MiB). */
  stderr: string;
}

/** Where and how a child runs. */
export interface DenoChildOptions {
  /** The working directory. Default: the repository's root. */
  cwd?: string | URL;
  /** Environment variables added to this process's (NO_COLOR=1 always). */
  env?: Record<string, string>;
  /**
   * A command that runs Deno for the child, like `["prlimit",
   * "--nofile=256:256"]` to start it with fewer file descriptors.
   */
  wrap?: string[];
}

/**
 * `deno run -A --config deno.json SCRIPT ARGS...` as a child process, read
 * and stopped with bounds.
 *
 * @example
 * ```ts
 * import { DenoChild } from "./child_process.ts";
 * const child = DenoChild.spawn(new URL("../main.ts", import.meta.url), ["--help"]);
 * await child.nextLine("the usage's first line"); // "hubchat ..."
 * const { status } = await child.stop();
 * ```
 */
export class DenoChild {
  /** The child's process id. */
  readonly pid: number;
  /** Resolves with the exit status once the child ended. */
  readonly status: Promise<Deno.CommandStatus>;
  #child: Deno.ChildProcess;
  #exited = false;
  #lines = new Inbox<string>();
  /** What the inbox ends with once standard output ended. */
  #endOfOutput = new Error("the child's standard output ended");
  #partial = "";
  #stderr = "";
  #stdoutRead: Promise<void>;
  #stderrRead: Promise<void>;
  #stopping: Promise<ChildExit> | undefined;

  private constructor(child: Deno.ChildProcess) {
    this.#child = child;
    this.pid = child.pid;
    this.status = child.status.then((status) => {
      this.#exited = true;
      return status;
    });
    this.#stdoutRead = this.#readStdout(child.stdout);
    this.#stderrRead = this.#readStderr(child.stderr);
  }

  /**
   * Starts `script` (a path, or a file URL) with `args`, both output
   * streams piped and read from the start.
   */
  static spawn(
    script: string | URL,
    args: string[] = [],
    options: DenoChildOptions = {},
  ): DenoChild {
    const path = script instanceof URL ? script.pathname : script;
    const deno = [Deno.execPath(), "run", "-A", "--config", CONFIG, path];
    const argv = [...(options.wrap ?? []), ...deno, ...args];
    const child = new Deno.Command(argv[0], {
      args: argv.slice(1),
      cwd: options.cwd ?? ROOT,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
      env: { NO_COLOR: "1", ...options.env },
    }).spawn();
    return new DenoChild(child);
  }

  /** True once the child ended. */
  get exited(): boolean {
    return this.#exited;
  }

  /** What the child printed on standard error so far (its last MiB). */
  get stderr(): string {
    return this.#stderr;
  }

  /**
   * The next line of standard output, without its `\n`, waiting at most
   * `ms` for it; null once the output ended (an unfinished last line is
   * not a line: {@linkcode DenoChild.stop} returns it).
   */
  async nextLine(
    what: string,
    ms: number = CHILD_WAIT_MS,
  ): Promise<string | null> {
    try {
      return await this.#lines.next(what, ms);
    } catch (error) {
      if (error === this.#endOfOutput) return null;
      throw error;
    }
  }

  /** The child's resident memory (VmRSS in /proc), in bytes. */
  rss(): number {
    const file = `/proc/${this.pid}/status`;
    const match = /^VmRSS:\s+(\d+) kB$/m.exec(Deno.readTextFileSync(file));
    if (match === null) {
      throw new Error(`no VmRSS in ${file}: the child has exited`);
    }
    return Number(match[1]) * 1024;
  }

  /** Sends `signal` if the child still runs; returns at once. */
  kill(signal: Deno.Signal): void {
    if (this.#exited) return;
    try {
      this.#child.kill(signal);
    } catch {
      // It ended in the meantime.
    }
  }

  /**
   * Sends `signal`, waits for the child to exit (killing it outright if it
   * has not after 10 s) and for its output to end; returns how it ended
   * and what it printed that was not read. Later calls return the first
   * call's answer.
   */
  stop(signal: Deno.Signal = "SIGTERM"): Promise<ChildExit> {
    this.#stopping ??= this.#stop(signal);
    return this.#stopping;
  }

  /** For a test's cleanup: kills the child outright, as `stop("SIGKILL")`. */
  close(): Promise<ChildExit> {
    return this.stop("SIGKILL");
  }

  async #stop(signal: Deno.Signal): Promise<ChildExit> {
    this.kill(signal);
    let status = await withTimeout(this.status, STOP_MS, null);
    if (status === null) {
      this.kill("SIGKILL");
      status = await this.status;
    }
    await this.#stdoutRead;
    await this.#stderrRead;
    const unread = this.#lines.drain().map((line) => `${line}\n`).join("");
    return { status, stdout: unread + this.#partial, stderr: this.#stderr };
  }

  async #readStdout(stream: ReadableStream<Uint8Array>): Promise<void> {
    let end = this.#endOfOutput;
    try {
      for await (const text of stream.pipeThrough(new TextDecoderStream())) {
        const lines = (this.#partial + text).split("\n");
        this.#partial = lines.pop()!;
        for (const line of lines) this.#lines.push(line);
      }
    } catch (error) {
      end = new Error(`reading the child's standard output failed`, {
        cause: error,
      });
    }
    this.#lines.end(end);
  }

  async #readStderr(stream: ReadableStream<Uint8Array>): Promise<void> {
    try {
      for await (const text of stream.pipeThrough(new TextDecoderStream())) {
        this.#stderr = (this.#stderr + text).slice(-KEPT_STDERR_CHARS);
      }
    } catch (error) {
      this.#stderr += `\n(reading standard error failed: ${error})`;
    }
  }
}

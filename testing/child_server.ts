/**
 * hubchat itself (`main.ts`) in a child process, for tests that need a real
 * process: its memory measured apart from the test's own, a kill that loses
 * nothing acknowledged, a restart on the same port.
 *
 * @module
 */

import { sleep } from "../tools/wait.ts";
import { type ChildExit, DenoChild } from "./child_process.ts";

/** The program under test. */
const MAIN = new URL("../main.ts", import.meta.url);

/** The line main.ts prints once it listens; captures its URL. */
const LISTENING = /^hubchat listening on (\S+)$/;

/** How a child server is started, beyond its flags. */
export interface ChildServerOptions {
  /** The port (`--port`); 0, the default, lets the system pick one. */
  port?: number;
  /**
   * The history store (`--data`); default `:memory:`, so a test leaves no
   * file behind.
   */
  data?: string;
  /** Environment variables for the child. */
  env?: Record<string, string>;
  /** A command that runs Deno for the child (see `DenoChildOptions`). */
  wrap?: string[];
}

/**
 * `main.ts --port PORT --host 127.0.0.1 --data DATA FLAGS...` in a child
 * process, started once it said where it listens.
 *
 * @example
 * ```ts
 * import { ChildServer } from "./child_server.ts";
 * const server = await ChildServer.start(["--rate", "0"]);
 * await (await fetch(`${server.url}healthz`)).json(); // { status: "ok", clients: 0 }
 * await server.stop();
 * ```
 */
export class ChildServer {
  /** The child process, for its output and its exit. */
  readonly process: DenoChild;
  /** Where it listens, as it printed it: `http://127.0.0.1:PORT/`. */
  readonly url: string;
  /** The port it listens on. */
  readonly port: number;
  #flags: string[];
  #options: ChildServerOptions;

  private constructor(
    process: DenoChild,
    url: string,
    flags: string[],
    options: ChildServerOptions,
  ) {
    this.process = process;
    this.url = url;
    this.port = Number(new URL(url).port);
    this.#flags = flags;
    this.#options = options;
  }

  /**
   * Starts main.ts with `flags` (after the port, host and data flags, so a
   * flag given here wins) and resolves once it printed its listening line;
   * if it exits or stays silent first, kills it and throws with what it
   * printed.
   */
  static async start(
    flags: string[] = [],
    options: ChildServerOptions = {},
  ): Promise<ChildServer> {
    const process = DenoChild.spawn(MAIN, [
      "--port",
      String(options.port ?? 0),
      "--host",
      "127.0.0.1",
      "--data",
      options.data ?? ":memory:",
      ...flags,
    ], { env: options.env, wrap: options.wrap });
    try {
      for (;;) {
        const line = await process.nextLine("main.ts to say it listens");
        if (line === null) throw new Error("main.ts exited before listening");
        const match = LISTENING.exec(line);
        if (match) return new ChildServer(process, match[1], flags, options);
      }
    } catch (error) {
      const exit = await process.stop("SIGKILL");
      throw new Error(
        `main.ts ${flags.join(" ")} did not start: ${
          (error as Error).message
        }; exit ${exit.status.code}, stdout: ${exit.stdout}, stderr: ${exit.stderr}`,
        { cause: error },
      );
    }
  }

  /** Its resident memory (VmRSS), in bytes. */
  rss(): number {
    return this.process.rss();
  }

  /**
   * Its highest resident memory while `work` runs, read every 20 ms, in
   * bytes (resolves once `work` settled, whether it failed or not).
   */
  async peakRss(work: Promise<unknown>): Promise<number> {
    let peak = this.rss();
    let finished = false;
    work.finally(() => finished = true).catch(() => {});
    while (!finished) {
      peak = Math.max(peak, this.rss());
      await sleep(20);
    }
    return Math.max(peak, this.rss());
  }

  /**
   * Sends `signal` and waits for the exit (SIGKILL after 10 s); see
   * {@linkcode DenoChild.stop}.
   */
  stop(signal: Deno.Signal = "SIGTERM"): Promise<ChildExit> {
    return this.process.stop(signal);
  }

  /**
   * Stops this server with `signal`, then starts it again with the same
   * flags and data on the same port; use the server it returns.
   */
  async restart(signal: Deno.Signal = "SIGTERM"): Promise<ChildServer> {
    await this.stop(signal);
    return await ChildServer.start(this.#flags, {
      ...this.#options,
      port: this.port,
    });
  }

  /** For a test's cleanup: kills it outright. */
  close(): Promise<ChildExit> {
    return this.process.close();
  }
}

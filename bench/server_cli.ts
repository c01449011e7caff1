/**
 * The command line the Deno comparison servers in `bench/` share: where to
 * listen (listen_flags.ts), `--help`, the `listening on` line the load tool
 * reads, and a clean stop on SIGTERM or SIGINT. Usage errors exit with 2.
 *
 * @module
 */

import { UsageError } from "../flags.ts";
import {
  type ListenFlags,
  listenUsage,
  readListenFlags,
} from "./listen_flags.ts";

/** What a comparison server's start function gives back. */
export interface ListeningServer {
  /** Base URL, like `http://127.0.0.1:41234/`. */
  url: string;
  /** Closes every socket and stops listening. */
  shutdown(): Promise<void>;
}

/**
 * Runs the comparison server `name` (its file is `bench/<name>.ts`) from
 * this process's command line: reads where to listen, starts it with
 * `start`, prints `listening on URL`, and exits 0 once a signal stopped it.
 *
 * @example
 * ```ts
 * import { serveFromCommandLine } from "./server_cli.ts";
 * import { startNaiveServer } from "./naive_server.ts";
 * await serveFromCommandLine("naive_server", startNaiveServer);
 * ```
 */
export async function serveFromCommandLine(
  name: string,
  start: (flags: ListenFlags) => ListeningServer | Promise<ListeningServer>,
): Promise<void> {
  let flags: ListenFlags | null;
  try {
    flags = readListenFlags(Deno.args, Deno.env);
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    console.error(`${name}: ${error.message}`);
    Deno.exit(2);
  }
  if (flags === null) {
    console.log(listenUsage(`deno run -A bench/${name}.ts`));
    return;
  }
  const server = await start(flags);
  console.log(`listening on ${server.url}`);
  let stopping = false;
  function stop(): void {
    if (stopping) return;
    stopping = true;
    server.shutdown().finally(() => Deno.exit(0));
  }
  Deno.addSignalListener("SIGTERM", stop);
  Deno.addSignalListener("SIGINT", stop);
}

/**
 * hubchat's command line: flags and environment in, a running server out,
 * and a clean stop on SIGINT or SIGTERM.
 *
 * ```sh
 * deno run -A main.ts --port 8080 --host 127.0.0.1
 * ```
 *
 * @module
 */

import { parseArgs } from "node:util";
import { type ServerOptions, startServer } from "./server.ts";

/** The usage text `--help` prints. */
export const USAGE = `hubchat: real-time group chat over WebSocket

Usage: deno run -A main.ts [options]

Options:
  --port N    port to listen on; 0 picks a free one   (env PORT, default 8080)
  --host H    address to listen on                    (env HOST, default 127.0.0.1)
  -h, --help  show this help

Open http://HOST:PORT/ in a browser; WebSocket clients connect to
ws://HOST:PORT/ws?username=NAME.`;

/** What the command line asked for: run with options, or print help. */
export type Invocation =
  | { help: true }
  | { help: false; options: ServerOptions };

/** Thrown for a flag or variable that does not make sense. */
export class UsageError extends Error {
  /** Creates the error with a message saying what was wrong. */
  constructor(message: string) {
    super(message);
    this.name = "UsageError";
  }
}

function parsePort(value: string, source: string): number {
  const port = Number(value);
  if (!/^\d+$/.test(value.trim()) || port > 65535) {
    throw new UsageError(
      `${source} is "${value}"; expected a port number from 0 to 65535`,
    );
  }
  return port;
}

/**
 * Reads flags and environment into server options. Flags win over the
 * environment; `HOSTNAME` is ignored on purpose (shells set it to the
 * machine's name).
 *
 * @example
 * ```ts
 * import { parseInvocation } from "./main.ts";
 * parseInvocation(["--port", "0"], {});
 * // { help: false, options: { port: 0, hostname: "127.0.0.1" } }
 * ```
 */
export function parseInvocation(
  args: string[],
  env: Record<string, string | undefined>,
): Invocation {
  let parsed;
  try {
    parsed = parseArgs({
      args,
      options: {
        port: { type: "string" },
        host: { type: "string" },
        help: { type: "boolean", short: "h" },
      },
      strict: true,
      allowPositionals: false,
    });
  } catch (error) {
    throw new UsageError(
      `${(error as Error).message}; run with --help for the options`,
    );
  }
  const flags = parsed.values;
  if (flags.help) return { help: true };
  const port = flags.port !== undefined
    ? parsePort(flags.port, "--port")
    : env.PORT !== undefined
    ? parsePort(env.PORT, "PORT")
    : 8080;
  const hostname = flags.host ?? env.HOST ?? "127.0.0.1";
  if (hostname.trim() === "") {
    throw new UsageError("host is empty; expected an address like 0.0.0.0");
  }
  return { help: false, options: { port, hostname } };
}

async function main(): Promise<void> {
  let invocation: Invocation;
  try {
    invocation = parseInvocation(Deno.args, Deno.env.toObject());
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    console.error(`hubchat: ${error.message}`);
    Deno.exit(2);
  }
  if (invocation.help) {
    console.log(USAGE);
    return;
  }
  const server = await startServer(invocation.options);
  console.log(`hubchat listening on ${server.url}`);
  let stopping = false;
  async function stop(): Promise<void> {
    if (stopping) return;
    stopping = true;
    await server.shutdown();
    Deno.exit(0);
  }
  Deno.addSignalListener("SIGINT", stop);
  Deno.addSignalListener("SIGTERM", stop);
}

if (import.meta.main) await main();

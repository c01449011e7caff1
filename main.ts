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

/** Thrown for a flag or variable that does not make sense. */
export class UsageError extends Error {
  /** Creates the error with a message saying what was wrong. */
  constructor(message: string) {
    super(message);
    this.name = "UsageError";
  }
}

/** One setting: its flag, its environment variable, and how to read it. */
export interface Setting {
  /** The long flag, without dashes. */
  flag: string;
  /** The environment variable read when the flag is absent. */
  env: string;
  /** A boolean flag takes no value; its variable is "1"/"true"/"0"/"false". */
  kind: "string" | "number" | "boolean";
  /** The value placeholder and default, as `--help` shows them. */
  shown: string;
  /** One line for `--help`. */
  help: string;
  /** Stores a parsed value into the server options. */
  apply(options: ServerOptions, value: string | number | boolean): void;
}

/**
 * Every setting, in the order `--help` lists them. Flags win over the
 * environment; `HOSTNAME` is ignored on purpose (shells set it to the
 * machine's name), hence `HOST`.
 */
export const SETTINGS: readonly Setting[] = [
  {
    flag: "port",
    env: "PORT",
    kind: "number",
    shown: "N (8080)",
    help: "port to listen on; 0 picks a free one",
    apply(options, value) {
      options.port = value as number;
    },
  },
  {
    flag: "host",
    env: "HOST",
    kind: "string",
    shown: "ADDR (127.0.0.1)",
    help: "address to listen on; 0.0.0.0 for every interface",
    apply(options, value) {
      options.hostname = value as string;
    },
  },
];

/** What the command line asked for: run with options, or print help. */
export type Invocation =
  | { help: true }
  | { help: false; options: ServerOptions };

/** The usage text `--help` prints, built from {@linkcode SETTINGS}. */
export function usage(): string {
  const rows = SETTINGS.map((setting) => {
    const left = `  --${setting.flag} ${
      setting.kind === "boolean" ? "" : setting.shown
    }`;
    return `${left.padEnd(34)}${setting.help} (env ${setting.env})`;
  });
  return [
    "hubchat: real-time group chat over WebSocket",
    "",
    "Usage: deno run -A main.ts [options]",
    "",
    "Options (flags win over environment variables):",
    ...rows,
    `${"  -h, --help".padEnd(34)}show this help`,
    "",
    "Open http://HOST:PORT/ in a browser; WebSocket clients connect to",
    "ws://HOST:PORT/ws?username=NAME.",
  ].join("\n");
}

function readValue(
  setting: Setting,
  raw: string | boolean,
  source: string,
): string | number | boolean {
  if (setting.kind === "boolean") {
    if (typeof raw === "boolean") return raw;
    const word = raw.trim().toLowerCase();
    if (["1", "true", "yes", "on"].includes(word)) return true;
    if (["0", "false", "no", "off", ""].includes(word)) return false;
    throw new UsageError(`${source} is "${raw}"; expected true or false`);
  }
  const text = String(raw).trim();
  if (setting.kind === "number") {
    if (!/^\d+(\.\d+)?$/.test(text)) {
      throw new UsageError(
        `${source} is "${raw}"; expected a non-negative number`,
      );
    }
    const value = Number(text);
    if (
      setting.flag === "port" && (!Number.isInteger(value) || value > 65535)
    ) {
      throw new UsageError(
        `${source} is "${raw}"; expected a port number from 0 to 65535`,
      );
    }
    return value;
  }
  if (text === "") {
    throw new UsageError(`${source} is empty; expected ${setting.shown}`);
  }
  return text;
}

/**
 * Reads flags and environment into server options.
 *
 * @example
 * ```ts
 * import { parseInvocation } from "./main.ts";
 * parseInvocation(["--port", "0"], {});
 * // { help: false, options: { port: 0 } }
 * ```
 */
export function parseInvocation(
  args: string[],
  env: Record<string, string | undefined>,
): Invocation {
  const flags: Record<string, { type: "string" | "boolean"; short?: string }> =
    { help: { type: "boolean", short: "h" } };
  for (const setting of SETTINGS) {
    flags[setting.flag] = {
      type: setting.kind === "boolean" ? "boolean" : "string",
    };
  }
  let values: Record<string, string | boolean | undefined>;
  try {
    values = parseArgs({
      args,
      options: flags,
      strict: true,
      allowPositionals: false,
    }).values as Record<string, string | boolean | undefined>;
  } catch (error) {
    throw new UsageError(
      `${(error as Error).message}; run with --help for the options`,
    );
  }
  if (values.help) return { help: true };
  const options: ServerOptions = {};
  for (const setting of SETTINGS) {
    const fromFlag = values[setting.flag];
    const fromEnv = env[setting.env];
    if (fromFlag !== undefined) {
      setting.apply(options, readValue(setting, fromFlag, `--${setting.flag}`));
    } else if (fromEnv !== undefined) {
      setting.apply(options, readValue(setting, fromEnv, setting.env));
    }
  }
  return { help: false, options };
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
    console.log(usage());
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

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
import { SECRET_ENV, secretProblem } from "./auth.ts";
import { DEFAULT_HISTORY_LIMIT } from "./history.ts";
import {
  DEFAULT_MAX_CONNECTIONS,
  DEFAULT_MAX_CONNECTIONS_PER_IP,
  validateAllowedOrigins,
} from "./admission.ts";
import {
  DEFAULT_BURST,
  DEFAULT_MAX_FRAME_BYTES,
  DEFAULT_RATE_PER_SECOND,
} from "./connection.ts";
import { createLogger, type LogFormat } from "./log.ts";
import {
  DEFAULT_HOST,
  DEFAULT_IDLE_TIMEOUT_SECONDS,
  DEFAULT_PORT,
  type ServerOptions,
  startServer,
} from "./server.ts";

/** Thrown for a flag or variable that does not make sense. */
export class UsageError extends Error {
  /** Creates the error with a message saying what was wrong. */
  constructor(message: string) {
    super(message);
    this.name = "UsageError";
  }
}

/**
 * Where history lives unless `--data` says otherwise: beside the working
 * directory, so a restart in the same place finds it.
 */
export const DEFAULT_DATA_PATH = "./data/hubchat.kv";

/** Everything the command line sets: server options, and what main does. */
export interface Config extends ServerOptions {
  /** Path of the PEM certificate chain (read at start). */
  certFile?: string;
  /** Path of the PEM private key (read at start). */
  keyFile?: string;
  /** How log lines are written. Default "text". */
  logFormat?: LogFormat;
}

/** One setting: its flag, its environment variable, and how to read it. */
export interface Setting {
  /** The long flag, without dashes. */
  flag: string;
  /** The environment variable read when the flag is absent. */
  env: string;
  /** A boolean flag takes no value; its variable is "1"/"true"/"0"/"false". */
  kind: "string" | "number" | "boolean";
  /** For a number that must be whole: the least and most it may be. */
  whole?: { min: number; max?: number };
  /** The value placeholder and default, as `--help` shows them. */
  shown: string;
  /** One line for `--help`. */
  help: string;
  /** The field of the config it sets. */
  key: keyof Config;
  /**
   * Turns the value read into what the field holds, when that is more than
   * the value itself; throws a UsageError saying what was wrong.
   */
  convert?(value: string | number | boolean): Config[keyof Config];
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
    whole: { min: 0, max: 65535 },
    shown: `N (${DEFAULT_PORT})`,
    help: "port to listen on; 0 picks a free one",
    key: "port",
  },
  {
    flag: "host",
    env: "HOST",
    kind: "string",
    shown: `ADDR (${DEFAULT_HOST})`,
    help: "address to listen on; 0.0.0.0 for every interface",
    key: "hostname",
  },
  {
    flag: "cert",
    env: "HUBCHAT_CERT",
    kind: "string",
    shown: "FILE",
    help: "PEM certificate chain: serve https and wss (needs --key)",
    key: "certFile",
  },
  {
    flag: "key",
    env: "HUBCHAT_KEY",
    kind: "string",
    shown: "FILE",
    help: "PEM private key for --cert",
    key: "keyFile",
  },
  {
    flag: "allowed-origins",
    env: "HUBCHAT_ALLOWED_ORIGINS",
    kind: "string",
    shown: "LIST",
    help: "origins allowed besides the page's own, comma-separated (* = any)",
    key: "allowedOrigins",
    convert(value) {
      const list = (value as string).split(",").map((entry) => entry.trim())
        .filter((entry) => entry !== "");
      try {
        return validateAllowedOrigins(list);
      } catch (error) {
        throw new UsageError((error as Error).message);
      }
    },
  },
  {
    flag: "require-origin",
    env: "HUBCHAT_REQUIRE_ORIGIN",
    kind: "boolean",
    shown: "",
    help: "refuse upgrades without an Origin header (non-browser clients)",
    key: "requireOrigin",
  },
  {
    flag: "auth-secret",
    env: SECRET_ENV,
    kind: "string",
    shown: "SECRET",
    help: "require an HS256 JWT per client; its sub is the username",
    key: "authSecret",
    convert(value) {
      const problem = secretProblem(value as string);
      if (problem !== null) throw new UsageError(problem);
      return value as string;
    },
  },
  {
    flag: "max-connections",
    env: "HUBCHAT_MAX_CONNECTIONS",
    kind: "number",
    whole: { min: 0 },
    shown: `N (${DEFAULT_MAX_CONNECTIONS})`,
    help: "connections in all (0 = no cap); over it: 503",
    key: "maxConnections",
  },
  {
    flag: "max-connections-per-ip",
    env: "HUBCHAT_MAX_CONNECTIONS_PER_IP",
    kind: "number",
    whole: { min: 0 },
    shown: `N (${DEFAULT_MAX_CONNECTIONS_PER_IP})`,
    help: "connections from one address (0 = no cap); over it: 429",
    key: "maxConnectionsPerIp",
  },
  {
    flag: "trust-proxy",
    env: "HUBCHAT_TRUST_PROXY",
    kind: "boolean",
    shown: "",
    help: "the client's address is the first X-Forwarded-For entry",
    key: "trustProxy",
  },
  {
    flag: "rate",
    env: "HUBCHAT_RATE",
    kind: "number",
    shown: `N (${DEFAULT_RATE_PER_SECOND})`,
    help: "messages a client may send per second (0 = no limit)",
    key: "ratePerSecond",
  },
  {
    flag: "burst",
    env: "HUBCHAT_BURST",
    kind: "number",
    whole: { min: 1 },
    shown: `N (${DEFAULT_BURST})`,
    help: "messages a client may send at once above the rate",
    key: "burst",
  },
  {
    flag: "max-frame-bytes",
    env: "HUBCHAT_MAX_FRAME_BYTES",
    kind: "number",
    whole: { min: 1 },
    shown: `N (${DEFAULT_MAX_FRAME_BYTES})`,
    help: "largest frame a client may send; bigger: close 1009",
    key: "maxFrameBytes",
  },
  {
    flag: "idle-timeout",
    env: "HUBCHAT_IDLE_TIMEOUT",
    kind: "number",
    whole: { min: 1 },
    shown: `SECONDS (${DEFAULT_IDLE_TIMEOUT_SECONDS})`,
    help: "drop a peer that answers no ping for this long",
    key: "idleTimeoutSeconds",
  },
  {
    flag: "data",
    env: "HUBCHAT_DATA",
    kind: "string",
    shown: `PATH (${DEFAULT_DATA_PATH})`,
    help: "Deno KV file for history; :memory: keeps it in memory",
    key: "data",
  },
  {
    flag: "history",
    env: "HUBCHAT_HISTORY",
    kind: "number",
    whole: { min: 0 },
    shown: `N (${DEFAULT_HISTORY_LIMIT})`,
    help: "messages kept per room, sent on join; 0 stores nothing",
    key: "historyLimit",
  },
  {
    flag: "log-format",
    env: "HUBCHAT_LOG_FORMAT",
    kind: "string",
    shown: "text|json (text)",
    help:
      "connect/disconnect/eviction/refusal lines on stderr, no message text",
    key: "logFormat",
    convert(value) {
      if (value !== "text" && value !== "json") {
        throw new UsageError(
          `log format is "${value}"; expected text or json`,
        );
      }
      return value;
    },
  },
];

/** What the command line asked for: run with options, or print help. */
export type Invocation =
  | { help: true }
  | { help: false; options: Config };

/** The usage text `--help` prints, built from {@linkcode SETTINGS}. */
export function usage(): string {
  const rows = SETTINGS.map((setting) => {
    const left = `  --${setting.flag} ${setting.shown}`.padEnd(34);
    return `${left}${setting.help}\n${"".padEnd(34)}env ${setting.env}`;
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
    const whole = setting.whole;
    if (
      whole !== undefined &&
      (!Number.isInteger(value) || value < whole.min ||
        value > (whole.max ?? Number.MAX_SAFE_INTEGER))
    ) {
      const range = whole.max === undefined
        ? `of at least ${whole.min}`
        : `from ${whole.min} to ${whole.max}`;
      throw new UsageError(
        `${source} is "${raw}"; expected a whole number ${range}`,
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
  const options: Config = {};
  for (const setting of SETTINGS) {
    const fromFlag = values[setting.flag];
    const fromEnv = env[setting.env];
    const source = fromFlag !== undefined ? `--${setting.flag}` : setting.env;
    const raw = fromFlag ?? fromEnv;
    if (raw === undefined) continue;
    const value = readValue(setting, raw, source);
    try {
      (options as Record<string, unknown>)[setting.key] =
        setting.convert?.(value) ?? value;
    } catch (error) {
      if (!(error instanceof UsageError)) throw error;
      throw new UsageError(`${source}: ${error.message}`);
    }
  }
  if ((options.certFile === undefined) !== (options.keyFile === undefined)) {
    throw new UsageError(
      "--cert and --key go together; expected both or neither",
    );
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
  const { certFile, keyFile, logFormat, ...options } = invocation.options;
  if (certFile !== undefined && keyFile !== undefined) {
    try {
      options.cert = await Deno.readTextFile(certFile);
      options.key = await Deno.readTextFile(keyFile);
    } catch (error) {
      console.error(
        `hubchat: cannot read the TLS files: ${(error as Error).message}`,
      );
      Deno.exit(2);
    }
  }
  options.logger = createLogger({ format: logFormat });
  options.data ??= DEFAULT_DATA_PATH;
  const server = await startServer(options);
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

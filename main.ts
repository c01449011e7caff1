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

import { SECRET_ENV, secretProblem } from "./auth.ts";
import {
  type Flag,
  type FlagValue,
  helpRows,
  readFlags,
  UsageError,
} from "./flags.ts";
import { DEFAULT_HISTORY_LIMIT } from "./history.ts";
import { DEFAULT_LARGE_ROOM } from "./presence.ts";
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

/** Thrown for a flag or variable that does not make sense (from flags.ts). */
export { UsageError };

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

/**
 * One setting: a flag with its environment variable (read by flags.ts), and
 * the field of the config it sets.
 */
export interface Setting extends Flag {
  /** The environment variable read when the flag is absent. */
  env: string;
  /** The field of the config it sets. */
  key: keyof Config;
  /**
   * Turns the value read into what the field holds, when that is more than
   * the value itself; throws a UsageError saying what was wrong.
   */
  convert?(value: FlagValue): Config[keyof Config];
}

/**
 * Every setting, in the order `--help` lists them. Flags win over the
 * environment; `HOSTNAME` is ignored on purpose (shells set it to the
 * machine's name), hence `HOST`.
 */
export const SETTINGS: readonly Setting[] = [
  {
    name: "port",
    env: "PORT",
    kind: "whole",
    min: 0,
    max: 65535,
    value: "N",
    default: DEFAULT_PORT,
    help: "port to listen on; 0 picks a free one",
    key: "port",
  },
  {
    name: "host",
    env: "HOST",
    kind: "text",
    value: "ADDR",
    default: DEFAULT_HOST,
    help: "address to listen on; 0.0.0.0 for every interface",
    key: "hostname",
  },
  {
    name: "cert",
    env: "HUBCHAT_CERT",
    kind: "text",
    value: "FILE",
    help: "PEM certificate chain: serve https and wss (needs --key)",
    key: "certFile",
  },
  {
    name: "key",
    env: "HUBCHAT_KEY",
    kind: "text",
    value: "FILE",
    help: "PEM private key for --cert",
    key: "keyFile",
  },
  {
    name: "allowed-origins",
    env: "HUBCHAT_ALLOWED_ORIGINS",
    kind: "text",
    value: "LIST",
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
    name: "require-origin",
    env: "HUBCHAT_REQUIRE_ORIGIN",
    kind: "switch",
    help: "refuse upgrades without an Origin header (non-browser clients)",
    key: "requireOrigin",
  },
  {
    name: "auth-secret",
    env: SECRET_ENV,
    kind: "text",
    value: "SECRET",
    help: "require an HS256 JWT per client; its sub is the username",
    key: "authSecret",
    convert(value) {
      const problem = secretProblem(value as string);
      if (problem !== null) throw new UsageError(problem);
      return value as string;
    },
  },
  {
    name: "max-connections",
    env: "HUBCHAT_MAX_CONNECTIONS",
    kind: "whole",
    min: 0,
    value: "N",
    default: DEFAULT_MAX_CONNECTIONS,
    help: "connections in all (0 = no cap); over it: 503",
    key: "maxConnections",
  },
  {
    name: "max-connections-per-ip",
    env: "HUBCHAT_MAX_CONNECTIONS_PER_IP",
    kind: "whole",
    min: 0,
    value: "N",
    default: DEFAULT_MAX_CONNECTIONS_PER_IP,
    help: "connections from one address (0 = no cap); over it: 429",
    key: "maxConnectionsPerIp",
  },
  {
    name: "trust-proxy",
    env: "HUBCHAT_TRUST_PROXY",
    kind: "switch",
    help: "the client's address is the first X-Forwarded-For entry",
    key: "trustProxy",
  },
  {
    name: "rate",
    env: "HUBCHAT_RATE",
    kind: "number",
    min: 0,
    value: "N",
    default: DEFAULT_RATE_PER_SECOND,
    help: "messages a client may send per second (0 = no limit)",
    key: "ratePerSecond",
  },
  {
    name: "burst",
    env: "HUBCHAT_BURST",
    kind: "whole",
    min: 1,
    value: "N",
    default: DEFAULT_BURST,
    help: "messages a client may send at once above the rate",
    key: "burst",
  },
  {
    name: "max-frame-bytes",
    env: "HUBCHAT_MAX_FRAME_BYTES",
    kind: "whole",
    min: 1,
    value: "N",
    default: DEFAULT_MAX_FRAME_BYTES,
    help: "largest frame a client may send; bigger: close 1009",
    key: "maxFrameBytes",
  },
  {
    name: "idle-timeout",
    env: "HUBCHAT_IDLE_TIMEOUT",
    kind: "whole",
    min: 1,
    value: "SECONDS",
    default: DEFAULT_IDLE_TIMEOUT_SECONDS,
    help: "drop a peer that answers no ping for this long",
    key: "idleTimeoutSeconds",
  },
  {
    name: "data",
    env: "HUBCHAT_DATA",
    kind: "text",
    value: "PATH",
    default: DEFAULT_DATA_PATH,
    help: "Deno KV file for history; :memory: keeps it in memory",
    key: "data",
  },
  {
    name: "history",
    env: "HUBCHAT_HISTORY",
    kind: "whole",
    min: 0,
    value: "N",
    default: DEFAULT_HISTORY_LIMIT,
    help: "messages kept per room, sent on join; 0 stores nothing",
    key: "historyLimit",
  },
  {
    name: "large-room",
    env: "HUBCHAT_LARGE_ROOM",
    kind: "whole",
    min: 1,
    value: "N",
    default: DEFAULT_LARGE_ROOM,
    help: "members above which a room sends its count, not each join and leave",
    key: "largeRoom",
  },
  {
    name: "log-format",
    env: "HUBCHAT_LOG_FORMAT",
    kind: "text",
    value: "text|json",
    default: "text",
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

/**
 * The usage text `--help` prints, its option rows rendered from
 * {@linkcode SETTINGS}.
 *
 * @example
 * ```ts
 * import { usage } from "./main.ts";
 * console.log(usage()); // "hubchat: real-time group chat over WebSocket ..."
 * ```
 */
export function usage(): string {
  return [
    "hubchat: real-time group chat over WebSocket",
    "",
    "Usage: deno run -A main.ts [options]",
    "",
    "Options (flags win over environment variables):",
    helpRows(SETTINGS, { withHelp: true }),
    "",
    "Open http://HOST:PORT/ in a browser; WebSocket clients connect to",
    "ws://HOST:PORT/ws?username=NAME.",
  ].join("\n");
}

/**
 * Reads flags and environment into server options; throws a
 * {@linkcode UsageError} naming the flag or variable that makes no sense.
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
  const reading = readFlags(SETTINGS, args, { env });
  if (reading.help) return { help: true };
  const options: Config = {};
  for (const setting of SETTINGS) {
    const value = reading.values[setting.key];
    if (value === undefined) continue;
    try {
      (options as Record<string, unknown>)[setting.key] =
        setting.convert?.(value) ?? value;
    } catch (error) {
      if (!(error instanceof UsageError)) throw error;
      throw new UsageError(`${reading.sources[setting.key]}: ${error.message}`);
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

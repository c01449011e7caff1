/**
 * hubchat's command line: flags and environment in, a running server out,
 * and a clean stop on SIGINT or SIGTERM.
 *
 * ```sh
 * deno run -A main.ts --port 8080 --host 127.0.0.1
 * ```
 *
 * It exits with 0 after `--help` or a clean stop; with 2, after one line on
 * standard error saying what was wrong and what was expected, when the
 * command line, the environment or what they point at cannot be used (a
 * taken port, a host that is not this machine's, a `--data` path that
 * cannot be written, TLS files that cannot be read or used, a missing Deno
 * permission); and with 1 only for an unexpected crash, with Deno's stack
 * trace: a bug to report.
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
import { DEFAULT_HISTORY_LIMIT } from "./store/history.ts";
import { HistoryOpenError } from "./store/history_file.ts";
import { EngineUnavailable } from "./engine.ts";
import { DEFAULT_UPLOAD_RATE, FilesDirError } from "./files/http.ts";
import {
  DEFAULT_FILES_MAX_BYTES,
  DEFAULT_MAX_FILE_SIZE,
} from "./store/files.ts";
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
  type ChatServer,
  DEFAULT_HOST,
  DEFAULT_IDLE_TIMEOUT_SECONDS,
  DEFAULT_PORT,
  ListenError,
  type ServerOptions,
  startServer,
  TlsError,
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
    help: "history file; :memory: keeps history in memory only",
    key: "data",
  },
  {
    name: "fsync",
    env: "HUBCHAT_FSYNC",
    kind: "text",
    choices: ["periodic", "always"],
    default: "periodic",
    help:
      "sync history to disk once a second (a power loss may cost that second), or before each line is sent",
    key: "fsync",
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
    name: "files",
    env: "HUBCHAT_FILES",
    kind: "text",
    value: "DIR",
    help:
      "folder for shared files (default: files beside --data); nodes with --redis share one",
    key: "files",
  },
  {
    name: "max-file-size",
    env: "HUBCHAT_MAX_FILE_SIZE",
    kind: "whole",
    min: 1,
    value: "BYTES",
    default: DEFAULT_MAX_FILE_SIZE,
    help: "largest file a client may upload; bigger: 413",
    key: "maxFileSize",
  },
  {
    name: "files-max-bytes",
    env: "HUBCHAT_FILES_MAX_BYTES",
    kind: "whole",
    min: 1,
    value: "BYTES",
    default: DEFAULT_FILES_MAX_BYTES,
    help: "bytes all shared files may take; past it the oldest go",
    key: "filesMaxBytes",
  },
  {
    name: "upload-rate",
    env: "HUBCHAT_UPLOAD_RATE",
    kind: "whole",
    min: 0,
    value: "BYTES",
    default: DEFAULT_UPLOAD_RATE,
    help: "bytes a user may upload per minute (0 = no limit); over it: 429",
    key: "uploadRate",
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
    name: "redis",
    env: "HUBCHAT_REDIS_URL",
    kind: "text",
    value: "URL",
    help:
      "share rooms, history and presence with every node on this Redis (redis:// or rediss://)",
    key: "redis",
    convert(value) {
      const url = String(value);
      if (!/^rediss?:\/\/[^\s]+$/.test(url)) {
        throw new UsageError(
          `URL is "${url}"; expected a redis:// or rediss:// URL, like redis://127.0.0.1:6379`,
        );
      }
      return url;
    },
  },
  {
    name: "reuse-port",
    env: "HUBCHAT_REUSE_PORT",
    kind: "switch",
    help: "let several nodes listen on this port (the kernel spreads them)",
    key: "reusePort",
  },
  {
    name: "log-format",
    env: "HUBCHAT_LOG_FORMAT",
    kind: "text",
    choices: ["text", "json"],
    default: "text",
    help:
      "connect/disconnect/eviction/refusal lines on stderr, no message text",
    key: "logFormat",
  },
];

/**
 * How each setting given was given, by its field: `"--data"` for a flag,
 * `"HUBCHAT_DATA"` for a variable; settings left at their default are
 * absent.
 */
export type Sources = Partial<Record<keyof Config, string>>;

/**
 * What the command line asked for: print help, or run with options (and
 * where each came from, for messages).
 */
export type Invocation =
  | { help: true }
  | { help: false; options: Config; sources: Sources };

/**
 * The exit status after a command line, environment or start-up setting
 * that cannot be used (a usage error, as for most Unix commands); 1 is left
 * for an unexpected crash.
 */
export const EXIT_USAGE = 2;

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

/** A URL with its password hidden, for messages. */
function redactedPassword(url: string): string {
  return url.replace(/^(rediss?:\/\/[^:@/]*:)[^@/]*@/, "$1***@");
}

/**
 * Reads flags and environment into server options; throws a
 * {@linkcode UsageError} naming the flag or variable that makes no sense.
 *
 * @example
 * ```ts
 * import { parseInvocation } from "./main.ts";
 * parseInvocation(["--port", "0"], {});
 * // { help: false, options: { port: 0 }, sources: { port: "--port" } }
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
  return { help: false, options, sources: reading.sources as Sources };
}

/**
 * How the start-up error `error` is said to the user: one line, without
 * the `hubchat: ` in front, saying what was wrong and what was expected.
 * `invocation` tells how each setting was given (`--data` or
 * `HUBCHAT_DATA`) and which TLS files were named. Null for an error that is
 * not one of bad usage or of a setting that cannot be used: a bug, whose
 * stack trace is worth more than a line.
 *
 * @example
 * ```ts
 * import { startupProblem } from "./main.ts";
 * import { ListenError } from "./server.ts";
 * const taken = new Deno.errors.AddrInUse("Address already in use (os error 98)");
 * startupProblem(new ListenError("127.0.0.1", 8080, taken));
 * // "port 8080 on 127.0.0.1 is already in use by another process; stop it or pick another with --port"
 * ```
 */
export function startupProblem(
  error: unknown,
  invocation?: Invocation,
): string | null {
  const given = invocation?.help === false
    ? invocation
    : { options: {} as Config, sources: {} as Sources };
  /** How the setting `key` was given, or its flag when it was not. */
  function source(key: keyof Config, flag: string): string {
    return given.sources[key] ?? flag;
  }
  if (error instanceof UsageError) return error.message;
  const denied = deniedByDeno(error);
  if (denied !== undefined) {
    return `Deno refused: ${
      firstLine(denied)
    }; hubchat needs --allow-net --allow-read --allow-write --allow-env (or -A), as \`deno task start\` gives it`;
  }
  if (error instanceof ListenError) {
    return listenProblem(error, {
      host: source("hostname", "--host"),
      port: source("port", "--port"),
    });
  }
  if (error instanceof TlsError) {
    return tlsProblem(error, {
      cert: `${source("certFile", "--cert")} is "${given.options.certFile}"`,
      key: `${source("keyFile", "--key")} is "${given.options.keyFile}"`,
    });
  }
  if (error instanceof FilesDirError) {
    const name = source("files", "--files");
    return `${
      given.sources.files === undefined
        ? `the files folder "${error.path}" (beside --data; set it with --files)`
        : `${name} is "${error.path}", which`
    } cannot be used (${
      osReason(error.cause)
    }); expected a folder this user can create and write`;
  }
  if (error instanceof EngineUnavailable) {
    return `${source("redis", "--redis")} is "${
      redactedPassword(given.options.redis ?? "")
    }", which cannot be used (${
      firstLine(error.message)
    }); expected the URL of a running Redis, like redis://127.0.0.1:6379`;
  }
  if (error instanceof HistoryOpenError) {
    return dataProblem(error, {
      name: source("data", "--data"),
      defaulted: invocation?.help === false &&
        invocation.sources.data === undefined,
    });
  }
  return null;
}

/**
 * Ports below this one need root (or CAP_NET_BIND_SERVICE): Linux's
 * default `net.ipv4.ip_unprivileged_port_start`, and the classic Unix rule.
 */
const FIRST_UNPRIVILEGED_PORT = 1024;

/** What every message about --host says is expected. */
const EXPECTED_HOST =
  "expected an address of this machine, like 127.0.0.1 (this machine only) or 0.0.0.0 (every interface)";

/** Why hubchat cannot listen, for {@linkcode startupProblem}. */
function listenProblem(
  error: ListenError,
  names: { host: string; port: string },
): string {
  const { hostname, port } = error;
  const cause = error.cause;
  if (cause instanceof Deno.errors.AddrInUse) {
    return `port ${port} on ${hostname} is already in use by another process; stop it or pick another with --port`;
  }
  if (cause instanceof Deno.errors.AddrNotAvailable) {
    return `${names.host} is "${hostname}", which is not an address of this machine; ${EXPECTED_HOST}`;
  }
  if (cause instanceof Deno.errors.PermissionDenied) {
    if (port < FIRST_UNPRIVILEGED_PORT) {
      return `${names.port} is ${port}, a port below ${FIRST_UNPRIVILEGED_PORT} that only root (or CAP_NET_BIND_SERVICE) may listen on; expected ${FIRST_UNPRIVILEGED_PORT} or above, with a proxy in front for 80 and 443 (see deploy/)`;
    }
    return `cannot listen on ${hostname} port ${port}: permission denied; expected a port this user may listen on`;
  }
  const message = cause instanceof Error ? cause.message : String(cause);
  const lookup = /^failed to lookup address information: (.*)$/.exec(message);
  if (lookup !== null) {
    return `${names.host} is "${hostname}", which does not resolve (${
      lookup[1]
    }); ${EXPECTED_HOST}, or a name for one`;
  }
  // Deno's words for a host with a scheme or a port in it.
  const invalid = /^invalid host '.*': (.*)$/.exec(message);
  if (invalid !== null) {
    return `${names.host} is "${hostname}", which is no host name or address (${
      invalid[1]
    }); ${EXPECTED_HOST}, with no scheme or port (the port is --port)`;
  }
  return `cannot listen on ${hostname} port ${port} (${
    osReason(cause)
  }); expected an address (${names.host}) and a port (${names.port}) this machine can listen on`;
}

/** Why the certificate and key cannot serve TLS, for {@linkcode startupProblem}. */
function tlsProblem(
  error: TlsError,
  files: { cert: string; key: string },
): string {
  const message = error.cause instanceof Error
    ? error.cause.message
    : String(error.cause);
  if (/no certificates found/i.test(message)) {
    return `${files.cert}, which holds no certificate; expected a PEM certificate chain (-----BEGIN CERTIFICATE----- blocks)`;
  }
  if (/no keys found/i.test(message)) {
    return `${files.key}, which holds no private key; expected a PEM private key (a -----BEGIN PRIVATE KEY----- block)`;
  }
  if (/KeyMismatch/.test(message)) {
    return `${files.key}, which is not the private key of the certificate (${files.cert}); expected the key the certificate was issued for`;
  }
  return `${files.cert} and ${files.key}, which cannot serve TLS (${message}); expected a PEM certificate chain and its private key`;
}

/**
 * Why `--data` cannot be used, for {@linkcode startupProblem}; `name` is
 * how it was given, and `defaulted` true when it was not (a newcomer who
 * never typed `--data` learns the path is the default).
 */
function dataProblem(
  error: HistoryOpenError,
  { name, defaulted }: { name: string; defaulted: boolean },
): string {
  const given = `${name} is "${error.path}"${
    defaulted ? " (the default)" : ""
  }`;
  const reason = osReason(error.cause);
  const orMemory = "or :memory: to keep no history on disk";
  switch (error.step) {
    case "folder": {
      const why = error.blocker === undefined
        ? reason
        : `${error.blocker} is a file, not a folder`;
      return `${given}, but its folder ${error.folder} cannot be created (${why}); expected a path whose folders can be created, ${orMemory}`;
    }
    case "file":
      return `${given}, which cannot be opened for reading and writing (${reason}); expected a file this user can create and write, ${orMemory}`;
    case "locked":
      return `${given}, which another running hubchat is using (it holds the file's lock); stop that one, or give this one another path, ${orMemory}`;
    case "beside":
      return `${given}, beside which no file can be made (${reason}); expected a file in a folder this user can write (compaction writes a new file beside it), ${orMemory}`;
    case "store":
      return `${given}, which is not a hubchat history file (${reason}); expected a history file hubchat wrote (or an earlier version's Deno KV file) or a path for a new one, ${orMemory}`;
    case "load":
      return `${given}, whose history cannot be loaded (${reason}); expected a store hubchat wrote or a path for a new one, ${orMemory}`;
  }
}

/**
 * The operating system's reason for a failed call, in words ("permission
 * denied"), or the error's own message without Deno's
 * ` (os error 30): mkdir '...'` tail.
 */
function osReason(error: unknown): string {
  switch ((error as { code?: unknown } | null)?.code) {
    case "EACCES":
    case "EPERM":
      return "permission denied";
    case "EROFS":
      return "the file system is read-only";
    case "ENOENT":
      return "no such file or folder";
    case "EISDIR":
      return "it is a folder, not a file";
    case "ENOTDIR":
      return "a part of the path is a file, not a folder";
    case "ENOSPC":
      return "no space left on the device";
  }
  const message = error instanceof Error ? error.message : String(error);
  return firstLine(message).replace(/ \(os error \d+\).*$/, "")
    .replace(/\.$/, "");
}

/** Deno's permission error in `error` or its causes, if there is one. */
function deniedByDeno(error: unknown): string | undefined {
  for (let e = error; e instanceof Error; e = e.cause) {
    if (e instanceof Deno.errors.NotCapable) return e.message;
  }
  return undefined;
}

/** `text` up to its first line break. */
function firstLine(text: string): string {
  return text.split("\n")[0];
}

/**
 * Reads the TLS file `path`, named by `name` (`--cert` or `HUBCHAT_CERT`);
 * throws a UsageError saying why it cannot be read and what it should be.
 */
async function readTlsFile(
  path: string,
  name: string,
  what: string,
): Promise<string> {
  try {
    return await Deno.readTextFile(path);
  } catch (error) {
    if (deniedByDeno(error)) throw error;
    throw new UsageError(
      `${name} is "${path}", which cannot be read (${
        osReason(error)
      }); expected ${what}`,
    );
  }
}

/** Starts the server the invocation asks for. */
async function start(
  { options: config, sources }: Invocation & { help: false },
): Promise<ChatServer> {
  const { certFile, keyFile, logFormat, ...options } = config;
  if (certFile !== undefined && keyFile !== undefined) {
    options.cert = await readTlsFile(
      certFile,
      sources.certFile ?? "--cert",
      "a PEM certificate chain file",
    );
    options.key = await readTlsFile(
      keyFile,
      sources.keyFile ?? "--key",
      "a PEM private key file",
    );
  }
  options.logger = createLogger({ format: logFormat });
  options.data ??= DEFAULT_DATA_PATH;
  const warning = descriptorWarning(
    openFilesLimit(),
    options.maxConnections ?? DEFAULT_MAX_CONNECTIONS,
  );
  if (warning !== null) {
    options.logger.log("warn", "descriptor_limit", { message: warning });
  }
  return await startServer(options);
}

/**
 * Descriptors the server needs besides one per connection: its listening
 * socket, the history file and its journal, Redis, the runtime's own, and
 * upgrades in flight.
 */
const DESCRIPTOR_MARGIN = 100;

/** What to ask of a server with no cap on connections: a common hard limit. */
const UNCAPPED_DESCRIPTORS = 65_536;

/**
 * This process's soft limit on open files, from /proc (Linux); null where
 * it cannot be read. Deno raises the soft limit to the hard one when it
 * starts, so this is the most the process can have.
 */
function openFilesLimit(): number | null {
  try {
    const limits = Deno.readTextFileSync("/proc/self/limits");
    const row = /^Max open files\s+(\d+|unlimited)/m.exec(limits);
    if (row === null) return null;
    return row[1] === "unlimited" ? Infinity : Number(row[1]);
  } catch {
    return null;
  }
}

/**
 * The warning to give when the descriptor limit is below what
 * `maxConnections` connections need, or null when it is enough (or
 * unknown). Beyond the limit the server does not crash: it stops
 * accepting until descriptors are free, and says so.
 *
 * @example
 * ```ts
 * import { descriptorWarning } from "./main.ts";
 * descriptorWarning(1024, 10_000); // "the open-file limit is 1024, ..."
 * descriptorWarning(65_536, 10_000); // null
 * ```
 */
export function descriptorWarning(
  limit: number | null,
  maxConnections: number,
): string | null {
  const want = maxConnections === 0
    ? UNCAPPED_DESCRIPTORS
    : maxConnections + DESCRIPTOR_MARGIN;
  if (limit === null || limit >= want) return null;
  return `the open-file limit is ${limit}, below the ${want} that ${
    maxConnections === 0
      ? "an uncapped server"
      : `--max-connections ${maxConnections}`
  } needs (one per connection and ${DESCRIPTOR_MARGIN} more); past it new connections wait until some close. Raise it: ulimit -n ${want} (the hard limit too, as root), or LimitNOFILE=${want} in a systemd unit`;
}

async function main(): Promise<void> {
  let invocation: Invocation | undefined;
  let server: ChatServer;
  try {
    invocation = parseInvocation(Deno.args, Deno.env.toObject());
    if (invocation.help) {
      console.log(usage());
      return;
    }
    server = await start(invocation);
  } catch (error) {
    const problem = startupProblem(error, invocation);
    if (problem === null) throw error;
    console.error(`hubchat: ${problem}`);
    Deno.exit(EXIT_USAGE);
  }
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

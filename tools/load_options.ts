/**
 * The load tool's options: defaults and limits (some shared with the soak
 * tool), the command line and its help, and the checks that turn options
 * into a run's settings.
 *
 * @module
 */

/** Default target: hubchat's default port on loopback. */
export const DEFAULT_URL = "ws://127.0.0.1:8080/ws";

/** 100 clients: enough fan-out to matter, few enough for any laptop. */
const DEFAULT_CLIENTS = 100;

/** One sender: the fan-out path is what we measure, not ingest. */
const DEFAULT_SENDERS = 1;

/** 64 bytes: a short chat line. */
export const DEFAULT_SIZE = 64;

/** 64 in flight per sender: deep enough to keep a pipelined server busy. */
const DEFAULT_WINDOW = 64;

/** 10 s measured: long enough for stable percentiles, short for a loop. */
const DEFAULT_DURATION_S = 10;

/** 2 s warm-up: lets the JIT and the socket buffers settle before stats. */
const DEFAULT_WARMUP_S = 2;

/** 5 s drain: loopback messages arrive in milliseconds; this is generous. */
const DEFAULT_DRAIN_S = 5;

/** 200 handshakes at a time: fast, yet under typical accept backlogs. */
export const DEFAULT_CONNECT_CONCURRENCY = 200;

/** 10 s per handshake: anything slower is a failure worth reporting. */
export const DEFAULT_CONNECT_TIMEOUT_S = 10;

/**
 * The whole connect phase's cap is this base plus {@linkcode
 * CONNECT_CAP_PER_CLIENT_S} per client: each join is broadcast to everyone,
 * so connecting N clients costs the server O(N²) deliveries.
 */
export const CONNECT_CAP_BASE_S = 30;

/** See {@linkcode CONNECT_CAP_BASE_S}: 10,000 clients get 30 + 50 s. */
export const CONNECT_CAP_PER_CLIENT_S = 0.005;

/** How long closing all client sockets may take before we stop waiting. */
export const CLOSE_CAP_MS = 5_000;

/** Smallest --size: the header "<run>:<s>:<seq>:<µs>:" needs up to ~40. */
export const MIN_SIZE = 40;

/** Largest --size: hubchat's text limit is 2000 characters. */
export const MAX_SIZE = 2000;

/**
 * Open loop: a send more than 10 ms (or one interval, if longer) late is
 * skipped, not sent in a burst.
 */
export const OPEN_LOOP_MAX_BURST_MS = 10;

/** Drain completion is checked this often. */
export const DRAIN_POLL_MS = 20;

/** Options of {@linkcode runLoad}; every field has a default. */
export interface LoadOptions {
  /**
   * WebSocket URL of the chat endpoint (`ws://host:port/ws`); an `http://`
   * URL or one without a path gets `/ws`. Ignored when `server` is set.
   * Default `ws://127.0.0.1:8080/ws`.
   */
  url?: string;
  /**
   * A command that starts a server, like `deno run -A main.ts`. If it holds
   * `{port}` (and optionally `{host}`) those are replaced by `0` and
   * `127.0.0.1`; otherwise `--port 0 --host 127.0.0.1` is appended. The
   * first `http://host:port/` printed on stdout is the server's address.
   */
  server?: string;
  /** Receiving WebSocket clients. Default 100. */
  clients?: number;
  /** How many of the clients also send. Default 1. */
  senders?: number;
  /** Chat text size in bytes (ASCII). Default 64, at least 40. */
  size?: number;
  /** Closed loop: messages per sender in flight (sent, not yet echoed). */
  window?: number;
  /**
   * Open loop: offered deliveries per second (messages/s × clients). When
   * set, `window` is ignored.
   */
  rate?: number;
  /** Measured seconds. Default 10. */
  duration?: number;
  /** Seconds of sending before measuring. Default 2. */
  warmup?: number;
  /** Seconds to wait for in-flight messages after sending stops. Default 5. */
  drain?: number;
  /** Handshakes in progress at once. Default 200. */
  connectConcurrency?: number;
  /** Seconds one handshake (up to the welcome) may take. Default 10. */
  connectTimeout?: number;
  /** Extra raw-TCP clients that complete the handshake, then never read. */
  stall?: number;
  /** Hold the clients idle for `duration` (no sending): a memory probe. */
  idle?: boolean;
  /** Pin the started server to this CPU (taskset). */
  pinServer?: number;
  /** Pin this process (all its threads) to this CPU (taskset). */
  pinLoad?: number;
  /** Print a progress line to stderr about once a second. Default false. */
  progress?: boolean;
}

/** What {@linkcode parseLoadArgs} makes of a command line. */
export interface LoadArgs {
  /** `--help` was given. */
  help: boolean;
  /** `--json-only` was given: no progress lines. */
  jsonOnly: boolean;
  /** The options for {@linkcode runLoad}. */
  options: LoadOptions;
}

/**
 * Normalizes a target URL: `http(s)` becomes `ws(s)`, an empty path `/ws`.
 *
 * @example
 * ```ts
 * import { normalizeUrl } from "./load_options.ts";
 * normalizeUrl("http://localhost:8080/"); // "ws://localhost:8080/ws"
 * ```
 */
export function normalizeUrl(raw: string): string {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new Error(
      `--url "${raw}" is not a URL; expected like ws://127.0.0.1:8080/ws`,
    );
  }
  if (url.protocol === "http:") url.protocol = "ws:";
  else if (url.protocol === "https:") url.protocol = "wss:";
  if (url.protocol !== "ws:" && url.protocol !== "wss:") {
    throw new Error(
      `--url "${raw}" has scheme ${url.protocol}; expected ws:, wss:, http: or https:`,
    );
  }
  if (url.pathname === "" || url.pathname === "/") url.pathname = "/ws";
  return url.href;
}

export const HELP = `hubchat load tool

Usage: deno run -A load.ts [options]       (or: deno task load [options])

Target (one of):
  --url URL              chat endpoint (default ${DEFAULT_URL})
  --server "CMD"         start CMD, read its http://host:port/ from stdout,
                         stop it at the end (SIGTERM, SIGKILL after 5 s).
                         CMD gets "--port 0 --host 127.0.0.1" appended, unless
                         it holds {port} (and {host}) placeholders, which are
                         filled in instead. With --server the summary has the
                         server's CPU (from /proc/PID/stat) and memory.

Load:
  --clients N            WebSocket clients (default ${DEFAULT_CLIENTS})
  --senders S            clients that also send (default ${DEFAULT_SENDERS})
  --size BYTES           chat text size, ${MIN_SIZE}-${MAX_SIZE} (default ${DEFAULT_SIZE})
  --window W             closed loop: W messages in flight per sender
                         (default ${DEFAULT_WINDOW})
  --rate R               open loop: R deliveries/s offered, i.e. R/clients
                         messages/s, evenly spread, late sends skipped
  --duration SEC         measured seconds (default ${DEFAULT_DURATION_S})
  --warmup SEC           unmeasured seconds first (default ${DEFAULT_WARMUP_S})
  --drain SEC            wait for in-flight messages (default ${DEFAULT_DRAIN_S})
  --connect-concurrency N  handshakes at once (default ${DEFAULT_CONNECT_CONCURRENCY})
  --connect-timeout SEC  per handshake (default ${DEFAULT_CONNECT_TIMEOUT_S})
  --stall N              N more clients (raw TCP) that connect, then never
                         read: the slow-consumer experiment; their fate is
                         reported under "stall"
  --idle                 connect, then hold the clients for --duration
                         without sending; with --server, reports server RSS
                         before/after and bytes per connection

Measurement:
  --pin-server CPU       run the server under taskset -c CPU
  --pin-load CPU         pin this process (all threads) to CPU (taskset -a -p)
  --json-only            no progress lines on stderr
  --help                 this text

Output: a progress line on stderr about once a second, then one JSON
summary on stdout. The run always ends within connect cap + warmup +
duration + drain (+ a connect timeout per batch of --stall clients, and the
server start/stop caps).

Many connections: each client is a file descriptor here and one in the
server. For 10,000 clients run "ulimit -n 65536" (in the same shell) first.
`;

/** How a command line's flags map onto options, for {@linkcode parseFlags}. */
export interface FlagSpec {
  /** Flags that take a value, and the option each sets. */
  values: Record<string, string>;
  /** Of those, the options whose value is text; the rest are numbers. */
  text: ReadonlySet<string>;
  /** Flags that take no value, and the option each sets to true. */
  switches: Record<string, string>;
}

/**
 * Parses `--flag value`, `--flag=value` and switches into options; `-h` or
 * `--help` sets `help`. Throws an Error naming the bad flag. Shared by the
 * load and soak tools.
 *
 * @example
 * ```ts
 * import { parseFlags } from "./load_options.ts";
 * parseFlags(["--clients=10", "--idle"], {
 *   values: { "--clients": "clients" },
 *   text: new Set(),
 *   switches: { "--idle": "idle" },
 * });
 * // { help: false, options: { clients: 10, idle: true } }
 * ```
 */
export function parseFlags(
  args: readonly string[],
  spec: FlagSpec,
): { help: boolean; options: Record<string, unknown> } {
  const options: Record<string, unknown> = {};
  let help = false;
  for (let i = 0; i < args.length; i++) {
    const arg = args[i];
    if (arg === "--help" || arg === "-h") {
      help = true;
      continue;
    }
    const switched = spec.switches[arg];
    if (switched !== undefined) {
      options[switched] = true;
      continue;
    }
    const eq = arg.indexOf("=");
    const flag = eq === -1 ? arg : arg.slice(0, eq);
    const key = spec.values[flag];
    if (key === undefined) {
      throw new Error(`unknown option "${arg}"; see --help for the options`);
    }
    const value = eq === -1 ? args[++i] : arg.slice(eq + 1);
    if (value === undefined || value === "") {
      throw new Error(`${flag} needs a value; see --help`);
    }
    if (spec.text.has(key)) {
      options[key] = value;
      continue;
    }
    const n = Number(value);
    if (!Number.isFinite(n) || value.trim() === "") {
      throw new Error(
        `${flag} "${value}" is not a number; expected e.g. ${flag} 10`,
      );
    }
    options[key] = n;
  }
  return { help, options };
}

/** Flags that take a value, and the option each sets. */
const VALUE_FLAGS: Record<string, keyof LoadOptions> = {
  "--url": "url",
  "--server": "server",
  "--clients": "clients",
  "--senders": "senders",
  "--size": "size",
  "--window": "window",
  "--rate": "rate",
  "--duration": "duration",
  "--warmup": "warmup",
  "--drain": "drain",
  "--connect-concurrency": "connectConcurrency",
  "--connect-timeout": "connectTimeout",
  "--stall": "stall",
  "--pin-server": "pinServer",
  "--pin-load": "pinLoad",
};

/**
 * Parses the CLI's arguments; throws an Error naming the bad flag.
 *
 * @example
 * ```ts
 * import { parseLoadArgs } from "./load_options.ts";
 * parseLoadArgs(["--clients", "10", "--rate=5000"]).options;
 * // { clients: 10, rate: 5000 }
 * ```
 */
export function parseLoadArgs(args: readonly string[]): LoadArgs {
  const { help, options } = parseFlags(args, {
    values: VALUE_FLAGS,
    text: new Set(["url", "server"]),
    switches: { "--json-only": "jsonOnly", "--idle": "idle" },
  });
  const { jsonOnly, ...load } = options;
  return { help, jsonOnly: jsonOnly === true, options: load as LoadOptions };
}

/** {@linkcode LoadOptions} with defaults filled in and checked. */
export interface ResolvedLoadOptions {
  url: string;
  server: string | null;
  clients: number;
  senders: number;
  size: number;
  window: number;
  rate: number;
  duration: number;
  warmup: number;
  drain: number;
  connectConcurrency: number;
  connectTimeout: number;
  stall: number;
  idle: boolean;
  pinServer: number | null;
  pinLoad: number | null;
  progress: boolean;
}

function checkInt(
  name: string,
  value: number,
  range: { min: number; max: number },
): number {
  if (!Number.isInteger(value) || value < range.min || value > range.max) {
    throw new Error(
      `${name} is ${value}; expected an integer from ${range.min} to ${range.max}`,
    );
  }
  return value;
}

function checkSeconds(name: string, value: number, min: number): number {
  if (!Number.isFinite(value) || value < min || value > 86_400) {
    throw new Error(
      `${name} is ${value} s; expected seconds from ${min} to 86400`,
    );
  }
  return value;
}

/**
 * Fills in defaults and checks every option; throws an Error saying which
 * option was wrong and what was expected.
 *
 * @example
 * ```ts
 * import { resolveLoadOptions } from "./load_options.ts";
 * resolveLoadOptions({ clients: 10 }).senders; // 1
 * ```
 */
export function resolveLoadOptions(options: LoadOptions): ResolvedLoadOptions {
  const clients = checkInt("--clients", options.clients ?? DEFAULT_CLIENTS, {
    min: 1,
    max: 1_000_000,
  });
  const idle = options.idle ?? false;
  const senders = idle ? 0 : checkInt(
    "--senders",
    options.senders ?? DEFAULT_SENDERS,
    { min: 1, max: clients },
  );
  const rate = options.rate ?? 0;
  if (!Number.isFinite(rate) || rate < 0) {
    throw new Error(`--rate is ${rate}; expected deliveries/s > 0`);
  }
  const cpu = { min: 0, max: 4095 };
  return {
    url: normalizeUrl(options.url ?? DEFAULT_URL),
    server: options.server ?? null,
    clients,
    senders,
    size: checkInt("--size", options.size ?? DEFAULT_SIZE, {
      min: MIN_SIZE,
      max: MAX_SIZE,
    }),
    window: checkInt("--window", options.window ?? DEFAULT_WINDOW, {
      min: 1,
      max: 1_000_000,
    }),
    rate,
    duration: checkSeconds(
      "--duration",
      options.duration ?? DEFAULT_DURATION_S,
      0.1,
    ),
    warmup: checkSeconds("--warmup", options.warmup ?? DEFAULT_WARMUP_S, 0),
    drain: checkSeconds("--drain", options.drain ?? DEFAULT_DRAIN_S, 0),
    connectConcurrency: checkInt(
      "--connect-concurrency",
      options.connectConcurrency ?? DEFAULT_CONNECT_CONCURRENCY,
      { min: 1, max: 100_000 },
    ),
    connectTimeout: checkSeconds(
      "--connect-timeout",
      options.connectTimeout ?? DEFAULT_CONNECT_TIMEOUT_S,
      0.1,
    ),
    stall: checkInt("--stall", options.stall ?? 0, { min: 0, max: 100_000 }),
    idle,
    pinServer: options.pinServer === undefined
      ? null
      : checkInt("--pin-server", options.pinServer, cpu),
    pinLoad: options.pinLoad === undefined
      ? null
      : checkInt("--pin-load", options.pinLoad, cpu),
    progress: options.progress ?? false,
  };
}

/**
 * The load tool's options: defaults and limits (some shared with the soak
 * tool), the command line and its help, and the checks that turn options
 * into a run's settings.
 *
 * @module
 */

import {
  checkFlag,
  type Flag,
  type FlagValue,
  helpRows,
  readFlags,
  UsageError,
} from "../flags.ts";
import { readRepeated } from "./repeated_flag.ts";

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

/** Smallest --size: the header "<run>:<s>:<seq>:<µs>:" needs up to ~40. */
export const MIN_SIZE = 40;

/** Largest --size: hubchat's text limit is 2000 characters. */
export const MAX_SIZE = 2000;

/** Options of {@linkcode runLoad}; every field has a default. */
export interface LoadOptions {
  /**
   * WebSocket URL of the chat endpoint (`ws://host:port/ws`); an `http://`
   * URL or one without a path gets `/ws`. Several (a list, or one string
   * with commas) are the nodes of one cluster: client i connects to URL
   * i mod n, so a message sent through one node must reach clients of the
   * others. Ignored when `server` is set. Default `ws://127.0.0.1:8080/ws`.
   */
  url?: string | readonly string[];
  /**
   * A command that starts a server, like `deno run -A main.ts`. If it holds
   * `{port}` (and optionally `{host}`) those are replaced by `0` and
   * `127.0.0.1`; otherwise `--port 0 --host 127.0.0.1` is appended. The
   * first `http://host:port/` printed on stdout is the server's address. A
   * hubchat command also gets `--rate 0`, `--max-connections-per-ip 0` and
   * a temporary `--data`, each unless it sets it (see server_process.ts's
   * `serverArgv`).
   */
  server?: string;
  /** Add only the port and host to `server`, even to a hubchat command. */
  serverAsIs?: boolean;
  /**
   * With `server`: start this many copies of it, each on its own free port
   * with its own temporary history, and spread the clients over them as
   * over several `url`s. Default 1.
   */
  nodes?: number;
  /**
   * Processes of this machine whose CPU (and memory) to report beside any
   * started server's, each apart: nodes started some other way, their
   * Redis.
   */
  serverPid?: number | readonly number[];
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
    throw new UsageError(
      `--url "${raw}" is not a URL; expected like ws://127.0.0.1:8080/ws`,
    );
  }
  if (url.protocol === "http:") url.protocol = "ws:";
  else if (url.protocol === "https:") url.protocol = "wss:";
  if (url.protocol !== "ws:" && url.protocol !== "wss:") {
    throw new UsageError(
      `--url "${raw}" has scheme ${url.protocol}; expected ws:, wss:, http: or https:`,
    );
  }
  if (url.pathname === "" || url.pathname === "/") url.pathname = "/ws";
  return url.href;
}

/** Seconds any phase of a run may last at the most: a day. */
const MAX_PHASE_S = 86_400;

/** CPUs taskset can name: Linux's default NR_CPUS limit. */
const MAX_CPU = 4095;

/** The largest pid Linux hands out (2^31 - 1). */
const MAX_PID = 2 ** 31 - 1;

/**
 * The most nodes one tool starts: each is a server process on this
 * machine, and past a few dozen they only fight over its CPUs.
 */
const MAX_NODES = 64;

/**
 * The load tool's flags, by the option each sets (its name in camelCase):
 * kinds and ranges for the command line and for
 * {@linkcode resolveLoadOptions}, text for `--help`. The soak tool and
 * bench/compare.ts take some of them as they are, or with their own
 * default and help.
 *
 * @example
 * ```ts
 * import { LOAD_FLAG } from "./load_options.ts";
 * const duration = { ...LOAD_FLAG.duration, default: 5 };
 * duration.max; // 86400
 * ```
 */
export const LOAD_FLAG = {
  url: {
    name: "url",
    kind: "text",
    value: "URL",
    default: DEFAULT_URL,
    help: "chat endpoint; repeat it, or give a comma-separated list, for " +
      "the nodes of a cluster: client i connects to URL i mod n",
  },
  server: {
    name: "server",
    kind: "text",
    value: '"CMD"',
    help: "start CMD, read its http://host:port/ from stdout, stop it at " +
      "the end (SIGTERM, SIGKILL after 5 s). CMD gets " +
      '"--port 0 --host 127.0.0.1" appended, unless it holds {port} (and ' +
      "{host}) placeholders, which are filled in instead. A hubchat " +
      "command (one that runs main.ts, or deno task start) also gets " +
      '"--rate 0 --max-connections-per-ip 0" and "--data" in a temporary ' +
      "directory removed at the end, so the test is not throttled and never " +
      "writes into your history; each only if CMD does not set that flag " +
      "(or its variable, as in env HUBCHAT_DATA=... deno run ...) itself. " +
      "HUBCHAT_* variables in this tool's environment are overridden by " +
      "the flags added.",
  },
  serverAsIs: {
    name: "server-as-is",
    kind: "switch",
    help: "add only --port/--host to CMD, even if it runs a main.ts " +
      "(for a server other than hubchat's)",
  },
  nodes: {
    name: "nodes",
    kind: "whole",
    min: 1,
    max: MAX_NODES,
    value: "N",
    default: 1,
    help: "with --server: start N copies of CMD, each on its own free port " +
      "with its own temporary history, clients spread over them as over " +
      "several --url",
  },
  serverPid: {
    name: "server-pid",
    kind: "whole",
    min: 1,
    max: MAX_PID,
    value: "PID",
    help: "also report the CPU per delivery and memory of process PID " +
      "(from /proc), apart from the others; repeat it for each node " +
      "started some other way, and for their redis-server",
  },
  clients: {
    name: "clients",
    kind: "whole",
    min: 1,
    max: 1_000_000,
    value: "N",
    default: DEFAULT_CLIENTS,
    help: "WebSocket clients",
  },
  senders: {
    name: "senders",
    kind: "whole",
    min: 1,
    max: 1_000_000,
    value: "S",
    default: DEFAULT_SENDERS,
    help: "clients that also send, at most --clients",
  },
  size: {
    name: "size",
    kind: "whole",
    min: MIN_SIZE,
    max: MAX_SIZE,
    value: "BYTES",
    default: DEFAULT_SIZE,
    help: `chat text size, ${MIN_SIZE}-${MAX_SIZE}`,
  },
  window: {
    name: "window",
    kind: "whole",
    min: 1,
    max: 1_000_000,
    value: "W",
    default: DEFAULT_WINDOW,
    help: "closed loop: W messages in flight per sender",
  },
  rate: {
    name: "rate",
    kind: "number",
    min: 0,
    unit: "deliveries/s",
    value: "R",
    help: "open loop: R deliveries/s offered, i.e. R/clients messages/s, " +
      "evenly spread, late sends skipped",
  },
  duration: {
    name: "duration",
    kind: "number",
    min: 0.1,
    max: MAX_PHASE_S,
    unit: "seconds",
    value: "SEC",
    default: DEFAULT_DURATION_S,
    help: "measured seconds",
  },
  warmup: {
    name: "warmup",
    kind: "number",
    min: 0,
    max: MAX_PHASE_S,
    unit: "seconds",
    value: "SEC",
    default: DEFAULT_WARMUP_S,
    help: "unmeasured seconds first",
  },
  drain: {
    name: "drain",
    kind: "number",
    min: 0,
    max: MAX_PHASE_S,
    unit: "seconds",
    value: "SEC",
    default: DEFAULT_DRAIN_S,
    help: "wait for in-flight messages",
  },
  connectConcurrency: {
    name: "connect-concurrency",
    kind: "whole",
    min: 1,
    max: 100_000,
    value: "N",
    default: DEFAULT_CONNECT_CONCURRENCY,
    help: "handshakes at once",
  },
  connectTimeout: {
    name: "connect-timeout",
    kind: "number",
    min: 0.1,
    max: MAX_PHASE_S,
    unit: "seconds",
    value: "SEC",
    default: DEFAULT_CONNECT_TIMEOUT_S,
    help: "per handshake",
  },
  stall: {
    name: "stall",
    kind: "whole",
    min: 0,
    max: 100_000,
    value: "N",
    help: "N more clients (raw TCP) that connect, then never read: the " +
      'slow-consumer experiment; their fate is reported under "stall"',
  },
  idle: {
    name: "idle",
    kind: "switch",
    help: "connect, then hold the clients for --duration without sending; " +
      "with --server, reports server RSS before/after and bytes per connection",
  },
  pinServer: {
    name: "pin-server",
    kind: "whole",
    min: 0,
    max: MAX_CPU,
    value: "CPU",
    help: "run the server under taskset -c CPU",
  },
  pinLoad: {
    name: "pin-load",
    kind: "whole",
    min: 0,
    max: MAX_CPU,
    value: "CPU",
    help: "pin this process and all its threads to CPU (taskset -a)",
  },
  jsonOnly: {
    name: "json-only",
    kind: "switch",
    help: "no progress lines on stderr",
  },
} as const satisfies Record<string, Flag>;

/** The command line's flags, in the order `--help` lists them. */
const LOAD_FLAGS: readonly Flag[] = Object.values(LOAD_FLAG);

/** What `deno task load --help` prints. */
export const LOAD_HELP = `hubchat load tool

Usage: deno task load [options]       (or: deno run -A tools/load.ts [options])

Target (one of):
${
  helpRows([
    LOAD_FLAG.url,
    LOAD_FLAG.server,
    LOAD_FLAG.serverAsIs,
    LOAD_FLAG.nodes,
  ])
}

Load:
${
  helpRows([
    LOAD_FLAG.clients,
    LOAD_FLAG.senders,
    LOAD_FLAG.size,
    LOAD_FLAG.window,
    LOAD_FLAG.rate,
    LOAD_FLAG.duration,
    LOAD_FLAG.warmup,
    LOAD_FLAG.drain,
    LOAD_FLAG.connectConcurrency,
    LOAD_FLAG.connectTimeout,
    LOAD_FLAG.stall,
    LOAD_FLAG.idle,
  ])
}

Measurement:
${
  helpRows([
    LOAD_FLAG.serverPid,
    LOAD_FLAG.pinServer,
    LOAD_FLAG.pinLoad,
    LOAD_FLAG.jsonOnly,
  ], { withHelp: true })
}

Output: a progress line on stderr about once a second (clients connected,
and refused=N with the HTTP statuses, failed=N, when some did not), then one
JSON summary on stdout (with --server, also the server's CPU from
/proc/PID/stat and its memory, summed over --nodes; under "processes", each
started node and each --server-pid apart), then the verdict on stderr:
"PASS: ..." or "FAIL:" and why. The run always ends within connect cap + warmup + duration + drain
(+ a connect timeout per batch of --stall clients, and the server start/stop
caps).

Exit status: 0 PASS; 1 FAIL (a client did not connect, refused with 429 or
503 or otherwise; a connected client was closed by the server; the server
sent an error; a message was lost, duplicated or reordered; the run
aborted) or the server did not start; 2 bad options; 3 hard time cap.

Many connections: each client is a file descriptor here and one in the
server. For thousands of clients raise the limit in the same shell first:
ulimit -n "$(ulimit -Hn)" (as far as the hard limit allows; "ulimit -n 65536"
fails where that is lower).
`;

/**
 * Parses the CLI's arguments; throws a {@linkcode UsageError} naming the
 * bad flag.
 *
 * `--url` and `--server-pid` may be repeated, or given a comma-separated
 * list; they come back as lists.
 *
 * @example
 * ```ts
 * import { parseLoadArgs } from "./load_options.ts";
 * parseLoadArgs(["--clients", "10", "--rate=5000"]).options;
 * // { clients: 10, rate: 5000 }
 * parseLoadArgs(["--url", "ws://a:1/ws,ws://b:2/ws", "--server-pid", "42"]).options;
 * // { url: ["ws://a:1/ws", "ws://b:2/ws"], serverPid: [42] }
 * ```
 */
export function parseLoadArgs(args: readonly string[]): LoadArgs {
  const { help, values } = readToolFlags(LOAD_FLAGS, args);
  const { jsonOnly, ...options } = values;
  return { help, jsonOnly: jsonOnly === true, options: options as LoadOptions };
}

/**
 * Reads a tool's command line against `flags` (flags.ts's readFlags), with
 * `--url` and `--server-pid` taken out first: each may be repeated or
 * given a comma-separated list, and comes back as a list (`url`,
 * `serverPid`) when given. For the load and soak tools, whose tables share
 * those two flags.
 *
 * @example
 * ```ts
 * import { LOAD_FLAG, readToolFlags } from "./load_options.ts";
 * readToolFlags([LOAD_FLAG.clients], ["--url", "ws://a/ws", "--url", "ws://b/ws"]);
 * // { help: false, values: { url: ["ws://a/ws", "ws://b/ws"] } }
 * ```
 */
export function readToolFlags(
  flags: readonly Flag[],
  args: readonly string[],
): { help: boolean; values: Record<string, FlagValue | FlagValue[]> } {
  const urls = readRepeated(LOAD_FLAG.url, args);
  const pids = readRepeated(LOAD_FLAG.serverPid, urls.rest);
  const { help, values } = readFlags(flags, pids.rest);
  return {
    help,
    values: {
      ...values,
      ...(urls.values.length > 0 ? { url: urls.values } : {}),
      ...(pids.values.length > 0 ? { serverPid: pids.values } : {}),
    },
  };
}

/**
 * The target URLs of `url` (a string, perhaps comma-separated, or a list
 * of them), each normalized (see {@linkcode normalizeUrl}); the default
 * when there is none.
 *
 * @example
 * ```ts
 * import { normalizeUrls } from "./load_options.ts";
 * normalizeUrls("http://a:1/,ws://b:2/ws"); // ["ws://a:1/ws", "ws://b:2/ws"]
 * normalizeUrls(undefined); // ["ws://127.0.0.1:8080/ws"]
 * ```
 */
export function normalizeUrls(
  url: string | readonly string[] | undefined,
): string[] {
  const given = url === undefined ? [DEFAULT_URL] : [url].flat();
  return given.flatMap((entry) => entry.split(",")).map((entry) =>
    normalizeUrl(entry.trim())
  );
}

/**
 * The pids of `serverPid` (one or a list), each checked; [] when none.
 *
 * @example
 * ```ts
 * import { serverPids } from "./load_options.ts";
 * serverPids(42); // [42]
 * ```
 */
export function serverPids(
  serverPid: number | readonly number[] | undefined,
): number[] {
  if (serverPid === undefined) return [];
  return [serverPid].flat().map((pid) => checkFlag(LOAD_FLAG.serverPid, pid));
}

/** {@linkcode LoadOptions} with defaults filled in and checked. */
export interface ResolvedLoadOptions {
  /**
   * Target URLs (ws/wss), joined by commas as `--url` takes them: one URL
   * is the URL itself. The default when `server` is set.
   */
  url: string;
  /** Target URLs (ws/wss), one per node; client i uses `urls[i % n]`. */
  urls: string[];
  /** The server command as given, or null. */
  server: string | null;
  /** Add only the port and host to `server`. */
  serverAsIs: boolean;
  /** Copies of `server` to start (1 without `server`). */
  nodes: number;
  /** Other processes to report CPU and memory of, each apart. */
  serverPids: number[];
  /** Receiving clients. */
  clients: number;
  /** Sending clients (the first `senders`); 0 when idle. */
  senders: number;
  /** Chat text bytes. */
  size: number;
  /** Closed loop: messages in flight per sender. */
  window: number;
  /** Open loop: offered deliveries/s; 0 for the closed loop. */
  rate: number;
  /** Measured seconds. */
  duration: number;
  /** Seconds of sending before measuring. */
  warmup: number;
  /** Seconds to wait for in-flight messages. */
  drain: number;
  /** Handshakes at once. */
  connectConcurrency: number;
  /** Seconds per handshake, up to the welcome. */
  connectTimeout: number;
  /** Stalled clients. */
  stall: number;
  /** Hold the clients without sending. */
  idle: boolean;
  /** CPU to pin the started server to, or null. */
  pinServer: number | null;
  /** CPU to pin this process to, or null. */
  pinLoad: number | null;
  /** Progress lines on stderr. */
  progress: boolean;
}

/**
 * Fills in defaults and checks every option; throws a
 * {@linkcode UsageError} saying which option was wrong and what was
 * expected.
 *
 * @example
 * ```ts
 * import { resolveLoadOptions } from "./load_options.ts";
 * resolveLoadOptions({ clients: 10 }).senders; // 1
 * ```
 */
export function resolveLoadOptions(options: LoadOptions): ResolvedLoadOptions {
  const clients = checkFlag(
    LOAD_FLAG.clients,
    options.clients ?? DEFAULT_CLIENTS,
  );
  const idle = options.idle ?? false;
  const senders = idle
    ? 0
    : checkFlag(LOAD_FLAG.senders, options.senders ?? DEFAULT_SENDERS, {
      max: clients,
    });
  const urls = normalizeUrls(options.url);
  const server = options.server ?? null;
  const nodes = checkFlag(LOAD_FLAG.nodes, options.nodes ?? 1);
  if (nodes > 1 && server === null) {
    throw new UsageError(
      `--nodes is ${nodes} without --server; expected --server CMD to ` +
        "start the nodes (or one --url per node started some other way)",
    );
  }
  return {
    url: urls.join(","),
    urls,
    server,
    serverAsIs: options.serverAsIs ?? false,
    nodes,
    serverPids: serverPids(options.serverPid),
    clients,
    senders,
    size: checkFlag(LOAD_FLAG.size, options.size ?? DEFAULT_SIZE),
    window: checkFlag(LOAD_FLAG.window, options.window ?? DEFAULT_WINDOW),
    rate: checkFlag(LOAD_FLAG.rate, options.rate ?? 0),
    duration: checkFlag(
      LOAD_FLAG.duration,
      options.duration ?? DEFAULT_DURATION_S,
    ),
    warmup: checkFlag(LOAD_FLAG.warmup, options.warmup ?? DEFAULT_WARMUP_S),
    drain: checkFlag(LOAD_FLAG.drain, options.drain ?? DEFAULT_DRAIN_S),
    connectConcurrency: checkFlag(
      LOAD_FLAG.connectConcurrency,
      options.connectConcurrency ?? DEFAULT_CONNECT_CONCURRENCY,
    ),
    connectTimeout: checkFlag(
      LOAD_FLAG.connectTimeout,
      options.connectTimeout ?? DEFAULT_CONNECT_TIMEOUT_S,
    ),
    stall: checkFlag(LOAD_FLAG.stall, options.stall ?? 0),
    idle,
    pinServer: options.pinServer === undefined
      ? null
      : checkFlag(LOAD_FLAG.pinServer, options.pinServer),
    pinLoad: options.pinLoad === undefined
      ? null
      : checkFlag(LOAD_FLAG.pinLoad, options.pinLoad),
    progress: options.progress ?? false,
  };
}

/**
 * The soak tool's options: defaults and limits, the command line and its
 * help, and the checks that turn options into a run's settings.
 *
 * @module
 */

import type { IntervalReport } from "./soak_report.ts";
import { checkFlag, type Flag, helpRows, UsageError } from "../flags.ts";
import { type ChaosEvent, parseChaos } from "./chaos.ts";
import {
  DEFAULT_SIZE,
  LOAD_FLAG,
  normalizeUrls,
  readToolFlags,
  serverPids,
} from "./load_options.ts";

/** 100 clients: a busy room that any laptop holds. */
const DEFAULT_CLIENTS = 100;

/** 1 minute: a quick soak; real ones pass --minutes 30 or more. */
const DEFAULT_MINUTES = 1;

/** 1000 deliveries/s: steady traffic, far below hubchat's ceiling. */
const DEFAULT_RATE = 1000;

/** 10 s per report: 6 lines a minute, enough points for an RSS trend. */
const DEFAULT_INTERVAL_S = 10;

/**
 * Up to 10 senders: several interleaved streams exercise ordering across
 * senders, while the per-receiver tracking stays O(clients × senders) small.
 */
const DEFAULT_SENDERS = 10;

/** A week: a soak longer than that is a deployment. */
const MAX_MINUTES = 7 * 24 * 60;

/** Options of {@linkcode runSoak}; every field has a default. */
export interface SoakOptions {
  /**
   * WebSocket URL of the chat endpoint; `http://` works too, and an empty
   * path becomes `/ws`. Several (a list, or one string with commas) are
   * the nodes of one cluster: client i connects (and reconnects) to URL
   * i mod n. Ignored when `server` is set. Default `ws://127.0.0.1:8080/ws`.
   */
  url?: string | readonly string[];
  /**
   * A command that starts the server, like `deno run -A main.ts`; it gets
   * `--port 0 --host 127.0.0.1` (or fills `{port}`/`{host}`) and, when it
   * starts hubchat and `serverAsIs` is not set, `--rate 0`,
   * `--max-connections-per-ip 0` and a temporary `--data`, each unless it
   * sets it itself (see server_process.ts's `serverArgv`).
   */
  server?: string;
  /** Add only the port and host to `server`, even to a hubchat command. */
  serverAsIs?: boolean;
  /**
   * Read server RSS from `/proc/PID/status` of this pid (with `url`, for a
   * server started some other way on this machine); of several, the sum.
   */
  serverPid?: number | readonly number[];
  /**
   * With `server`: start this many copies of it, each on its own free port
   * with its own temporary history, the clients spread over them. Default
   * 1.
   */
  nodes?: number;
  /**
   * Start a redis-server of the tool's own (a temporary directory, a free
   * port, appendonly with a sync on every write) and give every node its
   * URL: `--redis URL` appended to a hubchat command, or filled in where
   * the command holds `{redis}`. Needs `server`.
   */
  redisServer?: boolean;
  /**
   * Kill and restart nodes or the Redis on a schedule (see chaos.ts):
   * `kill-node:1@30s,restart-node:1@35s,kill-redis@60s,restart-redis@65s`.
   */
  chaos?: string;
  /** WebSocket clients held open. Default 100. */
  clients?: number;
  /** How many of the clients also send (they never churn). Default ≤ 10. */
  senders?: number;
  /** Run length in minutes (fractions allowed). Default 1. */
  minutes?: number;
  /**
   * Offered deliveries per second (open loop): `rate / clients` messages a
   * second, spread evenly over the senders. Default 1000.
   */
  rate?: number;
  /** Seconds per report line. Default 10. */
  interval?: number;
  /** Chat text size in bytes (ASCII), 40 to 2000. Default 64. */
  size?: number;
  /**
   * Clients that disconnect and reconnect (under a new name) once per
   * interval each, at a random moment: join/leave paths under load.
   */
  churn?: number;
  /** Aborting it ends the run early (SIGINT); the summary says so. */
  signal?: AbortSignal;
  /** Called once the clients are connected, before the first interval. */
  onStart?: (info: SoakStart) => void;
  /** Called with each interval's report as it is cut. */
  onInterval?: (report: IntervalReport) => void;
  /** Called after each chaos event, with what happened. */
  onChaos?: (record: ChaosRecord) => void;
}

/** What one chaos event did. */
export interface ChaosRecord {
  /** Seconds since sending started, when it began. */
  at_s: number;
  /** The event, as `kill-node:1@30s`. */
  event: string;
  /** Whether it was done (a restart that did not come up is not). */
  ok: boolean;
  /** Why not, or null. */
  error: string | null;
  /** Seconds it took (a restart: until the process was up again). */
  took_s: number;
}

/** {@linkcode SoakOptions} with defaults filled in and checked. */
export interface ResolvedSoakOptions {
  /**
   * Target URLs (ws/wss) joined by commas, as `--url` takes them (one URL
   * is the URL itself); the default when `server` is set.
   */
  url: string;
  /** Target URLs, one per node: client i uses `urls[i % n]`. */
  urls: string[];
  /** The server command as given, or null. */
  server: string | null;
  /** Run the server command unchanged. */
  serverAsIs: boolean;
  /** Pid to read RSS from (the first of `serverPids`), or null. */
  serverPid: number | null;
  /** Pids to read RSS from, summed; [] for none. */
  serverPids: number[];
  /** Copies of `server` to start (1 without `server`). */
  nodes: number;
  /** Start a Redis of the tool's own for the nodes. */
  redisServer: boolean;
  /** The chaos schedule, in time order; [] for none. */
  chaos: ChaosEvent[];
  /** Clients. */
  clients: number;
  /** Senders (the first `senders` clients). */
  senders: number;
  /** Minutes. */
  minutes: number;
  /** Offered deliveries/s. */
  rate: number;
  /** Seconds per report. */
  interval: number;
  /** Chat text bytes. */
  size: number;
  /** Churning clients (the last `churn` clients). */
  churn: number;
}

/** What the run looks like once its clients are connected. */
export interface SoakStart {
  /** Prefix of every username and message of this run. */
  run_id: string;
  /** The URL the clients use; with several, joined by commas. */
  url: string;
  /** The URLs the clients use, one per node. */
  urls: string[];
  /** The resolved options. */
  config: ResolvedSoakOptions;
  /** Clients that got their welcome. */
  clients_connected: number;
  /** Seconds the connect phase took. */
  connect_seconds: number;
  /** Why clients failed to connect, by message (`HTTP 429 ...`, say). */
  connect_errors: Record<string, number>;
  /** Server pid (started by the tool, or `serverPid`), or null. */
  server_pid: number | null;
  /** Every pid RSS is read from (the nodes, or `serverPid`s). */
  server_pids: number[];
  /** The Redis the tool started: its URL and pid; or null. */
  redis: { url: string; pid: number | null } | null;
  /** Server command line as run, or null. */
  server_process: string | null;
  /** Server RSS before the clients connected, bytes, or null. */
  rss_before_clients_bytes: number | null;
  /** Where RSS comes from: `/proc`, the server's `/metrics`, or nowhere. */
  rss_source: "proc" | "metrics" | null;
  /** The `/metrics` URL scraped each interval, or null if unreachable. */
  metrics_url: string | null;
}

/** What {@linkcode parseSoakArgs} makes of a command line. */
export interface SoakArgs {
  /** `--help` was given. */
  help: boolean;
  /** `--json`: JSON lines instead of text lines. */
  json: boolean;
  /** The options for {@linkcode runSoak}. */
  options: SoakOptions;
}

/** The most deliveries/s a soak offers: far beyond any one server. */
const MAX_RATE = 1e9;

/** The longest report interval: an hour. */
const MAX_INTERVAL_S = 3600;

/**
 * The soak tool's flags, by the option each sets (its name in camelCase):
 * kinds and ranges for the command line and for
 * {@linkcode resolveSoakOptions}, text for `--help`.
 */
const FLAG = {
  url: {
    ...LOAD_FLAG.url,
    help: 'chat endpoint; run hubchat for it with "--rate 0 ' +
      '--max-connections-per-ip 0" (its defaults, 10 msg/s per client and ' +
      "20 connections per address, throttle and refuse a soak from one " +
      "machine); repeat it, or give a comma-separated list, for the nodes " +
      "of a cluster: client i connects (and reconnects) to URL i mod n",
  },
  server: LOAD_FLAG.server,
  serverAsIs: LOAD_FLAG.serverAsIs,
  serverPid: {
    ...LOAD_FLAG.serverPid,
    help: "with --url: read server RSS from /proc/PID/status; repeat it " +
      "for several nodes (their sum)",
  },
  nodes: LOAD_FLAG.nodes,
  redisServer: {
    name: "redis-server",
    kind: "switch",
    help: "with --server: start a redis-server of this tool's own (free " +
      "port, temporary directory, appendonly synced on every write) and " +
      'give each node its URL: "--redis URL" appended to a hubchat ' +
      "command, or filled in where CMD holds {redis} (env " +
      "REDIS_SERVER_PATH names the binary)",
  },
  chaos: {
    name: "chaos",
    kind: "text",
    value: "EVENTS",
    help: "kill and restart what the tool started, on a schedule: " +
      "ACTION[:NODE]@TIME,... with kill-node, restart-node (same port, " +
      "same history; SIGTERM first if it runs), kill-redis, " +
      "restart-redis; TIME in seconds since sending started (30, 30s, " +
      "1.5m). kill is SIGKILL. Example: kill-node:1@30s,restart-node:1@35s",
  },
  clients: { ...LOAD_FLAG.clients, default: DEFAULT_CLIENTS },
  minutes: {
    name: "minutes",
    kind: "number",
    min: 0.001,
    max: MAX_MINUTES,
    unit: "minutes",
    value: "M",
    default: DEFAULT_MINUTES,
    help: "run length, fractions allowed",
  },
  rate: {
    name: "rate",
    kind: "number",
    min: 0.001,
    max: MAX_RATE,
    unit: "deliveries/s",
    value: "R",
    default: DEFAULT_RATE,
    help: "deliveries/s offered, open loop: R/N messages/s spread over the " +
      "senders, late sends skipped",
  },
  interval: {
    name: "interval",
    kind: "number",
    min: 0.1,
    max: MAX_INTERVAL_S,
    unit: "seconds",
    value: "SEC",
    default: DEFAULT_INTERVAL_S,
    help: "seconds per report line",
  },
  size: LOAD_FLAG.size,
  senders: {
    ...LOAD_FLAG.senders,
    default: `min(${DEFAULT_SENDERS}, N-K)`,
    help: "clients that send, at most N-K; they never churn",
  },
  churn: {
    name: "churn",
    kind: "whole",
    min: 0,
    max: 1_000_000,
    value: "K",
    default: 0,
    help: "the last K clients (fewer than N) each disconnect and reconnect " +
      "(under a new name) once per interval, at a random moment: " +
      "join/leave paths under load",
  },
  json: {
    name: "json",
    kind: "switch",
    help: 'JSON lines instead: {"type":"start",...}, one ' +
      '{"type":"interval",...} each interval, {"type":"chaos",...} after ' +
      'each chaos event, then {"type":"summary",...}',
  },
} as const satisfies Record<string, Flag>;

/** The command line's flags, in the order `--help` lists them. */
const SOAK_FLAGS: readonly Flag[] = Object.values(FLAG);

/**
 * Fills in defaults and checks every option; throws a UsageError (see
 * flags.ts) naming the option and what was expected.
 *
 * @example
 * ```ts
 * import { resolveSoakOptions } from "./soak_options.ts";
 * resolveSoakOptions({ clients: 20, churn: 2 }).senders; // 10
 * ```
 */
export function resolveSoakOptions(options: SoakOptions): ResolvedSoakOptions {
  const clients = checkFlag(FLAG.clients, options.clients ?? DEFAULT_CLIENTS);
  const churn = checkFlag(FLAG.churn, options.churn ?? 0, {
    max: clients - 1,
  });
  const senders = checkFlag(
    FLAG.senders,
    options.senders ?? Math.min(DEFAULT_SENDERS, clients - churn),
    { max: clients - churn },
  );
  const pids = serverPids(options.serverPid);
  const urls = normalizeUrls(options.url);
  const server = options.server ?? null;
  const nodes = checkFlag(FLAG.nodes, options.nodes ?? 1);
  const redisServer = options.redisServer ?? false;
  for (
    const [given, flag] of [
      [nodes > 1, `--nodes ${nodes}`],
      [redisServer, "--redis-server"],
    ] as const
  ) {
    if (given && server === null) {
      throw new UsageError(
        `${flag} needs --server; expected --server CMD for the tool to ` +
          "start the nodes",
      );
    }
  }
  const minutes = checkFlag(FLAG.minutes, options.minutes ?? DEFAULT_MINUTES);
  const chaos = options.chaos === undefined ? [] : parseChaos(options.chaos, {
    nodes: server === null ? 0 : nodes,
    redis: redisServer,
    seconds: minutes * 60,
  });
  return {
    url: urls.join(","),
    urls,
    server,
    serverAsIs: options.serverAsIs ?? false,
    serverPid: pids[0] ?? null,
    serverPids: pids,
    nodes,
    redisServer,
    chaos,
    clients,
    senders,
    minutes,
    rate: checkFlag(FLAG.rate, options.rate ?? DEFAULT_RATE),
    interval: checkFlag(FLAG.interval, options.interval ?? DEFAULT_INTERVAL_S),
    size: checkFlag(FLAG.size, options.size ?? DEFAULT_SIZE),
    churn,
  };
}

/**
 * Parses the CLI's arguments (`--flag value` or `--flag=value`); throws a
 * UsageError (see flags.ts) naming the bad flag.
 *
 * `--url` and `--server-pid` may be repeated, or given a comma-separated
 * list; they come back as lists.
 *
 * @example
 * ```ts
 * import { parseSoakArgs } from "./soak_options.ts";
 * parseSoakArgs(["--clients", "200", "--minutes=2", "--json"]);
 * // { help: false, json: true, options: { clients: 200, minutes: 2 } }
 * ```
 */
export function parseSoakArgs(args: readonly string[]): SoakArgs {
  const { help, values } = readToolFlags(SOAK_FLAGS, args);
  const { json, ...options } = values;
  return { help, json: json === true, options: options as SoakOptions };
}

/** What `deno task soak --help` prints. */
export const SOAK_HELP =
  `hubchat soak tool: many clients, many minutes, one line per interval

Usage: deno task soak [options]       (or: deno run -A tools/soak.ts [options])

Target (one of):
${
    helpRows([
      FLAG.url,
      FLAG.server,
      FLAG.serverAsIs,
      FLAG.serverPid,
      FLAG.nodes,
    ])
  }

Cluster (with --server):
${helpRows([FLAG.redisServer, FLAG.chaos])}

Load:
${
    helpRows([
      FLAG.clients,
      FLAG.minutes,
      FLAG.rate,
      FLAG.interval,
      FLAG.size,
      FLAG.senders,
      FLAG.churn,
    ])
  }

Output:
${helpRows([FLAG.json], { withHelp: true })}

Each interval line: elapsed time, delivered/s and p50/p99 latency of the
interval; lost/dup/ooo so far; evicted (clients the server closed, by
close code: 4008 slow consumer, 1008 rate limit, 1001 going away, none =
no close frame; they reconnect after 1 s); srv_evicted
(hubchat_evictions_total by cause from /metrics, when it answers); skipped
(sends this tool was too late for: a delivered/s shortfall that is not the
server's); clients connected; reconnects; server RSS (VmRSS from
/proc/PID/status with --server or --server-pid, else
process_resident_memory_bytes from /metrics if the server exports it). Then
a JSON summary: totals, latency percentiles, the RSS series with its max,
growth (last interval vs first) and slope per minute. Last, on stderr, the
verdict: "PASS: ..." or "FAIL:" and why.

Loss is judged against what reached anyone: a message some client got was
accepted, and every client connected when it was sent must get it once,
in order (lost, dup, ooo). A message no client got was refused (an error
reply, counted by code), or was in flight on a connection the server
dropped (a killed node): neither is lost. One sent on a connection that
stayed up, neither delivered nor refused, is lost. With --chaos, a line
says what each event did; the summary lists them, the nodes' restarts and
exit codes, and the Redis the tool started.

Ctrl-C stops early and prints the summary so far; a second Ctrl-C exits at
once. Exit status: 0 PASS; 1 FAIL (cut short by Ctrl-C, a client did not
connect at the start, a message lost, duplicated or reordered, a chaos
event that failed, or aborted) or the server did not start; 2 bad options;
3 hard time cap; 130 second Ctrl-C. Many clients: raise the limit in the
same shell first, ulimit -n "$(ulimit -Hn)".
`;

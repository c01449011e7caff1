/**
 * The soak tool's options: defaults and limits, the command line and its
 * help, the checks that turn options into a run's settings, and the flags a
 * started hubchat gets so that it does not throttle the soak.
 *
 * @module
 */

import type { IntervalReport } from "./soak_report.ts";
import {
  DEFAULT_SIZE,
  DEFAULT_URL,
  MAX_SIZE,
  MIN_SIZE,
  normalizeUrl,
  parseFlags,
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

/** Flags appended to a started hubchat: the soak floods from one address. */
const UNLIMITED_SERVER_FLAGS = ["--rate", "0", "--max-connections-per-ip", "0"];

/** Options of {@linkcode runSoak}; every field has a default. */
export interface SoakOptions {
  /**
   * WebSocket URL of the chat endpoint; `http://` works too, and an empty
   * path becomes `/ws`. Ignored when `server` is set. Default
   * `ws://127.0.0.1:8080/ws`.
   */
  url?: string;
  /**
   * A command that starts the server, like `deno run -A main.ts`; it gets
   * `--port 0 --host 127.0.0.1` (or fills `{port}`/`{host}`) and, unless
   * `serverAsIs`, `--rate 0 --max-connections-per-ip 0` for any of those two
   * flags it does not set itself.
   */
  server?: string;
  /** Run `server` exactly as given (for servers other than hubchat). */
  serverAsIs?: boolean;
  /**
   * Read server RSS from `/proc/PID/status` of this pid (with `url`, for a
   * server started some other way on this machine).
   */
  serverPid?: number;
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
}

/** {@linkcode SoakOptions} with defaults filled in and checked. */
export interface ResolvedSoakOptions {
  /** Target URL (ws/wss), or the default when `server` is set. */
  url: string;
  /** The server command as given, or null. */
  server: string | null;
  /** Run the server command unchanged. */
  serverAsIs: boolean;
  /** Pid to read RSS from, or null. */
  serverPid: number | null;
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
  /** The URL the clients use. */
  url: string;
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

/**
 * The command to start: `command` plus `--rate 0 --max-connections-per-ip
 * 0` for each of the two flags it does not set itself (hubchat's defaults
 * would throttle and refuse a soak from one address), unless `asIs`.
 *
 * @example
 * ```ts
 * import { soakServerCommand } from "./soak_options.ts";
 * soakServerCommand("deno run -A main.ts --rate 100", false);
 * // "deno run -A main.ts --rate 100 --max-connections-per-ip 0"
 * ```
 */
export function soakServerCommand(command: string, asIs: boolean): string {
  if (asIs) return command;
  const extra: string[] = [];
  for (let i = 0; i < UNLIMITED_SERVER_FLAGS.length; i += 2) {
    const flag = UNLIMITED_SERVER_FLAGS[i];
    const given = new RegExp(`(^|\\s)${flag}(=|\\s|$)`).test(command);
    if (!given) extra.push(flag, UNLIMITED_SERVER_FLAGS[i + 1]);
  }
  return extra.length === 0 ? command : `${command} ${extra.join(" ")}`;
}

function checkInt(
  name: string,
  value: number,
  range: { min: number; max: number },
): number {
  if (!Number.isInteger(value) || value < range.min || value > range.max) {
    throw new Error(
      `${name} is ${value}; expected a whole number from ${range.min} to ${range.max}`,
    );
  }
  return value;
}

function checkRange(
  name: string,
  value: number,
  range: { min: number; max: number; unit: string },
): number {
  if (!Number.isFinite(value) || value < range.min || value > range.max) {
    throw new Error(
      `${name} is ${value}; expected ${range.unit} from ${range.min} to ${range.max}`,
    );
  }
  return value;
}

/**
 * Fills in defaults and checks every option; throws an Error naming the
 * option and what was expected.
 *
 * @example
 * ```ts
 * import { resolveSoakOptions } from "./soak_options.ts";
 * resolveSoakOptions({ clients: 20, churn: 2 }).senders; // 10
 * ```
 */
export function resolveSoakOptions(options: SoakOptions): ResolvedSoakOptions {
  const clients = checkInt("--clients", options.clients ?? DEFAULT_CLIENTS, {
    min: 1,
    max: 1_000_000,
  });
  const churn = checkInt("--churn", options.churn ?? 0, {
    min: 0,
    max: clients - 1,
  });
  const senders = checkInt(
    "--senders",
    options.senders ?? Math.min(DEFAULT_SENDERS, clients - churn),
    { min: 1, max: clients - churn },
  );
  const serverPid = options.serverPid === undefined ? null : checkInt(
    "--server-pid",
    options.serverPid,
    { min: 1, max: 2 ** 31 - 1 },
  );
  return {
    url: normalizeUrl(options.url ?? DEFAULT_URL),
    server: options.server ?? null,
    serverAsIs: options.serverAsIs ?? false,
    serverPid,
    clients,
    senders,
    minutes: checkRange("--minutes", options.minutes ?? DEFAULT_MINUTES, {
      min: 0.001,
      max: MAX_MINUTES,
      unit: "minutes",
    }),
    rate: checkRange("--rate", options.rate ?? DEFAULT_RATE, {
      min: 0.001,
      max: 1e9,
      unit: "deliveries/s",
    }),
    interval: checkRange("--interval", options.interval ?? DEFAULT_INTERVAL_S, {
      min: 0.1,
      max: 3600,
      unit: "seconds",
    }),
    size: checkInt("--size", options.size ?? DEFAULT_SIZE, {
      min: MIN_SIZE,
      max: MAX_SIZE,
    }),
    churn,
  };
}

/** Flags that take a value, and the option each sets. */
const VALUE_FLAGS: Record<string, keyof SoakOptions> = {
  "--url": "url",
  "--server": "server",
  "--server-pid": "serverPid",
  "--clients": "clients",
  "--senders": "senders",
  "--minutes": "minutes",
  "--rate": "rate",
  "--interval": "interval",
  "--size": "size",
  "--churn": "churn",
};

/**
 * Parses the CLI's arguments (`--flag value` or `--flag=value`); throws an
 * Error naming the bad flag.
 *
 * @example
 * ```ts
 * import { parseSoakArgs } from "./soak_options.ts";
 * parseSoakArgs(["--clients", "200", "--minutes=2", "--json"]);
 * // { help: false, json: true, options: { clients: 200, minutes: 2 } }
 * ```
 */
export function parseSoakArgs(args: readonly string[]): SoakArgs {
  const { help, options } = parseFlags(args, {
    values: VALUE_FLAGS,
    text: new Set(["url", "server"]),
    switches: { "--json": "json", "--server-as-is": "serverAsIs" },
  });
  const { json, ...soak } = options;
  return { help, json: json === true, options: soak as SoakOptions };
}

export const HELP =
  `hubchat soak tool: many clients, many minutes, one line per interval

Usage: deno run -A soak.ts [options]       (or: deno task soak [options])

Target (one of):
  --url URL            chat endpoint (default ${DEFAULT_URL}). Run hubchat
                       for it with "--rate 0 --max-connections-per-ip 0":
                       its defaults (10 msg/s per client, 20 connections per
                       address) throttle and refuse a soak from one machine.
  --server "CMD"       start CMD on a free port (it gets
                       "--port 0 --host 127.0.0.1", or fills {port}/{host}),
                       plus "--rate 0 --max-connections-per-ip 0" for either
                       flag CMD does not set itself; stop it at the end
  --server-as-is       add no --rate/--max-connections-per-ip (non-hubchat)
  --server-pid PID     with --url: read server RSS from /proc/PID/status

Load:
  --clients N          WebSocket clients (default ${DEFAULT_CLIENTS})
  --minutes M          run length, fractions allowed (default ${DEFAULT_MINUTES})
  --rate R             deliveries/s offered, open loop: R/N messages/s
                       spread over the senders, late sends skipped
                       (default ${DEFAULT_RATE})
  --interval SEC       seconds per report line (default ${DEFAULT_INTERVAL_S})
  --size BYTES         chat text size, ${MIN_SIZE}-${MAX_SIZE} (default ${DEFAULT_SIZE})
  --senders S          clients that send (default min(${DEFAULT_SENDERS}, N-K));
                       they never churn
  --churn K            the last K clients each disconnect and reconnect
                       (under a new name) once per interval, at a random
                       moment: join/leave paths under load (default 0)

Output:
  --json               JSON lines instead: {"type":"start",...}, one
                       {"type":"interval",...} each interval, then
                       {"type":"summary",...}
  --help               this text

Each interval line: elapsed time, delivered/s and p50/p99 latency of the
interval; lost/dup/ooo so far; evicted (clients the server closed, by
close code: 4008 slow consumer, 1008 rate limit, 1001 going away, none =
no close frame; they reconnect after 1 s); srv_evicted
(hubchat_evictions_total by cause from /metrics, when it answers); skipped (sends this
tool was too late for: a delivered/s shortfall that is not the server's);
clients connected; reconnects; server RSS (VmRSS from /proc/PID/status
with --server or --server-pid, else process_resident_memory_bytes from
/metrics if the server exports it). Then a JSON summary: totals, latency
percentiles, the RSS series with its max, growth (last interval vs first)
and slope per minute.

Ctrl-C stops early and prints the summary so far; a second Ctrl-C exits at
once. Exit status: 0 clean; 1 loss, duplicates, out-of-order, clients
that failed to connect, or aborted; 2 bad options; 3 hard time cap. Many clients: run "ulimit -n 65536" first.
`;

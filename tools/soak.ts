/**
 * hubchat's soak tool: holds N WebSocket clients against a chat server for M
 * minutes at an offered rate (open loop), optionally churning some of them,
 * and prints one line per interval (delivered/s, p50/p99 latency,
 * lost/duplicated/out-of-order so far, evictions, server RSS), then a JSON
 * summary with the RSS series and its growth, to spot leaks and slow decay
 * that a 10-second load run cannot show.
 *
 * ```sh
 * deno run -A soak.ts --server "deno run -A main.ts" --clients 200 --minutes 2 --rate 5000
 * deno run -A soak.ts --url ws://127.0.0.1:8080/ws --clients 50 --minutes 60 --rate 1000 --churn 5
 * deno run -A soak.ts --help
 * ```
 *
 * @module
 */

import {
  CLOSE_CAP_MS,
  CONNECT_CAP_BASE_S,
  CONNECT_CAP_PER_CLIENT_S,
  count,
  DEFAULT_CONNECT_CONCURRENCY,
  DEFAULT_CONNECT_TIMEOUT_S,
  DEFAULT_SIZE,
  DEFAULT_URL,
  DRAIN_POLL_MS,
  encodeText,
  errorCode,
  forEachLine,
  handshake,
  LatencyHistogram,
  MAX_SIZE,
  MIN_SIZE,
  normalizeUrl,
  OPEN_LOOP_MAX_BURST_MS,
  type ParsedLine,
  parseFlags,
  RawClient,
  readBufferSize,
  round,
  runId,
  scanLine,
  SequenceTracker,
  type ServerProcess,
  startServerProcess,
  statusBytes,
} from "./load.ts";
import { sleep, withTimeout } from "./wait.ts";
import { encodeFrame, Opcode } from "./ws_frame.ts";

// ---------------------------------------------------------------------------
// Defaults and limits
// ---------------------------------------------------------------------------

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
/** Handshakes (up to the welcome) as the load tool makes them. */
const CONNECT_TIMEOUT_MS = DEFAULT_CONNECT_TIMEOUT_S * 1000;
/** After sending stops, wait this long at most for in-flight messages. */
const DRAIN_MS = 5_000;
/** A /metrics scrape slower than this is skipped for the interval. */
const METRICS_TIMEOUT_MS = 2_000;
/** An evicted client retries after 1 s, doubling up to one interval. */
const RECONNECT_BACKOFF_MS = 1_000;
/** A cut closer than this to the previous one is not worth a report line. */
const MIN_INTERVAL_MS = 50;
/** Close codes hubchat sends, by what they mean (for the report lines). */
const CLOSE_CODE_NAMES: Record<string, string> = {
  "1001": "going_away",
  "1003": "binary",
  "1008": "rate_limit",
  "1009": "too_big",
  "4008": "slow_consumer",
};

// ---------------------------------------------------------------------------
// Public types
// ---------------------------------------------------------------------------

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

/** Latency percentiles of one interval, in milliseconds. */
export interface IntervalLatency {
  /** Deliveries measured. */
  count: number;
  /** Median. */
  p50: number;
  /** 99th percentile. */
  p99: number;
  /** Largest. */
  max: number;
}

/** Cumulative counters read at the end of an interval. */
export interface IntervalSnapshot {
  /** Messages sent so far. */
  sent: number;
  /** Open-loop sends skipped so far (this process ran late). */
  skipped: number;
  /** Deliveries missing so far (gaps below the highest received). */
  lost: number;
  /** Deliveries received twice or more, so far. */
  duplicated: number;
  /** Deliveries that arrived after a later one, so far. */
  outOfOrder: number;
  /** Clients the server closed so far, by close code ("none": no frame). */
  evictions: Record<string, number>;
  /** Reconnects so far (churn and after evictions). */
  reconnects: number;
  /** Clients connected now. */
  clientsOpen: number;
  /** Clients asked for. */
  clients: number;
  /** Server RSS now, bytes, or null. */
  rssBytes: number | null;
  /** Server-side evictions since the start, by cause, or null. */
  serverEvictions: Record<string, number> | null;
  /** `hubchat_connections` now, or null. */
  serverConnections: number | null;
}

/** One interval's line, as data. */
export interface IntervalReport {
  /** 1-based interval number. */
  interval: number;
  /** Seconds since sending started, at the end of this interval. */
  elapsed_s: number;
  /** This interval's length, seconds. */
  seconds: number;
  /** Messages sent during the interval. */
  sent: number;
  /**
   * Sends skipped during the interval because this process ran late: a
   * shortfall in delivered/s is the tool's, not the server's.
   */
  skipped: number;
  /** Deliveries during the interval. */
  delivered: number;
  /** `delivered / seconds`, rounded. */
  delivered_per_sec: number;
  /** Latency of the interval's deliveries. */
  latency_ms: IntervalLatency;
  /** Lost so far. */
  lost: number;
  /** Duplicated so far. */
  duplicated: number;
  /** Out of order so far. */
  out_of_order: number;
  /** Clients closed by the server so far, by close code. */
  evictions: Record<string, number>;
  /** Sum of `evictions`. */
  evicted: number;
  /** Reconnects during the interval. */
  reconnects: number;
  /** Clients connected at the end of the interval. */
  clients_open: number;
  /** Clients asked for. */
  clients: number;
  /** Server RSS, bytes, or null. */
  rss_bytes: number | null;
  /** Server-side evictions by cause (from `/metrics`), or null. */
  server_evictions: Record<string, number> | null;
  /** The server's `hubchat_connections`, or null. */
  server_connections: number | null;
}

/** The RSS series and what it says about leaks. */
export interface RssSummary {
  /** Samples taken (one per interval when measurable). */
  samples: number;
  /** First interval's RSS, bytes. */
  first_bytes: number | null;
  /** Last interval's RSS, bytes. */
  last_bytes: number | null;
  /** Largest sample, bytes. */
  max_bytes: number | null;
  /** Last minus first, bytes: steady growth under steady load is a leak. */
  growth_bytes: number | null;
  /** `growth_bytes` as a percentage of the first sample. */
  growth_percent: number | null;
  /** Least-squares slope over all samples, bytes per minute. */
  slope_bytes_per_minute: number | null;
}

/** The result of one soak; the CLI prints it as JSON. */
export interface SoakSummary {
  /** The resolved options. */
  config: ResolvedSoakOptions;
  /** The URL the clients used. */
  url: string;
  /** Prefix of every username and message of this run. */
  run_id: string;
  /** Wall-clock start, ISO 8601. */
  started_at: string;
  /** Seconds of sending (the intervals together). */
  elapsed_s: number;
  /** The run was cut short by its signal (SIGINT). */
  interrupted: boolean;
  /** Why the run stopped early on its own, or null. */
  aborted: string | null;
  /** Interval reports cut. */
  intervals: number;
  /** Clients that got their welcome in the connect phase. */
  clients_connected: number;
  /** Seconds the connect phase took. */
  connect_seconds: number;
  /** Messages sent. */
  messages_sent: number;
  /** Open-loop sends skipped because the scheduler ran late. */
  skipped_sends: number;
  /** Sends skipped because that sender was disconnected. */
  skipped_sender_down: number;
  /** Deliveries during the intervals. */
  deliveries: number;
  /** All deliveries, drain included. */
  deliveries_total: number;
  /** `deliveries / elapsed_s`. */
  delivered_per_sec: number;
  /** The `rate` option. */
  offered_deliveries_per_sec: number;
  /** Latency of every delivery of the run, ms. */
  latency_ms: {
    count: number;
    p50: number;
    p90: number;
    p99: number;
    p999: number;
    max: number;
  };
  /** Total lost: stable clients' plus churned sessions'. */
  lost: number;
  /** Total duplicated. */
  duplicated: number;
  /** Total out of order. */
  out_of_order: number;
  /** Clients connected from start to end, never churned nor evicted. */
  stable: {
    clients: number;
    complete: number;
    lost: number;
    duplicated: number;
    out_of_order: number;
  };
  /** Every other connection (churn, reconnects after evictions). */
  sessions: {
    count: number;
    reconnects: number;
    lost: number;
    duplicated: number;
    out_of_order: number;
  };
  /** Clients closed by the server, by close code ("none": no close frame). */
  evictions: Record<string, number>;
  /** Server-side evictions by cause from `/metrics`, or null. */
  server_evictions: Record<string, number> | null;
  /** Connect failures by message (initial and reconnects). */
  connect_errors: Record<string, number>;
  /** `error` messages from the server, by code. */
  server_error_codes: Record<string, number>;
  /** Chat messages not from this run, ignored. */
  foreign_messages: number;
  /** Server pid, or null. */
  server_pid: number | null;
  /** Server command line as run, or null. */
  server_process: string | null;
  /** Server exit code after SIGTERM (null if killed or not started). */
  server_exit_code: number | null;
  /** Where RSS came from. */
  rss_source: "proc" | "metrics" | null;
  /** Server RSS before the clients connected, bytes. */
  rss_before_clients_bytes: number | null;
  /** The RSS trend. */
  rss: RssSummary;
  /** Per-interval series, for plotting. */
  series: {
    elapsed_s: number[];
    delivered_per_sec: number[];
    p50_ms: number[];
    p99_ms: number[];
    rss_bytes: (number | null)[];
    clients_open: number[];
  };
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

/** One sample of Prometheus text: name, labels, value. */
export interface PromSample {
  /** Metric name, like `hubchat_evictions_total`. */
  name: string;
  /** Label names to values (unescaped). */
  labels: Record<string, string>;
  /** The value (NaN and ±Inf allowed). */
  value: number;
}

/** What the soak reads from a server's `/metrics`. */
export interface ServerMetricsReading {
  /** `hubchat_evictions_total` by cause, or null if absent. */
  evictions: Record<string, number> | null;
  /** `hubchat_connections`, or null if absent. */
  connections: number | null;
  /** `process_resident_memory_bytes`, or null if absent. */
  rssBytes: number | null;
}

// ---------------------------------------------------------------------------
// Pure parts
// ---------------------------------------------------------------------------

function sumValues(map: Record<string, number>): number {
  let total = 0;
  for (const v of Object.values(map)) total += v;
  return total;
}

/**
 * Cuts a run into intervals: records each delivery's latency into the
 * interval's histogram and the run's, and turns cumulative counters into one
 * {@linkcode IntervalReport} per {@linkcode IntervalAggregator.cut}.
 *
 * @example
 * ```ts
 * import { IntervalAggregator } from "./soak.ts";
 * const agg = new IntervalAggregator(0);
 * agg.record(1500); // one delivery, 1.5 ms
 * const report = agg.cut(1000, {
 *   sent: 1, skipped: 0, lost: 0, duplicated: 0, outOfOrder: 0, evictions: {},
 *   reconnects: 0, clientsOpen: 1, clients: 1, rssBytes: null,
 *   serverEvictions: null, serverConnections: null,
 * });
 * report.delivered_per_sec; // 1
 * ```
 */
export class IntervalAggregator {
  /** Latency of every delivery recorded, µs. */
  readonly overall: LatencyHistogram = new LatencyHistogram();
  /** Reports cut so far. */
  readonly reports: IntervalReport[] = [];
  /** Deliveries recorded in all intervals. */
  deliveries = 0;
  #interval = new LatencyHistogram();
  #intervalDeliveries = 0;
  #startMs: number;
  #lastCutMs: number;
  #lastSent = 0;
  #lastSkipped = 0;
  #lastReconnects = 0;

  /** Starts the first interval at `startMs` (a `performance.now()`). */
  constructor(startMs: number) {
    this.#startMs = startMs;
    this.#lastCutMs = startMs;
  }

  /** Milliseconds since the last cut (or the start), as of `nowMs`. */
  sinceCut(nowMs: number): number {
    return nowMs - this.#lastCutMs;
  }

  /** Records one delivery that took `latencyUs` microseconds. */
  record(latencyUs: number): void {
    this.#interval.record(latencyUs);
    this.overall.record(latencyUs);
    this.#intervalDeliveries++;
    this.deliveries++;
  }

  /** Ends the interval at `nowMs` and starts the next; returns its report. */
  cut(nowMs: number, snapshot: IntervalSnapshot): IntervalReport {
    const seconds = Math.max(0, nowMs - this.#lastCutMs) / 1000;
    const h = this.#interval;
    const report: IntervalReport = {
      interval: this.reports.length + 1,
      elapsed_s: round((nowMs - this.#startMs) / 1000, 2),
      seconds: round(seconds, 3),
      sent: snapshot.sent - this.#lastSent,
      skipped: snapshot.skipped - this.#lastSkipped,
      delivered: this.#intervalDeliveries,
      delivered_per_sec: seconds > 0
        ? Math.round(this.#intervalDeliveries / seconds)
        : 0,
      latency_ms: {
        count: h.count,
        p50: round(h.percentile(50) / 1000, 3),
        p99: round(h.percentile(99) / 1000, 3),
        max: round(h.max / 1000, 3),
      },
      lost: snapshot.lost,
      duplicated: snapshot.duplicated,
      out_of_order: snapshot.outOfOrder,
      evictions: { ...snapshot.evictions },
      evicted: sumValues(snapshot.evictions),
      reconnects: snapshot.reconnects - this.#lastReconnects,
      clients_open: snapshot.clientsOpen,
      clients: snapshot.clients,
      rss_bytes: snapshot.rssBytes,
      server_evictions: snapshot.serverEvictions === null
        ? null
        : { ...snapshot.serverEvictions },
      server_connections: snapshot.serverConnections,
    };
    this.reports.push(report);
    this.#interval = new LatencyHistogram();
    this.#intervalDeliveries = 0;
    this.#lastCutMs = nowMs;
    this.#lastSent = snapshot.sent;
    this.#lastSkipped = snapshot.skipped;
    this.#lastReconnects = snapshot.reconnects;
    return report;
  }
}

/**
 * The RSS trend of a run: first, last, max, growth (last vs first) and the
 * least-squares slope per minute. Null samples (unmeasurable) are skipped.
 *
 * @example
 * ```ts
 * import { summarizeRss } from "./soak.ts";
 * summarizeRss([{ elapsed_s: 60, bytes: 100 }, { elapsed_s: 120, bytes: 150 }]);
 * // { samples: 2, first_bytes: 100, last_bytes: 150, max_bytes: 150,
 * //   growth_bytes: 50, growth_percent: 50, slope_bytes_per_minute: 50 }
 * ```
 */
export function summarizeRss(
  series: readonly { elapsed_s: number; bytes: number | null }[],
): RssSummary {
  const points = series.filter((p): p is { elapsed_s: number; bytes: number } =>
    p.bytes !== null
  );
  if (points.length === 0) {
    return {
      samples: 0,
      first_bytes: null,
      last_bytes: null,
      max_bytes: null,
      growth_bytes: null,
      growth_percent: null,
      slope_bytes_per_minute: null,
    };
  }
  const first = points[0].bytes;
  const last = points[points.length - 1].bytes;
  let max = 0;
  let sx = 0;
  let sy = 0;
  for (const p of points) {
    max = Math.max(max, p.bytes);
    sx += p.elapsed_s;
    sy += p.bytes;
  }
  const mx = sx / points.length;
  const my = sy / points.length;
  let sxy = 0;
  let sxx = 0;
  for (const p of points) {
    sxy += (p.elapsed_s - mx) * (p.bytes - my);
    sxx += (p.elapsed_s - mx) ** 2;
  }
  return {
    samples: points.length,
    first_bytes: first,
    last_bytes: last,
    max_bytes: max,
    growth_bytes: last - first,
    growth_percent: first > 0 ? round(((last - first) / first) * 100, 2) : null,
    slope_bytes_per_minute: sxx > 0 ? Math.round((sxy / sxx) * 60) : null,
  };
}

function mib(bytes: number): string {
  return `${(bytes / 1048576).toFixed(1)}MiB`;
}

function formatCounts(
  map: Record<string, number>,
  names: Record<string, string> = {},
): string {
  const parts = Object.entries(map).filter(([, n]) => n > 0).map(([k, n]) =>
    `${names[k] === undefined ? k : `${k}/${names[k]}`}:${n}`
  );
  return parts.length === 0 ? "0" : parts.join(",");
}

/**
 * One report as a human-readable line: `key=value` pairs, greppable.
 *
 * @example
 * ```ts
 * import { formatInterval, IntervalAggregator } from "./soak.ts";
 * const agg = new IntervalAggregator(0);
 * console.log(formatInterval(agg.cut(10_000, {
 *   sent: 0, skipped: 0, lost: 0, duplicated: 0, outOfOrder: 0, evictions: {},
 *   reconnects: 0, clientsOpen: 2, clients: 2, rssBytes: 52428800,
 *   serverEvictions: null, serverConnections: null,
 * })));
 * // t=10.0s delivered/s=0 p50=0.00ms p99=0.00ms lost=0 dup=0 ooo=0 evicted=0 clients=2/2 reconnects=0 rss=50.0MiB
 * ```
 */
export function formatInterval(report: IntervalReport): string {
  const parts = [
    `t=${report.elapsed_s.toFixed(1)}s`,
    `delivered/s=${report.delivered_per_sec}`,
    `p50=${report.latency_ms.p50.toFixed(2)}ms`,
    `p99=${report.latency_ms.p99.toFixed(2)}ms`,
    `lost=${report.lost}`,
    `dup=${report.duplicated}`,
    `ooo=${report.out_of_order}`,
    `evicted=${formatCounts(report.evictions, CLOSE_CODE_NAMES)}`,
  ];
  if (report.server_evictions !== null) {
    parts.push(`srv_evicted=${formatCounts(report.server_evictions)}`);
  }
  if (report.skipped > 0) parts.push(`skipped=${report.skipped}`);
  parts.push(
    `clients=${report.clients_open}/${report.clients}`,
    `reconnects=${report.reconnects}`,
    `rss=${report.rss_bytes === null ? "n/a" : mib(report.rss_bytes)}`,
  );
  return parts.join(" ");
}

/** Unescapes a Prometheus label value (`\\`, `\"`, `\n`). */
function unescapeLabel(text: string): string {
  return text.replace(/\\(.)/g, (_, c: string) => (c === "n" ? "\n" : c));
}

/** `name{labels} value [timestamp]`; label values may hold escaped quotes. */
const SAMPLE_LINE =
  /^([A-Za-z_:][A-Za-z0-9_:]*)(?:\{((?:[^"}]|"(?:[^"\\]|\\.)*")*)\})?\s+(\S+)(?:\s+-?\d+)?\s*$/;
/** One `name="value"` pair inside the braces. */
const LABEL_PAIR = /([A-Za-z_][A-Za-z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"/g;

/**
 * Parses Prometheus text exposition (format 0.0.4) into samples; comments,
 * blank lines and malformed lines are skipped, never thrown on.
 *
 * @example
 * ```ts
 * import { parsePrometheusText } from "./soak.ts";
 * parsePrometheusText('# TYPE x counter\nx{cause="idle"} 3\n');
 * // [{ name: "x", labels: { cause: "idle" }, value: 3 }]
 * ```
 */
export function parsePrometheusText(text: string): PromSample[] {
  const samples: PromSample[] = [];
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (line === "" || line.startsWith("#")) continue;
    const m = SAMPLE_LINE.exec(line);
    if (m === null) continue;
    const value = m[3] === "+Inf"
      ? Infinity
      : m[3] === "-Inf"
      ? -Infinity
      : Number(m[3]);
    if (Number.isNaN(value) && m[3] !== "NaN") continue;
    const labels: Record<string, string> = {};
    if (m[2] !== undefined) {
      for (const pair of m[2].matchAll(LABEL_PAIR)) {
        labels[pair[1]] = unescapeLabel(pair[2]);
      }
    }
    samples.push({ name: m[1], labels, value });
  }
  return samples;
}

/**
 * Reads what the soak wants from `/metrics` text: hubchat's evictions by
 * cause and open connections, and the standard
 * `process_resident_memory_bytes` if the server exports it. Anything absent
 * is null.
 *
 * @example
 * ```ts
 * import { readServerMetrics } from "./soak.ts";
 * readServerMetrics(
 *   'hubchat_evictions_total{cause="slow_consumer"} 2\nhubchat_connections 40\n',
 * );
 * // { evictions: { slow_consumer: 2 }, connections: 40, rssBytes: null }
 * ```
 */
export function readServerMetrics(text: string): ServerMetricsReading {
  let evictions: Record<string, number> | null = null;
  let connections: number | null = null;
  let rssBytes: number | null = null;
  for (const sample of parsePrometheusText(text)) {
    if (sample.name === "hubchat_evictions_total") {
      evictions ??= {};
      const cause = sample.labels.cause ?? "";
      evictions[cause] = (evictions[cause] ?? 0) + sample.value;
    } else if (sample.name === "hubchat_connections") {
      connections = sample.value;
    } else if (sample.name === "process_resident_memory_bytes") {
      rssBytes = sample.value;
    }
  }
  return { evictions, connections, rssBytes };
}

/**
 * The `/metrics` URL of the server behind a chat endpoint.
 *
 * @example
 * ```ts
 * import { metricsUrl } from "./soak.ts";
 * metricsUrl("ws://127.0.0.1:8080/ws"); // "http://127.0.0.1:8080/metrics"
 * ```
 */
export function metricsUrl(wsUrl: string): string {
  const url = new URL(wsUrl);
  url.protocol = url.protocol === "wss:" ? "https:" : "http:";
  url.pathname = "/metrics";
  url.search = "";
  url.hash = "";
  return url.href;
}

/**
 * The command to start: `command` plus `--rate 0 --max-connections-per-ip
 * 0` for each of the two flags it does not set itself (hubchat's defaults
 * would throttle and refuse a soak from one address), unless `asIs`.
 *
 * @example
 * ```ts
 * import { soakServerCommand } from "./soak.ts";
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
 * import { resolveSoakOptions } from "./soak.ts";
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
 * import { parseSoakArgs } from "./soak.ts";
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

// ---------------------------------------------------------------------------
// The run
// ---------------------------------------------------------------------------

/** Fetches `url` as text within {@linkcode METRICS_TIMEOUT_MS}. */
async function fetchText(url: string): Promise<string> {
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), METRICS_TIMEOUT_MS);
  try {
    const response = await fetch(url, { signal: controller.signal });
    const text = await response.text();
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    return text;
  } finally {
    clearTimeout(timer);
  }
}

/** One WebSocket connection of a client slot, from handshake to its end. */
interface Session {
  /** The client slot (0 .. clients-1). */
  index: number;
  /** Connected before sending started and never left: full accounting. */
  stable: boolean;
  /** Per sender: messages this connection got (1 receiver × senders). */
  tracker: SequenceTracker;
  /**
   * Per sender: the first sequence number this connection saw (-1: none
   * yet), for connections made while sending; null: counted from 0.
   */
  base: Float64Array | null;
  /** Arrivals below the base: out of order, counted apart. */
  early: number;
  client: RawClient | null;
  /** Welcomed and not ended. */
  open: boolean;
  /** We are closing it (churn or shutdown): its end is no eviction. */
  closing: boolean;
  /** Its counts were moved into the run's totals. */
  retired: boolean;
  welcome: ((ok: boolean) => void) | null;
}

/**
 * Runs one soak and returns its summary. Every phase is bounded in time
 * (connect cap, `minutes`, 5 s drain, 5 s close); every socket, timer and the
 * started server are gone before it resolves. Aborting `signal` ends it early
 * with the summary so far.
 *
 * @example
 * ```ts
 * import { runSoak } from "./soak.ts";
 * const summary = await runSoak({
 *   url: "ws://127.0.0.1:8080/ws",
 *   clients: 20,
 *   minutes: 0.5,
 *   rate: 2000,
 *   interval: 5,
 *   onInterval: (r) => console.log(r.delivered_per_sec, r.latency_ms.p99),
 * });
 * console.log(summary.lost, summary.rss.growth_bytes);
 * ```
 */
export async function runSoak(options: SoakOptions = {}): Promise<SoakSummary> {
  const cfg = resolveSoakOptions(options);
  const run = runId();
  const runBytes = new TextEncoder().encode(run);
  const n = cfg.clients;
  const senders = cfg.senders;
  const intervalMs = cfg.interval * 1000;
  const bufferSize = readBufferSize(n);
  const startedAt = new Date().toISOString();

  // Stops sending, churn, reconnects and the interval loop.
  const halt = new AbortController();
  let interrupted = false;
  function onAbort(): void {
    interrupted = true;
    halt.abort();
  }
  if (options.signal?.aborted) interrupted = true;
  options.signal?.addEventListener("abort", onAbort, { once: true });

  let server: ServerProcess | null = null;
  let url = cfg.url;
  let serverExitCode: number | null = null;
  const slots: (Session | null)[] = new Array(n).fill(null);
  const generation = new Uint32Array(n);
  const busy = new Uint8Array(n);
  const sent = new Array<number>(senders).fill(0);
  const evictions: Record<string, number> = {};
  const connectErrors: Record<string, number> = {};
  const serverErrorCodes: Record<string, number> = {};
  const retiredTotals = { lost: 0, duplicated: 0, outOfOrder: 0 };
  const line: ParsedLine = { kind: "other", sender: 0, seq: 0, sentUs: 0 };
  const tasks = new Set<Promise<void>>();
  let agg = new IntervalAggregator(performance.now());
  let sendingStarted = false;
  let closing = false;
  let openCount = 0;
  let sentTotal = 0;
  let skipped = 0;
  let skippedSenderDown = 0;
  let deliveriesTotal = 0;
  let foreign = 0;
  let reconnects = 0;
  let sessionCount = 0;
  let aborted: string | null = null;
  let connectSeconds = 0;
  let clientsConnected = 0;
  let rssPid: number | null = null;
  let rssSource: "proc" | "metrics" | null = null;
  let rssBefore: number | null = null;
  let metricsAt: string | null = null;
  let evictionBase: Record<string, number> = {};
  let lastServerEvictions: Record<string, number> | null = null;

  function onText(
    session: Session,
    buf: Uint8Array,
    from: number,
    to: number,
    now: number,
  ): void {
    const nowUs = now * 1000;
    forEachLine(buf, from, to, (start, end) => {
      const kind = scanLine(buf, start, end, runBytes, line);
      if (kind === "message") onMessage(session, nowUs);
      else if (kind === "foreign") foreign++;
      else if (kind === "welcome") session.welcome?.(true);
      else if (kind === "error") {
        count(serverErrorCodes, errorCode(buf, start, end));
      }
    });
  }

  function onMessage(session: Session, nowUs: number): void {
    const s = line.sender;
    if (s >= senders) {
      foreign++;
      return;
    }
    let seq = line.seq;
    if (session.base !== null) {
      if (session.base[s] < 0) session.base[s] = seq;
      seq -= session.base[s];
      if (seq < 0) {
        session.early++;
        seq = -1;
      }
    }
    if (seq >= 0 && session.tracker.record(0, s, seq) === "duplicate") return;
    deliveriesTotal++;
    agg.record(nowUs - line.sentUs);
  }

  /** Moves a finished connection's counts into the run's totals, once. */
  function retire(session: Session): void {
    if (session.retired) return;
    session.retired = true;
    session.stable = false;
    retiredTotals.lost += session.tracker.gaps;
    retiredTotals.duplicated += session.tracker.duplicated;
    retiredTotals.outOfOrder += session.tracker.outOfOrder + session.early;
  }

  function onEnd(session: Session): void {
    session.welcome?.(false);
    if (!session.open) return;
    session.open = false;
    openCount--;
    if (session.closing || closing) return;
    const code = session.client?.serverCloseCode;
    count(evictions, code == null ? "none" : String(code));
    retire(session);
    scheduleReconnect(session.index);
  }

  async function connectSession(i: number, deadline: number): Promise<boolean> {
    const started = performance.now();
    const timeoutMs = Math.max(
      1,
      Math.min(CONNECT_TIMEOUT_MS, deadline - started),
    );
    const name = `soak-${run}-${i}.${generation[i]++}`;
    let shake;
    try {
      shake = await handshake(url, name, timeoutMs);
    } catch (error) {
      count(connectErrors, (error as Error).message.slice(0, 120));
      return false;
    }
    const welcome = Promise.withResolvers<boolean>();
    const session: Session = {
      index: i,
      stable: !sendingStarted,
      tracker: new SequenceTracker(1, senders),
      base: sendingStarted ? new Float64Array(senders).fill(-1) : null,
      early: 0,
      client: null,
      open: false,
      closing: false,
      retired: false,
      welcome: welcome.resolve,
    };
    session.client = new RawClient(shake, {
      onText: (buf, start, end, now) => onText(session, buf, start, end, now),
      onEnd: () => onEnd(session),
      bufferSize,
    });
    const left = Math.max(1, timeoutMs - (performance.now() - started));
    const ok = await withTimeout(welcome.promise, left, null);
    session.welcome = null;
    if (ok === true && !session.client.ended) {
      session.open = true;
      openCount++;
      slots[i] = session;
      sessionCount++;
      return true;
    }
    count(
      connectErrors,
      ok === null
        ? "timeout waiting for welcome"
        : `closed before welcome (code ${
          session.client.serverCloseCode ?? "none"
        })`,
    );
    session.closing = true;
    await session.client.close(CLOSE_CAP_MS);
    return false;
  }

  function track(task: Promise<void>): void {
    tasks.add(task);
    task.finally(() => tasks.delete(task));
  }

  /** After an eviction: reconnect with backoff until it works or we stop. */
  function scheduleReconnect(i: number): void {
    if (busy[i] || halt.signal.aborted) return;
    busy[i] = 1;
    track((async () => {
      let backoff = RECONNECT_BACKOFF_MS;
      while (!halt.signal.aborted) {
        await sleep(backoff, halt.signal);
        if (halt.signal.aborted) break;
        if (await connectSession(i, performance.now() + CONNECT_TIMEOUT_MS)) {
          reconnects++;
          break;
        }
        backoff = Math.min(backoff * 2, Math.max(intervalMs, backoff));
      }
      busy[i] = 0;
    })());
  }

  /** Client `j` leaves and rejoins once per interval, at a random moment. */
  async function churnTask(
    j: number,
    t0: number,
    endAt: number,
  ): Promise<void> {
    for (let k = 0; !halt.signal.aborted; k++) {
      const at = t0 + (k + Math.random()) * intervalMs;
      if (at >= endAt) break;
      await sleep(at - performance.now(), halt.signal);
      if (halt.signal.aborted) break;
      if (busy[j]) continue;
      busy[j] = 1;
      const old = slots[j];
      if (old !== null && old.open) {
        old.closing = true;
        await old.client?.close(CLOSE_CAP_MS);
        retire(old);
      }
      if (!halt.signal.aborted) {
        const ok = await connectSession(
          j,
          performance.now() + CONNECT_TIMEOUT_MS,
        );
        if (ok) reconnects++;
      }
      busy[j] = 0;
    }
  }

  function sendOne(s: number): void {
    const session = slots[s];
    if (session === null || !session.open || session.closing) {
      skippedSenderDown++;
      return;
    }
    const seq = sent[s];
    const sentUs = Math.round(performance.now() * 1000);
    const text = encodeText(run, { sender: s, seq, sentUs, size: cfg.size });
    session.client?.send(
      encodeFrame({
        opcode: Opcode.text,
        payload: `{"type":"message","text":"${text}"}`,
        mask: "zero",
      }),
    );
    sent[s] = seq + 1;
    sentTotal++;
  }

  /** Open loop: message k is due at t0 + k / rate; late sends are skipped. */
  async function sendLoop(): Promise<void> {
    const msgPerMs = cfg.rate / n / 1000;
    const lateCap = Math.max(OPEN_LOOP_MAX_BURST_MS, 1 / msgPerMs);
    const t0 = performance.now();
    let next = 0;
    let rr = 0;
    while (!halt.signal.aborted) {
      const nowMs = performance.now() - t0;
      const due = Math.floor(nowMs * msgPerMs) + 1;
      const onTime = Math.ceil((nowMs - lateCap) * msgPerMs);
      if (onTime > next) {
        skipped += Math.min(due, onTime) - next;
        next = Math.min(due, onTime);
      }
      for (; next < due; next++) {
        sendOne(rr);
        rr = (rr + 1) % senders;
      }
      const wait = next / msgPerMs - (performance.now() - t0);
      await sleep(Math.min(1000, wait), halt.signal);
    }
  }

  function readRss(scraped: number | null): number | null {
    if (rssSource === "proc" && rssPid !== null) {
      return statusBytes(rssPid, "VmRSS");
    }
    return rssSource === "metrics" ? scraped : null;
  }

  async function scrape(): Promise<ServerMetricsReading | null> {
    if (metricsAt === null) return null;
    try {
      return readServerMetrics(await fetchText(metricsAt));
    } catch {
      return null;
    }
  }

  function evictionDelta(
    now: Record<string, number> | null,
  ): Record<string, number> | null {
    if (now === null) return lastServerEvictions;
    const delta: Record<string, number> = {};
    for (const [cause, value] of Object.entries(now)) {
      delta[cause] = value - (evictionBase[cause] ?? 0);
    }
    lastServerEvictions = delta;
    return delta;
  }

  function snapshot(reading: ServerMetricsReading | null): IntervalSnapshot {
    let lost = retiredTotals.lost;
    let duplicated = retiredTotals.duplicated;
    let outOfOrder = retiredTotals.outOfOrder;
    for (const session of slots) {
      if (session === null || session.retired) continue;
      lost += session.tracker.gaps;
      duplicated += session.tracker.duplicated;
      outOfOrder += session.tracker.outOfOrder + session.early;
    }
    return {
      sent: sentTotal,
      skipped,
      lost,
      duplicated,
      outOfOrder,
      evictions,
      reconnects,
      clientsOpen: openCount,
      clients: n,
      rssBytes: readRss(reading?.rssBytes ?? null),
      serverEvictions: evictionDelta(reading?.evictions ?? null),
      serverConnections: reading?.connections ?? null,
    };
  }

  /** Connects every slot, a few hundred handshakes at a time. */
  async function connectAll(deadline: number): Promise<void> {
    let nextIndex = 0;
    async function worker(): Promise<void> {
      while (nextIndex < n && !halt.signal.aborted) {
        const i = nextIndex++;
        if (performance.now() >= deadline) {
          count(connectErrors, "connect phase cap reached");
          continue;
        }
        await connectSession(i, deadline);
      }
    }
    await Promise.all(
      Array.from({ length: Math.min(DEFAULT_CONNECT_CONCURRENCY, n) }, worker),
    );
  }

  let intervalsStart = performance.now();
  let elapsedS = 0;
  try {
    if (cfg.server !== null) {
      server = await startServerProcess(
        soakServerCommand(cfg.server, cfg.serverAsIs),
        null,
      );
      url = server.url;
    }
    rssPid = server?.pid ?? cfg.serverPid;
    if (rssPid !== null && statusBytes(rssPid, "VmRSS") !== null) {
      rssSource = "proc";
    }
    // /metrics is optional: hubchat serves it, other servers may not.
    const probeUrl = metricsUrl(url);
    let first: ServerMetricsReading | null = null;
    try {
      first = readServerMetrics(await fetchText(probeUrl));
      metricsAt = probeUrl;
    } catch {
      metricsAt = null;
    }
    if (first !== null) {
      evictionBase = first.evictions ?? {};
      if (rssSource === null && first.rssBytes !== null) rssSource = "metrics";
    }
    rssBefore = readRss(first?.rssBytes ?? null);

    // Connect: bounded concurrency, bounded total time.
    const connectStart = performance.now();
    await connectAll(
      connectStart + (CONNECT_CAP_BASE_S + n * CONNECT_CAP_PER_CLIENT_S) * 1000,
    );
    connectSeconds = round((performance.now() - connectStart) / 1000, 3);
    clientsConnected = openCount;
    if (openCount === 0) aborted = "no client connected";
    for (let s = 0; s < senders && aborted === null; s++) {
      if (slots[s] === null) aborted = `sender ${s} failed to connect`;
    }
    if (halt.signal.aborted && aborted === null) aborted = "interrupted";

    if (aborted === null) {
      options.onStart?.({
        run_id: run,
        url,
        config: { ...cfg, url },
        clients_connected: openCount,
        connect_seconds: connectSeconds,
        connect_errors: { ...connectErrors },
        server_pid: rssPid,
        server_process: server?.commandLine ?? null,
        rss_before_clients_bytes: rssBefore,
        rss_source: rssSource,
        metrics_url: metricsAt,
      });
      sendingStarted = true;
      intervalsStart = performance.now();
      agg = new IntervalAggregator(intervalsStart);
      const endAt = intervalsStart + cfg.minutes * 60_000;
      const sending = sendLoop();
      for (let j = n - cfg.churn; j < n; j++) {
        track(churnTask(j, intervalsStart, endAt));
      }
      for (let k = 1;; k++) {
        const target = Math.min(intervalsStart + k * intervalMs, endAt);
        await sleep(target - performance.now(), halt.signal);
        const now = performance.now();
        // The last cut: a remainder under MIN_INTERVAL_MS is not worth one.
        const last = halt.signal.aborted || target >= endAt - MIN_INTERVAL_MS;
        if (last && agg.sinceCut(now) < MIN_INTERVAL_MS) break;
        const reading = await scrape();
        const report = agg.cut(now, snapshot(reading));
        options.onInterval?.(report);
        if (last) break;
        if (server !== null && statusBytes(server.pid, "VmRSS") === null) {
          aborted = "the server process exited";
        } else if (openCount === 0) {
          aborted = "every client is disconnected (server gone?)";
        }
        if (aborted !== null) break;
      }
      elapsedS = round((performance.now() - intervalsStart) / 1000, 3);
      halt.abort();
      await sending;
      // Drain: wait for in-flight messages to reach the stable clients.
      const drainDeadline = performance.now() + DRAIN_MS;
      while (performance.now() < drainDeadline) {
        let complete = true;
        for (const session of slots) {
          if (
            session !== null && session.stable && session.open &&
            session.tracker.distinct(0) < sentTotal
          ) {
            complete = false;
            break;
          }
        }
        if (complete) break;
        await sleep(DRAIN_POLL_MS);
      }
    }
  } finally {
    halt.abort();
    closing = true;
    options.signal?.removeEventListener("abort", onAbort);
    while (tasks.size > 0) await Promise.all([...tasks]);
    await Promise.all(
      slots.map((session) => {
        if (session === null) return undefined;
        session.closing = true;
        return session.client?.close(CLOSE_CAP_MS);
      }),
    );
    if (server !== null) serverExitCode = await server.stop();
  }

  // Summary.
  const stable = {
    clients: 0,
    complete: 0,
    lost: 0,
    duplicated: 0,
    out_of_order: 0,
  };
  const others = { lost: retiredTotals.lost, duplicated: 0, out_of_order: 0 };
  others.duplicated = retiredTotals.duplicated;
  others.out_of_order = retiredTotals.outOfOrder;
  for (const session of slots) {
    if (session === null || session.retired) continue;
    if (session.stable) {
      const lost = session.tracker.lost(0, sent);
      stable.clients++;
      stable.lost += lost;
      stable.duplicated += session.tracker.duplicated;
      stable.out_of_order += session.tracker.outOfOrder + session.early;
      if (lost === 0 && session.tracker.duplicated === 0) stable.complete++;
    } else {
      // Rebased: expected is what each sender sent since this one's first.
      const base = session.base;
      const expected = sent.map((total, s) =>
        base === null ? total : base[s] < 0 ? 0 : total - base[s]
      );
      others.lost += session.tracker.lost(0, expected);
      others.duplicated += session.tracker.duplicated;
      others.out_of_order += session.tracker.outOfOrder + session.early;
    }
  }
  const reports = agg.reports;
  const overall = agg.overall;
  const ms = (us: number): number => round(us / 1000, 3);
  return {
    config: { ...cfg, url },
    url,
    run_id: run,
    started_at: startedAt,
    elapsed_s: elapsedS,
    interrupted,
    aborted: aborted === "interrupted" ? null : aborted,
    intervals: reports.length,
    clients_connected: clientsConnected,
    connect_seconds: connectSeconds,
    messages_sent: sentTotal,
    skipped_sends: skipped,
    skipped_sender_down: skippedSenderDown,
    deliveries: agg.deliveries,
    deliveries_total: deliveriesTotal,
    delivered_per_sec: elapsedS > 0 ? Math.round(agg.deliveries / elapsedS) : 0,
    offered_deliveries_per_sec: cfg.rate,
    latency_ms: {
      count: overall.count,
      p50: ms(overall.percentile(50)),
      p90: ms(overall.percentile(90)),
      p99: ms(overall.percentile(99)),
      p999: ms(overall.percentile(99.9)),
      max: ms(overall.max),
    },
    lost: stable.lost + others.lost,
    duplicated: stable.duplicated + others.duplicated,
    out_of_order: stable.out_of_order + others.out_of_order,
    stable,
    sessions: {
      count: Math.max(0, sessionCount - clientsConnected),
      reconnects,
      ...others,
    },
    evictions,
    server_evictions: lastServerEvictions,
    connect_errors: connectErrors,
    server_error_codes: serverErrorCodes,
    foreign_messages: foreign,
    server_pid: rssPid,
    server_process: server?.commandLine ?? null,
    server_exit_code: serverExitCode,
    rss_source: rssSource,
    rss_before_clients_bytes: rssBefore,
    rss: summarizeRss(
      reports.map((r) => ({ elapsed_s: r.elapsed_s, bytes: r.rss_bytes })),
    ),
    series: {
      elapsed_s: reports.map((r) => r.elapsed_s),
      delivered_per_sec: reports.map((r) => r.delivered_per_sec),
      p50_ms: reports.map((r) => r.latency_ms.p50),
      p99_ms: reports.map((r) => r.latency_ms.p99),
      rss_bytes: reports.map((r) => r.rss_bytes),
      clients_open: reports.map((r) => r.clients_open),
    },
  };
}

// ---------------------------------------------------------------------------
// CLI
// ---------------------------------------------------------------------------

const HELP =
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

/** Slack on top of the run's own caps before the CLI gives up: 60 s. */
const CLI_SLACK_S = 60;
/** How long a started server may take to print its URL, and to stop. */
const SERVER_START_STOP_S = 65;

/** Pretty JSON with number arrays on one line each. */
function prettyJson(value: unknown): string {
  return JSON.stringify(value, null, 2).replace(
    /\[\s*((?:-?[\d.e+]+|null)(?:,\s*(?:-?[\d.e+]+|null))*)\s*\]/g,
    (_, inner: string) => `[${inner.replace(/\s+/g, "").replace(/,/g, ", ")}]`,
  );
}

async function main(): Promise<void> {
  let args: SoakArgs;
  let cfg: ResolvedSoakOptions;
  try {
    args = parseSoakArgs(Deno.args);
    cfg = resolveSoakOptions(args.options);
  } catch (error) {
    console.error(`soak: ${(error as Error).message}`);
    Deno.exit(2);
  }
  if (args.help) {
    console.log(HELP);
    return;
  }
  const json = args.json;
  const capS = CONNECT_CAP_BASE_S + cfg.clients * CONNECT_CAP_PER_CLIENT_S +
    cfg.minutes * 60 + cfg.interval + SERVER_START_STOP_S +
    (DRAIN_MS + 2 * CLOSE_CAP_MS + METRICS_TIMEOUT_MS) / 1000 + CLI_SLACK_S;
  const hardCap = setTimeout(() => {
    console.error(
      `soak: hard time cap of ${capS.toFixed(0)} s reached; exiting`,
    );
    Deno.exit(3);
  }, capS * 1000);
  Deno.unrefTimer(hardCap);

  const controller = new AbortController();
  function onSigint(): void {
    if (controller.signal.aborted) {
      console.error("soak: second interrupt; exiting without a summary");
      Deno.exit(130);
    }
    console.error("soak: interrupted; finishing (Ctrl-C again to quit now)");
    controller.abort();
  }
  Deno.addSignalListener("SIGINT", onSigint);

  function onStart(info: SoakStart): void {
    if (json) {
      console.log(JSON.stringify({ type: "start", ...info }));
      return;
    }
    const c = info.config;
    console.log(
      `soak: run ${info.run_id}: ${c.clients} clients (${c.senders} senders, ` +
        `${c.churn} churning) -> ${info.url}, ${c.rate} deliveries/s offered ` +
        `(${round(c.rate / c.clients, 2)} msg/s) for ${c.minutes} min, ` +
        `a line every ${c.interval} s`,
    );
    if (info.server_process !== null) {
      console.log(
        `soak: server pid ${info.server_pid}: ${info.server_process}`,
      );
    }
    const failed = Object.entries(info.connect_errors).map(([why, k]) =>
      `${k}× ${why}`
    );
    if (failed.length > 0) {
      console.log(`soak: connect failures: ${failed.join("; ")}`);
    }
    console.log(
      `soak: connected ${info.clients_connected}/${c.clients} in ` +
        `${info.connect_seconds} s; RSS ${
          info.rss_source === null
            ? "not measurable (use --server or --server-pid)"
            : `from ${info.rss_source === "proc" ? "/proc" : "/metrics"}, ${
              info.rss_before_clients_bytes === null
                ? "n/a"
                : mib(info.rss_before_clients_bytes)
            } before the clients`
        }; ${
          info.metrics_url === null
            ? "no /metrics"
            : `evictions from ${info.metrics_url}`
        }`,
    );
  }
  function onInterval(report: IntervalReport): void {
    console.log(
      json
        ? JSON.stringify({ type: "interval", ...report })
        : formatInterval(report),
    );
  }

  let summary: SoakSummary;
  try {
    if (!json) console.error(`soak: connecting ${cfg.clients} clients...`);
    summary = await runSoak({
      ...args.options,
      signal: controller.signal,
      onStart,
      onInterval,
    });
  } catch (error) {
    console.error(`soak: ${(error as Error).message}`);
    Deno.exit(1);
  } finally {
    Deno.removeSignalListener("SIGINT", onSigint);
  }
  console.log(
    json
      ? JSON.stringify({ type: "summary", ...summary })
      : prettyJson(summary),
  );
  const clean = summary.aborted === null && summary.lost === 0 &&
    summary.duplicated === 0 && summary.out_of_order === 0 &&
    summary.clients_connected === summary.config.clients;
  Deno.exit(clean ? 0 : 1);
}

if (import.meta.main) await main();

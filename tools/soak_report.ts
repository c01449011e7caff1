/**
 * What the soak tool reports: a run cut into intervals (rates, latency
 * percentiles, counters so far), each as a line people can grep, and the
 * RSS trend that shows a leak.
 *
 * @module
 */

import { LatencyHistogram, round } from "./stats.ts";

/** Close codes hubchat sends, by what they mean (for the report lines). */
const CLOSE_CODE_NAMES: Record<string, string> = {
  "1001": "going_away",
  "1003": "binary",
  "1008": "rate_limit",
  "1009": "too_big",
  "4008": "slow_consumer",
};

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
 * import { IntervalAggregator } from "./soak_report.ts";
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
 * import { summarizeRss } from "./soak_report.ts";
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

/**
 * Bytes in MiB with one decimal, as report lines show memory.
 *
 * @example
 * ```ts
 * import { mib } from "./soak_report.ts";
 * mib(52428800); // "50.0MiB"
 * ```
 */
export function mib(bytes: number): string {
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
 * import { formatInterval, IntervalAggregator } from "./soak_report.ts";
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

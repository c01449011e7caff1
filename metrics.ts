/**
 * What `/metrics` shows. First a tiny metrics registry rendered in the
 * Prometheus text exposition format, version 0.0.4: counters (optionally
 * with one label), gauges and histograms. No packages, no timers; the hot
 * paths are a field increment (counters, gauges) or a short loop over a few
 * buckets (histograms). Then hubchat's own series on it,
 * {@linkcode ServerMetrics}: hot paths only bump numbers; the outbox depth
 * histogram is built when Prometheus scrapes, from the clients as they are.
 *
 * ```ts
 * import { PROMETHEUS_CONTENT_TYPE, Registry } from "./metrics.ts";
 * const registry = new Registry();
 * const sent = registry.counter("hubchat_messages_total", "Chat lines sent.");
 * sent.inc();
 * new Response(registry.render(), {
 *   headers: { "content-type": PROMETHEUS_CONTENT_TYPE },
 * });
 * ```
 *
 * @module
 */

import type { Client } from "./client.ts";
import { utf8Length } from "./protocol.ts";

/** The `Content-Type` of {@linkcode Registry.render}'s output. */
export const PROMETHEUS_CONTENT_TYPE =
  "text/plain; version=0.0.4; charset=utf-8";

/**
 * Most buckets a histogram may have. Each observation walks them, so the
 * bound keeps `observe` cheap; 15 spans 1 ms to 10 s at a useful resolution.
 */
export const MAX_BUCKETS = 15;

/**
 * Most distinct values a labelled counter keeps. Label values must come from
 * a bounded set (error codes, close codes); this guards memory and the
 * scraper if one is fed from peer input by mistake. Values beyond it are
 * counted under {@linkcode OVERFLOW_LABEL_VALUE}.
 */
export const MAX_LABEL_VALUES = 256;

/** The label value that collects values beyond {@linkcode MAX_LABEL_VALUES}. */
export const OVERFLOW_LABEL_VALUE = "_other";

/** Prometheus metric names. */
const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
/** Prometheus label names; `__` is reserved for Prometheus itself. */
const LABEL_NAME = /^(?!__)[a-zA-Z_][a-zA-Z0-9_]*$/;

/** The label names a counter takes: none, or exactly one. */
export type LabelNames = readonly [] | readonly [string];

/** Anything a {@linkcode Registry} can render. */
export interface Metric {
  /** The metric's name, like `hubchat_messages_total`. */
  readonly name: string;
  /** One line saying what it measures. */
  readonly help: string;
  /** Appends the metric's HELP, TYPE and sample lines to `lines`. */
  renderTo(lines: string[]): void;
}

/** Formats a sample value as Prometheus does (`+Inf`, `-Inf`, `NaN`). */
function formatValue(value: number): string {
  if (value === Infinity) return "+Inf";
  if (value === -Infinity) return "-Inf";
  return String(value); // "NaN" for NaN, as the format wants
}

/** Escapes a label value: backslash, double quote and newline. */
function escapeLabelValue(value: string): string {
  return value.replace(/[\\"\n]/g, escapeChar);
}

/** Escapes HELP text: backslash and newline (quotes are fine there). */
function escapeHelp(help: string): string {
  return help.replace(/[\\\n]/g, escapeChar);
}

function escapeChar(char: string): string {
  return char === "\n" ? "\\n" : `\\${char}`;
}

function header(lines: string[], metric: Metric, type: string): void {
  lines.push(`# HELP ${metric.name} ${escapeHelp(metric.help)}`);
  lines.push(`# TYPE ${metric.name} ${type}`);
}

/**
 * A number that only goes up, with no label or exactly one. Unlabelled,
 * `inc()` adds to a field; labelled, it adds to a `Map` entry keyed by the
 * label's value.
 *
 * @example
 * ```ts
 * import { Registry } from "./metrics.ts";
 * const registry = new Registry();
 * const errors = registry.counter(
 *   "hubchat_errors_total",
 *   "Frames refused, by error code.",
 *   ["code"],
 * );
 * errors.inc("invalid_json");
 * errors.inc("empty_text", 0); // shows as 0 before the first one
 * ```
 */
export class Counter implements Metric {
  /** The metric's name. */
  readonly name: string;
  /** What it counts. */
  readonly help: string;
  /** The label's name, or null for an unlabelled counter. */
  readonly labelName: string | null;
  #value = 0;
  #byLabel = new Map<string, number>();

  /** Use {@linkcode Registry.counter}, which also registers the counter. */
  constructor(name: string, help: string, labelNames: LabelNames = []) {
    this.name = name;
    this.help = help;
    if (labelNames.length > 1) {
      throw new TypeError(
        `counter ${name} has ${labelNames.length} labels; expected at most one`,
      );
    }
    const labelName = labelNames[0] ?? null;
    if (labelName !== null && (!LABEL_NAME.test(labelName))) {
      throw new TypeError(
        `label name "${labelName}" of ${name} is invalid; expected [a-zA-Z_][a-zA-Z0-9_]* not starting with "__"`,
      );
    }
    this.labelName = labelName;
  }

  /**
   * Adds `by` (default 1) to the counter, or to the series of `label` (the
   * label's value) for a labelled counter. Throws a `TypeError` when a label
   * is given to an unlabelled counter or missing on a labelled one, and a
   * `RangeError` when `by` is negative or not finite (counters only go up).
   */
  inc(label?: string, by = 1): void {
    if (!(by >= 0 && by < Infinity)) {
      throw new RangeError(
        `counter ${this.name} incremented by ${by}; expected a finite number >= 0`,
      );
    }
    if (this.labelName === null) {
      if (label !== undefined) {
        throw new TypeError(
          `counter ${this.name} has no label; got "${label}"`,
        );
      }
      this.#value += by;
      return;
    }
    if (label === undefined) {
      throw new TypeError(
        `counter ${this.name} needs a value for label "${this.labelName}"`,
      );
    }
    const current = this.#byLabel.get(label);
    if (current !== undefined) {
      this.#byLabel.set(label, current + by);
    } else if (this.#byLabel.size < MAX_LABEL_VALUES) {
      this.#byLabel.set(label, by);
    } else {
      const other = this.#byLabel.get(OVERFLOW_LABEL_VALUE) ?? 0;
      this.#byLabel.set(OVERFLOW_LABEL_VALUE, other + by);
    }
  }

  /** The current value, of the series of `label` for a labelled counter. */
  get(label?: string): number {
    if (this.labelName === null) return this.#value;
    return this.#byLabel.get(label ?? "") ?? 0;
  }

  /** Appends HELP, TYPE and samples (label values sorted) to `lines`. */
  renderTo(lines: string[]): void {
    header(lines, this, "counter");
    if (this.labelName === null) {
      lines.push(`${this.name} ${formatValue(this.#value)}`);
      return;
    }
    const labels = [...this.#byLabel.keys()].sort();
    for (const label of labels) {
      lines.push(
        `${this.name}{${this.labelName}="${escapeLabelValue(label)}"} ${
          formatValue(this.#byLabel.get(label)!)
        }`,
      );
    }
  }
}

/**
 * A number that goes up and down, set by the program or read from a
 * callback at render time.
 *
 * @example
 * ```ts
 * import { Registry } from "./metrics.ts";
 * const registry = new Registry();
 * const clients = registry.gauge("hubchat_clients", "Clients connected.");
 * clients.inc();
 * clients.dec();
 * // Or read at scrape time, with nothing to keep in step:
 * const seconds = () => performance.now() / 1000;
 * registry.gauge("hubchat_uptime_seconds", "Seconds since start.", seconds);
 * ```
 */
export class Gauge implements Metric {
  /** The metric's name. */
  readonly name: string;
  /** What it measures. */
  readonly help: string;
  #value = 0;
  #collect: (() => number) | null;

  /** Use {@linkcode Registry.gauge}, which also registers the gauge. */
  constructor(name: string, help: string, collect?: () => number) {
    this.name = name;
    this.help = help;
    this.#collect = collect ?? null;
  }

  /** Sets the value. */
  set(value: number): void {
    this.#value = value;
  }

  /** Adds `by` (default 1). */
  inc(by = 1): void {
    this.#value += by;
  }

  /** Subtracts `by` (default 1). */
  dec(by = 1): void {
    this.#value -= by;
  }

  /** The current value (the callback's answer, for a collected gauge). */
  get(): number {
    return this.#collect === null ? this.#value : this.#collect();
  }

  /** Appends HELP, TYPE and the sample to `lines`. */
  renderTo(lines: string[]): void {
    header(lines, this, "gauge");
    lines.push(`${this.name} ${formatValue(this.get())}`);
  }
}

/**
 * Counts observations into buckets of upper bounds, and keeps their sum and
 * count. Rendered cumulatively (`_bucket{le="..."}` up to `+Inf`, `_sum`,
 * `_count`); stored per bucket, so `observe` stops at the first bucket that
 * fits and allocates nothing.
 *
 * @example
 * ```ts
 * import { Registry } from "./metrics.ts";
 * const registry = new Registry();
 * const latency = registry.histogram(
 *   "hubchat_broadcast_seconds",
 *   "Time to fan one message out.",
 *   [0.0001, 0.001, 0.01, 0.1],
 * );
 * latency.observe(0.0004);
 * ```
 */
export class Histogram implements Metric {
  /** The metric's name. */
  readonly name: string;
  /** What it measures. */
  readonly help: string;
  #bounds: Float64Array;
  /** One slot per bound, then one for `+Inf`; not cumulative. */
  #counts: Float64Array;
  #sum = 0;
  #count = 0;

  /** Use {@linkcode Registry.histogram}, which also registers it. */
  constructor(name: string, help: string, buckets: readonly number[]) {
    this.name = name;
    this.help = help;
    if (buckets.length === 0 || buckets.length > MAX_BUCKETS) {
      throw new RangeError(
        `histogram ${name} has ${buckets.length} buckets; expected 1 to ${MAX_BUCKETS} (+Inf is added)`,
      );
    }
    for (let i = 0; i < buckets.length; i++) {
      if (
        !Number.isFinite(buckets[i]) || (i > 0 && buckets[i] <= buckets[i - 1])
      ) {
        throw new RangeError(
          `histogram ${name} buckets are [${
            buckets.join(", ")
          }]; expected finite, strictly increasing bounds`,
        );
      }
    }
    this.#bounds = Float64Array.from(buckets);
    this.#counts = new Float64Array(buckets.length + 1);
  }

  /** Records one value. `NaN` is ignored: it would poison `_sum` forever. */
  observe(value: number): void {
    if (value !== value) return; // NaN
    const bounds = this.#bounds;
    let i = 0;
    while (i < bounds.length && value > bounds[i]) i++;
    this.#counts[i]++;
    this.#sum += value;
    this.#count++;
  }

  /** How many values were observed. */
  get count(): number {
    return this.#count;
  }

  /** The sum of the values observed. */
  get sum(): number {
    return this.#sum;
  }

  /** Appends HELP, TYPE, the cumulative buckets, sum and count to `lines`. */
  renderTo(lines: string[]): void {
    header(lines, this, "histogram");
    let cumulative = 0;
    for (let i = 0; i < this.#counts.length; i++) {
      cumulative += this.#counts[i];
      const le = i < this.#bounds.length
        ? formatValue(this.#bounds[i])
        : "+Inf";
      lines.push(`${this.name}_bucket{le="${le}"} ${formatValue(cumulative)}`);
    }
    lines.push(`${this.name}_sum ${formatValue(this.#sum)}`);
    lines.push(`${this.name}_count ${formatValue(this.#count)}`);
  }
}

/**
 * A set of metrics, rendered together in registration order. Names are
 * checked when registered, and each may be registered once.
 *
 * @example
 * ```ts
 * import { Registry } from "./metrics.ts";
 * const registry = new Registry();
 * registry.counter("hubchat_connections_total", "Connections accepted.").inc();
 * registry.render();
 * // # HELP hubchat_connections_total Connections accepted.
 * // # TYPE hubchat_connections_total counter
 * // hubchat_connections_total 1
 * ```
 */
export class Registry {
  #metrics = new Map<string, Metric>();

  /** Creates and registers a counter with no label or exactly one. */
  counter(name: string, help: string, labelNames: LabelNames = []): Counter {
    return this.register(new Counter(name, help, labelNames));
  }

  /**
   * Creates and registers a gauge; with `collect`, its value is read from it
   * at every render instead of being set.
   */
  gauge(name: string, help: string, collect?: () => number): Gauge {
    return this.register(new Gauge(name, help, collect));
  }

  /**
   * Creates and registers a histogram with the given upper bounds (1 to 15,
   * finite, strictly increasing; `+Inf` is added).
   */
  histogram(name: string, help: string, buckets: readonly number[]): Histogram {
    return this.register(new Histogram(name, help, buckets));
  }

  /**
   * Registers a metric. Throws a `TypeError` for an invalid or already
   * registered name.
   */
  register<M extends Metric>(metric: M): M {
    if (!METRIC_NAME.test(metric.name)) {
      throw new TypeError(
        `metric name "${metric.name}" is invalid; expected [a-zA-Z_:][a-zA-Z0-9_:]*`,
      );
    }
    if (this.#metrics.has(metric.name)) {
      throw new TypeError(
        `metric ${metric.name} is already registered; expected unique names`,
      );
    }
    this.#metrics.set(metric.name, metric);
    return metric;
  }

  /** Every metric in the text exposition format 0.0.4, ending in `\n`. */
  render(): string {
    const lines: string[] = [];
    for (const metric of this.#metrics.values()) metric.renderTo(lines);
    return lines.length === 0 ? "" : lines.join("\n") + "\n";
  }
}

// ------------------------------------------------------ hubchat's series

/**
 * Outbox depth buckets, in messages: 0 is the healthy case, the bound (256)
 * is where a stalled client is evicted.
 */
const OUTBOX_BUCKETS = [0, 1, 4, 16, 64, 128, 256];

/**
 * Fan-out time buckets, in seconds: from a few µs (a small room) to the
 * tens of ms a 10,000-client room would take.
 */
const FANOUT_BUCKETS = [
  0.00001,
  0.00003,
  0.0001,
  0.0003,
  0.001,
  0.003,
  0.01,
  0.03,
  0.1,
];

/**
 * Publish-to-delivery buckets, in seconds: a Redis round trip on one
 * machine is a fraction of a millisecond, a gap fill or a busy node tens of
 * milliseconds, a reconnect a second or more.
 */
const DELIVERY_BUCKETS = [
  0.0005,
  0.001,
  0.002,
  0.005,
  0.01,
  0.02,
  0.05,
  0.1,
  0.5,
  1,
  5,
];

function residentBytes(): number {
  return Deno.memoryUsage().rss;
}

function heapUsedBytes(): number {
  return Deno.memoryUsage().heapUsed;
}

function externalBytes(): number {
  return Deno.memoryUsage().external;
}

/** Where the metrics read live state from. */
export interface MetricsSources {
  /** Open WebSocket connections now. */
  connectionsOpen(): number;
  /** Upgrades waiting for their turn to be admitted now (pacer.ts). */
  upgradesWaiting?: () => number;
  /** Every client whose outbox depth is to be sampled. */
  clients(): Iterable<Client>;
  /** What is degraded now; `/metrics` shows it as gauges too. */
  health?: Health;
}

/** A part of the server that can be degraded while the rest goes on. */
export type HealthPart = "storage" | "accept" | "redis";

/**
 * What is degraded now, part by part, as `/healthz` tells it: the server
 * keeps serving what it can, and says plainly what it cannot.
 *
 * @example
 * ```ts
 * import { Health } from "./metrics.ts";
 * const health = new Health();
 * health.set("storage", "failing"); // true: it changed
 * health.report(3); // { status: "degraded", clients: 3, storage: "failing" }
 * health.set("storage", null);
 * health.ok; // true
 * ```
 */
export class Health {
  #problems = new Map<HealthPart, string>();

  /** True when nothing is degraded. */
  get ok(): boolean {
    return this.#problems.size === 0;
  }

  /** The state of one part: its problem, or null when it is fine. */
  get(part: HealthPart): string | null {
    return this.#problems.get(part) ?? null;
  }

  /**
   * Records a part's problem (null: fine again); true when that changed
   * its state, so the caller logs each change once, not each failure.
   */
  set(part: HealthPart, problem: string | null): boolean {
    if ((this.#problems.get(part) ?? null) === problem) return false;
    if (problem === null) this.#problems.delete(part);
    else this.#problems.set(part, problem);
    return true;
  }

  /** The `/healthz` body: `ok` or `degraded`, the clients, each problem. */
  report(clients: number): Record<string, string | number> {
    const body: Record<string, string | number> = {
      status: this.ok ? "ok" : "degraded",
      clients,
    };
    for (const [part, problem] of this.#problems) body[part] = problem;
    return body;
  }
}

/** Samples outbox depths at scrape time into a fresh histogram. */
class OutboxDepth implements Metric {
  readonly name = "hubchat_outbox_depth";
  readonly help =
    "Messages waiting in each client's outbox, sampled when scraped.";
  #clients: () => Iterable<Client>;

  constructor(clients: () => Iterable<Client>) {
    this.#clients = clients;
  }

  renderTo(lines: string[]): void {
    const snapshot = new Histogram(this.name, this.help, OUTBOX_BUCKETS);
    for (const client of this.#clients()) snapshot.observe(client.pending);
    snapshot.renderTo(lines);
  }
}

/**
 * hubchat's metrics.
 *
 * @example
 * ```ts
 * import { ServerMetrics } from "./metrics.ts";
 * const metrics = new ServerMetrics({
 *   connectionsOpen: () => 0,
 *   clients: () => [],
 * });
 * metrics.errors.inc("invalid_json");
 * console.log(metrics.render());
 * ```
 */
export class ServerMetrics {
  /** The registry everything is registered on. */
  readonly registry: Registry = new Registry();
  /** Connections accepted since start. */
  readonly connections: Counter;
  /** Frames received from clients, refused ones included. */
  readonly received: Counter;
  /** Messages handed to clients' outboxes. */
  readonly delivered: Counter;
  /** UTF-8 bytes of those messages (frame headers not counted). */
  readonly deliveredBytes: Counter;
  /** Refused frames and other client errors, by code. */
  readonly errors: Counter;
  /** Clients cut off, by cause. */
  readonly evictions: Counter;
  /** Upgrades refused before any socket existed, by reason. */
  readonly rejected: Counter;
  /** Seconds one broadcast took to reach every outbox. */
  readonly fanout: Histogram;
  /** History commits that failed (their lines were refused). */
  readonly storageFailures: Counter;
  /** Times accepting connections failed (file descriptors ran out). */
  readonly acceptFailures: Counter;
  /** Seconds from a line's publishing by any node to its hearing here. */
  readonly redisDelivery: Histogram;
  /** Lines fetched from Redis's stream to fill a gap in what was heard. */
  readonly redisGapsFilled: Counter;
  /** Nodes alive, as seen at the last heartbeat. */
  readonly redisNodes: Gauge;
  #redisUp: (() => boolean) | null = null;

  /** Registers every metric, reading live state from `sources`. */
  constructor(sources: MetricsSources) {
    const registry = this.registry;
    registry.gauge(
      "hubchat_connections",
      "Open WebSocket connections.",
      sources.connectionsOpen,
    );
    registry.gauge(
      "hubchat_upgrades_waiting",
      "Upgrades waiting for their turn to be admitted.",
      sources.upgradesWaiting ?? (() => 0),
    );
    this.connections = registry.counter(
      "hubchat_connections_total",
      "WebSocket connections accepted since start.",
    );
    this.received = registry.counter(
      "hubchat_messages_received_total",
      "Frames received from clients, refused ones included.",
    );
    this.delivered = registry.counter(
      "hubchat_messages_delivered_total",
      "Messages handed to client outboxes (one per recipient).",
    );
    this.deliveredBytes = registry.counter(
      "hubchat_delivered_bytes_total",
      "UTF-8 bytes of delivered messages, frame overhead not counted.",
    );
    this.errors = registry.counter(
      "hubchat_errors_total",
      "Refused frames and client errors, by code.",
      ["code"],
    );
    this.evictions = registry.counter(
      "hubchat_evictions_total",
      "Clients cut off, by cause (slow_consumer, rate_limit, idle).",
      ["cause"],
    );
    for (const cause of ["slow_consumer", "rate_limit", "idle"]) {
      this.evictions.inc(cause, 0);
    }
    this.rejected = registry.counter(
      "hubchat_rejected_upgrades_total",
      "Upgrades refused before a socket existed, by reason.",
      ["reason"],
    );
    registry.register(new OutboxDepth(sources.clients));
    this.storageFailures = registry.counter(
      "hubchat_storage_failures_total",
      "History commits that failed; their lines were refused, not sent.",
    );
    const health = sources.health;
    registry.gauge(
      "hubchat_storage_failing",
      "1 while history cannot be written (lines are refused), else 0.",
      () => (health !== undefined && health.get("storage") !== null ? 1 : 0),
    );
    registry.gauge(
      "process_resident_memory_bytes",
      "Resident memory of the server process (RSS).",
      residentBytes,
    );
    registry.gauge(
      "hubchat_heap_used_bytes",
      "Bytes in use on the JavaScript heap.",
      heapUsedBytes,
    );
    registry.gauge(
      "hubchat_external_memory_bytes",
      "Bytes held outside the JavaScript heap by JavaScript objects (buffers).",
      externalBytes,
    );
    this.fanout = registry.histogram(
      "hubchat_fanout_seconds",
      "Time one broadcast took to reach every recipient's outbox.",
      FANOUT_BUCKETS,
    );
    this.acceptFailures = registry.counter(
      "hubchat_accept_failures_total",
      "Times accepting connections failed (file descriptors ran out); " +
        "the server listens again by itself.",
    );
    registry.gauge(
      "hubchat_accept_failing",
      "1 while new connections cannot be accepted, else 0.",
      () => (health !== undefined && health.get("accept") !== null ? 1 : 0),
    );
    registry.gauge(
      "hubchat_redis_connected",
      "With --redis: 1 while connected to Redis, else 0 (0 without --redis).",
      () => (this.#redisUp?.() ? 1 : 0),
    );
    this.redisDelivery = registry.histogram(
      "hubchat_redis_delivery_seconds",
      "With --redis: time from a line's publishing (by any node) to its " +
        "hearing by this one.",
      DELIVERY_BUCKETS,
    );
    this.redisGapsFilled = registry.counter(
      "hubchat_redis_gaps_filled_total",
      "With --redis: lines fetched from the stream because their message " +
        "was not heard.",
    );
    this.redisNodes = registry.gauge(
      "hubchat_redis_nodes",
      "With --redis: hubchat nodes alive, as seen at the last heartbeat.",
    );
  }

  /** With --redis: where `hubchat_redis_connected` reads the connection. */
  redisConnected(isUp: () => boolean): void {
    this.#redisUp = isUp;
  }

  /** Records one broadcast: called once per message, not per recipient. */
  observeBroadcast(recipients: number, text: string, seconds: number): void {
    this.delivered.inc(undefined, recipients);
    this.deliveredBytes.inc(undefined, recipients * utf8Length(text));
    this.fanout.observe(seconds);
  }

  /** The Prometheus text exposition of every metric. */
  render(): string {
    return this.registry.render();
  }
}

/**
 * What `/metrics` shows: hubchat's counters, gauges and histograms on a
 * {@linkcode Registry}. Hot paths only bump numbers; the outbox depth
 * histogram is built when Prometheus scrapes, from the clients as they are.
 *
 * @module
 */

import type { Client } from "./client.ts";
import { type Counter, Histogram, type Metric, Registry } from "./metrics.ts";
import { utf8Length } from "./protocol.ts";

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
  /** Every client whose outbox depth is to be sampled. */
  clients(): Iterable<Client>;
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
 * import { ServerMetrics } from "./server_metrics.ts";
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

  /** Registers every metric, reading live state from `sources`. */
  constructor(sources: MetricsSources) {
    const registry = this.registry;
    registry.gauge(
      "hubchat_connections",
      "Open WebSocket connections.",
      sources.connectionsOpen,
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

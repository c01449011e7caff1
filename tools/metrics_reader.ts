/**
 * Reading a server's `/metrics` (Prometheus text, format 0.0.4): hubchat's
 * evictions by cause and open connections, and the standard resident memory,
 * each null when the server does not export it.
 *
 * @module
 */

/** A /metrics scrape slower than this is skipped for the interval. */
export const METRICS_TIMEOUT_MS = 2_000;

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
 * import { parsePrometheusText } from "./metrics_reader.ts";
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
 * import { readServerMetrics } from "./metrics_reader.ts";
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
 * import { metricsUrl } from "./metrics_reader.ts";
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
 * Fetches `url` as text within {@linkcode METRICS_TIMEOUT_MS}; throws on a
 * network error, the timeout, or a status other than 2xx.
 *
 * @example
 * ```ts
 * import { fetchText, readServerMetrics } from "./metrics_reader.ts";
 * readServerMetrics(await fetchText("http://127.0.0.1:8080/metrics"));
 * ```
 */
export async function fetchText(url: string): Promise<string> {
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

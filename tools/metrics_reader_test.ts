import assert from "node:assert/strict";
import {
  metricsUrl,
  parsePrometheusText,
  readServerMetrics,
} from "./metrics_reader.ts";

Deno.test("parsePrometheusText reads samples and skips the rest", () => {
  const text = [
    "# HELP hubchat_evictions_total Clients cut off.",
    "# TYPE hubchat_evictions_total counter",
    'hubchat_evictions_total{cause="idle"} 0',
    'hubchat_evictions_total{cause="slow_consumer"} 3',
    "hubchat_connections 42",
    'weird{a="x\\"y,z}",b="line\\nbreak"} 1.5 1700000000000',
    "process_resident_memory_bytes 1.2e+07",
    "up +Inf",
    "not a sample line",
    "bad_value{} abc",
    "",
  ].join("\n");
  const samples = parsePrometheusText(text);
  assert.deepEqual(samples.map((s) => s.name), [
    "hubchat_evictions_total",
    "hubchat_evictions_total",
    "hubchat_connections",
    "weird",
    "process_resident_memory_bytes",
    "up",
  ]);
  assert.deepEqual(samples[3].labels, { a: 'x"y,z}', b: "line\nbreak" });
  assert.equal(samples[3].value, 1.5);
  assert.equal(samples[5].value, Infinity);
  assert.deepEqual(readServerMetrics(text), {
    evictions: { idle: 0, slow_consumer: 3 },
    connections: 42,
    rssBytes: 12_000_000,
  });
  assert.deepEqual(readServerMetrics("<html>not metrics</html>"), {
    evictions: null,
    connections: null,
    rssBytes: null,
  });
});

Deno.test("metrics URL helper: metricsUrl", () => {
  assert.equal(
    metricsUrl("ws://127.0.0.1:8080/ws?x=1"),
    "http://127.0.0.1:8080/metrics",
  );
  assert.equal(metricsUrl("wss://chat.test/ws"), "https://chat.test/metrics");
});

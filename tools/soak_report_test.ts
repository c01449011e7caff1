import assert from "node:assert/strict";
import {
  formatInterval,
  IntervalAggregator,
  type IntervalReport,
  type IntervalSnapshot,
  summarizeRss,
} from "./soak_report.ts";

function snapshot(fields: Partial<IntervalSnapshot> = {}): IntervalSnapshot {
  return {
    sent: 0,
    skipped: 0,
    lost: 0,
    duplicated: 0,
    outOfOrder: 0,
    evictions: {},
    reconnects: 0,
    clientsOpen: 10,
    clients: 10,
    rssBytes: null,
    serverEvictions: null,
    serverConnections: null,
    ...fields,
  };
}

Deno.test("IntervalAggregator cuts per-interval rates and latencies", () => {
  const agg = new IntervalAggregator(1000);
  // Interval 1: 100 deliveries of 1..100 ms over 2 s.
  for (let i = 1; i <= 100; i++) agg.record(i * 1000);
  const first = agg.cut(3000, snapshot({ sent: 10, reconnects: 1 }));
  assert.equal(first.interval, 1);
  assert.equal(first.elapsed_s, 2);
  assert.equal(first.seconds, 2);
  assert.equal(first.sent, 10);
  assert.equal(first.delivered, 100);
  assert.equal(first.delivered_per_sec, 50);
  assert.equal(first.reconnects, 1);
  assert.ok(Math.abs(first.latency_ms.p50 - 50) < 1, `${first.latency_ms.p50}`);
  assert.ok(Math.abs(first.latency_ms.p99 - 99) < 2, `${first.latency_ms.p99}`);
  assert.equal(first.latency_ms.max, 100);
  // Interval 2 starts empty: its percentiles are its own, deltas are deltas.
  agg.record(5000);
  const evictions = { "4008": 2 };
  const second = agg.cut(
    4000,
    snapshot({ sent: 15, reconnects: 1, lost: 3, evictions }),
  );
  assert.equal(second.interval, 2);
  assert.equal(second.elapsed_s, 3);
  assert.equal(second.seconds, 1);
  assert.equal(second.sent, 5);
  assert.equal(second.delivered, 1);
  assert.equal(second.reconnects, 0);
  assert.equal(second.latency_ms.count, 1);
  assert.equal(second.latency_ms.max, 5);
  assert.equal(second.lost, 3);
  assert.equal(second.evicted, 2);
  evictions["4008"] = 99; // the report holds a copy
  assert.deepEqual(second.evictions, { "4008": 2 });
  // The run's histogram holds everything.
  assert.equal(agg.overall.count, 101);
  assert.equal(agg.deliveries, 101);
  assert.equal(agg.reports.length, 2);
  // An empty zero-length interval does not divide by zero.
  assert.equal(agg.cut(4000, snapshot({ sent: 15 })).delivered_per_sec, 0);
});

Deno.test("formatInterval prints key=value pairs", () => {
  const agg = new IntervalAggregator(0);
  agg.record(2500);
  const report: IntervalReport = agg.cut(
    10_000,
    snapshot({
      evictions: { "4008": 1, "1001": 0 },
      rssBytes: 50 * 1048576,
      serverEvictions: { slow_consumer: 1, idle: 0 },
      clientsOpen: 9,
      skipped: 4,
    }),
  );
  assert.equal(
    formatInterval(report),
    "t=10.0s delivered/s=0 p50=2.50ms p99=2.50ms lost=0 dup=0 ooo=0 " +
      "evicted=4008/slow_consumer:1 srv_evicted=slow_consumer:1 skipped=4 " +
      "clients=9/10 reconnects=0 rss=50.0MiB",
  );
  const bare = new IntervalAggregator(0).cut(1000, snapshot());
  assert.match(formatInterval(bare), /evicted=0 clients=10\/10 .* rss=n\/a$/);
});

Deno.test("summarizeRss reports max, growth and slope", () => {
  assert.deepEqual(summarizeRss([{ elapsed_s: 1, bytes: null }]), {
    samples: 0,
    first_bytes: null,
    last_bytes: null,
    max_bytes: null,
    growth_bytes: null,
    growth_percent: null,
    slope_bytes_per_minute: null,
  });
  const rss = summarizeRss([
    { elapsed_s: 60, bytes: 1000 },
    { elapsed_s: 120, bytes: null },
    { elapsed_s: 180, bytes: 1400 },
    { elapsed_s: 240, bytes: 1300 },
  ]);
  assert.equal(rss.samples, 3);
  assert.equal(rss.first_bytes, 1000);
  assert.equal(rss.last_bytes, 1300);
  assert.equal(rss.max_bytes, 1400);
  assert.equal(rss.growth_bytes, 300);
  assert.equal(rss.growth_percent, 30);
  // Points (1,1000) (3,1400) (4,1300) in minutes: Σdxdy/Σdx² = 533.3/4.667.
  assert.equal(rss.slope_bytes_per_minute, 114);
  assert.equal(summarizeRss([{ elapsed_s: 5, bytes: 7 }]).growth_bytes, 0);
});

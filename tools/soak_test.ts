import assert from "node:assert/strict";
import {
  formatInterval,
  IntervalAggregator,
  type IntervalReport,
  type IntervalSnapshot,
  metricsUrl,
  parsePrometheusText,
  parseSoakArgs,
  readServerMetrics,
  resolveSoakOptions,
  runSoak,
  soakServerCommand,
  summarizeRss,
} from "./soak.ts";
import { startServer } from "../server.ts";

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

Deno.test("parseSoakArgs and resolveSoakOptions", () => {
  const args = parseSoakArgs([
    "--server",
    "deno run -A main.ts",
    "--clients=200",
    "--minutes",
    "2",
    "--rate",
    "5000",
    "--interval",
    "5",
    "--churn",
    "4",
    "--size=100",
    "--json",
    "--server-as-is",
  ]);
  assert.equal(args.help, false);
  assert.equal(args.json, true);
  assert.deepEqual(args.options, {
    server: "deno run -A main.ts",
    clients: 200,
    minutes: 2,
    rate: 5000,
    interval: 5,
    churn: 4,
    size: 100,
    serverAsIs: true,
  });
  assert.equal(parseSoakArgs(["-h"]).help, true);
  assert.throws(() => parseSoakArgs(["--bogus"]), /unknown option "--bogus"/);
  assert.throws(() => parseSoakArgs(["--rate", "fast"]), /not a number/);
  assert.throws(() => parseSoakArgs(["--minutes"]), /needs a value/);

  const o = resolveSoakOptions({});
  assert.equal(o.url, "ws://127.0.0.1:8080/ws");
  assert.equal(o.clients, 100);
  assert.equal(o.senders, 10);
  assert.equal(o.interval, 10);
  assert.equal(o.churn, 0);
  assert.equal(resolveSoakOptions({ clients: 5, churn: 3 }).senders, 2);
  assert.throws(
    () => resolveSoakOptions({ clients: 5, churn: 5 }),
    /--churn is 5; expected a whole number from 0 to 4/,
  );
  assert.throws(
    () => resolveSoakOptions({ clients: 5, churn: 2, senders: 4 }),
    /--senders is 4; expected a whole number from 1 to 3/,
  );
  assert.throws(() => resolveSoakOptions({ rate: 0 }), /--rate is 0/);
  assert.throws(() => resolveSoakOptions({ minutes: -1 }), /--minutes is -1/);
  assert.throws(() => resolveSoakOptions({ size: 5 }), /--size is 5/);
});

Deno.test("server command and metrics URL helpers", () => {
  assert.equal(
    soakServerCommand("deno run -A main.ts", false),
    "deno run -A main.ts --rate 0 --max-connections-per-ip 0",
  );
  assert.equal(
    soakServerCommand("deno run -A main.ts --rate=50", false),
    "deno run -A main.ts --rate=50 --max-connections-per-ip 0",
  );
  assert.equal(
    soakServerCommand("x --max-connections-per-ip 5 --rate 1", false),
    "x --max-connections-per-ip 5 --rate 1",
  );
  assert.equal(soakServerCommand("bun s.ts", true), "bun s.ts");
  assert.equal(
    metricsUrl("ws://127.0.0.1:8080/ws?x=1"),
    "http://127.0.0.1:8080/metrics",
  );
  assert.equal(metricsUrl("wss://chat.test/ws"), "https://chat.test/metrics");
});

Deno.test("runSoak against hubchat: no loss, dupes or disorder", async () => {
  const server = await startServer({
    port: 0,
    hostname: "127.0.0.1",
    ratePerSecond: 0, // the soak floods from one address by design
    maxConnectionsPerIp: 0,
  });
  const lines: IntervalReport[] = [];
  const hasProc = (() => {
    try {
      Deno.statSync(`/proc/${Deno.pid}/status`);
      return true;
    } catch {
      return false;
    }
  })();
  try {
    const summary = await runSoak({
      url: server.url,
      serverPid: Deno.pid, // the server shares this process
      clients: 20,
      minutes: 0.05, // 3 s
      interval: 1,
      rate: 2000, // 100 messages/s
      churn: 3,
      onInterval: (report) => lines.push(report),
    });
    assert.equal(summary.aborted, null);
    assert.equal(summary.interrupted, false);
    assert.equal(summary.clients_connected, 20);
    assert.ok(summary.intervals >= 3, `${summary.intervals} intervals`);
    assert.equal(lines.length, summary.intervals);
    assert.ok(summary.messages_sent > 0);
    // Clients that stayed connected got everything, once, in order.
    assert.ok(summary.stable.clients >= 17, `${summary.stable.clients}`);
    assert.equal(summary.stable.lost, 0);
    assert.equal(summary.stable.duplicated, 0);
    assert.equal(summary.stable.out_of_order, 0);
    assert.equal(summary.stable.complete, summary.stable.clients);
    // Churned connections: nothing missing between their first and last.
    assert.ok(
      summary.sessions.reconnects >= 3,
      `${summary.sessions.reconnects}`,
    );
    assert.equal(summary.sessions.duplicated, 0);
    assert.equal(summary.sessions.out_of_order, 0);
    assert.deepEqual(summary.evictions, {});
    assert.deepEqual(summary.server_error_codes, {});
    assert.deepEqual(summary.server_evictions, {
      idle: 0,
      rate_limit: 0,
      slow_consumer: 0,
    });
    assert.ok(summary.latency_ms.count > 0);
    assert.equal(summary.series.elapsed_s.length, summary.intervals);
    if (hasProc) {
      assert.equal(summary.rss_source, "proc");
      assert.equal(summary.rss.samples, summary.intervals);
      assert.ok((summary.rss.max_bytes ?? 0) > 0);
      assert.ok(lines.every((r) => r.rss_bytes !== null));
    }
  } finally {
    await server.shutdown();
  }
});

Deno.test("runSoak stops early on its signal and still summarizes", async () => {
  const server = await startServer({
    port: 0,
    hostname: "127.0.0.1",
    ratePerSecond: 0,
    maxConnectionsPerIp: 0,
  });
  const controller = new AbortController();
  try {
    const summary = await runSoak({
      url: server.url,
      clients: 5,
      minutes: 10, // would run 10 minutes without the abort
      interval: 60,
      rate: 500,
      onStart: () => setTimeout(() => controller.abort(), 300),
      signal: controller.signal,
    });
    assert.equal(summary.interrupted, true);
    assert.equal(summary.aborted, null);
    assert.equal(summary.intervals, 1); // the partial one
    assert.ok(summary.elapsed_s < 30, `${summary.elapsed_s} s`);
    assert.equal(summary.stable.lost, 0);
  } finally {
    await server.shutdown();
  }
});

Deno.test("runSoak reports a server it cannot reach", async () => {
  const listener = Deno.listen({ port: 0, hostname: "127.0.0.1" });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close(); // nothing listens there now
  const summary = await runSoak({
    url: `ws://127.0.0.1:${port}/ws`,
    clients: 2,
    minutes: 0.01,
  });
  assert.equal(summary.aborted, "no client connected");
  assert.equal(summary.intervals, 0);
  assert.equal(summary.clients_connected, 0);
  assert.ok(Object.keys(summary.connect_errors).length > 0);
});

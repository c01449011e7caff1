import assert from "node:assert/strict";
import { runSoak } from "./soak.ts";
import type { IntervalReport } from "./soak_report.ts";
import { startServer } from "../server.ts";

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

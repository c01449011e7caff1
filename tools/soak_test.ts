import assert from "node:assert/strict";
import { runSoak } from "./soak.ts";
import type { IntervalReport } from "./soak_report.ts";
import { startServer } from "../server.ts";
import { type ChildExit, DenoChild } from "../testing/child_process.ts";
import { within } from "../testing/wait.ts";

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
    assert.equal(summary.passed, true, summary.verdict);
    assert.match(summary.verdict, /^PASS: 20 clients, [\d,]+ deliveries/);
    assert.equal(summary.config.url, `ws://127.0.0.1:${server.port}/ws`);
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
    // Cut short is no pass: the exit status is 1.
    assert.equal(summary.passed, false);
    assert.match(summary.verdict, /^FAIL: cut short after [\d.]+ s of 10 min/);
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
  assert.equal(summary.passed, false);
  assert.match(
    summary.verdict,
    /^FAIL: aborted: no client connected; 2 of 2 clients did not connect \(/,
  );
});

/** The soak tool's command line, run as a child process. */
const SOAK = new URL("./soak.ts", import.meta.url);

/** hubchat's entry point, by absolute path: the run's cwd is elsewhere. */
const MAIN = new URL("../main.ts", import.meta.url).pathname;

/**
 * The CLI run may take this long, in milliseconds: two Deno starts (the
 * tool, then the server) on a loaded 2-core machine, and about two seconds
 * of soak. Never asserted.
 */
const CLI_WAIT_MS = 90_000;

Deno.test("soak --server: PASS, exit 0, and no history written where it runs", async () => {
  const cwd = await Deno.makeTempDir({ prefix: "hubchat-soak-test-" });
  try {
    const child = DenoChild.spawn(SOAK, [
      "--server",
      `deno run -A ${MAIN}`,
      "--clients",
      "25", // more than hubchat's 20 per address: the cap must be off
      "--minutes",
      "0.02", // 1.2 s
      "--interval",
      "0.5",
      "--rate",
      "500",
      "--json",
    ], { cwd });
    let exit: ChildExit;
    try {
      await within(child.status, "the soak tool to exit", CLI_WAIT_MS);
    } finally {
      exit = await child.stop();
    }
    assert.equal(exit.status.code, 0, exit.stderr);
    const lastLine = exit.stderr.trimEnd().split("\n").at(-1) ?? "";
    assert.match(
      lastLine,
      /^PASS: 25 clients, [\d,]+ deliveries, nothing lost/,
    );
    const summary = JSON.parse(exit.stdout.trimEnd().split("\n").at(-1)!);
    assert.equal(summary.type, "summary");
    assert.equal(summary.verdict, lastLine);
    assert.equal(summary.config.url, summary.url);
    assert.match(summary.server_process, /--rate 0 --max-connections-per-ip 0/);
    const data = /--data (\S+)/.exec(summary.server_process)?.[1];
    assert.ok(data !== undefined && !data.startsWith(cwd));
    await assert.rejects(Deno.stat(data), Deno.errors.NotFound);
    assert.deepEqual([...Deno.readDirSync(cwd)], []);
  } finally {
    await Deno.remove(cwd, { recursive: true });
  }
});

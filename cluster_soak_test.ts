/**
 * The soak tool's chaos run against a real cluster: two hubchat nodes on
 * a Redis of the tool's own, a node killed and restarted, then Redis
 * killed and restarted (appendonly), under steady load; the run must pass
 * with nothing lost, duplicated or reordered.
 *
 * @module
 */

import assert from "node:assert/strict";
import { runSoak } from "./tools/soak.ts";

/** hubchat's entry point, by absolute path. */
const MAIN = new URL("./main.ts", import.meta.url).pathname;

Deno.test("soak chaos on two nodes and Redis: a node and Redis killed and restarted, PASS with nothing lost", async () => {
  // Each event a few seconds apart, so a loaded 2-core machine has the
  // restarted node up and its clients back before Redis goes away.
  const chaos =
    "kill-node:1@2s,restart-node:1@4s,kill-redis@8s,restart-redis@10s";
  const summary = await runSoak({
    server: `deno run -A ${MAIN}`,
    nodes: 2,
    redisServer: true,
    chaos,
    clients: 8,
    minutes: 0.3, // 18 s: the last event at 10 s, 8 s to settle
    interval: 1,
    rate: 800,
  });
  assert.deepEqual(
    summary.chaos.map((c) => [c.event, c.ok, c.error]),
    chaos.split(",").map((event) => [event, true, null]),
  );
  assert.equal(summary.aborted, null);
  assert.equal(summary.clients_connected, 8);
  assert.equal(summary.lost, 0);
  assert.equal(summary.duplicated, 0);
  assert.equal(summary.out_of_order, 0);
  assert.equal(summary.unacknowledged.dropped, 0);
  assert.deepEqual(summary.nodes?.map((n) => n.restarts), [0, 1]);
  assert.equal(summary.redis?.restarts, 1);
  // The node's clients came back; every client is connected at the end.
  assert.ok(summary.sessions.reconnects >= 4, `${summary.sessions.reconnects}`);
  assert.equal(summary.series.clients_open.at(-1), 8);
  assert.equal(summary.passed, true, summary.verdict);
});

import assert from "node:assert/strict";
import { parseChaos } from "./chaos.ts";

/** A run of two nodes and a Redis, a minute long. */
const RUN = { nodes: 2, redis: true, seconds: 60 };

Deno.test("parseChaos: events in time order, node 0 by default, s and m", () => {
  const events = parseChaos(
    " restart-redis@1m, kill-node:1@30s,restart-node:1@35 ,kill-redis@0.5m,kill-node@2",
    RUN,
  );
  assert.deepEqual(events.map((e) => [e.action, e.node, e.atS, e.text]), [
    ["kill-node", 0, 2, "kill-node:0@2s"],
    ["kill-node", 1, 30, "kill-node:1@30s"],
    ["kill-redis", 0, 30, "kill-redis@30s"],
    ["restart-node", 1, 35, "restart-node:1@35s"],
    ["restart-redis", 0, 60, "restart-redis@60s"],
  ]);
  // A restart of a node that runs is a graceful restart: allowed.
  assert.equal(parseChaos("restart-node@1", RUN).length, 1);
  assert.deepEqual(parseChaos("", RUN), []);
});

Deno.test("parseChaos explains what is wrong with an event", () => {
  /** Each schedule, and what its error says. */
  const cases: [string, RegExp][] = [
    ["explode@1s", /"explode@1s" is not one; expected ACTION\[:NODE\]@TIME/],
    ["kill-node@soon", /is not one/],
    [
      "kill-node:2@1s",
      /names node 2, and the tool starts 2; expected a node from 0 to 1/,
    ],
    ["kill-redis:0@1s", /names a node for Redis; expected kill-redis@TIME/],
    ["kill-node@61s", /at 61 s, after the run's end at 60 s/],
    [
      "kill-node@1s,kill-node@2s",
      /kills node 0, which an earlier event killed/,
    ],
  ];
  for (const [text, message] of cases) {
    assert.throws(() => parseChaos(text, RUN), message, text);
  }
  assert.throws(
    () => parseChaos("kill-redis@1", { ...RUN, redis: false }),
    /needs the Redis the tool starts; expected --redis-server/,
  );
  assert.throws(
    () => parseChaos("kill-node@1", { ...RUN, nodes: 0 }),
    /the tool starts none; expected --server CMD/,
  );
});

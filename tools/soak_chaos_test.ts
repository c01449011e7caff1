/**
 * The soak tool across nodes and crashes: clients spread over several
 * URLs (a message must reach the clients of every node), nodes and Redis
 * killed and restarted on a schedule, and the accounting that tells a
 * lost line from one refused or in flight with a dead node.
 *
 * hubchat nodes here share no Redis yet (the server's --redis is another
 * branch's), so the schedule is tested on one node, the Redis through a
 * `{redis}` placeholder in a variable hubchat ignores, and cross-node
 * delivery by what the tool reports when it is missing.
 *
 * @module
 */

import assert from "node:assert/strict";
import { runSoak, type SoakSummary } from "./soak.ts";
import type { SoakStart } from "./soak_options.ts";
import { withServer } from "../testing/server.ts";

/** hubchat's entry point, by absolute path. */
const MAIN = new URL("../main.ts", import.meta.url).pathname;

/** Every chaos event of a run was done. */
function assertChaosDone(summary: SoakSummary, events: string[]): void {
  assert.deepEqual(summary.chaos.map((c) => [c.event, c.ok]), [
    ...events.map((event) => [event, true]),
  ]);
}

Deno.test("soak --chaos: a killed node's clients reconnect after its restart, and nothing accepted is lost", async () => {
  const summary = await runSoak({
    server: `deno run -A ${MAIN}`,
    clients: 8,
    // 9 s: the restart at 1.5 s and the clients' 1 s backoff fit many
    // times over, even on a loaded machine.
    minutes: 0.15,
    interval: 0.5,
    rate: 800,
    chaos: "kill-node@1s,restart-node@1.5s",
  });
  assertChaosDone(summary, ["kill-node:0@1s", "restart-node:0@1.5s"]);
  assert.equal(summary.aborted, null);
  assert.equal(summary.clients_connected, 8);
  // Every client lost its connection without a close frame...
  assert.deepEqual(summary.evictions, { none: 8 });
  // ...and came back to the restarted node.
  assert.ok(summary.sessions.reconnects >= 8, `${summary.sessions.reconnects}`);
  assert.equal(summary.series.clients_open.at(-1), 8);
  assert.deepEqual(summary.initial_connect_errors, {});
  // Messages in flight with the killed node are not lost; nothing else is.
  assert.equal(summary.lost, 0);
  assert.equal(summary.duplicated, 0);
  assert.equal(summary.out_of_order, 0);
  assert.equal(summary.unacknowledged.dropped, 0);
  assert.ok(summary.skipped_sender_down > 0, "senders were down");
  assert.deepEqual(summary.nodes, [{
    url: summary.url,
    restarts: 1,
    exit_codes: [null, 0], // SIGKILL, then SIGTERM at the end
  }]);
  assert.equal(summary.passed, true, summary.verdict);
});

Deno.test("soak --redis-server --chaos: the tool's Redis, its URL given to the node, killed and restarted", async () => {
  let environ = "";
  const summary = await runSoak({
    // hubchat here ignores the variable; the placeholder shows where the
    // URL goes for a server that takes it another way.
    server: `env HUBCHAT_REDIS_URL={redis} deno run -A ${MAIN}`,
    redisServer: true,
    clients: 4,
    minutes: 0.04,
    interval: 0.5,
    rate: 400,
    chaos: "kill-redis@0.5s,restart-redis@1s",
    onStart(info: SoakStart) {
      environ = Deno.readTextFileSync(`/proc/${info.server_pid}/environ`);
      assert.match(info.redis?.url ?? "", /^redis:\/\/127\.0\.0\.1:\d+$/);
    },
  });
  assertChaosDone(summary, ["kill-redis@0.5s", "restart-redis@1s"]);
  assert.ok(summary.redis !== null);
  assert.equal(summary.redis.restarts, 1);
  assert.ok(
    environ.split("\0").includes(`HUBCHAT_REDIS_URL=${summary.redis.url}`),
    "the node got the Redis URL",
  );
  // A hubchat command with the placeholder gets no --redis of its own.
  assert.doesNotMatch(summary.server_process ?? "", /--redis/);
  assert.equal(summary.passed, true, summary.verdict);
});

Deno.test("soak over several URLs: a node that does not pass messages on is loss", async () => {
  await withServer({ ratePerSecond: 0, maxConnectionsPerIp: 0 }, async (a) => {
    await withServer(
      { ratePerSecond: 0, maxConnectionsPerIp: 0 },
      async (b) => {
        const summary = await runSoak({
          url: [a.url, b.url],
          clients: 4,
          senders: 2,
          minutes: 0.02,
          interval: 0.5,
          rate: 400,
        });
        assert.equal(summary.urls.length, 2);
        assert.equal(summary.url, summary.urls.join(","));
        assert.equal(summary.config.url, summary.url);
        assert.equal(summary.stable.clients, 4);
        // Clients 0 and 2 are on a with sender 0, 1 and 3 on b with sender
        // 1: each misses every message of the other sender, which the
        // other's clients got.
        assert.equal(summary.lost, 2 * summary.messages_sent);
        assert.equal(summary.unacknowledged.dropped, 0);
        assert.equal(summary.passed, false);
        assert.match(summary.verdict, /^FAIL: [\d,]+ lost$/);
      },
    );
  });
});

Deno.test("soak: a line the server refuses with an error is not lost, and is counted by code", async () => {
  // 10 lines/s with a burst of 1, and a sender at 15/s: about one line in
  // three is refused, each with its own rate_limited error.
  await withServer(
    { ratePerSecond: 10, burst: 1, maxConnectionsPerIp: 0 },
    async (server) => {
      const summary = await runSoak({
        url: server.url,
        clients: 4,
        senders: 1,
        minutes: 0.03,
        interval: 0.5,
        rate: 60,
      });
      const refused = summary.server_error_codes.rate_limited ?? 0;
      assert.ok(refused > 0, JSON.stringify(summary.server_error_codes));
      assert.equal(summary.unacknowledged.refused, refused);
      // No receiver is blamed for a line no one got.
      assert.equal(summary.stable.clients, 4);
      assert.equal(summary.stable.lost, 0);
      assert.equal(summary.sessions.lost, 0);
      assert.equal(summary.lost, summary.unacknowledged.dropped);
    },
  );
});

/**
 * Crashes in a cluster, over real sockets and real processes: a node
 * killed under load (SIGKILL), Redis killed under load and restarted with
 * its data, and Redis restarted empty. Each test starts its own
 * redis-server and nodes (testing/cluster.ts) and stops them.
 *
 * @module
 */

import assert from "node:assert/strict";
import { storedLine } from "./protocol.ts";
import {
  assertLines,
  type Cluster,
  field,
  lineOf,
  linesSeen,
  presenceOf,
  type Recorder,
  Sender,
  withCluster,
} from "./testing/cluster.ts";
import { sleep } from "./tools/wait.ts";
import { waitUntil } from "./testing/wait.ts";
import { HEARTBEAT_MS, LEAVE_ECHOES, NODE_TTL_MS } from "./store/redis.ts";

/** The bound README.md promises: a dead node's members are gone within 10 s. */
const LEAVES_WITHIN_MS = 10_000;

/** The id of the last public line a connection saw (0 for none). */
function lastId(connection: Recorder): number {
  const lines = linesSeen([connection]).filter((l) => l.to === undefined);
  return lines.at(-1)?.id ?? 0;
}

/**
 * Stops the senders, then has `closer` say a last line and waits until
 * every client saw it: its id is the last line of the run.
 */
async function finish(
  senders: Sender[],
  closer: Recorder,
  clients: Recorder[],
): Promise<number> {
  for (const sender of senders) await sender.stop();
  closer.say("the end");
  let last = 0;
  for (const client of clients) {
    const end = await client.waitFor(
      lineOf(closer.username, "the end"),
      "the last line",
      { ms: 20_000 },
    );
    last = Number(field(end.message, "id"));
  }
  return last;
}

/** Asserts no sender's line vanished: each came back or was refused. */
function assertNoneLostSilently(senders: Sender[]): void {
  for (const sender of senders) {
    const echoed = sender.echoed();
    const missing = sender.sent.filter((text) => !echoed.has(text));
    const refused = sender.errors().unavailable ?? 0;
    assert.ok(
      missing.length <= refused,
      `${sender.from.username}: ${missing.length} lines neither came back nor were refused (${refused} refusals): ${
        missing.slice(0, 5).join(", ")
      }`,
    );
  }
}

/** One member per name on node i. */
async function members(
  cluster: Cluster,
  node: number,
  names: string[],
): Promise<Recorder[]> {
  const joined: Recorder[] = [];
  for (const name of names) joined.push(await cluster.member(node, name));
  return joined;
}

Deno.test("a node killed under load: the others lose nothing, its members leave once within 10 s, and its clients resume elsewhere missing nothing", async () => {
  // History long enough for a resume after 10 s of this load (about 150
  // lines a second): with the default 100, a client away that long gets
  // the last 100 lines and `gap: true`, as the protocol says.
  await withCluster(
    { nodes: 3, flags: ["--history", "5000"] },
    async (cluster) => {
      const [a0, r0] = await members(cluster, 0, ["a0", "r0"]);
      const [a1, r1] = await members(cluster, 1, ["a1", "r1"]);
      a0.say("hello");
      await a0.waitFor(lineOf("a0", "hello"), "its first line");
      // Node 2's: a sender, one that comes back at once (before the node is
      // found dead), one that comes back after its leave.
      const [a2, quick, late] = await members(cluster, 2, [
        "a2",
        "quick",
        "late",
      ]);
      const survivors = [a0, r0, a1, r1];
      for (const client of survivors) {
        await client.waitFor(presenceOf("join", "late"), "late's join");
      }
      const senders = [
        new Sender(a0, "a0"),
        new Sender(a1, "a1"),
        new Sender(a2, "a2"),
      ];
      await sleep(1000);

      const killedAt = performance.now();
      await cluster.kill(2);
      // Their connections drop (no close frame: the process is gone).
      await Promise.all([quick.client.closed, late.client.closed]);

      // quick reconnects to node 0 at once, with its session and resume point.
      const quick2 = await cluster.join(0, {
        username: "quick",
        session: quick.welcome!.session,
        since: String(lastId(quick)),
        epoch: quick.welcome!.epoch!,
      });
      // Every survivor sees each of node 2's members leave once, within 10 s.
      for (const client of survivors) {
        for (const name of ["a2", "quick", "late"]) {
          const leave = await client.waitFor(
            presenceOf("leave", name),
            `${name}'s leave`,
            {
              ms: LEAVES_WITHIN_MS + 5000,
            },
          );
          const after = leave.at - killedAt;
          assert.ok(
            after <= LEAVES_WITHIN_MS,
            `${client.username} saw ${name}'s leave ${
              Math.round(after)
            } ms after the kill`,
          );
        }
      }
      // late comes back once its leave is known, on node 1.
      const late2 = await cluster.join(1, {
        username: "late",
        session: late.welcome!.session,
        since: String(lastId(late)),
        epoch: late.welcome!.epoch!,
      });
      await sleep(500);
      const last = await finish(senders, a0, [...survivors, quick2, late2]);

      for (const client of survivors) {
        assertLines(client.username, linesSeen([client]), last);
        // One leave each, then quick's and late's joins as they came back.
        const expected = {
          a2: "join leave",
          quick: "join leave join",
          late: "join leave join",
        };
        for (const [name, seen] of Object.entries(expected)) {
          const presence = client.matching((m) =>
            (m.type === "join" || m.type === "leave") &&
            field(m, "username") === name
          ).map((r) => r.message.type).join(" ");
          assert.equal(presence, seen, `${client.username} about ${name}`);
        }
      }
      assertLines("quick", linesSeen([quick, quick2]), last);
      assertLines("late", linesSeen([late, late2]), last);
      assert.equal(quick2.welcome!.gap, false);
      assert.equal(late2.welcome!.gap, false);
      assertNoneLostSilently(senders.slice(0, 2));
    },
  );
});

Deno.test("Redis killed under load and restarted with its data: nodes recover by themselves, every stored line once, lines offered meanwhile refused", async () => {
  await withCluster({ nodes: 2, appendonly: true }, async (cluster) => {
    const [s0, r0, gone] = await members(cluster, 0, ["s0", "r0", "gone"]);
    const [s1, r1] = await members(cluster, 1, ["s1", "r1"]);
    const clients = [s0, r0, s1, r1];
    for (const client of clients) {
      await client.waitFor(presenceOf("join", "r1"), "r1's join");
    }
    const senders = [new Sender(s0, "s0"), new Sender(s1, "s1")];
    await sleep(1000);

    await cluster.redis.kill("SIGKILL");
    await cluster.waitForHealth(503);
    for (let node = 0; node < 2; node++) {
      assert.deepEqual((await cluster.health(node)).body, {
        status: "degraded",
        clients: node === 0 ? 3 : 2,
        redis: "disconnected",
      });
    }
    // Lines offered now are refused, each with `unavailable`.
    for (const sender of senders) {
      await sender.from.waitFor(
        (m) => m.type === "error" && field(m, "code") === "unavailable",
        "a refusal",
      );
    }
    // Typing goes nowhere; a member leaves meanwhile.
    s1.send({ type: "typing" });
    await gone.close();
    // Away longer than a heartbeat lasts (6 s): every node's has run out
    // when Redis is back, and no live node's members may be reaped.
    await sleep(7000);

    await cluster.redis.restart();
    await cluster.waitForHealth(200);
    // Accepted again, by every node, on their own.
    for (const sender of senders) {
      const from = sender.from.log.length;
      await sender.from.waitFor(
        (m) =>
          m.type === "message" && field(m, "username") === sender.from.username,
        "its own line stored again",
        { from, ms: 20_000 },
      );
    }
    // Past the time nodes wait, connected, before reaping the dead: nobody
    // alive is taken for dead (their heartbeats ran out while Redis was away).
    await sleep(7000);
    const last = await finish(senders, s0, clients);
    for (const client of clients) {
      assertLines(client.username, linesSeen([client]), last);
      // gone's leave, made while Redis was away, reaches every node once.
      assert.equal(
        client.matching(presenceOf("leave", "gone")).length,
        1,
        `${client.username}: gone's leave`,
      );
      assert.equal(client.matching((m) => m.type === "typing").length, 0);
      assert.deepEqual(
        client.matching((m) => m.type === "leave").map((r) =>
          field(r.message, "username")
        ),
        ["gone"],
        `${client.label}: nobody else left`,
      );
    }
    assertNoneLostSilently(senders);
    // Its name is free again, on any node.
    await cluster.member(1, "gone");
  });
});

Deno.test("a leave made while Redis was away reaches a node whose subscription came back only after the leave was first published", async () => {
  // Node 1 reaches Redis through a proxy the test holds: its subscription
  // comes back when the test says, after node 0 published the leave.
  await withCluster({ nodes: 2, proxied: [1] }, async (cluster) => {
    const [stay, gone] = await members(cluster, 0, ["stay", "gone"]);
    const late = await cluster.member(1, "late");
    for (const client of [stay, gone]) {
      await client.waitFor(presenceOf("join", "late"), "late's join");
    }

    await cluster.redis.kill("SIGKILL");
    await cluster.waitForHealth(503);
    // gone leaves while Redis is away: node 0 keeps the leave to publish.
    await gone.close();
    await waitUntil(
      async () => (await cluster.health(0)).body.clients === 1,
      "node 0 to have let gone go",
    );
    cluster.proxy(1).hold();
    await cluster.redis.restart();
    // The presence script removes gone from the members hash and publishes
    // the leave in one step: once it is gone from the hash, the leave was
    // published, while node 1 could not hear it.
    await waitUntil(
      async () =>
        Number(
          await cluster.redis.command([
            "HEXISTS",
            "hubchat:room:lobby:members",
            "gone",
          ]),
        ) === 0,
      "node 0 to publish gone's leave",
      10_000,
    );
    cluster.proxy(1).release();
    await cluster.waitForHealth(200);

    // Node 1 hears it all the same, within a heartbeat's lifetime, and
    // node 0's own members too (its subscription may have been late as
    // well).
    for (const client of [late, stay]) {
      await client.waitFor(presenceOf("leave", "gone"), "gone's leave", {
        ms: NODE_TTL_MS + HEARTBEAT_MS,
      });
    }
    // Past the last time it is published again: still once each.
    await sleep(LEAVE_ECHOES * HEARTBEAT_MS);
    for (const client of [late, stay]) {
      assert.equal(
        client.matching(presenceOf("leave", "gone")).length,
        1,
        `${client.label}: gone's leave`,
      );
      assert.deepEqual(
        client.matching((m) => m.type === "leave").map((r) =>
          field(r.message, "username")
        ),
        ["gone"],
        `${client.label}: nobody else left`,
      );
    }
  });
});

Deno.test("Redis restarted empty: clients are told (reset), ids start again, and an old since gets gap: true", async () => {
  await withCluster({ nodes: 2, appendonly: false }, async (cluster) => {
    const ann = await cluster.member(0, "ann");
    for (let n = 1; n <= 5; n++) ann.say(`old ${n}`);
    await ann.waitFor(lineOf("ann", "old 5"), "her fifth line");
    const bob = await cluster.member(1, "bob");
    const oldEpoch = bob.welcome!.epoch!;
    assert.equal(bob.welcome!.history.length, 5);

    await cluster.redis.kill("SIGKILL");
    await cluster.redis.restart();
    // Both nodes find the room's lines gone and tell their members.
    for (const client of [ann, bob]) {
      const reset = await client.waitFor((m) => m.type === "reset", "a reset", {
        ms: 20_000,
      });
      assert.equal(field(reset.message, "room"), "lobby");
      assert.deepEqual(field(reset.message, "history"), []);
    }
    await cluster.waitForHealth(200);

    // Ids start again at 1, in a new epoch.
    ann.say("new 1");
    for (const client of [ann, bob]) {
      const line = await client.waitFor(lineOf("ann", "new 1"), "the new line");
      assert.equal(field(line.message, "id"), 1);
    }
    // A client that saw the old life's line 5 resumes: that since means
    // nothing now; it gets what is stored, and gap: true.
    const cy = await cluster.join(1, {
      username: "cy",
      since: "5",
      epoch: oldEpoch,
    });
    assert.equal(cy.welcome!.gap, true);
    assert.notEqual(cy.welcome!.epoch, oldEpoch);
    assert.deepEqual(
      cy.welcome!.history.map((l) => [l.id, field(l, "text")]),
      [[1, "new 1"]],
    );
    // Who is online survived: both nodes' members are back in Redis.
    assert.deepEqual(cy.welcome!.users.toSorted(), ["ann", "bob", "cy"]);
    // And so are their names: ann's is still hers on the other node.
    const taken = await cluster.upgradeReply(1, { username: "ann" });
    assert.equal(taken.status, 409);
  });
});

/** One connection in Redis's `CLIENT LIST`, the fields the tests read. */
interface RedisConnection {
  id: string;
  /** The port it comes from. */
  port: number;
  /** `b`: blocked (as by CLIENT PAUSE); `P`: subscribed. */
  flags: string;
  /** The last command it sent. */
  cmd: string;
  /** Bytes of commands read but not run yet. */
  qbuf: number;
}

/** Node i's connections to Redis (it must be `proxied`). */
async function connectionsOf(
  cluster: Cluster,
  node: number,
): Promise<RedisConnection[]> {
  const ports = new Set(cluster.proxy(node).upstreamPorts());
  const list = String(await cluster.redis.command(["CLIENT", "LIST"]));
  const connections: RedisConnection[] = [];
  for (const line of list.split("\n")) {
    const fields = new Map(
      line.trim().split(" ").map((pair) => {
        const at = pair.indexOf("=");
        return [pair.slice(0, at), pair.slice(at + 1)] as const;
      }),
    );
    const port = Number(fields.get("addr")?.split(":").at(-1));
    if (!ports.has(port)) continue;
    connections.push({
      id: fields.get("id") ?? "",
      port,
      flags: fields.get("flags") ?? "",
      cmd: fields.get("cmd") ?? "",
      qbuf: Number(fields.get("qbuf") ?? 0),
    });
  }
  return connections;
}

Deno.test("a node whose connections come back one after the other while Redis lost its data catches up once: its clients are told one reset", async () => {
  await withCluster(
    { nodes: 2, appendonly: false, proxied: [1] },
    async (cluster) => {
      const ann = await cluster.member(0, "ann");
      const bob = await cluster.member(1, "bob");
      ann.say("old");
      await bob.waitFor(lineOf("ann", "old"), "the first line");

      // Node 1 is away while Redis restarts empty; node 0 finds out first.
      cluster.proxy(1).hold();
      await cluster.redis.kill("SIGKILL");
      await cluster.redis.restart();
      await ann.waitFor((m) => m.type === "reset", "a reset", { ms: 10_000 });

      // Writes wait: node 1's catch-up stops at its first write (its
      // heartbeat), with its commands connection back.
      await cluster.redis.command(["CLIENT", "PAUSE", "20000", "WRITE"]);
      try {
        cluster.proxy(1).release();
        await waitUntil(
          async () => {
            const connections = await connectionsOf(cluster, 1);
            return connections.some((c) => c.flags.includes("P")) &&
              connections.some((c) => c.flags.includes("b") && c.cmd === "set");
          },
          "node 1 subscribed, and its heartbeat waiting",
          10_000,
        );
        // Its subscription drops and comes back meanwhile: another ready,
        // whose catch-up writes behind the first one's.
        const subscriber = (await connectionsOf(cluster, 1))
          .find((c) => c.flags.includes("P"))!;
        await cluster.redis.command(["CLIENT", "KILL", "ID", subscriber.id]);
        await waitUntil(
          async () =>
            (await connectionsOf(cluster, 1)).some((c) =>
              c.flags.includes("b") && c.cmd === "set" && c.qbuf > 0
            ),
          "a second heartbeat behind the first",
          10_000,
        );
      } finally {
        await cluster.redis.command(["CLIENT", "UNPAUSE"]);
      }

      await bob.waitFor((m) => m.type === "reset", "a reset", { ms: 10_000 });
      ann.say("after");
      await bob.waitFor(lineOf("ann", "after"), "the line after the reset");
      assert.equal(
        bob.matching((m) => m.type === "reset").length,
        1,
        "bob's resets",
      );
      assert.deepEqual(
        linesSeen([bob]).map((l) => [l.id, field(l, "text")]),
        [[1, "old"], [1, "after"]],
      );
    },
  );
});

/**
 * Stores a line in the room's stream as a node's append script does, but
 * publishes nothing: a channel message every node missed.
 */
async function storeUnheard(
  cluster: Cluster,
  text: string,
  room = "lobby",
): Promise<number> {
  const meta = `hubchat:room:${room}:meta`;
  const id = Number(await cluster.redis.command(["HINCRBY", meta, "seq", "1"]));
  const line = storedLine({
    id,
    room,
    username: "ghost",
    text,
    timestamp: new Date().toISOString(),
  });
  await cluster.redis.command([
    "XADD",
    `hubchat:room:${room}:lines`,
    `${id}-0`,
    "d",
    JSON.stringify(line),
  ]);
  return id;
}

/** ann on node 0 and bob on node 1, who both saw ann's line 1. */
async function afterOneLine(cluster: Cluster): Promise<Recorder[]> {
  const ann = await cluster.member(0, "ann");
  const bob = await cluster.member(1, "bob");
  ann.say("before");
  await bob.waitFor(lineOf("ann", "before"), "the first line");
  return [ann, bob];
}

Deno.test("nodes that missed channel messages fill the gap from the stream before the next line", async () => {
  await withCluster({ nodes: 2 }, async (cluster) => {
    const [ann, bob] = await afterOneLine(cluster);
    for (let n = 1; n <= 3; n++) await storeUnheard(cluster, `missed ${n}`);
    ann.say("after");
    for (const client of [ann, bob]) {
      await client.waitFor(lineOf("ann", "after"), "the line after");
      assertLines(client.label, linesSeen([client]), 5);
    }
    assert.deepEqual(
      linesSeen([bob]).map((l) => field(l, "text")),
      ["before", "missed 1", "missed 2", "missed 3", "after"],
    );
  });
});

Deno.test("a node whose subscription dropped catches up on its own once it is back", async () => {
  await withCluster({ nodes: 2 }, async (cluster) => {
    const [ann, bob] = await afterOneLine(cluster);
    // Lines every node missed (as while their subscriptions were down),
    // then the subscriptions drop and come back; no line follows.
    for (let n = 1; n <= 3; n++) await storeUnheard(cluster, `missed ${n}`);
    await cluster.redis.command(["CLIENT", "KILL", "TYPE", "pubsub"]);
    for (const client of [ann, bob]) {
      await client.waitFor(lineOf("ghost", "missed 3"), "the missed lines", {
        ms: 10_000,
      });
      assertLines(client.label, linesSeen([client]), 4);
    }
  });
});

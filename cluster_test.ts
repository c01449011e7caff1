/**
 * Several nodes sharing rooms through Redis, over real sockets and real
 * processes: each test starts its own redis-server on a free port in a
 * temporary directory and its own hubchat nodes (testing/cluster.ts), and
 * stops them. Chat, names, takeovers and resumes across nodes here; crashes
 * of a node or of Redis in cluster_crash_test.ts.
 *
 * @module
 */

import assert from "node:assert/strict";
import type { ChatMessage, MembersMessage, OnlineMessage } from "./protocol.ts";
import {
  assertLines,
  field,
  lineOf,
  linesSeen,
  presenceOf,
  type Recorder,
  withCluster,
} from "./testing/cluster.ts";
import { sleep } from "./tools/wait.ts";

Deno.test("three nodes: every line reaches every client once in id order; direct messages, typing and /rooms cross nodes", async () => {
  await withCluster({ nodes: 3 }, async (cluster) => {
    const clients: Recorder[] = [];
    for (let i = 0; i < 9; i++) {
      clients.push(await cluster.member(i % 3, `user${i}`));
    }
    // Everyone, on every node, saw the last arrival with the full count.
    for (const client of clients) {
      const join = await client.waitFor(
        presenceOf("join", "user8"),
        "user8's join",
      );
      assert.equal(field(join.message, "online"), 9);
    }
    const perClient = 15;
    for (let n = 0; n < perClient; n++) {
      for (const client of clients) client.say(`${client.username} line ${n}`);
    }
    const total = clients.length * perClient;
    for (const client of clients) {
      await client.waitFor(
        (m) => m.type === "message" && field(m, "id") === total,
        `line ${total}`,
        { ms: 20_000 },
      );
    }
    for (const client of clients) {
      const lines = linesSeen([client]);
      assertLines(client.username, lines, total);
      // Each sender's lines in the order it sent them.
      for (const sender of clients) {
        const texts = lines.filter((l) => l.username === sender.username)
          .map((l) => (l as ChatMessage).text);
        assert.deepEqual(
          texts,
          Array.from(
            { length: perClient },
            (_, n) => `${sender.username} line ${n}`,
          ),
        );
      }
    }

    // A direct message from node 0 to node 2: its two ends, nobody else.
    const [user0, user1, user2] = clients;
    user0.send({ type: "message", text: "psst", to: "user2" });
    for (const end of [user0, user2]) {
      const dm = await end.waitFor(
        lineOf("user0", "psst"),
        "the direct message",
      );
      assert.equal(field(dm.message, "to"), "user2");
    }
    // A public line after it: whoever got that without the DM never will.
    user1.say("after the dm");
    for (const client of clients) {
      await client.waitFor(
        lineOf("user1", "after the dm"),
        "the line after the DM",
      );
      const got = client.matching(lineOf("user0", "psst")).length;
      assert.equal(
        got,
        client === user0 || client === user2 ? 1 : 0,
        client.username,
      );
    }

    // Typing on node 1 reaches the others on every node, not the typist.
    user1.send({ type: "typing" });
    for (const client of clients) {
      if (client === user1) continue;
      await client.waitFor(
        (m) => m.type === "typing" && field(m, "username") === "user1",
        "user1 typing",
      );
    }
    user1.say("typed");
    await user1.waitFor(lineOf("user1", "typed"), "its own line");
    assert.equal(user1.matching((m) => m.type === "typing").length, 0);

    // /rooms on every node counts every node's members, in every room.
    const dev = await cluster.member(2, "dana", "dev");
    for (let node = 0; node < 3; node++) {
      let rooms: Record<string, number> = {};
      await waitUntilRooms(async () => {
        rooms = await cluster.rooms(node);
        return rooms.lobby === 9 && rooms.dev === 1;
      }, () => `node ${node}'s /rooms: ${JSON.stringify(rooms)}`);
    }
    await dev.close();
    for (let node = 0; node < 3; node++) {
      await waitUntilRooms(
        // Nobody in it and no lines: counted 0, or no longer listed.
        async () => ((await cluster.rooms(node)).dev ?? 0) === 0,
        () => `node ${node}'s /rooms to count dev empty`,
      );
    }
  });
});

/** Polls `/rooms` (counted at each 2 s heartbeat) for up to 15 s. */
async function waitUntilRooms(
  check: () => Promise<boolean>,
  what: () => string,
): Promise<void> {
  const deadline = Date.now() + 15_000;
  while (!(await check())) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what()}`);
    await sleep(100);
  }
}

Deno.test("a member's last lines reach the other nodes before its leave, even a node's first lines", async () => {
  await withCluster({ nodes: 2 }, async (cluster) => {
    const ann = await cluster.member(0, "ann");
    const bob = await cluster.member(1, "bob");
    await ann.waitFor(presenceOf("join", "bob"), "bob's join");
    // Node 1's first lines, then at once a move to another room.
    for (let n = 0; n < 5; n++) bob.say(`last words ${n}`);
    bob.send({ type: "join", room: "elsewhere" });
    const leave = await ann.waitFor(presenceOf("leave", "bob"), "bob's leave");
    const before = ann.log.slice(0, leave.index).map((r) => r.message);
    assert.deepEqual(
      before.filter((m) => m.type === "message").map((m) => field(m, "text")),
      Array.from({ length: 5 }, (_, n) => `last words ${n}`),
    );
  });
});

Deno.test("a line or a members request sent right after a join goes to the room joined, not the one left", async () => {
  await withCluster({ nodes: 2 }, async (cluster) => {
    const ann = await cluster.member(0, "ann");
    const carol = await cluster.member(0, "carol", "elsewhere");
    const bob = await cluster.member(1, "bob");
    await ann.waitFor(presenceOf("join", "bob"), "bob's join");
    // The move claims bob's name in Redis first, which a paused Redis makes
    // slow: the line sent meanwhile must wait for the move, not go to the
    // room bob is leaving.
    await cluster.redis.command(["CLIENT", "PAUSE", "300", "ALL"]);
    bob.send({ type: "join", room: "elsewhere" });
    bob.say("first in elsewhere");
    bob.send({ type: "members" });
    const members = await bob.waitFor(
      (m) => m.type === "members",
      "the members of bob's room",
    );
    assert.equal(field(members.message, "room"), "elsewhere");
    const line = await carol.waitFor(
      (m) => m.type === "message" && field(m, "username") === "bob",
      "bob's line in elsewhere",
    );
    assert.equal(field(line.message, "text"), "first in elsewhere");
    await ann.waitFor(presenceOf("leave", "bob"), "bob's leave");
    assert.deepEqual(
      ann.matching((m) =>
        m.type === "message" && field(m, "username") === "bob"
      ),
      [],
      "nothing of bob's reached the lobby",
    );
  });
});

Deno.test("with Redis away, a join is refused as unavailable, whether the room or the name cannot be had, and the member stays where it was", async () => {
  await withCluster({ nodes: 1, appendonly: false }, async (cluster) => {
    const ann = await cluster.member(0, "ann");
    const bob = await cluster.member(0, "bob");
    await cluster.member(0, "carol", "open");
    await ann.waitFor(presenceOf("join", "bob"), "bob's join");
    await cluster.redis.kill("SIGKILL");
    await cluster.waitForHealth(503);
    // A room that cannot be opened, and one open here whose name claim
    // cannot be made: bob is told, each time, and stays.
    for (const room of ["elsewhere", "open"]) {
      const from = bob.log.length;
      bob.send({ type: "join", room });
      const refusal = await bob.waitFor(
        (m) => m.type === "error",
        `the refusal to join ${room}`,
        { from },
      );
      assert.equal(field(refusal.message, "code"), "unavailable");
      assert.equal(
        field(refusal.message, "text"),
        `the chat store is unreachable, so you stay in room "lobby"; try joining "${room}" again shortly`,
      );
    }
    // Still in the lobby, with ann.
    bob.send({ type: "members" });
    const members = await bob.waitFor(
      (m) => m.type === "members",
      "the members of bob's room",
    );
    assert.equal(field(members.message, "room"), "lobby");
    assert.deepEqual(field(members.message, "users"), ["ann", "bob"]);
  });
});

Deno.test("names across nodes: taken on one node is refused on another; a session takes its name over across nodes", async () => {
  await withCluster({ nodes: 3 }, async (cluster) => {
    const ann = await cluster.member(0, "ann");
    const bob = await cluster.member(1, "bob");
    const cy = await cluster.member(2, "cy");

    // ann is online on node 0: node 1 refuses the name, upgrade or dry run.
    const refused = await cluster.upgradeReply(1, { username: "ann" });
    assert.equal(refused.status, 409);
    assert.equal(JSON.parse(refused.body).error, "username_taken");
    const dryRun = await fetch(`${cluster.nodes[2].url}ws?username=ann`);
    assert.equal(dryRun.status, 409);
    assert.equal((await dryRun.json()).error, "username_taken");
    // A session that is not ann's takes nothing over.
    const forged = await cluster.upgradeReply(1, {
      username: "ann",
      session: bob.welcome!.session,
    });
    assert.equal(forged.status, 409);

    // ann comes back on node 1 with her session: the old connection is
    // closed with 4001 and leaves once; everyone sees leave, then join.
    const mark = [bob, cy].map((c) => c.log.length);
    const ann2 = await cluster.join(1, {
      username: "ann",
      session: ann.welcome!.session,
    });
    assert.deepEqual(await ann.client.closed, {
      code: 4001,
      reason: "replaced by a newer connection",
    });
    for (const [i, observer] of [bob, cy].entries()) {
      const leave = await observer.waitFor(
        presenceOf("leave", "ann"),
        "ann's leave",
        { from: mark[i] },
      );
      const join = await observer.waitFor(
        presenceOf("join", "ann"),
        "ann's new join",
        { from: mark[i] },
      );
      assert.ok(
        leave.index < join.index,
        `${observer.username}: leave, then join`,
      );
      assert.equal(field(leave.message, "online"), 2);
      assert.equal(field(join.message, "online"), 3);
    }
    assert.deepEqual(ann2.welcome!.users.toSorted(), ["ann", "bob", "cy"]);
    // Nothing more about ann: after a line, still one leave and one join.
    bob.say("settled");
    for (const [i, observer] of [bob, cy, ann2].entries()) {
      await observer.waitFor(lineOf("bob", "settled"), "bob's line");
      if (observer === ann2) continue;
      const about = observer.log.slice(mark[i]).filter((r) =>
        field(r.message, "username") === "ann" && r.message.type !== "message"
      ).map((r) => r.message.type);
      assert.deepEqual(about, ["leave", "join"], observer.username);
    }

    // The name is ann2's now: node 0 (where it was) refuses it too...
    assert.equal(
      (await cluster.upgradeReply(0, { username: "ann" })).status,
      409,
    );
    // ...until she leaves: then any node gives it out again.
    const first = await bob.waitFor(presenceOf("leave", "ann"), "ann's leave");
    await ann2.close();
    await bob.waitFor(presenceOf("leave", "ann"), "ann's second leave", {
      from: first.index + 1,
    });
    const ann3 = await cluster.member(0, "ann");
    assert.equal(ann3.welcome!.online, 3);
  });
});

Deno.test("resume across nodes: since on node 1 gets exactly the lines sent through node 0", async () => {
  await withCluster({ nodes: 3 }, async (cluster) => {
    const ann = await cluster.member(0, "ann");
    ann.say("first");
    await ann.waitFor(lineOf("ann", "first"), "her first line");
    // Joined after a line: the welcome says which life of the store it is.
    const bob = await cluster.member(1, "bob");
    const epoch = bob.welcome!.epoch!;
    assert.match(epoch, /^[0-9a-f]{8}$/);
    const keep = await cluster.member(1, "keep"); // the room stays open on node 1
    for (let n = 1; n <= 2; n++) ann.say(`before ${n}`);
    await bob.waitFor(lineOf("ann", "before 2"), "ann's third line");
    const seen = linesSeen([bob]);
    const since = seen[seen.length - 1].id;
    await bob.close();
    for (let n = 1; n <= 4; n++) ann.say(`while away ${n}`);
    await keep.waitFor(lineOf("ann", "while away 4"), "the last line");

    // Back on node 1 (where the room stayed open) and on node 2 (where it
    // was never open), each with since: exactly the lines after it.
    for (const node of [1, 2]) {
      const back = await cluster.join(node, {
        username: `bob${node}`,
        since: String(since),
        epoch,
      });
      assert.deepEqual(
        back.welcome!.history.map((l) => (l as ChatMessage).text),
        [1, 2, 3, 4].map((n) => `while away ${n}`),
        `node ${node}`,
      );
      assert.equal(back.welcome!.gap, false);
      assertLines(
        `bob on node ${node}`,
        [...seen, ...back.welcome!.history],
        7,
      );
    }
  });
});

Deno.test("a large room across nodes: counts over every node, online messages, members paging", async () => {
  await withCluster(
    { nodes: 2, flags: ["--large-room", "4"] },
    async (cluster) => {
      const small: Recorder[] = [];
      for (
        const [node, name] of [[0, "ann"], [0, "bob"], [1, "cy"], [
          1,
          "dee",
        ]] as const
      ) {
        small.push(await cluster.member(node, name));
      }
      for (const member of small) {
        await member.waitFor(presenceOf("join", "dee"), "dee's join");
      }
      // The fifth member, on node 1, makes the room large on both nodes.
      const eve = await cluster.member(1, "eve");
      assert.equal(eve.welcome!.large, true);
      assert.equal(eve.welcome!.online, 5);
      for (const member of small) {
        const turned = await member.waitFor(
          (m) => m.type === "online",
          "the count",
        );
        assert.deepEqual(
          [field(turned.message, "online"), field(turned.message, "large")],
          [5, true],
          member.label,
        );
        assert.equal(member.matching(presenceOf("join", "eve")).length, 0);
      }
      // An arrival on node 0: a count of 6 everywhere, no join.
      const fay = await cluster.member(0, "fay");
      assert.equal(fay.welcome!.online, 6);
      const everyone = [...small, eve, fay];
      for (const member of everyone) {
        await member.waitFor(
          (m) => m.type === "online" && field(m, "online") === 6,
          "the count of 6",
        );
      }
      // The member list, a page at a time, names from both nodes in order.
      const pages: string[][] = [];
      let after: string | undefined;
      for (let page = 0; page < 3; page++) {
        const from = small[0].log.length;
        small[0].send({
          type: "members",
          limit: 4,
          ...(after === undefined ? {} : { after }),
        });
        const reply = await small[0].waitFor(
          (m) => m.type === "members",
          "a page",
          { from },
        );
        const members = reply.message as MembersMessage;
        assert.equal(members.online, 6);
        pages.push(members.users);
        if (members.next === null) break;
        after = members.next;
      }
      assert.deepEqual(pages, [["ann", "bob", "cy", "dee"], ["eve", "fay"]]);
      // Chat is unchanged: one line to everyone once.
      eve.say("hello, large room");
      for (const member of everyone) {
        await member.waitFor(lineOf("eve", "hello, large room"), "eve's line");
        assert.equal(
          member.matching(lineOf("eve", "hello, large room")).length,
          1,
        );
      }
      // Leaving down to half the threshold: small again, with every name.
      for (const leaver of [fay, eve, small[3], small[2]]) await leaver.close();
      const last = await small[0].waitFor(
        (m) => m.type === "online" && field(m, "large") === false,
        "the room turning small",
        { ms: 10_000 },
      );
      const turned = last.message as OnlineMessage;
      assert.equal(turned.online, 2);
      assert.deepEqual(turned.users, ["ann", "bob"]);
    },
  );
});

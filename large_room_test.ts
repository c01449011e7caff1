/**
 * Large rooms over real sockets: past `largeRoom` members a room sends its
 * count instead of each join and leave, and pages its member list on
 * request; chat, direct messages and exactly-once delivery are unchanged.
 */

import assert from "node:assert/strict";
import type {
  ChatMessage,
  MembersMessage,
  OnlineMessage,
  ServerMessage,
} from "./protocol.ts";
import { ChatClient } from "./testing/chat_client.ts";
import { ChildServer } from "./testing/child_server.ts";
import { runLoad } from "./tools/load.ts";
import { withServer } from "./testing/server.ts";
import { within } from "./testing/wait.ts";

/** The next message, which must be of `type`. */
async function expectType<T extends ServerMessage>(
  client: ChatClient,
  type: T["type"],
  ms?: number,
): Promise<T> {
  const message = await client.next(`a ${type} message`, ms);
  assert.equal(
    message.type,
    type,
    `${client.username}: expected ${type}, got ${JSON.stringify(message)}`,
  );
  return message as T;
}

/** Asks for a page of members and returns the reply. */
async function members(
  client: ChatClient,
  request: { after?: string; limit?: number },
): Promise<MembersMessage> {
  client.send({ type: "members", ...request });
  return await expectType<MembersMessage>(client, "members");
}

Deno.test("a room past the threshold sends its count, pages its members, and chats as before", async () => {
  await withServer({ largeRoom: 4 }, async (server, track) => {
    const port = server.port;
    const small: ChatClient[] = [];
    for (const name of ["ann", "bob", "cy", "dee"]) {
      const client = track(await ChatClient.join(port, name));
      for (const member of small) {
        await member.expectPresence("join", name, small.length + 1);
      }
      small.push(client);
    }
    const [ann, bob] = small;

    // The fifth member makes the room large: no join, the count instead.
    const eve = track(await ChatClient.arrive(port, "eve"));
    assert.equal(eve.welcome!.large, true);
    assert.equal(eve.welcome!.online, 5);
    assert.deepEqual(eve.welcome!.users, ["ann", "bob", "cy", "dee", "eve"]);
    for (const member of small) {
      const turned = await expectType<OnlineMessage>(member, "online");
      assert.equal(turned.large, true);
      assert.equal(turned.online, 5);
      assert.equal(turned.users, undefined);
    }

    // Two arrivals within the interval: one count, of both.
    const fay = track(await ChatClient.arrive(port, "fay"));
    const gil = track(await ChatClient.arrive(port, "gil"));
    assert.equal(gil.welcome!.online, 7);
    const everyone = [...small, eve, fay, gil];
    for (const member of everyone) {
      const count = await expectType<OnlineMessage>(member, "online", 3000);
      assert.deepEqual({ online: count.online, large: count.large }, {
        online: 7,
        large: true,
      });
    }

    // The member list, a page at a time, in name order.
    const first = await members(eve, { limit: 4 });
    assert.deepEqual(first.users, ["ann", "bob", "cy", "dee"]);
    assert.equal(first.next, "dee");
    assert.equal(first.online, 7);
    const second = await members(eve, { after: first.next!, limit: 4 });
    assert.deepEqual(second.users, ["eve", "fay", "gil"]);
    assert.equal(second.next, null);
    eve.send({ type: "members", limit: 0 });
    const refused = await expectType(eve, "error");
    assert.equal((refused as { code: string }).code, "invalid_message");

    // Chat is unchanged: a line reaches everyone once; a DM its two ends.
    ann.say("hello, large room");
    for (const member of everyone) {
      await member.expectMessage("ann", "hello, large room");
    }
    gil.send({ type: "message", text: "psst", to: "bob" });
    for (const end of [gil, bob]) {
      const dm = await expectType<ChatMessage>(end, "message");
      assert.deepEqual([dm.username, dm.to, dm.text], ["gil", "bob", "psst"]);
    }
    gil.send({ type: "message", text: "anyone?", to: "zed" });
    const unknown = await expectType(gil, "error");
    assert.equal((unknown as { code: string }).code, "unknown_recipient");

    // Leaving: counts while large; at half the threshold, small again with
    // every name, and joins are announced one by one from there.
    for (const leaver of [gil, fay, eve, small[3], small[2]]) {
      await leaver.close();
    }
    const counts: OnlineMessage[] = [];
    for (;;) {
      const message = await expectType<OnlineMessage>(ann, "online", 3000);
      counts.push(message);
      if (!message.large) break;
    }
    const last = counts[counts.length - 1];
    assert.equal(last.online, 2);
    assert.deepEqual(last.users, ["ann", "bob"]);
    for (const count of counts.slice(0, -1)) assert.ok(count.online > 2);
    const hal = track(await ChatClient.join(port, "hal"));
    assert.equal(hal.welcome!.large, false);
    assert.deepEqual(hal.welcome!.users, ["ann", "bob", "hal"]);
    await ann.expectPresence("join", "hal", 3);
  });
});

Deno.test("a large room's count goes out at most once a second, and only when it changed", async () => {
  await withServer({ largeRoom: 2 }, async (server, track) => {
    const port = server.port;
    const ann = track(await ChatClient.join(port, "ann"));
    const bob = track(await ChatClient.join(port, "bob"));
    await ann.expectPresence("join", "bob", 2);
    track(await ChatClient.arrive(port, "cy"));
    for (const member of [ann, bob]) {
      const turned = await expectType<OnlineMessage>(member, "online");
      assert.deepEqual([turned.online, turned.large], [3, true]);
    }

    // An arrival and its departure within one interval leave the count
    // where the members last heard it: no count at all.
    const dee = await ChatClient.arrive(port, "dee");
    await dee.close();
    await assert.rejects(
      ann.next("no count: it did not change", 2500),
      /timed out|no count/i,
    );
    assert.equal(ann.pending, 0);

    // Arrivals a quarter of a second apart for a second and a half: the
    // counts that reach ann are a second apart or more, each a new count.
    const names = ["eve", "fay", "gil", "hal", "ivy", "jon"];
    for (const name of names) {
      track(await ChatClient.arrive(port, name));
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
    const counts: OnlineMessage[] = [];
    while (counts.at(-1)?.online !== 3 + names.length) {
      counts.push(await expectType<OnlineMessage>(ann, "online", 3000));
    }
    assert.ok(counts.length >= 2, `counts: ${JSON.stringify(counts)}`);
    for (let i = 1; i < counts.length; i++) {
      const apart = Date.parse(counts[i].timestamp) -
        Date.parse(counts[i - 1].timestamp);
      assert.ok(apart >= 990, `counts ${apart} ms apart`);
      assert.ok(counts[i].online > counts[i - 1].online);
    }
  });
});

Deno.test("a thousand members: bounded welcomes, one count, every line once", async () => {
  const clients = 1000;
  await withServer(
    { ratePerSecond: 0, maxConnectionsPerIp: 0 },
    async (server, track) => {
      const port = server.port;
      const joined: ChatClient[] = [];
      // A few at a time, as browsers arrive; each welcome is bounded.
      for (let i = 0; i < clients; i += 50) {
        const batch: Promise<ChatClient>[] = [];
        for (let j = i; j < Math.min(clients, i + 50); j++) {
          batch.push(
            ChatClient.arrive(port, `user${String(j).padStart(4, "0")}`),
          );
        }
        for (const client of await Promise.all(batch)) {
          joined.push(track(client));
        }
      }
      for (const client of joined) {
        assert.ok(client.welcome!.users.length <= 100);
        assert.ok(
          client.welcome!.users.includes(client.username!) ||
            client.welcome!.large,
        );
      }
      // The last admitted (not always the last of its batch to be asked
      // for) was welcomed into the whole crowd.
      const last = joined.reduce((a, b) =>
        b.welcome!.online > a.welcome!.online ? b : a
      );
      assert.equal(last.welcome!.online, clients);
      assert.equal(last.welcome!.large, true);
      assert.equal(last.welcome!.users.length, 100);

      // Everyone hears the final count within a couple of intervals, and
      // nothing but counts arrives meanwhile: no join storm.
      await within(
        Promise.all(joined.map(async (client) => {
          for (;;) {
            const message = await client.next("the count", 5000);
            assert.ok(
              message.type === "online" || message.type === "join",
              `${client.username}: ${message.type}`,
            );
            // Joins only while the room was small: before the 101st member.
            if (message.type === "join") {
              assert.ok(!client.welcome!.large);
              continue;
            }
            if ((message as OnlineMessage).online === clients) return;
          }
        })),
        "every member to hear the count of 1000",
        20_000,
      );

      // One line reaches every member exactly once.
      joined[0].say("to a thousand");
      await within(
        Promise.all(joined.map(async (client) => {
          await client.expectMessage(joined[0].username!, "to a thousand");
        })),
        "the line to reach all 1000",
        20_000,
      );
      await server.shutdown();
      for (const client of joined) {
        assert.equal(client.pending, 0, `${client.username}: nothing more`);
      }
    },
  );
});

/** Clients in the big room test: the size the issue names. */
const CROWD = 10_000;

/**
 * Descriptors each process needs for the crowd: one per connection, and a
 * margin for the runtime and the test's own files.
 */
const CROWD_DESCRIPTORS = CROWD + 500;

Deno.test("ten thousand in one room: every line reaches every member once, in order", async () => {
  const limit = Number(
    /^Max open files\s+(\d+)/m.exec(
      Deno.readTextFileSync("/proc/self/limits"),
    )?.[1] ?? 0,
  );
  assert.ok(
    limit >= CROWD_DESCRIPTORS,
    `this test holds ${CROWD} connections; raise the open-file limit to ` +
      `${CROWD_DESCRIPTORS} or more (ulimit -n), it is ${limit}`,
  );
  const server = await ChildServer.start([
    "--rate",
    "0",
    "--max-connections-per-ip",
    "0",
    "--max-connections",
    "0",
  ]);
  try {
    const summary = await runLoad({
      url: server.url.replace(/^http/, "ws") + "ws",
      clients: CROWD,
      senders: 1,
      rate: CROWD * 20,
      duration: 2,
      warmup: 0.5,
      drain: 5,
    });
    assert.equal(summary.clients_connected, CROWD, summary.verdict);
    assert.equal(summary.lost, 0, summary.verdict);
    assert.equal(summary.duplicated, 0, summary.verdict);
    assert.equal(summary.out_of_order, 0, summary.verdict);
    assert.ok(summary.messages_sent >= 20, "lines were sent");
    assert.ok(summary.passed, summary.verdict);
  } finally {
    await server.stop();
  }
});

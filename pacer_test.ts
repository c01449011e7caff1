/**
 * The upgrade pacer: turns stepped by hand ({@linkcode ManualTurns}), then a
 * real server over real sockets. Nothing asserts a duration.
 *
 * @module
 */

import assert from "node:assert/strict";
import { type Pace, UpgradePacer } from "./pacer.ts";
import { ChatClient } from "./testing/chat_client.ts";
import {
  RawConnection,
  type RawReply,
  RawWebSocket,
  upgradeReplyAt,
  upgradeRequest,
} from "./testing/raw_websocket.ts";
import { withServer } from "./testing/server.ts";
import { ManualTurns } from "./testing/turns.ts";
import { waitUntil, within } from "./testing/wait.ts";
import type { ChatServer } from "./server.ts";

/** Lets every settled promise's callbacks run. */
function settle(): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, 0));
}

/**
 * Takes turns from `pacer` and records who was told what, in the order
 * they were told, in `told`.
 */
function recorder(pacer: UpgradePacer): {
  told: string[];
  take(keys: string[], signals?: Record<string, AbortSignal>): void;
} {
  const told: string[] = [];
  return {
    told,
    take(keys, signals = {}): void {
      for (const key of keys) {
        const pace = pacer.take(key, signals[key]);
        if (typeof pace === "string") told.push(`${key}:${pace}`);
        else pace.then((later) => told.push(`${key}:${later}`));
      }
    },
  };
}

Deno.test("pacer: perTurn go at once, the rest a turn at a time in order of arrival", async () => {
  const turns = new ManualTurns();
  const pacer = new UpgradePacer({ perTurn: 2, schedule: turns.schedule });
  const { told, take } = recorder(pacer);
  take(["a", "b", "c", "d", "e"]);
  await settle();
  assert.deepEqual(told, ["a:go", "b:go"]);
  assert.equal(pacer.waiting, 3);

  turns.end();
  await settle();
  assert.deepEqual(told, ["a:go", "b:go", "c:go", "d:go"]);
  // One arriving now waits behind e, though it came in a new turn.
  take(["f"]);
  turns.end();
  await settle();
  assert.deepEqual(told.slice(4), ["e:go", "f:go"]);
  assert.equal(pacer.waiting, 0);

  // The turn that released e and f ends too; then nothing is scheduled,
  // and the next turn's first two go at once again.
  assert.equal(turns.scheduled, 1);
  turns.end();
  assert.equal(turns.scheduled, 0);
  take(["g", "h"]);
  assert.deepEqual(told.slice(6), ["g:go", "h:go"]);
  pacer.close();
});

Deno.test("pacer: past maxWaiting 'full', past the key's share 'full_key', at once", async () => {
  const turns = new ManualTurns();
  const pacer = new UpgradePacer({
    perTurn: 1,
    maxWaiting: 3,
    maxWaitingPerKey: 2,
    schedule: turns.schedule,
  });
  const { told, take } = recorder(pacer);
  take(["x", "ip1", "ip1", "ip1", "ip2", "ip3"]);
  assert.deepEqual(told, ["x:go", "ip1:full_key", "ip3:full"]);
  assert.deepEqual(
    [pacer.waiting, pacer.waitingFor("ip1"), pacer.waitingFor("ip2")],
    [3, 2, 1],
  );
  // A place that frees up is taken again.
  turns.end();
  await settle();
  assert.deepEqual(told.slice(3), ["ip1:go"]);
  assert.equal(pacer.waitingFor("ip1"), 1);
  take(["ip1", "ip4"]);
  assert.deepEqual(told.slice(4), ["ip4:full"]);
  pacer.close();
  await settle();
  assert.equal(pacer.waiting, 0);
  assert.equal(pacer.waitingFor("ip1"), 0);
});

/** An abort signal that counts the abort listeners it holds. */
function countedSignal(): { controller: AbortController; listeners(): number } {
  const controller = new AbortController();
  const signal = controller.signal;
  let listeners = 0;
  const add = signal.addEventListener.bind(signal);
  const remove = signal.removeEventListener.bind(signal);
  signal.addEventListener = (...args: Parameters<typeof add>) => {
    listeners++;
    add(...args);
  };
  signal.removeEventListener = (...args: Parameters<typeof remove>) => {
    listeners--;
    remove(...args);
  };
  return { controller, listeners: () => listeners };
}

Deno.test("pacer: a waiter whose peer leaves is 'gone', takes no turn and keeps no listener", async () => {
  const turns = new ManualTurns();
  const pacer = new UpgradePacer({ perTurn: 1, schedule: turns.schedule });
  const b = countedSignal();
  const c = countedSignal();
  const { told, take } = recorder(pacer);
  take(["a", "b", "c", "d"], {
    b: b.controller.signal,
    c: c.controller.signal,
  });
  assert.deepEqual([b.listeners(), c.listeners()], [1, 1]);
  b.controller.abort();
  await settle();
  assert.deepEqual(told, ["a:go", "b:gone"]);
  assert.equal(b.listeners(), 0);
  // b's place went to c: the next turn is c's.
  turns.end();
  await settle();
  assert.deepEqual(told.slice(2), ["c:go"]);
  assert.equal(c.listeners(), 0, "a released waiter keeps no listener");
  c.controller.abort();
  await settle();
  assert.deepEqual(told.slice(3), []);
  // Already gone before it asked: told at once.
  assert.equal(pacer.take("e", AbortSignal.abort()), "gone");
  turns.end();
  await settle();
  assert.deepEqual(told.slice(3), ["d:go"]);
  pacer.close();
});

Deno.test("pacer: close tells every waiter 'closed', cancels its turn, and refuses later ones", async () => {
  const turns = new ManualTurns();
  const pacer = new UpgradePacer({ perTurn: 1, schedule: turns.schedule });
  const signal = countedSignal();
  const { told, take } = recorder(pacer);
  take(["a", "b", "c"], { c: signal.controller.signal });
  assert.equal(turns.scheduled, 1);
  pacer.close();
  await settle();
  assert.deepEqual(told, ["a:go", "b:closed", "c:closed"]);
  assert.equal(turns.scheduled, 0, "no turn left scheduled");
  assert.equal(signal.listeners(), 0);
  assert.equal(pacer.take("d"), "closed");
  pacer.close();
  assert.equal(turns.scheduled, 0);
});

Deno.test("pacer: with setImmediate, a burst goes through a few a turn and close ends it", async () => {
  const pacer = new UpgradePacer({ perTurn: 3 });
  const paces: (Pace | Promise<Pace>)[] = [];
  for (let i = 0; i < 20; i++) paces.push(pacer.take(`k${i % 4}`));
  assert.equal(paces.filter((pace) => pace === "go").length, 3);
  const all = await Promise.all(paces.slice(0, 14));
  assert.ok(all.every((pace) => pace === "go"));
  pacer.close();
  const rest = await Promise.all(paces.slice(14));
  assert.ok(rest.every((pace) => pace === "go" || pace === "closed"));
  assert.equal(pacer.waiting, 0);
});

Deno.test("pacer: limits must be whole numbers, perTurn at least 1", () => {
  assert.throws(() => new UpgradePacer({ perTurn: 0 }), RangeError);
  assert.throws(() => new UpgradePacer({ perTurn: 1.5 }), RangeError);
  assert.throws(() => new UpgradePacer({ maxWaiting: -1 }), RangeError);
  const open = new UpgradePacer({ maxWaiting: 0, maxWaitingPerKey: Infinity });
  assert.deepEqual([open.maxWaiting, open.maxWaitingPerKey], [0, Infinity]);
});

// ----------------------------------------------------- over real sockets

/** One sample's value from the server's metrics (0 when absent). */
function sample(server: ChatServer, series: string): number {
  const line = server.metrics.render().split("\n")
    .find((row) => row.startsWith(`${series} `));
  return line === undefined ? 0 : Number(line.split(" ")[1]);
}

/** Upgrades waiting for their turn on `server`. */
function waiting(server: ChatServer): number {
  return sample(server, "hubchat_upgrades_waiting");
}

/** Upgrades refused for `reason` on `server`. */
function rejected(server: ChatServer, reason: string): number {
  return sample(server, `hubchat_rejected_upgrades_total{reason="${reason}"}`);
}

/**
 * Starts an upgrade as `name` and waits until it waits for its turn;
 * returns the upgrade, to be awaited once its turn has come.
 */
async function queue<T>(
  server: ChatServer,
  name: string,
  start: () => Promise<T>,
): Promise<{ upgrade: Promise<T> }> {
  const before = waiting(server);
  const upgrade = start();
  // Awaited later: meanwhile a rejection is not an unhandled one.
  upgrade.catch(() => {});
  await waitUntil(() => waiting(server) === before + 1, `${name} to wait`);
  return { upgrade };
}

/** Queues an upgrade for each name, in order; returns their replies. */
async function queueUpgrades(
  server: ChatServer,
  names: string[],
): Promise<Promise<RawReply>[]> {
  const waiters: Promise<RawReply>[] = [];
  for (const name of names) {
    const { upgrade } = await queue(
      server,
      name,
      () => upgradeReplyAt(server.port, `/ws?username=${name}`),
    );
    waiters.push(upgrade);
  }
  return waiters;
}

Deno.test("over sockets: waiting upgrades are admitted a turn at a time in order; one that left is never upgraded", async () => {
  const turns = new ManualTurns();
  await withServer(
    { pacing: { perTurn: 1, maxWaiting: 3, schedule: turns.schedule } },
    async (server, track) => {
      const ann = track(await ChatClient.join(server.port, "ann"));
      // ann took this turn's only place: the rest wait for turns to end.
      const w1 = await queue(
        server,
        "w1",
        () => RawWebSocket.connect(server.port, "w1"),
      );
      const quitter = track(await RawConnection.connect(server.port));
      await queue(server, "quitter", async () => {
        await quitter.write(
          upgradeRequest("/ws?username=quitter", { port: server.port }),
        );
      });
      const w2 = await queue(
        server,
        "w2",
        () => RawWebSocket.connect(server.port, "w2"),
      );
      // Three wait: a fourth is refused at once, and says why.
      const over: RawReply = await upgradeReplyAt(
        server.port,
        "/ws?username=w3",
      );
      assert.equal(over.status, 503);
      assert.equal(
        over.body.trim(),
        "too many connections are waiting to be admitted (3); try again shortly",
      );
      assert.equal(rejected(server, "limit_waiting"), 1);

      await quitter.close();
      await waitUntil(() => waiting(server) === 2, "the quitter to leave");
      assert.equal(rejected(server, "peer_gone"), 1);

      for (const [name, upgrade] of [["w1", w1], ["w2", w2]] as const) {
        turns.end();
        const socket = track(
          await within(upgrade.upgrade, `${name}'s upgrade`),
        );
        assert.equal((await socket.next(`${name}'s welcome`)).type, "welcome");
        await ann.expectPresence("join", name);
      }
      assert.equal(waiting(server), 0);
      // The quitter was never upgraded: its name is free, no slot is held.
      assert.equal(server.rooms.get("lobby")?.isTaken("quitter"), false);
      assert.equal(sample(server, "hubchat_connections"), 3);
      ann.say("after the crowd");
      await ann.expectMessage("ann", "after the crowd");
    },
  );
  assert.equal(turns.scheduled, 0, "shutdown left no turn scheduled");
});

Deno.test("over sockets: one address may have as many upgrades waiting as it may hold connections; a dry run is refused as the upgrade is", async () => {
  const turns = new ManualTurns();
  await withServer(
    {
      maxConnectionsPerIp: 3,
      pacing: { perTurn: 1, schedule: turns.schedule },
    },
    async (server, track) => {
      track(await ChatClient.join(server.port, "ann"));
      const waiters = await queueUpgrades(server, ["w1", "w2", "w3"]);
      const expected =
        "too many connections from your address are waiting to be admitted (3); wait for them before opening more";
      const over = await upgradeReplyAt(server.port, "/ws?username=w4");
      assert.equal(over.status, 429);
      assert.equal(over.body.trim(), expected);
      // A dry run (no Upgrade header) gets the upgrade's answer, not 426.
      const dry = await fetch(`${server.url}ws?username=w4`);
      assert.equal(dry.status, 429);
      assert.equal((await dry.text()).trim(), expected);
      assert.equal(
        rejected(server, "limit_per_ip"),
        1,
        "a dry run counts none",
      );
      assert.equal(waiting(server), 3);
      // Their turns come; the per-address cap on connections (3) then
      // refuses the last, which arrived while ann held a place.
      for (let i = 0; i < 3; i++) turns.end();
      const statuses = (await within(Promise.all(waiters), "the waiters"))
        .map((reply) => reply.status);
      assert.deepEqual(statuses, [101, 101, 429]);
      assert.equal(waiting(server), 0);
    },
  );
});

Deno.test("over sockets: shutdown refuses the upgrades still waiting, with 503", async () => {
  const turns = new ManualTurns();
  await withServer(
    { pacing: { perTurn: 1, schedule: turns.schedule } },
    async (server, track) => {
      track(await ChatClient.join(server.port, "ann"));
      const waiters = await queueUpgrades(server, ["w1", "w2", "w3"]);
      await within(server.shutdown(), "shutdown", 10_000);
      for (const reply of await Promise.all(waiters)) {
        assert.equal(reply.status, 503);
        assert.equal(reply.body.trim(), "server shutting down");
      }
      assert.equal(rejected(server, "shutdown"), 3);
      assert.equal(turns.scheduled, 0, "no turn left scheduled");
    },
  );
});

Deno.test("over sockets: 300 clients connecting at once are all admitted while two chat, losing no line", async () => {
  await withServer(
    {
      maxConnectionsPerIp: 0,
      ratePerSecond: 0,
      largeRoom: 1000,
      pacing: { perTurn: 2 },
    },
    async (server, track) => {
      const ann = track(await ChatClient.join(server.port, "ann"));
      const bob = track(await ChatClient.join(server.port, "bob"));
      await ann.expectPresence("join", "bob");
      const crowd = Array.from(
        { length: 300 },
        (_, i) =>
          ChatClient.enter(server.port, { username: `c${i}`, room: "crowd" }),
      );
      const said: string[] = [];
      for (let i = 0; i < 50; i++) {
        said.push(`line ${i}`);
        ann.say(`line ${i}`);
        await new Promise((resolve) => setTimeout(resolve, 0));
      }
      const joined = await Promise.allSettled(crowd);
      for (const result of joined) {
        if (result.status === "fulfilled") track(result.value);
      }
      const failed = joined.filter((result) => result.status === "rejected");
      assert.deepEqual(failed, [], "every client of the crowd was admitted");
      assert.equal(server.rooms.get("crowd")?.online, 300);
      for (const text of said) await bob.expectMessage("ann", text);
      assert.equal(waiting(server), 0);
    },
  );
});

Deno.test("over sockets: shutdown in the middle of a crowd's arrival leaves nothing behind", async () => {
  await withServer(
    { maxConnectionsPerIp: 0, pacing: { perTurn: 2 } },
    async (server) => {
      const crowd = Array.from(
        { length: 200 },
        (_, i) => upgradeReplyAt(server.port, `/ws?username=c${i}&room=crowd`),
      );
      await waitUntil(() => waiting(server) > 0, "some of the crowd to wait");
      await within(server.shutdown(), "shutdown", 10_000);
      const statuses = new Set(
        (await Promise.all(crowd)).map((reply) => reply.status),
      );
      // Each was upgraded (and then closed with 1001) or refused with 503.
      for (const status of statuses) {
        assert.ok(status === 101 || status === 503);
      }
      assert.ok(statuses.has(503), "some were still waiting at shutdown");
      assert.equal(waiting(server), 0);
    },
  );
});

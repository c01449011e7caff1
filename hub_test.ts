import assert from "node:assert/strict";
import {
  BLOCKED_RETRY_MS,
  Client,
  type ClientEnd,
  type ClientSocket,
  CLOSE_SLOW_CONSUMER,
  DEFAULT_HIGH_WATER_BYTES,
  DEFAULT_MAX_QUEUE,
  type FrameMemo,
  joinFrame,
} from "./client.ts";
import { Hub } from "./hub.ts";

/** A socket that records frames; its backlog is set by the test. */
class FakeSocket implements ClientSocket {
  bufferedAmount = 0;
  frames: string[] = [];
  closed: { code?: number; reason?: string } | undefined;

  send(data: string): void {
    if (this.closed) throw new Error("send on a closed socket");
    this.frames.push(data);
  }

  close(code?: number, reason?: string): void {
    this.closed ??= { code, reason };
  }

  /** Every message received, frames split on newlines. */
  messages(): string[] {
    return this.frames.flatMap((frame) => frame.split("\n"));
  }
}

interface Peer {
  socket: FakeSocket;
  client: Client;
  ends: ClientEnd[];
}

function addPeer(hub: Hub, username: string, onEnd?: () => void): Peer {
  const socket = new FakeSocket();
  const ends: ClientEnd[] = [];
  const client = new Client(socket, {
    username,
    flusher: hub.flusher,
    onEnd(_client, end) {
      ends.push(end);
      onEnd?.();
    },
  });
  hub.register(client);
  return { socket, client, ends };
}

/** Lets every pending flush run. */
async function settle(): Promise<void> {
  await nextTurn();
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Lets the flusher's end-of-turn flush run (immediates run in order). */
function nextTurn(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

Deno.test("broadcast reaches every client, including across turns", async () => {
  const hub = new Hub();
  const peers = ["a", "b", "c"].map((name) => addPeer(hub, name));
  hub.broadcastText("one");
  hub.broadcastJSON({ n: 2 });
  hub.broadcast(new TextEncoder().encode("three"));
  await settle();
  hub.broadcastText("four");
  await settle();
  for (const { socket } of peers) {
    assert.deepEqual(socket.messages(), ["one", '{"n":2}', "three", "four"]);
  }
  hub.close(1001, "done");
});

Deno.test("a turn's messages leave as one frame at its end, a lone one too", async () => {
  const hub = new Hub();
  const { socket } = addPeer(hub, "a");
  for (let i = 0; i < 5; i++) hub.broadcastText(`m${i}`);
  assert.deepEqual(socket.frames, [], "nothing is sent mid-turn");
  await nextTurn();
  assert.deepEqual(socket.frames, ["m0\nm1\nm2\nm3\nm4"]);
  hub.broadcastText("m5");
  assert.equal(socket.frames.length, 1);
  await nextTurn();
  assert.deepEqual(socket.frames, ["m0\nm1\nm2\nm3\nm4", "m5"]);
  await nextTurn();
  assert.equal(socket.frames.length, 2, "an empty turn sends nothing");
  hub.close(1001, "done");
});

Deno.test("a busy socket gets everything pending as one frame", async () => {
  const hub = new Hub();
  const { socket } = addPeer(hub, "a");
  socket.bufferedAmount = 100;
  for (let i = 0; i < 4; i++) hub.broadcastText(`m${i}`);
  assert.deepEqual(socket.frames, []);
  await nextTurn();
  assert.deepEqual(socket.frames, ["m0\nm1\nm2\nm3"]);
  hub.close(1001, "done");
});

Deno.test("per-client order holds under random backlog", async () => {
  const hub = new Hub();
  const peers = Array.from({ length: 8 }, (_, i) => addPeer(hub, `p${i}`));
  const sent: string[] = [];
  let seed = 42;
  function random(): number {
    seed = (seed * 1103515245 + 12345) % 2147483648;
    return seed / 2147483648;
  }
  for (let turn = 0; turn < 50; turn++) {
    for (const { socket } of peers) {
      socket.bufferedAmount = random() < 0.3 ? 2 * DEFAULT_HIGH_WATER_BYTES : 0;
    }
    // At most 4 a turn: 50 turns stay under the queue bound even for a
    // client blocked throughout, so this test is about order, not eviction.
    const count = Math.floor(random() * 5);
    for (let i = 0; i < count; i++) {
      const message = `m${sent.length}`;
      sent.push(message);
      hub.broadcastText(message);
    }
    await nextTurn();
  }
  for (const { socket } of peers) socket.bufferedAmount = 0;
  // Blocked clients are retried on a slower timer.
  for (let i = 0; i < 100 && hub.flusher.blockedCount > 0; i++) {
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
  await nextTurn();
  for (const { socket, client } of peers) {
    assert.equal(client.ended, false);
    assert.deepEqual(socket.messages(), sent);
  }
  hub.close(1001, "done");
});

Deno.test("a burst larger than the queue is flushed, not evicted, while the socket keeps up", async () => {
  const hub = new Hub();
  const { socket, client } = addPeer(hub, "a");
  const sent: string[] = [];
  for (let i = 0; i < DEFAULT_MAX_QUEUE * 3; i++) {
    sent.push(`m${i}`);
    hub.broadcastText(`m${i}`);
  }
  await nextTurn();
  assert.equal(client.ended, false);
  assert.deepEqual(socket.messages(), sent);
  hub.close(1001, "done");
});

Deno.test("a stalled client is evicted with 4008; the others get everything in order", async () => {
  const hub = new Hub();
  const leaves: string[] = [];
  const good = [addPeer(hub, "a"), addPeer(hub, "b")];
  const stalled = addPeer(hub, "stalled", () => {
    // Announce the leave from inside the broadcast that evicted it.
    hub.unregister(stalled.client);
    hub.broadcastText("leave stalled");
    leaves.push("stalled");
  });
  stalled.socket.bufferedAmount = DEFAULT_HIGH_WATER_BYTES;
  const sent: string[] = [];
  function send(): void {
    sent.push(`m${sent.length}`);
    hub.broadcastText(sent.at(-1)!);
  }
  send();
  await nextTurn(); // the turn's flush finds it backed up
  await sleep(BLOCKED_RETRY_MS * 3); // and so does the retry: stalled
  assert.equal(stalled.client.ended, false, "waiting is not a crime");
  while (sent.length < DEFAULT_MAX_QUEUE + 10) {
    send();
    if (sent.length % 7 === 0) await nextTurn();
  }
  await settle();
  assert.equal(stalled.client.ended, true);
  assert.deepEqual(stalled.socket.closed, {
    code: CLOSE_SLOW_CONSUMER,
    reason: "slow consumer",
  });
  assert.deepEqual(stalled.ends, [{
    code: CLOSE_SLOW_CONSUMER,
    reason: "slow consumer",
    byServer: true,
  }]);
  assert.deepEqual(leaves, ["stalled"]);
  assert.equal(hub.clientCount, 2);
  // The eviction happened on message DEFAULT_MAX_QUEUE (the 257th queued);
  // its leave follows that message for everyone.
  const evictedAt = DEFAULT_MAX_QUEUE;
  const expected = [
    ...sent.slice(0, evictedAt + 1),
    "leave stalled",
    ...sent.slice(evictedAt + 1),
  ];
  for (const { socket } of good) assert.deepEqual(socket.messages(), expected);
  // Nothing was written to the stalled socket while it was backed up.
  assert.deepEqual(stalled.socket.frames, []);
  hub.close(1001, "done");
});

Deno.test("a socket backed up at one turn end is not evicted by the next burst", async () => {
  const hub = new Hub();
  const { socket, client } = addPeer(hub, "a");
  socket.bufferedAmount = DEFAULT_HIGH_WATER_BYTES;
  hub.broadcastText("m0");
  await nextTurn(); // backed up once: maybe just this turn's own writes
  const sent = ["m0"];
  for (let i = 1; i <= DEFAULT_MAX_QUEUE * 2; i++) {
    sent.push(`m${i}`);
    hub.broadcastText(`m${i}`);
  }
  assert.equal(client.ended, false);
  socket.bufferedAmount = 0;
  await sleep(BLOCKED_RETRY_MS * 3);
  assert.equal(client.ended, false);
  assert.deepEqual(socket.messages(), sent);
  hub.close(1001, "done");
});

Deno.test("unregister is idempotent and ends reported once", () => {
  const hub = new Hub();
  const peer = addPeer(hub, "a");
  assert.equal(hub.clientCount, 1);
  assert.equal(hub.register(peer.client), false, "no double registration");
  assert.equal(hub.unregister(peer.client), true);
  assert.equal(hub.unregister(peer.client), false);
  assert.equal(hub.clientCount, 0);
  peer.client.socketClosed(1000, "bye");
  peer.client.socketClosed(1000, "bye");
  peer.client.close(1001, "late");
  assert.equal(peer.ends.length, 1);
  assert.equal(peer.socket.closed, undefined, "no close after the peer's");
  assert.equal(hub.register(peer.client), false, "an ended client stays out");
  hub.close(1001, "done");
});

Deno.test("clients may unregister during a broadcast", async () => {
  const hub = new Hub();
  const order: string[] = [];
  const peers: Peer[] = [];
  for (const name of ["a", "b", "c", "d"]) {
    const peer = addPeer(hub, name);
    peers.push(peer);
    const deliver = peer.client.deliver.bind(peer.client);
    peer.client.deliver = (message: string) => {
      order.push(`${name}:${message}`);
      const accepted = deliver(message);
      // b leaves while "x" is being fanned out, and says so to the others.
      if (name === "b" && message === "x") {
        hub.unregister(peers[3].client);
        hub.unregister(peer.client);
        hub.broadcastText("b left");
      }
      return accepted;
    };
  }
  hub.broadcastText("x");
  await nextTurn();
  assert.deepEqual(order, [
    "a:x",
    "b:x",
    "c:x",
    "a:b left",
    "c:b left",
  ]);
  assert.equal(hub.clientCount, 2);
  hub.broadcastText("y");
  assert.deepEqual(order.slice(5), ["a:y", "c:y"]);
  hub.close(1001, "done");
});

Deno.test("close ends every client with the code and empties the hub", () => {
  const hub = new Hub();
  const peers = ["a", "b"].map((name) => addPeer(hub, name));
  hub.broadcastText("pending");
  hub.close(1001, "server shutting down");
  assert.equal(hub.clientCount, 0);
  for (const { socket, client, ends } of peers) {
    assert.equal(client.ended, true);
    assert.deepEqual(socket.closed, {
      code: 1001,
      reason: "server shutting down",
    });
    assert.equal(ends.length, 1);
  }
});

Deno.test("a send that throws ends the client instead of the broadcast", async () => {
  const hub = new Hub();
  const a = addPeer(hub, "a");
  const b = addPeer(hub, "b");
  a.socket.send = () => {
    throw new Error("socket gone");
  };
  hub.broadcastText("x");
  await nextTurn();
  assert.equal(a.client.ended, true);
  assert.deepEqual(a.ends.map((end) => end.byServer), [false]);
  assert.deepEqual(b.socket.messages(), ["x"]);
  hub.close(1001, "done");
});

Deno.test("joinFrame shares one string among identical batches", () => {
  const memo: FrameMemo = { batch: [], frame: "" };
  const first = ["a", "b", "c"];
  assert.equal(joinFrame(first, memo), "a\nb\nc");
  const second = ["a", "b", "c"];
  assert.equal(joinFrame(second, memo), "a\nb\nc");
  assert.equal(memo.batch, first, "the memo was reused, not rebuilt");
  assert.equal(joinFrame(["a", "b", "d"], memo), "a\nb\nd");
  assert.equal(joinFrame(["solo"], memo), "solo");
});

Deno.test("close sends what is pending first, unless the socket is backed up", async () => {
  const hub = new Hub();
  const ready = addPeer(hub, "ready");
  const stuck = addPeer(hub, "stuck");
  stuck.socket.bufferedAmount = DEFAULT_HIGH_WATER_BYTES;
  for (const message of ["a", "b", "c"]) hub.broadcastText(message);
  hub.close(1001, "server shutting down");
  assert.deepEqual(ready.socket.messages(), ["a", "b", "c"]);
  assert.deepEqual(ready.socket.closed?.code, 1001);
  assert.deepEqual(stuck.socket.frames, []);
  assert.deepEqual(stuck.socket.closed?.code, 1001);
  await nextTurn();
});

Deno.test("sendTo reaches only its recipients, in the broadcasts' order, counted like one", async () => {
  const counted: [number, string][] = [];
  const hub = new Hub({
    onBroadcast(recipients, text) {
      counted.push([recipients, text]);
    },
  });
  const [a, b, c] = ["a", "b", "c"].map((name) => addPeer(hub, name));
  const deliver = a.client.deliver.bind(a.client);
  a.client.deliver = (message: string) => {
    const accepted = deliver(message);
    // A direct message raised mid-broadcast waits for the broadcast to end.
    if (message === "x") hub.sendTo("dm", [b.client, a.client]);
    return accepted;
  };
  c.client.close(1000, "gone");
  hub.broadcastText("x");
  hub.broadcastText("y");
  await settle();
  assert.deepEqual(a.socket.messages(), ["x", "dm", "y"]);
  assert.deepEqual(b.socket.messages(), ["x", "dm", "y"]);
  assert.deepEqual(c.socket.messages(), [], "an ended client gets nothing");
  assert.deepEqual(counted, [[2, "x"], [2, "dm"], [2, "y"]]);
  hub.close(1001, "done");
});

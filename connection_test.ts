import assert from "node:assert/strict";
import type { ClientSocket } from "./client.ts";
import {
  Connection,
  Connections,
  type ConnectionsOptions,
  DEFAULT_BURST,
  DEFAULT_MAX_STRIKES,
  evictionCause,
  FloodGuard,
  type FloodVerdict,
  isFrameTooLarge,
  TokenBucket,
} from "./connection.ts";
import type { Logger } from "./log.ts";
import { ServerMetrics } from "./metrics.ts";
import { splitFrame } from "./protocol.ts";
import { Rooms } from "./room.ts";
import { ChatClient } from "./testing/chat_client.ts";
import { within } from "./testing/wait.ts";
import { sleep } from "./tools/wait.ts";

Deno.test("token bucket: burst at once, then the rate", () => {
  const bucket = new TokenBucket({ ratePerSecond: 10, burst: 20 });
  for (let i = 0; i < 20; i++) assert.equal(bucket.take(1000), true, `#${i}`);
  assert.equal(bucket.take(1000), false);
  assert.equal(bucket.take(1099), false); // 0.99 of a token
  assert.equal(bucket.take(1100), true); // one token per 100 ms
  assert.equal(bucket.take(1100), false);
  // A long pause refills to the burst, not beyond.
  assert.equal(bucket.available(60_000), 20);
  for (let i = 0; i < 20; i++) bucket.take(60_000);
  assert.equal(bucket.take(60_000), false);
  // A clock going back refills nothing and takes nothing extra.
  assert.equal(bucket.take(0), false);
  assert.equal(bucket.take(60_100), true);
});

Deno.test("token bucket: a reservation takes what there is, and its unused part goes back, up to the burst", () => {
  const bucket = new TokenBucket({ ratePerSecond: 10, burst: 20 });
  assert.equal(bucket.takeUpTo(1000, 5), 5);
  assert.equal(bucket.takeUpTo(1000, Infinity), 15);
  assert.equal(bucket.takeUpTo(1000, 1), 0);
  bucket.giveBack(12);
  assert.equal(bucket.available(1000), 12);
  bucket.giveBack(100);
  assert.equal(bucket.available(1000), 20);
});

Deno.test("token bucket: bad options are refused", () => {
  assert.throws(
    () => new TokenBucket({ ratePerSecond: 0, burst: 1 }),
    /ratePerSecond is 0; expected a finite number > 0/,
  );
  assert.throws(
    () => new TokenBucket({ ratePerSecond: 1, burst: -1 }),
    /burst is -1/,
  );
  assert.throws(
    () => new TokenBucket({ ratePerSecond: NaN, burst: 1 }),
    RangeError,
  );
});

Deno.test("flood guard: warn once, drop, close after the strikes", () => {
  const guard = new FloodGuard();
  const verdicts: FloodVerdict[] = [];
  for (let i = 0; i < DEFAULT_BURST + DEFAULT_MAX_STRIKES; i++) {
    verdicts.push(guard.check(0));
  }
  assert.deepEqual(verdicts, [
    ...Array(DEFAULT_BURST).fill("accept"),
    "warn",
    ...Array(DEFAULT_MAX_STRIKES - 2).fill("drop"),
    "close",
  ]);
  assert.equal(guard.strikes, DEFAULT_MAX_STRIKES);
});

Deno.test("flood guard: an accepted frame resets the strikes", () => {
  const guard = new FloodGuard({ ratePerSecond: 1, burst: 1, maxStrikes: 3 });
  assert.equal(guard.check(0), "accept");
  assert.equal(guard.check(10), "warn");
  assert.equal(guard.check(20), "drop");
  assert.equal(guard.strikes, 2);
  assert.equal(guard.check(1000), "accept");
  assert.equal(guard.strikes, 0);
  assert.equal(guard.check(1001), "warn"); // a new streak is warned again
  assert.equal(guard.check(1002), "drop");
  assert.equal(guard.check(1003), "close");
  assert.throws(() => new FloodGuard({ maxStrikes: 0 }), /maxStrikes is 0/);
  assert.throws(() => new FloodGuard({ maxStrikes: 1.5 }), /whole number/);
});

// ------------------------------------------------ a connection, no socket

/** A socket that keeps what it is sent, one message per line of a frame. */
class RecordingSocket extends EventTarget implements ClientSocket {
  bufferedAmount = 0;
  #sent: Record<string, unknown>[] = [];
  /** The close the connection asked for, if it did. */
  closedWith: { code?: number; reason?: string } | null = null;

  send(frame: string): void {
    for (const line of splitFrame(frame)) this.#sent.push(JSON.parse(line));
  }

  close(code?: number, reason?: string): void {
    this.closedWith = { code, reason };
  }

  /** The messages sent since the last call. */
  take(): Record<string, unknown>[] {
    const sent = this.#sent;
    this.#sent = [];
    return sent;
  }
}

/** Lets the flusher send what this turn delivered. */
function nextTurn(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

/** One server's worth of shared state, with no sockets and no history. */
function setup(options: Partial<ConnectionsOptions> = {}) {
  const rooms = new Rooms();
  const metrics = new ServerMetrics({
    connectionsOpen: () => 0,
    clients: () => rooms.clients(),
  });
  const logged: Record<string, unknown>[] = [];
  const logger: Logger = {
    log(level, event, fields = {}): void {
      logged.push({ level, event, ...fields });
    },
  };
  const shared: ConnectionsOptions = { rooms, metrics, logger, ...options };
  /** Opens a connection for `username` in `room`, as after an upgrade. */
  function connect(username: string, room = "lobby") {
    const socket = new RecordingSocket();
    let released = 0;
    const connection = new Connection(socket, {
      newcomer: {
        ip: "192.0.2.1",
        username,
        room: rooms.open(room)!,
        since: undefined,
        release: () => released++,
      },
      shared,
    });
    connection.open();
    return { connection, socket, released: () => released };
  }
  return { rooms, metrics, logged, shared, connect };
}

function types(messages: Record<string, unknown>[]): unknown[] {
  return messages.map((message) => message.type);
}

const HI = '{"type":"message","text":" hi "}';

Deno.test("isFrameTooLarge counts bytes of UTF-8, not characters", () => {
  assert.equal(isFrameTooLarge("x".repeat(8192), 8192), false);
  assert.equal(isFrameTooLarge("x".repeat(8193), 8192), true);
  assert.equal(isFrameTooLarge("é".repeat(4096), 8192), false);
  assert.equal(isFrameTooLarge("é".repeat(4097), 8192), true);
  assert.equal(isFrameTooLarge("€".repeat(2730), 8192), false); // 8190 bytes
  assert.equal(isFrameTooLarge("€".repeat(2731), 8192), true); // 8193 bytes
  assert.equal(isFrameTooLarge("😀".repeat(2048), 8192), false);
  assert.equal(isFrameTooLarge("😀".repeat(2048) + "x", 8192), true);
  // A lone surrogate becomes the 3-byte replacement character.
  assert.equal(isFrameTooLarge("\ud800\ud800", 6), false);
  assert.equal(isFrameTooLarge("\ud800\ud800", 5), true);
});

Deno.test("evictionCause: slow consumers, floods and dead peers; not ordinary ends", () => {
  assert.equal(
    evictionCause({ code: 4008, reason: "slow consumer", byServer: true }),
    "slow_consumer",
  );
  assert.equal(
    evictionCause({ code: 1008, reason: "rate limit", byServer: true }),
    "rate_limit",
  );
  const idle = "No response from ping frame.";
  assert.equal(
    evictionCause({ code: 1001, reason: idle, byServer: false }),
    "idle",
  );
  // A browser leaving the page also closes with 1001, with another reason.
  assert.equal(
    evictionCause({ code: 1001, reason: "", byServer: false }),
    null,
  );
  assert.equal(
    evictionCause({ code: 1001, reason: idle, byServer: true }),
    null,
  );
  assert.equal(
    evictionCause({ code: 1000, reason: "", byServer: false }),
    null,
  );
});

Deno.test("connection: open welcomes the peer, then a line reaches the room once", async () => {
  const { metrics, connect } = setup();
  const ann = connect("ann");
  const bob = connect("bob");
  await nextTurn();
  assert.deepEqual(types(ann.socket.take()), ["welcome", "join", "join"]);
  assert.deepEqual(types(bob.socket.take()), ["welcome", "join"]);
  ann.connection.receive(HI);
  await nextTurn();
  for (const { socket } of [ann, bob]) {
    const [line, ...rest] = socket.take();
    assert.deepEqual(rest, []);
    assert.equal(line.type, "message");
    assert.equal(line.username, "ann");
    assert.equal(line.text, "hi");
  }
  assert.equal(metrics.received.get(), 1);
});

Deno.test("connection: a binary frame closes with 1003, an oversized one with 1009", async () => {
  const { metrics, connect } = setup({ maxFrameBytes: 16 });
  const bin = connect("bin");
  bin.connection.receive(new Uint8Array([0x7b, 0x7d]));
  assert.deepEqual(bin.socket.closedWith, {
    code: 1003,
    reason: "binary frames are not supported; send JSON text",
  });
  const big = connect("big");
  big.connection.receive("x".repeat(17));
  assert.deepEqual(big.socket.closedWith, {
    code: 1009,
    reason: "frame larger than 16 bytes",
  });
  // 16 bytes of UTF-8 is within the limit: parsed, and refused as JSON.
  const fits = connect("fits");
  await nextTurn();
  fits.socket.take();
  fits.connection.receive("é".repeat(8));
  await nextTurn();
  assert.equal(fits.socket.closedWith, null);
  assert.deepEqual(types(fits.socket.take()), ["error"]);
  assert.equal(metrics.errors.get("binary_frame"), 1);
  assert.equal(metrics.errors.get("frame_too_large"), 1);
  assert.equal(metrics.errors.get("invalid_json"), 1);
  assert.equal(bin.released() + big.released(), 2, "both slots given back");
});

Deno.test("connection: a bad frame gets an error to the offender only", async () => {
  const { connect } = setup();
  const ann = connect("ann");
  const bob = connect("bob");
  await nextTurn();
  ann.socket.take();
  bob.socket.take();
  ann.connection.receive('{"type":"message","text":');
  ann.connection.receive('{"type":"shout"}');
  await nextTurn();
  const errors = ann.socket.take();
  assert.deepEqual(errors.map((error) => error.code), [
    "invalid_json",
    "unknown_type",
  ]);
  assert.deepEqual(bob.socket.take(), []);
  assert.equal(ann.socket.closedWith, null);
});

Deno.test("connection: over the rate, warned once, then dropped, then closed with 1008", async () => {
  const { metrics, logged, connect } = setup({ ratePerSecond: 1, burst: 1 });
  const ann = connect("ann");
  await nextTurn();
  ann.socket.take();
  for (let i = 0; i <= DEFAULT_MAX_STRIKES; i++) ann.connection.receive(HI);
  // What the outbox held goes out before the close.
  const sent = ann.socket.take();
  assert.deepEqual(types(sent), ["message", "error"]);
  assert.equal(sent[1].code, "rate_limited");
  assert.match(
    sent[1].text as string,
    /at most 1 per second \(bursts of 1\)/,
  );
  assert.deepEqual(ann.socket.closedWith, {
    code: 1008,
    reason: "rate limit exceeded repeatedly",
  });
  assert.equal(metrics.received.get(), DEFAULT_MAX_STRIKES + 1);
  assert.equal(metrics.errors.get("rate_limited"), DEFAULT_MAX_STRIKES);
  assert.equal(metrics.evictions.get("rate_limit"), 1);
  assert.equal(logged.at(-1)?.event, "evict");
  assert.equal(logged.at(-1)?.cause, "rate_limit");
});

Deno.test("connection: typing goes to the others, once per interval", async () => {
  const { connect } = setup();
  const ann = connect("ann");
  const bob = connect("bob");
  await nextTurn();
  ann.socket.take();
  bob.socket.take();
  ann.connection.receive('{"type":"typing"}');
  ann.connection.receive('{"type":"typing"}');
  await nextTurn();
  assert.deepEqual(ann.socket.take(), []);
  const seen = bob.socket.take();
  assert.deepEqual(types(seen), ["typing"]);
  assert.equal(seen[0].username, "ann");
});

Deno.test("connection: join moves rooms; the same room or a taken name is refused", async () => {
  const { rooms, metrics, connect } = setup();
  const ann = connect("ann");
  const bob = connect("bob");
  connect("ann", "dev");
  await nextTurn();
  ann.socket.take();
  bob.socket.take();

  ann.connection.receive('{"type":"join","room":"lobby"}');
  ann.connection.receive('{"type":"join","room":"dev"}');
  await nextTurn();
  const refusals = ann.socket.take();
  assert.deepEqual(refusals.map((error) => error.code), [
    "invalid_room",
    "username_taken",
  ]);
  assert.equal(metrics.errors.get("username_taken"), 1);
  assert.equal(ann.connection.room.name, "lobby");

  ann.connection.receive('{"type":"join","room":"kitchen"}');
  await nextTurn();
  const moved = ann.socket.take();
  assert.deepEqual(types(moved), ["welcome", "join"]);
  assert.equal(moved[0].room, "kitchen");
  assert.equal(ann.connection.room, rooms.get("kitchen"));
  const left = bob.socket.take();
  assert.deepEqual(types(left), ["leave"]);
  assert.equal(left[0].username, "ann");
  // A line now goes to the new room only.
  ann.connection.receive(HI);
  await nextTurn();
  assert.deepEqual(types(ann.socket.take()), ["message"]);
  assert.deepEqual(bob.socket.take(), []);
});

Deno.test("connection: its end leaves the room, frees the slot and is logged once", async () => {
  const { metrics, logged, connect } = setup();
  const ann = connect("ann");
  const bob = connect("bob");
  await nextTurn();
  bob.socket.take();
  ann.connection.client.socketClosed(1000, "bye");
  ann.connection.client.socketClosed(1000, "bye"); // Deno may say so twice
  await nextTurn();
  assert.equal(ann.released(), 1);
  const left = bob.socket.take();
  assert.deepEqual(types(left), ["leave"]);
  assert.equal(left[0].online, 1);
  const ends = logged.filter((line) => line.event === "disconnect");
  assert.equal(ends.length, 1);
  assert.equal(ends[0].user, "ann");
  assert.equal(ends[0].by, "peer");
  assert.equal(ends[0].code, 1000);
  assert.deepEqual(
    logged.filter((line) => line.event === "connect").map((line) => line.user),
    ["ann", "bob"],
  );
  // A frame after the end is not even counted.
  ann.connection.receive(HI);
  assert.equal(metrics.received.get(), 0);
});

Deno.test("connection: a dead peer's end counts as an idle eviction", () => {
  const { metrics, logged, connect } = setup();
  const ann = connect("ann");
  ann.connection.client.socketClosed(1001, "No response from ping frame.");
  assert.equal(metrics.evictions.get("idle"), 1);
  assert.equal(logged.at(-1)?.event, "evict");
  assert.equal(logged.at(-1)?.cause, "idle");
});

Deno.test("connection: a socket that opens once shutdown began is closed with 1001", () => {
  const { rooms, connect } = setup({ isShuttingDown: () => true });
  const ann = connect("ann");
  assert.deepEqual(ann.socket.closedWith, {
    code: 1001,
    reason: "server shutting down",
  });
  assert.deepEqual(ann.socket.take(), [], "no welcome");
  assert.equal(ann.released(), 1);
  assert.equal(rooms.get("lobby"), undefined, "the room is idle, dropped");
});

Deno.test("connections: the session table follows the socket's events", async () => {
  const { shared } = setup();
  const connections = new Connections(shared);
  const socket = new RecordingSocket();
  let released = 0;
  const connection = connections.accept(socket as unknown as WebSocket, {
    ip: "192.0.2.1",
    username: "ann",
    room: shared.rooms.open("lobby")!,
    since: undefined,
    release: () => released++,
  });
  assert.equal(connections.open, 1);
  assert.equal(connections.sessionOf(connection.client), connection.session);
  assert.match(connection.session, /^[0-9a-f]{32}$/);
  assert.equal(shared.metrics.connections.get(), 1);
  socket.dispatchEvent(new Event("open"));
  socket.dispatchEvent(new MessageEvent("message", { data: HI }));
  await nextTurn();
  assert.deepEqual(types(socket.take()), ["welcome", "join", "message"]);
  socket.dispatchEvent(new CloseEvent("close", { code: 1000, reason: "" }));
  assert.equal(connections.open, 0);
  assert.equal(connections.sessionOf(connection.client), undefined);
  assert.equal(released, 1);
  await connections.closed();
});

/**
 * Deno (since 2.8) checks no test for leaked timers or resources unless
 * asked: these tests ask, so a deadline left running fails them.
 */
const SANITIZED = { sanitizeOps: true, sanitizeResources: true };

/**
 * What Deno upgrades a peer that left just before the upgrade into: a
 * socket that stays CONNECTING, never "open" nor "close".
 */
class NeverOpenSocket extends EventTarget implements ClientSocket {
  readonly readyState = WebSocket.CONNECTING;
  bufferedAmount = 0;
  /** Times the server tried to close it. */
  closes = 0;

  send(): void {
    throw new DOMException("not open yet", "InvalidStateError");
  }

  close(): void {
    this.closes++;
  }
}

/** A newcomer "ann" in the lobby, counting the releases of its slot. */
function newcomer(rooms: Rooms) {
  const slot = { released: 0 };
  return {
    slot,
    newcomer: {
      ip: "192.0.2.1",
      username: "ann",
      room: rooms.open("lobby")!,
      since: undefined,
      release: () => slot.released++,
    },
  };
}

Deno.test({
  name: "connections: a socket that never opens is given up at its deadline",
  ...SANITIZED,
  fn: async () => {
    const { shared, logged } = setup({ openDeadlineMs: 20 });
    const connections = new Connections(shared);
    const socket = new NeverOpenSocket();
    const ann = newcomer(shared.rooms);
    const connection = connections.accept(
      socket as unknown as WebSocket,
      ann.newcomer,
    );
    assert.equal(connections.open, 1);
    assert.equal(shared.rooms.get("lobby")?.isTaken("ann"), true);
    // Shutdown would wait here for a close that never comes.
    await within(connections.closed(), "the unopened socket to be given up");
    assert.equal(connections.open, 0);
    assert.equal(connection.client.ended, true);
    assert.equal(connections.sessionOf(connection.client), undefined);
    assert.equal(connections.bySession(connection.session), undefined);
    assert.equal(ann.slot.released, 1);
    assert.equal(socket.closes, 1, "the socket was told to close, too");
    assert.equal(shared.rooms.get("lobby")?.isTaken("ann") ?? false, false);
    const ends = logged.filter((line) => line.event === "disconnect");
    assert.deepEqual(
      ends.map(({ user, code, reason, by }) => ({ user, code, reason, by })),
      [{ user: "ann", code: 1006, reason: "never opened", by: "peer" }],
    );
    // The name is free: a new "ann" gets in.
    const again = new RecordingSocket();
    connections.accept(
      again as unknown as WebSocket,
      newcomer(shared.rooms).newcomer,
    );
    again.dispatchEvent(new Event("open"));
    await nextTurn();
    assert.deepEqual(types(again.take()), ["welcome", "join"]);
    again.dispatchEvent(new CloseEvent("close", { code: 1000, reason: "" }));
    await connections.closed();
  },
});

Deno.test({
  name: "connections: a socket that closes before it opens clears its deadline",
  ...SANITIZED,
  fn: async () => {
    // The default deadline: left running, it fails the ops sanitizer.
    const { shared } = setup();
    const connections = new Connections(shared);
    const socket = new NeverOpenSocket();
    const ann = newcomer(shared.rooms);
    connections.accept(socket as unknown as WebSocket, ann.newcomer);
    socket.dispatchEvent(new CloseEvent("close", { code: 1006, reason: "" }));
    await connections.closed();
    assert.equal(ann.slot.released, 1);
    assert.equal(socket.closes, 0);
  },
});

/**
 * A server on 127.0.0.1 whose upgrades, each a newcomer "ann" in the
 * lobby, go to `connections`; `beforeAnswer` holds each answer back.
 */
function serveUpgrades(
  connections: Connections,
  rooms: Rooms,
  beforeAnswer?: () => Promise<void>,
): Deno.HttpServer<Deno.NetAddr> {
  return Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen() {} },
    async (request) => {
      const { socket, response } = Deno.upgradeWebSocket(request);
      connections.accept(socket, newcomer(rooms).newcomer);
      await beforeAnswer?.();
      return response;
    },
  );
}

Deno.test({
  name: "connections: a real socket that opens outlives its deadline",
  ...SANITIZED,
  fn: async () => {
    const openDeadlineMs = 50;
    const { shared, logged } = setup({ openDeadlineMs });
    const connections = new Connections(shared);
    const server = serveUpgrades(connections, shared.rooms);
    try {
      const ann = await ChatClient.join(server.addr.port, "ann");
      // Timers run in order of their due time: had the deadline not been
      // cleared when the socket opened, it would have fired by now.
      await sleep(openDeadlineMs);
      assert.equal(connections.open, 1);
      ann.socket.send(HI);
      const line = await ann.next("ann's own line");
      assert.equal(line.type, "message");
      await ann.close();
      await within(connections.closed(), "the server side to close");
      assert.deepEqual(
        logged.filter((line) => line.event === "disconnect").map((line) =>
          line.reason
        ),
        [undefined],
      );
    } finally {
      await server.shutdown();
    }
  },
});

Deno.test({
  name:
    "connections: a real socket that opens after it was given up is closed, and joins nobody",
  ...SANITIZED,
  fn: async () => {
    const openDeadlineMs = 50;
    const { shared, logged } = setup({ openDeadlineMs });
    const connections = new Connections(shared);
    // The upgrade's answer leaves only after the deadline has passed.
    const server = serveUpgrades(
      connections,
      shared.rooms,
      () => within(connections.closed(), "the deadline to give it up"),
    );
    try {
      const socket = new WebSocket(`ws://127.0.0.1:${server.addr.port}/ws`);
      const received: string[] = [];
      socket.onmessage = (event) => received.push(String(event.data));
      const closed = new Promise<CloseEvent>((resolve) => {
        socket.onclose = resolve;
      });
      const close = await within(closed, "the late socket to be closed");
      assert.equal(close.code, 1001);
      assert.equal(close.reason, "opened too late");
      assert.deepEqual(received, [], "no welcome, nothing of the room");
      assert.equal(connections.open, 0);
      assert.equal(shared.rooms.get("lobby")?.isTaken("ann") ?? false, false);
      assert.deepEqual(
        logged.map(({ event, reason }) => ({ event, reason })),
        [{ event: "disconnect", reason: "never opened" }],
      );
    } finally {
      await server.shutdown();
    }
  },
});

/**
 * Broadcast benchmarks, `deno bench -A hub_bench.ts`:
 *
 * - "hub": one broadcast of a serialized chat message to 10 or 100 clients
 *   on sockets that only count frames: the Hub's own cost, comparable to
 *   the seed's Go hub (11 µs/op for 10, 75 µs/op for 100), which also
 *   broadcasts bytes made beforehand.
 * - "hub with stamping": the same after stamping and serializing the
 *   message, as a room does once per message.
 * - "loopback": one message sent by a client and received by every one of
 *   10 or 100 clients over real WebSockets on 127.0.0.1, server and clients
 *   in this process.
 *
 * @module
 */

import { Client, type ClientSocket } from "./client.ts";
import { Hub } from "./hub.ts";
import { timestamp } from "./protocol.ts";
import { startServer } from "./server.ts";

/** Counts what it is sent, as cheaply as a socket can. */
class CountingSocket implements ClientSocket {
  bufferedAmount = 0;
  frames = 0;
  send(_data: string): void {
    this.frames++;
  }
  close(): void {}
}

function hubWith(clients: number): Hub {
  const hub = new Hub();
  for (let i = 0; i < clients; i++) {
    hub.register(
      new Client(new CountingSocket(), {
        username: `c${i}`,
        flusher: hub.flusher,
      }),
    );
  }
  return hub;
}

for (const clients of [10, 100]) {
  const hub = hubWith(clients);
  const message = JSON.stringify({
    type: "message",
    id: 1,
    room: "lobby",
    username: "bench",
    text: "x".repeat(64),
    timestamp: timestamp(),
  });
  Deno.bench({
    name: `hub: broadcast to ${clients} clients`,
    group: "hub",
    baseline: clients === 10,
    fn() {
      hub.broadcastText(message);
    },
  });
}

for (const clients of [10, 100]) {
  const hub = hubWith(clients);
  let id = 0;
  Deno.bench({
    name: `hub: stamp, serialize, broadcast to ${clients}`,
    group: "hub with stamping",
    baseline: clients === 10,
    fn() {
      hub.broadcastJSON({
        type: "message",
        id: ++id,
        room: "lobby",
        username: "bench",
        text: "x".repeat(64),
        timestamp: timestamp(),
      });
    },
  });
}

/** How long a loopback delivery may take before the bench calls it lost. */
const LOST_AFTER_MS = 5000;

/** A server with `clients` receivers; `send` resolves when all have it. */
async function loopback(clients: number) {
  // No rate limit and no per-address cap: every client here is one sender
  // or one of many connections from 127.0.0.1.
  const server = await startServer({
    port: 0,
    ratePerSecond: 0,
    maxConnectionsPerIp: 0,
  });
  const wsUrl = `${server.url.replace("http", "ws")}ws?username=`;
  let outstanding = 0;
  let delivered: () => void = () => {};
  const sockets: WebSocket[] = [];
  for (let i = 0; i < clients; i++) {
    const socket = new WebSocket(`${wsUrl}r${i}`);
    await new Promise((resolve) => socket.onopen = resolve);
    socket.onmessage = (event: MessageEvent<string>) => {
      const data = event.data;
      let at = data.indexOf('"type":"message"');
      while (at !== -1) {
        if (--outstanding === 0) delivered();
        at = data.indexOf('"type":"message"', at + 1);
      }
    };
    sockets.push(socket);
  }
  // Let the joins settle before measuring.
  await new Promise((resolve) => setTimeout(resolve, 200));
  const sender = sockets[0];
  const frame = JSON.stringify({ type: "message", text: "x".repeat(64) });
  return async function send(): Promise<void> {
    outstanding = clients;
    const { promise, resolve } = Promise.withResolvers<void>();
    delivered = resolve;
    sender.send(frame);
    // A lost message must fail the bench, not hang it.
    const timer = setTimeout(() => {
      console.error(`loopback: ${outstanding} of ${clients} never got it`);
      Deno.exit(1);
    }, LOST_AFTER_MS);
    await promise;
    clearTimeout(timer);
  };
}

for (const clients of [10, 100]) {
  const send = await loopback(clients);
  Deno.bench({
    name: `loopback: message delivered to ${clients} clients`,
    group: "loopback",
    baseline: clients === 10,
    async fn() {
      await send();
    },
  });
}

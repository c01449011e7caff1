/**
 * Broadcast benchmarks, `deno bench -A hub_bench.ts`:
 *
 * - "hub": one broadcast of a freshly stamped chat message to 10 or 100
 *   clients on sockets that only count frames: the Hub's own cost,
 *   comparable to the seed's Go hub (11 µs/op for 10, 75 µs/op for 100).
 * - "loopback": one message sent by a client and received by every one of
 *   10 or 100 clients over real WebSockets on 127.0.0.1, server and clients
 *   in this process.
 *
 * @module
 */

import { Client, type ClientSocket } from "./client.ts";
import { Hub } from "./hub.ts";
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
  let sequence = 0;
  Deno.bench({
    name: `hub: broadcast to ${clients} clients`,
    group: "hub",
    baseline: clients === 10,
    fn() {
      hub.broadcastJSON({
        type: "message",
        username: "bench",
        text: `message ${sequence++}`,
        timestamp: new Date().toISOString(),
      });
    },
  });
}

/** A server with `clients` receivers; `send` resolves when all have it. */
async function loopback(clients: number) {
  const server = await startServer({ port: 0 });
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
  return function send(): Promise<void> {
    outstanding = clients;
    const { promise, resolve } = Promise.withResolvers<void>();
    delivered = resolve;
    sender.send(frame);
    return promise;
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

/**
 * The floor: the least any server built on `Deno.upgradeWebSocket` can spend
 * per message. It is not a chat server: it parses, validates and stamps
 * nothing, and relays each frame it receives to every socket, padded with
 * the bytes hubchat's envelope adds (for a 3-letter name), a turn's frames
 * joined into one frame per socket (the most coalescing a Deno server can
 * do without adding a timer hop). Run against it, the load
 * tool measures Deno's own receive and send cost, which no code on top of
 * `Deno.upgradeWebSocket` can go below. It greets each socket with a
 * `welcome`, as the load tool waits for one.
 *
 * ```sh
 * deno run -A bench/floor_server.ts --port 0 --host 127.0.0.1
 * # listening on http://127.0.0.1:41234/
 * ```
 *
 * @module
 */

import { DEFAULT_HOST, DEFAULT_PORT } from "./listen_flags.ts";
import { serveFromCommandLine } from "./server_cli.ts";

/**
 * Bytes hubchat's envelope adds to a client's `{"type":"message","text":…}`:
 * `"id"`, `"room":"lobby"`, `"username"` (3 letters) and `"timestamp"`.
 * Relaying frames of about the size hubchat sends keeps the kernel's
 * per-byte work alike on both sides of the comparison (the load tool's
 * names are longer, so hubchat's frames are a few bytes bigger still,
 * which only favours the floor); the padding is JSON
 * whitespace, so each line still parses.
 */
const ENVELOPE_PADDING = " ".repeat(84);

/** Options of {@linkcode startFloorServer}. */
export interface FloorServerOptions {
  /** TCP port; 0 picks a free one. Default 8080. */
  port?: number;
  /** Interface to listen on. Default "127.0.0.1". */
  hostname?: string;
}

/** A running floor server. */
export interface FloorServer {
  /** Base URL, like `http://127.0.0.1:41234/`. */
  url: string;
  /** Stops listening and closes every socket. */
  shutdown(): Promise<void>;
}

/**
 * Starts the floor server.
 *
 * @example
 * ```ts ignore
 * import { startFloorServer } from "./floor_server.ts";
 * const server = startFloorServer({ port: 0 });
 * console.log(server.url);
 * await server.shutdown();
 * ```
 */
export function startFloorServer(
  options: FloorServerOptions = {},
): FloorServer {
  const sockets = new Set<WebSocket>();
  /** Frames received this turn, relayed together at its end. */
  let turn: string[] = [];
  let scheduled = false;

  function relayTurn(): void {
    scheduled = false;
    const frame = turn.length === 1 ? turn[0] : turn.join("\n");
    turn = [];
    for (const socket of sockets) socket.send(frame);
  }

  function upgrade(request: Request): Response {
    const url = new URL(request.url);
    if (url.pathname !== "/ws") return new Response("floor server\n");
    const username = url.searchParams.get("username") ?? "guest";
    const { socket, response } = Deno.upgradeWebSocket(request);
    socket.onopen = () => {
      sockets.add(socket);
      socket.send(JSON.stringify({
        type: "welcome",
        username,
        users: [],
        timestamp: new Date().toISOString(),
      }));
    };
    socket.onclose = () => sockets.delete(socket);
    socket.onmessage = (event) => {
      turn.push(event.data + ENVELOPE_PADDING);
      if (!scheduled) {
        scheduled = true;
        setImmediate(relayTurn);
      }
    };
    return response;
  }

  const hostname = options.hostname ?? DEFAULT_HOST;
  const server = Deno.serve({
    port: options.port ?? DEFAULT_PORT,
    hostname,
    onListen() {},
  }, upgrade);
  return {
    url: `http://${hostname}:${server.addr.port}/`,
    async shutdown() {
      for (const socket of sockets) socket.close(1001, "server shutting down");
      await server.shutdown();
    },
  };
}

if (import.meta.main) {
  await serveFromCommandLine("floor_server", startFloorServer);
}

/**
 * The HTTP edge: routes, the WebSocket upgrade, and validation of everything
 * a peer sends before any work is done for it. Startable from tests on
 * port 0; `main.ts` adds flags and signals.
 *
 * @module
 */

import { Client, type ClientEnd } from "./client.ts";
import {
  type ErrorCode,
  errorMessage,
  parseClientMessage,
  utf8Length,
  validateUsername,
} from "./protocol.ts";
import { Room } from "./room.ts";

/**
 * Largest frame a client may send, in bytes. A chat line is at most 2000
 * characters (up to 8000 bytes of UTF-8 in the worst case, usually far less)
 * plus a little JSON; anything bigger is not chat.
 */
export const DEFAULT_MAX_FRAME_BYTES = 8 * 1024;

/**
 * Seconds without a pong before a peer counts as dead and is dropped (and
 * announced as a leave). Long enough for a phone waking from sleep.
 */
export const DEFAULT_IDLE_TIMEOUT_SECONDS = 30;

/** Longest wait at shutdown for clients to finish their closing handshake. */
export const SHUTDOWN_GRACE_MS = 3000;

/** Close codes the server sends, by cause. */
export const CloseCode = {
  /** Server shutting down, or a dead peer. */
  goingAway: 1001,
  /** The peer sent a binary frame; the protocol is JSON text. */
  unsupportedData: 1003,
  /** The peer's frame was larger than the limit. */
  messageTooBig: 1009,
} as const;

/** Options for {@linkcode startServer}. */
export interface ServerOptions {
  /** Port to listen on; 0 picks a free one. Default 8080. */
  port?: number;
  /** Address to listen on. Default "127.0.0.1". */
  hostname?: string;
  /** Largest frame a client may send, in bytes. Default 8 KiB. */
  maxFrameBytes?: number;
  /** Seconds without a pong before a peer is dropped. Default 30. */
  idleTimeoutSeconds?: number;
  /** Most messages held for a backed-up client. Default 256. */
  maxQueue?: number;
  /** `bufferedAmount` above which a client counts as backed up. */
  highWaterBytes?: number;
}

/** A running chat server. */
export interface ChatServer {
  /** Base URL, like `http://127.0.0.1:8080/`, with the real port. */
  readonly url: string;
  /** The port it listens on (the real one when 0 was asked for). */
  readonly port: number;
  /** The address it listens on. */
  readonly hostname: string;
  /** The room every client joins. */
  readonly room: Room;
  /**
   * Stops accepting, closes every client with 1001 "server shutting down",
   * waits (at most {@linkcode SHUTDOWN_GRACE_MS}) for the closes, then stops.
   */
  shutdown(): Promise<void>;
}

const homePage = await Deno.readFile(new URL("./home.html", import.meta.url));

/** A short JSON error body for refused HTTP requests. */
function jsonError(status: number, code: ErrorCode, text: string): Response {
  return Response.json({ error: code, message: text }, { status });
}

function textResponse(
  status: number,
  text: string,
  headers: Record<string, string> = {},
): Response {
  return new Response(text + "\n", {
    status,
    headers: { "content-type": "text/plain; charset=utf-8", ...headers },
  });
}

function methodNotAllowed(allow: string): Response {
  return textResponse(405, `method not allowed; use ${allow}`, { allow });
}

/** Picks a `guest-XXXX` name nobody in the room holds. */
function guestName(room: Room): string {
  for (;;) {
    const suffix = Math.floor(Math.random() * 0x10000).toString(16);
    const name = `guest-${suffix.padStart(4, "0")}`;
    if (!room.isTaken(name)) return name;
  }
}

/**
 * Starts a chat server and resolves once it listens.
 *
 * @example
 * ```ts
 * import { startServer } from "./server.ts";
 * const server = await startServer({ port: 0 });
 * console.log(`listening on ${server.url}`);
 * await server.shutdown();
 * ```
 */
export async function startServer(
  options: ServerOptions = {},
): Promise<ChatServer> {
  const maxFrameBytes = options.maxFrameBytes ?? DEFAULT_MAX_FRAME_BYTES;
  const idleTimeout = options.idleTimeoutSeconds ??
    DEFAULT_IDLE_TIMEOUT_SECONDS;
  const room = new Room("lobby");
  /** Sockets not yet closed, each with a way to wait for its close. */
  const openSockets = new Map<WebSocket, Promise<void>>();
  let shuttingDown: Promise<void> | undefined;

  function onClientEnd(client: Client, _end: ClientEnd): void {
    room.leave(client);
  }

  function handleFrame(client: Client, data: unknown): void {
    if (client.ended) return;
    if (typeof data !== "string") {
      client.close(
        CloseCode.unsupportedData,
        "binary frames are not supported; send JSON text",
      );
      return;
    }
    // A UTF-16 unit is 1 to 3 bytes of UTF-8: count exactly only if needed.
    if (
      data.length > maxFrameBytes ||
      (data.length * 3 > maxFrameBytes && utf8Length(data) > maxFrameBytes)
    ) {
      client.close(
        CloseCode.messageTooBig,
        `frame larger than ${maxFrameBytes} bytes`,
      );
      return;
    }
    const command = parseClientMessage(data);
    if (!command.ok) {
      client.deliver(JSON.stringify(errorMessage(command)));
      return;
    }
    room.say(client, command.value.text);
  }

  function upgrade(request: Request): Response {
    if (request.headers.get("upgrade")?.toLowerCase() !== "websocket") {
      return textResponse(
        426,
        "this endpoint speaks WebSocket only; connect with a WebSocket client to /ws?username=NAME",
        { upgrade: "websocket" },
      );
    }
    if (shuttingDown) return textResponse(503, "server shutting down");
    const requested = new URL(request.url).searchParams.get("username");
    let username: string;
    if (requested === null || requested.trim() === "") {
      username = guestName(room);
    } else {
      const checked = validateUsername(requested);
      if (!checked.ok) return jsonError(400, checked.code, checked.text);
      username = checked.value;
    }
    if (room.isTaken(username)) {
      return jsonError(
        409,
        "username_taken",
        `username "${username}" is already online; choose another`,
      );
    }
    let upgraded;
    try {
      upgraded = Deno.upgradeWebSocket(request, { idleTimeout });
    } catch (error) {
      return textResponse(
        400,
        `bad WebSocket handshake: ${(error as Error).message}`,
      );
    }
    const { socket, response } = upgraded;
    const client = new Client(socket, {
      username,
      flusher: room.hub.flusher,
      maxQueue: options.maxQueue,
      highWaterBytes: options.highWaterBytes,
      onEnd: onClientEnd,
    });
    openSockets.set(
      socket,
      new Promise((resolve) => {
        socket.addEventListener("close", (event) => {
          openSockets.delete(socket);
          client.socketClosed(event.code, event.reason);
          resolve();
        });
      }),
    );
    const reserved = room.reserve(client);
    socket.addEventListener("open", () => {
      // Shutdown may have begun between the upgrade and the open.
      if (shuttingDown || !reserved) {
        client.close(CloseCode.goingAway, "server shutting down");
      } else {
        room.join(client);
      }
    });
    socket.addEventListener("message", (event) => {
      handleFrame(client, event.data);
    });
    socket.addEventListener("error", () => client.socketClosed(1006));
    return response;
  }

  function route(request: Request): Response {
    const { pathname } = new URL(request.url);
    const method = request.method;
    switch (pathname) {
      case "/":
        if (method !== "GET" && method !== "HEAD") {
          return methodNotAllowed("GET, HEAD");
        }
        return new Response(method === "HEAD" ? null : homePage, {
          headers: { "content-type": "text/html; charset=utf-8" },
        });
      case "/ws":
        if (method !== "GET") return methodNotAllowed("GET");
        return upgrade(request);
      case "/healthz":
        if (method !== "GET" && method !== "HEAD") {
          return methodNotAllowed("GET, HEAD");
        }
        return Response.json({ status: "ok", clients: room.online });
      default:
        return textResponse(404, `no such path: ${pathname}`);
    }
  }

  const { promise: listening, resolve: onListen } = Promise.withResolvers<
    Deno.NetAddr
  >();
  const httpServer = Deno.serve({
    port: options.port ?? 8080,
    hostname: options.hostname ?? "127.0.0.1",
    onListen: onListen,
  }, route);
  const addr = await listening;

  async function shutdown(): Promise<void> {
    // New upgrades are refused from here on (shuttingDown is set).
    room.close(CloseCode.goingAway, "server shutting down");
    const { promise: grace, resolve: graceOver } = Promise.withResolvers<
      void
    >();
    const timer = setTimeout(graceOver, SHUTDOWN_GRACE_MS);
    await Promise.race([Promise.all(openSockets.values()), grace]);
    clearTimeout(timer);
    await httpServer.shutdown();
  }

  const host = addr.hostname.includes(":")
    ? `[${addr.hostname}]`
    : addr.hostname;
  return {
    url: `http://${host}:${addr.port}/`,
    port: addr.port,
    hostname: addr.hostname,
    room,
    shutdown(): Promise<void> {
      shuttingDown ??= shutdown();
      return shuttingDown;
    },
  };
}

/**
 * The HTTP edge: routes, the WebSocket upgrade, and validation of everything
 * a peer sends before any work is done for it: who may connect (origin,
 * token, connection caps) and what a connection may send (frame size, rate,
 * protocol). Startable from tests on port 0; `main.ts` adds flags and
 * signals.
 *
 * @module
 */

import {
  importSecret,
  SUBPROTOCOL,
  tokenFromRequest,
  verifyToken,
} from "./auth.ts";
import { Client, type ClientEnd, CLOSE_SLOW_CONSUMER } from "./client.ts";
import {
  checkOrigin,
  clientAddress,
  ConnectionLimiter,
  DEFAULT_BURST,
  DEFAULT_MAX_CONNECTIONS_PER_IP,
  DEFAULT_RATE_PER_SECOND,
  FloodGuard,
} from "./limits.ts";
import { type Logger, silentLogger } from "./log.ts";
import { ServerMetrics } from "./server_metrics.ts";
import { PROMETHEUS_CONTENT_TYPE } from "./metrics.ts";
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

/**
 * Connections the server holds at most. Each costs a file descriptor and
 * tens of KiB; 10,000 fits this machine's memory many times over and is
 * what the load tool's memory test holds.
 */
export const DEFAULT_MAX_CONNECTIONS = 10_000;

/** Longest wait at shutdown for clients to finish their closing handshake. */
export const SHUTDOWN_GRACE_MS = 3000;

/** Close codes the server sends, by cause. */
export const CloseCode = {
  /** Server shutting down, or a dead peer. */
  goingAway: 1001,
  /** The peer sent a binary frame; the protocol is JSON text. */
  unsupportedData: 1003,
  /** The peer kept flooding after being told to slow down. */
  policyViolation: 1008,
  /** The peer's frame was larger than the limit. */
  messageTooBig: 1009,
} as const;

/** Options for {@linkcode startServer}; every one has a safe default. */
export interface ServerOptions {
  /** Port to listen on; 0 picks a free one. Default 8080. */
  port?: number;
  /** Address to listen on. Default "127.0.0.1". */
  hostname?: string;
  /** PEM certificate chain; with `key`, serves https and wss. */
  cert?: string;
  /** PEM private key for `cert`. */
  key?: string;
  /** Largest frame a client may send, in bytes. Default 8 KiB. */
  maxFrameBytes?: number;
  /** Seconds without a pong before a peer is dropped. Default 30. */
  idleTimeoutSeconds?: number;
  /** Most messages held for a backed-up client. Default 256. */
  maxQueue?: number;
  /** `bufferedAmount` above which a client counts as backed up. */
  highWaterBytes?: number;
  /** Origins allowed besides the page's own (`*` allows any). */
  allowedOrigins?: string[];
  /** Refuse upgrades that carry no Origin header. Default false. */
  requireOrigin?: boolean;
  /** HS256 secret; when set, every client needs a token (`sub` = name). */
  authSecret?: string;
  /** Connections in all; 0 means no cap. Default 10,000. */
  maxConnections?: number;
  /** Connections from one address; 0 means no cap. Default 20. */
  maxConnectionsPerIp?: number;
  /** Take the client's address from the first X-Forwarded-For entry. */
  trustProxy?: boolean;
  /** Messages a client may send per second; 0 means no limit. Default 10. */
  ratePerSecond?: number;
  /** Messages a client may send at once above the rate. Default 20. */
  burst?: number;
  /** Where connect, disconnect and eviction lines go. Default: nowhere. */
  logger?: Logger;
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
  /** The counters `/metrics` shows. */
  readonly metrics: ServerMetrics;
  /**
   * Stops accepting, closes every client with 1001 "server shutting down",
   * waits (at most {@linkcode SHUTDOWN_GRACE_MS}) for the closes, then stops.
   */
  shutdown(): Promise<void>;
}

/** What the server keeps for one connection besides its client. */
interface Session {
  client: Client;
  ip: string;
  openedAt: number;
  /** Rate limit; null when the server runs without one. */
  guard: FloodGuard | null;
  /** Gives the connection's slot back (idempotent). */
  release: () => void;
}

const homePage = await Deno.readFile(new URL("./home.html", import.meta.url));

/** A short JSON error body for refused HTTP requests. */
function jsonError(status: number, code: string, text: string): Response {
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

/** 0 means "no cap" on the command line; the limiter wants a count. */
function capOrUnlimited(value: number): number {
  return value === 0 ? Number.MAX_SAFE_INTEGER : value;
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
  const ratePerSecond = options.ratePerSecond ?? DEFAULT_RATE_PER_SECOND;
  const burst = options.burst ?? DEFAULT_BURST;
  const originPolicy = {
    allowedOrigins: options.allowedOrigins ?? [],
    requireOrigin: options.requireOrigin ?? false,
  };
  const authKey = options.authSecret === undefined
    ? null
    : await importSecret(options.authSecret);
  const limiter = new ConnectionLimiter({
    maxTotal: capOrUnlimited(options.maxConnections ?? DEFAULT_MAX_CONNECTIONS),
    maxPerIp: capOrUnlimited(
      options.maxConnectionsPerIp ?? DEFAULT_MAX_CONNECTIONS_PER_IP,
    ),
  });
  const logger = options.logger ?? silentLogger;
  /** Sockets not yet closed, each with a way to wait for its close. */
  const openSockets = new Map<WebSocket, Promise<void>>();
  const metrics: ServerMetrics = new ServerMetrics({
    connectionsOpen: () => openSockets.size,
    clients: (): Iterable<Client> => room.hub.clients(),
  });
  const room: Room = new Room("lobby", {
    onBroadcast: metrics.observeBroadcast.bind(metrics),
  });
  const sessions = new Map<Client, Session>();
  let shuttingDown: Promise<void> | undefined;

  function onClientEnd(client: Client, end: ClientEnd): void {
    room.leave(client);
    const session = sessions.get(client);
    if (session === undefined) return;
    sessions.delete(client);
    session.release();
    const seconds = (performance.now() - session.openedAt) / 1000;
    const fields = {
      user: client.username,
      ip: session.ip,
      code: end.code,
      reason: end.reason || undefined,
      by: end.byServer ? "server" : "peer",
      seconds: Math.round(seconds * 10) / 10,
    };
    const eviction = end.code === CLOSE_SLOW_CONSUMER
      ? "slow_consumer"
      : end.code === CloseCode.policyViolation
      ? "rate_limit"
      : !end.byServer && end.code === CloseCode.goingAway && !shuttingDown
      ? "idle"
      : null;
    if (eviction !== null) {
      metrics.evictions.inc(eviction);
      logger.log("warn", "evict", { ...fields, cause: eviction });
    } else {
      logger.log("info", "disconnect", fields);
    }
  }

  function refuse(client: Client, code: ErrorCode, text: string): void {
    metrics.errors.inc(code);
    client.deliver(JSON.stringify(errorMessage({ code, text })));
  }

  function handleFrame(session: Session, data: unknown): void {
    const client = session.client;
    if (client.ended) return;
    metrics.received.inc();
    // Cheapest checks first: nothing is parsed for a frame refused here.
    if (typeof data !== "string") {
      metrics.errors.inc("binary_frame");
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
      metrics.errors.inc("frame_too_large");
      client.close(
        CloseCode.messageTooBig,
        `frame larger than ${maxFrameBytes} bytes`,
      );
      return;
    }
    if (session.guard !== null) {
      const verdict = session.guard.check(performance.now());
      if (verdict === "warn") {
        refuse(
          client,
          "rate_limited",
          `too many messages; at most ${ratePerSecond} per second (bursts of ${burst}); this one was dropped`,
        );
        return;
      }
      if (verdict === "drop") {
        metrics.errors.inc("rate_limited");
        return;
      }
      if (verdict === "close") {
        metrics.errors.inc("rate_limited");
        client.close(
          CloseCode.policyViolation,
          "rate limit exceeded repeatedly",
        );
        return;
      }
    }
    const command = parseClientMessage(data);
    if (!command.ok) {
      refuse(client, command.code, command.text);
      return;
    }
    room.say(client, command.value.text);
  }

  /** Decides who the peer is; a Response when it may not connect. */
  async function identify(request: Request): Promise<string | Response> {
    const requested = new URL(request.url).searchParams.get("username");
    if (authKey !== null) {
      const { token } = tokenFromRequest(request);
      if (token === null) {
        return jsonError(
          401,
          "unauthorized",
          'a token is required; pass ?token=JWT or the subprotocols ["hubchat", "auth.JWT"]',
        );
      }
      const verified = await verifyToken(token, authKey);
      if (!verified.ok) return jsonError(401, "unauthorized", verified.reason);
      const checked = validateUsername(verified.claims.sub);
      if (!checked.ok) {
        return jsonError(
          401,
          "unauthorized",
          `the token's subject is not a valid username: ${checked.text}`,
        );
      }
      // The token names the user; ?username= cannot override it.
      return checked.value;
    }
    if (requested === null || requested.trim() === "") return guestName(room);
    const checked = validateUsername(requested);
    if (!checked.ok) return jsonError(400, checked.code, checked.text);
    return checked.value;
  }

  async function upgrade(
    request: Request,
    info: Deno.ServeHandlerInfo,
  ): Promise<Response> {
    if (request.headers.get("upgrade")?.toLowerCase() !== "websocket") {
      return textResponse(
        426,
        "this endpoint speaks WebSocket only; connect with a WebSocket client to /ws?username=NAME",
        { upgrade: "websocket" },
      );
    }
    const ip = clientAddress(request, info, options.trustProxy ?? false);
    function reject(response: Response, reason: string): Response {
      metrics.rejected.inc(reason);
      logger.log("warn", "reject", { ip, status: response.status, reason });
      return response;
    }
    if (shuttingDown) {
      return reject(textResponse(503, "server shutting down"), "shutdown");
    }
    const origin = checkOrigin(request.headers, originPolicy);
    if (!origin.ok) return reject(textResponse(403, origin.reason), "origin");
    const identity = await identify(request);
    if (identity instanceof Response) {
      return reject(
        identity,
        identity.status === 401 ? "unauthorized" : "invalid_username",
      );
    }
    const username = identity;
    if (room.isTaken(username) || shuttingDown) {
      return reject(
        jsonError(
          409,
          "username_taken",
          `username "${username}" is already online; choose another`,
        ),
        "username_taken",
      );
    }
    const slot = limiter.tryAcquire(ip);
    if (!slot.ok) {
      const status = slot.limit === "total" ? 503 : 429;
      return reject(textResponse(status, slot.reason), `limit_${slot.limit}`);
    }
    const { protocol } = tokenFromRequest(request);
    let upgraded;
    try {
      upgraded = Deno.upgradeWebSocket(request, {
        idleTimeout,
        protocol: protocol === SUBPROTOCOL ? SUBPROTOCOL : undefined,
      });
    } catch (error) {
      slot.release();
      return reject(
        textResponse(
          400,
          `bad WebSocket handshake: ${(error as Error).message}`,
        ),
        "bad_handshake",
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
    const session: Session = {
      client,
      ip,
      openedAt: performance.now(),
      guard: ratePerSecond === 0 ? null : new FloodGuard({
        ratePerSecond,
        burst,
      }),
      release: slot.release,
    };
    sessions.set(client, session);
    metrics.connections.inc();
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
        return;
      }
      logger.log("info", "connect", { user: username, ip });
      room.join(client);
    });
    socket.addEventListener("message", (event) => {
      handleFrame(session, event.data);
    });
    socket.addEventListener("error", () => client.socketClosed(1006));
    return response;
  }

  function route(
    request: Request,
    info: Deno.ServeHandlerInfo,
  ): Response | Promise<Response> {
    const { pathname } = new URL(request.url);
    const method = request.method;
    const readOnly = method === "GET" || method === "HEAD";
    switch (pathname) {
      case "/":
        if (!readOnly) return methodNotAllowed("GET, HEAD");
        return new Response(method === "HEAD" ? null : homePage, {
          headers: { "content-type": "text/html; charset=utf-8" },
        });
      case "/ws":
        if (method !== "GET") return methodNotAllowed("GET");
        return upgrade(request, info);
      case "/healthz":
        if (!readOnly) return methodNotAllowed("GET, HEAD");
        return Response.json({ status: "ok", clients: room.online });
      case "/metrics":
        if (!readOnly) return methodNotAllowed("GET, HEAD");
        return new Response(metrics.render(), {
          headers: { "content-type": PROMETHEUS_CONTENT_TYPE },
        });
      default:
        return textResponse(404, `no such path: ${pathname}`);
    }
  }

  const { promise: listening, resolve: onListen } = Promise.withResolvers<
    Deno.NetAddr
  >();
  const tls = options.cert !== undefined && options.key !== undefined
    ? { cert: options.cert, key: options.key }
    : {};
  const httpServer = Deno.serve({
    port: options.port ?? 8080,
    hostname: options.hostname ?? "127.0.0.1",
    onListen,
    ...tls,
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

  const scheme = "cert" in tls ? "https" : "http";
  const host = addr.hostname.includes(":")
    ? `[${addr.hostname}]`
    : addr.hostname;
  return {
    url: `${scheme}://${host}:${addr.port}/`,
    port: addr.port,
    hostname: addr.hostname,
    room,
    metrics,
    shutdown(): Promise<void> {
      shuttingDown ??= shutdown();
      return shuttingDown;
    },
  };
}

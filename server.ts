/**
 * The HTTP edge: routes, the WebSocket upgrade, and validation of everything
 * a peer sends before any work is done for it: who may connect (origin,
 * token, connection caps) and what a connection may send (frame size, rate,
 * protocol). Startable from tests on port 0; `main.ts` adds flags and
 * signals.
 *
 * @module
 */

import { importSecret, tokenFromRequest, verifyToken } from "./auth.ts";
import { Client, type ClientEnd, CLOSE_SLOW_CONSUMER } from "./client.ts";
import {
  checkOrigin,
  clientAddress,
  ConnectionLimiter,
  validateAllowedOrigins,
} from "./admission.ts";
import {
  DEFAULT_BURST,
  DEFAULT_MAX_FRAME_BYTES,
  DEFAULT_RATE_PER_SECOND,
  FloodGuard,
} from "./connection.ts";
import { History } from "./history.ts";
import { type Logger, silentLogger } from "./log.ts";
import { PROMETHEUS_CONTENT_TYPE, ServerMetrics } from "./metrics.ts";
import {
  DEFAULT_ROOM,
  type ErrorCode,
  errorMessage,
  parseClientMessage,
  parseSince,
  utf8Length,
  validateRoomName,
  validateUsername,
} from "./protocol.ts";
import type { Room } from "./room.ts";
import { Rooms } from "./rooms.ts";

/** Port when none is given: the one gorilla's chat example uses. */
export const DEFAULT_PORT = 8080;

/**
 * Address when none is given: loopback, so a first run is not on the
 * network until someone says so.
 */
export const DEFAULT_HOST = "127.0.0.1";

/**
 * Seconds without a pong before a peer counts as dead and is dropped (and
 * announced as a leave). Long enough for a phone waking from sleep.
 */
export const DEFAULT_IDLE_TIMEOUT_SECONDS = 30;

/**
 * Milliseconds between two typing notices relayed for one client: enough to keep
 * "X is typing…" alive, rare enough to cost nothing.
 */
export const TYPING_INTERVAL_MS = 2000;

/**
 * How Deno words the close when a peer missed its pings (code 1001, which a
 * browser leaving the page also uses): the only way to tell the two apart.
 */
const DENO_IDLE_REASON = "No response from ping frame.";

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
  /** A newer connection with this connection's session took its name. */
  replaced: 4001,
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
  /** Most messages a client's outbox holds before eviction. Default 256. */
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
  /** Deno KV path for history; ":memory:" (the default) keeps none. */
  data?: string;
  /** Messages kept per room; 0 keeps none and stores nothing. Default 100. */
  historyLimit?: number;
  /** Rooms open at once. Default 1000. */
  maxRooms?: number;
}

/** A running chat server. */
export interface ChatServer {
  /** Base URL, like `http://127.0.0.1:8080/`, with the real port. */
  readonly url: string;
  /** The port it listens on (the real one when 0 was asked for). */
  readonly port: number;
  /** The address it listens on. */
  readonly hostname: string;
  /** Every room. */
  readonly rooms: Rooms;
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
  /** The room the client is in now. */
  room: Room;
  /** The secret that lets a reconnect take this connection's name. */
  token: string;
  /** When a typing notice was last relayed (performance.now()). */
  lastTypingAt: number;
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

/** A fresh connection secret: 128 random bits, hex. */
function newSessionToken(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (byte) => byte.toString(16).padStart(2, "0")).join(
    "",
  );
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
    // Checked here, so a bad entry stops the start, not every upgrade.
    allowedOrigins: validateAllowedOrigins(options.allowedOrigins ?? []),
    requireOrigin: options.requireOrigin ?? false,
  };
  const authKey = options.authSecret === undefined
    ? null
    : await importSecret(options.authSecret);
  const limiter = new ConnectionLimiter({
    maxTotal: options.maxConnections,
    maxPerIp: options.maxConnectionsPerIp,
  });
  const logger = options.logger ?? silentLogger;
  /** Sockets not yet closed, each with a way to wait for its close. */
  const openSockets = new Map<WebSocket, Promise<void>>();
  const metrics: ServerMetrics = new ServerMetrics({
    connectionsOpen: () => openSockets.size,
    clients: (): Iterable<Client> => rooms.clients(),
  });
  const history = options.historyLimit === 0
    ? null
    : await History.open(options.data ?? ":memory:", {
      limit: options.historyLimit,
    });
  const rooms: Rooms = new Rooms({
    history,
    maxRooms: options.maxRooms,
    onBroadcast: metrics.observeBroadcast.bind(metrics),
    onRefusal: (code) => metrics.errors.inc(code),
  });
  const sessions = new Map<Client, Session>();
  let shuttingDown: Promise<void> | undefined;

  function onClientEnd(client: Client, end: ClientEnd): void {
    const session = sessions.get(client);
    if (session === undefined) return;
    sessions.delete(client);
    session.room.leave(client);
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
      : !end.byServer && end.reason === DENO_IDLE_REASON
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
    const parsed = parseClientMessage(data);
    if (!parsed.ok) {
      refuse(client, parsed.code, parsed.text);
      return;
    }
    const command = parsed.value;
    switch (command.type) {
      case "message": {
        session.room.say(client, command.text, command.to);
        return;
      }
      case "typing": {
        const now = performance.now();
        if (now - session.lastTypingAt < TYPING_INTERVAL_MS) return;
        session.lastTypingAt = now;
        session.room.typing(client);
        return;
      }
      case "join":
        switchRoom(session, command.room);
        return;
    }
  }

  /** Moves a client to another room: leave there, welcome and join here. */
  function switchRoom(session: Session, name: string): void {
    const client = session.client;
    const from = session.room;
    if (name === from.name) {
      refuse(client, "invalid_room", `you are already in room "${name}"`);
      return;
    }
    const to = rooms.open(name);
    if (to === null) {
      refuse(
        client,
        "room_limit",
        "the server has as many rooms open as it allows; join an existing one",
      );
      return;
    }
    if (!to.reserve(client)) {
      refuse(
        client,
        "username_taken",
        `username "${client.username}" is already online in room "${name}"`,
      );
      rooms.release(to);
      return;
    }
    from.leave(client);
    session.room = to;
    to.join(client, { session: session.token });
  }

  /**
   * Decides who the peer is: a name, null for "make up a guest name", or a
   * Response when it may not connect.
   */
  async function identify(
    query: URLSearchParams,
    token: string | null,
  ): Promise<string | null | Response> {
    const requested = query.get("username");
    if (authKey !== null) {
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
    if (requested === null || requested.trim() === "") return null;
    const checked = validateUsername(requested);
    if (!checked.ok) return jsonError(400, checked.code, checked.text);
    return checked.value;
  }

  async function upgrade(
    request: Request,
    info: Deno.ServeHandlerInfo,
    query: URLSearchParams,
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
    const roomName = validateRoomName(query.get("room") || DEFAULT_ROOM);
    if (!roomName.ok) {
      return reject(
        jsonError(400, roomName.code, roomName.text),
        "invalid_room",
      );
    }
    const sinceParam = query.get("since");
    let since: number | undefined;
    if (sinceParam !== null && sinceParam !== "") {
      const parsed = parseSince(sinceParam);
      if (!parsed.ok) {
        return reject(
          jsonError(400, parsed.code, parsed.text),
          "invalid_since",
        );
      }
      since = parsed.value;
    }
    // The token and the subprotocol to answer with, read once.
    const presented = tokenFromRequest(request);
    const identity = await identify(query, presented.token);
    if (identity instanceof Response) {
      return reject(
        identity,
        identity.status === 401 ? "unauthorized" : "invalid_username",
      );
    }
    // From here to the end the upgrade runs without awaiting: nobody can
    // take the name or drop the room between the checks and the reserve.
    if (shuttingDown) {
      return reject(textResponse(503, "server shutting down"), "shutdown");
    }
    const claim = query.get("session");
    const holder = identity === null
      ? undefined
      : rooms.get(roomName.value)?.holder(identity);
    if (
      holder !== undefined && claim !== null &&
      sessions.get(holder)?.token === claim
    ) {
      // The same person reconnecting before their old socket timed out:
      // the old connection ends (and leaves) before the new one joins.
      holder.close(CloseCode.replaced, "replaced by a newer connection");
    }
    const room = rooms.open(roomName.value);
    if (room === null) {
      return reject(
        textResponse(503, "the server has as many rooms open as it allows"),
        "room_limit",
      );
    }
    const username = identity ?? guestName(room);
    if (room.isTaken(username)) {
      rooms.release(room);
      return reject(
        jsonError(
          409,
          "username_taken",
          `username "${username}" is already online in room "${room.name}"; choose another`,
        ),
        "username_taken",
      );
    }
    const slot = limiter.tryAcquire(ip);
    if (!slot.ok) {
      rooms.release(room);
      const status = slot.limit === "total" ? 503 : 429;
      return reject(textResponse(status, slot.reason), `limit_${slot.limit}`);
    }
    let upgraded;
    try {
      upgraded = Deno.upgradeWebSocket(request, {
        idleTimeout,
        protocol: presented.protocol ?? undefined,
      });
    } catch (error) {
      slot.release();
      rooms.release(room);
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
      flusher: rooms.flusher,
      maxQueue: options.maxQueue,
      highWaterBytes: options.highWaterBytes,
      onEnd: onClientEnd,
    });
    const session: Session = {
      client,
      room,
      token: newSessionToken(),
      lastTypingAt: -Infinity,
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
      logger.log("info", "connect", { user: username, ip, room: room.name });
      session.room.join(client, { since, session: session.token });
    });
    socket.addEventListener("message", (event) => {
      handleFrame(session, event.data);
    });
    // An "error" event is always followed by "close", which ends the client
    // with the real code and reason.
    return response;
  }

  function route(
    request: Request,
    info: Deno.ServeHandlerInfo,
  ): Response | Promise<Response> {
    const url = new URL(request.url);
    const pathname = url.pathname;
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
        return upgrade(request, info, url.searchParams);
      case "/healthz":
        if (!readOnly) return methodNotAllowed("GET, HEAD");
        return Response.json({ status: "ok", clients: rooms.online });
      case "/rooms":
        if (!readOnly) return methodNotAllowed("GET, HEAD");
        return Response.json({ rooms: rooms.list() });
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
    port: options.port ?? DEFAULT_PORT,
    hostname: options.hostname ?? DEFAULT_HOST,
    onListen,
    ...tls,
  }, route);
  const addr = await listening;

  async function shutdown(): Promise<void> {
    // New upgrades are refused from here on (shuttingDown is set).
    rooms.close(CloseCode.goingAway, "server shutting down");
    const { promise: grace, resolve: graceOver } = Promise.withResolvers<
      void
    >();
    const timer = setTimeout(graceOver, SHUTDOWN_GRACE_MS);
    await Promise.race([Promise.all(openSockets.values()), grace]);
    clearTimeout(timer);
    await history?.close();
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
    rooms,
    metrics,
    shutdown(): Promise<void> {
      shuttingDown ??= shutdown();
      return shuttingDown;
    },
  };
}

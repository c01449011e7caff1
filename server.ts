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
import {
  Client,
  type ClientEnd,
  type ClientSocket,
  CLOSE_SLOW_CONSUMER,
} from "./client.ts";
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
  type ClientCommand,
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

// ------------------------------------------------------------- admission

/** A refused upgrade: the HTTP answer, and why as the metrics count it. */
export interface Refusal {
  /** The HTTP status: 4xx for the peer's mistake, 503 when the server is full. */
  status: number;
  /** The `reason` label of `hubchat_rejected_upgrades_total`. */
  reason: string;
  /** What was wrong and what was expected, for the peer. */
  text: string;
  /** The `error` code of a JSON body; without one the body is plain text. */
  error?: string;
}

/** One step of admission: its result, or the refusal that ends admission. */
export type Verdict<T> = { ok: true; value: T } | {
  ok: false;
  refusal: Refusal;
};

/** Refusal of every upgrade once the server is stopping. */
const SHUTTING_DOWN: Refusal = {
  status: 503,
  reason: "shutdown",
  text: "server shutting down",
};

function refused(refusal: Refusal): { ok: false; refusal: Refusal } {
  return { ok: false, refusal };
}

/** Where a peer asked to be: a room, and the last message id it saw there. */
export interface RoomRequest {
  /** The room's name, checked and normalized. */
  room: string;
  /** The last message id the peer saw in it; undefined for none. */
  since: number | undefined;
}

/**
 * Reads `?room=` (default "lobby") and `?since=` from an upgrade's query.
 *
 * @example
 * ```ts
 * import { requestedRoom } from "./server.ts";
 * requestedRoom(new URLSearchParams("room=dev&since=42"));
 * // { ok: true, value: { room: "dev", since: 42 } }
 * ```
 */
export function requestedRoom(query: URLSearchParams): Verdict<RoomRequest> {
  const room = validateRoomName(query.get("room") || DEFAULT_ROOM);
  if (!room.ok) {
    return refused({
      status: 400,
      reason: "invalid_room",
      error: room.code,
      text: room.text,
    });
  }
  const sinceParam = query.get("since");
  if (sinceParam === null || sinceParam === "") {
    return { ok: true, value: { room: room.value, since: undefined } };
  }
  const since = parseSince(sinceParam);
  if (!since.ok) {
    return refused({
      status: 400,
      reason: "invalid_since",
      error: since.code,
      text: since.text,
    });
  }
  return { ok: true, value: { room: room.value, since: since.value } };
}

/** Options for {@linkcode identify}. */
export interface IdentifyOptions {
  /** The token the peer presented, if any. */
  token: string | null;
  /** The key tokens are verified with; null when none is required. */
  authKey: CryptoKey | null;
}

/**
 * Decides who the peer is: the verified token's subject when the server
 * requires tokens (`?username=` cannot override it), else the name the
 * query asks for, or null for "make up a guest name".
 *
 * @example
 * ```ts
 * import { identify } from "./server.ts";
 * const query = new URLSearchParams("username=ann");
 * await identify(query, { token: null, authKey: null });
 * // { ok: true, value: "ann" }
 * ```
 */
export async function identify(
  query: URLSearchParams,
  options: IdentifyOptions,
): Promise<Verdict<string | null>> {
  if (options.authKey !== null) {
    if (options.token === null) {
      return unauthorized(
        'a token is required; pass ?token=JWT or the subprotocols ["hubchat", "auth.JWT"]',
      );
    }
    const verified = await verifyToken(options.token, options.authKey);
    if (!verified.ok) return unauthorized(verified.reason);
    const checked = validateUsername(verified.claims.sub);
    if (!checked.ok) {
      return unauthorized(
        `the token's subject is not a valid username: ${checked.text}`,
      );
    }
    return { ok: true, value: checked.value };
  }
  const requested = query.get("username");
  if (requested === null || requested.trim() === "") {
    return { ok: true, value: null };
  }
  const checked = validateUsername(requested);
  if (!checked.ok) {
    return refused({
      status: 400,
      reason: "invalid_username",
      error: checked.code,
      text: checked.text,
    });
  }
  return { ok: true, value: checked.value };
}

function unauthorized(text: string): { ok: false; refusal: Refusal } {
  return refused({
    status: 401,
    reason: "unauthorized",
    error: "unauthorized",
    text,
  });
}

/** Picks a `guest-XXXX` name nobody in the room holds. */
function guestName(room: Room): string {
  for (;;) {
    const suffix = Math.floor(Math.random() * 0x10000).toString(16);
    const name = `guest-${suffix.padStart(4, "0")}`;
    if (!room.isTaken(name)) return name;
  }
}

/** What the route already read from an upgrade, so nothing is read twice. */
export interface UpgradeContext {
  /** The peer's address ({@linkcode clientAddress}). */
  ip: string;
  /** The query of the request's URL. */
  query: URLSearchParams;
}

/** Options for {@linkcode Admission}. */
export interface AdmissionOptions {
  /** The rooms peers join: the room is opened and the name checked here. */
  rooms: Rooms;
  /** The key tokens are verified with; null or absent: no token needed. */
  authKey?: CryptoKey | null;
  /** Origins allowed besides the page's own (`*` allows any). */
  allowedOrigins?: readonly string[];
  /** Refuse upgrades that carry no Origin header. Default false. */
  requireOrigin?: boolean;
  /** Connections in all; 0 means no cap. Default 10,000. */
  maxConnections?: number;
  /** Connections from one address; 0 means no cap. Default 20. */
  maxConnectionsPerIp?: number;
  /** The session secret of the connection a client is, for takeovers. */
  sessionOf?: (client: Client) => string | undefined;
  /** True once the server is stopping: every upgrade is then refused. */
  isShuttingDown?: () => boolean;
}

/** A peer that may connect: who, where, and the slot it holds. */
export interface Admittance extends Newcomer {
  /** The subprotocol to answer with, when the peer offered hubchat's. */
  protocol: string | undefined;
  /** Gives back the slot and the room when the upgrade fails after all. */
  cancel(): void;
}

/**
 * Decides who may connect, before any upgrade: not while stopping; an
 * allowed origin; a valid room and resume point; a valid token or name; a
 * name free in the room (or taken over from an older connection that
 * presents its session); a room and a connection slot to spare.
 *
 * Invariant: from the end of its one await to the end of `admit`, nothing
 * awaits, so nobody can take the name or drop the room between the checks
 * and the caller's reserve, if the caller reserves in the same turn.
 *
 * @example
 * ```ts
 * import { Admission } from "./server.ts";
 * import { Rooms } from "./rooms.ts";
 * const rooms = new Rooms({ history: null });
 * const admission = new Admission({ rooms });
 * const request = new Request("http://127.0.0.1/ws?username=ann");
 * const query = new URL(request.url).searchParams;
 * const verdict = await admission.admit(request, { ip: "127.0.0.1", query });
 * if (verdict.ok) verdict.value.cancel(); // or upgrade, then reserve
 * rooms.close(1001, "done");
 * ```
 */
export class Admission {
  #rooms: Rooms;
  #authKey: CryptoKey | null;
  #originPolicy: { allowedOrigins: string[]; requireOrigin: boolean };
  #limiter: ConnectionLimiter;
  #sessionOf: (client: Client) => string | undefined;
  #isShuttingDown: () => boolean;

  /**
   * Creates the policy. Throws a `TypeError` for an allowed origin that is
   * not an origin and a `RangeError` for a bad cap, so a bad setting stops
   * the start, not every upgrade.
   */
  constructor(options: AdmissionOptions) {
    this.#rooms = options.rooms;
    this.#authKey = options.authKey ?? null;
    this.#originPolicy = {
      allowedOrigins: validateAllowedOrigins(options.allowedOrigins ?? []),
      requireOrigin: options.requireOrigin ?? false,
    };
    this.#limiter = new ConnectionLimiter({
      maxTotal: options.maxConnections,
      maxPerIp: options.maxConnectionsPerIp,
    });
    this.#sessionOf = options.sessionOf ?? noSession;
    this.#isShuttingDown = options.isShuttingDown ?? never;
  }

  /** Admits a peer or says why not; upgrade and reserve in the same turn. */
  async admit(
    request: Request,
    context: UpgradeContext,
  ): Promise<Verdict<Admittance>> {
    if (this.#isShuttingDown()) return refused(SHUTTING_DOWN);
    const origin = checkOrigin(request.headers, this.#originPolicy);
    if (!origin.ok) {
      return refused({ status: 403, reason: "origin", text: origin.reason });
    }
    const wanted = requestedRoom(context.query);
    if (!wanted.ok) return wanted;
    // The token and the subprotocol to answer with, read once.
    const presented = tokenFromRequest(request);
    const identity = await identify(context.query, {
      token: presented.token,
      authKey: this.#authKey,
    });
    if (!identity.ok) return identity;
    // From here on nothing awaits (see the class's invariant).
    if (this.#isShuttingDown()) return refused(SHUTTING_DOWN);
    const seat = this.#seat(
      identity.value,
      wanted.value.room,
      context.query.get("session"),
    );
    if (!seat.ok) return seat;
    const { room, username } = seat.value;
    const slot = this.#limiter.tryAcquire(context.ip);
    if (!slot.ok) {
      this.#rooms.release(room);
      return refused({
        status: slot.limit === "total" ? 503 : 429,
        reason: `limit_${slot.limit}`,
        text: slot.reason,
      });
    }
    const rooms = this.#rooms;
    return {
      ok: true,
      value: {
        ip: context.ip,
        username,
        room,
        since: wanted.value.since,
        protocol: presented.protocol ?? undefined,
        release: slot.release,
        cancel(): void {
          slot.release();
          rooms.release(room);
        },
      },
    };
  }

  /**
   * Opens the room and settles the name: the one asked for (taken over when
   * the connection holding it is the peer's own, by its session) or a
   * guest's.
   */
  #seat(
    identity: string | null,
    roomName: string,
    claim: string | null,
  ): Verdict<{ room: Room; username: string }> {
    const holder = identity === null
      ? undefined
      : this.#rooms.get(roomName)?.holder(identity);
    if (
      holder !== undefined && claim !== null &&
      this.#sessionOf(holder) === claim
    ) {
      // The same person reconnecting before their old socket timed out:
      // the old connection ends (and leaves) before the new one joins.
      holder.close(CloseCode.replaced, "replaced by a newer connection");
    }
    const room = this.#rooms.open(roomName);
    if (room === null) {
      return refused({
        status: 503,
        reason: "room_limit",
        text: "the server has as many rooms open as it allows",
      });
    }
    const username = identity ?? guestName(room);
    if (room.isTaken(username)) {
      this.#rooms.release(room);
      return refused({
        status: 409,
        reason: "username_taken",
        error: "username_taken",
        text:
          `username "${username}" is already online in room "${room.name}"; choose another`,
      });
    }
    return { ok: true, value: { room, username } };
  }
}

function noSession(): undefined {
  return undefined;
}

function never(): boolean {
  return false;
}

// ------------------------------------------------------------ connection

/** A fresh connection secret: 128 random bits, hex. */
function newSessionToken(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (byte) => byte.toString(16).padStart(2, "0")).join(
    "",
  );
}

/**
 * True when a text frame is larger than `maxBytes` of UTF-8. A UTF-16 unit
 * is 1 to 3 bytes of UTF-8, so the exact count is made only when needed.
 *
 * @example
 * ```ts
 * import { isFrameTooLarge } from "./server.ts";
 * isFrameTooLarge("é".repeat(5), 8); // true: 10 bytes
 * ```
 */
export function isFrameTooLarge(text: string, maxBytes: number): boolean {
  return text.length > maxBytes ||
    (text.length * 3 > maxBytes && utf8Length(text) > maxBytes);
}

/** Why the server cut a client off, as `hubchat_evictions_total` counts it. */
export type EvictionCause = "slow_consumer" | "rate_limit" | "idle";

/**
 * Why a client's end was an eviction, or null for an ordinary end.
 *
 * @example
 * ```ts
 * import { evictionCause } from "./server.ts";
 * evictionCause({ code: 4008, reason: "slow consumer", byServer: true });
 * // "slow_consumer"
 * ```
 */
export function evictionCause(end: ClientEnd): EvictionCause | null {
  if (end.code === CLOSE_SLOW_CONSUMER) return "slow_consumer";
  if (end.code === CloseCode.policyViolation) return "rate_limit";
  if (!end.byServer && end.reason === DENO_IDLE_REASON) return "idle";
  return null;
}

/** Who a new connection is, as admission decided. */
export interface Newcomer {
  /** The peer's address, for logs and its connection slot. */
  ip: string;
  /** The name it chats under, checked free in `room`. */
  username: string;
  /** The room it joins once its socket opens. */
  room: Room;
  /** The last message id it saw in `room`; undefined for none. */
  since: number | undefined;
  /** Frees its connection slot (idempotent). */
  release(): void;
}

/** What every connection of one server shares. */
export interface ConnectionsOptions {
  /** Where connections say, type and move. */
  rooms: Rooms;
  /** Counts frames, refusals, connections and evictions. */
  metrics: ServerMetrics;
  /** Where connect, disconnect and eviction lines go. Default: nowhere. */
  logger?: Logger;
  /** Largest frame a client may send, in bytes. Default 8 KiB. */
  maxFrameBytes?: number;
  /** Messages a client may send per second; 0 means no limit. Default 10. */
  ratePerSecond?: number;
  /** Messages a client may send at once above the rate. Default 20. */
  burst?: number;
  /** Most messages a client's outbox holds before eviction. Default 256. */
  maxQueue?: number;
  /** `bufferedAmount` above which a client counts as backed up. */
  highWaterBytes?: number;
  /** True once the server is stopping: a socket opening then is closed. */
  isShuttingDown?: () => boolean;
}

/** Options for a {@linkcode Connection}. */
export interface ConnectionOptions {
  /** Who the peer is and where it goes. */
  newcomer: Newcomer;
  /** What it shares with every connection of the server. */
  shared: ConnectionsOptions;
  /** Told once, when the connection ends. */
  onEnd?: (connection: Connection) => void;
}

/**
 * One peer's connection: the read side of its socket, as gorilla's
 * `readPump`. Every frame is checked (type, size, rate) before it is
 * parsed, then dispatched: a line to the room, a typing notice (throttled),
 * or a move to another room. Its {@linkcode Client} is the write side.
 *
 * Lifecycle: made at the upgrade, holding its name in its room; `open`
 * when the socket opens (welcome and join); `receive` per frame; its end,
 * however it comes, leaves the room, frees the slot and is logged once.
 *
 * @example
 * ```ts
 * import { Connection } from "./server.ts";
 * import { ServerMetrics } from "./metrics.ts";
 * import { Rooms } from "./rooms.ts";
 * const rooms = new Rooms({ history: null });
 * const metrics = new ServerMetrics({
 *   connectionsOpen: () => 1,
 *   clients: () => rooms.clients(),
 * });
 * const socket = { bufferedAmount: 0, send(frame: string) {}, close() {} };
 * const connection = new Connection(socket, {
 *   newcomer: {
 *     ip: "127.0.0.1",
 *     username: "ann",
 *     room: rooms.open("lobby")!,
 *     since: undefined,
 *     release() {},
 *   },
 *   shared: { rooms, metrics },
 * });
 * connection.open();
 * connection.receive('{"type":"message","text":"hi"}');
 * rooms.close(1001, "done");
 * ```
 */
export class Connection {
  /** The write side: the peer's outbox and socket. */
  readonly client: Client;
  /** The secret that lets a reconnect take this connection's name. */
  readonly session: string = newSessionToken();
  /** The peer's address. */
  readonly ip: string;
  #room: Room;
  #since: number | undefined;
  /** True when the name was reserved in the room at the upgrade. */
  #reserved: boolean;
  #shared: ConnectionsOptions;
  #metrics: ServerMetrics;
  #maxFrameBytes: number;
  #ratePerSecond: number;
  #burst: number;
  /** Rate limit; null when the server runs without one. */
  #guard: FloodGuard | null;
  /** When a typing notice was last relayed (performance.now()). */
  #lastTypingAt = -Infinity;
  #openedAt = performance.now();
  #release: () => void;
  #onEnd?: (connection: Connection) => void;

  /** Makes the client and reserves its name in its room. */
  constructor(socket: ClientSocket, options: ConnectionOptions) {
    const { newcomer, shared } = options;
    this.ip = newcomer.ip;
    this.#room = newcomer.room;
    this.#since = newcomer.since;
    this.#release = newcomer.release;
    this.#onEnd = options.onEnd;
    this.#shared = shared;
    this.#metrics = shared.metrics;
    this.#maxFrameBytes = shared.maxFrameBytes ?? DEFAULT_MAX_FRAME_BYTES;
    this.#ratePerSecond = shared.ratePerSecond ?? DEFAULT_RATE_PER_SECOND;
    this.#burst = shared.burst ?? DEFAULT_BURST;
    this.#guard = this.#ratePerSecond === 0 ? null : new FloodGuard({
      ratePerSecond: this.#ratePerSecond,
      burst: this.#burst,
    });
    this.client = new Client(socket, {
      username: newcomer.username,
      flusher: shared.rooms.flusher,
      maxQueue: shared.maxQueue,
      highWaterBytes: shared.highWaterBytes,
      onEnd: (_client, end) => this.#ended(end),
    });
    this.#reserved = this.#room.reserve(this.client);
  }

  /** The room the peer is in now. */
  get room(): Room {
    return this.#room;
  }

  /** The socket opened: welcome the peer into its room and announce it. */
  open(): void {
    // Shutdown may have begun between the upgrade and the open.
    if (this.#shared.isShuttingDown?.() || !this.#reserved) {
      this.client.close(CloseCode.goingAway, "server shutting down");
      return;
    }
    this.#shared.logger?.log("info", "connect", {
      user: this.client.username,
      ip: this.ip,
      room: this.#room.name,
    });
    this.#room.join(this.client, { since: this.#since, session: this.session });
  }

  /** Handles one frame from the peer, cheapest checks first. */
  receive(data: unknown): void {
    const client = this.client;
    if (client.ended) return;
    const metrics = this.#metrics;
    metrics.received.inc();
    // Nothing is parsed for a frame refused here.
    if (typeof data !== "string") {
      metrics.errors.inc("binary_frame");
      client.close(
        CloseCode.unsupportedData,
        "binary frames are not supported; send JSON text",
      );
      return;
    }
    if (isFrameTooLarge(data, this.#maxFrameBytes)) {
      metrics.errors.inc("frame_too_large");
      client.close(
        CloseCode.messageTooBig,
        `frame larger than ${this.#maxFrameBytes} bytes`,
      );
      return;
    }
    if (this.#guard !== null && !this.#withinRate(this.#guard)) return;
    const parsed = parseClientMessage(data);
    if (!parsed.ok) {
      this.#refuse(parsed.code, parsed.text);
      return;
    }
    this.#dispatch(parsed.value);
  }

  /** Applies the rate limit: true when the frame may be handled. */
  #withinRate(guard: FloodGuard): boolean {
    const verdict = guard.check(performance.now());
    if (verdict === "accept") return true;
    if (verdict === "warn") {
      this.#refuse(
        "rate_limited",
        `too many messages; at most ${this.#ratePerSecond} per second (bursts of ${this.#burst}); this one was dropped`,
      );
      return false;
    }
    this.#metrics.errors.inc("rate_limited");
    if (verdict === "close") {
      this.client.close(
        CloseCode.policyViolation,
        "rate limit exceeded repeatedly",
      );
    }
    return false;
  }

  #dispatch(command: ClientCommand): void {
    switch (command.type) {
      case "message":
        this.#room.say(this.client, command.text, command.to);
        return;
      case "typing": {
        const now = performance.now();
        if (now - this.#lastTypingAt < TYPING_INTERVAL_MS) return;
        this.#lastTypingAt = now;
        this.#room.typing(this.client);
        return;
      }
      case "join":
        this.#switchRoom(command.room);
        return;
    }
  }

  /** Moves the peer to another room: leave there, welcome and join here. */
  #switchRoom(name: string): void {
    const client = this.client;
    const from = this.#room;
    if (name === from.name) {
      this.#refuse("invalid_room", `you are already in room "${name}"`);
      return;
    }
    const rooms = this.#shared.rooms;
    const to = rooms.open(name);
    if (to === null) {
      this.#refuse(
        "room_limit",
        "the server has as many rooms open as it allows; join an existing one",
      );
      return;
    }
    if (!to.reserve(client)) {
      this.#refuse(
        "username_taken",
        `username "${client.username}" is already online in room "${name}"`,
      );
      rooms.release(to);
      return;
    }
    from.leave(client);
    this.#room = to;
    to.join(client, { session: this.session });
  }

  #refuse(code: ErrorCode, text: string): void {
    this.#metrics.errors.inc(code);
    this.client.deliver(JSON.stringify(errorMessage({ code, text })));
  }

  /** The client ended, however: leave, free the slot, log it once. */
  #ended(end: ClientEnd): void {
    this.#onEnd?.(this);
    this.#room.leave(this.client);
    this.#release();
    const seconds = (performance.now() - this.#openedAt) / 1000;
    const fields = {
      user: this.client.username,
      ip: this.ip,
      code: end.code,
      reason: end.reason || undefined,
      by: end.byServer ? "server" : "peer",
      seconds: Math.round(seconds * 10) / 10,
    };
    const cause = evictionCause(end);
    const logger = this.#shared.logger;
    if (cause !== null) {
      this.#metrics.evictions.inc(cause);
      logger?.log("warn", "evict", { ...fields, cause });
    } else {
      logger?.log("info", "disconnect", fields);
    }
  }
}

/**
 * The session table of one server: every connection whose client has not
 * ended, and every socket not yet closed, which shutdown waits for.
 *
 * @example
 * ```ts
 * import { Connections } from "./server.ts";
 * import { ServerMetrics } from "./metrics.ts";
 * import { Rooms } from "./rooms.ts";
 * const rooms = new Rooms({ history: null });
 * const connections: Connections = new Connections({
 *   rooms,
 *   metrics: new ServerMetrics({
 *     connectionsOpen: () => connections.open,
 *     clients: () => rooms.clients(),
 *   }),
 * });
 * // After an upgrade: connections.accept(socket, newcomer);
 * await connections.closed();
 * ```
 */
export class Connections {
  #shared: ConnectionsOptions;
  #byClient = new Map<Client, Connection>();
  /** Sockets not yet closed, each with a way to wait for its close. */
  #unclosed = new Map<WebSocket, Promise<void>>();

  /** Creates an empty table. */
  constructor(options: ConnectionsOptions) {
    this.#shared = options;
  }

  /** Sockets accepted and not yet closed. */
  get open(): number {
    return this.#unclosed.size;
  }

  /** The session secret of the connection whose client this is. */
  sessionOf(client: Client): string | undefined {
    return this.#byClient.get(client)?.session;
  }

  /** Takes over a socket just upgraded for an admitted peer. */
  accept(socket: WebSocket, newcomer: Newcomer): Connection {
    const connection = new Connection(socket, {
      newcomer,
      shared: this.#shared,
      onEnd: (ended) => this.#byClient.delete(ended.client),
    });
    const client = connection.client;
    this.#byClient.set(client, connection);
    this.#shared.metrics.connections.inc();
    this.#unclosed.set(
      socket,
      new Promise((resolve) => {
        socket.addEventListener("close", (event) => {
          this.#unclosed.delete(socket);
          client.socketClosed(event.code, event.reason);
          resolve();
        });
      }),
    );
    socket.addEventListener("open", () => connection.open());
    socket.addEventListener("message", (event) => {
      connection.receive(event.data);
    });
    // An "error" event is always followed by "close", which ends the client
    // with the real code and reason.
    return connection;
  }

  /** Resolves once every socket accepted so far has closed. */
  async closed(): Promise<void> {
    await Promise.all(this.#unclosed.values());
  }
}

// ---------------------------------------------------------------- server

const homePage = await Deno.readFile(new URL("./home.html", import.meta.url));

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

/** A refusal as HTTP: a short JSON error body, or plain text. */
function refusalResponse(refusal: Refusal): Response {
  if (refusal.error === undefined) {
    return textResponse(refusal.status, refusal.text);
  }
  return Response.json(
    { error: refusal.error, message: refusal.text },
    { status: refusal.status },
  );
}

/** What the routes of a running server use. */
interface Parts {
  rooms: Rooms;
  metrics: ServerMetrics;
  admission: Admission;
  connections: Connections;
  logger: Logger;
  idleTimeout: number;
  trustProxy: boolean;
}

/** Answers one HTTP request. */
function route(
  parts: Parts,
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
      return upgrade(parts, request, { info, query: url.searchParams });
    case "/healthz":
      if (!readOnly) return methodNotAllowed("GET, HEAD");
      return Response.json({ status: "ok", clients: parts.rooms.online });
    case "/rooms":
      if (!readOnly) return methodNotAllowed("GET, HEAD");
      return Response.json({ rooms: parts.rooms.list() });
    case "/metrics":
      if (!readOnly) return methodNotAllowed("GET, HEAD");
      return new Response(parts.metrics.render(), {
        headers: { "content-type": PROMETHEUS_CONTENT_TYPE },
      });
    default:
      return textResponse(404, `no such path: ${pathname}`);
  }
}

/** `/ws`: admission, then the upgrade, then the connection. */
async function upgrade(
  parts: Parts,
  request: Request,
  { info, query }: { info: Deno.ServeHandlerInfo; query: URLSearchParams },
): Promise<Response> {
  if (request.headers.get("upgrade")?.toLowerCase() !== "websocket") {
    return textResponse(
      426,
      "this endpoint speaks WebSocket only; connect with a WebSocket client to /ws?username=NAME",
      { upgrade: "websocket" },
    );
  }
  const ip = clientAddress(request, info, parts.trustProxy);
  function reject(refusal: Refusal): Response {
    parts.metrics.rejected.inc(refusal.reason);
    parts.logger.log("warn", "reject", {
      ip,
      status: refusal.status,
      reason: refusal.reason,
    });
    return refusalResponse(refusal);
  }
  const admitted = await parts.admission.admit(request, { ip, query });
  if (!admitted.ok) return reject(admitted.refusal);
  const peer = admitted.value;
  let upgraded;
  try {
    upgraded = Deno.upgradeWebSocket(request, {
      idleTimeout: parts.idleTimeout,
      protocol: peer.protocol,
    });
  } catch (error) {
    peer.cancel();
    return reject({
      status: 400,
      reason: "bad_handshake",
      text: `bad WebSocket handshake: ${(error as Error).message}`,
    });
  }
  // In the same turn as admission: the name is reserved before anyone
  // else can take it.
  parts.connections.accept(upgraded.socket, peer);
  return upgraded.response;
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
  let shuttingDown: Promise<void> | undefined;
  const isShuttingDown = (): boolean => shuttingDown !== undefined;
  const logger = options.logger ?? silentLogger;
  const history = options.historyLimit === 0
    ? null
    : await History.open(options.data ?? ":memory:", {
      limit: options.historyLimit,
    });
  const metrics: ServerMetrics = new ServerMetrics({
    connectionsOpen: () => connections.open,
    clients: (): Iterable<Client> => rooms.clients(),
  });
  const rooms: Rooms = new Rooms({
    history,
    maxRooms: options.maxRooms,
    onBroadcast: metrics.observeBroadcast.bind(metrics),
    onRefusal: (code) => metrics.errors.inc(code),
  });
  const connections: Connections = new Connections({
    rooms,
    metrics,
    logger,
    maxFrameBytes: options.maxFrameBytes,
    ratePerSecond: options.ratePerSecond,
    burst: options.burst,
    maxQueue: options.maxQueue,
    highWaterBytes: options.highWaterBytes,
    isShuttingDown,
  });
  const admission = new Admission({
    rooms,
    authKey: options.authSecret === undefined
      ? null
      : await importSecret(options.authSecret),
    allowedOrigins: options.allowedOrigins,
    requireOrigin: options.requireOrigin,
    maxConnections: options.maxConnections,
    maxConnectionsPerIp: options.maxConnectionsPerIp,
    sessionOf: (client) => connections.sessionOf(client),
    isShuttingDown,
  });
  const parts: Parts = {
    rooms,
    metrics,
    admission,
    connections,
    logger,
    idleTimeout: options.idleTimeoutSeconds ?? DEFAULT_IDLE_TIMEOUT_SECONDS,
    trustProxy: options.trustProxy ?? false,
  };

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
  }, (request, info) => route(parts, request, info));
  const addr = await listening;

  async function shutdown(): Promise<void> {
    // New upgrades are refused from here on (shuttingDown is set).
    rooms.close(CloseCode.goingAway, "server shutting down");
    const { promise: grace, resolve: graceOver } = Promise.withResolvers<
      void
    >();
    const timer = setTimeout(graceOver, SHUTDOWN_GRACE_MS);
    await Promise.race([connections.closed(), grace]);
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

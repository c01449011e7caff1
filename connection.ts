/**
 * One peer's connection: the read side of its socket, as gorilla's
 * `readPump` ({@linkcode Connection}; client.ts is the write side). Every
 * frame is checked before anything is parsed: text only, at most
 * {@linkcode DEFAULT_MAX_FRAME_BYTES}, and within a per-connection rate
 * limit that escalates from a warning to dropping frames to closing the
 * connection. Then it goes to the peer's room: a chat line, a typing notice,
 * or a move to another room. {@linkcode Connections} is a server's session
 * table.
 *
 * The frame rules are pure functions and the rate limit takes the time as
 * an argument, so every rule is testable without sockets or clocks; a
 * Connection itself needs only something with `send` and `close`.
 *
 * @module
 */

import {
  Client,
  type ClientEnd,
  type ClientSocket,
  CLOSE_SLOW_CONSUMER,
} from "./client.ts";
import type { Logger } from "./log.ts";
import type { ServerMetrics } from "./metrics.ts";
import {
  type ClientCommand,
  CloseCode,
  type ErrorCode,
  errorMessage,
  type FileCommand,
  type FileInfo,
  parseClientMessage,
  utf8Length,
} from "./protocol.ts";
import { EngineUnavailable } from "./engine.ts";
import type { Room, Rooms } from "./room.ts";

/**
 * Largest frame a client may send, in bytes. A chat line is at most 2000
 * characters (up to 8000 bytes of UTF-8 in the worst case, usually far less)
 * plus a little JSON; anything bigger is not chat.
 */
export const DEFAULT_MAX_FRAME_BYTES = 8 * 1024;

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

/**
 * Chat lines a connection may send per second, sustained. Faster than anyone
 * types, slow enough that one script cannot drown the room (every line is
 * sent to everyone).
 */
export const DEFAULT_RATE_PER_SECOND = 10;

/**
 * Lines a connection may send at once after a quiet spell: a pasted block or
 * a client replaying what it queued while reconnecting.
 */
export const DEFAULT_BURST = 20;

/**
 * Consecutive refused frames before the connection is closed with 1008. Any
 * accepted frame resets the count; at 10 lines per second a token comes back
 * every 100 ms, so 10 refusals in a row means frames faster than the limit
 * with no pause at all: a flood, not a person.
 */
export const DEFAULT_MAX_STRIKES = 10;

/**
 * Milliseconds an accepted socket may stay CONNECTING before it is given up
 * as if it had closed abnormally (1006 "never opened"). A peer that leaves
 * just before the upgrade, before Deno has told JavaScript, is upgraded into
 * a socket that never opens nor closes, and would hold its name and slot for
 * good. A real handshake is complete milliseconds after the upgrade (the 101
 * is all that is left to write); 10 s is generous even for a machine loaded
 * far past that, and a live peer given up only has to connect again.
 */
export const OPEN_DEADLINE_MS = 10_000;

/** Who a new connection is, as admission decided. */
export interface Newcomer {
  /** The peer's address, for logs and its connection slot. */
  ip: string;
  /** Its client's id (from `newClientId`); default a new one. */
  id?: string;
  /** Its session secret; default a new one. */
  session?: string;
  /** The store's life `since` refers to (the welcome's `epoch`), if any. */
  epoch?: string;
  /** The name it chats under, checked free in `room`. */
  username: string;
  /** The room it joins once its socket opens. */
  room: Room;
  /** The last message id it saw in `room`; undefined for none. */
  since: number | undefined;
  /** Frees its connection slot (idempotent). */
  release(): void;
}

/**
 * Where `file` commands find their uploads (store/files.ts's FileStore):
 * an upload is marked shared before its line is stored, and told the
 * line's id after (or, with null, that no line was stored).
 */
export interface FileSharing {
  /** Marks the upload shared by `uploader` in `room`, or says why not. */
  share(
    id: string,
    who: { room: string; uploader: string; to?: string },
  ): Promise<{ ok: true; file: FileInfo } | { ok: false; text: string }>;
  /**
   * The id of the line that shared the upload, once it is known, or null
   * for none. Shutdown waits for the line.
   */
  shared(id: string, lineId: Promise<number | null>): Promise<void>;
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
  /** Where shared files are; without it, `file` commands are refused. */
  files?: FileSharing;
  /**
   * Milliseconds a socket may take to open before it is given up.
   * Default {@linkcode OPEN_DEADLINE_MS} (10 s).
   */
  openDeadlineMs?: number;
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
 * import { Connection } from "./connection.ts";
 * import { ServerMetrics } from "./metrics.ts";
 * import { Rooms } from "./room.ts";
 * const rooms = new Rooms();
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
  readonly session: string;
  /** The peer's address. */
  readonly ip: string;
  #room: Room;
  #since: number | undefined;
  #epoch: string | undefined;
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
  /**
   * Set while a `file` command looks its upload up: the commands after it
   * wait, so one peer's lines are stored in the order it sent them.
   */
  #pending: Promise<void> | null = null;
  #release: () => void;
  #onEnd?: (connection: Connection) => void;

  /** Makes the client and reserves its name in its room. */
  constructor(socket: ClientSocket, options: ConnectionOptions) {
    const { newcomer, shared } = options;
    this.ip = newcomer.ip;
    this.session = newcomer.session ?? newSessionToken();
    this.#epoch = newcomer.epoch;
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
      id: newcomer.id,
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
    this.#room.join(this.client, {
      since: this.#since,
      epoch: this.#epoch,
      session: this.session,
    });
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
        this.#inOrder(() => {
          void this.#room.say(this.client, command.text, command.to);
        });
        return;
      case "file":
        this.#inOrder(() => this.#shareFile(command));
        return;
      case "typing": {
        const now = performance.now();
        if (now - this.#lastTypingAt < TYPING_INTERVAL_MS) return;
        this.#lastTypingAt = now;
        this.#inOrder(() => this.#room.typing(this.client));
        return;
      }
      case "join":
        // Commands after a join wait for the move: they belong to the new room.
        this.#inOrder(() => this.#switchRoom(command.room));
        return;
      case "members":
        this.#inOrder(() => this.#room.members(this.client, command));
        return;
    }
  }

  /**
   * Runs a command now, or after the commands still waiting (behind a
   * `file` command's lookup or a room move), in the order they came.
   */
  #inOrder(command: () => void | Promise<void>): void {
    if (this.#pending === null) {
      const started = command();
      if (started instanceof Promise) this.#wait(started);
      return;
    }
    this.#wait(this.#pending.then(command));
  }

  #wait(running: Promise<void>): void {
    // Commands answer their own failures; one that throws is a bug, said
    // in the log, and the commands after it still run.
    const pending: Promise<void> = running.catch((error) => {
      this.#shared.logger?.log("error", "command_failed", {
        user: this.client.username,
        cause: error instanceof Error ? error.message : String(error),
      });
    }).finally(() => {
      if (this.#pending === pending) this.#pending = null;
    });
    this.#pending = pending;
  }

  /**
   * Shares an upload in the peer's room: marks it shared (only the two
   * ends of a direct message may then read it), then posts its line; an
   * upload whose line was refused may be shared again. Resolves once the
   * line is on its way (the next command may then go).
   */
  async #shareFile(command: FileCommand): Promise<void> {
    const files = this.#shared.files;
    const client = this.client;
    const room = this.#room;
    if (files === undefined) {
      this.#refuse("unknown_file", "this server keeps no files");
      return;
    }
    let verdict;
    try {
      verdict = await files.share(command.id, {
        room: room.name,
        uploader: client.username,
        ...(command.to === undefined ? {} : { to: command.to }),
      });
    } catch {
      this.#refuse(
        "storage_failed",
        "the file could not be looked up, so it was not shared; try again",
      );
      return;
    }
    if (!verdict.ok) {
      this.#refuse("unknown_file", verdict.text);
      return;
    }
    if (client.ended || this.#room !== room) {
      await files.shared(command.id, Promise.resolve(null)).catch(() => {});
      return;
    }
    const line = room.post(client, {
      text: command.text ?? "",
      ...(command.to === undefined ? {} : { to: command.to }),
      file: verdict.file,
    });
    files.shared(command.id, line.then((stored) => stored?.id ?? null))
      .catch(() => {});
  }

  /** Moves the peer to another room: leave there, welcome and join here. */
  async #switchRoom(name: string): Promise<void> {
    const client = this.client;
    const from = this.#room;
    if (name === from.name) {
      this.#refuse("invalid_room", `you are already in room "${name}"`);
      return;
    }
    const rooms = this.#shared.rooms;
    // A room open here already is ready: the move happens in this turn.
    const open = rooms.open(name);
    let to: Room | null;
    try {
      to = open === null || open.isReady ? open : await rooms.ready(name);
    } catch (error) {
      if (!(error instanceof EngineUnavailable)) throw error;
      this.#refuseMoveUnavailable(name);
      return;
    }
    if (to === null) {
      this.#refuse(
        "room_limit",
        "the server has as many rooms open as it allows; join an existing one",
      );
      return;
    }
    // The peer may have gone, or moved, while the room opened.
    if (client.ended || this.#room !== from) {
      rooms.release(to);
      return;
    }
    // One process claims nothing across nodes: the move stays in this turn.
    const shared = rooms.engine.shared;
    let claim = to.reserve(client) ? "claimed" : "taken";
    if (claim === "claimed" && shared) claim = await this.#claimIn(to);
    if (claim !== "claimed") {
      if (claim === "taken") {
        this.#refuse(
          "username_taken",
          `username "${client.username}" is already online in room "${name}"`,
        );
      } else {
        this.#refuseMoveUnavailable(name);
      }
      to.leave(client);
      rooms.release(to);
      return;
    }
    // The peer may have gone, or moved, while the name was claimed.
    if (client.ended || this.#room !== from) {
      to.leave(client);
      rooms.release(to);
      return;
    }
    from.leave(client);
    this.#room = to;
    to.join(client, { session: this.session });
  }

  /**
   * Claims the peer's name in a room across nodes: "taken" when another
   * node's member holds it, "unavailable" when the store did not answer.
   */
  async #claimIn(room: Room): Promise<"claimed" | "taken" | "unavailable"> {
    const engine = this.#shared.rooms.engine;
    try {
      const result = await engine.claim(room.name, {
        member: {
          name: this.client.username,
          owner: room.ownerOf(this.client),
        },
        sessionHash: await sessionHash(this.session),
        presented: null,
      });
      return result.claimed ? "claimed" : "taken";
    } catch {
      return "unavailable";
    }
  }

  #refuseMoveUnavailable(name: string): void {
    this.#refuse(
      "unavailable",
      `the chat store is unreachable, so you stay in room "${this.#room.name}"; try joining "${name}" again shortly`,
    );
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
 * ended, and every socket not yet closed, which shutdown waits for (one
 * still not open after {@linkcode OPEN_DEADLINE_MS} is given up).
 *
 * @example
 * ```ts
 * import { Connections } from "./connection.ts";
 * import { ServerMetrics } from "./metrics.ts";
 * import { Rooms } from "./room.ts";
 * const rooms = new Rooms();
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
  /** Live connections by their session secret (uploads present it). */
  #bySession = new Map<string, Connection>();
  /** Sockets not yet closed, each with a way to wait for its close. */
  #unclosed = new Map<WebSocket, Promise<void>>();

  /** Creates an empty table. */
  constructor(options: ConnectionsOptions) {
    this.#shared = options;
  }

  /** Sockets accepted and not yet closed (nor given up). */
  get open(): number {
    return this.#unclosed.size;
  }

  /** The session secret of the connection whose client this is. */
  sessionOf(client: Client): string | undefined {
    return this.#byClient.get(client)?.session;
  }

  /**
   * The live connection whose session secret this is: where it is and
   * under which name. Undefined when none (never was, or ended).
   */
  bySession(session: string): { room: string; username: string } | undefined {
    const connection = this.#bySession.get(session);
    if (connection === undefined || connection.client.ended) return undefined;
    return { room: connection.room.name, username: connection.client.username };
  }

  /** Takes over a socket just upgraded for an admitted peer. */
  accept(socket: WebSocket, newcomer: Newcomer): Connection {
    const connection = new Connection(socket, {
      newcomer,
      shared: this.#shared,
      onEnd: (ended) => {
        this.#byClient.delete(ended.client);
        if (this.#bySession.get(ended.session) === ended) {
          this.#bySession.delete(ended.session);
        }
      },
    });
    const client = connection.client;
    this.#byClient.set(client, connection);
    this.#bySession.set(connection.session, connection);
    this.#shared.metrics.connections.inc();
    const { promise, resolve } = Promise.withResolvers<void>();
    this.#unclosed.set(socket, promise);
    const socketGone = (code: number, reason: string): void => {
      clearTimeout(deadline);
      this.#unclosed.delete(socket);
      client.socketClosed(code, reason);
      resolve();
    };
    // A socket that never opens is given up, so shutdown does not wait on it.
    const deadline = setTimeout(() => {
      try {
        socket.close();
      } catch {
        // A throw in a timer would end the process; giving up is what matters.
      }
      socketGone(1006, "never opened");
    }, this.#shared.openDeadlineMs ?? OPEN_DEADLINE_MS);
    socket.addEventListener("close", (event) => {
      socketGone(event.code, event.reason);
    });
    socket.addEventListener("open", () => {
      clearTimeout(deadline);
      // Closing a socket still opening does not stop it opening: one given
      // up at its deadline is nobody's now, and is closed again here.
      if (client.ended) {
        socket.close(CloseCode.goingAway, "opened too late");
        return;
      }
      connection.open();
    });
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

/**
 * A fresh connection secret: 128 random bits, hex.
 *
 * @example
 * ```ts
 * import { newSessionToken } from "./connection.ts";
 * newSessionToken().length; // 32
 * ```
 */
export function newSessionToken(): string {
  return crypto.getRandomValues(new Uint8Array(16)).toHex();
}

/**
 * A session secret's SHA-256, hex: how nodes compare sessions without
 * handing the secret itself to the shared store.
 *
 * @example
 * ```ts
 * import { sessionHash } from "./connection.ts";
 * (await sessionHash("s3cret")).length; // 64
 * ```
 */
export async function sessionHash(session: string): Promise<string> {
  const digest = await crypto.subtle.digest(
    "SHA-256",
    new TextEncoder().encode(session),
  );
  return new Uint8Array(digest).toHex();
}

/**
 * True when a text frame is larger than `maxBytes` of UTF-8. A UTF-16 unit
 * is 1 to 3 bytes of UTF-8, so the exact count is made only when needed.
 *
 * @example
 * ```ts
 * import { isFrameTooLarge } from "./connection.ts";
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
 * import { evictionCause } from "./connection.ts";
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

/** Throws a RangeError naming a setting that is not a number > 0 (or whole). */
function checkPositive(name: string, value: number, integer: boolean): void {
  if (
    !(value > 0 && value < Infinity) || (integer && !Number.isInteger(value))
  ) {
    throw new RangeError(
      `${name} is ${value}; expected a ${
        integer ? "whole number" : "finite number"
      } > 0`,
    );
  }
}

/** Options for {@linkcode TokenBucket}. */
export interface TokenBucketOptions {
  /** Tokens added per second, sustained. */
  ratePerSecond: number;
  /** Most tokens held, so most taken at once; the bucket starts full. */
  burst: number;
}

/**
 * A token bucket: `burst` tokens to start, `ratePerSecond` more each second
 * up to `burst`, one per {@linkcode TokenBucket.take}. There is no timer: the
 * refill is computed from the time passed to `take`.
 *
 * @example
 * ```ts
 * import { TokenBucket } from "./connection.ts";
 * const bucket = new TokenBucket({ ratePerSecond: 10, burst: 20 });
 * if (!bucket.take(performance.now())) console.log("slow down");
 * ```
 */
export class TokenBucket {
  /** Tokens added per second. */
  readonly ratePerSecond: number;
  /** Most tokens held. */
  readonly burst: number;
  #tokens: number;
  #lastMs = -Infinity;

  /** Creates a full bucket. Throws a `RangeError` for a rate or burst <= 0. */
  constructor(options: TokenBucketOptions) {
    checkPositive("ratePerSecond", options.ratePerSecond, false);
    checkPositive("burst", options.burst, false);
    this.ratePerSecond = options.ratePerSecond;
    this.burst = options.burst;
    this.#tokens = options.burst;
  }

  /**
   * Takes `count` tokens (default one) if there are as many. `nowMs` is a
   * monotonic clock in milliseconds (`performance.now()`); a clock that
   * goes back refills nothing.
   */
  take(nowMs: number, count = 1): boolean {
    this.#refill(nowMs);
    if (this.#tokens < count) return false;
    this.#tokens -= count;
    return true;
  }

  /**
   * Takes up to `count` tokens, as many as there are at `nowMs`, and says
   * how many it took (fractional): a reservation, whose unused part goes
   * back with {@linkcode TokenBucket.giveBack}.
   */
  takeUpTo(nowMs: number, count: number): number {
    this.#refill(nowMs);
    const taken = Math.min(this.#tokens, count);
    this.#tokens -= taken;
    return taken;
  }

  /** Gives back `count` tokens taken and not used, up to `burst`. */
  giveBack(count: number): void {
    this.#tokens = Math.min(this.burst, this.#tokens + count);
  }

  /** Tokens available at `nowMs` (fractional), without taking any. */
  available(nowMs: number): number {
    this.#refill(nowMs);
    return this.#tokens;
  }

  #refill(nowMs: number): void {
    if (nowMs > this.#lastMs) {
      if (this.#lastMs !== -Infinity) {
        const added = (nowMs - this.#lastMs) * this.ratePerSecond / 1000;
        this.#tokens = Math.min(this.burst, this.#tokens + added);
      }
      this.#lastMs = nowMs;
    }
  }
}

/** Options for {@linkcode FloodGuard}; every field has a default. */
export interface FloodGuardOptions {
  /** Frames per second, sustained. Default 10. */
  ratePerSecond?: number;
  /** Frames at once after a quiet spell. Default 20. */
  burst?: number;
  /** Consecutive refusals before `"close"`. Default 10. */
  maxStrikes?: number;
}

/**
 * What to do with a frame:
 * - `"accept"`: handle it.
 * - `"warn"`: drop it and tell the client once (the first refusal of a
 *   streak), e.g. an `error` message with code `rate_limited`.
 * - `"drop"`: drop it silently; the client was already warned, and answering
 *   every frame of a flood would amplify it.
 * - `"close"`: close the connection with 1008 (policy violation).
 */
export type FloodVerdict = "accept" | "warn" | "drop" | "close";

/**
 * A per-connection rate limit that escalates: a {@linkcode TokenBucket} plus
 * a count of consecutive refusals (`strikes`), reset by any accepted frame.
 *
 * @example
 * ```ts
 * import { FloodGuard } from "./connection.ts";
 * const guard = new FloodGuard(); // 10/s, burst 20, close after 10 strikes
 * switch (guard.check(performance.now())) {
 *   case "accept": break; // handle the frame
 *   case "warn": break; // reply with an error, drop the frame
 *   case "drop": break; // drop the frame
 *   case "close": break; // socket.close(1008, "rate limit exceeded")
 * }
 * ```
 */
export class FloodGuard {
  /** The rate limit. */
  readonly bucket: TokenBucket;
  /** Consecutive refusals that lead to `"close"`. */
  readonly maxStrikes: number;
  #strikes = 0;

  /** Creates a guard; throws a `RangeError` for a value <= 0. */
  constructor(options: FloodGuardOptions = {}) {
    this.bucket = new TokenBucket({
      ratePerSecond: options.ratePerSecond ?? DEFAULT_RATE_PER_SECOND,
      burst: options.burst ?? DEFAULT_BURST,
    });
    this.maxStrikes = options.maxStrikes ?? DEFAULT_MAX_STRIKES;
    checkPositive("maxStrikes", this.maxStrikes, true);
  }

  /** Consecutive refusals so far; 0 after an accepted frame. */
  get strikes(): number {
    return this.#strikes;
  }

  /** Decides about one frame arriving at `nowMs` (`performance.now()`). */
  check(nowMs: number): FloodVerdict {
    if (this.bucket.take(nowMs)) {
      this.#strikes = 0;
      return "accept";
    }
    this.#strikes++;
    if (this.#strikes >= this.maxStrikes) return "close";
    return this.#strikes === 1 ? "warn" : "drop";
  }
}

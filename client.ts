/**
 * One connected peer: the only writer to its socket, with a bounded outbox
 * that coalesces whatever is pending into one frame.
 *
 * A client knows nothing of hubs or rooms: when it ends, for whatever reason,
 * it tells its owner once, through `onEnd`.
 *
 * @module
 */

/**
 * Messages a client's outbox may hold: a turn's worth, or the backlog of a
 * socket that is backed up. Like
 * gorilla's `send` channel: a peer that falls this far behind is not coming
 * back, and waiting on it would let one reader hold memory for everyone.
 */
export const DEFAULT_MAX_QUEUE = 256;

/**
 * Bytes handed to the socket but not yet written out, above which the socket
 * counts as backed up. Deno raises `bufferedAmount` as soon as `send` is
 * called and lowers it only when the write completes (between turns), so it
 * means "backed up" only at a turn's end; 64 KiB still pending then is a few hundred
 * chat lines the kernel would not take.
 */
export const DEFAULT_HIGH_WATER_BYTES = 64 * 1024;

/**
 * How often a backed-up socket is looked at again. Deno has no "drain" event,
 * so a blocked client is polled; 10 ms keeps the wake-ups rare and the delay
 * well below what a person notices. A socket still backed up when looked at
 * again has had 10 ms to drain and did not: its peer has stopped reading.
 */
export const BLOCKED_RETRY_MS = 10;

/** Close code for a peer evicted because it stopped reading. */
export const CLOSE_SLOW_CONSUMER = 4008;

/** The part of a WebSocket a client writes to (a fake in unit tests). */
export interface ClientSocket {
  /** Bytes queued by `send` and not yet written out. */
  readonly bufferedAmount: number;
  /** Sends one text frame; never blocks. */
  send(data: string): void;
  /** Starts the closing handshake. */
  close(code?: number, reason?: string): void;
}

/** Why a client ended: the close code and reason, as seen by the server. */
export interface ClientEnd {
  /** The close code we sent, or the peer's (1005 when it gave none). */
  code: number;
  /** The close reason we sent, or the peer's. */
  reason: string;
  /** True when the server ended it (eviction, shutdown, bad input). */
  byServer: boolean;
}

/** Options for a {@linkcode Client}. */
export interface ClientOptions {
  /** The name this client chats under. */
  username: string;
  /** Its id (from {@linkcode newClientId}); default a new one. */
  id?: string;
  /** Shared turn-end flushing; clients of one process share one. */
  flusher: Flusher;
  /** Most messages the outbox holds before eviction. Default 256. */
  maxQueue?: number;
  /** `bufferedAmount` above which the socket counts as backed up. */
  highWaterBytes?: number;
  /** Called exactly once, when the client ends for any reason. */
  onEnd?: (client: Client, end: ClientEnd) => void;
}

/** Client ids given out by this process so far. */
let clientIds = 0;

/**
 * A client id unique within this process, ever: how rooms tell clients
 * apart, and with the node's id, how every node does.
 *
 * @example
 * ```ts
 * import { newClientId } from "./client.ts";
 * newClientId(); // "1", then "2", ...
 * ```
 */
export function newClientId(): string {
  return String(++clientIds);
}

/**
 * A connected peer.
 *
 * Invariants: one writer per socket (only this class calls `send`); frames
 * leave in the order messages were delivered; `onEnd` runs exactly once.
 *
 * @example
 * ```ts
 * import { Client, Flusher } from "./client.ts";
 * const flusher = new Flusher();
 * const socket = { bufferedAmount: 0, send() {}, close() {} };
 * const client = new Client(socket, { username: "alice", flusher });
 * client.deliver('{"type":"message","text":"hi"}');
 * flusher.stop();
 * ```
 */
export class Client {
  /** The name this client chats under. */
  readonly username: string;
  /** Unique among this process's clients, ever: how rooms tell them apart. */
  readonly id: string;
  #socket: ClientSocket;
  #flusher: Flusher;
  #maxQueue: number;
  #highWater: number;
  #onEnd?: (client: Client, end: ClientEnd) => void;
  /** Messages waiting for the end of the turn (or for the socket to drain). */
  #outbox: string[] = [];
  /** True while this client sits in the flusher's list. */
  #queued = false;
  /** Consecutive flushes that found the socket backed up. */
  #blockedFlushes = 0;
  #ended = false;

  /** Wraps a socket; the caller wires the socket's events to this client. */
  constructor(socket: ClientSocket, options: ClientOptions) {
    this.username = options.username;
    this.id = options.id ?? newClientId();
    this.#socket = socket;
    this.#flusher = options.flusher;
    this.#maxQueue = options.maxQueue ?? DEFAULT_MAX_QUEUE;
    this.#highWater = options.highWaterBytes ?? DEFAULT_HIGH_WATER_BYTES;
    this.#onEnd = options.onEnd;
  }

  /** True once the client has ended; it then drops whatever it is given. */
  get ended(): boolean {
    return this.#ended;
  }

  /** Messages waiting in the outbox. */
  get pending(): number {
    return this.#outbox.length;
  }

  /**
   * Hands one serialized message to this client. Never blocks: the message
   * waits in the outbox and leaves at the end of this event-loop turn, with
   * whatever else the turn brings, as one frame. Returns false, dropping
   * the message, if the client has ended.
   */
  deliver(message: string): boolean {
    if (this.#ended) return false;
    if (this.#outbox.push(message) > this.#maxQueue) this.#overflow();
    if (!this.#queued) {
      this.#queued = true;
      this.#flusher.add(this);
    }
    return true;
  }

  /**
   * Sends what the outbox holds as one frame if the socket can take it.
   * Returns false when the socket is still backed up (try again later).
   * Called by the {@linkcode Flusher}; `memo` lets clients with identical
   * pending batches share one joined string.
   */
  flush(memo: FrameMemo): boolean {
    if (this.#ended) return true;
    if (this.#outbox.length === 0) {
      this.#queued = false;
      return true;
    }
    if (this.#socket.bufferedAmount >= this.#highWater) {
      this.#blockedFlushes++;
      return false;
    }
    this.#blockedFlushes = 0;
    this.#queued = false;
    this.#sendOutbox(memo);
    return true;
  }

  /**
   * Closes the connection with a code and reason; ends the client. What
   * the outbox holds goes out first, unless the socket is backed up (an
   * evicted reader would not read it anyway).
   */
  close(code: number, reason: string): void {
    if (this.#ended) return;
    if (
      this.#outbox.length > 0 &&
      this.#socket.bufferedAmount < this.#highWater &&
      !this.#sendOutbox(this.#flusher.memo)
    ) return;
    try {
      this.#socket.close(code, reason);
    } catch {
      // Already closing or closed: ending is all that is left to do.
    }
    this.#end({ code, reason, byServer: true });
  }

  /** Tells the client its socket closed (Deno may say so twice). */
  socketClosed(code = 1005, reason = ""): void {
    this.#end({ code, reason, byServer: false });
  }

  /**
   * The outbox grew past its bound. A client seen backed up at two flushes
   * in a row (one retry interval apart) has stopped reading: evict it.
   * Anything else is a burst within a turn, which the socket takes as one
   * frame now; `bufferedAmount` cannot tell the two apart mid-turn.
   */
  #overflow(): void {
    if (this.#blockedFlushes < 2) {
      this.#sendOutbox(this.#flusher.memo);
      return;
    }
    this.#evictSlowClient();
  }

  /** Cuts off a peer that stopped reading, so it slows nobody else. */
  #evictSlowClient(): void {
    this.close(CLOSE_SLOW_CONSUMER, "slow consumer");
  }

  /**
   * Sends everything the outbox holds as one frame and empties it. Returns
   * false if the socket closed under us (the client has then ended).
   */
  #sendOutbox(memo: FrameMemo): boolean {
    const outbox = this.#outbox;
    this.#outbox = [];
    return this.#write(joinFrame(outbox, memo));
  }

  #write(frame: string): boolean {
    try {
      this.#socket.send(frame);
      return true;
    } catch {
      // The socket closed under us; its close event may not have run yet.
      this.#end({ code: 1006, reason: "send failed", byServer: false });
      return false;
    }
  }

  #end(end: ClientEnd): void {
    if (this.#ended) return;
    this.#ended = true;
    this.#outbox = [];
    this.#onEnd?.(this, end);
  }
}

/**
 * The last batch joined during one flush, so clients that were sent the same
 * messages share one string instead of each joining its own copy.
 */
export interface FrameMemo {
  /** The batch last joined, compared element by element (by identity). */
  batch: string[];
  /** That batch as one frame. */
  frame: string;
}

/**
 * Joins a batch into one frame's text, reusing the memo when the batch holds
 * the same messages as the one before it.
 *
 * @example
 * ```ts
 * import { joinFrame } from "./client.ts";
 * const memo = { batch: [], frame: "" };
 * joinFrame(["a", "b"], memo); // "a\nb"
 * ```
 */
export function joinFrame(batch: string[], memo: FrameMemo): string {
  if (batch.length === 1) return batch[0];
  const last = memo.batch;
  if (last.length === batch.length) {
    let same = true;
    for (let i = 0; i < batch.length; i++) {
      if (last[i] !== batch[i]) {
        same = false;
        break;
      }
    }
    if (same) return memo.frame;
  }
  memo.batch = batch;
  memo.frame = batch.join("\n");
  return memo.frame;
}

/**
 * Flushes pending client outboxes, each as one frame:
 *
 * - at the end of the current event-loop turn (`setImmediate`), every
 *   client that was handed messages during it, everything the turn brought
 *   as one frame. A quiet chat's lone message waits for nothing but the
 *   rest of its own turn: Deno's `send` hands the write to a task that runs
 *   only once JavaScript yields, so waiting for the turn's end costs no
 *   latency (measured), and under load a client costs one frame a turn;
 * - every {@linkcode BLOCKED_RETRY_MS}, backed-up clients, until they drain
 *   or overflow.
 *
 * One flusher serves every client of a process (or of a hub, in tests).
 *
 * @example
 * ```ts
 * import { Flusher } from "./client.ts";
 * const flusher = new Flusher();
 * // ... hand it to clients through their options ...
 * flusher.stop();
 * ```
 */
export class Flusher {
  /** Batches joined since the last flush, shared by identical outboxes. */
  memo: FrameMemo = { batch: [], frame: "" };
  #turn: Client[] = [];
  #blocked: Client[] = [];
  #turnTimer: ReturnType<typeof setImmediate> | undefined;
  #retryTimer: ReturnType<typeof setTimeout> | undefined;

  /** Schedules a client's flush at the end of this turn. */
  add(client: Client): void {
    this.#turn.push(client);
    this.#turnTimer ??= setImmediate(this.#flushTurn);
  }

  /** Clients waiting for their backed-up socket to drain. */
  get blockedCount(): number {
    return this.#blocked.length;
  }

  /** Cancels pending flushes (at shutdown); clients are closed by others. */
  stop(): void {
    if (this.#turnTimer !== undefined) clearImmediate(this.#turnTimer);
    clearTimeout(this.#retryTimer);
    this.#turnTimer = this.#retryTimer = undefined;
    this.#turn = [];
    this.#blocked = [];
  }

  #flushTurn = (): void => {
    this.#turnTimer = undefined;
    const clients = this.#turn;
    this.#turn = [];
    this.#flushAll(clients);
  };

  #retryBlocked = (): void => {
    this.#retryTimer = undefined;
    const clients = this.#blocked;
    this.#blocked = [];
    this.#flushAll(clients);
  };

  #flushAll(clients: Client[]): void {
    const memo = this.memo;
    for (const client of clients) {
      if (!client.flush(memo)) this.#blocked.push(client);
    }
    // Let the joined batches be collected once they are sent.
    this.memo = { batch: [], frame: "" };
    if (this.#blocked.length > 0) {
      this.#retryTimer ??= setTimeout(this.#retryBlocked, BLOCKED_RETRY_MS);
    }
  }
}

/**
 * The Hub: a set of clients and a broadcast that serializes once and fans
 * out. It knows no HTTP, no flags and no chat semantics; a room gives it
 * meaning.
 *
 * @module
 */

import { Client, Flusher } from "./client.ts";

/** Options for a {@linkcode Hub}. */
export interface HubOptions {
  /**
   * The turn-end flusher its clients use. Hubs of one process may share one;
   * a hub given none makes its own and stops it in `close`.
   */
  flusher?: Flusher;
  /**
   * Told of every broadcast once it reached every outbox: how many clients
   * got it, the message, and how long the fan-out took (for metrics).
   */
  onBroadcast?: (recipients: number, text: string, seconds: number) => void;
}

const decoder = new TextDecoder();

/** One send: to every client but `except`, or to `only` those. */
interface HubSend {
  text: string;
  except: Client | undefined;
  only: readonly Client[] | undefined;
}

/**
 * Broadcasts each message to every registered client.
 *
 * Invariants: `broadcast` never awaits and never blocks on a socket; every
 * client sees broadcasts in one global order, even when a broadcast causes
 * another (a client evicted mid-broadcast has its `leave` sent after the
 * message that evicted it, to everyone); register and unregister are safe
 * from any callback, re-entrantly too.
 *
 * @example
 * ```ts
 * import { Hub } from "./hub.ts";
 * import { Client } from "./client.ts";
 * const hub = new Hub();
 * const socket = { bufferedAmount: 0, send(text: string) {}, close() {} };
 * hub.register(new Client(socket, { username: "ann", flusher: hub.flusher }));
 * hub.broadcastJSON({ type: "message", text: "hi" });
 * hub.close(1001, "server shutting down");
 * ```
 */
export class Hub {
  /** The flusher clients of this hub are to be created with. */
  readonly flusher: Flusher;
  #ownsFlusher: boolean;
  #clients = new Set<Client>();
  /** Sends raised while one is under way, made in order after it. */
  #deferred: HubSend[] = [];
  #broadcasting = false;
  #onBroadcast?: (recipients: number, text: string, seconds: number) => void;

  /** Creates an empty hub. */
  constructor(options: HubOptions = {}) {
    this.#ownsFlusher = options.flusher === undefined;
    this.flusher = options.flusher ?? new Flusher();
    this.#onBroadcast = options.onBroadcast;
  }

  /** How many clients are registered. */
  get clientCount(): number {
    return this.#clients.size;
  }

  /** The registered clients, in registration order. */
  clients(): IterableIterator<Client> {
    return this.#clients.values();
  }

  /** Adds a client; returns false if it was already registered or ended. */
  register(client: Client): boolean {
    if (client.ended || this.#clients.has(client)) return false;
    this.#clients.add(client);
    return true;
  }

  /** Removes a client; returns false if it was not registered (idempotent). */
  unregister(client: Client): boolean {
    return this.#clients.delete(client);
  }

  /** Broadcasts text, or UTF-8 bytes decoded once, to every client. */
  broadcast(data: string | Uint8Array): void {
    this.broadcastText(typeof data === "string" ? data : decoder.decode(data));
  }

  /**
   * Broadcasts one already-serialized message to every client, or to every
   * client but `except` (its own typing, say).
   */
  broadcastText(text: string, except?: Client): void {
    this.#send(text, except, undefined);
  }

  /**
   * Sends one already-serialized message to the given clients only (a
   * direct message), in the same order as broadcasts and counted like one.
   */
  sendTo(text: string, recipients: readonly Client[]): void {
    this.#send(text, undefined, recipients);
  }

  #send(
    text: string,
    except: Client | undefined,
    only: readonly Client[] | undefined,
  ): void {
    if (this.#broadcasting) {
      this.#deferred.push({ text, except, only });
      return;
    }
    this.#broadcasting = true;
    try {
      this.#fanOut(text, except, only);
      // Sends raised by the fan-out above (a leave, say) go next.
      for (let i = 0; i < this.#deferred.length; i++) {
        const next = this.#deferred[i];
        this.#fanOut(next.text, next.except, next.only);
      }
    } finally {
      this.#deferred.length = 0;
      this.#broadcasting = false;
    }
  }

  #fanOut(
    text: string,
    except: Client | undefined,
    only: readonly Client[] | undefined,
  ): void {
    const observe = this.#onBroadcast;
    const started = observe === undefined ? 0 : performance.now();
    let recipients = 0;
    // Two loops, not one over `only ?? clients`: the broadcast loop stays
    // on the Set alone, which keeps it monomorphic and fast.
    if (only === undefined) {
      for (const client of this.#clients) {
        if (client !== except && client.deliver(text)) recipients++;
      }
    } else {
      for (const client of only) if (client.deliver(text)) recipients++;
    }
    observe?.(recipients, text, (performance.now() - started) / 1000);
  }

  /** Serializes a value once, then broadcasts it to every client. */
  broadcastJSON(value: unknown): void {
    this.broadcastText(JSON.stringify(value));
  }

  /**
   * Closes every client with a code and reason and forgets them. The hub
   * can take new clients afterwards; its own flusher is stopped.
   */
  close(code: number, reason: string): void {
    const clients = [...this.#clients];
    this.#clients.clear();
    for (const client of clients) client.close(code, reason);
    if (this.#ownsFlusher) this.flusher.stop();
  }
}

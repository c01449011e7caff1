/**
 * Driving many chat clients, as the load and soak tools both do: the
 * connect phase (a bounded number of handshakes at a time, the whole phase
 * bounded in time), one client from its handshake to its welcome, the
 * open-loop send schedule, and the wait for in-flight messages. Every wait
 * here has a bound.
 *
 * @module
 */

import { count } from "./stats.ts";
import { sleep, withTimeout } from "./wait.ts";
import { handshake, RawClient, type TextHandler } from "./ws_client.ts";

/**
 * The whole connect phase's cap is this base plus {@linkcode
 * CONNECT_CAP_PER_CLIENT_S} per client: each join is broadcast to everyone,
 * so connecting N clients costs the server O(N²) deliveries.
 */
export const CONNECT_CAP_BASE_S = 30;

/** See {@linkcode CONNECT_CAP_BASE_S}: 10,000 clients get 30 + 50 s. */
export const CONNECT_CAP_PER_CLIENT_S = 0.005;

/** How long closing all client sockets may take before we stop waiting. */
export const CLOSE_CAP_MS = 5_000;

/**
 * Open loop: a send more than 10 ms (or one interval, if longer) late is
 * skipped, not sent in a burst.
 */
export const OPEN_LOOP_MAX_BURST_MS = 10;

/** Drain completion is checked this often. */
export const DRAIN_POLL_MS = 20;

/** The longest one wake-up of the open loop sleeps: it notices a stop. */
const OPEN_LOOP_MAX_SLEEP_MS = 1000;

/** Connect errors are counted by their message, cut to this length. */
const MAX_ERROR_CHARS = 120;

/**
 * Seconds the connect phase of `clients` clients may take at the most.
 *
 * @example
 * ```ts
 * import { connectCapSeconds } from "./fleet.ts";
 * connectCapSeconds(10_000); // 80
 * ```
 */
export function connectCapSeconds(clients: number): number {
  return CONNECT_CAP_BASE_S + clients * CONNECT_CAP_PER_CLIENT_S;
}

/** Options of {@linkcode connectAll}. */
export interface ConnectAllOptions {
  /** Handshakes in progress at once. */
  concurrency: number;
  /** Connects client `i`, giving up by `deadline` (a `performance.now()`). */
  connect(i: number, deadline: number): Promise<unknown>;
  /** Where "connect phase cap reached" is counted, once a client not tried. */
  errors: Record<string, number>;
  /** When it returns true, no more clients are tried. */
  stopped?: () => boolean;
}

/**
 * Connects clients `0 .. clients-1`, `concurrency` at a time, within
 * {@linkcode connectCapSeconds}: a client whose turn comes after the cap is
 * not tried but counted in `errors`.
 *
 * @example
 * ```ts
 * import { connectAll } from "./fleet.ts";
 * const errors: Record<string, number> = {};
 * await connectAll(3, { concurrency: 2, connect: () => Promise.resolve(), errors });
 * ```
 */
export async function connectAll(
  clients: number,
  options: ConnectAllOptions,
): Promise<void> {
  const deadline = performance.now() + connectCapSeconds(clients) * 1000;
  let next = 0;
  async function worker(): Promise<void> {
    while (next < clients && !(options.stopped?.() ?? false)) {
      const i = next++;
      if (performance.now() >= deadline) {
        count(options.errors, "connect phase cap reached");
        continue;
      }
      await options.connect(i, deadline);
    }
  }
  await Promise.all(
    Array.from({ length: Math.min(options.concurrency, clients) }, worker),
  );
}

/** Options of {@linkcode openChatClient}. */
export interface OpenOptions {
  /** Milliseconds the handshake and the welcome may take together. */
  timeoutMs: number;
  /** The client's read buffer (see `readBufferSize`). */
  bufferSize: number;
  /** Each text frame the client receives. */
  onText: TextHandler;
  /** Runs once when the connection is over. */
  onEnd(): void;
  /**
   * Resolved with true by the caller's `onText` when the welcome line
   * arrives; the connection's end resolves it with false.
   */
  welcome: PromiseWithResolvers<boolean>;
}

/** A client past its handshake, or why there is none. */
export interface OpenedClient {
  /** The client, or null when the handshake failed. */
  client: RawClient | null;
  /**
   * Why the client is not usable (the handshake's error, no welcome in
   * time, closed before or with its welcome), or null once welcomed.
   */
  problem: string | null;
}

/**
 * Opens one chat client as `username`: the handshake, then the welcome,
 * both within `timeoutMs`. A client that got no welcome is returned with
 * its problem, still open: closing it is the caller's.
 *
 * @example
 * ```ts
 * import { openChatClient } from "./fleet.ts";
 * const welcome = Promise.withResolvers<boolean>();
 * const { client, problem } = await openChatClient("ws://127.0.0.1:8080/ws", "ann", {
 *   timeoutMs: 10_000,
 *   bufferSize: 65_536,
 *   onText: () => welcome.resolve(true), // a real caller looks for the welcome
 *   onEnd: () => {},
 *   welcome,
 * });
 * if (problem !== null) console.log(problem);
 * await client?.close(5_000);
 * ```
 */
export async function openChatClient(
  url: string,
  username: string,
  options: OpenOptions,
): Promise<OpenedClient> {
  const started = performance.now();
  let shake;
  try {
    shake = await handshake(url, username, options.timeoutMs);
  } catch (error) {
    return {
      client: null,
      problem: (error as Error).message.slice(0, MAX_ERROR_CHARS),
    };
  }
  const client = new RawClient(shake, {
    onText: options.onText,
    onEnd() {
      options.welcome.resolve(false);
      options.onEnd();
    },
    bufferSize: options.bufferSize,
  });
  const left = Math.max(1, options.timeoutMs - (performance.now() - started));
  const ok = await withTimeout(options.welcome.promise, left, null);
  if (ok === true && !client.ended) return { client, problem: null };
  return {
    client,
    problem: ok === null
      ? "timeout waiting for welcome"
      : `closed before welcome (code ${client.serverCloseCode ?? "none"})`,
  };
}

/** Options of {@linkcode sendOpenLoop}. */
export interface OpenLoopOptions {
  /** Senders, taken in turn: `send` gets 0, 1, ..., senders-1, 0, ... */
  senders: number;
  /** Aborting it ends the loop. */
  signal: AbortSignal;
  /** Called with the number of sends skipped because they were late. */
  onSkip(skipped: number): void;
}

/**
 * Sends on an open-loop schedule until `signal` aborts: message k is due
 * k / `perSecond` seconds after the start, and each wake-up calls `send`
 * once for every message due, round robin over the senders. A send later
 * than {@linkcode OPEN_LOOP_MAX_BURST_MS} (or one interval, if longer) is
 * skipped and counted, never sent in a catch-up burst.
 *
 * @example
 * ```ts
 * import { sendOpenLoop } from "./fleet.ts";
 * const stop = new AbortController();
 * setTimeout(() => stop.abort(), 50);
 * let sent = 0;
 * await sendOpenLoop(1000, () => sent++, {
 *   senders: 2,
 *   signal: stop.signal,
 *   onSkip: () => {},
 * });
 * ```
 */
export async function sendOpenLoop(
  perSecond: number,
  send: (sender: number) => void,
  options: OpenLoopOptions,
): Promise<void> {
  const perMs = perSecond / 1000;
  // Late by up to one interval is jitter, not a burst.
  const lateCap = Math.max(OPEN_LOOP_MAX_BURST_MS, 1 / perMs);
  const t0 = performance.now();
  let next = 0;
  let sender = 0;
  while (!options.signal.aborted) {
    const nowMs = performance.now() - t0;
    const due = Math.floor(nowMs * perMs) + 1;
    const onTime = Math.ceil((nowMs - lateCap) * perMs);
    if (onTime > next) {
      options.onSkip(Math.min(due, onTime) - next);
      next = Math.min(due, onTime);
    }
    for (; next < due; next++) {
      send(sender);
      sender = (sender + 1) % options.senders;
    }
    const wait = next / perMs - (performance.now() - t0);
    await sleep(Math.min(OPEN_LOOP_MAX_SLEEP_MS, wait), options.signal);
  }
}

/**
 * Waits until `done()` holds or `ms` milliseconds have passed, checking
 * every {@linkcode DRAIN_POLL_MS}: the drain after sending stops.
 *
 * @example
 * ```ts
 * import { drain } from "./fleet.ts";
 * const until = performance.now() + 30;
 * await drain(() => performance.now() >= until, 5_000);
 * ```
 */
export async function drain(done: () => boolean, ms: number): Promise<void> {
  const deadline = performance.now() + ms;
  while (performance.now() < deadline) {
    if (done()) return;
    await sleep(DRAIN_POLL_MS);
  }
}

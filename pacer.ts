/**
 * Upgrades paced by the event loop ({@linkcode UpgradePacer}): one (or a
 * few) start admission in one turn, the rest wait their turn in order of
 * arrival. A join storm then costs the chat already going on one upgrade's
 * work per turn, not a thousand's in one turn while every line waits
 * behind them.
 *
 * It knows no HTTP: admission.ts turns what it says into refusals.
 *
 * @module
 */

/**
 * Upgrades that may start admission in one event-loop turn: one. An
 * upgrade's admission, handshake, welcome and join cost the turn that runs
 * them, and every chat line of that turn waits for its end. Measured on a
 * 2-core VM (server pinned to one core), 1,000 clients joining at once
 * while 100 others chat at 1,000 lines/s (100,000 deliveries/s), median
 * p99 of the chat over 7 runs each, alternating: 2.7 ms with no joins,
 * 12 ms at 1 a turn, 16 ms at 2, 19 ms at 4, 63–111 ms unpaced. At 1 the
 * crowd was still in within 0.6–0.9 s (0.3–0.5 s unpaced), and 10,000 idle
 * clients within 2.1 s against 1.9 s at 4 a turn or unpaced.
 */
export const UPGRADES_PER_TURN = 1;

/**
 * Upgrades that may wait for their turn at once; past it, 503. A waiting
 * upgrade holds a socket and a parsed request (a few KiB); 10,000 is a
 * full server's worth of reconnects after a restart (the default
 * `--max-connections`), and at the 4,000 to 5,000 admissions a second an
 * otherwise idle server makes (measured), they are all in within 2 to 3 s.
 * More would only wait longer than a client is willing to.
 */
export const MAX_WAITING_UPGRADES = 10_000;

/**
 * What {@linkcode UpgradePacer.take} says:
 *
 * - `"go"`: its turn; start admission now;
 * - `"full"`: {@linkcode UpgradePacer.maxWaiting} upgrades wait already;
 * - `"full_key"`: as many from this key (address) wait as it may have;
 * - `"gone"`: the peer left (its signal aborted) before its turn;
 * - `"closed"`: the pacer was closed (the server is stopping).
 */
export type Pace = "go" | "full" | "full_key" | "gone" | "closed";

/**
 * Runs `turn` at the end of this event-loop turn and returns what cancels
 * it; the default is `setImmediate`. Tests pass their own to step turns.
 */
export type TurnScheduler = (turn: () => void) => () => void;

/** Options for {@linkcode UpgradePacer}; every field has a default. */
export interface PacerOptions {
  /** Upgrades that may start in one turn. Default 1. */
  perTurn?: number;
  /** Upgrades that may wait at once. Default 10,000. */
  maxWaiting?: number;
  /** Upgrades that may wait at once per key (address). Default: no cap. */
  maxWaitingPerKey?: number;
  /** How the next turn is scheduled. Default: `setImmediate`. */
  schedule?: TurnScheduler;
}

/** One upgrade waiting for its turn. */
interface Waiter {
  key: string;
  settle: (pace: Pace) => void;
  signal: AbortSignal | undefined;
  onAbort: () => void;
}

/** The end of this event-loop turn, through `setImmediate`. */
function atTurnEnd(turn: () => void): () => void {
  const immediate = setImmediate(turn);
  return () => clearImmediate(immediate);
}

/** A limit: a whole number >= `least`, or Infinity. */
function whole(name: string, value: number, least: number): number {
  if (value === Infinity || (Number.isInteger(value) && value >= least)) {
    return value;
  }
  throw new RangeError(
    `${name} is ${value}; expected a whole number >= ${least}`,
  );
}

/**
 * Lets at most `perTurn` upgrades start admission per event-loop turn; the
 * others wait, first come first served, and start on later turns, up to
 * `perTurn` a turn. One server owns one pacer and closes it when it stops:
 * whoever still waits is told `"closed"`, and nothing stays scheduled.
 *
 * A turn here is the time between two runs of the scheduler (the
 * `setImmediate` phase): the first `perTurn` upgrades of a turn go at once,
 * without waiting, as long as nobody waits before them.
 *
 * @example
 * ```ts
 * import { UpgradePacer } from "./pacer.ts";
 * const pacer = new UpgradePacer({ maxWaitingPerKey: 20 });
 * const controller = new AbortController(); // a request's signal
 * const pace = await pacer.take("192.0.2.7", controller.signal);
 * if (pace === "go") {
 *   // admit and upgrade
 * }
 * pacer.close();
 * ```
 */
export class UpgradePacer {
  /** Upgrades that may start in one turn. */
  readonly perTurn: number;
  /** Upgrades that may wait at once. */
  readonly maxWaiting: number;
  /** Upgrades that may wait at once per key (`Infinity`: no cap). */
  readonly maxWaitingPerKey: number;
  #schedule: TurnScheduler;
  /** Upgrades started in this turn. */
  #started = 0;
  /** Waiting upgrades; a Set keeps insertion order and deletes in O(1). */
  #waiting = new Set<Waiter>();
  /** Waiting upgrades per key; keys with none are deleted. */
  #perKey = new Map<string, number>();
  /** Cancels the scheduled turn's end; undefined when none is scheduled. */
  #cancelTurn: (() => void) | undefined;
  #closed = false;

  /** Creates a pacer; throws a `RangeError` for a limit that is not one. */
  constructor(options: PacerOptions = {}) {
    const {
      perTurn = UPGRADES_PER_TURN,
      maxWaiting = MAX_WAITING_UPGRADES,
      maxWaitingPerKey = Infinity,
      schedule = atTurnEnd,
    } = options;
    this.perTurn = whole("perTurn", perTurn, 1);
    this.maxWaiting = whole("maxWaiting", maxWaiting, 0);
    this.maxWaitingPerKey = whole("maxWaitingPerKey", maxWaitingPerKey, 0);
    this.#schedule = schedule;
  }

  /** Upgrades waiting for their turn now. */
  get waiting(): number {
    return this.#waiting.size;
  }

  /** Upgrades from `key` waiting for their turn now. */
  waitingFor(key: string): number {
    return this.#perKey.get(key) ?? 0;
  }

  /**
   * What {@linkcode UpgradePacer.take} would refuse at once for `key` now,
   * taking nothing: null when it would go now or wait for a turn. A dry
   * run asks this, so that it answers as the upgrade would.
   */
  refusalFor(key: string): "closed" | "full" | "full_key" | null {
    if (this.#closed) return "closed";
    if (this.#waiting.size === 0 && this.#started < this.perTurn) return null;
    if (this.#waiting.size >= this.maxWaiting) return "full";
    if (this.waitingFor(key) >= this.maxWaitingPerKey) return "full_key";
    return null;
  }

  /**
   * Takes a turn for an upgrade from `key`: `"go"` at once while this turn
   * has room and nobody waits, else `"go"` on a later turn, in order of
   * arrival. Refuses at once (`"full"`, `"full_key"`) rather than wait
   * past the caps. A waiter whose `signal` aborts leaves the line with
   * `"gone"` and takes no turn.
   */
  take(key: string, signal?: AbortSignal): Pace | Promise<Pace> {
    const refusal = this.refusalFor(key);
    if (refusal === "closed") return refusal;
    if (signal?.aborted) return "gone";
    if (refusal !== null) return refusal;
    if (this.#waiting.size === 0 && this.#started < this.perTurn) {
      this.#started++;
      this.#scheduleTurn();
      return "go";
    }
    const held = this.#perKey.get(key) ?? 0;
    const { promise, resolve } = Promise.withResolvers<Pace>();
    const waiter: Waiter = {
      key,
      signal,
      settle: resolve,
      onAbort: () => this.#leave(waiter, "gone"),
    };
    signal?.addEventListener("abort", waiter.onAbort, { once: true });
    this.#waiting.add(waiter);
    this.#perKey.set(key, held + 1);
    this.#scheduleTurn();
    return promise;
  }

  /**
   * Stops pacing: every waiting upgrade is told `"closed"`, at once, and
   * so is every later one; the scheduled turn is cancelled. Idempotent.
   */
  close(): void {
    this.#closed = true;
    this.#cancelTurn?.();
    this.#cancelTurn = undefined;
    for (const waiter of this.#waiting) this.#leave(waiter, "closed");
  }

  #scheduleTurn(): void {
    this.#cancelTurn ??= this.#schedule(this.#nextTurn);
  }

  /** A new turn: the first `perTurn` waiters go. */
  #nextTurn = (): void => {
    this.#cancelTurn = undefined;
    this.#started = 0;
    for (const waiter of this.#waiting) {
      if (this.#started === this.perTurn) break;
      this.#started++;
      this.#leave(waiter, "go");
    }
    // This turn's count is to be reset too, even if nobody waits now.
    if (this.#started > 0) this.#scheduleTurn();
  };

  /** Takes a waiter out of the line and tells it why. */
  #leave(waiter: Waiter, pace: Pace): void {
    if (!this.#waiting.delete(waiter)) return;
    waiter.signal?.removeEventListener("abort", waiter.onAbort);
    const held = this.#perKey.get(waiter.key)!;
    if (held <= 1) this.#perKey.delete(waiter.key);
    else this.#perKey.set(waiter.key, held - 1);
    waiter.settle(pace);
  }
}

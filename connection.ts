/**
 * One connection's read side: what a peer may send. A frame is checked for
 * size and rate before anything is parsed; the per-connection rate limit
 * escalates from a warning to dropping frames to closing the connection.
 *
 * The rate rules are pure and timer-free: time is passed in, so every rule
 * is testable without sockets or clocks.
 *
 * @module
 */

/**
 * Largest frame a client may send, in bytes. A chat line is at most 2000
 * characters (up to 8000 bytes of UTF-8 in the worst case, usually far less)
 * plus a little JSON; anything bigger is not chat.
 */
export const DEFAULT_MAX_FRAME_BYTES = 8 * 1024;

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
   * Takes one token if there is one. `nowMs` is a monotonic clock in
   * milliseconds (`performance.now()`); a clock that goes back refills
   * nothing.
   */
  take(nowMs: number): boolean {
    this.#refill(nowMs);
    if (this.#tokens < 1) return false;
    this.#tokens -= 1;
    return true;
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

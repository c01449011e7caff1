/**
 * Bounded waits for the tests, built on the repository's one sleep and one
 * timeout (tools/wait.ts): each names what it awaited, so a timeout says
 * what never came.
 *
 * Every wait here is bounded and clears its timer, and every socket the
 * testing helpers open is closed by its owner's `close`, so tests that use
 * them pass Deno's sanitizers.
 *
 * @module
 */

import { sleep, withTimeout } from "../tools/wait.ts";

/**
 * Default bound on one wait, in milliseconds: generous (a loaded 2-core
 * machine answers within it), and never asserted.
 *
 * @example
 * ```ts
 * import { WAIT_MS, within } from "./wait.ts";
 * await within(Promise.resolve(), "nothing", WAIT_MS * 2);
 * ```
 */
export const WAIT_MS = 5000;

/**
 * How often {@linkcode waitUntil} checks, in milliseconds: often enough
 * that a test waits little past the moment, rarely enough to cost nothing.
 */
const POLL_MS = 10;

/** What tools/wait.ts's withTimeout resolves with when time ran out. */
const TIMED_OUT: unique symbol = Symbol("timed out");

/**
 * Waits for a promise, or rejects after `ms` milliseconds saying what was
 * awaited ("timed out after 100 ms waiting for one"). The timer is cleared
 * either way; the promise itself is not cancelled.
 *
 * @example
 * ```ts
 * import { within } from "./wait.ts";
 * await within(Promise.resolve(1), "one", 100);
 * ```
 */
export async function within<T>(
  promise: Promise<T>,
  what: string,
  ms: number = WAIT_MS,
): Promise<T> {
  const result = await withTimeout(promise, ms, TIMED_OUT);
  if (result === TIMED_OUT) {
    throw new Error(`timed out after ${ms} ms waiting for ${what}`);
  }
  return result;
}

/**
 * Polls `check` every 10 ms until it holds, or rejects after `ms` saying
 * what it waited for.
 *
 * @example
 * ```ts
 * import { waitUntil } from "./wait.ts";
 * await waitUntil(() => true, "truth");
 * ```
 */
export async function waitUntil(
  check: () => boolean | Promise<boolean>,
  what: string,
  ms: number = WAIT_MS,
): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${ms} ms waiting until ${what}`);
    }
    await sleep(POLL_MS);
  }
}

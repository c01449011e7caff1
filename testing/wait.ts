/**
 * Bounded waits for the tests: each names what it awaited, so a timeout
 * says what never came.
 *
 * Every wait here is bounded and clears its timer, and every socket the
 * testing helpers open is closed by its owner's `close`, so tests that use
 * them pass Deno's sanitizers.
 *
 * @module
 */

/** Default bound on one wait, in milliseconds: generous, never asserted. */
export const WAIT_MS = 5000;

/**
 * Waits for a promise, or rejects after `ms` milliseconds saying what was
 * awaited. The timer is cleared either way.
 *
 * @example
 * ```ts
 * import { withTimeout } from "./wait.ts";
 * await withTimeout(Promise.resolve(1), "one", 100);
 * ```
 */
export function withTimeout<T>(
  promise: Promise<T>,
  what: string,
  ms: number = WAIT_MS,
): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const expired = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      reject(new Error(`timed out after ${ms} ms waiting for ${what}`));
    }, ms);
  });
  return Promise.race([promise, expired]).finally(() => clearTimeout(timer));
}

/** Resolves after `ms` milliseconds (its timer always completes). */
export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * Polls `check` every 10 ms until it holds, or rejects after `ms`.
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
    await sleep(10);
  }
}

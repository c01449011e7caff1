/**
 * Waiting with a bound: one sleep and one timeout for the tools and the
 * tests, so no wait in the repository can hang or leave a timer behind.
 *
 * @module
 */

/**
 * Resolves after `ms` milliseconds, or as soon as `signal` aborts; the timer
 * is cleared either way. Even a wait of 0 goes through the timer queue, so a
 * loop that sleeps yields to I/O.
 *
 * @example
 * ```ts
 * import { sleep } from "./wait.ts";
 * await sleep(10);
 * ```
 */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) {
      resolve();
      return;
    }
    const timer = setTimeout(done, Math.max(0, ms));
    function done(): void {
      clearTimeout(timer);
      signal?.removeEventListener("abort", done);
      resolve();
    }
    signal?.addEventListener("abort", done, { once: true });
  });
}

/**
 * Resolves with the promise's value, or with `fallback` once `ms`
 * milliseconds have passed; the timer is cleared either way. The promise
 * itself is not cancelled: the caller decides what a timeout means.
 *
 * @example
 * ```ts
 * import { withTimeout } from "./wait.ts";
 * await withTimeout(new Promise<number>(() => {}), 10, -1); // -1
 * ```
 */
export async function withTimeout<T, F>(
  promise: Promise<T>,
  ms: number,
  fallback: F,
): Promise<T | F> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const expired = new Promise<F>((resolve) => {
    timer = setTimeout(() => resolve(fallback), Math.max(0, ms));
  });
  try {
    return await Promise.race([promise, expired]);
  } finally {
    clearTimeout(timer);
  }
}

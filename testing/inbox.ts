/**
 * A queue of things received (messages, output lines), read in order with
 * bounded waits.
 *
 * @module
 */

import { WAIT_MS, within } from "./wait.ts";

/** One pending `next` of an {@linkcode Inbox}. */
interface Waiter<T> {
  resolve(item: T): void;
  reject(error: Error): void;
}

/**
 * A queue of things received, read in order with bounded waits. Once ended,
 * reads past the last item reject at once with the end's reason.
 *
 * @example
 * ```ts
 * import { Inbox } from "./inbox.ts";
 * const inbox = new Inbox<string>();
 * inbox.push("one");
 * await inbox.next("the first line", 100); // "one"
 * ```
 */
export class Inbox<T> {
  #items: T[] = [];
  #head = 0;
  #waiters: Waiter<T>[] = [];
  #end: Error | undefined;

  /** Items received and not yet read. */
  get size(): number {
    return this.#items.length - this.#head;
  }

  /** True once `end` was called. */
  get ended(): boolean {
    return this.#end !== undefined;
  }

  /** Adds an item, handing it to the oldest waiting reader if any. */
  push(item: T): void {
    const waiter = this.#waiters.shift();
    if (waiter) {
      waiter.resolve(item);
      return;
    }
    this.#items.push(item);
  }

  /** Marks the end of input: waiting and later readers get `reason`. */
  end(reason: Error): void {
    if (this.#end) return;
    this.#end = reason;
    for (const waiter of this.#waiters.splice(0)) waiter.reject(reason);
  }

  /** Takes every item received so far. */
  drain(): T[] {
    const items = this.#items.slice(this.#head);
    this.#items = [];
    this.#head = 0;
    return items;
  }

  /** The next item, waiting at most `ms` for it. */
  next(what = "the next item", ms: number = WAIT_MS): Promise<T> {
    if (this.#head < this.#items.length) {
      const item = this.#items[this.#head++];
      if (this.#head > 1024 && this.#head * 2 > this.#items.length) {
        this.#items = this.#items.slice(this.#head);
        this.#head = 0;
      }
      return Promise.resolve(item);
    }
    if (this.#end) return Promise.reject(this.#end);
    let waiter: Waiter<T> | undefined;
    const arrived = new Promise<T>((resolve, reject) => {
      waiter = { resolve, reject };
      this.#waiters.push(waiter);
    });
    return within(arrived, what, ms).catch((error: Error) => {
      // Timed out: the next item goes to the next reader instead.
      const index = this.#waiters.indexOf(waiter!);
      if (index >= 0) this.#waiters.splice(index, 1);
      throw error;
    });
  }
}

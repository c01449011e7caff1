/**
 * Who is in a room, and how the room tells its members: one by one in a
 * small room, as a count in a large one.
 *
 * If every member heard of every other member's arrival, N arrivals would
 * cost N² notices however they were packed, and every `welcome` would carry
 * N names. So past a size a room stops announcing joins and leaves: its
 * members get the count (at most about once a second, only when it
 * changed) and ask for the member list a page at a time, in name order.
 * A room turns large when it has more than `largeRoom` members and small
 * again only at half that, so a room hovering at the threshold does not
 * flip back and forth.
 *
 * This module is pure: it keeps the member set and decides, for each change,
 * what the room must send; the room sends it.
 *
 * @module
 */

import { MEMBERS_PAGE_SIZE } from "./protocol.ts";

/**
 * Members above which a room is large. A hundred names fit in one welcome
 * and a hundred joins cost a room ten thousand small notices, which is
 * nothing; ten thousand would cost a hundred million.
 */
export const DEFAULT_LARGE_ROOM = 100;

/**
 * How often a large room's count and its sorted member list are brought up
 * to date, at most: often enough that a person sees the count move, rarely
 * enough that a flood of arrivals costs one message a second.
 */
export const PRESENCE_INTERVAL_MS = 1000;

/** What a room sends for one arrival or departure. */
export type PresenceChange =
  /** Small room: announce it (`join` or `leave`, with the count). */
  | "announce"
  /** The room just turned large: send the count and `large: true` now. */
  | "turned_large"
  /** The room just turned small: send the count and every name now. */
  | "turned_small"
  /** Large room: the count changed; send it within the interval. */
  | "count";

/** A page of the member list. */
export interface MembersPage {
  /** Names in code point order. */
  users: string[];
  /** The last name of this page when more follow, else null. */
  next: string | null;
}

/** Options for {@linkcode Presence}. */
export interface PresenceOptions {
  /** Members above which the room is large. Default 100. */
  largeRoom?: number;
}

/**
 * The members of one room, in joining order, with its mode.
 *
 * Invariant: the room is large exactly when it went past `largeRoom`
 * members and has not since come down to half of that.
 *
 * @example
 * ```ts
 * import { Presence } from "./presence.ts";
 * const presence = new Presence({ largeRoom: 2 });
 * presence.add("ann"); // "announce"
 * presence.add("bob"); // "announce"
 * presence.add("cy"); // "turned_large"
 * presence.page(undefined, 2); // { users: ["ann", "bob"], next: "bob" }
 * ```
 */
export class Presence {
  /** Members above which the room is large. */
  readonly largeRoom: number;
  /** Each member's name and the owner holding it, in joining order. */
  #members = new Map<string, string>();
  #large = false;
  /** The members in name order; null when it must be sorted again. */
  #sorted: string[] | null = [];
  /** True when a large room's members changed since its last tick. */
  #changed = false;
  /** The count members of a large room were last told. */
  #toldOnline = 0;

  /** Creates an empty, small room's presence. */
  constructor(options: PresenceOptions = {}) {
    this.largeRoom = options.largeRoom ?? DEFAULT_LARGE_ROOM;
    if (!Number.isInteger(this.largeRoom) || this.largeRoom < 1) {
      throw new RangeError(
        `largeRoom is ${this.largeRoom}; expected a whole number of at least 1`,
      );
    }
  }

  /** Members now. */
  get online(): number {
    return this.#members.size;
  }

  /** True while joins and leaves are not announced one by one. */
  get large(): boolean {
    return this.#large;
  }

  /** True when the name is a member. */
  has(username: string): boolean {
    return this.#members.has(username);
  }

  /** Every member, in joining order. */
  all(): string[] {
    return [...this.#members.keys()];
  }

  /** The owner holding a name, or undefined when nobody does. */
  ownerOf(username: string): string | undefined {
    return this.#members.get(username);
  }

  /**
   * Adds a member held by `owner` and says what the room must send. A name
   * already held by another owner (a takeover whose join overtook the old
   * connection's leave) changes hands silently: null, nothing to send.
   */
  add(username: string, owner = ""): PresenceChange | null {
    const held = this.#members.get(username);
    this.#members.set(username, owner);
    if (held !== undefined) return null;
    if (!this.#large && this.#members.size > this.largeRoom) {
      this.#large = true;
      return this.#told("turned_large");
    }
    return this.#changedBy("announce");
  }

  /**
   * Removes a member and says what the room must send; null, changing
   * nothing, when the name is not held by `owner` (any more).
   */
  remove(username: string, owner = ""): PresenceChange | null {
    if (this.#members.get(username) !== owner) return null;
    this.#members.delete(username);
    if (this.#large && this.#members.size <= this.largeRoom / 2) {
      this.#large = false;
      return this.#told("turned_small");
    }
    return this.#changedBy("announce");
  }

  /**
   * A large room's periodic update (every {@linkcode PRESENCE_INTERVAL_MS}
   * while {@linkcode Presence.changed}): the member list is sorted afresh
   * on the next page asked for, and the count to send is returned, or null
   * when the members were last told this very count.
   */
  tick(): number | null {
    this.#changed = false;
    this.#sorted = null;
    if (!this.#large || this.#members.size === this.#toldOnline) return null;
    this.#toldOnline = this.#members.size;
    return this.#toldOnline;
  }

  /** True when a large room's members changed since its last tick. */
  get changed(): boolean {
    return this.#changed;
  }

  /** A change in a small room (announced now) or a large one (later). */
  #changedBy(small: "announce"): PresenceChange {
    if (!this.#large) {
      this.#sorted = null;
      return small;
    }
    this.#changed = true;
    return "count";
  }

  /** The room changed mode; members are told the count with it, now. */
  #told<T extends PresenceChange>(change: T): T {
    this.#sorted = null;
    this.#changed = false;
    this.#toldOnline = this.#members.size;
    return change;
  }

  /**
   * The names a welcome carries: every member in joining order in a small
   * room, the first page in name order in a large one.
   */
  welcomeUsers(): string[] {
    return this.#large ? this.page(undefined).users : this.all();
  }

  /**
   * The members after `after` in code point order, at most `limit` of them
   * (default and most: {@linkcode MEMBERS_PAGE_SIZE}). In a large room the
   * list is as of its last {@linkcode Presence.tick}, at most
   * {@linkcode PRESENCE_INTERVAL_MS} old, so paging costs a sort a second,
   * not one per request.
   */
  page(after: string | undefined, limit = MEMBERS_PAGE_SIZE): MembersPage {
    const sorted = this.#sortedMembers();
    let start = 0;
    if (after !== undefined) {
      // The first name greater than `after`: binary search.
      let high = sorted.length;
      while (start < high) {
        const mid = (start + high) >>> 1;
        if (compareCodePoints(sorted[mid], after) <= 0) start = mid + 1;
        else high = mid;
      }
    }
    const size = Math.min(Math.max(1, limit), MEMBERS_PAGE_SIZE);
    const users = sorted.slice(start, start + size);
    const more = start + size < sorted.length;
    return { users, next: more ? users[users.length - 1] : null };
  }

  #sortedMembers(): string[] {
    // A small room sorts again after every change: at most largeRoom
    // names. A large one keeps its sort until the next tick, so a list at
    // most a second old is the price of not sorting ten thousand names per
    // request.
    this.#sorted ??= [...this.#members.keys()].sort(compareCodePoints);
    return this.#sorted;
  }
}

/**
 * Orders strings by code point, as UTF-8 bytes sort (no locale). JavaScript's
 * own `<` compares UTF-16 units, which puts a letter beyond U+FFFF before
 * one in U+E000..U+FFFF.
 *
 * @example
 * ```ts
 * import { compareCodePoints } from "./presence.ts";
 * ["b", "\u{1D49C}", "\uFF21", "a"].sort(compareCodePoints);
 * // ["a", "b", "\uFF21", "\u{1D49C}"]
 * ```
 */
export function compareCodePoints(a: string, b: string): number {
  const length = Math.min(a.length, b.length);
  for (let i = 0; i < length; i++) {
    const x = a.charCodeAt(i);
    const y = b.charCodeAt(i);
    if (x === y) continue;
    // Only where a surrogate meets a unit at or above U+E000 do the two
    // orders differ: a surrogate stands for a code point above U+FFFF.
    if (x >= 0xd800 && y >= 0xd800) {
      const xHigh = x >= 0xe000 ? x : x + 0x10000;
      const yHigh = y >= 0xe000 ? y : y + 0x10000;
      return xHigh - yHigh;
    }
    return x - y;
  }
  return a.length - b.length;
}

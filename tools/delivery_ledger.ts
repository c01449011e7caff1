/**
 * Which messages of a run reached at least one client: per sender, one bit
 * per sequence number. The soak tool judges loss against it: a message
 * that reached anyone was accepted by the cluster, so every client
 * connected while it was sent must get it; a message that reached no one
 * was refused (an `error` reply), or died in flight with the node its
 * sender was connected to, and no receiver is blamed for it.
 *
 * @module
 */

/** Bytes a sender's bitmap starts with: 8,192 messages. */
const INITIAL_BYTES = 1024;

/**
 * Per sender, the sequence numbers delivered to at least one client.
 *
 * @example
 * ```ts
 * import { DeliveryLedger } from "./delivery_ledger.ts";
 * const ledger = new DeliveryLedger(2);
 * ledger.mark(0, 0);
 * ledger.mark(0, 2);
 * ledger.has(0, 1); // false: no one got it
 * ledger.count(0, 1); // 1: sequence numbers from 1 on that someone got
 * ```
 */
export class DeliveryLedger {
  #bits: Uint8Array[];
  #counts: number[];

  /** A ledger for `senders` senders, numbered from 0. */
  constructor(senders: number) {
    this.#bits = Array.from(
      { length: senders },
      () => new Uint8Array(INITIAL_BYTES),
    );
    this.#counts = new Array(senders).fill(0);
  }

  /**
   * Records that message `seq` of `sender` reached a client; true the
   * first time, false when it was known.
   */
  mark(sender: number, seq: number): boolean {
    const byte = seq >>> 3;
    let bits = this.#bits[sender];
    if (byte >= bits.length) {
      const grown = new Uint8Array(Math.max(bits.length * 2, byte + 1));
      grown.set(bits);
      this.#bits[sender] = bits = grown;
    }
    const bit = 1 << (seq & 7);
    if ((bits[byte] & bit) !== 0) return false;
    bits[byte] |= bit;
    this.#counts[sender]++;
    return true;
  }

  /** Whether message `seq` of `sender` reached any client. */
  has(sender: number, seq: number): boolean {
    const bits = this.#bits[sender];
    const byte = seq >>> 3;
    return seq >= 0 && byte < bits.length &&
      (bits[byte] & (1 << (seq & 7))) !== 0;
  }

  /**
   * How many messages of `sender` from sequence number `from` (default 0)
   * up to, not including, `to` (default: all) reached a client.
   */
  count(sender: number, from = 0, to = Infinity): number {
    if (from <= 0 && to === Infinity) return this.#counts[sender];
    const bits = this.#bits[sender];
    const end = Math.min(to, bits.length * 8);
    let total = 0;
    for (let seq = Math.max(0, from); seq < end; seq++) {
      if ((bits[seq >>> 3] & (1 << (seq & 7))) !== 0) total++;
    }
    return total;
  }
}

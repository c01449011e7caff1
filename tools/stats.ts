/**
 * The statistics of a run: nearest-rank percentiles, a constant-memory
 * latency histogram, per-stream sequence tracking (loss, duplicates, order),
 * and the counting and rounding the summaries use.
 *
 * @module
 */

/**
 * Nearest-rank percentile of an ascending array; 0 for an empty one.
 *
 * @example
 * ```ts
 * import { percentile } from "./stats.ts";
 * percentile([1, 2, 3, 4], 50); // 2
 * ```
 */
export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return 0;
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length, Math.max(1, rank)) - 1];
}

/** Sub-buckets per power of two: 64 gives ≤ 1.6 % error. */
const HISTOGRAM_SUB_BITS = 6;

const HISTOGRAM_SUB = 1 << HISTOGRAM_SUB_BITS;

/** Values up to 2^31 µs (35 minutes); larger ones are clamped. */
const HISTOGRAM_MAX_EXP = 31;

const HISTOGRAM_BUCKETS = HISTOGRAM_SUB +
  (HISTOGRAM_MAX_EXP - HISTOGRAM_SUB_BITS + 1) * HISTOGRAM_SUB;

/**
 * A log-linear histogram of non-negative integers (microseconds here):
 * constant memory, O(1) record, percentiles within 1.6 %.
 *
 * @example
 * ```ts
 * import { LatencyHistogram } from "./stats.ts";
 * const h = new LatencyHistogram();
 * for (let i = 1; i <= 100; i++) h.record(i * 1000);
 * h.percentile(50); // ≈ 50000
 * ```
 */
export class LatencyHistogram {
  /** Bucket counts. */
  readonly counts: Float64Array = new Float64Array(HISTOGRAM_BUCKETS);
  /** Samples recorded. */
  count = 0;
  /** Largest sample, exact. */
  max = 0;

  /** Records one value (negative values count as 0). */
  record(value: number): void {
    const v = value > 0 ? Math.min(Math.floor(value), 0x7fffffff) : 0;
    let index: number;
    if (v < HISTOGRAM_SUB) {
      index = v;
    } else {
      const exp = 31 - Math.clz32(v);
      const mantissa = (v >>> (exp - HISTOGRAM_SUB_BITS)) - HISTOGRAM_SUB;
      index = HISTOGRAM_SUB + (exp - HISTOGRAM_SUB_BITS) * HISTOGRAM_SUB +
        mantissa;
    }
    this.counts[index]++;
    this.count++;
    if (v > this.max) this.max = v;
  }

  /** The value below which `p` % of samples fall (bucket midpoint). */
  percentile(p: number): number {
    if (this.count === 0) return 0;
    const rank = Math.max(1, Math.ceil((p / 100) * this.count));
    let seen = 0;
    for (let i = 0; i < HISTOGRAM_BUCKETS; i++) {
      seen += this.counts[i];
      if (seen >= rank) return Math.min(this.max, bucketMid(i));
    }
    return this.max;
  }
}

function bucketMid(index: number): number {
  if (index < HISTOGRAM_SUB) return index;
  const rel = index - HISTOGRAM_SUB;
  const exp = Math.floor(rel / HISTOGRAM_SUB) + HISTOGRAM_SUB_BITS;
  const mantissa = (rel % HISTOGRAM_SUB) + HISTOGRAM_SUB;
  const scale = 2 ** (exp - HISTOGRAM_SUB_BITS);
  return mantissa * scale + (scale - 1) / 2;
}

/** Gaps larger than this are treated as garbage, not as missing messages. */
const MAX_GAP = 1_000_000;

/** Result of {@linkcode SequenceTracker.record}. */
export type SeqOutcome = "ok" | "gap" | "late" | "duplicate";

/**
 * Tracks, for each receiver and each sender, which sequence numbers arrived:
 * counts duplicates, out-of-order arrivals, and (at the end) losses.
 *
 * @example
 * ```ts
 * import { SequenceTracker } from "./stats.ts";
 * const t = new SequenceTracker(1, 1);
 * t.record(0, 0, 0); // "ok"
 * t.record(0, 0, 2); // "gap" (1 is missing for now)
 * t.missing(0, 0); // [1]
 * t.record(0, 0, 1); // "late" (out of order)
 * t.lost(0, [3]); // 0
 * ```
 */
export class SequenceTracker {
  /** Deliveries that arrived again. */
  duplicated = 0;
  /** Deliveries that filled a gap (arrived after a later one). */
  outOfOrder = 0;
  /** Sequence numbers currently missing below the highest seen. */
  gaps = 0;
  readonly #senders: number;
  /** Per (receiver, sender): highest sequence number seen + 1. */
  readonly #next: Float64Array;
  /** Per receiver: distinct deliveries. */
  readonly #distinct: Float64Array;
  /** Per (receiver, sender) with gaps: the missing numbers. */
  readonly #missing = new Map<number, Set<number>>();

  /** Tracks `receivers` × `senders` streams. */
  constructor(receivers: number, senders: number) {
    this.#senders = senders;
    this.#next = new Float64Array(receivers * senders);
    this.#distinct = new Float64Array(receivers);
  }

  /** Records that `receiver` got message `seq` of `sender`. */
  record(receiver: number, sender: number, seq: number): SeqOutcome {
    const key = receiver * this.#senders + sender;
    const next = this.#next[key];
    if (seq === next) {
      this.#next[key] = next + 1;
      this.#distinct[receiver]++;
      return "ok";
    }
    if (seq > next) {
      if (seq - next > MAX_GAP) {
        this.duplicated++;
        return "duplicate";
      }
      let missing = this.#missing.get(key);
      if (missing === undefined) {
        missing = new Set();
        this.#missing.set(key, missing);
      }
      for (let s = next; s < seq; s++) missing.add(s);
      this.gaps += seq - next;
      this.#next[key] = seq + 1;
      this.#distinct[receiver]++;
      return "gap";
    }
    const missing = this.#missing.get(key);
    if (missing !== undefined && missing.delete(seq)) {
      if (missing.size === 0) this.#missing.delete(key);
      this.gaps--;
      this.outOfOrder++;
      this.#distinct[receiver]++;
      return "late";
    }
    this.duplicated++;
    return "duplicate";
  }

  /**
   * One past the highest sequence number `receiver` got from `sender`;
   * 0 when it got none.
   */
  next(receiver: number, sender: number): number {
    return this.#next[receiver * this.#senders + sender];
  }

  /**
   * The sequence numbers `receiver` has not got from `sender` below the
   * highest it got, in no particular order.
   */
  missing(receiver: number, sender: number): number[] {
    return [...(this.#missing.get(receiver * this.#senders + sender) ?? [])];
  }

  /** Distinct messages `receiver` got, all senders together. */
  distinct(receiver: number): number {
    return this.#distinct[receiver];
  }

  /** Messages `receiver` never got, given how many each sender sent. */
  lost(receiver: number, sent: readonly number[]): number {
    let total = 0;
    for (const n of sent) total += n;
    return Math.max(0, total - this.#distinct[receiver]);
  }
}

/**
 * Adds one to `map[key]`.
 *
 * @example
 * ```ts
 * import { count } from "./stats.ts";
 * const seen: Record<string, number> = {};
 * count(seen, "4008"); // seen is { "4008": 1 }
 * ```
 */
export function count(map: Record<string, number>, key: string): void {
  map[key] = (map[key] ?? 0) + 1;
}

/**
 * Rounds to `digits` decimals, for summaries.
 *
 * @example
 * ```ts
 * import { round } from "./stats.ts";
 * round(1.23456, 2); // 1.23
 * ```
 */
export function round(value: number, digits: number): number {
  const f = 10 ** digits;
  return Math.round(value * f) / f;
}

import assert from "node:assert/strict";
import { LatencyHistogram, percentile, SequenceTracker } from "./stats.ts";

Deno.test("percentile uses the nearest rank", () => {
  assert.equal(percentile([], 50), 0);
  assert.equal(percentile([7], 99), 7);
  assert.equal(percentile([1, 2, 3, 4], 50), 2);
  assert.equal(percentile([1, 2, 3, 4], 100), 4);
  const hundred = Array.from({ length: 100 }, (_, i) => i + 1);
  assert.equal(percentile(hundred, 99), 99);
  assert.equal(percentile(hundred, 0), 1);
});

Deno.test("LatencyHistogram percentiles are within 2 %", () => {
  const h = new LatencyHistogram();
  for (let i = 1; i <= 10_000; i++) h.record(i * 10);
  assert.equal(h.count, 10_000);
  assert.equal(h.max, 100_000);
  for (const [p, exact] of [[50, 50_000], [90, 90_000], [99, 99_000]]) {
    const got = h.percentile(p);
    assert.ok(
      Math.abs(got - exact) / exact < 0.02,
      `p${p}: got ${got}, expected about ${exact}`,
    );
  }
  const small = new LatencyHistogram();
  for (const v of [0, 1, 2, 3, -5]) small.record(v);
  assert.equal(small.percentile(50), 1);
  assert.equal(new LatencyHistogram().percentile(99), 0);
});

Deno.test("SequenceTracker counts gaps, late, duplicate and lost", () => {
  const t = new SequenceTracker(2, 2);
  assert.equal(t.record(0, 0, 0), "ok");
  assert.equal(t.record(0, 0, 1), "ok");
  assert.equal(t.record(0, 0, 4), "gap");
  assert.equal(t.gaps, 2);
  assert.equal(t.record(0, 0, 2), "late");
  assert.equal(t.record(0, 0, 2), "duplicate");
  assert.equal(t.record(0, 0, 4), "duplicate");
  assert.equal(t.record(0, 1, 0), "ok");
  assert.equal(t.record(1, 1, 0), "ok");
  assert.equal(t.duplicated, 2);
  assert.equal(t.outOfOrder, 1);
  assert.equal(t.gaps, 1);
  // Sender 0 sent 5 (0..4), sender 1 sent 1: receiver 0 misses seq 3.
  assert.equal(t.distinct(0), 5);
  assert.equal(t.lost(0, [5, 1]), 1);
  // Receiver 1 got nothing from sender 0.
  assert.equal(t.lost(1, [5, 1]), 5);
});

import assert from "node:assert/strict";
import { DeliveryLedger } from "./delivery_ledger.ts";

Deno.test("DeliveryLedger: marks once, counts ranges, grows past its first bitmap", () => {
  const ledger = new DeliveryLedger(2);
  for (const seq of [0, 1, 3, 100_000]) assert.equal(ledger.mark(1, seq), true);
  assert.equal(ledger.mark(1, 3), false);
  assert.equal(ledger.count(1), 4);
  assert.equal(ledger.count(0), 0);
  assert.equal(ledger.has(1, 3), true);
  assert.equal(ledger.has(1, 2), false);
  assert.equal(ledger.has(1, -1), false);
  assert.equal(ledger.has(1, 10_000_000), false);
  assert.equal(ledger.count(1, 1), 3);
  assert.equal(ledger.count(1, 1, 4), 2);
  assert.equal(ledger.count(1, 4, 100_000), 0);
  assert.equal(ledger.count(1, 0, Infinity), 4);
});

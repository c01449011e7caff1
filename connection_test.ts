import assert from "node:assert/strict";
import {
  DEFAULT_BURST,
  DEFAULT_MAX_STRIKES,
  FloodGuard,
  type FloodVerdict,
  TokenBucket,
} from "./connection.ts";

Deno.test("token bucket: burst at once, then the rate", () => {
  const bucket = new TokenBucket({ ratePerSecond: 10, burst: 20 });
  for (let i = 0; i < 20; i++) assert.equal(bucket.take(1000), true, `#${i}`);
  assert.equal(bucket.take(1000), false);
  assert.equal(bucket.take(1099), false); // 0.99 of a token
  assert.equal(bucket.take(1100), true); // one token per 100 ms
  assert.equal(bucket.take(1100), false);
  // A long pause refills to the burst, not beyond.
  assert.equal(bucket.available(60_000), 20);
  for (let i = 0; i < 20; i++) bucket.take(60_000);
  assert.equal(bucket.take(60_000), false);
  // A clock going back refills nothing and takes nothing extra.
  assert.equal(bucket.take(0), false);
  assert.equal(bucket.take(60_100), true);
});

Deno.test("token bucket: bad options are refused", () => {
  assert.throws(
    () => new TokenBucket({ ratePerSecond: 0, burst: 1 }),
    /ratePerSecond is 0; expected a finite number > 0/,
  );
  assert.throws(
    () => new TokenBucket({ ratePerSecond: 1, burst: -1 }),
    /burst is -1/,
  );
  assert.throws(
    () => new TokenBucket({ ratePerSecond: NaN, burst: 1 }),
    RangeError,
  );
});

Deno.test("flood guard: warn once, drop, close after the strikes", () => {
  const guard = new FloodGuard();
  const verdicts: FloodVerdict[] = [];
  for (let i = 0; i < DEFAULT_BURST + DEFAULT_MAX_STRIKES; i++) {
    verdicts.push(guard.check(0));
  }
  assert.deepEqual(verdicts, [
    ...Array(DEFAULT_BURST).fill("accept"),
    "warn",
    ...Array(DEFAULT_MAX_STRIKES - 2).fill("drop"),
    "close",
  ]);
  assert.equal(guard.strikes, DEFAULT_MAX_STRIKES);
});

Deno.test("flood guard: an accepted frame resets the strikes", () => {
  const guard = new FloodGuard({ ratePerSecond: 1, burst: 1, maxStrikes: 3 });
  assert.equal(guard.check(0), "accept");
  assert.equal(guard.check(10), "warn");
  assert.equal(guard.check(20), "drop");
  assert.equal(guard.strikes, 2);
  assert.equal(guard.check(1000), "accept");
  assert.equal(guard.strikes, 0);
  assert.equal(guard.check(1001), "warn"); // a new streak is warned again
  assert.equal(guard.check(1002), "drop");
  assert.equal(guard.check(1003), "close");
  assert.throws(() => new FloodGuard({ maxStrikes: 0 }), /maxStrikes is 0/);
  assert.throws(() => new FloodGuard({ maxStrikes: 1.5 }), /whole number/);
});

import assert from "node:assert/strict";
import { connectAll, connectCapSeconds, drain, sendOpenLoop } from "./fleet.ts";
import { sleep } from "./wait.ts";

Deno.test("connectAll tries every client, never more at once than asked", async () => {
  const tried: number[] = [];
  let inFlight = 0;
  let most = 0;
  const errors: Record<string, number> = {};
  await connectAll(7, {
    concurrency: 3,
    async connect(i, deadline) {
      assert.ok(deadline > performance.now());
      inFlight++;
      most = Math.max(most, inFlight);
      await sleep(1);
      tried.push(i);
      inFlight--;
    },
    errors,
  });
  assert.deepEqual(tried.sort((a, b) => a - b), [0, 1, 2, 3, 4, 5, 6]);
  assert.equal(most, 3);
  assert.deepEqual(errors, {});
  // Stopped: no more clients are tried.
  let calls = 0;
  await connectAll(5, {
    concurrency: 1,
    connect: () => {
      calls++;
      return Promise.resolve();
    },
    errors,
    stopped: () => calls >= 2,
  });
  assert.equal(calls, 2);
  assert.equal(connectCapSeconds(0), 30);
});

Deno.test("sendOpenLoop sends round robin until its signal aborts", async () => {
  const stop = new AbortController();
  const sent: number[] = [];
  let skipped = 0;
  const loop = sendOpenLoop(1000, (sender) => sent.push(sender), {
    senders: 3,
    signal: stop.signal,
    onSkip: (late) => skipped += late,
  });
  await sleep(60);
  stop.abort();
  await loop;
  const count = sent.length;
  assert.ok(count >= 10, `${count} sends in 60 ms at 1000/s`);
  assert.deepEqual(sent.slice(0, 4), [0, 1, 2, 0]);
  assert.ok(skipped >= 0);
  await sleep(20);
  assert.equal(sent.length, count, "nothing is sent after the abort");
});

Deno.test("drain returns once done, or after its time", async () => {
  let started = performance.now();
  await drain(() => true, 5_000);
  assert.ok(performance.now() - started < 1_000);
  started = performance.now();
  await drain(() => false, 50);
  assert.ok(performance.now() - started >= 45);
});

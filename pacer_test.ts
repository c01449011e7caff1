/**
 * The upgrade pacer: turns stepped by hand ({@linkcode ManualTurns}).
 * Nothing asserts a duration.
 *
 * @module
 */

import assert from "node:assert/strict";
import { type Pace, UpgradePacer } from "./pacer.ts";
import { ManualTurns } from "./testing/turns.ts";

/** Lets every settled promise's callbacks run. */
function settle(): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, 0));
}

/**
 * Takes turns from `pacer` and records who was told what, in the order
 * they were told, in `told`.
 */
function recorder(pacer: UpgradePacer): {
  told: string[];
  take(keys: string[], signals?: Record<string, AbortSignal>): void;
} {
  const told: string[] = [];
  return {
    told,
    take(keys, signals = {}): void {
      for (const key of keys) {
        const pace = pacer.take(key, signals[key]);
        if (typeof pace === "string") told.push(`${key}:${pace}`);
        else pace.then((later) => told.push(`${key}:${later}`));
      }
    },
  };
}

Deno.test("pacer: perTurn go at once, the rest a turn at a time in order of arrival", async () => {
  const turns = new ManualTurns();
  const pacer = new UpgradePacer({ perTurn: 2, schedule: turns.schedule });
  const { told, take } = recorder(pacer);
  take(["a", "b", "c", "d", "e"]);
  await settle();
  assert.deepEqual(told, ["a:go", "b:go"]);
  assert.equal(pacer.waiting, 3);

  turns.end();
  await settle();
  assert.deepEqual(told, ["a:go", "b:go", "c:go", "d:go"]);
  // One arriving now waits behind e, though it came in a new turn.
  take(["f"]);
  turns.end();
  await settle();
  assert.deepEqual(told.slice(4), ["e:go", "f:go"]);
  assert.equal(pacer.waiting, 0);

  // The turn that released e and f ends too; then nothing is scheduled,
  // and the next turn's first two go at once again.
  assert.equal(turns.scheduled, 1);
  turns.end();
  assert.equal(turns.scheduled, 0);
  take(["g", "h"]);
  assert.deepEqual(told.slice(6), ["g:go", "h:go"]);
  pacer.close();
});

Deno.test("pacer: past maxWaiting 'full', past the key's share 'full_key', at once", async () => {
  const turns = new ManualTurns();
  const pacer = new UpgradePacer({
    perTurn: 1,
    maxWaiting: 3,
    maxWaitingPerKey: 2,
    schedule: turns.schedule,
  });
  const { told, take } = recorder(pacer);
  take(["x", "ip1", "ip1", "ip1", "ip2", "ip3"]);
  assert.deepEqual(told, ["x:go", "ip1:full_key", "ip3:full"]);
  assert.deepEqual(
    [pacer.waiting, pacer.waitingFor("ip1"), pacer.waitingFor("ip2")],
    [3, 2, 1],
  );
  // A place that frees up is taken again.
  turns.end();
  await settle();
  assert.deepEqual(told.slice(3), ["ip1:go"]);
  assert.equal(pacer.waitingFor("ip1"), 1);
  take(["ip1", "ip4"]);
  assert.deepEqual(told.slice(4), ["ip4:full"]);
  pacer.close();
  await settle();
  assert.equal(pacer.waiting, 0);
  assert.equal(pacer.waitingFor("ip1"), 0);
});

/** An abort signal that counts the abort listeners it holds. */
function countedSignal(): { controller: AbortController; listeners(): number } {
  const controller = new AbortController();
  const signal = controller.signal;
  let listeners = 0;
  const add = signal.addEventListener.bind(signal);
  const remove = signal.removeEventListener.bind(signal);
  signal.addEventListener = (...args: Parameters<typeof add>) => {
    listeners++;
    add(...args);
  };
  signal.removeEventListener = (...args: Parameters<typeof remove>) => {
    listeners--;
    remove(...args);
  };
  return { controller, listeners: () => listeners };
}

Deno.test("pacer: a waiter whose peer leaves is 'gone', takes no turn and keeps no listener", async () => {
  const turns = new ManualTurns();
  const pacer = new UpgradePacer({ perTurn: 1, schedule: turns.schedule });
  const b = countedSignal();
  const c = countedSignal();
  const { told, take } = recorder(pacer);
  take(["a", "b", "c", "d"], {
    b: b.controller.signal,
    c: c.controller.signal,
  });
  assert.deepEqual([b.listeners(), c.listeners()], [1, 1]);
  b.controller.abort();
  await settle();
  assert.deepEqual(told, ["a:go", "b:gone"]);
  assert.equal(b.listeners(), 0);
  // b's place went to c: the next turn is c's.
  turns.end();
  await settle();
  assert.deepEqual(told.slice(2), ["c:go"]);
  assert.equal(c.listeners(), 0, "a released waiter keeps no listener");
  c.controller.abort();
  await settle();
  assert.deepEqual(told.slice(3), []);
  // Already gone before it asked: told at once.
  assert.equal(pacer.take("e", AbortSignal.abort()), "gone");
  turns.end();
  await settle();
  assert.deepEqual(told.slice(3), ["d:go"]);
  pacer.close();
});

Deno.test("pacer: close tells every waiter 'closed', cancels its turn, and refuses later ones", async () => {
  const turns = new ManualTurns();
  const pacer = new UpgradePacer({ perTurn: 1, schedule: turns.schedule });
  const signal = countedSignal();
  const { told, take } = recorder(pacer);
  take(["a", "b", "c"], { c: signal.controller.signal });
  assert.equal(turns.scheduled, 1);
  pacer.close();
  await settle();
  assert.deepEqual(told, ["a:go", "b:closed", "c:closed"]);
  assert.equal(turns.scheduled, 0, "no turn left scheduled");
  assert.equal(signal.listeners(), 0);
  assert.equal(pacer.take("d"), "closed");
  pacer.close();
  assert.equal(turns.scheduled, 0);
});

Deno.test("pacer: with setImmediate, a burst goes through a few a turn and close ends it", async () => {
  const pacer = new UpgradePacer({ perTurn: 3 });
  const paces: (Pace | Promise<Pace>)[] = [];
  for (let i = 0; i < 20; i++) paces.push(pacer.take(`k${i % 4}`));
  assert.equal(paces.filter((pace) => pace === "go").length, 3);
  const all = await Promise.all(paces.slice(0, 14));
  assert.ok(all.every((pace) => pace === "go"));
  pacer.close();
  const rest = await Promise.all(paces.slice(14));
  assert.ok(rest.every((pace) => pace === "go" || pace === "closed"));
  assert.equal(pacer.waiting, 0);
});

Deno.test("pacer: limits must be whole numbers, perTurn at least 1", () => {
  assert.throws(() => new UpgradePacer({ perTurn: 0 }), RangeError);
  assert.throws(() => new UpgradePacer({ perTurn: 1.5 }), RangeError);
  assert.throws(() => new UpgradePacer({ maxWaiting: -1 }), RangeError);
  const open = new UpgradePacer({ maxWaiting: 0, maxWaitingPerKey: Infinity });
  assert.deepEqual([open.maxWaiting, open.maxWaitingPerKey], [0, Infinity]);
});

/**
 * History benchmarks, `deno bench -A store/history_bench.ts`: one iteration is
 * 10,000 appends to one room (default limit, so trimming is on), awaited
 * until all are stored; appends per second = 10,000 / time per iteration.
 *
 * - "per turn": 100 appends in each of 100 event-loop turns (a busy
 *   server: group commits of about a turn's worth).
 * - "one turn": all 10,000 in one turn (split only by the commit size).
 * - "1,000 in one turn": one iteration is 1,000 appends made in one turn
 *   (one big group commit, or a few), for the cost of a full commit.
 * - "awaited": 100 appends, each awaited before the next (a quiet chat:
 *   one commit per message, the latency floor).
 *
 * Each runs on a file in a temporary directory (`fsync: "periodic"`, the
 * default, and `"always"`) and in memory.
 *
 * @module
 */

import { History, type StoredMessage } from "./history.ts";

/** Appends per iteration of the throughput benchmarks. */
const APPENDS = 10_000;

/** Appends made in each turn in the "per turn" benchmarks. */
const PER_TURN = 100;

/** Appends in the "1,000 in one turn" benchmarks. */
const ONE_TURN = 1_000;

/** Appends in the "awaited" benchmarks (each costs a whole commit). */
const AWAITED = 100;

const dir = Deno.makeTempDirSync({ prefix: "hubchat_history_bench_" });
globalThis.addEventListener("unload", () => {
  Deno.removeSync(dir, { recursive: true });
});

let stores = 0;

/** A fresh history, on a file of its own or in memory. */
function openStore(where: Where): Promise<History> {
  return where === "memory"
    ? History.open(":memory:")
    : History.open(`${dir}/bench-${stores++}.log`, {
      fsync: where === "file" ? "periodic" : "always",
    });
}

/** Where a benchmark's history is. */
type Where = "file" | "file, fsync always" | "memory";

function nextTurn(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

function append(history: History, i: number): Promise<StoredMessage> {
  return history.append("lobby", {
    username: "bench",
    text: `message ${i}`,
    timestamp: new Date().toISOString(),
  });
}

/**
 * Appends `count` messages, `perTurn` in each event-loop turn, and waits
 * until all are stored.
 */
async function appendAll(
  history: History,
  count: number,
  perTurn: number,
): Promise<void> {
  const all: Promise<StoredMessage>[] = [];
  for (let i = 0; i < count; i++) {
    all.push(append(history, i));
    if ((i + 1) % perTurn === 0) await nextTurn();
  }
  await Promise.all(all);
}

for (const where of ["file", "file, fsync always", "memory"] as const) {
  const groupCommits = [
    { what: "10,000 appends, 100 per turn", count: APPENDS, perTurn: PER_TURN },
    { what: "10,000 appends in one turn", count: APPENDS, perTurn: APPENDS },
    { what: "1,000 appends in one turn", count: ONE_TURN, perTurn: ONE_TURN },
  ];
  for (const { what, count, perTurn } of groupCommits) {
    Deno.bench({
      name: `history (${where}): ${what}`,
      group: where,
      baseline: perTurn === PER_TURN,
      // Fewer appends per iteration: more iterations for a steady figure.
      n: count === ONE_TURN ? 20 : 10,
      warmup: count === ONE_TURN ? 2 : 1,
      async fn(b) {
        const history = await openStore(where);
        b.start();
        await appendAll(history, count, perTurn);
        b.end();
        await history.close();
      },
    });
  }

  Deno.bench({
    name: `history (${where}): 100 appends, each awaited`,
    group: where,
    n: 10,
    warmup: 1,
    async fn(b) {
      const history = await openStore(where);
      b.start();
      for (let i = 0; i < AWAITED; i++) await append(history, i);
      b.end();
      await history.close();
    },
  });
}

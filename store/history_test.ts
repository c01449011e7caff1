import assert from "node:assert/strict";
import {
  BLOCK_BYTES,
  BLOCK_MESSAGES,
  DEFAULT_HISTORY_LIMIT,
  History,
  type HistoryEntry,
  KV_MAX_VALUE_BYTES,
  type StoredMessage,
} from "./history.ts";
import { visibleTo } from "../protocol.ts";
import { type ChildExit, DenoChild } from "../testing/child_process.ts";
import { within } from "../testing/wait.ts";

/** Longest any one test may take; a hang fails instead of stalling CI. */
const TEST_DEADLINE_MS = 30_000;

/** A test bounded by {@linkcode TEST_DEADLINE_MS}. */
function test(name: string, body: () => Promise<void>): void {
  Deno.test(name, () => within(body(), name, TEST_DEADLINE_MS));
}

/** Runs `body` with a fresh temporary directory, removed afterwards. */
async function withTempDir(body: (dir: string) => Promise<void>) {
  const dir = await Deno.makeTempDir({ prefix: "hubchat_history_" });
  try {
    await body(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

function entry(username: string, text: string, to?: string): HistoryEntry {
  const value: HistoryEntry = {
    username,
    text,
    timestamp: "2026-11-22T10:00:00.000Z",
  };
  if (to !== undefined) value.to = to;
  return value;
}

function ids(messages: StoredMessage[]): number[] {
  return messages.map((message) => message.id);
}

function range(from: number, to: number): number[] {
  const out: number[] = [];
  for (let i = from; i <= to; i++) out.push(i);
  return out;
}

/** What one room's part of the store holds, read from KV directly. */
interface StoredRoom {
  /** The meta value. */
  meta: unknown;
  /** Every message id in the room's blocks, in key order. */
  all: number[];
  /** The ids above the meta's `trimmedId`: what a reopen keeps. */
  live: number[];
  /** Each block's first id, its message count and its size in bytes. */
  blocks: { firstId: number; count: number; bytes: number }[];
  /** Every message in the blocks, decoded, in key order. */
  messages: unknown[][];
}

/** Reads a room's meta and blocks straight from KV (see history.ts). */
async function readRoom(kv: Deno.Kv, room: string): Promise<StoredRoom> {
  const meta = (await kv.get(["room", room, "meta"])).value;
  const trimmedId = (meta as { trimmedId?: number } | null)?.trimmedId ?? 0;
  const out: StoredRoom = { meta, all: [], live: [], blocks: [], messages: [] };
  for await (
    const { key, value } of kv.list<Uint8Array>({
      prefix: ["room", room, "block"],
    })
  ) {
    assert.ok(value instanceof Uint8Array, `${Deno.inspect(key)} is bytes`);
    assert.ok(value.length <= KV_MAX_VALUE_BYTES);
    const text = new TextDecoder().decode(value);
    assert.ok(text.endsWith("\n"));
    const lines = text.slice(0, -1).split("\n");
    assert.ok(lines.length <= BLOCK_MESSAGES, `${lines.length} in a block`);
    if (lines.length > 1) assert.ok(value.length <= BLOCK_BYTES);
    const messages = lines.map((line) => JSON.parse(line) as unknown[]);
    assert.equal(messages[0][0], key[3], "a block's key is its first id");
    out.blocks.push({
      firstId: key[3] as number,
      count: messages.length,
      bytes: value.length,
    });
    for (const message of messages) {
      const id = message[0] as number;
      out.all.push(id);
      if (id > trimmedId) out.live.push(id);
      out.messages.push(message);
    }
  }
  return out;
}

/**
 * The ids of a room's messages in the store above its `trimmedId` (what a
 * reopen keeps), after checking that whole blocks are trimmed: at most
 * `BLOCK_MESSAGES - 1` trimmed ones are left, all in the oldest block.
 */
async function storedIds(path: string, room: string): Promise<number[]> {
  const kv = await Deno.openKv(path);
  try {
    const stored = await readRoom(kv, room);
    const dead = stored.all.length - stored.live.length;
    assert.ok(dead < BLOCK_MESSAGES, `${dead} trimmed messages left`);
    assert.ok(dead < (stored.blocks[0]?.count ?? 1));
    return stored.live;
  } finally {
    kv.close();
  }
}

test("ids increase by one per room, independently across rooms", async () => {
  const history = await History.open(":memory:");
  try {
    const a1 = await history.append("a", entry("ann", "1"));
    const b1 = await history.append("b", entry("bob", "1"));
    const a2 = await history.append("a", entry("ann", "2"));
    const a3 = await history.append("a", entry("ann", "3"));
    const b2 = await history.append("b", entry("bob", "2"));
    assert.deepEqual([a1.id, a2.id, a3.id], [1, 2, 3]);
    assert.deepEqual([b1.id, b2.id], [1, 2]);
    assert.deepEqual(a2, {
      type: "message",
      id: 2,
      room: "a",
      username: "ann",
      text: "2",
      timestamp: "2026-11-22T10:00:00.000Z",
    });
    assert.ok(Object.isFrozen(a2));
    assert.equal(history.latestId("a"), 3);
    assert.equal(history.latestId("b"), 2);
    assert.equal(history.latestId("nowhere"), 0);
    assert.deepEqual(history.listRooms(), ["a", "b"]);
    assert.equal(history.limit, DEFAULT_HISTORY_LIMIT);
  } finally {
    await history.close();
  }
});

test("one turn's appends share one commit and resolve in id order", async () => {
  const history = await History.open(":memory:");
  try {
    const before = history.commits;
    const settled: string[] = [];
    const all: Promise<StoredMessage>[] = [];
    for (let i = 0; i < 10; i++) {
      const room = i % 2 === 0 ? "even" : "odd";
      all.push(
        history.append(room, entry("ann", `${i}`)).then((message) => {
          settled.push(`${message.room}:${message.id}`);
          return message;
        }),
      );
    }
    // Nothing is visible before it is stored.
    assert.deepEqual(history.recent("even"), []);
    assert.equal(history.latestId("even"), 0);
    await Promise.all(all);
    assert.equal(history.commits, before + 1);
    assert.deepEqual(settled, [
      "even:1",
      "odd:1",
      "even:2",
      "odd:2",
      "even:3",
      "odd:3",
      "even:4",
      "odd:4",
      "even:5",
      "odd:5",
    ]);
  } finally {
    await history.close();
  }
});

/** A message of the 2,500 burst: over 1 KB, so the burst needs splitting. */
function burstText(i: number): string {
  return `m${i} ${"x".repeat(1000)}`;
}

test("a burst of 2,500 appends resolves in order over several commits", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/history.db`;
    const history = await History.open(path, { limit: 5000 });
    const order: number[] = [];
    try {
      const all: Promise<StoredMessage>[] = [];
      for (let i = 0; i < 2500; i++) {
        all.push(
          history.append("lobby", entry("ann", burstText(i))).then(
            (message) => {
              order.push(message.id);
              return message;
            },
          ),
        );
      }
      const stored = await Promise.all(all);
      assert.deepEqual(ids(stored), range(1, 2500));
      assert.deepEqual(order, range(1, 2500));
      // KV takes at most 800 KiB per commit; these are over 2.5 MB.
      assert.ok(history.commits >= 3, `${history.commits} commits`);
      assert.equal(stored[2499].text, burstText(2499));
    } finally {
      await history.close();
    }
    assert.deepEqual(await storedIds(path, "lobby"), range(1, 2500));
    const reopened = await History.open(path, { limit: 5000 });
    try {
      const kept = reopened.recent("lobby");
      assert.deepEqual(ids(kept), range(1, 2500));
      assert.equal(kept[1234].text, burstText(1234));
      assert.equal((await reopened.append("lobby", entry("x", "y"))).id, 2501);
    } finally {
      await reopened.close();
    }
  });
});

test("commits split to stay within KV's byte and key-size limits", async () => {
  const history = await History.open(":memory:", { limit: 1000 });
  try {
    // 400 messages of 2000 two-byte characters: about 1.6 MB in one turn,
    // over KV's 800 KiB per commit.
    const big = "ж".repeat(2000);
    const bigOnes: Promise<StoredMessage>[] = [];
    for (let i = 0; i < 400; i++) {
      bigOnes.push(history.append("big", entry("ann", big)));
    }
    const before = history.commits;
    assert.deepEqual(ids(await Promise.all(bigOnes)), range(1, 400));
    assert.ok(history.commits - before >= 2);

    // 600 rooms with 200-character names: their keys alone are over KV's
    // 80 KiB of set keys per commit.
    const rooms: Promise<StoredMessage>[] = [];
    for (let i = 0; i < 600; i++) {
      const room = `${i}`.padStart(200, "r");
      rooms.push(history.append(room, entry("ann", "hi")));
    }
    const stored = await Promise.all(rooms);
    assert.ok(stored.every((message) => message.id === 1));
    assert.equal(history.listRooms().length, 601);
  } finally {
    await history.close();
  }
});

test("many rooms in one turn split at KV's mutation limit", async () => {
  const history = await History.open(":memory:");
  try {
    // Each room touched costs a block and a meta key: 1,500 rooms take
    // 3,000 mutations, over KV's 1,000 per commit.
    const before = history.commits;
    const all: Promise<StoredMessage>[] = [];
    for (let i = 0; i < 1500; i++) {
      all.push(history.append(`r${i}`, entry("ann", `${i}`)));
    }
    const stored = await Promise.all(all);
    assert.ok(stored.every((message, i) => message.text === `${i}`));
    assert.ok(stored.every((message) => message.id === 1));
    assert.ok(history.commits - before >= 3, `${history.commits} commits`);
    assert.equal(history.listRooms().length, 1500);
  } finally {
    await history.close();
  }
});

test("trimming keeps exactly the last N, in memory and in KV", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/history.db`;
    const history = await History.open(path, { limit: 5 });
    try {
      for (let i = 1; i <= 12; i++) {
        await history.append("lobby", entry("ann", `${i}`));
      }
      assert.deepEqual(ids(history.recent("lobby")), range(8, 12));
      // A burst longer than the limit: the pushed-out part is never written.
      const burst: Promise<StoredMessage>[] = [];
      for (let i = 0; i < 20; i++) {
        burst.push(history.append("lobby", entry("ann", "burst")));
      }
      assert.deepEqual(ids(await Promise.all(burst)), range(13, 32));
      assert.deepEqual(ids(history.recent("lobby")), range(28, 32));
    } finally {
      await history.close();
    }
    assert.deepEqual(await storedIds(path, "lobby"), range(28, 32));
    const kv = await Deno.openKv(path);
    try {
      const meta = await kv.get(["room", "lobby", "meta"]);
      assert.deepEqual(meta.value, { lastId: 32, trimmedId: 27 });
    } finally {
      kv.close();
    }
  });
});

test("reopening keeps history and ids continue; parent dirs are made", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/nested/deeper/history.db`;
    const first = await History.open(path);
    try {
      await first.append("lobby", entry("ann", "one"));
      await first.append("lobby", entry("bob", "two", "ann"));
      await first.append("other", entry("bob", "elsewhere"));
    } finally {
      await first.close();
    }
    const second = await History.open(path);
    try {
      assert.deepEqual(second.listRooms(), ["lobby", "other"]);
      assert.deepEqual(second.recent("lobby"), [
        {
          type: "message",
          id: 1,
          room: "lobby",
          username: "ann",
          text: "one",
          timestamp: "2026-11-22T10:00:00.000Z",
        },
        {
          type: "message",
          id: 2,
          room: "lobby",
          username: "bob",
          text: "two",
          timestamp: "2026-11-22T10:00:00.000Z",
          to: "ann",
        },
      ]);
      assert.equal(second.latestId("lobby"), 2);
      assert.equal((await second.append("lobby", entry("ann", "3"))).id, 3);
      assert.equal((await second.append("other", entry("ann", "2"))).id, 2);
    } finally {
      await second.close();
    }
  });
});

test("reopening with a smaller limit trims the store", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/history.db`;
    const first = await History.open(path, { limit: 50 });
    try {
      const all: Promise<StoredMessage>[] = [];
      for (let i = 0; i < 30; i++) {
        all.push(first.append("lobby", entry("ann", `${i}`)));
      }
      await Promise.all(all);
    } finally {
      await first.close();
    }
    const second = await History.open(path, { limit: 10 });
    try {
      assert.deepEqual(ids(second.recent("lobby")), range(21, 30));
      assert.deepEqual(second.since("lobby", 20).gap, false);
      assert.deepEqual(second.since("lobby", 19).gap, true);
    } finally {
      await second.close();
    }
    assert.deepEqual(await storedIds(path, "lobby"), range(21, 30));
  });
});

test("trimming deletes whole blocks; a reopen sees what the run saw", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/history.db`;
    const history = await History.open(path, { limit: 5 });
    let seen: { since: number; result: unknown }[] = [];
    try {
      // Bursts of 7 (over the limit) and single appends, over many blocks.
      for (let turn = 0; turn < 60; turn++) {
        const burst: Promise<StoredMessage>[] = [];
        const size = turn % 3 === 0 ? 7 : 1;
        for (let i = 0; i < size; i++) {
          burst.push(history.append("lobby", entry("ann", `${turn}.${i}`)));
        }
        await Promise.all(burst);
      }
      const latest = history.latestId("lobby");
      assert.equal(latest, 20 * 7 + 40);
      assert.deepEqual(ids(history.recent("lobby")), range(176, 180));
      seen = range(0, latest + 1).map((since) => ({
        since,
        result: history.since("lobby", since),
      }));
    } finally {
      await history.close();
    }
    assert.deepEqual(await storedIds(path, "lobby"), range(176, 180));
    const kv = await Deno.openKv(path);
    try {
      const stored = await readRoom(kv, "lobby");
      assert.deepEqual(stored.meta, { lastId: 180, trimmedId: 175 });
      assert.ok(stored.blocks.length <= 2, Deno.inspect(stored.blocks));
    } finally {
      kv.close();
    }
    const reopened = await History.open(path, { limit: 5 });
    try {
      for (const { since, result } of seen) {
        assert.deepEqual(reopened.since("lobby", since), result);
      }
      assert.equal((await reopened.append("lobby", entry("x", "y"))).id, 181);
    } finally {
      await reopened.close();
    }
  });
});

test("blocks respect KV's value limit; messages round-trip exactly", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/history.db`;
    const odd = [
      'line\nbreak "quoted" \\ back\u0000nul',
      "lone \ud800 surrogate, 😀, \u2028",
      "ж".repeat(2000),
      "\u0001".repeat(2000),
      "",
    ];
    const history = await History.open(path, { limit: 1000 });
    let view: StoredMessage[] = [];
    try {
      const all: Promise<StoredMessage>[] = [];
      for (let i = 0; i < 200; i++) {
        const text = odd[i % odd.length];
        all.push(
          history.append(
            "lobby",
            entry("ann", text, i % 4 === 0 ? "bob" : undefined),
          ),
        );
      }
      await Promise.all(all);
      view = history.recent("lobby");
      assert.equal(view.length, 200);
    } finally {
      await history.close();
    }
    const kv = await Deno.openKv(path);
    try {
      const stored = await readRoom(kv, "lobby");
      assert.deepEqual(stored.all, range(1, 200));
      assert.ok(stored.blocks.length > 200 / BLOCK_MESSAGES + 1);
    } finally {
      kv.close();
    }
    const reopened = await History.open(path, { limit: 1000 });
    try {
      assert.deepEqual(reopened.recent("lobby"), view);
      assert.equal(reopened.recent("lobby")[1].text, odd[1]);
    } finally {
      await reopened.close();
    }
  });
});

test("many messages in one commit take a few keys", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/history.db`;
    const history = await History.open(path, { limit: 5000 });
    try {
      const before = history.commits;
      const all: Promise<StoredMessage>[] = [];
      for (let i = 0; i < 1000; i++) {
        all.push(history.append("lobby", entry("ann", `${i}`)));
      }
      await Promise.all(all);
      assert.equal(history.commits, before + 1);
    } finally {
      await history.close();
    }
    const kv = await Deno.openKv(path);
    try {
      const stored = await readRoom(kv, "lobby");
      assert.deepEqual(stored.all, range(1, 1000));
      assert.equal(stored.blocks.length, Math.ceil(1000 / BLOCK_MESSAGES));
    } finally {
      kv.close();
    }
  });
});

test("a failed commit that would fill a block leaves it as stored", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/history.db`;
    const kv = await Deno.openKv(path);
    const history = await History.fromKv(kv, { limit: 100 });
    const realAtomic = kv.atomic.bind(kv);
    const burst = (from: number, count: number) => {
      const all: Promise<StoredMessage>[] = [];
      for (let i = from; i < from + count; i++) {
        all.push(history.append("lobby", entry("ann", `${i}`)));
      }
      return Promise.allSettled(all);
    };
    let view: StoredMessage[] = [];
    try {
      await burst(1, 60);
      kv.atomic = () => {
        const operation = realAtomic();
        operation.commit = () => Promise.reject(new Error("disk on fire"));
        return operation;
      };
      const failed = await burst(61, 30);
      assert.ok(failed.every((result) => result.status === "rejected"));
      kv.atomic = realAtomic;
      await burst(91, 70); // 130 in all: 30 trimmed away
      view = history.recent("lobby");
      assert.deepEqual(ids(view), [...range(31, 60), ...range(91, 160)]);
    } finally {
      await history.close();
    }
    assert.deepEqual(
      await storedIds(path, "lobby"),
      [...range(31, 60), ...range(91, 160)],
    );
    const reopened = await History.open(path, { limit: 100 });
    try {
      assert.deepEqual(reopened.recent("lobby"), view);
      assert.equal(reopened.since("lobby", 30).gap, false);
      assert.equal(reopened.since("lobby", 29).gap, true);
    } finally {
      await reopened.close();
    }
  });
});

test("keys of the old one-key-per-message layout are ignored", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/history.db`;
    const kv = await Deno.openKv(path);
    try {
      const old = { username: "ann", text: "old", timestamp: "t" };
      await kv.set(["room", "lobby", "meta"], { lastId: 3, trimmedId: 1 });
      await kv.set(["room", "lobby", "msg", 2], old);
      await kv.set(["room", "lobby", "msg", 3], old);
      await kv.set(["room", "orphan", "msg", 1], old);
    } finally {
      kv.close();
    }
    const history = await History.open(path);
    try {
      assert.deepEqual(history.listRooms(), []);
      assert.equal(history.latestId("lobby"), 3);
      assert.equal(history.latestId("orphan"), 0);
      assert.equal((await history.append("lobby", entry("ann", "new"))).id, 4);
      assert.deepEqual(ids(history.recent("lobby")), [4]);
    } finally {
      await history.close();
    }
    const reopened = await History.open(path);
    try {
      assert.deepEqual(ids(reopened.recent("lobby")), [4]);
      assert.deepEqual(reopened.listRooms(), ["lobby"]);
    } finally {
      await reopened.close();
    }
  });
});

test("direct messages are stored with the rest; visibleTo says who sees them", async () => {
  const history = await History.open(":memory:");
  try {
    await history.append("lobby", entry("ann", "public 1"));
    await history.append("lobby", entry("ann", "to bob", "bob"));
    await history.append("lobby", entry("carol", "to ann", "ann"));
    await history.append("lobby", entry("bob", "public 2"));
    const texts = (messages: StoredMessage[]) => messages.map((m) => m.text);
    // The store returns what it stored; the room applies visibleTo.
    assert.deepEqual(texts(history.recent("lobby")), [
      "public 1",
      "to bob",
      "to ann",
      "public 2",
    ]);
    assert.deepEqual(texts(history.since("lobby", 1).messages), [
      "to bob",
      "to ann",
      "public 2",
    ]);
    const seenBy = (messages: StoredMessage[], username: string) =>
      texts(messages.filter((message) => visibleTo(message, username)));
    assert.deepEqual(seenBy(history.recent("lobby"), "ann"), [
      "public 1",
      "to bob",
      "to ann",
      "public 2",
    ]);
    assert.deepEqual(seenBy(history.recent("lobby"), "bob"), [
      "public 1",
      "to bob",
      "public 2",
    ]);
    assert.deepEqual(seenBy(history.recent("lobby"), "carol"), [
      "public 1",
      "to ann",
      "public 2",
    ]);
    assert.deepEqual(seenBy(history.recent("lobby"), "dave"), [
      "public 1",
      "public 2",
    ]);
    assert.deepEqual(seenBy(history.recent("lobby"), ""), [
      "public 1",
      "public 2",
    ]);
    assert.deepEqual(seenBy(history.since("lobby", 1).messages, "dave"), [
      "public 2",
    ]);
    assert.deepEqual(seenBy(history.since("lobby", 1).messages, "bob"), [
      "to bob",
      "public 2",
    ]);
  } finally {
    await history.close();
  }
});

test("since: exact, no gap, gap, and beyond the latest id", async () => {
  const history = await History.open(":memory:", { limit: 5 });
  try {
    for (let i = 1; i <= 12; i++) {
      await history.append("lobby", entry("ann", `${i}`));
    }
    // Kept: 8..12; trimmed: 1..7.
    assert.deepEqual(history.since("lobby", 12), {
      messages: [],
      gap: false,
    });
    const after10 = history.since("lobby", 10);
    assert.equal(after10.gap, false);
    assert.deepEqual(ids(after10.messages), [11, 12]);
    const after7 = history.since("lobby", 7);
    assert.equal(after7.gap, false);
    assert.deepEqual(ids(after7.messages), range(8, 12));
    const after6 = history.since("lobby", 6);
    assert.equal(after6.gap, true);
    assert.deepEqual(ids(after6.messages), range(8, 12));
    const fromScratch = history.since("lobby", 0);
    assert.equal(fromScratch.gap, true);
    assert.deepEqual(ids(fromScratch.messages), range(8, 12));
    // A client that saw more than this store knows (say it was wiped).
    const beyond = history.since("lobby", 99);
    assert.equal(beyond.gap, true);
    assert.deepEqual(ids(beyond.messages), range(8, 12));
    // Rooms without history.
    assert.deepEqual(history.since("empty", 0), {
      messages: [],
      gap: false,
    });
    assert.deepEqual(history.since("empty", 3), {
      messages: [],
      gap: true,
    });
    assert.throws(() => history.since("lobby", -1), RangeError);
    assert.throws(() => history.since("lobby", 1.5), RangeError);
    assert.throws(() => history.since("lobby", NaN), RangeError);
  } finally {
    await history.close();
  }
});

test("a failed commit rejects exactly its appends; the view stays stored", async () => {
  const kv = await Deno.openKv(":memory:");
  const history = await History.fromKv(kv);
  const realAtomic = kv.atomic.bind(kv);
  try {
    await history.append("lobby", entry("ann", "kept 1"));
    let failNext = true;
    kv.atomic = () => {
      const operation = realAtomic();
      if (failNext) {
        failNext = false;
        operation.commit = () => Promise.reject(new Error("disk on fire"));
      }
      return operation;
    };
    const failed = [
      history.append("lobby", entry("ann", "lost 2")),
      history.append("lobby", entry("ann", "lost 3")),
    ];
    const results = await Promise.allSettled(failed);
    for (const [i, result] of results.entries()) {
      assert.equal(result.status, "rejected");
      assert.match(
        (result as PromiseRejectedResult).reason.message,
        new RegExp(`^history: message ${i + 2} in room "lobby" was not stored`),
      );
      assert.match(
        (result as PromiseRejectedResult).reason.message,
        /disk on fire/,
      );
    }
    assert.deepEqual(ids(history.recent("lobby")), [1]);
    assert.equal(history.latestId("lobby"), 1);
    const next = await history.append("lobby", entry("ann", "kept 4"));
    assert.equal(next.id, 4);
    assert.deepEqual(ids(history.recent("lobby")), [1, 4]);
    // Ids skipped by the failure are no gap: they were never seen.
    assert.deepEqual(history.since("lobby", 0), {
      messages: history.recent("lobby"),
      gap: false,
    });
    assert.deepEqual(history.since("lobby", 1).gap, false);
    const stored = await readRoom(kv, "lobby");
    assert.deepEqual(stored.all, [1, 4]);
    assert.deepEqual(stored.messages.map((m) => m[2]), ["kept 1", "kept 4"]);
  } finally {
    await history.close();
  }
});

test("close waits for pending appends; later appends are refused", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/history.db`;
    const history = await History.open(path);
    const pending: Promise<StoredMessage>[] = [];
    for (let i = 0; i < 50; i++) {
      pending.push(history.append("lobby", entry("ann", `${i}`)));
    }
    const closing = history.close();
    assert.equal(history.close(), closing);
    await assert.rejects(
      history.append("lobby", entry("ann", "late")),
      /history: closed; cannot store a message in room "lobby"/,
    );
    await closing;
    assert.deepEqual(ids(await Promise.all(pending)), range(1, 50));
    assert.deepEqual(await storedIds(path, "lobby"), range(1, 50));
  });
});

test("invalid input is refused without using an id", async () => {
  const history = await History.open(":memory:");
  try {
    await assert.rejects(history.append("", entry("ann", "x")), TypeError);
    await assert.rejects(
      history.append("lobby", entry("", "x")),
      /entry\.username must be a non-empty string/,
    );
    await assert.rejects(
      history.append("lobby", { ...entry("ann", "x"), to: "" }),
      /entry\.to must be a non-empty string/,
    );
    await assert.rejects(
      history.append("lobby", entry("ann", "x".repeat(40_000))),
      RangeError,
    );
    await assert.rejects(
      history.append("r".repeat(3000), entry("ann", "x")),
      /room name is too long/,
    );
    assert.equal((await history.append("lobby", entry("ann", "ok"))).id, 1);
    assert.deepEqual(history.listRooms(), ["lobby"]);
    await assert.rejects(History.open(":memory:", { limit: 0 }), RangeError);
  } finally {
    await history.close();
  }
});

/** The child of the kill test: appends forever, printing each stored id. */
const CHILD_SCRIPT = `
import { History } from ${JSON.stringify(import.meta.resolve("./history.ts"))};
const history = await History.open(Deno.args[0], { limit: 1_000_000 });
for (let n = 0; ; n++) {
  // A few appends per turn, never awaited in line, so commits overlap them.
  for (let i = 0; i < 20; i++) {
    history
      .append("lobby", { username: "child", text: "m" + n + "." + i, timestamp: new Date().toISOString() })
      .then((message) => console.log(message.id));
  }
  await new Promise((resolve) => setTimeout(resolve, 1));
}
`;

/** Ids the child must print before it is killed. */
const KILL_AFTER_IDS = 3000;

test("every id acknowledged before a SIGKILL is stored", async () => {
  await withTempDir(async (dir) => {
    const script = `${dir}/child.ts`;
    const path = `${dir}/history.db`;
    await Deno.writeTextFile(script, CHILD_SCRIPT);
    const child = DenoChild.spawn(script, [path], { cwd: dir });
    const acknowledged: number[] = [];
    let exit: ChildExit;
    try {
      // An unfinished last line is not an acknowledgement: nextLine never
      // returns one.
      for (;;) {
        const line = await child.nextLine("the child's next id");
        if (line === null) break;
        acknowledged.push(Number(line));
        if (acknowledged.length === KILL_AFTER_IDS) child.kill("SIGKILL");
      }
    } finally {
      // Whatever happens, the child does not outlive the test.
      exit = await child.close();
    }
    const stderr = exit.stderr;
    assert.equal(exit.status.signal, "SIGKILL", `child ended early: ${stderr}`);
    assert.ok(acknowledged.length >= KILL_AFTER_IDS, stderr);
    assert.deepEqual(acknowledged, range(1, acknowledged.length));

    const history = await History.open(path, { limit: 1_000_000 });
    try {
      const kept = ids(history.recent("lobby"));
      const latest = history.latestId("lobby");
      assert.ok(latest >= acknowledged.length);
      // Every acknowledged id is there, and nothing is missing in between.
      assert.deepEqual(kept, range(1, latest));
      const next = await history.append("lobby", entry("ann", "after"));
      assert.equal(next.id, latest + 1);
    } finally {
      await history.close();
    }
  });
});

import assert from "node:assert/strict";
import {
  COMPACT_MIN_BYTES,
  DEFAULT_HISTORY_LIMIT,
  History,
  type HistoryEntry,
  ID_RESERVATION,
  MAX_COMMIT_BYTES,
  type StoredMessage,
} from "./history.ts";
import { type HistoryFile, HistoryOpenError } from "./history_file.ts";
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

/**
 * What one room's part of the file holds, read straight from the file by
 * the rule history.ts documents (not by its code).
 */
interface StoredRoom {
  /** The room's newest id and newest trimmed id, as a reopen finds them. */
  meta: { lastId: number; trimmedId: number };
  /** Every line id of the room in the file, in file order. */
  all: number[];
  /** The ids a reopen keeps: the room's last `limit` lines. */
  live: number[];
  /** Every line record of the room, in file order. */
  messages: Record<string, unknown>[];
  /** The file's size in bytes. */
  fileBytes: number;
}

/** Reads a room's records from a history file (see history.ts's docs). */
async function readRoom(path: string, room: string): Promise<StoredRoom> {
  const bytes = await Deno.readFile(path);
  const text = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  assert.ok(text.endsWith("\n"), "the file holds whole records");
  const [first, ...records] = text.slice(0, -1).split("\n").map((line) =>
    JSON.parse(line) as Record<string, unknown>
  );
  assert.equal(first.hubchat, "history");
  assert.equal(first.version, 1);
  const limit = first.limit as number;
  const meta = { lastId: 0, trimmedId: 0 };
  const out: StoredRoom = {
    meta,
    all: [],
    live: [],
    messages: [],
    fileBytes: bytes.length,
  };
  for (const record of records) {
    if (record.room !== room || record.type === "reserve") continue;
    if (record.type === "meta") {
      meta.lastId = Math.max(meta.lastId, record.lastId as number);
      meta.trimmedId = Math.max(meta.trimmedId, record.trimmedId as number);
      continue;
    }
    const id = record.id as number;
    assert.ok(id > (out.all.at(-1) ?? 0), "ids ascend within a room");
    out.all.push(id);
    out.messages.push(record);
  }
  const above = out.all.filter((id) => id > meta.trimmedId);
  out.live = above.slice(Math.max(0, above.length - limit));
  if (above.length > limit) {
    meta.trimmedId = above[above.length - limit - 1];
  }
  meta.lastId = Math.max(meta.lastId, out.all.at(-1) ?? 0);
  return out;
}

/**
 * The ids of a room's lines in the file that a reopen keeps, after checking
 * that the file stays bounded: at most twice what it keeps, or
 * {@linkcode COMPACT_MIN_BYTES}, plus one commit.
 */
async function storedIds(path: string, room: string): Promise<number[]> {
  const stored = await readRoom(path, room);
  const keptBytes = stored.messages
    .filter((record) => stored.live.includes(record.id as number))
    .reduce((sum, record) => sum + JSON.stringify(record).length + 1, 0);
  assert.ok(
    stored.fileBytes <=
      Math.max(COMPACT_MIN_BYTES, 2 * keptBytes) + MAX_COMMIT_BYTES,
    `${stored.fileBytes} bytes in the file`,
  );
  return stored.live;
}

/**
 * A file that fails on purpose while `failing()` says so, as a full disk
 * does: a failed write first writes half of what it was given.
 */
function failingFile(
  failing: () => boolean,
): (file: HistoryFile) => HistoryFile {
  return (file) => ({
    write(bytes: Uint8Array): void {
      if (!failing()) return file.write(bytes);
      file.write(bytes.subarray(0, bytes.length >> 1));
      throw new Error("No space left on device (os error 28)");
    },
    truncate: (length) => file.truncate(length),
    sync: () => file.sync(),
  });
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

test("appendThen: each line once stored with its record; a throwing callback stops no other", async () => {
  const history = await History.open(":memory:");
  const told: string[] = [];
  const thrown: unknown[] = [];
  const onError = (event: ErrorEvent) => {
    event.preventDefault();
    thrown.push(event.error);
  };
  globalThis.addEventListener("error", onError);
  try {
    history.appendThen("lobby", entry("", "x"), (result) => {
      told.push(result instanceof TypeError ? "refused at once" : "?");
    });
    assert.deepEqual(told, ["refused at once"]);
    for (const text of ["a", "b", "c"]) {
      history.appendThen("lobby", entry("ann", text), (line, record) => {
        assert.ok(!(line instanceof Error));
        assert.equal(record, JSON.stringify(line));
        told.push(`${line.id} ${line.text}`);
        if (line.text === "a") throw new Error("a caller's bug");
      });
    }
    assert.equal(told.length, 1, "nothing before it is stored");
    await new Promise((resolve) => setTimeout(resolve, 10));
    assert.deepEqual(told, ["refused at once", "1 a", "2 b", "3 c"]);
    assert.match(String(thrown[0]), /a caller's bug/);
  } finally {
    globalThis.removeEventListener("error", onError);
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
      // A commit writes at most 800 KiB; these are over 2.5 MB.
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

test("commits split to stay within the commit size; long room names are stored", async () => {
  const history = await History.open(":memory:", { limit: 1000 });
  try {
    // 400 messages of 2000 two-byte characters: about 1.6 MB in one turn,
    // over the 800 KiB a commit writes.
    const big = "ж".repeat(2000);
    const bigOnes: Promise<StoredMessage>[] = [];
    for (let i = 0; i < 400; i++) {
      bigOnes.push(history.append("big", entry("ann", big)));
    }
    const before = history.commits;
    assert.deepEqual(ids(await Promise.all(bigOnes)), range(1, 400));
    assert.ok(history.commits - before >= 2);

    // 600 rooms with 200-character names.
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

test("many rooms in one turn take one commit", async () => {
  const history = await History.open(":memory:");
  try {
    // One write, however many rooms a turn touches.
    const before = history.commits;
    const all: Promise<StoredMessage>[] = [];
    for (let i = 0; i < 1500; i++) {
      all.push(history.append(`r${i}`, entry("ann", `${i}`)));
    }
    const stored = await Promise.all(all);
    assert.ok(stored.every((message, i) => message.text === `${i}`));
    assert.ok(stored.every((message) => message.id === 1));
    assert.equal(history.commits - before, 1);
    assert.equal(history.listRooms().length, 1500);
  } finally {
    await history.close();
  }
});

test("trimming keeps exactly the last N, in memory and in the file", async () => {
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
    const stored = await readRoom(path, "lobby");
    assert.deepEqual(stored.meta, { lastId: 32, trimmedId: 27 });
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

test("trimming over many commits; a reopen sees what the run saw", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/history.db`;
    const history = await History.open(path, { limit: 5 });
    let seen: { since: number; result: unknown }[] = [];
    try {
      // Bursts of 7 (over the limit) and single appends, over many commits.
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
    const stored = await readRoom(path, "lobby");
    assert.deepEqual(stored.meta, { lastId: 180, trimmedId: 175 });
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

test("lines round-trip exactly, file lines and odd text included", async () => {
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
      // Shared files: with a caption and direct, and without either.
      const file = {
        id: "b5bb9d8014a0f9b1d61e21e796d78dccdf1352f23cd32812f4850b878ae4944c",
        name: "notes \u2028 ж.txt",
        size: 1234,
        type: "text/plain; charset=utf-8",
        url: "/files/b5bb9d80",
      };
      all.push(
        history.append("lobby", { ...entry("ann", "a caption", "bob"), file }),
        history.append("lobby", { ...entry("bob", ""), file }),
      );
      await Promise.all(all);
      view = history.recent("lobby");
      assert.equal(view.length, 202);
      assert.equal(view[200].type, "file");
      assert.equal(view[201].text, undefined);
    } finally {
      await history.close();
    }
    const stored = await readRoom(path, "lobby");
    assert.deepEqual(stored.all, range(1, 202));
    assert.deepEqual(
      stored.messages.map((record) => JSON.stringify(record)),
      view.map((line) => JSON.stringify(line)),
      "each record is the line as sent",
    );
    const reopened = await History.open(path, { limit: 1000 });
    try {
      assert.deepEqual(reopened.recent("lobby"), view);
      assert.equal(reopened.recent("lobby")[1].text, odd[1]);
    } finally {
      await reopened.close();
    }
  });
});

test("many lines in one commit take one write", async () => {
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
    const stored = await readRoom(path, "lobby");
    assert.deepEqual(stored.all, range(1, 1000));
  });
});

test("a write that fails half way is cut off; the file stays as stored", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/history.db`;
    let failing = false;
    const history = await History.open(path, {
      limit: 100,
      wrapFile: failingFile(() => failing),
    });
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
      failing = true;
      const failed = await burst(61, 30);
      assert.ok(failed.every((result) => result.status === "rejected"));
      failing = false;
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

test("an earlier version's Deno KV file is carried over; its old layout's keys are ignored", async () => {
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
      assert.equal(history.compactions, 1, "written anew");
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
      assert.equal(reopened.compactions, 0, "a history file now");
      assert.deepEqual(ids(reopened.recent("lobby")), [4]);
      assert.deepEqual(reopened.listRooms(), ["lobby"]);
    } finally {
      await reopened.close();
    }
    // The old file stays beside it, untouched.
    const old = await Deno.openKv(`${path}.deno-kv`);
    try {
      assert.deepEqual((await old.get(["room", "lobby", "meta"])).value, {
        lastId: 3,
        trimmedId: 1,
      });
    } finally {
      old.close();
    }
  });
});

test("an earlier version's KV blocks are carried over exactly, trimmed ones left", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/history.kv`;
    const kv = await Deno.openKv(path);
    const file = {
      id: "f00d",
      name: "a.png",
      size: 3,
      type: "image/png",
      url: "/files/f00d",
    };
    const block = (lines: unknown[][]) =>
      new TextEncoder().encode(
        lines.map((line) => JSON.stringify(line) + "\n").join(""),
      );
    try {
      await kv.set(["room", "lobby", "meta"], { lastId: 5, trimmedId: 2 });
      await kv.set(
        ["room", "lobby", "block", 1],
        block([[1, "ann", "gone", "t1"], [2, "ann", "gone too", "t2"]]),
      );
      await kv.set(
        ["room", "lobby", "block", 3],
        block([
          [3, "ann", "hi", "t3"],
          [4, "ann", "psst", "t4", "bob"],
          [5, "bob", "", "t5", null, file],
        ]),
      );
    } finally {
      kv.close();
    }
    const history = await History.open(path);
    try {
      assert.deepEqual(history.recent("lobby"), [
        {
          type: "message",
          id: 3,
          room: "lobby",
          username: "ann",
          text: "hi",
          timestamp: "t3",
        },
        {
          type: "message",
          id: 4,
          room: "lobby",
          username: "ann",
          text: "psst",
          timestamp: "t4",
          to: "bob",
        },
        {
          type: "file",
          id: 5,
          room: "lobby",
          username: "bob",
          file,
          timestamp: "t5",
        },
      ]);
      assert.equal(history.since("lobby", 2).gap, false);
      assert.equal(history.since("lobby", 1).gap, true);
      assert.equal((await history.append("lobby", entry("ann", "6"))).id, 6);
    } finally {
      await history.close();
    }
    assert.deepEqual(await storedIds(path, "lobby"), range(3, 6));
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
  await withTempDir(async (dir) => {
    const path = `${dir}/history.db`;
    let failNext = false;
    const history = await History.open(path, {
      wrapFile: failingFile(() => {
        const fail = failNext;
        failNext = false;
        return fail;
      }),
    });
    try {
      await history.append("lobby", entry("ann", "kept 1"));
      failNext = true;
      const failed = [
        history.append("lobby", entry("ann", "lost 2")),
        history.append("lobby", entry("ann", "lost 3")),
      ];
      const results = await Promise.allSettled(failed);
      for (const [i, result] of results.entries()) {
        assert.equal(result.status, "rejected");
        assert.match(
          (result as PromiseRejectedResult).reason.message,
          new RegExp(
            `^history: message ${i + 2} in room "lobby" was not stored`,
          ),
        );
        assert.match(
          (result as PromiseRejectedResult).reason.message,
          /No space left on device/,
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
      const stored = await readRoom(path, "lobby");
      assert.deepEqual(stored.all, [1, 4]);
      assert.deepEqual(stored.messages.map((m) => m.text), [
        "kept 1",
        "kept 4",
      ]);
    } finally {
      await history.close();
    }
  });
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

test("fsync always: a commit resolves only once synced; a failed sync refuses it", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/history.db`;
    const events: string[] = [];
    let syncFails = false;
    const history = await History.open(path, {
      fsync: "always",
      wrapFile: (file) => ({
        write(bytes: Uint8Array): void {
          events.push("write");
          file.write(bytes);
        },
        truncate: (length) => file.truncate(length),
        async sync(): Promise<void> {
          events.push("sync");
          await file.sync();
          if (syncFails) throw new Error("Input/output error (os error 5)");
        },
      }),
    });
    try {
      assert.equal(history.fsync, "always");
      const first = history.append("lobby", entry("ann", "1"));
      const second = history.append("lobby", entry("ann", "2"));
      await Promise.all([first, second]);
      assert.deepEqual(events, ["write", "sync"], "one commit, synced once");
      // Lines that come while a sync is under way go into the next commit.
      const during: Promise<StoredMessage>[] = [];
      const third = history.append("lobby", entry("ann", "3"));
      await new Promise((resolve) => setImmediate(resolve));
      for (let i = 4; i <= 6; i++) {
        during.push(history.append("lobby", entry("ann", `${i}`)));
      }
      await Promise.all([third, ...during]);
      assert.deepEqual(events.length, 6, events.join());
      syncFails = true;
      await assert.rejects(
        history.append("lobby", entry("ann", "lost")),
        /was not stored: Input\/output error/,
      );
      syncFails = false;
      assert.equal((await history.append("lobby", entry("ann", "8"))).id, 8);
    } finally {
      await history.close();
    }
    assert.deepEqual(await storedIds(path, "lobby"), [1, 2, 3, 4, 5, 6, 8]);
  });
});

test("fsync periodic: lines resolve once written, synced within a second", async () => {
  await withTempDir(async (dir) => {
    let syncs = 0;
    const history = await History.open(`${dir}/history.db`, {
      wrapFile: (file) => ({
        write: (bytes) => file.write(bytes),
        truncate: (length) => file.truncate(length),
        sync(): Promise<void> {
          syncs++;
          return file.sync();
        },
      }),
    });
    try {
      assert.equal(history.fsync, "periodic");
      await history.append("lobby", entry("ann", "1"));
      assert.equal(
        syncs,
        1,
        "a room's first line waits for its ids' reservation",
      );
      await history.append("lobby", entry("ann", "2"));
      assert.equal(syncs, 1, "not synced before it resolves");
      await new Promise((resolve) => setTimeout(resolve, 1300));
      assert.equal(syncs, 2, "synced within the interval");
      await new Promise((resolve) => setTimeout(resolve, 1100));
      assert.equal(syncs, 2, "an idle history syncs nothing");
      await history.append("lobby", entry("ann", "3"));
    } finally {
      await history.close();
    }
    assert.equal(syncs, 3, "close syncs what is left");
  });
});

test("fsync periodic: a line written while a sync runs is synced after it", async () => {
  await withTempDir(async (dir) => {
    const syncs: number[] = [];
    const start = performance.now();
    const history = await History.open(`${dir}/history.db`, {
      wrapFile: (file) => ({
        write: (bytes) => file.write(bytes),
        truncate: (length) => file.truncate(length),
        async sync(): Promise<void> {
          // A slow disk: each sync takes longer than the interval.
          await new Promise((resolve) => setTimeout(resolve, 1200));
          await file.sync();
          syncs.push(performance.now() - start);
        },
      }),
    });
    try {
      // The room's first line waits for its ids' reservation to be synced.
      await history.append("lobby", entry("ann", "0"));
      await history.append("lobby", entry("ann", "1"));
      await new Promise((resolve) => setTimeout(resolve, 1100));
      // The sync of "1" is under way (1000 to 2200 ms from it): this line
      // came after it began, and its own sync falls due (2100 ms) while it
      // runs.
      await history.append("lobby", entry("ann", "2"));
      await new Promise((resolve) => setTimeout(resolve, 3500));
      assert.equal(syncs.length, 3, `synced at ${syncs.join(", ")} ms`);
    } finally {
      await history.close();
    }
  });
});

test("a file over its bound is compacted; a reopen sees the same; the lock holds", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/history.db`;
    const history = await History.open(path, { limit: 50 });
    let seen: { since: number; result: unknown }[] = [];
    let latest = 0;
    try {
      // Turns of 200 lines of 1 KB until the file was compacted twice
      // (compactions run in the background: they end when they end).
      const text = "x".repeat(1000);
      const rooms = ["a", "b", "c"];
      for (let turn = 0; history.compactions < 2 && turn < 1000; turn++) {
        const all: Promise<StoredMessage>[] = [];
        for (let i = 0; i < 200; i++) {
          all.push(history.append(rooms[i % 3], entry("ann", text)));
        }
        await Promise.all(all);
      }
      assert.ok(history.compactions >= 2, `${history.compactions} compactions`);
      // The file that replaced the first is locked as well.
      await assert.rejects(
        History.open(path),
        (error: unknown) =>
          error instanceof HistoryOpenError && error.step === "locked",
      );
      latest = history.latestId("a");
      seen = range(0, latest + 1).map((since) => ({
        since,
        result: history.since("a", since),
      }));
    } finally {
      await history.close();
    }
    const stored = await readRoom(path, "a");
    assert.deepEqual(stored.live, range(latest - 49, latest));
    // Far less than the 3 × latest lines of 1 KB written.
    assert.ok(stored.fileBytes < 3 * latest * 1000 / 2, "compacted");
    for (const room of ["b", "c"]) {
      assert.equal((await readRoom(path, room)).live.length, 50);
    }
    const files = [];
    for await (const file of Deno.readDir(dir)) files.push(file.name);
    assert.deepEqual(files, ["history.db"], "no compaction file left");
    const reopened = await History.open(path, { limit: 50 });
    try {
      for (const { since, result } of seen) {
        assert.deepEqual(reopened.since("a", since), result);
      }
      assert.equal(
        (await reopened.append("a", entry("x", "y"))).id,
        latest + 1,
      );
    } finally {
      await reopened.close();
    }
  });
});

/** Stores lines "1", "2" and "3" in room lobby at `path`, and closes. */
async function storeThree(path: string): Promise<void> {
  const history = await History.open(path);
  try {
    for (let i = 1; i <= 3; i++) {
      await history.append("lobby", entry("ann", `${i}`));
    }
  } finally {
    await history.close();
  }
}

test("after a power loss, ids go on past the synced reservation, never given again", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/history.db`;
    await storeThree(path);
    const records = (await Deno.readTextFile(path)).trimEnd().split("\n")
      .map((line) => JSON.parse(line));
    assert.deepEqual(records.at(-1), { type: "closed" });
    assert.deepEqual(
      records.filter((record) => record.type === "reserve"),
      [{ type: "reserve", room: "lobby", upTo: 1 + ID_RESERVATION }],
    );
    // Closed cleanly: ids go on exactly.
    const clean = await History.open(path);
    try {
      assert.equal((await clean.append("lobby", entry("ann", "4"))).id, 4);
    } finally {
      await clean.close();
    }
    // The same file as a power loss leaves it: written in another boot,
    // never closed, lines 5 and on (which clients may have seen) gone.
    const lines = (await Deno.readTextFile(path)).trimEnd().split("\n")
      .filter((line) => !line.includes('"closed"'))
      .map((line) =>
        line.replace(/"type":"boot","id":"[^"]*"/, '"type":"boot","id":"x"')
      );
    await Deno.writeTextFile(path, lines.join("\n") + "\n");
    const afterLoss = await History.open(path);
    try {
      assert.equal(afterLoss.latestId("lobby"), 4);
      // A client that saw a lost line is told it has a gap.
      assert.equal(afterLoss.since("lobby", 6).gap, true);
      const next = await afterLoss.append("lobby", entry("ann", "new"));
      assert.equal(next.id, 2 + ID_RESERVATION);
    } finally {
      await afterLoss.close();
    }
    // In the same boot, without a clean close (the process was killed),
    // every line written is there: ids go on exactly.
    const killed = (await Deno.readTextFile(path)).replace(
      '{"type":"closed"}\n',
      "",
    );
    await Deno.writeTextFile(path, killed);
    const again = await History.open(path);
    try {
      assert.equal(
        (await again.append("lobby", entry("ann", "x"))).id,
        3 + ID_RESERVATION,
      );
    } finally {
      await again.close();
    }
  });
});

test("a torn last line is dropped; damage before whole records is refused", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/history.db`;
    await storeThree(path);
    const whole = await Deno.readTextFile(path);
    // A power loss mid-write: half a record, then zeros.
    await Deno.writeTextFile(
      path,
      whole + '{"type":"message","id":4,"ro\0\0\0',
    );
    const reopened = await History.open(path);
    try {
      assert.deepEqual(ids(reopened.recent("lobby")), [1, 2, 3]);
      assert.equal((await reopened.append("lobby", entry("ann", "4"))).id, 4);
    } finally {
      await reopened.close();
    }
    assert.deepEqual(await storedIds(path, "lobby"), [1, 2, 3, 4]);
    // A record that is not one, with whole records after it.
    const lines = (await Deno.readTextFile(path)).split("\n");
    lines[2] = "garbage";
    await Deno.writeTextFile(path, lines.join("\n"));
    await assert.rejects(
      History.open(path),
      (error: unknown) =>
        error instanceof HistoryOpenError && error.step === "load" &&
        /line 3 is not a history record/.test(error.message),
    );
  });
});

test("a file that is no history is refused, and left as it was", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/notes.txt`;
    await Deno.writeTextFile(path, "not a history\n");
    await assert.rejects(
      History.open(path),
      (error: unknown) =>
        error instanceof HistoryOpenError && error.step === "store" &&
        /not a hubchat history header/.test(error.message),
    );
    assert.equal(await Deno.readTextFile(path), "not a history\n");
  });
});

/**
 * The child of the kill tests: appends forever, printing each stored id;
 * its arguments are the file, the limit and how long each text is.
 */
const CHILD_SCRIPT = `
import { History } from ${JSON.stringify(import.meta.resolve("./history.ts"))};
const history = await History.open(Deno.args[0], { limit: Number(Deno.args[1]) });
const pad = "x".repeat(Number(Deno.args[2]));
for (let n = 0; ; n++) {
  // A few appends per turn, never awaited in line, so commits overlap them.
  for (let i = 0; i < 20; i++) {
    history
      .append("lobby", { username: "child", text: "m" + n + "." + i + pad, timestamp: new Date().toISOString() })
      .then((message) => console.log(message.id));
  }
  await new Promise((resolve) => setTimeout(resolve, 1));
}
`;

/**
 * Runs the child on `path` until it printed `killAfter` ids, kills it with
 * SIGKILL, and returns the ids it printed (in order, checked).
 */
async function killChild(
  dir: string,
  path: string,
  args: { limit: number; pad: number; killAfter: number },
): Promise<number[]> {
  const script = `${dir}/child.ts`;
  await Deno.writeTextFile(script, CHILD_SCRIPT);
  const child = DenoChild.spawn(
    script,
    [path, String(args.limit), String(args.pad)],
    { cwd: dir },
  );
  const acknowledged: number[] = [];
  let exit: ChildExit;
  try {
    // An unfinished last line is not an acknowledgement: nextLine never
    // returns one.
    for (;;) {
      const line = await child.nextLine("the child's next id");
      if (line === null) break;
      acknowledged.push(Number(line));
      if (acknowledged.length === args.killAfter) child.kill("SIGKILL");
    }
  } finally {
    // Whatever happens, the child does not outlive the test.
    exit = await child.close();
  }
  const stderr = exit.stderr;
  assert.equal(exit.status.signal, "SIGKILL", `child ended early: ${stderr}`);
  assert.ok(acknowledged.length >= args.killAfter, stderr);
  assert.deepEqual(acknowledged, range(1, acknowledged.length));
  return acknowledged;
}

test("every id acknowledged before a SIGKILL is stored", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/history.db`;
    const acknowledged = await killChild(dir, path, {
      limit: 1_000_000,
      pad: 0,
      killAfter: 3000,
    });
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

test("a SIGKILL amid compactions loses nothing acknowledged", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/history.db`;
    // 4 KB lines: COMPACT_MIN_BYTES is passed after some 2,000 of them.
    const acknowledged = await killChild(dir, path, {
      limit: 50,
      pad: 4000,
      killAfter: 6000,
    });
    const history = await History.open(path, { limit: 50 });
    try {
      const latest = history.latestId("lobby");
      assert.ok(latest >= acknowledged.length);
      assert.deepEqual(
        ids(history.recent("lobby")),
        range(latest - 49, latest),
      );
      assert.equal(history.since("lobby", latest - 50).gap, false);
      assert.equal(history.since("lobby", latest - 51).gap, true);
    } finally {
      await history.close();
    }
    assert.ok(
      (await Deno.stat(path)).size < 2 * COMPACT_MIN_BYTES + MAX_COMMIT_BYTES,
      "compacted on the way",
    );
  });
});

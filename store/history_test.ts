import assert from "node:assert/strict";
import {
  DEFAULT_HISTORY_LIMIT,
  History,
  type StoredMessage,
} from "./history.ts";
import { visibleTo } from "../protocol.ts";
import {
  entry,
  ids,
  range,
  readRoom,
  storedIds,
  test,
} from "./history_test_util.ts";
import { withTempDir } from "../testing/temp_dir.ts";

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
      await first.append("lobby", entry("bob", "two", { to: "ann" }));
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
            entry("ann", text, { to: i % 4 === 0 ? "bob" : undefined }),
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
        history.append("lobby", {
          ...entry("ann", "a caption", { to: "bob" }),
          file,
        }),
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
    await history.append("lobby", entry("ann", "to bob", { to: "bob" }));
    await history.append("lobby", entry("carol", "to ann", { to: "ann" }));
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

test("a file line the loader would refuse is refused when appended; the store opens after", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/history.db`;
    const file = {
      id: "f00d",
      name: "cat.png",
      size: 1234,
      type: "image/png",
      url: "/files/f00d",
    };
    const history = await History.open(path);
    try {
      for (const bad of [{ ...file, size: 1.5 }, { ...file, url: 7 }, null]) {
        await assert.rejects(
          history.append("lobby", {
            ...entry("ann", ""),
            file: bad as unknown as typeof file,
          }),
          (error: unknown) =>
            error instanceof TypeError &&
            /entry\.file must be a file's description/.test(error.message),
        );
      }
      const stored = await history.append("lobby", {
        ...entry("ann", ""),
        file,
      });
      assert.equal(stored.id, 1, "the refused lines used no id");
    } finally {
      await history.close();
    }
    const reopened = await History.open(path);
    try {
      assert.deepEqual(reopened.recent("lobby").map((line) => line.type), [
        "file",
      ]);
    } finally {
      await reopened.close();
    }
  });
});

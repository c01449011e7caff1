import assert from "node:assert/strict";
import {
  COMPACT_MIN_BYTES,
  History,
  ID_RESERVATION,
  MAX_COMMIT_BYTES,
  type StoredMessage,
} from "./history.ts";
import { bootLine, headerLine, HistoryOpenError } from "./history_file.ts";
import { loadHistoryFile } from "./history_load.ts";
import { RoomTable } from "./history_rooms.ts";
import { type ChildExit, DenoChild } from "../testing/child_process.ts";
import {
  afterPowerLoss,
  durableFile,
  entry,
  failingFile,
  ids,
  range,
  readRoom,
  storedIds,
  test,
} from "./history_test_util.ts";
import { withTempDir } from "../testing/temp_dir.ts";

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

test("a compaction whose folder sync fails keeps the new file: lines after it survive a reopen", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/history.db`;
    const told: (Error | null)[] = [];
    let folderSyncs = 0;
    let folderFailed = false;
    const history = await History.open(path, {
      limit: 50,
      onCommit: (error) => told.push(error),
      wrapFolderSync: (sync) => (folder) => {
        folderSyncs++;
        if (folderSyncs > 1) return sync(folder);
        // Renamed already: opening the folder fails, as with EMFILE.
        folderFailed = true;
        return Promise.reject(new Error("Too many open files (os error 24)"));
      },
    });
    let latest = 0;
    try {
      const text = "x".repeat(1000);
      for (let turn = 0; !folderFailed && turn < 1000; turn++) {
        const all: Promise<StoredMessage>[] = [];
        for (let i = 0; i < 200; i++) {
          all.push(history.append("lobby", entry("ann", text)));
        }
        await Promise.all(all);
      }
      assert.ok(folderFailed, "a compaction renamed its file over the path");
      assert.ok(
        told.some((error) => /Too many open files/.test(error?.message ?? "")),
        "the failed folder sync is told",
      );
      // The file at the path is the one written through, and locked.
      await assert.rejects(
        History.open(path),
        (error: unknown) =>
          error instanceof HistoryOpenError && error.step === "locked",
      );
      for (let i = 1; i <= 3; i++) {
        latest = (await history.append("lobby", entry("ann", `after ${i}`)))
          .id;
      }
    } finally {
      await history.close();
    }
    assert.ok(folderSyncs >= 2, "the folder sync is tried again");
    const reopened = await History.open(path, { limit: 50 });
    try {
      assert.equal(reopened.latestId("lobby"), latest);
      assert.deepEqual(
        reopened.recent("lobby").slice(-3).map((line) => line.text),
        ["after 1", "after 2", "after 3"],
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

test("a reopen syncs its boot record before any line: a power loss after a clean close gives no shown id again", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/history.db`;
    await storeThree(path);
    // Synced by the close: what a power loss leaves if nothing is synced
    // after it.
    const closed = await Deno.readFile(path);
    const durable = durableFile(path);
    const history = await History.open(path, { wrapFile: durable.wrap });
    let shown: StoredMessage;
    let survived: Uint8Array;
    try {
      shown = await history.append("lobby", entry("ann", "4"));
      // The power goes as line 4 is shown.
      survived = durable.synced ?? closed;
    } finally {
      await history.close();
    }
    assert.equal(shown.id, 4);
    await afterPowerLoss(path, survived);
    const reopened = await History.open(path);
    try {
      const next = await reopened.append("lobby", entry("ann", "new"));
      assert.notEqual(next.id, shown.id, "a shown id is given again");
      assert.equal(next.id, 2 + ID_RESERVATION);
    } finally {
      await reopened.close();
    }
  });
});

test("a sync counts as synced only the reservations written before it began", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/history.db`;
    // Syncs finish when the test says, in the order it says.
    const gates = new Map<number, PromiseWithResolvers<void>>();
    let arrival = Promise.withResolvers<void>();
    let holding = true;
    const durable = durableFile(path, (sync) => {
      if (!holding) return Promise.resolve();
      const gate = Promise.withResolvers<void>();
      gates.set(sync, gate);
      arrival.resolve();
      arrival = Promise.withResolvers<void>();
      return gate.promise;
    });
    const held = async (sync: number) => {
      while (!gates.has(sync)) await arrival.promise;
      return gates.get(sync)!;
    };
    const history = await History.open(path, { wrapFile: durable.wrap });
    let shown: StoredMessage;
    let survived: Uint8Array;
    try {
      // Sync 1: room a's first line waits for its reservation.
      const first = history.append("a", entry("ann", "1"));
      (await held(1)).resolve();
      await first;
      // Sync 2, held: line 5002 of room a reserves ids ahead of need.
      const burst: Promise<StoredMessage>[] = [];
      for (let i = 2; i <= 5002; i++) {
        burst.push(history.append("a", entry("ann", `${i}`)));
      }
      await Promise.all(burst);
      const second = await held(2);
      // Sync 3: room b's first line, while sync 2 runs.
      const b = history.append("b", entry("ann", "1"));
      (await held(3)).resolve();
      await b;
      // Sync 4, held: room c's first line and its reservation.
      const c = history.append("c", entry("ann", "1"));
      const fourth = await held(4);
      // Sync 2 ends: it began before room c's reservation was written.
      second.resolve();
      await new Promise((resolve) => setTimeout(resolve, 0));
      fourth.reject(new Error("Input/output error (os error 5)"));
      await assert.rejects(c, /was not stored: Input\/output error/);
      holding = false;
      shown = await history.append("c", entry("ann", "2"));
      // The power goes as it is shown.
      survived = durable.synced!;
    } finally {
      holding = false;
      for (const gate of gates.values()) gate.resolve();
      await history.close();
    }
    await afterPowerLoss(path, survived);
    const reopened = await History.open(path);
    try {
      const next = await reopened.append("c", entry("ann", "new"));
      assert.ok(
        next.id > shown.id,
        `room c's next id is ${next.id}; expected one above ${shown.id}, shown before the loss`,
      );
    } finally {
      await reopened.close();
    }
  });
});

Deno.test("where the boot is unknown, an open's record still tells a later load the file was reopened", () => {
  const line = JSON.stringify({
    type: "message",
    id: 1,
    room: "lobby",
    ...entry("ann", "1"),
  });
  const closed = headerLine(100) + bootLine("an earlier boot") +
    `{"type":"reserve","room":"lobby","upTo":${1 + ID_RESERVATION}}\n` +
    line + '\n{"type":"closed"}\n';
  const nextId = (text: string, bootId: string | undefined) => {
    const rooms = new RoomTable();
    loadHistoryFile(new TextEncoder().encode(text), rooms, {
      limit: 100,
      bootId,
    });
    return rooms.get("lobby")?.nextId;
  };
  // Closed cleanly, and nothing after: ids go on exactly.
  assert.equal(nextId(closed, undefined), 2);
  // Reopened since, in a boot of no id: lines after it may be lost.
  for (const bootId of [undefined, "an earlier boot"]) {
    assert.equal(
      nextId(closed + bootLine(undefined), bootId),
      2 + ID_RESERVATION,
      `loaded in boot ${bootId}`,
    );
  }
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

test("a torn last line that ends inside a character is dropped; the file opens", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/history.db`;
    for (const character of ["é", "☕", "😀"]) {
      const size = new TextEncoder().encode(character).length;
      for (let cut = 1; cut < size; cut++) {
        await Deno.remove(path).catch(() => {});
        const history = await History.open(path);
        try {
          await history.append("lobby", entry("ann", "1"));
          await history.append("lobby", entry("ann", "2"));
          // The process dies while this line is written.
          await history.append("lobby", entry("ann", `café ${character}!`));
        } finally {
          await history.close();
        }
        const bytes = await Deno.readFile(path);
        const text = new TextDecoder().decode(bytes);
        const at = new TextEncoder().encode(
          text.slice(0, text.indexOf(`${character}!`)),
        ).length;
        await Deno.writeFile(path, bytes.subarray(0, at + cut));
        const reopened = await History.open(path);
        let next: StoredMessage;
        try {
          assert.deepEqual(
            reopened.recent("lobby").map((line) => line.text),
            ["1", "2"],
            `${character} cut after ${cut} of its ${size} bytes`,
          );
          next = await reopened.append("lobby", entry("ann", "after"));
        } finally {
          await reopened.close();
        }
        assert.ok(next.id > 2, `id ${next.id} after the torn line`);
        const again = await History.open(path);
        try {
          assert.deepEqual(ids(again.recent("lobby")), [1, 2, next.id]);
        } finally {
          await again.close();
        }
      }
    }
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

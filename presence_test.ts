import assert from "node:assert/strict";
import { compareCodePoints, DEFAULT_LARGE_ROOM, Presence } from "./presence.ts";
import { MEMBERS_PAGE_SIZE } from "./protocol.ts";

Deno.test("a small room announces every join and leave", () => {
  const presence = new Presence({ largeRoom: 3 });
  assert.equal(presence.add("ann"), "announce");
  assert.equal(presence.add("bob"), "announce");
  assert.equal(presence.add("cy"), "announce");
  assert.equal(presence.remove("bob"), "announce");
  assert.equal(presence.online, 2);
  assert.equal(presence.large, false);
  assert.deepEqual(presence.all(), ["ann", "cy"]);
  assert.deepEqual(presence.welcomeUsers(), ["ann", "cy"]);
});

Deno.test("past the threshold the room turns large, and small at half", () => {
  const presence = new Presence({ largeRoom: 4 });
  for (const name of ["a", "b", "c", "d"]) {
    assert.equal(presence.add(name), "announce");
  }
  assert.equal(presence.add("e"), "turned_large");
  assert.equal(presence.large, true);
  assert.equal(presence.add("f"), "count");
  // Back at the threshold and below it, but above half: still large.
  assert.equal(presence.remove("f"), "count");
  assert.equal(presence.remove("e"), "count");
  assert.equal(presence.remove("d"), "count");
  assert.equal(presence.large, true);
  // Half of 4: small again.
  assert.equal(presence.remove("c"), "turned_small");
  assert.equal(presence.large, false);
  assert.equal(presence.add("c"), "announce");
});

Deno.test("a large room's count is told at most once per tick, when changed", () => {
  const presence = new Presence({ largeRoom: 1 });
  presence.add("a");
  assert.equal(presence.add("b"), "turned_large");
  // Turning large tells the count at once: nothing new to tick.
  assert.equal(presence.changed, false);
  assert.equal(presence.tick(), null);
  presence.add("c");
  presence.add("d");
  assert.equal(presence.changed, true);
  assert.equal(presence.tick(), 4);
  assert.equal(presence.changed, false);
  // One came, one went: members changed, the count did not.
  presence.add("e");
  presence.remove("a");
  assert.equal(presence.changed, true);
  assert.equal(presence.tick(), null);
});

Deno.test("pages are in code point order, resumable after any name", () => {
  const presence = new Presence({ largeRoom: 100 });
  for (const name of ["émile", "bob", "Zoe", "ann", "cy"]) presence.add(name);
  assert.deepEqual(presence.page(undefined, 2), {
    users: ["Zoe", "ann"],
    next: "ann",
  });
  assert.deepEqual(presence.page("ann", 2), {
    users: ["bob", "cy"],
    next: "cy",
  });
  assert.deepEqual(presence.page("cy", 2), { users: ["émile"], next: null });
  // A name that left (or never was) still places the cursor.
  assert.deepEqual(presence.page("bz", 10), {
    users: ["cy", "émile"],
    next: null,
  });
  assert.deepEqual(presence.page("\u{10FFFF}", 10), {
    users: [],
    next: null,
  });
});

Deno.test("a page holds at most MEMBERS_PAGE_SIZE names", () => {
  const presence = new Presence({ largeRoom: 10 });
  const names: string[] = [];
  for (let i = 0; i < 250; i++) {
    const name = `user${String(i).padStart(3, "0")}`;
    names.push(name);
    presence.add(name);
  }
  assert.equal(presence.large, true);
  const first = presence.page(undefined, 1000);
  assert.equal(first.users.length, MEMBERS_PAGE_SIZE);
  assert.deepEqual(first.users, names.slice(0, MEMBERS_PAGE_SIZE));
  // The welcome of a large room carries the first page, not everyone.
  assert.deepEqual(presence.welcomeUsers(), first.users);
  const seen: string[] = [];
  let after: string | undefined;
  for (;;) {
    const page = presence.page(after);
    seen.push(...page.users);
    if (page.next === null) break;
    after = page.next;
  }
  assert.deepEqual(seen, names);
});

Deno.test("a large room's list is as of its last tick", () => {
  const presence = new Presence({ largeRoom: 1 });
  presence.add("b");
  presence.add("c");
  assert.deepEqual(presence.page(undefined).users, ["b", "c"]);
  presence.add("a");
  presence.remove("c");
  // Not sorted again until the tick: at most an interval old.
  assert.deepEqual(presence.page(undefined).users, ["b", "c"]);
  presence.tick();
  assert.deepEqual(presence.page(undefined).users, ["a", "b"]);
});

Deno.test("a small room's list is always current", () => {
  const presence = new Presence({ largeRoom: 10 });
  presence.add("b");
  assert.deepEqual(presence.page(undefined).users, ["b"]);
  presence.add("a");
  assert.deepEqual(presence.page(undefined).users, ["a", "b"]);
  presence.remove("b");
  assert.deepEqual(presence.page(undefined).users, ["a"]);
});

Deno.test("the threshold must be a whole number of at least 1", () => {
  assert.equal(new Presence().largeRoom, DEFAULT_LARGE_ROOM);
  assert.throws(() => new Presence({ largeRoom: 0 }), /at least 1/);
  assert.throws(() => new Presence({ largeRoom: 2.5 }), /whole number/);
});

Deno.test("names sort by code point, as their UTF-8 bytes do", () => {
  const names = ["b", "\u{1D49C}", "\uFF21", "a", "ab", "\u00E9"];
  const byBytes = [...names].sort((x, y) => {
    const [p, q] = [new TextEncoder().encode(x), new TextEncoder().encode(y)];
    for (let i = 0; i < Math.min(p.length, q.length); i++) {
      if (p[i] !== q[i]) return p[i] - q[i];
    }
    return p.length - q.length;
  });
  assert.deepEqual([...names].sort(compareCodePoints), byBytes);
  assert.deepEqual(byBytes, ["a", "ab", "b", "\u00E9", "\uFF21", "\u{1D49C}"]);
});

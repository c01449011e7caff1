/**
 * End-to-end tests of the web client (home.html) in headless Chromium,
 * driven by Puppeteer through `testing/browser.ts`: real pages, real
 * WebSockets, a real server (in-process, or `main.ts` as a child process
 * for the restart test). browser_page_test.ts has the page's own features.
 *
 * They need Chromium (`apt-get install -y chromium`; .ci/run installs it).
 * Without it they fail with that instruction: they never skip. Every wait
 * is on a DOM condition and bounded; nothing asserts on timing. A failing
 * test writes a screenshot and the HTML of each open page to temporary
 * files and names them in its error.
 *
 * @module
 */

import assert from "node:assert/strict";
import {
  browserTest,
  chatLines,
  fill,
  frames,
  joinAs,
  type Page,
  say,
  waitFor,
  waitForLine,
  waitOnline,
} from "./testing/browser.ts";
import { ChatClient } from "./testing/chat_client.ts";
import { ChildServer } from "./testing/child_server.ts";

const js = JSON.stringify;

/** Every `.msg[data-id]` id the page shows, with how often. */
async function idCounts(page: Page): Promise<Map<string, number>> {
  const ids = await page.evaluate(
    `[...document.querySelectorAll("#log .msg[data-id]")].map((m) => m.dataset.id)`,
  ) as string[];
  const counts = new Map<string, number>();
  for (const id of ids) counts.set(id, (counts.get(id) ?? 0) + 1);
  return counts;
}

/** Asserts no line is shown twice, by id and by (user, text). */
async function assertNoDuplicates(page: Page, who: string): Promise<void> {
  const twice = [...(await idCounts(page))].filter(([, n]) => n > 1);
  assert.deepEqual(twice, [], `${who}: ids shown more than once`);
  const shown = (await chatLines(page)).map((l) => `${l.user}: ${l.text}`);
  const seen = new Set<string>();
  const repeated = shown.filter((l) => seen.has(l) || !seen.add(l));
  assert.deepEqual(repeated, [], `${who}: lines shown more than once`);
}

// ------------------------------------------------------------------ tests

browserTest("two pages chat with each other", async ({ join }) => {
  const ann = await join("ann");
  const bob = await join("bob");
  await waitFor(ann, `!!document.querySelector('#users li[data-user="bob"]')`, {
    what: "bob in ann's user list",
  });
  await waitFor(
    ann,
    `document.getElementById("online-count").textContent.trim() === "2"`,
    { what: "ann's online count to be 2" },
  );

  await say(ann, "hi bob");
  await waitForLine(bob, "ann", "hi bob");
  await say(bob, "hello ann");
  await waitForLine(ann, "bob", "hello ann");
  await waitForLine(ann, "ann", "hi bob");

  for (const page of [ann, bob]) {
    const shown = (await chatLines(page)).map((l) => [l.user, l.who, l.text]);
    assert.deepEqual(shown, [
      ["ann", "ann", "hi bob"],
      ["bob", "bob", "hello ann"],
    ]);
    for (const line of await chatLines(page)) {
      assert.match(line.time ?? "", /^\d{4}-\d{2}-\d{2}T/, "a <time datetime>");
    }
  }

  // bob leaves: ann sees it in the list and the log.
  await bob.close();
  await waitFor(ann, `!document.querySelector('#users li[data-user="bob"]')`, {
    what: "bob gone from ann's user list",
  });
  await waitFor(
    ann,
    `[...document.querySelectorAll('#log .sys[data-type="leave"]')]
      .some((n) => n.textContent.includes("bob"))`,
    { what: "a leave line for bob" },
  );
});

browserTest("a <script> payload renders as text", async ({ join }) => {
  const ann = await join("ann");
  const bob = await join("bob");
  const payload = `<script>window.__pwned = 1</script>` +
    `<img src=x onerror="window.__pwned = 2"><b>bold</b> & "quotes" 'too'`;
  await say(ann, payload);
  await waitForLine(bob, "ann", payload);
  await waitForLine(ann, "ann", payload);
  for (const page of [ann, bob]) {
    const injected = await page.evaluate(
      `document.querySelectorAll("#log script, #log img, #log b").length`,
    ) as number;
    assert.equal(injected, 0, "no element was made from the text");
    assert.equal(
      await page.evaluate(`typeof window.__pwned`),
      "undefined",
      "no script ran",
    );
  }
});

browserTest(
  "scroll position is kept when scrolled up, and follows at the bottom",
  async ({ join, server, track }) => {
    const bob = await join("bob");
    const carl = track(await ChatClient.join(server.port, "carl"));
    for (let i = 1; i <= 40; i++) carl.say(`line ${i}`);
    await waitForLine(bob, "carl", "line 40");
    const metrics = `(() => { const l = document.getElementById("log");
      return { top: l.scrollTop, height: l.scrollHeight, client: l.clientHeight }; })()`;
    type Metrics = { top: number; height: number; client: number };
    await frames(bob);
    let m = await bob.evaluate(metrics) as Metrics;
    assert.ok(m.height > m.client * 1.5, `the log overflows: ${js(m)}`);
    // It followed the new lines while at the bottom.
    await waitFor(
      bob,
      `(() => { const l = document.getElementById("log");
        return l.scrollTop + l.clientHeight >= l.scrollHeight - 8; })()`,
      { what: "the log at the bottom after 40 lines" },
    );

    // The reader scrolls up; new lines must not move the view.
    const top = Math.floor((m.height - m.client) / 3);
    await bob.evaluate(`document.getElementById("log").scrollTop = ${top}`);
    await frames(bob);
    m = await bob.evaluate(metrics) as Metrics;
    const kept = m.top;
    assert.ok(Math.abs(kept - top) <= 1, `scrolled up to ${top}: ${js(m)}`);
    for (let i = 41; i <= 50; i++) carl.say(`line ${i}`);
    await waitForLine(bob, "carl", "line 50");
    await frames(bob);
    m = await bob.evaluate(metrics) as Metrics;
    assert.equal(m.top, kept, `the view stayed where the reader left it`);

    // Back at the bottom, it follows again.
    await bob.evaluate(
      `document.getElementById("log").scrollTop = document.getElementById("log").scrollHeight`,
    );
    await frames(bob);
    for (let i = 51; i <= 55; i++) carl.say(`line ${i}`);
    await waitForLine(bob, "carl", "line 55");
    await waitFor(
      bob,
      `(() => { const l = document.getElementById("log");
        return l.scrollTop + l.clientHeight >= l.scrollHeight - 8; })()`,
      { what: "the log to follow new lines at the bottom" },
    );
  },
);

browserTest("a third page joins and sees the history", async ({ join }) => {
  const ann = await join("ann");
  const bob = await join("bob");
  await say(ann, "first");
  await say(bob, "second");
  await say(ann, "third <i>x</i>");
  await waitForLine(bob, "ann", "third <i>x</i>");

  const cat = await join("cat");
  await waitForLine(cat, "ann", "third <i>x</i>");
  const seen = await chatLines(cat);
  assert.deepEqual(
    seen.map((l) => [l.user, l.text]),
    [["ann", "first"], ["bob", "second"], ["ann", "third <i>x</i>"]],
  );
  const ids = seen.map((l) => l.id);
  assert.ok(ids.every((id) => id !== null), `every line has data-id: ${ids}`);
  const numbers = ids.map(Number);
  assert.deepEqual(
    [...numbers].sort((a, b) => a - b),
    numbers,
    "history in id order",
  );
  // The ids are the ones the others saw live.
  assert.deepEqual((await chatLines(ann)).map((l) => l.id), ids);
  await assertNoDuplicates(cat, "cat");

  // Live lines after the history still arrive once.
  await say(bob, "welcome cat");
  await waitForLine(cat, "bob", "welcome cat");
  await assertNoDuplicates(cat, "cat");
});

browserTest("typing shows up on the other page", async ({ join }) => {
  const ann = await join("ann");
  const bob = await join("bob");
  await ann.type("#message-input", "hel");
  await waitFor(
    bob,
    `(() => { const t = document.getElementById("typing");
      return !!t && t.offsetParent !== null && t.textContent.includes("ann"); })()`,
    { what: "bob's #typing to name ann" },
  );
  // ann's own page does not tell ann that ann is typing.
  assert.equal(
    await ann.evaluate(
      `document.getElementById("typing").textContent.includes("ann")`,
    ),
    false,
  );
  await ann.type("#message-input", "lo");
  await ann.keyboard.press("Enter");
  await waitForLine(bob, "ann", "hello");
  await waitFor(
    bob,
    `!document.getElementById("typing").textContent.includes("ann")`,
    { what: "bob's #typing to clear once ann's line arrived" },
  );
});

for (const signal of ["SIGTERM", "SIGKILL"] as const) {
  browserTest(
    `a page reconnects after the server restarts (${signal}), with no duplicate lines`,
    async ({ browser, track }) => {
      const dir = await Deno.makeTempDir({ prefix: "hubchat-restart-" });
      track({ close: () => Deno.remove(dir, { recursive: true }) });
      const data = `${dir}/chat.kv`;
      const flags = ["--rate", "0"];
      let server = track(await ChildServer.start(flags, { data }));
      const url = server.url;

      const ann = await browser.newPage();
      await joinAs(ann, url, "ann");
      const bob = await browser.newPage();
      await joinAs(bob, url, "bob");
      await say(ann, "before 1");
      await say(bob, "before 2");
      await waitForLine(ann, "bob", "before 2");
      await waitForLine(bob, "ann", "before 1");

      // ann's network goes away (her socket stays up until the server drops
      // it); the server stops and starts again on the same port and file.
      await ann.setOfflineMode(true);
      const exit = await server.stop(signal);
      if (signal === "SIGTERM") {
        assert.equal(
          exit.status.code,
          0,
          `exit code; output:\n${exit.stdout}${exit.stderr}`,
        );
      }
      for (const page of [ann, bob]) {
        await waitFor(
          page,
          `document.getElementById("status").dataset.state !== "online"`,
          { what: "#status to leave online when the server stopped" },
        );
      }
      // The same port and history file: the page's URL stays valid.
      server = track(
        await ChildServer.start(flags, { port: server.port, data }),
      );

      // bob comes back by himself and talks while ann cannot connect.
      await waitOnline(bob, 20_000);
      await say(bob, "while ann was away 1");
      await say(bob, "while ann was away 2");
      await waitForLine(bob, "bob", "while ann was away 2");
      await waitFor(
        ann,
        `document.getElementById("status").dataset.state !== "online"`,
        { what: "ann still offline" },
      );

      await ann.setOfflineMode(false);
      await waitOnline(ann, 20_000);
      await waitForLine(ann, "bob", "while ann was away 2");
      await say(ann, "after");
      await waitForLine(bob, "ann", "after");
      await waitForLine(ann, "ann", "after");

      const expected = [
        ["ann", "before 1"],
        ["bob", "before 2"],
        ["bob", "while ann was away 1"],
        ["bob", "while ann was away 2"],
        ["ann", "after"],
      ];
      for (const [who, page] of [["ann", ann], ["bob", bob]] as const) {
        await assertNoDuplicates(page, who);
        const shown = await chatLines(page);
        assert.deepEqual(shown.map((l) => [l.user, l.text]), expected, who);
        assert.ok(shown.every((l) => l.id !== null), `${who}: all have ids`);
        const counts = await idCounts(page);
        assert.equal(counts.size, expected.length, `${who}: distinct ids`);
        assert.equal(
          await page.evaluate(`document.querySelectorAll("#log .gap").length`),
          0,
          `${who}: no gap marker (history covered the outage)`,
        );
      }
    },
  );
}

/** Goes to `room` through the "join or create a room" form. */
async function goToRoom(page: Page, room: string): Promise<void> {
  await fill(page, "#new-room-input", room);
  await page.keyboard.press("Enter");
  await waitInRoom(page, room);
}

async function waitInRoom(page: Page, room: string): Promise<void> {
  await waitFor(
    page,
    `document.getElementById("room-name")?.textContent.trim() === ${js(room)} &&
      document.getElementById("status").dataset.state === "online" &&
      !!document.querySelector(${js(`#rooms li[data-room="${room}"]`)})`,
    { what: `the page to be in #${room}` },
  );
}

browserTest(
  "rooms keep conversations apart, and a DM reaches only its recipient",
  async ({ join }) => {
    const ann = await join("ann");
    const bob = await join("bob");
    const cat = await join("cat");
    await say(ann, "in the lobby");
    await waitForLine(cat, "ann", "in the lobby");

    // ann opens #dev and talks there; bob follows and gets its history.
    await goToRoom(ann, "dev");
    assert.deepEqual(await chatLines(ann), [], "a new room starts empty");
    await say(ann, "in dev");
    await goToRoom(bob, "dev");
    await waitForLine(bob, "ann", "in dev");
    assert.deepEqual(
      (await chatLines(bob)).map((l) => l.text),
      ["in dev"],
      "bob sees #dev's lines only",
    );
    await waitFor(
      bob,
      `!!document.querySelector('#users li[data-user="ann"]') &&
        !document.querySelector('#users li[data-user="cat"]')`,
      { what: "#dev's user list: ann, not cat" },
    );
    // cat, in the lobby, saw nothing of #dev.
    await say(cat, "still in the lobby");
    await waitForLine(cat, "cat", "still in the lobby");
    assert.deepEqual(
      (await chatLines(cat)).map((l) => l.text),
      ["in the lobby", "still in the lobby"],
    );

    // bob goes back to the lobby from the room list and sees its history.
    await bob.click('#rooms li[data-room="lobby"] button');
    await waitInRoom(bob, "lobby");
    await waitForLine(bob, "cat", "still in the lobby");
    assert.deepEqual(
      (await chatLines(bob)).map((l) => l.text),
      ["in the lobby", "still in the lobby"],
    );

    // A DM from bob to cat, picked from the user list.
    await bob.click('#users li[data-user="cat"] button');
    await waitFor(
      bob,
      `(() => { const t = document.getElementById("dm-target");
        return !t.hidden && t.dataset.user === "cat"; })()`,
      { what: "#dm-target to show cat" },
    );
    await say(bob, "psst, cat");
    await waitForLine(cat, "bob", "psst, cat");
    await waitForLine(bob, "bob", "psst, cat");
    // Back to the room: a public line after it reaches ann's lobby page…
    await bob.click("#dm-cancel");
    await waitFor(bob, `document.getElementById("dm-target").hidden`, {
      what: "#dm-target hidden after cancel",
    });
    await goToRoom(ann, "lobby");
    await say(bob, "public again");
    await waitForLine(ann, "bob", "public again");
    // …and the DM never reached her, live or from history.
    const annSees = (await chatLines(ann)).map((l) => l.text);
    assert.ok(!annSees.includes("psst, cat"), `ann saw the DM: ${annSees}`);
    for (const [who, page] of [["ann", ann], ["bob", bob], ["cat", cat]]) {
      await assertNoDuplicates(page as Page, who as string);
    }
  },
);

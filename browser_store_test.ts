/**
 * The chat page with a shared chat store, in headless Chromium:
 * a `reset` (the store lost its data; ids start again) clears the log and
 * the ids seen and shows what the store holds, with a note; a line refused
 * with `unavailable` is said in place and kept in the composer; a join
 * refused because the store is unreachable keeps trying. The first two are
 * frames crafted through the page's `handleFrame`; the last test does it
 * all for real, against a real redis-server (testing/redis_server.ts)
 * killed and restarted empty.
 *
 * @module
 */

import assert from "node:assert/strict";
import { startServer } from "./server.ts";
import {
  assertReadable,
  browserTest,
  chatLines,
  fill,
  goOffline,
  joinAs,
  logEntries,
  openChat,
  type Page,
  PHONE,
  say,
  snapshot,
  typeAndSend,
  waitFor,
  waitForLine,
  waitOnline,
} from "./testing/browser.ts";
import { ChatClient } from "./testing/chat_client.ts";
import { RedisServer } from "./testing/redis_server.ts";
import { nextMatching } from "./testing/scene.ts";
import { waitUntil } from "./testing/wait.ts";

const js = JSON.stringify;

const RESET_NOTE = "History was reset by the server";

const UNAVAILABLE_NOTICE =
  "Couldn't send: the chat server's store is unreachable; try again shortly.";

/** Hands the page frames as if the server had sent them. */
async function feed(page: Page, ...messages: object[]): Promise<void> {
  await page.evaluate(
    `handleFrame(${js(messages.map((m) => js(m)).join("\n"))})`,
  );
}

/** A chat line of the lobby, as the server would send it. */
function line(id: number, username: string, text: string): object {
  return {
    type: "message",
    id,
    room: "lobby",
    username,
    text,
    timestamp: new Date().toISOString(),
  };
}

/** The shown lines as [sender, text, id]. */
async function shown(page: Page): Promise<(string | null)[][]> {
  return (await chatLines(page)).map((l) => [l.user, l.text, l.id]);
}

async function waitForResetNote(page: Page): Promise<void> {
  await waitFor(
    page,
    `[...document.querySelectorAll('#log [data-type="reset"] .text')].some((n) =>
      n.textContent === ${js(RESET_NOTE)})`,
    { what: "the reset note" },
  );
}

/** The composer's notice, once shown. */
async function notice(page: Page): Promise<{ text: string; kind: string }> {
  await waitFor(page, `!document.getElementById("notice").hidden`, {
    what: "a notice above the composer",
  });
  return await page.evaluate(
    `(() => { const n = document.getElementById("notice");
    return { text: n.textContent, kind: n.dataset.kind }; })()`,
  ) as {
    text: string;
    kind: string;
  };
}

async function composerText(page: Page): Promise<string> {
  return await page.evaluate(
    `document.getElementById("message-input").value`,
  ) as string;
}

// ------------------------------------------------------------------ tests

browserTest(
  "a reset clears the log and the ids seen, shows what the store holds, and says so",
  async ({ join, server, track }) => {
    const erin = await join("erin", { viewport: PHONE, colorScheme: "dark" });
    const ann = track(await ChatClient.join(server.port, "ann"));
    for (const text of ["one", "two", "three"]) {
      ann.say(text);
      await waitForLine(erin, "ann", text);
    }
    assert.deepEqual((await shown(erin)).map(([, , id]) => id), [
      "1",
      "2",
      "3",
    ]);
    await erin.evaluate(`state.epochs.set("lobby", "e1")`);

    // The store lost everything but one line, and its ids start again.
    await feed(erin, {
      type: "reset",
      room: "lobby",
      history: [line(1, "ann", "kept by the store")],
      timestamp: new Date().toISOString(),
    });
    await waitForResetNote(erin);
    assert.deepEqual(await shown(erin), [["ann", "kept by the store", "1"]]);
    assert.deepEqual(await logEntries(erin), ["room-intro", "reset", "line"]);
    assert.deepEqual(
      await erin.evaluate(
        `[[...state.seen], state.lastId.get("lobby"), state.epochs.has("lobby")]`,
      ),
      [[1], 1, false],
      "the ids seen and the epoch forgotten, the new line's id kept",
    );

    // Ids of the old life mean new lines now: shown once each.
    await feed(
      erin,
      line(2, "ann", "two, again"),
      line(1, "ann", "kept by the store"),
    );
    await waitForLine(erin, "ann", "two, again");
    assert.deepEqual(await shown(erin), [
      ["ann", "kept by the store", "1"],
      ["ann", "two, again", "2"],
    ]);
    await assertReadable(erin, ['#log [data-type="reset"] .text']);
    await snapshot(erin, "store-reset-phone-dark");
  },
);

browserTest(
  "a line refused because the store is unreachable is said in place and kept in the composer",
  async ({ join }) => {
    const erin = await join("erin", { viewport: PHONE });
    // The line goes nowhere; the server's refusal is crafted.
    await erin.evaluate(`state.ws.send = () => {}`);
    await say(erin, "are you there?");
    await feed(erin, {
      type: "error",
      code: "unavailable",
      text:
        "the chat store is unreachable, so the message was not sent; try again shortly",
      timestamp: new Date().toISOString(),
    });
    assert.deepEqual(await notice(erin), {
      text: UNAVAILABLE_NOTICE,
      kind: "error",
    });
    assert.equal(await composerText(erin), "are you there?");
    await assertReadable(erin, ["#notice"]);
    await snapshot(erin, "store-unavailable-phone-light");

    // The store is back: Enter sends it again.
    await erin.evaluate(`delete state.ws.send`);
    await erin.focus("#message-input");
    await erin.keyboard.press("Enter");
    await waitForLine(erin, "erin", "are you there?");
    assert.equal(await composerText(erin), "");
  },
);

browserTest(
  "with Redis: a store restarted empty resets the pages, a refused line is kept, a join waits for the store",
  async ({ browser, track }) => {
    const redis = await RedisServer.start({ appendonly: false });
    track({ close: () => redis.stop() });
    const server = await startServer({
      port: 0,
      hostname: "127.0.0.1",
      redis: redis.url,
      ratePerSecond: 0,
    });
    track({ close: () => server.shutdown() });
    const healthz = `${server.url}healthz`;

    // ann stays connected throughout; bob will be away during the reset;
    // cy (a bot) hears the reset as the server sends it.
    const ann = await browser.newPage();
    await joinAs(ann, server.url, "ann");
    const bob = await browser.newPage({ viewport: PHONE, colorScheme: "dark" });
    await joinAs(bob, server.url, "bob");
    const cy = track(await ChatClient.join(server.port, "cy"));
    await say(ann, "before 1");
    await say(bob, "before 2");
    for (const page of [ann, bob]) await waitForLine(page, "bob", "before 2");

    // bob reconnects: his welcome names the store's epoch, kept for later.
    await bob.evaluate(`state.ws.close()`);
    // The page is "online" until its socket's close event, and its epoch
    // is from the first welcome: see the close before waiting for the new one.
    await waitFor(bob, `state.conn !== "online"`, {
      what: "bob's page to see its socket closed",
    });
    await waitFor(bob, `state.epochs.has("lobby") && state.conn === "online"`, {
      what: "bob back, with the lobby's epoch",
    });
    const epoch = await bob.evaluate(`state.epochs.get("lobby")`) as string;
    // Then he goes away.
    await goOffline(bob);

    // Redis dies: the server says so, refuses lines, and refuses joins.
    await redis.kill("SIGKILL");
    await waitUntil(async () => {
      const response = await fetch(healthz);
      await response.body?.cancel();
      return response.status === 503;
    }, "/healthz to say degraded");
    await typeAndSend(ann, "while the store is away");
    assert.deepEqual(await notice(ann), {
      text: UNAVAILABLE_NOTICE,
      kind: "error",
    });
    assert.equal(await composerText(ann), "while the store is away");

    const dan = await browser.newPage({ viewport: PHONE });
    await openChat(dan, server.url);
    await fill(dan, "#name-input", "dan");
    await dan.click("#join");
    // dan keeps trying: the chat view, the reason, no name form.
    assert.deepEqual(await notice(dan), {
      text:
        "Can't connect yet: the chat server's store is unreachable. Trying again…",
      kind: "info",
    });
    assert.equal(
      await dan.evaluate(`document.getElementById("name-view").hidden`),
      true,
    );
    await snapshot(dan, "store-away-join-phone-light");

    // Redis is back, empty: a new life of the store.
    await redis.restart();
    const reset = await nextMatching(
      () => cy.next("a reset", 20_000),
      (m) => m.type === "reset",
      "a reset",
    );
    assert.deepEqual((reset as { history: unknown[] }).history, []);

    // ann, connected, is told: her log starts over; her line is still
    // in the composer, and goes through now.
    await waitForResetNote(ann);
    assert.deepEqual(await shown(ann), []);
    assert.equal(await composerText(ann), "while the store is away");
    await ann.focus("#message-input");
    await ann.keyboard.press("Enter");
    await waitForLine(ann, "ann", "while the store is away");
    assert.deepEqual(await shown(ann), [[
      "ann",
      "while the store is away",
      "1",
    ]]);

    // dan got in by himself.
    await waitOnline(dan, 20_000);
    await waitForLine(dan, "ann", "while the store is away");
    await waitFor(dan, `document.getElementById("notice").hidden`, {
      what: "dan's notice gone",
    });

    // bob comes back with since and the old epoch: the server says the
    // store lost its data (gap), and his log starts over as ann's did.
    await bob.setOfflineMode(false);
    await waitOnline(bob, 20_000);
    assert.equal(await bob.evaluate(`state.sentEpoch`), epoch);
    await waitForResetNote(bob);
    await waitForLine(bob, "ann", "while the store is away");
    assert.deepEqual(await shown(bob), [[
      "ann",
      "while the store is away",
      "1",
    ]]);
    assert.equal(
      await bob.evaluate(
        `document.querySelectorAll("#log .sys.gap[data-type=gap]").length`,
      ),
      0,
      "a reset, not a gap",
    );
    await say(bob, "back");
    for (const page of [ann, bob, dan]) await waitForLine(page, "bob", "back");
    for (const page of [ann, bob, dan]) {
      const ids = (await chatLines(page)).map((l) => l.id);
      assert.deepEqual(ids, ["1", "2"], "each line once");
    }
  },
);

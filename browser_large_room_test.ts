/**
 * The chat page in a large room, in headless Chromium against a
 * server whose rooms turn large past a handful of members (`largeRoom`), so
 * a few bots make one: the count shown at once and kept up to date, no join
 * or leave lines, the member list loaded when the panel opens and a page
 * more as it scrolls, a direct message from that list, and the room turning
 * small again. The layout test looks at the member panel at phone and
 * desktop widths, light and dark (`HUBCHAT_SCREENSHOTS=DIR` keeps its
 * screenshots).
 *
 * @module
 */

import assert from "node:assert/strict";
import type { ChatMessage } from "./protocol.ts";
import {
  assertApart,
  assertHeaderFits,
  assertReadable,
  browserTest,
  type BrowserTestContext,
  chatLines,
  DESKTOP,
  joinAs,
  LAYOUTS,
  logEntries,
  onlineList,
  openPeoplePanel,
  type Page,
  type PageOptions,
  PHONE,
  say,
  snapshot,
  typeAndSend,
  waitFor,
  waitForLine,
} from "./testing/browser.ts";
import { ChatClient } from "./testing/chat_client.ts";
import { nextMatching } from "./testing/scene.ts";

const js = JSON.stringify;

/** Members above which a room is large, in these tests. */
const LARGE_ROOM = 3;

/** Bots arriving at once, as a crowd of browsers would. */
const ARRIVING = 25;

/**
 * Bots named `names`, in the lobby, a batch at a time: each is in once its
 * welcome came (a large room announces no join, the bot's own included).
 */
async function crowd(
  { server, track }: BrowserTestContext,
  names: string[],
): Promise<Map<string, ChatClient>> {
  const bots = new Map<string, ChatClient>();
  for (let start = 0; start < names.length; start += ARRIVING) {
    await Promise.all(
      names.slice(start, start + ARRIVING).map(async (name) => {
        bots.set(name, track(await ChatClient.arrive(server.port, name)));
      }),
    );
  }
  return bots;
}

/** Records, in the page, every frame it sends over its WebSockets. */
const RECORD_SENT = `(() => {
  const send = WebSocket.prototype.send;
  window.__sent = [];
  WebSocket.prototype.send = function (data) { window.__sent.push(String(data)); return send.call(this, data); };
})()`;

/** Opens a page that records what it sends, and joins as `name`. */
async function joinRecording(
  { browser, server }: BrowserTestContext,
  name: string,
  options: PageOptions = {},
): Promise<Page> {
  const page = await browser.newPage(options);
  await page.evaluateOnNewDocument(RECORD_SENT);
  await joinAs(page, server.url, name);
  return page;
}

/** The member-list requests the page sent, in order. */
async function membersAsked(page: Page): Promise<object[]> {
  return await page.evaluate(
    `window.__sent.map((frame) => JSON.parse(frame)).filter((m) => m.type === "members")`,
  ) as object[];
}

/** The count the page's header shows. */
async function onlineCount(page: Page): Promise<string> {
  return await page.evaluate(
    `document.getElementById("online-count").textContent`,
  ) as string;
}

async function waitForCount(page: Page, online: number): Promise<void> {
  await waitFor(
    page,
    `document.getElementById("online-count").textContent === ${
      js(String(online))
    }`,
    { what: `${online} online` },
  );
}

/** The text of the log's system lines of `type`. */
async function systemLines(page: Page, type: string): Promise<string[]> {
  return await page.evaluate(
    `[...document.querySelectorAll(${
      js(`#log .sys[data-type="${type}"] .text`)
    })].map((n) => n.textContent)`,
  ) as string[];
}

const BUSY = "Many people are here, so joins and leaves are not shown.";

/** Scrolls the online list to its end, as a reader would. */
async function scrollListToEnd(page: Page): Promise<void> {
  await page.evaluate(
    `(() => { const list = document.getElementById("users"); list.scrollTop = list.scrollHeight; })()`,
  );
}

/** The names of `count` bots: m000, m001… */
function botNames(count: number): string[] {
  return Array.from(
    { length: count },
    (_, i) => `m${String(i).padStart(3, "0")}`,
  );
}

// ------------------------------------------------------------------ tests

browserTest(
  "a large room shows its count at once and as it changes, and no joins or leaves",
  async (context) => {
    const bots = await crowd(context, ["ann", "bob", "cy", "dee", "eve"]);
    // The server sends the count when it sorts its member list again: a
    // page asked for from then on is up to date.
    await nextMatching(
      () => bots.get("ann")!.next("the count of 5"),
      (m) => m.type === "online" && m.online === 5,
      "the count of 5",
    );
    const erin = await joinRecording(context, "erin");
    // The welcome's count, shown with the welcome: 5 bots and erin.
    assert.equal(await onlineCount(erin), "6");
    // Erin first, then the welcome's page.
    assert.deepEqual(await onlineList(erin), [
      "erin",
      "ann",
      "bob",
      "cy",
      "dee",
      "eve",
    ]);
    assert.deepEqual(await logEntries(erin), ["room-intro", "join", "mode"]);
    assert.deepEqual(await systemLines(erin, "join"), ["You joined as erin"]);
    assert.deepEqual(await systemLines(erin, "mode"), [BUSY]);

    // Arrivals and departures: the count follows (an `online` message at
    // most once a second), and the log says nothing of them.
    const more = await crowd(context, ["fay", "gil"]);
    await waitForCount(erin, 8);
    await bots.get("ann")!.close();
    await waitForCount(erin, 7);
    more.get("gil")!.say("hello, busy room");
    await waitForLine(erin, "gil", "hello, busy room");
    assert.deepEqual(await logEntries(erin), [
      "room-intro",
      "join",
      "mode",
      "line",
    ]);
    assert.equal(
      await erin.evaluate(`document.querySelectorAll("#log .presence").length`),
      0,
    );

    // The list is what was loaded; it says so, and loads again on demand.
    assert.equal(
      await erin.evaluate(`document.getElementById("users-hint").textContent`),
      "6 of 7 shown. Pick a name to send a private message.",
    );
    // ann is still listed, and gone: only the server can tell.
    await erin.click('#users li[data-user="ann"] button');
    await typeAndSend(erin, "still there, ann?");
    await waitFor(
      erin,
      `document.getElementById("notice").textContent ===
        "ann is not in #lobby right now, so the private message was not sent." &&
        document.getElementById("message-input").value === "still there, ann?" &&
        document.getElementById("dm-target").dataset.offline === ""`,
      { what: "the DM refused, kept, and its target shown as gone" },
    );
    await erin.click("#dm-cancel");
    await erin.click("#users-refresh");
    await waitFor(
      erin,
      `!document.querySelector('#users li[data-user="ann"]') &&
        !!document.querySelector('#users li[data-user="gil"]')`,
      { what: "the list loaded again: ann gone, gil there" },
    );
    assert.deepEqual(await onlineList(erin), [
      "erin",
      "bob",
      "cy",
      "dee",
      "eve",
      "fay",
      "gil",
    ]);
    assert.deepEqual(await membersAsked(erin), [{ type: "members" }]);
    assert.equal(
      await erin.evaluate(`document.getElementById("users-hint").textContent`),
      "Pick a name to send a private message.",
    );
  },
  { server: { largeRoom: LARGE_ROOM } },
);

browserTest(
  "a large room's member list loads when the panel opens and a page more as it scrolls; a DM from it arrives",
  async (context) => {
    const bots = await crowd(context, botNames(150));
    const erin = await joinRecording(context, "erin", {
      viewport: PHONE,
      colorScheme: "dark",
    });
    await waitForCount(erin, 151);
    // The welcome brought the first page: nothing asked yet.
    assert.deepEqual(await membersAsked(erin), []);

    // Someone arrives who sorts first; the panel, opened, loads the list.
    await crowd(context, ["aaron"]);
    await waitForCount(erin, 152);
    await openPeoplePanel(erin);
    await waitFor(
      erin,
      `!!document.querySelector('#users li[data-user="aaron"]')`,
      { what: "aaron in the list loaded on opening" },
    );
    assert.deepEqual(await membersAsked(erin), [{ type: "members" }]);
    // Erin first, then the first page (a hundred names, erin's among them).
    let shown = await onlineList(erin);
    assert.equal(shown.length, 100);
    assert.deepEqual(shown.slice(0, 4), ["erin", "aaron", "m000", "m001"]);
    assert.equal(shown[99], "m097");
    assert.equal(
      await erin.evaluate(`document.getElementById("users-hint").textContent`),
      "100 of 152 shown, scroll for more. Pick a name to send a private message.",
    );

    // Scrolled to its end, the list asks for the page after its last name.
    await scrollListToEnd(erin);
    await waitFor(
      erin,
      `document.querySelectorAll("#users li").length === 152`,
      { what: "the second page listed" },
    );
    assert.deepEqual(await membersAsked(erin), [
      { type: "members" },
      { type: "members", after: "m097" },
    ]);
    shown = await onlineList(erin);
    assert.deepEqual(shown.slice(99, 102), ["m097", "m098", "m099"]);
    assert.equal(shown[151], "m149");
    assert.equal(new Set(shown).size, shown.length, "each name once");
    // The last page: nothing more to ask for, however far it scrolls.
    await scrollListToEnd(erin);
    assert.equal(
      await erin.evaluate(`document.getElementById("users-hint").textContent`),
      "Pick a name to send a private message.",
    );
    assert.equal((await membersAsked(erin)).length, 2);

    // A name from the second page: a private message to that member.
    await erin.click('#users li[data-user="m140"] button');
    await waitFor(
      erin,
      `(() => { const t = document.getElementById("dm-target");
        return !t.hidden && t.dataset.user === "m140" && t.dataset.offline === undefined; })()`,
      { what: "#dm-target to show m140, online" },
    );
    await say(erin, "psst, m140");
    await waitForLine(erin, "erin", "psst, m140");
    const dm = await nextMatching(
      () => bots.get("m140")!.next("a chat line"),
      (m) => m.type === "message",
      "a chat line",
    ) as ChatMessage;
    assert.deepEqual([dm.username, dm.to, dm.text], [
      "erin",
      "m140",
      "psst, m140",
    ]);
    assert.deepEqual(
      (await chatLines(erin)).map((line) => [line.user, line.text]),
      [["erin", "psst, m140"]],
    );

    // On a desktop the list is always shown: the welcome's page, then more.
    const fred = await joinRecording(context, "fred", { viewport: DESKTOP });
    await waitForCount(fred, 153);
    const welcomed = await onlineList(fred);
    // Fred and the welcome's page (fred on it, or not yet: the server's
    // sorted list may be a moment old).
    assert.ok(
      welcomed.length === 100 || welcomed.length === 101,
      `${welcomed.length} listed`,
    );
    await scrollListToEnd(fred);
    await waitFor(
      fred,
      `document.querySelectorAll("#users li").length === 153`,
      { what: "fred's list complete" },
    );
    assert.deepEqual(await membersAsked(fred), [{
      type: "members",
      after: welcomed[welcomed.length - 1],
    }]);
  },
  { server: { largeRoom: LARGE_ROOM, maxConnectionsPerIp: 0 } },
);

browserTest(
  "a room turning large stops showing joins and leaves; turning small again lists everyone and shows them again",
  async (context) => {
    // Large past 4 members, small again at 2.
    const erin = await context.join("erin");
    const bots = new Map<string, ChatClient>();
    const arrive = async (name: string) => {
      const bot = (await crowd(context, [name])).get(name)!;
      bots.set(name, bot);
      return bot;
    };
    for (const name of ["ann", "bob", "cy"]) await arrive(name);
    await waitFor(
      erin,
      `[...document.querySelectorAll("#log .presence .text")].some((n) =>
        n.textContent === "ann, bob and cy joined")`,
      { what: "the joins while small" },
    );
    // The fifth member makes it large: a note, and the list loaded again
    // (dee was never announced).
    await arrive("dee");
    await waitForCount(erin, 5);
    assert.deepEqual(await systemLines(erin, "mode"), [BUSY]);
    await waitFor(
      erin,
      `!!document.querySelector('#users li[data-user="dee"]')`,
      { what: "the list loaded as the room turned large" },
    );
    assert.deepEqual(await onlineList(erin), [
      "erin",
      "ann",
      "bob",
      "cy",
      "dee",
    ]);
    await arrive("eve");
    await waitForCount(erin, 6);

    // Down to two: small again, everyone listed, joins and leaves shown.
    for (const name of ["eve", "dee", "cy", "bob"]) {
      await bots.get(name)!.close();
    }
    await waitForCount(erin, 2);
    assert.deepEqual(await onlineList(erin), ["ann", "erin"]);
    assert.deepEqual(await systemLines(erin, "mode"), [
      BUSY,
      "Joins and leaves are shown again.",
    ]);
    const fay = await arrive("fay");
    await waitFor(
      erin,
      `!!document.querySelector('#users li[data-user="fay"]')`,
      { what: "fay listed" },
    );
    await fay.close();
    await waitFor(
      erin,
      `[...document.querySelectorAll("#log .presence .text")].some((n) =>
        n.textContent === "fay joined and left")`,
      { what: "fay's join and leave" },
    );
    // (A run of joins only is a "join" line; one with a leave "presence".)
    assert.deepEqual(await logEntries(erin), [
      "room-intro",
      "join",
      "join",
      "mode",
      "mode",
      "presence",
    ]);
    assert.equal(
      await erin.evaluate(`document.getElementById("users-refresh").hidden`),
      true,
      "a small room's list needs no reloading",
    );
  },
  { server: { largeRoom: 4 } },
);

browserTest(
  "a large room with its member panel open, at phone and desktop widths, light and dark: readable, nothing overlaps",
  async (context) => {
    const bots = await crowd(context, botNames(150));
    bots.get("m007")!.say("welcome to the busy room, see https://example.com/");
    let online = 150;
    for (const [width, viewport] of LAYOUTS) {
      for (const colorScheme of ["light", "dark"] as const) {
        const label = `${width}-${colorScheme}`;
        const page = await context.browser.newPage({ viewport, colorScheme });
        await joinAs(page, context.server.url, `erin ${label}`);
        await waitForCount(page, ++online);
        await waitForLine(
          page,
          "m007",
          "welcome to the busy room, see https://example.com/",
        );
        await say(page, `hello from ${label}`);
        if (viewport === PHONE) {
          await openPeoplePanel(page);
        }
        // The first page listed (asked again if the server's sorted list
        // was a moment behind its count).
        await waitFor(
          page,
          `document.querySelectorAll("#users li").length >= 100 &&
            document.getElementById("users-refresh").getAttribute("aria-busy") === "false"`,
          { what: "the first page of the list" },
        );
        await assertHeaderFits(page, "in a large room");
        await assertReadable(page, [
          "#users .name",
          "#users .you",
          "#users-sub",
          "#users-hint",
          "#log .sys[data-type=mode] .text",
          "#online-summary",
        ]);
        // The panel: rooms above, people below, each part in its place,
        // however long the list.
        await assertApart(
          page,
          [
            "#rooms-title",
            ...(viewport === PHONE ? ["#users-close"] : []),
            "#rooms",
            "#new-room-form",
            "#users-title",
            "#users-sub",
            "#users-refresh",
            "#users",
            "#users-hint",
          ],
          `the member panel, ${label}`,
          "#users-panel",
        );
        await snapshot(page, `large-${label}-members`);
        await page.close();
        online--;
      }
    }
  },
  { server: { largeRoom: LARGE_ROOM, maxConnectionsPerIp: 0 } },
);

/**
 * The chat page's own features in headless Chromium, at phone and desktop
 * widths, light and dark: a reload that rejoins by itself, a second tab
 * taking the name over, a taken name said plainly, links, presence lines
 * that collapse, grouped messages, emoji in color, and the main states
 * checked for one online indicator, no overlap and enough contrast.
 *
 * With `HUBCHAT_SCREENSHOTS=DIR` the layout tests also write their
 * screenshots to DIR (keep it outside the repository), to look at
 * (`snapshot` in testing/browser.ts).
 *
 * @module
 */

import assert from "node:assert/strict";
import {
  assertHeaderFits,
  assertReadable,
  browserTest,
  chatLines,
  fill,
  goOffline,
  headerText,
  LAYOUTS,
  logEntries,
  onlineList,
  openChat,
  openPeoplePanel,
  type Page,
  PHONE,
  say,
  snapshot,
  waitFor,
  waitForLine,
  waitOnline,
} from "./testing/browser.ts";
import { ChatClient } from "./testing/chat_client.ts";
import { waitUntil } from "./testing/wait.ts";

const js = JSON.stringify;

/** What the page's sessionStorage holds for a reload. */
interface SavedSession {
  name: string;
  session: string;
}

async function savedSession(page: Page): Promise<SavedSession | null> {
  return await page.evaluate(
    `JSON.parse(sessionStorage.getItem("hubchat.session") || "null")`,
  ) as SavedSession | null;
}

/** The text of the page's name-form error, once it shows one. */
async function nameError(page: Page): Promise<string> {
  await waitFor(
    page,
    `!document.getElementById("name-view").hidden &&
      !document.getElementById("name-error").hidden`,
    { what: "the name form with an error" },
  );
  return await page.evaluate(
    `document.getElementById("name-error").textContent`,
  ) as string;
}

/**
 * Asserts the page stopped connecting and shows `reason` on its name form,
 * the name field focused with the name selected, ready to be replaced.
 */
async function assertStopped(page: Page, reason: string): Promise<void> {
  assert.equal(await nameError(page), reason);
  assert.deepEqual(
    await page.evaluate(`(() => { const field = document.activeElement;
      return [document.getElementById("status").dataset.state, field.id,
        field.selectionStart, field.selectionEnd - field.value.length]; })()`),
    ["offline", "name-input", 0, 0],
    "offline, the name field focused, its text selected",
  );
}

/** A presence line as the page shows it. */
interface PresenceLine {
  text: string;
  type: string;
  title: string;
}

const READ_PRESENCE = `[...document.querySelectorAll("#log .sys.presence")]
  .map((n) => ({ text: n.querySelector(".text").textContent, type: n.dataset.type, title: n.title }))`;

async function presenceLines(page: Page): Promise<PresenceLine[]> {
  return await page.evaluate(READ_PRESENCE) as PresenceLine[];
}

async function waitForPresence(page: Page, text: string): Promise<void> {
  await waitFor(
    page,
    `[...document.querySelectorAll("#log .sys.presence .text")]
      .some((n) => n.textContent === ${js(text)})`,
    { what: `the presence line ${js(text)}` },
  );
}

/** A chat line, and whether its sender's name and its time are on screen. */
interface Shown {
  text: string;
  named: boolean;
  timed: boolean;
}

/** Whether an element can be seen: scrolled to, it is what its center shows. */
const ON_SCREEN = `(el) => {
  el.scrollIntoView({ block: "nearest" });
  const r = el.getBoundingClientRect();
  const hit = document.elementFromPoint(r.left + r.width / 2, r.top + r.height / 2);
  return r.width > 1 && r.height > 1 && !!hit && (hit === el || el.contains(hit));
}`;

const READ_SHOWN = `[...document.querySelectorAll("#log .msg")].map((m) => {
  const onScreen = ${ON_SCREEN};
  return {
    text: m.querySelector(".text").textContent,
    named: onScreen(m.querySelector(".who")),
    timed: onScreen(m.querySelector("time")),
  };
})`;

async function shownLines(page: Page): Promise<Shown[]> {
  return await page.evaluate(READ_SHOWN) as Shown[];
}

// ----------------------------------------------------------- rejoining

browserTest(
  "a reload rejoins by itself with its name and session, replacing the old connection",
  async ({ join, server }) => {
    const erin = await join("erin");
    const bob = await join("bob", { viewport: PHONE, colorScheme: "dark" });
    await say(erin, "before the reload");
    await waitForLine(bob, "erin", "before the reload");
    const before = await savedSession(erin);
    assert.equal(before?.name, "erin");
    assert.ok(before?.session, "the session is kept for a reload");

    // Every WebSocket the page opens from here on.
    const sockets: string[] = [];
    const devtools = await erin.createCDPSession();
    await devtools.send("Network.enable");
    devtools.on("Network.webSocketCreated", (event) => sockets.push(event.url));
    await erin.reload();
    // No click: the page goes back in by itself.
    await waitOnline(erin);
    await waitForLine(erin, "erin", "before the reload");
    await devtools.detach();
    assert.equal(
      await erin.evaluate(`document.getElementById("name-view").hidden`),
      true,
      "the name form stayed hidden",
    );
    assert.equal(sockets.length, 1, `one connection: ${sockets}`);
    const query = new URL(sockets[0]).searchParams;
    assert.equal(query.get("username"), "erin");
    assert.equal(
      query.get("session"),
      before.session,
      "it presented its session",
    );
    const after = await savedSession(erin);
    assert.equal(after?.name, "erin");
    assert.notEqual(
      after?.session,
      before.session,
      "the new connection's session",
    );
    assert.deepEqual(
      (await chatLines(erin)).map((line) => [line.user, line.text]),
      [["erin", "before the reload"]],
      "history once, nothing twice",
    );

    // Everyone else sees erin once: the old connection was replaced.
    await waitForPresence(bob, "erin rejoined");
    await waitFor(
      bob,
      `document.getElementById("online-count").textContent === "2"`,
      { what: "bob's online count back at 2" },
    );
    assert.deepEqual(await onlineList(bob), ["bob", "erin"]);
    assert.deepEqual(await onlineList(erin), ["bob", "erin"]);
    assert.deepEqual(server.rooms.get("lobby")?.users().sort(), [
      "bob",
      "erin",
    ]);
  },
);

browserTest(
  "a second tab with this tab's session takes the name over; the first stops and says why",
  async ({ browser, join, server, track }) => {
    const first = await join("erin");
    const bob = track(await ChatClient.join(server.port, "bob"));
    await waitFor(
      first,
      `document.getElementById("online-count").textContent === "2"`,
      {
        what: "bob online on erin's first tab",
      },
    );
    const saved = await savedSession(first);
    assert.ok(saved?.session);

    // A duplicated tab starts with a copy of the tab's storage.
    const second = await browser.newPage({ viewport: PHONE });
    await second.evaluateOnNewDocument(
      `localStorage.setItem("hubchat.name", "erin");
       sessionStorage.setItem("hubchat.session", ${js(js(saved))});`,
    );
    await second.goto(server.url);
    await waitOnline(second);
    await bob.expectPresence("leave", "erin", 1);
    await bob.expectPresence("join", "erin", 2);

    // The first tab stops, says why, and does not take the name back.
    await assertStopped(
      first,
      "You are in the chat as erin in another tab or window, so this one disconnected. Close the other one and press Join to chat here.",
    );
    assert.equal(
      await savedSession(first),
      null,
      "its reload will not take over",
    );
    await first.click("#join");
    assert.equal(
      await nameError(first),
      '"erin" is already online in #lobby; choose another name',
    );
    bob.say("still with the second tab?");
    await waitForLine(second, "bob", "still with the second tab?");
    assert.deepEqual(server.rooms.get("lobby")?.users().sort(), [
      "bob",
      "erin",
    ]);
  },
);

browserTest(
  "a reconnect refused for good (the name was taken meanwhile) stops and says why",
  async ({ join, server, track }) => {
    const erin = await join("erin", { viewport: PHONE });
    // Offline, the page keeps trying and failing to connect, while someone
    // else takes the name its connection held.
    await goOffline(erin);
    await waitUntil(
      () => !server.rooms.get("lobby")?.isTaken("erin"),
      "the server to let erin go",
    );
    track(await ChatClient.join(server.port, "erin"));
    await erin.setOfflineMode(false);
    await assertStopped(
      erin,
      '"erin" is already online in #lobby; choose another name',
    );
  },
);

// ---------------------------------------------------------- taken name

browserTest(
  "a taken name says so plainly, with the name field ready to pick another",
  async ({ browser, join, server }) => {
    await join("erin");
    const page = await browser.newPage({
      viewport: PHONE,
      colorScheme: "dark",
    });
    await openChat(page, server.url);
    await fill(page, "#name-input", "erin");
    await page.click("#join");
    await assertStopped(
      page,
      '"erin" is already online in #lobby; choose another name',
    );
    // The page asked GET /ws (a dry run, counted nowhere); only the real
    // upgrade counts as a rejected one.
    assert.match(
      server.metrics.render(),
      /^hubchat_rejected_upgrades_total\{reason="username_taken"\} 1$/m,
    );

    // Typing replaces the selected name; Enter joins.
    await page.keyboard.type("erin 2");
    await page.keyboard.press("Enter");
    await waitOnline(page);
    await waitFor(
      page,
      `!!document.querySelector('#users li[data-user="erin 2"]')`,
      {
        what: "erin 2 in the online list",
      },
    );
    assert.deepEqual(await onlineList(page), ["erin", "erin 2"]);
  },
  // The page's question carries no Origin (a same-origin GET): it must
  // still be answered as the page's own with --require-origin.
  { server: { requireOrigin: true } },
);

// ----------------------------------------------------------------- links

browserTest(
  "links in messages are clickable: http and https only, opening a new tab without an opener",
  async ({ browser, join, server, track }) => {
    const erin = await join("erin", { viewport: PHONE });
    const bob = track(await ChatClient.join(server.port, "bob"));
    const health = `${server.url}healthz`;
    const text = `docs at https://example.com/docs. (see ` +
      `https://en.wikipedia.org/wiki/Foo_(bar)), or ${health}, ` +
      `not javascript:window.__pwned=1 nor data:text/html,<b>x</b> nor ` +
      `https://x.example/<img src=x onerror="window.__pwned=2"> nor HTTPS://`;
    bob.say(text);
    await waitForLine(erin, "bob", text);
    await say(erin, "mine: https://deno.com/ too");
    await waitForLine(erin, "erin", "mine: https://deno.com/ too");

    const links = await erin.evaluate(
      `[...document.querySelectorAll("#log a")].map((a) => ({
        user: a.closest(".msg").dataset.user, href: a.getAttribute("href"),
        text: a.textContent, rel: a.rel, target: a.target }))`,
    );
    const link = (user: string, href: string, shown = href) => ({
      user,
      href,
      text: shown,
      rel: "noopener noreferrer",
      target: "_blank",
    });
    assert.deepEqual(links, [
      link("bob", "https://example.com/docs"),
      link("bob", "https://en.wikipedia.org/wiki/Foo_(bar)"),
      link("bob", health),
      link("bob", "https://x.example/"),
      link("erin", "https://deno.com/"),
    ]);
    // The text reads as sent, and nothing but links was made from it.
    assert.deepEqual(
      (await chatLines(erin)).map((line) => line.text),
      [text, "mine: https://deno.com/ too"],
    );
    assert.equal(
      await erin.evaluate(
        `document.querySelectorAll("#log .text *:not(a), #log img, #log b").length`,
      ),
      0,
    );
    assert.equal(await erin.evaluate(`typeof window.__pwned`), "undefined");

    // A click opens a new tab that cannot reach this page or see its URL.
    await erin.click(`#log a[href=${js(health)}]`);
    const target = await browser.browser.waitForTarget((t) =>
      t.url() === health
    );
    const opened = await target.page();
    assert.ok(opened, "the link opened a page");
    await waitFor(opened, `document.readyState === "complete"`);
    assert.deepEqual(
      await opened.evaluate(`[window.opener, document.referrer]`),
      [null, ""],
    );
    await opened.close();
  },
);

// -------------------------------------------------------------- presence

browserTest(
  "runs of joins and leaves collapse into one line, updated in place",
  async ({ join, server, track }) => {
    const erin = await join("erin", { colorScheme: "dark" });
    const people = new Map<string, ChatClient>();
    for (const name of ["ann", "bob", "cy", "dee", "eve"]) {
      people.set(name, track(await ChatClient.join(server.port, name)));
      if (name === "ann") {
        await waitForPresence(erin, "ann joined");
        // Marks the line, to find it again once it has grown.
        await erin.evaluate(
          `document.querySelector("#log .sys.presence").dataset.probe = "first"`,
        );
      }
    }
    await waitForPresence(erin, "ann, bob and 3 others joined");
    await people.get("eve")!.close();
    const firstRun = "ann, bob and 2 others joined; eve joined and left";
    await waitForPresence(erin, firstRun);
    assert.deepEqual(await presenceLines(erin), [{
      text: firstRun,
      type: "presence",
      title: "ann, bob, cy, dee joined; eve joined and left",
    }]);
    assert.equal(
      await erin.evaluate(
        `document.querySelector('#log [data-probe="first"] .text').textContent`,
      ),
      firstRun,
      "the first line was updated, not replaced",
    );

    // A chat line ends the run; bob's leave and return start another.
    people.get("ann")!.say("hello");
    await waitForLine(erin, "ann", "hello");
    await people.get("bob")!.close();
    people.set("bob", track(await ChatClient.join(server.port, "bob")));
    await people.get("cy")!.close();
    await waitForPresence(erin, "bob rejoined; cy left");
    people.get("ann")!.say("still here");
    await waitForLine(erin, "ann", "still here");
    await people.get("dee")!.close();
    await waitForPresence(erin, "dee left");

    assert.deepEqual(
      (await presenceLines(erin)).map((line) => [line.text, line.type]),
      [
        [firstRun, "presence"],
        ["bob rejoined; cy left", "presence"],
        ["dee left", "leave"],
      ],
    );
    assert.deepEqual(await onlineList(erin), ["ann", "bob", "erin"]);
    // The log: one intro, our join, then lines and runs in order.
    assert.deepEqual(
      await logEntries(erin),
      [
        "room-intro",
        "join",
        "presence",
        "line",
        "presence",
        "line",
        "leave",
      ],
    );
  },
);

// -------------------------------------------------------------- grouping

browserTest(
  "one sender's messages share one name and time, until another sender, a presence line or a new group",
  async ({ join, server, track }) => {
    const erin = await join("erin", { viewport: PHONE });
    const ann = track(await ChatClient.join(server.port, "ann"));
    const bob = track(await ChatClient.join(server.port, "bob"));
    await waitForPresence(erin, "ann and bob joined");
    async function line(from: ChatClient, text: string): Promise<void> {
      from.say(text);
      await waitForLine(erin, from.username, text);
    }
    await line(bob, "b1");
    await line(bob, "b2");
    await line(bob, "b3");
    await line(ann, "a1");
    await line(bob, "b4");
    track(await ChatClient.join(server.port, "cy"));
    await waitForPresence(erin, "cy joined");
    await line(bob, "b5");
    await line(bob, "b6");
    await say(erin, "e1");
    await say(erin, "e2");
    await waitForLine(erin, "erin", "e2");

    const expected: [string, boolean][] = [
      ["b1", true],
      ["b2", false],
      ["b3", false],
      ["a1", true],
      ["b4", true],
      ["b5", true],
      ["b6", false],
      ["e1", true],
      ["e2", false],
    ];
    assert.deepEqual(
      await shownLines(erin),
      expected.map(([text, first]) => ({ text, named: first, timed: first })),
    );
    // Screen readers still get every line's sender and time.
    for (const shown of await chatLines(erin)) {
      assert.ok(shown.who && shown.time, js(shown));
    }
  },
);

browserTest(
  "a group ends 5 minutes after its first message, at a new day, and at the new-messages divider",
  async ({ browser, server }) => {
    // Server timestamps cannot be chosen, so these frames go through
    // handleFrame, the page's one way in for what the server sends.
    const page = await browser.newPage({ colorScheme: "dark" });
    await page.emulateTimezone("UTC");
    await openChat(page, `${server.url}#room=clock`);
    await fill(page, "#name-input", "erin");
    await page.click("#join");
    await waitOnline(page);
    await waitFor(page, `!!document.querySelector('#log [data-type="join"]')`);
    let id = 9000;
    function bobSays(text: string, timestamp: string): object {
      return {
        type: "message",
        id: ++id,
        room: "clock",
        username: "bob",
        text,
        timestamp: `2026-03-0${timestamp}.000Z`,
      };
    }
    const live = [
      bobSays("at 12:00", "1T12:00:00"),
      bobSays("at 12:02", "1T12:02:00"),
      bobSays("at 12:04:59", "1T12:04:59"),
      bobSays("at 12:05, 5 min after the first", "1T12:05:00"),
      bobSays("at 12:06", "1T12:06:00"),
      bobSays("at 23:58", "1T23:58:00"),
      bobSays("at 00:01 the next day", "2T00:01:00"),
      bobSays("at 00:02", "2T00:02:00"),
    ];
    // A resume: the same room's welcome again, with what came meanwhile.
    const resume = {
      type: "welcome",
      username: "erin",
      room: "clock",
      users: ["erin"],
      history: [bobSays("at 00:03, after the divider", "2T00:03:00")],
      gap: false,
      session: "",
      timestamp: "2026-03-02T00:03:30.000Z",
    };
    const frame = [...live, resume].map((m) => js(m)).join("\n");
    await page.evaluate(`handleFrame(${js(frame)})`);
    await waitForLine(page, "bob", "at 00:03, after the divider");

    const starts = [
      "at 12:00",
      "at 12:05, 5 min after the first",
      "at 23:58",
      "at 00:01 the next day",
      "at 00:03, after the divider",
    ];
    assert.deepEqual(
      (await shownLines(page)).map((shown) => [shown.text, shown.named]),
      [...live, ...resume.history].map((m) => {
        const text = (m as { text: string }).text;
        return [text, starts.includes(text)];
      }),
    );
    // What stands between the groups: a day, and the divider.
    assert.deepEqual(
      await page.evaluate(
        `[...document.querySelectorAll("#log .day, #log .divider, #log .msg:not(.cont)")]
          .map((n) => n.classList.contains("msg") ? n.querySelector(".text").textContent
            : n.classList.contains("day") ? "day" : "divider")`,
      ),
      [
        "day", // today's, for erin's own join
        "day",
        "at 12:00",
        "at 12:05, 5 min after the first",
        "at 23:58",
        "day",
        "at 00:01 the next day",
        "divider",
        "at 00:03, after the divider",
      ],
    );
  },
);

// ----------------------------------------------------------------- emoji

/** The fonts Chromium used to draw the text inside the first `selector`. */
async function platformFonts(page: Page, selector: string): Promise<string[]> {
  const devtools = await page.createCDPSession();
  try {
    await devtools.send("DOM.enable");
    await devtools.send("CSS.enable");
    const { root } = await devtools.send("DOM.getDocument", { depth: 0 });
    const { nodeId } = await devtools.send("DOM.querySelector", {
      nodeId: root.nodeId,
      selector,
    });
    assert.ok(nodeId, `nothing matches ${selector}`);
    const { fonts } = await devtools.send("CSS.getPlatformFontsForNode", {
      nodeId,
    });
    return fonts.map((font) => font.familyName);
  } finally {
    await devtools.detach();
  }
}

const EMOJI_FONTS = ["Apple Color Emoji", "Segoe UI Emoji", "Noto Color Emoji"];

browserTest(
  "emoji render in the platform's color emoji font; digits, # and the page's own symbols do not",
  async ({ join, server, track }) => {
    const erin = await join("erin");
    const bob = track(await ChatClient.join(server.port, "bob"));
    const texts = ["😀", "🎉👋🏽", "123 #4 *"];
    for (const text of texts) {
      bob.say(text);
      await waitForLine(erin, "bob", text);
    }
    // The stack: the emoji alias first, text fonts, then the emoji fonts.
    for (const selector of ["#log .msg .text", "#message-input"]) {
      const stack = await erin.evaluate(
        `getComputedStyle(document.querySelector(${js(selector)})).fontFamily`,
      ) as string;
      assert.match(stack, /^"hubchat emoji", system-ui, /, selector);
      assert.match(
        stack,
        /, sans-serif, "Apple Color Emoji", "Segoe UI Emoji", "Noto Color Emoji"$/,
        selector,
      );
    }

    // Which of the three this machine has: a probe per family.
    const installed: string[] = [];
    for (const family of EMOJI_FONTS) {
      await erin.evaluate(`(() => {
        const probe = document.createElement("span");
        probe.id = "font-probe";
        probe.style.fontFamily = ${js(`"${family}"`)};
        probe.textContent = "😀";
        document.body.append(probe);
      })()`);
      const used = await platformFonts(erin, "#font-probe");
      await erin.evaluate(`document.getElementById("font-probe").remove()`);
      if (used.length === 1 && used[0] === family) installed.push(family);
    }
    const line = (n: number) => `#log .msg:nth-of-type(${n}) .text`;
    const emojiFontsIn = async (selector: string) =>
      (await platformFonts(erin, selector)).filter((f) =>
        EMOJI_FONTS.includes(f)
      );
    if (installed.length > 0) {
      // Every emoji glyph from the color font, none from a text font.
      for (const n of [1, 2]) {
        assert.deepEqual(
          await platformFonts(erin, line(n)),
          [installed[0]],
          texts[n - 1],
        );
      }
    }
    // Never digits, "#" or "*" (which emoji fonts hold as keycaps), nor
    // the page's own "#" and counts.
    for (const selector of [line(3), "#room-button .hash", "#online-count"]) {
      assert.deepEqual(await emojiFontsIn(selector), [], selector);
    }
  },
);

// ---------------------------------------------------------------- layout

for (const [width, viewport] of LAYOUTS) {
  for (const scheme of ["light", "dark"] as const) {
    const label = `${width}-${scheme}`;
    browserTest(
      `the main states at ${width} width, ${scheme}: one online indicator, nothing overlaps, text has contrast, a reload rejoins`,
      async ({ browser, server, track }) => {
        const bob = track(await ChatClient.join(server.port, "bob"));
        const page = await browser.newPage({ viewport, colorScheme: scheme });

        // The name form, refused.
        await openChat(page, server.url);
        await fill(page, "#name-input", "bob");
        await page.click("#join");
        await nameError(page);
        await assertReadable(page, [
          "#name-error",
          "#name-input",
          ".card .lead",
          ".card .hint",
          "#join",
        ]);
        await snapshot(page, `${label}-name-taken`);

        // The chat: lines, a link, a private line, presence.
        await fill(page, "#name-input", "erin");
        await page.click("#join");
        await waitOnline(page);
        bob.say("see https://example.com/x 😀");
        await waitForLine(page, "bob", "see https://example.com/x 😀");
        await say(page, "mine, with https://deno.com/");
        bob.send({ type: "message", text: "just for you", to: "erin" });
        await waitForLine(page, "bob", "just for you");
        track(await ChatClient.join(server.port, "cy"));
        await waitForPresence(page, "cy joined");
        await waitFor(
          page,
          `document.getElementById("online-count").textContent === "3"`,
          { what: "3 online" },
        );

        // One indicator: "3 online", said once in the header.
        const header = await headerText(page);
        assert.equal(header.match(/online/g)?.length, 1, header);
        assert.match(header, /3 online/);
        await assertHeaderFits(page, "online");
        await assertReadable(page, [
          ".msg:not(.mine):not(.dm) .text",
          ".msg:not(.mine):not(.dm) .text a",
          ".msg.mine .text",
          ".msg.mine .text a",
          ".msg.dm:not(.mine) .text",
          ".msg .who",
          ".msg time",
          ".sys .text",
          ".day",
          "#online-summary",
          "#room-name",
        ]);
        await snapshot(page, `${label}-chat`);

        if (viewport === PHONE) {
          await openPeoplePanel(page);
          await assertReadable(page, ["#users .name", "#rooms .room-label"]);
          await snapshot(page, `${label}-people`);
          await page.click("#users-close");
          await waitFor(
            page,
            `getComputedStyle(document.getElementById("users-panel")).visibility === "hidden"`,
            { what: "the people panel closed" },
          );
        }

        // Reconnecting: the indicator says so, in full, and still fits.
        await goOffline(page);
        await waitFor(
          page,
          `document.getElementById("status-text").textContent.startsWith("reconnecting in")`,
          { what: "reconnecting in Ns" },
        );
        assert.doesNotMatch(await headerText(page), /online/);
        await assertHeaderFits(page, "reconnecting");
        await assertReadable(page, ["#status-text", ".sys.warn .text"]);
        await snapshot(page, `${label}-reconnecting`);
        await page.setOfflineMode(false);
        await waitOnline(page, 20_000);

        // A reload goes straight back in, as the same one of three.
        await page.reload();
        await waitOnline(page);
        await waitForLine(page, "erin", "mine, with https://deno.com/");
        assert.match(await headerText(page), /3 online/);
        await assertHeaderFits(page, "after a reload");
      },
    );
  }
}

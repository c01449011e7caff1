/**
 * Headless Chromium for the browser tests, driven by Puppeteer
 * (`npm:puppeteer-core`, a test-only package pinned in deno.json and
 * deno.lock). It finds the Chromium installed on the machine (it never
 * downloads one), launches it with a throwaway profile, opens each page in
 * its own browser context (its own cookies and storage, like a separate
 * person) at a given viewport and color scheme, records what each page
 * logs, and closes everything, so tests that close their browser in
 * `finally` pass Deno's sanitizers.
 *
 * The pages are Puppeteer's own {@linkcode Page}s: use its API
 * (`page.click`, `page.keyboard`, `page.screenshot`, `page.setViewport`…)
 * directly. This module adds only what every browser test needs: the
 * browser, bounded waits, and the chat page's own steps
 * ({@linkcode browserTest}, {@linkcode joinAs}, {@linkcode say},
 * {@linkcode chatLines}…).
 *
 * @example
 * ```ts
 * import { PHONE, TestBrowser, waitFor } from "./browser.ts";
 * const browser = await TestBrowser.launch();
 * try {
 *   const page = await browser.newPage({ viewport: PHONE, colorScheme: "dark" });
 *   await page.goto("data:text/html,<p id=x>hi</p>");
 *   await waitFor(page, "document.getElementById('x')?.textContent === 'hi'");
 * } finally {
 *   await browser.close();
 * }
 * ```
 *
 * @module
 */

import puppeteer, {
  type Browser,
  type Page,
  TimeoutError,
  type Viewport,
} from "puppeteer-core";
import assert from "node:assert/strict";
import type { ChatServer, ServerOptions } from "../server.ts";
import { sleep, withTimeout } from "../tools/wait.ts";
import { CHROMIUM, findProgram } from "./programs.ts";
import { type Closer, withServer } from "./server.ts";

export type { Page, Viewport };

/**
 * Bound on starting Chromium until its DevTools endpoint answers, in
 * milliseconds: a cold start on a busy 2-core CI machine takes a few
 * seconds, so this is far past normal and still ends a hung launch.
 */
export const LAUNCH_MS = 30_000;

/**
 * Bound on one DevTools command, in milliseconds. Puppeteer's default is
 * 180 s; a command that has not answered in 15 s (a screenshot on a loaded
 * machine is the slowest) will not, and the test should say so sooner.
 */
export const PROTOCOL_MS = 15_000;

/**
 * Default bound on {@linkcode waitFor} and on Puppeteer's own waits
 * (`waitForSelector`, locators), in milliseconds: the chat's DOM updates
 * within tens of milliseconds, so 10 s only ever expires on a real failure.
 */
export const WAIT_MS = 10_000;

/** Default bound on `page.goto` until the load event, in milliseconds. */
export const NAVIGATION_MS = 15_000;

/**
 * Bound on closing the browser gracefully before it is killed, in
 * milliseconds: Chromium exits within a second when asked.
 */
export const CLOSE_MS = 10_000;

/**
 * How often {@linkcode waitFor} re-evaluates its expression in the page, in
 * milliseconds: fast enough not to slow the tests, slow enough not to load
 * the page.
 */
export const POLL_MS = 25;

/** How many console lines a page's {@linkcode PageLog} keeps (the last). */
export const CONSOLE_LINES = 50;

/**
 * Flags on top of Puppeteer's defaults (which already make it headless,
 * mute it, and keep it from throttling background pages).
 */
export const CHROMIUM_FLAGS: readonly string[] = [
  // Tests and CI run as root, where Chromium refuses to start sandboxed.
  "--no-sandbox",
  // No GPU on these machines: software rendering without probing for one.
  "--disable-gpu",
  // No traffic but to the test server: no QUIC probes, no updates, no sync.
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

/**
 * A laptop-sized window: the size the browser tests have always used.
 *
 * @example
 * ```ts
 * import { DESKTOP, TestBrowser } from "./browser.ts";
 * const browser = await TestBrowser.launch();
 * const page = await browser.newPage({ viewport: DESKTOP });
 * await browser.close();
 * ```
 */
export const DESKTOP: Viewport = { width: 1200, height: 800 };

/**
 * A common phone (390 × 844 CSS pixels, as iPhones 12 to 15), with touch
 * and the page's `<meta name="viewport">` honoured (a page without one lays
 * out 980 px wide, as on a real phone). The device scale factor stays 1:
 * layout depends on CSS pixels only, and screenshots stay small.
 *
 * @example
 * ```ts
 * import { PHONE, TestBrowser } from "./browser.ts";
 * const browser = await TestBrowser.launch();
 * const page = await browser.newPage();
 * await page.setViewport(PHONE); // or newPage({ viewport: PHONE })
 * await browser.close();
 * ```
 */
export const PHONE: Viewport = {
  width: 390,
  height: 844,
  deviceScaleFactor: 1,
  isMobile: true,
  hasTouch: true,
};

/** A value of the `prefers-color-scheme` media feature. */
export type ColorScheme = "light" | "dark";

/** Options for {@linkcode TestBrowser.launch}. */
export interface LaunchOptions {
  /** The Chromium binary; default: `findProgram(CHROMIUM)` (testing/programs.ts). */
  executablePath?: string;
  /** Flags added after {@linkcode CHROMIUM_FLAGS}. */
  args?: string[];
}

/** Options for {@linkcode TestBrowser.newPage}. */
export interface PageOptions {
  /** The viewport; default {@linkcode DESKTOP}. */
  viewport?: Viewport;
  /** An emulated `prefers-color-scheme`; default: the browser's (light). */
  colorScheme?: ColorScheme;
}

/** What a page reported while it was open. */
export interface PageLog {
  /** Its uncaught exceptions, with their stacks. */
  errors: string[];
  /** Its last {@linkcode CONSOLE_LINES} console lines, as "type: text". */
  console: string[];
}

/**
 * Emulates `prefers-color-scheme` in `page` (it stays until changed).
 *
 * @example
 * ```ts
 * import { emulateColorScheme, TestBrowser } from "./browser.ts";
 * const browser = await TestBrowser.launch();
 * const page = await browser.newPage();
 * await emulateColorScheme(page, "dark");
 * await browser.close();
 * ```
 */
export async function emulateColorScheme(
  page: Page,
  scheme: ColorScheme,
): Promise<void> {
  await page.emulateMediaFeatures([
    { name: "prefers-color-scheme", value: scheme },
  ]);
}

/** Options for {@linkcode waitFor}. */
export interface WaitOptions {
  /** Bound in milliseconds; default {@linkcode WAIT_MS}. */
  timeout?: number;
  /** What is awaited, for the error message; default: the expression. */
  what?: string;
}

/**
 * Waits until the JavaScript `expression` is truthy in `page`, polling every
 * {@linkcode POLL_MS} ms. An expression that throws counts as not yet true
 * (the element may not exist yet, or a navigation may be under way). After
 * the timeout it throws, naming `what` and the expression's last value or
 * error.
 *
 * @example
 * ```ts
 * import { TestBrowser, waitFor } from "./browser.ts";
 * const browser = await TestBrowser.launch();
 * const page = await browser.newPage();
 * await page.goto("data:text/html,<p id=x>hi</p>");
 * await waitFor(page, `document.getElementById("x").textContent === "hi"`, {
 *   what: "the greeting",
 * });
 * await browser.close();
 * ```
 */
export async function waitFor(
  page: Page,
  expression: string,
  options: WaitOptions = {},
): Promise<void> {
  const timeout = options.timeout ?? WAIT_MS;
  const guarded =
    `(() => { try { return !!(${expression}); } catch { return false; } })()`;
  try {
    const handle = await page.waitForFunction(guarded, {
      timeout,
      polling: POLL_MS,
    });
    await handle.dispose();
  } catch (error) {
    if (!(error instanceof TimeoutError)) throw error;
    let last: string;
    try {
      const value = await page.evaluate(expression);
      // JSON.stringify gives undefined for undefined and functions.
      last = JSON.stringify(value) ?? String(value);
    } catch (error) {
      last = `error: ${(error as Error).message}`;
    }
    throw new Error(
      `timed out after ${timeout} ms waiting for ${
        options.what ?? expression
      } (last: ${last.slice(0, 300)})`,
    );
  }
}

/** Removes a folder, retrying while Chromium's helpers still write to it. */
async function removeDir(path: string): Promise<void> {
  // Helpers may outlive the main process by a moment: 10 tries, 100 ms apart.
  for (let attempt = 0; attempt < 10; attempt++) {
    try {
      await Deno.remove(path, { recursive: true });
      return;
    } catch (error) {
      if (error instanceof Deno.errors.NotFound) return;
      await sleep(100);
    }
  }
}

/** A running headless Chromium and the pages it opened. */
export class TestBrowser {
  readonly #browser: Browser;
  readonly #profile: string;
  readonly #logs = new Map<Page, PageLog>();
  #closing: Promise<void> | undefined;

  private constructor(browser: Browser, profile: string) {
    this.#browser = browser;
    this.#profile = profile;
  }

  /**
   * Starts a headless Chromium (`findProgram(CHROMIUM)` (testing/programs.ts), or
   * `executablePath`) with {@linkcode CHROMIUM_FLAGS} and a fresh profile in
   * a temporary folder. Close it with {@linkcode TestBrowser.close}.
   *
   * @example
   * ```ts
   * import { TestBrowser } from "./browser.ts";
   * const browser = await TestBrowser.launch({ args: ["--lang=fr"] });
   * await browser.close();
   * ```
   */
  static async launch(options: LaunchOptions = {}): Promise<TestBrowser> {
    const executablePath = options.executablePath ??
      await findProgram(CHROMIUM);
    const profile = await Deno.makeTempDir({ prefix: "hubchat-chromium-" });
    try {
      const browser = await puppeteer.launch({
        executablePath,
        headless: true,
        userDataDir: profile,
        args: [...CHROMIUM_FLAGS, ...(options.args ?? [])],
        timeout: LAUNCH_MS,
        protocolTimeout: PROTOCOL_MS,
        defaultViewport: DESKTOP,
      });
      return new TestBrowser(browser, profile);
    } catch (error) {
      await removeDir(profile);
      throw new Error(
        `cannot start ${executablePath}: ${
          (error as Error).message
        }\n(${CHROMIUM.hint})`,
        { cause: error },
      );
    }
  }

  /** Puppeteer's browser, for what this wrapper does not cover. */
  get browser(): Browser {
    return this.#browser;
  }

  /** The pages opened with {@linkcode TestBrowser.newPage} and still open. */
  get pages(): Page[] {
    return [...this.#logs.keys()].filter((page) => !page.isClosed());
  }

  /**
   * Opens a blank page in a browser context of its own (its own cookies and
   * localStorage), at `viewport` and with `colorScheme` emulated. The page
   * acts as focused even when another is in front, and its waits and
   * navigations are bounded by {@linkcode WAIT_MS} and
   * {@linkcode NAVIGATION_MS}.
   *
   * @example
   * ```ts
   * import { PHONE, TestBrowser } from "./browser.ts";
   * const browser = await TestBrowser.launch();
   * const light = await browser.newPage({ viewport: PHONE });
   * const dark = await browser.newPage({ viewport: PHONE, colorScheme: "dark" });
   * await browser.close();
   * ```
   */
  async newPage(options: PageOptions = {}): Promise<Page> {
    const context = await this.#browser.createBrowserContext();
    const page = await context.newPage();
    const log: PageLog = { errors: [], console: [] };
    this.#logs.set(page, log);
    page.on("pageerror", (error) => {
      log.errors.push(
        error instanceof Error ? error.stack ?? error.message : String(error),
      );
    });
    page.on("console", (message) => {
      log.console.push(`${message.type()}: ${message.text()}`);
      if (log.console.length > CONSOLE_LINES) log.console.shift();
    });
    page.setDefaultTimeout(WAIT_MS);
    page.setDefaultNavigationTimeout(NAVIGATION_MS);
    // Several pages share one window; each must see focus and blur events
    // and run its timers as the page in front would.
    await page.emulateFocusedPage(true);
    await page.setViewport(options.viewport ?? DESKTOP);
    if (options.colorScheme !== undefined) {
      await emulateColorScheme(page, options.colorScheme);
    }
    return page;
  }

  /**
   * What `page` reported while open: uncaught exceptions and console lines.
   * Throws if the page was not opened by {@linkcode TestBrowser.newPage}.
   *
   * @example
   * ```ts
   * import { TestBrowser } from "./browser.ts";
   * const browser = await TestBrowser.launch();
   * const page = await browser.newPage();
   * await page.goto("data:text/html,<script>console.log('hi')</script>");
   * console.log(browser.log(page).console); // ["log: hi"]
   * await browser.close();
   * ```
   */
  log(page: Page): PageLog {
    const log = this.#logs.get(page);
    if (log === undefined) {
      throw new Error("this page was not opened by TestBrowser.newPage");
    }
    return log;
  }

  /**
   * For a failing test: writes a screenshot and the HTML of every open page
   * to temporary files, and returns lines naming them, with each page's
   * uncaught exceptions and last console lines.
   *
   * @example
   * ```ts
   * import { TestBrowser } from "./browser.ts";
   * const browser = await TestBrowser.launch();
   * await browser.newPage();
   * console.log(await browser.report()); // "  page 0 screenshot: /tmp/…"
   * await browser.close();
   * ```
   */
  async report(): Promise<string> {
    const lines: string[] = [];
    for (const [index, page] of this.pages.entries()) {
      const base = await Deno.makeTempFile({
        prefix: `hubchat-browser-page${index}-`,
      });
      try {
        await page.screenshot({ path: `${base}.png` });
        lines.push(`  page ${index} screenshot: ${base}.png`);
      } catch (error) {
        lines.push(
          `  page ${index}: no screenshot (${(error as Error).message})`,
        );
      }
      try {
        await Deno.writeTextFile(`${base}.html`, await page.content());
        lines.push(`  page ${index} html: ${base}.html`);
      } catch (error) {
        lines.push(`  page ${index}: no html (${(error as Error).message})`);
      }
      await Deno.remove(base).catch(() => {});
      const log = this.log(page);
      for (const error of log.errors) {
        lines.push(`  page ${index} uncaught: ${error}`);
      }
      if (log.console.length > 0) {
        lines.push(`  page ${index} console (last lines):`);
        for (const line of log.console.slice(-10)) lines.push(`    ${line}`);
      }
    }
    return lines.join("\n");
  }

  /**
   * Ends the browser and every page: asks Chromium to exit, kills it after
   * {@linkcode CLOSE_MS}, waits until it has exited, and removes the
   * profile. Idempotent; never throws.
   *
   * @example
   * ```ts
   * import { TestBrowser } from "./browser.ts";
   * const browser = await TestBrowser.launch();
   * await browser.close();
   * await browser.close(); // does nothing more
   * ```
   */
  close(): Promise<void> {
    this.#closing ??= this.#close();
    return this.#closing;
  }

  async #close(): Promise<void> {
    // Puppeteer's close sends Browser.close and waits for the process to
    // exit, however long that takes: bound it, then kill.
    const closing = this.#browser.close().then(() => true, () => true);
    if (!(await withTimeout(closing, CLOSE_MS, false))) {
      this.#browser.process()?.kill("SIGKILL");
      await closing;
    }
    await removeDir(this.#profile);
  }
}

// ------------------------------------------------------- the chat page

/** What a {@linkcode browserTest} gets: a browser, a server, pages on them. */
export interface BrowserTestContext {
  /** A headless Chromium, closed after the test. */
  browser: TestBrowser;
  /** A hubchat server in this process, on 127.0.0.1 and a free port. */
  server: ChatServer;
  /**
   * Opens a page (its own storage) with `options` and joins the chat as
   * `name`, at `url` (default: the server's page).
   */
  join(name: string, options?: PageOptions & { url?: string }): Promise<Page>;
  /** Registers something to close at the end, before the server stops. */
  track<T extends Closer>(closer: T): T;
}

/** Options for {@linkcode browserTest}. */
export interface BrowserTestOptions {
  /** The server's options; `ratePerSecond` is 0 unless given here. */
  server?: ServerOptions;
}

/**
 * Defines a Deno test named `browser: NAME` with a fresh server
 * (`withServer`) and browser. Everything is closed whatever happens; a
 * failure gets a screenshot and the HTML of each open page (see
 * {@linkcode TestBrowser.report}) added to its message, and the test fails
 * if a page threw an uncaught exception.
 *
 * @example
 * ```ts
 * import { browserTest, say, waitForLine } from "./browser.ts";
 * browserTest("two pages chat", async ({ join }) => {
 *   const ann = await join("ann");
 *   const bob = await join("bob");
 *   await say(ann, "hi");
 *   await waitForLine(bob, "ann", "hi");
 * });
 * ```
 */
export function browserTest(
  name: string,
  body: (context: BrowserTestContext) => Promise<void>,
  options: BrowserTestOptions = {},
): void {
  Deno.test(`browser: ${name}`, async () => {
    await withServer(
      { ratePerSecond: 0, ...options.server },
      async (server, track) => {
        const browser = track(await TestBrowser.launch());
        try {
          await body({
            browser,
            server,
            track,
            async join(user, { url = server.url, ...pageOptions } = {}) {
              const page = await browser.newPage(pageOptions);
              await joinAs(page, url, user);
              return page;
            },
          });
          for (const page of browser.pages) {
            assert.deepEqual(
              browser.log(page).errors,
              [],
              "uncaught exceptions in the page",
            );
          }
        } catch (error) {
          const where = await browser.report().catch((e) => String(e));
          if (error instanceof Error && where) error.message += `\n${where}`;
          throw error;
        }
      },
    );
  });
}

/**
 * Replaces the value of the field matching `selector` by typing `text`, as
 * a person would (select all, type).
 *
 * @example
 * ```ts
 * import { startServer } from "../server.ts";
 * import { TestBrowser, fill } from "./browser.ts";
 * const server = await startServer({ port: 0 });
 * const browser = await TestBrowser.launch();
 * const page = await browser.newPage();
 * await page.goto(server.url);
 * await fill(page, "#name-input", "ann");
 * await browser.close();
 * await server.shutdown();
 * ```
 */
export async function fill(
  page: Page,
  selector: string,
  text: string,
): Promise<void> {
  await page.focus(selector);
  await page.evaluate(`document.querySelector(${js(selector)}).select()`);
  await page.keyboard.type(text);
}

/**
 * Opens the chat at `url` and waits for its name form.
 *
 * @example
 * ```ts
 * import { startServer } from "../server.ts";
 * import { TestBrowser, openChat } from "./browser.ts";
 * const server = await startServer({ port: 0 });
 * const browser = await TestBrowser.launch();
 * const page = await browser.newPage();
 * await openChat(page, server.url);
 * await browser.close();
 * await server.shutdown();
 * ```
 */
export async function openChat(page: Page, url: string): Promise<void> {
  await page.goto(url);
  await waitFor(page, NAME_FORM_SHOWN, { what: "the name form" });
}

/** True in the page while its name form is on screen. */
const NAME_FORM_SHOWN =
  `(() => { const i = document.getElementById("name-input"); return !!i && i.offsetParent !== null; })()`;

/**
 * Opens the chat at `url`, fills in the name form as `name`, presses Join,
 * and waits until the page is online with `name` in its user list.
 *
 * @example
 * ```ts
 * import { startServer } from "../server.ts";
 * import { TestBrowser, joinAs } from "./browser.ts";
 * const server = await startServer({ port: 0 });
 * const browser = await TestBrowser.launch();
 * const page = await browser.newPage();
 * await joinAs(page, server.url, "ann");
 * await browser.close();
 * await server.shutdown();
 * ```
 */
export async function joinAs(
  page: Page,
  url: string,
  name: string,
): Promise<void> {
  await openChat(page, url);
  await fill(page, "#name-input", name);
  await page.click("#join");
  await waitOnline(page);
  await waitFor(
    page,
    `!!document.querySelector(${js(`#users li[data-user="${name}"]`)})`,
    { what: `${name} in the user list` },
  );
}

/**
 * Waits until the page's connection indicator says it is online.
 *
 * @example
 * ```ts
 * import { startServer } from "../server.ts";
 * import { TestBrowser, joinAs, waitOnline } from "./browser.ts";
 * const server = await startServer({ port: 0 });
 * const browser = await TestBrowser.launch();
 * const page = await browser.newPage();
 * await joinAs(page, server.url, "ann");
 * await waitOnline(page, 20_000); // as after a server restart
 * await browser.close();
 * await server.shutdown();
 * ```
 */
export async function waitOnline(page: Page, timeout?: number): Promise<void> {
  await waitFor(
    page,
    `document.getElementById("status")?.dataset.state === "online"`,
    { what: "#status online", timeout },
  );
}

/**
 * Takes the page offline and drops its socket, as a lost network does
 * (Chromium's offline mode leaves open sockets up). Between two attempts
 * the page has no socket to drop, which is fine.
 *
 * @example
 * ```ts
 * import { startServer } from "../server.ts";
 * import { goOffline, joinAs, TestBrowser, waitOnline } from "./browser.ts";
 * const server = await startServer({ port: 0 });
 * const browser = await TestBrowser.launch();
 * const page = await browser.newPage();
 * await joinAs(page, server.url, "ann");
 * await goOffline(page);
 * await page.setOfflineMode(false);
 * await waitOnline(page, 20_000);
 * await browser.close();
 * await server.shutdown();
 * ```
 */
export async function goOffline(page: Page): Promise<void> {
  await page.setOfflineMode(true);
  await page.evaluate(`state.ws?.close()`);
}

/**
 * Types a line into the composer and presses Enter, waiting for nothing:
 * for a line the server refuses at once, whose text the page may put back
 * before a test could see the composer empty.
 *
 * @example
 * ```ts
 * import { startServer } from "../server.ts";
 * import { joinAs, TestBrowser, typeAndSend } from "./browser.ts";
 * const server = await startServer({ port: 0 });
 * const browser = await TestBrowser.launch();
 * const page = await browser.newPage();
 * await joinAs(page, server.url, "ann");
 * await typeAndSend(page, "hello");
 * await browser.close();
 * await server.shutdown();
 * ```
 */
export async function typeAndSend(page: Page, text: string): Promise<void> {
  await page.type("#message-input", text);
  await page.keyboard.press("Enter");
}

/**
 * Types a line into the composer, presses Enter, and waits for the
 * composer to clear (the page sent it).
 *
 * @example
 * ```ts
 * import { startServer } from "../server.ts";
 * import { TestBrowser, joinAs, say } from "./browser.ts";
 * const server = await startServer({ port: 0 });
 * const browser = await TestBrowser.launch();
 * const page = await browser.newPage();
 * await joinAs(page, server.url, "ann");
 * await say(page, "hello");
 * await browser.close();
 * await server.shutdown();
 * ```
 */
export async function say(page: Page, text: string): Promise<void> {
  await typeAndSend(page, text);
  await waitFor(
    page,
    `document.getElementById("message-input").value === ""`,
    { what: `the composer to clear after sending ${js(text.slice(0, 30))}` },
  );
}

/** A chat line as the page shows it (`.msg` in `#log`). */
export interface ChatLine {
  /** Its sender (`data-user`). */
  user: string | null;
  /** The sender as written above it (`.who`, kept for grouped lines too). */
  who: string | null;
  /** Its text. */
  text: string | null;
  /** Its message id (`data-id`). */
  id: string | null;
  /** Its `<time datetime>`. */
  time: string | null;
}

const READ_LINES = `[...document.querySelectorAll("#log .msg")].map((m) => ({
  user: m.dataset.user ?? null,
  who: m.querySelector(".who")?.textContent ?? null,
  text: m.querySelector(".text")?.textContent ?? null,
  id: m.dataset.id ?? null,
  time: m.querySelector("time")?.getAttribute("datetime") ?? null,
}))`;

/**
 * The chat lines the page shows, oldest first.
 *
 * @example
 * ```ts
 * import { startServer } from "../server.ts";
 * import { TestBrowser, chatLines, joinAs, say, waitForLine } from "./browser.ts";
 * const server = await startServer({ port: 0 });
 * const browser = await TestBrowser.launch();
 * const page = await browser.newPage();
 * await joinAs(page, server.url, "ann");
 * await say(page, "hi");
 * await waitForLine(page, "ann", "hi");
 * (await chatLines(page)).map((line) => line.text); // ["hi"]
 * await browser.close();
 * await server.shutdown();
 * ```
 */
export async function chatLines(page: Page): Promise<ChatLine[]> {
  return await page.evaluate(READ_LINES) as ChatLine[];
}

/**
 * Waits until the log shows a line by `user` with exactly `text`.
 *
 * @example
 * ```ts
 * import { startServer } from "../server.ts";
 * import { TestBrowser, joinAs, say, waitForLine } from "./browser.ts";
 * const server = await startServer({ port: 0 });
 * const browser = await TestBrowser.launch();
 * const page = await browser.newPage();
 * await joinAs(page, server.url, "ann");
 * await say(page, "hi");
 * await waitForLine(page, "ann", "hi");
 * await browser.close();
 * await server.shutdown();
 * ```
 */
export async function waitForLine(
  page: Page,
  user: string,
  text: string,
  timeout?: number,
): Promise<void> {
  await waitFor(
    page,
    `[...document.querySelectorAll("#log .msg")].some((m) =>
      m.dataset.user === ${js(user)} &&
      m.querySelector(".text")?.textContent === ${js(text)})`,
    { what: `a line by ${user}: ${js(text.slice(0, 40))}`, timeout },
  );
}

/**
 * Resolves after the page has painted twice, so its scroll and resize
 * handlers have run.
 *
 * @example
 * ```ts
 * import { startServer } from "../server.ts";
 * import { TestBrowser, frames, joinAs } from "./browser.ts";
 * const server = await startServer({ port: 0 });
 * const browser = await TestBrowser.launch();
 * const page = await browser.newPage();
 * await joinAs(page, server.url, "ann");
 * await page.evaluate(`document.getElementById("log").scrollTop = 0`);
 * await frames(page);
 * await browser.close();
 * await server.shutdown();
 * ```
 */
export async function frames(page: Page): Promise<void> {
  await page.evaluate(
    "new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(() => r(true))))",
  );
}

/**
 * The names in the page's online list (`#users`), in its order.
 *
 * @example
 * ```ts
 * import { startServer } from "../server.ts";
 * import { joinAs, onlineList, TestBrowser } from "./browser.ts";
 * const server = await startServer({ port: 0 });
 * const browser = await TestBrowser.launch();
 * const page = await browser.newPage();
 * await joinAs(page, server.url, "ann");
 * await onlineList(page); // ["ann"]
 * await browser.close();
 * await server.shutdown();
 * ```
 */
export async function onlineList(page: Page): Promise<string[]> {
  return await page.evaluate(
    `[...document.querySelectorAll("#users li")].map((li) => li.dataset.user)`,
  ) as string[];
}

/**
 * What the log shows, in order, day separators aside: each entry's
 * `data-type` ("room-intro", "join", "presence", "gap"…), or "line" for a
 * chat line.
 *
 * @example
 * ```ts
 * import { startServer } from "../server.ts";
 * import { joinAs, logEntries, say, TestBrowser } from "./browser.ts";
 * const server = await startServer({ port: 0 });
 * const browser = await TestBrowser.launch();
 * const page = await browser.newPage();
 * await joinAs(page, server.url, "ann");
 * await say(page, "hi");
 * await logEntries(page); // ["room-intro", "join", "line"]
 * await browser.close();
 * await server.shutdown();
 * ```
 */
export async function logEntries(page: Page): Promise<string[]> {
  return await page.evaluate(
    `[...document.querySelectorAll("#log > :not(.day)")].map((n) =>
      n.classList.contains("msg") ? "line" : n.dataset.type)`,
  ) as string[];
}

/**
 * On a phone, opens the rooms and people panel from the header's online
 * count and waits until it has slid in.
 *
 * @example
 * ```ts
 * import { startServer } from "../server.ts";
 * import { joinAs, openPeoplePanel, PHONE, TestBrowser } from "./browser.ts";
 * const server = await startServer({ port: 0 });
 * const browser = await TestBrowser.launch();
 * const page = await browser.newPage({ viewport: PHONE });
 * await joinAs(page, server.url, "ann");
 * await openPeoplePanel(page);
 * await browser.close();
 * await server.shutdown();
 * ```
 */
export async function openPeoplePanel(page: Page): Promise<void> {
  await page.click("#online-toggle");
  await waitFor(
    page,
    `(() => { const panel = document.getElementById("users-panel");
      return panel.classList.contains("open") &&
        getComputedStyle(panel).transform === "none"; })()`,
    { what: "the people panel open, its slide over" },
  );
}

// ------------------------------------------------------------ layout

/**
 * The folder screenshots are written to, from `HUBCHAT_SCREENSHOTS` (keep it
 * outside the repository); unset, {@linkcode snapshot} takes none.
 */
const SCREENSHOTS: string | undefined = Deno.env.get(
  "HUBCHAT_SCREENSHOTS",
);

/**
 * With `HUBCHAT_SCREENSHOTS=DIR`, writes a screenshot of `page` to
 * `DIR/NAME.png`, to look at; otherwise does nothing.
 *
 * @example
 * ```ts
 * import { snapshot, TestBrowser } from "./browser.ts";
 * const browser = await TestBrowser.launch();
 * const page = await browser.newPage();
 * await page.goto("data:text/html,<p>hi</p>");
 * await snapshot(page, "greeting"); // DIR/greeting.png, if asked for
 * await browser.close();
 * ```
 */
export async function snapshot(page: Page, name: string): Promise<void> {
  if (SCREENSHOTS === undefined) return;
  await Deno.mkdir(SCREENSHOTS, { recursive: true });
  await page.screenshot({ path: `${SCREENSHOTS}/${name}.png` });
}

/**
 * The widths the layout tests run at, by name: a phone and a desktop.
 *
 * @example
 * ```ts
 * import { LAYOUTS } from "./browser.ts";
 * for (const [width, viewport] of LAYOUTS) console.log(width, viewport.width);
 * ```
 */
export const LAYOUTS: readonly (readonly [string, Viewport])[] = [
  ["phone", PHONE],
  ["desktop", DESKTOP],
];

/** A contrast problem: text, its color, its background, the ratio. */
export interface Contrast {
  /** The selector whose first visible element was measured. */
  selector: string;
  /** Its text color, blended over its background, as "r,g,b". */
  color: string;
  /** The background behind it, as "r,g,b". */
  background: string;
  /** The WCAG contrast ratio (0 when nothing matched on screen). */
  ratio: number;
}

/**
 * WCAG contrast of the first visible element per selector against the
 * background behind it (semi-transparent layers blended, down to the first
 * opaque one). Colors are read through a canvas, which takes any CSS color.
 */
const CONTRAST = `(selectors) => {
  const canvas = document.createElement("canvas");
  canvas.width = canvas.height = 1;
  const ctx = canvas.getContext("2d", { willReadFrequently: true });
  const rgba = (color) => {
    ctx.clearRect(0, 0, 1, 1);
    ctx.fillStyle = "#000"; ctx.fillStyle = color;
    ctx.fillRect(0, 0, 1, 1);
    const [r, g, b, a] = ctx.getImageData(0, 0, 1, 1).data;
    return [r, g, b, a / 255];
  };
  const over = (top, under) => top.slice(0, 3).map((c, i) => c * top[3] + under[i] * (1 - top[3]));
  const behind = (el) => {
    const layers = [];
    for (let n = el; n; n = n.parentElement) {
      const c = rgba(getComputedStyle(n).backgroundColor);
      if (c[3] > 0) layers.push(c);
      if (c[3] === 1) break;
    }
    let color = layers.length && layers[layers.length - 1][3] === 1 ? layers.pop() : [255, 255, 255, 1];
    while (layers.length) color = [...over(layers.pop(), color), 1];
    return color;
  };
  const luminance = (rgb) => {
    const [r, g, b] = rgb.map((v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; });
    return 0.2126 * r + 0.7152 * g + 0.0722 * b;
  };
  return selectors.map((selector) => {
    const el = [...document.querySelectorAll(selector)].find((e) => e.getClientRects().length > 0);
    if (!el) return { selector, color: "", background: "", ratio: 0 };
    const bg = behind(el);
    const fg = over(rgba(getComputedStyle(el).color), bg);
    const [hi, lo] = [luminance(fg), luminance(bg)].sort((a, b) => b - a);
    return { selector, color: fg.map(Math.round).join(","), background: bg.slice(0, 3).map(Math.round).join(","),
      ratio: Math.round(((hi + 0.05) / (lo + 0.05)) * 100) / 100 };
  });
}`;

/**
 * Asserts the text of the first visible element of each selector has at
 * least 4.5:1 contrast (WCAG AA) against what is behind it; a selector
 * matching nothing on screen fails too.
 *
 * @example
 * ```ts
 * import { assertReadable, TestBrowser } from "./browser.ts";
 * const browser = await TestBrowser.launch();
 * const page = await browser.newPage({ colorScheme: "dark" });
 * await page.goto("data:text/html,<p id=x style='color:#fff;background:#000'>hi</p>");
 * await assertReadable(page, ["#x"]);
 * await browser.close();
 * ```
 */
export async function assertReadable(
  page: Page,
  selectors: string[],
): Promise<void> {
  const results = await page.evaluate(
    `(${CONTRAST})(${js(selectors)})`,
  ) as Contrast[];
  const poor = results.filter((result) => !(result.ratio >= 4.5));
  assert.deepEqual(poor, [], "text below 4.5:1 contrast (or not shown)");
}

/**
 * Asserts the chat page's header (`#topbar`): its visible parts neither
 * overlap nor leave the window, and neither the connection state nor the
 * online count is cut short. `state` names the moment, for the message.
 *
 * @example
 * ```ts
 * import { startServer } from "../server.ts";
 * import { assertHeaderFits, joinAs, PHONE, TestBrowser } from "./browser.ts";
 * const server = await startServer({ port: 0 });
 * const browser = await TestBrowser.launch();
 * const page = await browser.newPage({ viewport: PHONE });
 * await joinAs(page, server.url, "ann");
 * await assertHeaderFits(page, "online");
 * await browser.close();
 * await server.shutdown();
 * ```
 */
export async function assertHeaderFits(
  page: Page,
  state: string,
): Promise<void> {
  const problems = await page.evaluate(`(() => {
    const parts = [...document.querySelectorAll("#topbar > *")].filter(${SHOWN})
      .map((el) => [el.id || el.className, el.getBoundingClientRect()]);
    const problems = (${APART})(parts, "the window", { left: 0, right: window.innerWidth, top: 0, bottom: window.innerHeight });
    for (const id of ["status-text", "online-summary"]) {
      const el = document.getElementById(id);
      if (el.getClientRects().length && el.scrollWidth > el.clientWidth + 1) problems.push(id + " is cut short");
    }
    return problems;
  })()`);
  assert.deepEqual(problems, [], `the header, ${state}`);
}

/**
 * Asserts the first shown element of each selector is inside the first of
 * `within` (default: the window) and overlaps none of the others; a
 * selector with nothing shown fails. `what` names the place, for the
 * message.
 *
 * @example
 * ```ts
 * import { assertApart, TestBrowser } from "./browser.ts";
 * const browser = await TestBrowser.launch();
 * const page = await browser.newPage();
 * await page.goto("data:text/html,<main><p id=a>one</p><p id=b>two</p></main>");
 * await assertApart(page, ["#a", "#b"], "the paragraphs", "main");
 * await browser.close();
 * ```
 */
export async function assertApart(
  page: Page,
  selectors: string[],
  what: string,
  within?: string,
): Promise<void> {
  const problems = await page.evaluate(`((selectors, within) => {
    const shown = ${SHOWN};
    const parts = [];
    const missing = [];
    for (const selector of selectors) {
      const el = [...document.querySelectorAll(selector)].find(shown);
      if (el) parts.push([selector, el.getBoundingClientRect()]);
      else missing.push(selector + " is not shown");
    }
    const bounds = within === null
      ? { left: 0, right: window.innerWidth, top: 0, bottom: window.innerHeight }
      : document.querySelector(within).getBoundingClientRect();
    return [...missing, ...(${APART})(parts, within ?? "the window", bounds)];
  })(${js(selectors)}, ${js(within ?? null)})`);
  assert.deepEqual(problems, [], what);
}

/** In the page: whether an element takes room on screen. */
const SHOWN =
  `(el) => el.getClientRects().length > 0 && getComputedStyle(el).visibility !== "hidden"`;

/**
 * In the page: the problems of named boxes, `[name, DOMRect][]`, that
 * should all be inside `bounds` (named `where`) and overlap none of the
 * others (half a pixel of rounding allowed).
 */
const APART = `(parts, where, bounds) => {
  const problems = [];
  for (const [name, box] of parts) {
    if (box.left < bounds.left - 0.5 || box.right > bounds.right + 0.5 ||
      box.top < bounds.top - 0.5 || box.bottom > bounds.bottom + 0.5) problems.push(name + " leaves " + where);
  }
  for (let i = 0; i < parts.length; i++) {
    for (let j = i + 1; j < parts.length; j++) {
      const [a, p] = parts[i], [b, q] = parts[j];
      if (p.left < q.right - 0.5 && q.left < p.right - 0.5 && p.top < q.bottom - 0.5 && q.top < p.bottom - 0.5) {
        problems.push(a + " overlaps " + b);
      }
    }
  }
  return problems;
}`;

/**
 * The chat page's header text as shown (what a sighted person reads there),
 * its white space collapsed.
 *
 * @example
 * ```ts
 * import { startServer } from "../server.ts";
 * import { headerText, joinAs, TestBrowser } from "./browser.ts";
 * const server = await startServer({ port: 0 });
 * const browser = await TestBrowser.launch();
 * const page = await browser.newPage();
 * await joinAs(page, server.url, "ann");
 * await headerText(page); // "hubchat / # lobby 1 online ann"
 * await browser.close();
 * await server.shutdown();
 * ```
 */
export async function headerText(page: Page): Promise<string> {
  return await page.evaluate(
    `document.getElementById("topbar").innerText.replace(/\\s+/g, " ").trim()`,
  ) as string;
}

const js = JSON.stringify;

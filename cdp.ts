/**
 * A small Chrome DevTools Protocol driver for the browser tests: it starts a
 * headless Chromium, speaks CDP over Deno's own WebSocket, and drives pages
 * (navigate, evaluate, type, click, wait for a DOM condition, screenshot).
 * No packages: only what Deno ships.
 *
 * Every wait is bounded and clears its timer; {@linkcode Browser.close}
 * ends the browser (Browser.close, then SIGKILL if it lingers), waits for
 * the process, its stderr and the socket, and removes the profile folder,
 * so tests that close their browser pass Deno's sanitizers.
 *
 * ```ts
 * import { Browser } from "./cdp.ts";
 * const browser = await Browser.launch();
 * try {
 *   const page = await browser.newPage();
 *   await page.goto("data:text/html,<p id=x>hi</p>");
 *   await page.waitFor("document.getElementById('x')?.textContent === 'hi'");
 * } finally {
 *   await browser.close();
 * }
 * ```
 *
 * @module
 */

/** Bound on one CDP command, in milliseconds. */
export const COMMAND_MS = 10_000;
/** Default bound on {@linkcode Page.waitFor}, in milliseconds. */
export const WAIT_FOR_MS = 10_000;
/** Bound on starting the browser until its DevTools endpoint is known. */
export const LAUNCH_MS = 30_000;

/** Where to look for the browser, in order, after `$CHROMIUM_PATH`. */
export const BROWSER_NAMES: readonly string[] = [
  "chromium",
  "chromium-browser",
  "/usr/bin/chromium",
];

/** Flags for a quiet, headless, throwaway browser. */
export const BROWSER_FLAGS: readonly string[] = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--no-default-browser-check",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--disable-extensions",
  "--disable-dev-shm-usage",
  "--disable-background-timer-throttling",
  "--disable-backgrounding-occluded-windows",
  "--disable-renderer-backgrounding",
  "--disable-features=Translate,MediaRouter,OptimizationHints",
  "--password-store=basic",
  "--mute-audio",
  "--window-size=1200,800",
  "--remote-debugging-port=0",
];

/** How to get a browser, for the error when none is found. */
export const INSTALL_HINT =
  "the browser tests need Chromium: install it with `apt-get install -y chromium` " +
  "(Debian/Ubuntu; .ci/run does this in CI) or set CHROMIUM_PATH to a Chrome/Chromium binary";

/** Resolves after `ms` milliseconds. */
export function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * Waits for `promise`, or rejects after `ms` saying what was awaited. The
 * timer is cleared either way.
 */
export function bounded<T>(
  promise: Promise<T>,
  what: string,
  ms: number,
): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const expired = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)),
      ms,
    );
  });
  return Promise.race([promise, expired]).finally(() => clearTimeout(timer));
}

async function isFile(path: string): Promise<boolean> {
  try {
    return (await Deno.stat(path)).isFile;
  } catch {
    return false;
  }
}

/**
 * The path of a Chromium binary: `$CHROMIUM_PATH` if set, else the first of
 * {@linkcode BROWSER_NAMES} found (names are searched on `$PATH`); null if
 * there is none.
 */
export async function findBrowser(): Promise<string | null> {
  const fromEnv = Deno.env.get("CHROMIUM_PATH");
  if (fromEnv) return (await isFile(fromEnv)) ? fromEnv : null;
  const dirs = (Deno.env.get("PATH") ?? "").split(":").filter((d) => d);
  for (const name of BROWSER_NAMES) {
    if (name.includes("/")) {
      if (await isFile(name)) return name;
      continue;
    }
    for (const dir of dirs) {
      const path = `${dir}/${name}`;
      if (await isFile(path)) return path;
    }
  }
  return null;
}

/** A CDP error reply, or a command that could not be sent. */
export class CdpError extends Error {
  /** Creates the error for `method` with the protocol's message. */
  constructor(method: string, message: string) {
    super(`${method}: ${message}`);
    this.name = "CdpError";
  }
}

// deno-lint-ignore no-explicit-any
type Json = any;

interface Pending {
  method: string;
  resolve(value: Json): void;
  reject(error: Error): void;
  timer: ReturnType<typeof setTimeout>;
}

type Listener = (params: Json) => void;

/** One WebSocket to the browser, carrying every session (flatten mode). */
class Connection {
  #socket: WebSocket;
  #nextId = 1;
  #pending = new Map<number, Pending>();
  /** Listeners by `${sessionId}|${method}` ("" is the browser session). */
  #listeners = new Map<string, Set<Listener>>();
  readonly opened: Promise<void>;
  readonly closed: Promise<void>;
  #isClosed = false;

  constructor(url: string) {
    this.#socket = new WebSocket(url);
    this.opened = new Promise((resolve, reject) => {
      this.#socket.addEventListener("open", () => resolve());
      this.#socket.addEventListener(
        "close",
        () => reject(new Error(`DevTools socket ${url} closed before open`)),
      );
    });
    // Nobody may await `opened` if the constructor's caller gives up.
    this.opened.catch(() => {});
    this.closed = new Promise((resolve) => {
      this.#socket.addEventListener("close", () => {
        this.#isClosed = true;
        for (const [id, pending] of this.#pending) {
          clearTimeout(pending.timer);
          pending.reject(
            new CdpError(pending.method, "the browser connection closed"),
          );
          this.#pending.delete(id);
        }
        resolve();
      });
    });
    this.#socket.addEventListener("message", (event) => {
      if (typeof event.data !== "string") return;
      let message: Json;
      try {
        message = JSON.parse(event.data);
      } catch {
        return;
      }
      if (typeof message.id === "number") {
        const pending = this.#pending.get(message.id);
        if (pending === undefined) return;
        this.#pending.delete(message.id);
        clearTimeout(pending.timer);
        if (message.error) {
          pending.reject(
            new CdpError(
              pending.method,
              `${message.error.message} (${message.error.code})${
                message.error.data ? ": " + message.error.data : ""
              }`,
            ),
          );
        } else {
          pending.resolve(message.result ?? {});
        }
        return;
      }
      if (typeof message.method === "string") {
        const key = `${message.sessionId ?? ""}|${message.method}`;
        for (const listener of this.#listeners.get(key) ?? []) {
          try {
            listener(message.params ?? {});
          } catch {
            // A listener's failure is its own business.
          }
        }
      }
    });
  }

  get isClosed(): boolean {
    return this.#isClosed;
  }

  send(
    method: string,
    params: Json = {},
    sessionId?: string,
    ms: number = COMMAND_MS,
  ): Promise<Json> {
    if (this.#isClosed || this.#socket.readyState !== WebSocket.OPEN) {
      return Promise.reject(
        new CdpError(method, "the browser connection is closed"),
      );
    }
    const id = this.#nextId++;
    const message: Json = { id, method, params };
    if (sessionId !== undefined) message.sessionId = sessionId;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#pending.delete(id);
        reject(new CdpError(method, `no reply within ${ms} ms`));
      }, ms);
      this.#pending.set(id, { method, resolve, reject, timer });
      this.#socket.send(JSON.stringify(message));
    });
  }

  on(sessionId: string, method: string, listener: Listener): () => void {
    const key = `${sessionId}|${method}`;
    let set = this.#listeners.get(key);
    if (set === undefined) {
      set = new Set();
      this.#listeners.set(key, set);
    }
    set.add(listener);
    return () => set.delete(listener);
  }

  /** Waits for one event matching `accept`, at most `ms`. */
  waitForEvent(
    sessionId: string,
    method: string,
    accept: (params: Json) => boolean,
    ms: number,
  ): { promise: Promise<Json>; cancel(): void } {
    let off = (): void => {};
    let timer: ReturnType<typeof setTimeout> | undefined;
    const promise = new Promise<Json>((resolve, reject) => {
      off = this.on(sessionId, method, (params) => {
        if (!accept(params)) return;
        off();
        clearTimeout(timer);
        resolve(params);
      });
      timer = setTimeout(() => {
        off();
        reject(new Error(`timed out after ${ms} ms waiting for ${method}`));
      }, ms);
    });
    promise.catch(() => {});
    return {
      promise,
      cancel(): void {
        off();
        clearTimeout(timer);
      },
    };
  }

  async close(): Promise<void> {
    if (
      this.#socket.readyState === WebSocket.OPEN ||
      this.#socket.readyState === WebSocket.CONNECTING
    ) {
      try {
        this.#socket.close();
      } catch {
        // Closing already.
      }
    }
    await bounded(this.closed, "the DevTools socket to close", 5000);
  }
}

/** Keeps the last `max` characters written to it. */
class Tail {
  #text = "";
  constructor(readonly max: number) {}
  push(chunk: string): void {
    this.#text = (this.#text + chunk).slice(-this.max);
  }
  toString(): string {
    return this.#text;
  }
}

/** Options for {@linkcode Browser.launch}. */
export interface LaunchOptions {
  /** The binary; default: {@linkcode findBrowser}. */
  executable?: string;
  /** Extra command-line flags. */
  args?: string[];
}

/** A running headless Chromium. */
export class Browser {
  readonly #process: Deno.ChildProcess;
  readonly #connection: Connection;
  readonly #profile: string;
  readonly #stderrDone: Promise<void>;
  readonly #stderrReader: ReadableStreamDefaultReader<string>;
  readonly #stderr: Tail;
  readonly #pages = new Set<Page>();
  #closing: Promise<void> | undefined;

  private constructor(
    process: Deno.ChildProcess,
    connection: Connection,
    profile: string,
    stderrReader: ReadableStreamDefaultReader<string>,
    stderrDone: Promise<void>,
    stderr: Tail,
  ) {
    this.#process = process;
    this.#connection = connection;
    this.#profile = profile;
    this.#stderrReader = stderrReader;
    this.#stderrDone = stderrDone;
    this.#stderr = stderr;
  }

  /**
   * Starts a headless browser with a fresh profile in a temporary folder.
   * Throws with {@linkcode INSTALL_HINT} when no browser is installed.
   */
  static async launch(options: LaunchOptions = {}): Promise<Browser> {
    const executable = options.executable ?? await findBrowser();
    if (executable === null) {
      throw new Error(`no Chromium found: ${INSTALL_HINT}`);
    }
    const profile = await Deno.makeTempDir({ prefix: "hubchat-chromium-" });
    let process: Deno.ChildProcess;
    try {
      process = new Deno.Command(executable, {
        args: [
          ...BROWSER_FLAGS,
          `--user-data-dir=${profile}`,
          ...(options.args ?? []),
          "about:blank",
        ],
        stdin: "null",
        stdout: "null",
        stderr: "piped",
      }).spawn();
    } catch (error) {
      await removeDir(profile);
      throw new Error(
        `cannot start ${executable}: ${
          (error as Error).message
        }; ${INSTALL_HINT}`,
      );
    }
    // Read stderr to its end in the background: the endpoint line comes
    // first, the rest is kept (the tail) for error messages.
    const stderr = new Tail(8000);
    const reader = process.stderr.pipeThrough(new TextDecoderStream())
      .getReader();
    const { promise: endpoint, resolve: foundEndpoint } = Promise
      .withResolvers<string | null>();
    const stderrDone = (async () => {
      let line = "";
      let found = false;
      try {
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          stderr.push(value);
          if (found) continue;
          line += value;
          const match = line.match(/DevTools listening on (ws:\/\/\S+)/);
          if (match) {
            found = true;
            foundEndpoint(match[1]);
          }
          line = line.slice(-500);
        }
      } catch {
        // Cancelled at close.
      } finally {
        foundEndpoint(null);
      }
    })();
    const status = process.status;
    const exited = status.then((s) => `exited with code ${s.code}`);
    let url: string | null;
    try {
      url = await bounded(
        Promise.race([endpoint, exited.then(() => null)]),
        "Chromium to print its DevTools endpoint",
        LAUNCH_MS,
      );
    } catch (error) {
      url = null;
      stderr.push(`\n[${(error as Error).message}]`);
    }
    if (url === null) {
      await stopProcess(process, reader, stderrDone);
      await removeDir(profile);
      throw new Error(
        `${executable} did not start (${INSTALL_HINT}); its stderr:\n${stderr}`,
      );
    }
    const connection = new Connection(url);
    try {
      await bounded(connection.opened, "the DevTools socket to open", 10_000);
    } catch (error) {
      await connection.close().catch(() => {});
      await stopProcess(process, reader, stderrDone);
      await removeDir(profile);
      throw error;
    }
    return new Browser(
      process,
      connection,
      profile,
      reader,
      stderrDone,
      stderr,
    );
  }

  /** The browser's recent stderr (for failure reports). */
  get stderr(): string {
    return this.#stderr.toString();
  }

  /** Pages open now. */
  get pages(): Page[] {
    return [...this.#pages];
  }

  /**
   * Opens a blank page in its own browser context (its own cookies and
   * localStorage, like a separate person), attached in flatten mode.
   */
  async newPage(
    { width = 1200, height = 800 }: { width?: number; height?: number } = {},
  ): Promise<Page> {
    const c = this.#connection;
    const { browserContextId } = await c.send("Target.createBrowserContext", {
      disposeOnDetach: true,
    });
    const { targetId } = await c.send("Target.createTarget", {
      url: "about:blank",
      browserContextId,
      width,
      height,
    });
    const { sessionId } = await c.send("Target.attachToTarget", {
      targetId,
      flatten: true,
    });
    const page = new Page(c, targetId, sessionId, browserContextId, () => {
      this.#pages.delete(page);
    });
    this.#pages.add(page);
    await page.init({ width, height });
    return page;
  }

  /**
   * Ends the browser: Browser.close, then SIGKILL after 5 s; waits for the
   * process, stderr and the socket, and removes the profile. Idempotent.
   */
  close(): Promise<void> {
    this.#closing ??= this.#close();
    return this.#closing;
  }

  async #close(): Promise<void> {
    if (!this.#connection.isClosed) {
      // The reply may never come: the browser exits while answering.
      await this.#connection.send("Browser.close", {}, undefined, 3000)
        .catch(() => {});
    }
    await stopProcess(this.#process, this.#stderrReader, this.#stderrDone);
    await this.#connection.close().catch(() => {});
    await removeDir(this.#profile);
  }
}

/** Waits for the process to exit (SIGKILL after 5 s), then for stderr. */
async function stopProcess(
  process: Deno.ChildProcess,
  reader: ReadableStreamDefaultReader<string>,
  stderrDone: Promise<void>,
): Promise<void> {
  try {
    await bounded(process.status, "Chromium to exit", 5000);
  } catch {
    try {
      process.kill("SIGKILL");
    } catch {
      // Gone already.
    }
    await process.status;
  }
  // Helpers the browser started may still hold the pipe for a moment.
  try {
    await bounded(stderrDone, "Chromium's stderr to end", 2000);
  } catch {
    await reader.cancel().catch(() => {});
    await stderrDone;
  }
}

async function removeDir(path: string): Promise<void> {
  for (let attempt = 0; attempt < 5; attempt++) {
    try {
      await Deno.remove(path, { recursive: true });
      return;
    } catch (error) {
      if (error instanceof Deno.errors.NotFound) return;
      await delay(100);
    }
  }
}

function base64ToBytes(data: string): Uint8Array<ArrayBuffer> {
  const text = atob(data);
  const bytes = new Uint8Array(text.length);
  for (let i = 0; i < text.length; i++) bytes[i] = text.charCodeAt(i);
  return bytes;
}

/** Options for {@linkcode Page.waitFor}. */
export interface WaitOptions {
  /** Bound in milliseconds; default {@linkcode WAIT_FOR_MS}. */
  timeout?: number;
  /** What is awaited, for the error message; default: the expression. */
  what?: string;
  /** Poll interval in milliseconds; default 25. */
  interval?: number;
}

/** An uncaught exception or console error seen in a page. */
export interface PageProblem {
  /** "exception" or the console call's type ("error", "assert"). */
  kind: string;
  /** Its text. */
  text: string;
}

/** One page (a tab in its own browser context), driven over its session. */
export class Page {
  readonly #connection: Connection;
  readonly #onClose: () => void;
  /** The target's id. */
  readonly targetId: string;
  /** The flatten-mode session id. */
  readonly sessionId: string;
  /** The browser context (its own storage). */
  readonly browserContextId: string;
  /** Uncaught exceptions and console errors seen so far. */
  readonly problems: PageProblem[] = [];
  /** The last console lines (any level), for failure reports. */
  readonly console: string[] = [];
  #closed = false;

  /** Use {@linkcode Browser.newPage}. */
  constructor(
    connection: Connection,
    targetId: string,
    sessionId: string,
    browserContextId: string,
    onClose: () => void,
  ) {
    this.#connection = connection;
    this.targetId = targetId;
    this.sessionId = sessionId;
    this.browserContextId = browserContextId;
    this.#onClose = onClose;
    connection.on(sessionId, "Runtime.exceptionThrown", (params) => {
      const details = params.exceptionDetails ?? {};
      this.problems.push({
        kind: "exception",
        text: details.exception?.description ?? details.text ?? "exception",
      });
    });
    connection.on(sessionId, "Runtime.consoleAPICalled", (params) => {
      const text = (params.args ?? []).map((arg: Json) =>
        arg.value !== undefined ? String(arg.value) : arg.description ?? ""
      ).join(" ");
      this.console.push(`${params.type}: ${text}`);
      if (this.console.length > 50) this.console.shift();
      if (params.type === "error" || params.type === "assert") {
        this.problems.push({ kind: params.type, text });
      }
    });
  }

  /** Enables the domains the driver uses. */
  async init(
    { width, height }: { width: number; height: number },
  ): Promise<void> {
    await this.send("Page.enable");
    await this.send("Runtime.enable");
    await this.send("Emulation.setDeviceMetricsOverride", {
      width,
      height,
      deviceScaleFactor: 1,
      mobile: false,
    });
    // Every page behaves as the focused, visible one.
    await this.send("Emulation.setFocusEmulationEnabled", { enabled: true });
  }

  /** Sends a command on this page's session. */
  send(method: string, params: Json = {}, ms?: number): Promise<Json> {
    return this.#connection.send(method, params, this.sessionId, ms);
  }

  /** Navigates and waits for the load event. */
  async goto(url: string, ms = 15_000): Promise<void> {
    const load = this.#connection.waitForEvent(
      this.sessionId,
      "Page.loadEventFired",
      () => true,
      ms,
    );
    try {
      const result = await this.send("Page.navigate", { url }, ms);
      if (result.errorText) {
        throw new Error(`navigating to ${url}: ${result.errorText}`);
      }
      await load.promise;
    } finally {
      load.cancel();
    }
  }

  /**
   * Evaluates a JavaScript expression in the page (awaiting a promise it
   * gives) and returns its value as JSON. Throws the page's exception.
   */
  async evaluate<T = unknown>(expression: string): Promise<T> {
    const result = await this.send("Runtime.evaluate", {
      expression,
      awaitPromise: true,
      returnByValue: true,
      userGesture: true,
    });
    if (result.exceptionDetails) {
      const details = result.exceptionDetails;
      const text = details.exception?.description ?? details.text;
      throw new Error(`in the page: ${text}\n  evaluating: ${expression}`);
    }
    return result.result?.value as T;
  }

  /**
   * Polls `expression` until it gives a truthy value and returns that
   * value; throws after the timeout with the last value (or error) seen.
   */
  async waitFor<T = unknown>(
    expression: string,
    options: WaitOptions = {},
  ): Promise<T> {
    const ms = options.timeout ?? WAIT_FOR_MS;
    const interval = options.interval ?? 25;
    const deadline = Date.now() + ms;
    let last: string = "nothing yet";
    for (;;) {
      try {
        const value = await this.evaluate<T>(expression);
        if (value) return value;
        last = JSON.stringify(value);
      } catch (error) {
        // A navigation can destroy the context mid-poll: try again.
        last = `error: ${(error as Error).message}`;
        if (this.#connection.isClosed) break;
      }
      if (Date.now() >= deadline) break;
      await delay(interval);
    }
    throw new Error(
      `timed out after ${ms} ms waiting for ${
        options.what ?? expression
      } (last: ${last.slice(0, 300)})`,
    );
  }

  /** Focuses the element matching `selector`; throws if there is none. */
  async focus(selector: string): Promise<void> {
    await this.evaluate(`(() => {
      const el = document.querySelector(${JSON.stringify(selector)});
      if (!el) throw new Error("no element matches " + ${
      JSON.stringify(selector)
    });
      el.focus();
      if (document.activeElement !== el) throw new Error("cannot focus " + ${
      JSON.stringify(selector)
    });
    })()`);
  }

  /**
   * Types `text` into the element matching `selector` as an IME would
   * (Input.insertText: one `input` event), after focusing it. With
   * `replace`, the field's current value is selected first and replaced.
   */
  async type(selector: string, text: string, replace = false): Promise<void> {
    await this.focus(selector);
    if (replace) {
      await this.evaluate(
        `document.querySelector(${JSON.stringify(selector)}).select()`,
      );
    }
    await this.send("Input.insertText", { text });
  }

  /** Presses and releases a key in the focused element. */
  async press(key: "Enter" | "Escape" | "Tab" | "Backspace"): Promise<void> {
    const keys = {
      Enter: { code: "Enter", keyCode: 13, text: "\r" },
      Escape: { code: "Escape", keyCode: 27, text: "" },
      Tab: { code: "Tab", keyCode: 9, text: "\t" },
      Backspace: { code: "Backspace", keyCode: 8, text: "" },
    } as const;
    const { code, keyCode, text } = keys[key];
    const base = {
      key,
      code,
      windowsVirtualKeyCode: keyCode,
      nativeVirtualKeyCode: keyCode,
    };
    await this.send("Input.dispatchKeyEvent", {
      ...base,
      type: text ? "keyDown" : "rawKeyDown",
      text: text || undefined,
      unmodifiedText: text || undefined,
    });
    await this.send("Input.dispatchKeyEvent", { ...base, type: "keyUp" });
  }

  /**
   * Clicks the middle of the element matching `selector` with real mouse
   * events, after scrolling it into view; throws if it is missing or not
   * rendered.
   */
  async click(selector: string): Promise<void> {
    const point = await this.evaluate<{ x: number; y: number }>(`(() => {
      const sel = ${JSON.stringify(selector)};
      const el = document.querySelector(sel);
      if (!el) throw new Error("no element matches " + sel);
      el.scrollIntoView({ block: "center", inline: "center" });
      const r = el.getBoundingClientRect();
      if (r.width === 0 || r.height === 0) throw new Error(sel + " is not rendered");
      return { x: r.left + r.width / 2, y: r.top + r.height / 2 };
    })()`);
    const at = { x: point.x, y: point.y };
    await this.send("Input.dispatchMouseEvent", { type: "mouseMoved", ...at });
    await this.send("Input.dispatchMouseEvent", {
      type: "mousePressed",
      button: "left",
      buttons: 1,
      clickCount: 1,
      ...at,
    });
    await this.send("Input.dispatchMouseEvent", {
      type: "mouseReleased",
      button: "left",
      buttons: 0,
      clickCount: 1,
      ...at,
    });
  }

  /** Turns the page's network off (or back on), WebSockets included. */
  async setOffline(offline: boolean): Promise<void> {
    await this.send("Network.enable");
    await this.send("Network.emulateNetworkConditions", {
      offline,
      latency: 0,
      downloadThroughput: -1,
      uploadThroughput: -1,
    });
  }

  /** Writes a PNG of the viewport to `path`. */
  async screenshot(path: string): Promise<void> {
    const { data } = await this.send("Page.captureScreenshot", {
      format: "png",
    });
    await Deno.writeFile(path, base64ToBytes(data));
  }

  /** Closes the tab and disposes its browser context. Idempotent. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#onClose();
    if (this.#connection.isClosed) return;
    await this.#connection.send("Target.closeTarget", {
      targetId: this.targetId,
    }).catch(() => {});
    await this.#connection.send("Target.disposeBrowserContext", {
      browserContextId: this.browserContextId,
    }).catch(() => {});
  }
}

/**
 * The deployment examples in deploy/, run for real: hubchat in this
 * process, and nginx (deploy/nginx.conf) or Caddy (deploy/Caddyfile) in
 * front of it, each on a free port on 127.0.0.1, with the files as shipped
 * but for their ports. Through the proxy, over real sockets: the page; a
 * chat between browser-like clients whose `Origin` is the proxy's own
 * address (what a browser sends); the client's address in hubchat's log
 * with `trustProxy`, whatever `X-Forwarded-For` the client sent; and the
 * heartbeat keeping a quiet socket open past the idle timeout.
 *
 * Negative controls run each proxy with the line that breaks browsers
 * (nginx's `proxy_set_header Host $host`, which README.md used to ship, and
 * Caddy's `header_up Host {upstream_hostport}`) and see the upgrade refused
 * with 403: the tests can fail.
 *
 * nginx and Caddy are optional here (`.ci/run` installs both): a proxy
 * that is not installed has its tests ignored, with one line saying so.
 *
 * @module
 */

import assert from "node:assert/strict";
import {
  formatLine,
  type LogFields,
  type Logger,
  type LogLevel,
} from "./log.ts";
import type { WelcomeMessage } from "./protocol.ts";
import { DEFAULT_MAX_FILE_SIZE } from "./store/files.ts";
import { DEFAULT_IDLE_TIMEOUT_SECONDS, type ServerOptions } from "./server.ts";
import {
  CADDY,
  lookUpProgram,
  missingProgram,
  NGINX,
  type ProgramSpec,
} from "./testing/programs.ts";
import { RawWebSocket, upgradeReplyAt } from "./testing/raw_websocket.ts";
import { nextMatching } from "./testing/scene.ts";
import { type Closer, withServer } from "./testing/server.ts";
import { within } from "./testing/wait.ts";
import { Opcode } from "./tools/ws_frame.ts";
import { sleep } from "./tools/wait.ts";

/** The page hubchat serves, to compare with what comes through a proxy. */
const HOME_PAGE = await Deno.readFile(
  new URL("./home.html", import.meta.url),
);

/**
 * hubchat's idle timeout in the heartbeat check, in seconds: short, so that
 * a socket outliving it takes a test two seconds, not thirty. Deno pings a
 * quiet peer after half of it.
 */
const SHORT_IDLE_SECONDS = 2;

/** Pings a client answers through the proxy before it counts as alive. */
const PINGS_TO_ANSWER = 2;

/**
 * Bound on a proxy's start, in milliseconds: both bind within a second;
 * a loaded 2-core machine gets ten.
 */
const PROXY_START_MS = 10_000;

/**
 * Bound on a proxy's stop, in milliseconds, before it is killed outright:
 * both stop at once on SIGTERM (Caddy's grace period is set to 1 s).
 */
const PROXY_STOP_MS = 10_000;

/**
 * How many times a proxy is started on a fresh port when the free port it
 * was given was taken in the meantime (other tests run beside this one).
 */
const PORT_ATTEMPTS = 3;

/** How much of a proxy's output is kept for messages, in characters. */
const KEPT_OUTPUT_CHARS = 64 * 1024;

/** An address no client here has: what a lying client claims to be. */
const SPOOFED_ADDRESS = "203.0.113.9";

/**
 * Whether tests that need `spec` are ignored: when `path` is null, says so
 * in one line, and returns true.
 */
function ignoredWithout(spec: ProgramSpec, path: string | null): boolean {
  if (path !== null) return false;
  console.log(
    `deploy_test.ts: ${spec.what} tests ignored: ${missingProgram(spec)}`,
  );
  return true;
}

/** An example in deploy/, as a user would copy it. */
async function readExample(file: string): Promise<string> {
  return await Deno.readTextFile(new URL(`./${file}`, import.meta.url));
}

/** A port no one listened on a moment ago, on 127.0.0.1. */
function freePort(): number {
  using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  return listener.addr.port;
}

/**
 * `text` with its one occurrence of `from` replaced by `to`; throws if
 * `from` is not there exactly once, so a changed example fails the test
 * instead of being tested unchanged.
 */
function replaceOnce(
  text: string,
  from: string,
  to: string,
  file: string,
): string {
  const count = text.split(from).length - 1;
  if (count !== 1) {
    throw new Error(
      `${file} has ${count} occurrences of "${from}"; expected exactly one, which the test replaces`,
    );
  }
  return text.replace(from, () => to);
}

/** The ports a proxy test wires together. */
interface Ports {
  /** Where hubchat listens. */
  hubchat: number;
  /** Where the proxy listens. */
  proxy: number;
}

/**
 * deploy/nginx.conf as the test runs it: listening on 127.0.0.1 on the
 * proxy's port, passing to hubchat's.
 */
function nginxSite(site: string, ports: Ports): string {
  const file = "deploy/nginx.conf";
  const listening = replaceOnce(
    site,
    "listen 80;",
    `listen 127.0.0.1:${ports.proxy};`,
    file,
  );
  return replaceOnce(
    listening,
    "proxy_pass http://127.0.0.1:8080;",
    `proxy_pass http://127.0.0.1:${ports.hubchat};`,
    file,
  );
}

/**
 * deploy/Caddyfile as the test runs it: plain http on the proxy's port,
 * bound to 127.0.0.1 only, passing to hubchat's.
 */
function caddySite(site: string, ports: Ports): string {
  const file = "deploy/Caddyfile";
  const listening = replaceOnce(
    site,
    "chat.example.com {",
    `http://127.0.0.1:${ports.proxy} {\n\tbind 127.0.0.1`,
    file,
  );
  return replaceOnce(
    listening,
    "127.0.0.1:8080",
    `127.0.0.1:${ports.hubchat}`,
    file,
  );
}

/** A proxy running as a child process, stopped by {@linkcode close}. */
class ProxyProcess implements Closer {
  /** What it is, for messages ("nginx"). */
  readonly what: string;
  /** The port it listens on, on 127.0.0.1. */
  readonly port: number;
  #child: Deno.ChildProcess;
  #status: Promise<Deno.CommandStatus>;
  #exited = false;
  #output = "";
  #reading: Promise<void>;
  #stopping: Promise<void> | undefined;

  private constructor(what: string, port: number, child: Deno.ChildProcess) {
    this.what = what;
    this.port = port;
    this.#child = child;
    this.#status = child.status.then((status) => {
      this.#exited = true;
      return status;
    });
    this.#reading = Promise.all([
      this.#read(child.stdout),
      this.#read(child.stderr),
    ]).then(() => {});
  }

  /**
   * Starts `program` with `args` and resolves once it accepts connections
   * on `port`; if it exits first or does not within
   * {@linkcode PROXY_START_MS}, stops it and throws with what it printed.
   */
  static async start(
    what: string,
    port: number,
    command: { program: string; args: string[]; env?: Record<string, string> },
  ): Promise<ProxyProcess> {
    const child = new Deno.Command(command.program, {
      args: command.args,
      env: command.env,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const proxy = new ProxyProcess(what, port, child);
    const deadline = Date.now() + PROXY_START_MS;
    try {
      while (!(await proxy.#accepts())) {
        if (proxy.#exited) throw new Error(`${what} exited`);
        if (Date.now() > deadline) {
          throw new Error(`${what} did not listen within ${PROXY_START_MS} ms`);
        }
        await sleep(25);
      }
    } catch (error) {
      await proxy.close();
      throw new Error(
        `${
          (error as Error).message
        } on port ${port}; it printed: ${proxy.output}`,
      );
    }
    return proxy;
  }

  /** What it printed on standard output and error (the last 64 KiB). */
  get output(): string {
    return this.#output;
  }

  /** Stops it (SIGTERM; SIGKILL after {@linkcode PROXY_STOP_MS}). */
  close(): Promise<void> {
    this.#stopping ??= this.#stop();
    return this.#stopping;
  }

  async #stop(): Promise<void> {
    this.#kill("SIGTERM");
    const status = await within(
      this.#status,
      `${this.what}'s exit`,
      PROXY_STOP_MS,
    ).catch(() => null);
    if (status === null) {
      this.#kill("SIGKILL");
      await this.#status;
    }
    await this.#reading;
  }

  #kill(signal: Deno.Signal): void {
    if (this.#exited) return;
    try {
      this.#child.kill(signal);
    } catch {
      // It exited in the meantime.
    }
  }

  async #accepts(): Promise<boolean> {
    try {
      const conn = await Deno.connect({
        hostname: "127.0.0.1",
        port: this.port,
      });
      conn.close();
      return true;
    } catch {
      return false;
    }
  }

  async #read(stream: ReadableStream<Uint8Array>): Promise<void> {
    for await (const text of stream.pipeThrough(new TextDecoderStream())) {
      this.#output = (this.#output + text).slice(-KEPT_OUTPUT_CHARS);
    }
  }
}

/** A temporary folder for a proxy's files, removed by `close`. */
class ProxyFolder implements Closer {
  /** Its path. */
  readonly path: string;

  private constructor(path: string) {
    this.path = path;
  }

  /** Makes one. */
  static async make(prefix: string): Promise<ProxyFolder> {
    return new ProxyFolder(await Deno.makeTempDir({ prefix }));
  }

  /** Removes it and everything in it. */
  async close(): Promise<void> {
    await Deno.remove(this.path, { recursive: true });
  }
}

/**
 * Starts a proxy with `launch` on a free port, and again on another port
 * when the one picked was taken meanwhile.
 */
async function startOnFreePort(
  hubchatPort: number,
  launch: (ports: Ports) => Promise<ProxyProcess>,
): Promise<ProxyProcess> {
  for (let attempt = 1;; attempt++) {
    try {
      return await launch({ hubchat: hubchatPort, proxy: freePort() });
    } catch (error) {
      const taken = /address already in use/i.test((error as Error).message);
      if (!taken || attempt === PORT_ATTEMPTS) throw error;
    }
  }
}

/**
 * nginx with `site` (a server block, as deploy/nginx.conf is) in a minimal
 * http block: no daemon and no master process (one process, so a kill
 * leaves no worker behind), pid, logs and temporary files inside `folder`
 * (`-p`), errors on standard error; nothing needs root.
 */
async function startNginx(
  program: string,
  folder: string,
  site: string,
  ports: Ports,
): Promise<ProxyProcess> {
  await Deno.writeTextFile(`${folder}/hubchat.conf`, nginxSite(site, ports));
  await Deno.writeTextFile(
    `${folder}/nginx.conf`,
    [
      "daemon off;",
      "master_process off;",
      "worker_processes 1;",
      `pid ${folder}/nginx.pid;`,
      "error_log stderr warn;",
      "events { worker_connections 64; }",
      "http {",
      "    access_log off;",
      `    client_body_temp_path ${folder}/client_body;`,
      `    proxy_temp_path ${folder}/proxy;`,
      `    fastcgi_temp_path ${folder}/fastcgi;`,
      `    uwsgi_temp_path ${folder}/uwsgi;`,
      `    scgi_temp_path ${folder}/scgi;`,
      `    include ${folder}/hubchat.conf;`,
      "}",
      "",
    ].join("\n"),
  );
  return await ProxyProcess.start("nginx", ports.proxy, {
    program,
    args: ["-p", `${folder}/`, "-c", `${folder}/nginx.conf`, "-e", "stderr"],
  });
}

/**
 * Caddy with `site` (a site block, as deploy/Caddyfile is) after global
 * options for a test: no admin endpoint, a 1 s grace period at stop, and
 * its data and config folders inside `folder`.
 */
async function startCaddy(
  program: string,
  folder: string,
  site: string,
  ports: Ports,
): Promise<ProxyProcess> {
  const config = `${folder}/Caddyfile`;
  await Deno.writeTextFile(
    config,
    `{\n\tadmin off\n\tgrace_period 1s\n}\n\n${caddySite(site, ports)}`,
  );
  return await ProxyProcess.start("Caddy", ports.proxy, {
    program,
    args: ["run", "--config", config, "--adapter", "caddyfile"],
    env: {
      HOME: folder,
      XDG_DATA_HOME: `${folder}/data`,
      XDG_CONFIG_HOME: `${folder}/config`,
    },
  });
}

/** A logger that keeps hubchat's log entries for the test to read. */
class KeptLog implements Logger {
  /** The entries, oldest first. */
  readonly entries: { level: LogLevel; event: string; fields: LogFields }[] =
    [];

  /** Keeps one entry. */
  log(level: LogLevel, event: string, fields: LogFields = {}): void {
    this.entries.push({ level, event, fields });
  }

  /** The address the connect line of `user` gives, or undefined. */
  addressOf(user: string): unknown {
    return this.entries.find((entry) =>
      entry.event === "connect" && entry.fields.user === user
    )?.fields.ip;
  }

  /** Every entry as a text line, for messages. */
  toString(): string {
    return this.entries.map(({ level, event, fields }) =>
      formatLine({ time: new Date(0), level, event, fields })
    ).join("\n");
  }
}

/** Sends a chat line to the room. */
async function say(raw: RawWebSocket, text: string): Promise<void> {
  await raw.sendText(JSON.stringify({ type: "message", text }));
}

/**
 * Reads `raw`'s messages until a chat line from `from` and checks its
 * text; presence and the like are passed over.
 */
async function expectLine(
  raw: RawWebSocket,
  from: string,
  text: string,
): Promise<void> {
  const line = await nextMatching(
    () => raw.next(`a line from ${from}`),
    (m) => m.type === "message" && m.username === from,
    `a line from ${from}`,
  );
  assert.equal((line as { text: string }).text, text);
}

/**
 * Reads frames from `raw`, answering each ping with a pong and passing
 * over text, until `count` pings came; throws if the socket closes first.
 */
async function answerPings(raw: RawWebSocket, count: number): Promise<void> {
  const bound = (SHORT_IDLE_SECONDS * count + 5) * 1000;
  const deadline = Date.now() + bound;
  let pings = 0;
  while (pings < count) {
    const frame = await raw.readFrame(Math.max(1, deadline - Date.now()));
    if (frame === null || frame.opcode === Opcode.close) {
      throw new Error(`the socket closed after ${pings} of ${count} pings`);
    }
    if (frame.opcode === Opcode.ping) {
      pings++;
      await raw.sendFrame(Opcode.pong, frame.payload);
    }
  }
}

/**
 * Everything a deployment must do, checked through the proxy at
 * `ports.proxy` in front of a hubchat with `trustProxy` whose log is `log`;
 * the sockets opened are given to `track` to close.
 */
async function checkThroughProxy(
  ports: Ports,
  log: KeptLog,
  track: <T extends Closer>(closer: T) => T,
): Promise<void> {
  const { proxy } = ports;
  // The page, whole: bigger than nginx's proxy buffers, so nginx spools it
  // through its temporary files.
  const page = await fetch(`http://127.0.0.1:${proxy}/`);
  assert.equal(page.status, 200);
  assert.equal(page.headers.get("content-type"), "text/html; charset=utf-8");
  assert.deepEqual(new Uint8Array(await page.arrayBuffer()), HOME_PAGE);

  // A chat, from clients that say what a browser on the page says: the
  // page's origin is the proxy's address. Ann also lies about her address.
  const origin = `Origin: http://127.0.0.1:${proxy}`;
  const ann = track(
    await RawWebSocket.connect(proxy, "ann", [
      origin,
      `X-Forwarded-For: ${SPOOFED_ADDRESS}`,
    ]),
  );
  const welcome = await nextMatching(
    () => ann.next("ann's welcome"),
    (m) => m.type === "welcome",
    "ann's welcome",
  ) as WelcomeMessage;
  const bob = track(await RawWebSocket.connect(proxy, "bob", [origin]));
  await nextMatching(
    () => bob.next("bob's welcome"),
    (m) => m.type === "welcome",
    "bob's welcome",
  );
  await nextMatching(
    () => ann.next("bob's join"),
    (m) => m.type === "join",
    "bob's join",
  );
  await say(ann, "hi, bob");
  await expectLine(bob, "ann", "hi, bob");

  // A file as large as hubchat takes by default gets through (nginx takes
  // 1 MiB unless told more).
  const upload = await fetch(`http://127.0.0.1:${proxy}/files?room=lobby`, {
    method: "POST",
    body: new Uint8Array(DEFAULT_MAX_FILE_SIZE),
    headers: {
      authorization: `Bearer ${welcome.session}`,
      origin: `http://127.0.0.1:${proxy}`,
      "x-filename": "big.bin",
    },
  });
  assert.equal(upload.status, 201, await upload.text());

  // hubchat counts clients by the address the proxy saw, not the proxy's
  // own nor the one ann claimed.
  assert.equal(log.addressOf("ann"), "127.0.0.1", log.toString());
  assert.equal(log.addressOf("bob"), "127.0.0.1", log.toString());

  // The heartbeat crosses the proxy both ways: bob, quiet but answering
  // pings, outlives the idle timeout and still chats.
  await answerPings(bob, PINGS_TO_ANSWER);
  await say(bob, "still here");
  await expectLine(bob, "bob", "still here");
}

/**
 * The negative control: through a proxy with `Host` broken, a browser's
 * upgrade is refused with 403, hubchat's answer to a foreign origin.
 */
async function checkRefusedThroughProxy(proxyPort: number): Promise<void> {
  const origin = `http://127.0.0.1:${proxyPort}`;
  const reply = await upgradeReplyAt(proxyPort, "/ws?username=ann", [
    `Origin: ${origin}`,
  ]);
  assert.equal(reply.status, 403, reply.body);
  assert.match(reply.body, new RegExp(`^origin "${origin}" is not allowed`));
}

Deno.test("the direct control: with trustProxy, hubchat takes X-Forwarded-For as the address", async () => {
  // What makes the address checks through a proxy mean something: without
  // a proxy replacing it, the spoofed address is what hubchat would count.
  const log = new KeptLog();
  await withServer({ trustProxy: true, logger: log }, async (server, track) => {
    const eve = track(
      await RawWebSocket.connect(server.port, "eve", [
        `X-Forwarded-For: ${SPOOFED_ADDRESS}`,
      ]),
    );
    await nextMatching(
      () => eve.next("eve's welcome"),
      (m) => m.type === "welcome",
      "eve's welcome",
    );
    assert.equal(log.addressOf("eve"), SPOOFED_ADDRESS, log.toString());
  });
});

Deno.test("deploy/nginx.conf keeps nginx's read timeout above hubchat's heartbeat", async () => {
  // nginx closes a proxied socket that reads nothing for proxy_read_timeout
  // (60 s unless set); hubchat pings a quiet client within its idle timeout.
  const site = await readExample("deploy/nginx.conf");
  const match = /^\s*proxy_read_timeout\s+(\d+)s;/m.exec(site);
  assert.ok(match, "deploy/nginx.conf sets no proxy_read_timeout in seconds");
  assert.ok(
    Number(match[1]) > DEFAULT_IDLE_TIMEOUT_SECONDS,
    `proxy_read_timeout ${
      match[1]
    }s; expected above ${DEFAULT_IDLE_TIMEOUT_SECONDS} s`,
  );
});

/** A proxy deploy/ has an example for, as the tests drive it. */
interface Proxy {
  /** The program. */
  spec: ProgramSpec;
  /** The example, as the repository ships it. */
  file: string;
  /**
   * The negative control: the example's `line` that keeps the port in
   * `Host`, what replaces it (`instead`), and how the test names that.
   */
  broken: { line: string; instead: string; name: string };
  /**
   * Starts `program` with the example's text `site` wired to `ports`, its
   * files in `folder`.
   */
  start(
    program: string,
    folder: string,
    site: string,
    ports: Ports,
  ): Promise<ProxyProcess>;
}

/** The proxies, each tested the same way. */
const PROXIES: readonly Proxy[] = [
  {
    spec: NGINX,
    file: "deploy/nginx.conf",
    broken: {
      line: "proxy_set_header Host $http_host;",
      // The line README.md used to ship: $host drops the port.
      instead: "proxy_set_header Host $host;",
      name: 'README\'s old "proxy_set_header Host $host"',
    },
    start: startNginx,
  },
  {
    spec: CADDY,
    file: "deploy/Caddyfile",
    broken: {
      line: "reverse_proxy 127.0.0.1:8080",
      // A common recipe: the upstream's address as Host.
      instead:
        "reverse_proxy 127.0.0.1:8080 {\n\t\theader_up Host {upstream_hostport}\n\t}",
      name: '"header_up Host {upstream_hostport}"',
    },
    start: startCaddy,
  },
];

/**
 * Starts a hubchat with `options` and `proxy` (the binary `program`) in
 * front of it with the example's text `site`, runs `body`, then stops both
 * and removes the proxy's files, even when `body` throws.
 */
async function withProxy(
  proxy: Proxy,
  program: string,
  site: string,
  options: ServerOptions,
  body: (
    ports: Ports,
    track: <T extends Closer>(closer: T) => T,
  ) => Promise<void>,
): Promise<void> {
  await withServer(options, async (server, track) => {
    const folder = track(await ProxyFolder.make("hubchat-proxy-"));
    const running = track(
      await startOnFreePort(
        server.port,
        (ports) => proxy.start(program, folder.path, site, ports),
      ),
    );
    await body({ hubchat: server.port, proxy: running.port }, track);
  });
}

for (const proxy of PROXIES) {
  const program = await lookUpProgram(proxy.spec);
  const ignore = ignoredWithout(proxy.spec, program);
  const what = proxy.spec.what;

  Deno.test({
    name:
      `${proxy.file} in ${what}: the page, a chat from the page's origin, the client's address, the heartbeat`,
    ignore,
    async fn() {
      const log = new KeptLog();
      const options = {
        trustProxy: true,
        logger: log,
        idleTimeoutSeconds: SHORT_IDLE_SECONDS,
      };
      await withProxy(
        proxy,
        program!,
        await readExample(proxy.file),
        options,
        (ports, track) => checkThroughProxy(ports, log, track),
      );
    },
  });

  Deno.test({
    name:
      `negative control: ${what} with ${proxy.broken.name} gets browsers 403`,
    ignore,
    async fn() {
      const site = replaceOnce(
        await readExample(proxy.file),
        proxy.broken.line,
        proxy.broken.instead,
        proxy.file,
      );
      await withProxy(
        proxy,
        program!,
        site,
        {},
        (ports) => checkRefusedThroughProxy(ports.proxy),
      );
    },
  });
}

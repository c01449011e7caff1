/**
 * Tests of the command line: `parseInvocation` on its own, and the real
 * program run as a child process (start, serve, stop on SIGTERM).
 *
 * @module
 */

import assert from "node:assert/strict";
import { HistoryOpenError } from "./store/history_file.ts";
import {
  type Config,
  descriptorWarning,
  EXIT_USAGE,
  type Invocation,
  parseInvocation,
  startupProblem,
  UsageError,
} from "./main.ts";
import {
  ListenError,
  type ServerOptions,
  startServer,
  TlsError,
} from "./server.ts";
import { ChatClient } from "./testing/chat_client.ts";
import { CHILD_WAIT_MS, DenoChild } from "./testing/child_process.ts";
import { ChildServer } from "./testing/child_server.ts";
import { withTempDir } from "./testing/temp_dir.ts";
import { within } from "./testing/wait.ts";

/**
 * The address a server started with these options listens on: what
 * `startServer` would fill in for options left out.
 */
function effective(invocation: Invocation): { port: number; host: string } {
  assert.equal(invocation.help, false);
  const { options } = invocation as { options: ServerOptions };
  return {
    port: options.port ?? 8080,
    host: options.hostname ?? "127.0.0.1",
  };
}

Deno.test("parseInvocation: defaults are 127.0.0.1:8080", () => {
  assert.deepEqual(effective(parseInvocation([], {})), {
    port: 8080,
    host: "127.0.0.1",
  });
});

Deno.test("parseInvocation: --port and --host, spaced or with =", () => {
  assert.deepEqual(effective(parseInvocation(["--port", "0"], {})), {
    port: 0,
    host: "127.0.0.1",
  });
  assert.deepEqual(
    effective(parseInvocation(["--port=65535", "--host=0.0.0.0"], {})),
    { port: 65535, host: "0.0.0.0" },
  );
  assert.deepEqual(
    effective(parseInvocation(["--host", "::1", "--port", "9000"], {})),
    { port: 9000, host: "::1" },
  );
});

Deno.test("parseInvocation: PORT and HOST from the environment", () => {
  assert.deepEqual(
    effective(parseInvocation([], { PORT: "3000", HOST: "0.0.0.0" })),
    { port: 3000, host: "0.0.0.0" },
  );
});

Deno.test("parseInvocation: flags win over the environment", () => {
  assert.deepEqual(
    effective(
      parseInvocation(["--port", "1234", "--host", "127.0.0.2"], {
        PORT: "3000",
        HOST: "0.0.0.0",
      }),
    ),
    { port: 1234, host: "127.0.0.2" },
  );
});

Deno.test("parseInvocation: HOSTNAME is ignored", () => {
  assert.deepEqual(
    effective(parseInvocation([], { HOSTNAME: "build-box-17" })),
    { port: 8080, host: "127.0.0.1" },
  );
  assert.deepEqual(
    effective(
      parseInvocation([], { HOSTNAME: "build-box-17", HOST: "0.0.0.0" }),
    ),
    { port: 8080, host: "0.0.0.0" },
  );
});

Deno.test("parseInvocation: bad ports are a UsageError naming the source", () => {
  for (const bad of ["abc", "-1", "65536", "1.5", "0x10", "1e3", "80a", ""]) {
    assert.throws(
      () => parseInvocation([`--port=${bad}`], {}),
      (error: unknown) =>
        error instanceof UsageError && /--port/.test(error.message),
      `--port=${bad}`,
    );
    assert.throws(
      () => parseInvocation([], { PORT: bad }),
      (error: unknown) =>
        error instanceof UsageError && /PORT/.test(error.message),
      `PORT=${bad}`,
    );
  }
  // A good flag hides a bad variable: flags win.
  assert.equal(
    effective(parseInvocation(["--port", "80"], { PORT: "nope" })).port,
    80,
  );
});

Deno.test("parseInvocation: unknown flags, positionals, missing values and empty hosts", () => {
  const cases: [string[], Record<string, string>][] = [
    [["--verbose"], {}],
    [["serve"], {}],
    [["--port"], {}],
    [["--host", ""], {}],
    [[], { HOST: "   " }],
  ];
  for (const [args, env] of cases) {
    assert.throws(
      () => parseInvocation(args, env),
      UsageError,
      JSON.stringify({ args, env }),
    );
  }
});

Deno.test("parseInvocation: whole-number settings refuse what they cannot mean", () => {
  const cases: [string[], RegExp][] = [
    [["--burst", "0"], /--burst is "0"; expected a whole number of at least 1/],
    [
      ["--max-frame-bytes", "1.5"],
      /--max-frame-bytes is "1.5"; expected a whole/,
    ],
    [["--idle-timeout", "0"], /--idle-timeout is "0"; expected .* at least 1/],
    [["--history", "2.5"], /--history is "2.5"; expected a whole number/],
    [["--port", "65536"], /--port is "65536"; expected .* from 0 to 65535/],
    [["--auth-secret", "short"], /auth secret is 5 bytes; .* at least 32/],
  ];
  for (const [args, message] of cases) {
    assert.throws(() => parseInvocation(args, {}), UsageError, undefined);
    assert.throws(() => parseInvocation(args, {}), message);
  }
  const zeros = parseInvocation(
    ["--history", "0", "--max-connections", "0", "--rate", "0.5"],
    {},
  );
  assert.equal(zeros.help, false);
  if (!zeros.help) {
    assert.equal(zeros.options.historyLimit, 0);
    assert.equal(zeros.options.maxConnections, 0);
    assert.equal(zeros.options.ratePerSecond, 0.5);
  }
});

Deno.test("parseInvocation: -h and --help ask for help", () => {
  assert.deepEqual(parseInvocation(["-h"], {}), { help: true });
  assert.deepEqual(parseInvocation(["--help"], {}), { help: true });
  assert.deepEqual(parseInvocation(["--port", "1", "--help"], {}), {
    help: true,
  });
});

/** The program under test, run as a child process below. */
const MAIN = new URL("./main.ts", import.meta.url);

/** Starts `main.ts` with `args` as a child process. */
function spawnMain(args: string[]): DenoChild {
  // History in memory: a test leaves no data/ folder behind.
  return DenoChild.spawn(MAIN, args, { env: { HUBCHAT_DATA: ":memory:" } });
}

for (const signal of ["SIGTERM", "SIGINT"] as const) {
  Deno.test(`main.ts serves on --port 0 and exits 0 on ${signal}`, async () => {
    const main = spawnMain(["--port", "0", "--host", "127.0.0.1"]);
    let client: ChatClient | undefined;
    try {
      const line = await main.nextLine("the listening line");
      const match = /^hubchat listening on http:\/\/127\.0\.0\.1:(\d+)\/$/.exec(
        line ?? "",
      );
      assert.ok(match, `unexpected first line: ${line}`);
      const port = Number(match[1]);
      assert.ok(port > 0);

      const health = await fetch(`http://127.0.0.1:${port}/healthz`);
      assert.deepEqual(await health.json(), { status: "ok", clients: 0 });
      client = await ChatClient.join(port, "ann");

      main.kill(signal);
      const end = await within(
        client.closed,
        "the client's close",
        10_000,
      );
      assert.deepEqual(end, { code: 1001, reason: "server shutting down" });
      const status = await within(main.status, "the exit", 10_000);
      assert.equal(status.code, 0);
      assert.equal(status.success, true);
    } finally {
      await client?.close();
      await main.close();
    }
  });
}

/** How {@linkcode runMainToExit} runs main.ts. */
interface RunOptions {
  /** Environment variables for the child, besides HUBCHAT_DATA=:memory:. */
  env?: Record<string, string>;
  /** Deno's permission flags. Default: `-A`. */
  permissions?: string[];
  /** A command to run main.ts under (`setpriv ... --`), if any. */
  wrapper?: string[];
  /** The working directory. Default: the repository's root. */
  cwd?: string;
  /**
   * Leave --data at its default (`./data/hubchat.kv`, in `cwd`) instead of
   * `:memory:`.
   */
  defaultData?: boolean;
}

/** The repository's deno.json (its unstable flags: KV), for children. */
const CONFIG = new URL("./deno.json", import.meta.url).pathname;

/**
 * Runs main.ts to its exit (killing it after {@linkcode CHILD_WAIT_MS});
 * returns the exit status and what it printed.
 */
async function runMainToExit(
  args: string[],
  options: RunOptions = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  const deno = [
    Deno.execPath(),
    "run",
    ...(options.permissions ?? ["-A"]),
    "--config",
    CONFIG,
    MAIN.pathname,
    ...args,
  ];
  const [program, ...rest] = [...(options.wrapper ?? []), ...deno];
  const timeout = new AbortController();
  const timer = setTimeout(() => timeout.abort(), CHILD_WAIT_MS);
  try {
    const { code, stdout, stderr } = await new Deno.Command(program, {
      args: rest,
      cwd: options.cwd ?? new URL(".", import.meta.url).pathname,
      env: {
        NO_COLOR: "1",
        ...(options.defaultData ? {} : { HUBCHAT_DATA: ":memory:" }),
        ...options.env,
      },
      stdin: "null",
      signal: timeout.signal,
    }).output();
    const decoder = new TextDecoder();
    return {
      code,
      stdout: decoder.decode(stdout),
      stderr: decoder.decode(stderr),
    };
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Runs main.ts with `args` and checks that it printed `expected` (after
 * `hubchat: `) as its one line on standard error, nothing else and no stack
 * trace, and exited with 2. `expected` may be a RegExp for the part after
 * `hubchat: `, where the operating system's words vary.
 */
async function assertRefused(
  args: string[],
  expected: string | RegExp,
  options: RunOptions = {},
): Promise<void> {
  const { code, stdout, stderr } = await runMainToExit(args, options);
  const context = `main.ts ${args.join(" ")}: exit ${code}, stderr: ${stderr}`;
  assert.doesNotMatch(stderr, /^\s+at /m, `a stack trace; ${context}`);
  assert.equal(stdout, "", context);
  if (typeof expected === "string") {
    assert.equal(stderr, `hubchat: ${expected}\n`, context);
  } else {
    assert.match(stderr, /^hubchat: [^\n]*\n$/, `one line; ${context}`);
    assert.match(stderr.slice("hubchat: ".length, -1), expected, context);
  }
  assert.equal(code, EXIT_USAGE, context);
}

Deno.test("main.ts --help prints the usage and exits 0", async () => {
  const { code, stdout, stderr } = await runMainToExit(["--help"]);
  assert.equal(code, 0);
  assert.match(stdout, /^hubchat/);
  assert.match(stdout, /Usage: /);
  assert.match(stdout, /--port/);
  assert.match(stdout, /--host/);
  assert.equal(stderr, "");
});

Deno.test("main.ts with a bad port says why and exits 2", async () => {
  await assertRefused(
    ["--port", "http"],
    '--port is "http", not a number; expected a whole number from 0 to 65535',
  );
});

Deno.test("main.ts refuses negative numbers, from flags and variables", async () => {
  await assertRefused(
    ["--port", "-1"],
    '--port is "-1"; expected a whole number from 0 to 65535',
  );
  await assertRefused(
    ["--rate", "-5"],
    '--rate is "-5"; expected a non-negative number',
  );
  await assertRefused(
    [],
    'PORT is "-1"; expected a whole number from 0 to 65535',
    { env: { PORT: "-1" } },
  );
});

Deno.test("main.ts on a port another process holds names the port and exits 2", async () => {
  using taken = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = taken.addr.port;
  await assertRefused(
    ["--port", String(port), "--host", "127.0.0.1"],
    `port ${port} on 127.0.0.1 is already in use by another process; stop it or pick another with --port`,
  );
});

Deno.test("main.ts with a host that does not resolve says so and exits 2", async () => {
  // .invalid never resolves (RFC 6761); the resolver's words vary.
  await assertRefused(
    ["--port", "0", "--host", "nosuch.invalid"],
    /^--host is "nosuch\.invalid", which does not resolve \([^)]+\); expected an address of this machine, like 127\.0\.0\.1 \(this machine only\) or 0\.0\.0\.0 \(every interface\), or a name for one$/,
  );
});

Deno.test("main.ts with a URL or a port in --host says so and exits 2", async () => {
  await assertRefused(
    ["--port", "0", "--host", "127.0.0.1:8080"],
    '--host is "127.0.0.1:8080", which is no host name or address (invalid char found in FQDN); expected an address of this machine, like 127.0.0.1 (this machine only) or 0.0.0.0 (every interface), with no scheme or port (the port is --port)',
  );
  await assertRefused(
    ["--port", "0", "--host", "http://localhost"],
    '--host is "http://localhost", which is no host name or address (invalid char found in FQDN); expected an address of this machine, like 127.0.0.1 (this machine only) or 0.0.0.0 (every interface), with no scheme or port (the port is --port)',
  );
});

Deno.test("main.ts with a host that is not this machine's says so and exits 2", async () => {
  // 192.0.2.1 is for documentation (RFC 5737): no machine has it.
  await assertRefused(
    ["--port", "0"],
    'HOST is "192.0.2.1", which is not an address of this machine; expected an address of this machine, like 127.0.0.1 (this machine only) or 0.0.0.0 (every interface)',
    { env: { HOST: "192.0.2.1" } },
  );
});

/** Whether this process is root, which file permissions do not stop. */
const ROOT = Deno.uid() === 0;

/** setpriv (util-linux), which runs a command without some capabilities. */
const SETPRIV = await firstFile(["/usr/bin/setpriv", "/bin/setpriv"]);

/** The first of `paths` that is a file, or null. */
async function firstFile(paths: string[]): Promise<string | null> {
  for (const path of paths) {
    try {
      if ((await Deno.stat(path)).isFile) return path;
    } catch {
      // Not here.
    }
  }
  return null;
}

/**
 * A wrapper that runs main.ts as an ordinary user would: as root, without
 * the capabilities `caps` (dropped from the bounding set, so the child
 * never has them); as anyone else, no wrapper. Null when this is root and
 * setpriv is missing: the test cannot run.
 */
function asOrdinaryUser(caps: string[]): string[] | null {
  if (!ROOT) return [];
  if (SETPRIV === null) return null;
  return [
    SETPRIV,
    "--bounding-set",
    caps.map((cap) => `-${cap}`).join(","),
    "--",
  ];
}

/** The capabilities that let root read and write any file. */
const FILE_CAPS = ["dac_override", "dac_read_search"];

/**
 * The first port an ordinary user may listen on (Linux's
 * `net.ipv4.ip_unprivileged_port_start`, 1024 unless changed; containers
 * often set 0).
 */
const FIRST_OPEN_PORT = await Deno.readTextFile(
  "/proc/sys/net/ipv4/ip_unprivileged_port_start",
).then(Number, () => 1024);

/**
 * The port the privileged-port test asks for: below 1024, and never 80,
 * which a web server on this machine may hold.
 */
const PRIVILEGED_PORT = 1;

/**
 * Whether the test `what` is ignored because it cannot run here: when
 * there is a `reason`, it is printed in one line, and true returned.
 */
function cannotRun(what: string, reason: string | undefined): boolean {
  if (reason === undefined) return false;
  console.log(`main_test.ts: ignoring "${what}": ${reason}`);
  return true;
}

const PRIVILEGED_TEST =
  "main.ts on a port below 1024 says it needs privileges and exits 2";
Deno.test({
  name: PRIVILEGED_TEST,
  ignore: cannotRun(
    PRIVILEGED_TEST,
    asOrdinaryUser(["net_bind_service"]) === null
      ? "this is root and setpriv is missing, so the child would have the privilege"
      : FIRST_OPEN_PORT <= PRIVILEGED_PORT
      ? `this machine lets anyone listen on ports from ${FIRST_OPEN_PORT}`
      : undefined,
  ),
  async fn() {
    await assertRefused(
      ["--port", String(PRIVILEGED_PORT)],
      `--port is ${PRIVILEGED_PORT}, a port below 1024 that only root (or CAP_NET_BIND_SERVICE) may listen on; expected 1024 or above, with a proxy in front for 80 and 443 (see deploy/)`,
      { wrapper: asOrdinaryUser(["net_bind_service"])! },
    );
  },
});

/** Gives back write permission on `dir` and every folder in it. */
async function makeWritable(dir: string): Promise<void> {
  await Deno.chmod(dir, 0o700);
  for await (const entry of Deno.readDir(dir)) {
    if (entry.isDirectory) await makeWritable(`${dir}/${entry.name}`);
  }
}

/** The end of every --data message. */
const OR_MEMORY = "or :memory: to keep no history on disk";

Deno.test("main.ts with --data under a file says which file is in the way and exits 2", async () => {
  await withTempDir(async (dir) => {
    await Deno.writeTextFile(`${dir}/notes`, "a file, not a folder\n");
    await assertRefused(
      ["--port", "0", "--data", `${dir}/notes/chat/history.kv`],
      `--data is "${dir}/notes/chat/history.kv", but its folder ${dir}/notes/chat cannot be created (${dir}/notes is a file, not a folder); expected a path whose folders can be created, ${OR_MEMORY}`,
    );
  });
});

Deno.test("main.ts whose default --data cannot be made says it is the default and exits 2", async () => {
  await withTempDir(async (dir) => {
    // Run from a folder where "data" is a file: ./data/hubchat.kv cannot be.
    await Deno.writeTextFile(`${dir}/data`, "a file, not a folder\n");
    await assertRefused(
      ["--port", "0"],
      `--data is "./data/hubchat.kv" (the default), but its folder ./data cannot be created (./data is a file, not a folder); expected a path whose folders can be created, ${OR_MEMORY}`,
      { cwd: dir, defaultData: true },
    );
  });
});

Deno.test("main.ts with --data naming a folder says so and exits 2", async () => {
  await withTempDir(async (dir) => {
    await assertRefused(
      ["--port", "0"],
      `HUBCHAT_DATA is "${dir}", which cannot be opened for reading and writing (it is a folder, not a file); expected a file this user can create and write, ${OR_MEMORY}`,
      { env: { HUBCHAT_DATA: dir } },
    );
  });
});

Deno.test("main.ts with --data naming a file that is no history says so and exits 2", async () => {
  await withTempDir(async (dir) => {
    await Deno.writeTextFile(`${dir}/notes.txt`, "not a database\n");
    await assertRefused(
      ["--port", "0", "--data", `${dir}/notes.txt`],
      `--data is "${dir}/notes.txt", which is not a hubchat history file (its first line is not a hubchat history header); expected a history file hubchat wrote (or an earlier version's Deno KV file) or a path for a new one, ${OR_MEMORY}`,
    );
  });
});

Deno.test("main.ts with --data naming another program's KV store says so and exits 2", async () => {
  await withTempDir(async (dir) => {
    const kv = await Deno.openKv(`${dir}/other.kv`);
    await kv.set(["room", "lobby", "members"], ["ann"]);
    kv.close();
    await assertRefused(
      ["--port", "0", "--data", `${dir}/other.kv`],
      `--data is "${dir}/other.kv", whose history cannot be loaded (history: unexpected entry [ "room", "lobby", "members" ] in the store; is this a hubchat history database?); expected a store hubchat wrote or a path for a new one, ${OR_MEMORY}`,
    );
  });
});

Deno.test("main.ts with --data another running hubchat uses says so and exits 2", async () => {
  await withTempDir(async (dir) => {
    const data = `${dir}/history.kv`;
    const first = await ChildServer.start([], { data });
    try {
      // A second server on the same store would reuse ids and overwrite
      // the first one's messages.
      await assertRefused(
        ["--port", "0", "--data", data],
        `--data is "${data}", which another running hubchat is using (it holds the file's lock); stop that one, or give this one another path, ${OR_MEMORY}`,
      );
    } finally {
      await first.stop();
    }
    // Once the first one stopped, the store is free again.
    const second = await ChildServer.start([], { data });
    await second.stop();
  });
});

const NO_PERMISSION_TEST =
  "main.ts with --data this user cannot write says so and exits 2";
Deno.test({
  name: NO_PERMISSION_TEST,
  ignore: cannotRun(
    NO_PERMISSION_TEST,
    asOrdinaryUser(FILE_CAPS) === null
      ? "this is root and setpriv is missing, so file permissions would not apply"
      : undefined,
  ),
  async fn() {
    const wrapper = asOrdinaryUser(FILE_CAPS)!;
    await withTempDir(async (dir) => {
      try {
        // A new file in a folder this user may not write.
        await Deno.mkdir(`${dir}/locked`, { mode: 0o500 });
        await Deno.chmod(`${dir}/locked`, 0o500);
        await assertRefused(
          ["--port", "0", "--data", `${dir}/locked/history.kv`],
          `--data is "${dir}/locked/history.kv", which cannot be opened for reading and writing (permission denied); expected a file this user can create and write, ${OR_MEMORY}`,
          { wrapper },
        );
        // A read-only file (an earlier version's KV file, say).
        const kv = await Deno.openKv(`${dir}/readonly.kv`);
        kv.close();
        await Deno.chmod(`${dir}/readonly.kv`, 0o400);
        await assertRefused(
          ["--port", "0", "--data", `${dir}/readonly.kv`],
          `--data is "${dir}/readonly.kv", which cannot be opened for reading and writing (permission denied); expected a file this user can create and write, ${OR_MEMORY}`,
          { wrapper },
        );
        // A writable file in a read-only folder: compaction writes beside it.
        await Deno.mkdir(`${dir}/shelf`);
        await Deno.writeTextFile(`${dir}/shelf/history.kv`, "");
        await Deno.chmod(`${dir}/shelf/history.kv`, 0o666);
        await Deno.chmod(`${dir}/shelf`, 0o555);
        await assertRefused(
          ["--port", "0", "--data", `${dir}/shelf/history.kv`],
          `--data is "${dir}/shelf/history.kv", beside which no file can be made (permission denied); expected a file in a folder this user can write (compaction writes a new file beside it), ${OR_MEMORY}`,
          { wrapper },
        );
      } finally {
        // The folders it locked, unlocked, so that it can be removed.
        await makeWritable(dir);
      }
    });
  },
});

/**
 * Why a read-only file system cannot be mounted for a child here (it needs
 * root and `unshare`, which containers may forbid), or undefined when it
 * can: tried by mounting one.
 */
async function readOnlyMountProblem(): Promise<string | undefined> {
  if (!ROOT) return "mounting a read-only file system needs root";
  const dir = await Deno.makeTempDir({ prefix: "hubchat-main-test-" });
  try {
    const { success, stderr } = await new Deno.Command("unshare", {
      args: ["--mount", "mount", "-t", "tmpfs", "-o", "ro", "tmpfs", dir],
      stdout: "null",
      stderr: "piped",
    }).output();
    if (success) return undefined;
    return `unshare --mount failed: ${new TextDecoder().decode(stderr).trim()}`;
  } catch (error) {
    return `unshare cannot run: ${(error as Error).message}`;
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

const READ_ONLY_TEST =
  "main.ts with --data on a read-only file system says so and exits 2";
Deno.test({
  name: READ_ONLY_TEST,
  ignore: cannotRun(READ_ONLY_TEST, await readOnlyMountProblem()),
  async fn() {
    await withTempDir(async (dir) => {
      // main.ts runs in its own mount namespace where `dir` is a read-only
      // tmpfs; the test's own view of `dir` is untouched.
      const wrapper = [
        "unshare",
        "--mount",
        "sh",
        "-c",
        'mount -t tmpfs -o ro tmpfs "$0" && exec "$@"',
        dir,
      ];
      await assertRefused(
        ["--port", "0", "--data", `${dir}/history.kv`],
        `--data is "${dir}/history.kv", which cannot be opened for reading and writing (the file system is read-only); expected a file this user can create and write, ${OR_MEMORY}`,
        { wrapper },
      );
      await assertRefused(
        ["--port", "0", "--data", `${dir}/chat/history.kv`],
        `--data is "${dir}/chat/history.kv", but its folder ${dir}/chat cannot be created (the file system is read-only); expected a path whose folders can be created, ${OR_MEMORY}`,
        { wrapper },
      );
    });
  },
});

/** The TLS fixtures (testdata/README.md). */
const CERT = new URL("./testdata/tls_cert.pem", import.meta.url).pathname;
const KEY = new URL("./testdata/tls_key.pem", import.meta.url).pathname;
/** A certificate whose key is not {@linkcode KEY}: the test CA's. */
const OTHER_CERT = new URL("./testdata/ca_cert.pem", import.meta.url).pathname;

Deno.test("main.ts with TLS files it cannot read or use says which and exits 2", async () => {
  await withTempDir(async (dir) => {
    const text = `${dir}/notes.txt`;
    await Deno.writeTextFile(text, "not PEM\n");
    const tls = (cert: string, key: string) => [
      "--port",
      "0",
      "--cert",
      cert,
      "--key",
      key,
    ];
    await assertRefused(
      tls(`${dir}/missing.pem`, KEY),
      `--cert is "${dir}/missing.pem", which cannot be read (no such file or folder); expected a PEM certificate chain file`,
    );
    await assertRefused(
      tls(CERT, dir),
      `--key is "${dir}", which cannot be read (it is a folder, not a file); expected a PEM private key file`,
    );
    await assertRefused(
      tls(text, KEY),
      `--cert is "${text}", which holds no certificate; expected a PEM certificate chain (-----BEGIN CERTIFICATE----- blocks)`,
    );
    await assertRefused(
      ["--port", "0"],
      `HUBCHAT_KEY is "${text}", which holds no private key; expected a PEM private key (a -----BEGIN PRIVATE KEY----- block)`,
      { env: { HUBCHAT_CERT: CERT, HUBCHAT_KEY: text } },
    );
    await assertRefused(
      tls(OTHER_CERT, KEY),
      `--key is "${KEY}", which is not the private key of the certificate (--cert is "${OTHER_CERT}"); expected the key the certificate was issued for`,
    );
  });
});

Deno.test("main.ts without the Deno permissions it needs names the one missing and exits 2", async () => {
  const needs =
    "hubchat needs --allow-net --allow-read --allow-write --allow-env (or -A), as `deno task start` gives it";
  await assertRefused(
    ["--port", "0"],
    `Deno refused: Requires env access, run again with the --allow-env flag; ${needs}`,
    { permissions: ["--allow-read", "--allow-net", "--allow-write"] },
  );
  await assertRefused(
    ["--port", "0"],
    `Deno refused: Requires net access to "127.0.0.1:0", run again with the --allow-net flag; ${needs}`,
    { permissions: ["--allow-read", "--allow-env", "--allow-write"] },
  );
});

Deno.test("startServer: a taken port is a ListenError, with the history closed again", async () => {
  using taken = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  await withTempDir(async (dir) => {
    const error = await startServer({
      port: taken.addr.port,
      hostname: "127.0.0.1",
      data: `${dir}/history.kv`,
    }).then(() => null, (error: unknown) => error);
    assert.ok(error instanceof ListenError, String(error));
    assert.equal(error.port, taken.addr.port);
    assert.equal(error.hostname, "127.0.0.1");
    assert.ok(error.cause instanceof Deno.errors.AddrInUse);
    // The history file and the (empty) files folder: nothing else.
    const files = [];
    for await (const entry of Deno.readDir(dir)) files.push(entry.name);
    assert.deepEqual(files.sort(), ["files", "history.kv"]);
  });
});

Deno.test("startServer: PEM text without a certificate is a TlsError", async () => {
  const key = await Deno.readTextFile(KEY);
  await assert.rejects(
    startServer({ port: 0, hostname: "127.0.0.1", cert: key, key }),
    (error: unknown) =>
      error instanceof TlsError &&
      error.cause instanceof Deno.errors.InvalidData,
  );
});

Deno.test("startupProblem: words what the children above cannot reach", () => {
  const denied = Object.assign(
    new Deno.errors.PermissionDenied("Permission denied (os error 13)"),
    { code: "EACCES" },
  );
  assert.equal(
    startupProblem(new ListenError("127.0.0.1", 5000, denied)),
    "cannot listen on 127.0.0.1 port 5000: permission denied; expected a port this user may listen on",
  );
  const family = new Error(
    "Address family not supported by protocol (os error 97)",
  );
  assert.equal(
    startupProblem(new ListenError("::1", 8080, family)),
    "cannot listen on ::1 port 8080 (Address family not supported by protocol); expected an address (--host) and a port (--port) this machine can listen on",
  );
  const invocation = parseInvocation(["--cert", "c.pem", "--key", "k.pem"], {});
  assert.equal(
    startupProblem(new TlsError(new Error("unsupported curve")), invocation),
    '--cert is "c.pem" and --key is "k.pem", which cannot serve TLS (unsupported curve); expected a PEM certificate chain and its private key',
  );
  const full = Object.assign(
    new Error("No space left on device (os error 28): open 'h.kv'"),
    { code: "ENOSPC" },
  );
  assert.equal(
    startupProblem(new HistoryOpenError("h.kv", "file", full)),
    `--data is "h.kv", which cannot be opened for reading and writing (no space left on the device); expected a file this user can create and write, ${OR_MEMORY}`,
  );
  assert.equal(
    startupProblem(new UsageError("--port is 1.5; expected a whole number")),
    "--port is 1.5; expected a whole number",
  );
  // Anything else is a bug: its stack trace is printed, not a line.
  assert.equal(startupProblem(new TypeError("x is undefined")), null);
});

Deno.test("parseInvocation: says how each setting was given", () => {
  const invocation = parseInvocation(["--port", "0"], {
    HUBCHAT_DATA: ":memory:",
  });
  assert.equal(invocation.help, false);
  if (!invocation.help) {
    assert.deepEqual(invocation.sources, {
      port: "--port",
      data: "HUBCHAT_DATA",
    });
  }
});

Deno.test("descriptorWarning: a limit below the caps' need is said once at start", () => {
  assert.equal(descriptorWarning(null, 10_000), null);
  assert.equal(descriptorWarning(65_536, 10_000), null);
  assert.equal(descriptorWarning(10_100, 10_000), null);
  assert.match(
    descriptorWarning(1024, 10_000)!,
    /open-file limit is 1024, below the 10100 that --max-connections 10000 needs.*ulimit -n 10100.*LimitNOFILE=10100/,
  );
  assert.match(descriptorWarning(20_000, 0)!, /an uncapped server needs/);
});

Deno.test("parseInvocation: the file flags, from flags and variables", () => {
  const { options } = parseInvocation([
    "--files",
    "/srv/hubchat/files",
    "--max-file-size",
    "1048576",
    "--files-max-bytes=5000000",
    "--upload-rate",
    "0",
  ], {}) as { options: Config };
  assert.equal(options.files, "/srv/hubchat/files");
  assert.equal(options.maxFileSize, 1048576);
  assert.equal(options.filesMaxBytes, 5000000);
  assert.equal(options.uploadRate, 0);
  const fromEnv = parseInvocation([], {
    HUBCHAT_FILES: "/mnt/shared",
    HUBCHAT_MAX_FILE_SIZE: "2048",
    HUBCHAT_FILES_MAX_BYTES: "4096",
    HUBCHAT_UPLOAD_RATE: "100",
  }) as { options: Config };
  assert.equal(fromEnv.options.files, "/mnt/shared");
  assert.equal(fromEnv.options.maxFileSize, 2048);
  assert.equal(fromEnv.options.filesMaxBytes, 4096);
  assert.equal(fromEnv.options.uploadRate, 100);
  for (const args of [["--max-file-size", "0"], ["--files-max-bytes", "0"]]) {
    assert.throws(() => parseInvocation(args, {}), UsageError, args.join(" "));
  }
  assert.throws(
    () => parseInvocation(["--upload-rate", "-1"], {}),
    /--upload-rate/,
  );
});

Deno.test("main.ts --help lists the file flags", async () => {
  const { code, stdout } = await runMainToExit(["--help"]);
  assert.equal(code, 0);
  for (
    const flag of [
      "--files",
      "--max-file-size",
      "--files-max-bytes",
      "--upload-rate",
    ]
  ) {
    assert.match(stdout, new RegExp(`${flag} `), flag);
  }
});

Deno.test("main.ts with a --files folder it cannot make says so and exits 2", async () => {
  await withTempDir(async (dir) => {
    await Deno.writeTextFile(`${dir}/taken`, "a file, not a folder\n");
    await assertRefused(
      ["--port", "0", "--data", ":memory:", "--files", `${dir}/taken/files`],
      new RegExp(
        `^--files is "${dir}/taken/files", which cannot be used \\(.+\\); expected a folder this user can create and write$`,
      ),
    );
  });
});

Deno.test("parseInvocation: --fsync is periodic (the default) or always", () => {
  const given = parseInvocation(["--fsync", "always"], {});
  assert.equal(!given.help && given.options.fsync, "always");
  const fromEnv = parseInvocation([], { HUBCHAT_FSYNC: "always" });
  assert.equal(!fromEnv.help && fromEnv.options.fsync, "always");
  // Unset, the store's own default applies: "periodic".
  const byDefault = parseInvocation([], {});
  assert.equal(!byDefault.help && byDefault.options.fsync, undefined);
  assert.throws(
    () => parseInvocation(["--fsync", "sometimes"], {}),
    (error: unknown) =>
      error instanceof UsageError &&
      error.message ===
        '--fsync is "sometimes"; expected periodic or always',
  );
});

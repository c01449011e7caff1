/**
 * Tests of the command line: `parseInvocation` on its own, and the real
 * program run as a child process (start, serve, stop on SIGTERM).
 *
 * @module
 */

import assert from "node:assert/strict";
import { type Invocation, parseInvocation, UsageError } from "./main.ts";
import type { ServerOptions } from "./server.ts";
import { ChatClient } from "./testing/chat_client.ts";
import { type ChildExit, DenoChild } from "./testing/child_process.ts";
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

/** Runs main.ts to its exit; returns the exit status and what it printed. */
async function runMainToExit(
  args: string[],
): Promise<{ code: number; stdout: string; stderr: string }> {
  const main = spawnMain(args);
  let status: Deno.CommandStatus;
  let exit: ChildExit;
  try {
    status = await within(main.status, "the exit", 20_000);
  } finally {
    exit = await main.close();
  }
  return { code: status.code, stdout: exit.stdout, stderr: exit.stderr };
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
  const { code, stdout, stderr } = await runMainToExit(["--port", "http"]);
  assert.equal(code, 2);
  assert.equal(stdout, "");
  assert.match(stderr, /^hubchat: --port is "http"/);
});

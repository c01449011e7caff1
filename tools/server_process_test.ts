import assert from "node:assert/strict";
import {
  findListenUrl,
  isHubchatCommand,
  needsTempData,
  serverArgv,
  splitCommand,
  startServerProcess,
} from "./server_process.ts";

/** hubchat's entry point, by absolute path: tests run from any directory. */
const MAIN = new URL("../main.ts", import.meta.url).pathname;

/** The words serverArgv appends for a free loopback port. */
const FREE_PORT = ["--port", "0", "--host", "127.0.0.1"];

/** What a hubchat command gets when it sets neither limit. */
const NO_LIMITS = ["--rate", "0", "--max-connections-per-ip", "0"];

/** The temporary history the tests hand serverArgv. */
const DATA_PATH = "/tmp/x/hubchat.kv";

Deno.test("command helpers: findListenUrl, splitCommand, serverArgv", () => {
  assert.equal(
    findListenUrl("hubchat listening on http://127.0.0.1:4321/\n"),
    "ws://127.0.0.1:4321/ws",
  );
  assert.equal(
    findListenUrl("Listening on http://0.0.0.0:80/"),
    "ws://127.0.0.1:80/ws",
  );
  assert.equal(findListenUrl("starting..."), null);
  assert.deepEqual(splitCommand(`a 'b c' "d e"  f`), ["a", "b c", "d e", "f"]);
  assert.throws(() => splitCommand(`a "b`), /unterminated/);
  // A hubchat command gets the load-test flags after the port and host.
  assert.deepEqual(serverArgv("deno run -A main.ts"), [
    "deno",
    "run",
    "-A",
    "main.ts",
    "--port",
    "0",
    "--host",
    "127.0.0.1",
    ...NO_LIMITS,
  ]);
  assert.deepEqual(serverArgv("deno run -A main.ts", { asIs: true }), [
    "deno",
    "run",
    "-A",
    "main.ts",
    ...FREE_PORT,
  ]);
  assert.deepEqual(serverArgv("node s.js --listen={host}:{port}", { pin: 1 }), [
    "taskset",
    "-c",
    "1",
    "node",
    "s.js",
    "--listen=127.0.0.1:0",
  ]);
});

Deno.test("isHubchatCommand: main.ts or deno task start, nothing else", () => {
  assert.equal(isHubchatCommand(splitCommand("deno run -A main.ts")), true);
  assert.equal(isHubchatCommand(splitCommand(`deno run -A ${MAIN}`)), true);
  assert.equal(isHubchatCommand(splitCommand("deno task start")), true);
  assert.equal(
    isHubchatCommand(splitCommand("deno run -A bench/naive_server.ts")),
    false,
  );
  assert.equal(
    isHubchatCommand(splitCommand("deno run -A bench/floor_server.ts")),
    false,
  );
  assert.equal(
    isHubchatCommand(splitCommand("bun bench/bun_server.ts")),
    false,
  );
  assert.equal(isHubchatCommand(splitCommand("deno run -A my_main.ts")), false);
});

Deno.test("serverArgv adds --rate, --max-connections-per-ip and --data only when missing, only to hubchat", () => {
  const tail = (command: string, asIs = false): string[] =>
    serverArgv(command, { dataPath: DATA_PATH, asIs }).slice(
      splitCommand(command).length + FREE_PORT.length,
    );
  const data = ["--data", DATA_PATH];
  assert.deepEqual(tail("deno run -A main.ts"), [...NO_LIMITS, ...data]);
  assert.deepEqual(tail("deno run -A main.ts --rate=50"), [
    ...NO_LIMITS.slice(2),
    ...data,
  ]);
  assert.deepEqual(
    tail("deno run -A main.ts --max-connections-per-ip 5 --rate 1"),
    data,
  );
  assert.deepEqual(tail("deno run -A main.ts --data :memory:"), NO_LIMITS);
  // Variables set in the command count as set.
  assert.deepEqual(
    tail("env HUBCHAT_DATA=/srv/h.kv HUBCHAT_RATE=5 deno run -A main.ts"),
    NO_LIMITS.slice(2),
  );
  assert.deepEqual(tail("deno task start"), [...NO_LIMITS, ...data]);
  assert.deepEqual(tail("deno run -A main.ts", true), []);
  assert.deepEqual(tail("deno run -A bench/naive_server.ts"), []);
  assert.deepEqual(tail("bun bench/bun_server.ts"), []);

  assert.equal(needsTempData("deno run -A main.ts"), true);
  assert.equal(needsTempData("deno run -A main.ts --data=/srv/h.kv"), false);
  assert.equal(needsTempData("env HUBCHAT_DATA=x deno run -A main.ts"), false);
  assert.equal(needsTempData("deno run -A main.ts", true), false);
  assert.equal(needsTempData("deno run -A bench/naive_server.ts"), false);
});

Deno.test("startServerProcess gives hubchat a temporary history and removes it at stop", async () => {
  const server = await startServerProcess(`deno run -A ${MAIN}`);
  let stopped = false;
  try {
    assert.ok(server.dataDir !== null, "a hubchat command gets a data dir");
    assert.ok(
      server.commandLine.includes(`--data ${server.dataDir}/hubchat.kv`),
      server.commandLine,
    );
    assert.ok(
      server.commandLine.includes("--rate 0 --max-connections-per-ip 0"),
      server.commandLine,
    );
    // The server opened its history there.
    assert.ok((await Deno.stat(`${server.dataDir}/hubchat.kv`)).isFile);
    assert.equal(await server.stop(), 0);
    stopped = true;
    await assert.rejects(Deno.stat(server.dataDir), Deno.errors.NotFound);
  } finally {
    if (!stopped) await server.stop();
  }
});

Deno.test("serverArgv with a cluster's Redis: --redis for hubchat, {redis} filled in, conflicts refused", () => {
  const redis = "redis://127.0.0.1:6390";
  assert.deepEqual(
    serverArgv("deno run -A main.ts", { port: 8081, redis }).slice(4),
    ["--port", "8081", "--host", "127.0.0.1", ...NO_LIMITS, "--redis", redis],
  );
  assert.deepEqual(
    serverArgv("my_server --listen {host}:{port} --store {redis}", {
      port: 8082,
      redis,
    }),
    ["my_server", "--listen", "127.0.0.1:8082", "--store", redis],
  );
  assert.throws(
    () => serverArgv("deno run -A bench/floor_server.ts", { redis }),
    /is not a hubchat command .* holds no \{redis\}; expected \{redis\}/,
  );
  assert.throws(
    () =>
      serverArgv("deno run -A main.ts --redis redis://elsewhere", { redis }),
    /names its own Redis/,
  );
  assert.throws(
    () => serverArgv("my_server --store {redis}"),
    /holds \{redis\} but no Redis was given/,
  );
});

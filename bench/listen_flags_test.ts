import assert from "node:assert/strict";
import { UsageError } from "../flags.ts";
import { listenUsage, readListenFlags } from "./listen_flags.ts";

Deno.test("readListenFlags: flags, in both spellings", () => {
  assert.deepEqual(readListenFlags(["--port", "0", "--host", "::1"]), {
    port: 0,
    hostname: "::1",
  });
  assert.deepEqual(readListenFlags(["--port=9000", "--host=0.0.0.0"]), {
    port: 9000,
    hostname: "0.0.0.0",
  });
});

Deno.test("readListenFlags: a bad port names itself and the range", () => {
  const range = "expected a whole number from 0 to 65535";
  for (
    const [port, message] of [
      ["70000", `--port is "70000"; ${range}`],
      ["-1", `--port is "-1"; ${range}`],
      ["8.5", `--port is "8.5"; ${range}`],
      ["http", `--port is "http", not a number; ${range}`],
    ]
  ) {
    assert.throws(
      () => readListenFlags(["--port", port]),
      new UsageError(message),
    );
  }
});

Deno.test("readListenFlags: PORT and HOST, defaults, and --help", () => {
  assert.deepEqual(readListenFlags([], {}), {
    port: 8080,
    hostname: "127.0.0.1",
  });
  assert.deepEqual(
    readListenFlags(["--port", "1"], { PORT: "2", HOST: "0.0.0.0" }),
    { port: 1, hostname: "0.0.0.0" },
  );
  assert.throws(
    () => readListenFlags([], { PORT: "x" }),
    /^UsageError: PORT is "x", not a number/,
  );
  assert.equal(readListenFlags(["-h"]), null);
  const usage = listenUsage("bun bench/bun_server.ts");
  assert.match(usage, /^Usage: bun bench\/bun_server.ts \[options\]/);
  assert.match(usage, /^ {2}--port N .*$/m);
  assert.match(usage, /^ {2}--host ADDR .*$/m);
});

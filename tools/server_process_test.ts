import assert from "node:assert/strict";
import { findListenUrl, serverArgv, splitCommand } from "./server_process.ts";

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
  assert.deepEqual(serverArgv("deno run -A main.ts"), [
    "deno",
    "run",
    "-A",
    "main.ts",
    "--port",
    "0",
    "--host",
    "127.0.0.1",
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

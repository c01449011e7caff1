/**
 * Tests of the test Redis itself: what tests of several nodes lean on (a
 * real server on a free loopback port, a crash that loses nothing
 * acknowledged with the append-only file and everything without it, a
 * stop that leaves nothing behind).
 *
 * @module
 */

import assert from "node:assert/strict";
import { RespError } from "../tools/resp.ts";
import { RedisServer } from "./redis_server.ts";

Deno.test("RedisServer starts on a free loopback port in a temporary directory and answers commands", async () => {
  const redis = await RedisServer.start();
  try {
    assert.notEqual(redis.port, 6379, "never the system's port");
    assert.equal(redis.url, `redis://127.0.0.1:${redis.port}`);
    assert.ok((await Deno.stat(redis.dir)).isDirectory);
    assert.equal(await redis.command(["PING"]), "PONG");
    assert.equal(await redis.command(["SET", "k", "v"]), "OK");
    assert.equal(await redis.command(["GET", "k"]), "v");
    assert.equal(await redis.command(["GET", "missing"]), null);
    assert.equal(await redis.command(["INCR", "n"]), 1);
    assert.deepEqual(await redis.command(["MGET", "k", "missing"]), [
      "v",
      null,
    ]);
    // Our settings, not the system's configuration file.
    assert.deepEqual(await redis.command(["CONFIG", "GET", "dir"]), [
      "dir",
      redis.dir,
    ]);
    assert.deepEqual(await redis.command(["CONFIG", "GET", "appendfsync"]), [
      "appendfsync",
      "always",
    ]);
    await assert.rejects(
      redis.command(["NOSUCHCOMMAND"]),
      (error) => error instanceof RespError && error.kind === "ERR",
    );
  } finally {
    await redis.stop();
  }
});

Deno.test("RedisServer with appendonly: SIGKILL, restart on the same port, the data is back", async () => {
  const redis = await RedisServer.start({ appendonly: true });
  try {
    const port = redis.port;
    const pid = redis.pid;
    assert.equal(await redis.command(["SET", "kept", "yes"]), "OK");
    assert.equal(await redis.command(["RPUSH", "list", "a", "b"]), 2);
    await redis.kill("SIGKILL");
    assert.equal(redis.running, false);
    await assert.rejects(redis.command(["PING"]));
    await redis.restart();
    assert.equal(redis.port, port);
    assert.notEqual(redis.pid, pid);
    assert.equal(await redis.command(["GET", "kept"]), "yes");
    assert.deepEqual(await redis.command(["LRANGE", "list", "0", "-1"]), [
      "a",
      "b",
    ]);
  } finally {
    await redis.stop();
  }
});

Deno.test("RedisServer without persistence: a restart starts empty", async () => {
  const redis = await RedisServer.start({ appendonly: false });
  try {
    assert.equal(await redis.command(["SET", "gone", "soon"]), "OK");
    await redis.kill("SIGKILL");
    await redis.restart();
    assert.equal(await redis.command(["GET", "gone"]), null);
    // A restart of a running one (SIGTERM first) loses it too: no snapshots.
    assert.equal(await redis.command(["SET", "gone", "again"]), "OK");
    await redis.restart();
    assert.equal(await redis.command(["GET", "gone"]), null);
  } finally {
    await redis.stop();
  }
});

Deno.test("RedisServer.stop ends the process and removes its temporary directory, and only that", async () => {
  const redis = await RedisServer.start();
  const dir = redis.dir;
  await redis.command(["SET", "k", "v"]);
  await redis.stop();
  await redis.stop(); // twice is fine
  assert.equal(redis.running, false);
  await assert.rejects(Deno.stat(dir), Deno.errors.NotFound);
  await assert.rejects(redis.command(["PING"]));
  await assert.rejects(redis.restart(), /was stopped/);

  // A directory of the test's own is kept, with the append-only file in it.
  const mine = await Deno.makeTempDir({ prefix: "hubchat-redis-test-" });
  try {
    const kept = await RedisServer.start({ dir: mine });
    await kept.command(["SET", "k", "v"]);
    await kept.stop();
    const names = [...Deno.readDirSync(mine)].map((entry) => entry.name);
    assert.ok(names.includes("appendonlydir"), names.join(", "));
  } finally {
    await Deno.remove(mine, { recursive: true });
  }
});

Deno.test("RedisServer without redis-server fails with one line saying how to install it", async () => {
  const saved = Deno.env.get("REDIS_SERVER_PATH");
  Deno.env.set("REDIS_SERVER_PATH", "/nonexistent/redis-server");
  try {
    await assert.rejects(RedisServer.start(), (error: Error) => {
      assert.doesNotMatch(error.message, /\n/);
      assert.match(error.message, /^redis-server not found/);
      assert.match(error.message, /apt-get install -y redis-server/);
      return true;
    });
  } finally {
    if (saved === undefined) Deno.env.delete("REDIS_SERVER_PATH");
    else Deno.env.set("REDIS_SERVER_PATH", saved);
  }
});

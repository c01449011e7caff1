/**
 * Tests of the test proxy itself, against a real redis-server: commands
 * go through it, `hold` drops its connections and refuses new ones,
 * `release` lets them through again, and Redis sees them from the ports
 * `upstreamPorts` names.
 *
 * @module
 */

import assert from "node:assert/strict";
import { respCommand } from "../tools/resp.ts";
import { RedisServer } from "./redis_server.ts";
import { TcpProxy } from "./tcp_proxy.ts";

/** One command through the proxy, bounded. */
function through(proxy: TcpProxy, args: string[]): Promise<unknown> {
  return respCommand(proxy.port, args, 5000);
}

Deno.test("TcpProxy forwards to Redis, and hold keeps it away until release", async () => {
  const redis = await RedisServer.start({ appendonly: false });
  const proxy = TcpProxy.start(redis.port);
  try {
    assert.equal(proxy.url, `redis://127.0.0.1:${proxy.port}`);
    assert.equal(await through(proxy, ["SET", "k", "v"]), "OK");
    assert.equal(await redis.command(["GET", "k"]), "v");

    // A connection open through it: Redis sees it from a port it names.
    const conn = await Deno.connect({
      hostname: "127.0.0.1",
      port: proxy.port,
    });
    try {
      await conn.write(new TextEncoder().encode("PING\r\n"));
      const reply = new Uint8Array(16);
      const read = await conn.read(reply);
      assert.equal(
        new TextDecoder().decode(reply.subarray(0, read!)),
        "+PONG\r\n",
      );
      const ports = proxy.upstreamPorts();
      assert.equal(ports.length, 1);
      const list = String(await redis.command(["CLIENT", "LIST"]));
      assert.ok(list.includes(`addr=127.0.0.1:${ports[0]} `), list);

      // Held: the open connection drops, new ones are refused.
      proxy.hold();
      const buffer = new Uint8Array(16);
      assert.equal(await conn.read(buffer).catch(() => null), null);
      await assert.rejects(through(proxy, ["PING"]));
    } finally {
      try {
        conn.close();
      } catch {
        // Closed by the proxy.
      }
    }

    proxy.release();
    assert.equal(await through(proxy, ["GET", "k"]), "v");
  } finally {
    await proxy.close();
    await redis.stop();
  }
});

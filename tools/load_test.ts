import assert from "node:assert/strict";
import { runLoad } from "./load.ts";
import { startServer } from "../server.ts";
import { startFloorServer } from "../bench/floor_server.ts";
import { startNaiveServer } from "../bench/naive_server.ts";
import { withServer } from "../testing/server.ts";

/** Five clients, two senders: few enough for any CI, enough to interleave. */
const SMOKE = { clients: 5, senders: 2, window: 8, duration: 0.5, warmup: 0.2 };

function assertClean(
  summary: Awaited<ReturnType<typeof runLoad>>,
  clients: number,
): void {
  assert.equal(summary.aborted, null);
  assert.equal(summary.clients_connected, clients);
  assert.ok(summary.messages_sent >= 100, `sent ${summary.messages_sent}`);
  assert.equal(summary.lost, 0);
  assert.equal(summary.duplicated, 0);
  assert.equal(summary.out_of_order, 0);
  assert.equal(summary.clients_complete, clients);
  assert.equal(summary.deliveries_total, summary.messages_sent * clients);
  assert.deepEqual(summary.errors.server_error_codes, {});
  assert.deepEqual(summary.errors.close_codes, {});
}

Deno.test("runLoad against hubchat: every client gets every message", async () => {
  const server = await startServer({
    port: 0,
    hostname: "127.0.0.1",
    ratePerSecond: 0, // the load tool floods by design
  });
  try {
    const summary = await runLoad({ ...SMOKE, url: server.url });
    assertClean(summary, SMOKE.clients);
  } finally {
    await server.shutdown();
  }
});

Deno.test("runLoad open loop against hubchat", async () => {
  const server = await startServer({
    port: 0,
    hostname: "127.0.0.1",
    ratePerSecond: 0, // the load tool floods by design
  });
  try {
    // 5 clients × 400 messages/s = 2000 deliveries/s for 0.7 s.
    const summary = await runLoad({ ...SMOKE, rate: 2000, url: server.url });
    assertClean(summary, SMOKE.clients);
    assert.equal(summary.config.mode, "open");
  } finally {
    await server.shutdown();
  }
});

Deno.test("runLoad against the naive comparison server", async () => {
  const server = await startNaiveServer({ port: 0 });
  try {
    const summary = await runLoad({ ...SMOKE, url: server.url });
    assertClean(summary, SMOKE.clients);
  } finally {
    await server.shutdown();
  }
});

Deno.test("runLoad against the floor server: every frame relayed, in order", async () => {
  const server = startFloorServer({ port: 0 });
  try {
    const summary = await runLoad({ ...SMOKE, url: server.url });
    assertClean(summary, SMOKE.clients);
  } finally {
    await server.shutdown();
  }
});

Deno.test("runLoad --stall: clients that never read are opened and reported; the others lose nothing", async () => {
  await withServer(
    { ratePerSecond: 0 }, // the load tool floods by design
    async (server) => {
      const summary = await runLoad({ ...SMOKE, stall: 2, url: server.url });
      assertClean(summary, SMOKE.clients);
      assert.equal(summary.stall?.count, 2);
      assert.equal(summary.stall?.connected, 2);
    },
  );
});

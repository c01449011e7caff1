/**
 * A server that outlives its limits tells the operator: over real sockets
 * and HTTP, a store that fails on purpose is logged once per burst,
 * counted in /metrics and reported by /healthz until it works again.
 */

import assert from "node:assert/strict";
import { createLogger } from "./log.ts";
import type { ErrorMessage } from "./protocol.ts";
import { failingFile } from "./store/history_test_util.ts";
import { ChatClient } from "./testing/chat_client.ts";
import { ChildServer } from "./testing/child_server.ts";
import { metric } from "./testing/scene.ts";
import { withServer } from "./testing/server.ts";
import { withTempDir } from "./testing/temp_dir.ts";
import { waitUntil, within } from "./testing/wait.ts";
import { sleep } from "./tools/wait.ts";

/** /healthz's status and body. */
async function healthz(
  base: string,
): Promise<{ status: number; body: Record<string, unknown> }> {
  const response = await fetch(`${base}healthz`);
  return { status: response.status, body: await response.json() };
}

Deno.test("a failing store is logged once, counted, and /healthz says so until it recovers", async () => {
  const lines: string[] = [];
  const logger = createLogger({
    format: "json",
    write: (line) => lines.push(line),
  });
  let failing = false;
  // The history file, failing as a full disk does.
  const wrapHistoryFile = failingFile(() => failing);
  await withTempDir(async (dir) => {
    await withServer({
      data: `${dir}/history.kv`,
      wrapHistoryFile,
      logger,
    }, async (server, track) => {
      const base = server.url;
      const ann = track(await ChatClient.join(server.port, "ann"));
      ann.say("stored");
      await ann.expectMessage("ann", "stored");
      assert.deepEqual(await healthz(base), {
        status: 200,
        body: { status: "ok", clients: 1 },
      });
      assert.equal(await metric(server.port, "hubchat_storage_failing"), 0);

      // The disk fills: every line is refused, nothing is sent.
      failing = true;
      for (const text of ["lost 1", "lost 2", "lost 3"]) {
        ann.say(text);
        const refused = await ann.next(`the refusal of "${text}"`);
        assert.equal(refused.type, "error");
        assert.equal((refused as ErrorMessage).code, "storage_failed");
      }
      assert.deepEqual(await healthz(base), {
        status: 503,
        body: { status: "degraded", clients: 1, storage: "failing" },
      });
      assert.equal(await metric(server.port, "hubchat_storage_failing"), 1);
      assert.equal(
        await metric(server.port, "hubchat_storage_failures_total"),
        3,
      );
      const failingLines = lines.map((line) => JSON.parse(line)).filter((
        event,
      ) => event.event === "storage_failing");
      assert.equal(failingLines.length, 1, "logged once per burst");
      assert.equal(failingLines[0].level, "error");
      assert.match(failingLines[0].cause, /No space left on device/);

      // Space comes back: the next line is stored and sent; all is well.
      failing = false;
      ann.say("back");
      await ann.expectMessage("ann", "back");
      assert.deepEqual(await healthz(base), {
        status: 200,
        body: { status: "ok", clients: 1 },
      });
      assert.equal(await metric(server.port, "hubchat_storage_failing"), 0);
      assert.equal(
        await metric(server.port, "hubchat_storage_failures_total"),
        3,
      );
      const events = lines.map((line) => JSON.parse(line).event);
      assert.deepEqual(
        events.filter((event) => event.startsWith("storage_")),
        ["storage_failing", "storage_recovered"],
      );
    });
    // The file holds the stored lines, whole, and nothing of the refused.
    const records = (await Deno.readTextFile(`${dir}/history.kv`)).split("\n");
    assert.equal(records.pop(), "", "whole records only");
    assert.deepEqual(
      records.slice(1).map((record) => JSON.parse(record))
        .filter((record) => record.type === "message")
        .map((record) => record.text),
      ["stored", "back"],
    );
  });
});

/**
 * Descriptors the child gets: enough to start and hold a few clients, few
 * enough that a test can use them all up quickly.
 */
const CHILD_DESCRIPTORS = 256;

/** Half-sent requests the attacker opens: more than the child can hold. */
const ATTACK_CONNECTIONS = 600;

Deno.test("descriptors run out: the server lives on, says so, and serves again once they are free", async () => {
  const encoder = new TextEncoder();
  const server = await ChildServer.start(
    ["--rate", "0", "--max-connections-per-ip", "0", "--log-format", "json"],
    { wrap: ["prlimit", `--nofile=${CHILD_DESCRIPTORS}:${CHILD_DESCRIPTORS}`] },
  );
  const attack: Deno.Conn[] = [];
  const clients: ChatClient[] = [];
  try {
    // A member from before keeps chatting through it all.
    const ann = await ChatClient.join(server.port, "ann");
    clients.push(ann);
    // Connections that send half a request and then nothing: Deno.serve
    // waits for the rest forever, each holding a descriptor.
    for (let i = 0; i < ATTACK_CONNECTIONS; i++) {
      try {
        const conn = await Deno.connect({ port: server.port });
        attack.push(conn);
        await conn.write(encoder.encode("GET / HTTP/1.1\r\nHost: x\r\n"));
      } catch {
        break; // refused: the listener is down, as it should be
      }
    }
    await waitUntil(
      () => server.process.stderr.includes('"accept_failing"'),
      "the server to log that accepting fails",
      20_000,
    );
    assert.equal(server.process.exited, false, "the server is still running");
    const failing = server.process.stderr.split("\n").filter((line) =>
      line.includes('"accept_failing"')
    );
    assert.equal(failing.length, 1, "logged once for the burst");
    assert.match(failing[0], /Too many open files/);
    // The member from before is served all along.
    ann.say("still here");
    await ann.expectMessage("ann", "still here");

    // The attacker leaves: descriptors are free, and a newcomer chats.
    for (const conn of attack.splice(0)) conn.close();
    const bob = await within(
      (async () => {
        for (;;) {
          try {
            return await ChatClient.join(server.port, "bob");
          } catch {
            await sleep(200);
          }
        }
      })(),
      "a new client to connect after the attack",
      20_000,
    );
    clients.push(bob);
    await ann.expectPresence("join", "bob", 2);
    bob.say("hello again");
    await ann.expectMessage("bob", "hello again");
    await bob.expectMessage("bob", "hello again");
    await waitUntil(
      () => server.process.stderr.includes('"accept_recovered"'),
      "the server to log that accepting works again",
      20_000,
    );
    const health = await fetch(`${server.url}healthz`);
    assert.deepEqual(await health.json(), { status: "ok", clients: 2 });
    assert.ok(await metric(server.port, "hubchat_accept_failures_total") >= 1);
    assert.equal(await metric(server.port, "hubchat_accept_failing"), 0);
    // It warned at start that the limit was below what the caps need.
    assert.match(server.process.stderr, /"descriptor_limit"/);
  } finally {
    for (const conn of attack) conn.close();
    for (const client of clients) await client.close();
    await server.stop();
  }
});

/**
 * A server that outlives its limits tells the operator: over real sockets
 * and HTTP, a store that fails on purpose is logged once per burst,
 * counted in /metrics and reported by /healthz until it works again.
 */

import assert from "node:assert/strict";
import { createLogger } from "./log.ts";
import type { ErrorMessage } from "./protocol.ts";
import type { HistoryFile } from "./store/history.ts";
import { ChatClient } from "./testing/chat_client.ts";
import { withServer } from "./testing/server.ts";

/** One sample's value from a /metrics page (0 when absent). */
async function sample(base: string, name: string): Promise<number> {
  const text = await (await fetch(`${base}metrics`)).text();
  const line = text.split("\n").find((row) => row.startsWith(`${name} `));
  return line === undefined ? 0 : Number(line.split(" ")[1]);
}

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
  // The history file, failing as a full disk does: half the write, then
  // ENOSPC.
  const wrapHistoryFile = (file: HistoryFile): HistoryFile => ({
    write(bytes: Uint8Array): void {
      if (!failing) return file.write(bytes);
      file.write(bytes.subarray(0, bytes.length >> 1));
      throw new Error("No space left on device (os error 28)");
    },
    truncate: (length) => file.truncate(length),
    sync: () => file.sync(),
  });
  const dir = await Deno.makeTempDir({ prefix: "hubchat_degraded_" });
  try {
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
      assert.equal(await sample(base, "hubchat_storage_failing"), 0);

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
      assert.equal(await sample(base, "hubchat_storage_failing"), 1);
      assert.equal(await sample(base, "hubchat_storage_failures_total"), 3);
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
      assert.equal(await sample(base, "hubchat_storage_failing"), 0);
      assert.equal(await sample(base, "hubchat_storage_failures_total"), 3);
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
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

import assert from "node:assert/strict";
import { NodeGroup } from "./node_group.ts";

/** hubchat's entry point, by absolute path: tests run from any directory. */
const MAIN = new URL("../main.ts", import.meta.url).pathname;

/** GET /healthz of a node's `ws://` URL: true if it answered 200. */
async function healthy(url: string): Promise<boolean> {
  try {
    const response = await fetch(
      new URL("/healthz", url.replace(/^ws/, "http")),
    );
    await response.body?.cancel();
    return response.ok;
  } catch {
    return false;
  }
}

Deno.test("NodeGroup: N nodes on their own ports and histories; a killed one restarts on its port with its history", async () => {
  const group = await NodeGroup.start(`deno run -A ${MAIN}`, { nodes: 2 });
  let stopped = false;
  try {
    const [a, b] = group.nodes;
    assert.notEqual(a.port, b.port);
    assert.deepEqual(group.urls, [a.url, b.url]);
    assert.ok(a.dataDir !== null && b.dataDir !== null);
    assert.notEqual(a.dataDir, b.dataDir);
    assert.ok(a.process!.commandLine.includes(`--data ${a.dataDir}/`));
    assert.ok(await healthy(a.url) && await healthy(b.url));
    const pid = b.process!.pid;
    assert.deepEqual(group.pids, [a.process!.pid, pid]);

    await group.kill(1);
    assert.equal(b.process, null);
    assert.deepEqual(b.exits, [null], "SIGKILL: no exit code");
    assert.deepEqual(group.pids, [a.process!.pid]);
    assert.equal(await healthy(b.url), false);
    assert.ok((await Deno.stat(b.dataDir!)).isDirectory, "history kept");

    await group.restart(1);
    assert.equal(b.restarts, 1);
    assert.notEqual(b.process!.pid, pid);
    assert.equal(b.process!.url, b.url);
    assert.ok(b.process!.commandLine.includes(`--port ${b.port} `));
    assert.ok(await healthy(b.url));

    assert.deepEqual(await group.stop(), [0, 0]);
    stopped = true;
    await assert.rejects(Deno.stat(a.dataDir!), Deno.errors.NotFound);
    await assert.rejects(Deno.stat(b.dataDir!), Deno.errors.NotFound);
  } finally {
    if (!stopped) await group.stop();
  }
});

Deno.test("NodeGroup: a node that does not start stops the others and says why", async () => {
  await assert.rejects(
    NodeGroup.start(`deno run -A ${MAIN} --bogus-flag`, { nodes: 2 }),
    /printed no http:\/\/host:port\/ .* and exited/,
  );
});

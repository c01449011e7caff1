/**
 * Tests of the child-process helpers themselves: what they promise the
 * tests that lean on them (a listen URL, a restart on the same port with
 * the same data, a stop that says how the child ended, its output kept).
 *
 * @module
 */

import assert from "node:assert/strict";
import { ChatClient } from "./chat_client.ts";
import { DenoChild } from "./child_process.ts";
import { ChildServer } from "./child_server.ts";
import { within } from "./wait.ts";

Deno.test("ChildServer restarts on the same port with the same data", async () => {
  const dir = await Deno.makeTempDir({ prefix: "hubchat_child_" });
  let server = await ChildServer.start(["--rate", "0"], {
    data: `${dir}/chat.kv`,
  });
  try {
    assert.equal(server.url, `http://127.0.0.1:${server.port}/`);
    assert.ok(server.rss() > 0, "VmRSS read from /proc");
    const ann = await ChatClient.join(server.port, "ann");
    ann.say("before the restart");
    await ann.expectMessage("ann", "before the restart");
    const port = server.port;
    const stopped = server.process;
    server = await server.restart("SIGTERM");
    const exit = await stopped.stop();
    assert.equal(exit.status.code, 0, `a clean stop; stderr: ${exit.stderr}`);
    assert.equal((await ann.closed).code, 1001);
    assert.equal(server.port, port);
    const bob = await ChatClient.join(server.port, "bob");
    assert.deepEqual(bob.welcome?.history.map((line) => line.text), [
      "before the restart",
    ]);
    await bob.close();
  } finally {
    await server.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("DenoChild reads whole lines and returns the rest when stopped", async () => {
  const dir = await Deno.makeTempDir({ prefix: "hubchat_child_" });
  const script = `${dir}/print.ts`;
  await Deno.writeTextFile(
    script,
    `console.log("one\\ntwo\\nthree");
    await Deno.stdout.write(new TextEncoder().encode("unfinished"));
    console.error("to stderr");`,
  );
  const child = DenoChild.spawn(script);
  try {
    assert.equal(await child.nextLine("the first line"), "one");
    await within(child.status, "the script to end by itself");
    const exit = await child.stop();
    assert.equal(exit.status.code, 0);
    assert.equal(exit.stdout, "two\nthree\nunfinished");
    assert.equal(exit.stderr, "to stderr\n");
    assert.equal(await child.nextLine("a line after the end"), null);
  } finally {
    await child.close();
    await Deno.remove(dir, { recursive: true });
  }
});

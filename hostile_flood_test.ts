/**
 * Floods over real sockets: one client sending too fast, clients that never
 * read, and the server's memory under 10 MB frames, deaf readers and an
 * endless fragmented message. Each test is an attack in a scene
 * (testing/scene.ts): at the end the observer must have received exactly
 * the sender's lines, every attacker that joined must have left, and
 * `/healthz` must answer 200 with the baseline client count.
 *
 * Memory is measured on a server in a child process (`main.ts`), through
 * its VmRSS in /proc: the test process's own buffers would drown the signal.
 *
 * @module
 */

import assert from "node:assert/strict";
import { ChildServer } from "./testing/child_server.ts";
import { RawWebSocket } from "./testing/raw_websocket.ts";
import {
  assertEnd,
  type End,
  field,
  metric,
  nextMatching,
  rawJoin,
  readEnd,
  withScene,
} from "./testing/scene.ts";
import { sleep } from "./tools/wait.ts";
import { encodeFrame, Opcode } from "./tools/ws_frame.ts";

Deno.test("a flood from one client: rate_limited, then 1008; the others are unaffected", async () => {
  // Default rate limit (10/s, burst 20). The sender stays under it.
  await withScene({}, async (scene) => {
    const flooder = scene.track(await rawJoin(scene.port, "flooder"));
    let sent = 0;
    const flood = async (count: number): Promise<void> => {
      const frames: string[] = [];
      for (let i = 0; i < count; i++) {
        frames.push(
          JSON.stringify({ type: "message", text: `flood ${sent++}` }),
        );
      }
      await flooder.sendTexts(frames);
    };
    // 30 at once: the burst of 20 passes, 10 refusals in a row close it, on
    // the last frame, so no unread frame turns the close into a reset. If a
    // token came back meanwhile, more follow until the close.
    await flood(30);
    await scene.say();
    let warnings = 0;
    let echoes = 0;
    let end: End | undefined;
    while (end === undefined) {
      let event;
      try {
        event = await flooder.readEvent({ answerPings: true, ms: 300 });
      } catch (error) {
        if (!/timed out/.test((error as Error).message)) throw error;
        assert.ok(sent < 500, `no close after ${sent} frames`);
        await flood(10).catch(() => {}); // Closed under us: read on.
        continue;
      }
      if (event === null) end = { kind: "eof" };
      else if (event.kind === "close") end = event;
      else {
        for (const message of event.messages) {
          if (message.type === "error") {
            assert.equal(field(message, "code"), "rate_limited");
            warnings++;
          } else if (
            message.type === "message" &&
            field(message, "username") === "flooder"
          ) {
            echoes++;
          }
        }
      }
    }
    // A close frame can still be lost to a TCP reset if frames were in
    // flight; the server's own count says why it cut the flooder off.
    if (end.kind === "close") {
      assert.deepEqual(end, {
        kind: "close",
        code: 1008,
        reason: "rate limit exceeded repeatedly",
      });
    }
    assert.equal(
      await metric(scene.port, 'hubchat_evictions_total{cause="rate_limit"}'),
      1,
    );
    assert.ok(warnings >= 1, "the flooder was warned first");
    // Its own accepted lines may come back after the close (the server
    // stores them first), so what got through is counted at the observer.
    assert.ok(echoes < sent, `${echoes} of ${sent} came back`);
  }).then((tally) => {
    // What got through is a prefix-ordered, duplicate-free subset.
    const numbers = tally.others.map((line) => {
      assert.equal(line.username, "flooder");
      return Number(line.text.split(" ")[1]);
    });
    assert.ok(numbers.length >= 20, `${numbers.length} flood lines`);
    assert.deepEqual(numbers.slice(0, 20), [...Array(20).keys()]);
    for (let i = 1; i < numbers.length; i++) {
      assert.ok(numbers[i] > numbers[i - 1], "in order, no duplicates");
    }
  });
});

Deno.test("a client that never reads is evicted with 4008; the others get every line", async () => {
  await withScene(
    { maxQueue: 8, highWaterBytes: 1024, ratePerSecond: 0 },
    async (scene) => {
      const deaf = scene.track(await RawWebSocket.connect(scene.port, "deaf"));
      // The sender writes raw, each frame in one TCP write.
      const blaster = scene.track(await rawJoin(scene.port, "blaster"));
      const body = "x".repeat(1900);
      let sent = 0;
      let evicted = false;
      while (!evicted && sent < 20_000) {
        const batch: string[] = [];
        for (let i = 0; i < 20; i++) {
          batch.push(
            JSON.stringify({ type: "message", text: `${sent++} ${body}` }),
          );
        }
        await blaster.sendTexts(batch);
        // Wait for the blaster's echo of the last one: paced by a reader.
        for (;;) {
          const message = await blaster.next("the blaster's echo");
          if (message.type === "leave") evicted = true;
          if (
            message.type === "message" &&
            field(message, "text") === `${sent - 1} ${body}`
          ) break;
        }
        if (sent % 200 === 0) await scene.say();
      }
      assert.ok(evicted || sent < 20_000, `deaf was not evicted after ${sent}`);
      await blaster.close();
      // The deaf client was sent a prefix, then the 4008 close.
      const end = await readEnd(deaf, 15_000);
      assert.deepEqual(end, {
        kind: "close",
        code: 4008,
        reason: "slow consumer",
      });
    },
  ).then((tally) => {
    const blasted = tally.others.filter((line) => line.username === "blaster");
    blasted.forEach((line, i) => assert.ok(line.text.startsWith(`${i} `)));
    assert.ok(blasted.length > 0);
  });
});

// ------------------------------------------------- memory, in a child

const MB = 1024 * 1024;

function mb(bytes: number): string {
  return `${(bytes / MB).toFixed(1)} MB`;
}

Deno.test("memory stays bounded under 10 MB frames, 10 at once and then 40 in a row", async () => {
  const server = await ChildServer.start([
    "--rate",
    "0",
    "--max-connections-per-ip",
    "0",
  ]);
  try {
    const ten = encodeFrame({
      opcode: Opcode.text,
      payload: "x".repeat(10 * 1000 * 1000),
      mask: "zero",
    });
    let before = 0;
    let peak = 0;
    let attacks = 0;
    let levelled = 0;
    let after = 0;
    await withScene(server.port, async (scene) => {
      before = server.rss();
      const hit = async (name: string): Promise<void> => {
        const raw = await rawJoin(server.port, name);
        try {
          await raw.connection.write(ten);
          // The 1009 close frame can be lost to a TCP reset (the server's
          // kernel resets a connection closed with bytes unread), so the
          // proof that each frame was refused for its size is the server's
          // own count, checked below.
          let end: End;
          try {
            end = await readEnd(raw, 15_000);
          } catch (error) {
            if (!(error instanceof Deno.errors.ConnectionReset)) throw error;
            end = { kind: "eof" };
          }
          assertEnd(end, new Set([1009]), name);
        } finally {
          await raw.close();
        }
        attacks++;
        peak = Math.max(peak, server.rss());
      };
      for (let round = 0; round < 2; round++) {
        await Promise.all(
          Array.from({ length: 10 }, (_, i) => hit(`wide${round}-${i}`)),
        );
        await scene.say();
      }
      for (let i = 0; i < 40; i++) {
        await hit(`big${i}`);
        if (i === 9) levelled = server.rss();
        if (i % 10 === 0) await scene.say();
      }
      after = server.rss();
    });
    // 60 frames of 10 MB went in: 600 MB. Each is held a few times over
    // (Deno's read buffer, the message, the string) until its 1009; V8
    // frees the string when it next collects and the allocator keeps some
    // pages for the next frame, so RSS after an attack sits anywhere from
    // 100 to 300 MB above the start depending on when V8 last collected.
    // What must not happen is growth with the attack: the last 30 frames
    // (300 MB) come one at a time after the level is reached, and a server
    // that kept them would grow by all of it.
    assert.equal(attacks, 60);
    const metrics = await (await fetch(
      `http://127.0.0.1:${server.port}/metrics`,
    )).text();
    assert.match(
      metrics,
      /^hubchat_errors_total\{code="frame_too_large"\} 60$/m,
      "every 10 MB frame was refused for its size",
    );
    assert.ok(
      peak - before < 800 * MB,
      `peak ${mb(peak)} from ${mb(before)} with 10 frames at once`,
    );
    assert.ok(
      after - levelled < 100 * MB,
      `RSS ${mb(levelled)} → ${mb(after)} over the last 300 MB of refused ` +
        `frames (${mb(before)} at the start)`,
    );
  } finally {
    await server.close();
  }
});

Deno.test("memory stays bounded while 12 clients that never read are sent 20 MB each", async () => {
  // Default queue bounds (256 messages, 64 KiB): eviction waits for the
  // kernel's socket buffers to fill first, a few MB per reader.
  const server = await ChildServer.start(["--rate", "0"]);
  try {
    let before = 0;
    let after = 0;
    let sent = 0;
    const deafCount = 12;
    const lines = 10_000;
    await withScene(server.port, async (scene) => {
      const deaf: RawWebSocket[] = [];
      for (let i = 0; i < deafCount; i++) {
        deaf.push(
          scene.track(await RawWebSocket.connect(server.port, `deaf${i}`)),
        );
      }
      const blaster = scene.track(await rawJoin(server.port, "blaster"));
      before = server.rss();
      const body = "y".repeat(1990);
      // 10,000 lines of 2 KB: 20 MB to each reader. The blaster reads its
      // echo of each batch, so it never runs ahead of the readers.
      while (sent < lines) {
        const batch: string[] = [];
        for (let i = 0; i < 100; i++) {
          batch.push(
            JSON.stringify({ type: "message", text: `${sent++} ${body}` }),
          );
        }
        await blaster.sendTexts(batch);
        await nextMatching(
          () => blaster.next("the blaster's echo"),
          (m) => field(m, "text") === `${sent - 1} ${body}`,
          "the blaster's echo",
        );
        if (sent % 2000 === 0) await scene.say();
      }
      after = server.rss();
      for (const client of deaf) {
        const end = await readEnd(client, 15_000);
        assert.deepEqual(end, {
          kind: "close",
          code: 4008,
          reason: "slow consumer",
        });
      }
      await blaster.close();
    }).then((tally) => {
      const blasted = tally.others.filter((line) =>
        line.username === "blaster"
      );
      assert.equal(blasted.length, sent);
      blasted.forEach((line, i) => assert.ok(line.text.startsWith(`${i} `)));
    });
    // Without eviction each deaf reader would hold what the kernel did not
    // take, 15 MB or more: 180 MB for twelve. With it, each holds at most
    // 256 messages (0.5 MB) and 64 KiB of socket backlog.
    assert.ok(
      after - before < 100 * MB,
      `RSS ${mb(before)} → ${mb(after)} with ${deafCount} deaf readers`,
    );
  } finally {
    await server.close();
  }
});

Deno.test({
  name:
    "memory stays bounded while one client sends an endless fragmented message",
  // KNOWN LIMITATION, so this test is ignored, not loosened: it fails today
  // (about 200 MB held). Deno reassembles fragments with no size limit and
  // Deno.upgradeWebSocket has no option for one, so the server sees the
  // message only when it is complete and its 8 KiB limit comes too late.
  // Run it with HUBCHAT_KNOWN_LIMITS=1; README.md, "Deploying", says what to
  // do until Deno (or a hand-made WebSocket layer) can refuse it early.
  ignore: Deno.env.get("HUBCHAT_KNOWN_LIMITS") !== "1",
}, async () => {
  const server = await ChildServer.start(["--rate", "0"]);
  try {
    let before = 0;
    let held = 0;
    await withScene(server.port, async (scene) => {
      const attacker = scene.track(await rawJoin(server.port, "fragments"));
      before = server.rss();
      const piece = new Uint8Array(MB).fill(0x61);
      const fragments = 200;
      for (let i = 0; i < fragments; i++) {
        try {
          await attacker.connection.write(encodeFrame({
            opcode: i === 0 ? Opcode.text : Opcode.continuation,
            payload: piece,
            fin: false,
            mask: "zero",
          }));
        } catch {
          break; // Cut off: what a fixed server does.
        }
        if (i % 50 === 0) await scene.say();
      }
      await sleep(300);
      held = server.rss() - before;
      await attacker.close();
    });
    // 200 MB of fragments of one unfinished message. A server that enforced
    // its 8 KiB limit (or even Deno's own 64 MiB frame limit) per message
    // would hold at most that; 100 MB is far above the first and well below
    // the 200 MB of a server that keeps everything.
    assert.ok(
      held < 100 * MB,
      `the server holds ${mb(held)} for one unfinished fragmented message`,
    );
  } finally {
    await server.close();
  }
});

/**
 * Hostile input over real sockets: seeded fuzz frames from a grammar of
 * near-valid JSON and broken framing (testing/fuzz.ts), deeply nested JSON,
 * and HTML, script, control and bidi payloads. Each test is an attack in a
 * scene (testing/scene.ts): at the end the observer must have received
 * exactly the sender's lines, every attacker that joined must have left,
 * and `/healthz` must answer 200 with the baseline client count.
 *
 * The frame fuzzer is seeded: `FUZZ_SEED=0x1234abcd deno test -A
 * hostile_input_test.ts` replays a run, and a failure names its seed and
 * step.
 *
 * @module
 */

import assert from "node:assert/strict";
import type { ServerMessage } from "./protocol.ts";
import { ChatClient } from "./testing/chat_client.ts";
import {
  fuzzSeed,
  genStep,
  INPUT_ERROR_CODES,
  judge,
  Rng,
  type Step,
} from "./testing/fuzz.ts";
import { RawWebSocket } from "./testing/raw_websocket.ts";
import {
  assertEnd,
  field,
  health,
  nextMatching,
  nextReply,
  rawJoin,
  readEnd,
  withScene,
} from "./testing/scene.ts";
import { waitUntil } from "./testing/wait.ts";
import { encodeFrame, Opcode } from "./tools/ws_frame.ts";

Deno.test("fuzz: seeded frames from a grammar of near-valid JSON and broken framing", async () => {
  // Budget: 2,000 frames (a few seconds); replay with FUZZ_SEED.
  const seed = fuzzSeed();
  const budget = 2000;
  const rng = new Rng(seed);
  const delivered: { username: string; text: string }[] = [];
  const outcomes = new Map<string, number>();
  let step = 0;
  let what = "setup";
  try {
    const tally = await withScene({ ratePerSecond: 0 }, async (scene) => {
      const { port } = scene;
      let attacker: RawWebSocket | null = null;
      let name = "";
      let connections = 0;
      try {
        for (step = 0; step < budget; step++) {
          if (step % 50 === 0) await scene.say();
          if (attacker === null) {
            name = `fz${connections++}`;
            attacker = await rawJoin(port, name);
          }
          const current: Step = genStep(rng);
          what = current.what;
          await attacker.connection.write(current.bytes);
          const expect = current.expect;
          let ended = false;
          let outcome = "";
          const verdict = expect.kind === "verdict" ? expect.verdict : null;
          const socket: RawWebSocket = attacker;
          if (verdict !== null && verdict.kind !== "close") {
            const reply = await nextReply(socket, name, `reply to ${what}`);
            if (verdict.kind === "deliver") {
              assert.equal(reply.type, "message", JSON.stringify(reply));
              assert.equal(field(reply, "text"), verdict.text);
              delivered.push({ username: name, text: verdict.text });
              outcome = "delivered";
            } else {
              assert.equal(reply.type, "error", JSON.stringify(reply));
              assert.equal(field(reply, "code"), verdict.code);
              assert.ok(INPUT_ERROR_CODES.has(verdict.code));
              outcome = `error ${verdict.code}`;
            }
          } else if (verdict !== null) {
            const end = await readEnd(socket);
            assertEnd(end, new Set([verdict.code]), what);
            outcome = end.kind === "eof" ? "drop" : `close ${end.code}`;
            ended = true;
          } else if (expect.kind === "end") {
            const end = await readEnd(socket);
            assertEnd(end, expect.codes, what);
            outcome = end.kind === "eof" ? "drop" : `close ${end.code}`;
            ended = true;
          } else if (expect.kind === "deliver-or-end") {
            // RFC 6455 says a server must fail an unmasked client frame;
            // Deno accepts it. Either is safe: delivered once, or gone.
            let own: ServerMessage | null = null;
            try {
              own = await nextReply(socket, name, `reply to ${what}`);
            } catch (error) {
              if (!/connection ended/.test((error as Error).message)) {
                throw error;
              }
            }
            if (own === null) {
              ended = true;
              outcome = "unmasked: closed";
            } else {
              assert.equal(field(own, "text"), expect.text);
              delivered.push({ username: name, text: expect.text });
              outcome = "unmasked: delivered";
            }
          } else if (expect.kind === "drop") {
            ended = true;
            outcome = "dropped by us";
          } else {
            outcome = "nothing";
          }
          outcomes.set(outcome, (outcomes.get(outcome) ?? 0) + 1);
          if (ended) {
            await attacker.close();
            attacker = null;
          }
          if (step % 100 === 99) {
            assert.equal(
              scene.observer.socket.readyState,
              WebSocket.OPEN,
              "the observer stays connected",
            );
            const expected = 2 + (attacker === null ? 0 : 1);
            await waitUntil(
              async () => (await health(port)).clients === expected,
              `healthz to count ${expected} clients`,
            );
          }
        }
      } finally {
        await attacker?.close();
      }
    });
    // Every accepted line reached the observer once, in order, and nothing
    // else from an attacker did.
    assert.deepEqual(tally.others, delivered);
    // The budget covered every kind of outcome.
    for (
      const kind of [
        "delivered",
        "error invalid_json",
        "error invalid_message",
        "error unknown_type",
        "error empty_text",
        "error text_too_long",
        "close 1009",
        "close 1003",
        "drop",
      ]
    ) {
      assert.ok(
        outcomes.has(kind),
        `no "${kind}" in ${JSON.stringify([...outcomes])}`,
      );
    }
  } catch (error) {
    const hex = `0x${seed.toString(16)}`;
    throw new Error(
      `fuzz failed at step ${step} of ${budget} (${what}); replay with FUZZ_SEED=${hex}: ${
        (error as Error).message
      }`,
      { cause: error },
    );
  }
});

Deno.test("deeply nested JSON, up to a million levels, is refused, not a crash", async () => {
  // A 16 MiB frame limit lets the depth through the size check.
  const maxFrameBytes = 16 * 1024 * 1024;
  await withScene({ ratePerSecond: 0, maxFrameBytes }, async (scene) => {
    const attacker = scene.track(await rawJoin(scene.port, "deep"));
    for (const depth of [10_000, 100_000, 1_000_000]) {
      const arrays = "[".repeat(depth) + "]".repeat(depth);
      const objects = '{"a":'.repeat(depth) + "1" + "}".repeat(depth);
      // Objects a million deep take the server seconds to parse (6 MB):
      // arrays only at that depth.
      const deepest = depth < 1_000_000 ? objects : arrays;
      const frames = [
        arrays,
        deepest,
        "[".repeat(depth),
        `{"type":"message","text":${arrays}}`,
        `{"type":"message","text":"depth ${depth}","x":${deepest}}`,
      ];
      for (const frame of frames) {
        await attacker.connection.write(encodeFrame({
          opcode: Opcode.text,
          payload: frame,
          mask: "zero",
        }));
        const verdict = judge(frame, maxFrameBytes);
        const reply = await nextReply(attacker, "deep", `depth ${depth}`);
        if (verdict.kind === "deliver") {
          assert.equal(field(reply, "text"), verdict.text);
        } else {
          assert.equal(reply.type, "error");
          assert.equal(
            field(reply, "code"),
            (verdict as { code: string }).code,
          );
        }
      }
      await scene.say();
    }
    // At the default 8 KiB limit depth 10,000 is refused by size.
    await attacker.close();
  }).then((tally) => {
    assert.deepEqual(tally.others.map((line) => line.text), [
      "depth 10000",
      "depth 100000",
      "depth 1000000",
    ]);
  });
});

Deno.test("HTML, script, control and bidi payloads are delivered exactly, as JSON text", async () => {
  const payloads = [
    "<script>alert(1)</script>",
    '"><img src=x onerror=alert(1)>',
    "</script><script>alert(document.cookie)</script>",
    "<!-- ]]> <![CDATA[",
    "javascript:alert(1)",
    "{{constructor.constructor('alert(1)')()}} ${alert(1)}",
    "'; DROP TABLE users; --",
    "a\u0000b",
    "\u001b[2J\u001b[31mred\u001b[0m",
    "bell\u0007 del\u007f nel\u0085",
    "line1\nline2\r\nline3",
    "a\u2028b\u2029c",
    "\uffff\ufffe",
    "lone \ud800 high, lone \udfff low",
    "😀\u200d👩 e\u0301 ﬁ",
    "\u202eRTL override\u202c and \u2066isolate\u2069",
    "zero\u200bwidth\u200djoiner\ufeffbom",
    "مرحبا abc שלום",
    "%00%0a%0d\\u0000\\n",
    '{"type":"message","text":"nested"}',
  ];
  await withScene({ ratePerSecond: 0 }, async (scene) => {
    const frames: string[] = [];
    scene.observer.socket.addEventListener("message", (event) => {
      if (typeof event.data === "string") frames.push(event.data);
    });
    const html = scene.track(await ChatClient.join(scene.port, "html"));
    for (const payload of payloads) {
      html.say(payload);
      await scene.say();
    }
    for (const payload of payloads) {
      const echo = await nextMatching(
        () => html.next("html's own line"),
        (m) => m.type === "message" && field(m, "username") === "html",
        "html's own line",
      );
      assert.equal(field(echo, "text"), payload.trim());
    }
    await html.close();
    // Not escaped by the server: escaping is the page's job.
    const all = frames.join("\n");
    assert.ok(all.includes("<script>alert(1)</script>"), "raw <script>");
    assert.ok(all.includes("\u202eRTL override"), "raw RTL override");
  }).then((tally) => {
    assert.deepEqual(
      tally.others.map((line) => line.text),
      payloads.map((payload) => payload.trim()),
    );
  });
});

/**
 * Hostile clients around the handshake, over real sockets: usernames built
 * to deceive (invisible, bidi, control characters, percent-encoding tricks,
 * NFC twins) and 2,000 connects and drops. Each test is an attack in a
 * scene (testing/scene.ts): at the end the observer must have received
 * exactly the sender's lines, every attacker that joined must have left,
 * and `/healthz` must answer 200 with the baseline client count.
 *
 * @module
 */

import assert from "node:assert/strict";
import { ChatClient } from "./testing/chat_client.ts";
import { RawWebSocket, upgradeReplyAt } from "./testing/raw_websocket.ts";
import { metric, readEnd, withScene } from "./testing/scene.ts";
import { waitUntil, within } from "./testing/wait.ts";

Deno.test("hostile usernames get 400; an NFC twin of a name online gets 409", async () => {
  const invalid = [
    "a\u200bb", // zero-width space
    "\u200dann", // zero-width joiner
    "a\ufeffb", // BOM inside (at the ends it is trimmed, as whitespace)
    "\u202eevil", // right-to-left override
    "abc\u202edef",
    "\u2066x\u2069", // bidi isolates
    "a\u200fb", // right-to-left mark
    "a\u0000b",
    "a\nb",
    "a\tb",
    "\u0007bell",
    "a\u007fb",
    "a\u0085b",
    "\u0301", // a lone combining mark is not a letter
    "a".repeat(10 * 1024),
    "é".repeat(33),
    "<script>",
    "../etc/passwd",
    "a/b",
    "ann\u{E0041}", // a tag character
  ];
  // Percent-encoding tricks, sent as is in the request line.
  const rawQueries = [
    "a%00b",
    "%00",
    "a%0ab",
    "a%0d%0aSet-Cookie:%20x=1",
    "%ff",
    "a%C0%80b", // overlong NUL
    "%E2%80%AE", // U+202E
    "%E2%80%8B", // U+200B
    "a%2",
    "a%252e",
    "%F0%9F%98",
  ];
  await withScene({}, async (scene) => {
    const { port } = scene;
    for (const name of invalid) {
      const reply = await upgradeReplyAt(
        port,
        `/ws?username=${encodeURIComponent(name)}`,
      );
      assert.equal(reply.status, 400, `${JSON.stringify(name)}: ${reply.body}`);
      assert.equal(JSON.parse(reply.body).error, "invalid_username");
    }
    await scene.say();
    for (const query of rawQueries) {
      const reply = await upgradeReplyAt(port, `/ws?username=${query}`);
      assert.equal(reply.status, 400, `${query}: ${reply.body}`);
      assert.equal(JSON.parse(reply.body).error, "invalid_username");
    }
    await scene.say();
    // NFC and NFD spell one name: the second is a duplicate.
    const jose = scene.track(await ChatClient.join(port, "Jos\u00e9"));
    for (const twin of ["Jose\u0301", " Jos\u00e9 ", "\ufeffJos\u00e9"]) {
      const reply = await upgradeReplyAt(
        port,
        `/ws?username=${encodeURIComponent(twin)}`,
      );
      assert.equal(reply.status, 409, `${JSON.stringify(twin)}: ${reply.body}`);
      assert.equal(JSON.parse(reply.body).error, "username_taken");
    }
    await jose.close();
  }).then((tally) => {
    // Only José ever joined.
    assert.deepEqual([...tally.joins.keys()], ["Jos\u00e9"]);
  });
});

Deno.test("2,000 connects and disconnects: joins pair with leaves, nothing left open", async () => {
  const total = 2000;
  const concurrency = 50;
  await withScene(
    { ratePerSecond: 0, maxConnectionsPerIp: 0 },
    async (scene) => {
      let next = 0;
      let cleanCloses = 0;
      const worker = async (): Promise<void> => {
        while (next < total) {
          const i = next++;
          const raw = await RawWebSocket.connect(scene.port, `st${i}`);
          try {
            if (i % 2 === 0) {
              // Clean: a close frame, and the echo awaited.
              await raw.sendClose(1000, "bye");
              const end = await readEnd(raw);
              if (end.kind === "close") cleanCloses++;
            }
            // Odd ones vanish without a close frame.
          } finally {
            await raw.close();
          }
          if (i % 400 === 0) await scene.say();
        }
      };
      await within(
        Promise.all(Array.from({ length: concurrency }, worker)),
        "the connection storm",
        60_000,
      );
      assert.ok(cleanCloses > total / 4, `${cleanCloses} clean closes echoed`);
      await waitUntil(
        async () => (await metric(scene.port, "hubchat_connections")) === 2,
        "the server to hold only the observer's and sender's sockets",
        15_000,
      );
    },
  ).then((tally) => {
    // Every name that joined left once (checked by settle); most joined.
    assert.ok(tally.joins.size > total / 2, `${tally.joins.size} joined`);
  });
});

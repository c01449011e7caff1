/**
 * Who may connect and what a connection may do, over real sockets: origin
 * checks, token auth, TLS, connection caps, the per-client rate limit,
 * /metrics and the logs.
 */

import assert from "node:assert/strict";
import { importSecret, signToken, SUBPROTOCOL } from "./auth.ts";
import { createLogger } from "./log.ts";
import { startServer } from "./server.ts";
import type { ServerMessage } from "./protocol.ts";
import { ChatClient } from "./testing/chat_client.ts";
import { RawWebSocket, upgradeReplyAt } from "./testing/raw_websocket.ts";
import { withServer } from "./testing/server.ts";
import { waitUntil } from "./testing/wait.ts";
import { sleep } from "./tools/wait.ts";

const SECRET = "a-test-secret-that-is-at-least-32-bytes-long";
const encoder = new TextEncoder();

function wsUrl(port: number, query: string): string {
  return `ws://127.0.0.1:${port}/ws?${query}`;
}

// ---------------------------------------------------------------- origin

Deno.test("origin: a bad allowed origin stops the start, saying which", async () => {
  await assert.rejects(
    () =>
      startServer({ port: 0, allowedOrigins: ["https://ok.example", "ftp:x"] }),
    /allowed origin "ftp:x" is not an origin/,
  );
});

Deno.test("origin: same origin, allowlisted and absent pass; others get 403", async () => {
  await withServer(
    { allowedOrigins: ["https://chat.example.com"] },
    async (server) => {
      const port = server.port;
      const same = await upgradeReplyAt(port, "/ws?username=a", [
        `Origin: http://127.0.0.1:${port}`,
      ]);
      assert.equal(same.status, 101);
      const listed = await upgradeReplyAt(port, "/ws?username=b", [
        "Origin: https://chat.example.com",
      ]);
      assert.equal(listed.status, 101);
      const none = await upgradeReplyAt(port, "/ws?username=c");
      assert.equal(none.status, 101, "non-browser clients send no Origin");
      // The scheme is not compared: a TLS-terminating proxy hides it.
      const proxied = await upgradeReplyAt(port, "/ws?username=e", [
        `Origin: https://127.0.0.1:${port}`,
      ]);
      assert.equal(proxied.status, 101);
      for (
        const origin of [
          "https://evil.example",
          `http://127.0.0.1:${port + 1}`,
          `http://localhost:${port}`,
          "null",
        ]
      ) {
        const refused = await upgradeReplyAt(port, "/ws?username=d", [
          `Origin: ${origin}`,
        ]);
        assert.equal(refused.status, 403, origin);
        assert.match(refused.body, /origin/i);
      }
      await waitUntil(() => server.rooms.online === 0, "raw peers to leave");
    },
  );
});

Deno.test("origin: --require-origin refuses upgrades without one", async () => {
  await withServer({ requireOrigin: true }, async (server) => {
    const none = await upgradeReplyAt(server.port, "/ws?username=a");
    assert.equal(none.status, 403);
    assert.match(none.body, /origin/i);
    const same = await upgradeReplyAt(server.port, "/ws?username=a", [
      `Origin: http://127.0.0.1:${server.port}`,
    ]);
    assert.equal(same.status, 101);
    await waitUntil(() => server.rooms.online === 0, "the raw peer to leave");
  });
});

// ------------------------------------------------------------------ auth

Deno.test("auth: the token's sub is the username; ?username cannot override it", async () => {
  const key = await importSecret(SECRET);
  const now = Math.floor(Date.now() / 1000);
  const token = await signToken({ sub: "alice", exp: now + 60 }, key);
  await withServer({ authSecret: SECRET }, async (server, track) => {
    const viaQuery = track(
      await ChatClient.open(
        wsUrl(server.port, `username=mallory&token=${token}`),
      ),
    );
    const welcome = await viaQuery.next("welcome");
    assert.equal(welcome.type, "welcome");
    assert.equal((welcome as { username: string }).username, "alice");
    await viaQuery.close();
    await waitUntil(() => server.rooms.online === 0, "alice to leave");

    // The subprotocol way: the server answers with "hubchat" only.
    const bobToken = await signToken({ sub: "bob", exp: now + 60 }, key);
    const viaProtocol = track(
      await ChatClient.open(wsUrl(server.port, ""), "bob", [
        SUBPROTOCOL,
        `auth.${bobToken}`,
      ]),
    );
    const bobWelcome = await viaProtocol.next("welcome");
    assert.equal((bobWelcome as { username: string }).username, "bob");
    assert.equal(viaProtocol.socket.protocol, SUBPROTOCOL);
  });
});

Deno.test("auth: missing, forged, expired and alg-none tokens get 401", async () => {
  const key = await importSecret(SECRET);
  const otherKey = await importSecret("another-secret-also-32-bytes-long!!");
  const now = Math.floor(Date.now() / 1000);
  const forged = await signToken({ sub: "alice", exp: now + 60 }, otherKey);
  const expired = await signToken({ sub: "alice", exp: now - 3600 }, key);
  const noneHeader = btoa(JSON.stringify({ alg: "none", typ: "JWT" }))
    .replace(/=+$/, "");
  const payload = btoa(JSON.stringify({ sub: "alice", exp: now + 60 }))
    .replace(/=+$/, "");
  const unsigned = `${noneHeader}.${payload}.`;
  const badName = await signToken({ sub: "a<b", exp: now + 60 }, key);
  await withServer({ authSecret: SECRET }, async (server) => {
    const cases: [string, string][] = [
      ["no token", "/ws?username=alice"],
      ["forged", `/ws?token=${forged}`],
      ["expired", `/ws?token=${expired}`],
      ["alg none", `/ws?token=${unsigned}`],
      ["garbage", "/ws?token=abc.def.ghi"],
      ["bad subject", `/ws?token=${badName}`],
    ];
    for (const [label, path] of cases) {
      const reply = await upgradeReplyAt(server.port, path);
      assert.equal(reply.status, 401, label);
      const body = JSON.parse(reply.body);
      assert.equal(body.error, "unauthorized", label);
      assert.ok(body.message.length > 0, label);
    }
    assert.equal(server.rooms.online, 0);
  });
});

// ------------------------------------------------------------------- TLS

Deno.test("TLS: --cert/--key serve https and wss", async () => {
  const cert = await Deno.readTextFile(
    new URL("./testdata/tls_cert.pem", import.meta.url),
  );
  const key = await Deno.readTextFile(
    new URL("./testdata/tls_key.pem", import.meta.url),
  );
  const ca = await Deno.readTextFile(
    new URL("./testdata/ca_cert.pem", import.meta.url),
  );
  const server = await startServer({ port: 0, cert, key });
  const client = Deno.createHttpClient({ caCerts: [ca] });
  try {
    assert.match(server.url, /^https:\/\//);
    const health = await fetch(
      `https://localhost:${server.port}/healthz`,
      { client },
    );
    assert.equal(health.status, 200);
    assert.deepEqual(await health.json(), { status: "ok", clients: 0 });

    // A WebSocket upgrade over TLS, by hand.
    const conn = await Deno.connectTls({
      hostname: "localhost",
      port: server.port,
      caCerts: [ca],
    });
    try {
      await conn.write(encoder.encode(
        [
          "GET /ws?username=tls HTTP/1.1",
          `Host: localhost:${server.port}`,
          "Upgrade: websocket",
          "Connection: Upgrade",
          "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
          "Sec-WebSocket-Version: 13",
          "",
          "",
        ].join("\r\n"),
      ));
      const buffer = new Uint8Array(4096);
      const read = await conn.read(buffer);
      const head = new TextDecoder().decode(buffer.subarray(0, read ?? 0));
      assert.match(head, /^HTTP\/1\.1 101 /);
    } finally {
      conn.close();
    }
  } finally {
    client.close();
    await server.shutdown();
  }
});

// ------------------------------------------------------ connection caps

Deno.test("caps: over the per-address cap 429; a slot comes back on close", async () => {
  await withServer({ maxConnectionsPerIp: 2 }, async (server, track) => {
    const a = track(await ChatClient.join(server.port, "a"));
    track(await ChatClient.join(server.port, "b"));
    const third = await upgradeReplyAt(server.port, "/ws?username=c");
    assert.equal(third.status, 429);
    assert.match(third.body, /too many connections from your address/);
    await a.close();
    await waitUntil(
      () => server.metrics.render().includes("hubchat_connections 1\n"),
      "a's slot to come back",
    );
    const c = track(await ChatClient.join(server.port, "c"));
    assert.equal(c.username, "c");
  });
});

Deno.test("caps: over the total 503", async () => {
  await withServer(
    { maxConnections: 2, maxConnectionsPerIp: 0 },
    async (server, track) => {
      track(await ChatClient.join(server.port, "a"));
      track(await ChatClient.join(server.port, "b"));
      const full = await upgradeReplyAt(server.port, "/ws?username=c");
      assert.equal(full.status, 503);
      assert.match(full.body, /server is full/);
    },
  );
});

Deno.test("caps: X-Forwarded-For names the client only behind --trust-proxy", async () => {
  for (const trustProxy of [true, false]) {
    await withServer(
      { maxConnectionsPerIp: 1, trustProxy },
      async (server, track) => {
        track(await ChatClient.join(server.port, "a"));
        const reply = await upgradeReplyAt(server.port, "/ws?username=b", [
          "X-Forwarded-For: 203.0.113.7, 10.0.0.1",
        ]);
        assert.equal(reply.status, trustProxy ? 101 : 429);
        const direct = await upgradeReplyAt(server.port, "/ws?username=c");
        assert.equal(direct.status, 429, "127.0.0.1 holds its one slot");
        await waitUntil(() => server.rooms.online === 1, "b to leave");
      },
    );
  }
});

// ------------------------------------------------------------ rate limit

/** Reads a raw client's events until the server's close frame. */
async function readUntilClose(
  socket: RawWebSocket,
): Promise<{ messages: ServerMessage[]; code: number }> {
  const messages: ServerMessage[] = [];
  for (;;) {
    const event = await socket.readEvent({ answerPings: true });
    assert.ok(event !== null, "the connection ended without a close frame");
    if (event.kind === "close") return { messages, code: event.code };
    messages.push(...event.messages);
  }
}

Deno.test("rate limit: over the bucket → rate_limited, dropped; flooding on → 1008", async () => {
  await withServer({ ratePerSecond: 1, burst: 5 }, async (server, track) => {
    const observer = track(await ChatClient.join(server.port, "observer"));
    const flooder = track(await RawWebSocket.connect(server.port, "flooder"));
    await observer.expectPresence("join", "flooder");
    // 5 fit the burst; the next 10 are refusals, the 10th of which closes.
    // No more: frames still unread when the server closes would make its
    // kernel reset the connection, and the close frame could be lost.
    const texts = Array.from({ length: 15 }, (_, i) => `m${i}`);
    await flooder.sendTexts(
      texts.map((text) => JSON.stringify({ type: "message", text })),
    );
    const { messages, code } = await readUntilClose(flooder);
    assert.equal(code, 1008);
    // The five accepted lines are stored, then sent; the flooder may be
    // gone by then, but it was warned exactly once before the close.
    const errors = messages.filter((message) => message.type === "error");
    assert.deepEqual(
      errors.map((message) => (message as { code: string }).code),
      ["rate_limited"],
      "one warning, then silent drops",
    );
    // The observer saw exactly the accepted five, then the flooder's leave.
    for (const text of texts.slice(0, 5)) {
      await observer.expectMessage("flooder", text);
    }
    await observer.expectPresence("leave", "flooder");
    const metrics = server.metrics.render();
    assert.match(metrics, /hubchat_evictions_total\{cause="rate_limit"\} 1\n/);
    assert.match(metrics, /hubchat_errors_total\{code="rate_limited"\} 10\n/);
  });
});

Deno.test("rate limit: an idle client's bucket refills", async () => {
  await withServer(
    { ratePerSecond: 50, burst: 2 },
    async (server, track) => {
      const ann = track(await ChatClient.join(server.port, "ann"));
      for (let round = 0; round < 3; round++) {
        ann.say(`a${round}`);
        ann.say(`b${round}`);
        await ann.expectMessage("ann", `a${round}`);
        await ann.expectMessage("ann", `b${round}`);
        // 2 tokens back after 40 ms at 50/s; wait a comfortable 100 ms.
        await sleep(100);
      }
      assert.equal(ann.pending, 0, "no error was sent");
    },
  );
});

// --------------------------------------------------------------- metrics

Deno.test("/metrics counts connections, messages, errors and fan-out", async () => {
  await withServer({}, async (server, track) => {
    const ann = track(await ChatClient.join(server.port, "ann"));
    const bob = track(await ChatClient.join(server.port, "bob"));
    await ann.expectPresence("join", "bob");
    ann.say("hello");
    ann.sendRaw("not json");
    await bob.expectMessage("ann", "hello");
    await ann.expectMessage("ann", "hello");
    const error = await ann.next("the error");
    assert.equal(error.type, "error");
    const response = await fetch(`${server.url}metrics`);
    assert.equal(response.status, 200);
    assert.equal(
      response.headers.get("content-type"),
      "text/plain; version=0.0.4; charset=utf-8",
    );
    const text = await response.text();
    function sample(line: RegExp): number {
      const match = text.match(line);
      assert.ok(match, `no ${line} in\n${text}`);
      return Number(match[1]);
    }
    assert.equal(sample(/^hubchat_connections (\d+)$/m), 2);
    assert.equal(sample(/^hubchat_connections_total (\d+)$/m), 2);
    assert.equal(sample(/^hubchat_messages_received_total (\d+)$/m), 2);
    // welcome(1) + join ann(1) + welcome(1) + join bob(2) + hello(2) + error(0:
    // direct replies are not broadcasts)
    assert.equal(sample(/^hubchat_messages_delivered_total (\d+)$/m), 5);
    assert.ok(sample(/^hubchat_delivered_bytes_total (\d+)$/m) > 100);
    assert.equal(
      sample(/^hubchat_errors_total\{code="invalid_json"\} (\d+)$/m),
      1,
    );
    assert.equal(
      sample(/^hubchat_evictions_total\{cause="slow_consumer"\} (\d+)$/m),
      0,
    );
    assert.equal(sample(/^hubchat_fanout_seconds_count (\d+)$/m), 3);
    assert.equal(sample(/^hubchat_outbox_depth_count (\d+)$/m), 2);
    assert.equal(
      sample(/^hubchat_outbox_depth_bucket\{le="\+Inf"\} (\d+)$/m),
      2,
    );
    // Memory is read at scrape time from the process itself: this one.
    const rss = sample(/^process_resident_memory_bytes (\d+)$/m);
    const heapUsed = sample(/^hubchat_heap_used_bytes (\d+)$/m);
    const now = Deno.memoryUsage();
    assert.ok(
      rss > now.rss / 2 && rss < now.rss * 2,
      `RSS ${rss} against ${now.rss} read here`,
    );
    assert.ok(heapUsed > 0 && heapUsed < rss, `heap used ${heapUsed}`);
    assert.ok(sample(/^hubchat_external_memory_bytes (\d+)$/m) > 0);
  });
});

// ------------------------------------------------------------------ logs

Deno.test("logs: one line per connect and disconnect, never the message text", async () => {
  const lines: string[] = [];
  const logger = createLogger({
    format: "json",
    write: (line) => lines.push(line),
  });
  await withServer({ logger }, async (server, track) => {
    const ann = track(await ChatClient.join(server.port, "ann"));
    ann.say("my secret plans");
    await ann.expectMessage("ann", "my secret plans");
    await ann.close();
    await waitUntil(() => lines.length >= 2, "the disconnect line");
  });
  const events = lines.map((line) => JSON.parse(line));
  assert.deepEqual(events.map((event) => event.event), [
    "connect",
    "disconnect",
  ]);
  assert.equal(events[0].user, "ann");
  assert.equal(events[0].ip, "127.0.0.1");
  assert.equal(events[1].user, "ann");
  assert.equal(events[1].by, "peer");
  assert.equal(typeof events[1].code, "number");
  assert.ok(lines.every((line) => !line.includes("secret")));
});

Deno.test("logs: refused upgrades and evictions say why", async () => {
  const lines: string[] = [];
  const logger = createLogger({ write: (line) => lines.push(line) });
  await withServer(
    { logger, ratePerSecond: 1, burst: 1 },
    async (server, track) => {
      const refused = await upgradeReplyAt(server.port, "/ws?username=a<b");
      assert.equal(refused.status, 400);
      const flooder = track(await RawWebSocket.connect(server.port, "flooder"));
      await flooder.sendTexts(
        Array.from(
          { length: 11 }, // 1 in the burst, 10 refused
          (_, i) => JSON.stringify({ type: "message", text: `x${i}` }),
        ),
      );
      assert.equal((await readUntilClose(flooder)).code, 1008);
      await waitUntil(
        () => lines.some((line) => / evict /.test(line)),
        "the eviction line",
      );
    },
  );
  assert.ok(
    lines.some((line) =>
      / warn reject .*status=400 reason=invalid_username/.test(line)
    ),
    lines.join("\n"),
  );
  assert.ok(
    lines.some((line) =>
      / warn evict user=flooder .*cause=rate_limit/.test(line)
    ),
    lines.join("\n"),
  );
});

/**
 * Integration tests: a real server on 127.0.0.1 (port 0), real WebSocket
 * and raw TCP clients. Every wait is bounded; nothing asserts a duration.
 *
 * @module
 */

import assert from "node:assert/strict";
import { createLogger } from "./log.ts";
import type { HistoryFile } from "./store/history_file.ts";
import type { ErrorCode, ServerMessage } from "./protocol.ts";
import { ChatClient, GUEST_NAME, ISO_UTC_MS } from "./testing/chat_client.ts";
import {
  RawConnection,
  type RawReply,
  rawUpgradeReply,
  RawWebSocket,
  upgradeRequest,
} from "./testing/raw_websocket.ts";
import { type Closer, withServer } from "./testing/server.ts";
import { withTempDir } from "./testing/temp_dir.ts";
import { waitUntil, within } from "./testing/wait.ts";
import { Opcode } from "./tools/ws_frame.ts";

const encoder = new TextEncoder();

/** Checks a timestamp is ISO 8601 UTC with ms and names a real instant. */
function assertTimestamp(value: unknown, notBefore?: number): void {
  assert.equal(typeof value, "string");
  const text = value as string;
  assert.match(text, ISO_UTC_MS);
  const time = Date.parse(text);
  assert.ok(!Number.isNaN(time), `timestamp ${text} does not parse`);
  assert.equal(new Date(time).toISOString(), text);
  if (notBefore !== undefined) {
    assert.ok(time >= notBefore, `timestamp ${text} is before the test ran`);
    assert.ok(time <= Date.now(), `timestamp ${text} is in the future`);
  }
}

/** Sends `text` from `sender` and checks everyone sees it next. */
async function sayAndExpect(
  sender: ChatClient,
  text: string,
  everyone: ChatClient[],
): Promise<void> {
  sender.say(text);
  for (const client of everyone) {
    await client.expectMessage(sender.username, text);
  }
}

/** Reads the healthz count. */
async function healthCount(port: number): Promise<number> {
  const response = await fetch(`http://127.0.0.1:${port}/healthz`);
  const body = await response.json();
  assert.equal(response.status, 200);
  assert.equal(body.status, "ok");
  return body.clients;
}

/** A raw HTTP/1.1 request; the connection is closed afterwards. */
async function rawRequest(port: number, request: string): Promise<RawReply> {
  const connection = await RawConnection.connect(port);
  try {
    await connection.write(encoder.encode(request));
    return await connection.readResponse();
  } finally {
    await connection.close();
  }
}

// ---------------------------------------------------------------- HTTP

Deno.test("GET / serves the home page as UTF-8 HTML; HEAD sends no body", async () => {
  await withServer({}, async (server) => {
    const page = await Deno.readFile(new URL("./home.html", import.meta.url));
    const response = await fetch(server.url);
    assert.equal(response.status, 200);
    assert.equal(
      response.headers.get("content-type"),
      "text/html; charset=utf-8",
    );
    const body = new Uint8Array(await response.arrayBuffer());
    assert.deepEqual(body, page);

    const head = await fetch(server.url, { method: "HEAD" });
    assert.equal(head.status, 200);
    assert.equal(head.headers.get("content-type"), "text/html; charset=utf-8");
    assert.equal(await head.text(), "");
  });
});

Deno.test("GET /healthz reports ok and the number of joined clients", async () => {
  await withServer({}, async (server, track) => {
    const empty = await fetch(`${server.url}healthz`);
    assert.equal(empty.status, 200);
    assert.match(empty.headers.get("content-type") ?? "", /^application\/json/);
    assert.deepEqual(await empty.json(), { status: "ok", clients: 0 });

    const ann = track(await ChatClient.join(server.port, "ann"));
    const bob = track(await ChatClient.join(server.port, "bob"));
    await ann.expectPresence("join", "bob", 2);
    assert.equal(await healthCount(server.port), 2);

    await bob.close();
    await ann.expectPresence("leave", "bob", 1);
    assert.equal(await healthCount(server.port), 1);
  });
});

Deno.test("unknown paths get 404, wrong methods 405 with Allow", async () => {
  await withServer({}, async (server) => {
    const missing = await fetch(`${server.url}nope`);
    assert.equal(missing.status, 404);
    assert.match(await missing.text(), /nope/);

    const cases: [string, string, string][] = [
      ["POST", "", "GET, HEAD"],
      ["PUT", "", "GET, HEAD"],
      ["POST", "healthz", "GET, HEAD"],
      ["POST", "ws", "GET"],
      ["DELETE", "ws", "GET"],
    ];
    for (const [method, path, allow] of cases) {
      const response = await fetch(`${server.url}${path}`, { method });
      assert.equal(response.status, 405, `${method} /${path}`);
      assert.equal(response.headers.get("allow"), allow, `${method} /${path}`);
      assert.notEqual(await response.text(), "");
    }
  });
});

Deno.test("GET /ws without an upgrade gets 426 and an explanation", async () => {
  await withServer({}, async (server) => {
    const response = await fetch(`${server.url}ws?username=ann`);
    assert.equal(response.status, 426);
    assert.equal(response.headers.get("upgrade"), "websocket");
    assert.match(
      response.headers.get("content-type") ?? "",
      /^text\/plain; charset=utf-8/,
    );
    assert.match(await response.text(), /WebSocket/);
    assert.equal(await healthCount(server.port), 0);
  });
});

Deno.test("a malformed upgrade request gets 400, not a 500", async () => {
  await withServer({}, async (server) => {
    const malformed = [
      // No Sec-WebSocket-Key.
      "Upgrade: websocket\r\nConnection: Upgrade\r\n" +
      "Sec-WebSocket-Version: 13\r\n",
      // No "Connection: Upgrade".
      "Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n" +
      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n",
    ];
    for (const headers of malformed) {
      const reply = await rawRequest(
        server.port,
        `GET /ws?username=zed HTTP/1.1\r\nHost: 127.0.0.1\r\n${headers}\r\n`,
      );
      assert.equal(
        reply.status,
        400,
        `${JSON.stringify(headers)}: ${reply.body}`,
      );
      assert.ok(!(server.rooms.get("lobby")?.isTaken("zed") ?? false));
    }
  });
});

// ----------------------------------------------------------- usernames

Deno.test("invalid usernames get 400 with a JSON body and never join", async () => {
  await withServer({}, async (server, track) => {
    const watcher = track(await ChatClient.join(server.port, "watcher"));
    const invalid = [
      "a<b",
      "x".repeat(33),
      "é".repeat(33),
      "\u{1D49C}".repeat(33), // 33 letters, 66 UTF-16 units
      "a\u200db", // zero-width joiner
      "\u202eevil", // right-to-left override
      "tab\tname",
      "new\nline",
      "emoji😀",
      "semi;colon",
    ];
    for (const name of invalid) {
      const reply = await rawUpgradeReply(server.port, name);
      assert.equal(reply.status, 400, JSON.stringify(name));
      assert.match(
        reply.headers.get("content-type") ?? "",
        /application\/json/,
      );
      const body = JSON.parse(reply.body);
      assert.equal(body.error, "invalid_username", JSON.stringify(name));
      assert.equal(typeof body.message, "string");
      assert.ok(body.message.length > 0);
    }
    // Nobody joined: the watcher's next message is its own marker.
    await sayAndExpect(watcher, "marker", [watcher]);
    assert.equal(await healthCount(server.port), 1);
  });
});

Deno.test("names of 32 characters are accepted, counted in code points", async () => {
  await withServer({}, async (server, track) => {
    for (
      const name of ["x".repeat(32), "\u{1D49C}".repeat(32), "é".repeat(32)]
    ) {
      const client = track(await ChatClient.join(server.port, name));
      assert.equal(client.username, name);
    }
  });
});

Deno.test("missing, empty or blank usernames get a guest-XXXX name", async () => {
  await withServer({}, async (server, track) => {
    const names = new Set<string>();
    for (const requested of [undefined, "", "   "]) {
      const guest = track(await ChatClient.join(server.port, requested));
      assert.match(guest.username, GUEST_NAME, JSON.stringify(requested));
      names.add(guest.username);
    }
    assert.equal(names.size, 3, "guest names must be distinct");
  });
});

Deno.test("usernames are trimmed and NFC-normalized", async () => {
  await withServer({}, async (server, track) => {
    const alice = track(await ChatClient.join(server.port, "  alice \t"));
    assert.equal(alice.username, "alice");
    const emile = track(await ChatClient.join(server.port, "e\u0301mile"));
    assert.equal(emile.username, "\u00e9mile");
    const spaced = track(await ChatClient.join(server.port, " mary jane "));
    assert.equal(spaced.username, "mary jane");
  });
});

Deno.test("a name already online gets 409; it is free again after a leave", async () => {
  await withServer({}, async (server, track) => {
    const alice = track(await ChatClient.join(server.port, "alice"));
    const emile = track(await ChatClient.join(server.port, "\u00e9mile"));
    await alice.expectPresence("join", "\u00e9mile", 2);

    for (const name of ["alice", "  alice ", "e\u0301mile"]) {
      const reply = await rawUpgradeReply(server.port, name);
      assert.equal(reply.status, 409, JSON.stringify(name));
      assert.match(
        reply.headers.get("content-type") ?? "",
        /application\/json/,
      );
      const body = JSON.parse(reply.body);
      assert.equal(body.error, "username_taken");
      assert.equal(typeof body.message, "string");
    }
    // The holders saw nothing of it.
    await sayAndExpect(alice, "still here", [alice, emile]);

    await alice.close();
    await emile.expectPresence("leave", "alice", 1);
    const again = track(await ChatClient.join(server.port, "alice"));
    await emile.expectPresence("join", "alice", 2);
    await sayAndExpect(again, "back", [again, emile]);
  });
});

Deno.test("of simultaneous upgrades for one name exactly one wins", async () => {
  await withServer({}, async (server, track) => {
    const watcher = track(await ChatClient.join(server.port, "watcher"));
    const attempts = await Promise.allSettled(
      Array.from({ length: 8 }, () => RawWebSocket.connect(server.port, "dup")),
    );
    const winners = attempts.filter((attempt) =>
      attempt.status === "fulfilled"
    );
    for (const winner of winners) track(winner.value);
    assert.equal(winners.length, 1);
    for (const attempt of attempts) {
      if (attempt.status === "rejected") {
        assert.match(String(attempt.reason), /409/);
      }
    }
    await watcher.expectPresence("join", "dup", 2);
    await sayAndExpect(watcher, "marker", [watcher]);
  });
});

// ------------------------------------------------------- join and leave

Deno.test("welcome comes first and lists everyone; join goes to all", async () => {
  await withServer({}, async (server, track) => {
    const started = Date.now();
    const ann = track(
      await ChatClient.open(`ws://127.0.0.1:${server.port}/ws?username=ann`),
    );
    const welcome = await ann.next("welcome");
    assert.deepEqual(Object.keys(welcome).sort(), [
      "gap",
      "history",
      "large",
      "online",
      "room",
      "session",
      "timestamp",
      "type",
      "username",
      "users",
    ]);
    assert.equal(welcome.type, "welcome");
    assert.equal((welcome as { username: string }).username, "ann");
    assert.deepEqual((welcome as { users: string[] }).users, ["ann"]);
    assert.equal((welcome as { online: number }).online, 1);
    assert.equal((welcome as { large: boolean }).large, false);
    assertTimestamp(welcome.timestamp, started);
    const join = await ann.next("own join");
    assert.deepEqual(Object.keys(join).sort(), [
      "online",
      "room",
      "timestamp",
      "type",
      "username",
    ]);
    assert.deepEqual(
      { ...join, timestamp: "" },
      {
        type: "join",
        room: "lobby",
        username: "ann",
        online: 1,
        timestamp: "",
      },
    );
    assertTimestamp(join.timestamp, started);
    ann.username = "ann";

    const bob = track(
      await ChatClient.open(`ws://127.0.0.1:${server.port}/ws?username=bob`),
    );
    const bobWelcome = await bob.next("welcome");
    assert.equal(bobWelcome.type, "welcome");
    assert.deepEqual((bobWelcome as { users: string[] }).users, ["ann", "bob"]);
    await bob.expectPresence("join", "bob", 2);
    await ann.expectPresence("join", "bob", 2);
    bob.username = "bob";

    const cy = track(await ChatClient.join(server.port, "cy"));
    await ann.expectPresence("join", "cy", 3);
    await bob.expectPresence("join", "cy", 3);
    await bob.close();
    await ann.expectPresence("leave", "bob", 2);
    await cy.expectPresence("leave", "bob", 2);
    const dee = await ChatClient.open(
      `ws://127.0.0.1:${server.port}/ws?username=dee`,
    );
    track(dee);
    const deeWelcome = await dee.next("welcome");
    assert.deepEqual((deeWelcome as { users: string[] }).users, [
      "ann",
      "cy",
      "dee",
    ]);
  });
});

Deno.test("a clean close is announced as exactly one leave", async () => {
  await withServer({}, async (server, track) => {
    const ann = track(await ChatClient.join(server.port, "ann"));
    const bob = track(await ChatClient.join(server.port, "bob"));
    const cy = track(await ChatClient.join(server.port, "cy"));
    await ann.expectPresence("join", "bob", 2);
    await ann.expectPresence("join", "cy", 3);
    await bob.expectPresence("join", "cy", 3);

    const started = Date.now();
    const end = await cy.close(1000, "bye");
    assert.equal(end.code, 1000);
    for (const client of [ann, bob]) {
      const leave = await client.next("cy's leave");
      assert.deepEqual(Object.keys(leave).sort(), [
        "online",
        "room",
        "timestamp",
        "type",
        "username",
      ]);
      assert.equal(leave.type, "leave");
      assert.equal((leave as { username: string }).username, "cy");
      assert.equal((leave as { online: number }).online, 2);
      assertTimestamp(leave.timestamp, started);
    }
    await sayAndExpect(ann, "marker", [ann, bob]);
  });
});

Deno.test("a leave never overtakes the lines its member sent before leaving", async () => {
  await withServer({ ratePerSecond: 0 }, async (server, track) => {
    const ann = track(await ChatClient.join(server.port, "ann"));
    for (let round = 0; round < 3; round++) {
      const name = `bob${round}`;
      const bob = await ChatClient.join(server.port, name);
      await ann.expectPresence("join", name, 2);
      // Lines, then the close, with no wait between: the lines are still
      // being stored when the room hears of the departure.
      for (let i = 0; i < 20; i++) bob.say(`line ${i}`);
      await bob.close(1000, "bye");
      for (let i = 0; i < 20; i++) await ann.expectMessage(name, `line ${i}`);
      await ann.expectPresence("leave", name, 1);
    }
    assert.equal(ann.pending, 0);
  });
});

Deno.test("an abrupt TCP drop is announced as exactly one leave", async () => {
  await withServer({}, async (server, track) => {
    const ann = track(await ChatClient.join(server.port, "ann"));
    const raw = track(await RawWebSocket.connect(server.port, "dropper"));
    await ann.expectPresence("join", "dropper", 2);
    await raw.close(); // no close frame
    await ann.expectPresence("leave", "dropper", 1);
    await sayAndExpect(ann, "marker", [ann]);
    assert.equal(await healthCount(server.port), 1);
    await waitUntil(
      () => !(server.rooms.get("lobby")?.isTaken("dropper") ?? false),
      "name released",
    );
  });
});

Deno.test("a raw client that closes properly gets its close echoed, one leave", async () => {
  await withServer({}, async (server, track) => {
    const ann = track(await ChatClient.join(server.port, "ann"));
    const raw = track(await RawWebSocket.connect(server.port, "polite"));
    await ann.expectPresence("join", "polite", 2);
    const welcome = await raw.readEvent();
    assert.equal(welcome?.kind, "messages");
    await raw.sendClose(1000, "done");
    for (;;) {
      const event = await raw.readEvent();
      assert.ok(event !== null, "connection ended without a close frame");
      if (event.kind === "close") {
        assert.equal(event.code, 1000);
        break;
      }
    }
    await ann.expectPresence("leave", "polite", 1);
    await sayAndExpect(ann, "marker", [ann]);
  });
});

Deno.test("joins and leaves pair up when clients vanish mid-handshake", async () => {
  await withServer({}, async (server, track) => {
    const ann = track(await ChatClient.join(server.port, "ann"));
    const names: string[] = [];
    const quitters: Promise<void>[] = [];
    for (let i = 0; i < 20; i++) {
      const name = `quitter${i}`;
      names.push(name);
      quitters.push((async () => {
        const connection = await RawConnection.connect(server.port);
        try {
          await connection.write(
            upgradeRequest(`/ws?username=${name}`, { port: server.port }),
          );
          // Vanish at different moments: right after the request, or once
          // the first bytes of the answer (and maybe the welcome) arrived.
          if (i % 2 === 1) await connection.fill("a reply", Date.now() + 5000);
        } finally {
          await connection.close();
        }
      })());
    }
    await Promise.all(quitters);
    await waitUntil(
      () =>
        names.every((name) =>
          !(server.rooms.get("lobby")?.isTaken(name) ?? false)
        ),
      "every quitter's name to be released",
    );
    await waitUntil(
      async () => (await healthCount(server.port)) === 1,
      "only ann online",
    );
    ann.say("marker");
    const seen = new Map<string, string[]>();
    for (;;) {
      const message = await ann.next("presence or the marker");
      if (message.type === "message") {
        assert.equal((message as { text: string }).text, "marker");
        break;
      }
      assert.ok(message.type === "join" || message.type === "leave");
      const name = (message as { username: string }).username;
      seen.set(name, [...(seen.get(name) ?? []), message.type]);
    }
    for (const [name, events] of seen) {
      assert.deepEqual(events, ["join", "leave"], name);
    }
  });
});

Deno.test("a peer that never answers pings is dropped after the idle timeout", async () => {
  await withServer({ idleTimeoutSeconds: 1 }, async (server, track) => {
    const ann = track(await ChatClient.join(server.port, "ann"));
    const sleeper = track(await RawWebSocket.connect(server.port, "sleeper"));
    await ann.expectPresence("join", "sleeper", 2);
    // ann's Deno socket answers pings; sleeper never does.
    const leave = await ann.next("sleeper's leave", 15_000);
    assert.equal(leave.type, "leave");
    assert.equal((leave as { username: string }).username, "sleeper");
    assert.equal((leave as { online: number }).online, 1);
    await sayAndExpect(ann, "still alive", [ann]);
    assert.equal(await healthCount(server.port), 1);
    // What reached sleeper: its welcome and join, pings, then the end.
    const welcome = await sleeper.readEvent({ answerPings: false });
    assert.equal(welcome?.kind, "messages");
    for (;;) {
      const event = await sleeper.readEvent({ answerPings: false });
      if (event === null || event.kind === "close") break;
    }
    assert.ok(sleeper.pings >= 1, "the server never pinged");
    assert.match(
      server.metrics.render(),
      /^hubchat_evictions_total\{cause="idle"\} 1$/m,
    );
  });
});

// ------------------------------------------------------------- messages

Deno.test("a message fans out to five clients, sender included, in one order", async () => {
  await withServer({}, async (server, track) => {
    const clients: ChatClient[] = [];
    for (let i = 0; i < 5; i++) {
      const client = track(await ChatClient.join(server.port, `user${i}`));
      for (const earlier of clients) {
        await earlier.expectPresence("join", client.username, i + 1);
      }
      clients.push(client);
    }
    const started = Date.now();
    for (const client of clients) client.say(`hello from ${client.username}`);
    const orders: string[][] = [];
    for (const client of clients) {
      const order: string[] = [];
      for (let i = 0; i < clients.length; i++) {
        const message = await client.next(`message ${i}`);
        assert.equal(message.type, "message");
        const { username, text, timestamp } = message as {
          username: string;
          text: string;
          timestamp: string;
        };
        assert.equal(text, `hello from ${username}`);
        assertTimestamp(timestamp, started);
        order.push(username);
      }
      orders.push(order);
    }
    assert.deepEqual(
      [...orders[0]].sort(),
      clients.map((client) => client.username).sort(),
    );
    for (const order of orders) assert.deepEqual(order, orders[0]);
    for (const client of clients) assert.equal(client.pending, 0);
  });
});

Deno.test("the server stamps username and timestamp over spoofed fields", async () => {
  await withServer({}, async (server, track) => {
    const ann = track(await ChatClient.join(server.port, "ann"));
    const bob = track(await ChatClient.join(server.port, "bob"));
    await ann.expectPresence("join", "bob", 2);
    const started = Date.now();
    ann.send({
      type: "message",
      text: "it was me",
      username: "bob",
      timestamp: "1999-12-31T23:59:59.999Z",
      online: 99,
    });
    for (const client of [ann, bob]) {
      const message = await client.next("the spoofed message");
      assert.deepEqual(Object.keys(message).sort(), [
        "id",
        "room",
        "text",
        "timestamp",
        "type",
        "username",
      ]);
      assert.equal(message.type, "message");
      assert.equal((message as { username: string }).username, "ann");
      assert.equal((message as { text: string }).text, "it was me");
      assertTimestamp(message.timestamp, started);
    }
  });
});

Deno.test("text is trimmed; inner whitespace and newlines are kept", async () => {
  await withServer({}, async (server, track) => {
    const ann = track(await ChatClient.join(server.port, "ann"));
    const bob = track(await ChatClient.join(server.port, "bob"));
    await ann.expectPresence("join", "bob", 2);
    ann.say("  \n hello\n  world \t ");
    for (const client of [ann, bob]) {
      await client.expectMessage("ann", "hello\n  world");
    }
    // A text with a newline must not break the one-message-per-line framing.
    ann.say('line one\nline two "quoted" \\ done');
    for (const client of [ann, bob]) {
      await client.expectMessage("ann", 'line one\nline two "quoted" \\ done');
    }
  });
});

/** A bad frame and the error code it must get. */
interface BadInput {
  name: string;
  frame: string;
  code: ErrorCode;
}

const BAD_INPUTS: BadInput[] = [
  {
    name: "malformed JSON",
    frame: '{"type":"message","text":',
    code: "invalid_json",
  },
  { name: "empty frame", frame: "", code: "invalid_json" },
  { name: "plain text", frame: "hello", code: "invalid_json" },
  {
    name: "two JSON documents",
    frame: '{"type":"message","text":"a"}\n{"type":"message","text":"b"}',
    code: "invalid_json",
  },
  {
    name: "array",
    frame: '[{"type":"message","text":"hi"}]',
    code: "invalid_message",
  },
  { name: "number", frame: "42", code: "invalid_message" },
  { name: "null", frame: "null", code: "invalid_message" },
  { name: "string", frame: '"hi"', code: "invalid_message" },
  { name: "boolean", frame: "true", code: "invalid_message" },
  { name: "missing type", frame: '{"text":"hi"}', code: "invalid_message" },
  {
    name: "non-string type",
    frame: '{"type":1,"text":"hi"}',
    code: "invalid_message",
  },
  {
    name: "null type",
    frame: '{"type":null,"text":"hi"}',
    code: "invalid_message",
  },
  {
    name: "unknown type",
    frame: '{"type":"shout","text":"hi"}',
    code: "unknown_type",
  },
  {
    name: "type in other case",
    frame: '{"type":"Message","text":"hi"}',
    code: "unknown_type",
  },
  {
    name: "server-only type",
    frame: '{"type":"welcome","username":"x"}',
    code: "unknown_type",
  },
  {
    name: "join without a room",
    frame: '{"type":"join","username":"x"}',
    code: "invalid_message",
  },
  {
    name: "missing text",
    frame: '{"type":"message"}',
    code: "invalid_message",
  },
  {
    name: "null text",
    frame: '{"type":"message","text":null}',
    code: "invalid_message",
  },
  {
    name: "number text",
    frame: '{"type":"message","text":42}',
    code: "invalid_message",
  },
  {
    name: "array text",
    frame: '{"type":"message","text":["hi"]}',
    code: "invalid_message",
  },
  {
    name: "object text",
    frame: '{"type":"message","text":{"t":"hi"}}',
    code: "invalid_message",
  },
  {
    name: "empty text",
    frame: '{"type":"message","text":""}',
    code: "empty_text",
  },
  {
    name: "whitespace-only text",
    frame: JSON.stringify({ type: "message", text: " \t\n\r \u00a0 " }),
    code: "empty_text",
  },
  {
    name: "2001 ASCII characters",
    frame: JSON.stringify({ type: "message", text: "x".repeat(2001) }),
    code: "text_too_long",
  },
  {
    name: "2001 two-byte characters",
    frame: JSON.stringify({ type: "message", text: "é".repeat(2001) }),
    code: "text_too_long",
  },
  {
    name: "2001 emoji (4 bytes each)",
    frame: JSON.stringify({ type: "message", text: "😀".repeat(2001) }),
    code: "text_too_long",
  },
  {
    name: "2001 characters inside spaces",
    frame: JSON.stringify({ type: "message", text: ` ${"x".repeat(2001)} ` }),
    code: "text_too_long",
  },
];

Deno.test("bad input gets an error to the offender only; the connection stays open", async (t) => {
  // Many bad frames in a row: the rate limit has its own tests.
  await withServer({ ratePerSecond: 0 }, async (server, track) => {
    const offender = track(await ChatClient.join(server.port, "offender"));
    const bob = track(await ChatClient.join(server.port, "bob"));
    const cy = track(await ChatClient.join(server.port, "cy"));
    await offender.expectPresence("join", "bob", 2);
    await offender.expectPresence("join", "cy", 3);
    await bob.expectPresence("join", "cy", 3);
    for (const bad of BAD_INPUTS) {
      await t.step(`${bad.name} → ${bad.code}`, async () => {
        const started = Date.now();
        offender.sendRaw(bad.frame);
        const reply = await offender.next(`error for ${bad.name}`);
        assert.equal(reply.type, "error", JSON.stringify(reply));
        assert.deepEqual(Object.keys(reply).sort(), [
          "code",
          "text",
          "timestamp",
          "type",
        ]);
        assert.equal((reply as { code: string }).code, bad.code);
        assert.equal(typeof (reply as { text: unknown }).text, "string");
        assert.ok((reply as { text: string }).text.length > 0);
        assertTimestamp(reply.timestamp, started);
        // Still connected, and the others got nothing but the marker.
        await sayAndExpect(offender, `after ${bad.name}`, [offender, bob, cy]);
      });
    }
  });
});

Deno.test("text length counts code points: 2000 is accepted in any script", async () => {
  await withServer({}, async (server, track) => {
    const ann = track(await ChatClient.join(server.port, "ann"));
    const bob = track(await ChatClient.join(server.port, "bob"));
    await ann.expectPresence("join", "bob", 2);
    const texts = [
      "x".repeat(2000),
      "é".repeat(2000), // 4000 bytes
      "😀".repeat(2000), // 4000 UTF-16 units, 8000 bytes: fits 8 KiB
      "\u{1D49C}".repeat(1999) + "x",
    ];
    for (const text of texts) {
      await sayAndExpect(ann, text, [ann, bob]);
    }
    // Trimmed first: 2000 characters inside spaces are fine.
    ann.say(`  ${"y".repeat(2000)}\n`);
    for (const client of [ann, bob]) {
      await client.expectMessage("ann", "y".repeat(2000));
    }
  });
});

/** A valid message frame padded with `pad` repeated to exactly `bytes`. */
function paddedFrame(bytes: number, pad: string): string {
  const base = '{"type":"message","text":"padded","pad":""}';
  const padBytes = encoder.encode(pad).length;
  const room = bytes - encoder.encode(base).length;
  const count = Math.floor(room / padBytes);
  const filler = "x".repeat(room - count * padBytes);
  const frame = `{"type":"message","text":"padded","pad":"${
    pad.repeat(count)
  }${filler}"}`;
  assert.equal(encoder.encode(frame).length, bytes);
  return frame;
}

Deno.test("a frame of exactly 8 KiB is accepted, in bytes of UTF-8", async () => {
  await withServer({}, async (server, track) => {
    const ann = track(await ChatClient.join(server.port, "ann"));
    const bob = track(await ChatClient.join(server.port, "bob"));
    await ann.expectPresence("join", "bob", 2);
    for (const pad of ["x", "é", "€", "😀"]) {
      ann.sendRaw(paddedFrame(8192, pad));
      await ann.expectMessage("ann", "padded");
      await bob.expectMessage("ann", "padded");
    }
  });
});

/** Sends `frame` from a fresh client; checks the close code and one leave. */
async function expectClosedFor(
  port: number,
  track: <T extends Closer>(closer: T) => T,
  send: (client: ChatClient) => void,
  code: number,
): Promise<void> {
  const ann = track(await ChatClient.join(port, "ann"));
  const bob = track(await ChatClient.join(port, "bob"));
  const bad = track(await ChatClient.join(port, "bad"));
  await ann.expectPresence("join", "bob", 2);
  await ann.expectPresence("join", "bad", 3);
  await bob.expectPresence("join", "bad", 3);
  send(bad);
  const end = await within(bad.closed, "the offender to be closed");
  assert.equal(end.code, code);
  assert.notEqual(end.reason, "");
  for (const client of [ann, bob]) {
    await client.expectPresence("leave", "bad", 2);
  }
  await sayAndExpect(ann, "marker", [ann, bob]);
}

Deno.test("a binary frame closes the sender with 1003; the others see one leave", async () => {
  await withServer({}, async (server, track) => {
    await expectClosedFor(
      server.port,
      track,
      (bad) => bad.sendRaw(encoder.encode('{"type":"message","text":"hi"}')),
      1003,
    );
  });
});

Deno.test("a frame over 8 KiB closes the sender with 1009; the others see one leave", async (t) => {
  const oversized: [string, string][] = [
    ["8193 ASCII bytes", paddedFrame(8193, "x")],
    ["8193 bytes of 3-byte characters", paddedFrame(8193, "€")],
    ["8196 bytes of emoji", paddedFrame(8196, "😀")],
    ["64 KiB of ASCII", "x".repeat(65536)],
  ];
  for (const [name, frame] of oversized) {
    await t.step(name, async () => {
      await withServer({}, async (server, track) => {
        await expectClosedFor(
          server.port,
          track,
          (bad) => bad.sendRaw(frame),
          1009,
        );
      });
    });
  }
});

Deno.test("a message split over continuation frames is one message", async () => {
  await withServer({}, async (server, track) => {
    const ann = track(await ChatClient.join(server.port, "ann"));
    const raw = track(await RawWebSocket.connect(server.port, "frag"));
    await ann.expectPresence("join", "frag", 2);
    await raw.next("welcome");
    await raw.next("own join");
    const payload = encoder.encode(
      JSON.stringify({ type: "message", text: "in pieces" }),
    );
    await raw.sendFrame(Opcode.text, payload.subarray(0, 10), false);
    await raw.sendFrame(Opcode.ping, encoder.encode("mid-message ping"));
    await raw.sendFrame(Opcode.continuation, payload.subarray(10, 20), false);
    await raw.sendFrame(Opcode.continuation, payload.subarray(20), true);
    await ann.expectMessage("frag", "in pieces");
    const echo = await raw.next("the echo");
    assert.equal((echo as { text?: string }).text, "in pieces");
  });
});

Deno.test("fragments adding up to over 8 KiB close with 1009 and one leave", async () => {
  await withServer({}, async (server, track) => {
    const ann = track(await ChatClient.join(server.port, "ann"));
    const raw = track(await RawWebSocket.connect(server.port, "frag"));
    await ann.expectPresence("join", "frag", 2);
    await raw.next("welcome");
    await raw.next("own join");
    const piece = encoder.encode("x".repeat(3000));
    await raw.sendFrame(Opcode.text, piece, false);
    await raw.sendFrame(Opcode.continuation, piece, false);
    await raw.sendFrame(Opcode.continuation, piece, true);
    const event = await raw.readEvent({ answerPings: true });
    assert.equal(event?.kind, "close");
    assert.equal((event as { code: number }).code, 1009);
    await ann.expectPresence("leave", "frag", 1);
    await sayAndExpect(ann, "marker", [ann]);
  });
});

Deno.test("invalid UTF-8 in a text frame ends the connection with one leave", async () => {
  await withServer({}, async (server, track) => {
    const ann = track(await ChatClient.join(server.port, "ann"));
    const raw = track(await RawWebSocket.connect(server.port, "mojibake"));
    await ann.expectPresence("join", "mojibake", 2);
    await raw.next("welcome");
    await raw.next("own join");
    await raw.sendFrame(Opcode.text, new Uint8Array([0x7b, 0xff, 0xfe, 0x7d]));
    const event = await raw.readEvent({ answerPings: true });
    // Dropped, or closed with 1007 (invalid frame payload data).
    if (event !== null) {
      assert.equal(event.kind, "close");
      assert.equal((event as { code: number }).code, 1007);
    }
    await ann.expectPresence("leave", "mojibake", 1);
    await sayAndExpect(ann, "marker", [ann]);
  });
});

// ------------------------------------------------------------- shutdown

Deno.test("shutdown closes every client with 1001 and resolves", async () => {
  await withServer({}, async (server, track) => {
    const ann = track(await ChatClient.join(server.port, "ann"));
    const bob = track(await ChatClient.join(server.port, "bob"));
    await ann.expectPresence("join", "bob", 2);
    await within(server.shutdown(), "shutdown", 10_000);
    for (const client of [ann, bob]) {
      const end = await within(client.closed, "the close");
      assert.deepEqual(end, { code: 1001, reason: "server shutting down" });
      // No leave was announced on the way down.
      assert.equal(client.pending, 0);
    }
    await assert.rejects(fetch(`${server.url}healthz`));
  });
});

Deno.test("shutdown resolves even when a client ignores the closing handshake", async () => {
  await withServer({}, async (server, track) => {
    const ann = track(await ChatClient.join(server.port, "ann"));
    const deaf = track(await RawWebSocket.connect(server.port, "deaf"));
    await ann.expectPresence("join", "deaf", 2);
    const stopping = server.shutdown();
    // While shutdown waits for the deaf client, new upgrades are refused.
    const refused = await rawUpgradeReply(server.port, "latecomer");
    assert.equal(refused.status, 503);
    assert.match(refused.body, /shutting down/);
    const end = await within(ann.closed, "ann's close");
    assert.deepEqual(end, { code: 1001, reason: "server shutting down" });
    await within(stopping, "shutdown", 10_000);
    // The deaf client was sent the close frame too.
    let close;
    for (;;) {
      const event = await deaf.readEvent();
      if (event === null || event.kind === "close") {
        close = event;
        break;
      }
    }
    assert.deepEqual(close, {
      kind: "close",
      code: 1001,
      reason: "server shutting down",
    });
  });
});

Deno.test("a handshake that races shutdown is closed with 1001 too", async () => {
  await withServer({}, async (server, track) => {
    // Simulate SIGTERM landing between the upgrade response and the socket's
    // open event: shut down right after the server reserved the name.
    const room = server.rooms.open("lobby")!;
    const reserve = room.reserve.bind(room);
    let stopping: Promise<void> | undefined;
    room.reserve = (client) => {
      const reserved = reserve(client);
      queueMicrotask(() => {
        stopping = server.shutdown();
      });
      return reserved;
    };
    const late = track(await RawWebSocket.connect(server.port, "late"));
    const event = await late.readEvent({ answerPings: true });
    assert.deepEqual(event, {
      kind: "close",
      code: 1001,
      reason: "server shutting down",
    }, "the late client must be closed like every other client");
    assert.ok(stopping);
    await within(stopping, "shutdown", 10_000);
  });
});

// -------------------------------------------------------- slow consumer

Deno.test("a burst of short messages does not evict clients that read", async () => {
  // Default queue bounds. 1000 chat lines of 100 characters (about 130 KB)
  // reach the server in one TCP write: far below any kernel buffer, so no
  // reader is slow, yet all of them must still get every line.
  // A flood by design: the rate limit has its own tests.
  await withServer({ ratePerSecond: 0 }, async (server, track) => {
    const sender = track(await RawWebSocket.connect(server.port, "sender"));
    await sender.next("sender's welcome");
    await sender.next("sender's join");
    const ann = track(await ChatClient.join(server.port, "ann"));
    await sender.next("ann's join");
    const body = "y".repeat(100);
    const count = 1000;
    const frames: string[] = [];
    for (let i = 0; i < count; i++) {
      frames.push(JSON.stringify({ type: "message", text: `${i} ${body}` }));
    }
    await sender.sendTexts(frames);
    const framesBefore = ann.frames;
    for (const reader of [sender, ann]) {
      for (let i = 0; i < count; i++) {
        const message = await reader.next(`message ${i}`);
        assert.equal(message.type, "message", JSON.stringify(message));
        assert.equal((message as { text: string }).text, `${i} ${body}`);
      }
    }
    // What arrived together left together: a turn's lines share a frame.
    const annFrames = ann.frames - framesBefore;
    assert.ok(
      annFrames < count / 10,
      `${count} messages came in ${annFrames} frames`,
    );
    assert.equal(await healthCount(server.port), 2);
  });
});

Deno.test("a client that stops reading is evicted; the others get every message", async () => {
  const logLines: string[] = [];
  const logger = createLogger({
    format: "json",
    write: (line) => logLines.push(line),
  });
  await withServer(
    { maxQueue: 8, highWaterBytes: 1024, ratePerSecond: 0, logger },
    async (server, track) => {
      // The sender writes each frame in one TCP write (Deno's own client
      // splits frames over 1 KiB, and Nagle then delays each by ~40 ms).
      const sender = track(await RawWebSocket.connect(server.port, "sender"));
      await sender.next("sender's welcome");
      await sender.next("sender's join");
      const ann = track(await ChatClient.join(server.port, "ann"));
      await sender.next("ann's join");
      const slow = track(await RawWebSocket.connect(server.port, "slow"));
      await sender.next("slow's join");
      await ann.expectPresence("join", "slow", 3);

      const body = "x".repeat(1900);
      const readers: { next(what: string): Promise<ServerMessage> }[] = [
        sender,
        ann,
      ];
      const nextSeq = [0, 0];
      const leaves = [0, 0];
      const window = 1;
      const limit = 20_000;
      let sent = 0;
      /** Reads one reader's stream up to message `upTo - 1`, noting leaves. */
      async function catchUp(index: number, upTo: number): Promise<void> {
        while (nextSeq[index] < upTo) {
          const message = await readers[index].next(
            `message ${nextSeq[index]}`,
          );
          if (message.type === "leave") {
            assert.equal((message as { username: string }).username, "slow");
            assert.equal((message as { online: number }).online, 2);
            leaves[index]++;
            continue;
          }
          assert.equal(message.type, "message", JSON.stringify(message));
          assert.equal((message as { username: string }).username, "sender");
          assert.equal(
            (message as { text: string }).text,
            `${nextSeq[index]} ${body}`,
            "messages arrive complete and in order",
          );
          nextSeq[index]++;
        }
      }
      async function send(count: number): Promise<void> {
        for (let i = 0; i < count; i++) {
          await sender.sendText(
            JSON.stringify({ type: "message", text: `${sent++} ${body}` }),
          );
        }
        await catchUp(0, sent);
        await catchUp(1, sent);
      }
      while (leaves[0] === 0 && sent < limit) await send(window);
      assert.equal(leaves[0], 1, `slow was not evicted after ${sent} messages`);
      // A few more, then everyone is level: exactly one leave each.
      for (let i = 0; i < 5; i++) await send(window);
      sender.sendText(JSON.stringify({ type: "message", text: "marker" }));
      for (const reader of readers) {
        const marker = await reader.next("the marker");
        assert.equal((marker as { text?: string }).text, "marker");
      }
      assert.deepEqual(leaves, [1, 1]);
      assert.equal(await healthCount(server.port), 2);

      // What the slow client was sent: a prefix, in order, then a 4008 close.
      let received = 0;
      let close;
      const deadline = Date.now() + 15_000;
      for (;;) {
        const event = await slow.readEvent({ ms: deadline - Date.now() });
        if (event === null || event.kind === "close") {
          close = event;
          break;
        }
        for (const message of event.messages) {
          if (message.type !== "message") continue;
          assert.equal(
            (message as { text: string }).text,
            `${received} ${body}`,
          );
          received++;
        }
      }
      assert.ok(received > 0 && received < sent, `slow read ${received}`);
      assert.deepEqual(close, {
        kind: "close",
        code: 4008,
        reason: "slow consumer",
      });
      // Counted and logged with its cause.
      assert.match(
        server.metrics.render(),
        /^hubchat_evictions_total\{cause="slow_consumer"\} 1$/m,
      );
      const evictions = logLines.map((line) => JSON.parse(line))
        .filter((event) => event.event === "evict");
      assert.equal(evictions.length, 1, logLines.join("\n"));
      assert.equal(evictions[0].user, "slow");
      assert.equal(evictions[0].code, 4008);
      assert.equal(evictions[0].cause, "slow_consumer");
    },
  );
});

Deno.test("--fsync always: a line goes out only once its sync is done; periodic: before its sync", async () => {
  for (const fsync of ["always", "periodic"] as const) {
    await withTempDir(async (dir) => {
      // Syncs wait while `held` is set: a disk that is slow to flush.
      let held: Promise<void> | null = null;
      let syncsStarted = 0;
      let syncsDone = 0;
      const wrapHistoryFile = (file: HistoryFile): HistoryFile => ({
        write: (bytes) => file.write(bytes),
        truncate: (length) => file.truncate(length),
        async sync(): Promise<void> {
          syncsStarted++;
          if (held !== null) await held;
          await file.sync();
          syncsDone++;
        },
      });
      await withServer({
        data: `${dir}/history.db`,
        fsync,
        wrapHistoryFile,
      }, async (server, track) => {
        const ann = track(await ChatClient.join(server.port, "ann"));
        // The first line reserves a block of ids, durably, in either mode.
        ann.say("first");
        await ann.expectMessage("ann", "first");
        const release = Promise.withResolvers<void>();
        held = release.promise;
        const doneBefore = syncsDone;
        const startedBefore = syncsStarted;
        ann.say("kept");
        if (fsync === "periodic") {
          await ann.expectMessage("ann", "kept");
          assert.equal(syncsDone, doneBefore, "sent before any sync");
        } else {
          await waitUntil(
            () => syncsStarted > startedBefore,
            "the line's sync to start",
          );
          // A reply sent after the line was written comes first.
          ann.send({ type: "members" });
          assert.equal((await ann.next("the members reply")).type, "members");
          assert.equal(ann.pending, 0, "nothing of the line yet");
          release.resolve();
          await ann.expectMessage("ann", "kept");
          assert.ok(syncsDone > doneBefore, "sent after its sync");
        }
        release.resolve();
      });
    }, { prefix: `hubchat-fsync-${fsync}-` });
  }
});

/**
 * Rooms, direct messages, presence, typing, history and resume, over real
 * sockets against a server on port 0.
 */

import assert from "node:assert/strict";
import { Client } from "./client.ts";
import {
  type AppendDone,
  History,
  type StoredMessage,
} from "./store/history.ts";
import {
  type ChatMessage,
  type ServerMessage,
  splitFrame,
  type WelcomeMessage,
} from "./protocol.ts";
import {
  LocalEngine,
  type RoomEvent,
  type RoomListener,
  type RoomSubscription,
} from "./engine.ts";
import { Room } from "./room.ts";
import { startServer } from "./server.ts";
import { ChatClient } from "./testing/chat_client.ts";
import { ChildServer } from "./testing/child_server.ts";
import { rawUpgradeReply } from "./testing/raw_websocket.ts";
import { withServer } from "./testing/server.ts";
import { waitUntil } from "./testing/wait.ts";
import { sleep } from "./tools/wait.ts";

/**
 * Opens a client with any query; checks that the welcome comes first and
 * the client's own join right after it.
 */
async function enter(
  port: number,
  query: Record<string, string>,
): Promise<{ client: ChatClient; welcome: WelcomeMessage }> {
  const client = await ChatClient.enter(port, query);
  return { client, welcome: client.welcome! };
}

/** Reads until a chat message arrives, returning it (skips presence). */
async function nextChat(client: ChatClient): Promise<ChatMessage> {
  for (;;) {
    const message = await client.next("a chat message");
    if (message.type === "message") return message;
    assert.ok(
      message.type === "join" || message.type === "leave" ||
        message.type === "typing",
      `unexpected ${message.type}: ${JSON.stringify(message)}`,
    );
  }
}

/** Sends a marker and reads up to it: everything before it, in order. */
async function drainUntilMarker(
  reader: ChatClient,
  sender: ChatClient,
  marker: string,
): Promise<ServerMessage[]> {
  sender.say(marker);
  const seen: ServerMessage[] = [];
  for (;;) {
    const message = await reader.next(`marker ${marker}`);
    if (
      message.type === "message" &&
      (message as ChatMessage).text === marker
    ) {
      return seen;
    }
    seen.push(message);
  }
}

// ------------------------------------------------------------------ rooms

Deno.test("rooms: messages stay in their room; events carry the room", async () => {
  await withServer({}, async (server, track) => {
    const { client: ann, welcome } = await enter(server.port, {
      username: "ann",
      room: "dev",
    });
    track(ann);
    assert.equal(welcome.room, "dev");
    const bob = track((await enter(server.port, { username: "bob" })).client);
    const cy = track(
      (await enter(server.port, { username: "cy", room: "dev" })).client,
    );
    const cyJoin = await ann.next("cy's join");
    assert.deepEqual([cyJoin.type, (cyJoin as { room: string }).room], [
      "join",
      "dev",
    ]);
    ann.say("in dev");
    const inDev = await nextChat(cy);
    assert.equal(inDev.room, "dev");
    assert.equal(inDev.text, "in dev");
    bob.say("in lobby");
    const inLobby = await nextChat(bob);
    assert.equal(inLobby.room, "lobby");
    // ann saw her own line and nothing from the lobby.
    assert.equal((await nextChat(ann)).text, "in dev");
    const seen = await drainUntilMarker(ann, cy, "marker");
    assert.deepEqual(seen, []);

    const response = await fetch(`${server.url}rooms`);
    assert.deepEqual(await response.json(), {
      rooms: [{ name: "dev", online: 2 }, { name: "lobby", online: 1 }],
    });
  });
});

Deno.test("rooms: a room is dropped when its last member leaves; its history stays", async () => {
  await withServer({}, async (server, track) => {
    const ann = track(
      (await enter(server.port, { username: "ann", room: "dev" })).client,
    );
    const bob = track((await enter(server.port, { username: "bob" })).client);
    // Direct messages go to members of the sender's room only.
    ann.send({ type: "message", text: "psst", to: "bob" });
    const refusal = await ann.next("the refusal");
    assert.equal(refusal.type, "error");
    assert.equal((refusal as { code: string }).code, "unknown_recipient");
    ann.say("kept");
    assert.equal((await nextChat(ann)).text, "kept");
    assert.notEqual(server.rooms.get("dev"), undefined);
    await ann.close();
    await waitUntil(
      () => server.rooms.get("dev") === undefined,
      "the empty room to be dropped",
    );
    const listed = await (await fetch(`${server.url}rooms`)).json();
    assert.deepEqual(listed, {
      rooms: [{ name: "dev", online: 0 }, { name: "lobby", online: 1 }],
    });
    const cy = await enter(server.port, { username: "cy", room: "dev" });
    track(cy.client);
    assert.deepEqual(cy.welcome.history.map((line) => line.text), ["kept"]);
    const seen = await drainUntilMarker(bob, bob, "marker");
    assert.deepEqual(seen, [], "bob in the lobby saw nothing of it");
  });
});

Deno.test("rooms: a switch leaves the old room, welcomes and joins the new", async () => {
  await withServer({}, async (server, track) => {
    const ann = track((await enter(server.port, { username: "ann" })).client);
    const bob = track((await enter(server.port, { username: "bob" })).client);
    await ann.expectPresence("join", "bob");
    const dana = track(
      (await enter(server.port, { username: "dana", room: "dev" })).client,
    );
    dana.say("before ann");
    await nextChat(dana);
    ann.send({ type: "join", room: "dev" });
    const welcome = await ann.next("welcome to dev") as WelcomeMessage;
    assert.equal(welcome.type, "welcome");
    assert.equal(welcome.room, "dev");
    assert.deepEqual(welcome.users, ["dana", "ann"]);
    assert.deepEqual(welcome.history.map((m) => m.text), ["before ann"]);
    await ann.expectPresence("join", "ann", 2);
    await bob.expectPresence("leave", "ann", 1);
    await dana.expectPresence("join", "ann", 2);
    ann.say("hello dev");
    assert.equal((await nextChat(dana)).text, "hello dev");
    assert.equal((await nextChat(ann)).text, "hello dev");
    assert.deepEqual(await drainUntilMarker(bob, bob, "lobby marker"), []);
    // Back again, and /rooms follows.
    ann.send({ type: "join", room: "lobby" });
    assert.equal((await ann.next("welcome")).type, "welcome");
    await waitUntil(
      () => server.rooms.get("dev")?.online === 1,
      "ann to leave dev",
    );
  });
});

Deno.test("rooms: names are unique per room; a switch into a taken name is refused", async () => {
  await withServer({}, async (server, track) => {
    const lobbyAnn = track(
      (await enter(server.port, { username: "ann" })).client,
    );
    const devAnn = track(
      (await enter(server.port, { username: "ann", room: "dev" })).client,
    );
    const taken = await rawUpgradeReply(server.port, "ann");
    assert.equal(taken.status, 409);
    lobbyAnn.send({ type: "join", room: "dev" });
    const refusal = await lobbyAnn.next("the refusal");
    assert.equal(refusal.type, "error");
    assert.equal((refusal as { code: string }).code, "username_taken");
    // Still in the lobby, still chatting.
    lobbyAnn.say("still here");
    const line = await nextChat(lobbyAnn);
    assert.equal(line.room, "lobby");
    assert.deepEqual(await drainUntilMarker(devAnn, devAnn, "m"), []);
    lobbyAnn.send({ type: "join", room: "bad/room" });
    const invalid = await lobbyAnn.next("invalid room");
    assert.equal((invalid as { code: string }).code, "invalid_room");
  });
});

Deno.test("rooms: a bad ?room or ?since is a 400 before the upgrade", async () => {
  await withServer({}, async (server) => {
    for (const query of ["room=a%2Fb", "since=-1", "since=abc"]) {
      const response = await fetch(`${server.url}ws?username=x&${query}`, {
        headers: { upgrade: "websocket" },
      });
      const body = await response.json();
      assert.equal(response.status, 400, query);
      assert.match(body.error, /^invalid_(room|since)$/);
    }
  });
});

Deno.test("rooms: at the room cap, new rooms are refused", async () => {
  await withServer({ maxRooms: 2 }, async (server, track) => {
    track((await enter(server.port, { username: "a" })).client);
    const b = track(
      (await enter(server.port, { username: "b", room: "two" })).client,
    );
    const response = await fetch(`${server.url}ws?username=c&room=three`, {
      headers: { upgrade: "websocket" },
    });
    assert.equal(response.status, 503);
    await response.body?.cancel();
    b.send({ type: "join", room: "four" });
    const refusal = await b.next("room_limit");
    assert.equal((refusal as { code: string }).code, "room_limit");
  });
});

// -------------------------------------------------------- direct messages

Deno.test("direct messages reach only the recipient and the sender, in history too", async () => {
  await withServer({}, async (server, track) => {
    const ann = track((await enter(server.port, { username: "ann" })).client);
    const bob = track((await enter(server.port, { username: "bob" })).client);
    const cy = track((await enter(server.port, { username: "cy" })).client);
    ann.send({ type: "message", text: "psst bob", to: "bob" });
    const toBob = await nextChat(bob);
    assert.equal(toBob.to, "bob");
    assert.equal(toBob.username, "ann");
    const echo = await nextChat(ann);
    assert.deepEqual(echo, toBob);
    ann.send({ type: "message", text: "hi", to: "zed" });
    let refusal = await ann.next("unknown recipient");
    while (refusal.type !== "error") refusal = await ann.next("the error");
    assert.equal((refusal as { code: string }).code, "unknown_recipient");
    assert.match(
      server.metrics.render(),
      /^hubchat_errors_total\{code="unknown_recipient"\} 1$/m,
    );
    ann.say("public");
    // cy saw the public line only.
    const cySaw = await nextChat(cy);
    assert.equal(cySaw.text, "public");
    assert.equal(cySaw.to, undefined);
    // History as each sees it on joining again from another room.
    for (
      const [who, texts] of [
        ["dee", ["public"]],
      ] as const
    ) {
      const { client, welcome } = await enter(server.port, { username: who });
      track(client);
      assert.deepEqual(welcome.history.map((m) => m.text), texts);
    }
    await bob.close();
    const bob2 = await enter(server.port, { username: "bob" });
    track(bob2.client);
    assert.deepEqual(bob2.welcome.history.map((m) => m.text), [
      "psst bob",
      "public",
    ]);
  });
});

// ------------------------------------------------------------- presence

Deno.test("presence: every client's list matches the server's after random joins and drops", async () => {
  let seed = 7;
  function random(): number {
    seed = (seed * 1103515245 + 12345) % 2147483648;
    return seed / 2147483648;
  }
  await withServer({}, async (server, track) => {
    interface Member {
      client: ChatClient;
      users: Set<string>;
    }
    const members = new Map<string, Member>();
    let next = 0;
    function apply(member: Member, message: ServerMessage): void {
      if (message.type === "join") member.users.add(message.username);
      if (message.type === "leave") member.users.delete(message.username);
    }
    for (let step = 0; step < 30; step++) {
      if (members.size < 2 || random() < 0.6) {
        const name = `p${next++}`;
        const client = track(
          await ChatClient.open(
            `ws://127.0.0.1:${server.port}/ws?username=${name}`,
            name,
          ),
        );
        const welcome = await client.next("welcome") as WelcomeMessage;
        members.set(name, { client, users: new Set(welcome.users) });
      } else {
        const names = [...members.keys()];
        const name = names[Math.floor(random() * names.length)];
        const member = members.get(name)!;
        members.delete(name);
        if (random() < 0.5) await member.client.close();
        else member.client.socket.close(4000, "bye");
      }
    }
    // Let everything settle: every member reads up to a marker.
    const marker = [...members.values()][0].client;
    marker.say("settle");
    for (const member of members.values()) {
      for (;;) {
        const message = await member.client.next("settle");
        if (message.type === "message") break;
        apply(member, message);
      }
    }
    const truth = server.rooms.get("lobby")!.users().sort();
    assert.deepEqual(truth, [...members.keys()].sort());
    for (const [name, member] of members) {
      assert.deepEqual([...member.users].sort(), truth, name);
    }
  });
});

// ----------------------------------------------------------------- typing

Deno.test("typing goes to the others, throttled, never stored", async () => {
  await withServer({}, async (server, track) => {
    const ann = track((await enter(server.port, { username: "ann" })).client);
    const bob = track((await enter(server.port, { username: "bob" })).client);
    await ann.expectPresence("join", "bob");
    ann.send({ type: "typing" });
    ann.send({ type: "typing" }); // within 2 s: dropped
    const typing = await bob.next("typing");
    assert.deepEqual(
      { ...typing, timestamp: "" },
      { type: "typing", room: "lobby", username: "ann", timestamp: "" },
    );
    ann.say("done typing");
    assert.equal((await nextChat(bob)).text, "done typing");
    // ann got no typing of her own, bob no second one.
    assert.equal((await nextChat(ann)).text, "done typing");
    assert.deepEqual(await drainUntilMarker(bob, ann, "marker"), []);
    const cy = await enter(server.port, { username: "cy" });
    track(cy.client);
    assert.deepEqual(cy.welcome.history.map((m) => m.text), [
      "done typing",
      "marker",
    ]);
  });
});

// ------------------------------------------------------- history, resume

Deno.test("history: ids increase; welcome keeps the last N; since resumes exactly", async () => {
  await withServer({ historyLimit: 5 }, async (server, track) => {
    const ann = track((await enter(server.port, { username: "ann" })).client);
    const ids: number[] = [];
    for (let i = 0; i < 8; i++) {
      ann.say(`m${i}`);
      ids.push((await nextChat(ann)).id);
    }
    for (let i = 1; i < ids.length; i++) assert.ok(ids[i] > ids[i - 1]);
    const fresh = await enter(server.port, { username: "bob" });
    track(fresh.client);
    assert.deepEqual(
      fresh.welcome.history.map((m) => m.text),
      ["m3", "m4", "m5", "m6", "m7"],
    );
    assert.equal(fresh.welcome.gap, false);
    // Resume after m5: exactly m6 and m7.
    const resumed = await enter(server.port, {
      username: "cy",
      since: String(ids[5]),
    });
    track(resumed.client);
    assert.deepEqual(resumed.welcome.history.map((m) => m.text), ["m6", "m7"]);
    assert.equal(resumed.welcome.gap, false);
    // Resume from before what is kept: a gap, and what is kept.
    const gapped = await enter(server.port, {
      username: "dee",
      since: String(ids[0]),
    });
    track(gapped.client);
    assert.equal(gapped.welcome.gap, true);
    assert.deepEqual(
      gapped.welcome.history.map((m) => m.text),
      ["m3", "m4", "m5", "m6", "m7"],
    );
    // Up to date: nothing to send, no gap.
    const current = await enter(server.port, {
      username: "eve",
      since: String(ids[7]),
    });
    track(current.client);
    assert.deepEqual(current.welcome.history, []);
    assert.equal(current.welcome.gap, false);
  });
});

Deno.test("resume: a reconnect during a stream sees every message exactly once", async () => {
  await withServer(
    { ratePerSecond: 0, historyLimit: 1000 },
    async (server, track) => {
      const sender = track(
        (await enter(server.port, { username: "sender" })).client,
      );
      const first = await enter(server.port, { username: "reader" });
      const seen: number[] = [];
      const texts: string[] = [];
      let count = 0;
      const total = 200;
      // Stream in the background while the reader drops and comes back.
      const sending = (async () => {
        for (; count < total; count++) {
          sender.say(`s${count}`);
          if (count % 20 === 0) await sleep(1);
        }
      })();
      let reader = first.client;
      for (let hop = 0; hop < 3 && texts.length < total - 20; hop++) {
        for (let i = 0; i < 20; i++) {
          const message = await nextChat(reader);
          seen.push(message.id);
          texts.push(message.text);
        }
        await reader.close();
        const back = await enter(server.port, {
          username: "reader",
          since: String(seen.at(-1)),
        });
        assert.equal(back.welcome.gap, false);
        for (const message of back.welcome.history) {
          seen.push(message.id);
          texts.push(message.text ?? "");
        }
        reader = back.client;
      }
      track(reader);
      await sending;
      while (texts.length < total) {
        const message = await nextChat(reader);
        seen.push(message.id);
        texts.push(message.text);
      }
      assert.deepEqual(
        texts,
        Array.from({ length: total }, (_, i) => `s${i}`),
        "no gaps, no duplicates, in order",
      );
      assert.equal(new Set(seen).size, seen.length);
    },
  );
});

Deno.test("session: a reconnect with its session takes its name back at once", async () => {
  await withServer({}, async (server, track) => {
    const watcher = track(
      (await enter(server.port, { username: "watcher" })).client,
    );
    const old = await enter(server.port, { username: "ann" });
    await watcher.expectPresence("join", "ann", 2);
    const refused = await rawUpgradeReply(server.port, "ann");
    assert.equal(refused.status, 409, "no session, no takeover");
    const wrong = await fetch(
      `${server.url}ws?username=ann&session=${"0".repeat(32)}`,
      { headers: { upgrade: "websocket" } },
    );
    assert.equal(wrong.status, 409, "a wrong session, no takeover");
    await wrong.body?.cancel();
    const again = await enter(server.port, {
      username: "ann",
      session: old.welcome.session,
    });
    track(again.client);
    const end = await old.client.closed;
    assert.equal(end.code, 4001);
    await watcher.expectPresence("leave", "ann", 1);
    await watcher.expectPresence("join", "ann", 2);
    assert.notEqual(again.welcome.session, old.welcome.session);
  });
});

// ------------------------------------------------------------- durability

Deno.test("history survives a restart, and a SIGKILL loses nothing acknowledged", async () => {
  const dir = await Deno.makeTempDir({ prefix: "hubchat_kv_" });
  const data = `${dir}/chat.kv`;
  try {
    // A clean restart, in process.
    const first = await startServer({ port: 0, data });
    const a = await enter(first.port, { username: "ann" });
    a.client.say("before restart");
    await nextChat(a.client);
    await a.client.close();
    await first.shutdown();
    const second = await startServer({ port: 0, data });
    const b = await enter(second.port, { username: "bob" });
    assert.deepEqual(b.welcome.history.map((m) => m.text), [
      "before restart",
    ]);
    await b.client.close();
    await second.shutdown();

    // A child server killed with SIGKILL mid-stream.
    const flags = ["--rate", "0", "--history", "1000"];
    const child = await ChildServer.start(flags, { data });
    const acknowledged: string[] = [];
    try {
      const sender = await enter(child.port, { username: "sender" });
      let sent = 0;
      while (acknowledged.length < 300) {
        // A window of 20 in flight: acknowledged = echoed back (stored).
        while (sent - acknowledged.length < 20) sender.client.say(`k${sent++}`);
        acknowledged.push((await nextChat(sender.client)).text);
      }
      await child.stop("SIGKILL");
      await sender.client.closed;
    } finally {
      await child.close();
    }
    const third = await startServer({ port: 0, data, historyLimit: 1000 });
    const c = await enter(third.port, { username: "carol" });
    const kept = new Set(c.welcome.history.map((m) => m.text));
    for (const text of acknowledged) assert.ok(kept.has(text), text);
    await c.client.close();
    await third.shutdown();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("history 0: nothing is stored; ids still increase; a resume knows what it missed", async () => {
  await withServer({ historyLimit: 0 }, async (server, track) => {
    const ann = track((await enter(server.port, { username: "ann" })).client);
    const ids: number[] = [];
    for (const text of ["one", "two", "three"]) {
      ann.say(text);
      ids.push((await nextChat(ann)).id);
    }
    assert.deepEqual(ids, [1, 2, 3]);
    const late = await enter(server.port, { username: "bob" });
    track(late.client);
    assert.deepEqual(late.welcome.history, []);
    assert.equal(late.welcome.gap, false);
    const behind = await enter(server.port, { username: "cy", since: "1" });
    track(behind.client);
    assert.deepEqual(behind.welcome.history, []);
    assert.equal(behind.welcome.gap, true, "two and three are gone for good");
    const current = await enter(server.port, { username: "dee", since: "3" });
    track(current.client);
    assert.equal(current.welcome.gap, false);
    // Direct messages go out at once too, to the two of them only.
    ann.send({ type: "message", text: "psst dee", to: "dee" });
    const toDee = await nextChat(current.client);
    assert.equal(toDee.id, 4);
    assert.equal(toDee.to, "dee");
    assert.deepEqual(await nextChat(ann), toDee);
    ann.say("everyone");
    for (const client of [late.client, behind.client]) {
      const seen = await nextChat(client);
      assert.equal(seen.text, "everyone", "the direct message skipped them");
      assert.equal(seen.id, 5);
    }
    const rooms = await (await fetch(`${server.url}rooms`)).json();
    assert.deepEqual(rooms, { rooms: [{ name: "lobby", online: 4 }] });
  });
});

Deno.test("a room its last member left mid-store is idle once the line is out", async () => {
  // A store that answers when told to, standing in for a slow KV commit.
  let finishStore = (_stored: StoredMessage): void => {};
  const history = {
    latestId: () => 0,
    recent: () => [],
    since: () => ({ messages: [], gap: false }),
    appendThen: (_room: string, _entry: unknown, done: AppendDone) => {
      finishStore = (stored) => done(stored);
    },
  } as unknown as History;
  const idle: Room[] = [];
  const room = new Room("dev", {
    engine: new LocalEngine({ history }),
    onIdle: (r) => idle.push(r),
  });
  const socket = { bufferedAmount: 0, send() {}, close() {} };
  const ann = new Client(socket, {
    username: "ann",
    flusher: room.hub.flusher,
  });
  assert.ok(room.reserve(ann));
  room.join(ann, { session: "s" });
  const saying = room.say(ann, "last words");
  room.leave(ann);
  assert.deepEqual(idle, [], "not idle while the line is being stored");
  assert.equal(room.idle, false);
  finishStore({
    type: "message",
    id: 1,
    room: "dev",
    username: "ann",
    text: "last words",
    timestamp: "2026-11-22T10:00:00.000Z",
  });
  await saying;
  assert.deepEqual(idle, [room]);
  room.close(1001, "done");
});

Deno.test("a room that throws while hearing a stored line harms nobody: the append resolves, the next line is heard, the bug is logged", async () => {
  const history = await History.open(":memory:");
  const logged: Record<string, unknown>[] = [];
  const engine = new LocalEngine({
    history,
    logger: {
      log(level, event, fields = {}): void {
        logged.push({ level, event, ...fields });
      },
    },
  });
  const heard: string[] = [];
  engine.open("dev", (event) => {
    if (event.kind !== "line") return;
    heard.push(event.line.text ?? "");
    if (event.line.text === "first") throw new Error("a bug in the room");
  });
  const entry = (text: string) => ({
    username: "ann",
    text,
    timestamp: "2026-11-22T10:00:00.000Z",
  });
  // Without the engine's catch, the store throws the error again on its
  // own and the process ends here.
  const first = await engine.append("dev", entry("first"));
  assert.equal(first.id, 1);
  const second = await engine.append("dev", entry("second"));
  assert.equal(second.id, 2);
  assert.deepEqual(heard, ["first", "second"]);
  assert.deepEqual(logged, [{
    level: "error",
    event: "room_listener_failed",
    room: "dev",
    kind: "line",
    cause: "a bug in the room",
  }]);
  await engine.shutdown();
  await history.close();
});

Deno.test("a reset tells each member the kept lines they may see: a direct line only to its two ends", async () => {
  const kept: StoredMessage[] = [
    {
      type: "message",
      id: 1,
      room: "dev",
      username: "ann",
      text: "for all",
      timestamp: "2026-11-22T10:00:00.000Z",
    },
    {
      type: "message",
      id: 2,
      room: "dev",
      username: "ann",
      to: "bob",
      text: "for bob",
      timestamp: "2026-11-22T10:00:01.000Z",
    },
  ];
  /** An engine whose store was reset, keeping `kept`; the test says when. */
  class ResetEngine extends LocalEngine {
    hear: (event: RoomEvent) => void = () => {};
    override open(room: string, listener: RoomListener): RoomSubscription {
      this.hear = listener;
      return super.open(room, listener);
    }
    override recent(): StoredMessage[] {
      return kept;
    }
  }
  const engine = new ResetEngine({ history: null });
  const room = new Room("dev", { engine });
  const heard = new Map<string, unknown[]>();
  for (const username of ["ann", "bob", "cy"]) {
    const socket = {
      bufferedAmount: 0,
      send(frame: string): void {
        for (const line of splitFrame(frame)) {
          const message = JSON.parse(line);
          if (message.type === "reset") {
            heard.set(username, message.history.map((m: ChatMessage) => m.id));
          }
        }
      },
      close(): void {},
    };
    const client = new Client(socket, { username, flusher: room.hub.flusher });
    assert.ok(room.reserve(client));
    room.join(client, { session: username });
  }
  engine.hear({ kind: "reset" });
  await new Promise((resolve) => setTimeout(resolve, 0));
  assert.deepEqual(Object.fromEntries(heard), {
    ann: [1, 2],
    bob: [1, 2],
    cy: [1],
  });
  room.close(1001, "done");
});

import assert from "node:assert/strict";
import {
  Admission,
  checkOrigin,
  clientAddress,
  ConnectionLimiter,
  DEFAULT_MAX_CONNECTIONS,
  DEFAULT_MAX_CONNECTIONS_PER_IP,
  identify,
  type OriginOptions,
  type Refusal,
  requestedRoom,
  type UpgradeContext,
  validateAllowedOrigins,
  type Verdict,
} from "./admission.ts";
import { importSecret, signToken } from "./auth.ts";
import { Client } from "./client.ts";
import { UpgradePacer } from "./pacer.ts";
import { Rooms } from "./room.ts";
import { ManualTurns } from "./testing/turns.ts";

const sameOriginOnly: OriginOptions = {
  allowedOrigins: [],
  requireOrigin: false,
};

function origin(
  originHeader: string | null,
  host: string | null,
  options: OriginOptions = sameOriginOnly,
): boolean {
  const headers = new Headers();
  if (originHeader !== null) headers.set("origin", originHeader);
  if (host !== null) headers.set("host", host);
  return checkOrigin(headers, options).ok;
}

Deno.test("origin: same host and port as the Host header", () => {
  assert.equal(origin("https://chat.example.com", "chat.example.com"), true);
  assert.equal(origin("http://chat.example.com", "chat.example.com"), true);
  assert.equal(
    origin("https://chat.example.com", "chat.example.com:443"),
    true,
  );
  assert.equal(origin("http://chat.example.com", "chat.example.com:80"), true);
  assert.equal(origin("http://127.0.0.1:8080", "127.0.0.1:8080"), true);
  assert.equal(origin("HTTP://Chat.Example.COM", "chat.EXAMPLE.com"), true);
  assert.equal(origin("http://[::1]:8080", "[::1]:8080"), true);
  assert.equal(
    origin("https://chat.example.com:443", "chat.example.com"),
    true,
  );

  assert.equal(origin("https://evil.example", "chat.example.com"), false);
  assert.equal(origin("http://127.0.0.1:9999", "127.0.0.1:8080"), false);
  assert.equal(origin("http://localhost:8080", "127.0.0.1:8080"), false);
  // Default ports differ by scheme.
  assert.equal(
    origin("https://chat.example.com", "chat.example.com:80"),
    false,
  );
  assert.equal(
    origin("http://chat.example.com", "chat.example.com:443"),
    false,
  );
  // Look-alikes and tricks.
  assert.equal(
    origin("https://chat.example.com.evil.example", "chat.example.com"),
    false,
  );
  assert.equal(origin("https://chat.example.com", null), false);
  assert.equal(origin("https://a.example", "a.example, b.example"), false);
  assert.equal(origin("null", "chat.example.com"), false);
  assert.equal(origin("garbage", "chat.example.com"), false);
  assert.equal(origin("file:///etc/passwd", "chat.example.com"), false);
});

Deno.test("origin: allowlist, wildcard and a missing header", () => {
  const options: OriginOptions = {
    allowedOrigins: ["https://chat.example.com", "http://localhost:5173"],
    requireOrigin: false,
  };
  assert.equal(
    origin("https://chat.example.com", "10.0.0.5:8080", options),
    true,
  );
  assert.equal(
    origin("https://CHAT.example.com:443", "internal", options),
    true,
  );
  assert.equal(origin("http://localhost:5173", "internal", options), true);
  assert.equal(origin("http://chat.example.com", "internal", options), false);
  assert.equal(origin("http://localhost:5174", "internal", options), false);

  const headers = new Headers({ origin: "https://evil.example", host: "x" });
  assert.deepEqual(checkOrigin(headers, options), {
    ok: false,
    reason:
      'origin "https://evil.example" is not allowed; expected the server\'s own host or one of https://chat.example.com, http://localhost:5173',
  });

  const any = { allowedOrigins: ["*"], requireOrigin: false };
  assert.equal(origin("https://evil.example", "x", any), true);
  assert.equal(origin("null", "x", any), true);

  assert.equal(origin(null, "x"), true);
  const strict = { allowedOrigins: [], requireOrigin: true };
  assert.deepEqual(checkOrigin(new Headers({ host: "x" }), strict), {
    ok: false,
    reason: "no Origin header; expected a browser's Origin",
  });
  assert.equal(
    origin(null, "x", { allowedOrigins: ["*"], requireOrigin: true }),
    false,
  );
  // A browser's own GET fetch carries no Origin, only Sec-Fetch-Site.
  const fetched = (site: string) =>
    checkOrigin(new Headers({ host: "x", "sec-fetch-site": site }), strict);
  assert.equal(fetched("same-origin").ok, true);
  assert.equal(fetched("same-site").ok, false);
  assert.equal(fetched("cross-site").ok, false);
});

Deno.test("origin: allowlist entries must be origins", () => {
  assert.deepEqual(
    validateAllowedOrigins([
      "https://Chat.Example.com:443",
      "*",
      "http://a:81/",
    ]),
    ["https://chat.example.com", "*", "http://a:81"],
  );
  for (const bad of ["chat.example.com", "https://a/path", "ftp://a", "null"]) {
    assert.throws(
      () => validateAllowedOrigins([bad]),
      /is not an origin; expected "\*" or scheme:\/\/host\[:port\]/,
      bad,
    );
  }
  assert.throws(
    () =>
      checkOrigin(new Headers({ origin: "https://a" }), {
        allowedOrigins: ["a.example"],
        requireOrigin: false,
      }),
    TypeError,
  );
});

function info(hostname: string): Deno.ServeHandlerInfo {
  return {
    remoteAddr: { transport: "tcp", hostname, port: 50000 },
    completed: Promise.resolve(),
  };
}

Deno.test("clientAddress: X-Forwarded-For only behind a trusted proxy", () => {
  const request = new Request("http://localhost/ws", {
    headers: { "x-forwarded-for": " 203.0.113.7 , 10.0.0.1" },
  });
  assert.equal(
    clientAddress(request, info("10.0.0.1"), { trustProxy: true }),
    "203.0.113.7",
  );
  assert.equal(
    clientAddress(request, info("10.0.0.1"), { trustProxy: false }),
    "10.0.0.1",
  );
  const v6 = new Request("http://localhost/", {
    headers: { "x-forwarded-for": "2001:DB8::1" },
  });
  assert.equal(
    clientAddress(v6, info("10.0.0.1"), { trustProxy: true }),
    "2001:db8::1",
  );
  // No header, or junk in it: the socket's address.
  const plain = new Request("http://localhost/");
  assert.equal(
    clientAddress(plain, info("127.0.0.1"), { trustProxy: true }),
    "127.0.0.1",
  );
  for (const junk of ["unknown", "", "1.2.3.4<script>", "x".repeat(100)]) {
    const request = new Request("http://localhost/", {
      headers: { "x-forwarded-for": junk },
    });
    assert.equal(
      clientAddress(request, info("10.0.0.1"), { trustProxy: true }),
      "10.0.0.1",
    );
  }
  const unix: Deno.ServeHandlerInfo = {
    remoteAddr: { transport: "unix", path: "/run/hubchat.sock" },
    completed: Promise.resolve(),
  };
  assert.equal(clientAddress(plain, unix, { trustProxy: false }), "unix");
});

Deno.test("connection limiter: caps, per address and in all", () => {
  const limiter = new ConnectionLimiter({ maxTotal: 3, maxPerIp: 2 });
  const a1 = limiter.tryAcquire("a");
  const a2 = limiter.tryAcquire("a");
  const a3 = limiter.tryAcquire("a");
  assert.equal(a1.ok && a2.ok, true);
  assert.deepEqual(a3.ok ? null : a3.limit, "per_ip");
  const b1 = limiter.tryAcquire("b");
  assert.equal(b1.ok, true);
  const c1 = limiter.tryAcquire("c");
  assert.equal(c1.ok ? null : c1.limit, "total");
  assert.match(c1.ok ? "" : c1.reason, /server is full \(3 connections\)/);
  assert.equal(limiter.total, 3);
  assert.equal(limiter.countFor("a"), 2);

  // Releasing twice is harmless: counts never go negative.
  if (!a1.ok || !b1.ok) throw new Error("unreachable");
  a1.release();
  a1.release();
  assert.equal(limiter.total, 2);
  assert.equal(limiter.countFor("a"), 1);
  b1.release();
  b1.release();
  assert.equal(limiter.countFor("b"), 0);
  assert.equal(limiter.total, 1);
  assert.equal(limiter.tryAcquire("c").ok, true);
});

Deno.test("connection limiter: defaults and bad options", () => {
  const limiter = new ConnectionLimiter();
  assert.equal(limiter.maxTotal, DEFAULT_MAX_CONNECTIONS);
  assert.equal(limiter.maxPerIp, DEFAULT_MAX_CONNECTIONS_PER_IP);
  assert.throws(
    () => new ConnectionLimiter({ maxTotal: -1 }),
    /maxTotal is -1/,
  );
  assert.throws(() => new ConnectionLimiter({ maxPerIp: 2.5 }), /whole number/);
});

Deno.test("connection limiter: a cap of 0 is no cap", () => {
  const limiter = new ConnectionLimiter({ maxTotal: 0, maxPerIp: 0 });
  const slots = Array.from({ length: 50 }, () => limiter.tryAcquire("a"));
  assert.ok(slots.every((slot) => slot.ok));
  assert.equal(limiter.total, 50);
  const capped = new ConnectionLimiter({ maxTotal: 0, maxPerIp: 1 });
  assert.equal(capped.tryAcquire("a").ok, true);
  assert.equal(capped.tryAcquire("a").ok, false, "the other cap still holds");
});

// ------------------------------------------------- admission, no socket

const SECRET = "a test secret of at least 32 bytes, no less";

/** A socket that remembers its close, for the holders of names. */
function quietSocket() {
  const socket = {
    bufferedAmount: 0,
    closedWith: null as { code?: number; reason?: string } | null,
    send(): void {},
    close(code?: number, reason?: string): void {
      socket.closedWith = { code, reason };
    },
  };
  return socket;
}

/** An upgrade request to `/ws` with that query and headers. */
function upgradeRequest(
  query: string,
  headers: Record<string, string> = {},
  signal?: AbortSignal,
): [Request, URLSearchParams] {
  const request = new Request(`http://127.0.0.1:8080/ws?${query}`, {
    headers: { upgrade: "websocket", host: "127.0.0.1:8080", ...headers },
    signal,
  });
  return [request, new URL(request.url).searchParams];
}

/** Where an upgrade comes from: 192.0.2.1 and no extra headers by default. */
interface From {
  ip?: string;
  headers?: Record<string, string>;
  /** Aborts when the peer goes away, as a served request's does. */
  signal?: AbortSignal;
}

/** An upgrade request with that query, and its context, as the route gives them. */
function upgrade(query: string, from: From): [Request, UpgradeContext] {
  const [request, params] = upgradeRequest(query, from.headers, from.signal);
  return [request, { ip: from.ip ?? "192.0.2.1", query: params }];
}

/** Admits an upgrade with that query. */
function admit(admission: Admission, query: string, from: From = {}) {
  return admission.admit(...upgrade(query, from));
}

/** Asks what an upgrade with that query would get (the dry run). */
function check(admission: Admission, query: string, from: From = {}) {
  return admission.check(...upgrade(query, from));
}

function refusalOf<T>(verdict: Verdict<T>): Refusal {
  assert.ok(!verdict.ok, "expected a refusal");
  return verdict.refusal;
}

function valueOf<T>(verdict: Verdict<T>): T {
  if (!verdict.ok) {
    throw new Error(`refused: ${JSON.stringify(verdict.refusal)}`);
  }
  return verdict.value;
}

Deno.test("requestedRoom: the room (lobby by default) and the resume point", () => {
  const read = (query: string) => requestedRoom(new URLSearchParams(query));
  assert.deepEqual(valueOf(read("")), { room: "lobby", since: undefined });
  assert.deepEqual(valueOf(read("room=")), { room: "lobby", since: undefined });
  assert.deepEqual(valueOf(read("room=%20dev%20&since=")), {
    room: "dev",
    since: undefined,
  });
  assert.deepEqual(valueOf(read("since=42")), { room: "lobby", since: 42 });
  const badRoom = refusalOf(read("room=a%3Cb"));
  assert.equal(badRoom.status, 400);
  assert.equal(badRoom.reason, "invalid_room");
  assert.equal(badRoom.error, "invalid_room");
  for (const since of ["-1", "1.5", "x", "9".repeat(16)]) {
    const refusal = refusalOf(read(`since=${since}`));
    assert.deepEqual(
      [refusal.status, refusal.reason, refusal.error],
      [400, "invalid_since", "invalid_since"],
      since,
    );
  }
});

Deno.test("identify: a name, a guest, or 400 without tokens", async () => {
  const who = (query: string) =>
    identify(new URLSearchParams(query), { token: null, authKey: null });
  assert.equal(valueOf(await who("username=%20ann%20")), "ann");
  assert.equal(valueOf(await who("")), null);
  assert.equal(valueOf(await who("username=")), null);
  assert.equal(valueOf(await who("username=%20%20")), null);
  const refusal = refusalOf(await who("username=a%3Cb"));
  assert.deepEqual(
    [refusal.status, refusal.reason, refusal.error],
    [400, "invalid_username", "invalid_username"],
  );
});

Deno.test("identify: with a key, the token names the user, or 401", async () => {
  const authKey = await importSecret(SECRET);
  const query = new URLSearchParams("username=mallory");
  const token = await signToken({ sub: "bob" }, authKey);
  assert.equal(valueOf(await identify(query, { token, authKey })), "bob");

  const missing = refusalOf(await identify(query, { token: null, authKey }));
  assert.deepEqual(
    [missing.status, missing.reason, missing.error],
    [401, "unauthorized", "unauthorized"],
  );
  assert.match(missing.text, /a token is required/);
  const forged = refusalOf(
    await identify(query, { token: token.slice(0, -2) + "xx", authKey }),
  );
  assert.equal(forged.status, 401);
  const badName = await signToken({ sub: "a<b" }, authKey);
  const refusal = refusalOf(
    await identify(query, { token: badName, authKey }),
  );
  assert.equal(refusal.status, 401);
  assert.match(refusal.text, /the token's subject is not a valid username/);
});

Deno.test("admission: a peer gets its name, room, resume point and subprotocol", async () => {
  const rooms = new Rooms();
  const admission = new Admission({ rooms });
  const admitted = valueOf(
    await admit(admission, "username=ann&room=dev&since=7", {
      headers: { "sec-websocket-protocol": "hubchat" },
    }),
  );
  assert.equal(admitted.username, "ann");
  assert.equal(admitted.room, rooms.get("dev"));
  assert.equal(admitted.since, 7);
  assert.equal(admitted.ip, "192.0.2.1");
  assert.equal(admitted.protocol, "hubchat");
  // A failed upgrade gives the room back: nobody is in it, so it goes.
  admitted.cancel();
  assert.equal(rooms.get("dev"), undefined);

  const guest = valueOf(await admit(admission, ""));
  assert.match(guest.username, /^guest-[0-9a-f]{4}$/);
  assert.equal(guest.protocol, undefined);
  guest.cancel();
  rooms.close(1001, "done");
});

Deno.test("admission: refused while stopping, or from another origin", async () => {
  const rooms = new Rooms();
  let stopping = false;
  const admission = new Admission({ rooms, isShuttingDown: () => stopping });
  const foreign = refusalOf(
    await admit(admission, "username=ann", {
      headers: { origin: "https://evil.example" },
    }),
  );
  assert.deepEqual([foreign.status, foreign.reason], [403, "origin"]);
  assert.match(foreign.text, /origin "https:\/\/evil.example" is not allowed/);
  assert.equal(foreign.error, undefined, "a plain-text answer");
  const own = valueOf(
    await admit(admission, "username=ann", {
      headers: { origin: "http://127.0.0.1:8080" },
    }),
  );
  own.cancel();
  stopping = true;
  assert.deepEqual(refusalOf(await admit(admission, "username=ann")), {
    status: 503,
    reason: "shutdown",
    text: "server shutting down",
  });
});

/**
 * An admission whose lobby has "ann" held by a connection with the session
 * "s3cret", whose socket remembers how it was closed.
 */
function annHoldsTheLobby() {
  const rooms = new Rooms();
  const sessions = new Map<Client, string>();
  const admission = new Admission({
    rooms,
    sessionOf: (client) => sessions.get(client),
  });
  const lobby = rooms.open("lobby")!;
  const socket = quietSocket();
  // As its connection does: the holder leaves the room when it ends.
  const holder = new Client(socket, {
    username: "ann",
    flusher: rooms.flusher,
    onEnd: (client) => lobby.leave(client),
  });
  assert.ok(lobby.reserve(holder));
  sessions.set(holder, "s3cret");
  return { rooms, admission, lobby, socket, holder };
}

Deno.test("admission: a name online in the room is 409, unless its session takes it over", async () => {
  const { rooms, admission, lobby, socket, holder } = annHoldsTheLobby();

  for (const query of ["username=ann", "username=ann&session=guess"]) {
    const taken = refusalOf(await admit(admission, query));
    assert.deepEqual(
      [taken.status, taken.reason, taken.error],
      [409, "username_taken", "username_taken"],
    );
    assert.equal(
      taken.text,
      '"ann" is already online in #lobby; choose another name',
    );
  }
  assert.equal(socket.closedWith, null);
  // The same name in another room is free.
  valueOf(await admit(admission, "username=ann&room=dev")).cancel();

  // The holder's own session: the old connection is closed, the name free.
  lobby.join(holder, { session: "s3cret" });
  const back = valueOf(await admit(admission, "username=ann&session=s3cret"));
  assert.deepEqual(socket.closedWith, {
    code: 4001,
    reason: "replaced by a newer connection",
  });
  assert.equal(back.username, "ann");
  back.cancel();
  rooms.close(1001, "done");
});

Deno.test("admission: the room cap is 503; the connection caps 503 and 429", async () => {
  const rooms = new Rooms({ maxRooms: 1 });
  const admission = new Admission({
    rooms,
    limiter: new ConnectionLimiter({ maxTotal: 2, maxPerIp: 1 }),
  });
  const first = valueOf(await admit(admission, "username=ann"));
  const full = refusalOf(await admit(admission, "username=bob&room=dev"));
  assert.deepEqual([full.status, full.reason], [503, "room_limit"]);

  const again = refusalOf(await admit(admission, "username=bob"));
  assert.deepEqual([again.status, again.reason], [429, "limit_per_ip"]);
  const second = valueOf(
    await admit(admission, "username=bob", { ip: "192.0.2.2" }),
  );
  const total = refusalOf(
    await admit(admission, "username=cy", { ip: "192.0.2.3" }),
  );
  assert.deepEqual([total.status, total.reason], [503, "limit_total"]);
  // A slot comes back when its holder releases it, once however often.
  first.release();
  first.release();
  const third = valueOf(
    await admit(admission, "username=cy", { ip: "192.0.2.3" }),
  );
  assert.deepEqual(
    refusalOf(await admit(admission, "username=dee", { ip: "192.0.2.4" }))
      .reason,
    "limit_total",
  );
  second.cancel();
  third.cancel();
  rooms.close(1001, "done");
});

Deno.test("admission: check refuses as admit does, and keeps nothing", async () => {
  const rooms = new Rooms({ maxRooms: 2 });
  const limiter = new ConnectionLimiter({ maxTotal: 3, maxPerIp: 1 });
  const admission = new Admission({ rooms, limiter });
  const cases: [string, Record<string, string>][] = [
    ["username=a<b", {}],
    ["room=a/b", {}],
    ["since=-1", {}],
    ["username=ann", { origin: "https://evil.example" }],
  ];
  for (const [query, headers] of cases) {
    const dry = refusalOf(await check(admission, query, { headers }));
    const real = refusalOf(await admit(admission, query, { headers }));
    assert.deepEqual(dry, real, query);
  }

  // Admitted: nothing held, no room left open.
  assert.deepEqual(await check(admission, "username=ann&room=dev"), {
    ok: true,
    value: undefined,
  });
  assert.equal(limiter.total, 0);
  assert.equal(rooms.get("dev"), undefined);

  // Refused as the real upgrade is, from the same state.
  const ann = valueOf(await admit(admission, "username=ann"));
  // As the upgrade does: the admitted peer holds its name in its room.
  const annClient = new Client(quietSocket(), {
    username: "ann",
    flusher: rooms.flusher,
  });
  assert.ok(ann.room.reserve(annClient));
  const sameIp = refusalOf(await check(admission, "username=bob"));
  assert.deepEqual([sameIp.status, sameIp.reason], [429, "limit_per_ip"]);
  const taken = refusalOf(
    await check(admission, "username=ann", { ip: "192.0.2.2" }),
  );
  assert.deepEqual([taken.status, taken.error], [409, "username_taken"]);
  assert.equal(
    taken.text,
    '"ann" is already online in #lobby; choose another name',
  );
  const other = valueOf(
    await admit(admission, "username=bo&room=dev", { ip: "192.0.2.3" }),
  );
  const roomCap = refusalOf(
    await check(admission, "username=cy&room=ops", { ip: "192.0.2.4" }),
  );
  assert.deepEqual([roomCap.status, roomCap.reason], [503, "room_limit"]);
  const third = valueOf(
    await admit(admission, "username=cy", { ip: "192.0.2.5" }),
  );
  const full = refusalOf(
    await check(admission, "username=dee", { ip: "192.0.2.6" }),
  );
  assert.deepEqual([full.status, full.reason], [503, "limit_total"]);
  assert.equal(limiter.total, 3, "check took no slot");
  for (const admitted of [ann, other, third]) admitted.cancel();
  rooms.close(1001, "done");
});

Deno.test("admission: check with the holder's session says yes and closes nothing", async () => {
  const { rooms, admission, lobby, socket, holder } = annHoldsTheLobby();

  assert.equal(
    (await check(admission, "username=ann&session=s3cret")).ok,
    true,
  );
  assert.equal(socket.closedWith, null, "the holder was left open");
  assert.equal(lobby.holder("ann"), holder);
  const guess = refusalOf(await check(admission, "username=ann&session=nope"));
  assert.equal(guess.status, 409);
  // The real upgrade with that session does take the name over.
  valueOf(await admit(admission, "username=ann&session=s3cret")).cancel();
  assert.deepEqual(socket.closedWith, {
    code: 4001,
    reason: "replaced by a newer connection",
  });
  rooms.close(1001, "done");
});

Deno.test("admission: a peer that left before its upgrade is 499, and nothing is held", async () => {
  const rooms = new Rooms();
  const limiter = new ConnectionLimiter();
  const admission = new Admission({ rooms, limiter });
  const gone = refusalOf(
    await admit(admission, "username=ann", { signal: AbortSignal.abort() }),
  );
  assert.deepEqual([gone.status, gone.reason], [499, "peer_gone"]);
  assert.equal(limiter.total, 0);
  assert.equal(rooms.get("lobby"), undefined, "no room left open");
  // The dry run asks for nobody's socket: a gone peer's answer is moot.
  assert.equal(
    (await check(admission, "username=ann", { signal: AbortSignal.abort() }))
      .ok,
    true,
  );
  valueOf(await admit(admission, "username=ann")).cancel();
  rooms.close(1001, "done");
});

Deno.test("admission: with a pacer, each waits its turn; a full line is 503 or 429, a peer gone 499, a closed one 503", async () => {
  const rooms = new Rooms();
  const turns = new ManualTurns();
  // One a turn (the default), two waiting, one of them per address.
  const pacer = new UpgradePacer({
    maxWaiting: 2,
    maxWaitingPerKey: 1,
    schedule: turns.schedule,
  });
  const admission = new Admission({ rooms, pacer });
  valueOf(await admit(admission, "username=ann")).cancel();
  const bob = admit(admission, "username=bob", { ip: "192.0.2.2" });
  const again = await admit(admission, "username=cy", { ip: "192.0.2.2" });
  const dee = admit(admission, "username=dee", { ip: "192.0.2.3" });
  const full = await admit(admission, "username=eve", { ip: "192.0.2.4" });
  assert.deepEqual(
    [again, full].map(refusalOf).map((no) => [no.status, no.reason, no.text]),
    [
      [
        429,
        "limit_per_ip",
        "too many connections from your address are waiting to be admitted (1); wait for them before opening more",
      ],
      [
        503,
        "limit_waiting",
        "too many connections are waiting to be admitted (2); try again shortly",
      ],
    ],
  );
  turns.end();
  const admitted = valueOf(await bob);
  assert.equal(admitted.username, "bob");
  admitted.cancel();
  // dee waits for the next turn; fay behind her, until she leaves.
  const leaving = new AbortController();
  const fay = admit(admission, "username=fay", {
    ip: "192.0.2.5",
    signal: leaving.signal,
  });
  assert.equal(pacer.waiting, 2);
  leaving.abort();
  const gone = refusalOf(await fay);
  assert.deepEqual([gone.status, gone.reason], [499, "peer_gone"]);
  assert.equal(pacer.waiting, 1);
  pacer.close();
  const closed = refusalOf(await dee);
  assert.deepEqual(
    [closed.status, closed.reason, closed.text],
    [503, "shutdown", "server shutting down"],
  );
  assert.equal(turns.scheduled, 0);
  rooms.close(1001, "done");
});

/**
 * `GET /ws` without an Upgrade header, over real HTTP: it answers what the
 * upgrade with the same query and headers would get (the page asks this way
 * after a handshake that never opened, since a browser cannot read the
 * status of a refused one), and it reserves and counts nothing.
 *
 * @module
 */

import assert from "node:assert/strict";
import { importSecret, signToken } from "./auth.ts";
import { ChatClient } from "./testing/chat_client.ts";
import { upgradeReplyAt } from "./testing/raw_websocket.ts";
import { withServer } from "./testing/server.ts";
import { parsePrometheusText } from "./tools/metrics_reader.ts";

/** An answer as the test compares it: status, media type, body. */
interface Answer {
  status: number;
  type: string;
  body: string;
}

/** The media type of a content-type header, without its parameters. */
function mediaType(headers: Headers): string {
  return (headers.get("content-type") ?? "").split(";")[0].trim();
}

/** `GET path` without an upgrade, with these headers. */
async function ask(
  port: number,
  path: string,
  headers: Record<string, string> = {},
): Promise<Answer> {
  const response = await fetch(`http://127.0.0.1:${port}${path}`, {
    headers,
  });
  return {
    status: response.status,
    type: mediaType(response.headers),
    body: await response.text(),
  };
}

/** The same request as a WebSocket upgrade, over raw TCP. */
async function upgradeAnswer(
  port: number,
  path: string,
  headers: Record<string, string> = {},
): Promise<Answer> {
  const lines = Object.entries(headers).map(([name, value]) =>
    `${name}: ${value}`
  );
  const reply = await upgradeReplyAt(port, path, lines);
  return {
    status: reply.status,
    type: mediaType(reply.headers),
    body: reply.body,
  };
}

/** Asks both ways and checks the dry run gave the upgrade's refusal. */
async function assertSameRefusal(
  port: number,
  path: string,
  headers: Record<string, string> = {},
): Promise<Answer> {
  const dry = await ask(port, path, headers);
  const real = await upgradeAnswer(port, path, headers);
  assert.ok(
    real.status >= 400,
    `${path}: the upgrade was refused: ${JSON.stringify(real)}`,
  );
  assert.deepEqual(dry, real, `${path} ${JSON.stringify(headers)}`);
  return dry;
}

/** The samples of one metric in `/metrics`, as `labels → value`. */
async function metric(
  port: number,
  name: string,
): Promise<Map<string, number>> {
  const response = await fetch(`http://127.0.0.1:${port}/metrics`);
  assert.equal(response.status, 200);
  const samples = new Map<string, number>();
  for (const sample of parsePrometheusText(await response.text())) {
    if (sample.name === name) {
      samples.set(JSON.stringify(sample.labels), sample.value);
    }
  }
  return samples;
}

Deno.test("dry run: bad names, rooms, resume points and origins get the upgrade's 400 and 403", async () => {
  await withServer({}, async (server) => {
    for (
      const [path, code] of [
        ["/ws?username=a%3Cb", "invalid_username"],
        ["/ws?username=ann&room=a%2Fb", "invalid_room"],
        ["/ws?username=ann&since=-1", "invalid_since"],
      ]
    ) {
      const answer = await assertSameRefusal(server.port, path);
      assert.equal(answer.status, 400, path);
      assert.equal(answer.type, "application/json", path);
      assert.equal(JSON.parse(answer.body).error, code, path);
    }
    const foreign = await assertSameRefusal(server.port, "/ws?username=ann", {
      origin: "https://evil.example",
    });
    assert.equal(foreign.status, 403);
    assert.equal(foreign.type, "text/plain");
    assert.match(
      foreign.body,
      /origin "https:\/\/evil.example" is not allowed/,
    );
  });
});

Deno.test("dry run: a name online in the room gets the upgrade's 409 and says so plainly", async () => {
  await withServer({}, async (server, track) => {
    const erin = track(await ChatClient.join(server.port, "erin"));
    const answer = await assertSameRefusal(server.port, "/ws?username=erin");
    assert.equal(answer.status, 409);
    assert.equal(answer.type, "application/json");
    assert.deepEqual(JSON.parse(answer.body), {
      error: "username_taken",
      message: '"erin" is already online in #lobby; choose another name',
    });
    // Free in another room, and for erin's own session (a takeover), which
    // the dry run does not carry out: erin stays connected.
    assert.equal(
      (await ask(server.port, "/ws?username=erin&room=dev")).status,
      426,
    );
    const session = erin.welcome!.session;
    const mine = await ask(server.port, `/ws?username=erin&session=${session}`);
    assert.equal(mine.status, 426);
    erin.say("still here");
    await erin.expectMessage("erin", "still here");
    assert.equal(
      (await ask(server.port, "/ws?username=erin&session=guess")).status,
      409,
    );
  });
});

Deno.test("dry run: a missing or forged token gets the upgrade's 401", async () => {
  const secret = "a test secret of at least 32 bytes, no less";
  const key = await importSecret(secret);
  const now = Math.floor(Date.now() / 1000);
  const token = await signToken({ sub: "ann", exp: now + 60 }, key);
  await withServer({ authSecret: secret }, async (server) => {
    for (const path of ["/ws", "/ws?token=not.a.token"]) {
      const answer = await assertSameRefusal(server.port, path);
      assert.equal(answer.status, 401, path);
      assert.equal(JSON.parse(answer.body).error, "unauthorized", path);
    }
    assert.equal((await ask(server.port, `/ws?token=${token}`)).status, 426);
  });
});

Deno.test("dry run: full caps get the upgrade's 429 and 503", async () => {
  await withServer({ maxConnectionsPerIp: 1 }, async (server, track) => {
    track(await ChatClient.join(server.port, "ann"));
    const answer = await assertSameRefusal(server.port, "/ws?username=bob");
    assert.equal(answer.status, 429);
    assert.match(answer.body, /too many connections from your address/);
  });
  await withServer(
    { maxConnections: 1, maxConnectionsPerIp: 0 },
    async (server, track) => {
      track(await ChatClient.join(server.port, "ann"));
      const answer = await assertSameRefusal(server.port, "/ws?username=bob");
      assert.equal(answer.status, 503);
      assert.match(answer.body, /server is full/);
    },
  );
  await withServer({ maxRooms: 1 }, async (server, track) => {
    track(await ChatClient.join(server.port, "ann"));
    const answer = await assertSameRefusal(
      server.port,
      "/ws?username=bob&room=dev",
    );
    assert.equal(answer.status, 503);
    assert.match(answer.body, /as many rooms open as it allows/);
  });
});

Deno.test("dry run: with --require-origin, a browser's same-origin fetch counts as the page's own", async () => {
  await withServer({ requireOrigin: true }, async (server) => {
    const answer = await assertSameRefusal(server.port, "/ws?username=ann");
    assert.equal(answer.status, 403);
    assert.match(answer.body, /no Origin header/);
    const fromPage = { "sec-fetch-site": "same-origin" };
    assert.equal(
      (await ask(server.port, "/ws?username=ann", fromPage)).status,
      426,
    );
    const crossSite = { "sec-fetch-site": "cross-site" };
    assert.equal(
      (await ask(server.port, "/ws?username=ann", crossSite)).status,
      403,
    );
  });
});

Deno.test("dry run: it reserves nothing and counts as no connection and no rejected upgrade", async () => {
  await withServer({ maxConnectionsPerIp: 1 }, async (server, track) => {
    // With one connection allowed, a dry run that held a slot, a name or a
    // room would show in the next answer.
    for (let i = 0; i < 3; i++) {
      const answer = await ask(server.port, "/ws?username=zed&room=quiet");
      assert.equal(answer.status, 426, `dry run ${i + 1}`);
      assert.match(answer.body, /would be admitted/);
    }
    const rooms = await (await fetch(`${server.url}rooms`)).json();
    assert.deepEqual(rooms, { rooms: [] }, "no room was left open");

    const ann = track(await ChatClient.join(server.port, "ann"));
    assert.equal((await ask(server.port, "/ws?username=ann")).status, 409);
    assert.equal((await ask(server.port, "/ws?username=bob")).status, 429);
    assert.equal((await ask(server.port, "/ws?username=a%3Cb")).status, 400);

    const accepted = await metric(server.port, "hubchat_connections_total");
    assert.deepEqual([...accepted.values()], [1], "only ann's connection");
    const rejected = await metric(
      server.port,
      "hubchat_rejected_upgrades_total",
    );
    assert.deepEqual([...rejected], [], "no dry run counted as a rejection");

    // The real refused upgrade is counted, as before.
    assert.equal(
      (await upgradeAnswer(server.port, "/ws?username=ann")).status,
      409,
    );
    const after = await metric(server.port, "hubchat_rejected_upgrades_total");
    assert.deepEqual([...after], [['{"reason":"username_taken"}', 1]]);

    // ann's slot is the only one held: once she leaves, zed gets in.
    await ann.close();
    track(await ChatClient.join(server.port, "zed"));
  });
});

/**
 * Shared files over real HTTP and real sockets: upload, the `file` line,
 * download (byte for byte), who may read a direct message's file, what is
 * refused and how early (a gigabyte offered to a child server whose memory
 * is watched), files served so that no script can run, names that are
 * only text, a crash mid-upload, quotas, and two nodes sharing one
 * directory through Redis.
 *
 * @module
 */

import assert from "node:assert/strict";
import {
  type FileInfo,
  type FileMessage,
  parseClientMessage,
  type ServerMessage,
} from "./protocol.ts";
import { ChatClient } from "./testing/chat_client.ts";
import { ChildServer } from "./testing/child_server.ts";
import { offerUpload } from "./testing/raw_upload.ts";
import { RedisServer } from "./testing/redis_server.ts";
import { withServer } from "./testing/server.ts";
import { withTempDir } from "./testing/temp_dir.ts";
import { waitUntil } from "./testing/wait.ts";
import { sleep } from "./tools/wait.ts";

const PNG_HEAD = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];

/** `size` random bytes, starting with `head`. */
function randomBytes(
  size: number,
  head: number[] = [],
): Uint8Array<ArrayBuffer> {
  const bytes = new Uint8Array(size);
  for (let at = 0; at < size; at += 65536) {
    crypto.getRandomValues(bytes.subarray(at, Math.min(size, at + 65536)));
  }
  bytes.set(head.slice(0, size));
  return bytes;
}

/** What an upload is sent with. */
interface UploadOptions {
  room?: string;
  name?: string;
  type?: string;
  session?: string;
  headers?: Record<string, string>;
}

/** `POST /files?room=…` with the body, as the page sends it. */
function upload(
  base: string,
  body: BodyInit,
  options: UploadOptions,
): Promise<Response> {
  const headers: Record<string, string> = { ...options.headers };
  if (options.session !== undefined) {
    headers.authorization = `Bearer ${options.session}`;
  }
  if (options.name !== undefined) {
    headers["x-filename"] = encodeURIComponent(options.name);
  }
  if (options.type !== undefined) headers["content-type"] = options.type;
  return fetch(
    `${base}files?room=${encodeURIComponent(options.room ?? "lobby")}`,
    { method: "POST", body, headers },
  );
}

/** Uploads and checks the 201; returns what it answered. */
async function uploaded(
  base: string,
  body: BodyInit,
  options: UploadOptions,
): Promise<FileInfo> {
  const response = await upload(base, body, options);
  const text = await response.text();
  assert.equal(response.status, 201, text);
  return JSON.parse(text) as FileInfo;
}

/** The next message of that type, skipping others (presence, typing). */
async function nextOf(
  client: ChatClient,
  type: string,
): Promise<ServerMessage> {
  for (;;) {
    const message = await client.next(`a ${type}`);
    if (message.type === type) return message;
  }
}

function sessionOf(client: ChatClient): string {
  return client.welcome!.session;
}

/** GET (or HEAD) a file, with a session if given. */
function download(
  base: string,
  url: string,
  options: {
    session?: string;
    headers?: Record<string, string>;
    method?: string;
  } = {},
): Promise<Response> {
  const headers: Record<string, string> = { ...options.headers };
  if (options.session !== undefined) {
    headers.authorization = `Bearer ${options.session}`;
  }
  return fetch(new URL(url, base), {
    headers,
    method: options.method ?? "GET",
  });
}

async function bytesOf(response: Response): Promise<Uint8Array> {
  return new Uint8Array(await response.arrayBuffer());
}

/** Lists a directory's entries' names, sorted; [] when it is missing. */
async function list(dir: string): Promise<string[]> {
  const names: string[] = [];
  try {
    for await (const entry of Deno.readDir(dir)) names.push(entry.name);
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  }
  return names.sort();
}

// ------------------------------------------------------------------ tests

Deno.test("the file command: an id, an optional caption and recipient", () => {
  const id = "0123456789abcdef0123456789abcdef";
  assert.deepEqual(parseClientMessage(JSON.stringify({ type: "file", id })), {
    ok: true,
    value: { type: "file", id },
  });
  assert.deepEqual(
    parseClientMessage(
      JSON.stringify({ type: "file", id, text: " look ", to: " bob " }),
    ),
    { ok: true, value: { type: "file", id, text: "look", to: "bob" } },
  );
  // A blank caption is no caption.
  assert.deepEqual(
    parseClientMessage(JSON.stringify({ type: "file", id, text: "  " })),
    { ok: true, value: { type: "file", id } },
  );
  const refused: [unknown, string][] = [
    [{ type: "file" }, "invalid_message"],
    [{ type: "file", id: 7 }, "invalid_message"],
    [{ type: "file", id: "x".repeat(65) }, "invalid_message"],
    [{ type: "file", id, text: 5 }, "invalid_message"],
    [{ type: "file", id, text: "x".repeat(2001) }, "text_too_long"],
    [{ type: "file", id, to: "<bob>" }, "unknown_recipient"],
  ];
  for (const [command, code] of refused) {
    const result = parseClientMessage(JSON.stringify(command));
    assert.equal(result.ok ? "ok" : result.code, code, JSON.stringify(command));
  }
});

Deno.test("a file goes up, its line to the room, and comes down byte for byte", async () => {
  await withTempDir(async (dir) => {
    await withServer(
      { files: dir, historyLimit: 10 },
      async (server, track) => {
        const ann = track(await ChatClient.join(server.port, "ann"));
        const bob = track(await ChatClient.join(server.port, "bob"));
        await ann.expectPresence("join", "bob");
        const bytes = randomBytes(3 * 1024 * 1024 + 17, PNG_HEAD);
        const info = await uploaded(server.url, bytes, {
          session: sessionOf(ann),
          name: "holiday.png",
          type: "image/png",
        });
        assert.match(info.id, /^[0-9a-f]{32}$/);
        assert.deepEqual(info, {
          id: info.id,
          url: `/files/${info.id}`,
          name: "holiday.png",
          size: bytes.length,
          type: "image/png",
        });
        ann.send({ type: "file", id: info.id, text: "  the beach  " });
        const lines = [await nextOf(ann, "file"), await nextOf(bob, "file")];
        for (const line of lines as FileMessage[]) {
          assert.deepEqual(Object.keys(line), [
            "type",
            "id",
            "room",
            "username",
            "file",
            "timestamp",
            "text",
          ]);
          assert.equal(line.username, "ann");
          assert.equal(line.room, "lobby");
          assert.equal(line.text, "the beach");
          assert.deepEqual(line.file, info);
        }
        const response = await download(server.url, info.url);
        assert.equal(response.status, 200);
        assert.deepEqual(await bytesOf(response), bytes);
        const headers = response.headers;
        assert.equal(headers.get("content-type"), "image/png");
        assert.equal(headers.get("content-length"), String(bytes.length));
        assert.match(headers.get("etag")!, /^"[0-9a-f]{64}"$/);
        assert.match(headers.get("cache-control")!, /private/);
        assert.match(headers.get("cache-control")!, /immutable/);
        assert.equal(headers.get("x-content-type-options"), "nosniff");
        assert.equal(headers.get("content-security-policy"), "sandbox");
        assert.match(headers.get("content-disposition")!, /^inline; /);
        // A range, a revalidation, HEAD.
        const part = await download(server.url, info.url, {
          headers: { range: "bytes=100-199" },
        });
        assert.equal(part.status, 206);
        assert.equal(
          part.headers.get("content-range"),
          `bytes 100-199/${bytes.length}`,
        );
        assert.deepEqual(await bytesOf(part), bytes.subarray(100, 200));
        const tail = await download(server.url, info.url, {
          headers: { range: "bytes=-5" },
        });
        assert.deepEqual(await bytesOf(tail), bytes.subarray(bytes.length - 5));
        const beyond = await download(server.url, info.url, {
          headers: { range: `bytes=${bytes.length}-` },
        });
        assert.equal(beyond.status, 416);
        await beyond.body?.cancel();
        const again = await download(server.url, info.url, {
          headers: { "if-none-match": headers.get("etag")! },
        });
        assert.equal(again.status, 304);
        await again.body?.cancel();
        const head = await download(server.url, info.url, { method: "HEAD" });
        assert.equal(head.status, 200);
        assert.equal(head.headers.get("content-length"), String(bytes.length));
        // History and resume carry the line like any other.
        const cy = track(
          await ChatClient.enter(server.port, { username: "cy" }),
        );
        assert.deepEqual(cy.welcome!.history, [lines[0]]);
        const resumed = track(
          await ChatClient.enter(server.port, { username: "dee", since: "0" }),
        );
        assert.deepEqual(resumed.welcome!.history, [lines[0]]);
      },
    );
  });
});

Deno.test("the same content uploaded twice is stored once; each upload keeps its name", async () => {
  await withTempDir(async (dir) => {
    await withServer({ files: dir }, async (server, track) => {
      const ann = track(await ChatClient.join(server.port, "ann"));
      const bytes = randomBytes(50_000);
      const first = await uploaded(server.url, bytes, {
        session: sessionOf(ann),
        name: "a.bin",
      });
      const second = await uploaded(server.url, bytes, {
        session: sessionOf(ann),
        name: "b.bin",
      });
      assert.notEqual(first.id, second.id);
      assert.equal((await list(`${dir}/blobs`)).length, 1);
      for (const info of [first, second]) {
        ann.send({ type: "file", id: info.id });
        await nextOf(ann, "file");
        const response = await download(server.url, info.url);
        assert.match(
          response.headers.get("content-disposition")!,
          new RegExp(`^attachment; filename="${info.name}"`),
        );
        assert.deepEqual(await bytesOf(response), bytes);
      }
    });
  });
});

Deno.test("a direct message's file is served to its two parties only", async () => {
  await withServer({}, async (server, track) => {
    const ann = track(await ChatClient.join(server.port, "ann"));
    const bob = track(await ChatClient.join(server.port, "bob"));
    const cy = track(await ChatClient.join(server.port, "cy"));
    const info = await uploaded(server.url, "for bob's eyes only", {
      session: sessionOf(ann),
      name: "secret.txt",
      type: "text/plain",
    });
    // Not shared yet: only its uploader may read it.
    const unshared = await download(server.url, info.url);
    assert.equal(unshared.status, 401);
    await unshared.body?.cancel();
    const early = await download(server.url, info.url, {
      session: sessionOf(bob),
    });
    assert.equal(early.status, 403);
    await early.body?.cancel();
    ann.send({ type: "file", id: info.id, to: "bob" });
    const line = await nextOf(bob, "file") as FileMessage;
    assert.equal(line.to, "bob");
    assert.equal((await nextOf(ann, "file") as FileMessage).to, "bob");
    // cy never hears it, and later lines still reach her.
    ann.say("after");
    for (;;) {
      const message = await cy.next("cy's next line");
      assert.notEqual(message.type, "file", "cy got the direct file line");
      if (message.type === "message") break;
    }
    for (const party of [ann, bob]) {
      const response = await download(server.url, info.url, {
        session: sessionOf(party),
      });
      assert.equal(response.status, 200, party.username);
      assert.equal(await response.text(), "for bob's eyes only");
    }
    const denied = await download(server.url, info.url, {
      session: sessionOf(cy),
    });
    assert.equal(denied.status, 403);
    assert.equal((await denied.json()).error, "forbidden");
    const anonymous = await download(server.url, info.url);
    assert.equal(anonymous.status, 401);
    await anonymous.body?.cancel();
    // cy's history holds nothing of it either.
    const dee = track(await ChatClient.join(server.port, "dee"));
    assert.ok(dee.welcome!.history.every((l) => l.type !== "file"));
  });
});

Deno.test("a bogus, ended or misplaced session gets 401, before the body is read", async () => {
  await withServer({}, async (server, track) => {
    const ann = track(await ChatClient.join(server.port, "ann"));
    const cases: [string, UploadOptions][] = [
      ["no session", {}],
      ["not a session", { headers: { authorization: "Bearer nonsense" } }],
      ["an unknown session", { session: "0123456789abcdef0123456789abcdef" }],
      ["a session in another room", { session: sessionOf(ann), room: "dev" }],
    ];
    for (const [what, options] of cases) {
      const response = await upload(server.url, "hello", options);
      assert.equal(response.status, 401, what);
      assert.equal((await response.json()).error, "unauthorized", what);
    }
    const old = sessionOf(ann);
    await ann.close();
    await waitUntil(() => server.rooms.online === 0, "ann to be gone");
    const expired = await upload(server.url, "hello", { session: old });
    assert.equal(expired.status, 401);
    await expired.body?.cancel();
    // A big body refused for its session is not read.
    const offered = await offerUpload({
      port: server.port,
      path: "/files?room=lobby",
      headers: { authorization: `Bearer ${old}` },
      total: 256 * 1024 * 1024,
    });
    assert.equal(offered.status, 401);
    assert.ok(offered.closed, "the connection was not closed");
    assert.ok(offered.sent < 64 * 1024 * 1024, `${offered.sent} bytes taken`);
  });
});

Deno.test("uploads from another site are refused as sockets are; listed origins get CORS", async () => {
  const allowed = "https://chat.example.com";
  await withServer({ allowedOrigins: [allowed] }, async (server, track) => {
    const ann = track(await ChatClient.join(server.port, "ann"));
    const response = await upload(server.url, "x", {
      session: sessionOf(ann),
      headers: { origin: "https://evil.example" },
    });
    assert.equal(response.status, 403);
    assert.equal((await response.json()).error, "origin");
    assert.equal(response.headers.get("access-control-allow-origin"), null);
    const preflight = await fetch(`${server.url}files?room=lobby`, {
      method: "OPTIONS",
      headers: {
        origin: allowed,
        "access-control-request-method": "POST",
        "access-control-request-headers": "authorization, x-filename",
      },
    });
    assert.equal(preflight.status, 204);
    assert.equal(preflight.headers.get("access-control-allow-origin"), allowed);
    assert.match(
      preflight.headers.get("access-control-allow-headers")!,
      /authorization.*x-filename/,
    );
    await preflight.body?.cancel();
    const from = await upload(server.url, "x", {
      session: sessionOf(ann),
      headers: { origin: allowed },
    });
    assert.equal(from.status, 201);
    assert.equal(from.headers.get("access-control-allow-origin"), allowed);
    await from.body?.cancel();
  });
});

Deno.test("HTML and SVG uploads are served so that no script can run", async () => {
  await withServer({}, async (server, track) => {
    const ann = track(await ChatClient.join(server.port, "ann"));
    const uploads = [
      {
        name: "page.html",
        type: "text/html",
        body: "<script>alert(document.cookie)</script>",
      },
      {
        name: "logo.svg",
        type: "image/svg+xml",
        body:
          '<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>',
      },
      // HTML claiming to be a PNG: its bytes are not one.
      { name: "fake.png", type: "image/png", body: "<html><script>1</script>" },
    ];
    for (const { name, type, body } of uploads) {
      const info = await uploaded(server.url, body, {
        session: sessionOf(ann),
        name,
        type,
      });
      ann.send({ type: "file", id: info.id });
      await nextOf(ann, "file");
      const response = await download(server.url, info.url);
      const headers = response.headers;
      assert.equal(await response.text(), body);
      assert.equal(headers.get("content-security-policy"), "sandbox", name);
      assert.equal(headers.get("x-content-type-options"), "nosniff", name);
      assert.match(
        headers.get("content-disposition")!,
        new RegExp(`^attachment; filename="${name}"`),
        name,
      );
      assert.equal(
        headers.get("content-type"),
        name === "fake.png" ? "application/octet-stream" : type,
      );
      assert.equal(info.type, headers.get("content-type"));
    }
  });
});

Deno.test("a file name is only text: ../, NUL and controls are stored and shown safely", async () => {
  await withTempDir(async (dir) => {
    await withServer({ files: dir }, async (server, track) => {
      const ann = track(await ChatClient.join(server.port, "ann"));
      const nasty = '../../etc/pa\u0000ss\nwd\u202e\u0007 "q".txt';
      const info = await uploaded(server.url, "x", {
        session: sessionOf(ann),
        name: nasty,
        type: "text/plain",
      });
      assert.equal(info.name, '.._.._etc_passwd "q".txt');
      ann.send({ type: "file", id: info.id });
      const line = await nextOf(ann, "file") as FileMessage;
      assert.equal(line.file.name, info.name);
      const response = await download(server.url, info.url);
      await response.body?.cancel();
      assert.equal(
        response.headers.get("content-disposition"),
        `attachment; filename=".._.._etc_passwd _q_.txt"; filename*=UTF-8''.._.._etc_passwd%20%22q%22.txt`,
      );
      // Nothing on disk is named after it; nothing outside the folder.
      for (const name of await list(`${dir}/uploads`)) {
        assert.match(name, /^[0-9a-f]{32}(\.json)?$/);
      }
      assert.deepEqual(await list(`${dir}/../etc`), []);
      // A name that is not percent-encoded UTF-8 is refused.
      const bad = await upload(server.url, "x", {
        session: sessionOf(ann),
        headers: { "x-filename": "%E0%A4%A" },
      });
      assert.equal(bad.status, 400);
      assert.equal((await bad.json()).error, "invalid_filename");
    });
  });
});

Deno.test("file commands: unknown, someone else's and shared-twice uploads are refused; order is kept", async () => {
  await withServer({}, async (server, track) => {
    const ann = track(await ChatClient.join(server.port, "ann"));
    const bob = track(await ChatClient.join(server.port, "bob"));
    await ann.expectPresence("join", "bob");
    const info = await uploaded(server.url, "ann's", {
      session: sessionOf(ann),
    });
    bob.send({ type: "file", id: info.id });
    const theirs = await nextOf(bob, "error");
    assert.equal((theirs as { code: string }).code, "unknown_file");
    ann.send({ type: "file", id: "0".repeat(32) });
    assert.equal(
      (await nextOf(ann, "error") as { code: string }).code,
      "unknown_file",
    );
    ann.send({ type: "file", id: info.id, to: "nobody" });
    assert.equal(
      (await nextOf(ann, "error") as { code: string }).code,
      "unknown_recipient",
    );
    // Refused for its recipient, it can be shared after all; a line sent
    // right after it is stored after it.
    await sleep(50);
    ann.send({ type: "file", id: info.id });
    ann.say("right after");
    const file = await nextOf(bob, "file") as FileMessage;
    const after = await nextOf(bob, "message") as { id: number };
    assert.ok(after.id > file.id, `${after.id} after ${file.id}`);
    ann.send({ type: "file", id: info.id });
    assert.equal(
      (await nextOf(ann, "error") as { code: string }).code,
      "unknown_file",
    );
  });
});

Deno.test("storage is capped: the oldest files go first; a file leaves with its line", async () => {
  await withTempDir(async (dir) => {
    await withServer(
      { files: dir, filesMaxBytes: 100_000, historyLimit: 3 },
      async (server, track) => {
        const ann = track(await ChatClient.join(server.port, "ann"));
        const infos: FileInfo[] = [];
        for (let i = 0; i < 3; i++) {
          infos.push(
            await uploaded(server.url, randomBytes(40_000), {
              session: sessionOf(ann),
              name: `${i}.bin`,
            }),
          );
          ann.send({ type: "file", id: infos[i].id });
          await nextOf(ann, "file");
        }
        // 120,000 bytes do not fit in 100,000: the first went.
        const first = await download(server.url, infos[0].url);
        assert.equal(first.status, 404);
        await first.body?.cancel();
        for (const info of infos.slice(1)) {
          const response = await download(server.url, info.url);
          assert.equal(response.status, 200);
          await response.body?.cancel();
        }
        assert.equal((await list(`${dir}/blobs`)).length, 2);
        // Two lines later (history keeps 3), the second file's line has
        // left history; the third's has not.
        ann.say("one");
        await nextOf(ann, "message");
        const last = await uploaded(server.url, "small", {
          session: sessionOf(ann),
        });
        ann.send({ type: "file", id: last.id });
        await nextOf(ann, "file");
        await waitUntil(
          async () =>
            (await download(server.url, infos[1].url).then(async (r) => {
              await r.body?.cancel();
              return r.status;
            })) === 404,
          "the file whose line left history to be deleted",
        );
        const kept = await download(server.url, infos[2].url);
        assert.equal(kept.status, 200);
        await kept.body?.cancel();
        assert.equal((await list(`${dir}/blobs`)).length, 2);
        // A file larger than all storage is refused outright.
        const tooBig = await upload(server.url, randomBytes(100_001), {
          session: sessionOf(ann),
        });
        assert.equal(tooBig.status, 507);
        assert.equal((await tooBig.json()).error, "storage_full");
      },
    );
  });
});

Deno.test("a user's uploads are limited in bytes per minute, with a clear 429", async () => {
  await withServer(
    { uploadRate: 60_000, maxFileSize: 50_000 },
    async (server, track) => {
      const ann = track(await ChatClient.join(server.port, "ann"));
      await uploaded(server.url, randomBytes(40_000), {
        session: sessionOf(ann),
      });
      const over = await upload(server.url, randomBytes(40_000), {
        session: sessionOf(ann),
      });
      assert.equal(over.status, 429);
      assert.ok(Number(over.headers.get("retry-after")) >= 1);
      const body = await over.json();
      assert.equal(body.error, "upload_rate_limited");
      assert.match(body.message, /per minute; try again in \d+ s/);
      // Someone else still may.
      const bob = track(await ChatClient.join(server.port, "bob"));
      await uploaded(server.url, randomBytes(40_000), {
        session: sessionOf(bob),
      });
    },
  );
});

Deno.test("uploads at once share one budget: the first holds it while its body comes, and gives back what it did not use", async () => {
  await withTempDir(async (dir) => {
    await withServer(
      { uploadRate: 60_000, maxFileSize: 50_000, files: dir },
      async (server, track) => {
        const ann = track(await ChatClient.join(server.port, "ann"));
        const session = sessionOf(ann);
        // The first body comes in two parts (no length declared); the
        // second part only when the test says so.
        let sendRest = (): void => {};
        const rest = new Promise<void>((resolve) => sendRest = resolve);
        const first = upload(
          server.url,
          new ReadableStream<Uint8Array>({
            async start(controller) {
              controller.enqueue(randomBytes(10_000));
              await rest;
              controller.enqueue(randomBytes(10_000));
              controller.close();
            },
          }),
          { session },
        );
        await waitUntil(
          async () => (await list(`${dir}/tmp`)).length === 1,
          "the first upload to be received",
        );
        // It holds the whole budget meanwhile: the second is refused.
        const second = await upload(server.url, randomBytes(30_000), {
          session,
        });
        assert.equal(second.status, 429);
        assert.equal((await second.json()).error, "upload_rate_limited");
        sendRest();
        const done = await first;
        assert.equal(done.status, 201, await done.clone().text());
        assert.equal(((await done.json()) as FileInfo).size, 20_000);
        // What it did not use went back: 30,000 more fit now.
        await uploaded(server.url, randomBytes(30_000), { session });
      },
    );
  });
});

Deno.test("GET /files tells the limits; wrong methods get 405", async () => {
  await withServer({ maxFileSize: 1234, uploadRate: 0 }, async (server) => {
    const limits = await (await fetch(`${server.url}files`)).json();
    assert.deepEqual(limits, { maxFileSize: 1234, uploadRate: 0 });
    const put = await fetch(`${server.url}files`, { method: "PUT", body: "x" });
    assert.equal(put.status, 405);
    assert.equal(put.headers.get("allow"), "GET, HEAD, POST");
    await put.body?.cancel();
    const missing = await fetch(`${server.url}files/${"a".repeat(32)}`);
    assert.equal(missing.status, 404);
    await missing.body?.cancel();
  });
});

// ------------------------------------------------- a real process's memory

Deno.test("a 1 GiB upload is refused early, declared or streamed, and memory stays flat", async () => {
  const server = await ChildServer.start([]);
  try {
    const ann = await ChatClient.join(server.port, "ann");
    try {
      // Warm up the upload path, so its code is not counted as growth.
      await uploaded(server.url, randomBytes(100_000), {
        session: sessionOf(ann),
      });
      const before = server.rss();
      for (const chunked of [false, true]) {
        const offer = offerUpload({
          port: server.port,
          path: "/files?room=lobby",
          headers: { authorization: `Bearer ${sessionOf(ann)}` },
          total: 1024 ** 3,
          chunked,
        });
        const peak = await server.peakRss(offer);
        const result = await offer;
        const how = chunked ? "chunked" : "declared";
        assert.equal(
          result.status,
          413,
          `${how}: ${result.response.slice(0, 200)}`,
        );
        assert.match(result.response, /"error":"file_too_large"/);
        assert.ok(result.closed, `${how}: the connection was not closed`);
        // 10 MiB is read at most, plus what socket buffers hold.
        assert.ok(
          result.sent < 128 * 1024 * 1024,
          `${how}: ${result.sent} bytes taken`,
        );
        const growth = peak - before;
        console.log(
          `${how} 1 GiB offer: ${
            (result.sent / 2 ** 20).toFixed(1)
          } MiB taken; server RSS ${
            (before / 2 ** 20).toFixed(1)
          } MiB before, peak ${(peak / 2 ** 20).toFixed(1)} MiB`,
        );
        assert.ok(
          growth < 64 * 1024 * 1024,
          `${how}: RSS grew by ${growth} bytes`,
        );
      }
      // The server still answers, and stored nothing of them.
      const ok = await uploaded(server.url, "still fine", {
        session: sessionOf(ann),
      });
      assert.equal(ok.size, 10);
    } finally {
      await ann.close();
    }
  } finally {
    await server.stop();
  }
});

Deno.test("a crash (SIGKILL) mid-upload leaves no partial file; a restart clears the part", async () => {
  await withTempDir(async (dir) => {
    let server = await ChildServer.start(["--files", dir]);
    try {
      const ann = await ChatClient.join(server.port, "ann");
      const conn = await Deno.connect({
        hostname: "127.0.0.1",
        port: server.port,
      });
      try {
        const head =
          `POST /files?room=lobby HTTP/1.1\r\nhost: x\r\nauthorization: Bearer ${
            sessionOf(ann)
          }\r\nx-filename: half.bin\r\ncontent-length: 5000000\r\n\r\n`;
        const half = new Uint8Array(2_500_000).fill(7);
        const all = new Uint8Array([...new TextEncoder().encode(head)]);
        let written = 0;
        while (written < all.length) {
          written += await conn.write(all.subarray(written));
        }
        written = 0;
        while (written < half.length) {
          written += await conn.write(half.subarray(written));
        }
        // The server has the half in its temporary file...
        await waitUntil(async () => {
          for (const name of await list(`${dir}/tmp`)) {
            if ((await Deno.stat(`${dir}/tmp/${name}`)).size >= 2_000_000) {
              return true;
            }
          }
          return false;
        }, "the part to be written");
        // ...when it dies.
        await server.stop("SIGKILL");
      } finally {
        conn.close();
        await ann.close().catch(() => {});
      }
      assert.deepEqual(await list(`${dir}/blobs`), []);
      assert.deepEqual(await list(`${dir}/uploads`), []);
      const parts = await list(`${dir}/tmp`);
      assert.equal(parts.length, 1);
      assert.match(parts[0], /^[0-9a-f]{32}\.part$/);
      // Once stale, a restart removes it.
      const old = new Date(Date.now() - 60 * 60_000);
      await Deno.utime(`${dir}/tmp/${parts[0]}`, old, old);
      server = await ChildServer.start(["--files", dir]);
      assert.deepEqual(await list(`${dir}/tmp`), []);
    } finally {
      await server.close();
    }
  });
});

// ---------------------------------------------------------- two nodes

Deno.test("two nodes with --redis share one directory: upload on one, share and read on both", async () => {
  const redis = await RedisServer.start();
  await withTempDir(async (dir) => {
    const flags = ["--redis", redis.url, "--files", dir, "--rate", "0"];
    const one = await ChildServer.start(flags);
    const two = await ChildServer.start(flags);
    const clients: ChatClient[] = [];
    try {
      const ann = await ChatClient.join(one.port, "ann");
      clients.push(ann);
      const bob = await ChatClient.join(two.port, "bob");
      clients.push(bob);
      const cy = await ChatClient.join(two.port, "cy");
      clients.push(cy);
      // ann's socket is on node one; her upload goes to node two.
      const bytes = randomBytes(200_000, PNG_HEAD);
      const info = await uploaded(two.url, bytes, {
        session: sessionOf(ann),
        name: "shared.png",
        type: "image/png",
      });
      ann.send({ type: "file", id: info.id });
      const line = await nextOf(bob, "file") as FileMessage;
      assert.deepEqual(line.file, info);
      for (const node of [one, two]) {
        const response = await download(node.url, info.url);
        assert.equal(response.status, 200);
        assert.deepEqual(await bytesOf(response), bytes);
      }
      // A direct file across nodes: bob (node two) reads it, cy does not.
      const secret = await uploaded(one.url, "psst", {
        session: sessionOf(ann),
      });
      ann.send({ type: "file", id: secret.id, to: "bob" });
      assert.equal((await nextOf(bob, "file") as FileMessage).to, "bob");
      for (const node of [one, two]) {
        const mine = await download(node.url, secret.url, {
          session: sessionOf(bob),
        });
        assert.equal(mine.status, 200);
        assert.equal(await mine.text(), "psst");
        const theirs = await download(node.url, secret.url, {
          session: sessionOf(cy),
        });
        assert.equal(theirs.status, 403);
        await theirs.body?.cancel();
      }
      // A session that ended is refused on every node.
      const gone = sessionOf(cy);
      await cy.close();
      await waitUntil(async () => {
        const response = await upload(one.url, "x", { session: gone });
        await response.body?.cancel();
        return response.status === 401;
      }, "cy's session to be refused on node one");
    } finally {
      for (const client of clients) await client.close().catch(() => {});
      await one.stop();
      await two.stop();
      await redis.stop();
    }
  });
});

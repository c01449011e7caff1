/**
 * The file store without HTTP: sniffing, names, types, receiving with
 * limits, storing once per content, eviction, and the sweep.
 *
 * @module
 */

import assert from "node:assert/strict";
import {
  cleanFileName,
  FileStore,
  mediaType,
  type Received,
  servedType,
  sniffImage,
  STALE_PART_MS,
  StorageFull,
  UNSHARED_MS,
} from "./files.ts";
import { parseRange } from "../files/http.ts";
import { withTempDir } from "../testing/temp_dir.ts";

async function withStore(
  body: (store: FileStore, dir: string) => Promise<void>,
  maxBytes?: number,
): Promise<void> {
  await withTempDir(async (dir) => {
    await body(await FileStore.open(dir, { maxBytes }), dir);
  });
}

function stream(...chunks: Uint8Array[]): ReadableStream<Uint8Array> {
  return new ReadableStream({
    start(controller) {
      for (const chunk of chunks) controller.enqueue(chunk);
      controller.close();
    },
  });
}

async function names(dir: string): Promise<string[]> {
  const found: string[] = [];
  for await (const entry of Deno.readDir(dir)) found.push(entry.name);
  return found.sort();
}

const META = {
  name: "x.bin",
  declaredType: "application/octet-stream",
  room: "lobby",
  uploader: "ann",
};

async function store(
  files: FileStore,
  bytes: Uint8Array,
  meta = META,
): Promise<ReturnType<FileStore["commit"]>> {
  const received = await files.receive(stream(bytes), { maxBytes: 1 << 20 });
  assert.ok(received.ok);
  return files.commit(received as Received & { ok: true }, meta);
}

Deno.test("sniffImage knows PNG, JPEG, GIF and WebP by their bytes only", () => {
  const bytes = (...b: number[]) => new Uint8Array(b);
  const text = (s: string) => new TextEncoder().encode(s);
  assert.equal(
    sniffImage(bytes(0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a)),
    "image/png",
  );
  assert.equal(sniffImage(bytes(0xff, 0xd8, 0xff, 0xdb)), "image/jpeg");
  assert.equal(sniffImage(text("GIF89a....")), "image/gif");
  assert.equal(sniffImage(text("RIFF\0\0\0\0WEBPVP8 ")), "image/webp");
  assert.equal(sniffImage(text("RIFF\0\0\0\0WAVEfmt ")), null);
  assert.equal(sniffImage(text("<svg xmlns=")), null);
  assert.equal(sniffImage(bytes(0x89, 0x50)), null);
});

Deno.test("names are display text: controls, bidi marks and separators go", () => {
  assert.equal(cleanFileName("report.pdf"), "report.pdf");
  assert.equal(cleanFileName("../../etc/passwd"), ".._.._etc_passwd");
  assert.equal(cleanFileName("C:\\Windows\\x.exe"), "C:_Windows_x.exe");
  assert.equal(cleanFileName("a\u0000b\u001fc\u007fd\u0085e"), "abcde");
  assert.equal(cleanFileName("evil\u202egnp.exe"), "evilgnp.exe");
  assert.equal(cleanFileName("  \u0000 "), "file");
  assert.equal(cleanFileName(".."), "file");
  assert.equal(cleanFileName("e\u0301.txt"), "\u00e9.txt");
  assert.equal([...cleanFileName("ü".repeat(300))].length, 255);
});

Deno.test("types: bare and lower case; an image type the bytes belie is dropped", () => {
  assert.equal(mediaType("Image/PNG; q=1"), "image/png");
  assert.equal(mediaType(null), "application/octet-stream");
  assert.equal(mediaType("<script>"), "application/octet-stream");
  assert.equal(servedType("image/png", null), "application/octet-stream");
  assert.equal(servedType("image/svg+xml", null), "image/svg+xml");
  assert.equal(servedType("text/html", "image/png"), "image/png");
});

Deno.test("parseRange: one range of bytes, clipped, or the whole file", () => {
  assert.deepEqual(parseRange("bytes=0-0", 10), { start: 0, end: 0 });
  assert.deepEqual(parseRange("bytes=5-", 10), { start: 5, end: 9 });
  assert.deepEqual(parseRange("bytes=5-100", 10), { start: 5, end: 9 });
  assert.deepEqual(parseRange("bytes=-3", 10), { start: 7, end: 9 });
  assert.deepEqual(parseRange("bytes=-30", 10), { start: 0, end: 9 });
  assert.equal(parseRange("bytes=10-", 10), "unsatisfiable");
  assert.equal(parseRange("bytes=5-4", 10), "unsatisfiable");
  assert.equal(parseRange("bytes=0-1,4-5", 10), null);
  assert.equal(parseRange("items=0-1", 10), null);
  assert.equal(parseRange(null, 10), null);
});

Deno.test("receive stops past the limit or the budget and leaves no part", async () => {
  await withStore(async (files, dir) => {
    const big = await files.receive(
      stream(new Uint8Array(600), new Uint8Array(600)),
      { maxBytes: 1000 },
    );
    assert.deepEqual(big, { ok: false, reason: "too_large", size: 1200 });
    const rate = await files.receive(stream(new Uint8Array(600)), {
      maxBytes: 1000,
      budget: 500,
    });
    assert.deepEqual(rate, { ok: false, reason: "rate", size: 600 });
    const stalled = await files.receive(new ReadableStream(), {
      maxBytes: 1000,
      idleMs: 20,
    });
    assert.deepEqual(stalled, { ok: false, reason: "timeout", size: 0 });
    assert.deepEqual(await names(`${dir}/tmp`), []);
  });
});

Deno.test("one content is stored once; deleting its last upload deletes it", async () => {
  await withStore(async (files, dir) => {
    const bytes = new TextEncoder().encode("same bytes");
    const a = await store(files, bytes);
    const b = await store(files, bytes, { ...META, name: "y.bin" });
    assert.equal(a.hash, b.hash);
    assert.deepEqual(await names(`${dir}/blobs`), [a.hash]);
    assert.equal(await files.used(), bytes.length);
    assert.deepEqual(await names(`${dir}/tmp`), []);
    // Neither was shared; an hour later both go, and their content.
    const later = Date.now() + UNSHARED_MS + 1000;
    assert.deepEqual(
      (await files.sweep(() => undefined, later)).sort(),
      [a.id, b.id].sort(),
    );
    assert.deepEqual(await names(`${dir}/blobs`), []);
    assert.deepEqual(await names(`${dir}/uploads`), []);
  });
});

Deno.test("past the cap the oldest uploads go; larger than the cap is refused", async () => {
  await withStore(async (files) => {
    const first = await store(files, new Uint8Array(400).fill(1));
    const second = await store(files, new Uint8Array(400).fill(2));
    const third = await store(files, new Uint8Array(400).fill(3));
    assert.equal(await files.get(first.id), null);
    assert.ok(await files.get(second.id));
    assert.ok(await files.get(third.id));
    assert.equal(await files.used(), 800);
    await assert.rejects(
      store(files, new Uint8Array(1001)),
      StorageFull,
    );
  }, 1000);
});

Deno.test("share marks an upload once, for its uploader in its room; the sweep follows its line", async () => {
  await withStore(async (files) => {
    const record = await store(files, new Uint8Array(10));
    const who = { room: "lobby", uploader: "ann" };
    assert.equal(
      (await files.share(record.id, { ...who, uploader: "bob" })).ok,
      false,
    );
    assert.equal(
      (await files.share(record.id, { ...who, room: "dev" })).ok,
      false,
    );
    assert.equal((await files.share("not-an-id", who)).ok, false);
    const shared = await files.share(record.id, { ...who, to: "bob" });
    assert.ok(shared.ok);
    assert.equal((await files.get(record.id))?.shared?.to, "bob");
    assert.equal((await files.share(record.id, who)).ok, false);
    await files.shared(record.id, 7);
    assert.deepEqual(await files.sweep(() => true), []);
    assert.deepEqual(await files.sweep(() => undefined), []);
    assert.deepEqual(
      await files.sweep((room, id) => room !== "lobby" || id !== 7),
      [record.id],
    );
  });
});

Deno.test("stale parts are removed, fresh ones kept", async () => {
  await withStore(async (files, dir) => {
    await Deno.writeTextFile(`${dir}/tmp/old.part`, "half");
    await Deno.writeTextFile(`${dir}/tmp/new.part`, "half");
    const old = new Date(Date.now() - STALE_PART_MS - 1000);
    await Deno.utime(`${dir}/tmp/old.part`, old, old);
    await files.removeStaleParts();
    assert.deepEqual(await names(`${dir}/tmp`), ["new.part"]);
  });
});

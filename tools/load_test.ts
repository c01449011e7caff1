import assert from "node:assert/strict";
import {
  encodeText,
  errorCode,
  findListenUrl,
  forEachLine,
  LatencyHistogram,
  normalizeUrl,
  parseLoadArgs,
  parseServerLine,
  percentile,
  resolveLoadOptions,
  runLoad,
  SequenceTracker,
  serverArgv,
  splitCommand,
} from "./load.ts";
import { startServer } from "../server.ts";
import { startFloorServer } from "../bench/floor_server.ts";
import { startNaiveServer } from "../bench/naive_server.ts";
import { withServer } from "../test_util.ts";

Deno.test("percentile uses the nearest rank", () => {
  assert.equal(percentile([], 50), 0);
  assert.equal(percentile([7], 99), 7);
  assert.equal(percentile([1, 2, 3, 4], 50), 2);
  assert.equal(percentile([1, 2, 3, 4], 100), 4);
  const hundred = Array.from({ length: 100 }, (_, i) => i + 1);
  assert.equal(percentile(hundred, 99), 99);
  assert.equal(percentile(hundred, 0), 1);
});

Deno.test("LatencyHistogram percentiles are within 2 %", () => {
  const h = new LatencyHistogram();
  for (let i = 1; i <= 10_000; i++) h.record(i * 10);
  assert.equal(h.count, 10_000);
  assert.equal(h.max, 100_000);
  for (const [p, exact] of [[50, 50_000], [90, 90_000], [99, 99_000]]) {
    const got = h.percentile(p);
    assert.ok(
      Math.abs(got - exact) / exact < 0.02,
      `p${p}: got ${got}, expected about ${exact}`,
    );
  }
  const small = new LatencyHistogram();
  for (const v of [0, 1, 2, 3, -5]) small.record(v);
  assert.equal(small.percentile(50), 1);
  assert.equal(new LatencyHistogram().percentile(99), 0);
});

Deno.test("SequenceTracker counts gaps, late, duplicate and lost", () => {
  const t = new SequenceTracker(2, 2);
  assert.equal(t.record(0, 0, 0), "ok");
  assert.equal(t.record(0, 0, 1), "ok");
  assert.equal(t.record(0, 0, 4), "gap");
  assert.equal(t.gaps, 2);
  assert.equal(t.record(0, 0, 2), "late");
  assert.equal(t.record(0, 0, 2), "duplicate");
  assert.equal(t.record(0, 0, 4), "duplicate");
  assert.equal(t.record(0, 1, 0), "ok");
  assert.equal(t.record(1, 1, 0), "ok");
  assert.equal(t.duplicated, 2);
  assert.equal(t.outOfOrder, 1);
  assert.equal(t.gaps, 1);
  // Sender 0 sent 5 (0..4), sender 1 sent 1: receiver 0 misses seq 3.
  assert.equal(t.distinct(0), 5);
  assert.equal(t.lost(0, [5, 1]), 1);
  // Receiver 1 got nothing from sender 0.
  assert.equal(t.lost(1, [5, 1]), 5);
});

Deno.test("encodeText and parseServerLine round-trip", () => {
  const text = encodeText("ab12", {
    sender: 3,
    seq: 42,
    sentUs: 98765,
    size: 64,
  });
  assert.equal(text.length, 64);
  assert.ok(text.startsWith("ab12:3:42:98765:x"));
  const line = JSON.stringify({
    type: "message",
    username: "load-ab12-3",
    text,
    timestamp: new Date().toISOString(),
  });
  assert.deepEqual(parseServerLine(line, "ab12"), {
    kind: "message",
    sender: 3,
    seq: 42,
    sentUs: 98765,
  });
  // Key order does not matter.
  const reordered = JSON.stringify({ text, timestamp: "t", type: "message" });
  assert.equal(parseServerLine(reordered, "ab12").seq, 42);
  // Another run's or a person's message is foreign.
  assert.equal(parseServerLine(line, "zz99").kind, "foreign");
  const chat = JSON.stringify({ type: "message", username: "x", text: "hi" });
  assert.equal(parseServerLine(chat, "ab12").kind, "foreign");
  // A text that mimics keys cannot fool the scanner: quotes are escaped.
  const sneaky = JSON.stringify({
    type: "message",
    username: "x",
    text: '"text":"ab12:0:1:2:',
  });
  assert.equal(parseServerLine(sneaky, "ab12").kind, "foreign");
  for (const kind of ["join", "leave", "welcome", "error"] as const) {
    assert.equal(
      parseServerLine(JSON.stringify({ type: kind, username: "u" }), "ab12")
        .kind,
      kind,
    );
  }
  assert.equal(parseServerLine("{}", "ab12").kind, "other");
});

Deno.test("parseLoadArgs reads flags and refuses unknown ones", () => {
  const args = parseLoadArgs([
    "--clients",
    "10",
    "--rate=5000",
    "--server",
    "deno run -A main.ts",
    "--idle",
    "--json-only",
  ]);
  assert.equal(args.help, false);
  assert.equal(args.jsonOnly, true);
  assert.deepEqual(args.options, {
    clients: 10,
    rate: 5000,
    server: "deno run -A main.ts",
    idle: true,
  });
  assert.equal(parseLoadArgs(["--help"]).help, true);
  assert.throws(() => parseLoadArgs(["--bogus"]), /unknown option "--bogus"/);
  assert.throws(() => parseLoadArgs(["--clients", "ten"]), /not a number/);
  assert.throws(() => parseLoadArgs(["--clients"]), /needs a value/);
});

Deno.test("resolveLoadOptions fills defaults and explains bad values", () => {
  const o = resolveLoadOptions({});
  assert.equal(o.clients, 100);
  assert.equal(o.senders, 1);
  assert.equal(o.size, 64);
  assert.equal(o.window, 64);
  assert.equal(o.url, "ws://127.0.0.1:8080/ws");
  assert.throws(
    () => resolveLoadOptions({ clients: 2, senders: 3 }),
    /--senders is 3; expected an integer from 1 to 2/,
  );
  assert.throws(() => resolveLoadOptions({ size: 10 }), /--size is 10/);
  assert.throws(() => resolveLoadOptions({ url: "ftp://x/" }), /scheme ftp:/);
});

Deno.test("URL and command helpers", () => {
  assert.equal(
    normalizeUrl("http://localhost:8080/"),
    "ws://localhost:8080/ws",
  );
  assert.equal(
    normalizeUrl("wss://example.test/chat"),
    "wss://example.test/chat",
  );
  assert.equal(
    findListenUrl("hubchat listening on http://127.0.0.1:4321/\n"),
    "ws://127.0.0.1:4321/ws",
  );
  assert.equal(
    findListenUrl("Listening on http://0.0.0.0:80/"),
    "ws://127.0.0.1:80/ws",
  );
  assert.equal(findListenUrl("starting..."), null);
  assert.deepEqual(splitCommand(`a 'b c' "d e"  f`), ["a", "b c", "d e", "f"]);
  assert.throws(() => splitCommand(`a "b`), /unterminated/);
  assert.deepEqual(serverArgv("deno run -A main.ts"), [
    "deno",
    "run",
    "-A",
    "main.ts",
    "--port",
    "0",
    "--host",
    "127.0.0.1",
  ]);
  assert.deepEqual(serverArgv("node s.js --listen={host}:{port}", { pin: 1 }), [
    "taskset",
    "-c",
    "1",
    "node",
    "s.js",
    "--listen=127.0.0.1:0",
  ]);
});

/** Five clients, two senders: few enough for any CI, enough to interleave. */
const SMOKE = { clients: 5, senders: 2, window: 8, duration: 0.5, warmup: 0.2 };

function assertClean(
  summary: Awaited<ReturnType<typeof runLoad>>,
  clients: number,
): void {
  assert.equal(summary.aborted, null);
  assert.equal(summary.clients_connected, clients);
  assert.ok(summary.messages_sent >= 100, `sent ${summary.messages_sent}`);
  assert.equal(summary.lost, 0);
  assert.equal(summary.duplicated, 0);
  assert.equal(summary.out_of_order, 0);
  assert.equal(summary.clients_complete, clients);
  assert.equal(summary.deliveries_total, summary.messages_sent * clients);
  assert.deepEqual(summary.errors.server_error_codes, {});
  assert.deepEqual(summary.errors.close_codes, {});
}

Deno.test("runLoad against hubchat: every client gets every message", async () => {
  const server = await startServer({
    port: 0,
    hostname: "127.0.0.1",
    ratePerSecond: 0, // the load tool floods by design
  });
  try {
    const summary = await runLoad({ ...SMOKE, url: server.url });
    assertClean(summary, SMOKE.clients);
  } finally {
    await server.shutdown();
  }
});

Deno.test("runLoad open loop against hubchat", async () => {
  const server = await startServer({
    port: 0,
    hostname: "127.0.0.1",
    ratePerSecond: 0, // the load tool floods by design
  });
  try {
    // 5 clients × 400 messages/s = 2000 deliveries/s for 0.7 s.
    const summary = await runLoad({ ...SMOKE, rate: 2000, url: server.url });
    assertClean(summary, SMOKE.clients);
    assert.equal(summary.config.mode, "open");
  } finally {
    await server.shutdown();
  }
});

Deno.test("runLoad against the naive comparison server", async () => {
  const server = await startNaiveServer({ port: 0 });
  try {
    const summary = await runLoad({ ...SMOKE, url: server.url });
    assertClean(summary, SMOKE.clients);
  } finally {
    await server.shutdown();
  }
});

Deno.test("runLoad against the floor server: every frame relayed, in order", async () => {
  const server = startFloorServer({ port: 0 });
  try {
    const summary = await runLoad({ ...SMOKE, url: server.url });
    assertClean(summary, SMOKE.clients);
  } finally {
    await server.shutdown();
  }
});

Deno.test("forEachLine gives each non-empty line of a frame; errorCode reads its code", () => {
  const frame = new TextEncoder().encode(
    '{"type":"error","code":"rate_limited"}\n\nnot json\n',
  );
  const lines: [number, number][] = [];
  forEachLine(frame, 0, frame.length, (start, end) => lines.push([start, end]));
  assert.deepEqual(lines, [[0, 38], [40, 48]]);
  assert.equal(errorCode(frame, 0, 38), "rate_limited");
  assert.equal(errorCode(frame, 40, 48), "unparseable_line");
  // Bounds are honoured: nothing past `to` is read.
  const seen: number[] = [];
  forEachLine(frame, 0, 10, (start, end) => seen.push(start, end));
  assert.deepEqual(seen, [0, 10]);
});

Deno.test("runLoad --stall: clients that never read are opened and reported; the others lose nothing", async () => {
  await withServer(
    { ratePerSecond: 0 }, // the load tool floods by design
    async (server) => {
      const summary = await runLoad({ ...SMOKE, stall: 2, url: server.url });
      assertClean(summary, SMOKE.clients);
      assert.equal(summary.stall?.count, 2);
      assert.equal(summary.stall?.connected, 2);
    },
  );
});

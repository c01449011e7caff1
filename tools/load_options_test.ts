import assert from "node:assert/strict";
import {
  normalizeUrl,
  parseLoadArgs,
  resolveLoadOptions,
} from "./load_options.ts";

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
    /--senders is 3; expected a whole number from 1 to 2/,
  );
  assert.throws(() => resolveLoadOptions({ size: 10 }), /--size is 10/);
  assert.throws(() => resolveLoadOptions({ url: "ftp://x/" }), /scheme ftp:/);
});

Deno.test("URL helper: normalizeUrl", () => {
  assert.equal(
    normalizeUrl("http://localhost:8080/"),
    "ws://localhost:8080/ws",
  );
  assert.equal(
    normalizeUrl("wss://example.test/chat"),
    "wss://example.test/chat",
  );
});

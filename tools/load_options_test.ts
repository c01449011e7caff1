import assert from "node:assert/strict";
import {
  normalizeUrl,
  normalizeUrls,
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

Deno.test("--url and --server-pid repeat, or take a comma-separated list", () => {
  const args = parseLoadArgs([
    "--url",
    "http://127.0.0.1:8081/,ws://127.0.0.1:8082/ws",
    "--server-pid",
    "101",
    "--clients",
    "6",
    "--url=ws://127.0.0.1:8083/ws",
    "--server-pid=102,103",
  ]);
  assert.deepEqual(args.options, {
    url: [
      "http://127.0.0.1:8081/",
      "ws://127.0.0.1:8082/ws",
      "ws://127.0.0.1:8083/ws",
    ],
    serverPid: [101, 102, 103],
    clients: 6,
  });
  const o = resolveLoadOptions(args.options);
  assert.deepEqual(o.urls, [
    "ws://127.0.0.1:8081/ws",
    "ws://127.0.0.1:8082/ws",
    "ws://127.0.0.1:8083/ws",
  ]);
  // One string, joined as --url takes it: a single URL is itself.
  assert.equal(o.url, o.urls.join(","));
  assert.equal(resolveLoadOptions({}).url, "ws://127.0.0.1:8080/ws");
  assert.deepEqual(o.serverPids, [101, 102, 103]);
  // Each value is checked as a single one would be.
  assert.throws(
    () => parseLoadArgs(["--server-pid", "7,x"]),
    /--server-pid is "x", not a number/,
  );
  assert.throws(() => parseLoadArgs(["--url", "a,,b"]), /--url is empty/);
  assert.throws(() => parseLoadArgs(["--url"]), /--url needs a value/);
  assert.throws(() => normalizeUrls("ws://a/ws,ftp://b/"), /scheme ftp:/);
});

Deno.test("--nodes starts copies of --server; without it, it is refused", () => {
  assert.equal(
    resolveLoadOptions({ server: "deno run -A main.ts", nodes: 3 }).nodes,
    3,
  );
  assert.equal(resolveLoadOptions({}).nodes, 1);
  assert.throws(
    () => resolveLoadOptions({ nodes: 2 }),
    /--nodes is 2 without --server; expected --server CMD/,
  );
  assert.throws(
    () => resolveLoadOptions({ server: "x", nodes: 0 }),
    /--nodes is 0; expected a whole number from 1 to 64/,
  );
});

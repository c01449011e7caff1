import assert from "node:assert/strict";
import { parseSoakArgs, resolveSoakOptions } from "./soak_options.ts";

Deno.test("parseSoakArgs and resolveSoakOptions", () => {
  const args = parseSoakArgs([
    "--server",
    "deno run -A main.ts",
    "--clients=200",
    "--minutes",
    "2",
    "--rate",
    "5000",
    "--interval",
    "5",
    "--churn",
    "4",
    "--size=100",
    "--json",
    "--server-as-is",
  ]);
  assert.equal(args.help, false);
  assert.equal(args.json, true);
  assert.deepEqual(args.options, {
    server: "deno run -A main.ts",
    clients: 200,
    minutes: 2,
    rate: 5000,
    interval: 5,
    churn: 4,
    size: 100,
    serverAsIs: true,
  });
  assert.equal(parseSoakArgs(["-h"]).help, true);
  assert.throws(() => parseSoakArgs(["--bogus"]), /unknown option "--bogus"/);
  assert.throws(() => parseSoakArgs(["--rate", "fast"]), /not a number/);
  assert.throws(() => parseSoakArgs(["--minutes"]), /needs a value/);

  const o = resolveSoakOptions({});
  assert.equal(o.url, "ws://127.0.0.1:8080/ws");
  assert.equal(o.clients, 100);
  assert.equal(o.senders, 10);
  assert.equal(o.interval, 10);
  assert.equal(o.churn, 0);
  assert.equal(resolveSoakOptions({ clients: 5, churn: 3 }).senders, 2);
  assert.throws(
    () => resolveSoakOptions({ clients: 5, churn: 5 }),
    /--churn is 5; expected a whole number from 0 to 4/,
  );
  assert.throws(
    () => resolveSoakOptions({ clients: 5, churn: 2, senders: 4 }),
    /--senders is 4; expected a whole number from 1 to 3/,
  );
  assert.throws(() => resolveSoakOptions({ rate: 0 }), /--rate is 0/);
  assert.throws(() => resolveSoakOptions({ minutes: -1 }), /--minutes is -1/);
  assert.throws(() => resolveSoakOptions({ size: 5 }), /--size is 5/);
});

Deno.test("soak: --url and --server-pid lists, --nodes, --redis-server and --chaos need --server", () => {
  const args = parseSoakArgs([
    "--url",
    "ws://127.0.0.1:8081/ws,ws://127.0.0.1:8082/ws",
    "--server-pid",
    "11",
    "--server-pid",
    "12",
  ]);
  assert.deepEqual(args.options, {
    url: ["ws://127.0.0.1:8081/ws", "ws://127.0.0.1:8082/ws"],
    serverPid: [11, 12],
  });
  const o = resolveSoakOptions(args.options);
  assert.equal(o.url, "ws://127.0.0.1:8081/ws,ws://127.0.0.1:8082/ws");
  assert.equal(o.urls.length, 2);
  assert.equal(o.serverPid, 11);
  assert.deepEqual(o.serverPids, [11, 12]);
  assert.equal(resolveSoakOptions({ serverPid: 5 }).serverPid, 5);

  const cluster = resolveSoakOptions({
    ...parseSoakArgs([
      "--server",
      "deno run -A main.ts",
      "--nodes",
      "3",
      "--redis-server",
      "--chaos",
      "kill-node:2@10s,restart-node:2@15s,kill-redis@20s,restart-redis@25s",
    ]).options,
  });
  assert.equal(cluster.nodes, 3);
  assert.equal(cluster.redisServer, true);
  assert.deepEqual(cluster.chaos.map((e) => e.text), [
    "kill-node:2@10s",
    "restart-node:2@15s",
    "kill-redis@20s",
    "restart-redis@25s",
  ]);
  assert.throws(
    () => resolveSoakOptions({ nodes: 2 }),
    /--nodes 2 needs --server; expected --server CMD/,
  );
  assert.throws(
    () => resolveSoakOptions({ redisServer: true }),
    /--redis-server needs --server/,
  );
  assert.throws(
    () => resolveSoakOptions({ chaos: "kill-node@1" }),
    /names node 0, and the tool starts none/,
  );
  assert.throws(
    () => resolveSoakOptions({ server: "x", chaos: "kill-node@2m" }),
    /after the run's end at 60 s/,
  );
});

import assert from "node:assert/strict";
import { runLoad } from "./load.ts";
import { startServer } from "../server.ts";
import { startFloorServer } from "../bench/floor_server.ts";
import { startNaiveServer } from "../bench/naive_server.ts";
import { withServer } from "../testing/server.ts";
import { ChildServer } from "../testing/child_server.ts";
import { type ChildExit, DenoChild } from "../testing/child_process.ts";
import { within } from "../testing/wait.ts";
import { DEFAULT_URL } from "./load_options.ts";
import type { LoadSummary } from "./load.ts";

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
  assert.equal(summary.passed, true, summary.verdict);
  assert.match(summary.verdict, new RegExp(`^PASS: ${clients} clients\\b`));
  assert.equal(summary.config.url, summary.url);
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

Deno.test("runLoad reports the URL it used, normalized, in config.url", async () => {
  await withServer({ ratePerSecond: 0 }, async (server) => {
    const given = `http://127.0.0.1:${server.port}/`;
    const summary = await runLoad({ ...SMOKE, url: given });
    assertClean(summary, SMOKE.clients);
    assert.equal(summary.config.url, `ws://127.0.0.1:${server.port}/ws`);
  });
});

Deno.test("runLoad spreads clients round-robin over several URLs: a message must reach the clients of every node", async () => {
  // Two servers that share nothing: each sender's messages reach only the
  // clients on its own server, and the tool must say so.
  await withServer({ ratePerSecond: 0 }, async (a) => {
    await withServer({ ratePerSecond: 0 }, async (b) => {
      const summary = await runLoad({
        ...SMOKE,
        clients: 4,
        drain: 0.3, // the missing messages never come
        url: [a.url, `http://127.0.0.1:${b.port}/`],
      });
      const urls = [
        `ws://127.0.0.1:${a.port}/ws`,
        `ws://127.0.0.1:${b.port}/ws`,
      ];
      assert.deepEqual(summary.urls, urls);
      assert.deepEqual(summary.config.urls, urls);
      assert.equal(summary.url, urls.join(","));
      assert.equal(summary.config.url, summary.url);
      assert.equal(summary.clients_connected, 4);
      // Clients 0 and 2 (with sender 0) are on a, 1 and 3 (with sender 1)
      // on b: each client misses every message of the other sender.
      assert.ok(summary.messages_sent > 0);
      assert.equal(summary.lost, 2 * summary.messages_sent);
      assert.equal(summary.deliveries_total, 2 * summary.messages_sent);
      assert.equal(summary.passed, false);
      assert.match(summary.verdict, /^FAIL: [\d,]+ lost$/);
    });
  });
  // One server under two spellings of its URL: nothing is lost.
  await withServer({ ratePerSecond: 0 }, async (server) => {
    const summary = await runLoad({
      ...SMOKE,
      url: `${server.url},http://127.0.0.1:${server.port}/ws`,
    });
    assertClean(summary, SMOKE.clients);
    assert.equal(summary.urls.length, 2);
  });
});

Deno.test("runLoad --server-pid reports that process's CPU per delivery apart", async () => {
  // Unthrottled: the load tool floods from one address by design.
  const flags = ["--rate=0", "--max-connections-per-ip=0"];
  const server = await ChildServer.start(flags);
  try {
    const summary = await runLoad({
      ...SMOKE,
      url: server.url,
      serverPid: [server.process.pid],
    });
    assertClean(summary, SMOKE.clients);
    assert.equal(summary.processes.length, 1);
    const [child] = summary.processes;
    assert.equal(child.pid, server.process.pid);
    assert.equal(child.role, "server-pid");
    assert.match(child.command ?? "", /main\.ts/);
    assert.ok(child.cpu_seconds !== null && child.cpu_seconds >= 0);
    assert.ok(child.cpu_us_per_delivery !== null);
    assert.ok((child.rss_end_bytes ?? 0) > 0);
    assert.ok((child.peak_rss_bytes ?? 0) > 0);
    // Not started by the tool: the server_ fields stay empty.
    assert.equal(summary.server_pid, null);
    assert.equal(summary.server_cpu_us_per_delivery, null);
  } finally {
    await server.stop();
  }
});

/** The load tool's command line, run as a child process. */
const LOAD = new URL("./load.ts", import.meta.url);

/** hubchat's entry point, by absolute path: the runs' cwd is elsewhere. */
const MAIN = new URL("../main.ts", import.meta.url).pathname;

/**
 * A whole CLI run may take this long, in milliseconds: two Deno starts
 * (the tool, then the server) on a loaded 2-core machine, and about two
 * seconds of load. Never asserted.
 */
const CLI_WAIT_MS = 90_000;

/** The smallest run the CLI makes: five clients, half a second measured. */
const CLI_SMOKE = [
  "--clients",
  "5",
  "--senders",
  "2",
  "--window",
  "8",
  "--duration",
  "0.5",
  "--warmup",
  "0.2",
  "--drain",
  "2",
];

/** Runs `deno task load ARGS` in `cwd` to its end; stops it on a timeout. */
async function runLoadCli(
  args: string[],
  cwd: string,
  env: Record<string, string> = {},
): Promise<ChildExit & { summary: LoadSummary; lastLine: string }> {
  const child = DenoChild.spawn(LOAD, args, { cwd, env });
  let exit: ChildExit;
  try {
    await within(child.status, "the load tool to exit", CLI_WAIT_MS);
  } finally {
    exit = await child.stop();
  }
  const lastLine = exit.stderr.trimEnd().split("\n").at(-1) ?? "";
  return { ...exit, summary: JSON.parse(exit.stdout), lastLine };
}

/** The `--data PATH` a server command line holds, or null. */
function dataPathOf(commandLine: string | null): string | null {
  return /--data (\S+)/.exec(commandLine ?? "")?.[1] ?? null;
}

Deno.test("load --server: a clean run prints PASS, exits 0, writes no history where it runs, reports the URL it used", async () => {
  const cwd = await Deno.makeTempDir({ prefix: "hubchat-load-test-" });
  try {
    const { status, summary, lastLine, stderr } = await runLoadCli(
      [...CLI_SMOKE, "--server", `deno run -A ${MAIN} --rate 100000`],
      // A variable in the tool's environment is overridden, not used.
      cwd,
      { HUBCHAT_DATA: `${cwd}/real.kv` },
    );
    assert.equal(status.code, 0, stderr);
    assert.match(lastLine, /^PASS: 5 clients, [\d,]+ deliveries, nothing lost/);
    assert.equal(summary.passed, true);
    assert.equal(summary.verdict, lastLine);
    // The URL of the started server, not the default one.
    assert.equal(summary.config.url, summary.url);
    assert.notEqual(summary.url, DEFAULT_URL);
    assert.match(summary.url, /^ws:\/\/127\.0\.0\.1:\d+\/ws$/);
    // The server got a temporary --data, kept its --rate, got the cap off.
    const process = summary.server_process ?? "";
    const data = dataPathOf(process);
    assert.ok(data !== null && !data.startsWith(cwd), process);
    assert.match(process, / --rate 100000 /);
    assert.doesNotMatch(process, /--rate 0/);
    assert.match(process, /--max-connections-per-ip 0/);
    // Nothing written where the tool ran; the temporary history is gone.
    assert.deepEqual([...Deno.readDirSync(cwd)], []);
    await assert.rejects(Deno.stat(data), Deno.errors.NotFound);
  } finally {
    await Deno.remove(cwd, { recursive: true });
  }
});

Deno.test("load --server: a server that refuses clients makes a FAIL naming the 429s, shown in progress, exit 1", async () => {
  const cwd = await Deno.makeTempDir({ prefix: "hubchat-load-test-" });
  try {
    const { status, summary, lastLine, stderr } = await runLoadCli(
      [
        ...CLI_SMOKE,
        "--server",
        `deno run -A ${MAIN} --max-connections-per-ip 2`,
      ],
      cwd,
    );
    assert.equal(status.code, 1, stderr);
    assert.match(lastLine, /^FAIL: .*3 of 5 clients refused \(429 ×3\)/);
    assert.equal(summary.passed, false);
    assert.equal(summary.connect_failures, 3);
    assert.match(
      stderr,
      /\[load\] connected 2\/5 in \d+ ms refused=3 \(429 ×3\)/,
    );
    // The command's own cap was kept; only the rate limit was added.
    const process = summary.server_process ?? "";
    assert.match(process, /--max-connections-per-ip 2 /);
    assert.doesNotMatch(process, /--max-connections-per-ip 0/);
    assert.match(process, /--rate 0/);
    assert.deepEqual([...Deno.readDirSync(cwd)], []);
  } finally {
    await Deno.remove(cwd, { recursive: true });
  }
});

Deno.test("load --server with --data in the command: the command's store, no other", async () => {
  const cwd = await Deno.makeTempDir({ prefix: "hubchat-load-test-" });
  try {
    const { status, summary, stderr } = await runLoadCli(
      [...CLI_SMOKE, "--server", `deno run -A ${MAIN} --data ./mine.kv`],
      cwd,
    );
    assert.equal(status.code, 0, stderr);
    const process = summary.server_process ?? "";
    assert.equal(process.match(/--data /g)?.length, 1, process);
    assert.equal(dataPathOf(process), "./mine.kv");
    // The user asked for this file: the run wrote its history there.
    assert.ok((await Deno.stat(`${cwd}/mine.kv`)).isFile);
  } finally {
    await Deno.remove(cwd, { recursive: true });
  }
});

Deno.test("load --server --nodes 2: two copies, each its own port and history, each measured apart", async () => {
  const cwd = await Deno.makeTempDir({ prefix: "hubchat-load-test-" });
  try {
    const { status, summary, lastLine, stderr } = await runLoadCli(
      [
        ...CLI_SMOKE,
        "--clients",
        "4",
        "--drain",
        "0.3",
        "--server",
        `deno run -A ${MAIN}`,
        "--nodes",
        "2",
      ],
      cwd,
    );
    // Two hubchats without a shared Redis: each client misses the other
    // node's sender, and the run says so.
    assert.equal(status.code, 1, stderr);
    assert.match(lastLine, /^FAIL: [\d,]+ lost$/);
    assert.equal(summary.lost, 2 * summary.messages_sent);
    assert.equal(summary.config.nodes, 2);
    assert.equal(summary.urls.length, 2);
    assert.notEqual(summary.urls[0], summary.urls[1]);
    assert.equal(summary.url, summary.urls.join(","));
    assert.deepEqual(summary.processes.map((p) => p.role), [
      "node 0",
      "node 1",
    ]);
    const data = summary.processes.map((p) => dataPathOf(p.command));
    assert.ok(data[0] !== null && data[1] !== null && data[0] !== data[1]);
    for (const p of summary.processes) {
      assert.ok(p.cpu_seconds !== null, JSON.stringify(p));
    }
    // The server_ fields sum the nodes.
    const sum = summary.processes.reduce((a, p) => a + p.cpu_seconds!, 0);
    assert.ok(Math.abs(summary.server_cpu_seconds! - sum) < 0.01);
    assert.equal(summary.server_pid, summary.processes[0].pid);
    for (const path of data) {
      await assert.rejects(Deno.stat(path!), Deno.errors.NotFound);
    }
    assert.deepEqual([...Deno.readDirSync(cwd)], []);
  } finally {
    await Deno.remove(cwd, { recursive: true });
  }
});

/**
 * Runs the comparison matrix — the floor (Deno's own cost per
 * message, bench/floor_server.ts), hubchat as it ships (history on, in a
 * file), hubchat `--history 0`, the naive Deno server and Bun — each
 * started by the load tool, alternating server by server inside every
 * repetition, and prints a markdown table of medians with their spreads
 * and each one's ratio to the floor.
 *
 * ```sh
 * deno run -A bench/compare.ts                 # 3 repetitions, 5 s each
 * deno run -A bench/compare.ts --reps 5 --duration 10 --out /tmp/runs.jsonl
 * deno run -A bench/compare.ts --servers floor,hubchat --scenarios r10,s10
 * ```
 *
 * Servers run on CPU 0 and the load tool on CPU 1 (taskset). Bun is skipped
 * when the `bun` binary is missing (`npm install -g bun@1.4.5`).
 *
 * @module
 */

import {
  type Flag,
  type FlagReading,
  helpRows,
  readFlags,
  UsageError,
} from "../flags.ts";
import { type LoadSummary, runLoad } from "../tools/load.ts";
import { LOAD_FLAG, type LoadOptions } from "../tools/load_options.ts";

/** One server under test. */
export interface ServerUnderTest {
  /** Column label. */
  name: string;
  /** Command the load tool starts (it appends --port 0 --host 127.0.0.1). */
  command: string;
  /** Run only when `--servers` names it. */
  optional?: boolean;
}

/** One load shape. */
export interface Scenario {
  /** Short name, for `--scenarios`. */
  key: string;
  /** Row label. */
  name: string;
  /** Load options, without server, duration and pinning. */
  load: LoadOptions;
}

/**
 * The matrix: saturated (closed loop, 64 in flight) and at a fixed
 * 25,000 deliveries/s, each at 10, 100 and 1000 clients; one sender,
 * 64-byte texts (the load tool's defaults).
 */
export const SCENARIOS: Scenario[] = [
  { key: "s10", name: "saturated, 10 clients", load: { clients: 10 } },
  { key: "s100", name: "saturated, 100 clients", load: { clients: 100 } },
  { key: "s1000", name: "saturated, 1000 clients", load: { clients: 1000 } },
  {
    key: "r10",
    name: "25k deliveries/s, 10 clients",
    load: { clients: 10, rate: 25_000 },
  },
  {
    key: "r100",
    name: "25k deliveries/s, 100 clients",
    load: { clients: 100, rate: 25_000 },
  },
  {
    key: "r1000",
    name: "25k deliveries/s, 1000 clients",
    load: { clients: 1000, rate: 25_000 },
  },
];

/** The server every other is compared with. */
export const FLOOR = "floor";

/** 3 repetitions: the least that gives a median. */
const DEFAULT_REPS = 3;
/**
 * 5 s measured per run. With the warm-up and about 1 s to start and stop
 * the server, a run takes about 7 s: the whole matrix (5 servers, 6
 * scenarios, 3 repetitions: 90 runs) takes about 11 minutes on 2 cores.
 */
const DEFAULT_DURATION_S = 5;
/** 1 s warm-up: enough for the JIT on a loopback chat run. */
const DEFAULT_WARMUP_S = 1;
/** The command line's flags, in the order `--help` lists them. */
const COMPARE_FLAGS: readonly Flag[] = [
  {
    name: "reps",
    kind: "whole",
    min: 1,
    value: "N",
    default: DEFAULT_REPS,
    help: "repetitions of the whole matrix; the table shows medians",
  },
  {
    ...LOAD_FLAG.duration,
    default: DEFAULT_DURATION_S,
    help: "measured seconds per run",
  },
  {
    ...LOAD_FLAG.warmup,
    default: DEFAULT_WARMUP_S,
    help: "unmeasured seconds before each run's window",
  },
  {
    name: "out",
    kind: "text",
    value: "FILE",
    help: "append each run's summary to FILE, one JSON line a run",
  },
  {
    name: "servers",
    kind: "text",
    value: "LIST",
    help:
      'only these servers, comma-separated (floor, hubchat, "hubchat --history 0", naive, bun, and "hubchat --fsync always", run only when named)',
  },
  {
    name: "scenarios",
    kind: "text",
    value: "LIST",
    help: "only these rows, comma-separated (s10 s100 s1000 r10 r100 r1000)",
  },
];

/** What `deno run -A bench/compare.ts --help` prints. */
const COMPARE_USAGE = `Usage: deno run -A bench/compare.ts [options]

Options:
${helpRows(COMPARE_FLAGS, { withHelp: true })}`;

/** Server on CPU 0, load tool on CPU 1: the two cores this machine has. */
const SERVER_CPU = 0;
const LOAD_CPU = 1;

function repoPath(relative: string): string {
  return new URL(relative, import.meta.url).pathname;
}

/**
 * The servers to compare; Bun only when its binary runs.
 *
 * @example
 * ```ts
 * import { serversUnderTest } from "./compare.ts";
 * console.log((await serversUnderTest()).map((s) => s.name));
 * ```
 */
export async function serversUnderTest(): Promise<ServerUnderTest[]> {
  const hubchat = `deno run -A ${repoPath("../main.ts")}`;
  const servers: ServerUnderTest[] = [
    {
      name: FLOOR,
      command: `deno run -A ${repoPath("./floor_server.ts")}`,
    },
    {
      name: "hubchat",
      // As it ships: history on, in a file in a temporary directory the
      // load tool gives it and removes after each run. Its defaults would
      // throttle one sender (10 messages/s) and refuse the 21st connection
      // from 127.0.0.1 (the load tool would turn both off anyway; they are
      // spelled out so the command shows what runs).
      command: `${hubchat} --rate 0 --max-connections-per-ip 0`,
    },
    {
      name: "hubchat --history 0",
      // The same with nothing stored: the job Bun and naive do.
      command: `${hubchat} --rate 0 --max-connections-per-ip 0 --history 0`,
    },
    {
      name: "hubchat --fsync always",
      // The stricter setting: each commit synced before its lines are sent.
      command: `${hubchat} --rate 0 --max-connections-per-ip 0 --fsync always`,
      optional: true,
    },
    {
      name: "naive",
      command: `deno run -A ${repoPath("./naive_server.ts")}`,
    },
  ];
  try {
    const out = await new Deno.Command("bun", {
      args: ["--version"],
      stdout: "null",
      stderr: "null",
    }).output();
    if (out.success) {
      servers.push({
        name: "bun",
        command: `bun ${repoPath("./bun_server.ts")}`,
      });
    }
  } catch {
    console.error(
      "compare: bun not found; skipping it (npm install -g bun@1.4.5)",
    );
  }
  return servers;
}

/**
 * Median of numbers, ignoring nulls; null when there are none.
 *
 * @example
 * ```ts
 * import { median } from "./compare.ts";
 * median([3, null, 1, 2]); // 2
 * ```
 */
export function median(values: (number | null)[]): number | null {
  const xs = values.filter((v): v is number => v !== null).sort((a, b) =>
    a - b
  );
  if (xs.length === 0) return null;
  const mid = Math.floor(xs.length / 2);
  return xs.length % 2 === 1 ? xs[mid] : (xs[mid - 1] + xs[mid]) / 2;
}

function fmt(value: number | null, digits: number): string {
  return value === null ? "–" : value.toFixed(digits);
}

/**
 * A median with its spread, `0.043 (0.041–0.047)`; `–` without values.
 *
 * @example
 * ```ts
 * import { withSpread } from "./compare.ts";
 * withSpread([0.05, 0.04, 0.045], 3); // "0.045 (0.040–0.050)"
 * ```
 */
export function withSpread(values: (number | null)[], digits: number): string {
  const xs = values.filter((v): v is number => v !== null);
  if (xs.length === 0) return "–";
  const low = Math.min(...xs);
  const high = Math.max(...xs);
  return xs.length === 1
    ? fmt(xs[0], digits)
    : `${fmt(median(xs), digits)} (${fmt(low, digits)}–${fmt(high, digits)})`;
}

/** The machine's load average, from /proc/loadavg ("0.12 0.30 0.41"). */
async function loadAverage(): Promise<string> {
  try {
    return (await Deno.readTextFile("/proc/loadavg")).split(" ").slice(0, 3)
      .join(" ");
  } catch {
    return "unknown";
  }
}

/** The CPU's model name, from /proc/cpuinfo. */
async function cpuModel(): Promise<string> {
  try {
    const info = await Deno.readTextFile("/proc/cpuinfo");
    const model = info.match(/^model name\s*:\s*(.+)$/m)?.[1];
    const cpus = info.match(/^processor\s*:/gm)?.length ?? 0;
    return `${cpus} × ${model ?? "unknown CPU"}`;
  } catch {
    return "unknown CPU";
  }
}

/** A list flag's names, or null when it was not given. */
function listFlag(value: unknown): string[] | null {
  return typeof value === "string"
    ? value.split(",").map((name) => name.trim()).filter((name) => name !== "")
    : null;
}

async function main(): Promise<void> {
  let reading: FlagReading;
  try {
    reading = readFlags(COMPARE_FLAGS, Deno.args);
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    console.error(`compare: ${error.message}`);
    Deno.exit(2);
  }
  if (reading.help) {
    console.log(COMPARE_USAGE);
    return;
  }
  const reps = (reading.values.reps as number | undefined) ?? DEFAULT_REPS;
  const duration = (reading.values.duration as number | undefined) ??
    DEFAULT_DURATION_S;
  const warmup = (reading.values.warmup as number | undefined) ??
    DEFAULT_WARMUP_S;
  const out = (reading.values.out as string | undefined) ?? null;
  const onlyServers = listFlag(reading.values.servers);
  const onlyScenarios = listFlag(reading.values.scenarios);
  const servers = (await serversUnderTest()).filter((server) =>
    onlyServers === null ? !server.optional : onlyServers.includes(server.name)
  );
  const scenarios = SCENARIOS.filter((scenario) =>
    onlyScenarios === null || onlyScenarios.includes(scenario.key)
  );
  if (servers.length === 0 || scenarios.length === 0) {
    console.error("compare: --servers or --scenarios leaves nothing to run");
    Deno.exit(2);
  }
  const loadBefore = await loadAverage();
  const results = new Map<string, LoadSummary[]>();
  for (let rep = 1; rep <= reps; rep++) {
    for (const scenario of scenarios) {
      for (const server of servers) {
        const summary = await runLoad({
          ...scenario.load,
          server: server.command,
          duration,
          warmup,
          pinServer: SERVER_CPU,
          pinLoad: LOAD_CPU,
        });
        const key = `${scenario.key}|${server.name}`;
        results.set(key, [...(results.get(key) ?? []), summary]);
        console.error(
          `rep ${rep}/${reps} ${scenario.name} ${server.name}: ` +
            `${summary.deliveries_per_sec} deliveries/s, p99 ${summary.latency_ms.p99} ms, ` +
            `cpu ${summary.server_cpu_seconds_per_100k_deliveries} s/100k, lost ${summary.lost}` +
            (summary.passed ? "" : `; ${summary.verdict}`),
        );
        if (out !== null) {
          await Deno.writeTextFile(
            out,
            JSON.stringify({
              rep,
              scenario: scenario.name,
              server: server.name,
              summary,
            }) + "\n",
            { append: true },
          );
        }
      }
    }
  }
  const loadAfter = await loadAverage();
  console.log(
    `${await cpuModel()}, Deno ${Deno.version.deno}; load average ${loadBefore} before, ${loadAfter} after.\n` +
      `Medians of ${reps} runs (min–max), ${duration} s measured after ${warmup} s warm-up; ` +
      `server on CPU ${SERVER_CPU}, load tool on CPU ${LOAD_CPU}; 64-byte texts, 1 sender.\n` +
      `CPU: server CPU seconds per 100,000 deliveries; ×floor: ratio of medians.\n`,
  );
  console.log(
    "| load | server | deliveries/s | CPU s/100k | ×floor | p50 ms | p99 ms | p99 ×floor | peak RSS MiB | RSS ×floor | lost/dup/ooo |",
  );
  console.log("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|");
  for (const scenario of scenarios) {
    const floorRuns = results.get(`${scenario.key}|${FLOOR}`) ?? [];
    const floorMedian = (f: (s: LoadSummary) => number | null) =>
      median(floorRuns.map(f));
    for (const server of servers) {
      const runs = results.get(`${scenario.key}|${server.name}`) ?? [];
      const m = (f: (s: LoadSummary) => number | null) => median(runs.map(f));
      const ratio = (f: (s: LoadSummary) => number | null) => {
        const base = floorMedian(f);
        const value = m(f);
        return base === null || value === null || base === 0
          ? "–"
          : (value / base).toFixed(2);
      };
      const cpu = (s: LoadSummary) => s.server_cpu_seconds_per_100k_deliveries;
      const p99 = (s: LoadSummary) => s.latency_ms.p99;
      const rss = (s: LoadSummary) =>
        s.server_peak_rss_bytes === null
          ? null
          : s.server_peak_rss_bytes / 2 ** 20;
      const bad = runs.reduce(
        (a, s) => [a[0] + s.lost, a[1] + s.duplicated, a[2] + s.out_of_order],
        [0, 0, 0],
      );
      console.log(
        `| ${scenario.name} | ${server.name} | ${
          fmt(m((s) => s.deliveries_per_sec), 0)
        } | ${withSpread(runs.map(cpu), 3)} | ${ratio(cpu)} | ${
          fmt(m((s) => s.latency_ms.p50), 2)
        } | ${withSpread(runs.map(p99), 2)} | ${ratio(p99)} | ${
          withSpread(runs.map(rss), 0)
        } | ${ratio(rss)} | ${bad.join("/")} |`,
      );
    }
  }
}

if (import.meta.main) {
  await main();
}

/**
 * Runs the comparison matrix — the naive Deno server, Bun, and hubchat (with
 * history, and with `--history 0`, keeping nothing like the other two), each
 * started by the load tool, alternating server by server inside every
 * repetition — and prints a markdown table of medians.
 *
 * ```sh
 * deno run -A bench/compare.ts                 # 3 repetitions, 5 s each
 * deno run -A bench/compare.ts --reps 5 --duration 10 --out /tmp/runs.jsonl
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
}

/** One load shape. */
export interface Scenario {
  /** Row label. */
  name: string;
  /** Load options, without server, duration and pinning. */
  load: LoadOptions;
}

/** The matrix the brief asks for: closed loop at 3 sizes, open loop at 2. */
export const SCENARIOS: Scenario[] = [
  { name: "closed, 10 clients", load: { clients: 10 } },
  { name: "closed, 100 clients", load: { clients: 100 } },
  { name: "closed, 1000 clients", load: { clients: 1000 } },
  { name: "open 25k/s, 100 clients", load: { clients: 100, rate: 25_000 } },
  { name: "open 25k/s, 1000 clients", load: { clients: 1000, rate: 25_000 } },
];

/** 3 repetitions: the least that gives a median. */
const DEFAULT_REPS = 3;
/** 5 s measured per run keeps the whole matrix near 6 minutes. */
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
  const servers: ServerUnderTest[] = [
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
  servers.push({
    name: "hubchat",
    // Its defaults would throttle one sender (10 messages/s) and refuse the
    // 21st connection from 127.0.0.1 (the load tool would turn both off
    // anyway; they are spelled out so the command shows what runs). History
    // stays on, in a KV file in a temporary directory the load tool gives it
    // and removes after each run.
    command: `deno run -A ${
      repoPath("../main.ts")
    } --rate 0 --max-connections-per-ip 0`,
  });
  servers.push({
    name: "hubchat --history 0",
    // The same with nothing stored: the job Bun and naive do.
    command: `deno run -A ${
      repoPath("../main.ts")
    } --rate 0 --max-connections-per-ip 0 --history 0`,
  });
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
  const servers = await serversUnderTest();
  const results = new Map<string, LoadSummary[]>();
  for (let rep = 1; rep <= reps; rep++) {
    for (const scenario of SCENARIOS) {
      for (const server of servers) {
        const summary = await runLoad({
          ...scenario.load,
          server: server.command,
          duration,
          warmup,
          pinServer: SERVER_CPU,
          pinLoad: LOAD_CPU,
        });
        const key = `${scenario.name}|${server.name}`;
        results.set(key, [...(results.get(key) ?? []), summary]);
        console.error(
          `rep ${rep}/${reps} ${scenario.name} ${server.name}: ` +
            `${summary.deliveries_per_sec} deliveries/s, p99 ${summary.latency_ms.p99} ms, ` +
            `cpu ${summary.server_cpu_us_per_delivery} µs/delivery, lost ${summary.lost}` +
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
  console.log(
    `Medians of ${reps} runs, ${duration} s measured after ${warmup} s warm-up; ` +
      `server on CPU ${SERVER_CPU}, load tool on CPU ${LOAD_CPU}; 64-byte texts, 1 sender.\n`,
  );
  console.log(
    "| scenario | server | deliveries/s | p50 ms | p99 ms | server CPU µs per delivery | server CPU util | peak RSS MiB | lost/dup/ooo |",
  );
  console.log("|---|---|---:|---:|---:|---:|---:|---:|---|");
  for (const scenario of SCENARIOS) {
    for (const server of servers) {
      const runs = results.get(`${scenario.name}|${server.name}`) ?? [];
      const m = (f: (s: LoadSummary) => number | null) => median(runs.map(f));
      const bad = runs.reduce(
        (a, s) => [a[0] + s.lost, a[1] + s.duplicated, a[2] + s.out_of_order],
        [0, 0, 0],
      );
      console.log(
        `| ${scenario.name} | ${server.name} | ${
          fmt(m((s) => s.deliveries_per_sec), 0)
        } | ` +
          `${fmt(m((s) => s.latency_ms.p50), 2)} | ${
            fmt(m((s) => s.latency_ms.p99), 2)
          } | ` +
          `${fmt(m((s) => s.server_cpu_us_per_delivery), 2)} | ` +
          `${
            fmt(
              m((s) =>
                s.server_cpu_seconds === null
                  ? null
                  : s.server_cpu_seconds / duration
              ),
              2,
            )
          } | ` +
          `${
            fmt(
              m((s) =>
                s.server_peak_rss_bytes === null
                  ? null
                  : s.server_peak_rss_bytes / 2 ** 20
              ),
              0,
            )
          } | ` +
          `${bad.join("/")} |`,
      );
    }
  }
}

if (import.meta.main) {
  await main();
}

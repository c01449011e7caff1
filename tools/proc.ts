/**
 * Readings from Linux's /proc: CPU seconds and memory of a process and its
 * descendants; and pinning this process to a CPU with taskset. Where there is
 * no /proc, the readings are null.
 *
 * @module
 */

let clockTicks = 0;

/** Clock ticks per second of /proc/PID/stat times (`getconf CLK_TCK`). */
function clkTck(): number {
  if (clockTicks > 0) return clockTicks;
  clockTicks = 100; // Linux's USER_HZ nearly everywhere.
  try {
    const out = new Deno.Command("getconf", {
      args: ["CLK_TCK"],
      stdout: "piped",
      stderr: "null",
    }).outputSync();
    const n = Number(new TextDecoder().decode(out.stdout).trim());
    if (out.success && Number.isInteger(n) && n > 0) clockTicks = n;
  } catch {
    // No getconf: keep 100.
  }
  return clockTicks;
}

/** A /proc file's text, or null when it cannot be read (no such process). */
function readText(path: string): string | null {
  try {
    return Deno.readTextFileSync(path);
  } catch {
    return null;
  }
}

/** The pid and all its live descendants (via /proc/PID/task/TID/children). */
function processTree(pid: number): number[] {
  const seen = new Set<number>([pid]);
  const queue = [pid];
  for (let q = 0; q < queue.length && q < 10_000; q++) {
    const p = queue[q];
    let tasks: string[] = [];
    try {
      tasks = [...Deno.readDirSync(`/proc/${p}/task`)].map((e) => e.name);
    } catch {
      continue;
    }
    for (const tid of tasks) {
      const text = readText(`/proc/${p}/task/${tid}/children`);
      if (text === null) continue;
      for (const word of text.split(" ")) {
        const child = Number(word);
        if (word !== "" && Number.isInteger(child) && !seen.has(child)) {
          seen.add(child);
          queue.push(child);
        }
      }
    }
  }
  return [...seen];
}

/**
 * CPU seconds (user + system, all threads, plus reaped children) of a
 * process and, unless `tree` is false, its live descendants; null if /proc
 * has no such process.
 *
 * @example
 * ```ts
 * import { cpuSeconds } from "./proc.ts";
 * cpuSeconds(Deno.pid, false); // e.g. 0.42 on Linux, null elsewhere
 * ```
 */
export function cpuSeconds(pid: number, tree = true): number | null {
  let ticks = 0;
  let found = false;
  for (const p of tree ? processTree(pid) : [pid]) {
    const stat = readText(`/proc/${p}/stat`);
    if (stat === null) continue;
    // Fields after the ")" that closes the command name start at field 3.
    const rest = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    ticks += Number(rest[11]) + Number(rest[12]) + Number(rest[13]) +
      Number(rest[14]);
    found = true;
  }
  return found ? ticks / clkTck() : null;
}

/**
 * A /proc/PID/status field in bytes (VmRSS, VmHWM), summed over the process
 * and its live descendants; null when /proc has no such process (or no /proc).
 *
 * @example
 * ```ts
 * import { statusBytes } from "./proc.ts";
 * statusBytes(Deno.pid, "VmRSS"); // e.g. 52428800 on Linux, null elsewhere
 * ```
 */
export function statusBytes(pid: number, field: string): number | null {
  let total = 0;
  let found = false;
  for (const p of processTree(pid)) {
    const status = readText(`/proc/${p}/status`);
    if (status === null) continue;
    const m = new RegExp(`^${field}:\\s+(\\d+) kB`, "m").exec(status);
    if (m !== null) {
      total += Number(m[1]) * 1024;
      found = true;
    }
  }
  return found ? total : null;
}

/**
 * A process's command line as it was run (from /proc/PID/cmdline), its
 * words joined by spaces; null when /proc has no such process.
 *
 * @example
 * ```ts
 * import { commandLine } from "./proc.ts";
 * commandLine(Deno.pid); // e.g. "deno run -A tools/load.ts" on Linux
 * ```
 */
export function commandLine(pid: number): string | null {
  const text = readText(`/proc/${pid}/cmdline`);
  if (text === null) return null;
  return text.split("\0").filter((word) => word !== "").join(" ");
}

/**
 * Pins this process, all its threads, to one CPU (`taskset -a -p -c`);
 * throws an Error naming `--pin-load` when taskset refuses.
 *
 * @example
 * ```ts ignore
 * import { pinSelf } from "./proc.ts";
 * await pinSelf(1);
 * ```
 */
export async function pinSelf(cpu: number): Promise<void> {
  const out = await new Deno.Command("taskset", {
    args: ["-a", "-p", "-c", String(cpu), String(Deno.pid)],
    stdout: "null",
    stderr: "piped",
  }).output();
  if (!out.success) {
    throw new Error(
      `--pin-load ${cpu}: taskset failed: ${
        new TextDecoder().decode(out.stderr).trim()
      }; expected a CPU number this machine has`,
    );
  }
}

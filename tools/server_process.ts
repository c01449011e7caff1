/**
 * A server under test, started by the tools: its command line split and
 * given a free loopback port, its address read from what it prints, and its
 * stop (SIGTERM, then SIGKILL), every step bounded in time.
 *
 * @module
 */

import { commandLine } from "./proc.ts";
import { withTimeout } from "./wait.ts";

/** How long a started server may take to print its URL (first compile). */
export const SERVER_START_CAP_MS = 60_000;

/** How long a server gets after SIGTERM before SIGKILL. */
export const SERVER_STOP_CAP_MS = 5_000;

/** A server started by {@linkcode startServerProcess}. */
export interface ServerProcess {
  /** Its process id. */
  pid: number;
  /** The WebSocket endpoint it printed (`ws://host:port/ws`). */
  url: string;
  /** Its command line as run (from /proc when readable). */
  commandLine: string;
  /** SIGTERM, SIGKILL after 5 s; resolves with the exit code (null if killed). */
  stop(): Promise<number | null>;
}

/**
 * Splits a command line into words, honouring single and double quotes.
 *
 * @example
 * ```ts
 * import { splitCommand } from "./server_process.ts";
 * splitCommand(`deno run -A "my server.ts"`); // ["deno","run","-A","my server.ts"]
 * ```
 */
export function splitCommand(command: string): string[] {
  const words: string[] = [];
  let word = "";
  let inWord = false;
  let quote = "";
  for (const ch of command) {
    if (quote !== "") {
      if (ch === quote) quote = "";
      else word += ch;
    } else if (ch === "'" || ch === '"') {
      quote = ch;
      inWord = true;
    } else if (ch === " " || ch === "\t" || ch === "\n") {
      if (inWord) words.push(word);
      word = "";
      inWord = false;
    } else {
      word += ch;
      inWord = true;
    }
  }
  if (quote !== "") {
    throw new Error(
      `--server: unterminated ${quote} quote in "${command}"; expected a closing ${quote}`,
    );
  }
  if (inWord) words.push(word);
  return words;
}

/**
 * The argv to start a server on a free loopback port: `{port}`/`{host}`
 * placeholders are filled in, or else `--port 0 --host 127.0.0.1` appended;
 * with `pin`, the command runs under `taskset -c pin`.
 *
 * @example
 * ```ts
 * import { serverArgv } from "./server_process.ts";
 * serverArgv("deno run -A main.ts"); // [..., "--port", "0", "--host", "127.0.0.1"]
 * serverArgv("node s.js {port}", { pin: 0 }); // ["taskset","-c","0","node","s.js","0"]
 * ```
 */
export function serverArgv(
  command: string,
  options: { pin?: number } = {},
): string[] {
  const words = splitCommand(command);
  if (words.length === 0) {
    throw new Error(
      "--server is empty; expected a command like 'deno run -A main.ts'",
    );
  }
  let argv: string[];
  if (command.includes("{port}")) {
    argv = words.map((w) =>
      w.replaceAll("{port}", "0").replaceAll("{host}", "127.0.0.1")
    );
  } else {
    argv = [...words, "--port", "0", "--host", "127.0.0.1"];
  }
  if (options.pin !== undefined) {
    argv = ["taskset", "-c", String(options.pin), ...argv];
  }
  return argv;
}

/**
 * Finds the first `http(s)://host:port/` in a server's output and returns the
 * matching WebSocket endpoint URL, or null.
 *
 * @example
 * ```ts
 * import { findListenUrl } from "./server_process.ts";
 * findListenUrl("listening on http://127.0.0.1:4000/"); // "ws://127.0.0.1:4000/ws"
 * ```
 */
export function findListenUrl(text: string): string | null {
  const m = /(https?):\/\/(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.\-]+):(\d+)/.exec(text);
  if (m === null) return null;
  const scheme = m[1] === "https" ? "wss" : "ws";
  let host = m[2];
  if (host === "0.0.0.0") host = "127.0.0.1";
  if (host === "[::]") host = "[::1]";
  return `${scheme}://${host}:${m[3]}/ws`;
}

/**
 * Starts `command` on a free loopback port (see {@linkcode serverArgv}) and
 * resolves once it printed its `http://host:port/`; throws an Error with its
 * output if it does not within 60 s.
 *
 * @example
 * ```ts
 * import { startServerProcess } from "./server_process.ts";
 * const server = await startServerProcess("deno run -A main.ts", null);
 * console.log(server.url); // ws://127.0.0.1:PORT/ws
 * await server.stop();
 * ```
 */
export async function startServerProcess(
  command: string,
  pin: number | null,
): Promise<ServerProcess> {
  const argv = serverArgv(command, pin === null ? {} : { pin });
  let child: Deno.ChildProcess;
  try {
    child = new Deno.Command(argv[0], {
      args: argv.slice(1),
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
  } catch (error) {
    throw new Error(
      `--server: cannot start "${argv.join(" ")}": ${
        (error as Error).message
      }; expected an executable command`,
    );
  }
  const stderrTail: string[] = [];
  const stderrDone = (async () => {
    const reader = child.stderr.pipeThrough(new TextDecoderStream())
      .getReader();
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      stderrTail.push(value);
      if (stderrTail.length > 20) stderrTail.shift();
    }
  })().catch(() => {});
  const stdoutReader = child.stdout.pipeThrough(new TextDecoderStream())
    .getReader();
  let seen = "";
  let url: string | null = null;
  const deadline = performance.now() + SERVER_START_CAP_MS;
  let exited = false;
  const statusPromise = child.status.then((s) => {
    exited = true;
    return s;
  });
  while (url === null && !exited) {
    const left = deadline - performance.now();
    if (left <= 0) break;
    const chunk = await withTimeout(stdoutReader.read(), left, null);
    if (chunk === null || chunk.done) break;
    seen += chunk.value;
    if (seen.length > 65_536) seen = seen.slice(-65_536);
    url = findListenUrl(seen);
  }
  const stdoutDone = (async () => {
    for (;;) {
      const { done } = await stdoutReader.read();
      if (done) break;
    }
  })().catch(() => {});

  async function stop(): Promise<number | null> {
    if (!exited) {
      try {
        child.kill("SIGTERM");
      } catch {
        // Already gone.
      }
    }
    let status = await withTimeout(statusPromise, SERVER_STOP_CAP_MS, null);
    if (status === null) {
      try {
        child.kill("SIGKILL");
      } catch {
        // Already gone.
      }
      status = await statusPromise;
    }
    await Promise.all([stdoutDone, stderrDone]);
    return status.signal === null ? status.code : null;
  }

  if (url === null) {
    await stop();
    throw new Error(
      `--server "${command}" printed no http://host:port/ within ${
        SERVER_START_CAP_MS / 1000
      } s${exited ? " and exited" : ""}; expected a line like ` +
        `"listening on http://127.0.0.1:PORT/". stdout: ${
          JSON.stringify(seen.slice(-500))
        } stderr: ${JSON.stringify(stderrTail.join("").slice(-500))}`,
    );
  }
  return {
    pid: child.pid,
    url,
    commandLine: commandLine(child.pid) ?? argv.join(" "),
    stop,
  };
}

/**
 * A server under test, started by the tools: its command line split and
 * given a free loopback port, its address read from what it prints, and its
 * stop (SIGTERM, then SIGKILL), every step bounded in time.
 *
 * A hubchat command (one that runs `main.ts`, or `deno task start`) also
 * gets what a load test from one machine needs, each only when the command
 * does not set it itself: `--rate 0` and `--max-connections-per-ip 0` (its
 * defaults, 10 messages/s per client and 20 connections per address, would
 * throttle and refuse the test), and `--data` in a temporary directory that
 * is removed when the server stops, so a test never writes into the user's
 * history (`./data/hubchat.kv` by default).
 *
 * Several nodes of one cluster (see node_group.ts) are started the same
 * way, each on its own port, with `--redis URL` added (or a `{redis}`
 * placeholder filled in), and restarted on the port they had.
 *
 * @module
 */

import { commandLine } from "./proc.ts";
import { withTimeout } from "./wait.ts";

/** How long a started server may take to print its URL (first compile). */
export const SERVER_START_CAP_MS = 60_000;

/** How long a server gets after SIGTERM before SIGKILL. */
export const SERVER_STOP_CAP_MS = 5_000;

/** One setting of hubchat's: its flag and its environment variable. */
interface HubchatSetting {
  /** The flag, with its dashes. */
  flag: string;
  /** The variable main.ts reads when the flag is not given. */
  env: string;
}

/**
 * What a load test turns off in a started hubchat, each to `0`: its rate
 * limit (10 messages/s per client would throttle the senders) and its cap
 * of 20 connections per address (every client comes from 127.0.0.1).
 */
const UNLIMITED: readonly HubchatSetting[] = [
  { flag: "--rate", env: "HUBCHAT_RATE" },
  { flag: "--max-connections-per-ip", env: "HUBCHAT_MAX_CONNECTIONS_PER_IP" },
];

/** Where hubchat keeps its history: a started one gets a temporary file. */
const DATA: HubchatSetting = { flag: "--data", env: "HUBCHAT_DATA" };

/** The Redis that hubchat nodes share rooms through. */
const REDIS: HubchatSetting = { flag: "--redis", env: "HUBCHAT_REDIS_URL" };

/** The placeholder a command holds for the Redis URL, instead of `--redis`. */
const REDIS_PLACEHOLDER = "{redis}";

/** The history file's name inside the temporary directory. */
const DATA_FILE = "hubchat.kv";

/** Prefix of the temporary directory, so a leftover one says whose it is. */
export const DATA_DIR_PREFIX = "hubchat-test-data-";

/** A server started by {@linkcode startServerProcess}. */
export interface ServerProcess {
  /** Its process id. */
  pid: number;
  /** The WebSocket endpoint it printed (`ws://host:port/ws`). */
  url: string;
  /** The port in `url`: where a restart listens again. */
  port: number;
  /** Its command line as run (from /proc when readable). */
  commandLine: string;
  /**
   * The directory of its history (a hubchat command that set no `--data`):
   * a temporary one removed by `stop`, or the `dataDir` it was given, which
   * stays; null when there is none.
   */
  dataDir: string | null;
  /**
   * Sends `signal` (default SIGTERM), SIGKILL after 5 s if it still runs,
   * then removes a temporary `dataDir`; resolves with the exit code (null
   * if a signal ended it). Later calls resolve with the first's answer.
   */
  stop(signal?: Deno.Signal): Promise<number | null>;
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
 * Whether a command starts hubchat, so that hubchat's flags may be added to
 * it: it runs `main.ts` (a word that is `main.ts` or ends in `/main.ts`), or
 * it is `deno task start`. Other servers (bench/naive_server.ts,
 * floor_server.ts, bun_server.ts) would refuse those flags.
 *
 * @example
 * ```ts
 * import { isHubchatCommand, splitCommand } from "./server_process.ts";
 * isHubchatCommand(splitCommand("deno run -A main.ts")); // true
 * isHubchatCommand(splitCommand("deno task start")); // true
 * isHubchatCommand(splitCommand("deno run -A bench/naive_server.ts")); // false
 * ```
 */
export function isHubchatCommand(words: readonly string[]): boolean {
  for (let i = 0; i < words.length; i++) {
    const word = words[i];
    if (word === "main.ts" || word.endsWith("/main.ts")) return true;
    if (word === "task" && words[i + 1] === "start") return true;
  }
  return false;
}

/**
 * Whether the command itself sets a hubchat setting: `--flag`,
 * `--flag=VALUE`, or `VAR=VALUE` (as in `env VAR=VALUE deno run ...`).
 * The tool's own environment does not count: a flag added overrides it.
 */
function setsSetting(
  words: readonly string[],
  setting: HubchatSetting,
): boolean {
  return words.some((word) =>
    word === setting.flag || word.startsWith(`${setting.flag}=`) ||
    word.startsWith(`${setting.env}=`)
  );
}

/**
 * Whether {@linkcode startServerProcess} gives the command a temporary
 * history file: it starts hubchat (see {@linkcode isHubchatCommand}), sets
 * no `--data` (nor `HUBCHAT_DATA=`) itself, and `asIs` is false.
 *
 * @example
 * ```ts
 * import { needsTempData } from "./server_process.ts";
 * needsTempData("deno run -A main.ts"); // true
 * needsTempData("deno run -A main.ts --data :memory:"); // false
 * needsTempData("deno run -A bench/naive_server.ts"); // false
 * ```
 */
export function needsTempData(command: string, asIs = false): boolean {
  const words = splitCommand(command);
  return !asIs && isHubchatCommand(words) && !setsSetting(words, DATA);
}

/** Options of {@linkcode serverArgv}. */
export interface ServerArgvOptions {
  /** Run the command under `taskset -c pin`. */
  pin?: number;
  /** Add only the port and host, even to a hubchat command. */
  asIs?: boolean;
  /**
   * The history file a hubchat command gets as `--data` when it sets none
   * (see {@linkcode needsTempData}); without it, none is added.
   */
  dataPath?: string;
  /** The port to listen on; default 0, a free one. */
  port?: number;
  /**
   * The Redis URL of a cluster: fills a `{redis}` placeholder, or else is
   * added as `--redis URL` to a hubchat command that sets no `--redis`
   * (nor `HUBCHAT_REDIS_URL=`); any other command must hold `{redis}`.
   */
  redis?: string;
}

/**
 * The argv to start a server on a free loopback port (or `port`):
 * `{port}`/`{host}` placeholders are filled in, or else
 * `--port 0 --host 127.0.0.1` appended. A hubchat command (see
 * {@linkcode isHubchatCommand}) also gets `--rate 0`,
 * `--max-connections-per-ip 0` and `--data DATAPATH`, each unless it sets
 * that flag (or its variable, `env HUBCHAT_RATE=...`) itself or `asIs` is
 * true; with `redis`, see {@linkcode ServerArgvOptions.redis}. With `pin`,
 * the command runs under `taskset -c pin`.
 *
 * @example
 * ```ts
 * import { serverArgv } from "./server_process.ts";
 * serverArgv("deno run -A main.ts --rate 5", { dataPath: "/tmp/d/hubchat.kv" });
 * // [..., "main.ts", "--rate", "5", "--port", "0", "--host", "127.0.0.1",
 * //  "--max-connections-per-ip", "0", "--data", "/tmp/d/hubchat.kv"]
 * serverArgv("node s.js {port}", { pin: 0 }); // ["taskset","-c","0","node","s.js","0"]
 * serverArgv("deno run -A main.ts", { port: 8081, redis: "redis://127.0.0.1:6379" });
 * // [..., "--port", "8081", ..., "--redis", "redis://127.0.0.1:6379"]
 * ```
 */
export function serverArgv(
  command: string,
  options: ServerArgvOptions = {},
): string[] {
  const words = splitCommand(command);
  if (words.length === 0) {
    throw new Error(
      "--server is empty; expected a command like 'deno run -A main.ts'",
    );
  }
  const port = String(options.port ?? 0);
  const hubchat = !options.asIs && isHubchatCommand(words);
  const placeholder = command.includes(REDIS_PLACEHOLDER);
  const redisFlag = clusterRedisArgs(command, options.redis, hubchat);
  let argv = words.map((w) =>
    w.replaceAll("{port}", port).replaceAll("{host}", "127.0.0.1")
      .replaceAll(REDIS_PLACEHOLDER, placeholder ? options.redis! : "")
  );
  if (!command.includes("{port}")) {
    argv.push("--port", port, "--host", "127.0.0.1");
  }
  if (hubchat) {
    for (const setting of UNLIMITED) {
      if (!setsSetting(words, setting)) argv.push(setting.flag, "0");
    }
    if (options.dataPath !== undefined && !setsSetting(words, DATA)) {
      argv.push(DATA.flag, options.dataPath);
    }
  }
  argv.push(...redisFlag);
  if (options.pin !== undefined) {
    argv = ["taskset", "-c", String(options.pin), ...argv];
  }
  return argv;
}

/**
 * What a command gets for the cluster's Redis: nothing when there is none
 * or it holds the `{redis}` placeholder (filled in where it stands), else
 * `--redis URL` for a hubchat command. Throws when the two cannot meet: a
 * placeholder without a Redis, a Redis for a command that is no hubchat
 * and has no placeholder, or a hubchat command that names its own Redis
 * (the nodes would not use the one the tool kills and restarts).
 */
function clusterRedisArgs(
  command: string,
  redis: string | undefined,
  hubchat: boolean,
): string[] {
  const placeholder = command.includes(REDIS_PLACEHOLDER);
  if (redis === undefined) {
    if (!placeholder) return [];
    throw new Error(
      `--server "${command}" holds ${REDIS_PLACEHOLDER} but no Redis was ` +
        "given; expected --redis-server, or the URL in the command",
    );
  }
  if (placeholder) return [];
  if (!hubchat) {
    throw new Error(
      `--server "${command}" is not a hubchat command (main.ts) and holds ` +
        `no ${REDIS_PLACEHOLDER}; expected ${REDIS_PLACEHOLDER} where the ` +
        "Redis URL goes, as in 'my_server --store {redis}'",
    );
  }
  if (setsSetting(splitCommand(command), REDIS)) {
    throw new Error(
      `--server "${command}" names its own Redis, and the tool starts one ` +
        "for the nodes; expected the command without --redis (or " +
        `${REDIS.env}), or ${REDIS_PLACEHOLDER} where the URL goes`,
    );
  }
  return [REDIS.flag, redis];
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

/** Options of {@linkcode startServerProcess}. */
export interface StartOptions {
  /** Run the server under `taskset -c pin`; null or absent: unpinned. */
  pin?: number | null;
  /** Add only the port and host, even to a hubchat command. */
  asIs?: boolean;
  /** The port to listen on; default a free one. */
  port?: number;
  /**
   * The directory of a hubchat command's history (`DIR/hubchat.kv`), kept
   * by `stop`: a node restarted with it finds its history. Default: a
   * temporary directory that `stop` removes.
   */
  dataDir?: string;
  /** The cluster's Redis URL; see {@linkcode ServerArgvOptions.redis}. */
  redis?: string;
}

/**
 * Starts `command` on a free loopback port, with a hubchat command's
 * load-test flags and temporary history (see {@linkcode serverArgv}), and
 * resolves once it printed its `http://host:port/`; throws an Error with
 * its output if it does not within 60 s.
 *
 * @example
 * ```ts
 * import { startServerProcess } from "./server_process.ts";
 * const server = await startServerProcess("deno run -A main.ts");
 * console.log(server.url, server.dataDir); // ws://127.0.0.1:PORT/ws /tmp/...
 * await server.stop(); // the temporary history is gone too
 * ```
 */
export async function startServerProcess(
  command: string,
  options: StartOptions = {},
): Promise<ServerProcess> {
  const asIs = options.asIs ?? false;
  const pin = options.pin ?? undefined;
  const ownsDataDir = options.dataDir === undefined;
  const dataDir = !needsTempData(command, asIs)
    ? null
    : options.dataDir ?? await Deno.makeTempDir({ prefix: DATA_DIR_PREFIX });
  /** Removes the data directory if it is a temporary one of ours. */
  const removeOwnDataDir = (): Promise<void> =>
    removeDataDir(ownsDataDir ? dataDir : null);
  let argv: string[];
  try {
    argv = serverArgv(command, {
      pin,
      asIs,
      dataPath: dataDir === null ? undefined : `${dataDir}/${DATA_FILE}`,
      port: options.port,
      redis: options.redis,
    });
  } catch (error) {
    await removeOwnDataDir();
    throw error;
  }
  let child: Deno.ChildProcess;
  try {
    child = new Deno.Command(argv[0], {
      args: argv.slice(1),
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
  } catch (error) {
    await removeOwnDataDir();
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

  let stopping: Promise<number | null> | undefined;
  function stop(signal: Deno.Signal = "SIGTERM"): Promise<number | null> {
    stopping ??= end(signal);
    return stopping;
  }

  async function end(signal: Deno.Signal): Promise<number | null> {
    if (!exited) {
      try {
        child.kill(signal);
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
    await removeOwnDataDir();
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
    port: portOf(url),
    commandLine: commandLine(child.pid) ?? argv.join(" "),
    dataDir,
    stop,
  };
}

/**
 * Removes a started server's temporary history, if it had one (null: none);
 * a failure is reported on stderr, not thrown: the run's result stands.
 *
 * @example
 * ```ts
 * import { removeDataDir } from "./server_process.ts";
 * await removeDataDir(await Deno.makeTempDir());
 * ```
 */
export async function removeDataDir(dataDir: string | null): Promise<void> {
  if (dataDir === null) return;
  try {
    await Deno.remove(dataDir, { recursive: true });
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) {
      console.error(
        `cannot remove the server's temporary history ${dataDir}: ${
          (error as Error).message
        }`,
      );
    }
  }
}

/**
 * The port of a `ws://` or `wss://` URL, the scheme's default (80, 443)
 * when the URL names none.
 */
function portOf(url: string): number {
  const parsed = new URL(url);
  if (parsed.port !== "") return Number(parsed.port);
  return parsed.protocol === "wss:" ? 443 : 80;
}

/**
 * A redis-server of our own, for the soak tool's `--redis-server` and for
 * the tests (testing/redis_server.ts): a child process on a free loopback
 * port with its data in a temporary directory, never the system's Redis
 * nor its configuration file, up once it answers PING, and killed,
 * restarted on the same port and directory, or stopped, every step bounded
 * in time.
 *
 * Durability: with `appendonly` (the default), every write is in the
 * append-only file and fsynced before Redis acknowledges it
 * (`--appendfsync always`), so a SIGKILL of Redis loses nothing it
 * acknowledged: a restart on the same directory has every acknowledged
 * write back. That costs a disk sync per write, which a test or a soak on
 * one machine can afford; it is what "Redis lost nothing" means in a chaos
 * run. Without `appendonly`, nothing is persisted at all (`--save ""`, no
 * snapshots either): a restart starts empty.
 *
 * @module
 */

import { respCommand, type RespReply } from "./resp.ts";
import { sleep, withTimeout } from "./wait.ts";

/** The variable that names the redis-server binary outright. */
export const REDIS_SERVER_ENV = "REDIS_SERVER_PATH";

/** What to do when there is no redis-server: the end of the message. */
export const REDIS_SERVER_HINT =
  "install it with `apt-get install -y redis-server` (Debian/Ubuntu; " +
  "`deno task test` does this itself when run as root) or set " +
  `${REDIS_SERVER_ENV} to a redis-server binary`;

/**
 * How long a started Redis may take to answer PING: it starts in
 * milliseconds, but replaying a soak's append-only file after a kill, on a
 * loaded 2-core machine, can take seconds.
 */
export const REDIS_START_CAP_MS = 30_000;

/**
 * How long Redis gets after SIGTERM before SIGKILL: a clean shutdown
 * (flushing the append-only file) takes milliseconds.
 */
export const REDIS_STOP_CAP_MS = 5_000;

/** One command may take this long: Redis answers in microseconds. */
export const REDIS_COMMAND_CAP_MS = 5_000;

/** How often a starting Redis is asked PING: often, it is quick. */
const PING_EVERY_MS = 20;

/**
 * Tries at a free port: the port is found by binding port 0 and closing
 * it, so another process may take it before Redis binds it; that is rare,
 * and three tries make it rarer still.
 */
const PORT_TRIES = 3;

/** What Redis prints when its port is taken. */
const ADDRESS_IN_USE = /Address already in use/;

/** How much of Redis's output is kept for error messages, in characters. */
const KEPT_OUTPUT_CHARS = 16 * 1024;

/** Prefix of the temporary directory, so a leftover one says whose it is. */
const DIR_PREFIX = "hubchat-redis-";

/** How a Redis is started. */
export interface RedisProcessOptions {
  /**
   * The redis-server binary; default `$REDIS_SERVER_PATH`, else
   * `redis-server` on `$PATH`.
   */
  binary?: string;
  /** The port; default a free one. */
  port?: number;
  /**
   * Its data directory (`--dir`), kept at the end; default a new temporary
   * directory, removed by {@linkcode RedisProcess.stop}.
   */
  dir?: string;
  /**
   * Keep an append-only file, synced on every write, so a SIGKILL loses
   * nothing acknowledged and a restart has the data back. Default true.
   */
  appendonly?: boolean;
}

/**
 * The argv after the binary: loopback only, the given port and directory,
 * no snapshots, the append-only file synced on every write or none, and
 * every other setting Redis's built-in default (no configuration file is
 * read).
 *
 * @example
 * ```ts
 * import { redisArgs } from "./redis_process.ts";
 * redisArgs({ port: 6390, dir: "/tmp/r", appendonly: false }).join(" ");
 * // "--port 6390 --bind 127.0.0.1 --protected-mode no --dir /tmp/r --save  --appendonly no ..."
 * ```
 */
export function redisArgs(
  settings: { port: number; dir: string; appendonly: boolean },
): string[] {
  return [
    "--port",
    String(settings.port),
    "--bind",
    "127.0.0.1",
    // Bound to loopback, so nothing else can reach it: protected mode
    // (which refuses clients from other addresses when there is no
    // password) is said off rather than left to the build's default.
    "--protected-mode",
    "no",
    "--dir",
    settings.dir,
    "--save",
    "",
    "--appendonly",
    settings.appendonly ? "yes" : "no",
    "--appendfsync",
    "always",
    "--daemonize",
    "no",
    "--logfile",
    "",
  ];
}

/**
 * A port nothing listens on right now (bound and released at once).
 *
 * @example
 * ```ts
 * import { freePort } from "./redis_process.ts";
 * freePort(); // e.g. 41234
 * ```
 */
export function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  return port;
}

/**
 * A redis-server in a child process; see the module's notes on
 * durability.
 *
 * @example
 * ```ts ignore
 * import { RedisProcess } from "./redis_process.ts";
 * const redis = await RedisProcess.start();
 * await redis.command(["SET", "k", "v"]);
 * await redis.kill("SIGKILL");
 * await redis.restart();
 * await redis.command(["GET", "k"]); // "v": appendonly is the default
 * await redis.stop();
 * ```
 */
export class RedisProcess {
  /** The binary run. */
  readonly binary: string;
  /** Whether the append-only file is kept (and synced on every write). */
  readonly appendonly: boolean;
  #port: number;
  #dir: string | null;
  #ownsDir: boolean;
  #child: Deno.ChildProcess | null = null;
  #exited: Promise<Deno.CommandStatus> | null = null;
  #output: Promise<void> | null = null;
  #log = "";
  #stopped = false;
  #restarts = 0;

  /** Settings only; {@linkcode RedisProcess.start} starts it. */
  protected constructor(options: RedisProcessOptions) {
    this.binary = options.binary ?? Deno.env.get(REDIS_SERVER_ENV) ??
      "redis-server";
    this.appendonly = options.appendonly ?? true;
    this.#port = options.port ?? 0;
    this.#dir = options.dir ?? null;
    this.#ownsDir = options.dir === undefined;
  }

  /**
   * Starts a Redis and resolves once it answers PING; throws an Error
   * saying why (no such binary, its output) when it does not within 30 s.
   */
  static async start(options: RedisProcessOptions = {}): Promise<RedisProcess> {
    const redis = new RedisProcess(options);
    await redis.open();
    return redis;
  }

  /** The port it listens on (the same across restarts). */
  get port(): number {
    return this.#port;
  }

  /** Its data directory (the same across restarts). */
  get dir(): string {
    if (this.#dir === null) throw new Error("this Redis was never started");
    return this.#dir;
  }

  /** `redis://127.0.0.1:PORT`, what a Redis client is given. */
  get url(): string {
    return `redis://127.0.0.1:${this.#port}`;
  }

  /** Its process id while it runs, else null. */
  get pid(): number | null {
    return this.#child?.pid ?? null;
  }

  /** True while the process runs. */
  get running(): boolean {
    return this.#child !== null;
  }

  /** Times {@linkcode RedisProcess.restart} brought it back. */
  get restarts(): number {
    return this.#restarts;
  }

  /** What it printed, the last 16 KiB: for error messages. */
  get log(): string {
    return this.#log;
  }

  /**
   * The first start: makes the temporary directory, picks a free port
   * (another if it was taken meanwhile), and waits for PING; on failure
   * nothing is left behind. For subclasses' own `start`.
   */
  protected async open(): Promise<void> {
    if (this.#dir === null) {
      this.#dir = await Deno.makeTempDir({ prefix: DIR_PREFIX });
    }
    const pickPort = this.#port === 0;
    try {
      for (let tries = 1;; tries++) {
        if (pickPort) this.#port = freePort();
        try {
          await this.#launch();
          return;
        } catch (error) {
          const taken = ADDRESS_IN_USE.test(this.#log);
          if (!pickPort || !taken || tries >= PORT_TRIES) throw error;
        }
      }
    } catch (error) {
      await this.#removeDir();
      throw error;
    }
  }

  /**
   * Sends one command and resolves with the reply; throws a RespError
   * (resp.ts) for an error reply, an Error if Redis does not answer
   * within 5 s.
   */
  command(args: readonly string[]): Promise<RespReply> {
    return respCommand(this.#port, args, REDIS_COMMAND_CAP_MS);
  }

  /**
   * Sends `signal` (default SIGKILL: a crash) and waits for the process to
   * end (SIGKILL after 5 s if `signal` did not end it). The directory
   * stays; {@linkcode RedisProcess.restart} starts it again.
   */
  async kill(signal: Deno.Signal = "SIGKILL"): Promise<void> {
    const child = this.#child;
    if (child === null) return;
    try {
      child.kill(signal);
    } catch {
      // It ended meanwhile.
    }
    let status = await withTimeout(this.#exited!, REDIS_STOP_CAP_MS, null);
    if (status === null) {
      try {
        child.kill("SIGKILL");
      } catch {
        // It ended meanwhile.
      }
      status = await this.#exited!;
    }
    await this.#output;
    this.#child = null;
    this.#exited = null;
    this.#output = null;
  }

  /**
   * Starts it again on the same port with the same directory (stopping it
   * with SIGTERM first if it runs), and resolves once it answers PING:
   * with `appendonly`, every write it acknowledged is back.
   */
  async restart(): Promise<void> {
    if (this.#stopped) {
      throw new Error("this Redis was stopped; start a new one instead");
    }
    await this.kill("SIGTERM");
    await this.#launch();
    this.#restarts++;
  }

  /**
   * SIGTERM (SIGKILL after 5 s), then removes the temporary directory if
   * it made one. Later calls do nothing.
   */
  async stop(): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    await this.kill("SIGTERM");
    await this.#removeDir();
  }

  /** Spawns redis-server and waits until it answers PING. */
  async #launch(): Promise<void> {
    this.#log = "";
    let child: Deno.ChildProcess;
    try {
      child = new Deno.Command(this.binary, {
        args: redisArgs({
          port: this.#port,
          dir: this.dir,
          appendonly: this.appendonly,
        }),
        cwd: this.dir,
        stdin: "null",
        stdout: "piped",
        stderr: "piped",
      }).spawn();
    } catch (error) {
      if (error instanceof Deno.errors.NotFound) {
        throw new Error(
          `redis-server not found (${this.binary} is not on this machine); ${REDIS_SERVER_HINT}`,
        );
      }
      throw new Error(
        `cannot start ${this.binary}: ${
          (error as Error).message
        }; expected a redis-server binary`,
      );
    }
    this.#child = child;
    let ended = false;
    this.#exited = child.status.then((status) => {
      ended = true;
      return status;
    });
    this.#output = Promise.all([
      this.#keep(child.stdout),
      this.#keep(child.stderr),
    ]).then(() => {});
    const deadline = performance.now() + REDIS_START_CAP_MS;
    let lastError = "no answer yet";
    while (performance.now() < deadline && !ended) {
      try {
        if (await this.command(["PING"]) === "PONG") return;
      } catch (error) {
        lastError = (error as Error).message; // LOADING, refused...
      }
      await sleep(PING_EVERY_MS);
    }
    await this.kill("SIGKILL");
    throw new Error(
      `redis-server on port ${this.#port} did not answer PING within ${
        REDIS_START_CAP_MS / 1000
      } s${ended ? " and exited" : ""} (last: ${lastError}); its output: ${
        JSON.stringify(this.#log.slice(-2000))
      }`,
    );
  }

  /** Reads one output stream to its end, keeping its tail in the log. */
  async #keep(stream: ReadableStream<Uint8Array>): Promise<void> {
    try {
      for await (const text of stream.pipeThrough(new TextDecoderStream())) {
        this.#log = (this.#log + text).slice(-KEPT_OUTPUT_CHARS);
      }
    } catch {
      // The process is gone; what was read is kept.
    }
  }

  async #removeDir(): Promise<void> {
    if (!this.#ownsDir || this.#dir === null) return;
    try {
      await Deno.remove(this.#dir, { recursive: true });
    } catch (error) {
      if (!(error instanceof Deno.errors.NotFound)) throw error;
    }
  }
}

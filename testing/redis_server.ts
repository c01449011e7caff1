/**
 * A real redis-server for a test: its own process on a free port of
 * 127.0.0.1, with its data in a temporary directory (never the system's
 * Redis, never its configuration), up once it answers PING, killed and
 * restarted on the same port and directory for crash tests, and stopped
 * with its directory removed. A machine without redis-server fails the
 * test with one line saying how to install it.
 *
 * The process handling is tools/redis_process.ts's (the soak tool starts
 * its Redis with it too); this adds only the lookup of the binary the
 * tests' way (testing/programs.ts). With `appendonly` (the default), every
 * acknowledged write survives a SIGKILL: see tools/redis_process.ts.
 *
 * @module
 */

import {
  RedisProcess,
  type RedisProcessOptions,
} from "../tools/redis_process.ts";
import { findProgram, REDIS_SERVER } from "./programs.ts";

/** How a test's Redis is started. */
export interface RedisServerOptions {
  /**
   * Keep an append-only file synced on every write (`--appendfsync
   * always`), so a SIGKILL loses nothing acknowledged and `restart`
   * brings the data back. Default true.
   */
  appendonly?: boolean;
  /** The port; default a free one. */
  port?: number;
  /**
   * The data directory, left in place by `stop`; default a new temporary
   * directory that `stop` removes.
   */
  dir?: string;
}

/**
 * A redis-server for one test. `url` is what a node is given
 * (`redis://127.0.0.1:PORT`), `command` talks to it, `kill` crashes it,
 * `restart` brings it back on the same port and directory, `stop` ends
 * it and removes its temporary directory. Stop it in a `finally`.
 *
 * @example
 * ```ts
 * import { RedisServer } from "./redis_server.ts";
 * const redis = await RedisServer.start({ appendonly: true });
 * try {
 *   await redis.command(["SET", "greeting", "hello"]); // "OK"
 *   await redis.kill("SIGKILL");
 *   await redis.restart();
 *   await redis.command(["GET", "greeting"]); // "hello"
 * } finally {
 *   await redis.stop();
 * }
 * ```
 */
export class RedisServer extends RedisProcess {
  /**
   * Finds redis-server (`$REDIS_SERVER_PATH`, `/usr/bin/redis-server`,
   * `$PATH`; throws one line saying how to install it when there is
   * none), starts it and resolves once it answers PING.
   */
  static override async start(
    options: RedisServerOptions = {},
  ): Promise<RedisServer> {
    const settings: RedisProcessOptions = {
      ...options,
      binary: await findProgram(REDIS_SERVER),
    };
    const redis = new RedisServer(settings);
    await redis.open();
    return redis;
  }
}

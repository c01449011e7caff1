/**
 * Who is behind a session secret: the upload and download routes of
 * `/files` are authorized by the uploader's live connection
 * (`Authorization: Bearer SESSION`, the secret its `welcome` gave). One
 * process answers from its own connections ({@linkcode LocalSessions});
 * with `--redis` the request may reach a node that does not hold the
 * socket, so {@linkcode RedisSessions} also asks Redis, where every
 * connection's claim on its name holds a hash of its session
 * (`hubchat:room:R:names`, see store/redis.ts), kept from admission until
 * the connection leaves the room.
 *
 * @module
 */

import { sessionHash } from "../connection.ts";

/** Finds the live connection of a session secret in a room. */
export interface SessionDirectory {
  /**
   * The name under which the connection whose secret is `session` is in
   * `room` now, or null when there is none (an unknown or ended session,
   * or one in another room).
   */
  member(session: string, room: string): Promise<string | null>;
  /** Lets go of what it holds. */
  close(): Promise<void>;
}

/** Where a live connection of this process is. */
export type LocalLookup = (
  session: string,
) => { room: string; username: string } | undefined;

/**
 * This process's connections (connection.ts's `Connections.bySession`).
 *
 * @example
 * ```ts
 * import { LocalSessions } from "./sessions.ts";
 * const sessions = new LocalSessions(() => ({ room: "lobby", username: "ann" }));
 * await sessions.member("9f0c", "lobby"); // "ann"
 * ```
 */
export class LocalSessions implements SessionDirectory {
  #lookup: LocalLookup;

  /** Answers from `lookup`. */
  constructor(lookup: LocalLookup) {
    this.#lookup = lookup;
  }

  /** The member's name, when the session's connection is in `room`. */
  member(session: string, room: string): Promise<string | null> {
    const found = this.#lookup(session);
    return Promise.resolve(found?.room === room ? found.username : null);
  }

  /** Nothing to let go of. */
  close(): Promise<void> {
    return Promise.resolve();
  }
}

/**
 * Finds the name whose claim carries a session's hash, if the node that
 * holds it is alive. KEYS: the room's names hash. ARGV: the session's
 * hash, the node heartbeat key prefix. Returns the name, or false. One
 * pass over the room's claims, in Redis: uploads are rare next to chat.
 */
const FIND_SESSION = `
local claims = redis.call('HGETALL', KEYS[1])
for i = 1, #claims, 2 do
  local claim = claims[i + 1]
  local space = string.find(claim, ' ', 1, true)
  if space and string.sub(claim, space + 1) == ARGV[1] then
    local owner = string.sub(claim, 1, space - 1)
    local slash = string.find(owner, '/', 1, true)
    if slash and redis.call('EXISTS', ARGV[2] .. string.sub(owner, 1, slash - 1)) == 1 then
      return claims[i]
    end
    return false
  end
end
return false`;

/** The part of `@redis/client`'s client this module uses. */
interface RedisClient {
  connect(): Promise<unknown>;
  close(): Promise<void>;
  destroy(): void;
  on(event: string, listener: (...args: unknown[]) => void): unknown;
  sendCommand(args: string[]): Promise<unknown>;
}

/** The client package, as store/redis.ts loads it (deno.json pins it). */
const CLIENT_MODULE = "@redis/client";

/** How long a lookup may wait for Redis before the request gets 503. */
const LOOKUP_TIMEOUT_MS = 5000;

/** Redis could not be asked: the request gets 503, not 401. */
export class SessionsUnavailable extends Error {
  /** Creates the error with what went wrong. */
  constructor(message: string, options?: ErrorOptions) {
    super(`cannot look the session up in Redis: ${message}`, options);
    this.name = "SessionsUnavailable";
  }
}

/**
 * Sessions of every node sharing a Redis: this process's own first, then
 * the room's claims in Redis. A connection of its own.
 *
 * @example
 * ```ts ignore
 * import { LocalSessions, RedisSessions } from "./sessions.ts";
 * const local = new LocalSessions(() => undefined);
 * const sessions = await RedisSessions.connect("redis://127.0.0.1:6379", local);
 * await sessions.member("9f0c", "lobby"); // the name, or null
 * await sessions.close();
 * ```
 */
export class RedisSessions implements SessionDirectory {
  #client: RedisClient;
  #local: SessionDirectory;

  private constructor(client: RedisClient, local: SessionDirectory) {
    this.#client = client;
    this.#local = local;
  }

  /** Connects to Redis; throws {@linkcode SessionsUnavailable} if it cannot. */
  static async connect(
    url: string,
    local: SessionDirectory,
  ): Promise<RedisSessions> {
    try {
      const { createClient } = await import(CLIENT_MODULE) as {
        createClient: (options: unknown) => RedisClient;
      };
      const client = createClient({
        url,
        RESP: 3,
        disableOfflineQueue: true,
        socket: {
          connectTimeout: LOOKUP_TIMEOUT_MS,
          reconnectStrategy: (retries: number) =>
            Math.min(50 * 2 ** Math.min(retries, 10), 1000),
        },
      });
      // Reconnects are the client's business; a lookup meanwhile gets 503.
      client.on("error", () => {});
      await client.connect();
      return new RedisSessions(client, local);
    } catch (error) {
      throw new SessionsUnavailable(
        error instanceof Error ? error.message : String(error),
        { cause: error },
      );
    }
  }

  /** The member's name in `room`: held here, or on any live node. */
  async member(session: string, room: string): Promise<string | null> {
    const here = await this.#local.member(session, room);
    if (here !== null) return here;
    let found: unknown;
    try {
      found = await this.#client.sendCommand([
        "EVAL",
        FIND_SESSION,
        "1",
        `hubchat:room:${room}:names`,
        await sessionHash(session),
        "hubchat:node:",
      ]);
    } catch (error) {
      throw new SessionsUnavailable(
        error instanceof Error ? error.message : String(error),
        { cause: error },
      );
    }
    return typeof found === "string" ? found : null;
  }

  /** Disconnects. */
  async close(): Promise<void> {
    await this.#client.close().catch(() => this.#client.destroy());
  }
}

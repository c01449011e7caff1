/**
 * Who is behind a session secret: the upload and download routes of
 * `/files` are authorized by the uploader's live connection
 * (`Authorization: Bearer SESSION`, the secret its `welcome` gave). One
 * process answers from its own connections ({@linkcode LocalSessions});
 * with `--redis` the request may reach a node that does not hold the
 * socket, so {@linkcode EngineSessions} also asks the engine, where every
 * connection's claim on its name holds a hash of its session, kept from
 * admission until the connection leaves the room.
 *
 * @module
 */

import { sessionHash } from "../connection.ts";
import type { RoomEngine } from "../engine.ts";

/** Finds the live connection of a session secret in a room. */
export interface SessionDirectory {
  /**
   * The name under which the connection whose secret is `session` is in
   * `room` now, or null when there is none (an unknown or ended session,
   * or one in another room).
   */
  member(session: string, room: string): Promise<string | null>;
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
}

/** The shared store could not be asked: the request gets 503, not 401. */
export class SessionsUnavailable extends Error {
  /** Creates the error with what went wrong. */
  constructor(message: string, options?: ErrorOptions) {
    super(`cannot look the session up: ${message}`, options);
    this.name = "SessionsUnavailable";
  }
}

/**
 * Sessions of every node sharing the rooms (`--redis`): this process's own
 * first, then the engine's, where every connection's claim on its name
 * holds a hash of its session.
 *
 * @example
 * ```ts
 * import { EngineSessions, LocalSessions } from "./sessions.ts";
 * import { LocalEngine } from "../engine.ts";
 * const sessions = new EngineSessions(
 *   new LocalEngine({ history: null }),
 *   new LocalSessions(() => undefined),
 * );
 * await sessions.member("9f0c", "lobby"); // null: nobody holds it
 * ```
 */
export class EngineSessions implements SessionDirectory {
  #engine: RoomEngine;
  #local: SessionDirectory;

  /** Asks `local` first, then `engine`. */
  constructor(engine: RoomEngine, local: SessionDirectory) {
    this.#engine = engine;
    this.#local = local;
  }

  /** The member's name in `room`: held here, or on any live node. */
  async member(session: string, room: string): Promise<string | null> {
    const here = await this.#local.member(session, room);
    if (here !== null) return here;
    try {
      return await this.#engine.memberBySession(
        room,
        await sessionHash(session),
      );
    } catch (error) {
      throw new SessionsUnavailable(
        error instanceof Error ? error.message : String(error),
        { cause: error },
      );
    }
  }
}

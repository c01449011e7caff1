/**
 * Every room of a server: a Room per name, made on first join and dropped
 * when idle (its history stays in the store). Rooms share one flusher and
 * one history.
 *
 * @module
 */

import { type Client, Flusher } from "./client.ts";
import { EngineUnavailable, LocalEngine, type RoomEngine } from "./engine.ts";
import type { ErrorCode } from "./protocol.ts";
import { Room, type RoomOptions } from "./room.ts";

/**
 * Rooms open at once. Each is a hub and a map, cheap in itself, but names
 * come from clients: a cap keeps a flood of made-up rooms from growing the
 * server without bound.
 */
export const DEFAULT_MAX_ROOMS = 1000;

/** Options for {@linkcode Rooms}. */
export interface RoomsOptions {
  /**
   * Where rooms' lines and presence go: one process, or shared. Default:
   * this process alone, keeping no history.
   */
  engine?: RoomEngine;
  /** Most rooms open at once. Default 1000. */
  maxRooms?: number;
  /** Told of every broadcast (for metrics). */
  onBroadcast?: (recipients: number, text: string, seconds: number) => void;
  /** Told of every error a room sends a client (for metrics). */
  onRefusal?: (code: ErrorCode) => void;
  /** Members above which a room announces its count, not each join. */
  largeRoom?: number;
}

/** A room as `GET /rooms` lists it. */
export interface RoomSummary {
  /** The room's name. */
  name: string;
  /** Members online now. */
  online: number;
}

/**
 * The rooms of one server.
 *
 * @example
 * ```ts
 * import { Rooms } from "./rooms.ts";
 * import { LocalEngine } from "./engine.ts";
 * import { History } from "./store/history.ts";
 * const history = await History.open(":memory:");
 * const rooms = new Rooms({ engine: new LocalEngine({ history }) });
 * const lobby = rooms.open("lobby");
 * console.log(rooms.list()); // [{ name: "lobby", online: 0 }]
 * rooms.close(1001, "server shutting down");
 * await history.close();
 * ```
 */
export class Rooms {
  /** One flusher for every client of the server. */
  readonly flusher: Flusher = new Flusher();
  #rooms = new Map<string, Room>();
  #engine: RoomEngine;
  #maxRooms: number;
  /** What every room is made with: the same for all of them. */
  #roomOptions: RoomOptions;

  /** Creates an empty registry. */
  constructor(options: RoomsOptions = {}) {
    this.#engine = options.engine ?? new LocalEngine({ history: null });
    this.#maxRooms = options.maxRooms ?? DEFAULT_MAX_ROOMS;
    this.#roomOptions = {
      engine: this.#engine,
      flusher: this.flusher,
      onBroadcast: options.onBroadcast,
      onRefusal: options.onRefusal,
      largeRoom: options.largeRoom,
      onIdle: (room) => this.release(room),
    };
    // Another node took over one of this node's connections (4001).
    this.#engine.setTakeoverHandler((room, owner) => {
      this.#rooms.get(room)?.replace(owner);
    });
  }

  /** Where the rooms' lines and presence go. */
  get engine(): RoomEngine {
    return this.#engine;
  }

  /** The open room of that name, if any. */
  get(name: string): Room | undefined {
    return this.#rooms.get(name);
  }

  /**
   * The room of that name, made if needed; null when at the cap. A room
   * just made may not be ready to join yet: see {@linkcode Rooms.ready}.
   */
  open(name: string): Room | null {
    let room = this.#rooms.get(name);
    if (room !== undefined) return room;
    if (this.#rooms.size >= this.#maxRooms) return null;
    room = new Room(name, this.#roomOptions);
    this.#rooms.set(name, room);
    return room;
  }

  /**
   * The room of that name, made if needed and ready to join, and still the
   * open room of that name when this resolves: check and reserve in the
   * same turn. Null when at the cap; throws {@linkcode EngineUnavailable}
   * when the room's store cannot be reached (the room is dropped).
   */
  async ready(name: string): Promise<Room | null> {
    for (;;) {
      const room = this.open(name);
      if (room === null) return null;
      if (!(await room.ready)) {
        if (this.#rooms.get(name) === room) this.#rooms.delete(name);
        throw new EngineUnavailable(`room "${name}" could not be opened`);
      }
      if (this.#rooms.get(name) === room) return room;
    }
  }

  /** Drops a room nobody is in (its history stays stored). */
  release(room: Room): void {
    if (room.idle && this.#rooms.get(room.name) === room) {
      this.#rooms.delete(room.name);
      room.drop();
    }
  }

  /** This node's clients, in every room. */
  get online(): number {
    let online = 0;
    for (const room of this.#rooms.values()) online += room.hub.clientCount;
    return online;
  }

  /** Every joined client, room by room. */
  *clients(): IterableIterator<Client> {
    for (const room of this.#rooms.values()) yield* room.hub.clients();
  }

  /**
   * Open rooms and the rooms the store knows, by name, with online counts:
   * an open room's own count (every node's members), else the store's.
   */
  list(): RoomSummary[] {
    const counts = new Map<string, number>();
    for (const stored of this.#engine.listRooms()) {
      counts.set(stored.name, stored.online);
    }
    for (const [name, room] of this.#rooms) counts.set(name, room.online);
    return [...counts.keys()].sort().map((name) => ({
      name,
      online: counts.get(name)!,
    }));
  }

  /** Closes every member of every room (shutdown) and stops flushing. */
  close(code: number, reason: string): void {
    for (const room of this.#rooms.values()) room.close(code, reason);
    this.flusher.stop();
  }
}

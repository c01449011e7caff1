/**
 * The seam between a room and where its lines and presence go. A room
 * publishes what happens in it (a chat line, who came and went, who is
 * typing) and hears back, from its engine, every event of the room in one
 * order: the same order on every node, each chat line only once it is
 * stored. The room's rules (names, ordering, store-then-send, direct
 * messages) live above the seam, once, in room.ts.
 *
 * {@linkcode LocalEngine} is one process: history in a file (or none), and
 * events heard back in the very turn they were published, or as soon as the
 * lines ahead of them are stored. The Redis engine (redis.ts) shares rooms
 * between processes.
 *
 * @module
 */

import type {
  History,
  HistoryEntry,
  ResumeResult,
  StoredMessage,
} from "./store/history.ts";
import type { Logger } from "./log.ts";
import { storedLine } from "./protocol.ts";

/** One member of a room: its name, and which connection holds it. */
export interface MemberRef {
  /** The name it chats under. */
  name: string;
  /**
   * The connection that holds the name, unique across nodes: a leave
   * removes the member only if it still names this owner, so a takeover's
   * join and the old connection's leave may cross without harm.
   */
  owner: string;
}

/**
 * The owner of a member ({@linkcode MemberRef.owner}): the node's id, `/`,
 * then the client's id on that node. Unique across nodes, since node ids
 * are; the node is what precedes the first `/`.
 *
 * @example
 * ```ts
 * import { memberOwner } from "./engine.ts";
 * memberOwner("local", "7"); // "local/7"
 * ```
 */
export function memberOwner(nodeId: string, clientId: string): string {
  return `${nodeId}/${clientId}`;
}

/** A chat line, stored. */
export interface LineEvent {
  kind: "line";
  line: StoredMessage;
  /**
   * The line serialized (`JSON.stringify(line)`), when the engine has it
   * already: sent as it is, so a line is serialized once.
   */
  json?: string;
}

/** Who came and who went: a diff, never the whole list. */
export interface PresenceEvent {
  kind: "presence";
  joined: MemberRef[];
  left: MemberRef[];
}

/** A member is typing: relayed, never stored. */
export interface TypingEvent {
  kind: "typing";
  member: MemberRef;
}

/**
 * The room's store lost its history (Redis restarted empty, say): ids start
 * again, and what members were shown is to be replaced by what is stored.
 */
export interface ResetEvent {
  kind: "reset";
}

/**
 * The first event a room hears: who is in it on every node. Events heard
 * after it are changes to that.
 */
export interface SnapshotEvent {
  kind: "snapshot";
  members: MemberRef[];
}

/**
 * The room could not be opened (its store is unreachable): it is not
 * ready, and nobody can join it now.
 */
export interface UnavailableEvent {
  kind: "unavailable";
  /** What went wrong, for logs. */
  reason: string;
}

/** Everything a room hears from its engine, in the room's one order. */
export type RoomEvent =
  | SnapshotEvent
  | UnavailableEvent
  | LineEvent
  | PresenceEvent
  | TypingEvent
  | ResetEvent;

/**
 * The engine's store cannot be reached: nothing was stored or published.
 * A chat line refused this way gets the `unavailable` error, not
 * `storage_failed`.
 */
export class EngineUnavailable extends Error {
  /** Creates the error with what went wrong. */
  constructor(message: string, options?: ErrorOptions) {
    super(`the chat store is unreachable: ${message}`, options);
    this.name = "EngineUnavailable";
  }
}

/** What a claim of a name across nodes found. */
export type ClaimResult =
  /** The name is this connection's; `replaced` held it before (takeover). */
  | { claimed: true; replaced?: MemberRef }
  /** Someone else holds it. */
  | { claimed: false };

/** A name asked for by a connection about to open. */
export interface Claim {
  /** The name and the connection that will hold it. */
  member: MemberRef;
  /** A hash of the connection's own session secret. */
  sessionHash: string;
  /** A hash of the session the peer presented (`?session=`), if any. */
  presented: string | null;
  /** Only say what a claim would find; claim nothing (a dry run). */
  peek?: boolean;
}

/** A room, as the store knows it: for `GET /rooms`. */
export interface StoredRoom {
  /** The room's name. */
  name: string;
  /** Members online as last counted (0 where the engine does not count). */
  online: number;
}

/** What a room hears its events with. */
export type RoomListener = (event: RoomEvent) => void;

/** A room being heard; `close` stops hearing it. */
export interface RoomSubscription {
  /** Stops hearing the room (idempotent). */
  close(): void;
}

/**
 * Where a room's lines and presence go, and where they come back from.
 *
 * Invariants: events of one room reach every listener in one order, the
 * order they were published in by any one node; a line is heard only once
 * stored, with ids strictly increasing; `recent` and `since` hold only
 * lines already heard.
 */
export interface RoomEngine {
  /** This node's name, unique among the nodes sharing rooms. */
  readonly nodeId: string;
  /**
   * True when other nodes share the rooms: names are then claimed across
   * nodes before a connection opens ({@linkcode RoomEngine.claim}).
   */
  readonly shared: boolean;
  /**
   * Starts hearing a room's events: first a snapshot of who is in it, then
   * every event published from then on. Publish nothing to a room before
   * its snapshot is heard: it might not be heard back.
   */
  open(room: string, listener: RoomListener): RoomSubscription;
  /**
   * Gives the line the room's next id and stores it; every listener of the
   * room then hears it. Rejects, storing nothing, when it cannot be stored.
   */
  append(room: string, entry: HistoryEntry): Promise<StoredMessage>;
  /** Tells every listener of the room who came and went, or who types. */
  publish(room: string, event: PresenceEvent | TypingEvent): void;
  /** The room's last stored lines, oldest first, all of them heard. */
  recent(room: string): StoredMessage[];
  /** The room's lines after `lastSeenId`, as a reconnecting client needs. */
  since(room: string, lastSeenId: number): ResumeResult;
  /**
   * The store's life the room's ids belong to: it changes only when the
   * store lost the room's lines (then ids start again). "" when it never
   * does.
   */
  epoch(room: string): string;
  /** True when nothing of the room is still on its way to its listeners. */
  settled(room: string): boolean;
  /** Rooms the store knows (with lines or members), by name. */
  listRooms(): StoredRoom[];
  /**
   * Claims a name across nodes for a connection about to open; a name held
   * under the presented session is taken over. One process: the room's
   * own names are the only ones, so every claim succeeds here.
   */
  claim(room: string, claim: Claim): Promise<ClaimResult>;
  /** Gives a claim back: the connection never opened, or moved rooms. */
  unclaim(room: string, member: MemberRef): void;
  /** Asks the node holding `member` to close that connection (a takeover). */
  takeOver(room: string, member: MemberRef): void;
  /** Sets who closes a connection of this node another node took over. */
  setTakeoverHandler(handler: (room: string, owner: string) => void): void;
  /**
   * The name in `room` of a live connection of another node whose session
   * secret hashes to `sessionHash` (see `sessionHash`, connection.ts), or
   * null when there is none. One process has no other node: always null.
   * Throws {@linkcode EngineUnavailable} when the store cannot be asked.
   */
  memberBySession(room: string, sessionHash: string): Promise<string | null>;
  /** Stops: stores what is pending, releases what it holds. */
  shutdown(): Promise<void>;
}

/** An event waiting for the lines ahead of it to be stored. */
interface Queued {
  /** Null for a line that could not be stored: it is skipped. */
  event: RoomEvent | null;
  ready: boolean;
}

/** One room of a {@linkcode LocalEngine}. */
interface LocalRoom {
  name: string;
  listener: RoomListener;
  /** Events in publishing order, each heard once it reaches the head. */
  queue: Queued[];
  /** The newest id heard; kept lines above it are still on their way. */
  lastId: number;
}

/** Options for {@linkcode LocalEngine}. */
export interface LocalEngineOptions {
  /** Where lines are stored; null keeps none (ephemeral chat). */
  history: History | null;
  /**
   * Where a room that throws while hearing an event is said (a bug: the
   * event is stored and the others are still heard).
   */
  logger?: Logger;
}

/**
 * One process's rooms: history in a file (or none), events heard back by
 * the one room of that name in this process.
 *
 * An event is heard at once when nothing is ahead of it; otherwise it waits
 * for the chat lines published before it to be stored. So a leave never
 * overtakes the lines its member said before leaving. A direct message
 * waits for nothing: it concerns two members, not the room's order.
 *
 * @example
 * ```ts
 * import { LocalEngine } from "./engine.ts";
 * const engine = new LocalEngine({ history: null });
 * engine.open("lobby", (event) => console.log(event.kind)); // "snapshot"
 * await engine.append("lobby", {
 *   username: "ann",
 *   text: "hi",
 *   timestamp: new Date().toISOString(),
 * }); // logs "line"
 * await engine.shutdown();
 * ```
 */
export class LocalEngine implements RoomEngine {
  /** One process: one node. */
  readonly nodeId = "local";
  /** Nobody else shares these rooms. */
  readonly shared = false;
  #history: History | null;
  #logger: Logger | undefined;
  #rooms = new Map<string, LocalRoom>();

  /** Creates the engine over a history (or none). */
  constructor(options: LocalEngineOptions) {
    this.#history = options.history;
    this.#logger = options.logger;
  }

  /** Hears the room; in one process, a room opens empty, at once. */
  open(room: string, listener: RoomListener): RoomSubscription {
    const state: LocalRoom = {
      name: room,
      listener,
      queue: [],
      // Ephemeral rooms count from 0 each time they open: nothing refers
      // to their past ids.
      lastId: this.#history?.latestId(room) ?? 0,
    };
    this.#rooms.set(room, state);
    listener({ kind: "snapshot", members: [] });
    const rooms = this.#rooms;
    return {
      close(): void {
        if (rooms.get(room) === state) rooms.delete(room);
      },
    };
  }

  /** Stores the line (when there is history), then the room hears it. */
  append(room: string, entry: HistoryEntry): Promise<StoredMessage> {
    const state = this.#room(room);
    const history = this.#history;
    if (history === null) {
      // Nothing is stored, so nothing waits: heard now, in its place.
      const line: StoredMessage = storedLine({
        ...entry,
        id: state.lastId + 1,
        room,
      });
      this.#enqueue(state, { event: { kind: "line", line }, ready: true });
      return Promise.resolve(line);
    }
    const direct = entry.to !== undefined;
    const slot: Queued = { event: null, ready: false };
    if (!direct) state.queue.push(slot);
    // The room hears the line in the store's own callback, as soon as it
    // is stored: no promise between the two.
    return new Promise((resolve, reject) => {
      history.appendThen(room, entry, (line, json) => {
        if (line instanceof Error) {
          slot.ready = true;
          this.#drain(state);
          reject(line);
          return;
        }
        const event: LineEvent = { kind: "line", line, json };
        if (direct) {
          this.#hear(state, event);
        } else {
          slot.event = event;
          slot.ready = true;
          this.#drain(state);
        }
        resolve(line);
      });
    });
  }

  /** The room hears the event once the lines ahead of it are stored. */
  publish(room: string, event: PresenceEvent | TypingEvent): void {
    const state = this.#rooms.get(room);
    if (state === undefined) return;
    // Typing is relayed at once, never held behind a line being stored.
    if (event.kind === "typing") state.listener(event);
    else this.#enqueue(state, { event, ready: true });
  }

  /** The room's kept lines, up to the newest heard. */
  recent(room: string): StoredMessage[] {
    if (this.#history === null) return [];
    return this.#heard(room, this.#history.recent(room));
  }

  /** The lines after `lastSeenId`, up to the newest heard. */
  since(room: string, lastSeenId: number): ResumeResult {
    if (this.#history === null) {
      // Nothing is kept: a client that missed anything missed it for good.
      const lastId = this.#rooms.get(room)?.lastId ?? 0;
      return { messages: [], gap: lastSeenId !== lastId };
    }
    const past = this.#history.since(room, lastSeenId);
    return { messages: this.#heard(room, past.messages), gap: past.gap };
  }

  /** One process's store never forgets on its own: one life. */
  epoch(_room: string): string {
    return "";
  }

  /** True when no line of the room is still being stored. */
  settled(room: string): boolean {
    return (this.#rooms.get(room)?.queue.length ?? 0) === 0;
  }

  /** Rooms with stored history; their counts are the open rooms'. */
  listRooms(): StoredRoom[] {
    return (this.#history?.listRooms() ?? []).map((name) => ({
      name,
      online: 0,
    }));
  }

  /** One process: the room's own names decide, so the claim is granted. */
  claim(_room: string, _claim: Claim): Promise<ClaimResult> {
    return Promise.resolve({ claimed: true });
  }

  /** Nothing to give back: no claims outside the rooms. */
  unclaim(_room: string, _member: MemberRef): void {}

  /** No other node to ask. */
  takeOver(_room: string, _member: MemberRef): void {}

  /** No other node to take over from this one. */
  setTakeoverHandler(_handler: (room: string, owner: string) => void): void {}

  /** No other node holds a connection. */
  memberBySession(_room: string, _sessionHash: string): Promise<string | null> {
    return Promise.resolve(null);
  }

  /** Commits what history holds and closes it. */
  async shutdown(): Promise<void> {
    this.#rooms.clear();
    await this.#history?.close();
  }

  /** Drops lines stored but not yet heard: they will be heard live. */
  #heard(room: string, lines: StoredMessage[]): StoredMessage[] {
    const lastId = this.#rooms.get(room)?.lastId ?? Infinity;
    let end = lines.length;
    while (end > 0 && lines[end - 1].id > lastId) end--;
    return end === lines.length ? lines : lines.slice(0, end);
  }

  #room(room: string): LocalRoom {
    const state = this.#rooms.get(room);
    if (state === undefined) {
      throw new Error(`engine: room "${room}" is not open; open it first`);
    }
    return state;
  }

  #enqueue(state: LocalRoom, queued: Queued): void {
    if (state.queue.length === 0 && queued.ready) {
      if (queued.event !== null) this.#hear(state, queued.event);
    } else {
      state.queue.push(queued);
    }
  }

  /** Hears every ready event at the head of the queue, in order. */
  #drain(state: LocalRoom): void {
    const queue = state.queue;
    while (queue.length > 0 && queue[0].ready) {
      const { event } = queue.shift()!;
      if (event !== null) this.#hear(state, event);
    }
  }

  /** One room hears one event; a room that throws harms nobody else. */
  #hear(state: LocalRoom, event: RoomEvent): void {
    if (event.kind === "line" && event.line.id > state.lastId) {
      state.lastId = event.line.id;
    }
    try {
      state.listener(event);
    } catch (error) {
      this.#logger?.log("error", "room_listener_failed", {
        room: state.name,
        kind: event.kind,
        cause: error instanceof Error ? error.message : String(error),
      });
    }
  }
}

/**
 * A chat room: the meaning of chat, above its engine. Names are unique in
 * it; it welcomes joiners with the room's history (each sees only the
 * direct messages it sent or received: {@linkcode visibleTo}), announces
 * joins and leaves (exactly one leave for every join) while it is small and
 * its count once it is large ({@linkcode Presence}), has each chat line
 * stored before anyone sees it, and relays typing.
 *
 * The room publishes what its members do to its engine (engine.ts) and
 * tells its members what it hears back: every event of the room, on every
 * node, in one order. One process or many, these rules are the same.
 *
 * {@linkcode Rooms} is every room of a server: a Room per name, made on
 * first join and dropped when idle (its history stays in the store).
 *
 * @module
 */

import { type Client, Flusher } from "./client.ts";
import {
  EngineUnavailable,
  LocalEngine,
  memberOwner,
  type MemberRef,
  type PresenceEvent,
  type RoomEngine,
  type RoomEvent,
  type RoomSubscription,
} from "./engine.ts";
import type { StoredMessage } from "./store/history.ts";
import { Hub, type HubOptions } from "./hub.ts";
import {
  Presence,
  PRESENCE_INTERVAL_MS,
  type PresenceChange,
} from "./presence.ts";
import {
  CloseCode,
  type ErrorCode,
  errorMessage,
  type FileInfo,
  type MembersCommand,
  type MembersMessage,
  type OnlineMessage,
  type PresenceMessage,
  type ResetMessage,
  type StoredLine,
  timestamp,
  type TypingMessage,
  visibleTo,
  type WelcomeMessage,
} from "./protocol.ts";

/** Options for a {@linkcode Room}. */
export interface RoomOptions extends HubOptions {
  /** Where the room's lines and presence go, and come back from. */
  engine: RoomEngine;
  /** Told of every error the room sends a client (for metrics). */
  onRefusal?: (code: ErrorCode) => void;
  /** Members above which joins and leaves become a count. Default 100. */
  largeRoom?: number;
  /**
   * Told when the room has become idle: nobody in it or on the way here,
   * and nothing of it still on its way through the engine. Its owner may
   * then drop it.
   */
  onIdle?: (room: Room) => void;
}

/**
 * How long an arrival that took a name over from another node waits for
 * the old connection's departure: it is asked to close at once and leaves
 * within milliseconds; a node that does not answer is dead or stuck, and
 * the arrival goes ahead anyway.
 */
export const TAKEOVER_WAIT_MS = 2000;

/** A line a member posts: chat text, or a shared file and its caption. */
export interface Post {
  /** The chat text, or the file's caption ("" for none). */
  text: string;
  /** The recipient of a direct line; absent for the room. */
  to?: string;
  /** The shared file, for a `file` line. */
  file?: FileInfo;
}

/** What a joiner asks of the room's past. */
export interface JoinOptions {
  /** The last message id the client saw here: send only what came after. */
  since?: number;
  /**
   * The store's life `since` belongs to (an earlier welcome's `epoch`): a
   * `since` of another life means nothing, and the joiner gets the whole
   * history, with `gap`.
   */
  epoch?: string;
  /** The connection's secret, echoed in `welcome` for takeovers. */
  session: string;
}

/** A member of this node on its way in: welcomed when its join is heard. */
interface Arrival {
  client: Client;
  options: JoinOptions;
}

/**
 * One room of chat.
 *
 * Lifecycle of a member of this node: `reserve` (at upgrade, so two sockets
 * cannot take one name), `join` (socket open: its arrival is published;
 * when the room hears it, the member gets its welcome and everyone the
 * join), `leave` (any end, or a move to another room: idempotent; the
 * departure is published once if the arrival was).
 *
 * Invariants: a line reaches clients only after it is stored, and in id
 * order; a joiner's welcome holds the lines heard before its arrival and
 * it hears every later one live, so it sees each exactly once; one node's
 * events are heard in the order it published them, so a leave never
 * overtakes the lines its member said before leaving.
 *
 * @example
 * ```ts
 * import { Room } from "./room.ts";
 * import { Client } from "./client.ts";
 * import { LocalEngine } from "./engine.ts";
 * const room = new Room("lobby", { engine: new LocalEngine({ history: null }) });
 * await room.ready;
 * const socket = { bufferedAmount: 0, send(text: string) {}, close() {} };
 * const ann = new Client(socket, { username: "ann", flusher: room.hub.flusher });
 * room.reserve(ann);
 * room.join(ann, { session: "s3cret" });
 * await room.say(ann, "hello");
 * room.close(1001, "server shutting down");
 * ```
 */
export class Room {
  /** The room's name. */
  readonly name: string;
  /** The hub that fans out this room's messages to this node's members. */
  readonly hub: Hub;
  /**
   * Resolves with true once the room has heard who is in it (joins may
   * follow), with false when its store could not be reached.
   */
  readonly ready: Promise<boolean>;
  #engine: RoomEngine;
  #subscription: RoomSubscription;
  #onRefusal?: (code: ErrorCode) => void;
  #onIdle?: (room: Room) => void;
  /** This node's members, joined or only reserved, by name. */
  #names = new Map<string, Client>();
  /** This node's members whose arrival is published and not yet heard. */
  #arrivals = new Map<string, Arrival>();
  /** This node's members whose arrival was published (so is their leave). */
  #published = new Set<Client>();
  /**
   * Arrivals that took a name over from another node's connection, held
   * until that connection's departure is heard (or for at most
   * {@linkcode TAKEOVER_WAIT_MS}), so everyone sees the leave, then the join.
   */
  #takingOver = new Map<string, {
    client: Client;
    options: JoinOptions;
    timer: ReturnType<typeof setTimeout>;
  }>();
  /** Who is in, on every node, and whether they are told one by one. */
  #presence: Presence;
  /** Pending send of a large room's count; undefined when none is due. */
  #countTimer: ReturnType<typeof setTimeout> | undefined;
  #isReady = false;
  #markReady!: (ready: boolean) => void;
  #closing = false;

  /** Creates the room and starts hearing it. */
  constructor(name: string, options: RoomOptions) {
    this.name = name;
    this.hub = new Hub(options);
    this.#engine = options.engine;
    this.#onRefusal = options.onRefusal;
    this.#onIdle = options.onIdle;
    this.#presence = new Presence({ largeRoom: options.largeRoom });
    this.ready = new Promise((resolve) => this.#markReady = resolve);
    this.#subscription = this.#engine.open(name, (event) => this.#hear(event));
  }

  /** True once the room has heard who is in it: joins may follow. */
  get isReady(): boolean {
    return this.#isReady;
  }

  /** Members online, on every node. */
  get online(): number {
    return this.#presence.online;
  }

  /** True while the room sends its count instead of each join and leave. */
  get large(): boolean {
    return this.#presence.large;
  }

  /**
   * True when nobody of this node is here or on the way, and nothing of
   * the room is still on its way through the engine.
   */
  get idle(): boolean {
    return this.#names.size === 0 && this.#engine.settled(this.name);
  }

  /** The names of the members, on every node, in joining order. */
  users(): string[] {
    return this.#presence.all();
  }

  /** True when the name is held on this node, joined or reserved. */
  isTaken(username: string): boolean {
    return this.#names.has(username);
  }

  /** Who holds a name on this node, joined or reserved. */
  holder(username: string): Client | undefined {
    return this.#names.get(username);
  }

  /** Claims the client's name here; false if someone holds it already. */
  reserve(client: Client): boolean {
    if (this.#closing || this.#names.has(client.username)) return false;
    this.#names.set(client.username, client);
    return true;
  }

  /**
   * Publishes a reserved client's arrival. When the room hears it, in its
   * place in the room's order, the client gets its welcome and everyone
   * the join.
   */
  join(client: Client, options: JoinOptions): void {
    if (client.ended || this.#names.get(client.username) !== client) return;
    const held = this.#presence.ownerOf(client.username);
    if (held !== undefined && held !== this.#owner(client)) {
      // A takeover from another node: its old connection leaves first.
      const timer = setTimeout(() => {
        this.#takingOver.delete(client.username);
        // Its node did not say so (it is dead or stuck): the old holder's
        // departure goes with the arrival, so everyone sees a leave, then
        // the join, and nobody announces that departure again (a dead
        // node's reaping finds the name held by the new connection).
        const old = { name: client.username, owner: held };
        this.#publishArrival(client, options, old);
      }, TAKEOVER_WAIT_MS);
      this.#takingOver.set(client.username, { client, options, timer });
      return;
    }
    this.#publishArrival(client, options);
  }

  #publishArrival(
    client: Client,
    options: JoinOptions,
    replaced?: MemberRef,
  ): void {
    if (client.ended || this.#names.get(client.username) !== client) return;
    const member = this.#member(client);
    this.#arrivals.set(member.owner, { client, options });
    this.#published.add(client);
    this.#engine.publish(this.name, {
      kind: "presence",
      joined: [member],
      left: replaced === undefined ? [] : [replaced],
    });
  }

  /** Forgets a client, however it went; publishes its departure once. */
  leave(client: Client): void {
    if (this.#names.get(client.username) === client) {
      this.#names.delete(client.username);
    }
    const waiting = this.#takingOver.get(client.username);
    if (waiting?.client === client) {
      clearTimeout(waiting.timer);
      this.#takingOver.delete(client.username);
    }
    this.hub.unregister(client);
    if (this.#published.delete(client)) {
      // Publishing the departure gives the name's claim back too.
      if (!this.#closing) {
        this.#engine.publish(this.name, {
          kind: "presence",
          joined: [],
          left: [this.#member(client)],
        });
      }
    } else if (this.#engine.shared) {
      // It never arrived (its socket never opened, or it could not move
      // here): only its claim is to be given back.
      this.#engine.unclaim(this.name, this.#member(client));
    }
    this.#tellIfIdle();
  }

  /** How the engine knows a client of this node in this room. */
  ownerOf(client: Client): string {
    return this.#owner(client);
  }

  /**
   * Closes this node's connection that held a name another node's newer
   * connection took over (by its session), with 4001; it leaves as usual.
   */
  replace(owner: string): void {
    for (const client of this.#names.values()) {
      if (this.#owner(client) === owner) {
        client.close(CloseCode.replaced, "replaced by a newer connection");
        return;
      }
    }
  }

  /**
   * Has a member's chat line stored, then everyone hears it: the room, or
   * with `to` only that member and the sender. Refusals and storage
   * failures go to the sender as `error`s. Resolves once the line is
   * stored (or refused).
   */
  async say(client: Client, text: string, to?: string): Promise<void> {
    await this.post(client, to === undefined ? { text } : { text, to });
  }

  /**
   * {@linkcode Room.say} for any line: a chat line, or with `file` a
   * shared file (`text` its caption, "" for none). Resolves with the line
   * once stored, or undefined when it was refused or not stored.
   */
  async post(client: Client, line: Post): Promise<StoredMessage | undefined> {
    if (client.ended || this.#names.get(client.username) !== client) return;
    const { text, to, file } = line;
    if (to !== undefined && !this.#presence.has(to)) {
      this.#refuse(
        client,
        "unknown_recipient",
        `"${to}" is not in room "${this.name}"; direct messages go to members online here`,
      );
      return;
    }
    let stored: StoredMessage | undefined;
    try {
      stored = await this.#engine.append(this.name, {
        username: client.username,
        text,
        timestamp: timestamp(),
        ...(to === undefined ? {} : { to }),
        ...(file === undefined ? {} : { file }),
      });
    } catch (error) {
      if (error instanceof EngineUnavailable) {
        this.#refuse(
          client,
          "unavailable",
          "the chat store is unreachable, so the message was not sent; try again shortly",
        );
      } else {
        this.#refuse(
          client,
          "storage_failed",
          "the message could not be stored, so it was not sent; try again",
        );
      }
    }
    this.#tellIfIdle();
    return stored;
  }

  /** Tells the others in the room that a member is typing. */
  typing(client: Client): void {
    if (this.#names.get(client.username) !== client) return;
    this.#engine.publish(this.name, {
      kind: "typing",
      member: this.#member(client),
    });
  }

  /** Answers a member's request for a page of the member list. */
  members(client: Client, command: MembersCommand): void {
    if (this.#names.get(client.username) !== client) return;
    const page = this.#presence.page(command.after, command.limit);
    const message: MembersMessage = {
      type: "members",
      room: this.name,
      users: page.users,
      next: page.next,
      online: this.#presence.online,
      timestamp: timestamp(),
    };
    client.deliver(JSON.stringify(message));
  }

  /** Closes every member without announcing each leave (shutdown). */
  close(code: number, reason: string): void {
    this.#closing = true;
    this.#stopCount();
    for (const waiting of this.#takingOver.values()) {
      clearTimeout(waiting.timer);
    }
    this.#takingOver.clear();
    this.hub.close(code, reason);
    this.#names.clear();
    this.#arrivals.clear();
    this.#published.clear();
    this.#subscription.close();
  }

  /** Stops hearing the room: it is dropped, idle. */
  drop(): void {
    this.#stopCount();
    this.#subscription.close();
  }

  /** Everything the room hears, in the room's order. */
  #hear(event: RoomEvent): void {
    switch (event.kind) {
      case "line":
        this.#hearLine(event.line, event.json);
        return;
      case "presence":
        this.#hearPresence(event);
        return;
      case "typing":
        this.#hearTyping(event.member);
        return;
      case "snapshot":
        for (const member of event.members) {
          this.#presence.add(member.name, member.owner);
        }
        this.#isReady = true;
        this.#markReady(true);
        return;
      case "unavailable":
        this.#markReady(false);
        return;
      case "reset":
        this.#hearReset();
        return;
    }
  }

  /**
   * A stored line: to everyone here, or a direct one to its two ends.
   * `json` is the line serialized, when the engine has it already.
   */
  #hearLine(line: StoredMessage, json = JSON.stringify(line)): void {
    if (line.to === undefined) {
      this.hub.broadcastText(json);
      return;
    }
    const ends: Client[] = [];
    for (
      const name of line.to === line.username
        ? [line.to]
        : [line.to, line.username]
    ) {
      const client = this.#names.get(name);
      if (client !== undefined && this.#isJoined(client)) ends.push(client);
    }
    if (ends.length > 0) this.hub.sendTo(json, ends);
  }

  /**
   * Who came and went. Departures first: a takeover's old connection
   * leaves before its new one arrives, when both are in one diff.
   */
  #hearPresence(event: PresenceEvent): void {
    for (const member of event.left) {
      const change = this.#presence.remove(member.name, member.owner);
      if (change === null || this.#closing) continue;
      const text = this.#presenceText(change, "leave", member.name);
      if (text !== null) this.hub.broadcastText(text);
      // The name is free: an arrival that took it over goes ahead.
      const waiting = this.#takingOver.get(member.name);
      if (waiting !== undefined) {
        clearTimeout(waiting.timer);
        this.#takingOver.delete(member.name);
        this.#publishArrival(waiting.client, waiting.options);
      }
    }
    for (const member of event.joined) {
      const change = this.#presence.add(member.name, member.owner);
      const arrival = this.#arrivals.get(member.owner);
      if (arrival !== undefined) {
        this.#arrivals.delete(member.owner);
        this.#welcome(arrival);
      }
      if (change === null || this.#closing) continue;
      const text = this.#presenceText(change, "join", member.name);
      // A joiner's own welcome already says the room turned large.
      const except = change === "turned_large" ? arrival?.client : undefined;
      if (text !== null) this.hub.broadcastText(text, except);
    }
  }

  /** Welcomes an arriving member of this node and starts its live feed. */
  #welcome(arrival: Arrival): void {
    const { client, options } = arrival;
    if (client.ended || this.#names.get(client.username) !== client) return;
    if (!this.hub.register(client)) return;
    const epoch = this.#engine.epoch(this.name);
    // A since from another life of the store refers to lines that are gone.
    const lostLife = options.since !== undefined &&
      options.epoch !== undefined && options.epoch !== epoch;
    const past = options.since === undefined || lostLife
      ? { messages: this.#engine.recent(this.name), gap: lostLife }
      : this.#engine.since(this.name, options.since);
    const history: StoredLine[] = [];
    for (const line of past.messages) {
      if (visibleTo(line, client.username)) history.push(line);
    }
    const welcome: WelcomeMessage = {
      type: "welcome",
      username: client.username,
      room: this.name,
      users: this.#presence.welcomeUsers(),
      online: this.#presence.online,
      large: this.#presence.large,
      history,
      gap: past.gap,
      session: options.session,
      timestamp: timestamp(),
    };
    if (epoch !== "") welcome.epoch = epoch;
    client.deliver(JSON.stringify(welcome));
  }

  /** Relays typing to everyone here but the typist. */
  #hearTyping(member: MemberRef): void {
    const message: TypingMessage = {
      type: "typing",
      room: this.name,
      username: member.name,
      timestamp: timestamp(),
    };
    const typist = this.#names.get(member.name);
    const except = typist !== undefined && this.#owner(typist) === member.owner
      ? typist
      : undefined;
    this.hub.broadcastText(JSON.stringify(message), except);
  }

  /** The store lost its history: members start again from what it holds. */
  #hearReset(): void {
    const message: ResetMessage = {
      type: "reset",
      room: this.name,
      history: [],
      timestamp: timestamp(),
    };
    const epoch = this.#engine.epoch(this.name);
    if (epoch !== "") message.epoch = epoch;
    const lines = this.#engine.recent(this.name);
    // One frame for everyone but the two ends of a direct line kept here.
    const parties = new Set<string>();
    for (const line of lines) {
      if (line.to !== undefined) parties.add(line.username).add(line.to);
    }
    message.history = lines.filter((line) => line.to === undefined);
    const forAll = JSON.stringify(message);
    for (const client of this.hub.clients()) {
      if (!parties.has(client.username)) {
        client.deliver(forAll);
        continue;
      }
      message.history = lines.filter((line) =>
        visibleTo(line, client.username)
      );
      client.deliver(JSON.stringify(message));
    }
  }

  /** True once the client was welcomed and hears the room live. */
  #isJoined(client: Client): boolean {
    return this.#published.has(client) &&
      !this.#arrivals.has(this.#owner(client));
  }

  /** How the engine knows a member of this node. */
  #member(client: Client): MemberRef {
    return { name: client.username, owner: this.#owner(client) };
  }

  #owner(client: Client): string {
    return memberOwner(this.#engine.nodeId, client.id);
  }

  /**
   * What a join or leave sends now: the join or leave itself in a small
   * room, the count when the room changed mode, nothing in a large room
   * (its count goes out within the interval).
   */
  #presenceText(
    change: PresenceChange,
    type: "join" | "leave",
    username: string,
  ): string | null {
    switch (change) {
      case "announce":
        return this.#joinOrLeave(type, username);
      case "turned_large":
        this.#stopCount();
        return this.#online(undefined);
      case "turned_small":
        this.#stopCount();
        return this.#online(this.#presence.all());
      case "count":
        this.#countTimer ??= setTimeout(this.#sendCount, PRESENCE_INTERVAL_MS);
        return null;
    }
  }

  /** A large room's periodic count, when it changed. */
  #sendCount = (): void => {
    this.#countTimer = undefined;
    const online = this.#presence.tick();
    if (online !== null) this.hub.broadcastText(this.#online(undefined));
  };

  #stopCount(): void {
    clearTimeout(this.#countTimer);
    this.#countTimer = undefined;
  }

  /** The count, serialized; with `users` when the room turned small. */
  #online(users: string[] | undefined): string {
    const message: OnlineMessage = {
      type: "online",
      room: this.name,
      online: this.#presence.online,
      large: this.#presence.large,
      timestamp: timestamp(),
    };
    if (users !== undefined) message.users = users;
    return JSON.stringify(message);
  }

  /** A join or leave, serialized, with the count after it. */
  #joinOrLeave(type: "join" | "leave", username: string): string {
    const message: PresenceMessage = {
      type,
      room: this.name,
      username,
      timestamp: timestamp(),
      online: this.#presence.online,
    };
    return JSON.stringify(message);
  }

  #refuse(client: Client, code: ErrorCode, text: string): void {
    this.#onRefusal?.(code);
    client.deliver(JSON.stringify(errorMessage({ code, text })));
  }

  /** The room just lost a member or a line went through: idle now? */
  #tellIfIdle(): void {
    if (this.#isReady && this.idle) this.#onIdle?.(this);
  }
}

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
 * import { Rooms } from "./room.ts";
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

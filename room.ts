/**
 * A chat room: a Hub plus the meaning of chat. Names are unique in it; it
 * welcomes joiners with the room's history (each sees only the direct
 * messages it sent or received: {@linkcode visibleTo}), announces joins and
 * leaves (exactly one leave for every join) while it is small and its count
 * once it is large ({@linkcode Presence}), stores each chat line before
 * sending it, and relays typing.
 *
 * @module
 */

import type { Client } from "./client.ts";
import type { History, HistoryEntry, StoredMessage } from "./history.ts";
import { Hub, type HubOptions } from "./hub.ts";
import {
  Presence,
  PRESENCE_INTERVAL_MS,
  type PresenceChange,
} from "./presence.ts";
import {
  type ChatMessage,
  chatMessage,
  type ErrorCode,
  errorMessage,
  type MembersCommand,
  type MembersMessage,
  type OnlineMessage,
  type PresenceMessage,
  timestamp,
  type TypingMessage,
  visibleTo,
  type WelcomeMessage,
} from "./protocol.ts";

/** Options for a {@linkcode Room}. */
export interface RoomOptions extends HubOptions {
  /**
   * Where chat lines are stored before they are sent; null keeps none
   * (ephemeral chat: ids still increase, welcome carries no history).
   */
  history: History | null;
  /** Told of every error the room sends a client (for metrics). */
  onRefusal?: (code: ErrorCode) => void;
  /** Members above which joins and leaves become a count. Default 100. */
  largeRoom?: number;
  /**
   * Told when the room has become idle: nobody in it or on the way, and no
   * line still being stored. Its owner may then drop it.
   */
  onIdle?: (room: Room) => void;
}

/** What a joiner asks of the room's past. */
export interface JoinOptions {
  /** The last message id the client saw here: send only what came after. */
  since?: number;
  /** The connection's secret, echoed in `welcome` for takeovers. */
  session: string;
}

/** One event in a room's order: sent by `send` once it is `ready`. */
interface OrderedEvent {
  ready: boolean;
  /** Sends the event; null for a line that could not be stored. */
  send: (() => void) | null;
}

/**
 * One room of chat.
 *
 * Lifecycle of a member: `reserve` (at upgrade, so two sockets cannot take
 * one name), `join` (socket open: welcome, then join to everyone), `leave`
 * (any end, or a move to another room: idempotent, announces only if the
 * member had joined).
 *
 * Invariant: a message reaches clients only after it is stored, and in id
 * order; `welcome` history holds only messages already sent live, so a
 * joiner sees each message exactly once.
 *
 * @example
 * ```ts
 * import { Room } from "./room.ts";
 * import { Client } from "./client.ts";
 * import { History } from "./history.ts";
 * const history = await History.open(":memory:");
 * const room = new Room("lobby", { history });
 * const socket = { bufferedAmount: 0, send(text: string) {}, close() {} };
 * const ann = new Client(socket, { username: "ann", flusher: room.hub.flusher });
 * room.reserve(ann);
 * room.join(ann, { session: "s3cret" });
 * await room.say(ann, "hello");
 * room.close(1001, "server shutting down");
 * await history.close();
 * ```
 */
export class Room {
  /** The room's name. */
  readonly name: string;
  /** The hub that fans out this room's messages. */
  readonly hub: Hub;
  #history: History | null;
  #onRefusal?: (code: ErrorCode) => void;
  #onIdle?: (room: Room) => void;
  /** Every name in use, joined or only reserved, and who holds it. */
  #names = new Map<string, Client>();
  /** The newest id sent live; history past it is still on its way. */
  #lastSentId: number;
  /**
   * The room's events in the order they happened, each sent when it reaches
   * the head; the head waits while its chat line is being stored. So a leave
   * never overtakes the lines its member said before leaving, and a joiner
   * is admitted (welcome, then its join) between the lines before and after.
   */
  #ordered: OrderedEvent[] = [];
  #closing = false;
  /** Who is in, and whether they are told one by one or by count. */
  #presence: Presence;
  /** Pending send of a large room's count; undefined when none is due. */
  #countTimer: ReturnType<typeof setTimeout> | undefined;

  /** Creates an empty room. */
  constructor(name: string, options: RoomOptions) {
    this.name = name;
    this.hub = new Hub(options);
    this.#history = options.history;
    this.#onRefusal = options.onRefusal;
    this.#onIdle = options.onIdle;
    this.#lastSentId = options.history?.latestId(name) ?? 0;
    this.#presence = new Presence({ largeRoom: options.largeRoom });
  }

  /** Members whose socket is open and who were welcomed. */
  get online(): number {
    return this.#presence.online;
  }

  /** True while the room sends its count instead of each join and leave. */
  get large(): boolean {
    return this.#presence.large;
  }

  /** True when nobody is here or on the way and nothing is being stored. */
  get idle(): boolean {
    return this.#names.size === 0 && this.#ordered.length === 0;
  }

  /** The names of joined members, in joining order. */
  users(): string[] {
    return this.#presence.all();
  }

  /** True when the name is held, by a joined or a reserved member. */
  isTaken(username: string): boolean {
    return this.#names.has(username);
  }

  /** Who holds a name, joined or reserved. */
  holder(username: string): Client | undefined {
    return this.#names.get(username);
  }

  /** Claims the client's name; false if someone holds it already. */
  reserve(client: Client): boolean {
    if (this.#closing || this.#names.has(client.username)) return false;
    this.#names.set(client.username, client);
    return true;
  }

  /**
   * Welcomes a reserved client (with history) and announces it, in its
   * place in the room's order: after the lines said before it came.
   */
  join(client: Client, options: JoinOptions): void {
    this.#enqueue({ ready: true, send: () => this.#admit(client, options) });
  }

  #admit(client: Client, options: JoinOptions): void {
    if (client.ended || this.#names.get(client.username) !== client) return;
    if (!this.hub.register(client)) return;
    const change = this.#presence.add(client.username);
    const past = this.#history === null
      ? {
        messages: [],
        // Nothing is kept: a client that missed anything missed it for good.
        gap: options.since !== undefined && options.since !== this.#lastSentId,
      }
      : options.since === undefined
      ? { messages: this.#history.recent(this.name), gap: false }
      : this.#history.since(this.name, options.since);
    const history: ChatMessage[] = [];
    for (const stored of past.messages) {
      // Stored but not yet sent live: it will arrive live, once.
      if (stored.id > this.#lastSentId) break;
      if (visibleTo(stored, client.username)) history.push(stored);
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
    client.deliver(JSON.stringify(welcome));
    const text = this.#presenceText(change, "join", client.username);
    // The joiner's own welcome already says the room turned large.
    const except = change === "turned_large" ? client : undefined;
    if (text !== null) this.hub.broadcastText(text, except);
  }

  /** Forgets a client, however it went; announces the leave once. */
  leave(client: Client): void {
    if (this.#names.get(client.username) === client) {
      this.#names.delete(client.username);
    }
    if (this.hub.unregister(client) && !this.#closing) {
      const change = this.#presence.remove(client.username);
      const text = this.#presenceText(change, "leave", client.username);
      if (text !== null) {
        this.#enqueue({
          ready: true,
          send: () => this.hub.broadcastText(text),
        });
      }
    }
    this.#tellIfIdle();
  }

  /**
   * What a join or leave sends now, in the room's order: the join or leave
   * itself in a small room, the count when the room changed mode, nothing
   * in a large room (its count goes out within the interval).
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

  /** The room just lost a member or a stored line went out: idle now? */
  #tellIfIdle(): void {
    if (this.idle) this.#onIdle?.(this);
  }

  /**
   * Stores a chat line from a member, then sends it: to everyone, or with
   * `to` only to that member and back to the sender. Refusals and storage
   * failures go to the sender as `error`s. Returns a promise while the line
   * is being stored; without history the line is sent before `say` returns,
   * and it returns undefined.
   */
  say(client: Client, text: string, to?: string): Promise<void> | undefined {
    if (client.ended || this.#names.get(client.username) !== client) return;
    if (to !== undefined) {
      const recipient = this.#names.get(to);
      if (recipient === undefined || recipient.ended) {
        this.#refuse(
          client,
          "unknown_recipient",
          `"${to}" is not in room "${this.name}"; direct messages go to members online here`,
        );
        return;
      }
    }
    if (this.#history === null) {
      // Nothing is stored, so nothing is ever waiting in the room's order:
      // the line goes out now, in its place.
      const json = JSON.stringify(chatMessage({
        id: ++this.#lastSentId,
        room: this.name,
        username: client.username,
        text,
        timestamp: timestamp(),
        to,
      }));
      if (to !== undefined) this.#sendDirect(client, to, json);
      else this.hub.broadcastText(json);
      return;
    }
    return this.#storeThenSend(this.#history, client, {
      username: client.username,
      text,
      timestamp: timestamp(),
      ...(to === undefined ? {} : { to }),
    });
  }

  async #storeThenSend(
    history: History,
    client: Client,
    entry: HistoryEntry,
  ): Promise<void> {
    const slot: OrderedEvent = { ready: false, send: null };
    if (entry.to === undefined) this.#ordered.push(slot);
    let stored: StoredMessage;
    try {
      stored = await history.append(this.name, entry);
    } catch {
      slot.ready = true;
      this.#drain();
      this.#refuse(
        client,
        "storage_failed",
        "the message could not be stored, so it was not sent; try again",
      );
      return;
    }
    this.#lastSentId = Math.max(this.#lastSentId, stored.id);
    const json = JSON.stringify(stored);
    if (entry.to === undefined) {
      slot.send = () => this.hub.broadcastText(json);
      slot.ready = true;
      this.#drain();
      return;
    }
    this.#sendDirect(client, entry.to, json);
  }

  /** A direct message goes to its recipient and back to its sender. */
  #sendDirect(client: Client, to: string, json: string): void {
    const recipient = this.#names.get(to);
    this.hub.sendTo(
      json,
      recipient === undefined || recipient === client
        ? [client]
        : [recipient, client],
    );
  }

  /** Tells the others in the room that a member is typing. */
  typing(client: Client): void {
    if (this.#names.get(client.username) !== client) return;
    const message: TypingMessage = {
      type: "typing",
      room: this.name,
      username: client.username,
      timestamp: timestamp(),
    };
    this.hub.broadcastText(JSON.stringify(message), client);
  }

  /** Closes every member without announcing each leave (shutdown). */
  close(code: number, reason: string): void {
    this.#closing = true;
    this.#stopCount();
    this.hub.close(code, reason);
    this.#names.clear();
  }

  #refuse(client: Client, code: ErrorCode, text: string): void {
    this.#onRefusal?.(code);
    client.deliver(JSON.stringify(errorMessage({ code, text })));
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

  /** Sends an event now if nothing is ahead of it, else queues it. */
  #enqueue(event: OrderedEvent): void {
    if (this.#ordered.length === 0 && event.ready) event.send?.();
    else this.#ordered.push(event);
  }

  /**
   * Sends every ready event at the head of the order. A room its last
   * member left while their line was being stored becomes idle here.
   */
  #drain(): void {
    const ordered = this.#ordered;
    while (ordered.length > 0 && ordered[0].ready) {
      ordered.shift()!.send?.();
    }
    this.#tellIfIdle();
  }
}

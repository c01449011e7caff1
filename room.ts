/**
 * A chat room: a Hub plus the meaning of chat. Names are unique in it; it
 * welcomes joiners, announces joins and leaves (exactly one leave for every
 * join), and stamps each chat line once before the hub fans it out.
 *
 * @module
 */

import type { Client } from "./client.ts";
import { Hub, type HubOptions } from "./hub.ts";
import {
  type ChatMessage,
  type PresenceMessage,
  timestamp,
  type WelcomeMessage,
} from "./protocol.ts";

/** Options for a {@linkcode Room}. */
export interface RoomOptions extends HubOptions {}

/**
 * One room of chat.
 *
 * Lifecycle of a member: `reserve` (at upgrade, so two sockets cannot take
 * one name), `join` (socket open: welcome, then join to everyone), `leave`
 * (any end: idempotent, announces only if the member had joined).
 *
 * @example
 * ```ts
 * import { Room } from "./room.ts";
 * import { Client } from "./client.ts";
 * const room = new Room("lobby");
 * const socket = { bufferedAmount: 0, send(text: string) {}, close() {} };
 * const ann = new Client(socket, { username: "ann", flusher: room.hub.flusher });
 * room.reserve(ann);
 * room.join(ann);
 * room.say(ann, "hello");
 * room.close(1001, "server shutting down");
 * ```
 */
export class Room {
  /** The room's name. */
  readonly name: string;
  /** The hub that fans out this room's messages. */
  readonly hub: Hub;
  /** Every name in use, joined or only reserved, and who holds it. */
  #names = new Map<string, Client>();
  #closing = false;

  /** Creates an empty room. */
  constructor(name: string, options: RoomOptions = {}) {
    this.name = name;
    this.hub = new Hub(options);
  }

  /** Members whose socket is open and who were welcomed. */
  get online(): number {
    return this.hub.clientCount;
  }

  /** The names of joined members, in joining order. */
  users(): string[] {
    const names: string[] = [];
    for (const client of this.hub.clients()) names.push(client.username);
    return names;
  }

  /** True when the name is held, by a joined or a reserved member. */
  isTaken(username: string): boolean {
    return this.#names.has(username);
  }

  /** Claims the client's name; false if someone holds it already. */
  reserve(client: Client): boolean {
    if (this.#closing || this.#names.has(client.username)) return false;
    this.#names.set(client.username, client);
    return true;
  }

  /** Welcomes a reserved client and announces it to everyone. */
  join(client: Client): void {
    if (this.#names.get(client.username) !== client) return;
    if (!this.hub.register(client)) return;
    const welcome: WelcomeMessage = {
      type: "welcome",
      username: client.username,
      users: this.users(),
      timestamp: timestamp(),
    };
    client.deliver(JSON.stringify(welcome));
    this.#announce("join", client.username);
  }

  /** Forgets a client, however it went; announces the leave once. */
  leave(client: Client): void {
    if (this.#names.get(client.username) === client) {
      this.#names.delete(client.username);
    }
    if (this.hub.unregister(client) && !this.#closing) {
      this.#announce("leave", client.username);
    }
  }

  /** Stamps a chat line from a member and broadcasts it to everyone. */
  say(client: Client, text: string): void {
    if (client.ended) return;
    const message: ChatMessage = {
      type: "message",
      username: client.username,
      text,
      timestamp: timestamp(),
    };
    this.hub.broadcastJSON(message);
  }

  /** Closes every member without announcing each leave (shutdown). */
  close(code: number, reason: string): void {
    this.#closing = true;
    this.hub.close(code, reason);
    this.#names.clear();
  }

  #announce(type: "join" | "leave", username: string): void {
    const message: PresenceMessage = {
      type,
      username,
      timestamp: timestamp(),
      online: this.hub.clientCount,
    };
    this.hub.broadcastJSON(message);
  }
}

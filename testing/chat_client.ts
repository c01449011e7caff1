/**
 * A chat client on Deno's own WebSocket for tests over real sockets: it
 * reads every frame, splits it into messages and queues them for bounded
 * reads; plus the patterns the protocol's fields follow.
 *
 * @module
 */

import assert from "node:assert/strict";
import {
  type ServerMessage,
  splitFrame,
  type WelcomeMessage,
} from "../protocol.ts";
import { Inbox } from "./inbox.ts";
import { WAIT_MS, within } from "./wait.ts";

/**
 * ISO 8601, UTC, with milliseconds: the protocol's timestamps.
 *
 * @example
 * ```ts
 * import { ISO_UTC_MS } from "./chat_client.ts";
 * ISO_UTC_MS.test("2026-11-22T10:00:00.000Z"); // true
 * ```
 */
export const ISO_UTC_MS = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;

/**
 * The name the server makes up for a client that asked for none.
 *
 * @example
 * ```ts
 * import { GUEST_NAME } from "./chat_client.ts";
 * GUEST_NAME.test("guest-1f2e"); // true
 * ```
 */
export const GUEST_NAME = /^guest-[0-9a-f]{4}$/;

/** How a WebSocket ended, as its close event told. */
export interface CloseInfo {
  /** The close code (1005 when none was given, 1006 when abnormal). */
  code: number;
  /** The close reason. */
  reason: string;
}

/**
 * Parses one frame from the server into its messages, one JSON document per
 * `\n`-separated line; throws if a line is not a JSON object.
 *
 * @example
 * ```ts
 * import { parseFrame } from "./chat_client.ts";
 * parseFrame('{"type":"typing","username":"ann"}').length; // 1
 * ```
 */
export function parseFrame(frame: string): ServerMessage[] {
  return splitFrame(frame).map((line) => {
    const value = JSON.parse(line);
    assert.ok(
      typeof value === "object" && value !== null && !Array.isArray(value),
      `server sent a line that is not a JSON object: ${line.slice(0, 80)}`,
    );
    return value as ServerMessage;
  });
}

/**
 * A well-behaved chat client on Deno's WebSocket: it reads every frame,
 * splits it into messages, and answers pings (Deno does that itself).
 *
 * @example
 * ```ts
 * import { ChatClient } from "./chat_client.ts";
 * const port = 8080; // a running server's
 * const ann = await ChatClient.join(port, "ann");
 * ann.say("hello");
 * await ann.expectMessage("ann", "hello");
 * await ann.close();
 * ```
 */
export class ChatClient {
  /** The underlying socket. */
  readonly socket: WebSocket;
  /** Resolves with the close code and reason once the socket closed. */
  readonly closed: Promise<CloseInfo>;
  /** Frames received so far. */
  frames = 0;
  /** The name the server gave us (set by {@linkcode ChatClient.join}). */
  username = "";
  /** The welcome the server greeted us with (set by {@linkcode ChatClient.enter}). */
  welcome: WelcomeMessage | null = null;
  #inbox = new Inbox<ServerMessage>();
  #label: string;

  private constructor(socket: WebSocket, label: string) {
    this.socket = socket;
    this.#label = label;
    socket.addEventListener("message", (event) => {
      this.frames++;
      if (typeof event.data !== "string") {
        this.#inbox.end(new Error(`${label}: server sent a binary frame`));
        return;
      }
      let messages: ServerMessage[];
      try {
        messages = parseFrame(event.data);
      } catch (error) {
        this.#inbox.end(
          new Error(`${label}: bad frame: ${(error as Error).message}`),
        );
        return;
      }
      for (const message of messages) this.#inbox.push(message);
    });
    this.closed = new Promise((resolve) => {
      socket.addEventListener("close", (event) => {
        this.#inbox.end(
          new Error(
            `${label}: socket closed (${event.code} ${event.reason}) before the awaited message`,
          ),
        );
        resolve({ code: event.code, reason: event.reason });
      });
    });
  }

  /**
   * Opens a socket to `url` (offering `protocols`, if any) and resolves
   * once it is open; rejects (after the socket closed) if the server
   * refused the upgrade.
   */
  static async open(
    url: string,
    label = url,
    protocols?: string[],
  ): Promise<ChatClient> {
    const socket = new WebSocket(url, protocols);
    const client = new ChatClient(socket, label);
    const opened = new Promise<boolean>((resolve) => {
      socket.addEventListener("open", () => resolve(true));
      client.closed.then(() => resolve(false));
    });
    if (!(await within(opened, `${label} to open`))) {
      const end = await client.closed;
      throw new Error(`${label}: refused (${end.code} ${end.reason})`);
    }
    return client;
  }

  /**
   * Connects under `username` (none: a guest), checks that the first two
   * messages are our welcome and our own join, and returns the client.
   */
  static join(port: number, username?: string): Promise<ChatClient> {
    return ChatClient.enter(port, username === undefined ? {} : { username });
  }

  /**
   * Connects under `username` to a room that may be large, which announces
   * no join (the client's own included): checks only that the first
   * message is the welcome, kept in `welcome`, and returns the client.
   */
  static async arrive(port: number, username: string): Promise<ChatClient> {
    const client = await ChatClient.open(
      `ws://127.0.0.1:${port}/ws?username=${encodeURIComponent(username)}`,
      username,
    );
    try {
      const welcome = await client.next(`${username}'s welcome`);
      assert.equal(welcome.type, "welcome", `${username}: first message`);
      client.welcome = welcome as WelcomeMessage;
      client.username = username;
    } catch (error) {
      await client.close();
      throw error;
    }
    return client;
  }

  /**
   * Connects with any query (`username`, `room`, `since`, `session`...),
   * checks that the first two messages are our welcome and our own join,
   * and returns the client, its welcome kept in `welcome`.
   */
  static async enter(
    port: number,
    query: Record<string, string>,
  ): Promise<ChatClient> {
    const label = query.username ?? "guest";
    const params = new URLSearchParams(query).toString();
    const client = await ChatClient.open(
      `ws://127.0.0.1:${port}/ws${params === "" ? "" : `?${params}`}`,
      label,
    );
    try {
      const welcome = await client.next(`${label}'s welcome`);
      assert.equal(welcome.type, "welcome", `${label}: first message`);
      client.welcome = welcome as WelcomeMessage;
      client.username = client.welcome.username;
      client.#label = client.username;
      const join = await client.next(`${label}'s own join`);
      assert.equal(join.type, "join", `${label}: second message`);
      assert.equal((join as { username: string }).username, client.username);
    } catch (error) {
      await client.close();
      throw error;
    }
    return client;
  }

  /** Messages received and not yet read. */
  get pending(): number {
    return this.#inbox.size;
  }

  /** The next message, waiting at most `ms` for it. */
  next(what = "a message", ms: number = WAIT_MS): Promise<ServerMessage> {
    return this.#inbox.next(`${this.#label}: ${what}`, ms);
  }

  /** Reads the next message and checks it is a chat line with this text. */
  async expectMessage(from: string, text: string): Promise<void> {
    const message = await this.next(`message "${text.slice(0, 30)}"`);
    assert.equal(message.type, "message", `${this.#label}: expected a message`);
    assert.equal((message as { username: string }).username, from);
    assert.equal((message as { text: string }).text, text);
  }

  /** Reads the next message and checks it is a presence event. */
  async expectPresence(
    type: "join" | "leave",
    username: string,
    online?: number,
  ): Promise<void> {
    const message = await this.next(`${type} of ${username}`);
    assert.equal(message.type, type, `${this.#label}: expected a ${type}`);
    assert.equal((message as { username: string }).username, username);
    if (online !== undefined) {
      assert.equal((message as { online: number }).online, online);
    }
  }

  /** Sends a value as JSON text. */
  send(value: unknown): void {
    this.socket.send(JSON.stringify(value));
  }

  /** Sends a chat line. */
  say(text: string): void {
    this.send({ type: "message", text });
  }

  /** Sends a frame as is (text or binary). */
  sendRaw(data: string | Uint8Array<ArrayBuffer>): void {
    this.socket.send(data);
  }

  /** Closes the socket (if still open) and waits for the close event. */
  async close(code?: number, reason?: string): Promise<CloseInfo> {
    if (
      this.socket.readyState === WebSocket.OPEN ||
      this.socket.readyState === WebSocket.CONNECTING
    ) {
      try {
        this.socket.close(code, reason);
      } catch {
        // Closing already: the close event is still to come.
      }
    }
    return await within(this.closed, `${this.#label} to close`);
  }
}

/**
 * The scene every hostile test plays in ({@linkcode withScene}): a
 * well-behaved observer and a well-behaved sender are connected throughout;
 * the sender sends numbered lines before, during and after the attack; at
 * the end the observer must have received exactly the sender's lines, in
 * order, once each, every attacker that joined must have left exactly once,
 * and `/healthz` must answer 200 with the baseline client count. With it,
 * the reads an attacker is judged by (its end, its replies) and the
 * server's health and metrics.
 *
 * @module
 */

import assert from "node:assert/strict";
import type { ServerMessage } from "../protocol.ts";
import type { ServerOptions } from "../server.ts";
import { ChatClient } from "./chat_client.ts";
import { RawWebSocket } from "./raw_websocket.ts";
import { type Closer, withServer } from "./server.ts";
import { WAIT_MS, waitUntil } from "./wait.ts";

/**
 * How a connection ended, seen from the client: a close frame, or the end
 * of the stream without one.
 *
 * @example
 * ```ts
 * import type { End } from "./scene.ts";
 * const dropped: End = { kind: "eof" };
 * ```
 */
export type End = { kind: "close"; code: number; reason: string } | {
  kind: "eof";
};

/**
 * Reads until the server closes (a close frame or a dropped connection),
 * skipping whatever messages arrive first and answering pings.
 *
 * @example
 * ```ts
 * import { rawJoin, readEnd } from "./scene.ts";
 * const port = 8080; // a running server's
 * const raw = await rawJoin(port, "ann");
 * await raw.sendClose(1000, "bye");
 * await readEnd(raw); // { kind: "close", code: 1000, reason: "bye" }
 * ```
 */
export async function readEnd(
  raw: RawWebSocket,
  ms: number = WAIT_MS,
): Promise<End> {
  const deadline = Date.now() + ms;
  for (;;) {
    const event = await raw.readEvent({
      answerPings: true,
      ms: Math.max(1, deadline - Date.now()),
    });
    if (event === null) return { kind: "eof" };
    if (event.kind === "close") return event;
  }
}

/**
 * Asserts an end is a drop or a close with one of `codes`; `what` names
 * the attack in the failure.
 *
 * @example
 * ```ts
 * import { assertEnd } from "./scene.ts";
 * assertEnd({ kind: "close", code: 1009, reason: "" }, new Set([1009]), "big");
 * ```
 */
export function assertEnd(
  end: End,
  codes: ReadonlySet<number>,
  what: string,
): void {
  if (end.kind === "eof") return;
  assert.ok(
    codes.has(end.code),
    `${what}: closed with ${end.code} "${end.reason}", expected a drop or one of ${
      [...codes].join(", ")
    }`,
  );
}

/**
 * A raw client that has read its welcome and its own join (and whatever
 * lines in flight arrived between the two).
 *
 * @example
 * ```ts
 * import { rawJoin } from "./scene.ts";
 * const port = 8080; // a running server's
 * const raw = await rawJoin(port, "ann");
 * await raw.sendText(JSON.stringify({ type: "message", text: "hi" }));
 * await raw.close();
 * ```
 */
export async function rawJoin(
  port: number,
  name: string,
): Promise<RawWebSocket> {
  const raw = await RawWebSocket.connect(port, name);
  try {
    const welcome = await raw.next(`${name}'s welcome`);
    assert.equal(welcome.type, "welcome");
    await nextMatching(
      () => raw.next(`${name}'s join`),
      (m) => m.type === "join" && field(m, "username") === name,
      `${name}'s own join`,
    );
  } catch (error) {
    await raw.close();
    throw error;
  }
  return raw;
}

/**
 * Reads messages until one matches (at most 10,000), dropping the others.
 *
 * @example
 * ```ts
 * import { ChatClient } from "./chat_client.ts";
 * import { nextMatching } from "./scene.ts";
 * const ann = await ChatClient.join(8080, "ann");
 * await nextMatching(() => ann.next(), (m) => m.type === "leave", "a leave");
 * ```
 */
export async function nextMatching(
  next: () => Promise<ServerMessage>,
  match: (message: ServerMessage) => boolean,
  what: string,
): Promise<ServerMessage> {
  for (let read = 0; read < 10_000; read++) {
    const message = await next();
    if (match(message)) return message;
  }
  throw new Error(`${what}: not among 10,000 messages`);
}

/**
 * A message's field by name, whatever the message's type.
 *
 * @example
 * ```ts
 * import { field } from "./scene.ts";
 * import type { ServerMessage } from "../protocol.ts";
 * const message: ServerMessage = JSON.parse('{"type":"error","code":"empty_text"}');
 * field(message, "code"); // "empty_text"
 * ```
 */
export function field(message: ServerMessage, name: string): unknown {
  return (message as unknown as Record<string, unknown>)[name];
}

/**
 * The next reply to this client's own frame: its own chat line coming back,
 * or an error. Other people's lines and presence are skipped.
 *
 * @example
 * ```ts
 * import { nextReply, rawJoin } from "./scene.ts";
 * const raw = await rawJoin(8080, "ann");
 * await raw.sendText("not json");
 * await nextReply(raw, "ann", "the refusal"); // an error, invalid_json
 * ```
 */
export async function nextReply(
  raw: RawWebSocket,
  self: string,
  what: string,
): Promise<ServerMessage> {
  return await nextMatching(
    () => raw.next(what),
    (message) =>
      message.type === "error" ||
      (message.type === "message" && field(message, "username") === self),
    what,
  );
}

// ------------------------------------------------------------- health

/**
 * `/healthz`: its status code and the clients it counts.
 *
 * @example
 * ```ts
 * import { health } from "./scene.ts";
 * await health(8080); // { status: 200, clients: 0 }
 * ```
 */
export async function health(
  port: number,
): Promise<{ status: number; clients: number }> {
  const response = await fetch(`http://127.0.0.1:${port}/healthz`);
  const body = await response.json();
  return { status: response.status, clients: body.clients };
}

/**
 * One sample of /metrics: `name` or `name{label="value"}`, 0 if absent.
 *
 * @example
 * ```ts
 * import { metric } from "./scene.ts";
 * await metric(8080, 'hubchat_evictions_total{cause="rate_limit"}'); // 0
 * ```
 */
export async function metric(port: number, sample: string): Promise<number> {
  const response = await fetch(`http://127.0.0.1:${port}/metrics`);
  const text = await response.text();
  for (const line of text.split("\n")) {
    if (line.startsWith(sample + " ")) {
      return Number(line.slice(sample.length + 1));
    }
  }
  return 0;
}

// -------------------------------------------------------------- scene

/**
 * What the observer saw during a scene, once settled: what
 * {@linkcode withScene} resolves with.
 */
export interface Tally {
  /** Joins seen, by name (the observer's and sender's own excluded). */
  joins: Map<string, number>;
  /** Leaves seen, by name. */
  leaves: Map<string, number>;
  /** Chat lines from anyone but the sender, in the order received. */
  others: { username: string; text: string }[];
  /** Sender lines received (all, in order, checked). */
  senderLines: number;
}

/** The fixtures of one scene: what an attack is given. */
export interface Scene {
  port: number;
  track: <T extends Closer>(closer: T) => T;
  observer: ChatClient;
  sender: ChatClient;
  /**
   * Sends the sender's next numbered line and waits for its echo, so that
   * it has reached every outbox before anything else happens.
   */
  say(): Promise<void>;
}

/**
 * Runs an attack between a well-behaved observer and sender (see the module
 * comment), then checks the invariants and returns what the observer saw.
 * `host` is the port of a server already running (a child process), or
 * server options for one started here.
 *
 * @example
 * ```ts
 * import { rawJoin, withScene } from "./scene.ts";
 * const tally = await withScene({}, async (scene) => {
 *   const attacker = scene.track(await rawJoin(scene.port, "mallory"));
 *   await attacker.sendText("not json");
 *   await scene.say();
 * });
 * tally.others; // []
 * ```
 */
export async function withScene(
  host: ServerOptions | number,
  attack: (scene: Scene) => Promise<void>,
): Promise<Tally> {
  let tally: Tally | undefined;
  const body = async (
    port: number,
    track: <T extends Closer>(closer: T) => T,
  ): Promise<void> => {
    const observer = track(await ChatClient.join(port, "observer"));
    const sender = track(await ChatClient.join(port, "sender"));
    await observer.expectPresence("join", "sender");
    let said = 0;
    const scene: Scene = {
      port,
      track,
      observer,
      sender,
      say: async () => {
        const text = `line ${said++}`;
        sender.say(text);
        await nextMatching(
          () => sender.next(`the echo of "${text}"`),
          (m) => m.type === "message" && field(m, "text") === text,
          `the echo of "${text}"`,
        );
      },
    };
    for (let i = 0; i < 3; i++) await scene.say();
    await attack(scene);
    for (let i = 0; i < 3; i++) await scene.say();
    tally = await settle(scene, () => said, (n) => (said = n));
  };
  if (typeof host === "number") {
    const closers: Closer[] = [];
    try {
      await body(host, (closer) => {
        closers.push(closer);
        return closer;
      });
    } finally {
      for (const closer of closers.reverse()) await closer.close();
    }
  } else {
    await withServer(host, (server, track) => body(server.port, track));
  }
  return tally!;
}

/**
 * Waits for the attackers to be gone, sends a last numbered line, reads the
 * observer up to it and checks: every sender line once and in order, every
 * attacker that joined left exactly once, nothing but chat and presence,
 * the observer still connected, /healthz 200 with 2 clients.
 */
async function settle(
  scene: Scene,
  said: () => number,
  setSaid: (n: number) => void,
): Promise<Tally> {
  const { port, observer, sender } = scene;
  await waitUntil(
    async () => (await health(port)).clients === 2,
    "the attackers to be gone (healthz clients back to 2)",
    15_000,
  );
  const last = said();
  sender.say(`line ${last}`);
  setSaid(last + 1);
  const tally: Tally = {
    joins: new Map(),
    leaves: new Map(),
    others: [],
    senderLines: 0,
  };
  for (;;) {
    const message = await observer.next(
      `sender line ${tally.senderLines} of ${last + 1}`,
      15_000,
    );
    const username = String(field(message, "username"));
    if (message.type === "join" || message.type === "leave") {
      const map = message.type === "join" ? tally.joins : tally.leaves;
      map.set(username, (map.get(username) ?? 0) + 1);
      continue;
    }
    if ((message.type as string) === "typing") continue;
    assert.equal(
      message.type,
      "message",
      `observer got ${JSON.stringify(message).slice(0, 200)}`,
    );
    const text = String(field(message, "text"));
    if (username !== "sender") {
      tally.others.push({ username, text });
      continue;
    }
    assert.equal(
      text,
      `line ${tally.senderLines}`,
      "the sender's lines reach the observer once each, in order",
    );
    tally.senderLines++;
    if (tally.senderLines === last + 1) break;
  }
  for (const name of new Set([...tally.joins.keys(), ...tally.leaves.keys()])) {
    assert.equal(tally.joins.get(name), 1, `joins of ${name}`);
    assert.equal(tally.leaves.get(name), 1, `leaves of ${name}`);
  }
  assert.equal(observer.socket.readyState, WebSocket.OPEN, "observer is open");
  const final = await health(port);
  assert.deepEqual(final, { status: 200, clients: 2 });
  return tally;
}

/**
 * Hostile input over real sockets: what a server exposed to the internet
 * gets thrown at it. Random bytes, broken and lying frame headers, binary,
 * truncated and huge frames, malformed and deeply nested JSON, invalid
 * UTF-8, control characters, HTML/script payloads, hostile usernames,
 * thousands of connects and drops, a flood from one client, a client that
 * never reads.
 *
 * Every test follows one pattern ({@linkcode withScene}): a well-behaved
 * observer and a well-behaved sender are connected throughout; the sender
 * sends numbered lines before, during and after the attack; at the end the
 * observer must have received exactly the sender's lines, in order, once
 * each, every attacker that joined must have left exactly once, and
 * `/healthz` must answer 200 with the baseline client count.
 *
 * The frame fuzzer is seeded: `FUZZ_SEED=0x1234abcd deno test -A
 * hostile_test.ts` replays a run, and a failure names its seed and step.
 *
 * Memory is measured on a server in a child process (`main.ts`), through
 * its VmRSS in /proc: the test process's own buffers would drown the signal.
 *
 * @module
 */

import assert from "node:assert/strict";
import type { ServerMessage } from "./protocol.ts";
import type { ServerOptions } from "./server.ts";
import { ChatClient } from "./testing/chat_client.ts";
import {
  Opcode,
  RawWebSocket,
  upgradeReplyAt,
} from "./testing/raw_websocket.ts";
import { type Closer, withServer } from "./testing/server.ts";
import { sleep, WAIT_MS, waitUntil, withTimeout } from "./testing/wait.ts";

const encoder = new TextEncoder();
/** Decodes as a server must: a leading BOM is content, not a marker. */
const decoder = new TextDecoder("utf-8", { ignoreBOM: true });

/** The server's frame limit with default options. */
const MAX_FRAME_BYTES = 8 * 1024;

/** Error codes a refused text frame may get (README, "Client to server"). */
const INPUT_ERROR_CODES = new Set([
  "invalid_json",
  "invalid_message",
  "unknown_type",
  "empty_text",
  "text_too_long",
]);

/**
 * Close codes a connection may end with after a protocol violation: 1002
 * (protocol error), 1003 (binary), 1007 (invalid UTF-8), 1009 (too big). A
 * plain TCP drop is also accepted: Deno's WebSocket layer drops most
 * malformed connections without a close frame.
 */
const VIOLATION_CLOSE_CODES = new Set([1002, 1003, 1007, 1009]);

// ------------------------------------------------------------ the PRNG

/**
 * mulberry32: a 32-bit seeded PRNG, plenty for picking among test cases
 * and reproducible from one number.
 */
class Rng {
  #state: number;

  constructor(seed: number) {
    this.#state = seed >>> 0;
  }

  /** A uniform 32-bit unsigned integer. */
  uint32(): number {
    this.#state = (this.#state + 0x6d2b79f5) >>> 0;
    let t = this.#state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  }

  /** A uniform float in [0, 1). */
  float(): number {
    return this.uint32() / 0x1_0000_0000;
  }

  /** A uniform integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.float() * n);
  }

  /** One element of a non-empty list. */
  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)];
  }

  /** True with probability p. */
  chance(p: number): boolean {
    return this.float() < p;
  }

  /** n random bytes. */
  bytes(n: number): Uint8Array {
    const out = new Uint8Array(n);
    for (let i = 0; i < n; i++) out[i] = this.uint32() & 0xff;
    return out;
  }
}

/** The fuzz seed: FUZZ_SEED (decimal or 0x hex) if set, else a fixed one. */
function fuzzSeed(): number {
  const raw = Deno.env.get("FUZZ_SEED");
  if (raw === undefined || raw.trim() === "") return 0x6875_6263; // "hubc"
  const seed = Number(raw.trim());
  if (!Number.isInteger(seed) || seed < 0 || seed > 0xffff_ffff) {
    throw new Error(`FUZZ_SEED=${raw}: expected an integer 0..2^32-1`);
  }
  return seed;
}

// ------------------------------------------------------- raw frames

/** One client frame, as a hostile client may build it. */
interface FrameSpec {
  opcode: number;
  payload?: Uint8Array;
  /** FIN bit; default true. */
  fin?: boolean;
  /** RSV1..3 as a 3-bit number (RSV1 = 4); default 0. */
  rsv?: number;
  /** Set the MASK bit (clients must); default true. */
  masked?: boolean;
  /** The length the header claims, when it should lie. */
  declaredLength?: bigint;
  /** The length field's form: the shortest (default), 16-bit or 64-bit. */
  lengthForm?: "minimal" | "16" | "64";
  /**
   * Mask with the key 0, which leaves the payload as is: valid, and fast for
   * megabytes.
   */
  zeroMask?: boolean;
}

/** Encodes a frame exactly as specified, right or wrong. */
function encodeFrame(spec: FrameSpec): Uint8Array {
  const payload = spec.payload ?? new Uint8Array(0);
  const length = spec.declaredLength ?? BigInt(payload.length);
  const masked = spec.masked ?? true;
  const form = spec.lengthForm ??
    (length < 126n ? "minimal" : length < 65536n ? "16" : "64");
  const head: number[] = [
    ((spec.fin ?? true) ? 0x80 : 0) | ((spec.rsv ?? 0) << 4) | spec.opcode,
  ];
  const maskBit = masked ? 0x80 : 0;
  if (form === "minimal") {
    head.push(maskBit | Number(length));
  } else if (form === "16") {
    head.push(
      maskBit | 126,
      Number(length >> 8n) & 0xff,
      Number(length) & 0xff,
    );
  } else {
    head.push(maskBit | 127);
    for (let shift = 56n; shift >= 0n; shift -= 8n) {
      head.push(Number((length >> shift) & 0xffn));
    }
  }
  const key = spec.zeroMask
    ? new Uint8Array(4)
    : crypto.getRandomValues(new Uint8Array(4));
  if (masked) head.push(...key);
  const frame = new Uint8Array(head.length + payload.length);
  frame.set(head);
  if (!masked || spec.zeroMask) {
    frame.set(payload, head.length);
  } else {
    for (let i = 0; i < payload.length; i++) {
      frame[head.length + i] = payload[i] ^ key[i & 3];
    }
  }
  return frame;
}

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((sum, p) => sum + p.length, 0));
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}

/** A close frame's payload: the code, then the reason bytes. */
function closePayload(code: number, reason: Uint8Array): Uint8Array {
  const payload = new Uint8Array(2 + reason.length);
  new DataView(payload.buffer).setUint16(0, code);
  payload.set(reason, 2);
  return payload;
}

/** How a connection ended, seen from the client. */
type End = { kind: "close"; code: number; reason: string } | { kind: "eof" };

/**
 * Reads until the server closes (a close frame or a dropped connection),
 * skipping whatever messages arrive first.
 */
async function readEnd(raw: RawWebSocket, ms: number = WAIT_MS): Promise<End> {
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

/** Asserts an end is a drop or a close with one of `codes`. */
function assertEnd(end: End, codes: ReadonlySet<number>, what: string): void {
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
 */
async function rawJoin(port: number, name: string): Promise<RawWebSocket> {
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

/** Reads messages until one matches (at most 10,000). */
async function nextMatching(
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

function field(message: ServerMessage, name: string): unknown {
  return (message as unknown as Record<string, unknown>)[name];
}

/**
 * The next reply to this client's own frame: its own chat line coming back,
 * or an error. Other people's lines and presence are skipped.
 */
async function nextReply(
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

async function health(
  port: number,
): Promise<{ status: number; clients: number }> {
  const response = await fetch(`http://127.0.0.1:${port}/healthz`);
  const body = await response.json();
  return { status: response.status, clients: body.clients };
}

/** One sample of /metrics: `name` or `name{label="value"}`, 0 if absent. */
async function metric(port: number, sample: string): Promise<number> {
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

/** What the observer saw during a scene, once settled. */
interface Tally {
  /** Joins seen, by name (the observer's and sender's own excluded). */
  joins: Map<string, number>;
  /** Leaves seen, by name. */
  leaves: Map<string, number>;
  /** Chat lines from anyone but the sender, in the order received. */
  others: { username: string; text: string }[];
  /** Sender lines received (all, in order, checked). */
  senderLines: number;
}

/** The fixtures of one scene. */
interface Scene {
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
 */
async function withScene(
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

// ------------------------------------------------------------ the oracle

/** What the server must do with a text frame, per the README. */
type Verdict =
  | { kind: "deliver"; text: string }
  | { kind: "error"; code: string }
  | { kind: "close"; code: number };

function codePoints(text: string): number {
  let count = 0;
  for (const _ of text) count++;
  return count;
}

/** Judges a text frame as it arrives (already decoded from UTF-8). */
function judge(frame: string, maxFrameBytes = MAX_FRAME_BYTES): Verdict {
  if (encoder.encode(frame).length > maxFrameBytes) {
    return { kind: "close", code: 1009 };
  }
  let data: unknown;
  try {
    data = JSON.parse(frame);
  } catch {
    return { kind: "error", code: "invalid_json" };
  }
  if (typeof data !== "object" || data === null || Array.isArray(data)) {
    return { kind: "error", code: "invalid_message" };
  }
  const { type, text } = data as Record<string, unknown>;
  if (typeof type !== "string") {
    return { kind: "error", code: "invalid_message" };
  }
  if (type !== "message") return { kind: "error", code: "unknown_type" };
  if (typeof text !== "string") {
    return { kind: "error", code: "invalid_message" };
  }
  const trimmed = text.trim();
  if (trimmed === "") return { kind: "error", code: "empty_text" };
  if (codePoints(trimmed) > 2000) {
    return { kind: "error", code: "text_too_long" };
  }
  return { kind: "deliver", text: trimmed };
}

// --------------------------------------------------------- the grammar

/** Pieces of chat text, chosen for the trouble they cause. */
const TEXT_ATOMS = [
  "hello",
  "x",
  " ",
  "\t",
  "\n",
  "\r\n",
  "<script>alert(1)</script>",
  "\u0000",
  "\u0007",
  "\u001b[31m",
  "\u007f",
  "\u0085",
  "\uffff",
  "\ufffe",
  "\ufeff",
  "\u200b",
  "\u200d",
  "\u202e",
  "\u2066",
  "\u2028",
  "😀",
  "👩\u200d👩\u200d👧",
  "e\u0301",
  "€",
  "\ud800", // lone high surrogate: JSON.stringify escapes it as \ud800
  "\udfff", // lone low surrogate
  "\\",
  '"',
  "مرحبا",
  "%00",
  "{}",
];

/** Type values no version of the protocol gives a meaning to. */
const UNKNOWN_TYPES = [
  "Message",
  "MESSAGE",
  "message ",
  " message",
  "message\u0000",
  "messag",
  "",
  "welcome",
  "error",
  "__proto__",
  "constructor",
  "x".repeat(300),
];

/** Wrong-typed values for `type` or `text`. */
const WRONG_VALUES = [
  "null",
  "true",
  "false",
  "0",
  "-0",
  "1e999",
  "-1e999",
  "1e-400",
  "123456789012345678901234567890",
  "[]",
  "{}",
  '["hi"]',
  '{"text":"hi"}',
];

/** Extra fields, some of them spoofs the server must ignore. */
const EXTRA_FIELDS = [
  '"username":"observer"',
  '"timestamp":"1970-01-01T00:00:00.000Z"',
  '"id":-1',
  '"__proto__":{"text":"polluted"}',
  '"constructor":{"prototype":{"x":1}}',
  '"n":1e999',
  '"big":123456789012345678901234567890',
  '"deep":[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]',
  '"u":"\\ud800\\udfff\\u0000"',
];

function nested(depth: number, rng: Rng): string {
  return rng.chance(0.5)
    ? "[".repeat(depth) + "]".repeat(depth)
    : '{"a":'.repeat(depth) + "1" + "}".repeat(depth);
}

function genText(rng: Rng): string {
  switch (rng.int(12)) {
    case 0:
      return "";
    case 1:
      return rng.pick([" ", " \t\n ", "\u2028", "\ufeff", "\u00a0 \u3000"]);
    case 2:
      return rng.pick(["a", "é", "😀", "€"]).repeat(
        rng.pick([1999, 2000, 2001, 2500]),
      );
    case 3:
      return "z".repeat(rng.pick([8170, 8200, 20_000]));
    default: {
      const parts: string[] = [];
      const count = 1 + rng.int(8);
      for (let i = 0; i < count; i++) parts.push(rng.pick(TEXT_ATOMS));
      return parts.join("");
    }
  }
}

/** A JSON document, mostly close to a valid chat line. */
function genDocument(rng: Rng): string {
  const text = JSON.stringify(genText(rng));
  switch (rng.int(14)) {
    case 0:
      return `{"type":"message","text":${rng.pick(WRONG_VALUES)}}`;
    case 1:
      return `{"type":${rng.pick(WRONG_VALUES)},"text":${text}}`;
    case 2:
      return `{"type":${
        JSON.stringify(rng.pick(UNKNOWN_TYPES))
      },"text":${text}}`;
    case 3:
      return rng.pick([`{"text":${text}}`, '{"type":"message"}', "{}"]);
    case 4:
      return rng.pick(WRONG_VALUES.concat(['"message"', '""', "[1,2,3]"]));
    case 5: {
      const depth = rng.pick([10, 100, 1000, 4000, 10_000]);
      return rng.chance(0.5)
        ? nested(depth, rng)
        : `{"type":"message","text":"deep","x":${nested(depth, rng)}}`;
    }
    case 6: {
      const extras: string[] = [];
      const count = 1 + rng.int(3);
      for (let i = 0; i < count; i++) extras.push(rng.pick(EXTRA_FIELDS));
      return `{${extras.join(",")},"type":"message","text":${text}}`;
    }
    case 7:
      // Duplicate keys: the last one wins in JSON.parse.
      return `{"type":"message","text":"first","text":${text}}`;
    default:
      return `{"type":"message","text":${text}}`;
  }
}

/** Characters the mutator inserts: JSON syntax and awkward code units. */
const MUTATION_CHARS = [
  "{",
  "}",
  "[",
  "]",
  '"',
  ":",
  ",",
  "\\",
  "\u0000",
  "\n",
  "\ud800",
  "\uffff",
  "\ufeff",
  "\u202e",
  "0",
  "e",
  "-",
  " ",
];

/** Drops, inserts, flips, truncates or pads characters of a document. */
function mutate(doc: string, rng: Rng): string {
  let out = doc;
  const count = 1 + rng.int(3);
  for (let i = 0; i < count; i++) {
    const at = rng.int(out.length + 1);
    switch (rng.int(6)) {
      case 0:
        out = out.slice(0, at) + out.slice(at + 1);
        break;
      case 1:
        out = out.slice(0, at) + rng.pick(MUTATION_CHARS) + out.slice(at);
        break;
      case 2:
        out = out.slice(0, at) + rng.pick(MUTATION_CHARS) + out.slice(at + 1);
        break;
      case 3:
        out = out.slice(0, at);
        break;
      case 4:
        out = rng.pick(["\ufeff", " ", "\u00a0", "\u0000"]) + out;
        break;
      default:
        out = out + rng.pick([" ", "\n", "}", "garbage", "\u0000", "{}"]);
    }
  }
  return out;
}

/** Invalid UTF-8 sequences: stray bytes, overlongs, surrogates, too high. */
const INVALID_UTF8 = [
  [0xff],
  [0xfe],
  [0x80],
  [0xc0, 0x80], // overlong NUL
  [0xe0, 0x80, 0xaf], // overlong "/"
  [0xed, 0xa0, 0x80], // UTF-8 of a lone surrogate (CESU)
  [0xf4, 0x90, 0x80, 0x80], // above U+10FFFF
  [0xe2, 0x82], // truncated "€"
  [0xf0, 0x9f, 0x98], // truncated emoji
];

/** One fuzz step: the bytes to write, and what must happen. */
interface Step {
  what: string;
  bytes: Uint8Array;
  expect:
    | { kind: "verdict"; verdict: Verdict }
    | { kind: "end"; codes: ReadonlySet<number> }
    | { kind: "deliver-or-end"; text: string }
    | { kind: "nothing" }
    | { kind: "drop" };
}

function textStep(rng: Rng): Step {
  let doc = genDocument(rng);
  if (rng.chance(0.3)) doc = mutate(doc, rng);
  const payload = encoder.encode(doc);
  // What arrives: lone surrogates were sent as U+FFFD by the encoder.
  const verdict = judge(decoder.decode(payload));
  const expect = { kind: "verdict", verdict } as const;
  const preview = JSON.stringify(doc.slice(0, 60));
  if (rng.chance(0.15) && payload.length > 1) {
    // Fragmented, split anywhere (mid-character too), maybe with a ping.
    const cuts = new Set<number>();
    const pieces = 1 + rng.int(4);
    for (let i = 0; i < pieces; i++) cuts.add(1 + rng.int(payload.length - 1));
    const points = [0, ...[...cuts].sort((a, b) => a - b), payload.length];
    const frames: Uint8Array[] = [];
    for (let i = 0; i + 1 < points.length; i++) {
      frames.push(encodeFrame({
        opcode: i === 0 ? Opcode.text : Opcode.continuation,
        payload: payload.subarray(points[i], points[i + 1]),
        fin: i + 2 === points.length,
        zeroMask: payload.length > 100_000,
      }));
      if (rng.chance(0.3) && i + 2 < points.length) {
        frames.push(
          encodeFrame({ opcode: Opcode.ping, payload: rng.bytes(4) }),
        );
      }
    }
    return {
      what: `text in ${points.length - 1} fragments ${preview}`,
      bytes: concat(frames),
      expect,
    };
  }
  const lengthForm = payload.length < 126 && rng.chance(0.1)
    ? rng.pick(["16", "64"] as const)
    : undefined;
  return {
    what: `text ${preview}${lengthForm ? ` (${lengthForm}-bit length)` : ""}`,
    bytes: encodeFrame({ opcode: Opcode.text, payload, lengthForm }),
    expect,
  };
}

function violationStep(rng: Rng): Step {
  const chat = encoder.encode('{"type":"message","text":"nope"}');
  const end = { kind: "end", codes: VIOLATION_CLOSE_CODES } as const;
  switch (rng.int(11)) {
    case 0: {
      const opcode = rng.pick([3, 4, 5, 6, 7, 0xb, 0xc, 0xd, 0xe, 0xf]);
      return {
        what: `reserved opcode ${opcode}`,
        bytes: encodeFrame({ opcode, payload: rng.bytes(rng.int(20)) }),
        expect: end,
      };
    }
    case 1: {
      const rsv = 1 + rng.int(7);
      return {
        what: `RSV bits ${rsv}`,
        bytes: encodeFrame({ opcode: Opcode.text, payload: chat, rsv }),
        expect: end,
      };
    }
    case 2:
      return {
        what: "continuation with nothing to continue",
        bytes: encodeFrame({ opcode: Opcode.continuation, payload: chat }),
        expect: end,
      };
    case 3:
      return {
        what: "a new text frame inside a fragmented message",
        bytes: concat([
          encodeFrame({ opcode: Opcode.text, payload: chat, fin: false }),
          encodeFrame({ opcode: Opcode.text, payload: chat }),
        ]),
        expect: end,
      };
    case 4:
      return {
        what: "ping over 125 bytes",
        bytes: encodeFrame({
          opcode: Opcode.ping,
          payload: rng.bytes(126 + rng.int(200)),
        }),
        expect: end,
      };
    case 5:
      return {
        what: "fragmented ping",
        bytes: encodeFrame({
          opcode: Opcode.ping,
          payload: rng.bytes(3),
          fin: false,
        }),
        expect: end,
      };
    case 6:
      return {
        what: "close frame of 1 byte",
        bytes: encodeFrame({ opcode: Opcode.close, payload: rng.bytes(1) }),
        expect: end,
      };
    case 7: {
      const code = rng.pick([
        0,
        999,
        1004,
        1005,
        1006,
        1015,
        1016,
        2999,
        5000,
        65535,
      ]);
      return {
        what: `close code ${code}`,
        bytes: encodeFrame({
          opcode: Opcode.close,
          payload: closePayload(code, new Uint8Array(0)),
        }),
        expect: end,
      };
    }
    case 8: {
      const bad = rng.pick(INVALID_UTF8);
      return {
        what: `invalid UTF-8 ${bad.map((b) => b.toString(16)).join(" ")}`,
        bytes: rng.chance(0.3)
          ? encodeFrame({
            opcode: Opcode.close,
            payload: closePayload(1000, new Uint8Array(bad)),
          })
          : encodeFrame({
            opcode: Opcode.text,
            payload: concat([
              encoder.encode('{"type":"message","text":"'),
              new Uint8Array(bad),
              encoder.encode('"}'),
            ]),
          }),
        expect: end,
      };
    }
    case 9: {
      const length = rng.pick([
        1n << 63n,
        (1n << 64n) - 1n,
        1n << 40n,
        65n << 20n,
      ]);
      return {
        what: `header claiming ${length} bytes`,
        bytes: encodeFrame({
          opcode: Opcode.text,
          payload: chat,
          declaredLength: length,
        }),
        expect: end,
      };
    }
    default: {
      // Text, then binary: 1003 whatever the binary holds.
      const fragmented = rng.chance(0.3);
      return {
        what: fragmented ? "fragmented binary" : "binary frame",
        bytes: fragmented
          ? concat([
            encodeFrame({ opcode: Opcode.binary, payload: chat, fin: false }),
            encodeFrame({ opcode: Opcode.continuation, payload: chat }),
          ])
          : encodeFrame({
            opcode: Opcode.binary,
            payload: rng.bytes(rng.int(64)),
          }),
        expect: { kind: "end", codes: new Set([1003]) },
      };
    }
  }
}

function genStep(rng: Rng): Step {
  const roll = rng.float();
  if (roll < 0.72) return textStep(rng);
  if (roll < 0.76) {
    const ping = rng.chance(0.5);
    return {
      what: ping ? "ping" : "unsolicited pong",
      bytes: encodeFrame({
        opcode: ping ? Opcode.ping : Opcode.pong,
        payload: rng.bytes(rng.int(126)),
      }),
      expect: { kind: "nothing" },
    };
  }
  if (roll < 0.78) {
    const text = `unmasked ${rng.int(1000)}`;
    return {
      what: "unmasked text frame",
      bytes: encodeFrame({
        opcode: Opcode.text,
        payload: encoder.encode(JSON.stringify({ type: "message", text })),
        masked: false,
      }),
      expect: { kind: "deliver-or-end", text },
    };
  }
  if (roll < 0.92) return violationStep(rng);
  if (roll < 0.95) {
    const code = rng.pick([1000, 1001, 3000, 4000, 4999]);
    return {
      what: `clean close ${code}`,
      bytes: encodeFrame({
        opcode: Opcode.close,
        payload: closePayload(code, encoder.encode("bye")),
      }),
      expect: { kind: "end", codes: new Set([code]) },
    };
  }
  // Then the connection is dropped: random bytes, or a frame cut short.
  const full = encodeFrame({
    opcode: Opcode.text,
    payload: encoder.encode('{"type":"message","text":"cut short"}'),
  });
  return rng.pick<Step>([
    {
      what: "random bytes, then a drop",
      bytes: rng.bytes(1 + rng.int(256)),
      expect: { kind: "drop" },
    },
    {
      what: "a truncated frame, then a drop",
      bytes: full.subarray(0, 1 + rng.int(full.length - 1)),
      expect: { kind: "drop" },
    },
  ]);
}

// ================================================================ tests

Deno.test("fuzz: seeded frames from a grammar of near-valid JSON and broken framing", async () => {
  // Budget: 2,000 frames (a few seconds); replay with FUZZ_SEED.
  const seed = fuzzSeed();
  const budget = 2000;
  const rng = new Rng(seed);
  const delivered: { username: string; text: string }[] = [];
  const outcomes = new Map<string, number>();
  let step = 0;
  let what = "setup";
  try {
    const tally = await withScene({ ratePerSecond: 0 }, async (scene) => {
      const { port } = scene;
      let attacker: RawWebSocket | null = null;
      let name = "";
      let connections = 0;
      try {
        for (step = 0; step < budget; step++) {
          if (step % 50 === 0) await scene.say();
          if (attacker === null) {
            name = `fz${connections++}`;
            attacker = await rawJoin(port, name);
          }
          const current: Step = genStep(rng);
          what = current.what;
          await attacker.connection.write(current.bytes);
          const expect = current.expect;
          let ended = false;
          let outcome = "";
          const verdict = expect.kind === "verdict" ? expect.verdict : null;
          const socket: RawWebSocket = attacker;
          if (verdict !== null && verdict.kind !== "close") {
            const reply = await nextReply(socket, name, `reply to ${what}`);
            if (verdict.kind === "deliver") {
              assert.equal(reply.type, "message", JSON.stringify(reply));
              assert.equal(field(reply, "text"), verdict.text);
              delivered.push({ username: name, text: verdict.text });
              outcome = "delivered";
            } else {
              assert.equal(reply.type, "error", JSON.stringify(reply));
              assert.equal(field(reply, "code"), verdict.code);
              assert.ok(INPUT_ERROR_CODES.has(verdict.code));
              outcome = `error ${verdict.code}`;
            }
          } else if (verdict !== null) {
            const end = await readEnd(socket);
            assertEnd(end, new Set([verdict.code]), what);
            outcome = end.kind === "eof" ? "drop" : `close ${end.code}`;
            ended = true;
          } else if (expect.kind === "end") {
            const end = await readEnd(socket);
            assertEnd(end, expect.codes, what);
            outcome = end.kind === "eof" ? "drop" : `close ${end.code}`;
            ended = true;
          } else if (expect.kind === "deliver-or-end") {
            // RFC 6455 says a server must fail an unmasked client frame;
            // Deno accepts it. Either is safe: delivered once, or gone.
            let own: ServerMessage | null = null;
            try {
              own = await nextReply(socket, name, `reply to ${what}`);
            } catch (error) {
              if (!/connection ended/.test((error as Error).message)) {
                throw error;
              }
            }
            if (own === null) {
              ended = true;
              outcome = "unmasked: closed";
            } else {
              assert.equal(field(own, "text"), expect.text);
              delivered.push({ username: name, text: expect.text });
              outcome = "unmasked: delivered";
            }
          } else if (expect.kind === "drop") {
            ended = true;
            outcome = "dropped by us";
          } else {
            outcome = "nothing";
          }
          outcomes.set(outcome, (outcomes.get(outcome) ?? 0) + 1);
          if (ended) {
            await attacker.close();
            attacker = null;
          }
          if (step % 100 === 99) {
            assert.equal(
              scene.observer.socket.readyState,
              WebSocket.OPEN,
              "the observer stays connected",
            );
            const expected = 2 + (attacker === null ? 0 : 1);
            await waitUntil(
              async () => (await health(port)).clients === expected,
              `healthz to count ${expected} clients`,
            );
          }
        }
      } finally {
        await attacker?.close();
      }
    });
    // Every accepted line reached the observer once, in order, and nothing
    // else from an attacker did.
    assert.deepEqual(tally.others, delivered);
    // The budget covered every kind of outcome.
    for (
      const kind of [
        "delivered",
        "error invalid_json",
        "error invalid_message",
        "error unknown_type",
        "error empty_text",
        "error text_too_long",
        "close 1009",
        "close 1003",
        "drop",
      ]
    ) {
      assert.ok(
        outcomes.has(kind),
        `no "${kind}" in ${JSON.stringify([...outcomes])}`,
      );
    }
  } catch (error) {
    const hex = `0x${seed.toString(16)}`;
    throw new Error(
      `fuzz failed at step ${step} of ${budget} (${what}); replay with FUZZ_SEED=${hex}: ${
        (error as Error).message
      }`,
      { cause: error },
    );
  }
});

Deno.test("deeply nested JSON, up to a million levels, is refused, not a crash", async () => {
  // A 16 MiB frame limit lets the depth through the size check.
  const maxFrameBytes = 16 * 1024 * 1024;
  await withScene({ ratePerSecond: 0, maxFrameBytes }, async (scene) => {
    const attacker = scene.track(await rawJoin(scene.port, "deep"));
    for (const depth of [10_000, 100_000, 1_000_000]) {
      const arrays = "[".repeat(depth) + "]".repeat(depth);
      const objects = '{"a":'.repeat(depth) + "1" + "}".repeat(depth);
      // Objects a million deep take the server seconds to parse (6 MB):
      // arrays only at that depth.
      const deepest = depth < 1_000_000 ? objects : arrays;
      const frames = [
        arrays,
        deepest,
        "[".repeat(depth),
        `{"type":"message","text":${arrays}}`,
        `{"type":"message","text":"depth ${depth}","x":${deepest}}`,
      ];
      for (const frame of frames) {
        await attacker.connection.write(encodeFrame({
          opcode: Opcode.text,
          payload: encoder.encode(frame),
          zeroMask: true,
        }));
        const verdict = judge(frame, maxFrameBytes);
        const reply = await nextReply(attacker, "deep", `depth ${depth}`);
        if (verdict.kind === "deliver") {
          assert.equal(field(reply, "text"), verdict.text);
        } else {
          assert.equal(reply.type, "error");
          assert.equal(
            field(reply, "code"),
            (verdict as { code: string }).code,
          );
        }
      }
      await scene.say();
    }
    // At the default 8 KiB limit depth 10,000 is refused by size.
    await attacker.close();
  }).then((tally) => {
    assert.deepEqual(tally.others.map((line) => line.text), [
      "depth 10000",
      "depth 100000",
      "depth 1000000",
    ]);
  });
});

Deno.test("HTML, script, control and bidi payloads are delivered exactly, as JSON text", async () => {
  const payloads = [
    "<script>alert(1)</script>",
    '"><img src=x onerror=alert(1)>',
    "</script><script>alert(document.cookie)</script>",
    "<!-- ]]> <![CDATA[",
    "javascript:alert(1)",
    "{{constructor.constructor('alert(1)')()}} ${alert(1)}",
    "'; DROP TABLE users; --",
    "a\u0000b",
    "\u001b[2J\u001b[31mred\u001b[0m",
    "bell\u0007 del\u007f nel\u0085",
    "line1\nline2\r\nline3",
    "a\u2028b\u2029c",
    "\uffff\ufffe",
    "lone \ud800 high, lone \udfff low",
    "😀\u200d👩 e\u0301 ﬁ",
    "\u202eRTL override\u202c and \u2066isolate\u2069",
    "zero\u200bwidth\u200djoiner\ufeffbom",
    "مرحبا abc שלום",
    "%00%0a%0d\\u0000\\n",
    '{"type":"message","text":"nested"}',
  ];
  await withScene({ ratePerSecond: 0 }, async (scene) => {
    const frames: string[] = [];
    scene.observer.socket.addEventListener("message", (event) => {
      if (typeof event.data === "string") frames.push(event.data);
    });
    const html = scene.track(await ChatClient.join(scene.port, "html"));
    for (const payload of payloads) {
      html.say(payload);
      await scene.say();
    }
    for (const payload of payloads) {
      const echo = await nextMatching(
        () => html.next("html's own line"),
        (m) => m.type === "message" && field(m, "username") === "html",
        "html's own line",
      );
      assert.equal(field(echo, "text"), payload.trim());
    }
    await html.close();
    // Not escaped by the server: escaping is the page's job.
    const all = frames.join("\n");
    assert.ok(all.includes("<script>alert(1)</script>"), "raw <script>");
    assert.ok(all.includes("\u202eRTL override"), "raw RTL override");
  }).then((tally) => {
    assert.deepEqual(
      tally.others.map((line) => line.text),
      payloads.map((payload) => payload.trim()),
    );
  });
});

Deno.test("hostile usernames get 400; an NFC twin of a name online gets 409", async () => {
  const invalid = [
    "a\u200bb", // zero-width space
    "\u200dann", // zero-width joiner
    "a\ufeffb", // BOM inside (at the ends it is trimmed, as whitespace)
    "\u202eevil", // right-to-left override
    "abc\u202edef",
    "\u2066x\u2069", // bidi isolates
    "a\u200fb", // right-to-left mark
    "a\u0000b",
    "a\nb",
    "a\tb",
    "\u0007bell",
    "a\u007fb",
    "a\u0085b",
    "\u0301", // a lone combining mark is not a letter
    "a".repeat(10 * 1024),
    "é".repeat(33),
    "<script>",
    "../etc/passwd",
    "a/b",
    "ann\u{E0041}", // a tag character
  ];
  // Percent-encoding tricks, sent as is in the request line.
  const rawQueries = [
    "a%00b",
    "%00",
    "a%0ab",
    "a%0d%0aSet-Cookie:%20x=1",
    "%ff",
    "a%C0%80b", // overlong NUL
    "%E2%80%AE", // U+202E
    "%E2%80%8B", // U+200B
    "a%2",
    "a%252e",
    "%F0%9F%98",
  ];
  await withScene({}, async (scene) => {
    const { port } = scene;
    for (const name of invalid) {
      const reply = await upgradeReplyAt(
        port,
        `/ws?username=${encodeURIComponent(name)}`,
      );
      assert.equal(reply.status, 400, `${JSON.stringify(name)}: ${reply.body}`);
      assert.equal(JSON.parse(reply.body).error, "invalid_username");
    }
    await scene.say();
    for (const query of rawQueries) {
      const reply = await upgradeReplyAt(port, `/ws?username=${query}`);
      assert.equal(reply.status, 400, `${query}: ${reply.body}`);
      assert.equal(JSON.parse(reply.body).error, "invalid_username");
    }
    await scene.say();
    // NFC and NFD spell one name: the second is a duplicate.
    const jose = scene.track(await ChatClient.join(port, "Jos\u00e9"));
    for (const twin of ["Jose\u0301", " Jos\u00e9 ", "\ufeffJos\u00e9"]) {
      const reply = await upgradeReplyAt(
        port,
        `/ws?username=${encodeURIComponent(twin)}`,
      );
      assert.equal(reply.status, 409, `${JSON.stringify(twin)}: ${reply.body}`);
      assert.equal(JSON.parse(reply.body).error, "username_taken");
    }
    await jose.close();
  }).then((tally) => {
    // Only José ever joined.
    assert.deepEqual([...tally.joins.keys()], ["Jos\u00e9"]);
  });
});

Deno.test("a flood from one client: rate_limited, then 1008; the others are unaffected", async () => {
  // Default rate limit (10/s, burst 20). The sender stays under it.
  await withScene({}, async (scene) => {
    const flooder = scene.track(await rawJoin(scene.port, "flooder"));
    let sent = 0;
    const flood = async (count: number): Promise<void> => {
      const frames: string[] = [];
      for (let i = 0; i < count; i++) {
        frames.push(
          JSON.stringify({ type: "message", text: `flood ${sent++}` }),
        );
      }
      await flooder.sendTexts(frames);
    };
    // 30 at once: the burst of 20 passes, 10 refusals in a row close it, on
    // the last frame, so no unread frame turns the close into a reset. If a
    // token came back meanwhile, more follow until the close.
    await flood(30);
    await scene.say();
    let warnings = 0;
    let echoes = 0;
    let end: End | undefined;
    while (end === undefined) {
      let event;
      try {
        event = await flooder.readEvent({ answerPings: true, ms: 300 });
      } catch (error) {
        if (!/timed out/.test((error as Error).message)) throw error;
        assert.ok(sent < 500, `no close after ${sent} frames`);
        await flood(10).catch(() => {}); // Closed under us: read on.
        continue;
      }
      if (event === null) end = { kind: "eof" };
      else if (event.kind === "close") end = event;
      else {
        for (const message of event.messages) {
          if (message.type === "error") {
            assert.equal(field(message, "code"), "rate_limited");
            warnings++;
          } else if (
            message.type === "message" &&
            field(message, "username") === "flooder"
          ) {
            echoes++;
          }
        }
      }
    }
    // A close frame can still be lost to a TCP reset if frames were in
    // flight; the server's own count says why it cut the flooder off.
    if (end.kind === "close") {
      assert.deepEqual(end, {
        kind: "close",
        code: 1008,
        reason: "rate limit exceeded repeatedly",
      });
    }
    assert.equal(
      await metric(scene.port, 'hubchat_evictions_total{cause="rate_limit"}'),
      1,
    );
    assert.ok(warnings >= 1, "the flooder was warned first");
    // Its own accepted lines may come back after the close (the server
    // stores them first), so what got through is counted at the observer.
    assert.ok(echoes < sent, `${echoes} of ${sent} came back`);
  }).then((tally) => {
    // What got through is a prefix-ordered, duplicate-free subset.
    const numbers = tally.others.map((line) => {
      assert.equal(line.username, "flooder");
      return Number(line.text.split(" ")[1]);
    });
    assert.ok(numbers.length >= 20, `${numbers.length} flood lines`);
    assert.deepEqual(numbers.slice(0, 20), [...Array(20).keys()]);
    for (let i = 1; i < numbers.length; i++) {
      assert.ok(numbers[i] > numbers[i - 1], "in order, no duplicates");
    }
  });
});

Deno.test("2,000 connects and disconnects: joins pair with leaves, nothing left open", async () => {
  const total = 2000;
  const concurrency = 50;
  await withScene(
    { ratePerSecond: 0, maxConnectionsPerIp: 0 },
    async (scene) => {
      let next = 0;
      let cleanCloses = 0;
      const worker = async (): Promise<void> => {
        while (next < total) {
          const i = next++;
          const raw = await RawWebSocket.connect(scene.port, `st${i}`);
          try {
            if (i % 2 === 0) {
              // Clean: a close frame, and the echo awaited.
              await raw.sendClose(1000, "bye");
              const end = await readEnd(raw);
              if (end.kind === "close") cleanCloses++;
            }
            // Odd ones vanish without a close frame.
          } finally {
            await raw.close();
          }
          if (i % 400 === 0) await scene.say();
        }
      };
      await withTimeout(
        Promise.all(Array.from({ length: concurrency }, worker)),
        "the connection storm",
        60_000,
      );
      assert.ok(cleanCloses > total / 4, `${cleanCloses} clean closes echoed`);
      await waitUntil(
        async () => (await metric(scene.port, "hubchat_connections")) === 2,
        "the server to hold only the observer's and sender's sockets",
        15_000,
      );
    },
  ).then((tally) => {
    // Every name that joined left once (checked by settle); most joined.
    assert.ok(tally.joins.size > total / 2, `${tally.joins.size} joined`);
  });
});

Deno.test("a client that never reads is evicted with 4008; the others get every line", async () => {
  await withScene(
    { maxQueue: 8, highWaterBytes: 1024, ratePerSecond: 0 },
    async (scene) => {
      const deaf = scene.track(await RawWebSocket.connect(scene.port, "deaf"));
      // The sender writes raw, each frame in one TCP write.
      const blaster = scene.track(await rawJoin(scene.port, "blaster"));
      const body = "x".repeat(1900);
      let sent = 0;
      let evicted = false;
      while (!evicted && sent < 20_000) {
        const batch: string[] = [];
        for (let i = 0; i < 20; i++) {
          batch.push(
            JSON.stringify({ type: "message", text: `${sent++} ${body}` }),
          );
        }
        await blaster.sendTexts(batch);
        // Wait for the blaster's echo of the last one: paced by a reader.
        for (;;) {
          const message = await blaster.next("the blaster's echo");
          if (message.type === "leave") evicted = true;
          if (
            message.type === "message" &&
            field(message, "text") === `${sent - 1} ${body}`
          ) break;
        }
        if (sent % 200 === 0) await scene.say();
      }
      assert.ok(evicted || sent < 20_000, `deaf was not evicted after ${sent}`);
      await blaster.close();
      // The deaf client was sent a prefix, then the 4008 close.
      const end = await readEnd(deaf, 15_000);
      assert.deepEqual(end, {
        kind: "close",
        code: 4008,
        reason: "slow consumer",
      });
    },
  ).then((tally) => {
    const blasted = tally.others.filter((line) => line.username === "blaster");
    blasted.forEach((line, i) => assert.ok(line.text.startsWith(`${i} `)));
    assert.ok(blasted.length > 0);
  });
});

// ------------------------------------------------- memory, in a child

/** A hubchat server in a child process, and its resident memory. */
interface ChildServer extends Closer {
  port: number;
  /** VmRSS in bytes. */
  rss(): number;
}

async function spawnServer(flags: string[]): Promise<ChildServer> {
  const main = new URL("./main.ts", import.meta.url).pathname;
  const config = new URL("./deno.json", import.meta.url).pathname;
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      "--config",
      config,
      main,
      "--port",
      "0",
      "--host",
      "127.0.0.1",
      "--data",
      ":memory:",
      ...flags,
    ],
    stdin: "null",
    stdout: "piped",
    stderr: "null",
  }).spawn();
  const lines = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let seen = "";
  let port = 0;
  const close = async (): Promise<void> => {
    try {
      child.kill("SIGTERM");
    } catch {
      // Exited already.
    }
    await lines.cancel().catch(() => {});
    await withTimeout(child.status, "the child server to exit", 10_000);
  };
  try {
    await withTimeout(
      (async () => {
        for (;;) {
          const { value, done } = await lines.read();
          if (done) throw new Error(`child server exited: ${seen}`);
          seen += value;
          const match = /listening on http:\/\/127\.0\.0\.1:(\d+)\//.exec(seen);
          if (match) {
            port = Number(match[1]);
            return;
          }
        }
      })(),
      "the child server to listen",
      15_000,
    );
  } catch (error) {
    await close();
    throw error;
  }
  return {
    port,
    rss(): number {
      const status = Deno.readTextFileSync(`/proc/${child.pid}/status`);
      return Number(/^VmRSS:\s+(\d+) kB$/m.exec(status)![1]) * 1024;
    },
    close,
  };
}

const MB = 1024 * 1024;

function mb(bytes: number): string {
  return `${(bytes / MB).toFixed(1)} MB`;
}

Deno.test("memory stays bounded under 10 MB frames, 10 at once and then 40 in a row", async () => {
  const server = await spawnServer([
    "--rate",
    "0",
    "--max-connections-per-ip",
    "0",
  ]);
  try {
    const ten = encodeFrame({
      opcode: Opcode.text,
      payload: encoder.encode("x".repeat(10 * 1000 * 1000)),
      zeroMask: true,
    });
    let before = 0;
    let peak = 0;
    let attacks = 0;
    let levelled = 0;
    let after = 0;
    await withScene(server.port, async (scene) => {
      before = server.rss();
      const hit = async (name: string): Promise<void> => {
        const raw = await rawJoin(server.port, name);
        try {
          await raw.connection.write(ten);
          // The 1009 close frame can be lost to a TCP reset (the server's
          // kernel resets a connection closed with bytes unread), so the
          // proof that each frame was refused for its size is the server's
          // own count, checked below.
          let end: End;
          try {
            end = await readEnd(raw, 15_000);
          } catch (error) {
            if (!(error instanceof Deno.errors.ConnectionReset)) throw error;
            end = { kind: "eof" };
          }
          assertEnd(end, new Set([1009]), name);
        } finally {
          await raw.close();
        }
        attacks++;
        peak = Math.max(peak, server.rss());
      };
      for (let round = 0; round < 2; round++) {
        await Promise.all(
          Array.from({ length: 10 }, (_, i) => hit(`wide${round}-${i}`)),
        );
        await scene.say();
      }
      for (let i = 0; i < 40; i++) {
        await hit(`big${i}`);
        if (i === 9) levelled = server.rss();
        if (i % 10 === 0) await scene.say();
      }
      after = server.rss();
    });
    // 60 frames of 10 MB went in: 600 MB. Each is held a few times over
    // (Deno's read buffer, the message, the string) until its 1009; V8
    // frees the string when it next collects and the allocator keeps some
    // pages for the next frame, so RSS after an attack sits anywhere from
    // 100 to 300 MB above the start depending on when V8 last collected.
    // What must not happen is growth with the attack: the last 30 frames
    // (300 MB) come one at a time after the level is reached, and a server
    // that kept them would grow by all of it.
    assert.equal(attacks, 60);
    const metrics = await (await fetch(
      `http://127.0.0.1:${server.port}/metrics`,
    )).text();
    assert.match(
      metrics,
      /^hubchat_errors_total\{code="frame_too_large"\} 60$/m,
      "every 10 MB frame was refused for its size",
    );
    assert.ok(
      peak - before < 800 * MB,
      `peak ${mb(peak)} from ${mb(before)} with 10 frames at once`,
    );
    assert.ok(
      after - levelled < 100 * MB,
      `RSS ${mb(levelled)} → ${mb(after)} over the last 300 MB of refused ` +
        `frames (${mb(before)} at the start)`,
    );
  } finally {
    await server.close();
  }
});

Deno.test("memory stays bounded while 12 clients that never read are sent 20 MB each", async () => {
  // Default queue bounds (256 messages, 64 KiB): eviction waits for the
  // kernel's socket buffers to fill first, a few MB per reader.
  const server = await spawnServer(["--rate", "0"]);
  try {
    let before = 0;
    let after = 0;
    let sent = 0;
    const deafCount = 12;
    const lines = 10_000;
    await withScene(server.port, async (scene) => {
      const deaf: RawWebSocket[] = [];
      for (let i = 0; i < deafCount; i++) {
        deaf.push(
          scene.track(await RawWebSocket.connect(server.port, `deaf${i}`)),
        );
      }
      const blaster = scene.track(await rawJoin(server.port, "blaster"));
      before = server.rss();
      const body = "y".repeat(1990);
      // 10,000 lines of 2 KB: 20 MB to each reader. The blaster reads its
      // echo of each batch, so it never runs ahead of the readers.
      while (sent < lines) {
        const batch: string[] = [];
        for (let i = 0; i < 100; i++) {
          batch.push(
            JSON.stringify({ type: "message", text: `${sent++} ${body}` }),
          );
        }
        await blaster.sendTexts(batch);
        await nextMatching(
          () => blaster.next("the blaster's echo"),
          (m) => field(m, "text") === `${sent - 1} ${body}`,
          "the blaster's echo",
        );
        if (sent % 2000 === 0) await scene.say();
      }
      after = server.rss();
      for (const client of deaf) {
        const end = await readEnd(client, 15_000);
        assert.deepEqual(end, {
          kind: "close",
          code: 4008,
          reason: "slow consumer",
        });
      }
      await blaster.close();
    }).then((tally) => {
      const blasted = tally.others.filter((line) =>
        line.username === "blaster"
      );
      assert.equal(blasted.length, sent);
      blasted.forEach((line, i) => assert.ok(line.text.startsWith(`${i} `)));
    });
    // Without eviction each deaf reader would hold what the kernel did not
    // take, 15 MB or more: 180 MB for twelve. With it, each holds at most
    // 256 messages (0.5 MB) and 64 KiB of socket backlog.
    assert.ok(
      after - before < 100 * MB,
      `RSS ${mb(before)} → ${mb(after)} with ${deafCount} deaf readers`,
    );
  } finally {
    await server.close();
  }
});

Deno.test({
  name:
    "memory stays bounded while one client sends an endless fragmented message",
  // KNOWN LIMITATION, so this test is ignored, not loosened: it fails today
  // (about 200 MB held). Deno reassembles fragments with no size limit and
  // Deno.upgradeWebSocket has no option for one, so the server sees the
  // message only when it is complete and its 8 KiB limit comes too late.
  // Run it with HUBCHAT_KNOWN_LIMITS=1; README.md, "Deploying", says what to
  // do until Deno (or a hand-made WebSocket layer) can refuse it early.
  ignore: Deno.env.get("HUBCHAT_KNOWN_LIMITS") !== "1",
}, async () => {
  const server = await spawnServer(["--rate", "0"]);
  try {
    let before = 0;
    let held = 0;
    await withScene(server.port, async (scene) => {
      const attacker = scene.track(await rawJoin(server.port, "fragments"));
      before = server.rss();
      const piece = new Uint8Array(MB).fill(0x61);
      const fragments = 200;
      for (let i = 0; i < fragments; i++) {
        try {
          await attacker.connection.write(encodeFrame({
            opcode: i === 0 ? Opcode.text : Opcode.continuation,
            payload: piece,
            fin: false,
            zeroMask: true,
          }));
        } catch {
          break; // Cut off: what a fixed server does.
        }
        if (i % 50 === 0) await scene.say();
      }
      await sleep(300);
      held = server.rss() - before;
      await attacker.close();
    });
    // 200 MB of fragments of one unfinished message. A server that enforced
    // its 8 KiB limit (or even Deno's own 64 MiB frame limit) per message
    // would hold at most that; 100 MB is far above the first and well below
    // the 200 MB of a server that keeps everything.
    assert.ok(
      held < 100 * MB,
      `the server holds ${mb(held)} for one unfinished fragmented message`,
    );
  } finally {
    await server.close();
  }
});

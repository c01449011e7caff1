/**
 * Fuzz data for the hostile-input tests: a seeded PRNG, an oracle that says
 * what the server must do with a text frame (per the README), a grammar of
 * near-valid JSON and its mutations, and fuzz steps (the bytes to write and
 * what must happen) that also break the framing on purpose.
 *
 * The seed is `FUZZ_SEED` when set: `FUZZ_SEED=0x1234abcd deno test -A
 * hostile_input_test.ts` replays a run.
 *
 * @module
 */

import { closePayload, encodeFrame, Opcode } from "../tools/ws_frame.ts";
import { concatBytes } from "./raw_websocket.ts";

const encoder = new TextEncoder();
/** Decodes as a server must: a leading BOM is content, not a marker. */
const decoder = new TextDecoder("utf-8", { ignoreBOM: true });

/** The server's frame limit with default options. */
const MAX_FRAME_BYTES = 8 * 1024;

/**
 * Error codes a refused text frame may get (README, "Client to server").
 *
 * @example
 * ```ts
 * import { INPUT_ERROR_CODES } from "./fuzz.ts";
 * INPUT_ERROR_CODES.has("invalid_json"); // true
 * ```
 */
export const INPUT_ERROR_CODES = new Set([
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
 *
 * @example
 * ```ts
 * import { Rng } from "./fuzz.ts";
 * const rng = new Rng(42);
 * rng.pick(["a", "b", "c"]); // the same one for every run with seed 42
 * ```
 */
export class Rng {
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

/**
 * The fuzz seed: FUZZ_SEED (decimal or 0x hex) if set, else a fixed one;
 * throws on a value that is not a 32-bit unsigned integer.
 *
 * @example
 * ```ts
 * import { fuzzSeed, Rng } from "./fuzz.ts";
 * const rng = new Rng(fuzzSeed());
 * ```
 */
export function fuzzSeed(): number {
  const raw = Deno.env.get("FUZZ_SEED");
  if (raw === undefined || raw.trim() === "") return 0x6875_6263; // "hubc"
  const seed = Number(raw.trim());
  if (!Number.isInteger(seed) || seed < 0 || seed > 0xffff_ffff) {
    throw new Error(`FUZZ_SEED=${raw}: expected an integer 0..2^32-1`);
  }
  return seed;
}

// ------------------------------------------------------------ the oracle

/**
 * What the server must do with a text frame, per the README: deliver a
 * (trimmed) text, refuse it with an error code, or close the connection.
 */
export type Verdict =
  | { kind: "deliver"; text: string }
  | { kind: "error"; code: string }
  | { kind: "close"; code: number };

function codePoints(text: string): number {
  let count = 0;
  for (const _ of text) count++;
  return count;
}

/**
 * Judges a text frame as it arrives (already decoded from UTF-8), against
 * a frame limit of `maxFrameBytes`.
 *
 * @example
 * ```ts
 * import { judge } from "./fuzz.ts";
 * judge('{"type":"message","text":" hi "}'); // { kind: "deliver", text: "hi" }
 * judge("{"); // { kind: "error", code: "invalid_json" }
 * ```
 */
export function judge(frame: string, maxFrameBytes = MAX_FRAME_BYTES): Verdict {
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
export interface Step {
  /** What the step sends, for a failure message. */
  what: string;
  /** The bytes to write, as they go on the wire. */
  bytes: Uint8Array;
  /**
   * What must happen: the oracle's verdict on a text frame, the end of the
   * connection (with one of `codes`, or a drop), the line delivered or the
   * connection ended (an unmasked frame), nothing (a ping or pong), or a
   * drop by the client itself (random bytes, a truncated frame).
   */
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
        mask: payload.length > 100_000 ? "zero" : "random",
      }));
      if (rng.chance(0.3) && i + 2 < points.length) {
        frames.push(
          encodeFrame({ opcode: Opcode.ping, payload: rng.bytes(4) }),
        );
      }
    }
    return {
      what: `text in ${points.length - 1} fragments ${preview}`,
      bytes: concatBytes(frames),
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
        bytes: concatBytes([
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
          payload: closePayload(code),
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
            payload: concatBytes([
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
          ? concatBytes([
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

/**
 * One fuzz step drawn from `rng`: mostly text frames from the grammar
 * (some mutated, some fragmented), then pings and pongs, protocol
 * violations, clean closes, and garbage before a drop.
 *
 * @example
 * ```ts
 * import { genStep, Rng } from "./fuzz.ts";
 * const step = genStep(new Rng(1));
 * step.what; // e.g. 'text "{\"type\":\"message\",\"text\":\"hello\"}"'
 * ```
 */
export function genStep(rng: Rng): Step {
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
        payload: JSON.stringify({ type: "message", text }),
        mask: "none",
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
        payload: closePayload(code, "bye"),
      }),
      expect: { kind: "end", codes: new Set([code]) },
    };
  }
  // Then the connection is dropped: random bytes, or a frame cut short.
  const full = encodeFrame({
    opcode: Opcode.text,
    payload: '{"type":"message","text":"cut short"}',
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

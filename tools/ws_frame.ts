/**
 * The one encoder of client-to-server WebSocket frames (RFC 6455, section
 * 5.2) in the repository: the load and soak tools send through it, and the
 * tests build both well-formed and deliberately broken frames with it.
 *
 * @module
 */

/** Frame opcodes (RFC 6455, section 5.2). */
export const Opcode = {
  continuation: 0x0,
  text: 0x1,
  binary: 0x2,
  close: 0x8,
  ping: 0x9,
  pong: 0xa,
} as const;

/**
 * How the payload is masked. Clients must mask (`"random"`, the default);
 * `"zero"` masks with the all-zero key, which is valid and leaves the
 * payload as it is (no pass over megabytes); `"none"` sends it unmasked,
 * which a server must refuse.
 */
export type MaskMode = "random" | "zero" | "none";

/** One client frame, as specified: right by default, wrong on request. */
export interface FrameSpec {
  /** The opcode; see {@linkcode Opcode}. */
  opcode: number;
  /** The payload: bytes, or text sent as UTF-8. Default empty. */
  payload?: Uint8Array | string;
  /** The FIN bit. Default true. */
  fin?: boolean;
  /** RSV1..3 as a 3-bit number (RSV1 = 4). Default 0. */
  rsv?: number;
  /** How the payload is masked. Default `"random"`. */
  mask?: MaskMode;
  /** The length the header claims, when it should lie. */
  declaredLength?: bigint;
  /** The length field's form: the shortest (default), 16-bit or 64-bit. */
  lengthForm?: "minimal" | "16" | "64";
}

const encoder = new TextEncoder();

/**
 * Matches a string that is not all ASCII: any UTF-16 unit above 0x7f (the
 * same set as `[^\x00-\x7f]`, which deno lint refuses as a control range).
 */
const NON_ASCII = /[\u0080-\uffff]/;

/**
 * Encodes one frame exactly as specified. A text payload is encoded
 * straight into the frame: ASCII text (a chat line the tools send) costs
 * one allocation.
 *
 * @example
 * ```ts
 * import { encodeFrame, Opcode } from "./ws_frame.ts";
 * const frame = encodeFrame({ opcode: Opcode.text, payload: "hi", mask: "zero" });
 * frame.length; // 2 + 4 + 2
 * ```
 */
export function encodeFrame(spec: FrameSpec): Uint8Array {
  const raw = spec.payload ?? new Uint8Array(0);
  const payload = typeof raw === "string" && NON_ASCII.test(raw)
    ? encoder.encode(raw)
    : raw;
  const size = payload.length;
  const length = spec.declaredLength ?? BigInt(size);
  const form = spec.lengthForm ??
    (length < 126n ? "minimal" : length < 65536n ? "16" : "64");
  const mask = spec.mask ?? "random";
  const extra = form === "minimal" ? 0 : form === "16" ? 2 : 8;
  const keyAt = 2 + extra;
  const dataAt = keyAt + (mask === "none" ? 0 : 4);
  const frame = new Uint8Array(dataAt + size);
  frame[0] = ((spec.fin ?? true) ? 0x80 : 0) | ((spec.rsv ?? 0) << 4) |
    spec.opcode;
  const maskBit = mask === "none" ? 0 : 0x80;
  if (form === "minimal") {
    frame[1] = maskBit | Number(length);
  } else if (form === "16") {
    frame[1] = maskBit | 126;
    frame[2] = Number(length >> 8n) & 0xff;
    frame[3] = Number(length) & 0xff;
  } else {
    frame[1] = maskBit | 127;
    for (let i = 0; i < 8; i++) {
      frame[2 + i] = Number((length >> BigInt(56 - 8 * i)) & 0xffn);
    }
  }
  if (typeof payload === "string") {
    // ASCII: one byte per unit, written in place.
    encoder.encodeInto(payload, frame.subarray(dataAt));
  } else {
    frame.set(payload, dataAt);
  }
  if (mask === "random") {
    const key = crypto.getRandomValues(new Uint8Array(4));
    frame.set(key, keyAt);
    for (let i = 0; i < size; i++) frame[dataAt + i] ^= key[i & 3];
  }
  // "zero": the key bytes are already 0 and the payload is as it is.
  return frame;
}

/**
 * A close frame's payload: the status code, then the reason's UTF-8 bytes.
 *
 * @example
 * ```ts
 * import { closePayload } from "./ws_frame.ts";
 * closePayload(1000, "bye").length; // 5
 * ```
 */
export function closePayload(
  code: number,
  reason: string | Uint8Array = "",
): Uint8Array {
  const bytes = typeof reason === "string" ? encoder.encode(reason) : reason;
  const payload = new Uint8Array(2 + bytes.length);
  payload[0] = code >> 8;
  payload[1] = code & 0xff;
  payload.set(bytes, 2);
  return payload;
}

/**
 * The hubchat wire protocol as pure functions: message shapes, parsing and
 * validation of what clients send, and stamping of what the server sends.
 *
 * This module imports nothing and touches no socket, so every rule of the
 * protocol can be tested on plain strings.
 *
 * @module
 */

/** Longest username, in characters (code points): fits a chat line's gutter. */
export const MAX_USERNAME_CHARS = 32;

/** Longest chat text, in characters (code points) after trimming. */
export const MAX_TEXT_CHARS = 2000;

/**
 * Letters (any script), decimal digits, space, `_`, `-` and `.`: readable in
 * a log, safe in a URL once encoded, and free of invisible or bidi controls.
 */
const USERNAME_PATTERN = /^[\p{L}\p{Nd} _.\-]+$/u;

/** Error codes carried by `error` messages and HTTP error bodies. */
export type ErrorCode =
  | "invalid_json"
  | "invalid_message"
  | "unknown_type"
  | "empty_text"
  | "text_too_long"
  | "rate_limited"
  | "invalid_username"
  | "username_taken";

/** The result of a validation: the clean value, or why it was refused. */
export type Validated<T> =
  | { ok: true; value: T }
  | { ok: false; code: ErrorCode; text: string };

/** A chat line a client asks the server to broadcast. */
export interface SendCommand {
  type: "message";
  text: string;
}

/** Everything a client may send, after validation. */
export type ClientCommand = SendCommand;

/** Sent first, to the joiner only. */
export interface WelcomeMessage {
  type: "welcome";
  username: string;
  users: string[];
  timestamp: string;
}

/** Announces a user coming or going, to everyone. */
export interface PresenceMessage {
  type: "join" | "leave";
  username: string;
  timestamp: string;
  online: number;
}

/** A chat line as the server stamped it, to everyone including the sender. */
export interface ChatMessage {
  type: "message";
  username: string;
  text: string;
  timestamp: string;
}

/** A refusal, to the offending client only. */
export interface ErrorMessage {
  type: "error";
  code: ErrorCode;
  text: string;
  timestamp: string;
}

/** Everything the server sends. */
export type ServerMessage =
  | WelcomeMessage
  | PresenceMessage
  | ChatMessage
  | ErrorMessage;

/** Counts characters as people do (code points), not UTF-16 units. */
function countChars(text: string): number {
  let count = 0;
  for (const _ of text) count++;
  return count;
}

/**
 * Checks a requested username: trimmed, NFC-normalized, 1 to 32 letters,
 * digits, spaces, `_`, `-` or `.`.
 *
 * @example
 * ```ts
 * import { validateUsername } from "./protocol.ts";
 * validateUsername("  alice "); // { ok: true, value: "alice" }
 * validateUsername("a<b"); // { ok: false, code: "invalid_username", ... }
 * ```
 */
export function validateUsername(raw: string): Validated<string> {
  const name = raw.normalize("NFC").trim();
  if (name.length === 0) {
    return {
      ok: false,
      code: "invalid_username",
      text: "username is empty; expected 1 to 32 characters",
    };
  }
  if (countChars(name) > MAX_USERNAME_CHARS) {
    return {
      ok: false,
      code: "invalid_username",
      text: `username is longer than ${MAX_USERNAME_CHARS} characters`,
    };
  }
  if (!USERNAME_PATTERN.test(name)) {
    return {
      ok: false,
      code: "invalid_username",
      text: "username may hold only letters, digits, spaces, '_', '-' and '.'",
    };
  }
  return { ok: true, value: name };
}

/**
 * Checks chat text: trimmed, 1 to 2000 characters.
 *
 * @example
 * ```ts
 * import { validateText } from "./protocol.ts";
 * validateText(" hi "); // { ok: true, value: "hi" }
 * ```
 */
export function validateText(raw: string): Validated<string> {
  const text = raw.trim();
  if (text.length === 0) {
    return {
      ok: false,
      code: "empty_text",
      text: "text is empty; expected 1 to 2000 characters",
    };
  }
  // Every code point is one or two UTF-16 units, so only long strings need
  // the exact count.
  if (text.length > MAX_TEXT_CHARS && countChars(text) > MAX_TEXT_CHARS) {
    return {
      ok: false,
      code: "text_too_long",
      text: `text is longer than ${MAX_TEXT_CHARS} characters`,
    };
  }
  return { ok: true, value: text };
}

/**
 * Parses one client frame into a command, or says what was wrong with it.
 *
 * @example
 * ```ts
 * import { parseClientMessage } from "./protocol.ts";
 * parseClientMessage('{"type":"message","text":"hi"}');
 * // { ok: true, value: { type: "message", text: "hi" } }
 * ```
 */
export function parseClientMessage(frame: string): Validated<ClientCommand> {
  let data: unknown;
  try {
    data = JSON.parse(frame);
  } catch {
    return {
      ok: false,
      code: "invalid_json",
      text: 'frame is not valid JSON; expected {"type":"message","text":"..."}',
    };
  }
  if (typeof data !== "object" || data === null || Array.isArray(data)) {
    return {
      ok: false,
      code: "invalid_message",
      text: 'message is not a JSON object; expected {"type":"message",...}',
    };
  }
  const { type, text } = data as Record<string, unknown>;
  if (typeof type !== "string") {
    return {
      ok: false,
      code: "invalid_message",
      text: 'message has no string "type"; expected "message"',
    };
  }
  if (type !== "message") {
    return {
      ok: false,
      code: "unknown_type",
      text: `unknown message type "${type.slice(0, 40)}"; expected "message"`,
    };
  }
  if (typeof text !== "string") {
    return {
      ok: false,
      code: "invalid_message",
      text: 'message has no string "text"',
    };
  }
  const checked = validateText(text);
  if (!checked.ok) return checked;
  return { ok: true, value: { type: "message", text: checked.value } };
}

/**
 * The server's clock in the protocol's format: ISO 8601, UTC, milliseconds.
 *
 * @example
 * ```ts
 * import { timestamp } from "./protocol.ts";
 * timestamp(new Date(0)); // "1970-01-01T00:00:00.000Z"
 * ```
 */
export function timestamp(now?: Date): string {
  if (now !== undefined) return now.toISOString();
  const ms = Date.now();
  if (ms !== clock.ms) {
    clock.ms = ms;
    clock.iso = new Date(ms).toISOString();
  }
  return clock.iso;
}

/** The last stamp made: a busy server stamps many messages per millisecond. */
const clock = { ms: Number.NaN, iso: "" };

/**
 * Builds the `error` reply for a refused frame.
 *
 * @example
 * ```ts
 * import { errorMessage } from "./protocol.ts";
 * errorMessage({ code: "empty_text", text: "text is empty" });
 * ```
 */
export function errorMessage(
  refusal: { code: ErrorCode; text: string },
): ErrorMessage {
  return {
    type: "error",
    code: refusal.code,
    text: refusal.text,
    timestamp: timestamp(),
  };
}

/**
 * Encodes messages as one frame's text: one JSON document per line. JSON
 * never holds a raw newline, so readers split frames on `\n`.
 *
 * @example
 * ```ts
 * import { splitFrame } from "./protocol.ts";
 * splitFrame('{"a":1}\n{"b":2}'); // ['{"a":1}', '{"b":2}']
 * ```
 */
export function splitFrame(frame: string): string[] {
  return frame.split("\n");
}

/**
 * The UTF-8 size of a string, without encoding it: frames are limited in
 * bytes, as the wire counts them.
 *
 * @example
 * ```ts
 * import { utf8Length } from "./protocol.ts";
 * utf8Length("é"); // 2
 * ```
 */
export function utf8Length(text: string): number {
  let bytes = text.length;
  for (let i = 0; i < text.length; i++) {
    const unit = text.charCodeAt(i);
    if (unit < 0x80) continue;
    if (unit < 0x800) bytes += 1;
    else if (unit >= 0xd800 && unit <= 0xdbff) {
      // A surrogate pair is 2 units and 4 bytes: 2 counted, 2 more here.
      bytes += 2;
      i++;
    } else bytes += 2;
  }
  return bytes;
}

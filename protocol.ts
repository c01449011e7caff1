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
  | "unknown_recipient"
  | "invalid_room"
  | "room_limit"
  | "storage_failed"
  | "unavailable"
  | "invalid_since"
  | "invalid_username"
  | "username_taken"
  | "unknown_file";

/** The result of a validation: the clean value, or why it was refused. */
export type Validated<T> =
  | { ok: true; value: T }
  | { ok: false; code: ErrorCode; text: string };

/** The room a client is in when it names none. */
export const DEFAULT_ROOM = "lobby";

/** Close codes the server sends, by cause. */
export const CloseCode = {
  /** Server shutting down, or a dead peer. */
  goingAway: 1001,
  /** The peer sent a binary frame; the protocol is JSON text. */
  unsupportedData: 1003,
  /** The peer kept flooding after being told to slow down. */
  policyViolation: 1008,
  /** A newer connection with this connection's session took its name. */
  replaced: 4001,
  /** The peer's frame was larger than the limit. */
  messageTooBig: 1009,
} as const;

/**
 * A chat line a client asks the server to send: to the room, or with `to`
 * only to that member (and back to the sender).
 */
export interface SendCommand {
  type: "message";
  text: string;
  to?: string;
}

/** A request to move to another room without reconnecting. */
export interface JoinCommand {
  type: "join";
  room: string;
}

/** "I am typing": relayed to the others in the room, never stored. */
export interface TypingCommand {
  type: "typing";
}

/**
 * A request for a page of the room's member list, in name order: the names
 * after `after` (from the start when absent), at most `limit` of them.
 */
export interface MembersCommand {
  type: "members";
  after?: string;
  limit: number;
}

/**
 * Shares a file uploaded with `POST /files` (its `id` is the upload's): a
 * `file` line goes to the room, or with `to` only to that member (and back
 * to the sender); `text`, when given, is its caption.
 */
export interface FileCommand {
  type: "file";
  id: string;
  text?: string;
  to?: string;
}

/** Everything a client may send, after validation. */
export type ClientCommand =
  | SendCommand
  | FileCommand
  | JoinCommand
  | TypingCommand
  | MembersCommand;

/**
 * Most names in one page of a member list: the `welcome` of a large room
 * and each `members` reply. A hundred names is a screenful or two and a few
 * kilobytes, whatever the room's size.
 */
export const MEMBERS_PAGE_SIZE = 100;

/** A chat line as stored and sent: the server stamps all but `text`. */
export interface ChatMessage {
  type: "message";
  /** Strictly increasing within the room (it may skip numbers). */
  id: number;
  room: string;
  username: string;
  text: string;
  timestamp: string;
  /** The recipient of a direct message; absent for a public one. */
  to?: string;
}

/** A shared file, as a `file` line describes it. */
export interface FileInfo {
  /**
   * The upload's id: 128 random bits, hex (its content is stored once
   * under its SHA-256, whoever uploads it).
   */
  id: string;
  /** The name it was uploaded under: display text, never a path. */
  name: string;
  /** Its size in bytes. */
  size: number;
  /** Its media type, as served. */
  type: string;
  /** Where it is served: `/files/ID`. */
  url: string;
}

/**
 * A file shared in the room, stored and sent like a chat line (ids, history,
 * resume, direct with `to`); `text` is its caption, when there is one.
 */
export interface FileMessage {
  type: "file";
  id: number;
  room: string;
  username: string;
  file: FileInfo;
  /** The caption; absent without one. */
  text?: string;
  timestamp: string;
  /** The recipient of a direct message; absent for a public one. */
  to?: string;
}

/** A line of a room's history: a chat line or a shared file. */
export type StoredLine = ChatMessage | FileMessage;

/** Sent first, to the joiner only (again after each room switch). */
export interface WelcomeMessage {
  type: "welcome";
  username: string;
  room: string;
  /**
   * Names online in the room, the joiner included: all of them, in joining
   * order, in a small room; the first page in name order in a large one.
   */
  users: string[];
  /** Members online, the joiner included. */
  online: number;
  /**
   * True in a large room: joins and leaves are not announced one by one;
   * `online` messages carry the count and `members` pages the list.
   */
  large: boolean;
  /** Recent lines, or those after `since`, oldest first. */
  history: StoredLine[];
  /** True when messages after `since` were older than history keeps. */
  gap: boolean;
  /** Proof of this connection: a reconnect passing it may take the name. */
  session: string;
  /**
   * With a shared store (Redis): the store's life the ids belong to. A
   * reconnect passes it with `since`; when the store lost its data, the
   * epoch changed and `since` is ignored (`gap: true`).
   */
  epoch?: string;
  timestamp: string;
}

/** Announces a user coming or going, to everyone in the room. */
export interface PresenceMessage {
  type: "join" | "leave";
  room: string;
  username: string;
  timestamp: string;
  online: number;
}

/**
 * The room's count, in a large room: sent when it changed, at most about
 * once a second. When the room turns large or small it is sent at once, in
 * the room's order; on turning small it carries every name (`users`), from
 * which joins and leaves are announced again one by one.
 */
export interface OnlineMessage {
  type: "online";
  room: string;
  online: number;
  large: boolean;
  /** Every member, in joining order: only when the room turned small. */
  users?: string[];
  timestamp: string;
}

/**
 * The room's store lost its history (a shared store restarted empty): ids
 * start again from 1. A client replaces what it shows of the room with
 * `history` and forgets the ids it held (a `since` from before means
 * nothing now).
 */
export interface ResetMessage {
  type: "reset";
  room: string;
  /** What the store holds now, as a welcome's history would. */
  history: StoredLine[];
  /** The store's new life: pass it with `since` from now on. */
  epoch?: string;
  timestamp: string;
}

/** A page of the member list, in name order: the reply to `members`. */
export interface MembersMessage {
  type: "members";
  room: string;
  users: string[];
  /** Pass as `after` for the next page; null on the last page. */
  next: string | null;
  online: number;
  timestamp: string;
}

/** Someone in the room is typing. */
export interface TypingMessage {
  type: "typing";
  room: string;
  username: string;
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
  | OnlineMessage
  | MembersMessage
  | ResetMessage
  | ChatMessage
  | FileMessage
  | TypingMessage
  | ErrorMessage;

/** Counts characters as people do (code points), not UTF-16 units. */
function countChars(text: string): number {
  let count = 0;
  for (const _ of text) count++;
  return count;
}

/** Checks a name (of a user or a room) against the shared rules. */
function validateName(
  raw: string,
  what: "username" | "room",
  code: ErrorCode,
): Validated<string> {
  const name = raw.normalize("NFC").trim();
  if (name.length === 0) {
    return {
      ok: false,
      code,
      text: `${what} is empty; expected 1 to ${MAX_USERNAME_CHARS} characters`,
    };
  }
  if (countChars(name) > MAX_USERNAME_CHARS) {
    return {
      ok: false,
      code,
      text: `${what} is longer than ${MAX_USERNAME_CHARS} characters`,
    };
  }
  if (!USERNAME_PATTERN.test(name)) {
    return {
      ok: false,
      code,
      text: `${what} may hold only letters, digits, spaces, '_', '-' and '.'`,
    };
  }
  return { ok: true, value: name };
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
  return validateName(raw, "username", "invalid_username");
}

/**
 * Checks a room name: the same rules as usernames.
 *
 * @example
 * ```ts
 * import { validateRoomName } from "./protocol.ts";
 * validateRoomName(" dev "); // { ok: true, value: "dev" }
 * ```
 */
export function validateRoomName(raw: string): Validated<string> {
  return validateName(raw, "room", "invalid_room");
}

/**
 * Checks a resume point: the last message id a client saw, a whole number.
 *
 * @example
 * ```ts
 * import { parseSince } from "./protocol.ts";
 * parseSince("42"); // { ok: true, value: 42 }
 * ```
 */
export function parseSince(raw: string): Validated<number> {
  const value = Number(raw);
  if (!/^\d{1,15}$/.test(raw) || !Number.isSafeInteger(value)) {
    return {
      ok: false,
      code: "invalid_since",
      text: `since is "${
        raw.slice(0, 20)
      }"; expected the last message id seen, a whole number`,
    };
  }
  return { ok: true, value };
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
      text: `text is empty; expected 1 to ${MAX_TEXT_CHARS} characters`,
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
    return invalidMessage(
      'message is not a JSON object; expected {"type":"message",...}',
    );
  }
  const fields = data as Record<string, unknown>;
  const type = fields.type;
  if (typeof type !== "string") {
    return invalidMessage('message has no string "type"; expected "message"');
  }
  switch (type) {
    case "message":
      return parseSend(fields);
    case "file":
      return parseFile(fields);
    case "join": {
      if (typeof fields.room !== "string") {
        return invalidMessage('join has no string "room"');
      }
      const room = validateRoomName(fields.room);
      if (!room.ok) return room;
      return { ok: true, value: { type: "join", room: room.value } };
    }
    case "typing":
      return { ok: true, value: { type: "typing" } };
    case "members":
      return parseMembers(fields);
    default:
      return {
        ok: false,
        code: "unknown_type",
        text: `unknown type "${
          type.slice(0, 40)
        }"; expected "message", "file", "join", "typing" or "members"`,
      };
  }
}

/** A refusal of a frame that is not a well-formed command. */
function invalidMessage(text: string): Validated<never> {
  return { ok: false, code: "invalid_message", text };
}

function parseMembers(
  fields: Record<string, unknown>,
): Validated<MembersCommand> {
  const { after, limit } = fields;
  if (after !== undefined && after !== null && typeof after !== "string") {
    return invalidMessage(
      '"after" is not a string; expected the last name of a page',
    );
  }
  if (
    limit !== undefined && limit !== null &&
    (typeof limit !== "number" || !Number.isInteger(limit) || limit < 1 ||
      limit > MEMBERS_PAGE_SIZE)
  ) {
    return invalidMessage(
      `"limit" is ${
        JSON.stringify(limit)?.slice(0, 20)
      }; expected a whole number from 1 to ${MEMBERS_PAGE_SIZE}`,
    );
  }
  const command: MembersCommand = {
    type: "members",
    limit: typeof limit === "number" ? limit : MEMBERS_PAGE_SIZE,
  };
  if (typeof after === "string") command.after = after;
  return { ok: true, value: command };
}

/** Longest upload id accepted in a `file` command (ids are 32 hex digits). */
const MAX_FILE_ID_CHARS = 64;

function parseFile(fields: Record<string, unknown>): Validated<FileCommand> {
  const { id, text } = fields;
  if (
    typeof id !== "string" || id.length === 0 || id.length > MAX_FILE_ID_CHARS
  ) {
    return invalidMessage(
      'file has no string "id"; expected the id POST /files answered with',
    );
  }
  const command: FileCommand = { type: "file", id };
  if (text !== undefined && text !== null) {
    if (typeof text !== "string") {
      return invalidMessage('"text" is not a string; expected the caption');
    }
    if (text.trim() !== "") {
      const caption = validateText(text);
      if (!caption.ok) return caption;
      command.text = caption.value;
    }
  }
  const to = parseRecipient(fields.to);
  if (!to.ok) return to;
  if (to.value !== undefined) command.to = to.value;
  return { ok: true, value: command };
}

/** A command's optional `to`: absent, or a valid username. */
function parseRecipient(raw: unknown): Validated<string | undefined> {
  if (raw === undefined || raw === null) return { ok: true, value: undefined };
  if (typeof raw !== "string") {
    return invalidMessage('"to" is not a string; expected a username');
  }
  const to = validateUsername(raw);
  if (!to.ok) {
    return {
      ok: false,
      code: "unknown_recipient",
      text: `no such user: ${to.text}`,
    };
  }
  return { ok: true, value: to.value };
}

function parseSend(fields: Record<string, unknown>): Validated<SendCommand> {
  if (typeof fields.text !== "string") {
    return invalidMessage('message has no string "text"');
  }
  const checked = validateText(fields.text);
  if (!checked.ok) return checked;
  const to = parseRecipient(fields.to);
  if (!to.ok) return to;
  if (to.value === undefined) {
    return { ok: true, value: { type: "message", text: checked.value } };
  }
  return {
    ok: true,
    value: { type: "message", text: checked.value, to: to.value },
  };
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
 * A chat line in wire order (type, id, room, username, text, timestamp, and
 * `to` for a direct message), whatever order `line` has its fields in.
 *
 * @example
 * ```ts
 * import { chatMessage } from "./protocol.ts";
 * chatMessage({
 *   id: 1,
 *   room: "lobby",
 *   username: "ann",
 *   text: "hi",
 *   timestamp: "2026-11-22T10:00:00.000Z",
 * });
 * ```
 */
export function chatMessage(line: LineFields): ChatMessage {
  const message: ChatMessage = {
    type: "message",
    id: line.id,
    room: line.room,
    username: line.username,
    text: line.text,
    timestamp: line.timestamp,
  };
  if (line.to !== undefined) message.to = line.to;
  return message;
}

/**
 * What a history line is made of, before the wire's field order: a chat
 * line's fields, and for a shared file the file (`text` is then its
 * caption, "" for none).
 */
export interface LineFields extends Omit<ChatMessage, "type"> {
  /** For a shared file: what it is. */
  file?: FileInfo;
}

/**
 * A history line in wire order: a `file` line when it carries a file (its
 * text, if any, the caption), else a chat line ({@linkcode chatMessage}).
 *
 * @example
 * ```ts
 * import { storedLine } from "./protocol.ts";
 * storedLine({
 *   id: 2,
 *   room: "lobby",
 *   username: "ann",
 *   text: "",
 *   timestamp: "2026-11-22T10:00:00.000Z",
 *   file: { id: "ab12", name: "cat.png", size: 1234, type: "image/png", url: "/files/ab12" },
 * }); // { type: "file", id: 2, ..., file: { ... }, timestamp: "..." }
 * ```
 */
export function storedLine(fields: LineFields): StoredLine {
  if (fields.file === undefined) return chatMessage(fields);
  const line: FileMessage = {
    type: "file",
    id: fields.id,
    room: fields.room,
    username: fields.username,
    file: fields.file,
    timestamp: fields.timestamp,
  };
  if (fields.text !== "") line.text = fields.text;
  if (fields.to !== undefined) line.to = fields.to;
  return line;
}

/**
 * Who may read a chat line: anyone in its room when it is public; only its
 * sender and its recipient when it is direct. The room applies it to the
 * history it hands a joiner; live, a direct message is only sent to those
 * two.
 *
 * @example
 * ```ts
 * import { chatMessage, visibleTo } from "./protocol.ts";
 * const line = chatMessage({
 *   id: 1,
 *   room: "lobby",
 *   username: "ann",
 *   text: "psst",
 *   timestamp: "2026-11-22T10:00:00.000Z",
 *   to: "bob",
 * });
 * visibleTo(line, "bob"); // true
 * visibleTo(line, "cy"); // false
 * ```
 */
export function visibleTo(line: StoredLine, username: string): boolean {
  return line.to === undefined || line.to === username ||
    line.username === username;
}

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
 * Splits one frame's text into its messages, one JSON document per line.
 * JSON never holds a raw newline, so `\n` separates them unambiguously
 * (the server joins a turn's messages with it: `joinFrame` in client.ts).
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

/** Matches a string that is not all ASCII. */
const NON_ASCII = /[\u0080-\uffff]/;

/**
 * The UTF-8 size of a string, without encoding it: frames are limited in
 * bytes, as the wire counts them, and a call into the runtime per message
 * would cost more than this. An all-ASCII string (one native regex scan)
 * is its length. A lone surrogate counts as the three bytes of the
 * replacement character it becomes.
 *
 * @example
 * ```ts
 * import { utf8Length } from "./protocol.ts";
 * utf8Length("é"); // 2
 * ```
 */
export function utf8Length(text: string): number {
  if (!NON_ASCII.test(text)) return text.length;
  let bytes = text.length;
  for (let i = 0; i < text.length; i++) {
    const unit = text.charCodeAt(i);
    if (unit < 0x80) continue;
    if (unit < 0x800) {
      bytes += 1;
    } else if (
      unit >= 0xd800 && unit < 0xdc00 && i + 1 < text.length &&
      (text.charCodeAt(i + 1) & 0xfc00) === 0xdc00
    ) {
      bytes += 2; // four bytes for the pair's two units
      i++;
    } else {
      bytes += 2;
    }
  }
  return bytes;
}

import assert from "node:assert/strict";
import {
  chatMessage,
  errorMessage,
  MAX_TEXT_CHARS,
  MAX_USERNAME_CHARS,
  parseClientMessage,
  parseSince,
  splitFrame,
  timestamp,
  utf8Length,
  validateRoomName,
  validateText,
  validateUsername,
  visibleTo,
} from "./protocol.ts";

Deno.test("usernames: trimmed, 1 to 32 letters, digits, space, _ - .", () => {
  assert.deepEqual(validateUsername("  alice "), { ok: true, value: "alice" });
  for (const good of ["Zoë", "李雷", "a.b-c_d 9", "x".repeat(32), "Ωμέγα"]) {
    assert.deepEqual(validateUsername(good), { ok: true, value: good });
  }
  // 32 characters even when some take two UTF-16 units.
  const astral = "𝒜".repeat(MAX_USERNAME_CHARS);
  assert.equal(validateUsername(astral).ok, true);
  for (
    const bad of [
      "",
      "   ",
      "x".repeat(33),
      "a<b",
      "a\u200db", // zero-width joiner
      "a\u202eb", // right-to-left override
      "tab\there",
      "emoji😀",
      "new\nline",
    ]
  ) {
    const result = validateUsername(bad);
    assert.equal(result.ok, false, `refused: ${JSON.stringify(bad)}`);
    if (!result.ok) assert.equal(result.code, "invalid_username");
  }
});

Deno.test("usernames are NFC-normalized so look-alikes collide", () => {
  const decomposed = "Zoe\u0308"; // e + combining diaeresis
  assert.deepEqual(validateUsername(decomposed), { ok: true, value: "Zoë" });
});

Deno.test("text: trimmed, 1 to 2000 characters counted as code points", () => {
  assert.deepEqual(validateText(" hi \n"), { ok: true, value: "hi" });
  assert.equal(validateText("x".repeat(MAX_TEXT_CHARS)).ok, true);
  assert.equal(validateText("😀".repeat(MAX_TEXT_CHARS)).ok, true);
  const tooLong = validateText("x".repeat(MAX_TEXT_CHARS + 1));
  assert.equal(tooLong.ok, false);
  if (!tooLong.ok) assert.equal(tooLong.code, "text_too_long");
  const empty = validateText(" \t\n ");
  assert.equal(empty.ok, false);
  if (!empty.ok) assert.equal(empty.code, "empty_text");
});

Deno.test("parseClientMessage accepts a chat line and ignores extra fields", () => {
  assert.deepEqual(
    parseClientMessage(
      '{"type":"message","text":" hi ","username":"mallory","timestamp":"x"}',
    ),
    { ok: true, value: { type: "message", text: "hi" } },
  );
});

Deno.test("parseClientMessage says what was wrong", () => {
  const cases: [string, string][] = [
    ["not json", "invalid_json"],
    ['{"type":"message","text":"a"', "invalid_json"],
    ["[1,2]", "invalid_message"],
    ["42", "invalid_message"],
    ["null", "invalid_message"],
    ['"message"', "invalid_message"],
    ['{"text":"a"}', "invalid_message"],
    ['{"type":7,"text":"a"}', "invalid_message"],
    ['{"type":"dance"}', "unknown_type"],
    ['{"type":"message"}', "invalid_message"],
    ['{"type":"message","text":5}', "invalid_message"],
    ['{"type":"message","text":"   "}', "empty_text"],
    [
      JSON.stringify({ type: "message", text: "y".repeat(2001) }),
      "text_too_long",
    ],
    ["[".repeat(5000) + "]".repeat(5000), "invalid_message"],
  ];
  for (const [frame, code] of cases) {
    const result = parseClientMessage(frame);
    assert.equal(result.ok, false, frame.slice(0, 40));
    if (!result.ok) {
      assert.equal(result.code, code, frame.slice(0, 40));
      assert.ok(result.text.length > 0);
    }
  }
});

Deno.test("unknown types are quoted back, truncated", () => {
  const result = parseClientMessage(
    JSON.stringify({ type: "z".repeat(500) }),
  );
  assert.equal(result.ok, false);
  if (!result.ok) assert.ok(result.text.length < 120);
});

Deno.test("timestamps are ISO 8601 UTC with milliseconds", () => {
  assert.equal(timestamp(new Date(0)), "1970-01-01T00:00:00.000Z");
  assert.match(timestamp(), /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
  const error = errorMessage({ code: "empty_text", text: "text is empty" });
  assert.equal(error.type, "error");
  assert.equal(error.code, "empty_text");
  assert.match(error.timestamp, /Z$/);
});

Deno.test("utf8Length matches TextEncoder", () => {
  const encoder = new TextEncoder();
  for (
    const text of ["", "abc", "é", "€", "😀", "a😀é€z", "\ud800", "x\udc00y"]
  ) {
    assert.equal(utf8Length(text), encoder.encode(text).length, text);
  }
});

Deno.test("frames split on newlines into JSON documents", () => {
  const frame = [{ a: "x\ny" }, { b: 2 }].map((v) => JSON.stringify(v)).join(
    "\n",
  );
  assert.deepEqual(splitFrame(frame).map((line) => JSON.parse(line)), [
    { a: "x\ny" },
    { b: 2 },
  ]);
});

Deno.test("parseClientMessage: direct messages, room switches, typing", () => {
  assert.deepEqual(
    parseClientMessage('{"type":"message","text":"psst","to":" bob "}'),
    { ok: true, value: { type: "message", text: "psst", to: "bob" } },
  );
  assert.deepEqual(
    parseClientMessage('{"type":"message","text":"hi","to":null}'),
    { ok: true, value: { type: "message", text: "hi" } },
  );
  assert.deepEqual(parseClientMessage('{"type":"join","room":" dev "}'), {
    ok: true,
    value: { type: "join", room: "dev" },
  });
  assert.deepEqual(parseClientMessage('{"type":"typing"}'), {
    ok: true,
    value: { type: "typing" },
  });
  const cases: [string, string][] = [
    ['{"type":"message","text":"x","to":5}', "invalid_message"],
    ['{"type":"message","text":"x","to":"a<b"}', "unknown_recipient"],
    ['{"type":"join"}', "invalid_message"],
    ['{"type":"join","room":"no/slashes"}', "invalid_room"],
    ['{"type":"join","room":""}', "invalid_room"],
  ];
  for (const [frame, code] of cases) {
    const result = parseClientMessage(frame);
    assert.equal(result.ok, false, frame);
    if (!result.ok) assert.equal(result.code, code, frame);
  }
});

Deno.test("room names follow the username rules", () => {
  assert.deepEqual(validateRoomName(" dev ops "), {
    ok: true,
    value: "dev ops",
  });
  for (const bad of ["", "a/b", "x".repeat(33), "ta\tb"]) {
    const result = validateRoomName(bad);
    assert.equal(result.ok, false, bad);
    if (!result.ok) assert.equal(result.code, "invalid_room");
  }
});

Deno.test("parseSince takes whole numbers only", () => {
  assert.deepEqual(parseSince("0"), { ok: true, value: 0 });
  assert.deepEqual(parseSince("42"), { ok: true, value: 42 });
  for (const bad of ["-1", "1.5", "abc", "", "1e3", "9".repeat(20)]) {
    const result = parseSince(bad);
    assert.equal(result.ok, false, bad);
    if (!result.ok) assert.equal(result.code, "invalid_since");
  }
});

Deno.test("chatMessage puts a line in wire order, to last and only if given", () => {
  const line = chatMessage({
    to: "bob",
    timestamp: "2026-11-22T10:00:00.000Z",
    text: "hi",
    username: "ann",
    room: "lobby",
    id: 7,
  });
  assert.equal(
    JSON.stringify(line),
    '{"type":"message","id":7,"room":"lobby","username":"ann","text":"hi",' +
      '"timestamp":"2026-11-22T10:00:00.000Z","to":"bob"}',
  );
  const open = chatMessage({
    id: 8,
    room: "lobby",
    username: "ann",
    text: "all",
    timestamp: "2026-11-22T10:00:00.000Z",
    to: undefined,
  });
  assert.equal("to" in open, false);
});

Deno.test("visibleTo: a public line is everyone's, a direct one its two ends'", () => {
  const line = {
    id: 1,
    room: "lobby",
    username: "ann",
    text: "hi",
    timestamp: "2026-11-22T10:00:00.000Z",
  };
  const open = chatMessage(line);
  for (const username of ["ann", "bob", ""]) {
    assert.equal(visibleTo(open, username), true, username);
  }
  const direct = chatMessage({ ...line, to: "bob" });
  assert.equal(visibleTo(direct, "ann"), true);
  assert.equal(visibleTo(direct, "bob"), true);
  assert.equal(visibleTo(direct, "carol"), false);
  assert.equal(visibleTo(direct, ""), false);
});

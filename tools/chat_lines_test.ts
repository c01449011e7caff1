import assert from "node:assert/strict";
import {
  encodeText,
  errorCode,
  forEachLine,
  parseServerLine,
} from "./chat_lines.ts";

Deno.test("encodeText and parseServerLine round-trip", () => {
  const text = encodeText("ab12", {
    sender: 3,
    seq: 42,
    sentUs: 98765,
    size: 64,
  });
  assert.equal(text.length, 64);
  assert.ok(text.startsWith("ab12:3:42:98765:x"));
  const line = JSON.stringify({
    type: "message",
    username: "load-ab12-3",
    text,
    timestamp: new Date().toISOString(),
  });
  assert.deepEqual(parseServerLine(line, "ab12"), {
    kind: "message",
    sender: 3,
    seq: 42,
    sentUs: 98765,
  });
  // Key order does not matter.
  const reordered = JSON.stringify({ text, timestamp: "t", type: "message" });
  assert.equal(parseServerLine(reordered, "ab12").seq, 42);
  // Another run's or a person's message is foreign.
  assert.equal(parseServerLine(line, "zz99").kind, "foreign");
  const chat = JSON.stringify({ type: "message", username: "x", text: "hi" });
  assert.equal(parseServerLine(chat, "ab12").kind, "foreign");
  // A text that mimics keys cannot fool the scanner: quotes are escaped.
  const sneaky = JSON.stringify({
    type: "message",
    username: "x",
    text: '"text":"ab12:0:1:2:',
  });
  assert.equal(parseServerLine(sneaky, "ab12").kind, "foreign");
  for (const kind of ["join", "leave", "welcome", "error"] as const) {
    assert.equal(
      parseServerLine(JSON.stringify({ type: kind, username: "u" }), "ab12")
        .kind,
      kind,
    );
  }
  assert.equal(parseServerLine("{}", "ab12").kind, "other");
});

Deno.test("forEachLine gives each non-empty line of a frame; errorCode reads its code", () => {
  const frame = new TextEncoder().encode(
    '{"type":"error","code":"rate_limited"}\n\nnot json\n',
  );
  const lines: [number, number][] = [];
  forEachLine(frame, 0, frame.length, (start, end) => lines.push([start, end]));
  assert.deepEqual(lines, [[0, 38], [40, 48]]);
  assert.equal(errorCode(frame, 0, 38), "rate_limited");
  assert.equal(errorCode(frame, 40, 48), "unparseable_line");
  // Bounds are honoured: nothing past `to` is read.
  const seen: number[] = [];
  forEachLine(frame, 0, 10, (start, end) => seen.push(start, end));
  assert.deepEqual(seen, [0, 10]);
});

import assert from "node:assert/strict";
import { decodeReply, encodeCommand, RespError } from "./resp.ts";

const encoder = new TextEncoder();

Deno.test("encodeCommand: an array of bulk strings, lengths in bytes", () => {
  assert.equal(
    new TextDecoder().decode(encodeCommand(["SET", "k", "é"])),
    "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$2\r\né\r\n",
  );
});

Deno.test("decodeReply: every RESP2 type, and null until a reply is whole", () => {
  /** Each reply's bytes and what they decode to. */
  const cases: [string, unknown][] = [
    ["+OK\r\n", "OK"],
    [":-42\r\n", -42],
    ["$5\r\nhello\r\n", "hello"],
    ["$0\r\n\r\n", ""],
    ["$-1\r\n", null],
    ["*-1\r\n", null],
    ["*0\r\n", []],
    ["*3\r\n$1\r\na\r\n*1\r\n:1\r\n$-1\r\n", ["a", [1], null]],
  ];
  for (const [text, value] of cases) {
    const bytes = encoder.encode(text);
    assert.deepEqual(decodeReply(bytes), { value, end: bytes.length }, text);
    for (let cut = 0; cut < bytes.length; cut++) {
      assert.equal(decodeReply(bytes.subarray(0, cut)), null, `${text} ${cut}`);
    }
  }
  const error = decodeReply(encoder.encode("-LOADING not yet\r\n"))?.value;
  assert.ok(error instanceof RespError);
  assert.equal(error.kind, "LOADING");
  assert.throws(
    () => decodeReply(encoder.encode("?what\r\n")),
    /starts with "\?".*expected one of/,
  );
});

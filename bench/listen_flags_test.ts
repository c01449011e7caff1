import assert from "node:assert/strict";
import { readListenFlags } from "./listen_flags.ts";

Deno.test("readListenFlags: flags, in both spellings", () => {
  assert.deepEqual(readListenFlags(["--port", "0", "--host", "::1"]), {
    port: 0,
    hostname: "::1",
  });
  assert.deepEqual(readListenFlags(["--port=9000", "--host=0.0.0.0"]), {
    port: 9000,
    hostname: "0.0.0.0",
  });
});

Deno.test("readListenFlags: a bad port names itself and the range", () => {
  for (const port of ["70000", "-1", "8.5", "http"]) {
    assert.throws(
      () => readListenFlags(["--port", port]),
      new RangeError(`bad port "${port}"; expected an integer 0-65535`),
    );
  }
});

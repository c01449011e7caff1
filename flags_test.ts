import assert from "node:assert/strict";
import {
  checkFlag,
  type Flag,
  helpRows,
  readFlags,
  UsageError,
} from "./flags.ts";

const FLAGS: Flag[] = [
  {
    name: "port",
    kind: "whole",
    env: "PORT",
    min: 0,
    max: 65535,
    value: "N",
    default: 8080,
    help: "port to listen on",
  },
  { name: "host", kind: "text", env: "HOST", value: "ADDR", help: "address" },
  { name: "rate", kind: "number", min: 0, unit: "deliveries/s", help: "rate" },
  { name: "ratio", kind: "number", min: 0, help: "a ratio" },
  { name: "json-only", kind: "switch", env: "JSON_ONLY", help: "JSON only" },
  {
    name: "max-frame-bytes",
    kind: "whole",
    key: "frameCap",
    min: 1,
    help: "frame cap",
  },
];

/** Asserts that reading `args` (with `env`) fails with `message`. */
function assertUsage(
  args: string[],
  message: string | RegExp,
  env: Record<string, string> = {},
): void {
  assert.throws(
    () => readFlags(FLAGS, args, { env }),
    (error: unknown) => {
      assert.ok(error instanceof UsageError, String(error));
      if (typeof message === "string") assert.equal(error.message, message);
      else assert.match(error.message, message);
      assert.ok(!error.message.includes("\n"), "one line");
      return true;
    },
    JSON.stringify({ args, env }),
  );
}

Deno.test("readFlags reads both spellings, switches, keys and camelCase", () => {
  const reading = readFlags(FLAGS, [
    "--port",
    "80",
    "--host=::1",
    "--rate",
    "2.5",
    "--json-only",
    "--max-frame-bytes",
    "9",
  ]);
  assert.equal(reading.help, false);
  assert.deepEqual(reading.values, {
    port: 80,
    host: "::1",
    rate: 2.5,
    jsonOnly: true,
    frameCap: 9,
  });
  assert.deepEqual(reading.sources, {
    port: "--port",
    host: "--host",
    rate: "--rate",
    jsonOnly: "--json-only",
    frameCap: "--max-frame-bytes",
  });
  // Flags not given are absent, not undefined.
  assert.deepEqual(readFlags(FLAGS, []).values, {});
});

Deno.test("readFlags: flags win over the environment, a record or a getter", () => {
  const env = { PORT: "3000", HOST: " 0.0.0.0 ", JSON_ONLY: "yes" };
  const fromEnv = readFlags(FLAGS, [], { env });
  assert.deepEqual(fromEnv.values, {
    port: 3000,
    host: "0.0.0.0",
    jsonOnly: true,
  });
  assert.deepEqual(fromEnv.sources, {
    port: "PORT",
    host: "HOST",
    jsonOnly: "JSON_ONLY",
  });
  const getter = new Map([["PORT", "3000"], ["JSON_ONLY", "off"]]);
  const both = readFlags(FLAGS, ["--port", "1"], { env: getter });
  assert.deepEqual(both.values, { port: 1, jsonOnly: false });
  assert.equal(both.sources.port, "--port");
  // A good flag hides a bad variable.
  assert.equal(
    readFlags(FLAGS, ["--port=2"], { env: { PORT: "x" } }).values.port,
    2,
  );
});

Deno.test("readFlags: -h and --help win and read nothing else", () => {
  for (const args of [["-h"], ["--help"], ["--port", "99999", "--help"]]) {
    const reading = readFlags(FLAGS, args, { env: { PORT: "x" } });
    assert.equal(reading.help, true);
    assert.deepEqual(reading.values, {});
  }
});

Deno.test("readFlags: the shape of a command line, in hubchat's words", () => {
  assertUsage(
    ["--bogus"],
    'unknown option "--bogus"; run with --help for the options',
  );
  assertUsage(["-x"], /^unknown option "-x"/);
  assertUsage(
    ["--port"],
    "--port needs a value; run with --help for the options",
  );
  assertUsage(["--port", "--json-only"], /^--port needs a value/);
  assertUsage(["--host", "--port", "1"], /^--host needs a value/);
  assertUsage(["--json-only=1"], /^--json-only takes no value/);
  assertUsage(["serve"], /^unexpected argument "serve"; expected only --flags/);
  assertUsage(["--", "x"], /^unexpected argument "x"/);
});

Deno.test("readFlags: numbers say which flag, what it was and what was expected", () => {
  assertUsage(
    ["--port", "x"],
    '--port is "x", not a number; expected a whole number from 0 to 65535',
  );
  assertUsage(
    ["--port=65536"],
    '--port is "65536"; expected a whole number from 0 to 65535',
  );
  assertUsage(["--port", "1.5"], /^--port is "1.5"; expected a whole number/);
  for (const bad of ["0x10", "1e3", "80a", "", " "]) {
    assertUsage([`--port=${bad}`], /^--port is ".*", not a number; expected/);
  }
  assertUsage([], /^PORT is "abc", not a number/, { PORT: "abc" });
  assertUsage(["--rate", "fast"], /^--rate is "fast", not a number/);
  assertUsage(
    ["--max-frame-bytes", "0"],
    '--max-frame-bytes is "0"; expected a whole number of at least 1',
  );
  assertUsage(
    ["--ratio", "-0.5"],
    '--ratio is "-0.5"; expected a non-negative number',
  );
  assertUsage(
    ["--rate", "-5"],
    '--rate is "-5"; expected deliveries/s of at least 0',
  );
});

Deno.test("readFlags: a negative number is a value, refused by its range, not ambiguous", () => {
  assertUsage(
    ["--port", "-1"],
    '--port is "-1"; expected a whole number from 0 to 65535',
  );
  // Text that starts with one dash is a value too.
  assert.equal(readFlags(FLAGS, ["--host", "-x"]).values.host, "-x");
  // -h after a value flag is still the help flag (the value was forgotten).
  assertUsage(["--host", "-h"], /^--host needs a value/);
});

Deno.test("readFlags: text must not be empty; switches read words from the environment", () => {
  assertUsage(["--host", ""], "--host is empty; expected ADDR");
  assertUsage([], "HOST is empty; expected ADDR", { HOST: "   " });
  assertUsage([], 'JSON_ONLY is "maybe"; expected true or false', {
    JSON_ONLY: "maybe",
  });
  for (const word of ["1", "true", "YES", "on"]) {
    assert.equal(
      readFlags(FLAGS, [], { env: { JSON_ONLY: word } }).values.jsonOnly,
      true,
    );
  }
  for (const word of ["0", "false", "no", "off", ""]) {
    assert.equal(
      readFlags(FLAGS, [], { env: { JSON_ONLY: word } }).values.jsonOnly,
      false,
    );
  }
});

Deno.test("readFlags: a text flag with choices takes one of them; the help lists them", () => {
  const format: Flag = {
    name: "format",
    kind: "text",
    env: "FORMAT",
    choices: ["text", "json", "csv"],
    help: "output format",
  };
  const read = (args: string[], env: Record<string, string> = {}) =>
    readFlags([format], args, { env });
  assert.equal(read(["--format", "json"]).values.format, "json");
  assert.equal(read([], { FORMAT: " csv " }).values.format, "csv");
  for (
    const [args, env, message] of [
      [
        ["--format", "xml"],
        {},
        '--format is "xml"; expected text, json or csv',
      ],
      [["--format=JSON"], {}, '--format is "JSON"; expected text, json or csv'],
      [[], { FORMAT: "yaml" }, 'FORMAT is "yaml"; expected text, json or csv'],
    ] as const
  ) {
    assert.throws(
      () => read([...args], env),
      (error: unknown) =>
        error instanceof UsageError && error.message === message,
      message,
    );
  }
  assert.equal(
    helpRows([format]),
    "  --format text|json|csv      output format (env FORMAT)",
  );
});

Deno.test("checkFlag applies a flag's rule to numbers from code", () => {
  const clients: Flag = { name: "clients", kind: "whole", min: 1, help: "" };
  assert.equal(checkFlag(clients, 5), 5);
  assert.throws(
    () => checkFlag(clients, 3, { max: 2 }),
    new UsageError("--clients is 3; expected a whole number from 1 to 2"),
  );
  assert.throws(() => checkFlag(clients, 1.5), /expected a whole number/);
  const drain: Flag = {
    name: "drain",
    kind: "number",
    min: 0,
    unit: "seconds",
    help: "",
  };
  assert.throws(
    () => checkFlag(drain, NaN),
    /--drain is NaN; expected seconds of at least 0/,
  );
  assert.throws(
    () => checkFlag({ name: "x", kind: "whole", help: "" }, 10, { max: 9 }),
    /--x is 10; expected a whole number of at most 9/,
  );
});

Deno.test("helpRows renders the table: placeholder, default, variable, wrapping", () => {
  const rows = helpRows(FLAGS.slice(0, 2), { withHelp: true }).split("\n");
  assert.deepEqual(rows, [
    "  --port N                    port to listen on (default 8080; env PORT)",
    "  --host ADDR                 address (env HOST)",
    "  -h, --help                  show this help",
  ]);
  const long = helpRows([{
    name: "a-flag-name-longer-than-the-column",
    kind: "text",
    value: "X",
    help: "word ".repeat(30).trim(),
  }]).split("\n");
  assert.equal(long[0], "  --a-flag-name-longer-than-the-column X");
  assert.ok(long.length > 2);
  for (const line of long.slice(1)) {
    assert.ok(line.startsWith(" ".repeat(30) + "word"), line);
    assert.ok(line.length <= 80, line);
  }
});

import assert from "node:assert/strict";
import { importSecret, verifyToken } from "../auth.ts";
import { UsageError } from "../flags.ts";
import { mintFromCommandLine, TOKEN_USAGE } from "./token.ts";

const SECRET = "0123456789abcdef0123456789abcdef"; // exactly 32 bytes
const NOW = 1_800_000_000; // 2027-01-15T08:00:00Z

Deno.test("a token from the command line verifies", async () => {
  const env = new Map([["HUBCHAT_AUTH_SECRET", SECRET]]);
  const token = await mintFromCommandLine(
    ["--sub", "alice", "--ttl", "60"],
    env,
    NOW,
  );
  const key = await importSecret(SECRET);
  assert.deepEqual(await verifyToken(token, key, { now: NOW }), {
    ok: true,
    claims: { sub: "alice", iat: NOW, exp: NOW + 60 },
  });
  const fromFlag = await mintFromCommandLine(
    ["--secret", SECRET, "--sub", "bob"],
    new Map(),
    NOW,
  );
  const claims = await verifyToken(fromFlag, key, { now: NOW });
  assert.equal(claims.ok && claims.claims.exp, NOW + 3600);
  assert.equal(await mintFromCommandLine(["-h"], new Map()), TOKEN_USAGE);

  for (
    const [args, pattern] of [
      [["--sub", "a"], /no secret/],
      [["--secret", "short", "--sub", "a"], /5 bytes.*256 bits/],
      [["--secret", SECRET], /no --sub/],
      [["--secret", SECRET, "--sub", "a", "--ttl", "soon"], /--ttl is "soon"/],
      [["--secret", SECRET, "--sub", "a", "--ttl", "0"], /--ttl is "0"/],
      [["--bogus"], /bogus/],
    ] as [string[], RegExp][]
  ) {
    await assert.rejects(
      mintFromCommandLine(args, new Map()),
      (error: Error) =>
        error instanceof UsageError && pattern.test(error.message),
      args.join(" "),
    );
  }
});

Deno.test("the CLI prints a token", async () => {
  const output = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--allow-env",
      new URL("./token.ts", import.meta.url).pathname,
      "--sub",
      "alice",
    ],
    env: { HUBCHAT_AUTH_SECRET: SECRET },
  }).output();
  assert.equal(output.code, 0, new TextDecoder().decode(output.stderr));
  const token = new TextDecoder().decode(output.stdout).trim();
  const result = await verifyToken(token, await importSecret(SECRET));
  assert.equal(result.ok && result.claims.sub, "alice");

  const failed = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--allow-env",
      new URL("./token.ts", import.meta.url).pathname,
    ],
    env: { HUBCHAT_AUTH_SECRET: SECRET },
  }).output();
  assert.equal(failed.code, 2);
  assert.match(new TextDecoder().decode(failed.stderr), /no --sub/);
});

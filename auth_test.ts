import assert from "node:assert/strict";
import {
  importSecret,
  MAX_TOKEN_CHARS,
  signToken,
  tokenFromRequest,
  type TokenResult,
  verifyToken,
} from "./auth.ts";

const SECRET = "0123456789abcdef0123456789abcdef"; // exactly 32 bytes
const NOW = 1_800_000_000; // 2027-01-15T08:00:00Z

const encoder = new TextEncoder();

function b64url(text: string): string {
  return encoder.encode(text).toBase64({
    alphabet: "base64url",
    omitPadding: true,
  });
}

/** Signs arbitrary header and payload text, to forge odd tokens. */
async function rawToken(
  header: string,
  payload: string,
  key: CryptoKey,
): Promise<string> {
  const input = `${b64url(header)}.${b64url(payload)}`;
  const signature = new Uint8Array(
    await crypto.subtle.sign("HMAC", key, encoder.encode(input)),
  );
  return `${input}.${
    signature.toBase64({
      alphabet: "base64url",
      omitPadding: true,
    })
  }`;
}

function refused(result: TokenResult, pattern: RegExp): void {
  assert.equal(result.ok, false, `refused: ${JSON.stringify(result)}`);
  if (!result.ok) assert.match(result.reason, pattern);
}

Deno.test("importSecret refuses secrets shorter than 32 bytes", async () => {
  await assert.rejects(
    importSecret("x".repeat(31)),
    (error: Error) =>
      error instanceof RangeError && /31 bytes/.test(error.message) &&
      /256 bits/.test(error.message),
  );
  // Bytes of UTF-8, not characters: 16 × "é" is 32 bytes.
  await importSecret("é".repeat(16));
  await importSecret(SECRET);
});

Deno.test("a signed token verifies and keeps its claims", async () => {
  const key = await importSecret(SECRET);
  const claims = { sub: "alice", exp: NOW + 60, iat: NOW, room: "lobby" };
  const token = await signToken(claims, key);
  assert.match(token, /^eyJ[\w-]+\.eyJ[\w-]+\.[\w-]{43}$/);
  assert.deepEqual(await verifyToken(token, key, { now: NOW }), {
    ok: true,
    claims,
  });
  // exp is optional.
  const forever = await signToken({ sub: "bob" }, key);
  assert.deepEqual(await verifyToken(forever, key), {
    ok: true,
    claims: { sub: "bob" },
  });
});

Deno.test("tampering with payload or signature is caught", async () => {
  const key = await importSecret(SECRET);
  const token = await signToken({ sub: "alice", exp: NOW + 60 }, key);
  const [header, , signature] = token.split(".");
  const forged = `${header}.${b64url('{"sub":"admin"}')}.${signature}`;
  refused(await verifyToken(forged, key, { now: NOW }), /^bad signature$/);

  const flipped = signature[0] === "A" ? "B" : "A";
  const badSignature = token.slice(0, -signature.length) + flipped +
    signature.slice(1);
  refused(await verifyToken(badSignature, key, { now: NOW }), /bad signature/);
  // Truncated or non-canonical base64url signatures are not "almost right".
  refused(
    await verifyToken(token.slice(0, -1), key, { now: NOW }),
    /signature/,
  );
  refused(await verifyToken(token + "A", key, { now: NOW }), /signature/);
});

Deno.test("a token from another key is refused", async () => {
  const key = await importSecret(SECRET);
  const other = await importSecret("another secret, also 32 bytes long");
  const token = await signToken({ sub: "alice" }, other);
  refused(await verifyToken(token, key), /^bad signature$/);
});

Deno.test("alg must be HS256: none, RS256 and missing are refused", async () => {
  const key = await importSecret(SECRET);
  const payload = b64url('{"sub":"alice"}');
  const none = `${b64url('{"alg":"none","typ":"JWT"}')}.${payload}.`;
  refused(
    await verifyToken(none, key),
    /^unsupported alg "none"; expected HS256$/,
  );
  // Even with a valid HMAC over it, a header naming another alg is refused.
  for (const alg of ["RS256", "hs256", "HS512", "None"]) {
    const token = await rawToken(JSON.stringify({ alg }), '{"sub":"a"}', key);
    refused(await verifyToken(token, key), /unsupported alg/);
  }
  const noAlg = await rawToken('{"typ":"JWT"}', '{"sub":"a"}', key);
  refused(await verifyToken(noAlg, key), /no "alg"/);
  const crit = await rawToken(
    '{"alg":"HS256","crit":["b64"],"b64":false}',
    '{"sub":"a"}',
    key,
  );
  refused(await verifyToken(crit, key), /crit/);
  const typ = await rawToken('{"alg":"HS256","typ":"JWE"}', '{"sub":"a"}', key);
  refused(await verifyToken(typ, key), /typ/);
  // typ is optional.
  const bare = await rawToken('{"alg":"HS256"}', '{"sub":"a"}', key);
  assert.equal((await verifyToken(bare, key)).ok, true);
});

Deno.test("exp and nbf are honoured, with leeway", async () => {
  const key = await importSecret(SECRET);
  const expired = await signToken({ sub: "alice", exp: NOW - 31 }, key);
  refused(
    await verifyToken(expired, key, { now: NOW }),
    /^token expired at 2027-01-15T07:59:29\.000Z$/,
  );
  // Within the default 30 s leeway.
  const justExpired = await signToken({ sub: "alice", exp: NOW - 29 }, key);
  assert.equal((await verifyToken(justExpired, key, { now: NOW })).ok, true);
  refused(
    await verifyToken(justExpired, key, { now: NOW, leewaySeconds: 0 }),
    /expired/,
  );
  // Exactly at exp is expired (RFC 7519: "on or after").
  const atExp = await signToken({ sub: "alice", exp: NOW }, key);
  refused(
    await verifyToken(atExp, key, { now: NOW, leewaySeconds: 0 }),
    /expired/,
  );

  const early = await signToken({ sub: "alice", nbf: NOW + 31 }, key);
  refused(
    await verifyToken(early, key, { now: NOW }),
    /^token not valid before 2027-01-15T08:00:31\.000Z$/,
  );
  const nearlyValid = await signToken({ sub: "alice", nbf: NOW + 29 }, key);
  assert.equal((await verifyToken(nearlyValid, key, { now: NOW })).ok, true);
  assert.equal(
    (await verifyToken(early, key, { now: NOW, leewaySeconds: 60 })).ok,
    true,
  );

  await assert.rejects(
    verifyToken(early, key, { leewaySeconds: -1 }),
    RangeError,
  );
});

Deno.test("claims: sub required, time claims numeric", async () => {
  const key = await importSecret(SECRET);
  const cases: [string, RegExp][] = [
    ['{"exp":1900000000}', /no "sub"/],
    ['{"sub":""}', /"sub" is ""; expected a non-empty string/],
    ['{"sub":42}', /"sub" is 42/],
    ['{"sub":"a","exp":"tomorrow"}', /"exp" is "tomorrow"/],
    ['{"sub":"a","nbf":null}', /"nbf" is null/],
    ['{"sub":"a","iat":[1]}', /"iat" is \[1\]/],
    ["[1,2]", /payload is not/],
    ['"sub"', /payload is not/],
    ["{not json", /payload is not/],
  ];
  for (const [payload, pattern] of cases) {
    const token = await rawToken('{"alg":"HS256"}', payload, key);
    refused(await verifyToken(token, key), pattern);
  }
  await assert.rejects(signToken({ sub: "" }, key), TypeError);
  await assert.rejects(signToken({ sub: "a", exp: NaN }, key), TypeError);
});

Deno.test("garbage and oversize input are refused cheaply", async () => {
  const key = await importSecret(SECRET);
  for (
    const garbage of [
      "",
      "abc",
      "a.b",
      "a.b.c.d",
      "...",
      "eyJ!.eyJ.sig",
      "e y J.eyJ.abc",
      `${b64url("not json")}.${b64url("{}")}.abc`,
      `${b64url("[]")}.${b64url("{}")}.abc`,
    ]
  ) {
    const result = await verifyToken(garbage, key);
    assert.equal(result.ok, false, `refused: ${JSON.stringify(garbage)}`);
  }
  refused(
    await verifyToken("a".repeat(MAX_TOKEN_CHARS + 1), key),
    /4097 characters; expected at most 4096/,
  );
  // A big but well-formed token under the limit still verifies.
  const big = await signToken({ sub: "a", pad: "x".repeat(2800) }, key);
  assert.ok(big.length <= MAX_TOKEN_CHARS);
  assert.equal((await verifyToken(big, key)).ok, true);
});

Deno.test("keys that are not HMAC SHA-256 are a programming error", async () => {
  const sha512 = await crypto.subtle.importKey(
    "raw",
    encoder.encode(SECRET),
    { name: "HMAC", hash: "SHA-512" },
    false,
    ["sign", "verify"],
  );
  await assert.rejects(verifyToken("a.b.c", sha512), /SHA-512/);
  await assert.rejects(signToken({ sub: "a" }, sha512), /SHA-512/);
});

Deno.test("tokenFromRequest: subprotocol header, then query", () => {
  const viaHeader = new Request("http://localhost/ws?username=x", {
    headers: { "sec-websocket-protocol": "hubchat, auth.aaa.bbb.ccc" },
  });
  assert.deepEqual(tokenFromRequest(viaHeader), {
    token: "aaa.bbb.ccc",
    protocol: "hubchat",
  });
  // Order does not matter; odd spacing is tolerated.
  const reversed = new Request("http://localhost/ws", {
    headers: { "sec-websocket-protocol": "auth.t.u.v ,hubchat" },
  });
  assert.deepEqual(tokenFromRequest(reversed), {
    token: "t.u.v",
    protocol: "hubchat",
  });
  const viaQuery = new Request("http://localhost/ws?token=q.r.s");
  assert.deepEqual(tokenFromRequest(viaQuery), {
    token: "q.r.s",
    protocol: null,
  });
  // The header wins over the query.
  const both = new Request("http://localhost/ws?token=query.t.t", {
    headers: { "sec-websocket-protocol": "hubchat, auth.header.t.t" },
  });
  assert.equal(tokenFromRequest(both).token, "header.t.t");
  // hubchat without a token: echo it, no token.
  const protocolOnly = new Request("http://localhost/ws", {
    headers: { "sec-websocket-protocol": "hubchat" },
  });
  assert.deepEqual(tokenFromRequest(protocolOnly), {
    token: null,
    protocol: "hubchat",
  });
  // Unknown protocols, an empty auth entry or an empty query: nothing.
  const nothing = new Request("http://localhost/ws?token=", {
    headers: { "sec-websocket-protocol": "chat, auth." },
  });
  assert.deepEqual(tokenFromRequest(nothing), { token: null, protocol: null });
});

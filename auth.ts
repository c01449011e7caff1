/**
 * Bearer tokens for the WebSocket upgrade: HS256 JSON Web Tokens (RFC 7519)
 * signed and checked with WebCrypto alone, no packages.
 *
 * Only HS256 is accepted, whatever the token's header claims: a verifier that
 * trusts the header's `alg` can be talked into `none` or into using an HMAC
 * key as an RSA public key (algorithm confusion).
 *
 * Mint a token from the command line (the secret is better passed through
 * the environment, where `ps` cannot see it):
 *
 * ```sh
 * HUBCHAT_AUTH_SECRET=... deno task token --sub alice --ttl 3600
 * ```
 *
 * @module
 */

import { utf8Length } from "./protocol.ts";

/**
 * Shortest accepted secret, in bytes of UTF-8. HS256 is HMAC-SHA-256; a key
 * shorter than the hash output (256 bits) weakens it, and RFC 7518 §3.2
 * forbids it.
 */
export const MIN_SECRET_BYTES = 32;

/**
 * Longest token looked at, in characters. A chat token is a few hundred
 * characters; refusing anything far bigger before decoding bounds the
 * base64, JSON and HMAC work an anonymous peer can make the server do. It
 * also fits in a URL and in one header line.
 */
export const MAX_TOKEN_CHARS = 4096;

/**
 * Clock skew tolerated on `exp` and `nbf`, in seconds. The machine that mints
 * tokens and this server rarely agree to the second; 30 s covers NTP-synced
 * hosts without extending a token's life noticeably.
 */
export const DEFAULT_LEEWAY_SECONDS = 30;

/** Lifetime of tokens minted by the command line, in seconds: one hour. */
export const DEFAULT_TTL_SECONDS = 3600;

/** Environment variable the command line reads the secret from. */
export const SECRET_ENV = "HUBCHAT_AUTH_SECRET";

/**
 * The WebSocket subprotocol hubchat clients offer, and the server echoes
 * back. See {@linkcode tokenFromRequest}.
 */
export const SUBPROTOCOL = "hubchat";

/** Prefix of the subprotocol entry that carries a token: `auth.<jwt>`. */
export const AUTH_PROTOCOL_PREFIX = "auth.";

/** The claims hubchat reads from a token; any others are kept as they are. */
export interface TokenClaims {
  /** Subject: who the token is for (the user's name). Required, non-empty. */
  sub: string;
  /** Expiry, in seconds since the epoch. Optional; honoured when present. */
  exp?: number;
  /** Not before, in seconds since the epoch. Optional; honoured when present. */
  nbf?: number;
  /** Issued at, in seconds since the epoch. Optional, informative only. */
  iat?: number;
  /** Any other claim, unchecked. */
  [claim: string]: unknown;
}

/** The outcome of {@linkcode verifyToken}: the claims, or why not. */
export type TokenResult =
  | { ok: true; claims: TokenClaims }
  | { ok: false; reason: string };

/** Options for {@linkcode verifyToken}. */
export interface VerifyOptions {
  /** The current time, in seconds since the epoch. Default: the clock. */
  now?: number;
  /** Clock skew tolerated on `exp` and `nbf`, in seconds. Default 30. */
  leewaySeconds?: number;
}

/** Where {@linkcode tokenFromRequest} found the token, and what to echo. */
export interface RequestToken {
  /** The token, or null when the request carries none. */
  token: string | null;
  /**
   * The subprotocol the server must accept in its 101 answer (`"hubchat"`
   * when the client offered it), or null when it offered none the server
   * knows. Pass it as `Deno.upgradeWebSocket(request, { protocol })`.
   */
  protocol: string | null;
}

const encoder = new TextEncoder();
/** `fatal`: a payload that is not UTF-8 is refused, not patched with U+FFFD. */
const decoder = new TextDecoder("utf-8", { fatal: true });
const BASE64URL = /^[A-Za-z0-9_-]*$/;
/** Header of every token this module signs. */
const HEADER_PART = base64urlEncode(
  encoder.encode(JSON.stringify({ alg: "HS256", typ: "JWT" })),
);

function base64urlEncode(bytes: Uint8Array): string {
  return bytes.toBase64({ alphabet: "base64url", omitPadding: true });
}

/**
 * Decodes unpadded base64url, or returns null. Only the canonical spelling
 * is accepted, so one token has exactly one text form.
 */
function base64urlDecode(text: string): Uint8Array<ArrayBuffer> | null {
  if (!BASE64URL.test(text)) return null;
  let bytes: Uint8Array<ArrayBuffer>;
  try {
    bytes = Uint8Array.fromBase64(text, { alphabet: "base64url" });
  } catch {
    return null;
  }
  return base64urlEncode(bytes) === text ? bytes : null;
}

/** Decodes a base64url part holding a JSON object, or returns null. */
function decodeJsonObject(part: string): Record<string, unknown> | null {
  const bytes = base64urlDecode(part);
  if (bytes === null) return null;
  let value: unknown;
  try {
    value = JSON.parse(decoder.decode(bytes));
  } catch {
    return null;
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    return null;
  }
  return value as Record<string, unknown>;
}

/** A time claim as a readable date, even for absurd values. */
function describeTime(seconds: number): string {
  const date = new Date(seconds * 1000);
  return Number.isNaN(date.getTime())
    ? `${seconds} (seconds since the epoch)`
    : date.toISOString();
}

/** Quotes attacker-controlled text for a reason, short and on one line. */
function quote(value: unknown): string {
  let text: string;
  try {
    text = JSON.stringify(value) ?? String(value);
  } catch {
    text = typeof value;
  }
  return text.length > 40 ? text.slice(0, 40) + "…" : text;
}

function checkKey(key: CryptoKey, usage: "sign" | "verify"): void {
  const algorithm = key.algorithm as HmacKeyAlgorithm;
  if (algorithm.name !== "HMAC" || algorithm.hash?.name !== "SHA-256") {
    throw new TypeError(
      `key is ${algorithm.name}${
        algorithm.hash ? `/${algorithm.hash.name}` : ""
      }; expected an HMAC SHA-256 key from importSecret()`,
    );
  }
  if (!key.usages.includes(usage)) {
    throw new TypeError(
      `key cannot ${usage}; expected a key from importSecret()`,
    );
  }
}

/**
 * What is wrong with a shared secret, or null if nothing: HS256 secrets need
 * at least {@linkcode MIN_SECRET_BYTES} bytes (256 bits).
 *
 * @example
 * ```ts
 * import { secretProblem } from "./auth.ts";
 * secretProblem("short"); // "auth secret is 5 bytes; HS256 secrets need ..."
 * ```
 */
export function secretProblem(secret: string): string | null {
  const bytes = utf8Length(secret);
  if (bytes >= MIN_SECRET_BYTES) return null;
  return `auth secret is ${bytes} bytes; HS256 secrets need at least ` +
    `${MIN_SECRET_BYTES} bytes (256 bits), e.g. \`openssl rand -base64 32\``;
}

/**
 * Imports a shared secret as an HMAC SHA-256 key for signing and verifying.
 * Throws a `RangeError` for a secret shorter than 32 bytes: HS256 secrets
 * need at least 256 bits.
 *
 * @example
 * ```ts
 * import { importSecret } from "./auth.ts";
 * const key = await importSecret(Deno.env.get("HUBCHAT_AUTH_SECRET")!);
 * ```
 */
export async function importSecret(secret: string): Promise<CryptoKey> {
  const problem = secretProblem(secret);
  if (problem !== null) throw new RangeError(problem);
  return await crypto.subtle.importKey(
    "raw",
    encoder.encode(secret),
    { name: "HMAC", hash: "SHA-256" },
    false,
    ["sign", "verify"],
  );
}

/** What is wrong with the time claims (`exp`, `nbf`, `iat`), or null. */
function timeClaimProblem(claims: Record<string, unknown>): string | null {
  for (const name of ["exp", "nbf", "iat"]) {
    const value = claims[name];
    if (value !== undefined && !Number.isFinite(value)) {
      return `claim "${name}" is ${
        quote(value)
      }; expected seconds since the epoch`;
    }
  }
  return null;
}

/**
 * Signs claims as an HS256 JWT. Throws a `TypeError` when `sub` is not a
 * non-empty string or a time claim is not a finite number: such a token
 * would never verify.
 *
 * @example
 * ```ts
 * import { importSecret, signToken } from "./auth.ts";
 * const key = await importSecret("a secret of at least 32 bytes.....");
 * const now = Math.floor(Date.now() / 1000);
 * const token = await signToken({ sub: "alice", exp: now + 3600 }, key);
 * ```
 */
export async function signToken(
  claims: TokenClaims,
  key: CryptoKey,
): Promise<string> {
  checkKey(key, "sign");
  if (typeof claims.sub !== "string" || claims.sub === "") {
    throw new TypeError(
      `claim "sub" is ${quote(claims.sub)}; expected a non-empty string`,
    );
  }
  const badTime = timeClaimProblem(claims);
  if (badTime !== null) throw new TypeError(badTime);
  const payload = base64urlEncode(encoder.encode(JSON.stringify(claims)));
  const input = `${HEADER_PART}.${payload}`;
  const signature = await crypto.subtle.sign(
    "HMAC",
    key,
    encoder.encode(input),
  );
  return `${input}.${base64urlEncode(new Uint8Array(signature))}`;
}

/**
 * Checks an HS256 JWT and returns its claims, or a human-readable reason it
 * was refused. In order: size (at most 4096 characters), shape (three
 * base64url parts), header (`alg` exactly `"HS256"`, `typ` absent or `JWT`,
 * no `crit`), signature (`crypto.subtle.verify`, constant-time), payload (a
 * JSON object), `sub` (a non-empty string), `exp` and `nbf` (numbers, honoured
 * with `leewaySeconds` of tolerance). Nothing of the payload is read before
 * the signature is known good.
 *
 * Throws only for a key that cannot verify HS256 (a programming error);
 * anything wrong with the token itself is an `{ ok: false }` result.
 *
 * @example
 * ```ts
 * import { importSecret, verifyToken } from "./auth.ts";
 * const key = await importSecret("a secret of at least 32 bytes.....");
 * const result = await verifyToken("eyJ...", key);
 * if (!result.ok) console.log(result.reason); // "token is not a JWT; ..."
 * ```
 */
export async function verifyToken(
  token: string,
  key: CryptoKey,
  options: VerifyOptions = {},
): Promise<TokenResult> {
  checkKey(key, "verify");
  const leeway = options.leewaySeconds ?? DEFAULT_LEEWAY_SECONDS;
  if (!(leeway >= 0 && leeway < Infinity)) {
    throw new RangeError(
      `leewaySeconds is ${leeway}; expected a finite number of seconds >= 0`,
    );
  }
  const now = options.now ?? Date.now() / 1000;
  if (typeof token !== "string") {
    return { ok: false, reason: "token is not a string" };
  }
  if (token.length > MAX_TOKEN_CHARS) {
    return {
      ok: false,
      reason:
        `token is ${token.length} characters; expected at most ${MAX_TOKEN_CHARS}`,
    };
  }
  const parts = token.split(".");
  if (parts.length !== 3) {
    return {
      ok: false,
      reason:
        `token is not a JWT; expected three base64url parts separated by ".", got ${parts.length}`,
    };
  }
  const [headerPart, payloadPart, signaturePart] = parts;

  const header = decodeJsonObject(headerPart);
  if (header === null) {
    return {
      ok: false,
      reason: "token header is not base64url-encoded JSON object",
    };
  }
  if (header.alg !== "HS256") {
    return {
      ok: false,
      reason: header.alg === undefined
        ? 'token header has no "alg"; expected HS256'
        : `unsupported alg ${quote(header.alg)}; expected HS256`,
    };
  }
  if (
    header.typ !== undefined &&
    (typeof header.typ !== "string" || header.typ.toUpperCase() !== "JWT")
  ) {
    return {
      ok: false,
      reason: `unsupported typ ${quote(header.typ)}; expected JWT or none`,
    };
  }
  if (header.crit !== undefined) {
    // RFC 7515 §4.1.11: critical extensions not understood must be refused.
    return {
      ok: false,
      reason: `unsupported crit ${quote(header.crit)}; expected none`,
    };
  }

  const signature = base64urlDecode(signaturePart);
  if (signature === null) {
    return { ok: false, reason: "token signature is not base64url" };
  }
  const good = await crypto.subtle.verify(
    "HMAC",
    key,
    signature,
    encoder.encode(`${headerPart}.${payloadPart}`),
  );
  if (!good) return { ok: false, reason: "bad signature" };

  const claims = decodeJsonObject(payloadPart);
  if (claims === null) {
    return {
      ok: false,
      reason: "token payload is not a base64url-encoded JSON object",
    };
  }
  const { sub, exp, nbf } = claims;
  if (typeof sub !== "string" || sub === "") {
    return {
      ok: false,
      reason: sub === undefined
        ? 'token has no "sub" claim; expected the user\'s name'
        : `claim "sub" is ${quote(sub)}; expected a non-empty string`,
    };
  }
  const badTime = timeClaimProblem(claims);
  if (badTime !== null) return { ok: false, reason: badTime };
  if (typeof exp === "number" && now >= exp + leeway) {
    return { ok: false, reason: `token expired at ${describeTime(exp)}` };
  }
  if (typeof nbf === "number" && now + leeway < nbf) {
    return {
      ok: false,
      reason: `token not valid before ${describeTime(nbf)}`,
    };
  }
  return { ok: true, claims: claims as TokenClaims };
}

/**
 * Finds the token an upgrade request carries, and the subprotocol the server
 * must answer with.
 *
 * Browsers cannot set headers on a WebSocket, so a token travels in one of
 * two places:
 *
 * - the `Sec-WebSocket-Protocol` header, preferred: the client offers the
 *   subprotocols `["hubchat", "auth.<jwt>"]`, which arrive as the header
 *   `hubchat, auth.eyJ...`. The server must then accept `"hubchat"` (never
 *   the `auth.` entry: that would echo the token back), or the browser fails
 *   the connection. A JWT is made only of characters a subprotocol may hold.
 * - the query, `/ws?token=<jwt>`, for clients that cannot set subprotocols.
 *   Query strings end up in access logs; prefer the header.
 *
 * When both are present the header wins. An empty token counts as none.
 *
 * @example
 * ```ts
 * import { tokenFromRequest } from "./auth.ts";
 * const request = new Request("http://localhost/ws", {
 *   headers: { "sec-websocket-protocol": "hubchat, auth.eyJ.eyJ.sig" },
 * });
 * tokenFromRequest(request); // { token: "eyJ.eyJ.sig", protocol: "hubchat" }
 * // then: Deno.upgradeWebSocket(request, { protocol: "hubchat" })
 * ```
 */
export function tokenFromRequest(request: Request): RequestToken {
  let token: string | null = null;
  let protocol: string | null = null;
  const offered = request.headers.get("sec-websocket-protocol");
  if (offered !== null) {
    for (const raw of offered.split(",")) {
      const entry = raw.trim();
      if (entry === SUBPROTOCOL) protocol = SUBPROTOCOL;
      else if (
        token === null && entry.startsWith(AUTH_PROTOCOL_PREFIX) &&
        entry.length > AUTH_PROTOCOL_PREFIX.length
      ) {
        token = entry.slice(AUTH_PROTOCOL_PREFIX.length);
      }
    }
  }
  if (token === null) {
    const fromQuery = new URL(request.url).searchParams.get("token");
    if (fromQuery) token = fromQuery;
  }
  return { token, protocol };
}

import assert from "node:assert/strict";
import {
  checkOrigin,
  clientAddress,
  ConnectionLimiter,
  DEFAULT_MAX_CONNECTIONS,
  DEFAULT_MAX_CONNECTIONS_PER_IP,
  type OriginOptions,
  validateAllowedOrigins,
} from "./admission.ts";

const sameOriginOnly: OriginOptions = {
  allowedOrigins: [],
  requireOrigin: false,
};

function origin(
  originHeader: string | null,
  host: string | null,
  options: OriginOptions = sameOriginOnly,
): boolean {
  const headers = new Headers();
  if (originHeader !== null) headers.set("origin", originHeader);
  if (host !== null) headers.set("host", host);
  return checkOrigin(headers, options).ok;
}

Deno.test("origin: same host and port as the Host header", () => {
  assert.equal(origin("https://chat.example.com", "chat.example.com"), true);
  assert.equal(origin("http://chat.example.com", "chat.example.com"), true);
  assert.equal(
    origin("https://chat.example.com", "chat.example.com:443"),
    true,
  );
  assert.equal(origin("http://chat.example.com", "chat.example.com:80"), true);
  assert.equal(origin("http://127.0.0.1:8080", "127.0.0.1:8080"), true);
  assert.equal(origin("HTTP://Chat.Example.COM", "chat.EXAMPLE.com"), true);
  assert.equal(origin("http://[::1]:8080", "[::1]:8080"), true);
  assert.equal(
    origin("https://chat.example.com:443", "chat.example.com"),
    true,
  );

  assert.equal(origin("https://evil.example", "chat.example.com"), false);
  assert.equal(origin("http://127.0.0.1:9999", "127.0.0.1:8080"), false);
  assert.equal(origin("http://localhost:8080", "127.0.0.1:8080"), false);
  // Default ports differ by scheme.
  assert.equal(
    origin("https://chat.example.com", "chat.example.com:80"),
    false,
  );
  assert.equal(
    origin("http://chat.example.com", "chat.example.com:443"),
    false,
  );
  // Look-alikes and tricks.
  assert.equal(
    origin("https://chat.example.com.evil.example", "chat.example.com"),
    false,
  );
  assert.equal(origin("https://chat.example.com", null), false);
  assert.equal(origin("https://a.example", "a.example, b.example"), false);
  assert.equal(origin("null", "chat.example.com"), false);
  assert.equal(origin("garbage", "chat.example.com"), false);
  assert.equal(origin("file:///etc/passwd", "chat.example.com"), false);
});

Deno.test("origin: allowlist, wildcard and a missing header", () => {
  const options: OriginOptions = {
    allowedOrigins: ["https://chat.example.com", "http://localhost:5173"],
    requireOrigin: false,
  };
  assert.equal(
    origin("https://chat.example.com", "10.0.0.5:8080", options),
    true,
  );
  assert.equal(
    origin("https://CHAT.example.com:443", "internal", options),
    true,
  );
  assert.equal(origin("http://localhost:5173", "internal", options), true);
  assert.equal(origin("http://chat.example.com", "internal", options), false);
  assert.equal(origin("http://localhost:5174", "internal", options), false);

  const headers = new Headers({ origin: "https://evil.example", host: "x" });
  assert.deepEqual(checkOrigin(headers, options), {
    ok: false,
    reason:
      'origin "https://evil.example" is not allowed; expected the server\'s own host or one of https://chat.example.com, http://localhost:5173',
  });

  const any = { allowedOrigins: ["*"], requireOrigin: false };
  assert.equal(origin("https://evil.example", "x", any), true);
  assert.equal(origin("null", "x", any), true);

  assert.equal(origin(null, "x"), true);
  const strict = { allowedOrigins: [], requireOrigin: true };
  assert.deepEqual(checkOrigin(new Headers({ host: "x" }), strict), {
    ok: false,
    reason: "no Origin header; expected a browser's Origin",
  });
  assert.equal(
    origin(null, "x", { allowedOrigins: ["*"], requireOrigin: true }),
    false,
  );
});

Deno.test("origin: allowlist entries must be origins", () => {
  assert.deepEqual(
    validateAllowedOrigins([
      "https://Chat.Example.com:443",
      "*",
      "http://a:81/",
    ]),
    ["https://chat.example.com", "*", "http://a:81"],
  );
  for (const bad of ["chat.example.com", "https://a/path", "ftp://a", "null"]) {
    assert.throws(
      () => validateAllowedOrigins([bad]),
      /is not an origin; expected "\*" or scheme:\/\/host\[:port\]/,
      bad,
    );
  }
  assert.throws(
    () =>
      checkOrigin(new Headers({ origin: "https://a" }), {
        allowedOrigins: ["a.example"],
        requireOrigin: false,
      }),
    TypeError,
  );
});

function info(hostname: string): Deno.ServeHandlerInfo {
  return {
    remoteAddr: { transport: "tcp", hostname, port: 50000 },
    completed: Promise.resolve(),
  };
}

Deno.test("clientAddress: X-Forwarded-For only behind a trusted proxy", () => {
  const request = new Request("http://localhost/ws", {
    headers: { "x-forwarded-for": " 203.0.113.7 , 10.0.0.1" },
  });
  assert.equal(clientAddress(request, info("10.0.0.1"), true), "203.0.113.7");
  assert.equal(clientAddress(request, info("10.0.0.1"), false), "10.0.0.1");
  const v6 = new Request("http://localhost/", {
    headers: { "x-forwarded-for": "2001:DB8::1" },
  });
  assert.equal(clientAddress(v6, info("10.0.0.1"), true), "2001:db8::1");
  // No header, or junk in it: the socket's address.
  const plain = new Request("http://localhost/");
  assert.equal(clientAddress(plain, info("127.0.0.1"), true), "127.0.0.1");
  for (const junk of ["unknown", "", "1.2.3.4<script>", "x".repeat(100)]) {
    const request = new Request("http://localhost/", {
      headers: { "x-forwarded-for": junk },
    });
    assert.equal(clientAddress(request, info("10.0.0.1"), true), "10.0.0.1");
  }
  const unix: Deno.ServeHandlerInfo = {
    remoteAddr: { transport: "unix", path: "/run/hubchat.sock" },
    completed: Promise.resolve(),
  };
  assert.equal(clientAddress(plain, unix, false), "unix");
});

Deno.test("connection limiter: caps, per address and in all", () => {
  const limiter = new ConnectionLimiter({ maxTotal: 3, maxPerIp: 2 });
  const a1 = limiter.tryAcquire("a");
  const a2 = limiter.tryAcquire("a");
  const a3 = limiter.tryAcquire("a");
  assert.equal(a1.ok && a2.ok, true);
  assert.deepEqual(a3.ok ? null : a3.limit, "per_ip");
  const b1 = limiter.tryAcquire("b");
  assert.equal(b1.ok, true);
  const c1 = limiter.tryAcquire("c");
  assert.equal(c1.ok ? null : c1.limit, "total");
  assert.match(c1.ok ? "" : c1.reason, /server is full \(3 connections\)/);
  assert.equal(limiter.total, 3);
  assert.equal(limiter.countFor("a"), 2);

  // Releasing twice is harmless: counts never go negative.
  if (!a1.ok || !b1.ok) throw new Error("unreachable");
  a1.release();
  a1.release();
  assert.equal(limiter.total, 2);
  assert.equal(limiter.countFor("a"), 1);
  b1.release();
  b1.release();
  assert.equal(limiter.countFor("b"), 0);
  assert.equal(limiter.total, 1);
  assert.equal(limiter.tryAcquire("c").ok, true);
});

Deno.test("connection limiter: defaults and bad options", () => {
  const limiter = new ConnectionLimiter();
  assert.equal(limiter.maxTotal, DEFAULT_MAX_CONNECTIONS);
  assert.equal(limiter.maxPerIp, DEFAULT_MAX_CONNECTIONS_PER_IP);
  assert.throws(
    () => new ConnectionLimiter({ maxTotal: -1 }),
    /maxTotal is -1/,
  );
  assert.throws(() => new ConnectionLimiter({ maxPerIp: 2.5 }), /whole number/);
});

Deno.test("connection limiter: a cap of 0 is no cap", () => {
  const limiter = new ConnectionLimiter({ maxTotal: 0, maxPerIp: 0 });
  const slots = Array.from({ length: 50 }, () => limiter.tryAcquire("a"));
  assert.ok(slots.every((slot) => slot.ok));
  assert.equal(limiter.total, 50);
  const capped = new ConnectionLimiter({ maxTotal: 0, maxPerIp: 1 });
  assert.equal(capped.tryAcquire("a").ok, true);
  assert.equal(capped.tryAcquire("a").ok, false, "the other cap still holds");
});

/**
 * Who may connect: the `Origin` check that stops other sites from opening
 * sockets with a visitor's cookies (cross-site WebSocket hijacking), the
 * client's address behind a proxy, and connection caps, total and per
 * address. Every check runs before the WebSocket upgrade.
 *
 * Pure and timer-free, so every rule is testable without sockets.
 *
 * @module
 */

/**
 * Connections the server holds at most. Each costs a file descriptor and
 * tens of KiB; 10,000 fits this machine's memory many times over and is
 * what the load tool's memory test holds.
 */
export const DEFAULT_MAX_CONNECTIONS = 10_000;

/**
 * Connections accepted from one address. A household or office behind one
 * NAT, a few tabs each, fits; one host cannot fill the server.
 */
export const DEFAULT_MAX_CONNECTIONS_PER_IP = 20;

/**
 * Longest address accepted from `X-Forwarded-For`: the longest textual IPv6
 * address (IPv4-mapped, `ffff:ffff:...:255.255.255.255`) is 45 characters.
 */
const MAX_ADDRESS_CHARS = 45;

/** Characters of an IPv4 or IPv6 address (no zone, no port). */
const ADDRESS_PATTERN = /^[0-9A-Fa-f:.]+$/;

/** `host` or `host:port`, IPv6 hosts in brackets, as in a `Host` header. */
const HOST_HEADER = /^(\[[0-9A-Fa-f:.]+\]|[^\s:\[\]\/@]+)(?::(\d{1,5}))?$/;

/** A connection cap: 0 means none, anything else a whole number >= 1. */
function cap(name: string, value: number): number {
  if (value === 0) return Infinity;
  if (!(value > 0 && value < Infinity) || !Number.isInteger(value)) {
    throw new RangeError(`${name} is ${value}; expected a whole number > 0`);
  }
  return value;
}

/** Options for {@linkcode checkOrigin}. */
export interface OriginOptions {
  /**
   * Origins allowed besides the server's own, exactly as browsers send them
   * (`https://chat.example.com`, scheme and host, port only if not the
   * default); `"*"` allows any. See {@linkcode validateAllowedOrigins}.
   */
  allowedOrigins: readonly string[];
  /**
   * Refuse requests without an `Origin` header. Browsers always send one on
   * a WebSocket upgrade, so only non-browser clients omit it; they cannot be
   * used for cross-site hijacking, hence the usual `false`.
   */
  requireOrigin: boolean;
}

/** The outcome of {@linkcode checkOrigin}. */
export type OriginResult = { ok: true } | { ok: false; reason: string };

/** Parsed allowlists, by list, so each is parsed once. */
const allowlistCache = new WeakMap<readonly string[], Set<string>>();

function defaultPort(protocol: string): string {
  return protocol === "https:" || protocol === "wss:" ? "443" : "80";
}

/** Quotes peer-controlled text for a reason, short and on one line. */
function quote(text: string): string {
  const json = JSON.stringify(text);
  return json.length > 100 ? json.slice(0, 100) + '…"' : json;
}

/**
 * Normalizes allowed origins (`"*"`, or `scheme://host[:port]` with an http,
 * https, ws or wss scheme, lower-cased, default port dropped). Throws a
 * `TypeError` naming the first entry that is not an origin; call it at
 * startup to fail fast on bad configuration.
 *
 * @example
 * ```ts
 * import { validateAllowedOrigins } from "./admission.ts";
 * validateAllowedOrigins(["https://Chat.Example.com:443"]);
 * // ["https://chat.example.com"]
 * validateAllowedOrigins(["chat.example.com"]); // throws: no scheme
 * ```
 */
export function validateAllowedOrigins(list: readonly string[]): string[] {
  return list.map(normalizeAllowed);
}

function normalizeAllowed(entry: string): string {
  if (entry === "*") return entry;
  let url: URL | null = null;
  try {
    url = new URL(entry);
  } catch {
    // reported below
  }
  if (
    url === null || !/^(https?|wss?):$/.test(url.protocol) ||
    url.username !== "" || url.password !== "" ||
    (url.pathname !== "/" && url.pathname !== "") || url.search !== "" ||
    url.hash !== ""
  ) {
    throw new TypeError(
      `allowed origin ${
        quote(entry)
      } is not an origin; expected "*" or scheme://host[:port], e.g. https://chat.example.com`,
    );
  }
  return url.origin;
}

function allowlist(list: readonly string[]): Set<string> {
  let set = allowlistCache.get(list);
  if (set === undefined) {
    set = new Set(validateAllowedOrigins(list));
    allowlistCache.set(list, set);
  }
  return set;
}

/**
 * Checks a WebSocket upgrade's `Origin` header. Allowed:
 *
 * - no `Origin` header, unless `requireOrigin` (non-browser clients);
 * - the server's own origin: the Origin's host and port (scheme ignored,
 *   case-insensitive, default port of its scheme when absent) equal the
 *   `Host` header's (whose absent port means the Origin's default);
 * - an origin in `allowedOrigins`, or any origin if it holds `"*"`.
 *
 * Behind a proxy that rewrites `Host`, list the public origin in
 * `allowedOrigins`. Throws a `TypeError` for an entry of `allowedOrigins`
 * that is not an origin (see {@linkcode validateAllowedOrigins}).
 *
 * @example
 * ```ts
 * import { checkOrigin } from "./admission.ts";
 * const headers = new Headers({
 *   host: "chat.example.com",
 *   origin: "https://chat.example.com",
 * });
 * checkOrigin(headers, { allowedOrigins: [], requireOrigin: false });
 * // { ok: true }
 * ```
 */
export function checkOrigin(
  headers: Headers,
  options: OriginOptions,
): OriginResult {
  const allowed = allowlist(options.allowedOrigins);
  const origin = headers.get("origin");
  if (origin === null) {
    return options.requireOrigin
      ? { ok: false, reason: "no Origin header; expected a browser's Origin" }
      : { ok: true };
  }
  if (allowed.has("*")) return { ok: true };
  let url: URL | null = null;
  try {
    url = new URL(origin);
  } catch {
    // "null" (sandboxed frames, file: pages) and garbage: allowlist only.
  }
  if (url !== null && /^(https?|wss?):$/.test(url.protocol)) {
    if (allowed.has(url.origin)) return { ok: true };
    const host = parseHost(headers.get("host"));
    if (
      host !== null && host.hostname === url.hostname &&
      (host.port ?? defaultPort(url.protocol)) ===
        (url.port || defaultPort(url.protocol))
    ) {
      return { ok: true };
    }
  } else if (allowed.has(origin)) {
    return { ok: true };
  }
  const expected = allowed.size === 0
    ? "the server's own host"
    : `the server's own host or one of ${[...allowed].join(", ")}`;
  return {
    ok: false,
    reason: `origin ${quote(origin)} is not allowed; expected ${expected}`,
  };
}

/** A `Host` header's hostname (normalized as URLs do) and explicit port. */
function parseHost(
  header: string | null,
): { hostname: string; port: string | null } | null {
  if (header === null) return null;
  const match = HOST_HEADER.exec(header.trim());
  if (match === null) return null;
  let hostname: string;
  try {
    hostname = new URL(`http://${match[1]}`).hostname;
  } catch {
    return null;
  }
  const port = match[2] === undefined ? null : String(Number(match[2]));
  return { hostname, port };
}

/**
 * The peer's address, for logs and per-address limits. With `trustProxy`,
 * the first address of `X-Forwarded-For` (if it looks like an IP address),
 * else the socket's remote address (`"unix"` or `"vsock"` for those
 * transports).
 *
 * Only trust the proxy if every request comes through it, and if it
 * *replaces* `X-Forwarded-For` (nginx: `proxy_set_header X-Forwarded-For
 * $remote_addr;`). A proxy that appends (`$proxy_add_x_forwarded_for`) leaves
 * the first entry to whatever the client claimed.
 *
 * @example
 * ```ts
 * import { clientAddress } from "./admission.ts";
 * Deno.serve((request, info) => {
 *   const ip = clientAddress(request, info, false);
 *   return new Response(ip);
 * });
 * ```
 */
export function clientAddress(
  request: Request,
  info: Deno.ServeHandlerInfo,
  trustProxy: boolean,
): string {
  if (trustProxy) {
    const forwarded = request.headers.get("x-forwarded-for");
    if (forwarded !== null) {
      const comma = forwarded.indexOf(",");
      const first = (comma === -1 ? forwarded : forwarded.slice(0, comma))
        .trim();
      if (first.length <= MAX_ADDRESS_CHARS && ADDRESS_PATTERN.test(first)) {
        return first.toLowerCase();
      }
    }
  }
  const remote = info.remoteAddr;
  return "hostname" in remote ? remote.hostname : remote.transport;
}

/** Options for {@linkcode ConnectionLimiter}; every field has a default. */
export interface ConnectionLimiterOptions {
  /** Connections in all; 0 is no cap. Default 10,000. */
  maxTotal?: number;
  /** Connections from one address; 0 is no cap. Default 20. */
  maxPerIp?: number;
}

/**
 * The outcome of {@linkcode ConnectionLimiter.tryAcquire}: a slot and the
 * function that frees it (idempotent), or which limit was hit and why. A
 * full server is HTTP 503, a greedy address 429.
 */
export type AcquireResult =
  | { ok: true; release: () => void }
  | { ok: false; limit: "total" | "per_ip"; reason: string };

/**
 * Counts open connections, in all and per address, and refuses past the
 * caps. Each slot is freed through the `release` function that acquired it,
 * which does nothing the second time, so counts never go negative however
 * often a socket reports its end.
 *
 * @example
 * ```ts
 * import { ConnectionLimiter } from "./admission.ts";
 * const limiter = new ConnectionLimiter({ maxTotal: 1000, maxPerIp: 20 });
 * const slot = limiter.tryAcquire("203.0.113.7");
 * if (!slot.ok) console.log(slot.reason); // answer 503 or 429
 * else slot.release(); // when the socket closes
 * ```
 */
export class ConnectionLimiter {
  /** Connections in all (`Infinity`: no cap). */
  readonly maxTotal: number;
  /** Connections from one address (`Infinity`: no cap). */
  readonly maxPerIp: number;
  #total = 0;
  /** Open connections by address; addresses with none are deleted. */
  #perIp = new Map<string, number>();

  /**
   * Creates a limiter; throws a `RangeError` for a cap that is not a whole
   * number >= 0.
   */
  constructor(options: ConnectionLimiterOptions = {}) {
    this.maxTotal = cap(
      "maxTotal",
      options.maxTotal ?? DEFAULT_MAX_CONNECTIONS,
    );
    this.maxPerIp = cap(
      "maxPerIp",
      options.maxPerIp ?? DEFAULT_MAX_CONNECTIONS_PER_IP,
    );
  }

  /** Open connections in all. */
  get total(): number {
    return this.#total;
  }

  /** Open connections from `ip`. */
  countFor(ip: string): number {
    return this.#perIp.get(ip) ?? 0;
  }

  /** Takes a slot for `ip`, or says which cap refused it. */
  tryAcquire(ip: string): AcquireResult {
    if (this.#total >= this.maxTotal) {
      return {
        ok: false,
        limit: "total",
        reason:
          `server is full (${this.maxTotal} connections); try again later`,
      };
    }
    const held = this.#perIp.get(ip) ?? 0;
    if (held >= this.maxPerIp) {
      return {
        ok: false,
        limit: "per_ip",
        reason:
          `too many connections from your address (${this.maxPerIp}); close some before opening more`,
      };
    }
    this.#total++;
    this.#perIp.set(ip, held + 1);
    let released = false;
    const release = (): void => {
      if (released) return;
      released = true;
      this.#release(ip);
    };
    return { ok: true, release };
  }

  #release(ip: string): void {
    this.#total--;
    const held = this.#perIp.get(ip)!;
    if (held <= 1) this.#perIp.delete(ip);
    else this.#perIp.set(ip, held - 1);
  }
}

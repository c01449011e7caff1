/**
 * Who may connect, decided before any upgrade ({@linkcode Admission}): not
 * while the server stops; an allowed `Origin` (so that other sites cannot
 * open sockets with a visitor's cookies: cross-site WebSocket hijacking); a
 * valid room and resume point; a valid token or name; a name free in its
 * room, or taken over from the peer's own older connection; and a
 * connection slot, within the caps in all and per address (the client's
 * address read behind a proxy too).
 *
 * Before any of that an upgrade waits for its turn, when the server paces
 * upgrades (pacer.ts): one a turn, so that a join storm cannot starve the
 * chat already going on.
 *
 * A refusal is data ({@linkcode Refusal}); the server answers it over HTTP.
 * The same checks answer a dry run ({@linkcode Admission.check}): what an
 * upgrade would get, with nothing reserved. The rules are functions of what
 * they are given, so each is testable without sockets.
 *
 * @module
 */

import { tokenFromRequest, verifyToken } from "./auth.ts";
import { type Client, newClientId } from "./client.ts";
import {
  type ClaimResult,
  EngineUnavailable,
  memberOwner,
  type MemberRef,
} from "./engine.ts";
import {
  type Newcomer,
  newSessionToken,
  sessionHash as sha256Hex,
} from "./connection.ts";
import {
  CloseCode,
  DEFAULT_ROOM,
  parseSince,
  validateRoomName,
  validateUsername,
} from "./protocol.ts";
import type { Pace, UpgradePacer } from "./pacer.ts";
import type { Room, Rooms } from "./room.ts";

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

/** A refused upgrade: the HTTP answer, and why as the metrics count it. */
export interface Refusal {
  /** The HTTP status: 4xx for the peer's mistake, 503 when the server is full. */
  status: number;
  /** The `reason` label of `hubchat_rejected_upgrades_total`. */
  reason: string;
  /** What was wrong and what was expected, for the peer. */
  text: string;
  /** The `error` code of a JSON body; without one the body is plain text. */
  error?: string;
}

/** One step of admission: its result, or the refusal that ends admission. */
export type Verdict<T> = { ok: true; value: T } | {
  ok: false;
  refusal: Refusal;
};

/** Refusal of every upgrade once the server is stopping. */
const SHUTTING_DOWN: Refusal = {
  status: 503,
  reason: "shutdown",
  text: "server shutting down",
};

/**
 * The peer closed its connection before it was upgraded (while it waited
 * for its turn, say). Nobody reads the answer; the status is nginx's
 * "client closed request", for logs and metrics.
 */
const PEER_GONE: Refusal = {
  status: 499,
  reason: "peer_gone",
  text: "the client closed the connection before it was upgraded",
};

function refused(refusal: Refusal): { ok: false; refusal: Refusal } {
  return { ok: false, refusal };
}

/** What the route already read from an upgrade, so nothing is read twice. */
export interface UpgradeContext {
  /** The peer's address ({@linkcode clientAddress}). */
  ip: string;
  /** The query of the request's URL. */
  query: URLSearchParams;
}

/** Options for {@linkcode Admission}. */
export interface AdmissionOptions {
  /** The rooms peers join: the room is opened and the name checked here. */
  rooms: Rooms;
  /** The key tokens are verified with; null or absent: no token needed. */
  authKey?: CryptoKey | null;
  /**
   * Which origins may open sockets; validate the list first
   * ({@linkcode validateAllowedOrigins}). Default: the page's own only.
   */
  origins?: OriginOptions;
  /** Counts connections against the caps. Default: the default caps. */
  limiter?: ConnectionLimiter;
  /** The session secret of the connection a client is, for takeovers. */
  sessionOf?: (client: Client) => string | undefined;
  /** True once the server is stopping: every upgrade is then refused. */
  isShuttingDown?: () => boolean;
  /**
   * Paces upgrades: each waits here for its turn before any check. The
   * owner closes it when it stops. Default: none, every upgrade at once.
   */
  pacer?: UpgradePacer;
}

/** A peer that may connect: who, where, and the slot it holds. */
export interface Admittance extends Newcomer {
  /** The subprotocol to answer with, when the peer offered hubchat's. */
  protocol: string | undefined;
  /** Gives back the slot and the room when the upgrade fails after all. */
  cancel(): void;
}

/**
 * Decides who may connect, before any upgrade: its turn (when paced); not
 * while stopping; an allowed origin; a valid room and resume point; a
 * valid token or name; a name free in the room (or taken over from an
 * older connection that presents its session); a room and a connection
 * slot to spare.
 *
 * Invariant: from the end of its last await to the end of `admit`, nothing
 * awaits, so nobody can take the name or drop the room between the checks
 * and the caller's reserve, if the caller reserves in the same turn.
 * `check` runs the same checks as a dry run and gives everything back in
 * that turn.
 *
 * @example
 * ```ts
 * import { Admission } from "./admission.ts";
 * import { Rooms } from "./room.ts";
 * const rooms = new Rooms();
 * const admission = new Admission({ rooms });
 * const request = new Request("http://127.0.0.1/ws?username=ann");
 * const query = new URL(request.url).searchParams;
 * const verdict = await admission.admit(request, { ip: "127.0.0.1", query });
 * if (verdict.ok) verdict.value.cancel(); // or upgrade, then reserve
 * rooms.close(1001, "done");
 * ```
 */
export class Admission {
  #rooms: Rooms;
  #authKey: CryptoKey | null;
  #originPolicy: OriginOptions;
  #limiter: ConnectionLimiter;
  #sessionOf: (client: Client) => string | undefined;
  #isShuttingDown: () => boolean;
  #pacer: UpgradePacer | undefined;

  /** Creates the policy from settings already checked. */
  constructor(options: AdmissionOptions) {
    this.#rooms = options.rooms;
    this.#authKey = options.authKey ?? null;
    this.#originPolicy = options.origins ?? SAME_ORIGIN_ONLY;
    this.#limiter = options.limiter ?? new ConnectionLimiter();
    this.#sessionOf = options.sessionOf ?? noSession;
    this.#isShuttingDown = options.isShuttingDown ?? notShuttingDown;
    this.#pacer = options.pacer;
  }

  /**
   * Admits a peer or says why not; upgrade and reserve in the same turn.
   * With a pacer, the peer first waits for its turn; one that leaves while
   * it waits (its request's signal aborts) is refused, and takes no turn.
   */
  async admit(
    request: Request,
    context: UpgradeContext,
  ): Promise<Verdict<Admittance>> {
    if (this.#pacer !== undefined) {
      const pace = await this.#pacer.take(context.ip, request.signal);
      if (pace !== "go") return refused(this.#paceRefusal(pace));
    }
    return await this.#decide(request, context, { dryRun: false });
  }

  /**
   * A dry run of {@linkcode Admission.admit}: the same checks and the same
   * refusal an upgrade would get now, with nothing kept. No slot is held
   * and no room is left open afterwards, and an older connection the
   * request's session would take over is not closed (its name counts as
   * free, as it would be for the upgrade).
   *
   * @example
   * ```ts
   * import { Admission } from "./admission.ts";
   * import { Rooms } from "./room.ts";
   * const rooms = new Rooms();
   * const admission = new Admission({ rooms });
   * const request = new Request("http://127.0.0.1/ws?username=ann");
   * const query = new URL(request.url).searchParams;
   * const verdict = await admission.check(request, { ip: "127.0.0.1", query });
   * console.log(verdict.ok); // true: an upgrade would be admitted
   * rooms.close(1001, "done");
   * ```
   */
  async check(
    request: Request,
    context: UpgradeContext,
  ): Promise<Verdict<void>> {
    // Refused by the pacer, the upgrade would not get as far as the checks.
    const pace = this.#pacer?.refusalFor(context.ip) ?? null;
    if (pace !== null) return refused(this.#paceRefusal(pace));
    const verdict = await this.#decide(request, context, { dryRun: true });
    if (!verdict.ok) return verdict;
    // In the same turn as the checks: nothing was held across an await.
    verdict.value.cancel();
    return { ok: true, value: undefined };
  }

  /** Why an upgrade that did not get its turn is refused. */
  #paceRefusal(pace: Exclude<Pace, "go">): Refusal {
    const pacer = this.#pacer!;
    switch (pace) {
      case "closed":
        return SHUTTING_DOWN;
      case "gone":
        return PEER_GONE;
      case "full":
        return {
          status: 503,
          reason: "limit_waiting",
          text:
            `too many connections are waiting to be admitted (${pacer.maxWaiting}); try again shortly`,
        };
      case "full_key":
        return {
          status: 429,
          reason: "limit_per_ip",
          text:
            `too many connections from your address are waiting to be admitted (${pacer.maxWaitingPerKey}); wait for them before opening more`,
        };
    }
  }

  /** The checks of an upgrade; a dry run closes no older connection. */
  async #decide(
    request: Request,
    context: UpgradeContext,
    { dryRun }: { dryRun: boolean },
  ): Promise<Verdict<Admittance>> {
    if (this.#isShuttingDown()) return refused(SHUTTING_DOWN);
    const origin = checkOrigin(request.headers, this.#originPolicy);
    if (!origin.ok) {
      return refused({ status: 403, reason: "origin", text: origin.reason });
    }
    const wanted = requestedRoom(context.query);
    if (!wanted.ok) return wanted;
    // The token and the subprotocol to answer with, read once.
    const presented = tokenFromRequest(request);
    const identity = await identify(context.query, {
      token: presented.token,
      authKey: this.#authKey,
    });
    if (!identity.ok) return identity;
    let room: Room | null;
    try {
      room = await this.#rooms.ready(wanted.value.room);
    } catch (error) {
      if (!(error instanceof EngineUnavailable)) throw error;
      return refused(STORE_UNAVAILABLE);
    }
    if (room === null) {
      return refused({
        status: 503,
        reason: "room_limit",
        text: "the server has as many rooms open as it allows",
      });
    }
    const newcomer = {
      id: newClientId(),
      session: newSessionToken(),
    };
    const claimed = await this.#claim(room, {
      identity: identity.value,
      session: context.query.get("session"),
      newcomer,
      dryRun,
    });
    if (!claimed.ok) {
      this.#rooms.release(room);
      return claimed;
    }
    const rooms = this.#rooms;
    const engine = rooms.engine;
    const member = { name: claimed.value.username, owner: claimed.value.owner };
    // What a refused or cancelled upgrade gives back from here on: its
    // claim (a dry run claims nothing), and its room if nobody else is in.
    const giveBack = (): void => {
      if (!dryRun) engine.unclaim(room.name, member);
      rooms.release(room);
    };
    // From here on nothing awaits (see the class's invariant).
    if (this.#isShuttingDown()) {
      giveBack();
      return refused(SHUTTING_DOWN);
    }
    // Upgrading a request whose peer left gives a socket that never opens
    // nor closes: its slot and name would be held for good, and Deno's
    // server would never finish shutting down. (One that leaves too late to
    // be seen here is given up after OPEN_DEADLINE_MS, connection.ts.)
    if (!dryRun && request.signal.aborted) {
      giveBack();
      return refused(PEER_GONE);
    }
    const seat = this.#seat(room, {
      username: claimed.value.username,
      session: context.query.get("session"),
      dryRun,
    });
    if (!seat.ok) {
      giveBack();
      return seat;
    }
    const replaced = claimed.value.replaced;
    if (replaced !== undefined && !dryRun) engine.takeOver(room.name, replaced);
    const slot = this.#limiter.tryAcquire(context.ip);
    if (!slot.ok) {
      giveBack();
      return refused({
        status: slot.limit === "total" ? 503 : 429,
        reason: `limit_${slot.limit}`,
        text: slot.reason,
      });
    }
    return {
      ok: true,
      value: {
        ip: context.ip,
        id: newcomer.id,
        session: newcomer.session,
        username: claimed.value.username,
        room,
        since: wanted.value.since,
        epoch: context.query.get("epoch") ?? undefined,
        protocol: presented.protocol ?? undefined,
        release: slot.release,
        cancel(): void {
          slot.release();
          giveBack();
        },
      },
    };
  }

  /**
   * Claims the name across nodes, when the engine shares rooms with other
   * nodes: the one asked for, or a guest name nobody holds. One process
   * decides names in the room alone ({@linkcode Admission.#seat}).
   */
  async #claim(
    room: Room,
    asked: {
      identity: string | null;
      session: string | null;
      newcomer: { id: string; session: string };
      dryRun: boolean;
    },
  ): Promise<
    Verdict<{ username: string; owner: string; replaced?: MemberRef }>
  > {
    const engine = this.#rooms.engine;
    const owner = memberOwner(engine.nodeId, asked.newcomer.id);
    if (!engine.shared) {
      return {
        ok: true,
        value: { username: asked.identity ?? guestName(room), owner },
      };
    }
    const [sessionHash, presented] = await Promise.all([
      sha256Hex(asked.newcomer.session),
      asked.session === null ? null : sha256Hex(asked.session),
    ]);
    for (let tries = 0; tries < GUEST_TRIES; tries++) {
      const username = asked.identity ?? guestName(room);
      let result: ClaimResult;
      try {
        result = await engine.claim(room.name, {
          member: { name: username, owner },
          sessionHash,
          presented,
          peek: asked.dryRun,
        });
      } catch (error) {
        if (!(error instanceof EngineUnavailable)) throw error;
        return refused(STORE_UNAVAILABLE);
      }
      if (result.claimed) {
        return {
          ok: true,
          value: { username, owner, replaced: result.replaced },
        };
      }
      if (asked.identity !== null) return refused(nameTaken(username, room));
    }
    return refused({
      status: 503,
      reason: "username_taken",
      text: "no free guest name was found; pick a name",
    });
  }

  /**
   * Settles the name in the room on this node: free here, or taken over
   * when the connection holding it is the peer's own, by its session. A
   * dry run leaves the older connection open and counts its name as free.
   */
  #seat(
    room: Room,
    asked: { username: string; session: string | null; dryRun: boolean },
  ): Verdict<void> {
    const { username, session, dryRun } = asked;
    const holder = room.holder(username);
    const takesOver = holder !== undefined && session !== null &&
      this.#sessionOf(holder) === session;
    if (takesOver && !dryRun) {
      // The same person reconnecting before their old socket timed out:
      // the old connection ends (and leaves) before the new one joins.
      holder.close(CloseCode.replaced, "replaced by a newer connection");
    }
    if (room.isTaken(username) && !(dryRun && takesOver)) {
      return refused(nameTaken(username, room));
    }
    return { ok: true, value: undefined };
  }
}

/** The 409 for a name someone else holds in the room. */
function nameTaken(username: string, room: Room): Refusal {
  return {
    status: 409,
    reason: "username_taken",
    error: "username_taken",
    text:
      `"${username}" is already online in #${room.name}; choose another name`,
  };
}

/**
 * Guest names tried before giving up: 65,536 of them, so a second try all
 * but never fails unless a room holds tens of thousands of guests.
 */
const GUEST_TRIES = 5;

/** The chat store (Redis) cannot be reached: nobody can join now. */
const STORE_UNAVAILABLE: Refusal = {
  status: 503,
  reason: "store_unavailable",
  text: "the chat store is unreachable; try again shortly",
};

/** The default origin policy: the page's own origin, or no Origin header. */
const SAME_ORIGIN_ONLY: OriginOptions = {
  allowedOrigins: [],
  requireOrigin: false,
};

/** Without a session table, no connection can be taken over. */
function noSession(): undefined {
  return undefined;
}

/** Without a way to stop, the server is never shutting down. */
function notShuttingDown(): boolean {
  return false;
}

/** Where a peer asked to be: a room, and the last message id it saw there. */
export interface RoomRequest {
  /** The room's name, checked and normalized. */
  room: string;
  /** The last message id the peer saw in it; undefined for none. */
  since: number | undefined;
}

/**
 * Reads `?room=` (default "lobby") and `?since=` from an upgrade's query.
 *
 * @example
 * ```ts
 * import { requestedRoom } from "./admission.ts";
 * requestedRoom(new URLSearchParams("room=dev&since=42"));
 * // { ok: true, value: { room: "dev", since: 42 } }
 * ```
 */
export function requestedRoom(query: URLSearchParams): Verdict<RoomRequest> {
  const room = validateRoomName(query.get("room") || DEFAULT_ROOM);
  if (!room.ok) {
    return refused({
      status: 400,
      reason: "invalid_room",
      error: room.code,
      text: room.text,
    });
  }
  const sinceParam = query.get("since");
  if (sinceParam === null || sinceParam === "") {
    return { ok: true, value: { room: room.value, since: undefined } };
  }
  const since = parseSince(sinceParam);
  if (!since.ok) {
    return refused({
      status: 400,
      reason: "invalid_since",
      error: since.code,
      text: since.text,
    });
  }
  return { ok: true, value: { room: room.value, since: since.value } };
}

/** Options for {@linkcode identify}. */
export interface IdentifyOptions {
  /** The token the peer presented, if any. */
  token: string | null;
  /** The key tokens are verified with; null when none is required. */
  authKey: CryptoKey | null;
}

/**
 * Decides who the peer is: the verified token's subject when the server
 * requires tokens (`?username=` cannot override it), else the name the
 * query asks for, or null for "make up a guest name".
 *
 * @example
 * ```ts
 * import { identify } from "./admission.ts";
 * const query = new URLSearchParams("username=ann");
 * await identify(query, { token: null, authKey: null });
 * // { ok: true, value: "ann" }
 * ```
 */
export async function identify(
  query: URLSearchParams,
  options: IdentifyOptions,
): Promise<Verdict<string | null>> {
  if (options.authKey !== null) {
    if (options.token === null) {
      return unauthorized(
        'a token is required; pass ?token=JWT or the subprotocols ["hubchat", "auth.JWT"]',
      );
    }
    const verified = await verifyToken(options.token, options.authKey);
    if (!verified.ok) return unauthorized(verified.reason);
    const checked = validateUsername(verified.claims.sub);
    if (!checked.ok) {
      return unauthorized(
        `the token's subject is not a valid username: ${checked.text}`,
      );
    }
    return { ok: true, value: checked.value };
  }
  const requested = query.get("username");
  if (requested === null || requested.trim() === "") {
    return { ok: true, value: null };
  }
  const checked = validateUsername(requested);
  if (!checked.ok) {
    return refused({
      status: 400,
      reason: "invalid_username",
      error: checked.code,
      text: checked.text,
    });
  }
  return { ok: true, value: checked.value };
}

function unauthorized(text: string): { ok: false; refusal: Refusal } {
  return refused({
    status: 401,
    reason: "unauthorized",
    error: "unauthorized",
    text,
  });
}

/** Picks a `guest-XXXX` name nobody in the room holds. */
function guestName(room: Room): string {
  for (;;) {
    const suffix = Math.floor(Math.random() * 0x10000).toString(16);
    const name = `guest-${suffix.padStart(4, "0")}`;
    if (!room.isTaken(name)) return name;
  }
}

/** `host` or `host:port`, IPv6 hosts in brackets, as in a `Host` header. */
const HOST_HEADER = /^(\[[0-9A-Fa-f:.]+\]|[^\s:\[\]\/@]+)(?::(\d{1,5}))?$/;

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
 * - no `Origin` header, unless `requireOrigin` (non-browser clients); with
 *   `requireOrigin`, still a request whose `Sec-Fetch-Site` is
 *   `same-origin`: a browser's own `fetch` of a GET carries no `Origin`
 *   but says so there, where no page can forge it (the page asks `/ws`
 *   that way, see {@linkcode Admission.check});
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
    if (!options.requireOrigin) return { ok: true };
    if (headers.get("sec-fetch-site") === "same-origin") return { ok: true };
    return {
      ok: false,
      reason: "no Origin header; expected a browser's Origin",
    };
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
 * Longest address accepted from `X-Forwarded-For`: the longest textual IPv6
 * address (IPv4-mapped, `ffff:ffff:...:255.255.255.255`) is 45 characters.
 */
const MAX_ADDRESS_CHARS = 45;

/** Characters of an IPv4 or IPv6 address (no zone, no port). */
const ADDRESS_PATTERN = /^[0-9A-Fa-f:.]+$/;

/** Options for {@linkcode clientAddress}. */
export interface ClientAddressOptions {
  /** Read `X-Forwarded-For`: every request comes through a proxy. */
  trustProxy?: boolean;
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
 *   const ip = clientAddress(request, info, { trustProxy: false });
 *   return new Response(ip);
 * });
 * ```
 */
export function clientAddress(
  request: Request,
  info: Deno.ServeHandlerInfo,
  options: ClientAddressOptions = {},
): string {
  if (options.trustProxy) {
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

/** A connection cap: 0 means none, anything else a whole number >= 1. */
function cap(name: string, value: number): number {
  if (value === 0) return Infinity;
  if (!(value > 0 && value < Infinity) || !Number.isInteger(value)) {
    throw new RangeError(`${name} is ${value}; expected a whole number > 0`);
  }
  return value;
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

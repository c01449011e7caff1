/**
 * The HTTP edge: routes and wiring. `/ws` asks admission.ts who may connect,
 * upgrades, and hands the socket to connection.ts, which reads it; the other
 * routes serve the page, health, rooms and metrics. Upgrades wait for their
 * turn first (pacer.ts), one per event-loop turn. Shutdown stops
 * admission, closes every room and waits for the sockets. Startable from
 * tests on port 0; `main.ts` adds flags and signals.
 *
 * @module
 */

import {
  Admission,
  clientAddress,
  type ClientAddressOptions,
  ConnectionLimiter,
  type OriginOptions,
  type Refusal,
  type UpgradeContext,
  validateAllowedOrigins,
} from "./admission.ts";
import { importSecret } from "./auth.ts";
import type { Client } from "./client.ts";
import { Connections } from "./connection.ts";
import { LocalEngine, type RoomEngine } from "./engine.ts";
import {
  DEFAULT_HISTORY_LIMIT,
  type FsyncMode,
  History,
} from "./store/history.ts";
import type { HistoryFile } from "./store/history_file.ts";
import { type Logger, silentLogger } from "./log.ts";
import {
  type Counter,
  Health,
  PROMETHEUS_CONTENT_TYPE,
  ServerMetrics,
} from "./metrics.ts";
import { type PacerOptions, UpgradePacer } from "./pacer.ts";
import { CloseCode } from "./protocol.ts";
import { Rooms } from "./room.ts";
import { DEFAULT_UPLOAD_RATE, Files } from "./files/http.ts";
import type { LocalLookup } from "./files/sessions.ts";
import {
  DEFAULT_FILES_MAX_BYTES,
  DEFAULT_MAX_FILE_SIZE,
} from "./store/files.ts";

/** Port when none is given: the one gorilla's chat example uses. */
export const DEFAULT_PORT = 8080;

/**
 * Address when none is given: loopback, so a first run is not on the
 * network until someone says so.
 */
export const DEFAULT_HOST = "127.0.0.1";

/**
 * Seconds without a pong before a peer counts as dead and is dropped (and
 * announced as a leave). Long enough for a phone waking from sleep.
 */
export const DEFAULT_IDLE_TIMEOUT_SECONDS = 30;

/** Longest wait at shutdown for clients to finish their closing handshake. */
export const SHUTDOWN_GRACE_MS = 3000;

/** Options for {@linkcode startServer}; every one has a safe default. */
export interface ServerOptions {
  /** Port to listen on; 0 picks a free one. Default 8080. */
  port?: number;
  /** Address to listen on. Default "127.0.0.1". */
  hostname?: string;
  /** PEM certificate chain; with `key`, serves https and wss. */
  cert?: string;
  /** PEM private key for `cert`. */
  key?: string;
  /** Largest frame a client may send, in bytes. Default 8 KiB. */
  maxFrameBytes?: number;
  /** Seconds without a pong before a peer is dropped. Default 30. */
  idleTimeoutSeconds?: number;
  /** Most messages a client's outbox holds before eviction. Default 256. */
  maxQueue?: number;
  /** `bufferedAmount` above which a client counts as backed up. */
  highWaterBytes?: number;
  /** Origins allowed besides the page's own (`*` allows any). */
  allowedOrigins?: string[];
  /** Refuse upgrades that carry no Origin header. Default false. */
  requireOrigin?: boolean;
  /** HS256 secret; when set, every client needs a token (`sub` = name). */
  authSecret?: string;
  /** Connections in all; 0 means no cap. Default 10,000. */
  maxConnections?: number;
  /** Connections from one address; 0 means no cap. Default 20. */
  maxConnectionsPerIp?: number;
  /** Take the client's address from the first X-Forwarded-For entry. */
  trustProxy?: boolean;
  /** Messages a client may send per second; 0 means no limit. Default 10. */
  ratePerSecond?: number;
  /** Messages a client may send at once above the rate. Default 20. */
  burst?: number;
  /** Where connect, disconnect and eviction lines go. Default: nowhere. */
  logger?: Logger;
  /** History file; ":memory:" (the default) keeps none across restarts. */
  data?: string;
  /**
   * When a stored line is made durable against a power loss: `"periodic"`
   * (the default, within a second) or `"always"` (before it is sent).
   */
  fsync?: FsyncMode;
  /**
   * Wraps the file history writes through (tests use it to make the store
   * fail on purpose).
   */
  wrapHistoryFile?: (file: HistoryFile) => HistoryFile;
  /** Messages kept per room; 0 keeps none and stores nothing. Default 100. */
  historyLimit?: number;
  /** Rooms open at once. Default 1000. */
  maxRooms?: number;
  /** Members above which a room sends its count, not each join. Default 100. */
  largeRoom?: number;
  /**
   * A Redis URL (`redis://` or `rediss://`, with a password and database if
   * needed): rooms, history and presence are shared with every hubchat
   * started with the same one. Without it, one process, history in a file.
   */
  redis?: string;
  /** Let several processes listen on one port (the kernel spreads them). */
  reusePort?: boolean;
  /**
   * Where shared files live (every node with the same `redis` must share
   * it). Default: `files` beside `data`; with `data` in memory, a
   * temporary directory removed at shutdown.
   */
  files?: string;
  /** Largest file a client may upload, in bytes. Default 10 MiB. */
  maxFileSize?: number;
  /** Bytes all files may take together; past it the oldest go. 1 GiB. */
  filesMaxBytes?: number;
  /** Bytes a user may upload per minute; 0 for no limit. Default 50 MiB. */
  uploadRate?: number;
  /**
   * How upgrades are paced: how many start per event-loop turn, how many
   * may wait, and (tests) how turns are scheduled. Default: pacer.ts's
   * constants; the per-address cap of waiters is `maxConnectionsPerIp`.
   */
  pacing?: Omit<PacerOptions, "maxWaitingPerKey">;
}

/**
 * {@linkcode startServer} could not listen at `hostname` and `port`: the
 * port is taken, the name does not resolve, the address is not this
 * machine's, or the port needs privileges. `cause` is Deno's error
 * (`Deno.errors.AddrInUse`, `AddrNotAvailable`, `PermissionDenied`, or an
 * `Error` from the name lookup); a command line words it (main.ts does).
 *
 * @example
 * ```ts
 * import { ListenError, startServer } from "./server.ts";
 * const first = await startServer({ port: 0 });
 * try {
 *   await startServer({ port: first.port });
 * } catch (error) {
 *   console.log(error instanceof ListenError); // true: the port is taken
 * }
 * await first.shutdown();
 * ```
 */
export class ListenError extends Error {
  /** The address it was asked to listen on. */
  readonly hostname: string;
  /** The port it was asked to listen on. */
  readonly port: number;

  /** Creates the error; `cause` is what `Deno.serve` threw. */
  constructor(hostname: string, port: number, cause: unknown) {
    super(
      `cannot listen on ${hostname} port ${port}: ${
        (cause as Error)?.message ?? cause
      }`,
      { cause },
    );
    this.name = "ListenError";
    this.hostname = hostname;
    this.port = port;
  }
}

/**
 * {@linkcode startServer}'s `cert` and `key` cannot serve TLS: no
 * certificate or no key in the PEM text, or a key that is not the
 * certificate's. `cause` is Deno's error; a command line words it.
 *
 * @example
 * ```ts
 * import { startServer, TlsError } from "./server.ts";
 * try {
 *   await startServer({ port: 0, cert: "not PEM", key: "not PEM" });
 * } catch (error) {
 *   console.log(error instanceof TlsError); // true
 * }
 * ```
 */
export class TlsError extends Error {
  /** Creates the error; `cause` is what `Deno.serve` threw. */
  constructor(cause: unknown) {
    super(
      `the TLS certificate and key cannot be used: ${
        (cause as Error)?.message ?? cause
      }`,
      { cause },
    );
    this.name = "TlsError";
  }
}

/**
 * True when `Deno.serve`'s error is about the TLS certificate or key, not
 * about the address: Deno reports PEM text without a certificate or key as
 * `InvalidData`, and a key that is not the certificate's as a plain error
 * naming `KeyMismatch`.
 */
function isTlsProblem(error: unknown): boolean {
  return error instanceof Deno.errors.InvalidData ||
    (error instanceof Error &&
      /KeyMismatch|certificate|private key/i.test(error.message));
}

/** A running chat server. */
export interface ChatServer {
  /** Base URL, like `http://127.0.0.1:8080/`, with the real port. */
  readonly url: string;
  /** The port it listens on (the real one when 0 was asked for). */
  readonly port: number;
  /** The address it listens on. */
  readonly hostname: string;
  /** Every room. */
  readonly rooms: Rooms;
  /** The counters `/metrics` shows. */
  readonly metrics: ServerMetrics;
  /**
   * Stops accepting, closes every client with 1001 "server shutting down",
   * waits (at most {@linkcode SHUTDOWN_GRACE_MS}) for the closes, then stops.
   */
  shutdown(): Promise<void>;
}

/**
 * The page `/` serves, read by the first {@linkcode startServer} rather than
 * when this module loads, so that a missing read permission is a start-up
 * error the command line can word, not a crash at import.
 */
let homePage: Uint8Array<ArrayBuffer> = new Uint8Array();

/** Where the page `/` serves is read from. */
const HOME_PAGE = new URL("./home.html", import.meta.url);

function textResponse(
  status: number,
  text: string,
  headers: Record<string, string> = {},
): Response {
  return new Response(text + "\n", {
    status,
    headers: { "content-type": "text/plain; charset=utf-8", ...headers },
  });
}

function methodNotAllowed(allow: string): Response {
  return textResponse(405, `method not allowed; use ${allow}`, { allow });
}

/** A refusal as HTTP: a short JSON error body, or plain text. */
function refusalResponse(refusal: Refusal): Response {
  if (refusal.error === undefined) {
    return textResponse(refusal.status, refusal.text);
  }
  return Response.json(
    { error: refusal.error, message: refusal.text },
    { status: refusal.status },
  );
}

/** What the routes of a running server use. */
interface Parts {
  rooms: Rooms;
  metrics: ServerMetrics;
  health: Health;
  admission: Admission;
  connections: Connections;
  logger: Logger;
  idleTimeout: number;
  addressOptions: ClientAddressOptions;
  files: Files;
}

/** Answers one HTTP request. */
function route(
  parts: Parts,
  request: Request,
  info: Deno.ServeHandlerInfo,
): Response | Promise<Response> {
  const url = new URL(request.url);
  const pathname = url.pathname;
  const method = request.method;
  const readOnly = method === "GET" || method === "HEAD";
  switch (pathname) {
    case "/":
      if (!readOnly) return methodNotAllowed("GET, HEAD");
      return new Response(method === "HEAD" ? null : homePage, {
        headers: { "content-type": "text/html; charset=utf-8" },
      });
    case "/ws":
      if (method !== "GET") return methodNotAllowed("GET");
      return upgrade(parts, request, { info, query: url.searchParams });
    case "/healthz":
      if (!readOnly) return methodNotAllowed("GET, HEAD");
      return Response.json(parts.health.report(parts.rooms.online), {
        status: parts.health.ok ? 200 : 503,
      });
    case "/rooms":
      if (!readOnly) return methodNotAllowed("GET, HEAD");
      return Response.json({ rooms: parts.rooms.list() });
    case "/metrics":
      if (!readOnly) return methodNotAllowed("GET, HEAD");
      return new Response(parts.metrics.render(), {
        headers: { "content-type": PROMETHEUS_CONTENT_TYPE },
      });
    default:
      if (pathname === "/files" || pathname.startsWith("/files/")) {
        return parts.files.route(request);
      }
      return textResponse(404, `no such path: ${pathname}`);
  }
}

/**
 * `/ws`: admission, then the upgrade, then the connection. Without an
 * Upgrade header it is a dry run: the same admission, nothing kept.
 */
async function upgrade(
  parts: Parts,
  request: Request,
  { info, query }: { info: Deno.ServeHandlerInfo; query: URLSearchParams },
): Promise<Response> {
  const ip = clientAddress(request, info, parts.addressOptions);
  if (request.headers.get("upgrade")?.toLowerCase() !== "websocket") {
    return await dryRun(parts, request, { ip, query });
  }
  function reject(refusal: Refusal): Response {
    parts.metrics.rejected.inc(refusal.reason);
    parts.logger.log("warn", "reject", {
      ip,
      status: refusal.status,
      reason: refusal.reason,
    });
    return refusalResponse(refusal);
  }
  const admitted = await parts.admission.admit(request, { ip, query });
  if (!admitted.ok) return reject(admitted.refusal);
  const peer = admitted.value;
  let upgraded;
  try {
    upgraded = Deno.upgradeWebSocket(request, {
      idleTimeout: parts.idleTimeout,
      protocol: peer.protocol,
    });
  } catch (error) {
    peer.cancel();
    return reject({
      status: 400,
      reason: "bad_handshake",
      text: `bad WebSocket handshake: ${(error as Error).message}`,
    });
  }
  // In the same turn as admission: the name is reserved before anyone
  // else can take it.
  parts.connections.accept(upgraded.socket, peer);
  return upgraded.response;
}

/**
 * `GET /ws` without an Upgrade header: answers what an upgrade with the
 * same query and headers would get now (a browser cannot read the status
 * of a refused handshake, so the page asks this way): the refusal's status
 * and body, or 426 when the upgrade would be admitted. Admission runs as a
 * dry run ({@linkcode Admission.check}): nothing is reserved, and nothing is
 * counted or logged, since no connection was attempted.
 */
async function dryRun(
  parts: Parts,
  request: Request,
  context: UpgradeContext,
): Promise<Response> {
  const verdict = await parts.admission.check(request, context);
  if (!verdict.ok) return refusalResponse(verdict.refusal);
  return textResponse(
    426,
    "this endpoint speaks WebSocket only; connect with a WebSocket client to /ws?username=NAME (an upgrade with this query would be admitted now)",
    { upgrade: "websocket" },
  );
}

/**
 * Starts a chat server and resolves once it listens.
 *
 * @example
 * ```ts
 * import { startServer } from "./server.ts";
 * const server = await startServer({ port: 0 });
 * console.log(`listening on ${server.url}`);
 * await server.shutdown();
 * ```
 */
export async function startServer(
  options: ServerOptions = {},
): Promise<ChatServer> {
  // Bad settings stop the start before anything is opened.
  if (homePage.length === 0) homePage = await Deno.readFile(HOME_PAGE);
  const origins = {
    allowedOrigins: validateAllowedOrigins(options.allowedOrigins ?? []),
    requireOrigin: options.requireOrigin ?? false,
  };
  const authKey = options.authSecret === undefined
    ? null
    : await importSecret(options.authSecret);
  const { limiter, pacer } = connectionCaps(options);
  let shuttingDown: Promise<void> | undefined;
  const isShuttingDown = (): boolean => shuttingDown !== undefined;
  const logger = options.logger ?? silentLogger;
  const health = new Health();
  const metrics: ServerMetrics = new ServerMetrics({
    connectionsOpen: () => connections.open,
    upgradesWaiting: () => pacer.waiting,
    clients: (): Iterable<Client> => rooms.clients(),
    health,
  });
  const { engine, files } = await openBackends(options, {
    health,
    metrics,
    logger,
    origins,
    isShuttingDown,
    localSession: (session) => connections.bySession(session),
  });
  const rooms: Rooms = new Rooms({
    engine,
    maxRooms: options.maxRooms,
    largeRoom: options.largeRoom,
    onBroadcast: metrics.observeBroadcast.bind(metrics),
    onRefusal: (code) => metrics.errors.inc(code),
  });
  const connections: Connections = new Connections({
    rooms,
    metrics,
    logger,
    maxFrameBytes: options.maxFrameBytes,
    ratePerSecond: options.ratePerSecond,
    burst: options.burst,
    maxQueue: options.maxQueue,
    highWaterBytes: options.highWaterBytes,
    isShuttingDown,
    files,
  });
  const admission = new Admission({
    rooms,
    authKey,
    origins,
    limiter,
    sessionOf: (client) => connections.sessionOf(client),
    isShuttingDown,
    pacer,
  });
  const parts: Parts = {
    rooms,
    metrics,
    health,
    admission,
    connections,
    logger,
    idleTimeout: options.idleTimeoutSeconds ?? DEFAULT_IDLE_TIMEOUT_SECONDS,
    addressOptions: { trustProxy: options.trustProxy ?? false },
    files,
  };

  const tls = options.cert !== undefined && options.key !== undefined
    ? { cert: options.cert, key: options.key }
    : {};
  let listener: Listener;
  try {
    listener = await Listener.start({
      port: options.port ?? DEFAULT_PORT,
      hostname: options.hostname ?? DEFAULT_HOST,
      reusePort: options.reusePort ?? false,
      tls,
      handler: (request, info) => route(parts, request, info),
      isShuttingDown,
      onFailing: failureReporter(
        { health, logger },
        "accept",
        metrics.acceptFailures,
      ),
    });
  } catch (error) {
    await files.shutdown();
    await engine.shutdown();
    throw error;
  }
  const addr = listener.addr;
  const scheme = listener.tls ? "https" : "http";
  const host = addr.hostname.includes(":")
    ? `[${addr.hostname}]`
    : addr.hostname;
  return {
    url: `${scheme}://${host}:${addr.port}/`,
    port: addr.port,
    hostname: addr.hostname,
    rooms,
    metrics,
    shutdown(): Promise<void> {
      shuttingDown ??= stop({ ...parts, pacer, engine, listener });
      return shuttingDown;
    },
  };
}

/**
 * The caps on connections, in all and per address, and the pacer of
 * upgrades; as many upgrades from one address may wait for their turn as it
 * may hold connections.
 */
function connectionCaps(
  options: ServerOptions,
): { limiter: ConnectionLimiter; pacer: UpgradePacer } {
  const limiter = new ConnectionLimiter({
    maxTotal: options.maxConnections,
    maxPerIp: options.maxConnectionsPerIp,
  });
  const pacer = new UpgradePacer({
    ...options.pacing,
    maxWaitingPerKey: limiter.maxPerIp,
  });
  return { limiter, pacer };
}

/**
 * Stops a server: refuses the upgrades still waiting for their turn (new
 * ones are refused already: shutting down is set), closes every client with
 * 1001, waits (at most {@linkcode SHUTDOWN_GRACE_MS}) for the closes, then
 * stops the files, the engine and the listener.
 */
async function stop(running: {
  pacer: UpgradePacer;
  rooms: Rooms;
  connections: Connections;
  files: Files;
  engine: RoomEngine;
  listener: Listener;
}): Promise<void> {
  running.pacer.close();
  running.rooms.close(CloseCode.goingAway, "server shutting down");
  const { promise: grace, resolve: graceOver } = Promise.withResolvers<void>();
  const timer = setTimeout(graceOver, SHUTDOWN_GRACE_MS);
  await Promise.race([running.connections.closed(), grace]);
  clearTimeout(timer);
  await running.files.shutdown();
  await running.engine.shutdown();
  await running.listener.shutdown();
}

/**
 * What a part that fails and recovers (storage, accept) is told with: an
 * error counts on `failures` and marks the part `failing`; null marks it
 * fine again. Only a change of state is logged, once however many
 * failures come in between: `storage_failing` then `storage_recovered`,
 * `accept_failing` then `accept_recovered`.
 */
function failureReporter(
  { health, logger }: { health: Health; logger: Logger },
  part: "storage" | "accept",
  failures: Counter,
): (error: Error | null) => void {
  return (error) => {
    if (error !== null) failures.inc();
    if (!health.set(part, error === null ? null : "failing")) return;
    if (error === null) logger.log("info", `${part}_recovered`, {});
    else logger.log("error", `${part}_failing`, { cause: error.message });
  };
}

/** Where failures of the engine are told. */
interface EngineObservers {
  health: Health;
  metrics: ServerMetrics;
  logger: Logger;
}

/**
 * Opens where the rooms' lines and presence go: Redis, shared with every
 * node started with the same URL (its module and client are loaded only
 * then), or this process alone, with history in a file.
 */
async function openEngine(
  options: ServerOptions,
  { health, metrics, logger }: EngineObservers,
): Promise<RoomEngine> {
  if (options.redis !== undefined) {
    const { RedisEngine } = await import("./store/redis.ts");
    const engine = await RedisEngine.connect(options.redis, {
      historyLimit: options.historyLimit ?? DEFAULT_HISTORY_LIMIT,
      onConnection(up: boolean, cause?: string): void {
        if (!health.set("redis", up ? null : "disconnected")) return;
        if (up) logger.log("info", "redis_connected", {});
        else logger.log("error", "redis_disconnected", { cause });
      },
      onDelivery: (seconds) => metrics.redisDelivery.observe(seconds),
      onGapFilled: (lines) => metrics.redisGapsFilled.inc(undefined, lines),
      onNodes: (count) => metrics.redisNodes.set(count),
      onReaped(node: string, members: number): void {
        logger.log("warn", "node_reaped", { node, members });
      },
    });
    metrics.redisConnected(() => engine.connected);
    logger.log("info", "redis_connected", { node: engine.nodeId });
    return engine;
  }
  const historyOptions = {
    limit: options.historyLimit,
    fsync: options.fsync,
    wrapFile: options.wrapHistoryFile,
    onCommit: failureReporter(
      { health, logger },
      "storage",
      metrics.storageFailures,
    ),
  };
  const history = options.historyLimit === 0
    ? null
    : await History.open(options.data ?? ":memory:", historyOptions);
  return new LocalEngine({ history, logger });
}

/** What the files of a server are tied to. */
interface FilesContext {
  engine: RoomEngine;
  origins: OriginOptions;
  logger: Logger;
  isShuttingDown: () => boolean;
  localSession: LocalLookup;
}

/**
 * Opens the engine ({@linkcode openEngine}), then the files
 * ({@linkcode openFiles}); the engine is shut down again if the files
 * cannot be opened.
 */
async function openBackends(
  options: ServerOptions,
  context: EngineObservers & Omit<FilesContext, "engine">,
): Promise<{ engine: RoomEngine; files: Files }> {
  const engine = await openEngine(options, context);
  try {
    return { engine, files: await openFiles(options, { ...context, engine }) };
  } catch (error) {
    await engine.shutdown();
    throw error;
  }
}

/**
 * Opens the server's files: in `files`, or beside `data`, or (history in
 * memory) in a temporary directory removed at shutdown. A file's line has
 * left history once the room keeps `historyLimit` lines, all newer; with
 * no history (0) files go only when storage is full.
 */
async function openFiles(
  options: ServerOptions,
  context: FilesContext,
): Promise<Files> {
  const data = options.data ?? ":memory:";
  const beside = data === ":memory:" ? undefined : `${dirname(data)}/files`;
  const dir = options.files ?? beside ??
    await Deno.makeTempDir({ prefix: "hubchat-files-" });
  const limit = options.historyLimit ?? DEFAULT_HISTORY_LIMIT;
  const engine = context.engine;
  return await Files.open({
    dir,
    removeOnShutdown: options.files === undefined && beside === undefined,
    maxFileSize: options.maxFileSize ?? DEFAULT_MAX_FILE_SIZE,
    maxBytes: options.filesMaxBytes ?? DEFAULT_FILES_MAX_BYTES,
    uploadRate: options.uploadRate ?? DEFAULT_UPLOAD_RATE,
    origins: context.origins,
    localSession: context.localSession,
    engine,
    lineKept(room: string, lineId: number): boolean | undefined {
      if (limit === 0) return undefined;
      const recent = engine.recent(room);
      if (recent.length === 0) return undefined;
      return recent.length < limit || lineId >= recent[0].id;
    },
    isShuttingDown: context.isShuttingDown,
    logger: context.logger,
  });
}

/** The folder of a path: `./data` for `./data/hubchat.kv`. */
function dirname(path: string): string {
  const slash = path.lastIndexOf("/");
  if (slash === -1) return ".";
  return slash === 0 ? "/" : path.slice(0, slash);
}

/**
 * The first wait before serving again after accepting failed: soon, since
 * descriptors come back as soon as connections close.
 */
export const RELISTEN_FIRST_MS = 100;

/** The longest wait between two tries to serve again. */
export const RELISTEN_MAX_MS = 2000;

/**
 * How long a new listener must serve without failing before accepting
 * counts as recovered (and says so once).
 */
export const RELISTEN_STEADY_MS = 1000;

/** Options of {@linkcode Listener.start}. */
interface ListenerOptions {
  port: number;
  hostname: string;
  reusePort: boolean;
  tls: { cert?: string; key?: string };
  handler: Deno.ServeHandler<Deno.NetAddr>;
  isShuttingDown: () => boolean;
  /**
   * Told when accepting fails (the error: descriptors ran out, say) and,
   * with null, when it works again.
   */
  onFailing: (error: Error | null) => void;
}

/**
 * `Deno.serve`, kept serving. When accepting fails (every file descriptor
 * in use: `Deno.serve` then stops for good), it is started again on the
 * same port, soon and then less often, until it serves again; open
 * connections are not touched. Only a shutdown stops it.
 */
class Listener {
  /** Where it listens (the real port when 0 was asked for). */
  readonly addr: Deno.NetAddr;
  /** True when it serves https and wss. */
  readonly tls: boolean;
  #options: ListenerOptions;
  #server: Deno.HttpServer<Deno.NetAddr>;
  #retry: ReturnType<typeof setTimeout> | undefined;
  #steady: ReturnType<typeof setTimeout> | undefined;
  #delay = RELISTEN_FIRST_MS;
  #failing = false;
  #stopped = false;

  private constructor(
    options: ListenerOptions,
    server: Deno.HttpServer<Deno.NetAddr>,
    addr: Deno.NetAddr,
  ) {
    this.#options = options;
    this.#server = server;
    this.addr = addr;
    this.tls = options.tls.cert !== undefined;
    this.#watch(server);
  }

  /** Listens; throws {@linkcode ListenError} or {@linkcode TlsError}. */
  static async start(options: ListenerOptions): Promise<Listener> {
    const { server, addr } = await Listener.#serve(options, options.port);
    return new Listener(options, server, addr);
  }

  static async #serve(
    options: ListenerOptions,
    port: number,
  ): Promise<{ server: Deno.HttpServer<Deno.NetAddr>; addr: Deno.NetAddr }> {
    const { promise: listening, resolve: onListen } = Promise.withResolvers<
      Deno.NetAddr
    >();
    let server: Deno.HttpServer<Deno.NetAddr>;
    try {
      server = Deno.serve({
        port,
        hostname: options.hostname,
        reusePort: options.reusePort,
        onListen,
        ...options.tls,
      }, options.handler);
    } catch (error) {
      // A missing --allow-net is Deno's to say, as it is.
      if (error instanceof Deno.errors.NotCapable) throw error;
      if (options.tls.cert !== undefined && isTlsProblem(error)) {
        throw new TlsError(error);
      }
      throw new ListenError(options.hostname, port, error);
    }
    return { server, addr: await listening };
  }

  /** Stops accepting and waits for the server to finish. */
  async shutdown(): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#retry);
    clearTimeout(this.#steady);
    await this.#server.shutdown();
  }

  #watch(server: Deno.HttpServer<Deno.NetAddr>): void {
    server.finished.catch((error) => {
      if (this.#stopped || this.#options.isShuttingDown()) return;
      clearTimeout(this.#steady);
      this.#failing = true;
      this.#options.onFailing(
        error instanceof Error ? error : new Error(String(error)),
      );
      this.#relistenLater();
    });
  }

  /** Tries to serve again after the current delay, then doubles it. */
  #relistenLater(): void {
    this.#retry = setTimeout(() => void this.#relisten(), this.#delay);
    this.#delay = Math.min(this.#delay * 2, RELISTEN_MAX_MS);
  }

  async #relisten(): Promise<void> {
    this.#retry = undefined;
    if (this.#stopped) return;
    try {
      const { server } = await Listener.#serve(this.#options, this.addr.port);
      this.#server = server;
      this.#watch(server);
      this.#steady = setTimeout(() => {
        this.#steady = undefined;
        this.#delay = RELISTEN_FIRST_MS;
        if (this.#failing) {
          this.#failing = false;
          this.#options.onFailing(null);
        }
      }, RELISTEN_STEADY_MS);
    } catch {
      // Not even the listening socket could be made: try again later.
      this.#relistenLater();
    }
  }
}

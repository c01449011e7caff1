/**
 * The Redis engine: any number of hubchat processes (nodes) serve the same
 * rooms, as if they were one server. The one module that talks to Redis;
 * it loads the official client, `npm:@redis/client`, only when a server is
 * started with `--redis`.
 *
 * How a room is kept in Redis (`R` is the room's name, `N` a node's id):
 *
 * | key                        | what                                                      |
 * | -------------------------- | --------------------------------------------------------- |
 * | `hubchat:room:R:meta`      | hash: `epoch` (the store's life), `seq` (last line id)    |
 * | `hubchat:room:R:lines`     | stream: line `id` at `id-0`; the last max(history, 1,000) |
 * | `hubchat:room:R:members`   | hash: name → owner, for everyone online on any node       |
 * | `hubchat:room:R:names`     | hash: name → "owner sessionhash", the claims              |
 * | `hubchat:room:R` (channel) | every event of the room, in one order                     |
 * | `hubchat:rooms`            | set: rooms with lines or members                          |
 * | `hubchat:node:N`           | a node's heartbeat, expiring unless renewed               |
 * | `hubchat:node:N:rooms`     | set: rooms where node N has members                       |
 * | `hubchat:nodes`            | set: nodes that have said they are alive                  |
 * | `hubchat:node:N` (channel) | what other nodes ask of node N (a takeover)               |
 *
 * A line is stored and published in one atomic script: it takes the next
 * id, appends to the stream (trimmed to the history limit, but never below
 * {@linkcode MIN_STREAM_LINES}, what a gap is filled from) and publishes,
 * so ids increase strictly across nodes, and no node sees a line Redis has
 * not stored. A node hears a room's channel in order; when it sees a gap in
 * ids (a message lost, a reconnect), it fills it from the stream before it
 * delivers anything after it. When Redis comes back empty, the room's epoch
 * changes and its rooms are told (`reset`) instead of ids being reused.
 *
 * @module
 */

import {
  type Claim,
  type ClaimResult,
  EngineUnavailable,
  type MemberRef,
  type PresenceEvent,
  type RoomEngine,
  type RoomEvent,
  type RoomListener,
  type RoomSubscription,
  type StoredRoom,
  type TypingEvent,
} from "../engine.ts";
import type { HistoryEntry, ResumeResult, StoredMessage } from "./history.ts";
import { storedLine } from "../protocol.ts";

/**
 * How often a node says it is alive. A third of {@linkcode NODE_TTL_MS}:
 * one missed renewal does not make it look dead.
 */
export const HEARTBEAT_MS = 2000;

/**
 * How long a node's heartbeat lasts unrenewed. When it runs out the node
 * counts as dead: another node announces its members' leaves (within
 * {@linkcode NODE_TTL_MS} + {@linkcode HEARTBEAT_MS}, under 10 s) and frees
 * their names.
 */
export const NODE_TTL_MS = 6000;

/**
 * Heartbeats at which a departure made while Redis was away is published
 * again, after its first publishing once Redis is back: the other nodes'
 * subscriptions come back on their own schedule, and one still away when
 * it was first published would never hear it (presence is not in the
 * stream). Three heartbeats cover a heartbeat's lifetime; a departure
 * heard twice changes nothing, since it names its owner.
 */
export const LEAVE_ECHOES = NODE_TTL_MS / HEARTBEAT_MS;

/**
 * How long the reaping of one dead node is claimed for: one node does it;
 * if that node dies mid-way, another may after this.
 */
export const REAP_CLAIM_MS = 30_000;

/**
 * Lines a room's stream keeps at the least, whatever history shows joiners:
 * what a node that missed messages (a lost pub/sub message, a short
 * reconnect) fetches to fill the gap.
 */
export const MIN_STREAM_LINES = 1000;

/** How long a command may wait for Redis before the engine gives up on it. */
export const COMMAND_TIMEOUT_MS = 5000;

/** Reconnect backoff: starts at 50 ms, doubles, at most a second apart. */
export const MAX_RECONNECT_DELAY_MS = 1000;

/** The exact client version: see deno.json's imports and deno.lock. */
const CLIENT_MODULE = "@redis/client";

/** Options for {@linkcode RedisEngine.connect}. */
export interface RedisEngineOptions {
  /** Lines kept per room (the stream's length). Default 100. */
  historyLimit?: number;
  /** This node's id; default a random one. */
  nodeId?: string;
  /** Told whenever the connection to Redis goes up or down. */
  onConnection?: (up: boolean, cause?: string) => void;
  /** Told of each line heard, with seconds since it was published. */
  onDelivery?: (seconds: number) => void;
  /** Told of every line fetched from the stream to fill a gap. */
  onGapFilled?: (lines: number) => void;
  /** Told how many nodes are alive, at each heartbeat. */
  onNodes?: (count: number) => void;
  /** Told when a node was found dead and its members announced gone. */
  onReaped?: (node: string, members: number) => void;
}

/**
 * One message on a room's channel, as published; a line's also carries,
 * once heard, its text as published (see {@linkcode publishedLine}).
 */
type ChannelMessage =
  | { k: "l"; e: string; t: number; line: StoredMessage; json?: string }
  | { k: "p"; j: [string, string][]; l: [string, string][] }
  | { k: "t"; n: string; o: string };

/** One room this node hears. */
interface HeardRoom {
  name: string;
  listener: RoomListener;
  /** The store's life the lines heard belong to; null before the snapshot. */
  epoch: string | null;
  /** The newest line id heard. */
  lastId: number;
  /** The last lines heard, oldest first, at most the history limit. */
  window: StoredMessage[];
  /** Channel messages waiting while the room opens or fills a gap. */
  queue: ChannelMessage[];
  /** True while messages wait in `queue` for a fetch from Redis. */
  busy: boolean;
  /** False once closed: late replies are dropped. */
  open: boolean;
}

/** The part of `@redis/client`'s client this module uses. */
interface RedisClient {
  connect(): Promise<unknown>;
  close(): Promise<void>;
  destroy(): void;
  duplicate(): RedisClient;
  on(event: string, listener: (...args: unknown[]) => void): unknown;
  isReady: boolean;
  sendCommand(args: string[]): Promise<unknown>;
  subscribe(
    channel: string,
    listener: (message: string, channel: string) => void,
  ): Promise<void>;
  unsubscribe(channel: string): Promise<void>;
}

/**
 * Lua that sets `epoch` to the room's epoch (KEYS[1] its meta, KEYS[2] its
 * stream), starting one from ARGV[`arg`] when Redis holds none. A new
 * epoch always starts with an empty stream: lines of a lost epoch are
 * never served under a new one.
 */
function openEpoch(arg: number): string {
  return `
local epoch = redis.call('HGET', KEYS[1], 'epoch')
if not epoch then
  epoch = ARGV[${arg}]
  redis.call('HSET', KEYS[1], 'epoch', epoch)
  redis.call('DEL', KEYS[2])
end`;
}

/** The scripts, by purpose; each runs atomically in Redis. */
const SCRIPTS = {
  /**
   * KEYS: meta, lines, rooms set. ARGV: the line after its id (JSON
   * without the leading `{"type":T,"id":N,`), a new epoch if none, history
   * limit, room name, channel, publish time (ms), the line's type T.
   * Returns the line's id.
   */
  append: `${openEpoch(2)}
local id = redis.call('HINCRBY', KEYS[1], 'seq', 1)
local line = '{"type":"' .. ARGV[7] .. '","id":' .. id .. ',' .. ARGV[1]
redis.call('XADD', KEYS[2], 'MAXLEN', ARGV[3], id .. '-0', 'd', line)
redis.call('SADD', KEYS[3], ARGV[4])
redis.call('PUBLISH', ARGV[5],
  '{"k":"l","e":"' .. epoch .. '","t":' .. ARGV[6] .. ',"line":' .. line .. '}')
return id`,
  /**
   * KEYS: members, names, this node's rooms, rooms. ARGV: room, channel, payload,
   * joined count, then name/owner pairs (joined, then left). A leave
   * removes a member (and its claim) only while the owner still holds it.
   */
  presence: `
local joined = tonumber(ARGV[4])
local i = 5
for n = 1, joined do
  redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
  i = i + 2
end
while i < #ARGV do
  local name, owner = ARGV[i], ARGV[i + 1]
  if redis.call('HGET', KEYS[1], name) == owner then
    redis.call('HDEL', KEYS[1], name)
  end
  local claim = redis.call('HGET', KEYS[2], name)
  if claim and string.sub(claim, 1, #owner + 1) == owner .. ' ' then
    redis.call('HDEL', KEYS[2], name)
  end
  i = i + 2
end
if joined > 0 then
  redis.call('SADD', KEYS[3], ARGV[1])
  redis.call('SADD', KEYS[4], ARGV[1])
end
redis.call('PUBLISH', ARGV[2], ARGV[3])
return 1`,
  /**
   * KEYS: names. ARGV: name, owner, its session's hash, the presented
   * session's hash (or ""), heartbeat key prefix. A name is free when
   * unclaimed, or claimed by a node whose heartbeat ran out; it is taken
   * over when the presented session is the holder's. With ARGV[6] "peek"
   * nothing is written. Returns "claimed", "taken", or "replaced OWNER".
   */
  claim: `
local held = redis.call('HGET', KEYS[1], ARGV[1])
local mine = ARGV[2] .. ' ' .. ARGV[3]
local write = ARGV[6] ~= 'peek'
if not held then
  if write then redis.call('HSET', KEYS[1], ARGV[1], mine) end
  return 'claimed'
end
local space = string.find(held, ' ', 1, true)
local owner = string.sub(held, 1, space - 1)
local hash = string.sub(held, space + 1)
if ARGV[4] ~= '' and hash == ARGV[4] then
  if write then redis.call('HSET', KEYS[1], ARGV[1], mine) end
  return 'replaced ' .. owner
end
local slash = string.find(owner, '/', 1, true)
local node = string.sub(owner, 1, slash - 1)
if redis.call('EXISTS', ARGV[5] .. node) == 0 then
  if write then redis.call('HSET', KEYS[1], ARGV[1], mine) end
  return 'claimed'
end
return 'taken'`,
  /**
   * KEYS: meta, lines. ARGV: a new epoch. The room's epoch and last id,
   * starting a new epoch (and an empty stream, as `append` does) when Redis
   * holds none: a room has an epoch from the moment a node opens it, so
   * every welcome can carry one. Returns [epoch, seq].
   */
  epoch: `${openEpoch(1)}
return {epoch, redis.call('HGET', KEYS[1], 'seq') or '0'}`,
  /** KEYS: names. ARGV: name, owner. Frees the claim if still the owner's. */
  unclaim: `
local claim = redis.call('HGET', KEYS[1], ARGV[1])
if claim and string.sub(claim, 1, #ARGV[2] + 1) == ARGV[2] .. ' ' then
  redis.call('HDEL', KEYS[1], ARGV[1])
end
return 1`,
  /**
   * KEYS: members, names. ARGV: channel, owner prefix ("N/"). Removes every
   * member and claim of a node, and publishes their leaves as one diff.
   * Returns how many members left.
   */
  reap: `
local prefix = ARGV[2]
local left = {}
local members = redis.call('HGETALL', KEYS[1])
for i = 1, #members, 2 do
  local name, owner = members[i], members[i + 1]
  if string.sub(owner, 1, #prefix) == prefix then
    redis.call('HDEL', KEYS[1], name)
    table.insert(left, cjson.encode({name, owner}))
  end
end
local claims = redis.call('HGETALL', KEYS[2])
for i = 1, #claims, 2 do
  if string.sub(claims[i + 1], 1, #prefix) == prefix then
    redis.call('HDEL', KEYS[2], claims[i])
  end
end
if #left > 0 then
  redis.call('PUBLISH', ARGV[1],
    '{"k":"p","j":[],"l":[' .. table.concat(left, ',') .. ']}')
end
return #left`,
  /**
   * KEYS: names. ARGV: a session's hash, the heartbeat key prefix. The name
   * whose claim carries that hash, if the node holding it is alive, or
   * false. One pass over the room's claims, in Redis: asked for uploads and
   * downloads, which are rare next to chat.
   */
  findSession: `
local claims = redis.call('HGETALL', KEYS[1])
for i = 1, #claims, 2 do
  local claim = claims[i + 1]
  local space = string.find(claim, ' ', 1, true)
  if space and string.sub(claim, space + 1) == ARGV[1] then
    local owner = string.sub(claim, 1, space - 1)
    local slash = string.find(owner, '/', 1, true)
    if slash and redis.call('EXISTS', ARGV[2] .. string.sub(owner, 1, slash - 1)) == 1 then
      return claims[i]
    end
    return false
  end
end
return false`,
} as const;

type ScriptName = keyof typeof SCRIPTS;

const KEY = {
  meta: (room: string) => `hubchat:room:${room}:meta`,
  lines: (room: string) => `hubchat:room:${room}:lines`,
  members: (room: string) => `hubchat:room:${room}:members`,
  names: (room: string) => `hubchat:room:${room}:names`,
  channel: (room: string) => `hubchat:room:${room}`,
  rooms: "hubchat:rooms",
  nodes: "hubchat:nodes",
  node: (node: string) => `hubchat:node:${node}`,
  nodeRooms: (node: string) => `hubchat:node:${node}:rooms`,
  reap: (node: string) => `hubchat:reap:${node}`,
  nodePrefix: "hubchat:node:",
} as const;

/**
 * Rooms shared through Redis. Connect with {@linkcode RedisEngine.connect}.
 *
 * Invariants: every command goes through one connection, so one node's
 * events reach Redis, and so every node, in the order this node published
 * them; a room's channel is heard in order, a line only after every line
 * before it (fetched from the stream when a message went missing).
 *
 * @example
 * ```ts ignore
 * import { RedisEngine } from "./redis.ts";
 * const engine = await RedisEngine.connect("redis://127.0.0.1:6379");
 * engine.open("lobby", (event) => console.log(event.kind)); // "snapshot"
 * await engine.shutdown();
 * ```
 */
export class RedisEngine implements RoomEngine {
  /** This node's id, unique among the nodes sharing the Redis. */
  readonly nodeId: string;
  /** Every node sharing the Redis shares the rooms. */
  readonly shared = true;
  #commands: RedisClient;
  #subscriber: RedisClient;
  #limit: number;
  #options: RedisEngineOptions;
  #rooms = new Map<string, HeardRoom>();
  /** Members this node published arrivals for, by room, by owner. */
  #local = new Map<string, Map<string, string>>();
  /**
   * This node's claims, by owner, till given back or their member leaves:
   * claimed again if Redis comes back without them (restarted empty).
   */
  #claims = new Map<string, { room: string; name: string; held: string }>();
  /** Departures Redis never took (it was away): published once it is back. */
  #unpublished: { room: string; left: MemberRef[] }[] = [];
  /**
   * Those departures, published again at the next heartbeats; each has
   * `remaining` > 0 (the times it is still to be published).
   */
  #echoes: { room: string; left: MemberRef[]; remaining: number }[] = [];
  /** SHA1 of each script, as its one load answers (or answered). */
  #shas = new Map<ScriptName, Promise<string>>();
  #timer: ReturnType<typeof setInterval> | undefined;
  /** When the connection last came up (performance.now()), or null. */
  #upSince: number | null = null;
  #stopped = false;
  /** The catch-up running (`#reconcile`), or null. */
  #reconciling: Promise<void> | null = null;
  /** True when a connection came back while the running catch-up ran. */
  #reconcileAgain = false;
  #takeover: (room: string, owner: string) => void = noTakeover;

  private constructor(
    commands: RedisClient,
    subscriber: RedisClient,
    options: RedisEngineOptions,
  ) {
    this.#commands = commands;
    this.#subscriber = subscriber;
    this.#options = options;
    this.#limit = options.historyLimit ?? 100;
    this.nodeId = options.nodeId ?? crypto.randomUUID().slice(0, 8);
  }

  /**
   * Connects to Redis (`redis://` or `rediss://`, with a password and a
   * database number if given), loading the client package, and starts this
   * node's heartbeat. Throws when Redis cannot be reached.
   */
  static async connect(
    url: string,
    options: RedisEngineOptions = {},
  ): Promise<RedisEngine> {
    let createClient: (options: unknown) => RedisClient;
    try {
      ({ createClient } = await import(CLIENT_MODULE));
    } catch (error) {
      throw new EngineUnavailable(
        `cannot load its client (${CLIENT_MODULE}, npm:@redis/client): ${
          describe(error)
        }`,
        { cause: error },
      );
    }
    const commands = createClient({
      url,
      RESP: 3,
      // A line offered while Redis is away is refused, not queued: it
      // would be acknowledged late or lost.
      disableOfflineQueue: true,
      socket: {
        connectTimeout: COMMAND_TIMEOUT_MS,
        reconnectStrategy: reconnectDelay,
      },
    });
    const subscriber = commands.duplicate();
    const engine = new RedisEngine(commands, subscriber, options);
    commands.on("error", (error) => engine.#connectionError(error));
    subscriber.on("error", () => {});
    // The subscription back after a drop: what was published meanwhile
    // reached nobody here; catch up from the stream now, not at the next
    // line (which may not come).
    let subscribed = false;
    subscriber.on("ready", () => {
      if (subscribed) void engine.#reconcile();
      subscribed = true;
    });
    commands.on("ready", () => engine.#connected());
    try {
      // The client retries a refused first connection forever; a start
      // should say at once that Redis is not there.
      const first = Promise.withResolvers<void>();
      // Later errors (Redis going away) are the reconnect's business.
      first.promise.catch(() => {});
      commands.on("error", (error) => first.reject(error));
      const timer = setTimeout(
        () =>
          first.reject(new Error(`no answer within ${COMMAND_TIMEOUT_MS} ms`)),
        COMMAND_TIMEOUT_MS,
      );
      try {
        await Promise.race([commands.connect(), first.promise]);
      } finally {
        clearTimeout(timer);
      }
      await subscriber.connect();
      await subscriber.subscribe(
        KEY.node(engine.nodeId),
        (message) => engine.#hearNodeMessage(message),
      );
    } catch (error) {
      commands.destroy();
      subscriber.destroy();
      throw new EngineUnavailable(
        `cannot connect to ${redactedUrl(url)}: ${describe(error)}`,
        { cause: error },
      );
    }
    await engine.#heartbeat();
    engine.#timer = setInterval(() => void engine.#tick(), HEARTBEAT_MS);
    return engine;
  }

  /** True while the connection to Redis is up. */
  get connected(): boolean {
    return this.#commands.isReady;
  }

  /** Who is told to close a connection another node took over. */
  setTakeoverHandler(handler: (room: string, owner: string) => void): void {
    this.#takeover = handler;
  }

  /** Hears a room: subscribes, reads what Redis holds, then goes live. */
  open(room: string, listener: RoomListener): RoomSubscription {
    const heard: HeardRoom = {
      name: room,
      listener,
      epoch: null,
      lastId: 0,
      window: [],
      queue: [],
      busy: true,
      open: true,
    };
    this.#rooms.set(room, heard);
    void this.#openRoom(heard);
    return {
      close: () => {
        if (!heard.open) return;
        heard.open = false;
        if (this.#rooms.get(room) === heard) {
          this.#rooms.delete(room);
          this.#subscriber.unsubscribe(KEY.channel(room)).catch(() => {});
        }
      },
    };
  }

  async #openRoom(heard: HeardRoom): Promise<void> {
    const room = heard.name;
    try {
      await this.#subscriber.subscribe(
        KEY.channel(room),
        (message) => this.#hearChannel(heard, message),
      );
      const [members] = await Promise.all([
        this.#command(["HGETALL", KEY.members(room)]),
        this.#loadLines(heard),
      ]);
      if (!heard.open) return;
      heard.listener({ kind: "snapshot", members: memberRefs(members) });
    } catch (error) {
      if (!heard.open) return;
      heard.open = false;
      this.#rooms.delete(room);
      heard.listener({ kind: "unavailable", reason: describe(error) });
      return;
    }
    heard.busy = false;
    void this.#drain(heard);
  }

  /** Stores the line in Redis and publishes it, in one script. */
  async append(room: string, entry: HistoryEntry): Promise<StoredMessage> {
    const fields = storedLine({ id: 0, room, ...entry });
    // The line after its id: the script puts `{"type":T,"id":N,` in front,
    // so the stored and published text is the wire text.
    const tail = JSON.stringify({ ...fields, type: undefined, id: undefined })
      .slice(1);
    const id = await this.#script("append", [
      KEY.meta(room),
      KEY.lines(room),
      KEY.rooms,
    ], [
      tail,
      newEpoch(),
      String(Math.max(this.#limit, MIN_STREAM_LINES)),
      room,
      KEY.channel(room),
      String(Date.now()),
      fields.type,
    ]);
    return { ...fields, id: Number(id) } as StoredMessage;
  }

  /** Publishes who came and went (keeping the members hash) or typing. */
  publish(room: string, event: PresenceEvent | TypingEvent): void {
    if (event.kind === "typing") {
      // Typing is dropped while Redis is away: nothing to keep.
      this.#command([
        "PUBLISH",
        KEY.channel(room),
        JSON.stringify({ k: "t", n: event.member.name, o: event.member.owner }),
      ]).catch(() => {});
      return;
    }
    this.#remember(room, event);
    const payload = JSON.stringify({
      k: "p",
      j: event.joined.map((m) => [m.name, m.owner]),
      l: event.left.map((m) => [m.name, m.owner]),
    });
    const pairs: string[] = [];
    for (const member of [...event.joined, ...event.left]) {
      pairs.push(member.name, member.owner);
    }
    this.#script("presence", [
      KEY.members(room),
      KEY.names(room),
      KEY.nodeRooms(this.nodeId),
      KEY.rooms,
    ], [
      room,
      KEY.channel(room),
      payload,
      String(event.joined.length),
      ...pairs,
    ])
      // Redis is away: reconciled when it is back (see #reconcile).
      .catch(() => {
        if (event.left.length > 0) {
          this.#unpublished.push({ room, left: event.left });
        }
      });
  }

  /**
   * Claims a name in a room for a connection about to open, across nodes.
   * `presented` is the hash of the session the peer presented, if any: a
   * name held under that session is taken over.
   */
  async claim(room: string, claim: Claim): Promise<ClaimResult> {
    const result = await this.#script("claim", [KEY.names(room)], [
      claim.member.name,
      claim.member.owner,
      claim.sessionHash,
      claim.presented ?? "",
      KEY.nodePrefix,
      claim.peek ? "peek" : "",
    ]) as string;
    if (result === "taken") return { claimed: false };
    if (!claim.peek) {
      const { name, owner } = claim.member;
      this.#claims.set(owner, {
        room,
        name,
        held: `${owner} ${claim.sessionHash}`,
      });
    }
    if (result === "claimed") return { claimed: true };
    const owner = result.slice("replaced ".length);
    return {
      claimed: true,
      replaced: { name: claim.member.name, owner },
    };
  }

  /** Gives a claim back (a refused upgrade, a socket that never opened). */
  unclaim(room: string, member: MemberRef): void {
    this.#claims.delete(member.owner);
    this.#script("unclaim", [KEY.names(room)], [member.name, member.owner])
      .catch(() => {});
  }

  /** The name in `room` whose claim carries `sessionHash`, on a live node. */
  async memberBySession(
    room: string,
    sessionHash: string,
  ): Promise<string | null> {
    const found = await this.#script("findSession", [KEY.names(room)], [
      sessionHash,
      KEY.nodePrefix,
    ]);
    return typeof found === "string" ? found : null;
  }

  /** Asks the node holding `member` to close that connection (4001). */
  takeOver(room: string, member: MemberRef): void {
    const node = member.owner.slice(0, member.owner.indexOf("/"));
    if (node === this.nodeId) {
      this.#takeover(room, member.owner);
      return;
    }
    this.#command([
      "PUBLISH",
      KEY.node(node),
      JSON.stringify({ k: "takeover", room, owner: member.owner }),
    ]).catch(() => {});
  }

  /** The room's last lines heard here. */
  recent(room: string): StoredMessage[] {
    return [...(this.#rooms.get(room)?.window ?? [])];
  }

  /** The lines after `lastSeenId` heard here. */
  since(room: string, lastSeenId: number): ResumeResult {
    const heard = this.#rooms.get(room);
    const window = heard?.window ?? [];
    const lastId = heard?.lastId ?? 0;
    if (lastSeenId > lastId) return { messages: [...window], gap: true };
    const first = window.length === 0 ? lastId + 1 : window[0].id;
    const messages = window.filter((line) => line.id > lastSeenId);
    return { messages, gap: lastSeenId + 1 < first };
  }

  /** True when nothing of the room waits for a fetch from Redis. */
  settled(room: string): boolean {
    const heard = this.#rooms.get(room);
    return heard === undefined || (!heard.busy && heard.queue.length === 0);
  }

  /** The store's life the room's ids belong to. */
  epoch(room: string): string {
    return this.#rooms.get(room)?.epoch ?? "";
  }

  /**
   * Rooms Redis holds lines or members of, with their counts over every
   * node, as of the last heartbeat.
   */
  listRooms(): StoredRoom[] {
    return this.#knownRooms;
  }

  #knownRooms: StoredRoom[] = [];

  /** Announces this node's members gone, stops its heartbeat, disconnects. */
  async shutdown(): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    clearInterval(this.#timer);
    try {
      if (this.#commands.isReady) {
        await this.#reapNode(this.nodeId);
        await this.#command(["DEL", KEY.node(this.nodeId)]);
        await this.#command(["SREM", KEY.nodes, this.nodeId]);
      }
    } catch {
      // Redis is away: the other nodes reap this one when its heartbeat
      // runs out.
    }
    this.#rooms.clear();
    await Promise.allSettled([
      this.#subscriber.close(),
      this.#commands.close(),
    ]);
  }

  // --------------------------------------------------------------- hearing

  #hearChannel(heard: HeardRoom, text: string): void {
    let message: ChannelMessage;
    try {
      message = JSON.parse(text);
    } catch {
      return;
    }
    if (message.k === "l") message.json = publishedLine(text);
    heard.queue.push(message);
    if (!heard.busy) void this.#drain(heard);
  }

  /**
   * Delivers the room's waiting messages in order. A line whose id skips
   * ahead waits while the lines between are fetched from the stream; a
   * line of another epoch resets the room.
   */
  async #drain(heard: HeardRoom): Promise<void> {
    if (heard.busy) return;
    heard.busy = true;
    try {
      while (heard.open && heard.queue.length > 0) {
        const message = heard.queue[0];
        if (message.k === "l") {
          if (heard.epoch !== null && message.e !== heard.epoch) {
            await this.#reset(heard);
            continue;
          }
          heard.epoch = message.e;
          const id = message.line.id;
          if (id <= heard.lastId) {
            heard.queue.shift();
            continue;
          }
          if (id > heard.lastId + 1) {
            await this.#fill(heard, id - 1);
            if (!heard.open) return;
          }
          heard.queue.shift();
          this.#deliverLine(heard, message.line, message.json);
          this.#options.onDelivery?.((Date.now() - message.t) / 1000);
          continue;
        }
        heard.queue.shift();
        this.#deliver(heard, channelEvent(message));
      }
    } catch {
      // Redis went away mid-fill: what waits is delivered after the
      // reconnect's fill (#reconcile).
    } finally {
      heard.busy = false;
    }
  }

  /** Fetches and delivers the lines after the last heard, up to `to`. */
  async #fill(heard: HeardRoom, to: number): Promise<void> {
    const from = heard.lastId + 1;
    const lines = streamLines(
      await this.#command([
        "XRANGE",
        KEY.lines(heard.name),
        `${from}-0`,
        `${to}-0`,
      ]),
    );
    if (!heard.open) return;
    for (const line of lines) this.#deliverLine(heard, line);
    this.#options.onGapFilled?.(lines.length);
    // Lines older than the stream keeps are gone for good; carry on.
    heard.lastId = Math.max(heard.lastId, to);
  }

  /** Redis lost the room's lines: start again from what it holds now. */
  async #reset(heard: HeardRoom): Promise<void> {
    await this.#loadLines(heard);
    if (!heard.open) return;
    // Lines of the old epoch still queued are gone with it.
    heard.queue = heard.queue.filter((m) => m.k !== "l" || m.e === heard.epoch);
    this.#deliver(heard, { kind: "reset" });
  }

  /**
   * Reads what Redis holds of the room's lines: its epoch (started if it
   * has none), its last id, and the last lines, which become what this node
   * has heard.
   */
  async #loadLines(heard: HeardRoom): Promise<void> {
    const room = heard.name;
    const [meta, lines] = await Promise.all([
      this.#script("epoch", [KEY.meta(room), KEY.lines(room)], [newEpoch()]),
      this.#command([
        "XREVRANGE",
        KEY.lines(room),
        "+",
        "-",
        "COUNT",
        String(this.#limit),
      ]),
    ]);
    if (!heard.open) return;
    const [epoch, seq] = meta as [string, string];
    heard.epoch = epoch;
    heard.window = streamLines(lines).reverse();
    heard.lastId = Number(seq);
  }

  /** Delivers a line heard, with its text when it has it (`json`). */
  #deliverLine(heard: HeardRoom, line: StoredMessage, json?: string): void {
    if (line.id <= heard.lastId) return;
    heard.lastId = line.id;
    heard.window.push(line);
    if (heard.window.length > this.#limit) heard.window.shift();
    this.#deliver(heard, { kind: "line", line, json });
  }

  #deliver(heard: HeardRoom, event: RoomEvent): void {
    if (heard.open) heard.listener(event);
  }

  /** A message for this node: close a connection another node took over. */
  #hearNodeMessage(text: string): void {
    try {
      const message = JSON.parse(text) as {
        k: string;
        room: string;
        owner: string;
      };
      if (message.k === "takeover") this.#takeover(message.room, message.owner);
    } catch {
      // Not ours to understand.
    }
  }

  // ----------------------------------------------------- nodes and health

  /** Remembers this node's members, to announce or restore them later. */
  #remember(room: string, event: PresenceEvent): void {
    let owners = this.#local.get(room);
    if (owners === undefined) this.#local.set(room, owners = new Map());
    for (const member of event.left) {
      owners.delete(member.owner);
      this.#claims.delete(member.owner);
    }
    for (const member of event.joined) owners.set(member.owner, member.name);
    if (owners.size === 0) this.#local.delete(room);
  }

  async #tick(): Promise<void> {
    if (this.#stopped || !this.#commands.isReady) return;
    try {
      await this.#heartbeat();
      this.#echoLeaves();
      // Reap only after a heartbeat's lifetime connected: after an outage
      // every node gets to say it is alive before anyone is declared dead.
      if (
        this.#upSince !== null &&
        performance.now() - this.#upSince > NODE_TTL_MS
      ) {
        await this.#reapDead();
      }
    } catch {
      // Redis went away; the reconnect takes over.
    }
  }

  /** Publishes the departures made while Redis was away once more. */
  #echoLeaves(): void {
    for (const echo of this.#echoes) {
      echo.remaining--;
      this.publish(echo.room, {
        kind: "presence",
        joined: [],
        left: echo.left,
      });
    }
    this.#echoes = this.#echoes.filter((echo) => echo.remaining > 0);
  }

  async #heartbeat(): Promise<void> {
    await this.#command([
      "SET",
      KEY.node(this.nodeId),
      String(Date.now()),
      "PX",
      String(NODE_TTL_MS),
    ]);
    await this.#command(["SADD", KEY.nodes, this.nodeId]);
    await this.#countRooms();
  }

  /** Counts every room's members; forgets rooms with no lines or members. */
  async #countRooms(): Promise<void> {
    const names = await this.#command(["SMEMBERS", KEY.rooms]) as string[];
    const counted: StoredRoom[] = [];
    for (const name of names) {
      const [online, lines] = await Promise.all([
        this.#command(["HLEN", KEY.members(name)]),
        this.#command(["EXISTS", KEY.lines(name)]),
      ]);
      if (Number(online) === 0 && Number(lines) === 0) {
        await this.#command(["SREM", KEY.rooms, name]);
        continue;
      }
      counted.push({ name, online: Number(online) });
    }
    this.#knownRooms = counted;
  }

  /** Finds nodes whose heartbeat ran out; one node announces each. */
  async #reapDead(): Promise<void> {
    const nodes = await this.#command(["SMEMBERS", KEY.nodes]) as string[];
    let alive = 0;
    for (const node of nodes) {
      if (node === this.nodeId) {
        alive++;
        continue;
      }
      if (Number(await this.#command(["EXISTS", KEY.node(node)])) === 1) {
        alive++;
        continue;
      }
      const won = await this.#command([
        "SET",
        KEY.reap(node),
        this.nodeId,
        "NX",
        "PX",
        String(REAP_CLAIM_MS),
      ]);
      if (won === null) continue;
      const members = await this.#reapNode(node);
      await this.#command(["SREM", KEY.nodes, node]);
      this.#options.onReaped?.(node, members);
    }
    this.#options.onNodes?.(alive);
  }

  /** Announces every member of a node gone, room by room. */
  async #reapNode(node: string): Promise<number> {
    const rooms = await this.#command([
      "SMEMBERS",
      KEY.nodeRooms(node),
    ]) as string[];
    let members = 0;
    for (const room of rooms) {
      members += Number(
        await this.#script("reap", [KEY.members(room), KEY.names(room)], [
          KEY.channel(room),
          `${node}/`,
        ]),
      );
    }
    await this.#command(["DEL", KEY.nodeRooms(node)]);
    return members;
  }

  #connectionError(error: unknown): void {
    if (this.#upSince === null) return;
    this.#upSince = null;
    this.#options.onConnection?.(false, describe(error));
  }

  /** The connection came (back) up: say so, and catch up on every room. */
  #connected(): void {
    const first = this.#shas.size === 0 && this.#upSince === null &&
      this.#rooms.size === 0;
    this.#upSince = performance.now();
    this.#shas.clear();
    if (!first) this.#options.onConnection?.(true);
    void this.#reconcile();
  }

  /**
   * After a reconnect (of either connection): `#catchUp`, one run at a
   * time. A call while one runs is not lost: that run may have read a room
   * before this connection came back, so one more runs once it is done
   * (every call meanwhile shares that one). Resolves when no run is left.
   */
  #reconcile(): Promise<void> {
    if (this.#reconciling !== null) {
      this.#reconcileAgain = true;
      return this.#reconciling;
    }
    const run = async (): Promise<void> => {
      try {
        do {
          this.#reconcileAgain = false;
          await this.#catchUp();
        } while (this.#reconcileAgain && !this.#stopped);
      } finally {
        this.#reconciling = null;
      }
    };
    this.#reconciling = run();
    return this.#reconciling;
  }

  /**
   * Says this node is alive, restores its members (a node away longer
   * than its heartbeat was reaped), and fills every room from the stream,
   * which a lost message would otherwise leave behind. Only through
   * `#reconcile`: two at once would both reset or fill a room.
   */
  async #catchUp(): Promise<void> {
    try {
      await this.#heartbeat();
      // Who left while Redis was away, as every node is to hear it (a
      // departure heard twice changes nothing: its owner is gone).
      for (const { room, left } of this.#unpublished.splice(0)) {
        this.publish(room, { kind: "presence", joined: [], left });
        if (LEAVE_ECHOES > 0) {
          this.#echoes.push({ room, left, remaining: LEAVE_ECHOES });
        }
      }
      // Names this node's members hold, which Redis restarted empty lost.
      await Promise.all(
        [...this.#claims.values()].map(({ room, name, held }) =>
          this.#command(["HSETNX", KEY.names(room), name, held])
        ),
      );
      for (const [room, owners] of this.#local) {
        const members = await this.#command(["HGETALL", KEY.members(room)]);
        const held = new Map(
          memberRefs(members).map((member) => [member.owner, member.name]),
        );
        const joined: MemberRef[] = [];
        for (const [owner, name] of owners) {
          if (held.get(owner) !== name) joined.push({ name, owner });
        }
        if (joined.length > 0) {
          this.publish(room, { kind: "presence", joined, left: [] });
        }
      }
      for (const heard of this.#rooms.values()) {
        // Skipped while busy: being opened, or a drain is fetching for it.
        // Otherwise the room stays busy from this read of its meta to the
        // fill or reset it calls for, so no drain delivers in between.
        if (heard.busy || heard.epoch === null) continue;
        heard.busy = true;
        try {
          const meta = await this.#command([
            "HMGET",
            KEY.meta(heard.name),
            "epoch",
            "seq",
          ]) as (string | null)[];
          if (!heard.open) continue;
          if (meta[0] !== heard.epoch) {
            await this.#reset(heard);
          } else if (Number(meta[1] ?? 0) > heard.lastId) {
            await this.#fill(heard, Number(meta[1]));
          }
        } finally {
          heard.busy = false;
        }
        void this.#drain(heard);
      }
    } catch {
      // Down again: the next reconnect tries again.
    }
  }

  // ------------------------------------------------------------ commands

  async #command(args: string[]): Promise<unknown> {
    try {
      return await this.#commands.sendCommand(args);
    } catch (error) {
      throw new EngineUnavailable(describe(error), { cause: error });
    }
  }

  /** Runs a script by its SHA, loading it first if Redis does not have it. */
  async #script(
    name: ScriptName,
    keys: string[],
    args: string[],
  ): Promise<unknown> {
    let loading = this.#shas.get(name);
    if (loading === undefined) {
      // One load per script, which every call made meanwhile awaits too:
      // calls then reach Redis in the order they were made. (A call made
      // once the SHA is known must not overtake one waiting for its load:
      // a member's lines would be stored out of order.)
      const load = this.#command(["SCRIPT", "LOAD", SCRIPTS[name]])
        .then(String);
      load.catch(() => {
        if (this.#shas.get(name) === load) this.#shas.delete(name);
      });
      this.#shas.set(name, loading = load);
    }
    const sha = await loading;
    try {
      return await this.#commands.sendCommand([
        "EVALSHA",
        sha,
        String(keys.length),
        ...keys,
        ...args,
      ]);
    } catch (error) {
      if (String((error as Error)?.message ?? "").startsWith("NOSCRIPT")) {
        if (this.#shas.get(name) === loading) this.#shas.delete(name);
        return await this.#script(name, keys, args);
      }
      throw new EngineUnavailable(describe(error), { cause: error });
    }
  }
}

function noTakeover(): void {}

/** What precedes a line's text in the message `append` publishes. */
const LINE_KEY = ',"line":';

/**
 * The line in a line message, as the text it was published in: the
 * `append` script publishes `{"k":"l","e":E,"t":T,"line":LINE}` where LINE
 * is the line's wire text (its `JSON.stringify`). Neither the epoch (hex)
 * nor the time holds `,"line":`, so LINE runs from the first one to the
 * closing brace: sent to clients as it is, not serialized again.
 */
function publishedLine(text: string): string {
  return text.slice(text.indexOf(LINE_KEY) + LINE_KEY.length, -1);
}

/** The event a channel message stands for (lines are handled apart). */
function channelEvent(
  message: Exclude<ChannelMessage, { k: "l" }>,
): RoomEvent {
  if (message.k === "t") {
    return { kind: "typing", member: { name: message.n, owner: message.o } };
  }
  return {
    kind: "presence",
    joined: message.j.map(([name, owner]) => ({ name, owner })),
    left: message.l.map(([name, owner]) => ({ name, owner })),
  };
}

/** A stream reply's lines: `[[id, ["d", json]], ...]`. */
function streamLines(reply: unknown): StoredMessage[] {
  const lines: StoredMessage[] = [];
  for (const entry of (reply ?? []) as [string, string[]][]) {
    const fields = entry[1];
    const at = fields.indexOf("d");
    if (at !== -1) lines.push(JSON.parse(fields[at + 1]) as StoredMessage);
  }
  return lines;
}

/** An HGETALL reply (a map in RESP3, a flat list in RESP2) as members. */
function memberRefs(reply: unknown): MemberRef[] {
  if (reply === null || reply === undefined) return [];
  if (Array.isArray(reply)) {
    const refs: MemberRef[] = [];
    for (let i = 0; i + 1 < reply.length; i += 2) {
      refs.push({ name: String(reply[i]), owner: String(reply[i + 1]) });
    }
    return refs;
  }
  const entries = reply instanceof Map
    ? [...reply.entries()]
    : Object.entries(reply as Record<string, unknown>);
  return entries.map(([name, owner]) => ({
    name: String(name),
    owner: String(owner),
  }));
}

/** A new epoch: 8 random hex digits, for a room Redis holds nothing of. */
function newEpoch(): string {
  return crypto.randomUUID().slice(0, 8);
}

/** Reconnect backoff: 50 ms, doubling, at most a second. */
function reconnectDelay(retries: number): number {
  return Math.min(50 * 2 ** Math.min(retries, 10), MAX_RECONNECT_DELAY_MS);
}

/** The URL without its password, for messages. */
function redactedUrl(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password !== "") parsed.password = "***";
    return parsed.href;
  } catch {
    return "(an invalid URL)";
  }
}

function describe(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

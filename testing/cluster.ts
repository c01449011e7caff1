/**
 * Several hubchat nodes sharing one Redis, for tests over real sockets and
 * real processes ({@linkcode withCluster}): a redis-server of the test's
 * own (testing/redis_server.ts), N copies of main.ts started against it
 * (testing/child_server.ts), clients opened on node i that record every
 * message they get with the moment it arrived ({@linkcode Recorder}), and
 * the checks the cluster tests share: the chat lines a client saw across
 * its reconnects, in id order, each once ({@linkcode assertLines}). A node
 * may reach Redis through a proxy of the test's (testing/tcp_proxy.ts), so
 * that its connections alone can be kept down ({@linkcode Cluster.proxy}).
 *
 * Everything is bounded in time and stopped by {@linkcode Cluster.close}
 * (clients, then nodes, then Redis), so tests pass Deno's sanitizers.
 *
 * @module
 */

import assert from "node:assert/strict";
import type {
  ChatMessage,
  ServerMessage,
  StoredLine,
  WelcomeMessage,
} from "../protocol.ts";
import { ChatClient, type CloseInfo, parseFrame } from "./chat_client.ts";
import { ChildServer } from "./child_server.ts";
import { type RawReply, upgradeReplyAt } from "./raw_websocket.ts";
import { RedisServer } from "./redis_server.ts";
import { TcpProxy } from "./tcp_proxy.ts";
import { sleep } from "../tools/wait.ts";
import { WAIT_MS, waitUntil, within } from "./wait.ts";
import { field } from "./scene.ts";

/** A message's field by name (testing/scene.ts), for tests of a cluster. */
export { field };

/**
 * Flags every node gets before the test's own: no rate limit and no cap
 * per address (every test client comes from 127.0.0.1).
 */
const NODE_FLAGS = ["--rate", "0", "--max-connections-per-ip", "0"];

/** How a cluster is started. */
export interface ClusterOptions {
  /** Nodes to start. Default 2. */
  nodes?: number;
  /** Flags for every node, after `--redis URL` and {@linkcode NODE_FLAGS}. */
  flags?: string[];
  /** Redis keeps an append-only file synced on every write. Default true. */
  appendonly?: boolean;
  /**
   * Nodes, by index, that reach Redis through a {@linkcode TcpProxy} of
   * their own ({@linkcode Cluster.proxy}). Default none.
   */
  proxied?: number[];
}

/** One message a {@linkcode Recorder} got, and when (performance.now()). */
export interface Received {
  /** The message. */
  message: ServerMessage;
  /** When it arrived, in performance.now() milliseconds. */
  at: number;
}

/**
 * One client connection that records every message it gets, from the
 * first frame, with the moment it arrived; read with
 * {@linkcode Recorder.waitFor} rather than one message at a time, so
 * several clients can be judged after the fact.
 */
export class Recorder {
  /** The client underneath (for `send`, `say`, `closed`). */
  readonly client: ChatClient;
  /** Which node it is connected to. */
  readonly node: number;
  /** Who it is, for messages: `name@nodeN`. */
  readonly label: string;
  /** Everything it got, in order. */
  readonly log: Received[] = [];
  /** Resolves once the messages that came before recording are in the log. */
  readonly ready: Promise<void>;
  /** Its welcome, once {@linkcode Cluster.join} read it. */
  welcome: WelcomeMessage | null = null;

  /** Starts recording a client just opened (before any message). */
  constructor(client: ChatClient, node: number, label = "a client") {
    this.client = client;
    this.node = node;
    this.label = `${label}@node${node}`;
    // Messages the socket got before this listener (Deno may dispatch the
    // first ones in the same turn as the open) are in the client's inbox:
    // they go first.
    const early = client.pending;
    const now = performance.now();
    this.ready = (async () => {
      const first: Received[] = [];
      for (let i = 0; i < early; i++) {
        first.push({ message: await client.next(), at: now });
      }
      this.log.unshift(...first);
    })();
    client.socket.addEventListener("message", (event) => {
      if (typeof event.data !== "string") return;
      const at = performance.now();
      for (const message of parseFrame(event.data)) {
        this.log.push({ message, at });
      }
    });
  }

  /** The name it chats under (its welcome's). */
  get username(): string {
    return this.welcome?.username ?? "";
  }

  /** The messages it got that match. */
  matching(match: (message: ServerMessage) => boolean): Received[] {
    return this.log.filter((entry) => match(entry.message));
  }

  /**
   * Waits for the first message at index `from` or later that matches,
   * at most `ms`; resolves with it and its index.
   */
  async waitFor(
    match: (message: ServerMessage) => boolean,
    what: string,
    { from = 0, ms = WAIT_MS }: { from?: number; ms?: number } = {},
  ): Promise<Received & { index: number }> {
    let index = -1;
    await waitUntil(
      () => {
        for (let i = from; i < this.log.length; i++) {
          if (match(this.log[i].message)) {
            index = i;
            return true;
          }
        }
        return false;
      },
      `${this.label} got ${what}`,
      ms,
    );
    return { ...this.log[index], index };
  }

  /** Sends a chat line. */
  say(text: string): void {
    this.client.say(text);
  }

  /** Sends a value as JSON. */
  send(value: unknown): void {
    this.client.send(value);
  }

  /** Closes the socket and waits for its close event. */
  close(): Promise<CloseInfo> {
    return this.client.close();
  }
}

/**
 * A Redis and N nodes on it, plus the clients a test opened; see
 * {@linkcode withCluster}.
 */
export class Cluster {
  /** The test's own redis-server. */
  readonly redis: RedisServer;
  /** The nodes, by index; a restarted node replaces its entry. */
  readonly nodes: ChildServer[];
  #clients = new Set<Recorder>();
  /** The proxies of the nodes started `proxied`, by node index. */
  #proxies: Map<number, TcpProxy>;

  private constructor(
    redis: RedisServer,
    nodes: ChildServer[],
    proxies: Map<number, TcpProxy>,
  ) {
    this.redis = redis;
    this.nodes = nodes;
    this.#proxies = proxies;
  }

  /**
   * Starts a Redis (in a temporary directory, on a free port) and the
   * nodes on it, one after the other; on failure stops what started.
   */
  static async start(options: ClusterOptions = {}): Promise<Cluster> {
    const redis = await RedisServer.start({
      appendonly: options.appendonly ?? true,
    });
    const proxies = new Map<number, TcpProxy>();
    const nodes: ChildServer[] = [];
    try {
      for (let i = 0; i < (options.nodes ?? 2); i++) {
        let url = redis.url;
        if (options.proxied?.includes(i)) {
          const proxy = TcpProxy.start(redis.port);
          proxies.set(i, proxy);
          url = proxy.url;
        }
        nodes.push(
          await ChildServer.start([
            "--redis",
            url,
            ...NODE_FLAGS,
            ...options.flags ?? [],
          ]),
        );
      }
    } catch (error) {
      await Promise.allSettled(nodes.map((node) => node.close()));
      await Promise.allSettled([...proxies.values()].map((p) => p.close()));
      await redis.stop();
      throw error;
    }
    return new Cluster(redis, nodes, proxies);
  }

  /**
   * The proxy between node i and Redis: `hold()` keeps that node's
   * connections to Redis down, `release()` lets them come back. Throws
   * for a node not started `proxied`.
   */
  proxy(node: number): TcpProxy {
    const proxy = this.#proxies.get(node);
    if (proxy === undefined) {
      throw new Error(`node ${node} reaches Redis directly (see proxied)`);
    }
    return proxy;
  }

  /** Node i's port. */
  port(node: number): number {
    return this.nodes[node].port;
  }

  /**
   * Opens a client on node i with `query` (`username`, `room`, `since`,
   * `epoch`, `session`...) and waits for its welcome and its own join (or,
   * in a large room, its welcome only). Closed by {@linkcode Cluster.close}.
   */
  async join(
    node: number,
    query: Record<string, string> = {},
  ): Promise<Recorder> {
    const label = query.username ?? "guest";
    const params = new URLSearchParams(query).toString();
    const client = await ChatClient.open(
      `ws://127.0.0.1:${this.port(node)}/ws?${params}`,
      `${label}@node${node}`,
    );
    const recorder = new Recorder(client, node, label);
    this.#clients.add(recorder);
    try {
      await recorder.ready;
      const welcome = await recorder.waitFor(
        (m) => m.type === "welcome",
        "its welcome",
      );
      recorder.welcome = welcome.message as WelcomeMessage;
      if (!recorder.welcome.large) {
        await recorder.waitFor(
          (m) => m.type === "join" && field(m, "username") === label,
          "its own join",
          { from: welcome.index },
        );
      }
    } catch (error) {
      await recorder.close();
      throw error;
    }
    return recorder;
  }

  /** Opens a client by name on node i: {@linkcode Cluster.join}. */
  member(node: number, username: string, room?: string): Promise<Recorder> {
    return this.join(
      node,
      room === undefined ? { username } : {
        username,
        room,
      },
    );
  }

  /** What an upgrade with `query` gets from node i, over raw TCP. */
  upgradeReply(node: number, query: Record<string, string>): Promise<RawReply> {
    const params = new URLSearchParams(query).toString();
    return upgradeReplyAt(this.port(node), `/ws?${params}`);
  }

  /** Node i's `/healthz`: status code and body. */
  async health(
    node: number,
  ): Promise<{ status: number; body: Record<string, unknown> }> {
    const response = await fetch(`${this.nodes[node].url}healthz`);
    return { status: response.status, body: await response.json() };
  }

  /** Node i's `/rooms`: online counts by room name. */
  async rooms(node: number): Promise<Record<string, number>> {
    const response = await fetch(`${this.nodes[node].url}rooms`);
    const body = await response.json() as {
      rooms: { name: string; online: number }[];
    };
    return Object.fromEntries(body.rooms.map((r) => [r.name, r.online]));
  }

  /** Waits until every node's `/healthz` answers `status`. */
  async waitForHealth(status: number, ms = 20_000): Promise<void> {
    await waitUntil(
      async () => {
        for (let i = 0; i < this.nodes.length; i++) {
          if (this.nodes[i].process.exited) continue;
          if ((await this.health(i)).status !== status) return false;
        }
        return true;
      },
      `every node's /healthz to answer ${status}`,
      ms,
    );
  }

  /** Kills node i outright (SIGKILL), as a crash. */
  async kill(node: number): Promise<void> {
    await this.nodes[node].stop("SIGKILL");
  }

  /** Starts node i again (a new process, on the same port). */
  async restart(node: number): Promise<void> {
    this.nodes[node] = await this.nodes[node].restart("SIGKILL");
  }

  /**
   * Closes every client, stops every node, closes the proxies, then stops
   * Redis; never throws.
   */
  async close(): Promise<void> {
    await Promise.allSettled([...this.#clients].map((c) => c.close()));
    await Promise.allSettled(this.nodes.map((node) => node.stop()));
    await Promise.allSettled([...this.#proxies.values()].map((p) => p.close()));
    await this.redis.stop();
  }
}

/**
 * Runs `body` with a started cluster and stops everything after it,
 * whether it passed or threw.
 *
 * @example
 * ```ts ignore
 * import { withCluster } from "./cluster.ts";
 * await withCluster({ nodes: 2 }, async (cluster) => {
 *   const ann = await cluster.member(0, "ann");
 *   const bob = await cluster.member(1, "bob");
 *   ann.say("hi");
 *   await bob.waitFor((m) => m.type === "message", "ann's line");
 * });
 * ```
 */
export async function withCluster(
  options: ClusterOptions,
  body: (cluster: Cluster) => Promise<void>,
): Promise<void> {
  const cluster = await Cluster.start(options);
  try {
    await body(cluster);
  } finally {
    await cluster.close();
  }
}

/** Matches a chat line from `from` with `text`. */
export function lineOf(
  from: string,
  text: string,
): (message: ServerMessage) => boolean {
  return (m) =>
    m.type === "message" && field(m, "username") === from &&
    field(m, "text") === text;
}

/** Matches a join or a leave of `username`. */
export function presenceOf(
  type: "join" | "leave",
  username: string,
): (message: ServerMessage) => boolean {
  return (m) => m.type === type && field(m, "username") === username;
}

/**
 * The chat lines one person saw, across its connections in order: each
 * connection's welcome history, then its live lines. Resets restart it
 * (see {@linkcode Recorder}).
 */
export function linesSeen(connections: Recorder[]): StoredLine[] {
  const lines: StoredLine[] = [];
  for (const connection of connections) {
    for (const { message } of connection.log) {
      if (message.type === "welcome") lines.push(...message.history);
      else if (message.type === "message") lines.push(message as ChatMessage);
    }
  }
  return lines;
}

/**
 * Asserts one person saw the room's public lines 1..`last` each exactly
 * once, in id order, and nothing else public: no gap, no duplicate.
 */
export function assertLines(
  who: string,
  lines: StoredLine[],
  last: number,
): void {
  const ids = lines.filter((line) => line.to === undefined).map((l) => l.id);
  const expected = Array.from({ length: last }, (_, i) => i + 1);
  if (ids.length === expected.length && ids.every((id, i) => id === i + 1)) {
    return;
  }
  const seen = new Set<number>();
  const duplicates = ids.filter((id) => seen.has(id) || !seen.add(id));
  const missing = expected.filter((id) => !seen.has(id));
  const backwards = ids.filter((id, i) => i > 0 && id <= ids[i - 1]);
  assert.fail(
    `${who}: expected lines 1..${last} once each in order; missing ${
      summary(missing)
    }, duplicated ${summary(duplicates)}, out of order ${
      summary(backwards)
    }, ${ids.length} in all`,
  );
}

/** A list of ids, shortened. */
function summary(ids: number[]): string {
  if (ids.length === 0) return "none";
  const shown = ids.slice(0, 10).join(", ");
  return ids.length > 10 ? `[${shown}, … ${ids.length} in all]` : `[${shown}]`;
}

/**
 * Sends numbered lines from one client, one every `everyMs`, until
 * stopped; counts what it sent and the refusals it got back.
 */
export class Sender {
  /** The client that sends. */
  readonly from: Recorder;
  /** Texts sent, in order. */
  readonly sent: string[] = [];
  #stop = false;
  #loop: Promise<void>;

  /** Starts sending at once. */
  constructor(from: Recorder, prefix: string, everyMs = 20) {
    this.from = from;
    this.#loop = (async () => {
      while (!this.#stop) {
        if (from.client.socket.readyState !== WebSocket.OPEN) break;
        const text = `${prefix}-${this.sent.length}`;
        this.sent.push(text);
        from.say(text);
        await sleep(everyMs);
      }
    })();
  }

  /** Stops sending; resolves once the loop ended. */
  async stop(): Promise<void> {
    this.#stop = true;
    await within(this.#loop, "a sender to stop");
  }

  /** Texts of its own lines it got back (stored and sent to the room). */
  echoed(): Set<string> {
    const mine = this.from.matching((m) =>
      m.type === "message" && field(m, "username") === this.from.username
    );
    return new Set(mine.map((entry) => String(field(entry.message, "text"))));
  }

  /** `error` replies it got, by code. */
  errors(): Record<string, number> {
    const counts: Record<string, number> = {};
    for (const { message } of this.from.matching((m) => m.type === "error")) {
      const code = String(field(message, "code"));
      counts[code] = (counts[code] ?? 0) + 1;
    }
    return counts;
  }
}

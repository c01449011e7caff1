/**
 * The soak tool's chaos schedule: when to kill and restart a node of the
 * cluster it started, or its Redis. Written as a comma-separated list of
 * `ACTION[:NODE]@TIME`, like
 * `kill-node@30s,restart-node@35s,kill-redis@60s,restart-redis@65s`:
 *
 * - `kill-node[:I]`: SIGKILL node I (default 0), a crash: its clients see
 *   their connections drop and reconnect to it with backoff.
 * - `restart-node[:I]`: start node I again on its port with its history;
 *   if it runs, SIGTERM it first (a graceful restart).
 * - `kill-redis`, `restart-redis`: the same for the Redis the tool
 *   started (appendonly, synced on every write: a restart has every
 *   acknowledged write back).
 *
 * TIME is seconds since sending started: `30`, `30s`, `1.5m`.
 *
 * @module
 */

import { UsageError } from "../flags.ts";

/** What a chaos event does. */
export type ChaosAction =
  | "kill-node"
  | "restart-node"
  | "kill-redis"
  | "restart-redis";

/** The actions, for parsing and for messages. */
const ACTIONS: readonly ChaosAction[] = [
  "kill-node",
  "restart-node",
  "kill-redis",
  "restart-redis",
];

/** One event of the schedule. */
export interface ChaosEvent {
  /** What to do. */
  action: ChaosAction;
  /** The node it is done to (node actions); 0 for Redis actions. */
  node: number;
  /** When, in seconds since sending started. */
  atS: number;
  /** The event as written, normalized: `kill-node:1@30s`. */
  text: string;
}

/** What the run looks like, for checking a schedule against it. */
export interface ChaosLimits {
  /** Nodes the tool starts (0: it starts none). */
  nodes: number;
  /** Whether the tool starts a Redis. */
  redis: boolean;
  /** The run's length, seconds: every event must fall inside it. */
  seconds: number;
}

/** `ACTION[:NODE]@TIME[s|m]`. */
const EVENT = /^([a-z-]+)(?::(\d+))?@(\d+(?:\.\d+)?)(s|m)?$/;

/** What a well-formed event looks like, for messages. */
const EXPECTED = "expected ACTION[:NODE]@TIME like kill-node:1@30s (actions: " +
  `${ACTIONS.join(", ")}; TIME in seconds, or with s or m)`;

/**
 * Parses a schedule and checks it against the run: each event names an
 * action and a node that exist, falls inside the run, and kills nothing
 * that is already down; returns the events in time order. Throws a
 * UsageError (flags.ts) naming the event and what was expected.
 *
 * @example
 * ```ts
 * import { parseChaos } from "./chaos.ts";
 * parseChaos("kill-node:1@30s,restart-node:1@35s", {
 *   nodes: 2,
 *   redis: false,
 *   seconds: 60,
 * }).map((e) => e.atS); // [30, 35]
 * ```
 */
export function parseChaos(text: string, limits: ChaosLimits): ChaosEvent[] {
  const events = text.split(",").map((part) => part.trim()).filter((part) =>
    part !== ""
  ).map((part) => parseEvent(part, limits));
  events.sort((a, b) => a.atS - b.atS);
  // Down or up, per node and for Redis ("redis"), as the schedule goes.
  const down = new Set<string>();
  for (const event of events) {
    const target = event.action.endsWith("redis")
      ? "redis"
      : `node ${event.node}`;
    if (event.action.startsWith("kill")) {
      if (down.has(target)) {
        throw new UsageError(
          `--chaos event ${event.text} kills ${target}, which an earlier ` +
            `event killed and none restarted; expected a restart first`,
        );
      }
      down.add(target);
    } else {
      down.delete(target);
    }
  }
  return events;
}

function parseEvent(part: string, limits: ChaosLimits): ChaosEvent {
  const match = EVENT.exec(part);
  if (match === null || !ACTIONS.includes(match[1] as ChaosAction)) {
    throw new UsageError(`--chaos event "${part}" is not one; ${EXPECTED}`);
  }
  const action = match[1] as ChaosAction;
  const onRedis = action.endsWith("redis");
  if (onRedis && match[2] !== undefined) {
    throw new UsageError(
      `--chaos event "${part}" names a node for Redis; expected ${action}@TIME`,
    );
  }
  const node = Number(match[2] ?? 0);
  const atS = Number(match[3]) * (match[4] === "m" ? 60 : 1);
  if (onRedis && !limits.redis) {
    throw new UsageError(
      `--chaos event "${part}" needs the Redis the tool starts; expected ` +
        "--redis-server",
    );
  }
  if (!onRedis && node >= limits.nodes) {
    throw new UsageError(
      `--chaos event "${part}" names node ${node}, and ` +
        (limits.nodes === 0
          ? "the tool starts none; expected --server CMD"
          : `the tool starts ${limits.nodes}; expected a node from 0 to ${
            limits.nodes - 1
          }`),
    );
  }
  if (atS > limits.seconds) {
    throw new UsageError(
      `--chaos event "${part}" is at ${atS} s, after the run's end at ` +
        `${limits.seconds} s; expected a time within --minutes`,
    );
  }
  return {
    action,
    node,
    atS,
    text: `${action}${onRedis ? "" : `:${node}`}@${atS}s`,
  };
}

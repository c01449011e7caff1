/**
 * A crowd in one room: opens N idle clients into the lobby of a chat server
 * (hubchat or a comparison server), and measures what a crowd costs it: the
 * time to connect them all, the bytes it delivered per join, the server's
 * memory per connection four and a half seconds after the last one opened,
 * and the time one line takes to reach every one of them. With `--url` and `--at`, it instead opens its crowd
 * against a running server at a given moment, all at once, for a load run
 * to measure what a burst of arrivals does to the chat already going on.
 *
 * ```sh
 * deno run -A bench/crowd.ts --server "deno run -A main.ts --data :memory: \
 *   --rate 0 --max-connections-per-ip 0 --max-connections 0" --clients 10000
 * deno run -A bench/crowd.ts --server "deno run -A bench/naive_server.ts" \
 *   --clients 10000
 * deno run -A bench/crowd.ts --url ws://127.0.0.1:8080/ws --clients 1000 --at 3
 * ```
 *
 * Prints one JSON summary on stdout.
 *
 * @module
 */

import { type Flag, helpRows, readFlags, UsageError } from "../flags.ts";
import { forEachLine } from "../tools/chat_lines.ts";
import { connectAll, openChatClient } from "../tools/fleet.ts";
import {
  fetchText,
  metricsUrl,
  parsePrometheusText,
} from "../tools/metrics_reader.ts";
import { normalizeUrls } from "../tools/load_options.ts";
import { pinSelf, statusBytes } from "../tools/proc.ts";
import {
  type ServerProcess,
  startServerProcess,
} from "../tools/server_process.ts";
import { count, round } from "../tools/stats.ts";
import { sleep, withTimeout } from "../tools/wait.ts";
import { encodeFrame, Opcode } from "../tools/ws_frame.ts";
import { type RawClient, readBufferSize } from "../tools/ws_client.ts";

/**
 * Seconds between the delivered-bytes reading ({@linkcode PRESENCE_SETTLE_MS}
 * after the last connection) and the memory reading: long enough for the
 * handshakes' garbage to be collected and the welcomes to be written out,
 * as a server settles when a crowd has arrived.
 */
export const SETTLE_S = 3;

/**
 * Milliseconds between the last connection and the delivered-bytes
 * reading: presence (a large room's count) settles within a second. The
 * memory reading comes {@linkcode SETTLE_S} after this one.
 */
const PRESENCE_SETTLE_MS = 1500;

/** Handshakes at once: a crowd arriving, not a queue. */
export const CONNECT_CONCURRENCY = 500;

/** How long one line may take to reach everyone before the run gives up. */
export const BROADCAST_CAP_MS = 30_000;

/** What one run measured. */
export interface CrowdSummary {
  /** The server command, or the URL it ran against. */
  target: string;
  /** Clients asked for and clients welcomed. */
  clients: number;
  connected: number;
  /** Why clients failed to connect, counted. */
  connect_errors: Record<string, number>;
  /** From the first handshake to the last welcome. */
  connect_ms: number;
  /** Server RSS before the first connection and after settling (bytes). */
  rss_before: number | null;
  rss_after: number | null;
  /** (after − before) / connected: what one idle connection costs. */
  bytes_per_connection: number | null;
  /** From sending one line to the last client receiving it; null if not. */
  broadcast_ms: number | null;
  /** Clients that got the line (should be all of them). */
  broadcast_received: number;
  /**
   * Bytes the servers delivered while the crowd connected, per client
   * (`hubchat_delivered_bytes_total` from each server's /metrics; null
   * where a server has none): presence traffic, linear when it stays flat.
   */
  bytes_per_join: number | null;
}

const FLAGS: readonly Flag[] = [
  {
    name: "server",
    kind: "text",
    value: "CMD",
    help: "start CMD on a free port, measure it, stop it",
  },
  {
    name: "url",
    kind: "text",
    value: "URL",
    help:
      "running servers' /ws endpoints, comma-separated (instead of --server): client i goes to the i-th mod n",
  },
  {
    name: "clients",
    kind: "whole",
    min: 1,
    max: 100_000,
    value: "N",
    default: 1000,
    help: "clients in the crowd",
  },
  {
    name: "room",
    kind: "text",
    value: "ROOM",
    help: "the room the crowd goes to (default: the server's lobby)",
  },
  {
    name: "at",
    kind: "number",
    min: 0,
    max: 3600,
    value: "SEC",
    help: "with --url: arrive SEC seconds from now, stay as long again, " +
      "leave; no measurements but the connect time",
  },
  {
    name: "pin-server",
    kind: "whole",
    min: 0,
    max: 4095,
    value: "CPU",
    help: "run the server under taskset -c CPU",
  },
  {
    name: "pin-load",
    kind: "whole",
    min: 0,
    max: 4095,
    value: "CPU",
    help: "pin this process to CPU",
  },
];

const encoder = new TextEncoder();

/** How a welcome line starts, in hubchat and the comparison servers. */
const WELCOME = encoder.encode('{"type":"welcome"');

/** Options of {@linkcode runCrowd}. */
export interface CrowdOptions {
  /** Start this command and measure it (or use `url`). */
  server?: string;
  /** Running servers' /ws endpoints, comma-separated (round robin). */
  url?: string;
  /** Clients in the crowd. */
  clients: number;
  /** With `url`: arrive this many seconds from now, stay as long, leave. */
  at?: number;
  /** The room to go to; the server's default when absent. */
  room?: string;
  /** Pin the started server to this CPU. */
  pinServer?: number;
}

/**
 * Opens the crowd, measures it, closes it.
 *
 * @example
 * ```ts
 * import { runCrowd } from "./crowd.ts";
 * const summary = await runCrowd({
 *   server: "deno run -A bench/naive_server.ts",
 *   clients: 100,
 * });
 * console.log(summary.bytes_per_connection, summary.broadcast_ms);
 * ```
 */
export async function runCrowd(options: CrowdOptions): Promise<CrowdSummary> {
  const n = options.clients;
  let server: ServerProcess | null = null;
  // Without a server of its own, the given URLs as the load tool reads them.
  let urls = options.server === undefined ? normalizeUrls(options.url) : [];
  if (options.server !== undefined) {
    server = await startServerProcess(options.server, {
      pin: options.pinServer ?? null,
    });
    urls = [server.url];
  }
  if (options.room !== undefined) {
    urls = urls.map((url) => {
      const withRoom = new URL(url);
      withRoom.searchParams.set("room", options.room!);
      return withRoom.href;
    });
  }
  const rss = (): number | null =>
    server === null ? null : statusBytes(server.pid, "VmRSS");
  const clients: (RawClient | null)[] = new Array(n).fill(null);
  const errors: Record<string, number> = {};
  const marker = `crowd-${crypto.randomUUID().slice(0, 8)}`;
  const markerBytes = encoder.encode(marker);
  let received = 0;
  let lastReceivedAt = 0;
  const everyone = Promise.withResolvers<void>();
  const seen = new Uint8Array(n);
  try {
    if (options.at !== undefined) await sleep(options.at * 1000);
    const rssBefore = rss();
    const bytesBefore = await deliveredBytes(urls);
    const started = performance.now();
    let connected = 0;
    await connectAll(n, {
      concurrency: CONNECT_CONCURRENCY,
      errors,
      connect: async (i, deadline) => {
        const welcome = Promise.withResolvers<boolean>();
        const opened = await openChatClient(
          urls[i % urls.length],
          `crowd${i}`,
          {
            timeoutMs: Math.max(1, deadline - performance.now()),
            bufferSize: readBufferSize(n),
            welcome,
            onEnd() {},
            onText(buf, from, to) {
              forEachLine(buf, from, to, (start, end) => {
                if (includes(buf, start, start + WELCOME.length, WELCOME)) {
                  welcome.resolve(true);
                } else if (!seen[i] && includes(buf, start, end, markerBytes)) {
                  seen[i] = 1;
                  received++;
                  lastReceivedAt = performance.now();
                  if (received === n) everyone.resolve();
                }
              });
            },
          },
        );
        clients[i] = opened.client;
        if (opened.problem === null) connected++;
        else count(errors, opened.problem);
      },
    });
    const connectMs = performance.now() - started;
    await sleep(PRESENCE_SETTLE_MS);
    const bytesAfter = await deliveredBytes(urls);
    if (options.at !== undefined) {
      await sleep(options.at * 1000);
    } else {
      await sleep(SETTLE_S * 1000);
    }
    const rssAfter = rss();
    let broadcastMs: number | null = null;
    if (options.at === undefined && connected > 0) {
      const sender = clients.find((client) => client !== null && !client.ended);
      const sentAt = performance.now();
      sender?.send(encodeFrame({
        opcode: Opcode.text,
        payload: JSON.stringify({ type: "message", text: marker }),
        mask: "zero",
      }));
      await withTimeout(everyone.promise, BROADCAST_CAP_MS, undefined);
      if (received > 0) broadcastMs = lastReceivedAt - sentAt;
    }
    return {
      target: options.server ?? urls.join(","),
      clients: n,
      connected,
      connect_errors: errors,
      connect_ms: round(connectMs, 1),
      rss_before: rssBefore,
      rss_after: rssAfter,
      bytes_per_connection: rssBefore !== null && rssAfter !== null &&
          connected > 0
        ? Math.round((rssAfter - rssBefore) / connected)
        : null,
      broadcast_ms: broadcastMs === null ? null : round(broadcastMs, 1),
      broadcast_received: received,
      bytes_per_join: bytesBefore !== null && bytesAfter !== null &&
          connected > 0
        ? Math.round((bytesAfter - bytesBefore) / connected)
        : null,
    };
  } finally {
    await Promise.all(clients.map((client) => client?.close(5_000)));
    await server?.stop();
  }
}

/**
 * `hubchat_delivered_bytes_total` summed over the servers (their /metrics
 * beside /ws, each read within metrics_reader.ts's timeout), or null when
 * one has no such metric or does not answer.
 */
async function deliveredBytes(urls: string[]): Promise<number | null> {
  let total = 0;
  for (const url of urls) {
    let samples;
    try {
      samples = parsePrometheusText(await fetchText(metricsUrl(url)));
    } catch {
      return null;
    }
    const row = samples.find((s) => s.name === "hubchat_delivered_bytes_total");
    if (row === undefined) return null;
    total += row.value;
  }
  return total;
}

/** True when `needle` occurs in `buf[start, end)`. */
function includes(
  buf: Uint8Array,
  start: number,
  end: number,
  needle: Uint8Array,
): boolean {
  outer: for (let i = start; i + needle.length <= end; i++) {
    for (let j = 0; j < needle.length; j++) {
      if (buf[i + j] !== needle[j]) continue outer;
    }
    return true;
  }
  return false;
}

async function main(): Promise<void> {
  let values;
  try {
    const read = readFlags(FLAGS, Deno.args);
    if (read.help) {
      console.log(
        "Usage: deno run -A bench/crowd.ts (--server CMD | --url URL) " +
          `[options]\n\n${helpRows(FLAGS)}`,
      );
      return;
    }
    values = read.values;
    if ((values.server === undefined) === (values.url === undefined)) {
      throw new UsageError("give one of --server CMD and --url URL");
    }
    if (values.at !== undefined && values.url === undefined) {
      throw new UsageError("--at goes with --url");
    }
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    console.error(`crowd: ${error.message}`);
    Deno.exit(2);
  }
  if (values.pinLoad !== undefined) await pinSelf(values.pinLoad as number);
  const summary = await runCrowd({
    server: values.server as string | undefined,
    url: values.url as string | undefined,
    clients: (values.clients ?? 1000) as number,
    at: values.at as number | undefined,
    room: values.room as string | undefined,
    pinServer: values.pinServer as number | undefined,
  });
  console.log(JSON.stringify(summary, null, 2));
}

if (import.meta.main) await main();

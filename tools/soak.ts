/**
 * hubchat's soak tool: holds N WebSocket clients against a chat server for M
 * minutes at an offered rate (open loop), optionally churning some of them,
 * and prints one line per interval (delivered/s, p50/p99 latency,
 * lost/duplicated/out-of-order so far, evictions, server RSS), then a JSON
 * summary with the RSS series and its growth, to spot leaks and slow decay
 * that a 10-second load run cannot show.
 *
 * ```sh
 * deno task soak --server "deno run -A main.ts" --clients 200 --minutes 2 --rate 5000
 * deno task soak --url ws://127.0.0.1:8080/ws --clients 50 --minutes 60 --rate 1000 --churn 5
 * deno task soak --help
 * ```
 *
 * The last line, on stderr, is the verdict (see verdict.ts): `PASS: ...`
 * with exit status 0, or `FAIL: ...` and why with exit status 1.
 *
 * @module
 */

import {
  encodeText,
  errorCode,
  forEachLine,
  messageFrame,
  type ParsedLine,
  runId,
  scanLine,
} from "./chat_lines.ts";
import {
  CLOSE_CAP_MS,
  connectAll,
  connectCapSeconds,
  drain,
  openChatClient,
  sendOpenLoop,
} from "./fleet.ts";
import {
  DEFAULT_CONNECT_CONCURRENCY,
  DEFAULT_CONNECT_TIMEOUT_S,
} from "./load_options.ts";
import {
  fetchText,
  METRICS_TIMEOUT_MS,
  metricsUrl,
  readServerMetrics,
  type ServerMetricsReading,
} from "./metrics_reader.ts";
import type { ChaosEvent } from "./chaos.ts";
import { DeliveryLedger } from "./delivery_ledger.ts";
import { NodeGroup } from "./node_group.ts";
import { statusBytes } from "./proc.ts";
import {
  REDIS_START_CAP_MS,
  REDIS_STOP_CAP_MS,
  RedisProcess,
} from "./redis_process.ts";
import { SERVER_START_CAP_MS, SERVER_STOP_CAP_MS } from "./server_process.ts";
import {
  type ChaosRecord,
  parseSoakArgs,
  type ResolvedSoakOptions,
  resolveSoakOptions,
  SOAK_HELP,
  type SoakArgs,
  type SoakOptions,
  type SoakStart,
} from "./soak_options.ts";
import {
  formatInterval,
  IntervalAggregator,
  type IntervalReport,
  type IntervalSnapshot,
  mib,
  type RssSummary,
  summarizeRss,
} from "./soak_report.ts";
import { count, round, SequenceTracker } from "./stats.ts";
import { judgeRun } from "./verdict.ts";
import { sleep } from "./wait.ts";
import { type RawClient, readBufferSize } from "./ws_client.ts";

/** Handshakes (up to the welcome) as the load tool makes them. */
const CONNECT_TIMEOUT_MS = DEFAULT_CONNECT_TIMEOUT_S * 1000;

/** After sending stops, wait this long at most for in-flight messages. */
const DRAIN_MS = 5_000;

/** An evicted client retries after 1 s, doubling up to one interval. */
const RECONNECT_BACKOFF_MS = 1_000;

/** A cut closer than this to the previous one is not worth a report line. */
const MIN_INTERVAL_MS = 50;

/**
 * After a chaos event, every client may be disconnected for a while (all
 * were on the killed node, or are backing off): the run is not aborted
 * for that until this long after the last event, or two intervals if
 * longer. 10 s covers a node's restart and the clients' backoff.
 */
const CHAOS_GRACE_MS = 10_000;

/** The result of one soak; the CLI prints it as JSON. */
export interface SoakSummary {
  /** The resolved options. */
  config: ResolvedSoakOptions;
  /**
   * The URL the clients used (also `config.url`); with several nodes,
   * their URLs joined by commas, as `--url` takes them.
   */
  url: string;
  /** The URLs the clients used, one per node: client i used `urls[i % n]`. */
  urls: string[];
  /** True when the run passed (see `verdict`). */
  passed: boolean;
  /**
   * `PASS: ...`, or `FAIL: ...` and why: not cut short, every client
   * connected at the start, nothing lost, duplicated or reordered
   * (verdict.ts).
   */
  verdict: string;
  /** Prefix of every username and message of this run. */
  run_id: string;
  /** Wall-clock start, ISO 8601. */
  started_at: string;
  /** Seconds of sending (the intervals together). */
  elapsed_s: number;
  /** The run was cut short by its signal (SIGINT). */
  interrupted: boolean;
  /** Why the run stopped early on its own, or null. */
  aborted: string | null;
  /** Interval reports cut. */
  intervals: number;
  /** Clients that got their welcome in the connect phase. */
  clients_connected: number;
  /** Seconds the connect phase took. */
  connect_seconds: number;
  /** Messages sent. */
  messages_sent: number;
  /** Open-loop sends skipped because the scheduler ran late. */
  skipped_sends: number;
  /** Sends skipped because that sender was disconnected. */
  skipped_sender_down: number;
  /** Deliveries during the intervals. */
  deliveries: number;
  /** All deliveries, drain included. */
  deliveries_total: number;
  /** `deliveries / elapsed_s`. */
  delivered_per_sec: number;
  /** The `rate` option. */
  offered_deliveries_per_sec: number;
  /** Latency of every delivery of the run, ms. */
  latency_ms: {
    count: number;
    p50: number;
    p90: number;
    p99: number;
    p999: number;
    max: number;
  };
  /**
   * Total lost: deliveries that clients connected when a message was sent
   * did not get although some client got it (stable clients' plus other
   * sessions'), plus messages sent on a connection that stayed up which no
   * client got and the server did not refuse (`unacknowledged.dropped`).
   */
  lost: number;
  /** Total duplicated. */
  duplicated: number;
  /** Total out of order. */
  out_of_order: number;
  /** Clients connected from start to end, never churned nor evicted. */
  stable: {
    clients: number;
    complete: number;
    lost: number;
    duplicated: number;
    out_of_order: number;
  };
  /**
   * Messages no client got, by why. `refused`: the server answered with
   * an `error` (by code in `server_error_codes`): not lost.
   * `in_flight_at_disconnect`: sent on a connection the server then
   * dropped (a killed node), never acknowledged: not lost. `dropped`: sent
   * on a connection that stayed up, neither delivered nor refused: lost
   * (counted in `lost`).
   */
  unacknowledged: {
    refused: number;
    in_flight_at_disconnect: number;
    dropped: number;
  };
  /** Every other connection (churn, reconnects after evictions). */
  sessions: {
    count: number;
    reconnects: number;
    lost: number;
    duplicated: number;
    out_of_order: number;
  };
  /** Clients closed by the server, by close code ("none": no close frame). */
  evictions: Record<string, number>;
  /** Server-side evictions by cause from `/metrics`, or null. */
  server_evictions: Record<string, number> | null;
  /** Connect failures by message (initial and reconnects). */
  connect_errors: Record<string, number>;
  /** Connect failures of the connect phase only, by message. */
  initial_connect_errors: Record<string, number>;
  /** `error` messages from the server, by code. */
  server_error_codes: Record<string, number>;
  /** Chat messages not from this run, ignored. */
  foreign_messages: number;
  /** Server pid (node 0's, as first started), or null. */
  server_pid: number | null;
  /** Server command line as run (node 0's), or null. */
  server_process: string | null;
  /** Server exit code after SIGTERM (node 0's; null if killed or not started). */
  server_exit_code: number | null;
  /**
   * The nodes the tool started: URL, restarts, and every exit code (null:
   * ended by a signal, as a chaos kill); null without `server`.
   */
  nodes:
    | { url: string; restarts: number; exit_codes: (number | null)[] }[]
    | null;
  /** The Redis the tool started: URL, restarts; or null. */
  redis: { url: string; restarts: number } | null;
  /** What each chaos event did, in order. */
  chaos: ChaosRecord[];
  /** Where RSS came from. */
  rss_source: "proc" | "metrics" | null;
  /** Server RSS before the clients connected, bytes. */
  rss_before_clients_bytes: number | null;
  /** The RSS trend. */
  rss: RssSummary;
  /** Per-interval series, for plotting. */
  series: {
    elapsed_s: number[];
    delivered_per_sec: number[];
    p50_ms: number[];
    p99_ms: number[];
    rss_bytes: (number | null)[];
    clients_open: number[];
  };
}

/** One WebSocket connection of a client slot, from handshake to its end. */
interface Session {
  /** The client slot (0 .. clients-1). */
  index: number;
  /** Connected before sending started and never left: full accounting. */
  stable: boolean;
  /** Per sender: messages this connection got (1 receiver × senders). */
  tracker: SequenceTracker;
  /**
   * Per sender, for connections made while sending: the first sequence
   * number this connection must get, what that sender had sent when it
   * was welcomed (Infinity until then); null: counted from 0.
   */
  base: Float64Array | null;
  /**
   * Arrivals below the base after one at or above it from the same
   * sender: out of order, counted apart. (Below the base before any: sent
   * before the welcome, in flight; neither expected nor counted.)
   */
  early: number;
  /** `error` replies on this connection: refused lines. */
  errors: number;
  /** A sender's: the first sequence number it sent (-1: none). */
  sentFrom: number;
  /** A sender's: one past the last sequence number it sent. */
  sentTo: number;
  /** A sender's: how many it sent reached a client (for the drain). */
  accepted: number;
  /** The server ended it (a close, or the connection dropped). */
  endedByServer: boolean;
  client: RawClient | null;
  /** Welcomed and not ended. */
  open: boolean;
  /** We are closing it (churn or shutdown): its end is no eviction. */
  closing: boolean;
  /** Its counts were moved into the run's totals. */
  retired: boolean;
  welcome: ((ok: boolean) => void) | null;
}

/**
 * Runs one soak and returns its summary. Every phase is bounded in time
 * (connect cap, `minutes`, 5 s drain, 5 s close); every socket, timer and the
 * started server are gone before it resolves. Aborting `signal` ends it early
 * with the summary so far.
 *
 * @example
 * ```ts
 * import { runSoak } from "./soak.ts";
 * const summary = await runSoak({
 *   url: "ws://127.0.0.1:8080/ws",
 *   clients: 20,
 *   minutes: 0.5,
 *   rate: 2000,
 *   interval: 5,
 *   onInterval: (r) => console.log(r.delivered_per_sec, r.latency_ms.p99),
 * });
 * console.log(summary.lost, summary.rss.growth_bytes);
 * ```
 */
export async function runSoak(options: SoakOptions = {}): Promise<SoakSummary> {
  const cfg = resolveSoakOptions(options);
  const run = runId();
  const runBytes = new TextEncoder().encode(run);
  const n = cfg.clients;
  const senders = cfg.senders;
  const intervalMs = cfg.interval * 1000;
  const bufferSize = readBufferSize(n);
  const startedAt = new Date().toISOString();

  // Stops sending, churn, reconnects and the interval loop.
  const halt = new AbortController();
  let interrupted = false;
  function onAbort(): void {
    interrupted = true;
    halt.abort();
  }
  if (options.signal?.aborted) interrupted = true;
  options.signal?.addEventListener("abort", onAbort, { once: true });

  let group: NodeGroup | null = null;
  let redis: RedisProcess | null = null;
  let urls = cfg.urls;
  /** Node 0's command line and first pid, kept past its stop. */
  let serverCommandLine: string | null = null;
  let serverPid: number | null = null;
  let serverExitCode: number | null = null;
  /** Every message that reached a client, per sender. */
  const ledger = new DeliveryLedger(senders);
  /** Connections that ended, kept for the loss accounting. */
  const retiredSessions: Session[] = [];
  /** Every connection of a sender, for what its messages became. */
  const senderSessions: Session[] = [];
  /** Per sender, the connection it sent on last, or null. */
  const sentLastOn: (Session | null)[] = new Array(senders).fill(null);
  const chaosLog: ChaosRecord[] = [];
  /** Chaos events in progress, and when the last one ended. */
  let chaosBusy = 0;
  let lastChaosAt = -Infinity;
  const slots: (Session | null)[] = new Array(n).fill(null);
  const generation = new Uint32Array(n);
  const busy = new Uint8Array(n);
  const sent = new Array<number>(senders).fill(0);
  const evictions: Record<string, number> = {};
  const connectErrors: Record<string, number> = {};
  const serverErrorCodes: Record<string, number> = {};
  const retiredTotals = { duplicated: 0, outOfOrder: 0 };
  const line: ParsedLine = { kind: "other", sender: 0, seq: 0, sentUs: 0 };
  const tasks = new Set<Promise<void>>();
  let agg = new IntervalAggregator(performance.now());
  let sendingStarted = false;
  let closing = false;
  let openCount = 0;
  let sentTotal = 0;
  let skipped = 0;
  let skippedSenderDown = 0;
  let deliveriesTotal = 0;
  let foreign = 0;
  let reconnects = 0;
  let sessionCount = 0;
  let aborted: string | null = null;
  let connectSeconds = 0;
  let clientsConnected = 0;
  let initialConnectErrors: Record<string, number> = {};
  let rssPids: number[] = [];
  let rssSource: "proc" | "metrics" | null = null;
  let rssBefore: number | null = null;
  let metricsAt: string | null = null;
  let evictionBase: Record<string, number> = {};
  let lastServerEvictions: Record<string, number> | null = null;

  function onText(
    session: Session,
    buf: Uint8Array,
    from: number,
    to: number,
    now: number,
  ): void {
    const nowUs = now * 1000;
    forEachLine(buf, from, to, (start, end) => {
      const kind = scanLine(buf, start, end, runBytes, line);
      if (kind === "message") onMessage(session, nowUs);
      else if (kind === "foreign") foreign++;
      else if (kind === "welcome") session.welcome?.(true);
      else if (kind === "error") {
        count(serverErrorCodes, errorCode(buf, start, end));
        session.errors++;
      }
    });
  }

  function onMessage(session: Session, nowUs: number): void {
    const s = line.sender;
    if (s >= senders) {
      foreign++;
      return;
    }
    if (ledger.mark(s, line.seq)) {
      const by = sentLastOn[s];
      if (by !== null && line.seq >= by.sentFrom) by.accepted++;
    }
    let seq = line.seq;
    if (session.base !== null) {
      seq -= session.base[s];
      if (seq < 0) {
        if (session.tracker.next(0, s) > 0) session.early++;
        seq = -1;
      }
    }
    if (seq >= 0 && session.tracker.record(0, s, seq) === "duplicate") return;
    deliveriesTotal++;
    agg.record(nowUs - line.sentUs);
  }

  /**
   * Moves a finished connection's counts into the run's totals, once; its
   * gaps are judged against the ledger whenever loss is counted.
   */
  function retire(session: Session): void {
    if (session.retired) return;
    session.retired = true;
    session.stable = false;
    retiredTotals.duplicated += session.tracker.duplicated;
    retiredTotals.outOfOrder += session.tracker.outOfOrder + session.early;
    retiredSessions.push(session);
  }

  /**
   * Messages a connection missed below the highest it got from each
   * sender, that some client got: lost to it.
   */
  function acceptedGaps(session: Session): number {
    let total = 0;
    for (let s = 0; s < senders; s++) {
      const offset = session.base?.[s] ?? 0;
      for (const gap of session.tracker.missing(0, s)) {
        if (ledger.has(s, gap + offset)) total++;
      }
    }
    return total;
  }

  /**
   * Messages an open connection should have by now and does not: every
   * message from its base on that some client got, less what it got.
   */
  function missedSoFar(session: Session): number {
    let expected = 0;
    for (let s = 0; s < senders; s++) {
      expected += ledger.count(s, session.base?.[s] ?? 0);
    }
    return Math.max(0, expected - session.tracker.distinct(0));
  }

  function onEnd(session: Session): void {
    if (!session.open) return;
    session.open = false;
    openCount--;
    if (session.closing || closing) return;
    session.endedByServer = true;
    const code = session.client?.serverCloseCode;
    count(evictions, code == null ? "none" : String(code));
    retire(session);
    scheduleReconnect(session.index);
  }

  async function connectSession(i: number, deadline: number): Promise<boolean> {
    const welcome = Promise.withResolvers<boolean>();
    const session: Session = {
      index: i,
      stable: !sendingStarted,
      tracker: new SequenceTracker(1, senders),
      base: sendingStarted ? new Float64Array(senders).fill(Infinity) : null,
      early: 0,
      client: null,
      open: false,
      closing: false,
      retired: false,
      welcome: welcome.resolve,
      errors: 0,
      sentFrom: -1,
      sentTo: -1,
      accepted: 0,
      endedByServer: false,
    };
    const opened = await openChatClient(
      urls[i % urls.length],
      `soak-${run}-${i}.${generation[i]++}`,
      {
        timeoutMs: Math.max(
          1,
          Math.min(CONNECT_TIMEOUT_MS, deadline - performance.now()),
        ),
        bufferSize,
        onText: (buf, start, end, now) => onText(session, buf, start, end, now),
        onEnd: () => onEnd(session),
        welcome,
      },
    );
    session.client = opened.client;
    session.welcome = null;
    if (opened.problem === null) {
      // From here on, what each sender sends must reach it.
      if (session.base !== null) session.base = Float64Array.from(sent);
      session.open = true;
      openCount++;
      slots[i] = session;
      sessionCount++;
      if (i < senders) senderSessions.push(session);
      return true;
    }
    count(connectErrors, opened.problem);
    session.closing = true;
    await session.client?.close(CLOSE_CAP_MS);
    return false;
  }

  function track(task: Promise<void>): void {
    tasks.add(task);
    task.finally(() => tasks.delete(task));
  }

  /** After an eviction: reconnect with backoff until it works or we stop. */
  function scheduleReconnect(i: number): void {
    if (busy[i] || halt.signal.aborted) return;
    busy[i] = 1;
    track((async () => {
      let backoff = RECONNECT_BACKOFF_MS;
      while (!halt.signal.aborted) {
        await sleep(backoff, halt.signal);
        if (halt.signal.aborted) break;
        if (await connectSession(i, performance.now() + CONNECT_TIMEOUT_MS)) {
          reconnects++;
          break;
        }
        backoff = Math.min(backoff * 2, Math.max(intervalMs, backoff));
      }
      busy[i] = 0;
    })());
  }

  /** Client `j` leaves and rejoins once per interval, at a random moment. */
  async function churnTask(
    j: number,
    t0: number,
    endAt: number,
  ): Promise<void> {
    for (let k = 0; !halt.signal.aborted; k++) {
      const at = t0 + (k + Math.random()) * intervalMs;
      if (at >= endAt) break;
      await sleep(at - performance.now(), halt.signal);
      if (halt.signal.aborted) break;
      if (busy[j]) continue;
      busy[j] = 1;
      const old = slots[j];
      if (old !== null && old.open) {
        old.closing = true;
        await old.client?.close(CLOSE_CAP_MS);
        retire(old);
      }
      if (!halt.signal.aborted) {
        const ok = await connectSession(
          j,
          performance.now() + CONNECT_TIMEOUT_MS,
        );
        if (ok) reconnects++;
      }
      busy[j] = 0;
    }
  }

  function sendOne(s: number): void {
    const session = slots[s];
    if (session === null || !session.open || session.closing) {
      skippedSenderDown++;
      return;
    }
    const seq = sent[s];
    const sentUs = Math.round(performance.now() * 1000);
    const text = encodeText(run, { sender: s, seq, sentUs, size: cfg.size });
    session.client?.send(messageFrame(text));
    if (session.sentFrom < 0) {
      session.sentFrom = seq;
      sentLastOn[s] = session;
    }
    session.sentTo = seq + 1;
    sent[s] = seq + 1;
    sentTotal++;
  }

  /** Open loop: message k is due at t0 + k / rate; late sends are skipped. */
  function sendLoop(): Promise<void> {
    return sendOpenLoop(cfg.rate / n, sendOne, {
      senders,
      signal: halt.signal,
      onSkip: (late) => skipped += late,
    });
  }

  /** The pids RSS is read from now: the running nodes, or `serverPids`. */
  function currentRssPids(): number[] {
    return group !== null ? group.pids : rssPids;
  }

  function readRss(scraped: number | null): number | null {
    if (rssSource === "proc") {
      let total: number | null = null;
      for (const pid of currentRssPids()) {
        const bytes = statusBytes(pid, "VmRSS");
        if (bytes !== null) total = (total ?? 0) + bytes;
      }
      return total;
    }
    return rssSource === "metrics" ? scraped : null;
  }

  async function scrape(): Promise<ServerMetricsReading | null> {
    if (metricsAt === null) return null;
    try {
      return readServerMetrics(await fetchText(metricsAt));
    } catch {
      return null;
    }
  }

  function evictionDelta(
    now: Record<string, number> | null,
  ): Record<string, number> | null {
    if (now === null) return lastServerEvictions;
    const delta: Record<string, number> = {};
    for (const [cause, value] of Object.entries(now)) {
      delta[cause] = value - (evictionBase[cause] ?? 0);
    }
    lastServerEvictions = delta;
    return delta;
  }

  function snapshot(reading: ServerMetricsReading | null): IntervalSnapshot {
    let lost = 0;
    for (const session of retiredSessions) lost += acceptedGaps(session);
    let duplicated = retiredTotals.duplicated;
    let outOfOrder = retiredTotals.outOfOrder;
    for (const session of slots) {
      if (session === null || session.retired) continue;
      lost += acceptedGaps(session);
      duplicated += session.tracker.duplicated;
      outOfOrder += session.tracker.outOfOrder + session.early;
    }
    return {
      sent: sentTotal,
      skipped,
      lost,
      duplicated,
      outOfOrder,
      evictions,
      reconnects,
      clientsOpen: openCount,
      clients: n,
      rssBytes: readRss(reading?.rssBytes ?? null),
      serverEvictions: evictionDelta(reading?.evictions ?? null),
      serverConnections: reading?.connections ?? null,
    };
  }

  /** Does one chaos event; throws when it could not be done. */
  async function doChaos(event: ChaosEvent): Promise<void> {
    switch (event.action) {
      case "kill-node":
        return await group!.kill(event.node, "SIGKILL");
      case "restart-node":
        return await group!.restart(event.node);
      case "kill-redis":
        return await redis!.kill("SIGKILL");
      case "restart-redis":
        return await redis!.restart();
    }
  }

  /**
   * Runs the chaos schedule from `t0` (when sending started) until its
   * end or the halt. An event that fails aborts the run: what it was to
   * test did not happen.
   */
  async function chaosTask(t0: number): Promise<void> {
    for (const event of cfg.chaos) {
      await sleep(t0 + event.atS * 1000 - performance.now(), halt.signal);
      if (halt.signal.aborted) return;
      const began = performance.now();
      let error: string | null = null;
      chaosBusy++;
      try {
        await doChaos(event);
      } catch (e) {
        error = (e as Error).message;
      }
      chaosBusy--;
      lastChaosAt = performance.now();
      const record: ChaosRecord = {
        at_s: round((began - t0) / 1000, 2),
        event: event.text,
        ok: error === null,
        error,
        took_s: round((lastChaosAt - began) / 1000, 2),
      };
      chaosLog.push(record);
      options.onChaos?.(record);
      if (error !== null) {
        aborted ??= `chaos event ${event.text} failed: ${error}`;
        halt.abort();
        return;
      }
    }
  }

  /**
   * Whether a chaos event explains that no client is connected: one is in
   * progress, something it killed is still down, or the last one ended
   * under max(10 s, 2 intervals) ago (clients back off up to an
   * interval).
   */
  function chaosOutage(): boolean {
    if (cfg.chaos.length === 0) return false;
    const down = (group?.nodes.some((node) => node.process === null) ??
      false) || (redis !== null && !redis.running);
    const grace = Math.max(CHAOS_GRACE_MS, 2 * intervalMs);
    return chaosBusy > 0 || down || performance.now() - lastChaosAt < grace;
  }

  /**
   * Why the run should stop now that a node or the tool's Redis is gone
   * without the schedule having killed it, or null.
   */
  function nodeGone(): string | null {
    // An event in progress may have ended a process it has not yet let go.
    if (chaosBusy > 0) return null;
    const redisPid = redis?.pid ?? null;
    if (redisPid !== null && statusBytes(redisPid, "VmRSS") === null) {
      return "the redis-server exited";
    }
    for (const node of group?.nodes ?? []) {
      // A node the schedule killed has no process until it restarts.
      if (node.process === null) continue;
      if (statusBytes(node.process.pid, "VmRSS") === null) {
        return cfg.nodes === 1
          ? "the server process exited"
          : `node ${node.index} exited`;
      }
    }
    return null;
  }

  let intervalsStart = performance.now();
  let elapsedS = 0;
  try {
    if (cfg.redisServer) redis = await RedisProcess.start({ appendonly: true });
    if (cfg.server !== null) {
      group = await NodeGroup.start(cfg.server, {
        nodes: cfg.nodes,
        asIs: cfg.serverAsIs,
        redis: redis?.url,
      });
      urls = group.urls;
      serverCommandLine = group.nodes[0].process!.commandLine;
      serverPid = group.nodes[0].process!.pid;
    } else {
      serverPid = cfg.serverPid;
    }
    rssPids = cfg.serverPids;
    if (currentRssPids().some((pid) => statusBytes(pid, "VmRSS") !== null)) {
      rssSource = "proc";
    }
    // /metrics is optional: hubchat serves it, other servers may not. Of
    // several nodes, the first one's is read.
    const probeUrl = metricsUrl(urls[0]);
    let first: ServerMetricsReading | null = null;
    try {
      first = readServerMetrics(await fetchText(probeUrl));
      metricsAt = probeUrl;
    } catch {
      metricsAt = null;
    }
    if (first !== null) {
      evictionBase = first.evictions ?? {};
      if (rssSource === null && first.rssBytes !== null) rssSource = "metrics";
    }
    rssBefore = readRss(first?.rssBytes ?? null);

    // Connect: bounded concurrency, bounded total time.
    const connectStart = performance.now();
    await connectAll(n, {
      concurrency: DEFAULT_CONNECT_CONCURRENCY,
      connect: connectSession,
      errors: connectErrors,
      stopped: () => halt.signal.aborted,
    });
    connectSeconds = round((performance.now() - connectStart) / 1000, 3);
    clientsConnected = openCount;
    initialConnectErrors = { ...connectErrors };
    if (openCount === 0) aborted = "no client connected";
    for (let s = 0; s < senders && aborted === null; s++) {
      if (slots[s] === null) aborted = `sender ${s} failed to connect`;
    }
    if (halt.signal.aborted && aborted === null) aborted = "interrupted";

    if (aborted === null) {
      options.onStart?.({
        run_id: run,
        url: urls.join(","),
        urls,
        config: { ...cfg, url: urls.join(","), urls },
        clients_connected: openCount,
        connect_seconds: connectSeconds,
        connect_errors: { ...connectErrors },
        server_pid: serverPid,
        server_pids: currentRssPids(),
        redis: redis === null ? null : { url: redis.url, pid: redis.pid },
        server_process: serverCommandLine,
        rss_before_clients_bytes: rssBefore,
        rss_source: rssSource,
        metrics_url: metricsAt,
      });
      sendingStarted = true;
      intervalsStart = performance.now();
      agg = new IntervalAggregator(intervalsStart);
      const endAt = intervalsStart + cfg.minutes * 60_000;
      const sending = sendLoop();
      for (let j = n - cfg.churn; j < n; j++) {
        track(churnTask(j, intervalsStart, endAt));
      }
      if (cfg.chaos.length > 0) track(chaosTask(intervalsStart));
      for (let k = 1;; k++) {
        const target = Math.min(intervalsStart + k * intervalMs, endAt);
        await sleep(target - performance.now(), halt.signal);
        const now = performance.now();
        // The last cut: a remainder under MIN_INTERVAL_MS is not worth one.
        const last = halt.signal.aborted || target >= endAt - MIN_INTERVAL_MS;
        if (last && agg.sinceCut(now) < MIN_INTERVAL_MS) break;
        const reading = await scrape();
        const report = agg.cut(now, snapshot(reading));
        options.onInterval?.(report);
        if (last) break;
        aborted ??= nodeGone();
        if (aborted === null && openCount === 0 && !chaosOutage()) {
          aborted = "every client is disconnected (server gone?)";
        }
        if (aborted !== null) break;
      }
      elapsedS = round((performance.now() - intervalsStart) / 1000, 3);
      halt.abort();
      await sending;
      // Drain: wait until every line of a connected sender reached a
      // client or was refused, and the stable clients have every line
      // that reached anyone (in a clean run: every line sent).
      await drain(() => {
        let accepted = 0;
        for (let s = 0; s < senders; s++) accepted += ledger.count(s);
        for (const session of slots) {
          if (session === null || !session.open) continue;
          if (session.stable && session.tracker.distinct(0) < accepted) {
            return false;
          }
          const unanswered = session.sentTo - session.sentFrom -
            session.accepted;
          if (session.sentFrom >= 0 && unanswered > session.errors) {
            return false;
          }
        }
        return true;
      }, DRAIN_MS);
    }
  } finally {
    halt.abort();
    closing = true;
    options.signal?.removeEventListener("abort", onAbort);
    while (tasks.size > 0) await Promise.all([...tasks]);
    await Promise.all(
      slots.map((session) => {
        if (session === null) return undefined;
        session.closing = true;
        return session.client?.close(CLOSE_CAP_MS);
      }),
    );
    if (group !== null) serverExitCode = (await group.stop())[0];
    await redis?.stop();
  }

  // Summary.
  const stable = {
    clients: 0,
    complete: 0,
    lost: 0,
    duplicated: 0,
    out_of_order: 0,
  };
  const others = {
    lost: 0,
    duplicated: retiredTotals.duplicated,
    out_of_order: retiredTotals.outOfOrder,
  };
  // Ended connections: what they missed below what they got.
  for (const session of retiredSessions) others.lost += acceptedGaps(session);
  // Open ones: everything some client got since they were welcomed.
  for (const session of slots) {
    if (session === null || session.retired) continue;
    const lost = missedSoFar(session);
    if (session.stable) {
      stable.clients++;
      stable.lost += lost;
      stable.duplicated += session.tracker.duplicated;
      stable.out_of_order += session.tracker.outOfOrder + session.early;
      if (lost === 0 && session.tracker.duplicated === 0) stable.complete++;
    } else {
      others.lost += lost;
      others.duplicated += session.tracker.duplicated;
      others.out_of_order += session.tracker.outOfOrder + session.early;
    }
  }
  // What became of the messages no client got (see unacknowledged).
  const unacknowledged = { refused: 0, in_flight_at_disconnect: 0, dropped: 0 };
  for (const session of senderSessions) {
    if (session.sentFrom < 0) continue;
    const s = session.index;
    const nobodyGot = session.sentTo - session.sentFrom -
      ledger.count(s, session.sentFrom, session.sentTo);
    const refused = Math.min(nobodyGot, session.errors);
    unacknowledged.refused += refused;
    if (session.endedByServer) {
      unacknowledged.in_flight_at_disconnect += nobodyGot - refused;
    } else {
      unacknowledged.dropped += nobodyGot - refused;
    }
  }
  const reports = agg.reports;
  const overall = agg.overall;
  const ms = (us: number): number => round(us / 1000, 3);
  const lost = stable.lost + others.lost + unacknowledged.dropped;
  const duplicated = stable.duplicated + others.duplicated;
  const outOfOrder = stable.out_of_order + others.out_of_order;
  const verdict = judgeRun({
    clients: n,
    connected: clientsConnected,
    connectErrors: initialConnectErrors,
    deliveries: deliveriesTotal,
    lost,
    duplicated,
    outOfOrder,
    aborted: aborted === "interrupted" ? null : aborted,
    interrupted: interrupted
      ? `cut short after ${elapsedS} s of ${cfg.minutes} min`
      : null,
  });
  const url = urls.join(",");
  return {
    config: { ...cfg, url, urls },
    url,
    urls,
    passed: verdict.pass,
    verdict: verdict.line,
    run_id: run,
    started_at: startedAt,
    elapsed_s: elapsedS,
    interrupted,
    aborted: aborted === "interrupted" ? null : aborted,
    intervals: reports.length,
    clients_connected: clientsConnected,
    connect_seconds: connectSeconds,
    messages_sent: sentTotal,
    skipped_sends: skipped,
    skipped_sender_down: skippedSenderDown,
    deliveries: agg.deliveries,
    deliveries_total: deliveriesTotal,
    delivered_per_sec: elapsedS > 0 ? Math.round(agg.deliveries / elapsedS) : 0,
    offered_deliveries_per_sec: cfg.rate,
    latency_ms: {
      count: overall.count,
      p50: ms(overall.percentile(50)),
      p90: ms(overall.percentile(90)),
      p99: ms(overall.percentile(99)),
      p999: ms(overall.percentile(99.9)),
      max: ms(overall.max),
    },
    lost,
    duplicated,
    out_of_order: outOfOrder,
    unacknowledged,
    stable,
    sessions: {
      count: Math.max(0, sessionCount - clientsConnected),
      reconnects,
      ...others,
    },
    evictions,
    server_evictions: lastServerEvictions,
    connect_errors: connectErrors,
    initial_connect_errors: initialConnectErrors,
    server_error_codes: serverErrorCodes,
    foreign_messages: foreign,
    server_pid: serverPid,
    server_process: serverCommandLine,
    server_exit_code: serverExitCode,
    nodes: group?.nodes.map((node) => ({
      url: node.url,
      restarts: node.restarts,
      exit_codes: node.exits,
    })) ?? null,
    redis: redis === null ? null : { url: redis.url, restarts: redis.restarts },
    chaos: chaosLog,
    rss_source: rssSource,
    rss_before_clients_bytes: rssBefore,
    rss: summarizeRss(
      reports.map((r) => ({ elapsed_s: r.elapsed_s, bytes: r.rss_bytes })),
    ),
    series: {
      elapsed_s: reports.map((r) => r.elapsed_s),
      delivered_per_sec: reports.map((r) => r.delivered_per_sec),
      p50_ms: reports.map((r) => r.latency_ms.p50),
      p99_ms: reports.map((r) => r.latency_ms.p99),
      rss_bytes: reports.map((r) => r.rss_bytes),
      clients_open: reports.map((r) => r.clients_open),
    },
  };
}

/** Slack on top of the run's own caps before the CLI gives up: 60 s. */
const CLI_SLACK_S = 60;

/** Pretty JSON with number arrays on one line each. */
function prettyJson(value: unknown): string {
  return JSON.stringify(value, null, 2).replace(
    /\[\s*((?:-?[\d.e+]+|null)(?:,\s*(?:-?[\d.e+]+|null))*)\s*\]/g,
    (_, inner: string) => `[${inner.replace(/\s+/g, "").replace(/,/g, ", ")}]`,
  );
}

async function main(): Promise<void> {
  let args: SoakArgs;
  let cfg: ResolvedSoakOptions;
  try {
    args = parseSoakArgs(Deno.args);
    cfg = resolveSoakOptions(args.options);
  } catch (error) {
    console.error(`soak: ${(error as Error).message}`);
    Deno.exit(2);
  }
  if (args.help) {
    console.log(SOAK_HELP);
    return;
  }
  const json = args.json;
  // Each start and stop is capped; a chaos event is at most a stop and a
  // start (the Redis's caps are the smaller).
  const restartCapMs = SERVER_START_CAP_MS + SERVER_STOP_CAP_MS;
  const capS = connectCapSeconds(cfg.clients) + cfg.minutes * 60 +
    cfg.interval + restartCapMs * (1 + cfg.chaos.length) / 1000 +
    (cfg.redisServer ? (REDIS_START_CAP_MS + REDIS_STOP_CAP_MS) / 1000 : 0) +
    (DRAIN_MS + 2 * CLOSE_CAP_MS + METRICS_TIMEOUT_MS) / 1000 + CLI_SLACK_S;
  const hardCap = setTimeout(() => {
    console.error(
      `soak: hard time cap of ${capS.toFixed(0)} s reached; exiting`,
    );
    Deno.exit(3);
  }, capS * 1000);
  Deno.unrefTimer(hardCap);

  const controller = new AbortController();
  function onSigint(): void {
    if (controller.signal.aborted) {
      console.error("soak: second interrupt; exiting without a summary");
      Deno.exit(130);
    }
    console.error("soak: interrupted; finishing (Ctrl-C again to quit now)");
    controller.abort();
  }
  Deno.addSignalListener("SIGINT", onSigint);

  function onStart(info: SoakStart): void {
    if (json) {
      console.log(JSON.stringify({ type: "start", ...info }));
      return;
    }
    const c = info.config;
    console.log(
      `soak: run ${info.run_id}: ${c.clients} clients (${c.senders} senders, ` +
        `${c.churn} churning) -> ${info.url}, ${c.rate} deliveries/s offered ` +
        `(${round(c.rate / c.clients, 2)} msg/s) for ${c.minutes} min, ` +
        `a line every ${c.interval} s`,
    );
    if (info.server_process !== null) {
      console.log(
        `soak: server pid ${info.server_pid}: ${info.server_process}`,
      );
    }
    if (info.server_pids.length > 1) {
      console.log(
        `soak: ${info.urls.length} nodes, pids ${info.server_pids.join(", ")}`,
      );
    }
    if (info.redis !== null) {
      console.log(
        `soak: redis-server pid ${info.redis.pid} at ${info.redis.url}`,
      );
    }
    const failed = Object.entries(info.connect_errors).map(([why, k]) =>
      `${k}× ${why}`
    );
    if (failed.length > 0) {
      console.log(`soak: connect failures: ${failed.join("; ")}`);
    }
    console.log(
      `soak: connected ${info.clients_connected}/${c.clients} in ` +
        `${info.connect_seconds} s; RSS ${
          info.rss_source === null
            ? "not measurable (use --server or --server-pid)"
            : `from ${info.rss_source === "proc" ? "/proc" : "/metrics"}, ${
              info.rss_before_clients_bytes === null
                ? "n/a"
                : mib(info.rss_before_clients_bytes)
            } before the clients`
        }; ${
          info.metrics_url === null
            ? "no /metrics"
            : `evictions from ${info.metrics_url}`
        }`,
    );
  }
  function onChaos(record: ChaosRecord): void {
    console.log(
      json
        ? JSON.stringify({ type: "chaos", ...record })
        : `soak: chaos t=${record.at_s}s ${record.event}: ${
          record.ok ? "done" : `FAILED (${record.error})`
        } in ${record.took_s} s`,
    );
  }
  function onInterval(report: IntervalReport): void {
    console.log(
      json
        ? JSON.stringify({ type: "interval", ...report })
        : formatInterval(report),
    );
  }

  let summary: SoakSummary;
  try {
    if (!json) console.error(`soak: connecting ${cfg.clients} clients...`);
    summary = await runSoak({
      ...args.options,
      signal: controller.signal,
      onStart,
      onInterval,
      onChaos,
    });
  } catch (error) {
    console.error(`soak: ${(error as Error).message}`);
    Deno.exit(1);
  } finally {
    Deno.removeSignalListener("SIGINT", onSigint);
  }
  console.log(
    json
      ? JSON.stringify({ type: "summary", ...summary })
      : prettyJson(summary),
  );
  console.error(summary.verdict);
  Deno.exit(summary.passed ? 0 : 1);
}

if (import.meta.main) await main();

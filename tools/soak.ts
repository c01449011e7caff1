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
import { statusBytes } from "./proc.ts";
import {
  SERVER_START_CAP_MS,
  SERVER_STOP_CAP_MS,
  type ServerProcess,
  startServerProcess,
} from "./server_process.ts";
import {
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

/** The result of one soak; the CLI prints it as JSON. */
export interface SoakSummary {
  /** The resolved options. */
  config: ResolvedSoakOptions;
  /** The URL the clients used (also `config.url`). */
  url: string;
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
  /** Total lost: stable clients' plus churned sessions'. */
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
  /** Server pid, or null. */
  server_pid: number | null;
  /** Server command line as run, or null. */
  server_process: string | null;
  /** Server exit code after SIGTERM (null if killed or not started). */
  server_exit_code: number | null;
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
   * Per sender: the first sequence number this connection saw (-1: none
   * yet), for connections made while sending; null: counted from 0.
   */
  base: Float64Array | null;
  /** Arrivals below the base: out of order, counted apart. */
  early: number;
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

  let server: ServerProcess | null = null;
  let url = cfg.url;
  let serverExitCode: number | null = null;
  const slots: (Session | null)[] = new Array(n).fill(null);
  const generation = new Uint32Array(n);
  const busy = new Uint8Array(n);
  const sent = new Array<number>(senders).fill(0);
  const evictions: Record<string, number> = {};
  const connectErrors: Record<string, number> = {};
  const serverErrorCodes: Record<string, number> = {};
  const retiredTotals = { lost: 0, duplicated: 0, outOfOrder: 0 };
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
  let rssPid: number | null = null;
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
      }
    });
  }

  function onMessage(session: Session, nowUs: number): void {
    const s = line.sender;
    if (s >= senders) {
      foreign++;
      return;
    }
    let seq = line.seq;
    if (session.base !== null) {
      if (session.base[s] < 0) session.base[s] = seq;
      seq -= session.base[s];
      if (seq < 0) {
        session.early++;
        seq = -1;
      }
    }
    if (seq >= 0 && session.tracker.record(0, s, seq) === "duplicate") return;
    deliveriesTotal++;
    agg.record(nowUs - line.sentUs);
  }

  /** Moves a finished connection's counts into the run's totals, once. */
  function retire(session: Session): void {
    if (session.retired) return;
    session.retired = true;
    session.stable = false;
    retiredTotals.lost += session.tracker.gaps;
    retiredTotals.duplicated += session.tracker.duplicated;
    retiredTotals.outOfOrder += session.tracker.outOfOrder + session.early;
  }

  function onEnd(session: Session): void {
    if (!session.open) return;
    session.open = false;
    openCount--;
    if (session.closing || closing) return;
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
      base: sendingStarted ? new Float64Array(senders).fill(-1) : null,
      early: 0,
      client: null,
      open: false,
      closing: false,
      retired: false,
      welcome: welcome.resolve,
    };
    const opened = await openChatClient(
      url,
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
      session.open = true;
      openCount++;
      slots[i] = session;
      sessionCount++;
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

  function readRss(scraped: number | null): number | null {
    if (rssSource === "proc" && rssPid !== null) {
      return statusBytes(rssPid, "VmRSS");
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
    let lost = retiredTotals.lost;
    let duplicated = retiredTotals.duplicated;
    let outOfOrder = retiredTotals.outOfOrder;
    for (const session of slots) {
      if (session === null || session.retired) continue;
      lost += session.tracker.gaps;
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

  let intervalsStart = performance.now();
  let elapsedS = 0;
  try {
    if (cfg.server !== null) {
      server = await startServerProcess(cfg.server, {
        asIs: cfg.serverAsIs,
      });
      url = server.url;
    }
    rssPid = server?.pid ?? cfg.serverPid;
    if (rssPid !== null && statusBytes(rssPid, "VmRSS") !== null) {
      rssSource = "proc";
    }
    // /metrics is optional: hubchat serves it, other servers may not.
    const probeUrl = metricsUrl(url);
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
        url,
        config: { ...cfg, url },
        clients_connected: openCount,
        connect_seconds: connectSeconds,
        connect_errors: { ...connectErrors },
        server_pid: rssPid,
        server_process: server?.commandLine ?? null,
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
        if (server !== null && statusBytes(server.pid, "VmRSS") === null) {
          aborted = "the server process exited";
        } else if (openCount === 0) {
          aborted = "every client is disconnected (server gone?)";
        }
        if (aborted !== null) break;
      }
      elapsedS = round((performance.now() - intervalsStart) / 1000, 3);
      halt.abort();
      await sending;
      // Drain: wait for in-flight messages to reach the stable clients.
      await drain(() => {
        for (const session of slots) {
          if (
            session !== null && session.stable && session.open &&
            session.tracker.distinct(0) < sentTotal
          ) {
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
    if (server !== null) serverExitCode = await server.stop();
  }

  // Summary.
  const stable = {
    clients: 0,
    complete: 0,
    lost: 0,
    duplicated: 0,
    out_of_order: 0,
  };
  const others = { lost: retiredTotals.lost, duplicated: 0, out_of_order: 0 };
  others.duplicated = retiredTotals.duplicated;
  others.out_of_order = retiredTotals.outOfOrder;
  for (const session of slots) {
    if (session === null || session.retired) continue;
    if (session.stable) {
      const lost = session.tracker.lost(0, sent);
      stable.clients++;
      stable.lost += lost;
      stable.duplicated += session.tracker.duplicated;
      stable.out_of_order += session.tracker.outOfOrder + session.early;
      if (lost === 0 && session.tracker.duplicated === 0) stable.complete++;
    } else {
      // Rebased: expected is what each sender sent since this one's first.
      const base = session.base;
      const expected = sent.map((total, s) =>
        base === null ? total : base[s] < 0 ? 0 : total - base[s]
      );
      others.lost += session.tracker.lost(0, expected);
      others.duplicated += session.tracker.duplicated;
      others.out_of_order += session.tracker.outOfOrder + session.early;
    }
  }
  const reports = agg.reports;
  const overall = agg.overall;
  const ms = (us: number): number => round(us / 1000, 3);
  const lost = stable.lost + others.lost;
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
  return {
    config: { ...cfg, url },
    url,
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
    server_pid: rssPid,
    server_process: server?.commandLine ?? null,
    server_exit_code: serverExitCode,
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
  const capS = connectCapSeconds(cfg.clients) + cfg.minutes * 60 +
    cfg.interval + (SERVER_START_CAP_MS + SERVER_STOP_CAP_MS) / 1000 +
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

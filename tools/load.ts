/**
 * hubchat's load tool: opens many WebSocket clients against a chat server,
 * sends sequence-numbered, timestamped messages, checks that every client got
 * every message once and in order, and prints one JSON summary (throughput,
 * latency percentiles, loss, and the server's CPU and memory when the tool
 * started the server itself).
 *
 * ```sh
 * deno run -A tools/load.ts --clients 100 --duration 10
 * deno task load --server "deno run -A main.ts" --clients 1000 --rate 25000
 * deno task load --help
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
  LOAD_HELP,
  type LoadArgs,
  type LoadOptions,
  parseLoadArgs,
  resolveLoadOptions,
} from "./load_options.ts";
import { NodeGroup } from "./node_group.ts";
import { commandLine, cpuSeconds, pinSelf, statusBytes } from "./proc.ts";
import { SERVER_START_CAP_MS, SERVER_STOP_CAP_MS } from "./server_process.ts";
import {
  finishStalled,
  openStalled,
  probeStalled,
  STALL_FINAL_READ_MS,
  type StalledClient,
} from "./stalled_clients.ts";
import {
  count,
  LatencyHistogram,
  percentile,
  round,
  SequenceTracker,
} from "./stats.ts";
import { describeConnectErrors, judgeRun } from "./verdict.ts";
import { sleep } from "./wait.ts";
import { type RawClient, readBufferSize } from "./ws_client.ts";

const encoder = new TextEncoder();

/** Connect errors of stalled clients are counted under this prefix. */
const STALL_ERROR_PREFIX = "stall: ";

/** Progress line period: once a second, as people read it. */
const PROGRESS_PERIOD_MS = 1000;

/** Latency percentiles in milliseconds. */
export interface LatencySummary {
  /** Samples taken. */
  count: number;
  /** Median. */
  p50: number;
  /** 90th percentile. */
  p90: number;
  /** 99th percentile. */
  p99: number;
  /** Largest sample. */
  max: number;
}

/** Handshake timing: from `new WebSocket` to the welcome message. */
export interface ConnectSummary {
  /** Wall time of the whole connect phase, ms. */
  total: number;
  /** Median per connection, ms. */
  p50: number;
  /** 99th percentile per connection, ms. */
  p99: number;
  /** Slowest connection, ms. */
  max: number;
}

/** What happened to the clients that stopped reading (`--stall`). */
export interface StallSummary {
  /** Stalled clients asked for. */
  count: number;
  /** How many completed the handshake (HTTP 101). */
  connected: number;
  /** How many the server closed (seen as a failed write or EOF). */
  closed_by_server: number;
  /** Seconds from connect to the first sign of the close, per closed one. */
  closed_after_s: number[];
  /** Close codes found in the backlog read at the end, by code. */
  close_codes: Record<string, number>;
  /** Bytes read from their backlogs at the end, summed. */
  backlog_bytes_read: number;
}

/**
 * One process whose CPU and memory a run measured: a node it started, or
 * a `--server-pid`. Null readings: /proc had no such process then.
 */
export interface ProcessSummary {
  /** Its process id (a restarted node would have another). */
  pid: number;
  /** `node 0`, `node 1`... for started nodes; `server-pid` otherwise. */
  role: string;
  /** Its command line (from /proc), or null. */
  command: string | null;
  /** CPU (user+system, with its descendants) in the window, seconds. */
  cpu_seconds: number | null;
  /** Its CPU per delivery of the whole run in the window, µs. */
  cpu_us_per_delivery: number | null;
  /** Its CPU seconds per 100,000 deliveries in the window. */
  cpu_seconds_per_100k_deliveries: number | null;
  /** Resident memory before the clients connected, bytes. */
  rss_start_bytes: number | null;
  /** Resident memory at the end of the window, bytes. */
  rss_end_bytes: number | null;
  /** Peak resident memory (VmHWM), bytes. */
  peak_rss_bytes: number | null;
}

/** The result of one load run; the CLI prints it as JSON. */
export interface LoadSummary {
  /** The resolved options. */
  config:
    & Required<
      Omit<
        LoadOptions,
        "url" | "server" | "serverPid" | "pinServer" | "pinLoad"
      >
    >
    & {
      url: string;
      urls: string[];
      server: string | null;
      serverPid: number[];
      pinServer: number | null;
      pinLoad: number | null;
      mode: "closed" | "open" | "idle";
    };
  /**
   * The URL the clients used (also `config.url`): the started server's.
   * With several nodes, their URLs joined by commas (as `--url` takes
   * them); `urls` lists them.
   */
  url: string;
  /** The URLs the clients used, one per node: client i used `urls[i % n]`. */
  urls: string[];
  /** True when the run passed (see `verdict`). */
  passed: boolean;
  /**
   * `PASS: ...`, or `FAIL: ...` and why: every client connected and got
   * every message once and in order, or what went wrong (verdict.ts).
   */
  verdict: string;
  /** Prefix of every username and message of this run. */
  run_id: string;
  /** Clients that got their welcome within the connect timeout. */
  clients_connected: number;
  /** Clients that did not (HTTP error, timeout, cap). */
  connect_failures: number;
  /** Handshake timing. */
  connect_ms: ConnectSummary;
  /** Messages sent, warm-up and measured window together. */
  messages_sent: number;
  /** Messages sent during the measured window. */
  messages_sent_measured: number;
  /** Open loop: sends skipped because the scheduler ran late. */
  skipped_sends: number;
  /** Deliveries (one message arriving at one client) in the window. */
  deliveries: number;
  /** All deliveries of the run, warm-up and drain included. */
  deliveries_total: number;
  /** `deliveries` divided by the window's length. */
  deliveries_per_sec: number;
  /** Open loop: deliveries/s offered (the `rate` option), else null. */
  offered_deliveries_per_sec: number | null;
  /** Messages the senders got back per second in the window. */
  messages_per_sec: number;
  /** Send-to-receive latency of messages sent in the window. */
  latency_ms: LatencySummary;
  /** Deliveries that never arrived by the end of the drain. */
  lost: number;
  /** Deliveries that arrived twice or more. */
  duplicated: number;
  /** Deliveries that arrived after a later message from the same sender. */
  out_of_order: number;
  /** Connected clients that got every message of every sender exactly. */
  clients_complete: number;
  /** Chat messages not from this run (other users), ignored. */
  foreign_messages: number;
  /** Errors seen: server `error` codes, close codes, connect errors. */
  errors: {
    server_error_codes: Record<string, number>;
    close_codes: Record<string, number>;
    connect_errors: Record<string, number>;
  };
  /** The stalled clients' fate, or null without `stall`. */
  stall: StallSummary | null;
  /**
   * Server command line as run (from /proc), or null; with several nodes,
   * node 0's (the others differ in port and history only).
   */
  server_process: string | null;
  /** Server pid (node 0's), or null. */
  server_pid: number | null;
  /**
   * Server CPU (user+system, process and descendants) in the window; this
   * and the other `server_` readings are of the started server, summed
   * over its nodes when there are several.
   */
  server_cpu_seconds: number | null;
  /** Server CPU per delivery in the window, µs. */
  server_cpu_us_per_delivery: number | null;
  /** Server CPU seconds per 100,000 deliveries in the window. */
  server_cpu_seconds_per_100k_deliveries: number | null;
  /** Server peak resident memory (VmHWM), bytes. */
  server_peak_rss_bytes: number | null;
  /** Server resident memory before the clients connected, bytes. */
  server_rss_start_bytes: number | null;
  /** Server resident memory at the end of the window, bytes. */
  server_rss_end_bytes: number | null;
  /** Idle mode: (end RSS − start RSS) / connected clients, bytes. */
  server_bytes_per_connection: number | null;
  /** Server exit code after SIGTERM (null if a signal ended it). */
  server_exit_code: number | null;
  /**
   * Every measured process apart: each started node, then each
   * `--server-pid`, with its own CPU per delivery.
   */
  processes: ProcessSummary[];
  /** This process's CPU in the window (≈ 1 means the tool is saturated). */
  load_cpu_seconds: number | null;
  /** Why the run stopped early, or null. */
  aborted: string | null;
}

/**
 * Runs one load test and returns its summary. Every phase is bounded in time;
 * every socket, and the server process when `server` is given, is closed
 * before it resolves.
 *
 * @example
 * ```ts
 * import { runLoad } from "./load.ts";
 * const summary = await runLoad({
 *   url: "ws://127.0.0.1:8080/ws",
 *   clients: 10,
 *   duration: 1,
 *   warmup: 0,
 * });
 * console.log(summary.deliveries_per_sec, summary.lost);
 * ```
 */
export async function runLoad(options: LoadOptions = {}): Promise<LoadSummary> {
  const cfg = resolveLoadOptions(options);
  if (cfg.pinLoad !== null) await pinSelf(cfg.pinLoad);
  const mode: "closed" | "open" | "idle" = cfg.idle
    ? "idle"
    : cfg.rate > 0
    ? "open"
    : "closed";
  const run = runId();
  const runBytes = encoder.encode(run);
  const n = cfg.clients;
  const senders = cfg.senders;
  const progress = cfg.progress;
  function log(line: string): void {
    if (progress) console.error(`[load] ${line}`);
  }
  const bufferSize = readBufferSize(n);

  let group: NodeGroup | null = null;
  /** Node 0's command line as run, kept past its stop. */
  let serverCommandLine: string | null = null;
  let urls = cfg.urls;
  const clients: (RawClient | null)[] = new Array(n).fill(null);
  const welcomed = new Uint8Array(n);
  /**
   * Connected in the connect phase (welcomed in time): only these count as
   * connected and have their deliveries checked. A welcome that comes after
   * its client gave up is a connect failure.
   */
  const joined = new Uint8Array(n);
  const open = new Uint8Array(n);
  const welcomeWaiters: ((ok: boolean) => void)[] = new Array(n);
  const connectMs: number[] = [];
  const errors = {
    server_error_codes: {} as Record<string, number>,
    close_codes: {} as Record<string, number>,
    connect_errors: {} as Record<string, number>,
  };
  const tracker = new SequenceTracker(n, Math.max(1, senders));
  const sent: number[] = new Array(senders).fill(0);
  const histogram = new LatencyHistogram();
  const progressHistogram = new LatencyHistogram();
  const stalled: StalledClient[] = [];

  let closing = false;
  let sending = false;
  /** Ends the open loop's sending (with the window, or on the way out). */
  const stopSending = new AbortController();
  let measureStartUs = Infinity;
  let measureEndUs = Infinity;
  let windowDeliveries = 0;
  let windowEchoes = 0;
  let deliveriesTotal = 0;
  let secondDeliveries = 0;
  let foreign = 0;
  let sentMeasured = 0;
  let skipped = 0;
  let aborted: string | null = null;
  let connectedCount = 0;

  const line: ParsedLine = { kind: "other", sender: 0, seq: 0, sentUs: 0 };

  function sendOne(s: number): void {
    const client = clients[s];
    if (client === null || !open[s]) return;
    const seq = sent[s];
    const sentUs = Math.round(performance.now() * 1000);
    const text = encodeText(run, { sender: s, seq, sentUs, size: cfg.size });
    client.send(messageFrame(text));
    sent[s] = seq + 1;
    if (sentUs >= measureStartUs && sentUs < measureEndUs) sentMeasured++;
  }

  function onMessage(i: number, nowUs: number): void {
    const s = line.sender;
    if (s >= senders) {
      foreign++;
      return;
    }
    if (tracker.record(i, s, line.seq) === "duplicate") return;
    deliveriesTotal++;
    secondDeliveries++;
    const latency = nowUs - line.sentUs;
    progressHistogram.record(latency);
    if (nowUs >= measureStartUs && nowUs < measureEndUs) {
      windowDeliveries++;
      if (i === s) windowEchoes++;
    }
    if (line.sentUs >= measureStartUs && line.sentUs < measureEndUs) {
      histogram.record(latency);
    }
    if (i === s && sending && mode === "closed") sendOne(s);
  }

  function onText(
    i: number,
    buf: Uint8Array,
    from: number,
    to: number,
    now: number,
  ): void {
    const nowUs = now * 1000;
    forEachLine(buf, from, to, (start, end) => {
      // Presence and typing lines ("join", "leave", "other") need nothing.
      const kind = scanLine(buf, start, end, runBytes, line);
      if (kind === "message") onMessage(i, nowUs);
      else if (kind === "foreign") foreign++;
      else if (kind === "welcome") {
        if (!welcomed[i]) {
          welcomed[i] = 1;
          welcomeWaiters[i]?.(true);
        }
      } else if (kind === "error") {
        count(errors.server_error_codes, errorCode(buf, start, end));
      }
    });
  }

  function onEnd(i: number): void {
    if (open[i]) {
      open[i] = 0;
      connectedCount--;
      if (!closing) {
        const code = clients[i]?.serverCloseCode;
        count(errors.close_codes, code == null ? "no close frame" : `${code}`);
      }
    }
  }

  async function connectClient(i: number, deadline: number): Promise<void> {
    const started = performance.now();
    const welcome = Promise.withResolvers<boolean>();
    welcomeWaiters[i] = welcome.resolve;
    const url = urls[i % urls.length];
    const { client, problem } = await openChatClient(url, `load-${run}-${i}`, {
      timeoutMs: Math.max(
        1,
        Math.min(cfg.connectTimeout * 1000, deadline - started),
      ),
      bufferSize,
      onText: (buf, start, end, now) => onText(i, buf, start, end, now),
      onEnd: () => onEnd(i),
      welcome,
    });
    clients[i] = client; // closed with the others at the end
    if (problem === null) {
      joined[i] = 1;
      open[i] = 1;
      connectedCount++;
      connectMs.push(performance.now() - started);
    } else {
      count(errors.connect_errors, problem);
    }
  }

  let progressTimer: ReturnType<typeof setInterval> | undefined;
  let phase = "connect";
  const runStarted = performance.now();
  /** The measured processes: started nodes first, then `serverPids`. */
  let measured: Measured[] = [];
  let loadCpuStart: number | null = null;
  let loadCpuEnd: number | null = null;
  let exitCode: number | null = null;
  let connectTotal = 0;
  let measuredSeconds = 0;
  const stallProbes: Promise<void>[] = [];
  const stallStop = { done: false };
  let stallBacklog = 0;

  function startWindow(): void {
    measureStartUs = performance.now() * 1000;
    for (const m of measured) m.cpuStart = cpuSeconds(m.pid);
    loadCpuStart = cpuSeconds(Deno.pid, false);
  }

  /**
   * Clients that did not connect, for the progress lines: `refused=N` (HTTP
   * statuses), `failed=N` (anything else), then the groups; "" when none.
   */
  function connectProblems(): string {
    const problems = describeConnectErrors(errors.connect_errors);
    if (problems.total === 0) return "";
    const failed = problems.total - problems.refused;
    return (problems.refused > 0 ? ` refused=${problems.refused}` : "") +
      (failed > 0 ? ` failed=${failed}` : "") + ` (${problems.text})`;
  }

  function endWindow(): void {
    const nowUs = performance.now() * 1000;
    measureEndUs = nowUs;
    measuredSeconds = (nowUs - measureStartUs) / 1e6;
    for (const m of measured) {
      m.cpuEnd = cpuSeconds(m.pid);
      m.rssEnd = statusBytes(m.pid, "VmRSS");
    }
    loadCpuEnd = cpuSeconds(Deno.pid, false);
  }

  try {
    if (cfg.server !== null) {
      log(
        `starting ${cfg.nodes === 1 ? "server" : `${cfg.nodes} nodes`}: ` +
          cfg.server,
      );
      group = await NodeGroup.start(cfg.server, {
        nodes: cfg.nodes,
        pin: cfg.pinServer,
        asIs: cfg.serverAsIs,
      });
      urls = group.urls;
      serverCommandLine = group.nodes[0].process!.commandLine;
      for (const node of group.nodes) {
        const process = node.process!;
        log(
          `${cfg.nodes === 1 ? "server" : `node ${node.index}`} pid ` +
            `${process.pid} (${process.commandLine}) at ${node.url}`,
        );
      }
    }
    measured = [
      ...(group?.nodes ?? []).map((node) =>
        newMeasured(node.process!.pid, `node ${node.index}`, true)
      ),
      ...cfg.serverPids.map((pid) => newMeasured(pid, "server-pid", false)),
    ];

    progressTimer = setInterval(() => {
      const elapsed = (performance.now() - runStarted) / 1000;
      log(
        `t=${elapsed.toFixed(1)}s ${phase} deliveries/s=${secondDeliveries} ` +
          `p99=${
            (progressHistogram.percentile(99) / 1000).toFixed(2)
          }ms clients=${connectedCount}/${n}${connectProblems()} ` +
          `lost(gaps)=${tracker.gaps}`,
      );
      secondDeliveries = 0;
    }, PROGRESS_PERIOD_MS);

    // Connect: bounded concurrency, bounded total time.
    const connectStart = performance.now();
    await connectAll(n, {
      concurrency: cfg.connectConcurrency,
      connect: connectClient,
      errors: errors.connect_errors,
    });
    // Stalled clients open as many at a time as the others did, so their
    // handshakes take at most one connect timeout per batch.
    for (let i = 0; i < cfg.stall; i += cfg.connectConcurrency) {
      const batch = Array.from(
        { length: Math.min(cfg.connectConcurrency, cfg.stall - i) },
        (_, j) =>
          openStalled(
            urls[(i + j) % urls.length],
            `load-${run}-s${i + j}`,
            cfg.connectTimeout * 1000,
          ),
      );
      for (const opened of await Promise.allSettled(batch)) {
        if (opened.status === "fulfilled") stalled.push(opened.value);
        else {
          count(
            errors.connect_errors,
            STALL_ERROR_PREFIX +
              (opened.reason as Error).message.slice(0, 100),
          );
        }
      }
    }
    for (const client of stalled) {
      stallProbes.push(probeStalled(client, () => stallStop.done));
    }
    connectTotal = performance.now() - connectStart;
    log(
      `connected ${connectedCount}/${n} in ${connectTotal.toFixed(0)} ms` +
        (cfg.stall > 0 ? `, stalled ${stalled.length}/${cfg.stall}` : "") +
        connectProblems(),
    );
    if (connectedCount === 0) aborted = "no client connected";
    for (let s = 0; s < senders && aborted === null; s++) {
      if (!open[s]) aborted = `sender ${s} failed to connect`;
    }

    if (aborted === null && mode === "idle") {
      phase = "idle";
      startWindow();
      await sleep(cfg.duration * 1000);
      endWindow();
    } else if (aborted === null) {
      phase = "warmup";
      sending = true;
      let openLoop: Promise<void> | null = null;
      if (mode === "closed") {
        for (let s = 0; s < senders; s++) {
          for (let k = 0; k < cfg.window; k++) sendOne(s);
        }
      } else {
        openLoop = sendOpenLoop(cfg.rate / n, sendOne, {
          senders,
          signal: stopSending.signal,
          onSkip: (late) => skipped += late,
        });
      }
      await sleep(cfg.warmup * 1000);
      phase = "measure";
      startWindow();
      await sleep(cfg.duration * 1000);
      endWindow();
      sending = false;
      stopSending.abort();
      if (openLoop !== null) await openLoop;
      phase = "drain";
      const totalSent = sent.reduce((a, b) => a + b, 0);
      await drain(() => {
        for (let i = 0; i < n; i++) {
          if (open[i] && tracker.distinct(i) < totalSent) return false;
        }
        return true;
      }, cfg.drain * 1000);
    }
  } finally {
    if (progressTimer !== undefined) clearInterval(progressTimer);
    phase = "close";
    closing = true;
    sending = false;
    stopSending.abort();
    stallStop.done = true;
    for (const m of measured) m.peakRss = statusBytes(m.pid, "VmHWM");
    await Promise.all(
      clients.map((client) => client?.close(CLOSE_CAP_MS)),
    );
    await Promise.all(stallProbes);
    const backlogs = await Promise.all(stalled.map(finishStalled));
    stallBacklog = backlogs.reduce((a, b) => a + b, 0);
    if (group !== null) exitCode = (await group.stop())[0];
  }

  // Summary.
  const totalSent = sent.reduce((a, b) => a + b, 0);
  let lost = 0;
  let complete = 0;
  for (let i = 0; i < n; i++) {
    if (!joined[i]) continue;
    const l = tracker.lost(i, sent);
    lost += l;
    if (l === 0) complete++;
  }
  connectMs.sort((a, b) => a - b);
  const started = measured.filter((m) => m.started);
  const serverCpu = sumReadings(started.map(cpuUsed));
  const rssStart = sumReadings(started.map((m) => m.rssStart));
  const rssEnd = sumReadings(started.map((m) => m.rssEnd));
  const peakRss = sumReadings(started.map((m) => m.peakRss));
  const clientsConnected = joined.reduce((a, b) => a + b, 0);
  let stall: StallSummary | null = null;
  if (cfg.stall > 0) {
    const closeCodes: Record<string, number> = {};
    const closedAfter: number[] = [];
    for (const client of stalled) {
      if (client.scanner.closeCode !== null) {
        count(closeCodes, String(client.scanner.closeCode));
      }
      if (client.closedAfter !== null) {
        closedAfter.push(round(client.closedAfter, 2));
      }
    }
    stall = {
      count: cfg.stall,
      connected: stalled.length,
      closed_by_server: closedAfter.length,
      closed_after_s: closedAfter,
      close_codes: closeCodes,
      backlog_bytes_read: stallBacklog,
    };
  }
  const perSec = measuredSeconds > 0 && mode !== "idle";
  const connectErrors: Record<string, number> = {};
  const stallErrors: Record<string, number> = {};
  for (const [message, k] of Object.entries(errors.connect_errors)) {
    if (message.startsWith(STALL_ERROR_PREFIX)) {
      stallErrors[message.slice(STALL_ERROR_PREFIX.length)] = k;
    } else connectErrors[message] = k;
  }
  const verdict = judgeRun({
    clients: n,
    connected: clientsConnected,
    connectErrors,
    stalled: {
      clients: cfg.stall,
      connected: stalled.length,
      connectErrors: stallErrors,
    },
    deliveries: deliveriesTotal,
    lost,
    duplicated: tracker.duplicated,
    outOfOrder: tracker.outOfOrder,
    aborted,
    idleSeconds: mode === "idle" ? cfg.duration : undefined,
    closedByServer: errors.close_codes,
    serverErrors: errors.server_error_codes,
  });
  const url = urls.join(",");
  return {
    config: {
      url,
      urls,
      server: cfg.server,
      serverAsIs: cfg.serverAsIs,
      nodes: cfg.nodes,
      serverPid: cfg.serverPids,
      clients: n,
      senders,
      size: cfg.size,
      window: cfg.window,
      rate: cfg.rate,
      duration: cfg.duration,
      warmup: cfg.warmup,
      drain: cfg.drain,
      connectConcurrency: cfg.connectConcurrency,
      connectTimeout: cfg.connectTimeout,
      stall: cfg.stall,
      idle: cfg.idle,
      pinServer: cfg.pinServer,
      pinLoad: cfg.pinLoad,
      progress: cfg.progress,
      mode,
    },
    url,
    urls,
    passed: verdict.pass,
    verdict: verdict.line,
    run_id: run,
    clients_connected: clientsConnected,
    connect_failures: n - clientsConnected,
    connect_ms: {
      total: round(connectTotal, 1),
      p50: round(percentile(connectMs, 50), 2),
      p99: round(percentile(connectMs, 99), 2),
      max: round(connectMs.at(-1) ?? 0, 2),
    },
    messages_sent: totalSent,
    messages_sent_measured: sentMeasured,
    skipped_sends: skipped,
    deliveries: windowDeliveries,
    deliveries_total: deliveriesTotal,
    deliveries_per_sec: perSec
      ? Math.round(windowDeliveries / measuredSeconds)
      : 0,
    offered_deliveries_per_sec: mode === "open" ? cfg.rate : null,
    messages_per_sec: perSec ? round(windowEchoes / measuredSeconds, 1) : 0,
    latency_ms: {
      count: histogram.count,
      p50: round(histogram.percentile(50) / 1000, 3),
      p90: round(histogram.percentile(90) / 1000, 3),
      p99: round(histogram.percentile(99) / 1000, 3),
      max: round(histogram.max / 1000, 3),
    },
    lost,
    duplicated: tracker.duplicated,
    out_of_order: tracker.outOfOrder,
    clients_complete: complete,
    foreign_messages: foreign,
    errors,
    stall,
    server_process: serverCommandLine,
    server_pid: started[0]?.pid ?? null,
    server_cpu_seconds: serverCpu === null ? null : round(serverCpu, 3),
    server_cpu_us_per_delivery: perDelivery(serverCpu, windowDeliveries, 1e6),
    server_cpu_seconds_per_100k_deliveries: perDelivery(
      serverCpu,
      windowDeliveries,
      1e5,
    ),
    server_peak_rss_bytes: peakRss,
    server_rss_start_bytes: rssStart,
    server_rss_end_bytes: rssEnd,
    server_bytes_per_connection:
      mode === "idle" && rssStart !== null && rssEnd !== null &&
        clientsConnected > 0
        ? Math.round((rssEnd - rssStart) / clientsConnected)
        : null,
    server_exit_code: exitCode,
    processes: measured.map((m): ProcessSummary => {
      const cpu = cpuUsed(m);
      return {
        pid: m.pid,
        role: m.role,
        command: m.command,
        cpu_seconds: cpu === null ? null : round(cpu, 3),
        cpu_us_per_delivery: perDelivery(cpu, windowDeliveries, 1e6),
        cpu_seconds_per_100k_deliveries: perDelivery(
          cpu,
          windowDeliveries,
          1e5,
        ),
        rss_start_bytes: m.rssStart,
        rss_end_bytes: m.rssEnd,
        peak_rss_bytes: m.peakRss,
      };
    }),
    load_cpu_seconds: loadCpuStart !== null && loadCpuEnd !== null
      ? round(loadCpuEnd - loadCpuStart, 3)
      : null,
    aborted,
  };
}

/** A process whose CPU and memory a run reads from /proc. */
interface Measured {
  pid: number;
  /** `node I` or `server-pid`. */
  role: string;
  /** Started by this run (its readings make the `server_` fields). */
  started: boolean;
  command: string | null;
  cpuStart: number | null;
  cpuEnd: number | null;
  rssStart: number | null;
  rssEnd: number | null;
  peakRss: number | null;
}

/** A process to measure, its memory read now (before the clients). */
function newMeasured(pid: number, role: string, started: boolean): Measured {
  return {
    pid,
    role,
    started,
    command: commandLine(pid),
    cpuStart: null,
    cpuEnd: null,
    rssStart: statusBytes(pid, "VmRSS"),
    rssEnd: null,
    peakRss: null,
  };
}

/** CPU seconds a process used in the window, or null if unreadable. */
function cpuUsed(m: Measured): number | null {
  return m.cpuStart === null || m.cpuEnd === null
    ? null
    : m.cpuEnd - m.cpuStart;
}

/** The sum of readings; null when there are none or one is unreadable. */
function sumReadings(readings: (number | null)[]): number | null {
  if (readings.length === 0 || readings.includes(null)) return null;
  return (readings as number[]).reduce((a, b) => a + b, 0);
}

/**
 * CPU seconds × `scale` per delivery (1e6: µs per delivery; 1e5: seconds
 * per 100k), rounded; null without a reading or a delivery.
 */
function perDelivery(
  cpu: number | null,
  deliveries: number,
  scale: number,
): number | null {
  return cpu !== null && deliveries > 0
    ? round((cpu * scale) / deliveries, 4)
    : null;
}

/** Slack on top of the run's own caps before the CLI gives up: 30 s. */
const CLI_SLACK_S = 30;

if (import.meta.main) {
  let args: LoadArgs;
  try {
    args = parseLoadArgs(Deno.args);
    if (!args.help) resolveLoadOptions(args.options);
  } catch (error) {
    console.error(`load: ${(error as Error).message}`);
    Deno.exit(2);
  }
  if (args.help) {
    console.log(LOAD_HELP);
    Deno.exit(0);
  }
  const o = resolveLoadOptions(args.options);
  const capS = connectCapSeconds(o.clients) +
    o.connectTimeout * (1 + Math.ceil(o.stall / o.connectConcurrency)) +
    o.warmup + o.duration + o.drain +
    (SERVER_START_CAP_MS + SERVER_STOP_CAP_MS + CLOSE_CAP_MS +
        STALL_FINAL_READ_MS) / 1000 +
    CLI_SLACK_S;
  const hardCap = setTimeout(() => {
    console.error(
      `load: hard time cap of ${capS.toFixed(0)} s reached; exiting`,
    );
    Deno.exit(3);
  }, capS * 1000);
  Deno.unrefTimer(hardCap);
  try {
    const summary = await runLoad({
      ...args.options,
      progress: !args.jsonOnly,
    });
    console.log(JSON.stringify(summary, null, 2));
    console.error(summary.verdict);
    Deno.exit(summary.passed ? 0 : 1);
  } catch (error) {
    console.error(`load: ${(error as Error).message}`);
    Deno.exit(1);
  }
}

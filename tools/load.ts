/**
 * hubchat's load tool: opens many WebSocket clients against a chat server,
 * sends sequence-numbered, timestamped messages, checks that every client got
 * every message once and in order, and prints one JSON summary (throughput,
 * latency percentiles, loss, and the server's CPU and memory when the tool
 * started the server itself).
 *
 * ```sh
 * deno run -A load.ts --clients 100 --duration 10
 * deno run -A load.ts --server "deno run -A main.ts" --clients 1000 --rate 25000
 * deno run -A load.ts --help
 * ```
 *
 * @module
 */

import { sleep, withTimeout } from "./wait.ts";
import { closePayload, encodeFrame, Opcode } from "./ws_frame.ts";

// ---------------------------------------------------------------------------
// Defaults and limits
// ---------------------------------------------------------------------------

/** Default target: hubchat's default port on loopback. */
export const DEFAULT_URL = "ws://127.0.0.1:8080/ws";
/** 100 clients: enough fan-out to matter, few enough for any laptop. */
const DEFAULT_CLIENTS = 100;
/** One sender: the fan-out path is what we measure, not ingest. */
const DEFAULT_SENDERS = 1;
/** 64 bytes: a short chat line. */
export const DEFAULT_SIZE = 64;
/** 64 in flight per sender: deep enough to keep a pipelined server busy. */
const DEFAULT_WINDOW = 64;
/** 10 s measured: long enough for stable percentiles, short for a loop. */
const DEFAULT_DURATION_S = 10;
/** 2 s warm-up: lets the JIT and the socket buffers settle before stats. */
const DEFAULT_WARMUP_S = 2;
/** 5 s drain: loopback messages arrive in milliseconds; this is generous. */
const DEFAULT_DRAIN_S = 5;
/** 200 handshakes at a time: fast, yet under typical accept backlogs. */
export const DEFAULT_CONNECT_CONCURRENCY = 200;
/** 10 s per handshake: anything slower is a failure worth reporting. */
export const DEFAULT_CONNECT_TIMEOUT_S = 10;
/**
 * The whole connect phase's cap is this base plus {@linkcode
 * CONNECT_CAP_PER_CLIENT_S} per client: each join is broadcast to everyone,
 * so connecting N clients costs the server O(N²) deliveries.
 */
export const CONNECT_CAP_BASE_S = 30;
/** See {@linkcode CONNECT_CAP_BASE_S}: 10,000 clients get 30 + 50 s. */
export const CONNECT_CAP_PER_CLIENT_S = 0.005;
/** How long a started server may take to print its URL (first compile). */
const SERVER_START_CAP_MS = 60_000;
/** How long a server gets after SIGTERM before SIGKILL. */
const SERVER_STOP_CAP_MS = 5_000;
/** How long closing all client sockets may take before we stop waiting. */
export const CLOSE_CAP_MS = 5_000;
/** Smallest --size: the header "<run>:<s>:<seq>:<µs>:" needs up to ~40. */
export const MIN_SIZE = 40;
/** Largest --size: hubchat's text limit is 2000 characters. */
export const MAX_SIZE = 2000;
/**
 * Open loop: a send more than 10 ms (or one interval, if longer) late is
 * skipped, not sent in a burst.
 */
export const OPEN_LOOP_MAX_BURST_MS = 10;
/** Progress line period: once a second, as people read it. */
const PROGRESS_PERIOD_MS = 1000;
/** Drain completion is checked this often. */
export const DRAIN_POLL_MS = 20;
/** A stalled client writes a ping this often, to notice a server close. */
const STALL_PROBE_MS = 1000;
/** At the end, a stalled client reads its backlog for at most this long. */
const STALL_FINAL_READ_MS = 2000;
/** Gaps larger than this are treated as garbage, not as missing messages. */
const MAX_GAP = 1_000_000;

// ---------------------------------------------------------------------------
// Public types
// ---------------------------------------------------------------------------

/** Options of {@linkcode runLoad}; every field has a default. */
export interface LoadOptions {
  /**
   * WebSocket URL of the chat endpoint (`ws://host:port/ws`); an `http://`
   * URL or one without a path gets `/ws`. Ignored when `server` is set.
   * Default `ws://127.0.0.1:8080/ws`.
   */
  url?: string;
  /**
   * A command that starts a server, like `deno run -A main.ts`. If it holds
   * `{port}` (and optionally `{host}`) those are replaced by `0` and
   * `127.0.0.1`; otherwise `--port 0 --host 127.0.0.1` is appended. The
   * first `http://host:port/` printed on stdout is the server's address.
   */
  server?: string;
  /** Receiving WebSocket clients. Default 100. */
  clients?: number;
  /** How many of the clients also send. Default 1. */
  senders?: number;
  /** Chat text size in bytes (ASCII). Default 64, at least 40. */
  size?: number;
  /** Closed loop: messages per sender in flight (sent, not yet echoed). */
  window?: number;
  /**
   * Open loop: offered deliveries per second (messages/s × clients). When
   * set, `window` is ignored.
   */
  rate?: number;
  /** Measured seconds. Default 10. */
  duration?: number;
  /** Seconds of sending before measuring. Default 2. */
  warmup?: number;
  /** Seconds to wait for in-flight messages after sending stops. Default 5. */
  drain?: number;
  /** Handshakes in progress at once. Default 200. */
  connectConcurrency?: number;
  /** Seconds one handshake (up to the welcome) may take. Default 10. */
  connectTimeout?: number;
  /** Extra raw-TCP clients that complete the handshake, then never read. */
  stall?: number;
  /** Hold the clients idle for `duration` (no sending): a memory probe. */
  idle?: boolean;
  /** Pin the started server to this CPU (taskset). */
  pinServer?: number;
  /** Pin this process (all its threads) to this CPU (taskset). */
  pinLoad?: number;
  /** Print a progress line to stderr about once a second. Default false. */
  progress?: boolean;
}

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

/** The result of one load run; the CLI prints it as JSON. */
export interface LoadSummary {
  /** The resolved options. */
  config: Required<Omit<LoadOptions, "server" | "pinServer" | "pinLoad">> & {
    server: string | null;
    pinServer: number | null;
    pinLoad: number | null;
    mode: "closed" | "open" | "idle";
  };
  /** The URL the clients used. */
  url: string;
  /** Prefix of every username and message of this run. */
  run_id: string;
  /** Clients that got their welcome. */
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
  /** Server command line as run (from /proc), or null. */
  server_process: string | null;
  /** Server pid, or null. */
  server_pid: number | null;
  /** Server CPU (user+system, process and descendants) in the window. */
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
  /** This process's CPU in the window (≈ 1 means the tool is saturated). */
  load_cpu_seconds: number | null;
  /** Why the run stopped early, or null. */
  aborted: string | null;
}

/** What {@linkcode parseLoadArgs} makes of a command line. */
export interface LoadArgs {
  /** `--help` was given. */
  help: boolean;
  /** `--json-only` was given: no progress lines. */
  jsonOnly: boolean;
  /** The options for {@linkcode runLoad}. */
  options: LoadOptions;
}

/** What one line of a server frame turned out to be. */
export type LineKind =
  | "message"
  | "foreign"
  | "join"
  | "leave"
  | "welcome"
  | "error"
  | "other";

/** One line of a server frame, as {@linkcode parseServerLine} sees it. */
export interface ParsedLine {
  /** The line's type. */
  kind: LineKind;
  /** For `message`: sender index. */
  sender: number;
  /** For `message`: sequence number. */
  seq: number;
  /** For `message`: send time, µs of `performance.now()`. */
  sentUs: number;
}

// ---------------------------------------------------------------------------
// Pure helpers
// ---------------------------------------------------------------------------

/**
 * Nearest-rank percentile of an ascending array; 0 for an empty one.
 *
 * @example
 * ```ts
 * import { percentile } from "./load.ts";
 * percentile([1, 2, 3, 4], 50); // 2
 * ```
 */
export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return 0;
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length, Math.max(1, rank)) - 1];
}

/** Sub-buckets per power of two: 64 gives ≤ 1.6 % error. */
const HISTOGRAM_SUB_BITS = 6;
const HISTOGRAM_SUB = 1 << HISTOGRAM_SUB_BITS;
/** Values up to 2^31 µs (35 minutes); larger ones are clamped. */
const HISTOGRAM_MAX_EXP = 31;
const HISTOGRAM_BUCKETS = HISTOGRAM_SUB +
  (HISTOGRAM_MAX_EXP - HISTOGRAM_SUB_BITS + 1) * HISTOGRAM_SUB;

/**
 * A log-linear histogram of non-negative integers (microseconds here):
 * constant memory, O(1) record, percentiles within 1.6 %.
 *
 * @example
 * ```ts
 * import { LatencyHistogram } from "./load.ts";
 * const h = new LatencyHistogram();
 * for (let i = 1; i <= 100; i++) h.record(i * 1000);
 * h.percentile(50); // ≈ 50000
 * ```
 */
export class LatencyHistogram {
  /** Bucket counts. */
  readonly counts: Float64Array = new Float64Array(HISTOGRAM_BUCKETS);
  /** Samples recorded. */
  count = 0;
  /** Largest sample, exact. */
  max = 0;

  /** Records one value (negative values count as 0). */
  record(value: number): void {
    const v = value > 0 ? Math.min(Math.floor(value), 0x7fffffff) : 0;
    let index: number;
    if (v < HISTOGRAM_SUB) {
      index = v;
    } else {
      const exp = 31 - Math.clz32(v);
      const mantissa = (v >>> (exp - HISTOGRAM_SUB_BITS)) - HISTOGRAM_SUB;
      index = HISTOGRAM_SUB + (exp - HISTOGRAM_SUB_BITS) * HISTOGRAM_SUB +
        mantissa;
    }
    this.counts[index]++;
    this.count++;
    if (v > this.max) this.max = v;
  }

  /** The value below which `p` % of samples fall (bucket midpoint). */
  percentile(p: number): number {
    if (this.count === 0) return 0;
    const rank = Math.max(1, Math.ceil((p / 100) * this.count));
    let seen = 0;
    for (let i = 0; i < HISTOGRAM_BUCKETS; i++) {
      seen += this.counts[i];
      if (seen >= rank) return Math.min(this.max, bucketMid(i));
    }
    return this.max;
  }
}

function bucketMid(index: number): number {
  if (index < HISTOGRAM_SUB) return index;
  const rel = index - HISTOGRAM_SUB;
  const exp = Math.floor(rel / HISTOGRAM_SUB) + HISTOGRAM_SUB_BITS;
  const mantissa = (rel % HISTOGRAM_SUB) + HISTOGRAM_SUB;
  const scale = 2 ** (exp - HISTOGRAM_SUB_BITS);
  return mantissa * scale + (scale - 1) / 2;
}

/** Result of {@linkcode SequenceTracker.record}. */
export type SeqOutcome = "ok" | "gap" | "late" | "duplicate";

/**
 * Tracks, for each receiver and each sender, which sequence numbers arrived:
 * counts duplicates, out-of-order arrivals, and (at the end) losses.
 *
 * @example
 * ```ts
 * import { SequenceTracker } from "./load.ts";
 * const t = new SequenceTracker(1, 1);
 * t.record(0, 0, 0); // "ok"
 * t.record(0, 0, 2); // "gap" (1 is missing for now)
 * t.record(0, 0, 1); // "late" (out of order)
 * t.lost(0, [3]); // 0
 * ```
 */
export class SequenceTracker {
  /** Deliveries that arrived again. */
  duplicated = 0;
  /** Deliveries that filled a gap (arrived after a later one). */
  outOfOrder = 0;
  /** Sequence numbers currently missing below the highest seen. */
  gaps = 0;
  readonly #senders: number;
  /** Per (receiver, sender): highest sequence number seen + 1. */
  readonly #next: Float64Array;
  /** Per receiver: distinct deliveries. */
  readonly #distinct: Float64Array;
  /** Per (receiver, sender) with gaps: the missing numbers. */
  readonly #missing = new Map<number, Set<number>>();

  /** Tracks `receivers` × `senders` streams. */
  constructor(receivers: number, senders: number) {
    this.#senders = senders;
    this.#next = new Float64Array(receivers * senders);
    this.#distinct = new Float64Array(receivers);
  }

  /** Records that `receiver` got message `seq` of `sender`. */
  record(receiver: number, sender: number, seq: number): SeqOutcome {
    const key = receiver * this.#senders + sender;
    const next = this.#next[key];
    if (seq === next) {
      this.#next[key] = next + 1;
      this.#distinct[receiver]++;
      return "ok";
    }
    if (seq > next) {
      if (seq - next > MAX_GAP) {
        this.duplicated++;
        return "duplicate";
      }
      let missing = this.#missing.get(key);
      if (missing === undefined) {
        missing = new Set();
        this.#missing.set(key, missing);
      }
      for (let s = next; s < seq; s++) missing.add(s);
      this.gaps += seq - next;
      this.#next[key] = seq + 1;
      this.#distinct[receiver]++;
      return "gap";
    }
    const missing = this.#missing.get(key);
    if (missing !== undefined && missing.delete(seq)) {
      if (missing.size === 0) this.#missing.delete(key);
      this.gaps--;
      this.outOfOrder++;
      this.#distinct[receiver]++;
      return "late";
    }
    this.duplicated++;
    return "duplicate";
  }

  /** Distinct messages `receiver` got, all senders together. */
  distinct(receiver: number): number {
    return this.#distinct[receiver];
  }

  /** Messages `receiver` never got, given how many each sender sent. */
  lost(receiver: number, sent: readonly number[]): number {
    let total = 0;
    for (const n of sent) total += n;
    return Math.max(0, total - this.#distinct[receiver]);
  }
}

/**
 * Builds a chat text of exactly `size` ASCII bytes:
 * `<run>:<sender>:<seq>:<sentUs>:` padded with `x`.
 *
 * @example
 * ```ts
 * import { encodeText } from "./load.ts";
 * encodeText("ab12", { sender: 0, seq: 7, sentUs: 1234, size: 40 });
 * // "ab12:0:7:1234:xxxxxxxxxxxxxxxxxxxxxxxxxx"
 * ```
 */
export function encodeText(
  run: string,
  fields: { sender: number; seq: number; sentUs: number; size: number },
): string {
  const head = `${run}:${fields.sender}:${fields.seq}:${fields.sentUs}:`;
  if (head.length >= fields.size) return head;
  return head + "x".repeat(fields.size - head.length);
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const TYPE_KEY = encoder.encode('"type":"');
const TEXT_KEY = encoder.encode('"text":"');
const TYPE_MESSAGE = encoder.encode('message"');
const TYPE_JOIN = encoder.encode('join"');
const TYPE_LEAVE = encoder.encode('leave"');
const TYPE_WELCOME = encoder.encode('welcome"');
const TYPE_ERROR = encoder.encode('error"');

/** First index of `pattern` in `buf[from, to)`, or -1. */
function indexOfBytes(
  buf: Uint8Array,
  pattern: Uint8Array,
  from: number,
  to: number,
): number {
  const first = pattern[0];
  const last = to - pattern.length;
  outer: for (let i = from; i <= last; i++) {
    if (buf[i] !== first) continue;
    for (let j = 1; j < pattern.length; j++) {
      if (buf[i + j] !== pattern[j]) continue outer;
    }
    return i;
  }
  return -1;
}

/** True when `buf` holds `pattern` at `at`, entirely before `end`. */
function bytesAt(
  buf: Uint8Array,
  pattern: Uint8Array,
  at: number,
  end: number,
): boolean {
  if (at + pattern.length > end) return false;
  for (let j = 0; j < pattern.length; j++) {
    if (buf[at + j] !== pattern[j]) return false;
  }
  return true;
}

/** Where {@linkcode scanUint} leaves the number it read. */
const scratchNumber = [0];

/** Reads decimal digits ending with `:`; the position after it, or -1. */
function scanUint(buf: Uint8Array, pos: number, end: number): number {
  let value = 0;
  let i = pos;
  for (; i < end; i++) {
    const c = buf[i];
    if (c === 58) break; // ":"
    if (c < 48 || c > 57) return -1;
    value = value * 10 + (c - 48);
  }
  if (i === pos || i >= end) return -1;
  scratchNumber[0] = value;
  return i + 1;
}

/**
 * Classifies one line of a frame (one JSON message, as UTF-8 bytes) without
 * JSON.parse: finds `"type":"` and, for messages, `"text":"`. A JSON string
 * cannot hold an unescaped `"`, so the first `"type":"` is the real key, and
 * the run's texts are plain ASCII. Fills `out` for messages of `run`.
 *
 * @example
 * ```ts
 * import { type ParsedLine, scanLine } from "./load.ts";
 * const bytes = new TextEncoder().encode('{"type":"message","text":"ab12:0:7:99:x"}');
 * const out: ParsedLine = { kind: "other", sender: 0, seq: 0, sentUs: 0 };
 * scanLine(bytes, 0, bytes.length, new TextEncoder().encode("ab12"), out);
 * // "message"; out.seq is 7
 * ```
 */
export function scanLine(
  buf: Uint8Array,
  start: number,
  end: number,
  run: Uint8Array,
  out: ParsedLine,
): LineKind {
  const t = indexOfBytes(buf, TYPE_KEY, start, end);
  if (t === -1) return "other";
  const v = t + TYPE_KEY.length;
  const c = buf[v];
  if (c === 109 /* m */ && bytesAt(buf, TYPE_MESSAGE, v, end)) {
    const k = indexOfBytes(buf, TEXT_KEY, start, end);
    if (k === -1) return "foreign";
    let p = k + TEXT_KEY.length;
    if (!bytesAt(buf, run, p, end) || buf[p + run.length] !== 58) {
      return "foreign";
    }
    p = scanUint(buf, p + run.length + 1, end);
    if (p < 0) return "foreign";
    out.sender = scratchNumber[0];
    p = scanUint(buf, p, end);
    if (p < 0) return "foreign";
    out.seq = scratchNumber[0];
    p = scanUint(buf, p, end);
    if (p < 0) return "foreign";
    out.sentUs = scratchNumber[0];
    return "message";
  }
  if (c === 106 /* j */ && bytesAt(buf, TYPE_JOIN, v, end)) return "join";
  if (c === 108 /* l */ && bytesAt(buf, TYPE_LEAVE, v, end)) return "leave";
  if (c === 119 /* w */ && bytesAt(buf, TYPE_WELCOME, v, end)) {
    return "welcome";
  }
  if (c === 101 /* e */ && bytesAt(buf, TYPE_ERROR, v, end)) return "error";
  return "other";
}

/**
 * Classifies one server line (one JSON message) the way the load tool's fast
 * path does; for messages of this run it also gives sender, seq, send time.
 *
 * @example
 * ```ts
 * import { parseServerLine } from "./load.ts";
 * parseServerLine(
 *   '{"type":"message","username":"u","text":"ab12:0:7:99:xx","timestamp":"t"}',
 *   "ab12",
 * ); // { kind: "message", sender: 0, seq: 7, sentUs: 99 }
 * ```
 */
export function parseServerLine(line: string, run: string): ParsedLine {
  const out: ParsedLine = { kind: "other", sender: -1, seq: -1, sentUs: -1 };
  const bytes = encoder.encode(line);
  out.kind = scanLine(bytes, 0, bytes.length, encoder.encode(run), out);
  return out;
}

/**
 * Splits a command line into words, honouring single and double quotes.
 *
 * @example
 * ```ts
 * import { splitCommand } from "./load.ts";
 * splitCommand(`deno run -A "my server.ts"`); // ["deno","run","-A","my server.ts"]
 * ```
 */
export function splitCommand(command: string): string[] {
  const words: string[] = [];
  let word = "";
  let inWord = false;
  let quote = "";
  for (const ch of command) {
    if (quote !== "") {
      if (ch === quote) quote = "";
      else word += ch;
    } else if (ch === "'" || ch === '"') {
      quote = ch;
      inWord = true;
    } else if (ch === " " || ch === "\t" || ch === "\n") {
      if (inWord) words.push(word);
      word = "";
      inWord = false;
    } else {
      word += ch;
      inWord = true;
    }
  }
  if (quote !== "") {
    throw new Error(
      `--server: unterminated ${quote} quote in "${command}"; expected a closing ${quote}`,
    );
  }
  if (inWord) words.push(word);
  return words;
}

/**
 * The argv to start a server on a free loopback port: `{port}`/`{host}`
 * placeholders are filled in, or else `--port 0 --host 127.0.0.1` appended;
 * with `pin`, the command runs under `taskset -c pin`.
 *
 * @example
 * ```ts
 * import { serverArgv } from "./load.ts";
 * serverArgv("deno run -A main.ts"); // [..., "--port", "0", "--host", "127.0.0.1"]
 * serverArgv("node s.js {port}", { pin: 0 }); // ["taskset","-c","0","node","s.js","0"]
 * ```
 */
export function serverArgv(
  command: string,
  options: { pin?: number } = {},
): string[] {
  const words = splitCommand(command);
  if (words.length === 0) {
    throw new Error(
      "--server is empty; expected a command like 'deno run -A main.ts'",
    );
  }
  let argv: string[];
  if (command.includes("{port}")) {
    argv = words.map((w) =>
      w.replaceAll("{port}", "0").replaceAll("{host}", "127.0.0.1")
    );
  } else {
    argv = [...words, "--port", "0", "--host", "127.0.0.1"];
  }
  if (options.pin !== undefined) {
    argv = ["taskset", "-c", String(options.pin), ...argv];
  }
  return argv;
}

/**
 * Finds the first `http(s)://host:port/` in a server's output and returns the
 * matching WebSocket endpoint URL, or null.
 *
 * @example
 * ```ts
 * import { findListenUrl } from "./load.ts";
 * findListenUrl("listening on http://127.0.0.1:4000/"); // "ws://127.0.0.1:4000/ws"
 * ```
 */
export function findListenUrl(text: string): string | null {
  const m = /(https?):\/\/(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.\-]+):(\d+)/.exec(text);
  if (m === null) return null;
  const scheme = m[1] === "https" ? "wss" : "ws";
  let host = m[2];
  if (host === "0.0.0.0") host = "127.0.0.1";
  if (host === "[::]") host = "[::1]";
  return `${scheme}://${host}:${m[3]}/ws`;
}

/**
 * Normalizes a target URL: `http(s)` becomes `ws(s)`, an empty path `/ws`.
 *
 * @example
 * ```ts
 * import { normalizeUrl } from "./load.ts";
 * normalizeUrl("http://localhost:8080/"); // "ws://localhost:8080/ws"
 * ```
 */
export function normalizeUrl(raw: string): string {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new Error(
      `--url "${raw}" is not a URL; expected like ws://127.0.0.1:8080/ws`,
    );
  }
  if (url.protocol === "http:") url.protocol = "ws:";
  else if (url.protocol === "https:") url.protocol = "wss:";
  if (url.protocol !== "ws:" && url.protocol !== "wss:") {
    throw new Error(
      `--url "${raw}" has scheme ${url.protocol}; expected ws:, wss:, http: or https:`,
    );
  }
  if (url.pathname === "" || url.pathname === "/") url.pathname = "/ws";
  return url.href;
}

const HELP = `hubchat load tool

Usage: deno run -A load.ts [options]       (or: deno task load [options])

Target (one of):
  --url URL              chat endpoint (default ${DEFAULT_URL})
  --server "CMD"         start CMD, read its http://host:port/ from stdout,
                         stop it at the end (SIGTERM, SIGKILL after 5 s).
                         CMD gets "--port 0 --host 127.0.0.1" appended, unless
                         it holds {port} (and {host}) placeholders, which are
                         filled in instead. With --server the summary has the
                         server's CPU (from /proc/PID/stat) and memory.

Load:
  --clients N            WebSocket clients (default ${DEFAULT_CLIENTS})
  --senders S            clients that also send (default ${DEFAULT_SENDERS})
  --size BYTES           chat text size, ${MIN_SIZE}-${MAX_SIZE} (default ${DEFAULT_SIZE})
  --window W             closed loop: W messages in flight per sender
                         (default ${DEFAULT_WINDOW})
  --rate R               open loop: R deliveries/s offered, i.e. R/clients
                         messages/s, evenly spread, late sends skipped
  --duration SEC         measured seconds (default ${DEFAULT_DURATION_S})
  --warmup SEC           unmeasured seconds first (default ${DEFAULT_WARMUP_S})
  --drain SEC            wait for in-flight messages (default ${DEFAULT_DRAIN_S})
  --connect-concurrency N  handshakes at once (default ${DEFAULT_CONNECT_CONCURRENCY})
  --connect-timeout SEC  per handshake (default ${DEFAULT_CONNECT_TIMEOUT_S})
  --stall N              N more clients (raw TCP) that connect, then never
                         read: the slow-consumer experiment; their fate is
                         reported under "stall"
  --idle                 connect, then hold the clients for --duration
                         without sending; with --server, reports server RSS
                         before/after and bytes per connection

Measurement:
  --pin-server CPU       run the server under taskset -c CPU
  --pin-load CPU         pin this process (all threads) to CPU (taskset -a -p)
  --json-only            no progress lines on stderr
  --help                 this text

Output: a progress line on stderr about once a second, then one JSON
summary on stdout. The run always ends within connect cap + warmup +
duration + drain (+ a connect timeout per batch of --stall clients, and the
server start/stop caps).

Many connections: each client is a file descriptor here and one in the
server. For 10,000 clients run "ulimit -n 65536" (in the same shell) first.
`;

/** How a command line's flags map onto options, for {@linkcode parseFlags}. */
export interface FlagSpec {
  /** Flags that take a value, and the option each sets. */
  values: Record<string, string>;
  /** Of those, the options whose value is text; the rest are numbers. */
  text: ReadonlySet<string>;
  /** Flags that take no value, and the option each sets to true. */
  switches: Record<string, string>;
}

/**
 * Parses `--flag value`, `--flag=value` and switches into options; `-h` or
 * `--help` sets `help`. Throws an Error naming the bad flag. Shared by the
 * load and soak tools.
 *
 * @example
 * ```ts
 * import { parseFlags } from "./load.ts";
 * parseFlags(["--clients=10", "--idle"], {
 *   values: { "--clients": "clients" },
 *   text: new Set(),
 *   switches: { "--idle": "idle" },
 * });
 * // { help: false, options: { clients: 10, idle: true } }
 * ```
 */
export function parseFlags(
  args: readonly string[],
  spec: FlagSpec,
): { help: boolean; options: Record<string, unknown> } {
  const options: Record<string, unknown> = {};
  let help = false;
  for (let i = 0; i < args.length; i++) {
    const arg = args[i];
    if (arg === "--help" || arg === "-h") {
      help = true;
      continue;
    }
    const switched = spec.switches[arg];
    if (switched !== undefined) {
      options[switched] = true;
      continue;
    }
    const eq = arg.indexOf("=");
    const flag = eq === -1 ? arg : arg.slice(0, eq);
    const key = spec.values[flag];
    if (key === undefined) {
      throw new Error(`unknown option "${arg}"; see --help for the options`);
    }
    const value = eq === -1 ? args[++i] : arg.slice(eq + 1);
    if (value === undefined || value === "") {
      throw new Error(`${flag} needs a value; see --help`);
    }
    if (spec.text.has(key)) {
      options[key] = value;
      continue;
    }
    const n = Number(value);
    if (!Number.isFinite(n) || value.trim() === "") {
      throw new Error(
        `${flag} "${value}" is not a number; expected e.g. ${flag} 10`,
      );
    }
    options[key] = n;
  }
  return { help, options };
}

/** Flags that take a value, and the option each sets. */
const VALUE_FLAGS: Record<string, keyof LoadOptions> = {
  "--url": "url",
  "--server": "server",
  "--clients": "clients",
  "--senders": "senders",
  "--size": "size",
  "--window": "window",
  "--rate": "rate",
  "--duration": "duration",
  "--warmup": "warmup",
  "--drain": "drain",
  "--connect-concurrency": "connectConcurrency",
  "--connect-timeout": "connectTimeout",
  "--stall": "stall",
  "--pin-server": "pinServer",
  "--pin-load": "pinLoad",
};

/**
 * Parses the CLI's arguments; throws an Error naming the bad flag.
 *
 * @example
 * ```ts
 * import { parseLoadArgs } from "./load.ts";
 * parseLoadArgs(["--clients", "10", "--rate=5000"]).options;
 * // { clients: 10, rate: 5000 }
 * ```
 */
export function parseLoadArgs(args: readonly string[]): LoadArgs {
  const { help, options } = parseFlags(args, {
    values: VALUE_FLAGS,
    text: new Set(["url", "server"]),
    switches: { "--json-only": "jsonOnly", "--idle": "idle" },
  });
  const { jsonOnly, ...load } = options;
  return { help, jsonOnly: jsonOnly === true, options: load as LoadOptions };
}

/** {@linkcode LoadOptions} with defaults filled in and checked. */
export interface ResolvedLoadOptions {
  url: string;
  server: string | null;
  clients: number;
  senders: number;
  size: number;
  window: number;
  rate: number;
  duration: number;
  warmup: number;
  drain: number;
  connectConcurrency: number;
  connectTimeout: number;
  stall: number;
  idle: boolean;
  pinServer: number | null;
  pinLoad: number | null;
  progress: boolean;
}

function checkInt(
  name: string,
  value: number,
  range: { min: number; max: number },
): number {
  if (!Number.isInteger(value) || value < range.min || value > range.max) {
    throw new Error(
      `${name} is ${value}; expected an integer from ${range.min} to ${range.max}`,
    );
  }
  return value;
}

function checkSeconds(name: string, value: number, min: number): number {
  if (!Number.isFinite(value) || value < min || value > 86_400) {
    throw new Error(
      `${name} is ${value} s; expected seconds from ${min} to 86400`,
    );
  }
  return value;
}

/**
 * Fills in defaults and checks every option; throws an Error saying which
 * option was wrong and what was expected.
 *
 * @example
 * ```ts
 * import { resolveLoadOptions } from "./load.ts";
 * resolveLoadOptions({ clients: 10 }).senders; // 1
 * ```
 */
export function resolveLoadOptions(options: LoadOptions): ResolvedLoadOptions {
  const clients = checkInt("--clients", options.clients ?? DEFAULT_CLIENTS, {
    min: 1,
    max: 1_000_000,
  });
  const idle = options.idle ?? false;
  const senders = idle ? 0 : checkInt(
    "--senders",
    options.senders ?? DEFAULT_SENDERS,
    { min: 1, max: clients },
  );
  const rate = options.rate ?? 0;
  if (!Number.isFinite(rate) || rate < 0) {
    throw new Error(`--rate is ${rate}; expected deliveries/s > 0`);
  }
  const cpu = { min: 0, max: 4095 };
  return {
    url: normalizeUrl(options.url ?? DEFAULT_URL),
    server: options.server ?? null,
    clients,
    senders,
    size: checkInt("--size", options.size ?? DEFAULT_SIZE, {
      min: MIN_SIZE,
      max: MAX_SIZE,
    }),
    window: checkInt("--window", options.window ?? DEFAULT_WINDOW, {
      min: 1,
      max: 1_000_000,
    }),
    rate,
    duration: checkSeconds(
      "--duration",
      options.duration ?? DEFAULT_DURATION_S,
      0.1,
    ),
    warmup: checkSeconds("--warmup", options.warmup ?? DEFAULT_WARMUP_S, 0),
    drain: checkSeconds("--drain", options.drain ?? DEFAULT_DRAIN_S, 0),
    connectConcurrency: checkInt(
      "--connect-concurrency",
      options.connectConcurrency ?? DEFAULT_CONNECT_CONCURRENCY,
      { min: 1, max: 100_000 },
    ),
    connectTimeout: checkSeconds(
      "--connect-timeout",
      options.connectTimeout ?? DEFAULT_CONNECT_TIMEOUT_S,
      0.1,
    ),
    stall: checkInt("--stall", options.stall ?? 0, { min: 0, max: 100_000 }),
    idle,
    pinServer: options.pinServer === undefined
      ? null
      : checkInt("--pin-server", options.pinServer, cpu),
    pinLoad: options.pinLoad === undefined
      ? null
      : checkInt("--pin-load", options.pinLoad, cpu),
    progress: options.progress ?? false,
  };
}

// ---------------------------------------------------------------------------
// /proc readings
// ---------------------------------------------------------------------------

let clockTicks = 0;

/** Clock ticks per second of /proc/PID/stat times (`getconf CLK_TCK`). */
function clkTck(): number {
  if (clockTicks > 0) return clockTicks;
  clockTicks = 100; // Linux's USER_HZ nearly everywhere.
  try {
    const out = new Deno.Command("getconf", {
      args: ["CLK_TCK"],
      stdout: "piped",
      stderr: "null",
    }).outputSync();
    const n = Number(new TextDecoder().decode(out.stdout).trim());
    if (out.success && Number.isInteger(n) && n > 0) clockTicks = n;
  } catch {
    // No getconf: keep 100.
  }
  return clockTicks;
}

function readText(path: string): string | null {
  try {
    return Deno.readTextFileSync(path);
  } catch {
    return null;
  }
}

/** The pid and all its live descendants (via /proc/PID/task/TID/children). */
function processTree(pid: number): number[] {
  const seen = new Set<number>([pid]);
  const queue = [pid];
  for (let q = 0; q < queue.length && q < 10_000; q++) {
    const p = queue[q];
    let tasks: string[] = [];
    try {
      tasks = [...Deno.readDirSync(`/proc/${p}/task`)].map((e) => e.name);
    } catch {
      continue;
    }
    for (const tid of tasks) {
      const text = readText(`/proc/${p}/task/${tid}/children`);
      if (text === null) continue;
      for (const word of text.split(" ")) {
        const child = Number(word);
        if (word !== "" && Number.isInteger(child) && !seen.has(child)) {
          seen.add(child);
          queue.push(child);
        }
      }
    }
  }
  return [...seen];
}

/**
 * CPU seconds (user + system, all threads, plus reaped children) of a
 * process and its live descendants, or null if /proc has no such process.
 */
function cpuSeconds(pid: number, tree = true): number | null {
  let ticks = 0;
  let found = false;
  for (const p of tree ? processTree(pid) : [pid]) {
    const stat = readText(`/proc/${p}/stat`);
    if (stat === null) continue;
    // Fields after the ")" that closes the command name start at field 3.
    const rest = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    ticks += Number(rest[11]) + Number(rest[12]) + Number(rest[13]) +
      Number(rest[14]);
    found = true;
  }
  return found ? ticks / clkTck() : null;
}

/**
 * A /proc/PID/status field in bytes (VmRSS, VmHWM), summed over the process
 * and its live descendants; null when /proc has no such process (or no /proc).
 *
 * @example
 * ```ts
 * import { statusBytes } from "./load.ts";
 * statusBytes(Deno.pid, "VmRSS"); // e.g. 52428800 on Linux, null elsewhere
 * ```
 */
export function statusBytes(pid: number, field: string): number | null {
  let total = 0;
  let found = false;
  for (const p of processTree(pid)) {
    const status = readText(`/proc/${p}/status`);
    if (status === null) continue;
    const m = new RegExp(`^${field}:\\s+(\\d+) kB`, "m").exec(status);
    if (m !== null) {
      total += Number(m[1]) * 1024;
      found = true;
    }
  }
  return found ? total : null;
}

async function pinSelf(cpu: number): Promise<void> {
  const out = await new Deno.Command("taskset", {
    args: ["-a", "-p", "-c", String(cpu), String(Deno.pid)],
    stdout: "null",
    stderr: "piped",
  }).output();
  if (!out.success) {
    throw new Error(
      `--pin-load ${cpu}: taskset failed: ${
        new TextDecoder().decode(out.stderr).trim()
      }; expected a CPU number this machine has`,
    );
  }
}

// ---------------------------------------------------------------------------
// Server process
// ---------------------------------------------------------------------------

/** A server started by {@linkcode startServerProcess}. */
export interface ServerProcess {
  /** Its process id. */
  pid: number;
  /** The WebSocket endpoint it printed (`ws://host:port/ws`). */
  url: string;
  /** Its command line as run (from /proc when readable). */
  commandLine: string;
  /** SIGTERM, SIGKILL after 5 s; resolves with the exit code (null if killed). */
  stop(): Promise<number | null>;
}

/**
 * Starts `command` on a free loopback port (see {@linkcode serverArgv}) and
 * resolves once it printed its `http://host:port/`; throws an Error with its
 * output if it does not within 60 s.
 *
 * @example
 * ```ts
 * import { startServerProcess } from "./load.ts";
 * const server = await startServerProcess("deno run -A main.ts", null);
 * console.log(server.url); // ws://127.0.0.1:PORT/ws
 * await server.stop();
 * ```
 */
export async function startServerProcess(
  command: string,
  pin: number | null,
): Promise<ServerProcess> {
  const argv = serverArgv(command, pin === null ? {} : { pin });
  let child: Deno.ChildProcess;
  try {
    child = new Deno.Command(argv[0], {
      args: argv.slice(1),
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
  } catch (error) {
    throw new Error(
      `--server: cannot start "${argv.join(" ")}": ${
        (error as Error).message
      }; expected an executable command`,
    );
  }
  const stderrTail: string[] = [];
  const stderrDone = (async () => {
    const reader = child.stderr.pipeThrough(new TextDecoderStream())
      .getReader();
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      stderrTail.push(value);
      if (stderrTail.length > 20) stderrTail.shift();
    }
  })().catch(() => {});
  const stdoutReader = child.stdout.pipeThrough(new TextDecoderStream())
    .getReader();
  let seen = "";
  let url: string | null = null;
  const deadline = performance.now() + SERVER_START_CAP_MS;
  let exited = false;
  const statusPromise = child.status.then((s) => {
    exited = true;
    return s;
  });
  while (url === null && !exited) {
    const left = deadline - performance.now();
    if (left <= 0) break;
    const chunk = await withTimeout(stdoutReader.read(), left, null);
    if (chunk === null || chunk.done) break;
    seen += chunk.value;
    if (seen.length > 65_536) seen = seen.slice(-65_536);
    url = findListenUrl(seen);
  }
  const stdoutDone = (async () => {
    for (;;) {
      const { done } = await stdoutReader.read();
      if (done) break;
    }
  })().catch(() => {});

  async function stop(): Promise<number | null> {
    if (!exited) {
      try {
        child.kill("SIGTERM");
      } catch {
        // Already gone.
      }
    }
    let status = await withTimeout(statusPromise, SERVER_STOP_CAP_MS, null);
    if (status === null) {
      try {
        child.kill("SIGKILL");
      } catch {
        // Already gone.
      }
      status = await statusPromise;
    }
    await Promise.all([stdoutDone, stderrDone]);
    return status.signal === null ? status.code : null;
  }

  if (url === null) {
    await stop();
    throw new Error(
      `--server "${command}" printed no http://host:port/ within ${
        SERVER_START_CAP_MS / 1000
      } s${exited ? " and exited" : ""}; expected a line like ` +
        `"listening on http://127.0.0.1:PORT/". stdout: ${
          JSON.stringify(seen.slice(-500))
        } stderr: ${JSON.stringify(stderrTail.join("").slice(-500))}`,
    );
  }
  const cmdline = readText(`/proc/${child.pid}/cmdline`);
  return {
    pid: child.pid,
    url,
    commandLine: cmdline === null
      ? argv.join(" ")
      : cmdline.split("\0").filter((w) => w !== "").join(" "),
    stop,
  };
}

// ---------------------------------------------------------------------------
// A minimal WebSocket client over raw TCP
//
// Deno's WebSocket dispatches one MessageEvent per frame, which costs more
// than everything else the tool does per delivery (profiled: ~50 % of its
// CPU). Reading the socket ourselves costs one op per read of many frames,
// and the frames are scanned as bytes, never decoded.
// ---------------------------------------------------------------------------

/** Read buffers of all clients together stay under this: 64 MiB. */
const READ_BUFFER_BUDGET = 64 * 1024 * 1024;
/** Largest per-client read buffer: 64 KiB, a socket buffer's worth. */
const MAX_READ_BUFFER = 64 * 1024;
/** Smallest per-client read buffer: 4 KiB, a page. */
const MIN_READ_BUFFER = 4 * 1024;

/**
 * Each client's read buffer when `clients` read at once: a socket buffer's
 * worth, less when that would take all of them over 64 MiB, never under a
 * page.
 *
 * @example
 * ```ts
 * import { readBufferSize } from "./load.ts";
 * readBufferSize(100); // 65536
 * readBufferSize(10_000); // 6710
 * ```
 */
export function readBufferSize(clients: number): number {
  return Math.max(
    MIN_READ_BUFFER,
    Math.min(MAX_READ_BUFFER, Math.floor(READ_BUFFER_BUDGET / clients)),
  );
}
/** Largest server frame accepted: a welcome to 100,000 users fits. */
const MAX_FRAME_BYTES = 64 * 1024 * 1024;
/** Largest HTTP response head accepted during the handshake. */
const MAX_HANDSHAKE_BYTES = 16 * 1024;

/** A connection past its HTTP 101, with bytes already read after the head. */
export interface Handshake {
  /** The upgraded connection. */
  conn: Deno.Conn;
  /** Bytes read past the response head (the first frames, maybe). */
  rest: Uint8Array;
}

/**
 * Connects and upgrades to WebSocket by hand. Throws an Error saying what
 * the server answered (e.g. `HTTP 409`) or that it timed out.
 *
 * @example
 * ```ts
 * import { handshake } from "./load.ts";
 * const { conn } = await handshake("ws://127.0.0.1:8080/ws", "ann", 10_000);
 * conn.close();
 * ```
 */
export async function handshake(
  wsUrl: string,
  username: string,
  timeoutMs: number,
): Promise<Handshake> {
  const url = new URL(wsUrl);
  url.searchParams.set("username", username);
  const port = Number(url.port || (url.protocol === "wss:" ? 443 : 80));
  const hostname = url.hostname.replace(/^\[|\]$/g, "");
  const conn = url.protocol === "wss:"
    ? await Deno.connectTls({ hostname, port })
    : await Deno.connect({ hostname, port });
  const key = btoa(
    String.fromCharCode(...crypto.getRandomValues(new Uint8Array(16))),
  );
  const request = `GET ${url.pathname}${url.search} HTTP/1.1\r\n` +
    `Host: ${url.host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
    `Sec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n\r\n`;
  let pending: Promise<number | null> | null = null;
  try {
    await conn.write(encoder.encode(request));
    const buf = new Uint8Array(MAX_HANDSHAKE_BYTES);
    let got = 0;
    const deadline = performance.now() + timeoutMs;
    let headEnd = -1;
    while (headEnd === -1) {
      if (got === buf.length) {
        throw new Error(`HTTP response head over ${buf.length} bytes`);
      }
      const left = deadline - performance.now();
      if (left <= 0) throw new Error("timeout waiting for HTTP 101");
      pending = conn.read(buf.subarray(got));
      const n = await withTimeout(pending, left, -1);
      if (n === -1) throw new Error("timeout waiting for HTTP 101");
      pending = null;
      if (n === null) throw new Error("server closed during the handshake");
      got += n;
      const at = indexOfBytes(buf, CRLFCRLF, Math.max(0, got - n - 3), got);
      if (at !== -1) headEnd = at + 4;
    }
    const head = new TextDecoder("latin1").decode(buf.subarray(0, headEnd));
    const status = head.slice(0, head.indexOf("\r\n"));
    if (!/^HTTP\/1\.[01] 101/.test(status)) {
      const body = new TextDecoder().decode(buf.subarray(headEnd, got));
      throw new Error(`${status.slice(9)} ${body.slice(0, 80)}`.trim());
    }
    return { conn, rest: buf.slice(headEnd, got) };
  } catch (error) {
    try {
      conn.close();
    } catch {
      // Already closed.
    }
    if (pending !== null) await pending.catch(() => null);
    throw error;
  }
}

const CRLFCRLF = encoder.encode("\r\n\r\n");

/** Called with each complete text frame: `buf[start, end)` is its payload. */
export type TextHandler = (
  buf: Uint8Array,
  start: number,
  end: number,
  now: number,
) => void;

/**
 * One client connection: reads frames, answers pings, writes in order.
 *
 * @example
 * ```ts
 * import { handshake, RawClient } from "./load.ts";
 * const shake = await handshake("ws://127.0.0.1:8080/ws", "ann", 10_000);
 * const client = new RawClient(shake, {
 *   onText: (buf, start, end) => console.log(end - start, "bytes"),
 *   onEnd: () => console.log("closed"),
 *   bufferSize: 65_536,
 * });
 * await client.close(5_000);
 * ```
 */
export class RawClient {
  /** Close code from the server's close frame, if it sent one. */
  serverCloseCode: number | null = null;
  /** True once the read loop ended (EOF, error or close). */
  ended = false;
  #conn: Deno.Conn;
  #onText: TextHandler;
  #onEnd: () => void;
  #out: Uint8Array[] = [];
  #writing: Promise<void> | null = null;
  #sentClose = false;
  #closed = false;
  #reading: Promise<void>;
  #fragments: Uint8Array[] = [];

  /** Starts reading `shake`'s connection; `onEnd` runs once it is over. */
  constructor(
    shake: Handshake,
    handlers: { onText: TextHandler; onEnd: () => void; bufferSize: number },
  ) {
    this.#conn = shake.conn;
    this.#onText = handlers.onText;
    this.#onEnd = handlers.onEnd;
    this.#reading = this.#readLoop(shake.rest, handlers.bufferSize);
  }

  /** Queues a frame; frames leave in order, batched into few writes. */
  send(frame: Uint8Array): void {
    if (this.#sentClose || this.#closed) return;
    this.#out.push(frame);
    if (this.#writing === null) this.#writing = this.#flush();
  }

  async #flush(): Promise<void> {
    try {
      while (this.#out.length > 0 && !this.#closed) {
        let chunk: Uint8Array;
        if (this.#out.length === 1) chunk = this.#out[0];
        else {
          let size = 0;
          for (const f of this.#out) size += f.length;
          chunk = new Uint8Array(size);
          let at = 0;
          for (const f of this.#out) {
            chunk.set(f, at);
            at += f.length;
          }
        }
        this.#out = [];
        let off = 0;
        while (off < chunk.length) {
          off += await this.#conn.write(chunk.subarray(off));
        }
      }
    } catch {
      // The connection is gone; the read loop reports it.
      this.#out = [];
    } finally {
      this.#writing = null;
    }
  }

  async #readLoop(first: Uint8Array, bufferSize: number): Promise<void> {
    let buf = new Uint8Array(Math.max(bufferSize, first.length));
    buf.set(first);
    let have = first.length;
    try {
      let parseNow = have > 0;
      for (;;) {
        if (!parseNow) {
          const n = await this.#conn.read(buf.subarray(have));
          if (n === null) break;
          have += n;
        }
        parseNow = false;
        const now = performance.now();
        let pos = 0;
        while (have - pos >= 2) {
          const b0 = buf[pos];
          const b1 = buf[pos + 1];
          const len7 = b1 & 0x7f;
          const masked = (b1 & 0x80) !== 0;
          const head = 2 + (len7 === 126 ? 2 : len7 === 127 ? 8 : 0) +
            (masked ? 4 : 0);
          if (have - pos < head) break;
          let len = len7;
          if (len7 === 126) len = buf[pos + 2] * 256 + buf[pos + 3];
          else if (len7 === 127) {
            len = 0;
            for (let j = 2; j < 10; j++) len = len * 256 + buf[pos + j];
          }
          if (len > MAX_FRAME_BYTES) {
            throw new Error(`server frame of ${len} bytes`);
          }
          if (head + len > buf.length - pos) {
            // Too big to fit where it starts: move it to a larger buffer.
            let size = buf.length;
            while (size < head + len) size *= 2;
            const bigger = new Uint8Array(size);
            bigger.set(buf.subarray(pos, have));
            buf = bigger;
            have -= pos;
            pos = 0;
            break;
          }
          if (have - pos < head + len) break;
          const start = pos + head;
          const end = start + len;
          if (masked) {
            for (let j = start; j < end; j++) {
              buf[j] ^= buf[start - 4 + ((j - start) & 3)];
            }
          }
          this.#frame(b0, buf, start, end, now);
          pos = end;
        }
        if (pos > 0) {
          buf.copyWithin(0, pos, have);
          have -= pos;
        }
        if (have === 0 && buf.length > bufferSize) {
          buf = new Uint8Array(bufferSize);
        }
      }
    } catch {
      // Reset, closed under us, or garbage: the connection is over.
    }
    this.ended = true;
    this.#onEnd();
  }

  #frame(
    b0: number,
    buf: Uint8Array,
    start: number,
    end: number,
    now: number,
  ): void {
    const fin = (b0 & 0x80) !== 0;
    const opcode = b0 & 0x0f;
    if (opcode === 1 && fin) {
      this.#onText(buf, start, end, now);
    } else if (opcode === 1 || opcode === 0) {
      this.#fragments.push(buf.slice(start, end));
      if (fin) {
        let size = 0;
        for (const f of this.#fragments) size += f.length;
        const whole = new Uint8Array(size);
        let at = 0;
        for (const f of this.#fragments) {
          whole.set(f, at);
          at += f.length;
        }
        this.#fragments = [];
        this.#onText(whole, 0, size, now);
      }
    } else if (opcode === 9) {
      this.send(
        encodeFrame({
          opcode: Opcode.pong,
          payload: buf.subarray(start, end),
          mask: "zero",
        }),
      );
    } else if (opcode === 8) {
      this.serverCloseCode = end - start >= 2
        ? buf[start] * 256 + buf[start + 1]
        : 1005;
      if (!this.#sentClose) {
        this.send(
          encodeFrame({
            opcode: Opcode.close,
            payload: buf.subarray(start, Math.min(end, start + 2)),
            mask: "zero",
          }),
        );
        this.#sentClose = true;
      }
    }
  }

  /**
   * Closing handshake (code 1000), then the TCP close; waits at most
   * `capMs` for the server's answer.
   */
  async close(capMs: number): Promise<void> {
    if (!this.#closed) {
      if (!this.#sentClose && !this.ended) {
        this.send(
          encodeFrame({
            opcode: Opcode.close,
            payload: closePayload(1000),
            mask: "zero",
          }),
        );
        this.#sentClose = true;
      }
      await withTimeout(this.#reading, capMs, undefined);
      this.#closed = true;
      try {
        this.#conn.close();
      } catch {
        // Already closed.
      }
    }
    await this.#reading;
    if (this.#writing !== null) await this.#writing;
  }
}

// ---------------------------------------------------------------------------
// Stalled clients: handshake, then never read
// ---------------------------------------------------------------------------

/** Finds WebSocket close frames in a server-to-client byte stream. */
class FrameScanner {
  closeCode: number | null = null;
  #header: number[] = [];
  #skip = 0;
  #inClose = false;
  #closePayload: number[] = [];

  push(chunk: Uint8Array): void {
    let i = 0;
    while (i < chunk.length) {
      if (this.#skip > 0) {
        const n = Math.min(this.#skip, chunk.length - i);
        if (this.#inClose) {
          for (let j = 0; j < n && this.#closePayload.length < 2; j++) {
            this.#closePayload.push(chunk[i + j]);
          }
        }
        i += n;
        this.#skip -= n;
        if (this.#skip === 0 && this.#inClose) this.#finishClose();
        continue;
      }
      this.#header.push(chunk[i++]);
      if (this.#header.length < 2) continue;
      const len7 = this.#header[1] & 0x7f;
      const need = 2 + (len7 === 126 ? 2 : len7 === 127 ? 8 : 0) +
        ((this.#header[1] & 0x80) ? 4 : 0);
      if (this.#header.length < need) continue;
      let length = len7;
      if (len7 === 126) length = this.#header[2] * 256 + this.#header[3];
      if (len7 === 127) {
        length = 0;
        for (let j = 2; j < 10; j++) length = length * 256 + this.#header[j];
      }
      this.#inClose = (this.#header[0] & 0x0f) === 8;
      this.#closePayload = [];
      this.#header = [];
      this.#skip = length;
      if (length === 0 && this.#inClose) this.#finishClose();
    }
  }

  #finishClose(): void {
    this.closeCode = this.#closePayload.length === 2
      ? this.#closePayload[0] * 256 + this.#closePayload[1]
      : 1005;
    this.#inClose = false;
  }
}

interface StalledClient {
  conn: Deno.Conn | null;
  connectedAt: number;
  closedAfter: number | null;
  scanner: FrameScanner;
  /** A ping write still blocked on a full socket buffer. */
  pendingWrite: Promise<number> | null;
}

/** A masked, empty ping frame, written now and then to notice a close. */
const PING_FRAME = encodeFrame({ opcode: Opcode.ping, mask: "zero" });

async function openStalled(
  wsUrl: string,
  username: string,
  timeoutMs: number,
): Promise<StalledClient> {
  const { conn, rest } = await handshake(wsUrl, username, timeoutMs);
  const scanner = new FrameScanner();
  scanner.push(rest);
  return {
    conn,
    connectedAt: performance.now(),
    closedAfter: null,
    scanner,
    pendingWrite: null,
  };
}

/** Writes a ping now and then until a write fails (the server closed). */
async function probeStalled(
  client: StalledClient,
  until: () => boolean,
): Promise<void> {
  const conn = client.conn;
  if (conn === null) return;
  while (!until() && client.closedAfter === null) {
    await sleep(STALL_PROBE_MS);
    if (until()) break;
    try {
      // A write into a full socket buffer blocks: that is not a close.
      client.pendingWrite ??= conn.write(PING_FRAME);
      const n = await withTimeout(client.pendingWrite, STALL_PROBE_MS, -1);
      if (n !== -1) client.pendingWrite = null;
    } catch {
      client.pendingWrite = null;
      client.closedAfter = (performance.now() - client.connectedAt) / 1000;
    }
  }
}

/** Reads what the server left for a stalled client, then closes it. */
async function finishStalled(client: StalledClient): Promise<number> {
  const conn = client.conn;
  if (conn === null) return 0;
  client.conn = null;
  const buf = new Uint8Array(65_536);
  let total = 0;
  const deadline = performance.now() + STALL_FINAL_READ_MS;
  let pending: Promise<number | null> | null = null;
  try {
    while (performance.now() < deadline && client.scanner.closeCode === null) {
      pending = conn.read(buf);
      const n = await withTimeout(pending, deadline - performance.now(), -1);
      if (n === -1) break;
      pending = null;
      if (n === null) {
        if (client.closedAfter === null) {
          client.closedAfter = (performance.now() - client.connectedAt) / 1000;
        }
        break;
      }
      total += n;
      client.scanner.push(buf.subarray(0, n));
    }
  } catch {
    if (client.closedAfter === null) {
      client.closedAfter = (performance.now() - client.connectedAt) / 1000;
    }
  }
  try {
    conn.close();
  } catch {
    // Already closed.
  }
  if (pending !== null) await pending.catch(() => null);
  if (client.pendingWrite !== null) {
    await client.pendingWrite.catch(() => 0);
    client.pendingWrite = null;
  }
  return total;
}

// ---------------------------------------------------------------------------
// The run
// ---------------------------------------------------------------------------

/**
 * Adds one to `map[key]`.
 *
 * @example
 * ```ts
 * import { count } from "./load.ts";
 * const seen: Record<string, number> = {};
 * count(seen, "4008"); // seen is { "4008": 1 }
 * ```
 */
export function count(map: Record<string, number>, key: string): void {
  map[key] = (map[key] ?? 0) + 1;
}

/**
 * Rounds to `digits` decimals, for summaries.
 *
 * @example
 * ```ts
 * import { round } from "./load.ts";
 * round(1.23456, 2); // 1.23
 * ```
 */
export function round(value: number, digits: number): number {
  const f = 10 ** digits;
  return Math.round(value * f) / f;
}

/**
 * Four random base-36 characters that mark one run's texts, so lines from
 * other runs or other people are told apart.
 *
 * @example
 * ```ts
 * import { runId } from "./load.ts";
 * runId(); // e.g. "k3x9"
 * ```
 */
export function runId(): string {
  const n = crypto.getRandomValues(new Uint32Array(1))[0] % 36 ** 4;
  return n.toString(36).padStart(4, "0");
}

/**
 * Calls `each` with the bounds of every non-empty `\n`-separated line in
 * `buf[from, to)`: the lines of one frame, in place.
 *
 * @example
 * ```ts
 * import { forEachLine } from "./load.ts";
 * const buf = new TextEncoder().encode("a\n\nbc");
 * forEachLine(buf, 0, buf.length, (start, end) => console.log(start, end));
 * // 0 1, then 3 5
 * ```
 */
export function forEachLine(
  buf: Uint8Array,
  from: number,
  to: number,
  each: (start: number, end: number) => void,
): void {
  let start = from;
  while (start < to) {
    // A plain loop: TypedArray#indexOf has no end bound and would run on
    // into the next frames of the read buffer.
    let end = start;
    while (end < to && buf[end] !== 10) end++;
    if (end > start) each(start, end);
    start = end + 1;
  }
}

/**
 * The `code` of a server `error` line, for counting; "unparseable_line"
 * when the line is not JSON.
 *
 * @example
 * ```ts
 * import { errorCode } from "./load.ts";
 * const line = new TextEncoder().encode('{"type":"error","code":"rate_limited"}');
 * errorCode(line, 0, line.length); // "rate_limited"
 * ```
 */
export function errorCode(buf: Uint8Array, start: number, end: number): string {
  try {
    return String(JSON.parse(decoder.decode(buf.subarray(start, end))).code);
  } catch {
    return "unparseable_line";
  }
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

  let server: ServerProcess | null = null;
  let url = cfg.url;
  const clients: (RawClient | null)[] = new Array(n).fill(null);
  const welcomed = new Uint8Array(n);
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
    client.send(
      encodeFrame({
        opcode: Opcode.text,
        payload: `{"type":"message","text":"${text}"}`,
        mask: "zero",
      }),
    );
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
    welcomeWaiters[i]?.(false);
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
    const timeoutMs = Math.max(
      1,
      Math.min(cfg.connectTimeout * 1000, deadline - started),
    );
    let shake: Handshake;
    try {
      shake = await handshake(url, `load-${run}-${i}`, timeoutMs);
    } catch (error) {
      count(errors.connect_errors, (error as Error).message.slice(0, 120));
      return;
    }
    const welcome = Promise.withResolvers<boolean>();
    welcomeWaiters[i] = welcome.resolve;
    const client = new RawClient(shake, {
      onText: (buf, start, end, now) => onText(i, buf, start, end, now),
      onEnd: () => onEnd(i),
      bufferSize,
    });
    clients[i] = client;
    const left = Math.max(1, timeoutMs - (performance.now() - started));
    const ok = await withTimeout(welcome.promise, left, null);
    welcomeWaiters[i] = () => {};
    if (ok === true) {
      open[i] = 1;
      connectedCount++;
      connectMs.push(performance.now() - started);
    } else if (ok === null) {
      count(errors.connect_errors, "timeout waiting for welcome");
    } else {
      count(
        errors.connect_errors,
        `closed before welcome (code ${client.serverCloseCode ?? "none"})`,
      );
    }
  }

  let progressTimer: ReturnType<typeof setInterval> | undefined;
  let phase = "connect";
  const runStarted = performance.now();
  let serverCpuStart: number | null = null;
  let serverCpuEnd: number | null = null;
  let loadCpuStart: number | null = null;
  let loadCpuEnd: number | null = null;
  let rssStart: number | null = null;
  let rssEnd: number | null = null;
  let peakRss: number | null = null;
  let exitCode: number | null = null;
  let connectTotal = 0;
  let measuredSeconds = 0;
  const stallProbes: Promise<void>[] = [];
  const stallStop = { done: false };
  let stallBacklog = 0;

  function startWindow(): void {
    measureStartUs = performance.now() * 1000;
    if (server !== null) serverCpuStart = cpuSeconds(server.pid);
    loadCpuStart = cpuSeconds(Deno.pid, false);
  }

  function endWindow(): void {
    const nowUs = performance.now() * 1000;
    measureEndUs = nowUs;
    measuredSeconds = (nowUs - measureStartUs) / 1e6;
    if (server !== null) {
      serverCpuEnd = cpuSeconds(server.pid);
      rssEnd = statusBytes(server.pid, "VmRSS");
    }
    loadCpuEnd = cpuSeconds(Deno.pid, false);
  }

  try {
    if (cfg.server !== null) {
      log(`starting server: ${cfg.server}`);
      server = await startServerProcess(cfg.server, cfg.pinServer);
      url = server.url;
      log(`server pid ${server.pid} (${server.commandLine}) at ${url}`);
      rssStart = statusBytes(server.pid, "VmRSS");
    }

    progressTimer = setInterval(() => {
      const elapsed = (performance.now() - runStarted) / 1000;
      log(
        `t=${elapsed.toFixed(1)}s ${phase} deliveries/s=${secondDeliveries} ` +
          `p99=${
            (progressHistogram.percentile(99) / 1000).toFixed(2)
          }ms clients=${connectedCount}/${n} lost(gaps)=${tracker.gaps}`,
      );
      secondDeliveries = 0;
    }, PROGRESS_PERIOD_MS);

    // Connect: bounded concurrency, bounded total time.
    const connectStart = performance.now();
    const connectDeadline = connectStart +
      (CONNECT_CAP_BASE_S + n * CONNECT_CAP_PER_CLIENT_S) * 1000;
    let nextIndex = 0;
    const worker = async (): Promise<void> => {
      while (nextIndex < n) {
        const i = nextIndex++;
        if (performance.now() >= connectDeadline) {
          count(errors.connect_errors, "connect phase cap reached");
          continue;
        }
        await connectClient(i, connectDeadline);
      }
    };
    await Promise.all(
      Array.from({ length: Math.min(cfg.connectConcurrency, n) }, worker),
    );
    // Stalled clients open as many at a time as the others did, so their
    // handshakes take at most one connect timeout per batch.
    for (let i = 0; i < cfg.stall; i += cfg.connectConcurrency) {
      const batch = Array.from(
        { length: Math.min(cfg.connectConcurrency, cfg.stall - i) },
        (_, j) =>
          openStalled(url, `load-${run}-s${i + j}`, cfg.connectTimeout * 1000),
      );
      for (const opened of await Promise.allSettled(batch)) {
        if (opened.status === "fulfilled") stalled.push(opened.value);
        else {
          count(
            errors.connect_errors,
            `stall: ${(opened.reason as Error).message.slice(0, 100)}`,
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
        (cfg.stall > 0 ? `, stalled ${stalled.length}/${cfg.stall}` : ""),
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
        openLoop = (async () => {
          // Message k is due at t0 + k / msgPerMs. Each wake-up sends what
          // is due; sends later than lateCap are skipped
          // (and counted), never sent in a catch-up burst.
          const msgPerMs = cfg.rate / n / 1000;
          // Late by up to one interval is jitter, not a burst.
          const lateCap = Math.max(OPEN_LOOP_MAX_BURST_MS, 1 / msgPerMs);
          const t0 = performance.now();
          let next = 0;
          let rr = 0;
          while (sending) {
            const nowMs = performance.now() - t0;
            const due = Math.floor(nowMs * msgPerMs) + 1;
            const onTime = Math.ceil(
              (nowMs - lateCap) * msgPerMs,
            );
            if (onTime > next) {
              skipped += Math.min(due, onTime) - next;
              next = Math.min(due, onTime);
            }
            for (; next < due; next++) {
              sendOne(rr);
              rr = (rr + 1) % senders;
            }
            const wait = next / msgPerMs - (performance.now() - t0);
            await sleep(Math.max(0, Math.min(1000, wait)));
          }
        })();
      }
      await sleep(cfg.warmup * 1000);
      phase = "measure";
      startWindow();
      await sleep(cfg.duration * 1000);
      endWindow();
      sending = false;
      if (openLoop !== null) await openLoop;
      phase = "drain";
      const totalSent = sent.reduce((a, b) => a + b, 0);
      const drainDeadline = performance.now() + cfg.drain * 1000;
      while (performance.now() < drainDeadline) {
        let complete = true;
        for (let i = 0; i < n; i++) {
          if (open[i] && tracker.distinct(i) < totalSent) {
            complete = false;
            break;
          }
        }
        if (complete) break;
        await sleep(DRAIN_POLL_MS);
      }
    }
  } finally {
    if (progressTimer !== undefined) clearInterval(progressTimer);
    phase = "close";
    closing = true;
    sending = false;
    stallStop.done = true;
    if (server !== null) peakRss = statusBytes(server.pid, "VmHWM");
    await Promise.all(
      clients.map((client) => client?.close(CLOSE_CAP_MS)),
    );
    await Promise.all(stallProbes);
    const backlogs = await Promise.all(stalled.map(finishStalled));
    stallBacklog = backlogs.reduce((a, b) => a + b, 0);
    if (server !== null) exitCode = await server.stop();
  }

  // Summary.
  const totalSent = sent.reduce((a, b) => a + b, 0);
  let lost = 0;
  let complete = 0;
  for (let i = 0; i < n; i++) {
    if (!welcomed[i]) continue;
    const l = tracker.lost(i, sent);
    lost += l;
    if (l === 0) complete++;
  }
  connectMs.sort((a, b) => a - b);
  const serverCpu = serverCpuStart !== null && serverCpuEnd !== null
    ? serverCpuEnd - serverCpuStart
    : null;
  const clientsConnected = welcomed.reduce((a, b) => a + b, 0);
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
  return {
    config: {
      url: cfg.url,
      server: cfg.server,
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
    server_process: server?.commandLine ?? null,
    server_pid: server?.pid ?? null,
    server_cpu_seconds: serverCpu === null ? null : round(serverCpu, 3),
    server_cpu_us_per_delivery: serverCpu !== null && windowDeliveries > 0
      ? round((serverCpu * 1e6) / windowDeliveries, 4)
      : null,
    server_cpu_seconds_per_100k_deliveries:
      serverCpu !== null && windowDeliveries > 0
        ? round((serverCpu * 1e5) / windowDeliveries, 4)
        : null,
    server_peak_rss_bytes: peakRss,
    server_rss_start_bytes: rssStart,
    server_rss_end_bytes: rssEnd,
    server_bytes_per_connection:
      mode === "idle" && rssStart !== null && rssEnd !== null &&
        clientsConnected > 0
        ? Math.round((rssEnd - rssStart) / clientsConnected)
        : null,
    server_exit_code: exitCode,
    load_cpu_seconds: loadCpuStart !== null && loadCpuEnd !== null
      ? round(loadCpuEnd - loadCpuStart, 3)
      : null,
    aborted,
  };
}

// ---------------------------------------------------------------------------
// CLI
// ---------------------------------------------------------------------------

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
    console.log(HELP);
    Deno.exit(0);
  }
  const o = resolveLoadOptions(args.options);
  const capS = CONNECT_CAP_BASE_S + o.clients * CONNECT_CAP_PER_CLIENT_S +
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
    Deno.exit(summary.aborted === null ? 0 : 1);
  } catch (error) {
    console.error(`load: ${(error as Error).message}`);
    Deno.exit(1);
  }
}

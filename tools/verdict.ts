/**
 * The one-line verdict the load and soak tools print last, on stderr: PASS
 * when every client connected and every message reached every client once
 * and in order, else FAIL and why, in the words a person would use (`3 of
 * 100 clients refused (429 ×3)`, `12 lost`). The tool's exit status follows
 * it: 0 for PASS, 1 for FAIL.
 *
 * @module
 */

/** What a run's verdict is judged on. */
export interface RunOutcome {
  /** Clients asked for. */
  clients: number;
  /** Clients that connected (got their welcome). */
  connected: number;
  /**
   * Why the others did not, by message: the handshake's `429 Too Many
   * Requests ...`, `timeout waiting for welcome`, a socket error.
   */
  connectErrors: Record<string, number>;
  /** Deliveries (one message arriving at one client). */
  deliveries: number;
  /** Deliveries that never arrived. */
  lost: number;
  /** Deliveries that arrived twice or more. */
  duplicated: number;
  /** Deliveries that arrived after a later message from the same sender. */
  outOfOrder: number;
  /** Why the run stopped early on its own, or null. */
  aborted: string | null;
  /** How the run was cut short from outside (Ctrl-C), or null. */
  interrupted?: string | null;
  /** Connected clients the server closed during the run, by close code. */
  closedByServer?: Record<string, number>;
  /** `error` messages the server sent, by code. */
  serverErrors?: Record<string, number>;
  /**
   * Seconds the clients were held without sending (load's `--idle`), or
   * absent when messages were sent.
   */
  idleSeconds?: number;
  /** Clients that connect, then never read (load's `--stall`), if any. */
  stalled?: StalledOutcome;
}

/** How the stalled clients of a run fared in their connect. */
export interface StalledOutcome {
  /** Stalled clients asked for. */
  clients: number;
  /** Stalled clients whose handshake completed. */
  connected: number;
  /** Why the others did not, by message. */
  connectErrors: Record<string, number>;
}

/** A run's verdict. */
export interface Verdict {
  /** True when the run passed. */
  pass: boolean;
  /** `PASS: ...` or `FAIL: ...`, one line. */
  line: string;
}

/** An HTTP status at the start of a handshake error: the server refused. */
const HTTP_STATUS = /^(\d{3})\b/;

/**
 * A count as people read it, with thousands separators: 1,234,567.
 *
 * @example
 * ```ts
 * import { formatCount } from "./verdict.ts";
 * formatCount(1234567); // "1,234,567"
 * ```
 */
export function formatCount(n: number): string {
  return n.toLocaleString("en-US");
}

/**
 * Connect errors grouped for people: HTTP refusals by status (`429 ×3`),
 * anything else by its message; the biggest group first. `refused` is how
 * many of them were refusals.
 *
 * @example
 * ```ts
 * import { describeConnectErrors } from "./verdict.ts";
 * describeConnectErrors({
 *   "429 Too Many Requests too many connections": 3,
 *   "timeout waiting for welcome": 1,
 * });
 * // { text: "429 ×3, timeout waiting for welcome ×1", refused: 3, total: 4 }
 * ```
 */
export function describeConnectErrors(
  errors: Record<string, number>,
): { text: string; refused: number; total: number } {
  const groups = new Map<string, number>();
  let refused = 0;
  let total = 0;
  for (const [message, n] of Object.entries(errors)) {
    const status = HTTP_STATUS.exec(message)?.[1];
    const key = status ?? message;
    groups.set(key, (groups.get(key) ?? 0) + n);
    if (status !== undefined) refused += n;
    total += n;
  }
  const text = [...groups].sort((a, b) => b[1] - a[1])
    .map(([key, n]) => `${key} ×${n}`).join(", ");
  return { text, refused, total };
}

/**
 * `3 of 100 clients refused (429 ×3)` when all that did not connect were
 * refused, else `... did not connect (...)`; null when all connected.
 */
function notConnected(
  fleet: {
    clients: number;
    connected: number;
    connectErrors: Record<string, number>;
  },
  what: string,
): string | null {
  const missing = fleet.clients - fleet.connected;
  if (missing <= 0) return null;
  const errors = describeConnectErrors(fleet.connectErrors);
  const verb = errors.total > 0 && errors.refused === errors.total
    ? "refused"
    : "did not connect";
  return `${formatCount(missing)} of ${formatCount(fleet.clients)} ${what} ` +
    `${verb}${errors.total > 0 ? ` (${errors.text})` : ""}`;
}

/** `4008 ×2, 1001 ×1`: counts by key, the biggest first. */
function byKey(counts: Record<string, number>): string {
  return Object.entries(counts).sort((a, b) => b[1] - a[1])
    .map(([key, n]) => `${key} ×${n}`).join(", ");
}

/** The sum of a record's counts. */
function total(counts: Record<string, number> | undefined): number {
  return Object.values(counts ?? {}).reduce((a, b) => a + b, 0);
}

/**
 * Judges a run: PASS when it was not stopped early, every client
 * connected, no connected client was closed by the server, the server sent
 * no error, and nothing was lost, duplicated or reordered; else FAIL with
 * every reason, then what was lost, duplicated or reordered (`0 lost` when
 * nothing was).
 *
 * @example
 * ```ts
 * import { judgeRun } from "./verdict.ts";
 * judgeRun({
 *   clients: 100,
 *   connected: 97,
 *   connectErrors: { "429 Too Many Requests too many connections": 3 },
 *   deliveries: 5_000,
 *   lost: 0,
 *   duplicated: 0,
 *   outOfOrder: 0,
 *   aborted: null,
 * }).line; // "FAIL: 3 of 100 clients refused (429 ×3); 0 lost"
 * ```
 */
export function judgeRun(outcome: RunOutcome): Verdict {
  const reasons: string[] = [];
  if (outcome.interrupted) reasons.push(outcome.interrupted);
  if (outcome.aborted !== null) reasons.push(`aborted: ${outcome.aborted}`);
  const missing = notConnected(outcome, "clients");
  if (missing !== null) reasons.push(missing);
  const stalled = outcome.stalled;
  const missingStalled = stalled && notConnected(stalled, "stalled clients");
  if (missingStalled) reasons.push(missingStalled);
  const closed = total(outcome.closedByServer);
  if (closed > 0) {
    reasons.push(
      `${formatCount(closed)} clients closed by the server (${
        byKey(outcome.closedByServer ?? {})
      })`,
    );
  }
  const serverErrors = total(outcome.serverErrors);
  if (serverErrors > 0) {
    reasons.push(
      `${formatCount(serverErrors)} errors from the server (${
        byKey(outcome.serverErrors ?? {})
      })`,
    );
  }
  const damage: string[] = [];
  if (outcome.lost > 0) damage.push(`${formatCount(outcome.lost)} lost`);
  if (outcome.duplicated > 0) {
    damage.push(`${formatCount(outcome.duplicated)} duplicated`);
  }
  if (outcome.outOfOrder > 0) {
    damage.push(`${formatCount(outcome.outOfOrder)} out of order`);
  }
  if (reasons.length === 0 && damage.length === 0) {
    const also = stalled !== undefined && stalled.clients > 0
      ? ` (and ${formatCount(stalled.clients)} stalled)`
      : "";
    const what = outcome.idleSeconds === undefined
      ? `${
        formatCount(outcome.deliveries)
      } deliveries, nothing lost, duplicated or reordered`
      : `held idle for ${outcome.idleSeconds} s, none closed by the server`;
    return {
      pass: true,
      line: `PASS: ${formatCount(outcome.clients)} clients${also}, ${what}`,
    };
  }
  const parts = [...reasons, damage.length > 0 ? damage.join(", ") : "0 lost"];
  return { pass: false, line: `FAIL: ${parts.join("; ")}` };
}

/**
 * Stalled clients (`--stall`): they complete the handshake, then never read,
 * as a slow consumer does; a ping now and then notices when the server
 * closes them, and at the end their backlog is read for its close code.
 *
 * @module
 */

import { sleep, withTimeout } from "./wait.ts";
import { FrameScanner, handshake } from "./ws_client.ts";
import { encodeFrame, Opcode } from "./ws_frame.ts";

/** A stalled client writes a ping this often, to notice a server close. */
const STALL_PROBE_MS = 1000;

/** At the end, a stalled client reads its backlog for at most this long. */
export const STALL_FINAL_READ_MS = 2000;

/** One stalled client: its connection and what became of it. */
export interface StalledClient {
  /** The connection, until {@linkcode finishStalled} closed it. */
  conn: Deno.Conn | null;
  /** When its handshake completed (`performance.now()`). */
  connectedAt: number;
  /** Seconds from connect to the first sign the server closed it, or null. */
  closedAfter: number | null;
  /** Reads the close code out of the backlog. */
  scanner: FrameScanner;
  /** A ping write still blocked on a full socket buffer. */
  pendingWrite: Promise<number> | null;
}

/** A masked, empty ping frame, written now and then to notice a close. */
const PING_FRAME = encodeFrame({ opcode: Opcode.ping, mask: "zero" });

/**
 * Opens one stalled client as `username`: the handshake, within
 * `timeoutMs`, and nothing read after it. Throws the handshake's Error.
 *
 * @example
 * ```ts
 * import { finishStalled, openStalled, probeStalled } from "./stalled_clients.ts";
 * const client = await openStalled("ws://127.0.0.1:8080/ws", "slow", 10_000);
 * let done = false;
 * const probe = probeStalled(client, () => done);
 * done = true;
 * await probe;
 * console.log(await finishStalled(client), client.scanner.closeCode);
 * ```
 */
export async function openStalled(
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

/**
 * Writes a ping now and then until a write fails (the server closed it,
 * noted in `closedAfter`) or `until()` holds. See {@linkcode openStalled}.
 */
export async function probeStalled(
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

/**
 * Reads what the server left for a stalled client (for at most
 * {@linkcode STALL_FINAL_READ_MS}, or up to a close frame), then closes it;
 * resolves with the bytes read. See {@linkcode openStalled}.
 */
export async function finishStalled(client: StalledClient): Promise<number> {
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

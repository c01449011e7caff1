/**
 * A TCP proxy in the test's own process, between one node and its Redis,
 * that a test can close to that node alone ({@linkcode TcpProxy.hold}) and
 * open again ({@linkcode TcpProxy.release}): one node's connections to
 * Redis come back when the test says, while the others' are up. Used by
 * testing/cluster.ts (`proxied`).
 *
 * Every connection it accepted or opened is closed by
 * {@linkcode TcpProxy.close}, which waits for them, so tests using it pass
 * Deno's sanitizers.
 *
 * @module
 */

/** Bytes read at once from either side. */
const CHUNK_BYTES = 64 * 1024;

/** One connection through the proxy: the node's side and Redis's side. */
interface Pair {
  downstream: Deno.TcpConn;
  upstream: Deno.TcpConn | null;
  /** Resolves once both sides are closed. */
  done: Promise<void>;
}

/**
 * Forwards `127.0.0.1:port` to `127.0.0.1:target`, byte for byte, both
 * ways. When either side of a connection ends (Redis killed, the node
 * gone), both are closed, as a direct connection would be. While held,
 * every connection is closed as soon as it is accepted: to the node, Redis
 * is away.
 *
 * @example
 * ```ts ignore
 * import { TcpProxy } from "./tcp_proxy.ts";
 * const proxy = TcpProxy.start(6379);
 * // give the node `redis://127.0.0.1:${proxy.port}`
 * proxy.hold(); // its connections drop and stay down
 * proxy.release(); // it reconnects
 * await proxy.close();
 * ```
 */
export class TcpProxy {
  /** The port it listens on. */
  readonly port: number;
  #target: number;
  #listener: Deno.TcpListener;
  #pairs = new Set<Pair>();
  #held = false;
  #accepting: Promise<void>;

  private constructor(listener: Deno.TcpListener, target: number) {
    this.#listener = listener;
    this.#target = target;
    this.port = listener.addr.port;
    this.#accepting = this.#accept();
  }

  /** Listens on a free port of 127.0.0.1, forwarding to `target`. */
  static start(target: number): TcpProxy {
    return new TcpProxy(
      Deno.listen({ hostname: "127.0.0.1", port: 0 }),
      target,
    );
  }

  /** `redis://127.0.0.1:PORT`, for a node's `--redis`. */
  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  /**
   * Drops every connection through it and refuses new ones (accepted,
   * then closed at once) until {@linkcode TcpProxy.release}.
   */
  hold(): void {
    this.#held = true;
    for (const pair of this.#pairs) closePair(pair);
  }

  /** Forwards new connections again. */
  release(): void {
    this.#held = false;
  }

  /**
   * The local ports of its open connections to the target: what the
   * target sees them come from (Redis's `CLIENT LIST` says `addr=IP:PORT`).
   */
  upstreamPorts(): number[] {
    const ports: number[] = [];
    for (const pair of this.#pairs) {
      if (pair.upstream !== null) ports.push(pair.upstream.localAddr.port);
    }
    return ports;
  }

  /** Stops listening, closes every connection and waits for them. */
  async close(): Promise<void> {
    this.#held = true;
    try {
      this.#listener.close();
    } catch {
      // Closed already.
    }
    await this.#accepting;
    for (const pair of this.#pairs) closePair(pair);
    await Promise.allSettled([...this.#pairs].map((pair) => pair.done));
  }

  async #accept(): Promise<void> {
    while (true) {
      let downstream: Deno.TcpConn;
      try {
        downstream = await this.#listener.accept();
      } catch {
        return; // The listener was closed.
      }
      if (this.#held) {
        closeQuietly(downstream);
        continue;
      }
      const pair: Pair = {
        downstream,
        upstream: null,
        done: Promise.resolve(),
      };
      this.#pairs.add(pair);
      pair.done = this.#forward(pair).finally(() => this.#pairs.delete(pair));
    }
  }

  /** Connects to the target and copies both ways till either side ends. */
  async #forward(pair: Pair): Promise<void> {
    try {
      pair.upstream = await Deno.connect({
        hostname: "127.0.0.1",
        port: this.#target,
      });
    } catch {
      // Redis is down: so is this connection.
      closePair(pair);
      return;
    }
    // Held (or closed) while connecting: the pair's close missed it.
    if (this.#held) {
      closePair(pair);
      return;
    }
    await Promise.allSettled([
      copy(pair.downstream, pair.upstream, pair),
      copy(pair.upstream, pair.downstream, pair),
    ]);
  }
}

/** Copies `from` to `to` until `from` ends or either fails; then closes both. */
async function copy(
  from: Deno.TcpConn,
  to: Deno.TcpConn,
  pair: Pair,
): Promise<void> {
  const buffer = new Uint8Array(CHUNK_BYTES);
  try {
    while (true) {
      const read = await from.read(buffer);
      if (read === null) break;
      let written = 0;
      while (written < read) {
        written += await to.write(buffer.subarray(written, read));
      }
    }
  } catch {
    // A side was closed or reset: the pair ends.
  } finally {
    closePair(pair);
  }
}

/** Closes both sides of a pair; closing one twice is harmless. */
function closePair(pair: Pair): void {
  closeQuietly(pair.downstream);
  if (pair.upstream !== null) closeQuietly(pair.upstream);
}

function closeQuietly(conn: Deno.Conn): void {
  try {
    conn.close();
  } catch {
    // Closed already.
  }
}

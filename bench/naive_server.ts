/**
 * A naive but honest chat server speaking hubchat's wire protocol, for
 * comparison benchmarks: `Deno.serve` plus `Deno.upgradeWebSocket`, a `Set` of
 * sockets, and one `JSON.stringify` per broadcast followed by a plain loop of
 * `socket.send(json)`. No batching, no backpressure handling, no limits.
 *
 * Run it with:
 *
 * ```sh
 * deno run -A bench/naive_server.ts --port 0 --host 127.0.0.1
 * # listening on http://127.0.0.1:41234/
 * ```
 *
 * @module
 */

import { DEFAULT_HOST, DEFAULT_PORT } from "./listen_flags.ts";
import { serveFromCommandLine } from "./server_cli.ts";

/** Longest username in code points, as in hubchat's protocol. */
const MAX_USERNAME_CHARS = 32;

/** Longest chat text in code points after trimming, as in hubchat's protocol. */
const MAX_TEXT_CHARS = 2000;

/** Letters, decimal digits, space, `_`, `-`, `.`: hubchat's username rule. */
const USERNAME_PATTERN = /^[\p{L}\p{Nd} _.\-]+$/u;

/**
 * How long shutdown waits for sockets to finish closing before it stops
 * waiting: long enough for a loopback close handshake, short enough for a
 * benchmark script.
 */
const SHUTDOWN_WAIT_MS = 2000;

/** Options of {@linkcode startNaiveServer}. */
export interface NaiveServerOptions {
  /** TCP port; 0 picks a free one. Default 8080. */
  port?: number;
  /** Interface to listen on. Default "127.0.0.1". */
  hostname?: string;
}

/** A running naive server. */
export interface NaiveServer {
  /** Base URL, like `http://127.0.0.1:41234/`. */
  url: string;
  /** The port actually bound. */
  port: number;
  /** Closes every socket and stops listening. */
  shutdown(): Promise<void>;
}

function countChars(text: string): number {
  let count = 0;
  for (const _ of text) count++;
  return count;
}

function jsonResponse(status: number, body: unknown): Response {
  return new Response(JSON.stringify(body), {
    status,
    headers: { "content-type": "application/json" },
  });
}

function errorJson(code: string, text: string): string {
  return JSON.stringify({
    type: "error",
    code,
    text,
    timestamp: new Date().toISOString(),
  });
}

/**
 * Starts the naive server and resolves once it listens.
 *
 * @example
 * ```ts
 * import { startNaiveServer } from "./naive_server.ts";
 * const server = await startNaiveServer({ port: 0 });
 * console.log(server.url); // http://127.0.0.1:41234/
 * await server.shutdown();
 * ```
 */
export async function startNaiveServer(
  options: NaiveServerOptions = {},
): Promise<NaiveServer> {
  const sockets = new Set<WebSocket>();
  const names = new Map<WebSocket, string>();
  const taken = new Set<string>();
  const closed = new Set<Promise<void>>();

  function broadcast(message: unknown): void {
    const json = JSON.stringify(message);
    for (const s of sockets) {
      if (s.readyState === WebSocket.OPEN) s.send(json);
    }
  }

  function handleChat(socket: WebSocket, data: unknown): void {
    const username = names.get(socket);
    if (username === undefined) return;
    if (typeof data !== "string") {
      socket.send(
        errorJson("invalid_message", "binary frames are not accepted"),
      );
      return;
    }
    let parsed: unknown;
    try {
      parsed = JSON.parse(data);
    } catch {
      socket.send(errorJson("invalid_json", "frame is not valid JSON"));
      return;
    }
    if (typeof parsed !== "object" || parsed === null) {
      socket.send(errorJson("invalid_message", "message is not an object"));
      return;
    }
    const { type, text } = parsed as Record<string, unknown>;
    if (type !== "message") {
      socket.send(errorJson("unknown_type", 'expected type "message"'));
      return;
    }
    if (typeof text !== "string") {
      socket.send(errorJson("invalid_message", 'no string "text"'));
      return;
    }
    const trimmed = text.trim();
    if (trimmed.length === 0) {
      socket.send(errorJson("empty_text", "text is empty"));
      return;
    }
    if (
      trimmed.length > MAX_TEXT_CHARS && countChars(trimmed) > MAX_TEXT_CHARS
    ) {
      socket.send(errorJson("text_too_long", "text is too long"));
      return;
    }
    broadcast({
      type: "message",
      username,
      text: trimmed,
      timestamp: new Date().toISOString(),
    });
  }

  function handle(request: Request): Response {
    const url = new URL(request.url);
    if (url.pathname === "/healthz") {
      return jsonResponse(200, { status: "ok", clients: sockets.size });
    }
    if (url.pathname !== "/ws") {
      return jsonResponse(404, { error: "not found" });
    }
    const raw = url.searchParams.get("username") ?? "";
    const username = raw.normalize("NFC").trim();
    if (
      username.length === 0 || countChars(username) > MAX_USERNAME_CHARS ||
      !USERNAME_PATTERN.test(username)
    ) {
      return jsonResponse(400, {
        code: "invalid_username",
        text: "username must be 1-32 letters, digits, spaces, '_', '-', '.'",
      });
    }
    if (taken.has(username)) {
      return jsonResponse(409, {
        code: "username_taken",
        text: `username "${username}" is taken`,
      });
    }
    if (request.headers.get("upgrade")?.toLowerCase() !== "websocket") {
      return jsonResponse(426, { error: "expected a WebSocket upgrade" });
    }
    taken.add(username);
    const { socket, response } = Deno.upgradeWebSocket(request);
    const { promise, resolve } = Promise.withResolvers<void>();
    closed.add(promise);
    socket.onopen = () => {
      names.set(socket, username);
      socket.send(JSON.stringify({
        type: "welcome",
        username,
        users: [...names.values()],
        timestamp: new Date().toISOString(),
      }));
      sockets.add(socket);
      broadcast({
        type: "join",
        username,
        timestamp: new Date().toISOString(),
        online: sockets.size,
      });
    };
    socket.onmessage = (event) => handleChat(socket, event.data);
    socket.onclose = () => {
      const wasOpen = sockets.delete(socket);
      names.delete(socket);
      taken.delete(username);
      if (wasOpen) {
        broadcast({
          type: "leave",
          username,
          timestamp: new Date().toISOString(),
          online: sockets.size,
        });
      }
      closed.delete(promise);
      resolve();
    };
    socket.onerror = () => {};
    return response;
  }

  const listening = Promise.withResolvers<Deno.NetAddr>();
  const server = Deno.serve({
    port: options.port ?? DEFAULT_PORT,
    hostname: options.hostname ?? DEFAULT_HOST,
    onListen: (addr) => listening.resolve(addr),
  }, handle);
  const addr = await listening.promise;
  const host = addr.hostname.includes(":")
    ? `[${addr.hostname}]`
    : addr.hostname;

  async function shutdown(): Promise<void> {
    for (const s of sockets) {
      try {
        s.close(1001, "server shutting down");
      } catch {
        // Already closing.
      }
    }
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([
      Promise.all([...closed]),
      new Promise((resolve) => {
        timer = setTimeout(resolve, SHUTDOWN_WAIT_MS);
      }),
    ]);
    clearTimeout(timer);
    await server.shutdown();
  }

  return { url: `http://${host}:${addr.port}/`, port: addr.port, shutdown };
}

if (import.meta.main) {
  await serveFromCommandLine("naive_server", startNaiveServer);
}

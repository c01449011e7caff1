// deno-lint-ignore-file no-explicit-any
/**
 * The hubchat wire protocol served by Bun, for comparison benchmarks:
 * `Bun.serve` with `websocket` handlers, every socket subscribed to the topic
 * "chat", and broadcasts through `server.publish("chat", json)` (one
 * `JSON.stringify` per broadcast; Bun's native pub/sub does the fan-out).
 *
 * This file runs under Bun, not Deno: deno.json excludes it from type
 * checking. Install Bun from the npm registry and run:
 *
 * ```sh
 * npm install -g bun@1.4.5
 * bun bench/bun_server.ts --port 0 --host 127.0.0.1
 * # listening on http://127.0.0.1:41234/
 * ```
 *
 * @module
 */
import process from "node:process";
import { UsageError } from "../flags.ts";
import { listenUsage, readListenFlags } from "./listen_flags.ts";

/** Bun's global, declared loosely so Deno's linter and formatter accept it. */
const bun = (globalThis as any).Bun;

/** Longest username in code points, as in hubchat's protocol. */
const MAX_USERNAME_CHARS = 32;

/** Longest chat text in code points after trimming, as in hubchat's protocol. */
const MAX_TEXT_CHARS = 2000;

/** Letters, decimal digits, space, `_`, `-`, `.`: hubchat's username rule. */
const USERNAME_PATTERN = /^[\p{L}\p{Nd} _.\-]+$/u;

/** The one pub/sub topic every chat socket subscribes to. */
const TOPIC = "chat";

/** Per-socket data Bun carries from the upgrade to the handlers. */
interface SocketData {
  username: string;
  /** True once `open` accepted the name: only then does `close` announce. */
  joined: boolean;
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

/** Where to listen, read as every comparison server reads it. */
function listenFlags(): { port: number; hostname: string } {
  try {
    const flags = readListenFlags(process.argv.slice(2), process.env);
    if (flags !== null) return flags;
    console.log(listenUsage("bun bench/bun_server.ts"));
    process.exit(0);
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    console.error(`bun_server: ${error.message}`);
    process.exit(2);
  }
}

const { port, hostname } = listenFlags();

/** Usernames of open sockets, in join order. */
const names = new Set<string>();

const server = bun.serve({
  port,
  hostname,
  fetch(request: Request, srv: any): Response | undefined {
    const url = new URL(request.url);
    if (url.pathname === "/healthz") {
      return jsonResponse(200, { status: "ok", clients: names.size });
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
    if (names.has(username)) {
      return jsonResponse(409, {
        code: "username_taken",
        text: `username "${username}" is taken`,
      });
    }
    const data: SocketData = { username, joined: false };
    if (srv.upgrade(request, { data })) return undefined;
    return jsonResponse(426, { error: "expected a WebSocket upgrade" });
  },
  websocket: {
    open(ws: any): void {
      const data = ws.data as SocketData;
      const { username } = data;
      if (names.has(username)) {
        // Two upgrades raced for one name; the first to open keeps it.
        ws.close(1008, "username taken");
        return;
      }
      names.add(username);
      data.joined = true;
      ws.send(JSON.stringify({
        type: "welcome",
        username,
        users: [...names],
        timestamp: new Date().toISOString(),
      }));
      ws.subscribe(TOPIC);
      server.publish(
        TOPIC,
        JSON.stringify({
          type: "join",
          username,
          timestamp: new Date().toISOString(),
          online: names.size,
        }),
      );
    },
    message(ws: any, message: string | Uint8Array): void {
      const { username } = ws.data as SocketData;
      if (typeof message !== "string") {
        ws.send(errorJson("invalid_message", "binary frames are not accepted"));
        return;
      }
      let parsed: unknown;
      try {
        parsed = JSON.parse(message);
      } catch {
        ws.send(errorJson("invalid_json", "frame is not valid JSON"));
        return;
      }
      if (typeof parsed !== "object" || parsed === null) {
        ws.send(errorJson("invalid_message", "message is not an object"));
        return;
      }
      const { type, text } = parsed as Record<string, unknown>;
      if (type !== "message") {
        ws.send(errorJson("unknown_type", 'expected type "message"'));
        return;
      }
      if (typeof text !== "string") {
        ws.send(errorJson("invalid_message", 'no string "text"'));
        return;
      }
      const trimmed = text.trim();
      if (trimmed.length === 0) {
        ws.send(errorJson("empty_text", "text is empty"));
        return;
      }
      if (
        trimmed.length > MAX_TEXT_CHARS &&
        countChars(trimmed) > MAX_TEXT_CHARS
      ) {
        ws.send(errorJson("text_too_long", "text is too long"));
        return;
      }
      server.publish(
        TOPIC,
        JSON.stringify({
          type: "message",
          username,
          text: trimmed,
          timestamp: new Date().toISOString(),
        }),
      );
    },
    close(ws: any): void {
      const { username, joined } = ws.data as SocketData;
      if (!joined || !names.delete(username)) return;
      server.publish(
        TOPIC,
        JSON.stringify({
          type: "leave",
          username,
          timestamp: new Date().toISOString(),
          online: names.size,
        }),
      );
    },
  },
});

console.log(`listening on http://${hostname}:${server.port}/`);

function stop(): void {
  server.stop(true);
  process.exit(0);
}
process.on("SIGTERM", stop);
process.on("SIGINT", stop);

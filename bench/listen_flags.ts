/**
 * Where a comparison server listens, from `--port`/`PORT` and
 * `--host`/`HOST`, as hubchat reads them: one reading for every Deno server
 * in `bench/`, so they cannot drift apart.
 *
 * @module
 */

/** Default port when neither `--port` nor `PORT` is given: hubchat's. */
export const DEFAULT_PORT = 8080;

/** Default host: loopback, so a benchmark never listens on the network. */
export const DEFAULT_HOST = "127.0.0.1";

/** A port and an interface to listen on. */
export interface ListenFlags {
  /** TCP port, 0 to 65535 (0 picks a free one). */
  port: number;
  /** Interface to listen on. */
  hostname: string;
}

function flagValue(args: string[], name: string): string | undefined {
  for (let i = 0; i < args.length; i++) {
    if (args[i] === name) return args[i + 1];
    if (args[i].startsWith(name + "=")) return args[i].slice(name.length + 1);
  }
  return undefined;
}

/**
 * Reads `--port`/`PORT` and `--host`/`HOST`; flags win. Throws a
 * `RangeError` naming the bad value and what was expected.
 *
 * @example
 * ```ts
 * import { readListenFlags } from "./bench/listen_flags.ts";
 * readListenFlags(["--port", "0"]); // { port: 0, hostname: "127.0.0.1" }
 * ```
 */
export function readListenFlags(args: string[]): ListenFlags {
  const portText = flagValue(args, "--port") ?? Deno.env.get("PORT") ??
    String(DEFAULT_PORT);
  const port = Number(portText);
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    throw new RangeError(
      `bad port "${portText}"; expected an integer 0-65535`,
    );
  }
  const hostname = flagValue(args, "--host") ?? Deno.env.get("HOST") ??
    DEFAULT_HOST;
  return { port, hostname };
}

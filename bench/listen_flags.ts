/**
 * Where a comparison server listens, from `--port`/`PORT` and
 * `--host`/`HOST`, read by flags.ts as hubchat reads them: one reading for
 * every server in `bench/`, so they cannot drift apart. No Deno API here:
 * the Bun server reads its flags with it too.
 *
 * @module
 */

import { type EnvSource, type Flag, helpRows, readFlags } from "../flags.ts";

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

/** The comparison servers' flags: hubchat's `--port` and `--host`. */
export const LISTEN_FLAGS: readonly Flag[] = [
  {
    name: "port",
    kind: "whole",
    env: "PORT",
    min: 0,
    max: 65535,
    value: "N",
    default: DEFAULT_PORT,
    help: "port to listen on; 0 picks a free one",
  },
  {
    name: "host",
    kind: "text",
    env: "HOST",
    key: "hostname",
    value: "ADDR",
    default: DEFAULT_HOST,
    help: "address to listen on",
  },
];

/**
 * Reads `--port`/`PORT` and `--host`/`HOST` (flags win); null when `-h` or
 * `--help` asks for {@linkcode listenUsage} instead. Throws flags.ts's
 * `UsageError` naming the bad flag or variable and what was expected.
 *
 * @example
 * ```ts
 * import { readListenFlags } from "./listen_flags.ts";
 * readListenFlags(["--port", "0"]); // { port: 0, hostname: "127.0.0.1" }
 * readListenFlags([], { PORT: "9000" }); // { port: 9000, hostname: "127.0.0.1" }
 * ```
 */
export function readListenFlags(
  args: readonly string[],
  env: EnvSource = {},
): ListenFlags | null {
  const { help, values } = readFlags(LISTEN_FLAGS, args, { env });
  if (help) return null;
  return {
    port: (values.port as number | undefined) ?? DEFAULT_PORT,
    hostname: (values.hostname as string | undefined) ?? DEFAULT_HOST,
  };
}

/**
 * The usage text of a comparison server run as `command`.
 *
 * @example
 * ```ts
 * import { listenUsage } from "./listen_flags.ts";
 * console.log(listenUsage("bun bench/bun_server.ts"));
 * ```
 */
export function listenUsage(command: string): string {
  return [
    `Usage: ${command} [options]`,
    "",
    "Options (flags win over environment variables):",
    helpRows(LISTEN_FLAGS, { withHelp: true }),
  ].join("\n");
}

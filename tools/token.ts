/**
 * hubchat's token minter: prints an HS256 JWT for a user, signed with the
 * secret the server checks (see auth.ts). The secret is better passed
 * through the environment, where `ps` cannot see it:
 *
 * ```sh
 * HUBCHAT_AUTH_SECRET=... deno task token --sub alice --ttl 3600
 * ```
 *
 * @module
 */

import { parseArgs } from "node:util";
import {
  DEFAULT_TTL_SECONDS,
  importSecret,
  MIN_SECRET_BYTES,
  SECRET_ENV,
  signToken,
} from "../auth.ts";

/** Where the command line finds the secret when `--secret` is not given. */
export interface SecretSource {
  /** Reads an environment variable, like `Deno.env.get`. */
  get(name: string): string | undefined;
}

/** Thrown by {@linkcode mintFromCommandLine} for flags that make no sense. */
export class AuthUsageError extends Error {
  /** Creates the error with a message saying what was wrong. */
  constructor(message: string) {
    super(message);
    this.name = "AuthUsageError";
  }
}

/** The usage text of the command line. */
export const AUTH_USAGE = `Mint a hubchat token (HS256 JWT).

Usage: deno task token --sub NAME [--ttl SECONDS] [--secret S]

Options:
  --sub NAME      the user the token is for (required)
  --ttl SECONDS   lifetime in seconds (default ${DEFAULT_TTL_SECONDS})
  --secret S      shared secret, at least ${MIN_SECRET_BYTES} bytes
                  (default: env ${SECRET_ENV}; prefer it, ps shows flags)
  -h, --help      show this help`;

/**
 * The command line, minus printing: reads flags and environment and returns
 * the token to print (or the usage text for `--help`). Throws an
 * {@linkcode AuthUsageError} for missing or bad flags.
 *
 * @example
 * ```ts
 * import { mintFromCommandLine } from "./token.ts";
 * const token = await mintFromCommandLine(
 *   ["--sub", "alice", "--ttl", "60"],
 *   Deno.env,
 * );
 * ```
 */
export async function mintFromCommandLine(
  args: string[],
  env: SecretSource,
  nowSeconds: number = Math.floor(Date.now() / 1000),
): Promise<string> {
  let values;
  try {
    ({ values } = parseArgs({
      args,
      options: {
        secret: { type: "string" },
        sub: { type: "string" },
        ttl: { type: "string" },
        help: { type: "boolean", short: "h" },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (error) {
    throw new AuthUsageError((error as Error).message);
  }
  if (values.help) return AUTH_USAGE;
  const secret = values.secret ?? env.get(SECRET_ENV);
  if (secret === undefined || secret === "") {
    throw new AuthUsageError(
      `no secret; pass --secret or set ${SECRET_ENV} (at least ${MIN_SECRET_BYTES} bytes)`,
    );
  }
  if (values.sub === undefined || values.sub.trim() === "") {
    throw new AuthUsageError("no --sub; expected the user's name");
  }
  let ttl = DEFAULT_TTL_SECONDS;
  if (values.ttl !== undefined) {
    ttl = Number(values.ttl);
    if (!/^\d+$/.test(values.ttl.trim()) || ttl < 1) {
      throw new AuthUsageError(
        `--ttl is "${values.ttl}"; expected a whole number of seconds >= 1`,
      );
    }
  }
  let key: CryptoKey;
  try {
    key = await importSecret(secret);
  } catch (error) {
    throw new AuthUsageError((error as Error).message);
  }
  return await signToken(
    { sub: values.sub, iat: nowSeconds, exp: nowSeconds + ttl },
    key,
  );
}

if (import.meta.main) {
  try {
    console.log(await mintFromCommandLine(Deno.args, Deno.env));
  } catch (error) {
    if (!(error instanceof AuthUsageError)) throw error;
    console.error(`auth.ts: ${error.message}\n\n${AUTH_USAGE}`);
    Deno.exit(2);
  }
}

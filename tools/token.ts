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

import {
  DEFAULT_TTL_SECONDS,
  importSecret,
  MIN_SECRET_BYTES,
  SECRET_ENV,
  signToken,
} from "../auth.ts";
import {
  type EnvSource,
  type Flag,
  helpRows,
  readFlags,
  UsageError,
} from "../flags.ts";

/** The minter's flags, in the order `--help` lists them. */
const TOKEN_FLAGS: readonly Flag[] = [
  {
    name: "sub",
    kind: "text",
    value: "NAME",
    help: "the user the token is for (required)",
  },
  {
    name: "ttl",
    kind: "whole",
    min: 1,
    value: "SECONDS",
    default: DEFAULT_TTL_SECONDS,
    help: "lifetime in seconds",
  },
  {
    name: "secret",
    kind: "text",
    env: SECRET_ENV,
    value: "S",
    help: `shared secret, at least ${MIN_SECRET_BYTES} bytes; prefer the ` +
      "variable, ps shows flags",
  },
];

/** What `deno task token --help` prints. */
export const TOKEN_USAGE = `Mint a hubchat token (HS256 JWT).

Usage: deno task token --sub NAME [--ttl SECONDS] [--secret S]

Options:
${helpRows(TOKEN_FLAGS, { withHelp: true })}`;

/**
 * The command line, minus printing: reads flags and environment and returns
 * the token to print (or the usage text for `--help`). Throws a
 * {@linkcode UsageError} for missing or bad flags.
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
  env: EnvSource,
  nowSeconds: number = Math.floor(Date.now() / 1000),
): Promise<string> {
  const { help, values } = readFlags(TOKEN_FLAGS, args, { env });
  if (help) return TOKEN_USAGE;
  const secret = values.secret as string | undefined;
  if (secret === undefined) {
    throw new UsageError(
      `no secret; pass --secret or set ${SECRET_ENV} (at least ${MIN_SECRET_BYTES} bytes)`,
    );
  }
  const sub = values.sub as string | undefined;
  if (sub === undefined) {
    throw new UsageError("no --sub; expected the user's name");
  }
  const ttl = (values.ttl as number | undefined) ?? DEFAULT_TTL_SECONDS;
  let key: CryptoKey;
  try {
    key = await importSecret(secret);
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
  return await signToken(
    { sub, iat: nowSeconds, exp: nowSeconds + ttl },
    key,
  );
}

if (import.meta.main) {
  try {
    console.log(await mintFromCommandLine(Deno.args, Deno.env));
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    console.error(`token: ${error.message}\n\n${TOKEN_USAGE}`);
    Deno.exit(2);
  }
}

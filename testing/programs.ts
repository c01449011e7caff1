/**
 * Finding the programs the tests drive (a browser; the proxies nginx and
 * Caddy that deploy/ configures), the same way everywhere: an
 * environment variable names one outright, otherwise well-known paths and
 * names on `$PATH` are tried in order.
 *
 * @module
 */

import { REDIS_SERVER_ENV, REDIS_SERVER_HINT } from "../tools/redis_process.ts";

/** Where a program may be, and how to say it is missing. */
export interface ProgramSpec {
  /** What the program is, for messages ("Chromium"). */
  what: string;
  /** The variable that names the binary outright (`CHROMIUM_PATH`). */
  env: string;
  /** Absolute paths as they are, bare names looked up on `$PATH`, in order. */
  names: readonly string[];
  /** How to get it: the rest of the one-line message when it is missing. */
  hint: string;
}

/**
 * Chromium for the browser tests. Debian's package installs
 * `/usr/bin/chromium`; Ubuntu's is `chromium-browser`; Google's is
 * `google-chrome`.
 */
export const CHROMIUM: ProgramSpec = {
  what: "Chromium",
  env: "CHROMIUM_PATH",
  names: ["/usr/bin/chromium", "chromium", "chromium-browser", "google-chrome"],
  hint: "install it with `apt-get install -y chromium` (Debian/Ubuntu; " +
    "`deno task test` does this itself when run as root) or set " +
    "CHROMIUM_PATH to a Chrome or Chromium binary",
};

/**
 * nginx for deploy_test.ts, which runs deploy/nginx.conf in it. Debian's
 * package installs `/usr/sbin/nginx`, which is not on an ordinary user's
 * `$PATH`. Optional: without it those tests are ignored.
 */
export const NGINX: ProgramSpec = {
  what: "nginx",
  env: "NGINX_PATH",
  names: ["/usr/sbin/nginx", "nginx"],
  hint: "install it with `apt-get install -y nginx` (Debian/Ubuntu; " +
    "`.ci/run` does this) or set NGINX_PATH to an nginx binary",
};

/**
 * Caddy for deploy_test.ts, which runs deploy/Caddyfile in it. Debian's
 * package installs `/usr/bin/caddy`. Optional: without it those tests are
 * ignored.
 */
export const CADDY: ProgramSpec = {
  what: "Caddy",
  env: "CADDY_PATH",
  names: ["/usr/bin/caddy", "caddy"],
  hint: "install it with `apt-get install -y caddy` (Debian 12 and later; " +
    "`.ci/run` does this) or set CADDY_PATH to a Caddy 2 binary",
};

async function isFile(path: string): Promise<boolean> {
  try {
    return (await Deno.stat(path)).isFile;
  } catch {
    return false;
  }
}

/**
 * The path of the program: `$ENV` if set, else the first of its names that
 * exists, else null.
 *
 * @example
 * ```ts
 * import { CHROMIUM, lookUpProgram } from "./programs.ts";
 * console.log(await lookUpProgram(CHROMIUM)); // "/usr/bin/chromium" on Debian
 * ```
 */
export async function lookUpProgram(spec: ProgramSpec): Promise<string | null> {
  const fromEnv = Deno.env.get(spec.env);
  if (fromEnv) return await isFile(fromEnv) ? fromEnv : null;
  const dirs = (Deno.env.get("PATH") ?? "").split(":").filter((dir) => dir);
  for (const name of spec.names) {
    if (name.startsWith("/")) {
      if (await isFile(name)) return name;
      continue;
    }
    for (const dir of dirs) {
      if (await isFile(`${dir}/${name}`)) return `${dir}/${name}`;
    }
  }
  return null;
}

/**
 * One line saying the program is missing, where it was looked for, and how
 * to get it.
 *
 * @example
 * ```ts
 * import { CHROMIUM, missingProgram } from "./programs.ts";
 * console.log(missingProgram(CHROMIUM));
 * ```
 */
export function missingProgram(spec: ProgramSpec): string {
  const fromEnv = Deno.env.get(spec.env);
  const where = fromEnv
    ? `${spec.env} is ${fromEnv}, which is not a file`
    : `none of ${spec.names.join(", ")} is on this machine`;
  return `${spec.what} not found (${where}); ${spec.hint}`;
}

/**
 * The path of the program; throws {@linkcode missingProgram}'s line when
 * there is none: tests that need it fail, never skip.
 *
 * @example
 * ```ts
 * import { CHROMIUM, findProgram } from "./programs.ts";
 * const chromium = await findProgram(CHROMIUM);
 * ```
 */
export async function findProgram(spec: ProgramSpec): Promise<string> {
  const path = await lookUpProgram(spec);
  if (path === null) throw new Error(missingProgram(spec));
  return path;
}

/**
 * redis-server for the tests of several hubchat nodes sharing rooms
 * (testing/redis_server.ts starts one of its own). Debian's package
 * installs `/usr/bin/redis-server`; the variable and the hint are the ones
 * tools/redis_process.ts (the soak tool's `--redis-server`) reads and
 * prints, so both say the same thing.
 */
export const REDIS_SERVER: ProgramSpec = {
  what: "redis-server",
  env: REDIS_SERVER_ENV,
  names: ["/usr/bin/redis-server", "redis-server"],
  hint: REDIS_SERVER_HINT,
};

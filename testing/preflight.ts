/**
 * Runs before `deno test` in `deno task test`: makes sure the programs the
 * tests drive are here (Chromium, redis-server). A missing one is installed
 * from Debian's packages when that is possible (root, with apt-get), with
 * every service kept stopped: the tests start their own redis-server on a
 * free port, and Debian's would take port 6379 for nothing. Otherwise the
 * run stops before any test with one line saying how to get it.
 *
 * ```sh
 * deno run -A testing/preflight.ts
 * ```
 *
 * @module
 */

import {
  CHROMIUM,
  lookUpProgram,
  missingProgram,
  type ProgramSpec,
  REDIS_SERVER,
} from "./programs.ts";

/** A program the tests need, and the Debian package that provides it. */
interface Requirement {
  spec: ProgramSpec;
  debianPackage: string;
}

/** What the tests need, in the order it is checked. */
const REQUIREMENTS: readonly Requirement[] = [
  { spec: CHROMIUM, debianPackage: "chromium" },
  { spec: REDIS_SERVER, debianPackage: "redis-server" },
];

/** True when this process can install Debian packages itself. */
async function canInstall(): Promise<boolean> {
  if (Deno.uid() !== 0) return false;
  try {
    return (await Deno.stat("/usr/bin/apt-get")).isFile;
  } catch {
    return false;
  }
}

/**
 * Debian's hook that package scripts ask before they start a service;
 * exit status 101 means "not now".
 */
const POLICY_RC_D = "/usr/sbin/policy-rc.d";

/** A policy-rc.d that refuses every service start. */
const REFUSE_SERVICES =
  "#!/bin/sh\n# written by hubchat's preflight.ts during apt-get install\nexit 101\n";

/**
 * Installs Debian packages with their services kept stopped: a
 * policy-rc.d that says no is put in place for the install (unless one is
 * there already, which is left alone) and removed after.
 */
async function installQuietly(packages: string[]): Promise<boolean> {
  let placed = false;
  try {
    await Deno.writeTextFile(POLICY_RC_D, REFUSE_SERVICES, {
      createNew: true,
      mode: 0o755,
    });
    placed = true;
  } catch {
    // One is there already: its policy stands.
  }
  try {
    return await aptGet(["install", "-y", "-qq", ...packages]);
  } finally {
    if (placed) await Deno.remove(POLICY_RC_D);
  }
}

async function aptGet(args: string[]): Promise<boolean> {
  const { success } = await new Deno.Command("apt-get", {
    args,
    env: { DEBIAN_FRONTEND: "noninteractive" },
    stdout: "inherit",
    stderr: "inherit",
  }).output();
  return success;
}

async function main(): Promise<number> {
  const missing: Requirement[] = [];
  for (const requirement of REQUIREMENTS) {
    if (await lookUpProgram(requirement.spec) === null) {
      missing.push(requirement);
    }
  }
  if (missing.length === 0) return 0;
  // An explicit path that is wrong is the user's to fix, not apt's.
  const installable = missing.filter((r) => !Deno.env.get(r.spec.env));
  if (installable.length > 0 && await canInstall()) {
    const packages = installable.map((r) => r.debianPackage);
    console.error(`preflight: installing ${packages.join(", ")} from Debian`);
    if (
      await aptGet(["update", "-qq"]) &&
      await installQuietly(packages)
    ) {
      const still: Requirement[] = [];
      for (const r of missing) {
        if (await lookUpProgram(r.spec) === null) still.push(r);
      }
      missing.splice(0, missing.length, ...still);
    }
  }
  for (const requirement of missing) {
    console.error(`preflight: ${missingProgram(requirement.spec)}`);
  }
  return missing.length === 0 ? 0 : 1;
}

if (import.meta.main) Deno.exit(await main());

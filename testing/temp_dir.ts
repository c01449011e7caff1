/**
 * A test's own temporary folder, gone when the test is.
 *
 * @module
 */

/** How {@linkcode withTempDir} names its folder. */
export interface TempDirOptions {
  /** The start of the folder's name, so that a leftover says whose it is. */
  prefix?: string;
}

/**
 * Runs `body` with a fresh temporary folder and removes the folder, with
 * everything in it, whether `body` returned or threw.
 *
 * @example
 * ```ts
 * import { withTempDir } from "./temp_dir.ts";
 * await withTempDir(async (dir) => {
 *   await Deno.writeTextFile(`${dir}/note.txt`, "hello");
 * }, { prefix: "hubchat-example-" }); // the folder and note.txt are gone
 * ```
 */
export async function withTempDir<T>(
  body: (dir: string) => Promise<T>,
  options: TempDirOptions = {},
): Promise<T> {
  const dir = await Deno.makeTempDir({
    prefix: options.prefix ?? "hubchat-test-",
  });
  try {
    return await body(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

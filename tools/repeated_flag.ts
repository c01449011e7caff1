/**
 * Flags given more than once, like `--url A --url B` or `--server-pid 1
 * --server-pid 2`, and comma-separated lists (`--url A,B`): flags.ts reads
 * one value per flag (the last one given wins), so the tools take these
 * out of the command line first, each value checked by flags.ts's own
 * rules, and hand flags.ts the rest.
 *
 * @module
 */

import { type Flag, type FlagValue, readFlags } from "../flags.ts";

/** A repeated flag's values, and the command line without them. */
export interface RepeatedReading {
  /** Every value given, in order, each checked like a single one. */
  values: FlagValue[];
  /** The other arguments, in order, for flags.ts's `readFlags`. */
  rest: string[];
}

/**
 * Takes every `--NAME VALUE` and `--NAME=VALUE` of `flag` out of `args`,
 * splits each value on commas, and checks each piece as flags.ts would a
 * single value (throwing its UsageError: `--server-pid is "x", not a
 * number; ...`). A `--NAME` with no value after it, or a flag where its
 * value should be, stays in `rest` for readFlags to explain. Nothing
 * after `--` is looked at.
 *
 * @example
 * ```ts
 * import { readRepeated } from "./repeated_flag.ts";
 * const url = { name: "url", kind: "text", help: "endpoint" } as const;
 * readRepeated(url, ["--url", "ws://a/ws,ws://b/ws", "--clients", "5", "--url=ws://c/ws"]);
 * // { values: ["ws://a/ws", "ws://b/ws", "ws://c/ws"], rest: ["--clients", "5"] }
 * ```
 */
export function readRepeated(
  flag: Flag,
  args: readonly string[],
): RepeatedReading {
  const long = `--${flag.name}`;
  const raw: string[] = [];
  const rest: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const arg = args[i];
    if (arg === "--") {
      rest.push(...args.slice(i));
      break;
    }
    if (arg.startsWith(`${long}=`)) {
      raw.push(arg.slice(long.length + 1));
    } else if (
      arg === long && i + 1 < args.length && !args[i + 1].startsWith("--")
    ) {
      raw.push(args[++i]);
    } else {
      rest.push(arg);
    }
  }
  const values: FlagValue[] = [];
  for (const given of raw) {
    for (const piece of given.split(",")) {
      // readFlags checks the piece (its kind, its range, not empty).
      const reading = readFlags([flag], [`${long}=${piece.trim()}`]);
      values.push(reading.values[Object.keys(reading.values)[0]]);
    }
  }
  return { values, rest };
}

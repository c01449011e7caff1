/**
 * The one flag reader of hubchat's command lines: the server (main.ts), the
 * tools in tools/ and the comparison servers in bench/ all describe their
 * flags in a table of {@linkcode Flag}s, read them with
 * {@linkcode readFlags} (node:util's `parseArgs`, strict, no positionals)
 * and print their option rows with {@linkcode helpRows}; {@linkcode checkFlag}
 * checks numbers that come from code by the same rules. The flags of
 * every command are spelled, checked and explained the same way.
 *
 * Every error is a {@linkcode UsageError} of one line that names the flag
 * (or environment variable) and says what was expected, like
 * `--port is "x", not a number; expected a whole number from 0 to 65535`;
 * the commands print it and exit with status 2.
 *
 * No Deno API is used here (the environment is passed in), so a script run
 * by another runtime, like bench/bun_server.ts under Bun, reads its flags
 * with it too.
 *
 * @module
 */

import { parseArgs } from "node:util";

/**
 * What a flag holds: `text`; a `number` (a decimal like `0.5`); a `whole`
 * number (`0`, `42`); or a `switch`, which takes no value and is on when
 * given (its environment variable reads `1`/`true`/`yes`/`on` or
 * `0`/`false`/`no`/`off`).
 */
export type FlagKind = "text" | "number" | "whole" | "switch";

/** One flag of a command line, with what `--help` says about it. */
export interface Flag {
  /** The long flag without its dashes, like `"port"`. */
  name: string;
  /** What it holds; see {@linkcode FlagKind}. */
  kind: FlagKind;
  /** The environment variable read when the flag is not given. */
  env?: string;
  /**
   * The key of its value in {@linkcode FlagReading.values}; by default the
   * name in camelCase (`max-frame-bytes` gives `maxFrameBytes`).
   */
  key?: string;
  /** For numbers: the least value accepted. */
  min?: number;
  /** For numbers: the most value accepted. */
  max?: number;
  /**
   * For a `number`: what it counts, as messages say it (`"seconds"` gives
   * "expected seconds from 0.1 to 86400"); by default "a number".
   */
  unit?: string;
  /**
   * For `text`: the only values accepted. The help lists them as the
   * placeholder (`["text", "json"]` shows `text|json`).
   */
  choices?: readonly string[];
  /** The value's placeholder in the help, like `"N"` or `"URL"`. */
  value?: string;
  /** The default, as the help shows it. */
  default?: string | number;
  /** What the flag does, in one sentence for `--help`. */
  help: string;
}

/** A value read: text, a number, or true for a switch. */
export type FlagValue = string | number | boolean;

/** What a command line (and the environment) said. */
export interface FlagReading {
  /** `-h` or `--help` was given; then nothing else was read. */
  help: boolean;
  /** The values given, by key; flags and variables not given are absent. */
  values: Record<string, FlagValue>;
  /** Where each value came from, by key: `"--port"` or `"PORT"`. */
  sources: Record<string, string>;
}

/**
 * The environment: a record (`Deno.env.toObject()`, `process.env`) or
 * anything with a `get` (`Deno.env`, a `Map`).
 */
export type EnvSource =
  | Readonly<Record<string, string | undefined>>
  | { get(name: string): string | undefined };

/** Options of {@linkcode readFlags}. */
export interface ReadOptions {
  /** Where the flags' environment variables are read. Default: none. */
  env?: EnvSource;
}

/**
 * A command line (or environment variable) that makes no sense; its
 * message is one line saying what was wrong and what was expected.
 *
 * @example
 * ```ts
 * import { readFlags, UsageError } from "./flags.ts";
 * try {
 *   readFlags([], ["--bogus"]);
 * } catch (error) {
 *   console.log(error instanceof UsageError); // true
 * }
 * ```
 */
export class UsageError extends Error {
  /** Creates the error with a message saying what was wrong. */
  constructor(message: string) {
    super(message);
    this.name = "UsageError";
  }
}

/** What the end of every message about the command line's shape says. */
const SEE_HELP = "run with --help for the options";

/**
 * Where descriptions start in the help: after the longest flag and value
 * in the repository (`--max-connections-per-ip N`) and two spaces.
 */
const HELP_COLUMN = 30;

/** Help lines are wrapped to fit an 80-column terminal. */
const HELP_WIDTH = 80;

/** Decimal numbers as people type them: `8080`, `0.5`, `-1`. */
const DECIMAL = /^-?\d+(\.\d+)?$/;

/**
 * Reads `args` (and, for flags not given, their environment variables)
 * against the table `flags`. Flags win over the environment. Throws a
 * {@linkcode UsageError} naming the flag or variable for an unknown flag, a
 * missing value, a positional argument, text that is empty, or a number
 * that is no number or out of its range.
 *
 * A value that starts with a dash is read as the value (`--rate -5` is
 * `--rate=-5`, refused by its range), not as a flag.
 *
 * @example
 * ```ts
 * import { type Flag, readFlags } from "./flags.ts";
 * const flags: Flag[] = [
 *   { name: "port", kind: "whole", env: "PORT", min: 0, max: 65535, help: "port" },
 *   { name: "json-only", kind: "switch", help: "no progress lines" },
 * ];
 * readFlags(flags, ["--json-only"], { env: { PORT: "8080" } }).values;
 * // { port: 8080, jsonOnly: true }
 * ```
 */
export function readFlags(
  flags: readonly Flag[],
  args: readonly string[],
  options: ReadOptions = {},
): FlagReading {
  const spec: Record<string, { type: "string" | "boolean"; short?: string }> = {
    help: { type: "boolean", short: "h" },
  };
  for (const flag of flags) {
    spec[flag.name] = { type: flag.kind === "switch" ? "boolean" : "string" };
  }
  const joined = joinDashValues(args, spec);
  let given: Record<string, string | boolean | undefined>;
  try {
    given = parseArgs({
      args: joined,
      options: spec,
      strict: true,
      allowPositionals: false,
    }).values as Record<string, string | boolean | undefined>;
  } catch (error) {
    throw new UsageError(explain(joined, spec, error as Error));
  }
  const reading: FlagReading = {
    help: given.help === true,
    values: {},
    sources: {},
  };
  if (reading.help) return reading;
  for (const flag of flags) {
    const fromFlag = given[flag.name];
    const fromEnv = flag.env === undefined
      ? undefined
      : envValue(options.env, flag.env);
    const raw = fromFlag ?? fromEnv;
    if (raw === undefined) continue;
    const source = fromFlag !== undefined ? `--${flag.name}` : `${flag.env}`;
    const key = flag.key ?? camelCase(flag.name);
    reading.values[key] = readValue(flag, raw, source);
    reading.sources[key] = source;
  }
  return reading;
}

/**
 * Checks a number against a flag's kind and range (for options that come
 * from code rather than a command line, or for ranges known only later,
 * given as `bounds`) and returns it; throws a {@linkcode UsageError} like
 * `--senders is 3; expected a whole number from 1 to 2`.
 *
 * @example
 * ```ts
 * import { checkFlag, type Flag } from "./flags.ts";
 * const senders: Flag = { name: "senders", kind: "whole", min: 1, help: "senders" };
 * checkFlag(senders, 2, { max: 10 }); // 2
 * ```
 */
export function checkFlag(
  flag: Flag,
  value: number,
  bounds: Pick<Flag, "min" | "max"> = {},
): number {
  const rule = { ...flag, ...bounds };
  if (!fitsRule(value, rule)) {
    throw new UsageError(
      `--${flag.name} is ${value}; expected ${expected(rule)}`,
    );
  }
  return value;
}

/**
 * The option rows of a help text, one flag after another as in `flags`:
 * the flag and its value's placeholder, then what it does, its default and
 * its environment variable, wrapped to 80 columns. With `withHelp`, a last
 * row for `-h, --help`.
 *
 * @example
 * ```ts
 * import { helpRows } from "./flags.ts";
 * helpRows([{ name: "port", kind: "whole", value: "N", default: 8080, help: "port to listen on" }]);
 * // "  --port N                    port to listen on (default 8080)"
 * ```
 */
export function helpRows(
  flags: readonly Flag[],
  options: { withHelp?: boolean } = {},
): string {
  const rows = flags.map((flag) => {
    const notes = [
      flag.default === undefined ? "" : `default ${flag.default}`,
      flag.env === undefined ? "" : `env ${flag.env}`,
    ].filter((note) => note !== "");
    const placeholder = flag.value ?? flag.choices?.join("|");
    const left = `  --${flag.name}${
      placeholder === undefined ? "" : ` ${placeholder}`
    }`;
    return helpRow(
      left,
      flag.help,
      notes.length === 0 ? "" : `(${notes.join("; ")})`,
    );
  });
  if (options.withHelp === true) {
    rows.push(helpRow("  -h, --help", "show this help", ""));
  }
  return rows.join("\n");
}

/**
 * One row: `left`, then `text` wrapped in the description column, then
 * `notes` (kept whole) on the last line if it fits there, else on its own.
 */
function helpRow(left: string, text: string, notes: string): string {
  const room = HELP_WIDTH - HELP_COLUMN;
  const lines: string[] = [];
  let line = "";
  for (const word of text.split(/\s+/)) {
    if (line !== "" && line.length + 1 + word.length > room) {
      lines.push(line);
      line = word;
    } else {
      line = line === "" ? word : `${line} ${word}`;
    }
  }
  if (notes === "") lines.push(line);
  else if (line.length + 1 + notes.length <= room) {
    lines.push(`${line} ${notes}`);
  } else lines.push(line, notes);
  const indent = " ".repeat(HELP_COLUMN);
  const first = left.length + 2 <= HELP_COLUMN
    ? left.padEnd(HELP_COLUMN) + lines[0]
    : `${left}\n${indent}${lines[0]}`;
  return [first, ...lines.slice(1).map((rest) => indent + rest)].join("\n");
}

/**
 * `--flag -5` becomes `--flag=-5` for flags that take a value, so that a
 * negative number (or text starting with one dash) is read as the value and
 * checked as such; parseArgs would call it ambiguous. A next word with two
 * dashes, or `-h`, stays a flag: the value was forgotten.
 */
function joinDashValues(
  args: readonly string[],
  spec: Record<string, { type: "string" | "boolean" }>,
): string[] {
  const out: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const arg = args[i];
    if (arg === "--") {
      out.push(...args.slice(i));
      break;
    }
    const takesValue = arg.startsWith("--") && !arg.includes("=") &&
      spec[arg.slice(2)]?.type === "string";
    const next = args[i + 1];
    if (!takesValue || next === undefined) {
      out.push(arg);
    } else if (
      next.startsWith("-") && !next.startsWith("--") && next !== "-h"
    ) {
      out.push(`${arg}=${next}`);
      i++;
    } else {
      // The value (or the flag that stands where it was forgotten).
      out.push(arg, next);
      i++;
    }
  }
  return out;
}

/** parseArgs's complaint about `args`, said the way hubchat says it. */
function explain(
  args: string[],
  spec: Record<string, { type: "string" | "boolean" }>,
  error: Error,
): string {
  const { tokens } = parseArgs({
    args,
    options: spec,
    strict: false,
    allowPositionals: true,
    tokens: true,
  });
  for (const token of tokens) {
    if (token.kind === "positional") {
      return `unexpected argument "${token.value}"; expected only --flags (${SEE_HELP})`;
    }
    if (token.kind !== "option") continue;
    const type = Object.hasOwn(spec, token.name)
      ? spec[token.name].type
      : undefined;
    if (type === undefined) {
      return `unknown option "${token.rawName}"; ${SEE_HELP}`;
    }
    if (
      type === "string" &&
      (token.value === undefined ||
        (!token.inlineValue && token.value.startsWith("-")))
    ) {
      return `${token.rawName} needs a value; ${SEE_HELP}`;
    }
    if (type === "boolean" && token.value !== undefined) {
      return `${token.rawName} takes no value; ${SEE_HELP}`;
    }
  }
  return `${error.message.split("\n")[0]}; ${SEE_HELP}`;
}

function envValue(
  env: EnvSource | undefined,
  name: string,
): string | undefined {
  if (env === undefined) return undefined;
  if (typeof env.get === "function") {
    return (env as { get(name: string): string | undefined }).get(name);
  }
  return (env as Readonly<Record<string, string | undefined>>)[name];
}

function camelCase(name: string): string {
  return name.replace(/-([a-z])/g, (_, letter: string) => letter.toUpperCase());
}

/** Turns what was given into the flag's value; throws a UsageError. */
function readValue(
  flag: Flag,
  raw: string | boolean,
  source: string,
): FlagValue {
  if (flag.kind === "switch") {
    if (typeof raw === "boolean") return raw;
    const word = raw.trim().toLowerCase();
    if (["1", "true", "yes", "on"].includes(word)) return true;
    if (["0", "false", "no", "off", ""].includes(word)) return false;
    throw new UsageError(`${source} is "${raw}"; expected true or false`);
  }
  const text = String(raw).trim();
  if (flag.kind === "text") {
    if (text === "") {
      throw new UsageError(
        `${source} is empty; expected ${flag.value ?? "a value"}`,
      );
    }
    if (flag.choices !== undefined && !flag.choices.includes(text)) {
      throw new UsageError(
        `${source} is "${raw}"; expected ${oneOf(flag.choices)}`,
      );
    }
    return text;
  }
  if (!DECIMAL.test(text)) {
    throw new UsageError(
      `${source} is "${raw}", not a number; expected ${expected(flag)}`,
    );
  }
  const value = Number(text);
  if (!fitsRule(value, flag)) {
    throw new UsageError(`${source} is "${raw}"; expected ${expected(flag)}`);
  }
  return value;
}

/** The choices as messages say them: "text or json", "a, b or c". */
function oneOf(choices: readonly string[]): string {
  if (choices.length < 2) return choices.join("");
  return `${choices.slice(0, -1).join(", ")} or ${choices.at(-1)}`;
}

function fitsRule(value: number, rule: Flag): boolean {
  return Number.isFinite(value) &&
    (rule.kind !== "whole" || Number.isInteger(value)) &&
    (rule.min === undefined || value >= rule.min) &&
    (rule.max === undefined || value <= rule.max);
}

/** What a number must be, as messages say it: "a whole number from 0 to 9". */
function expected(rule: Flag): string {
  const { min, max } = rule;
  if (
    rule.kind !== "whole" && rule.unit === undefined && min === 0 &&
    max === undefined
  ) {
    return "a non-negative number";
  }
  const what = rule.kind === "whole"
    ? "a whole number"
    : rule.unit ?? "a number";
  if (min !== undefined && max !== undefined) {
    return `${what} from ${min} to ${max}`;
  }
  if (min !== undefined) return `${what} of at least ${min}`;
  if (max !== undefined) return `${what} of at most ${max}`;
  return what;
}

/**
 * Structured logs: one line per event, as text for people or JSON for
 * machines. Callers pass fields, never chat text (privacy by default).
 *
 * @module
 */

/** How log lines are written. */
export type LogFormat = "text" | "json";

/** How much matters. */
export type LogLevel = "info" | "warn" | "error";

/** Field values a log line may carry. */
export type LogFields = Record<string, string | number | boolean | undefined>;

/** Writes one event per line. */
export interface Logger {
  /** Logs an event with its fields at a level. */
  log(level: LogLevel, event: string, fields?: LogFields): void;
}

/** Options for {@linkcode createLogger}. */
export interface LoggerOptions {
  /** "text" (default) or "json". */
  format?: LogFormat;
  /** Where lines go; defaults to standard error. */
  write?: (line: string) => void;
}

/** A logger that drops everything: the default for embedded servers. */
export const silentLogger: Logger = {
  log(): void {},
};

/** Quotes a text value when it holds spaces, quotes or `=`. */
function textValue(value: string | number | boolean): string {
  const text = String(value);
  return /^[^\s"=]+$/.test(text) ? text : JSON.stringify(text);
}

/** One event, as {@linkcode formatLine} writes it. */
export interface LogEntry {
  /** When it happened. */
  time: Date;
  /** How much it matters. */
  level: LogLevel;
  /** What happened, one word: `connect`, `evict`, … */
  event: string;
  /** What else there is to say about it. */
  fields: LogFields;
}

/**
 * Formats one log line.
 *
 * @example
 * ```ts
 * import { formatLine } from "./log.ts";
 * const time = new Date(0);
 * formatLine({ time, level: "info", event: "connect", fields: { user: "ann" } });
 * // '1970-01-01T00:00:00.000Z info connect user=ann'
 * ```
 */
export function formatLine(
  entry: LogEntry,
  format: LogFormat = "text",
): string {
  const { level, event, fields } = entry;
  const time = entry.time.toISOString();
  if (format === "json") {
    return JSON.stringify({ time, level, event, ...fields });
  }
  let line = `${time} ${level} ${event}`;
  for (const [key, value] of Object.entries(fields)) {
    if (value !== undefined) line += ` ${key}=${textValue(value)}`;
  }
  return line;
}

/**
 * Creates a logger writing one line per event.
 *
 * @example
 * ```ts
 * import { createLogger } from "./log.ts";
 * const logger = createLogger({ format: "json" });
 * logger.log("info", "connect", { user: "ann", ip: "127.0.0.1" });
 * ```
 */
export function createLogger(options: LoggerOptions = {}): Logger {
  const format = options.format ?? "text";
  const write = options.write ?? console.error;
  return {
    log(level: LogLevel, event: string, fields: LogFields = {}): void {
      write(formatLine({ time: new Date(), level, event, fields }, format));
    },
  };
}

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

/**
 * Formats one log line.
 *
 * @example
 * ```ts
 * import { formatLine } from "./log.ts";
 * formatLine("text", "info", "connect", { user: "ann" }, new Date(0));
 * // '1970-01-01T00:00:00.000Z info connect user=ann'
 * ```
 */
export function formatLine(
  format: LogFormat,
  level: LogLevel,
  event: string,
  fields: LogFields,
  now: Date,
): string {
  const time = now.toISOString();
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
      write(formatLine(format, level, event, fields, new Date()));
    },
  };
}

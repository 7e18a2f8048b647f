/**
 * The Logger port on pino: one JSON object per line on stdout, for whatever ships the
 * container's output. Secrets are masked here, once, rather than trusted to every caller.
 */
import pino from "pino";
import type { LogFields, Logger } from "../../shared/ports";

export interface LoggerOptions {
  /** pino level name (trace, debug, info, warn, error, fatal, silent); "info" by default. */
  level?: string;
  /** Where the lines go; stdout by default. Tests pass a stream to read them back. */
  destination?: pino.DestinationStream;
}

/**
 * Field names masked at the top level and one level down (e.g. `headers.authorization`).
 * Bare `key` stays visible on purpose: at the top level it is a Redis key or job key, which is
 * what one greps logs for; nested under a credential object (`*.key`) it is a secret.
 */
export const REDACT_PATHS = [
  "authorization",
  "*.authorization",
  "password",
  "*.password",
  "apiKey",
  "*.apiKey",
  "api_key",
  "*.api_key",
  "token",
  "*.token",
  "secret",
  "*.secret",
  "*.key",
  "databaseUrl",
  "*.databaseUrl",
  "redisUrl",
  "*.redisUrl",
];

export function createLogger(opts: LoggerOptions = {}): Logger {
  const options: pino.LoggerOptions = {
    level: opts.level ?? "info",
    redact: { paths: REDACT_PATHS, censor: "[redacted]" },
    // Level names read better than pino's numbers in log search, and every shipper maps them.
    formatters: { level: (label) => ({ level: label }) },
    timestamp: pino.stdTimeFunctions.isoTime,
    // Callers write both `err` and `error`; an Error through JSON.stringify would be `{}`.
    serializers: { err: pino.stdSerializers.err, error: pino.stdSerializers.err },
  };
  return wrap(opts.destination ? pino(options, opts.destination) : pino(options));
}

function wrap(log: pino.Logger): Logger {
  // pino takes (mergeObject, message); the port takes (message, fields).
  const at =
    (level: "debug" | "info" | "warn" | "error") =>
    (msg: string, fields?: LogFields): void => {
      if (fields) log[level](fields, msg);
      else log[level](msg);
    };
  return {
    debug: at("debug"),
    info: at("info"),
    warn: at("warn"),
    error: at("error"),
    child: (fields) => wrap(log.child(fields)),
  };
}

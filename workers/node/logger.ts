/**
 * The Logger port on pino: one JSON object per line on stdout, for whatever ships the
 * container's output. Secrets are masked here, once, rather than trusted to every caller: the
 * message, every field and every child binding pass through shared/redact.ts (by field name at
 * any depth, and by value: URL credentials, presigned query strings, bearer tokens, our key
 * formats), the same rules as the edge logger and every view.
 */
import pino from "pino";
import type { LogFields, Logger } from "../../shared/ports";
import { redact, redactText } from "../../shared/redact";

export interface LoggerOptions {
  /** pino level name (trace, debug, info, warn, error, fatal, silent); "info" by default. */
  level?: string;
  /** Where the lines go; stdout by default. Tests pass a stream to read them back. */
  destination?: pino.DestinationStream;
}

export function createLogger(opts: LoggerOptions = {}): Logger {
  const options: pino.LoggerOptions = {
    level: opts.level ?? "info",
    // Level names read better than pino's numbers in log search, and every shipper maps them.
    formatters: { level: (label) => ({ level: label }) },
    timestamp: pino.stdTimeFunctions.isoTime,
    // redact() has already turned every Error (under `err`, `error` or any name) into
    // { type, message, stack, cause } with the message and stack redacted; pino's default `err`
    // serializer would rename that plain object's type to "Object".
    serializers: { err: (value: unknown) => value },
  };
  return wrap(opts.destination ? pino(options, opts.destination) : pino(options));
}

function wrap(log: pino.Logger): Logger {
  // pino takes (mergeObject, message); the port takes (message, fields).
  const at =
    (level: "debug" | "info" | "warn" | "error") =>
    (msg: string, fields?: LogFields): void => {
      // Redaction walks every field: skip it for lines the level drops (debug in production).
      if (!log.isLevelEnabled(level)) return;
      if (fields) log[level](redact(fields) as LogFields, redactText(msg));
      else log[level](redactText(msg));
    };
  return {
    debug: at("debug"),
    info: at("info"),
    warn: at("warn"),
    error: at("error"),
    child: (fields) => wrap(log.child(redact(fields) as LogFields)),
  };
}

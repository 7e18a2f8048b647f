import type { LogFields, Logger } from "../../shared/ports";
import { redact, redactText } from "../../shared/redact";

/**
 * JSON lines on the Workers console (Workers Logs / `wrangler tail` index them). The message,
 * the fields and the child bindings pass through shared/redact.ts, the same rules as the Node
 * logger: secret field names at any depth, and secrets by value (URL credentials, presigned
 * query strings, bearer tokens, `pmk_`/`whsec_` values).
 */
export function createConsoleLogger(base: LogFields = {}, level: "debug" | "info" = "info"): Logger {
  const write = (lvl: string, msg: string, fields?: LogFields) => {
    const safe = redact({ ...base, ...fields }) as LogFields;
    const line = JSON.stringify({ level: lvl, time: new Date().toISOString(), msg: redactText(msg), ...safe });
    if (lvl === "error") console.error(line);
    else if (lvl === "warn") console.warn(line);
    else console.log(line);
  };
  return {
    debug: (msg, f) => level === "debug" && write("debug", msg, f),
    info: (msg, f) => write("info", msg, f),
    warn: (msg, f) => write("warn", msg, f),
    error: (msg, f) => write("error", msg, f),
    child: (fields) => createConsoleLogger({ ...base, ...fields }, level),
  };
}

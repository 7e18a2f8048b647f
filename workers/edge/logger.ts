import type { LogFields, Logger } from "../../shared/ports";

const SECRET_KEY = /pass(word)?|secret|token|authorization|api[_-]?key|pepper|database_?url/i;

/** Drops values of secret-looking fields at any depth; Workers' logs are plain console lines. */
function redact(value: unknown, depth = 0): unknown {
  if (depth > 4 || value === null || typeof value !== "object") return value;
  if (Array.isArray(value)) return value.map((v) => redact(v, depth + 1));
  return Object.fromEntries(
    Object.entries(value).map(([k, v]) => [k, SECRET_KEY.test(k) ? "[redacted]" : redact(v, depth + 1)]),
  );
}

/** JSON lines on the Workers console (Workers Logs / `wrangler tail` index them). */
export function createConsoleLogger(base: LogFields = {}, level: "debug" | "info" = "info"): Logger {
  const write = (lvl: string, msg: string, fields?: LogFields) => {
    const line = JSON.stringify({ level: lvl, time: new Date().toISOString(), msg, ...(redact({ ...base, ...fields }) as object) });
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

/**
 * Postgres errors by SQLSTATE. node-postgres, the Neon driver and PGlite all put the five-character
 * code on the error as `code`; a wrapped error (a transaction helper's) carries it in `cause`.
 */
export function sqlState(err: unknown): string | undefined {
  for (let e = err, depth = 0; e && typeof e === "object" && depth < 5; e = (e as { cause?: unknown }).cause, depth++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === "string" && /^[0-9A-Z]{5}$/.test(code)) return code;
  }
  return undefined;
}

/** 23503: a row names a row that does not exist, or (composite keys) one of another tenant. */
export const isForeignKeyViolation = (err: unknown): boolean => sqlState(err) === "23503";

/**
 * SQLSTATEs of a database that cannot be reached or is going away: class 08 (connection
 * exception), 57P01 admin shutdown (`pg_ctl stop -m fast`, `pg_terminate_backend`), 57P02 crash
 * of another backend, 57P03 cannot connect now (starting up or shutting down).
 */
const OUTAGE_STATE = /^(08[0-9A-Z]{3}|57P0[123])$/;
/** What node-postgres and the Neon driver say, without a SQLSTATE, when the connection went. */
const OUTAGE_TEXT = /connection terminated|not queryable|timeout exceeded when trying to connect|server closed the connection unexpectedly|connection is closed/i;
/** Socket errors: from a database adapter they can only mean the server, not the query. */
const OUTAGE_CODES = new Set(["ECONNREFUSED", "ECONNRESET", "EPIPE", "ETIMEDOUT", "EHOSTUNREACH", "ENETUNREACH", "EAI_AGAIN"]);

const OUTAGE = Symbol.for("penguinmails.databaseOutage");

/**
 * Marks an error a database adapter caught as an outage when it is one (the server restarting,
 * a backend terminated, the network gone) and answers it. Only adapters call this: there a
 * socket error can only be the database's. The engine hands such a run back to its place in the
 * lane without counting the attempt (the job did nothing wrong); see failureOutcome.
 */
export function markOutage<E>(err: E): E {
  if (err === null || typeof err !== "object") return err;
  const e = err as { code?: unknown; message?: unknown };
  const state = sqlState(err);
  const outage =
    (state !== undefined && OUTAGE_STATE.test(state)) ||
    (typeof e.code === "string" && OUTAGE_CODES.has(e.code)) ||
    (state === undefined && typeof e.message === "string" && OUTAGE_TEXT.test(e.message));
  if (outage && Object.isExtensible(err)) Object.defineProperty(err, OUTAGE, { value: true });
  return err;
}

/** Whether an error (or one in its cause chain) is a database outage an adapter marked. */
export function isDatabaseOutage(err: unknown): boolean {
  for (let e = err, depth = 0; e && typeof e === "object" && depth < 8; e = (e as { cause?: unknown }).cause, depth++) {
    if ((e as Record<symbol, unknown>)[OUTAGE] === true) return true;
  }
  return false;
}

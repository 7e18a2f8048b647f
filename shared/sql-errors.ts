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

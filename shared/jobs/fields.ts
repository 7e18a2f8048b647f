import { z } from "zod";

/** Shared payload fields. tenant_id is filled from the API key when the caller omits it. */
export const tenantId = z
  .string()
  .min(1)
  .max(64)
  .regex(/^[A-Za-z0-9_.:-]+$/, "letters, digits, and _ . : - only")
  // A tenant's files live under "<tenant id>/" in storage: "." and ".." would name other folders.
  .refine((id) => id !== "." && id !== "..", "may not be . or ..");

/**
 * The id of a tenant-owned row (lst_…, tpl_…, camp_…, whe_…, evt_…): every id we mint is
 * letters, digits and _ . : -, so anything else (an empty string, NUL, spaces) names nothing.
 */
export const entityId = z
  .string()
  .min(1)
  .max(128)
  .regex(/^[A-Za-z0-9_.:-]+$/, "letters, digits, and _ . : - only");

/** The largest Postgres bigint, 2^63 - 1: numeric ids and cursors beyond it are out of range (22003). */
export const MAX_BIGINT = 9223372036854775807n;

/** Whether a string is a bigint id as Postgres stores them: decimal digits, 0 to 2^63 - 1. */
export const isBigintId = (s: string): boolean => /^\d{1,19}$/.test(s) && BigInt(s) <= MAX_BIGINT;

/** A numeric id (jobs, imports, exports, deliveries, contacts) as the API takes it: a decimal string fitting bigint. */
export const bigintId = z.string().refine(isBigintId, "expected a numeric id from 0 to 2^63-1");

/**
 * An ISO 8601 time with an offset that Postgres' timestamptz can hold and JavaScript can
 * compute with: years 1 to 9999 in UTC (year 0000 overflowed the column: 22008, a 500).
 */
export const timestamp = z.iso.datetime({ offset: true }).refine((s) => {
  const year = new Date(s).getUTCFullYear();
  return year >= 1 && year <= 9999;
}, "expected a time between the years 0001 and 9999");

export const email = z.string().max(320).pipe(z.email());

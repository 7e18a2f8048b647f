import { z } from "zod";

/** Shared payload fields. tenant_id is filled from the API key when the caller omits it. */
export const tenantId = z
  .string()
  .min(1)
  .max(64)
  .regex(/^[A-Za-z0-9_.:-]+$/, "letters, digits, and _ . : - only")
  // A tenant's files live under "<tenant id>/" in storage: "." and ".." would name other folders.
  .refine((id) => id !== "." && id !== "..", "may not be . or ..");

export const entityId = z.string().min(1).max(128);

export const email = z.string().max(320).pipe(z.email());

import { z } from "zod";
import { defineJobType } from "./definition";

/** The tenant that owns system jobs (cron and admin-enqueued maintenance). */
export const SYSTEM_TENANT = "_system";

export const maintenanceCleanup = defineJobType({
  type: "maintenance.cleanup",
  description: "Deletes completed and failed jobs past their retention windows, in bounded batches.",
  payload: z.strictObject({
    tenant_id: z.literal(SYSTEM_TENANT).default(SYSTEM_TENANT),
    /** Overrides the configured retention for this run. */
    completed_retention_hours: z.number().positive().max(24 * 365).optional(),
    failed_retention_hours: z.number().positive().max(24 * 365).optional(),
    batch_size: z.number().int().min(1).max(50_000).optional(),
  }),
  pool: "default",
  priority: () => "low",
  maxAttempts: 3,
  backoff: { baseMs: 60_000, maxMs: 60 * 60_000 },
  timeoutMs: 15 * 60_000,
  adminOnly: true,
  cron: { schedule: "17 3 * * *", payload: {} },
});

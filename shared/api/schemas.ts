/**
 * The zod schemas of the HTTP API beyond the enqueue envelope (which the queue owns). Routes
 * validate with them and declare them (openapi-route.ts), so the document cannot drift; an
 * answer's `.meta({ id })` names its component in the document.
 */
import { z } from "zod";
import { POOLS } from "../jobs/definition";
import { tenantId } from "../jobs/fields";
import { JOB_STATES } from "../queue/job";
import { MAX_BATCH } from "../queue/queue";
import { jobViewSchema } from "./job-view";
import { MAX_WAIT_SECONDS } from "./job-wait";

export const DEFAULT_LIST_LIMIT = 50;
export const MAX_LIST_LIMIT = 500;

/**
 * The batch envelope. Items are checked one by one afterwards (every bad item reported with
 * its index), so here they are only counted.
 */
/** The body of pause and resume: none (the whole type) or one tenant's jobs of it. */
export const laneRequestSchema = z.strictObject({
  tenant_id: tenantId.optional().describe("Only this tenant's jobs of the type"),
});

export const batchRequestSchema = z.strictObject({
  jobs: z.array(z.unknown()).min(1).max(MAX_BATCH, `a batch holds at most ${MAX_BATCH} jobs; split it`),
});

export const jobStateSchema = z.enum(JOB_STATES as [string, ...string[]]);

/**
 * The query every /v1 route takes: admin keys name the tenant they act for (?tenant_id=; routes
 * scoped by id alone ignore it, as clients append it to every call). Routes extend it with their
 * own fields; all are strict, so a misspelt parameter is a 422 naming it, never ignored.
 */
export const tenantQuerySchema = z.strictObject({
  tenant_id: tenantId.optional().describe("Admin keys: the tenant to act for"),
});

/** GET /v1/jobs/:id: ?wait=<seconds> answers when the job is finished, or after that long with its state then. */
export const jobGetQuerySchema = tenantQuerySchema.extend({
  wait: z.coerce
    .number()
    .int()
    .min(0)
    .max(MAX_WAIT_SECONDS)
    .optional()
    .describe(`Seconds to wait for the job to finish (completed, failed or cancelled), at most ${MAX_WAIT_SECONDS}; the answer comes as soon as it is, or when the time is up with the job as it is then`),
});

export const listQuerySchema = z.strictObject({
  type: z.string().min(1).max(128).optional().describe("Only jobs of this type"),
  state: jobStateSchema.optional().describe("Only jobs in this state"),
  tenant_id: tenantId.optional().describe("Admin keys: only this tenant's jobs"),
  limit: z.coerce.number().int().min(1).max(MAX_LIST_LIMIT).default(DEFAULT_LIST_LIMIT),
  cursor: z.string().min(1).max(200).optional().describe("next_cursor of the previous page"),
});

export const jobListSchema = z.object({
  jobs: z.array(jobViewSchema).describe("Newest first"),
  next_cursor: z.string().nullable().describe("Pass as `cursor` for the next page; null on the last page"),
}).meta({ id: "JobList" });

export const batchResponseSchema = z.object({
  jobs: z.array(jobViewSchema).describe("In request order"),
  created: z.number().int(),
  existing: z.number().int().describe("Jobs whose idempotency key matched an existing job"),
}).meta({ id: "BatchResult" });

export const queueStatsSchema = z.object({
  type: z.string(),
  pool: z.string().describe(`The pool that runs the type: ${POOLS.join(", ")} for the built-in types, any name for types added through the library`),
  paused: z.boolean().describe("Paused for every tenant (a tenant key: or for its own tenant)"),
  paused_tenants: z.array(z.string()).optional().describe("Admin keys only: the tenants whose jobs of this type are paused"),
  waiting: z.number().int().describe("Jobs in the queued state"),
  paused_jobs: z.number().int().describe("Jobs waiting in a paused lane"),
  scheduled: z.number().int(),
  active: z.number().int(),
  failed: z.number().int().describe("Dead letter: failed jobs kept for inspection and retry"),
  completed_last_hour: z.number().int(),
  failed_last_hour: z.number().int(),
}).meta({ id: "QueueStats" });

export const queueListSchema = z.object({ queues: z.array(queueStatsSchema) }).meta({ id: "QueueList" });

export const retryFailedResultSchema = z.object({ type: z.string(), retried: z.number().int() }).meta({ id: "RetryFailedResult" });

/** The answer of pause and resume. */
export const laneResultSchema = z.object({
  type: z.string(),
  tenant_id: z.string().nullable().describe("The tenant whose jobs were paused or resumed; null: every tenant"),
  paused: z.boolean(),
  jobs: z.number().int().describe("Jobs moved between waiting and paused"),
});

export const healthSchema = z.object({ status: z.literal("ok"), version: z.string() }).meta({ id: "Health" });

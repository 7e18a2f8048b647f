/**
 * How a Job is shown over HTTP: snake_case, ISO times, secrets in the payload redacted, and
 * error stacks (which can name internals) only for admin keys.
 */
import { z } from "zod";
import type { JobType } from "../jobs/definition";
import { JOB_STATES, type Job } from "../queue/job";

export const REDACTED = "[redacted]";

/** Field names that look like credentials wherever they appear in a payload. */
const SECRET_NAME = /secret|password|token|api[_-]?key/i;

const isoTime = z.iso.datetime({ offset: true });

export const jobErrorViewSchema = z.object({
  message: z.string(),
  name: z.string().optional(),
  attempt: z.number().int().optional(),
  at: z.string().optional(),
  retryable: z.boolean().optional(),
  stack: z.string().optional().describe("Admin keys only"),
});

export const jobViewSchema = z.object({
  id: z.string().describe("Decimal job id"),
  tenant_id: z.string(),
  type: z.string(),
  priority: z.enum(["high", "normal", "low"]),
  state: z.enum(JOB_STATES as [string, ...string[]]),
  attempt: z.number().int().describe("Runs started so far"),
  max_attempts: z.number().int(),
  payload: z.unknown().describe(`The payload; credential-like fields read "${REDACTED}"`),
  progress: z.unknown(),
  result: z.unknown(),
  last_error: jobErrorViewSchema.nullable(),
  run_at: isoTime,
  created_at: isoTime,
  started_at: isoTime.nullable(),
  finished_at: isoTime.nullable(),
  idempotency_key: z.string().nullable(),
  parent_id: z.string().nullable(),
  cancel_requested: z.boolean(),
});

export type JobView = z.infer<typeof jobViewSchema>;
export type JobErrorView = z.infer<typeof jobErrorViewSchema>;

/** Replaces secret fields at any depth; the input is left untouched. */
export function redactPayload(value: unknown, secretFields: ReadonlySet<string>): unknown {
  if (Array.isArray(value)) return value.map((v) => redactPayload(v, secretFields));
  if (value === null || typeof value !== "object") return value;
  const out: Record<string, unknown> = {};
  for (const [key, v] of Object.entries(value)) {
    out[key] = secretFields.has(key) || SECRET_NAME.test(key) ? REDACTED : redactPayload(v, secretFields);
  }
  return out;
}

const iso = (d: Date | null): string | null => (d === null ? null : d.toISOString());

export function toJobView(job: Job, options: { def?: JobType; admin: boolean }): JobView {
  const e = job.lastError;
  const lastError: JobErrorView | null = e
    ? {
        message: e.message,
        name: e.name,
        attempt: e.attempt,
        at: e.at,
        retryable: e.retryable,
        ...(options.admin && e.stack ? { stack: e.stack } : {}),
      }
    : null;
  return {
    id: job.id,
    tenant_id: job.tenantId,
    type: job.type,
    priority: job.priority,
    state: job.state,
    attempt: job.attempt,
    max_attempts: job.maxAttempts,
    payload: redactPayload(job.payload, new Set(options.def?.secretFields ?? [])),
    progress: job.progress,
    result: job.result,
    last_error: lastError,
    run_at: job.runAt.toISOString(),
    created_at: job.createdAt.toISOString(),
    started_at: iso(job.startedAt),
    finished_at: iso(job.finishedAt),
    idempotency_key: job.idempotencyKey,
    parent_id: job.parentId,
    cancel_requested: job.cancelRequested,
  };
}

/**
 * How a Job is shown over HTTP (and on the dashboard): snake_case, ISO times, secrets redacted
 * in the payload, progress, result and last error (shared/redact.ts: by field name and by
 * value), and error stacks (which can name internals) only for admin keys.
 */
import { z } from "zod";
import type { JobType } from "../jobs/definition";
import { JOB_STATES, type Job } from "../queue/job";
import { REDACTED, redact, redactText } from "../redact";

export { REDACTED };

const isoTime = z.iso.datetime({ offset: true });

export const jobErrorViewSchema = z.object({
  message: z.string(),
  name: z.string().optional(),
  attempt: z.number().int().optional(),
  at: z.string().optional(),
  retryable: z.boolean().optional(),
  stack: z.string().optional().describe("Admin keys only"),
}).meta({ id: "JobError" });

export const jobViewSchema = z.object({
  id: z.string().describe("Decimal job id"),
  tenant_id: z.string(),
  type: z.string(),
  priority: z.enum(["high", "normal", "low"]),
  state: z.enum(JOB_STATES as [string, ...string[]]),
  attempt: z.number().int().describe("Runs started so far"),
  max_attempts: z.number().int(),
  payload: z.unknown().describe(`The payload; credential-like fields read "${REDACTED}", URL credentials and signatures "***"`),
  progress: z.unknown().describe("Redacted like the payload"),
  result: z.unknown().describe("Redacted like the payload"),
  last_error: jobErrorViewSchema.nullable(),
  run_at: isoTime,
  created_at: isoTime,
  started_at: isoTime.nullable(),
  finished_at: isoTime.nullable(),
  idempotency_key: z.string().nullable(),
  parent_id: z.string().nullable(),
  cancel_requested: z.boolean(),
}).meta({ id: "Job" });

export type JobView = z.infer<typeof jobViewSchema>;
export type JobErrorView = z.infer<typeof jobErrorViewSchema>;

/**
 * Replaces secret fields at any depth and masks secrets inside strings (a presigned file_url's
 * signature, URL credentials, our key formats); the input is left untouched. Payloads are
 * nested at most as deep as the API lets them be, so no depth cap cuts a real one.
 */
export function redactPayload(value: unknown, secretFields: ReadonlySet<string>): unknown {
  return redact(value, { names: secretFields, maxDepth: 64 });
}

const iso = (d: Date | null): string | null => (d === null ? null : d.toISOString());

const LOCAL_FILE_URL = /file:\/\/[^\s"'<>]*/gi;

/**
 * A file:// URL (the embedded default's local store: an uploaded CSV, an error report) shown to
 * a tenant as its file name only: the server's folders are not the tenant's business. Admin
 * views keep them whole.
 */
export function hideLocalPaths(value: unknown, depth = 0): unknown {
  if (typeof value === "string") {
    return value.replace(LOCAL_FILE_URL, (url) => `file://…/${url.replace(/[?#].*$/, "").split("/").pop() ?? ""}`);
  }
  if (depth >= 64 || value === null || typeof value !== "object") return value;
  if (Array.isArray(value)) return value.map((v) => hideLocalPaths(v, depth + 1));
  return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, hideLocalPaths(v, depth + 1)]));
}

export function toJobView(job: Job, options: { def?: JobType; admin: boolean }): JobView {
  const e = job.lastError;
  const lastError: JobErrorView | null = e
    ? {
        // Errors are redacted when stored; again here for rows stored before that was so.
        message: redactText(e.message),
        name: e.name,
        attempt: e.attempt,
        at: e.at,
        retryable: e.retryable,
        ...(options.admin && e.stack ? { stack: redactText(e.stack) } : {}),
      }
    : null;
  const secrets = new Set(options.def?.secretFields ?? []);
  const shown = options.admin ? (v: unknown) => v : hideLocalPaths;
  if (lastError && !options.admin) lastError.message = hideLocalPaths(lastError.message) as string;
  return {
    id: job.id,
    tenant_id: job.tenantId,
    type: job.type,
    priority: job.priority,
    state: job.state,
    attempt: job.attempt,
    max_attempts: job.maxAttempts,
    payload: shown(redactPayload(job.payload, secrets)),
    // A handler may report a credential in its progress or result too.
    progress: shown(redactPayload(job.progress, secrets)),
    result: shown(redactPayload(job.result, secrets)),
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

import type { JobType } from "../jobs/definition";
import { backoffDelay } from "./backoff";
import { JobCancelledError, PermanentError, RetryAfter, Snooze } from "./errors";
import type { Job, JobError } from "./job";
import type { Outcome } from "./ledger";
import { redact, redactText } from "../redact";
import { isDatabaseOutage } from "../sql-errors";

/** A run handed back to the queue: waiting again in its place, the attempt not counted. */
export interface Release {
  id: string;
  attempt: number;
  state: "release";
}

const MAX_STACK = 4_000;

/**
 * The error as `last_error` stores it. Redacted before it is stored, not only when shown: the
 * row is read by the API, the dashboard, logs and backups, and a URL with a password or a
 * presigned signature in a fetch error must reach none of them.
 */
export function serializeError(err: unknown, attempt: number, now: Date, retryable: boolean): JobError {
  const e = err instanceof Error ? err : new Error(typeof err === "string" ? err : JSON.stringify(redact(err)));
  return {
    name: e.name,
    // Redacted before slicing, so a cut cannot leave half a secret that no pattern matches.
    message: redactText(e.message).slice(0, 2_000),
    stack: e.stack === undefined ? undefined : redactText(e.stack).slice(0, MAX_STACK),
    attempt,
    retryable,
    at: now.toISOString(),
  };
}

const isZodError = (err: unknown): boolean =>
  err instanceof Error && err.name === "ZodError" && Array.isArray((err as { issues?: unknown }).issues);

/** How far down a `cause` chain a declaration is looked for (a chain can be a cycle). */
const MAX_CAUSE_DEPTH = 8;

/**
 * What an error says about retrying, looked for on the error and then down its `cause` chain;
 * the outermost error that says anything decides (a PermanentError wrapping a retryable
 * provider error is permanent; a plain Error wrapping a TemplateError is not worth a retry).
 *
 * - false: PermanentError, a zod error (the payload does not fit its schema), anything with
 *   `retryable === false` (TemplateError; ProviderError for a rejected message or bad
 *   credentials) or `permanent === true`;
 * - true: RetryAfter, or `retryable === true` (ProviderError rate_limited/unavailable);
 * - undefined: nothing declared, which the engine treats as retryable.
 *
 * Reading the declaration rather than the class keeps the engine free of imports from the
 * email, template or provider modules, and lets any library's error say it.
 */
export function declaredRetryable(err: unknown): boolean | undefined {
  let current: unknown = err;
  for (let depth = 0; depth < MAX_CAUSE_DEPTH && current !== null && typeof current === "object"; depth++) {
    if (current instanceof PermanentError || isZodError(current)) return false;
    if (current instanceof RetryAfter) return true;
    const declared = current as { retryable?: unknown; permanent?: unknown; cause?: unknown };
    if (declared.retryable === false || declared.permanent === true) return false;
    if (declared.retryable === true) return true;
    current = declared.cause;
  }
  return undefined;
}

/** Whether an error says the job cannot succeed however often it runs. */
export const isPermanent = (err: unknown): boolean => declaredRetryable(err) === false;

/**
 * Decides what a failed run means: retry later (with backoff or the handler's RetryAfter),
 * fail for good (an error that declares itself not retryable, an invalid payload, the last
 * attempt), or cancelled.
 */
export function failureOutcome(job: Job, def: JobType, err: unknown, now: Date, random = Math.random): Outcome | Release {
  if (err instanceof JobCancelledError) {
    return { id: job.id, attempt: job.attempt, state: "cancelled", error: serializeError(err, job.attempt, now, false) };
  }
  if (err instanceof Snooze) {
    return {
      id: job.id,
      attempt: job.attempt,
      state: "scheduled",
      runAt: new Date(now.getTime() + err.delayMs),
      refund: true,
      // Kept so a person can see why the job waits; it is not a failure.
      error: serializeError(err, job.attempt, now, true),
    };
  }
  const permanent = isPermanent(err);
  if (!permanent && isDatabaseOutage(err)) {
    // Postgres restarting or a backend terminated: not the job's failure. Handed back like a
    // run cut short by a shutdown: in its place in the lane, the attempt not counted, ready as
    // soon as this outcome can be written (the database answers again). A retry instead waited
    // the type's backoff (5 s, then 10 s for email.send) behind its tenant's whole backlog: 21-27 s
    // from a 1 s restart to the last of them running again. Not counting the attempt also means
    // an outage longer than the attempts fails no job.
    return { id: job.id, attempt: job.attempt, state: "release" };
  }
  const attemptsLeft = job.attempt < job.maxAttempts;
  if (permanent || !attemptsLeft) {
    return { id: job.id, attempt: job.attempt, state: "failed", error: serializeError(err, job.attempt, now, false) };
  }
  const delay = err instanceof RetryAfter ? err.delayMs : backoffDelay(def.backoff, job.attempt, random);
  return {
    id: job.id,
    attempt: job.attempt,
    state: "scheduled",
    runAt: new Date(now.getTime() + delay),
    error: serializeError(err, job.attempt, now, true),
  };
}

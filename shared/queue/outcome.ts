import type { JobType } from "../jobs/definition";
import { backoffDelay } from "./backoff";
import { JobCancelledError, PermanentError, RetryAfter, Snooze } from "./errors";
import type { Job, JobError } from "./job";
import type { Outcome } from "./ledger";

const MAX_STACK = 4_000;

export function serializeError(err: unknown, attempt: number, now: Date, retryable: boolean): JobError {
  const e = err instanceof Error ? err : new Error(typeof err === "string" ? err : JSON.stringify(err));
  return {
    name: e.name,
    message: e.message.slice(0, 2_000),
    stack: e.stack?.slice(0, MAX_STACK),
    attempt,
    retryable,
    at: now.toISOString(),
  };
}

const isZodError = (err: unknown): boolean =>
  err instanceof Error && err.name === "ZodError" && Array.isArray((err as { issues?: unknown }).issues);

/**
 * Decides what a failed run means: retry later (with backoff or the handler's RetryAfter),
 * fail for good (PermanentError, invalid payload, last attempt), or cancelled.
 */
export function failureOutcome(job: Job, def: JobType, err: unknown, now: Date, random = Math.random): Outcome {
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
  const permanent = err instanceof PermanentError || isZodError(err);
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

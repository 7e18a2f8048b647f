/**
 * Control flow a handler can say. Anything else a handler throws is retried, unless it declares
 * itself not retryable (`retryable: false` or `permanent: true`, on it or on its `cause`):
 * see declaredRetryable in outcome.ts.
 */

/** The job cannot succeed however often it runs (bad data, a 4xx from a provider): fail now. */
export class PermanentError extends Error {
  /** The declaration the engine reads (also when this error is another's `cause`). */
  readonly permanent = true;
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "PermanentError";
  }
}

/** Try again after a given delay (a 429 with Retry-After, a rate limit), as a failed attempt. */
export class RetryAfter extends Error {
  constructor(readonly delayMs: number, message = `retry after ${delayMs} ms`, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "RetryAfter";
  }
}

/**
 * Not now: run again after a delay without counting this run as an attempt (the work is
 * waiting for something else, e.g. its campaign is paused).
 */
export class Snooze extends Error {
  constructor(readonly delayMs: number, message = `snoozed for ${delayMs} ms`) {
    super(message);
    this.name = "Snooze";
  }
}

/** The run was aborted because the job was cancelled. */
export class JobCancelledError extends Error {
  constructor() {
    super("the job was cancelled");
    this.name = "JobCancelledError";
  }
}

/** The run took longer than its type's timeout. */
export class JobTimeoutError extends Error {
  constructor(timeoutMs: number) {
    super(`the job timed out after ${timeoutMs} ms`);
    this.name = "JobTimeoutError";
  }
}

/** Engine errors the API maps to HTTP statuses. */
export class NotFoundError extends Error {
  override name = "NotFoundError";
}
export class ConflictError extends Error {
  override name = "ConflictError";
}
export class ValidationError extends Error {
  override name = "ValidationError";
  constructor(
    message: string,
    readonly issues: readonly { path: (string | number)[]; message: string }[],
  ) {
    super(message);
  }
}
/** Too many of something lately: answered 429 with Retry-After. */
export class RateLimitedError extends Error {
  override name = "RateLimitedError";
  constructor(
    message: string,
    readonly retryAfterSeconds: number,
  ) {
    super(message);
  }
}
export class ForbiddenError extends Error {
  override name = "ForbiddenError";
}

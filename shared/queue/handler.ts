import type { Logger } from "../ports";
import type { Job } from "./job";

export interface JobContext {
  /** Aborted when the job is cancelled, times out, loses its lease or the worker shuts down. */
  signal: AbortSignal;
  logger: Logger;
  /** Saves progress (any JSON) with the next heartbeat; visible in GET /v1/jobs/:id. */
  progress(value: unknown): void;
}

/** One job's outcome from a batch handler: a result, or the error it failed with. */
export type BatchResult = { ok: true; result?: unknown } | { ok: false; error: unknown };

/**
 * The code that runs one job type, identical on the edge and on Node. A handler gives `run`
 * (one job at a time) or `runBatch` (every claimed job of its type in one call, for bulk work
 * such as a provider's batch send). Throw PermanentError to fail without retrying, RetryAfter
 * to choose the delay; anything else thrown is retried with the type's backoff.
 */
export interface Handler<P = any> {
  type: string;
  run?(payload: P, job: Job<P>, ctx: JobContext): Promise<unknown>;
  runBatch?(jobs: readonly Job<P>[], ctx: JobContext): Promise<BatchResult[]>;
  /** Most jobs one runBatch call takes. Defaults to 100. */
  maxBatch?: number;
}

import type { Priority } from "../jobs/definition";

/**
 * Glossary (the same words everywhere):
 * - job: one unit of work, a row in the `jobs` table (the ledger).
 * - type: what kind of work (email.send, ...); the catalog defines each type's payload and defaults.
 * - lane: the queue of waiting jobs of one type, ordered by priority then fair virtual time.
 * - pool: the worker slots that run a set of types with one concurrency (email, default, import).
 * - attempt: one run of a job; `attempt` counts runs started so far.
 * - lease: the time until which an active job belongs to its worker; renewed by heartbeat.
 * - tenant: the customer account that owns a job; an API key sees only its tenant's jobs.
 */
export type JobState = "scheduled" | "queued" | "paused" | "active" | "completed" | "failed" | "cancelled";
export const JOB_STATES: readonly JobState[] = ["scheduled", "queued", "paused", "active", "completed", "failed", "cancelled"];
/** States a job never leaves by itself. */
export const FINAL_STATES: readonly JobState[] = ["completed", "failed", "cancelled"];

export interface JobError {
  message: string;
  name?: string;
  stack?: string;
  attempt?: number;
  /** Whether the engine will try again. */
  retryable?: boolean;
  at?: string;
}

export interface Job<P = unknown> {
  id: string;
  tenantId: string;
  type: string;
  priority: Priority;
  payload: P;
  state: JobState;
  attempt: number;
  maxAttempts: number;
  runAt: Date;
  vtime: number;
  leaseUntil: Date | null;
  workerId: string | null;
  cancelRequested: boolean;
  idempotencyKey: string | null;
  parentId: string | null;
  progress: unknown;
  result: unknown;
  lastError: JobError | null;
  createdAt: Date;
  startedAt: Date | null;
  finishedAt: Date | null;
}

/** What a dispatcher needs to place a queued job in its lane. */
export interface LaneEntry {
  id: string;
  type: string;
  /** 0 = high, 1 = normal, 2 = low. */
  priority: number;
  vtime: number;
}

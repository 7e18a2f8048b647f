import type { z } from "zod";

/** Words used everywhere (see README, "Glossary"). */
export type Priority = "high" | "normal" | "low";
export const PRIORITIES: readonly Priority[] = ["high", "normal", "low"];
/** Stored as a smallint: lower runs first. */
export const priorityRank: Record<Priority, number> = { high: 0, normal: 1, low: 2 };
export const priorityName = (rank: number): Priority => PRIORITIES[rank] ?? "normal";

/** A pool is a set of job types run by one group of worker slots with one concurrency. */
export type PoolName = "email" | "default" | "import";
export const POOLS: readonly PoolName[] = ["email", "default", "import"];

export interface Backoff {
  /** Delay before the first retry; doubles each attempt. */
  baseMs: number;
  /** Upper bound of one delay. */
  maxMs: number;
}

/** A job type: its payload schema and its defaults. One module a type under shared/jobs/. */
export interface JobType<S extends z.ZodType = z.ZodType> {
  type: string;
  description: string;
  payload: S;
  pool: PoolName;
  /** Default priority; may depend on the payload (transactional vs campaign mail). */
  priority: (payload: z.infer<S>) => Priority;
  maxAttempts: number;
  backoff: Backoff;
  /** A run that takes longer is aborted through its AbortSignal and counts as a failed attempt. */
  timeoutMs: number;
  /** Only the admin key may enqueue it (system jobs). */
  adminOnly?: boolean;
  /** Standard 5-field cron expression (UTC) on which the scheduler enqueues it. */
  cron?: { schedule: string; payload: z.input<S> };
  /** Payload fields never shown in listings or logs. */
  secretFields?: readonly string[];
  /**
   * Rules for payloads that come from clients (the API) on top of the schema: what only the
   * system itself may enqueue. Returns the offending fields, paths relative to the payload.
   */
  clientRules?: (payload: z.infer<S>) => PayloadIssue[];
}

export interface PayloadIssue {
  path: (string | number)[];
  message: string;
}

export const defineJobType = <S extends z.ZodType>(def: JobType<S>): JobType<S> => def;

import type { z } from "zod";

/** Words used everywhere (see README, "Glossary"). */
export type Priority = "high" | "normal" | "low";
export const PRIORITIES: readonly Priority[] = ["high", "normal", "low"];
/** Stored as a smallint: lower runs first. */
export const priorityRank: Record<Priority, number> = { high: 0, normal: 1, low: 2 };
export const priorityName = (rank: number): Priority => PRIORITIES[rank] ?? "normal";

/**
 * A pool is a set of job types run by one group of worker slots with one concurrency. These are
 * the built-in pools; a job type added through the library (workers/node/library.ts) may name any other.
 */
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
  /** One of POOLS for the built-in types; any name for types added through the library. */
  pool: string;
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

/** A job type with only `type` and `payload` required; jobType() fills in the rest. */
export type JobTypeInput<S extends z.ZodType = z.ZodType> = Pick<JobType<S>, "type" | "payload"> &
  Partial<Omit<JobType<S>, "type" | "payload" | "priority">> & {
    /** A fixed priority or one chosen by payload. Defaults to "normal". */
    priority?: Priority | ((payload: z.infer<S>) => Priority);
  };

/** The defaults of an added job type, in one place (README, "From Node code"). */
export const JOB_TYPE_DEFAULTS = {
  description: "",
  pool: "default",
  priority: "normal",
  maxAttempts: 5,
  backoff: { baseMs: 5_000, maxMs: 60 * 60_000 },
  timeoutMs: 5 * 60_000,
} as const satisfies Partial<JobTypeInput>;

const TYPE_NAME = /^[a-z][a-z0-9_-]*(\.[a-z][a-z0-9_-]*)*$/;

/**
 * A full job type from a partial one: pool "default", priority "normal", 5 attempts, backoff
 * 5 s doubling up to 1 h, a 5 min timeout. Throws, naming the field, on a definition that
 * could never run (a bad name, zero attempts, a backoff ceiling below its base).
 */
export function jobType<S extends z.ZodType>(input: JobTypeInput<S>): JobType<S> {
  const d = JOB_TYPE_DEFAULTS;
  const where = `job type "${input.type}"`;
  if (typeof input.type !== "string" || input.type.length > 128 || !TYPE_NAME.test(input.type)) {
    throw new TypeError(`${where}: type must be lowercase dotted words (like "report.build"), at most 128 characters`);
  }
  const priority = input.priority ?? d.priority;
  const def: JobType<S> = {
    ...input,
    description: input.description ?? d.description,
    pool: input.pool ?? d.pool,
    priority: typeof priority === "function" ? priority : () => priority,
    maxAttempts: input.maxAttempts ?? d.maxAttempts,
    backoff: input.backoff ?? d.backoff,
    timeoutMs: input.timeoutMs ?? d.timeoutMs,
  };
  if (typeof priority === "string" && !PRIORITIES.includes(priority)) throw new TypeError(`${where}: priority must be high, normal or low`);
  if (!/^[A-Za-z0-9_-]{1,64}$/.test(def.pool)) throw new TypeError(`${where}: pool must be 1-64 letters, digits, _ or -`);
  if (!Number.isInteger(def.maxAttempts) || def.maxAttempts < 1 || def.maxAttempts > 100) throw new TypeError(`${where}: maxAttempts must be an integer from 1 to 100`);
  if (!(def.backoff.baseMs > 0) || !(def.backoff.maxMs >= def.backoff.baseMs)) throw new TypeError(`${where}: backoff needs baseMs > 0 and maxMs >= baseMs`);
  if (!(def.timeoutMs > 0)) throw new TypeError(`${where}: timeoutMs must be positive`);
  return def;
}

/**
 * Whether a payload schema declares a top-level field (through objects, unions, pipes and
 * wrappers such as optional or default). The queue fills `tenant_id` in only where the schema
 * has it, so a strict schema of a type that does not care about it need not declare it.
 */
export function declaresField(schema: z.ZodType, field: string): boolean {
  const def = (schema as unknown as { _zod: { def: Record<string, unknown> & { type: string } } })._zod.def;
  switch (def.type) {
    case "object":
      return Object.hasOwn(def.shape as object, field);
    case "union":
      return (def.options as z.ZodType[]).some((o) => declaresField(o, field));
    case "intersection":
      return declaresField(def.left as z.ZodType, field) || declaresField(def.right as z.ZodType, field);
    case "pipe":
      return declaresField(def.in as z.ZodType, field);
    case "optional":
    case "nullable":
    case "default":
    case "prefault":
    case "nonoptional":
    case "catch":
    case "readonly":
      return declaresField(def.innerType as z.ZodType, field);
    case "lazy":
      return declaresField((def.getter as () => z.ZodType)(), field);
    default:
      return false;
  }
}

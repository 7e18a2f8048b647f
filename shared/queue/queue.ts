import { z } from "zod";
import type { Dispatcher } from "../dispatch/dispatcher";
import { catalog as defaultCatalog } from "../jobs/catalog";
import { tenantId as tenantIdField, timestamp } from "../jobs/fields";
import { declaresField, type JobType, type Priority, priorityRank, PRIORITIES } from "../jobs/definition";
import { type Clock, type Logger, type Sql, type SqlClient, silentLogger, systemClock } from "../ports";
import { ConflictError, NotFoundError, ValidationError } from "./errors";
import type { Job, JobState, LaneEntry } from "./job";
import { Ledger, type NewJob } from "./ledger";

/** The most jobs one enqueue call (and one POST /v1/jobs/batch) may carry. */
export const MAX_BATCH = 1_000;

/** What a caller asks for. One object, no positional arguments. */
export interface EnqueueInput {
  type: string;
  payload: unknown;
  /** Owner of the job. Filled into payload.tenant_id when the payload has none and its type's schema declares one. */
  tenantId: string;
  /** Defaults to the type's priority for this payload. */
  priority?: Priority;
  /** Run no earlier than this time. */
  runAt?: Date;
  /** Run no earlier than this many milliseconds from now (ignored when runAt is given). */
  delayMs?: number;
  /** The same key (per tenant and type) returns the existing job instead of creating another. */
  idempotencyKey?: string;
  /** Defaults to the type's maxAttempts. */
  maxAttempts?: number;
  /** The job that created this one (fan-out). */
  parentId?: string;
}

export interface Enqueued {
  job: Job;
  /** False when the idempotency key matched an existing job. */
  created: boolean;
}

export interface QueueOptions {
  sql: Sql;
  dispatcher: Dispatcher;
  clock?: Clock;
  logger?: Logger;
  catalog?: ReadonlyMap<string, JobType>;
  /** Shares the engine's ledger (and its hot-path connection); one is made from sql otherwise. */
  ledger?: Ledger;
  /**
   * Called after queued jobs were handed to the dispatcher, e.g. to wake an edge consumer
   * through a Cloudflare Queue message. Its failure is logged, never the enqueue's.
   */
  onPublished?: (entries: readonly LaneEntry[]) => Promise<void>;
}

/** Per type definition: whether its payload schema has a tenant_id field to fill in. */
const takesTenantId = new WeakMap<JobType, boolean>();
const declaresTenantId = (def: JobType): boolean => {
  let known = takesTenantId.get(def);
  if (known === undefined) takesTenantId.set(def, (known = declaresField(def.payload, "tenant_id")));
  return known;
};

const issuePath = (path: readonly PropertyKey[]): (string | number)[] =>
  path.map((p) => (typeof p === "number" ? p : String(p)));

/**
 * The library API: enqueue, inspect, cancel and retry jobs. Both runtimes' HTTP API and any
 * Node caller use it; every write goes to the ledger first and to the dispatcher after commit.
 */
export class Queue {
  readonly ledger: Ledger;
  readonly dispatcher: Dispatcher;
  readonly clock: Clock;
  readonly catalog: ReadonlyMap<string, JobType>;
  private readonly sql: Sql;
  private readonly logger: Logger;
  private readonly onPublished?: (entries: readonly LaneEntry[]) => Promise<void>;

  constructor(options: QueueOptions) {
    this.sql = options.sql;
    this.dispatcher = options.dispatcher;
    this.clock = options.clock ?? systemClock;
    this.logger = options.logger ?? silentLogger;
    this.catalog = options.catalog ?? defaultCatalog;
    this.ledger = options.ledger ?? new Ledger(options.sql);
    this.onPublished = options.onPublished;
  }

  /**
   * Parses one input against its type's schema. Issue paths are relative to the input
   * (["payload", "recipient"]), prefixed by `at` (the index in a batch).
   */
  validate(input: EnqueueInput, at: (string | number)[] = []): NewJob {
    const def = this.catalog.get(input.type);
    if (!def) {
      throw new ValidationError(`unknown job type "${input.type}"`, [
        { path: [...at, "type"], message: `unknown job type; expected one of: ${[...this.catalog.keys()].join(", ")}` },
      ]);
    }
    const raw = input.payload;
    if (raw === null || typeof raw !== "object" || Array.isArray(raw)) {
      throw new ValidationError("the payload must be a JSON object", [
        { path: [...at, "payload"], message: "expected an object" },
      ]);
    }
    // Only into schemas that have the field: a strict schema of an added type need not declare it
    // (its handler reads job.tenantId), and the built-in ones all do.
    const withTenant = "tenant_id" in raw || !declaresTenantId(def) ? raw : { ...raw, tenant_id: input.tenantId };
    const parsed = def.payload.safeParse(withTenant);
    if (!parsed.success) {
      throw new ValidationError(
        `invalid ${input.type} payload`,
        parsed.error.issues.map((i) => ({ path: [...at, "payload", ...issuePath(i.path)], message: i.message })),
      );
    }
    const payload = parsed.data as Record<string, unknown>;
    if (typeof payload.tenant_id === "string" && payload.tenant_id !== input.tenantId) {
      throw new ValidationError("payload.tenant_id does not match the job's tenant", [
        { path: [...at, "payload", "tenant_id"], message: `must be "${input.tenantId}" (the tenant of your API key)` },
      ]);
    }
    if (input.priority !== undefined && !PRIORITIES.includes(input.priority)) {
      throw new ValidationError("invalid priority", [{ path: [...at, "priority"], message: "expected high, normal or low" }]);
    }
    const now = this.clock.now().getTime();
    const runAt = input.runAt ?? new Date(now + Math.max(0, input.delayMs ?? 0));
    if (Number.isNaN(runAt.getTime())) {
      throw new ValidationError("invalid run time", [{ path: [...at, "run_at"], message: "expected an ISO 8601 time" }]);
    }
    return {
      tenantId: input.tenantId,
      type: def.type,
      priority: priorityRank[input.priority ?? def.priority(payload)],
      payload,
      maxAttempts: input.maxAttempts ?? def.maxAttempts,
      runAt,
      idempotencyKey: input.idempotencyKey ?? null,
      parentId: input.parentId ?? null,
    };
  }

  async enqueue(input: EnqueueInput, options: { tx?: SqlClient } = {}): Promise<Enqueued> {
    const [one] = await this.enqueueMany([input], options);
    return one!;
  }

  /**
   * Validates every input first (nothing is stored when one is invalid), inserts them in one
   * statement, then publishes the queued ones to the dispatcher. With `tx`, the insert joins the
   * caller's transaction, so the jobs exist only if the caller commits; on the Redis driver they
   * are then placed in their lanes by the scheduler's next promotion (within about a second),
   * since nothing here can know when the caller commits.
   */
  async enqueueMany(inputs: readonly EnqueueInput[], options: { tx?: SqlClient } = {}): Promise<Enqueued[]> {
    if (inputs.length > MAX_BATCH) {
      throw new ValidationError(`a batch holds at most ${MAX_BATCH} jobs`, [
        { path: [], message: `got ${inputs.length} jobs; split them into batches of ${MAX_BATCH}` },
      ]);
    }
    return this.enqueueValidated(
      inputs.map((input, i) => this.validate(input, inputs.length > 1 ? [i] : [])),
      options,
    );
  }

  /** Stores rows `validate` returned (the API validates first to report every bad job at once). */
  async enqueueValidated(rows: readonly NewJob[], options: { tx?: SqlClient } = {}): Promise<Enqueued[]> {
    if (rows.length === 0) return [];
    // In the caller's transaction, Redis lanes cannot be told after commit: the promoter places the jobs.
    const defer = options.tx !== undefined && !this.dispatcher.wakesThroughPostgres;
    const client = options.tx ?? this.sql;
    const inserted = await this.ledger.insertMany(rows, this.clock.now(), { notify: this.dispatcher.wakesThroughPostgres, defer }, client);
    const results = await this.withExisting(rows, inserted, client);
    if (!options.tx) await this.publish(inserted.filter((j): j is Job => j !== null && j.state === "queued"));
    return results;
  }


  /** Fills the inputs whose idempotency key matched an existing job with that job. */
  private async withExisting(rows: readonly NewJob[], inserted: (Job | null)[], client: SqlClient): Promise<Enqueued[]> {
    const keyOf = (tenantId: string, type: string, key: string) => `${tenantId}\u0000${type}\u0000${key}`;
    const missing = rows.filter((_, i) => inserted[i] === null);
    const existing = new Map<string, Job>();
    for (const job of await this.ledger.getByIdempotencyKeys(
      missing.map((r) => ({ tenantId: r.tenantId, type: r.type, key: r.idempotencyKey! })),
      client,
    )) {
      existing.set(keyOf(job.tenantId, job.type, job.idempotencyKey!), job);
    }
    // A key repeated inside the batch refers to the job its first occurrence created.
    for (const job of inserted) if (job?.idempotencyKey) existing.set(keyOf(job.tenantId, job.type, job.idempotencyKey), job);
    return rows.map((r, i) => {
      const fresh = inserted[i];
      if (fresh) return { job: fresh, created: true };
      const job = existing.get(keyOf(r.tenantId, r.type, r.idempotencyKey!));
      if (!job) throw new ConflictError(`the job with idempotency key "${r.idempotencyKey}" was removed while enqueuing; retry`);
      return { job, created: false };
    });
  }

  /** Hands committed queued jobs to the dispatcher. Never throws: the ledger already has them. */
  async publish(jobs: readonly LaneEntry[] | readonly Job[]): Promise<void> {
    if (jobs.length === 0) return;
    const entries: LaneEntry[] = jobs.map((j) => ({
      id: j.id,
      type: j.type,
      priority: typeof j.priority === "number" ? j.priority : priorityRank[j.priority],
      vtime: j.vtime,
    }));
    try {
      await this.dispatcher.publish(entries);
    } catch (err) {
      this.logger.warn("dispatch failed after commit; reconcile will place the jobs", { err: String(err) });
    }
    await this.onPublished?.(entries).catch((err: unknown) => this.logger.warn("wake-up after enqueue failed", { err: String(err) }));
  }

  async get(id: string, tenantId: string | null): Promise<Job> {
    const job = /^\d{1,18}$/.test(id) ? await this.ledger.get(id, tenantId) : null;
    if (!job) throw new NotFoundError(`no job ${id}`);
    return job;
  }

  list(filter: { tenantId: string | null; type?: string; state?: JobState; beforeId?: string; limit: number }): Promise<Job[]> {
    return this.ledger.list(filter);
  }

  /** Cancels a waiting job at once, or asks a running one to stop through its AbortSignal. */
  async cancel(id: string, tenantId: string | null): Promise<Job> {
    const previous = /^\d{1,18}$/.test(id) ? await this.ledger.cancel(id, tenantId, this.clock.now()) : null;
    if (previous === null) throw new NotFoundError(`no job ${id}`);
    if (!["queued", "scheduled", "paused", "active"].includes(previous)) {
      throw new ConflictError(`job ${id} is ${previous}; only waiting or running jobs can be cancelled`);
    }
    return this.get(id, tenantId);
  }

  /** Runs a failed (dead-letter) or cancelled job again, from attempt 1. */
  async retry(id: string, tenantId: string | null): Promise<Job> {
    const outcome = /^\d{1,18}$/.test(id) ? await this.ledger.retry(id, tenantId, this.clock.now()) : null;
    if (outcome === null) throw new NotFoundError(`no job ${id}`);
    if (!outcome.changed) {
      throw new ConflictError(`job ${id} is ${outcome.previous}; only failed or cancelled jobs can be retried`);
    }
    await this.promoteDue();
    return this.get(id, tenantId);
  }

  /** Runs every failed job of a type again; returns how many. */
  async retryFailed(type: string): Promise<number> {
    let total = 0;
    for (;;) {
      const ids = await this.ledger.retryFailedOfType(type, this.clock.now(), 5_000);
      total += ids.length;
      await this.promoteDue();
      if (ids.length < 5_000) return total;
    }
  }

  /** Moves due scheduled jobs into their lanes; returns how many. Safe to call from any process. */
  async promoteDue(limit = 5_000): Promise<number> {
    let total = 0;
    for (;;) {
      const { moved, queued } = await this.ledger.promoteDue(this.clock.now(), limit, this.dispatcher.wakesThroughPostgres);
      total += moved;
      await this.publish(queued);
      if (moved < limit) return total;
    }
  }

  /**
   * Pauses a type, or one tenant's jobs of a type: their waiting jobs stay in state 'paused'
   * (running ones finish) until resume(), on every runtime and driver, across restarts.
   */
  async pause(type: string, tenantId: string | null = null): Promise<{ jobs: number }> {
    this.requireType(type);
    const { jobs } = await this.ledger.pauseLane(type, tenantId ?? "*");
    return { jobs };
  }

  /** Resumes a paused lane; its jobs go back to their lanes in fair order. */
  async resume(type: string, tenantId: string | null = null): Promise<{ jobs: number }> {
    this.requireType(type);
    const { jobs } = await this.ledger.resumeLane(type, tenantId ?? "*", this.clock.now());
    await this.promoteDue();
    return { jobs };
  }

  async pausedLanes(): Promise<{ type: string; tenantId: string | null; pausedAt: Date }[]> {
    return (await this.ledger.pausedLanes()).map((r) => ({
      type: r.type,
      tenantId: r.tenant_id === "*" ? null : r.tenant_id,
      pausedAt: r.paused_at instanceof Date ? r.paused_at : new Date(String(r.paused_at)),
    }));
  }

  private requireType(type: string): void {
    if (!this.catalog.has(type)) throw new NotFoundError(`unknown job type "${type}"`);
  }
}

/** The zod schema of an enqueue request's envelope (the payload is checked by its type's schema). */
export const enqueueRequestSchema = z.strictObject({
  type: z.string().min(1).max(128),
  payload: z.record(z.string(), z.unknown()),
  priority: z.enum(["high", "normal", "low"]).optional(),
  /** Within Postgres' timestamptz range (years 0001-9999), so an odd date is a 422, not a 500. */
  run_at: timestamp.optional(),
  delay_ms: z.number().int().min(0).max(366 * 24 * 3600 * 1000).optional(),
  idempotency_key: z.string().min(1).max(255).optional(),
  max_attempts: z.number().int().min(1).max(100).optional(),
  /** Admin keys only: the tenant to enqueue for. */
  tenant_id: tenantIdField.optional(),
});
export type EnqueueRequest = z.infer<typeof enqueueRequestSchema>;

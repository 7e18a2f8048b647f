import { priorityName } from "../jobs/definition";
import type { SqlClient } from "../ports";
import type { Job, JobError, JobState, LaneEntry } from "./job";
import * as q from "./statements";

type Row = Record<string, unknown>;

/** Times arrive as epoch milliseconds (see jobColumns); a Date or text is accepted too. */
const toDate = (v: unknown): Date | null =>
  v == null ? null : v instanceof Date ? v : new Date(typeof v === "number" ? v : Number.isFinite(Number(v)) ? Number(v) : String(v));
const json = (v: unknown): string | null => (v === undefined || v === null ? null : JSON.stringify(v));

export function rowToJob(r: Row): Job {
  return {
    id: String(r.id),
    tenantId: String(r.tenant_id),
    type: String(r.type),
    priority: priorityName(Number(r.priority)),
    payload: r.payload,
    state: r.state as JobState,
    attempt: Number(r.attempt),
    maxAttempts: Number(r.max_attempts),
    runAt: toDate(r.run_at)!,
    vtime: Number(r.vtime),
    leaseUntil: toDate(r.lease_until),
    workerId: (r.worker_id as string | null) ?? null,
    cancelRequested: Boolean(r.cancel_requested),
    idempotencyKey: (r.idempotency_key as string | null) ?? null,
    parentId: (r.parent_id as string | null) ?? null,
    progress: r.progress ?? null,
    result: r.result ?? null,
    lastError: (r.last_error as JobError | null) ?? null,
    createdAt: toDate(r.created_at)!,
    startedAt: toDate(r.started_at),
    finishedAt: toDate(r.finished_at),
  };
}

/** A job as the claim statements return it: the columns they leave out are known from the claim. */
function claimedJob(r: Row, now: Date, leaseUntil: Date, workerId: string): Job {
  return {
    ...rowToJob(r),
    state: "active",
    leaseUntil,
    workerId,
    cancelRequested: false,
    result: null,
    startedAt: now,
    finishedAt: null,
  };
}

const rowToLane = (r: Row): LaneEntry => ({
  id: String(r.id),
  type: String(r.type),
  priority: Number(r.priority),
  vtime: Number(r.vtime),
});

/** A row to insert, already validated against its type's schema. */
export interface NewJob {
  tenantId: string;
  type: string;
  priority: number;
  payload: unknown;
  maxAttempts: number;
  runAt: Date;
  idempotencyKey: string | null;
  parentId: string | null;
}

export interface Outcome {
  id: string;
  attempt: number;
  state: Extract<JobState, "completed" | "failed" | "scheduled" | "cancelled">;
  result?: unknown;
  error?: JobError;
  /** For retries: when to run again. */
  runAt?: Date;
  /** The run does not count as an attempt (a snooze). */
  refund?: boolean;
}

/**
 * The hot path's client. With `heartbeats`, lease renewals run there instead: a pool whose
 * connections all wait on claims and outcomes (blocked behind a lock, say) would otherwise hold
 * heartbeats back until the leases expire and the rescue runs live jobs a second time.
 */
export interface HotSqlClient extends SqlClient {
  heartbeats?: SqlClient;
}

/**
 * The ledger: one method a state transition, each one statement and one round trip, each
 * taking many jobs at once where the hot path needs it.
 */
export class Ledger {
  /**
   * @param hot runs claims, heartbeats and outcomes: writes that may be lost in a database crash
   *   without harm (the job just runs again), so the Node runtime gives it a pool that commits
   *   without waiting for the disk. Defaults to sql.
   */
  constructor(
    private readonly sql: SqlClient,
    private readonly hot: HotSqlClient = sql,
  ) {}

  /**
   * Inserts jobs in one statement. Returns one entry per input, in input order: the created job,
   * or null where the idempotency key already existed (or repeats an earlier input's key).
   */
  async insertMany(
    jobs: readonly NewJob[],
    now: Date,
    options: { notify: boolean; defer: boolean },
    client: SqlClient = this.sql,
  ): Promise<(Job | null)[]> {
    const rows = await client.query<{ id: string; state: JobState; vtime: number; idempotency_key: string | null }>(
      q.JobInsertMany,
      [
        jobs.map((j) => j.tenantId),
        jobs.map((j) => j.type),
        jobs.map((j) => j.priority),
        jobs.map((j) => JSON.stringify(j.payload)),
        jobs.map((j) => j.maxAttempts),
        jobs.map((j) => j.runAt.toISOString()),
        jobs.map((j) => j.idempotencyKey),
        jobs.map((j) => j.parentId),
        now.toISOString(),
        options.notify,
        options.defer,
      ],
    );
    const keyed = new Map<string, (typeof rows)[number]>();
    const unkeyed: (typeof rows)[number][] = [];
    for (const r of rows) {
      if (r.idempotency_key === null) unkeyed.push(r);
      else keyed.set(r.idempotency_key, r);
    }
    let next = 0;
    return jobs.map((j) => {
      const row = j.idempotencyKey === null ? unkeyed[next++] : keyed.get(j.idempotencyKey);
      if (!row) return null;
      if (j.idempotencyKey !== null) keyed.delete(j.idempotencyKey); // a repeat of the key in this batch gets null
      return {
        id: row.id,
        tenantId: j.tenantId,
        type: j.type,
        priority: priorityName(j.priority),
        payload: j.payload,
        state: row.state,
        attempt: 0,
        maxAttempts: j.maxAttempts,
        runAt: j.runAt > now ? j.runAt : now,
        vtime: Number(row.vtime),
        leaseUntil: null,
        workerId: null,
        cancelRequested: false,
        idempotencyKey: j.idempotencyKey,
        parentId: j.parentId,
        progress: null,
        result: null,
        lastError: null,
        createdAt: now,
        startedAt: null,
        finishedAt: null,
      };
    });
  }

  async getByIdempotencyKeys(
    keys: readonly { tenantId: string; type: string; key: string }[],
    client: SqlClient = this.sql,
  ): Promise<Job[]> {
    if (keys.length === 0) return [];
    const rows = await client.query(q.JobGetByIdempotencyKeys, [
      keys.map((k) => k.tenantId),
      keys.map((k) => k.type),
      keys.map((k) => k.key),
    ]);
    return rows.map(rowToJob);
  }

  async claimByIds(ids: readonly string[], now: Date, leaseUntil: Date, workerId: string): Promise<Job[]> {
    if (ids.length === 0) return [];
    const rows = await this.hot.query(q.JobClaimMany, [ids, now.toISOString(), leaseUntil.toISOString(), workerId]);
    return rows.map((r) => claimedJob(r, now, leaseUntil, workerId));
  }

  async claimNext(types: readonly string[], limit: number, now: Date, leaseUntil: Date, workerId: string): Promise<Job[]> {
    const rows = await this.hot.query(q.JobClaimNext, [
      types,
      limit,
      now.toISOString(),
      leaseUntil.toISOString(),
      workerId,
    ]);
    return rows.map((r) => claimedJob(r, now, leaseUntil, workerId));
  }

  /** Records outcomes; returns the ids that were still held by this attempt. */
  async finishMany(outcomes: readonly Outcome[], now: Date): Promise<{ id: string; state: JobState }[]> {
    if (outcomes.length === 0) return [];
    return this.hot.query<{ id: string; state: JobState }>(q.JobFinishMany, [
      outcomes.map((o) => o.id),
      outcomes.map((o) => o.attempt),
      outcomes.map((o) => o.state),
      outcomes.map((o) => json(o.result)),
      outcomes.map((o) => json(o.error)),
      outcomes.map((o) => o.runAt?.toISOString() ?? null),
      now.toISOString(),
      outcomes.map((o) => o.refund === true),
    ]);
  }

  /** Hands jobs back into their lanes (see JobReleaseMany); returns the ones now queued, to publish. */
  async releaseMany(jobs: readonly { id: string; attempt: number }[], now: Date, notify = false): Promise<LaneEntry[]> {
    if (jobs.length === 0) return [];
    const rows = await this.hot.query(q.JobReleaseMany, [jobs.map((j) => j.id), jobs.map((j) => j.attempt), now.toISOString(), notify]);
    return rows.filter((r) => r.state === "queued").map(rowToLane);
  }

  async heartbeatMany(
    jobs: readonly { id: string; attempt: number; progress: unknown }[],
    leaseUntil: Date,
  ): Promise<{ id: string; cancel_requested: boolean; busy: boolean }[]> {
    if (jobs.length === 0) return [];
    return (this.hot.heartbeats ?? this.hot).query(q.JobHeartbeatMany, [
      jobs.map((j) => j.id),
      jobs.map((j) => j.attempt),
      jobs.map((j) => json(j.progress)),
      leaseUntil.toISOString(),
    ]);
  }

  /** Promotes due jobs; returns how many moved and the ones that joined a lane (not paused). */
  async promoteDue(now: Date, limit: number, notify: boolean): Promise<{ moved: number; queued: LaneEntry[] }> {
    const rows = await this.sql.query(q.JobPromoteDue, [now.toISOString(), limit, notify]);
    return { moved: rows.length, queued: rows.filter((r) => r.state === "queued").map(rowToLane) };
  }

  async pauseLane(type: string, tenantId: string): Promise<{ lanes: number; jobs: number }> {
    const [row] = await this.sql.query<{ lanes: number; jobs: number }>(q.LanePause, [type, tenantId]);
    return row!;
  }

  async resumeLane(type: string, tenantId: string, now: Date): Promise<{ lanes: number; jobs: number }> {
    const [row] = await this.sql.query<{ lanes: number; jobs: number }>(q.LaneResume, [type, tenantId, now.toISOString()]);
    return row!;
  }

  async pausedLanes(): Promise<{ type: string; tenant_id: string; paused_at: Date }[]> {
    return this.sql.query(q.LaneListPaused);
  }

  /**
   * Takes back jobs whose lease ended before expiredBefore (defaults to now); returns them with
   * their new state, and the lane entries of those that went back to a lane.
   */
  async rescueExpired(
    now: Date,
    limit: number,
    options: { notify?: boolean; expiredBefore?: Date } = {},
  ): Promise<{ rescued: { id: string; type: string; state: JobState }[]; queued: LaneEntry[] }> {
    const rows = await this.sql.query(q.JobRescueExpired, [
      now.toISOString(),
      limit,
      options.notify ?? false,
      (options.expiredBefore ?? now).toISOString(),
    ]);
    return {
      rescued: rows.map((r) => ({ id: String(r.id), type: String(r.type), state: r.state as JobState })),
      queued: rows.filter((r) => r.state === "queued").map(rowToLane),
    };
  }

  /** Returns the state the job had, or null when no such job is visible. */
  async cancel(id: string, tenantId: string | null, now: Date): Promise<JobState | null> {
    const [row] = await this.sql.query<{ previous_state: JobState }>(q.JobCancel, [id, tenantId, now.toISOString()]);
    return row?.previous_state ?? null;
  }

  async retry(id: string, tenantId: string | null, now: Date): Promise<{ previous: JobState; changed: boolean } | null> {
    const [row] = await this.sql.query<{ previous_state: JobState; changed: number | string }>(q.JobRetry, [
      id,
      tenantId,
      now.toISOString(),
    ]);
    return row ? { previous: row.previous_state, changed: Number(row.changed) > 0 } : null;
  }

  async retryFailedOfType(type: string, now: Date, limit: number): Promise<string[]> {
    const rows = await this.sql.query<{ id: string }>(q.JobRetryFailedOfType, [type, now.toISOString(), limit]);
    return rows.map((r) => r.id);
  }

  async get(id: string, tenantId: string | null): Promise<Job | null> {
    const [row] = await this.sql.query(q.JobGet, [id, tenantId]);
    return row ? rowToJob(row) : null;
  }

  async list(filter: {
    tenantId: string | null;
    type?: string;
    state?: JobState;
    beforeId?: string;
    limit: number;
  }): Promise<Job[]> {
    const params: unknown[] = [];
    if (filter.tenantId !== null) params.push(filter.tenantId);
    if (filter.type !== undefined) params.push(filter.type);
    if (filter.state !== undefined) params.push(filter.state);
    if (filter.beforeId !== undefined) params.push(filter.beforeId);
    params.push(filter.limit);
    const text = q.JobList({
      tenant: filter.tenantId !== null,
      type: filter.type !== undefined,
      state: filter.state !== undefined,
      before: filter.beforeId !== undefined,
    });
    const rows = await this.sql.query(text, params);
    return rows.map(rowToJob);
  }

  async listQueued(afterId: string, limit: number): Promise<LaneEntry[]> {
    const rows = await this.sql.query(q.JobListQueued, [afterId, limit]);
    return rows.map(rowToLane);
  }

  async laneHeads(types: readonly string[], perLane: number): Promise<LaneEntry[]> {
    if (types.length === 0) return [];
    const rows = await this.sql.query(q.JobListLaneHeads, [types, perLane]);
    return rows.map(rowToLane);
  }

  async countByTypeAndState(): Promise<{ type: string; state: JobState; count: number }[]> {
    return this.sql.query(q.JobCountByTypeAndState);
  }

  async countByTypePriorityState(): Promise<{ type: string; priority: number; state: JobState; count: number }[]> {
    return this.sql.query(q.JobCountByTypePriorityState);
  }

  async children(parentId: string, limit = 100): Promise<Job[]> {
    const rows = await this.sql.query(q.JobListChildren, [parentId, limit]);
    return rows.map(rowToJob);
  }

  async oldestQueued(now: Date): Promise<{ type: string; age_seconds: number }[]> {
    return this.sql.query(q.JobOldestQueued, [now.toISOString()]);
  }

  /** Deletes one bounded batch of finished jobs; returns how many went. */
  async deleteFinished(state: JobState, before: Date, limit: number): Promise<number> {
    const rows = await this.sql.query(`${q.JobDeleteFinished} returning 1`, [state, before.toISOString(), limit]);
    return rows.length;
  }

  /**
   * Takes or renews a named lease. `tookOver` is set when the lease was taken from another
   * holder whose lease had run out: when it ended.
   */
  async acquireLease(
    name: string,
    holder: string,
    now: Date,
    ttlMs: number,
  ): Promise<{ held: boolean; tookOver?: { from: string; expiredAt: Date } }> {
    const [row] = await this.sql.query<{ previous_holder: string | null; previous_expires_at: number | null }>(q.LeaseAcquire, [
      name,
      holder,
      now.toISOString(),
      new Date(now.getTime() + ttlMs).toISOString(),
    ]);
    if (!row) return { held: false };
    if (row.previous_holder === null || row.previous_holder === holder || row.previous_expires_at === null) return { held: true };
    return { held: true, tookOver: { from: row.previous_holder, expiredAt: new Date(Number(row.previous_expires_at)) } };
  }

  async releaseLease(name: string, holder: string): Promise<void> {
    await this.sql.query(q.LeaseRelease, [name, holder]);
  }
}

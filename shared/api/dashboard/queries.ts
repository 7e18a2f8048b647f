/**
 * What the dashboard reads, gathered in one place. Everything comes through the ledger, the
 * registry and the per-minute counters in job_stats; the one statement of its own is the
 * session's key check. Throughput never scans the jobs table.
 */
import { type Priority, PRIORITIES, priorityName } from "../../jobs/definition";
import type { SqlClient } from "../../ports";
import type { Job, JobState } from "../../queue/job";
import type { Queue } from "../../queue/queue";
import type { RegisteredWorker, WorkerRegistry } from "../../queue/registry";
import { computeScaling, type PoolSignal, type ScalingPolicy } from "../../queue/scaling";
import { StatsSince } from "../../queue/statements";

const MINUTE_MS = 60_000;
const HOUR_MS = 3_600_000;
/** Points of the throughput chart: one a minute over the last hour. */
export const THROUGHPUT_MINUTES = 60;

/** ApiKeyIsLiveAdmin: whether a session's key may still act. $1 key id. */
export const ApiKeyIsLiveAdmin = `select 1 as live from api_keys where id = $1 and is_admin and revoked_at is null`;

/** The states counted live per lane (finished jobs are counted from job_stats instead). */
export const LIVE_STATES = ["queued", "paused", "scheduled", "active", "failed"] as const;
export type LiveState = (typeof LIVE_STATES)[number];
export type LiveCounts = Record<LiveState, number>;

const noCounts = (): LiveCounts => ({ queued: 0, paused: 0, scheduled: 0, active: 0, failed: 0 });

export interface TypeSummary {
  type: string;
  /** Null for a type that still has jobs but left the catalog. */
  pool: string | null;
  total: LiveCounts;
  /** Only the priorities that have a live job, highest first. */
  byPriority: { priority: Priority; counts: LiveCounts }[];
  /** From job_stats: outcomes recorded in the last hour (the same window as GET /v1/queues). */
  completedLastHour: number;
  failedLastHour: number;
  /** Paused for every tenant, and since when. */
  pausedSince: Date | null;
  /** Tenants whose jobs of this type are paused. */
  pausedTenants: { tenantId: string; since: Date }[];
}

export interface ThroughputPoint {
  /** Start of the minute. */
  minute: Date;
  completed: number;
  failed: number;
}

export interface Overview {
  now: Date;
  types: TypeSummary[];
  throughput: ThroughputPoint[];
  workers: RegisteredWorker[];
  silentAfterMs: number;
  pools: PoolSignal[];
  policy: ScalingPolicy;
}

const toDate = (v: unknown): Date => (v instanceof Date ? v : new Date(typeof v === "number" ? v : String(v)));

/** Empty minutes included, oldest first, ending with the current minute. */
export function throughputSeries(
  rows: readonly { minute: unknown; completed: unknown; failed: unknown }[],
  now: Date,
  minutes = THROUGHPUT_MINUTES,
): ThroughputPoint[] {
  const current = Math.floor(now.getTime() / MINUTE_MS) * MINUTE_MS;
  const first = current - (minutes - 1) * MINUTE_MS;
  const points = Array.from({ length: minutes }, (_, i) => ({ minute: new Date(first + i * MINUTE_MS), completed: 0, failed: 0 }));
  for (const r of rows) {
    const at = Math.floor(toDate(r.minute).getTime() / MINUTE_MS) * MINUTE_MS;
    const point = points[(at - first) / MINUTE_MS];
    if (!point) continue;
    point.completed += Number(r.completed);
    point.failed += Number(r.failed);
  }
  return points;
}

export async function loadOverview(queue: Queue, sql: SqlClient, registry: WorkerRegistry, policy: ScalingPolicy): Promise<Overview> {
  const now = queue.clock.now();
  const hourAgo = now.getTime() - HOUR_MS;
  // One read of job_stats serves the chart (aligned minutes) and the last-hour counts (now - 1 h).
  const since = Math.min(hourAgo, Math.floor(now.getTime() / MINUTE_MS) * MINUTE_MS - (THROUGHPUT_MINUTES - 1) * MINUTE_MS);
  const [live, stats, lanes, workers, ages] = await Promise.all([
    queue.ledger.countByTypePriorityState(),
    sql.query<{ type: string; minute: unknown; completed: number; failed: number }>(StatsSince, [new Date(since).toISOString()]),
    queue.pausedLanes(),
    registry.list(),
    queue.ledger.oldestQueued(now),
  ]);
  // The scaling signals from what was just read: counts summed over priorities, live workers only.
  const byTypeState = new Map<string, { type: string; state: string; count: number }>();
  for (const r of live) {
    const k = `${r.type}\u0000${r.state}`;
    const cur = byTypeState.get(k);
    if (cur) cur.count += Number(r.count);
    else byTypeState.set(k, { type: r.type, state: r.state, count: Number(r.count) });
  }
  const pools = computeScaling(queue.catalog, policy, { counts: [...byTypeState.values()], ages, workers });

  const summaries = new Map<string, TypeSummary>();
  const summary = (type: string): TypeSummary => {
    let s = summaries.get(type);
    if (!s) {
      const def = queue.catalog.get(type);
      s = {
        type,
        pool: def?.pool ?? null,
        total: noCounts(),
        byPriority: [],
        completedLastHour: 0,
        failedLastHour: 0,
        pausedSince: null,
        pausedTenants: [],
      };
      summaries.set(type, s);
    }
    return s;
  };
  for (const type of queue.catalog.keys()) summary(type);

  const perPriority = new Map<string, LiveCounts>();
  for (const r of live) {
    if (!(LIVE_STATES as readonly string[]).includes(r.state)) continue;
    const state = r.state as LiveState;
    const s = summary(r.type);
    s.total[state] += Number(r.count);
    const key = `${r.type}\u0000${priorityName(Number(r.priority))}`;
    let counts = perPriority.get(key);
    if (!counts) perPriority.set(key, (counts = noCounts()));
    counts[state] += Number(r.count);
  }
  for (const s of summaries.values()) {
    for (const priority of PRIORITIES) {
      const counts = perPriority.get(`${s.type}\u0000${priority}`);
      if (counts) s.byPriority.push({ priority, counts });
    }
  }
  for (const r of stats) {
    if (toDate(r.minute).getTime() < hourAgo) continue;
    const s = summary(r.type);
    s.completedLastHour += Number(r.completed);
    s.failedLastHour += Number(r.failed);
  }
  for (const lane of lanes) {
    const s = summary(lane.type);
    if (lane.tenantId === null) s.pausedSince = lane.pausedAt;
    else s.pausedTenants.push({ tenantId: lane.tenantId, since: lane.pausedAt });
  }

  const catalogTypes = [...queue.catalog.keys()];
  const extra = [...summaries.keys()].filter((t) => !queue.catalog.has(t)).sort();
  return {
    now,
    types: [...catalogTypes, ...extra].map((t) => summaries.get(t)!),
    throughput: throughputSeries(stats, now),
    workers,
    silentAfterMs: registry.silentAfterMs,
    pools,
    policy,
  };
}

export interface JobFilter {
  type?: string;
  tenant?: string;
  state?: JobState;
  /** List jobs older than this id (the cursor). */
  beforeId?: string;
}

export interface JobPage {
  state: JobState;
  jobs: Job[];
  /** The id to continue below, or null on the last page. */
  nextBeforeId: string | null;
}

/** One page of a state's jobs, newest first; one row more than the page tells whether another follows. */
export async function listJobs(queue: Queue, state: JobState, filter: JobFilter, limit: number): Promise<JobPage> {
  const rows = await queue.list({
    tenantId: filter.tenant ?? null,
    type: filter.type,
    state,
    beforeId: filter.beforeId,
    limit: limit + 1,
  });
  const jobs = rows.slice(0, limit);
  return { state, jobs, nextBeforeId: rows.length > limit ? (jobs.at(-1)?.id ?? null) : null };
}

/** Whether a session's API key is still a live admin key. */
export async function isLiveAdminKey(sql: SqlClient, keyId: string): Promise<boolean> {
  const rows = await sql.query(ApiKeyIsLiveAdmin, [keyId]);
  return rows.length > 0;
}

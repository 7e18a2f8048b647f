/**
 * GET /metrics: counters and durations from job_stats (so every runtime's workers count, not
 * just this process), and live queue gauges from the ledger. Every catalog type appears in
 * every family, with 0 when nothing happened, so dashboards and alerts never see gaps.
 */
import type { SqlClient } from "../ports";
import type { Queue } from "../queue/queue";
import { StatsTotals } from "../queue/statements";
import { DURATION_BUCKETS } from "../queue/stats";
import type { WorkerRegistry } from "../queue/registry";
import { computeScaling, readScalingInputs, type ScalingPolicy } from "../queue/scaling";
import { Exposition } from "./prometheus";

/** The waiting and running states queue_depth reports (finished jobs are not depth). */
export const DEPTH_STATES = ["queued", "scheduled", "paused", "active", "failed"] as const;

interface TotalsRow {
  type: string;
  completed: number | string;
  failed: number | string;
  retried: number | string;
  duration_sum: number | string;
  buckets: (number | string)[] | string | null;
}

/** A bigint[]/float8[] as the driver gives it: an array, or Postgres' text form "{1,2,3}". */
function toNumbers(v: TotalsRow["buckets"]): number[] {
  if (v === null) return [];
  const items = Array.isArray(v) ? v : v.replace(/^\{|\}$/g, "").split(",").filter((s) => s !== "");
  return items.map(Number);
}

export async function renderMetrics(queue: Queue, sql: SqlClient, registry: WorkerRegistry, policy: ScalingPolicy): Promise<string> {
  const [totals, inputs, guards] = await Promise.all([
    sql.query<TotalsRow>(StatsTotals),
    readScalingInputs(queue, registry),
    // Guards not clear: a few rows, read through their partial index.
    sql.query<{ state: string; n: number }>("select state, count(*)::int as n from sending_guards where state <> 'clear' group by state"),
  ]);
  const { counts: depth, ages: oldest, workers } = inputs;
  const pools = computeScaling(queue.catalog, policy, inputs);
  // Catalog types first and always; types no longer in the catalog still show while they have data.
  const types = [...queue.catalog.keys()];
  const extra = new Set([...totals, ...depth, ...oldest].map((r) => r.type).filter((t) => !queue.catalog.has(t)));
  types.push(...[...extra].sort());

  const byType = new Map(totals.map((r) => [r.type, r]));
  const out = new Exposition();
  const counters = [
    ["jobs_completed_total", "completed", "Jobs that completed successfully."],
    ["jobs_failed_total", "failed", "Jobs that failed for good (the dead letter)."],
    ["jobs_retried_total", "retried", "Failed attempts that were scheduled to run again."],
  ] as const;
  for (const [name, column, help] of counters) {
    out.family(name, "counter", help);
    for (const type of types) out.sample(name, { type }, Number(byType.get(type)?.[column] ?? 0));
  }

  out.family("job_duration_seconds", "histogram", "Run time of job attempts (completed, failed and retried), in seconds.");
  for (const type of types) {
    const row = byType.get(type);
    out.histogram(
      "job_duration_seconds",
      { type },
      DURATION_BUCKETS,
      row ? toNumbers(row.buckets) : [],
      Number(row?.duration_sum ?? 0),
    );
  }

  const depthOf = new Map(depth.map((r) => [`${r.type}\u0000${r.state}`, Number(r.count)]));
  out.family("queue_depth", "gauge", "Jobs per type and state, now.");
  for (const type of types) {
    for (const state of DEPTH_STATES) out.sample("queue_depth", { type, state }, depthOf.get(`${type}\u0000${state}`) ?? 0);
  }

  const ageOf = new Map(oldest.map((r) => [r.type, Number(r.age_seconds)]));
  out.family("queue_oldest_age_seconds", "gauge", "Age of the oldest queued job per type, in seconds (0 when none).");
  for (const type of types) out.sample("queue_oldest_age_seconds", { type }, Math.max(0, ageOf.get(type) ?? 0));

  // Scaling signals, per pool, for KEDA or a Prometheus rule (the same figures as GET /v1/scaling).
  out.family("pool_queue_depth", "gauge", "Jobs waiting to run (queued) in the pool's types, now.");
  for (const p of pools) out.sample("pool_queue_depth", { pool: p.pool }, p.queueDepth);
  out.family("pool_oldest_age_seconds", "gauge", "Age of the oldest waiting job in the pool's types, in seconds.");
  for (const p of pools) out.sample("pool_oldest_age_seconds", { pool: p.pool }, p.oldestWaitingSeconds);
  out.family("pool_active_jobs", "gauge", "Jobs running in the pool's types, now.");
  for (const p of pools) out.sample("pool_active_jobs", { pool: p.pool }, p.active);
  out.family("pool_scale_up", "gauge", "1 when the scaling policy recommends more workers for the pool, else 0.");
  for (const p of pools) out.sample("pool_scale_up", { pool: p.pool }, p.recommendation === "scale_up" ? 1 : 0);
  out.family("worker_memory_usage_ratio", "gauge", "Resident memory over the memory available, per live worker process and pool (0-1).");
  for (const w of workers) {
    if (w.memoryRatio === undefined) continue;
    for (const pool of w.pools) out.sample("worker_memory_usage_ratio", { pool, worker: w.id }, w.memoryRatio);
  }
  // Sending guards (shared/email/sending-guards.ts): tenants whose campaigns the platform paused, and those counting again after resuming.
  out.family("sending_guards", "gauge", "Tenants whose sending guard is tripped (campaigns paused) or acknowledged (resumed, rates counted since), now.");
  for (const state of ["tripped", "acknowledged"]) out.sample("sending_guards", { state }, guards.find((g) => g.state === state)?.n ?? 0);
  return out.toString();
}

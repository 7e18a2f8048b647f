import { poolsOf } from "../jobs/catalog";
import type { JobType } from "../jobs/definition";
import { POOLS } from "../jobs/definition";
import type { Queue } from "./queue";
import type { RegisteredWorker, WorkerRegistry } from "./registry";

/**
 * The source document's scaling policy, with its thresholds configurable: scale the email
 * workers up when their queue passes 1,000 waiting jobs, the import workers when their memory
 * use passes 80%.
 */
export interface ScalingPolicy {
  /** Waiting jobs above which a pool should scale up. Defaults to 1,000 (the email pool's rule, applied to every pool). */
  queueDepth: number;
  /** Memory use (0-1) above which the import pool should scale up. Defaults to 0.8. */
  importMemoryRatio: number;
}

export const defaultScalingPolicy: ScalingPolicy = { queueDepth: 1_000, importMemoryRatio: 0.8 };

export interface PoolSignal {
  /** A built-in pool, or one a type added through the library names. */
  pool: string;
  types: string[];
  /** Jobs waiting to run now (queued). */
  queueDepth: number;
  /** Age of the oldest waiting job, in seconds (0 when none waits). */
  oldestWaitingSeconds: number;
  active: number;
  /** Live workers running this pool, and their slots. */
  workers: number;
  concurrency: number;
  /** The highest memory use among the pool's live workers (0-1), when they report it. */
  memoryUsageRatio: number | null;
  recommendation: "scale_up" | "hold";
  reasons: string[];
}

/** What the signals are computed from; callers that already read it (/metrics) pass it in. */
export interface ScalingInputs {
  counts: { type: string; state: string; count: number }[];
  ages: { type: string; age_seconds: number }[];
  /** Workers heard from within the registry's silence threshold. */
  workers: RegisteredWorker[];
}

export async function readScalingInputs(queue: Queue, registry: WorkerRegistry): Promise<ScalingInputs> {
  const [counts, ages, workers] = await Promise.all([
    queue.ledger.countByTypeAndState(),
    queue.ledger.oldestQueued(queue.clock.now()),
    registry.list(registry.silentAfterMs),
  ]);
  return { counts, ages, workers };
}

/** Per pool (the built-in ones, then any other the catalog names): depth, age, activity, memory, and what the policy recommends. */
export async function scalingSignals(queue: Queue, registry: WorkerRegistry, policy: ScalingPolicy = defaultScalingPolicy): Promise<PoolSignal[]> {
  return computeScaling(queue.catalog, policy, await readScalingInputs(queue, registry));
}

export function computeScaling(catalog: ReadonlyMap<string, JobType>, policy: ScalingPolicy, { counts, ages, workers }: ScalingInputs): PoolSignal[] {
  const pools = [...POOLS, ...poolsOf(catalog).filter((p) => !(POOLS as readonly string[]).includes(p))];
  return pools.map((pool) => {
    const types = [...catalog.values()].filter((t) => t.pool === pool).map((t) => t.type);
    const count = (state: string) =>
      counts.filter((c) => types.includes(c.type) && c.state === state).reduce((n, c) => n + Number(c.count), 0);
    const queueDepth = count("queued");
    const active = count("active");
    const oldestWaitingSeconds = Math.max(0, ...ages.filter((a) => types.includes(a.type)).map((a) => Number(a.age_seconds)));
    const mine = workers.filter((w) => !w.silent && w.pools.includes(pool));
    const ratios = mine.map((w) => w.memoryRatio).filter((r): r is number => r !== undefined);
    const memoryUsageRatio = ratios.length ? Math.max(...ratios) : null;
    const reasons: string[] = [];
    if (queueDepth > policy.queueDepth) reasons.push(`queue depth ${queueDepth} > ${policy.queueDepth}`);
    if (pool === "import" && memoryUsageRatio !== null && memoryUsageRatio > policy.importMemoryRatio) {
      reasons.push(`memory use ${(memoryUsageRatio * 100).toFixed(0)}% > ${(policy.importMemoryRatio * 100).toFixed(0)}%`);
    }
    return {
      pool,
      types,
      queueDepth,
      oldestWaitingSeconds,
      active,
      workers: mine.length,
      // The pool's own slots; a worker whose pools share one limit (an edge drain) counts it whole.
      concurrency: mine.reduce((n, w) => n + (w.poolConcurrency?.[pool] ?? w.concurrency), 0),
      memoryUsageRatio,
      recommendation: reasons.length > 0 ? "scale_up" : "hold",
      reasons,
    };
  });
}

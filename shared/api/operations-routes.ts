/**
 * Operations for the people who run the system (admin keys only):
 *   GET /v1/scaling  per pool: depth, oldest wait, activity, memory, and the policy's recommendation
 *   GET /v1/workers  the worker registry, with the workers gone silent marked
 */
import { Hono } from "hono";
import type { Queue } from "../queue/queue";
import type { WorkerRegistry } from "../queue/registry";
import { type ScalingPolicy, scalingSignals } from "../queue/scaling";
import { type ApiEnv, assertAdmin } from "./auth";
import { parseQuery } from "./request-input";
import { tenantQuerySchema } from "./schemas";

export function operationsRoutes(queue: Queue, registry: WorkerRegistry, policy: ScalingPolicy): Hono<ApiEnv> {
  const app = new Hono<ApiEnv>();

  app.get("/scaling", async (c) => {
    assertAdmin(c.get("principal"));
    parseQuery(c, tenantQuerySchema);
    const pools = await scalingSignals(queue, registry, policy);
    return c.json({
      policy: { queue_depth: policy.queueDepth, import_memory_ratio: policy.importMemoryRatio },
      pools: pools.map((p) => ({
        pool: p.pool,
        types: p.types,
        queue_depth: p.queueDepth,
        oldest_waiting_seconds: p.oldestWaitingSeconds,
        active: p.active,
        workers: p.workers,
        concurrency: p.concurrency,
        memory_usage_ratio: p.memoryUsageRatio,
        recommendation: p.recommendation,
        reasons: p.reasons,
      })),
    });
  });

  app.get("/workers", async (c) => {
    assertAdmin(c.get("principal"));
    parseQuery(c, tenantQuerySchema);
    const workers = await registry.list();
    return c.json({
      workers: workers.map((w) => ({
        id: w.id,
        runtime: w.runtime,
        pools: w.pools,
        concurrency: w.concurrency,
        in_flight: w.inFlight,
        memory_rss_bytes: w.memoryRss ?? null,
        memory_usage_ratio: w.memoryRatio ?? null,
        intake_paused: w.intakePaused,
        started_at: w.startedAt.toISOString(),
        heartbeat_at: w.heartbeatAt.toISOString(),
        silent: w.silent,
      })),
    });
  });

  return app;
}

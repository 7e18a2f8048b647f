/**
 * Operations for the people who run the system (admin keys only):
 *   GET /v1/scaling  per pool: depth, oldest wait, activity, memory, and the policy's recommendation
 *   GET /v1/workers  the worker registry, with the workers gone silent marked
 */
import { Hono } from "hono";
import { z } from "zod";
import { POOLS } from "../jobs/definition";
import type { Queue } from "../queue/queue";
import type { WorkerRegistry } from "../queue/registry";
import { type ScalingPolicy, scalingSignals } from "../queue/scaling";
import { type ApiEnv, assertAdmin } from "./auth";
import { parseQuery } from "./request-input";
import { tenantQuerySchema } from "./schemas";

const pool = z.enum(POOLS as [string, ...string[]]);

export const scalingSchema = z.object({
  policy: z.object({
    queue_depth: z.number().describe("Waiting jobs in a pool above which it should scale up"),
    import_memory_ratio: z.number().describe("Memory use of the import pool's workers (0-1) above which it should scale up"),
  }),
  pools: z.array(
    z.object({
      pool,
      types: z.array(z.string()),
      queue_depth: z.number().int().describe("Jobs waiting to run now"),
      oldest_waiting_seconds: z.number(),
      active: z.number().int(),
      workers: z.number().int().describe("Live workers running this pool"),
      concurrency: z.number().int().describe("Their slots"),
      memory_usage_ratio: z.number().nullable(),
      recommendation: z.enum(["scale_up", "hold"]),
      reasons: z.array(z.string()),
    }),
  ),
});

export const workersSchema = z.object({
  workers: z.array(
    z.object({
      id: z.string(),
      runtime: z.enum(["node", "edge"]),
      pools: z.array(z.string()),
      concurrency: z.number().int(),
      in_flight: z.number().int(),
      memory_rss_bytes: z.number().nullable(),
      memory_usage_ratio: z.number().nullable(),
      intake_paused: z.array(z.string()).describe("Pools that stopped taking jobs for now (memory pressure)"),
      started_at: z.iso.datetime({ offset: true }),
      heartbeat_at: z.iso.datetime({ offset: true }),
      silent: z.boolean().describe("No heartbeat for a while: probably gone"),
    }),
  ),
});

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

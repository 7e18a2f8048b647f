/**
 * Operations for the people who run the system (admin keys only):
 *   GET /v1/scaling  per pool: depth, oldest wait, activity, memory, and the policy's recommendation
 *   GET /v1/workers  the worker registry, with the workers gone silent marked
 *   GET /v1/schedules  the cron schedules of the catalog, their last and next slots, and the last run's job
 */
import { Hono } from "hono";
import { z } from "zod";
import { SYSTEM_TENANT } from "../jobs/catalog";
import { POOLS } from "../jobs/definition";
import { cronIdempotencyKey, cronSchedules, previousSlot } from "../queue/cron";
import { JOB_STATES } from "../queue/job";
import type { Queue } from "../queue/queue";
import type { WorkerRegistry } from "../queue/registry";
import { type ScalingPolicy, scalingSignals } from "../queue/scaling";
import { type ApiEnv, assertAdmin } from "./auth";
import { describeRoute, json, problems, queryParameters } from "./openapi-route";
import { parseQuery } from "./request-input";
import { tenantQuerySchema } from "./schemas";

const pool = z.string().describe(`${POOLS.join(", ")}, or a pool that a job type added through the library names`);

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

const time = z.iso.datetime({ offset: true });

export const schedulesSchema = z.object({
  schedules: z.array(
    z.object({
      type: z.string().describe("The job type the scheduler enqueues"),
      schedule: z.string().describe("Its 5-field cron expression, as the catalog declares it"),
      timezone: z.literal("UTC"),
      payload: z.record(z.string(), z.unknown()).describe("What each run is enqueued with"),
      previous_slot: time.nullable().describe("The latest time it was due"),
      next_slot: time.nullable().describe("The next time it is due"),
      previous_job: z
        .object({ id: z.string(), state: z.enum(JOB_STATES), created_at: time, finished_at: time.nullable() })
        .nullable()
        .describe(
          "The job enqueued for previous_slot (one a slot, its idempotency key cron:<slot>); null before the scheduler has enqueued it, " +
            "when the slot passed while no scheduler ran for over an hour, or after retention removed it",
        ),
      paused: z.boolean().describe("Its type is paused: runs are still enqueued, and wait until it is resumed"),
    }),
  ),
});

/** The declaration of an admin-only read: the same tag, query and problems for each. */
const adminRead = (operationId: string, summary: string, schema: z.ZodType, what: string) =>
  describeRoute(() => ({
    operationId,
    tags: ["ops"],
    summary,
    parameters: queryParameters(tenantQuerySchema),
    responses: { 200: json(schema, what), ...problems("Forbidden") },
  }));

export function operationsRoutes(queue: Queue, registry: WorkerRegistry, policy: ScalingPolicy): Hono<ApiEnv> {
  const app = new Hono<ApiEnv>();

  const scaling = "Scaling signals per pool (admin): depth, oldest wait, activity, memory, and the recommendation";
  app.get("/scaling", adminRead("getScaling", scaling, scalingSchema, "The policy and each pool's signals"), async (c) => {
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

  const schedules = cronSchedules(queue.catalog);
  const scheduleSummary = "The cron schedules (admin): each type the scheduler enqueues on a schedule, its last and next slot, and the last slot's job";
  app.get("/schedules", adminRead("listSchedules", scheduleSummary, schedulesSchema, "Every cron schedule of the catalog"), async (c) => {
    assertAdmin(c.get("principal"));
    parseQuery(c, tenantQuerySchema);
    const now = queue.clock.now();
    const slots = schedules.map((s) => previousSlot(s, now));
    const [jobs, paused] = await Promise.all([
      queue.ledger.getByIdempotencyKeys(
        schedules.flatMap((s, i) => (slots[i] ? [{ tenantId: SYSTEM_TENANT, type: s.type, key: cronIdempotencyKey(slots[i]) }] : [])),
      ),
      queue.pausedLanes(),
    ]);
    return c.json({
      schedules: schedules.map((s, i) => {
        const slot = slots[i];
        const job = slot && jobs.find((j) => j.type === s.type && j.idempotencyKey === cronIdempotencyKey(slot));
        return {
          type: s.type,
          schedule: s.schedule,
          timezone: "UTC" as const,
          payload: s.payload as Record<string, unknown>,
          previous_slot: slot?.toISOString() ?? null,
          next_slot: s.cron.nextRun(now)?.toISOString() ?? null,
          previous_job: job
            ? { id: job.id, state: job.state, created_at: job.createdAt.toISOString(), finished_at: job.finishedAt?.toISOString() ?? null }
            : null,
          paused: paused.some((p) => p.type === s.type && (p.tenantId === null || p.tenantId === SYSTEM_TENANT)),
        };
      }),
    });
  });

  const workerList = "The worker registry (admin), the workers gone silent marked";
  app.get("/workers", adminRead("listWorkers", workerList, workersSchema, "Every registered worker"), async (c) => {
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

/**
 * /v1/queues: one row per job type of the catalog with its live counts.
 *
 * Admin keys get system-wide numbers: live counts from the ledger and the last hour's
 * completed/failed counts from job_stats (counted when the outcome was recorded). Tenant keys
 * get their own tenant's numbers only; job_stats has no tenant, so their last-hour counts are
 * the tenant's jobs that finished completed/failed in the last hour (jobs removed by retention
 * meanwhile, or retried since, are not counted).
 */
import { Hono } from "hono";
import type { SqlClient } from "../ports";
import type { Queue } from "../queue/queue";
import { StatsSince } from "../queue/statements";
import { type ApiEnv, assertAdmin } from "./auth";
import { ApiError } from "./problem";
import { parseBody, parseQuery } from "./request-input";
import { describeRoute, json, jsonBody, pathParam, problems, queryParameters } from "./openapi-route";
import { laneRequestSchema, laneResultSchema, queueListSchema, retryFailedResultSchema, tenantQuerySchema } from "./schemas";

const HOUR_MS = 3_600_000;

/**
 * TenantQueueCounts: one tenant's counts by type. One branch per state so each reads its
 * state's partial index rather than every job the tenant ever had. $1 tenant, $2 since.
 */
export const TenantQueueCounts = `
select type, 'queued' as state, count(*)::int as count from jobs where state = 'queued' and tenant_id = $1 group by type
union all
select type, 'scheduled', count(*)::int from jobs where state = 'scheduled' and tenant_id = $1 group by type
union all
select type, 'paused', count(*)::int from jobs where state = 'paused' and tenant_id = $1 group by type
union all
select type, 'active', count(*)::int from jobs where state = 'active' and tenant_id = $1 group by type
union all
select type, 'failed', count(*)::int from jobs where state = 'failed' and tenant_id = $1 group by type
union all
select type, 'completed_last_hour', count(*)::int from jobs
  where state = 'completed' and finished_at >= $2 and tenant_id = $1 group by type
union all
select type, 'failed_last_hour', count(*)::int from jobs
  where state = 'failed' and finished_at >= $2 and tenant_id = $1 group by type`;

type Counter = "queued" | "scheduled" | "paused" | "active" | "failed" | "completed_last_hour" | "failed_last_hour";
type Counts = Map<string, Record<Counter, number>>;

const zero = (): Record<Counter, number> => ({
  queued: 0,
  scheduled: 0,
  paused: 0,
  active: 0,
  failed: 0,
  completed_last_hour: 0,
  failed_last_hour: 0,
});

function add(counts: Counts, type: string, counter: string, n: number): void {
  let row = counts.get(type);
  if (!row) counts.set(type, (row = zero()));
  if (counter in row) row[counter as Counter] += Number(n);
}

async function systemCounts(queue: Queue, sql: SqlClient): Promise<Counts> {
  const since = new Date(queue.clock.now().getTime() - HOUR_MS);
  const [live, recent] = await Promise.all([
    queue.ledger.countByTypeAndState(),
    sql.query<{ type: string; completed: number; failed: number }>(StatsSince, [since.toISOString()]),
  ]);
  const counts: Counts = new Map();
  for (const r of live) add(counts, r.type, r.state, r.count);
  for (const r of recent) {
    add(counts, r.type, "completed_last_hour", r.completed);
    add(counts, r.type, "failed_last_hour", r.failed);
  }
  return counts;
}

async function tenantCounts(queue: Queue, sql: SqlClient, tenantId: string): Promise<Counts> {
  const since = new Date(queue.clock.now().getTime() - HOUR_MS);
  const rows = await sql.query<{ type: string; state: string; count: number }>(TenantQueueCounts, [tenantId, since.toISOString()]);
  const counts: Counts = new Map();
  for (const r of rows) add(counts, r.type, r.state, r.count);
  return counts;
}

const tags = ["queues"];

export function queuesRoutes(queue: Queue, sql: SqlClient): Hono<ApiEnv> {
  const app = new Hono<ApiEnv>();
  const typeParams = [
    pathParam("type", "A job type of the catalog", { type: "string", enum: [...queue.catalog.keys()] }),
    ...queryParameters(tenantQuerySchema),
  ];

  app.get(
    "/",
    describeRoute(() => ({
      operationId: "listQueues",
      tags,
      summary: "Counts per job type (a tenant key: its own jobs only)",
      parameters: queryParameters(tenantQuerySchema),
      responses: { 200: json(queueListSchema, "One entry per job type") },
    })),
    async (c) => {
      const principal = c.get("principal");
      parseQuery(c, tenantQuerySchema);
      const [counts, pausedLanes] = await Promise.all([
        principal.admin ? systemCounts(queue, sql) : tenantCounts(queue, sql, principal.tenantId!),
        queue.pausedLanes(),
      ]);
      const queues = [...queue.catalog.values()].map((def) => {
        const n = counts.get(def.type) ?? zero();
        const lanes = pausedLanes.filter((l) => l.type === def.type);
        return {
          type: def.type,
          pool: def.pool,
          // Paused for every tenant, or (for a tenant key) for this tenant; admins also see which tenants are paused.
          paused: lanes.some((l) => l.tenantId === null || l.tenantId === principal.tenantId),
          ...(principal.admin ? { paused_tenants: lanes.flatMap((l) => (l.tenantId ? [l.tenantId] : [])) } : {}),
          waiting: n.queued,
          paused_jobs: n.paused,
          scheduled: n.scheduled,
          active: n.active,
          failed: n.failed,
          completed_last_hour: n.completed_last_hour,
          failed_last_hour: n.failed_last_hour,
        };
      });
      return c.json({ queues });
    },
  );

  app.post(
    "/:type/retry-failed",
    describeRoute(() => ({
      operationId: "retryFailed",
      tags,
      summary: "Run every failed job of a type again (admin)",
      parameters: typeParams,
      responses: { 200: json(retryFailedResultSchema, "How many jobs run again"), ...problems("Forbidden", "NotFound") },
    })),
    async (c) => {
      assertAdmin(c.get("principal"));
      parseQuery(c, tenantQuerySchema);
      const type = c.req.param("type");
      if (!queue.catalog.has(type)) throw new ApiError(404, `no job type "${type}"`);
      return c.json({ type, retried: await queue.retryFailed(type) });
    },
  );

  // Pause and resume a type, or one tenant's jobs of it ({"tenant_id": "..."}). Admin only.
  for (const action of ["pause", "resume"] as const) {
    const declaration = describeRoute(() => ({
      operationId: `${action}Queue`,
      tags,
      summary: `${action === "pause" ? "Pause" : "Resume"} a job type, or one tenant's jobs of it (admin)`,
      parameters: typeParams,
      requestBody: jsonBody(laneRequestSchema, { required: false }),
      responses: {
        200: json(laneResultSchema, "The lane's new state and how many jobs it moved"),
        ...problems("Forbidden", "NotFound", "PayloadTooLarge", "UnsupportedMediaType"),
      },
    }));
    app.post(`/:type/${action}`, declaration, async (c) => {
      assertAdmin(c.get("principal"));
      parseQuery(c, tenantQuerySchema);
      const type = c.req.param("type");
      if (!queue.catalog.has(type)) throw new ApiError(404, `no job type "${type}"`);
      const body = await parseBody(c, laneRequestSchema, { optional: true });
      const tenant = body.tenant_id;
      const { jobs } = action === "pause" ? await queue.pause(type, tenant ?? null) : await queue.resume(type, tenant ?? null);
      return c.json({ type, tenant_id: tenant ?? null, paused: action === "pause", jobs });
    });
  }

  return app;
}

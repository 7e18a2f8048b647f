import { catalog } from "../../shared/jobs/catalog";
import type { JobType } from "../../shared/jobs/definition";
import type { Redis, Sql } from "../../shared/ports";
import { createEngine, type Engine } from "../../shared/queue/engine";
import type { Handler } from "../../shared/queue/handler";
import { Scheduler } from "../../shared/queue/scheduler";
import { WorkerPool } from "../../shared/queue/worker";
import { createIoRedis } from "../../workers/node/redis";
import { createTestDatabase, randomId, REDIS_URL } from "./services";

export type DriverName = "postgres" | "redis";
export const DRIVERS: DriverName[] = ["postgres", "redis"];

/**
 * The catalog with short backoffs and few attempts, so retry tests take milliseconds; and
 * without the built-in cron schedules unless `crons` is set. A scheduler on the real clock
 * enqueues maintenance.cleanup's daily 03:17 UTC slot for up to an hour after it (a missed
 * slot's catch-up), so a test that counts jobs failed whenever it ran between 03:17 and 04:17
 * UTC (a CI run at 03:19 failed seven tests across four files).
 */
export function fastCatalog(overrides: Partial<JobType> = {}, options: { crons?: boolean } = {}): Map<string, JobType> {
  return new Map(
    [...catalog.entries()].map(([k, v]) => [
      k,
      { ...v, ...(options.crons ? {} : { cron: undefined }), backoff: { baseMs: 40, maxMs: 2_000 }, maxAttempts: 3, ...overrides },
    ]),
  );
}

export interface Harness {
  engine: Engine;
  sql: Sql;
  redis?: Redis;
  prefix: string;
  pool(handlers: Handler[], opts?: { concurrency?: number; leaseMs?: number; name?: string }): WorkerPool;
  scheduler(): Scheduler;
  close(): Promise<void>;
}

/** A fresh database (and Redis key prefix) with an engine on the chosen driver. */
export async function createHarness(driver: DriverName, label: string, catalogOverride?: Map<string, JobType>): Promise<Harness> {
  const db = await createTestDatabase(`${label}_${driver}`);
  const prefix = `test:${randomId()}:{jobs}:`;
  const redis = driver === "redis" ? createIoRedis(REDIS_URL) : undefined;
  const engine = createEngine({ sql: db.sql, redis, catalog: catalogOverride ?? fastCatalog(), redisOptions: { prefix } });
  await engine.dispatcher.start();
  if (driver === "redis") await engine.dispatcher.reconcile({ force: true });
  const pools: WorkerPool[] = [];
  const schedulers: Scheduler[] = [];
  return {
    engine,
    sql: db.sql,
    redis,
    prefix,
    pool(handlers, opts = {}) {
      const p = new WorkerPool({
        name: opts.name ?? "test",
        handlers,
        concurrency: opts.concurrency ?? 10,
        queue: engine.queue,
        stats: engine.stats,
        workerId: `test-${randomId(3)}`,
        leaseMs: opts.leaseMs ?? 30_000,
        idleWaitMs: 200,
      });
      pools.push(p);
      return p;
    },
    scheduler() {
      const s = new Scheduler({ queue: engine.queue, holderId: `sched-${randomId(3)}`, stats: engine.stats });
      schedulers.push(s);
      return s;
    },
    async close() {
      await Promise.all(schedulers.map((s) => s.stop()));
      await Promise.all(pools.map((p) => p.stop(1_000)));
      await engine.dispatcher.close();
      if (redis) {
        const keys = (await redis.pipeline([["KEYS", `${prefix}*`]]))[0] as string[];
        if (keys.length) await redis.pipeline([["DEL", ...keys]]);
        await redis.close();
      }
      await db.drop();
    },
  };
}

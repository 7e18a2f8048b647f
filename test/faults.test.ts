/**
 * Crash and fault tests with real processes: worker processes (test/fixtures/worker-process.ts,
 * the Node entry with recording handlers) that are SIGKILLed or SIGTERMed mid-work, and
 * throwaway redis-servers that are flushed or killed under them. Each test has its own database
 * and Redis key prefix; every wait polls the ledger (or test_runs, where the handlers record
 * each run with the pid that ran it).
 */
import { afterAll, afterEach, describe, expect, it } from "vitest";
import type { Redis, Sql } from "../shared/ports";
import { createEngine, type Engine } from "../shared/queue/engine";
import type { EnqueueInput } from "../shared/queue/queue";
import { createIoRedis } from "../workers/node/redis";
import { DRIVERS, type DriverName } from "./support/engine";
import {
  cleanupProcesses,
  type RedisServer,
  startRedisServer,
  startWorker,
  takeOutputs,
} from "./support/processes";
import { createTestDatabase, randomId, waitFor } from "./support/services";

type TestDatabase = Awaited<ReturnType<typeof createTestDatabase>>;

const PEPPER = "faults-test-pepper-0123456789";
const ADMIN_KEY = `pmk_admin_faults_${randomId(12)}`;

// ---------------------------------------------------------------------------------------------
// Per-test resources, all released in afterEach (and afterAll, should a hook itself fail).
// ---------------------------------------------------------------------------------------------

const databases: TestDatabase[] = [];
const redisServers: RedisServer[] = [];
const closers: (() => Promise<void>)[] = [];

async function newDatabase(label: string): Promise<TestDatabase> {
  const db = await createTestDatabase(label);
  databases.push(db);
  return db;
}

async function newRedisServer(): Promise<RedisServer> {
  const server = await startRedisServer();
  redisServers.push(server);
  return server;
}

/** The library API in this test process, on the same database, Redis and prefix as the workers. */
function libraryEngine(db: TestDatabase, redisUrl?: string, prefix?: string): { engine: Engine; redis?: Redis } {
  const redis = redisUrl ? createIoRedis(redisUrl) : undefined;
  const engine = createEngine({ sql: db.sql, redis, redisOptions: { prefix } });
  closers.push(async () => {
    await engine.dispatcher.close();
    await redis?.close();
  });
  return { engine, redis };
}

async function releaseAll(): Promise<void> {
  await cleanupProcesses();
  for (const close of closers.splice(0)) await close().catch(() => {});
  for (const server of redisServers.splice(0)) await server.stop().catch(() => {});
  for (const db of databases.splice(0)) await db.drop().catch(() => {});
}

afterEach(async (ctx) => {
  const outputs = takeOutputs();
  if (ctx.task.result?.state === "fail") process.stderr.write(`\n===== process output of "${ctx.task.name}" =====\n${outputs}\n`);
  await releaseAll();
});
afterAll(releaseAll);

// ---------------------------------------------------------------------------------------------
// Helpers.
// ---------------------------------------------------------------------------------------------

const newPrefix = () => `faults:${randomId(4)}:{jobs}:`;

/** Settings of a worker process: small connection pools, since several run at once on one Postgres. */
function workerEnv(db: TestDatabase, extra: Record<string, string | number | undefined> = {}) {
  return {
    DATABASE_URL: db.url,
    DATABASE_POOL_SIZE: 4,
    API_KEY_PEPPER: PEPPER,
    ROLE: "worker",
    POOLS: "email",
    EMAIL_CONCURRENCY: 10,
    LOG_LEVEL: "info",
    ...extra,
  };
}

function driverEnv(driver: DriverName, redis: RedisServer | undefined, prefix: string) {
  return driver === "redis" ? { REDIS_URL: redis!.url, REDIS_PREFIX: prefix } : {};
}

const mail = (n: number, variables: Record<string, number> = {}): EnqueueInput => ({
  type: "email.send",
  tenantId: "t1",
  payload: { recipient: `user${n}@example.com`, template_id: "tpl_1", variables },
});

interface JobRow {
  id: string;
  state: string;
  attempt: number;
  worker_id: string | null;
  last_error: { name?: string } | null;
}
interface RunRow {
  job_id: string;
  pid: number;
  attempt: number;
  finished: boolean;
}

const jobRows = (sql: Sql, ids: readonly string[]) =>
  sql.query<JobRow>(
    `select id::text as id, state::text as state, attempt, worker_id, last_error from jobs where id = any($1::bigint[]) order by id`,
    [ids],
  );

const runsOf = (sql: Sql, ids: readonly string[]) =>
  sql.query<RunRow>(
    `select job_id::text as job_id, pid, attempt, finished_at is not null as finished from test_runs
     where job_id = any($1::bigint[]) order by test_runs.job_id, test_runs.started_at`,
    [ids],
  );

const countWhere = async (sql: Sql, where: string, params: unknown[] = []): Promise<number> => {
  const [row] = await sql.query<{ n: number }>(`select count(*)::int as n from jobs where ${where}`, params);
  return row!.n;
};

/** True once every job is in one of the states. */
const allIn = async (sql: Sql, ids: readonly string[], states: readonly string[]) =>
  (await jobRows(sql, ids)).every((j) => states.includes(j.state));

/** Enqueues one job through the process's HTTP API with the admin key; returns the status and the job id. */
async function enqueueOverHttp(url: string, n: number): Promise<{ status: number; id: string }> {
  const res = await fetch(`${url}/v1/jobs`, {
    method: "POST",
    headers: { authorization: `Bearer ${ADMIN_KEY}`, "content-type": "application/json" },
    body: JSON.stringify({
      type: "email.send",
      tenant_id: "t1",
      payload: { recipient: `http${n}@example.com`, template_id: "tpl_1" },
    }),
  });
  const body = (await res.json()) as { id?: string };
  return { status: res.status, id: String(body.id) };
}

// ---------------------------------------------------------------------------------------------
// a. A worker SIGKILLed mid-job.
// ---------------------------------------------------------------------------------------------

describe.each(DRIVERS)("a worker process SIGKILLed mid-job (%s driver)", (driver) => {
  it("loses its lease; the job runs again in another process and completes on attempt 2", async () => {
    const db = await newDatabase(`faults_kill_${driver}`);
    const redis = driver === "redis" ? await newRedisServer() : undefined;
    const prefix = newPrefix();
    const env = workerEnv(db, { LEASE_MS: 1_500, SCHEDULER_INTERVAL_MS: 200, ...driverEnv(driver, redis, prefix) });
    const a = await startWorker("worker A", env);

    const { engine } = libraryEngine(db, redis?.url, prefix);
    // Sleeps a minute on its first run only, so the run after the crash completes at once.
    const { job } = await engine.queue.enqueue(mail(1, { sleep_ms: 60_000, sleep_runs: 1 }));

    await waitFor(async () => (await runsOf(db.sql, [job.id])).some((r) => r.pid === a.pid), {
      timeoutMs: 30_000,
      what: "worker A to start the job",
    });
    const [running] = await jobRows(db.sql, [job.id]);
    expect(running).toMatchObject({ state: "active", attempt: 1 });
    expect(running!.worker_id).toContain(`:${a.pid}:`);

    expect(await a.kill("SIGKILL")).toEqual({ code: null, signal: "SIGKILL" });
    const b = await startWorker("worker B", env);

    await waitFor(async () => (await jobRows(db.sql, [job.id]))[0]!.state === "completed", {
      timeoutMs: 60_000,
      what: "the job to complete after the crash",
    });
    const [done] = await jobRows(db.sql, [job.id]);
    expect(done).toMatchObject({ state: "completed", attempt: 2 });
    expect(done!.worker_id).toContain(`:${b.pid}:`);
    // The reaper took it back from A (its lease expired), rather than B stealing a live job.
    expect(done!.last_error).toMatchObject({ name: "LeaseExpired" });
    expect(await runsOf(db.sql, [job.id])).toEqual([
      { job_id: job.id, pid: a.pid, attempt: 1, finished: false },
      { job_id: job.id, pid: b.pid, attempt: 2, finished: true },
    ]);
  }, 150_000);
});

// ---------------------------------------------------------------------------------------------
// b. Redis flushed with 10,000 jobs waiting.
// ---------------------------------------------------------------------------------------------

describe("Redis flushed with 10,000 jobs waiting in its lanes", () => {
  it("loses no job and runs none twice: every job completes exactly once", async () => {
    const TOTAL = 10_000;
    const db = await newDatabase("faults_flush");
    const redis = await newRedisServer();
    const prefix = newPrefix();
    const { engine, redis: client } = libraryEngine(db, redis.url, prefix);
    for (let b = 0; b < TOTAL / 1_000; b++) {
      await engine.queue.enqueueMany(Array.from({ length: 1_000 }, (_, i) => mail(b * 1_000 + i)));
    }
    const lane = `${prefix}lane:email.send`;
    expect(await client!.pipeline([["ZCARD", lane]])).toEqual([TOTAL]);

    expect(await client!.pipeline([["FLUSHALL"]])).toEqual(["OK"]);
    expect(await client!.pipeline([["DBSIZE"]])).toEqual([0]);

    const env = workerEnv(db, { REDIS_URL: redis.url, REDIS_PREFIX: prefix, EMAIL_CONCURRENCY: 20, SCHEDULER_INTERVAL_MS: 500 });
    await Promise.all([startWorker("worker 1", env), startWorker("worker 2", env)]);

    await waitFor(async () => (await countWhere(db.sql, `type = 'email.send' and state = 'completed'`)) === TOTAL, {
      timeoutMs: 240_000,
      intervalMs: 500,
      what: `${TOTAL} jobs to complete`,
    });
    expect(await countWhere(db.sql, `type = 'email.send'`)).toBe(TOTAL);
    expect(await countWhere(db.sql, `type = 'email.send' and attempt <> 1`)).toBe(0);
    const [runs] = await db.sql.query<{ rows: number; jobs: number; unfinished: number }>(
      `select count(*)::int as rows, count(distinct job_id)::int as jobs, count(*) filter (where finished_at is null)::int as unfinished
       from test_runs`,
    );
    expect(runs).toEqual({ rows: TOTAL, jobs: TOTAL, unfinished: 0 });
    // The workers rebuilt the lanes from the ledger (the epoch marker is back).
    await waitFor(async () => (await client!.pipeline([["EXISTS", `${prefix}epoch`]]))[0] === 1, {
      what: "the lanes' epoch marker to be rebuilt",
    });
  }, 300_000);
});

// ---------------------------------------------------------------------------------------------
// c. Redis down while jobs are enqueued.
// ---------------------------------------------------------------------------------------------

describe("Redis down while jobs are enqueued over HTTP", () => {
  it("accepts every job and runs it through Postgres, then goes back to Redis when it returns", async () => {
    const db = await newDatabase("faults_redis_down");
    const redis = await newRedisServer();
    const prefix = newPrefix();
    const proc = await startWorker(
      "api+worker",
      workerEnv(db, {
        ROLE: "all",
        PORT: 0,
        ADMIN_API_KEY: ADMIN_KEY,
        REDIS_URL: redis.url,
        REDIS_PREFIX: prefix,
        SCHEDULER_INTERVAL_MS: 200,
      }),
    );
    expect(proc.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    const url = proc.url!;
    const completed = (ids: string[]) => allIn(db.sql, ids, ["completed"]);

    // Up: the path works at all.
    const first = await enqueueOverHttp(url, 0);
    expect(first.status).toBe(201);
    await waitFor(() => completed([first.id]), { timeoutMs: 30_000, what: "the first job (Redis up)" });

    // Down: every enqueue is still accepted, and the jobs run while Redis stays down.
    await redis.stop();
    const down: string[] = [];
    for (let n = 1; n <= 5; n++) {
      const r = await enqueueOverHttp(url, n);
      expect(r.status).toBe(201);
      down.push(r.id);
    }
    await waitFor(() => completed(down), { timeoutMs: 60_000, what: "the jobs enqueued while Redis is down" });
    expect(redis.running).toBe(false);

    // Back (same port, empty): the process reconnects, rebuilds the lanes and runs new jobs.
    await redis.start();
    const check = createIoRedis(redis.url);
    closers.push(() => check.close());
    await waitFor(async () => (await check.pipeline([["EXISTS", `${prefix}epoch`]]))[0] === 1, {
      timeoutMs: 30_000,
      what: "the lanes to be rebuilt on the restarted Redis",
    });
    const after: string[] = [];
    for (let n = 6; n <= 10; n++) {
      const r = await enqueueOverHttp(url, n);
      expect(r.status).toBe(201);
      after.push(r.id);
    }
    await waitFor(() => completed(after), { timeoutMs: 60_000, what: "the jobs enqueued after Redis came back" });

    expect(await countWhere(db.sql, `type = 'email.send' and state <> 'completed'`)).toBe(0);
    expect(await countWhere(db.sql, `type = 'email.send'`)).toBe(11);
    const [runs] = await db.sql.query<{ rows: number; jobs: number }>(
      `select count(*)::int as rows, count(distinct job_id)::int as jobs from test_runs`,
    );
    expect(runs).toEqual({ rows: 11, jobs: 11 });
  }, 240_000);
});

// ---------------------------------------------------------------------------------------------
// d. SIGTERM during work.
// ---------------------------------------------------------------------------------------------

describe.each(DRIVERS)("SIGTERM during work (%s driver)", (driver) => {
  it("finishes every in-flight job within the grace period and exits 0", async () => {
    const db = await newDatabase(`faults_term_${driver}`);
    const redis = driver === "redis" ? await newRedisServer() : undefined;
    const prefix = newPrefix();
    const w = await startWorker("worker", workerEnv(db, { SHUTDOWN_GRACE_MS: 10_000, ...driverEnv(driver, redis, prefix) }));
    const { engine } = libraryEngine(db, redis?.url, prefix);
    const enqueued = await engine.queue.enqueueMany(Array.from({ length: 6 }, (_, i) => mail(i, { sleep_ms: 1_500 + i * 100 })));
    const ids = enqueued.map((e) => e.job.id);

    await waitFor(
      async () =>
        (await allIn(db.sql, ids, ["active"])) &&
        (await runsOf(db.sql, ids)).filter((r) => r.pid === w.pid && !r.finished).length === ids.length,
      { timeoutMs: 30_000, what: "all jobs to be running" },
    );
    const exit = await w.kill("SIGTERM");
    expect(exit).toEqual({ code: 0, signal: null });

    // Exit 0 came after the outcomes were recorded: nothing to wait for.
    const jobs = await jobRows(db.sql, ids);
    expect(jobs.map((j) => [j.state, j.attempt])).toEqual(ids.map(() => ["completed", 1]));
    expect(await countWhere(db.sql, `state = 'active'`)).toBe(0);
    expect(await runsOf(db.sql, ids)).toEqual(ids.map((id) => ({ job_id: id, pid: w.pid, attempt: 1, finished: true })));
  }, 120_000);

  it("hands back jobs still running when the grace period ends, without counting the attempt", async () => {
    const db = await newDatabase(`faults_handback_${driver}`);
    const redis = driver === "redis" ? await newRedisServer() : undefined;
    const prefix = newPrefix();
    const env = workerEnv(db, { SHUTDOWN_GRACE_MS: 300, ...driverEnv(driver, redis, prefix) });
    const w1 = await startWorker("worker 1", env);
    const { engine } = libraryEngine(db, redis?.url, prefix);
    // 20 s on their first run only: the rerun after the hand-back completes at once.
    const enqueued = await engine.queue.enqueueMany(Array.from({ length: 3 }, (_, i) => mail(i, { sleep_ms: 20_000, sleep_runs: 1 })));
    const ids = enqueued.map((e) => e.job.id);

    await waitFor(
      async () =>
        (await allIn(db.sql, ids, ["active"])) &&
        (await runsOf(db.sql, ids)).filter((r) => r.pid === w1.pid).length === ids.length,
      { timeoutMs: 30_000, what: "all jobs to be running" },
    );
    expect(await w1.kill("SIGTERM")).toEqual({ code: 0, signal: null });

    const handedBack = await jobRows(db.sql, ids);
    for (const j of handedBack) {
      expect(["queued", "scheduled"]).toContain(j.state);
      expect(j.attempt).toBe(0);
      expect(j.worker_id).toBeNull();
    }
    expect(await runsOf(db.sql, ids)).toEqual(ids.map((id) => ({ job_id: id, pid: w1.pid, attempt: 1, finished: false })));

    const w2 = await startWorker("worker 2", env);
    await waitFor(() => allIn(db.sql, ids, ["completed"]), { timeoutMs: 60_000, what: "the handed-back jobs to complete" });
    expect((await jobRows(db.sql, ids)).map((j) => j.attempt)).toEqual(ids.map(() => 1));
    expect(await runsOf(db.sql, ids)).toEqual(
      ids.flatMap((id) => [
        { job_id: id, pid: w1.pid, attempt: 1, finished: false },
        { job_id: id, pid: w2.pid, attempt: 1, finished: true },
      ]),
    );
  }, 120_000);
});


// ---------------------------------------------------------------------------------------------
// e. Postgres backends terminated in bursts mid-drain.
// ---------------------------------------------------------------------------------------------

describe.each(DRIVERS)("the workers' Postgres connections terminated in bursts mid-drain (%s driver)", (driver) => {
  it("strands no job: every job completes within seconds of the last burst, not at the next full reconcile", async () => {
    const TOTAL = 3_000;
    const db = await newDatabase(`faults_pgkill_${driver}`);
    const redis = driver === "redis" ? await newRedisServer() : undefined;
    const prefix = newPrefix();
    const { engine } = libraryEngine(db, redis?.url, prefix);
    if (driver === "redis") await engine.dispatcher.reconcile({ force: true });
    for (let b = 0; b < TOTAL; b += 1_000) {
      await engine.queue.enqueueMany(Array.from({ length: 1_000 }, (_, i) => mail(b + i, { sleep_ms: 50 })));
    }
    const env = workerEnv(db, { LEASE_MS: 5_000, ...driverEnv(driver, redis, prefix) });
    await Promise.all([startWorker("worker 1", env), startWorker("worker 2", env)]);
    // email.send only: the workers' own scheduler may enqueue maintenance.cleanup's daily slot
    // (03:17 UTC, caught up for an hour), which is not one of this test's jobs.
    const completed = () => countWhere(db.sql, `type = 'email.send' and state = 'completed'`);
    await waitFor(async () => (await completed()) >= 200, { timeoutMs: 60_000, what: "the drain to start" });

    // Every connection of the workers (pools, hot path, heartbeats, listeners), ten times over 2 s:
    // claims die between the pop from Redis and their answer.
    for (let burst = 0; burst < 10; burst++) {
      await db.sql.query(
        `select pg_terminate_backend(pid) from pg_stat_activity
         where datname = current_database() and application_name like 'penguinmails-jobs%'`,
      );
      await new Promise((r) => setTimeout(r, 200));
    }
    // With ids lost on a failed claim, jobs stayed queued until the 5-minute full reconcile.
    await waitFor(async () => (await completed()) === TOTAL, {
      timeoutMs: 60_000,
      intervalMs: 200,
      what: `all ${TOTAL} jobs to complete after the bursts`,
    });
    expect(await countWhere(db.sql, `type = 'email.send' and state <> 'completed'`)).toBe(0);
  }, 180_000);
});

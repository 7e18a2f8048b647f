/**
 * npx tsx tools/bench/backlog.ts [redis|postgres] [--table] [--memory] [--explain]: whether the
 * engine's cost stays flat as work piles up, against local Postgres and Redis. With neither
 * --table nor --memory, both run; --explain adds EXPLAIN ANALYZE of the claim and the enqueue
 * at each row.
 *
 *   backlog table  for each driver, each row on a fresh database: 0, 100,000 and 1,000,000
 *                  waiting jobs, and 10,000,000 completed jobs retained with none waiting. A run
 *                  on a row enqueues a slice of transactional email.send jobs (1,000 one a call
 *                  from 10 callers, then 20,000 in batches of 1,000 from one caller), enqueues
 *                  20,000 more into the backlog's own lane (campaign mail; taken out again after,
 *                  so the backlog keeps its size), times 20 claims of 100 alone (the dispatcher's
 *                  take(): Redis, the pop script and the claim UPDATE; Postgres, the SKIP LOCKED
 *                  claim; each batch then completed), and drains the rest of the slice at c=50,
 *                  from worker start until the ledger shows every slice job completed, timing
 *                  every take() the pool makes. Runs are interleaved across the rows (run 1 on
 *                  every row, then run 2, ...), each on fresh connections after a small warm-up
 *                  run, so the machine's noise falls on all rows alike; figures also print as a %
 *                  of the 0 row.
 *   housekeeping   at each row: one scheduler pass (lease, rescue, promotion, cron, lane-head
 *                  check), the metrics' counts by type and state and oldest queued job, and the
 *                  Redis driver's full lane rebuild
 *   memory         a worker process (a child of this one: the engine and one pool, c=50, nothing
 *                  else) drains BENCH_MEMORY_JOBS waiting no-op jobs; RSS and heap used sampled
 *                  every BENCH_MEMORY_EVERY jobs
 *
 * The backlog is real: the engine's own enqueue (batches of 1,000 from 4 callers) writes it, so
 * its rows, fair-queue times and Redis lane entries are what the engine makes, and each row
 * checks at the end that what is left of it is queued in the ledger and in its Redis lane. It is
 * campaign mail (campaign_id set: normal priority) of the same type as the slice, which is
 * transactional (high priority): so the backlog sits in the very structures the slice uses (the
 * jobs_queued_idx and jobs_queued_tenant_idx B-trees, the Redis sorted set of email.send) while
 * both drivers serve the slice first, as they serve high before normal. A backlog in a paused
 * type or at a later run_at would sit in other indexes (paused, scheduled) and in no lane, and
 * cost the hot path nothing by construction. The pool stops claiming once it has claimed the
 * whole slice, but its last claim may take a few backlog jobs with the slice's last ones (a pool
 * claims beyond its free slots); those run, and their number is printed.
 * The completed jobs are written by INSERT ... SELECT generate_series, a million rows a
 * statement, as the engine leaves a completed email.send job (checked against 100 jobs run
 * through the engine in the same database: same columns set, same payload keys, same states),
 * then VACUUM ANALYZE, into a template database that each driver gets a file copy of. Every
 * database is VACUUM ANALYZEd once filled (autovacuum may be off, as it is on this machine).
 *
 * Env: BENCH_ADMIN_DATABASE_URL, BENCH_REDIS_URL (see support.ts), BENCH_RUNS (3),
 * BENCH_BACKLOG (waiting rows, default 0,100000,1000000), BENCH_FINISHED (10000000; 0 skips
 * the row), BENCH_SLICE (20000), BENCH_SINGLES (1000), BENCH_MEMORY_JOBS (1000000),
 * BENCH_MEMORY_EVERY (50000), BENCH_MEMORY_DRIVERS (redis,postgres).
 */
import { fork } from "node:child_process";
import { randomBytes } from "node:crypto";
import pg from "pg";
import { migrate } from "../../schema/migrate";
import type { Dispatcher } from "../../shared/dispatch/dispatcher";
import type { Redis, Sql } from "../../shared/ports";
import { createEngine, type Engine } from "../../shared/queue/engine";
import { Scheduler } from "../../shared/queue/scheduler";
import { JobClaimNext, JobCountByTypeAndState, JobInsertMany, JobOldestQueued } from "../../shared/queue/statements";
import { WorkerPool } from "../../shared/queue/worker";
import { createPgSql } from "../../workers/node/postgres";
import { createIoRedis } from "../../workers/node/redis";
import { ADMIN_URL, median, REDIS_URL, withDatabase } from "./support";

type Driver = "redis" | "postgres";

const RUNS = Number(process.env.BENCH_RUNS ?? 3);
const BACKLOG = (process.env.BENCH_BACKLOG ?? "0,100000,1000000").split(",").map(Number);
const FINISHED = Number(process.env.BENCH_FINISHED ?? 10_000_000);
const SLICE = Number(process.env.BENCH_SLICE ?? 20_000);
const SINGLES = Number(process.env.BENCH_SINGLES ?? 1_000);
const MEMORY_JOBS = Number(process.env.BENCH_MEMORY_JOBS ?? 1_000_000);
const MEMORY_EVERY = Number(process.env.BENCH_MEMORY_EVERY ?? 50_000);
const MEMORY_DRIVERS = (process.env.BENCH_MEMORY_DRIVERS ?? "redis,postgres").split(",") as Driver[];
const CONCURRENCY = 50;
/** Tenants of the backlog and of the finished rows; the slice has 10 (as run.ts). */
const TENANTS = 100;

const fmt = (n: number) => Math.round(n).toLocaleString("en-US");
const log = (line: string) => process.stderr.write(`${line}\n`);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A transactional mail (high priority): the slice. */
const slicePayload = (i: number) => ({ recipient: `user${i}@example.com`, template_id: "tpl_bench", variables: { i } });
/** Campaign mail (normal priority): the backlog. */
const backlogPayload = (i: number) => ({
  recipient: `contact${i}@example.com`,
  template_id: "tpl_bench",
  variables: { i, name: `Person ${i}` },
  campaign_id: "camp_backlog",
});

interface Bench {
  url: string;
  sql: Sql;
  hotSql: Sql;
  redis?: Redis;
  prefix: string;
  engine: Engine;
  /** keepKeys: leave this prefix's Redis keys (the lanes) for the next visit. */
  close(keepKeys?: boolean): Promise<void>;
}

/** The engine wired as the Node runtime wires it (and as run.ts does). */
async function openBench(url: string, driver: Driver, prefix = `bench:${randomBytes(3).toString("hex")}:{jobs}:`): Promise<Bench> {
  const sql = createPgSql(url, { max: 20, prepare: true });
  const hotSql = createPgSql(url, { max: 10, synchronousCommit: false, prepare: true });
  const redis = driver === "redis" ? createIoRedis(REDIS_URL) : undefined;
  const engine = createEngine({ sql, hotSql, redis, redisOptions: { prefix } });
  await engine.dispatcher.start();
  return {
    url,
    sql,
    hotSql,
    redis,
    prefix,
    engine,
    async close(keepKeys = false) {
      await engine.dispatcher.close();
      if (redis && !keepKeys) {
        const keys = (await redis.pipeline([["KEYS", `${prefix}*`]]))[0] as string[];
        if (keys.length) await redis.pipeline([["DEL", ...keys]]);
        await redis.close();
      }
      await hotSql.close();
      await sql.close();
    },
  };
}

/** Enqueues n jobs through the engine in batches of 1,000 from `callers` concurrent callers; jobs/s. */
async function enqueueBatches(
  engine: Engine,
  n: number,
  callers: number,
  job: (i: number) => { tenantId: string; payload: Record<string, unknown> },
  onIds?: (ids: string[]) => void,
): Promise<number> {
  const started = performance.now();
  let next = 0;
  const caller = async () => {
    for (let b = (next += 1_000) - 1_000; b < n; b = (next += 1_000) - 1_000) {
      const size = Math.min(1_000, n - b);
      const done = await engine.queue.enqueueMany(Array.from({ length: size }, (_, i) => ({ type: "email.send", ...job(b + i) })));
      onIds?.(done.map((d) => d.job.id));
    }
  };
  await Promise.all(Array.from({ length: callers }, caller));
  return n / ((performance.now() - started) / 1000);
}

async function fillBacklog(b: Bench, n: number): Promise<void> {
  if (n === 0) return;
  const t0 = performance.now();
  const step = Math.min(n, 100_000);
  const rates: number[] = [];
  for (let done = 0; done < n; done += step) {
    const size = Math.min(step, n - done);
    rates.push(await enqueueBatches(b.engine, size, 4, (i) => ({ tenantId: `tenant-${(done + i) % TENANTS}`, payload: backlogPayload(done + i) })));
  }
  const seconds = (performance.now() - t0) / 1000;
  log(
    `  backlog: ${fmt(n)} waiting jobs enqueued through the engine at ${fmt(n / seconds)} jobs/s (${seconds.toFixed(1)} s; ` +
      `by ${fmt(step)}: ${rates.map(fmt).join(", ")} jobs/s)`,
  );
}

/** Checks the backlog is what the engine would run: queued in the ledger, and (Redis) in its lane. */
async function checkBacklog(b: Bench, n: number): Promise<void> {
  const [row] = await b.sql.query<{ n: number }>("select count(*)::int as n from jobs where state = 'queued' and type = 'email.send' and priority = 1");
  if (row!.n !== n) throw new Error(`expected ${n} queued backlog jobs in the ledger, found ${row!.n}`);
  if (b.redis) {
    const [card] = (await b.redis.pipeline([["ZCARD", `${b.prefix}lane:email.send`]])) as [number];
    if (Number(card) !== n) throw new Error(`expected ${n} entries in the Redis lane, found ${card}`);
  }
}

interface RunFigures {
  /** Enqueue of the slice: one job a call, then batches of 1,000 (jobs/s). */
  single: number;
  batch: number;
  /** Batches of 1,000 into the backlog's own lane (normal priority, the backlog's tenants), jobs/s. */
  laneBatch: number;
  /** The dispatcher's take() of 100 jobs with nothing else running (ms, median of CLAIMS). */
  claimAlone: number;
  /** The take() calls that returned jobs during the drain: µs of take() per job claimed, and mean jobs a call. */
  claimUsPerJob: number;
  claimBatch: number;
  drain: number;
  /** Backlog jobs the slice's last claim took and ran. */
  backlogRun: number;
}

/** Concurrent callers of the single enqueues (as web requests would be). */
const SINGLE_CALLERS = 10;

/** Claims timed alone per run, 100 jobs each, before the drain. */
const CLAIMS = 20;

/** Takes jobs out of the ledger and (Redis) its lane, as if never enqueued: keeps a row's backlog at its size. */
async function remove(b: Bench, ids: string[]): Promise<void> {
  for (let i = 0; i < ids.length; i += 5_000) {
    const chunk = ids.slice(i, i + 5_000);
    await b.sql.query("delete from jobs where id = any($1::bigint[])", [chunk]);
    if (b.redis) await b.redis.pipeline([["ZREM", `${b.prefix}lane:email.send`, ...chunk]]);
  }
}

/**
 * One run: enqueue the slice (singles, then batches) and a batch into the backlog's lane (removed
 * again), time claims alone, then drain the rest of the slice at c=50 with its claims timed.
 */
async function sliceRun(b: Bench, run: number, size = { singles: SINGLES, slice: SLICE }): Promise<RunFigures> {
  const { engine, sql } = b;
  let lo = Infinity;
  let hi = 0;
  const note = (ids: string[]) => {
    for (const id of ids) {
      lo = Math.min(lo, Number(id));
      hi = Math.max(hi, Number(id));
    }
  };
  const base = run * (size.singles + size.slice);
  const t0 = performance.now();
  let nextSingle = 0;
  await Promise.all(
    Array.from({ length: SINGLE_CALLERS }, async () => {
      for (let i = nextSingle++; i < size.singles; i = nextSingle++) {
        const { job } = await engine.queue.enqueue({ type: "email.send", tenantId: `tenant-${i % 10}`, payload: slicePayload(base + i) });
        note([job.id]);
      }
    }),
  );
  const single = size.singles / ((performance.now() - t0) / 1000);
  const batch = await enqueueBatches(engine, size.slice, 1, (i) => ({ tenantId: `tenant-${i % 10}`, payload: slicePayload(base + size.singles + i) }), note);
  const total = size.singles + size.slice;

  const laneIds: string[] = [];
  const laneBatch = await enqueueBatches(
    engine,
    size.slice,
    1,
    (i) => ({ tenantId: `tenant-${i % 10}`, payload: backlogPayload(10_000_000 + base + i) }),
    (ids) => laneIds.push(...ids),
  );
  await remove(b, laneIds);

  const dispatcher = engine.dispatcher;
  const alone: number[] = [];
  let claimedAlone = 0;
  for (let i = 0; i < CLAIMS; i++) {
    const c0 = performance.now();
    const jobs = await dispatcher.take(["email.send"], 100, "bench-claim", 30_000);
    alone.push(performance.now() - c0);
    claimedAlone += jobs.length;
    await engine.queue.ledger.finishMany(
      jobs.map((j) => ({ id: j.id, attempt: j.attempt, state: "completed" as const, result: null })),
      engine.clock.now(),
    );
    if (jobs.some((j) => j.priority !== "high")) throw new Error("a claim alone took a backlog job");
  }

  // The claims as the pool makes them: wrap this engine's dispatcher (the pool calls queue.dispatcher.take).
  const take = dispatcher.take;
  const claims: { ms: number; n: number }[] = [];
  let sliceClaimed = claimedAlone;
  (dispatcher as { take: Dispatcher["take"] }).take = async (types, limit, workerId, leaseMs) => {
    const c0 = performance.now();
    const jobs = await take.call(dispatcher, types, limit, workerId, leaseMs);
    if (jobs.length > 0) claims.push({ ms: performance.now() - c0, n: jobs.length });
    for (const j of jobs) if (j.priority === "high") sliceClaimed++;
    return jobs;
  };
  let sliceRan = claimedAlone;
  let backlogRan = 0;
  const pool = new WorkerPool({
    name: "bench",
    handlers: [
      {
        type: "email.send",
        run: async (_payload, job) => {
          if (job.priority === "high") sliceRan++;
          else backlogRan++;
        },
      },
    ],
    concurrency: CONCURRENCY,
    queue: engine.queue,
    stats: engine.stats,
    workerId: `bench-backlog-${run}`,
    // No claims once the whole slice is claimed: the backlog behind it must not run.
    admit: () => sliceClaimed < total,
  });
  const started = performance.now();
  pool.start();
  while (sliceRan < total) await sleep(2);
  // The pool's count first, then the ledger (by primary key over the slice's ids: a count of
  // queued jobs would read the backlog).
  for (;;) {
    const [row] = await sql.query<{ n: number }>(
      "select count(*)::int as n from jobs where id between $1::bigint and $2::bigint and state::text in ('queued', 'active')",
      [lo, hi],
    );
    if (row!.n === 0) break;
    await sleep(2);
  }
  const drain = (total - claimedAlone) / ((performance.now() - started) / 1000);
  if (process.env.BENCH_DEBUG_CLAIMS) log(`    claims (jobs): ${claims.map((c) => c.n).join(" ")}`);
  await pool.stop();
  (dispatcher as { take: Dispatcher["take"] }).take = take;
  return {
    single,
    batch,
    laneBatch,
    claimAlone: median(alone),
    // Sums, not medians: the pool's claims alternate in size (150, 400, 150, ... at c=50), so a
    // median lands on one or the other depending on the last claim.
    claimUsPerJob: (1000 * claims.reduce((t, c) => t + c.ms, 0)) / Math.max(1, claims.reduce((t, c) => t + c.n, 0)),
    claimBatch: claims.reduce((t, c) => t + c.n, 0) / Math.max(1, claims.length),
    drain,
    backlogRun: backlogRan,
  };
}

/** ms of each housekeeping call at this row (one call each visit; the lane rebuild on the last). */
interface Housekeeping {
  pass: number;
  counts: number;
  oldest: number;
  rebuild?: number;
}

async function housekeeping(b: Bench, withRebuild: boolean): Promise<Housekeeping> {
  const { engine } = b;
  const timed = async (fn: () => Promise<unknown>) => {
    const t0 = performance.now();
    await fn();
    return performance.now() - t0;
  };
  const scheduler = new Scheduler({ queue: engine.queue, holderId: "bench-backlog" });
  await scheduler.runOnce(); // takes the lease, enqueues the due cron slot, starts the full-reconcile timer
  const pass = await timed(() => scheduler.runOnce());
  await scheduler.stop();
  const counts = await timed(() => engine.queue.ledger.countByTypeAndState());
  const oldest = await timed(() => engine.queue.ledger.oldestQueued(engine.clock.now()));
  const rebuild = b.redis && withRebuild ? await timed(() => engine.dispatcher.reconcile({ force: true })) : undefined;
  return { pass, counts, oldest, rebuild };
}

/** EXPLAIN ANALYZE of the claim and insert statements, in a transaction rolled back. */
async function explain(b: Bench, label: string): Promise<string> {
  await enqueueBatches(b.engine, 1_000, 1, (i) => ({ tenantId: `tenant-${i % 10}`, payload: slicePayload(i) }));
  const client = new pg.Client({ connectionString: b.url });
  await client.connect();
  const now = new Date().toISOString();
  const out: string[] = [`### ${label}`];
  const plan = async (title: string, text: string, values: unknown[]) => {
    await client.query("begin");
    const { rows } = await client.query<{ "QUERY PLAN": string }>(`explain (analyze, buffers, costs off) ${text}`, values);
    await client.query("rollback");
    out.push(`-- ${title}`, ...rows.map((r) => r["QUERY PLAN"]));
  };
  await plan("JobClaimNext, 100 jobs", JobClaimNext, [["email.send"], 100, now, now, "explain"]);
  const rows = Array.from({ length: 1_000 }, (_, i) => b.engine.queue.validate({ type: "email.send", tenantId: `tenant-${i % 10}`, payload: slicePayload(i) }));
  await plan("JobInsertMany, 1,000 jobs", JobInsertMany, [
    rows.map((r) => r.tenantId),
    rows.map((r) => r.type),
    rows.map((r) => r.priority),
    rows.map((r) => JSON.stringify(r.payload)),
    rows.map((r) => r.maxAttempts),
    rows.map((r) => r.runAt.toISOString()),
    rows.map(() => null),
    rows.map(() => null),
    now,
    false,
    false,
  ]);
  await plan("JobCountByTypeAndState (metrics, scaling)", JobCountByTypeAndState, []);
  await plan("JobOldestQueued (metrics)", JobOldestQueued, [now]);
  await client.end();
  return out.join("\n");
}

async function vacuumAnalyze(url: string): Promise<void> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  await client.query("vacuum (analyze) jobs");
  await client.end();
}

interface Row {
  label: string;
  waiting: number;
  url: string;
  prefix: string;
  runs: RunFigures[];
  housekeeping: Housekeeping[];
  /** Backlog jobs run so far (the slices' last claims), warm-ups included. */
  backlogRan: number;
  plans?: string;
}

/**
 * Fills a template database with `waiting` backlog jobs through the engine (Postgres driver: the
 * ledger rows are the same on both drivers), then VACUUM ANALYZE. Each driver's row is a file copy.
 */
async function fillBacklogTemplate(url: string, waiting: number): Promise<void> {
  await migrateDatabase(url);
  const b = await openBench(url, "postgres");
  try {
    await fillBacklog(b, waiting);
  } finally {
    await b.close();
  }
  await vacuumAnalyze(url);
}

/**
 * Makes a row ready on database `url` (a copy of a filled template): on the Redis driver, the
 * lanes are built from the ledger by the engine's own rebuild (as after a Redis flush), which
 * places every queued job with the score the enqueue would have given it; then the backlog is
 * checked, in the ledger and in its lane.
 */
async function prepareRow(url: string, driver: Driver, label: string, waiting: number): Promise<Row> {
  const b = await openBench(url, driver);
  try {
    if (b.redis) {
      const t0 = performance.now();
      const placed = await b.engine.dispatcher.reconcile({ force: true }); // also sets the epoch marker
      if (waiting > 0) log(`  redis lanes: ${fmt(placed)} entries placed from the ledger in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
    }
    await checkBacklog(b, waiting);
  } finally {
    await b.close(true);
  }
  return { label, waiting, url, prefix: b.prefix, runs: [], housekeeping: [], backlogRan: 0 };
}

/**
 * One run on a row: fresh connections, a small warm-up run (not counted: new connections plan
 * their statements afresh), the measured run, housekeeping; the full lane rebuild and the
 * plans on the last visit only.
 */
async function visitRow(row: Row, driver: Driver, run: number, last: boolean, withPlans: boolean): Promise<void> {
  const b = await openBench(row.url, driver, row.prefix);
  try {
    const warm = await sliceRun(b, 2 * run + 1, { singles: 200, slice: 5_000 });
    const r = await sliceRun(b, 2 * run);
    row.runs.push(r);
    row.backlogRan += warm.backlogRun + r.backlogRun;
    log(
      `  ${driver} ${row.label} run ${run + 1}/${RUNS}: enqueue ${fmt(r.single)}/s single, ${fmt(r.batch)}/s batch; ` +
        `${fmt(r.laneBatch)}/s into the backlog's lane; claim alone ${r.claimAlone.toFixed(2)} ms, in the drain ${r.claimUsPerJob.toFixed(1)} µs a job ` +
        `(${fmt(r.claimBatch)} jobs a claim); drain ${fmt(r.drain)}/s; backlog jobs run ${r.backlogRun}`,
    );
    row.housekeeping.push(await housekeeping(b, last));
    if (last) {
      // The backlog is intact: what is left of it (less the jobs the slices' last claims ran) is
      // queued in the ledger and, on the Redis driver, in its lane.
      await checkBacklog(b, row.waiting - row.backlogRan);
      if (withPlans) row.plans = await explain(b, `${driver}, ${row.label}`);
    }
  } finally {
    await b.close(!last);
  }
}

async function migrateDatabase(url: string): Promise<void> {
  const sql = createPgSql(url, { max: 1 });
  try {
    await migrate(sql);
  } finally {
    await sql.close();
  }
}

/** Throwaway databases (optionally file copies of a template), all dropped by dropAll whatever happens. */
class Databases {
  private readonly names: string[] = [];
  private admin?: pg.Client;

  private async client(): Promise<pg.Client> {
    if (!this.admin) {
      this.admin = new pg.Client({ connectionString: ADMIN_URL });
      await this.admin.connect();
    }
    return this.admin;
  }

  /** Creates a database and returns its name. */
  async create(label: string, template?: string): Promise<string> {
    const name = `bench_${label}_${randomBytes(4).toString("hex")}`;
    const admin = await this.client();
    const t0 = performance.now();
    await admin.query(template ? `create database "${name}" template "${template}" strategy file_copy` : `create database "${name}"`);
    this.names.push(name);
    if (template) log(`  copied ${template} in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
    return name;
  }

  url(name: string): string {
    const url = new URL(ADMIN_URL);
    url.pathname = `/${name}`;
    return url.toString();
  }

  async drop(name: string): Promise<void> {
    await (await this.client()).query(`drop database if exists "${name}" with (force)`);
    this.names.splice(this.names.indexOf(name), 1);
  }

  async dropAll(): Promise<void> {
    for (const name of [...this.names]) await this.drop(name);
    await this.admin?.end();
    this.admin = undefined;
  }
}

const COMPLETED_SHAPE = `
select distinct type, priority, state::text as state, attempt, max_attempts,
  (select string_agg(k, ',' order by k) from jsonb_object_keys(payload) k) as payload_keys,
  jsonb_typeof(payload->'variables') as variables, payload->>'tenant_id' = tenant_id as tenant_in_payload,
  lease_until is null as no_lease, worker_id is null as no_worker, cancel_requested, idempotency_key is null as no_key,
  parent_id is null as no_parent, progress is null as no_progress, result is null as no_result, last_error is null as no_error,
  run_at <= started_at as ran_after_due, created_at <= started_at as started_after_created, started_at <= finished_at as finished_after_start
from jobs where id between $1::bigint and $2::bigint`;

/**
 * Fills database `url` with `n` completed email.send jobs: first 100 run through the engine
 * (Postgres driver), then the rest by one INSERT ... SELECT a million rows at a time, written as
 * the engine leaves a completed job (checked: both give the same shape), then VACUUM ANALYZE.
 */
async function fillFinished(url: string, n: number): Promise<void> {
  await migrateDatabase(url);
  const sample = 100;
  const b = await openBench(url, "postgres");
  try {
    await enqueueBatches(b.engine, sample, 1, (i) => ({ tenantId: `tenant-${i % TENANTS}`, payload: slicePayload(i) }));
    const pool = new WorkerPool({
      name: "bench",
      handlers: [{ type: "email.send", run: async () => undefined }],
      concurrency: CONCURRENCY,
      queue: b.engine.queue,
      stats: b.engine.stats,
      workerId: "bench-finished",
    });
    pool.start();
    while (pool.processed < sample) await sleep(5);
    await pool.stop();
  } finally {
    await b.close();
  }
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    const t0 = performance.now();
    const chunk = 1_000_000;
    for (let from = sample; from < n; from += chunk) {
      const to = Math.min(n, from + chunk) - 1;
      // Spread over the last 23 hours (completed jobs are kept 24 by default), in id order.
      await client.query(
        `insert into jobs (tenant_id, type, priority, payload, state, attempt, max_attempts, run_at, vtime,
           lease_until, worker_id, cancel_requested, idempotency_key, parent_id, progress, result, last_error,
           created_at, started_at, finished_at)
         select 'tenant-' || (g % ${TENANTS}), 'email.send', 0,
           jsonb_build_object('recipient', 'user' || g || '@example.com', 'template_id', 'tpl_bench',
             'variables', jsonb_build_object('i', g), 'tenant_id', 'tenant-' || (g % ${TENANTS})),
           'completed', 1, 8, t.at, g / ${TENANTS} + 1, null, 'bench-finished', false, null, null, null, null, null,
           t.at, t.at + interval '2 ms', t.at + interval '3 ms'
         from generate_series($1::bigint, $2::bigint) g,
           lateral (select now() - interval '23 hours' + (g::float8 / $3::float8) * interval '23 hours' as at) t`,
        [from, to, n],
      );
      log(`  finished jobs: ${fmt(to + 1)} of ${fmt(n)} (${((performance.now() - t0) / 1000).toFixed(0)} s)`);
    }
    const { rows: engineShape } = await client.query(COMPLETED_SHAPE, [1, sample]);
    const { rows: madeShape } = await client.query(COMPLETED_SHAPE, [sample + 1, sample + 100_000]); // a sample: the check reads every row
    if (JSON.stringify(engineShape) !== JSON.stringify(madeShape)) {
      throw new Error(`generated rows differ from the engine's: ${JSON.stringify(madeShape)} vs ${JSON.stringify(engineShape)}`);
    }
    const v0 = performance.now();
    await client.query("vacuum (analyze) jobs");
    const { rows: size } = await client.query<{ size: string }>("select pg_size_pretty(pg_total_relation_size('jobs')) as size");
    log(
      `  finished jobs: ${fmt(n)} written in ${((v0 - t0) / 1000).toFixed(0)} s, vacuum analyze ${((performance.now() - v0) / 1000).toFixed(0)} s, ` +
        `jobs table ${size[0]!.size}; shape matches the engine's completed rows`,
    );
  } finally {
    await client.end();
  }
}

// ---------------------------------------------------------------------------------------------
// Memory over a long drain: the worker runs in a child process of its own.

interface MemorySample {
  jobs: number;
  /** ms since the pool started. */
  ms: number;
  rss: number;
  heapUsed: number;
}

/** The child: drains `jobs` waiting jobs at c=50 and prints its memory samples as one JSON line. */
async function memoryChild(driver: Driver, url: string, prefix: string, jobs: number, every: number): Promise<void> {
  const b = await openBench(url, driver, prefix);
  const samples: MemorySample[] = [];
  let started = performance.now();
  const sample = (n: number) => {
    const m = process.memoryUsage();
    samples.push({ jobs: n, ms: performance.now() - started, rss: m.rss, heapUsed: m.heapUsed });
  };
  let ran = 0;
  const pool = new WorkerPool({
    name: "bench",
    handlers: [
      {
        type: "email.send",
        run: async () => {
          if (++ran % every === 0) sample(ran);
        },
      },
    ],
    concurrency: CONCURRENCY,
    queue: b.engine.queue,
    stats: b.engine.stats,
    workerId: "bench-memory",
  });
  sample(0);
  started = performance.now();
  pool.start();
  while (ran < jobs) await sleep(5);
  for (;;) {
    const [row] = await b.sql.query<{ n: number }>(
      "select (select count(*) from jobs where state = 'queued') + (select count(*) from jobs where state = 'active') as n",
    );
    if (Number(row!.n) === 0) break;
    await sleep(5);
  }
  const seconds = (performance.now() - started) / 1000;
  await pool.stop();
  await b.close();
  process.stdout.write(`${JSON.stringify({ samples, seconds })}\n`);
}

interface MemoryResult {
  driver: Driver;
  samples: MemorySample[];
  seconds: number;
}

async function memoryBench(driver: Driver): Promise<MemoryResult> {
  return withDatabase("memory", async (url) => {
    await migrateDatabase(url);
    const prefix = `bench:${randomBytes(3).toString("hex")}:{jobs}:`;
    const b = await openBench(url, driver, prefix);
    try {
      if (b.redis) await b.engine.dispatcher.reconcile({ force: true });
      const t0 = performance.now();
      const rate = await enqueueBatches(b.engine, MEMORY_JOBS, 4, (i) => ({ tenantId: `tenant-${i % 10}`, payload: slicePayload(i) }));
      log(`  memory: ${fmt(MEMORY_JOBS)} jobs enqueued at ${fmt(rate)} jobs/s (${((performance.now() - t0) / 1000).toFixed(1)} s)`);
      await vacuumAnalyze(url);
      const child = fork(process.argv[1]!, ["--memory-child", driver, url, prefix, String(MEMORY_JOBS), String(MEMORY_EVERY)], {
        stdio: ["ignore", "pipe", "inherit", "ipc"],
      });
      let out = "";
      child.stdout!.on("data", (d: Buffer) => (out += d.toString()));
      const code = await new Promise<number | null>((resolve) => child.on("exit", resolve));
      if (code !== 0) throw new Error(`memory child exited with ${code}`);
      const { samples, seconds } = JSON.parse(out.trim().split("\n").at(-1)!) as { samples: MemorySample[]; seconds: number };
      log(`  memory ${driver}: drained ${fmt(MEMORY_JOBS)} in ${seconds.toFixed(1)} s (${fmt(MEMORY_JOBS / seconds)} jobs/s)`);
      log(`  memory ${driver} samples (jobs: RSS/heap MB): ${samples.map((x) => `${x.jobs / 1000}k: ${(x.rss / 2 ** 20).toFixed(0)}/${(x.heapUsed / 2 ** 20).toFixed(0)}`).join(", ")}`);
      // The drain's pace along the way: a claim that slows as the drain goes shows here.
      const pace = samples.slice(1).map((x, i) => fmt(((x.jobs - samples[i]!.jobs) * 1000) / Math.max(1, x.ms - samples[i]!.ms)));
      log(`  memory ${driver} drain rate by ${fmt(MEMORY_EVERY)} jobs (jobs/s): ${pace.join(", ")}`);
      return { driver, samples, seconds };
    } finally {
      // The child has closed its own connections and deleted nothing: the keys go here.
      await b.close();
    }
  });
}

// ---------------------------------------------------------------------------------------------

function tables(byDriver: { driver: Driver; rows: Row[] }[]): string {
  const spread = (xs: number[], f: (n: number) => string = fmt) =>
    xs.length > 1 ? `${f(median(xs))} (${f(Math.min(...xs))}-${f(Math.max(...xs))})` : f(median(xs));
  const ms = (n: number) => n.toFixed(2);
  const us = (n: number) => n.toFixed(1);
  const lines = [
    `Backlog growth: medians of ${RUNS} runs (range), each also as a % of the 0 row (run by run, then the median); runs interleaved across the rows. A run's slice: ` +
      `${fmt(SINGLES)} transactional email.send jobs enqueued one a call from ${SINGLE_CALLERS} callers, ${fmt(SLICE)} in batches of 1,000 from one caller; ` +
      `then ${fmt(SLICE)} campaign jobs in batches into the backlog's own lane (taken out again); ${CLAIMS} claims of 100 slice jobs alone (the dispatcher's take(), ` +
      `each batch then completed); the other ${fmt(SINGLES + SLICE - 100 * CLAIMS)} slice jobs drained at c=${CONCURRENCY}, with every take() of the pool timed ` +
      `(its time over the jobs it returned).`,
    "",
    "| driver | jobs in the table | enqueue, single (jobs/s) | enqueue, batches of 1,000 (jobs/s) | enqueue into the backlog's lane (jobs/s) | claim of 100 alone (ms) | claim in the drain (µs a job claimed) | drain c=50 (jobs/s) |",
    "|---|---|---:|---:|---:|---:|---:|---:|",
  ];
  for (const { driver, rows } of byDriver) {
    const base = rows.find((r) => r.label === "0 waiting");
    for (const r of rows) {
      // The % of the 0 row run by run (the rows' runs are interleaved: run i of each row ran
      // minutes apart), then the median, as run.ts does against its ceiling.
      const pct = (k: keyof RunFigures) =>
        base && r !== base ? `, ${median(r.runs.map((x, i) => (100 * x[k]) / base.runs[i]![k])).toFixed(0)}%` : "";
      const col = (k: keyof RunFigures, f: (n: number) => string = fmt) => `${spread(r.runs.map((x) => x[k]), f)}${pct(k)}`;
      lines.push(
        `| ${driver} | ${r.label} | ${col("single")} | ${col("batch")} | ${col("laneBatch")} | ${col("claimAlone", ms)} | ` +
          `${col("claimUsPerJob", us)} (${fmt(median(r.runs.map((x) => x.claimBatch)))} jobs a claim) | ${col("drain")} |`,
      );
    }
  }
  const ran = byDriver.flatMap((d) => d.rows.flatMap((r) => r.runs.map((x) => x.backlogRun)));
  lines.push("", `Backlog jobs the slice's last claim took and ran: at most ${fmt(Math.max(0, ...ran))} in a run.`);
  lines.push(
    "",
    `Housekeeping at each row (ms; one call a run, medians of ${RUNS} (range); the lane rebuild once, after the last run): a scheduler pass (lease, rescue, promotion, cron, lane-head check), ` +
      "the metrics' counts by type and state, the oldest queued job by type, and the Redis driver's full lane rebuild (every 5 minutes, and after a Redis flush).",
    "",
    "| driver | jobs in the table | scheduler pass | counts by type and state | oldest queued | full lane rebuild |",
    "|---|---|---:|---:|---:|---:|",
  );
  for (const { driver, rows } of byDriver) {
    for (const r of rows) {
      const h = (k: keyof Housekeeping) => {
        const xs = r.housekeeping.map((x) => x[k]).filter((x): x is number => x !== undefined);
        return xs.length ? spread(xs, ms) : "-";
      };
      lines.push(`| ${driver} | ${r.label} | ${h("pass")} | ${h("counts")} | ${h("oldest")} | ${h("rebuild")} |`);
    }
  }
  return lines.join("\n");
}

function memoryTable(results: MemoryResult[]): string {
  const mb = (n: number) => (n / 1024 / 1024).toFixed(0);
  const lines = [
    `Worker memory over a ${fmt(MEMORY_JOBS)}-job no-op drain at c=${CONCURRENCY} (a child process with the engine and one pool; ` +
      `sampled every ${fmt(MEMORY_EVERY)} jobs; single run), MB. Start: before the first job; then after a tenth, half and all of the jobs; ` +
      `the max over the last 90% shows whether it still grows once warm (heap used is a GC sawtooth: compare the maxima).`,
    "",
    "| driver | drain (jobs/s) | RSS start / 10% / 50% / end | RSS max, all / last 90% | heap used start / 10% / 50% / end | heap used max, all / last 90% |",
    "|---|---:|---:|---:|---:|---:|",
  ];
  for (const r of results) {
    const s = r.samples;
    const at = (f: number) => s.reduce((best, x) => (Math.abs(x.jobs - f * MEMORY_JOBS) < Math.abs(best.jobs - f * MEMORY_JOBS) ? x : best));
    const late = s.filter((x) => x.jobs >= 0.1 * MEMORY_JOBS);
    const four = (k: "rss" | "heapUsed") => `${mb(s[0]![k])} / ${mb(at(0.1)[k])} / ${mb(at(0.5)[k])} / ${mb(s.at(-1)![k])}`;
    const maxes = (k: "rss" | "heapUsed") => `${mb(Math.max(...s.map((x) => x[k])))} / ${mb(Math.max(...late.map((x) => x[k])))}`;
    lines.push(`| ${r.driver} | ${fmt(MEMORY_JOBS / r.seconds)} | ${four("rss")} | ${maxes("rss")} | ${four("heapUsed")} | ${maxes("heapUsed")} |`);
  }
  return lines.join("\n");
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  if (args[0] === "--memory-child") {
    const [, driver, url, prefix, jobs, every] = args;
    await memoryChild(driver as Driver, url!, prefix!, Number(jobs), Number(every));
    return;
  }
  const only = args.find((a) => a === "redis" || a === "postgres") as Driver | undefined;
  const drivers: Driver[] = only ? [only] : ["redis", "postgres"];
  const wantTable = args.includes("--table") || !args.includes("--memory");
  const wantMemory = args.includes("--memory") || !args.includes("--table");
  const withPlans = args.includes("--explain");
  const out: string[] = [];

  if (wantTable) {
    log(`backlog: rows ${BACKLOG.map(fmt).join(", ")} waiting and ${fmt(FINISHED)} finished; ${RUNS} runs a row, interleaved; drivers ${drivers.join(", ")}`);
    const byDriver: { driver: Driver; rows: Row[] }[] = [];
    const dbs = new Databases();
    const prefixes: string[] = [];
    try {
      const templates: { waiting: number; name: string }[] = [];
      for (const waiting of BACKLOG) {
        templates.push({ waiting, name: await dbs.create("backlog_tpl") });
        await fillBacklogTemplate(dbs.url(templates.at(-1)!.name), waiting);
      }
      let finished: string | undefined;
      if (FINISHED > 0) {
        finished = await dbs.create("finished_tpl");
        await fillFinished(dbs.url(finished), FINISHED);
      }
      for (const driver of drivers) {
        const names: string[] = [];
        const rows: Row[] = [];
        for (const { waiting, name } of templates) {
          names.push(await dbs.create("backlog", name));
          rows.push(await prepareRow(dbs.url(names.at(-1)!), driver, `${fmt(waiting)} waiting`, waiting));
          prefixes.push(rows.at(-1)!.prefix);
        }
        if (finished) {
          names.push(await dbs.create("finished", finished));
          rows.push(await prepareRow(dbs.url(names.at(-1)!), driver, `${fmt(FINISHED)} completed, 0 waiting`, 0));
          prefixes.push(rows.at(-1)!.prefix);
        }
        // Runs interleaved across the rows, so the machine's noise falls on every row alike.
        for (let run = 0; run < RUNS; run++) {
          for (const row of rows) await visitRow(row, driver, run, run === RUNS - 1, withPlans);
        }
        for (const name of names) await dbs.drop(name);
        byDriver.push({ driver, rows });
      }
    } finally {
      await dbs.dropAll();
      const redis = createIoRedis(REDIS_URL);
      for (const prefix of prefixes) {
        const keys = (await redis.pipeline([["KEYS", `${prefix}*`]]))[0] as string[];
        if (keys.length) await redis.pipeline([["DEL", ...keys]]);
      }
      await redis.close();
    }
    out.push(tables(byDriver));
    if (withPlans) out.push("", ...byDriver.flatMap((d) => d.rows.map((r) => r.plans ?? "")));
  }
  if (wantMemory && MEMORY_JOBS > 0) {
    const results: MemoryResult[] = [];
    for (const d of only ? [only] : MEMORY_DRIVERS) results.push(await memoryBench(d));
    out.push("", memoryTable(results));
  }
  process.stdout.write(`${out.join("\n")}\n`);
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    process.stderr.write(`bench:backlog failed: ${err instanceof Error ? err.stack : String(err)}\n`);
    process.exit(1);
  },
);

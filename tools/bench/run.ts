/**
 * npm run bench: the engine's speed on this machine, against local Postgres and Redis.
 * Prints medians of several runs per figure; the machines are shared and noisy.
 *
 *   enqueue      jobs/s inserting batches of 1,000 (one round trip a batch), from 1 and 4 callers
 *   drain c=N    jobs/s running 20,000 waiting no-op jobs at concurrency N, from worker start
 *                until the ledger shows every job completed
 *   latency      enqueue-to-handler-start over 300 jobs sent one at a time to an idle worker
 *   ceiling      the same 20,000 rows drained by the least a Postgres queue can do: 4 loops, each
 *                claiming 500 rows (FOR UPDATE SKIP LOCKED) and completing them with one UPDATE
 *                ... WHERE id = ANY($1); measured in the same run on the same database, so the
 *                engine's drains print as a % of it (the machine's noise cancels in the ratio)
 *   CPU per job  over the c=50 drains: this process, and every postgres and redis-server
 *                process of the machine (from /proc; run it on an otherwise idle machine)
 *
 * Env: BENCH_ADMIN_DATABASE_URL (default postgres://postgres@127.0.0.1:5432/postgres),
 * BENCH_REDIS_URL (default redis://127.0.0.1:6379), BENCH_RUNS (default 3), BENCH_JOBS (20000).
 */
import { randomBytes } from "node:crypto";
import { migrate } from "../../schema/migrate";
import type { Redis, Sql } from "../../shared/ports";
import { createEngine, type Engine } from "../../shared/queue/engine";
import { WorkerPool } from "../../shared/queue/worker";
import { createPgSql } from "../../workers/node/postgres";
import { createIoRedis } from "../../workers/node/redis";
import { readdirSync, readFileSync } from "node:fs";
import { median, oneByOne, percentile, REDIS_URL, withDatabase } from "./support";
import pg from "pg";

const RUNS = Number(process.env.BENCH_RUNS ?? 3);
const JOBS = Number(process.env.BENCH_JOBS ?? 20_000);
const LATENCY_JOBS = 300;

const payload = (i: number) => ({ recipient: `user${i}@example.com`, template_id: "tpl_bench", variables: { i } });

/** Enqueues n jobs in batches of 1,000 from `clients` concurrent callers (as many web requests would). */
async function enqueueAll(engine: Engine, n: number, clients = 1): Promise<number> {
  const started = performance.now();
  let next = 0;
  const client = async () => {
    for (let b = (next += 1_000) - 1_000; b < n; b = (next += 1_000) - 1_000) {
      const size = Math.min(1_000, n - b);
      await engine.queue.enqueueMany(
        Array.from({ length: size }, (_, i) => ({ type: "email.send", tenantId: `tenant-${i % 10}`, payload: payload(b + i) })),
      );
    }
  };
  await Promise.all(Array.from({ length: clients }, client));
  return n / ((performance.now() - started) / 1000);
}

async function reset(sql: Sql, redis: Redis | undefined, prefix: string): Promise<void> {
  await sql.query("truncate jobs, job_stats");
  if (redis) await redis.pipeline([["DEL", `${prefix}lane:email.send`]]);
}

/**
 * CPU time (µs) used so far by every process of a program (postgres, redis-server), from
 * /proc; undefined where /proc is not readable (not Linux). Clock ticks are 100 a second.
 */
function programCpuUs(command: string): number | undefined {
  try {
    let ticks = 0;
    for (const pid of readdirSync("/proc").filter((d) => /^\d+$/.test(d))) {
      let stat: string;
      try {
        stat = readFileSync(`/proc/${pid}/stat`, "utf8");
      } catch {
        continue;
      }
      const name = stat.slice(stat.indexOf("(") + 1, stat.lastIndexOf(")"));
      if (!name.startsWith(command)) continue;
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      ticks += Number(fields[11]) + Number(fields[12]); // utime, stime
    }
    return ticks * 10_000;
  } catch {
    return undefined;
  }
}

/** CPU per job of one drain, by process: this Node process, Postgres' backends, Redis. */
interface CpuPerJob {
  node: number;
  postgres?: number;
  redis?: number;
}
const cpuSamples: Record<string, CpuPerJob[]> = {};

async function drain(engine: Engine, sql: Sql, concurrency: number, label?: string): Promise<number> {
  const pool = new WorkerPool({
    name: "bench",
    handlers: [{ type: "email.send", run: async () => undefined }],
    concurrency,
    queue: engine.queue,
    stats: engine.stats,
    workerId: `bench-${concurrency}`,
  });
  const cpu0 = { node: process.cpuUsage(), postgres: programCpuUs("postgres"), redis: programCpuUs("redis-server") };
  const started = performance.now();
  pool.start();
  // Watch the pool's own counter first so the measurement itself does not load Postgres,
  // then confirm in the ledger (the clock stops when it shows every job completed).
  while (pool.processed < JOBS) await new Promise((r) => setTimeout(r, 2));
  for (;;) {
    const [row] = await sql.query<{ n: number }>(
      "select (select count(*) from jobs where state = 'queued') + (select count(*) from jobs where state = 'active') as n",
    );
    if (Number(row!.n) === 0) break;
    await new Promise((r) => setTimeout(r, 2));
  }
  const seconds = (performance.now() - started) / 1000;
  const node = process.cpuUsage(cpu0.node);
  const pgNow = programCpuUs("postgres");
  const redisNow = programCpuUs("redis-server");
  if (label) {
    (cpuSamples[label] ??= []).push({
      node: (node.user + node.system) / JOBS,
      postgres: pgNow !== undefined && cpu0.postgres !== undefined ? (pgNow - cpu0.postgres) / JOBS : undefined,
      redis: redisNow !== undefined && cpu0.redis !== undefined ? (redisNow - cpu0.redis) / JOBS : undefined,
    });
  }
  await pool.stop();
  return JOBS / seconds;
}

/** The raw two-update ceiling (see the header): jobs/s. */
async function ceiling(url: string, loops = 4, batch = 500): Promise<number> {
  const pool = new pg.Pool({ connectionString: url, max: loops, options: "-c synchronous_commit=off" });
  const claim = `with c as (select id from jobs where state = 'queued' and type = 'email.send'
      order by priority, vtime, id limit $1 for update skip locked)
    update jobs j set state = 'active', attempt = j.attempt + 1, started_at = now(), lease_until = now() + interval '30 s', worker_id = $2
    from c where j.id = c.id returning j.id`;
  const complete = "update jobs set state = 'completed', finished_at = now(), lease_until = null where id = any($1::bigint[])";
  const started = performance.now();
  let done = 0;
  await Promise.all(
    Array.from({ length: loops }, async (_, i) => {
      for (;;) {
        const { rows } = await pool.query<{ id: string }>({ name: "ceiling-claim", text: claim, values: [batch, `ceiling-${i}`] });
        if (rows.length === 0) return;
        await pool.query({ name: "ceiling-complete", text: complete, values: [rows.map((r) => r.id)] });
        done += rows.length;
      }
    }),
  );
  const seconds = (performance.now() - started) / 1000;
  await pool.end();
  return done / seconds;
}

async function latency(engine: Engine): Promise<number[]> {
  let t0 = 0;
  let startedAt = 0;
  const samples: number[] = [];
  await oneByOne(engine, LATENCY_JOBS, payload, {
    before: (now) => (t0 = now),
    started: (now) => (startedAt = now),
    after: () => samples.push(startedAt - t0),
  });
  return samples;
}

/** Each figure's runs, in run order. */
interface Row {
  driver: string;
  enqueue: number[];
  enqueue4: number[];
  drain10: number[];
  drain50: number[];
  ceiling: number[];
  p50: number[];
  p95: number[];
  p99: number[];
}

async function benchDriver(driver: "postgres" | "redis"): Promise<Row> {
  return withDatabase("engine", async (url) => {
    const sql = createPgSql(url, { max: 20, prepare: true });
    // As in the Node runtime: claims and outcomes on a pool that does not wait for the disk.
    const hotSql = createPgSql(url, { max: 10, synchronousCommit: false, prepare: true });
    await migrate(sql);
    const prefix = `bench:${randomBytes(3).toString("hex")}:{jobs}:`;
    const redis = driver === "redis" ? createIoRedis(REDIS_URL) : undefined;
    const engine = createEngine({ sql, hotSql, redis, redisOptions: { prefix } });
    await engine.dispatcher.start();
    if (redis) await engine.dispatcher.reconcile({ force: true });
    const enq: number[] = [];
    const enq4: number[] = [];
    const d10: number[] = [];
    const d50: number[] = [];
    const lat: number[][] = [];
    const ceil: number[] = [];
    for (let run = 0; run < RUNS; run++) {
      await reset(sql, redis, prefix);
      await enqueueAll(engine, JOBS);
      ceil.push(await ceiling(url));
      await reset(sql, redis, prefix);
      enq.push(await enqueueAll(engine, JOBS));
      d10.push(await drain(engine, sql, 10));
      await reset(sql, redis, prefix);
      enq.push(await enqueueAll(engine, JOBS));
      d50.push(await drain(engine, sql, 50, `${driver} c=50`));
      await reset(sql, redis, prefix);
      enq4.push(await enqueueAll(engine, JOBS, 4));
      await reset(sql, redis, prefix);
      lat.push(await latency(engine));
      process.stderr.write(
        `  ${driver} run ${run + 1}/${RUNS}: enqueue ${enq.at(-1)!.toFixed(0)}/s, drain c10 ${d10.at(-1)!.toFixed(0)}/s, c50 ${d50.at(-1)!.toFixed(0)}/s, ` +
          `ceiling ${ceil.at(-1)!.toFixed(0)}/s, p50 ${median(lat.at(-1)!).toFixed(2)} ms\n`,
      );
    }
    await engine.dispatcher.close();
    if (redis) {
      const keys = (await redis.pipeline([["KEYS", `${prefix}*`]]))[0] as string[];
      if (keys.length) await redis.pipeline([["DEL", ...keys]]);
      await redis.close();
    }
    await hotSql.close();
    await sql.close();
    return {
      driver,
      enqueue: enq,
      enqueue4: enq4,
      drain10: d10,
      drain50: d50,
      ceiling: ceil,
      p50: lat.map((l) => percentile(l, 50)),
      p95: lat.map((l) => percentile(l, 95)),
      p99: lat.map((l) => percentile(l, 99)),
    };
  });
}

async function main(): Promise<void> {
  const only = process.argv[2];
  const drivers = (only ? [only] : ["redis", "postgres"]) as ("postgres" | "redis")[];
  process.stderr.write(`bench: ${JOBS} jobs, ${RUNS} runs per figure (medians)\n`);
  const rows: Row[] = [];
  for (const d of drivers) rows.push(await benchDriver(d));
  const fmt = (n: number) => Math.round(n).toLocaleString("en-US");
  /** The median, and the range of the runs when there are several. */
  const spread = (xs: number[], f: (n: number) => string = fmt) => (xs.length > 1 ? `${f(median(xs))} (${f(Math.min(...xs))}-${f(Math.max(...xs))})` : f(median(xs)));
  /** A drain as a % of the ceiling measured in the same run (run by run, then the median). */
  const ofCeiling = (xs: number[], ceil: number[]) => `${median(xs.map((x, i) => (100 * x) / ceil[i]!)).toFixed(0)}%`;
  const ms = (n: number) => n.toFixed(2);
  const lines = [
    `medians of ${RUNS} runs (range); drains also as a % of the raw ceiling of the same run`,
    "",
    "| driver | enqueue, 1 client (jobs/s, batches of 1,000) | enqueue, 4 clients | drain c=10 (jobs/s) | drain c=50 (jobs/s) | raw ceiling (jobs/s) | latency p50 / p95 / p99 (ms) |",
    "|---|---:|---:|---:|---:|---:|---:|",
    ...rows.map(
      (r) =>
        `| ${r.driver} | ${spread(r.enqueue)} | ${spread(r.enqueue4)} | ${spread(r.drain10)}, ${ofCeiling(r.drain10, r.ceiling)} | ` +
        `${spread(r.drain50)}, ${ofCeiling(r.drain50, r.ceiling)} | ${spread(r.ceiling)} | ${ms(median(r.p50))} / ${ms(median(r.p95))} / ${ms(median(r.p99))} |`,
    ),
  ];
  const us = (xs: (number | undefined)[]) => {
    const known = xs.filter((x): x is number => x !== undefined);
    return known.length ? median(known).toFixed(0) : "-";
  };
  lines.push(
    "",
    "CPU per job over the c=50 drains (µs, medians; Postgres and Redis: all their processes on this machine, from /proc)",
    "",
    "| drain | Node | Postgres | Redis | total |",
    "|---|---:|---:|---:|---:|",
    ...Object.entries(cpuSamples).map(([label, xs]) => {
      const total = xs.map((x) => x.node + (x.postgres ?? 0) + (x.redis ?? 0));
      return `| ${label} | ${us(xs.map((x) => x.node))} | ${us(xs.map((x) => x.postgres))} | ${us(xs.map((x) => x.redis))} | ${us(total)} |`;
    }),
  );
  process.stdout.write(`${lines.join("\n")}\n`);
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    process.stderr.write(`bench failed: ${err instanceof Error ? err.stack : String(err)}\n`);
    process.exit(1);
  },
);

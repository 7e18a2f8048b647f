/**
 * npm run bench:latency: where the time between `enqueue()` and the handler's start goes, on an
 * idle worker, against this design's floor measured in the same run on the same servers.
 *
 * The design: the job is committed durably to Postgres first (synchronous commit: an accepted
 * job survives a crash), then placed in its Redis lane (or announced with pg_notify on the
 * Postgres driver), and the worker claims it with a pop and one UPDATE on the pool that commits
 * without waiting for the disk. So no design-preserving change can go below
 *
 *   floor = one durable one-row insert and commit + one Redis round trip (the lane)
 *         + one Redis round trip (the pop) + one one-row claim UPDATE (asynchronous commit)
 *
 * (the Postgres driver: insert + notify + claim). Each part of the floor is measured raw here
 * (node-postgres and ioredis, no engine code), and the engine's path is cut at the same points
 * by decorating the Sql and Redis ports the engine is given (no engine code is changed):
 * insert statement, lane publish, wake-up to claim returned, claim returned to handler start.
 *
 * Env: BENCH_ADMIN_DATABASE_URL, BENCH_REDIS_URL, BENCH_RUNS (default 3), BENCH_LATENCY_JOBS (300).
 */
import { randomBytes } from "node:crypto";
import pg from "pg";
import { migrate } from "../../schema/migrate";
import type { Redis, RedisCommand, Sql, SqlClient } from "../../shared/ports";
import { createEngine } from "../../shared/queue/engine";
import { JobClaimMany, JobClaimNext, JobInsertMany } from "../../shared/queue/statements";
import { createPgSql } from "../../workers/node/postgres";
import { createIoRedis } from "../../workers/node/redis";
import { median, oneByOne, percentile, REDIS_URL, withDatabase } from "./support";

const RUNS = Number(process.env.BENCH_RUNS ?? 3);
const N = Number(process.env.BENCH_LATENCY_JOBS ?? 300);
const payload = (i: number) => ({ recipient: `user${i}@example.com`, template_id: "tpl_bench", variables: { i } });

/** The moments one job passes, in performance.now() ms; set by the port decorators below. */
interface Marks {
  t0: number;
  inserted?: number;
  published?: number;
  claimed?: number;
  started?: number;
  returned?: number;
}
let current: Marks | undefined;

/** Times the statements of interest as they resolve, for the job being measured. */
function markingSql<T extends SqlClient>(inner: T, marks: Record<string, keyof Marks>): T {
  return new Proxy(inner, {
    get(target, prop, receiver) {
      if (prop !== "query") return Reflect.get(target, prop, receiver);
      return async (text: string, params?: readonly unknown[]) => {
        const rows = await target.query(text, params);
        const mark = marks[text];
        if (mark && current && current[mark] === undefined && (mark !== "claimed" || rows.length > 0)) current[mark] = performance.now();
        return rows;
      };
    },
  });
}

function markingRedis(inner: Redis): Redis {
  return new Proxy(inner, {
    get(target, prop, receiver) {
      if (prop !== "pipeline") return Reflect.get(target, prop, receiver);
      return async (cmds: readonly RedisCommand[]) => {
        const out = await target.pipeline(cmds);
        if (current && current.published === undefined && cmds.some((c) => c[0] === "PUBLISH")) current.published = performance.now();
        return out;
      };
    },
  });
}

interface Floor {
  insert: number[];
  redis: number[];
  claim: number[];
}

/** The floor's parts, raw: the same rows and servers, no engine code. */
async function floor(url: string, redis: Redis): Promise<Floor> {
  const durable = new pg.Client({ connectionString: url });
  const hot = new pg.Client({ connectionString: url, options: "-c synchronous_commit=off" });
  await durable.connect();
  await hot.connect();
  // A regular table: a temporary one writes no WAL, so its commit would not wait for the disk.
  await durable.query("create table if not exists floor_jobs (id bigserial primary key, tenant_id text, type text, payload jsonb, state text)");
  const insert: number[] = [];
  const claim: number[] = [];
  const rtt: number[] = [];
  await hot.query("create table if not exists floor_claims (id bigserial primary key, state text, worker text)");
  for (let i = 0; i < N; i++) {
    let t = performance.now();
    await durable.query({
      name: "floor-insert",
      text: "insert into floor_jobs (tenant_id, type, payload, state) values ($1, $2, $3, 'queued') returning id",
      values: ["tenant-lat", "email.send", JSON.stringify(payload(i))],
    });
    insert.push(performance.now() - t);
    const { rows } = await hot.query<{ id: string }>({ name: "floor-row", text: "insert into floor_claims (state) values ('queued') returning id" });
    t = performance.now();
    await redis.pipeline([["PING"]]);
    rtt.push(performance.now() - t);
    t = performance.now();
    await hot.query({ name: "floor-claim", text: "update floor_claims set state = 'active', worker = $2 where id = $1 and state = 'queued' returning *", values: [rows[0]!.id, "w"] });
    claim.push(performance.now() - t);
  }
  await hot.query("drop table floor_claims");
  await durable.query("drop table floor_jobs");
  await durable.end();
  await hot.end();
  return { insert, redis: rtt, claim };
}

interface EnginePath {
  total: number[];
  insert: number[];
  publish: number[];
  claim: number[];
  start: number[];
  returned: number[];
}

async function enginePath(url: string, driver: "redis" | "postgres", redisInner: Redis | undefined): Promise<EnginePath> {
  const sqlInner = createPgSql(url, { max: 20, prepare: true });
  const hotInner = createPgSql(url, { max: 10, synchronousCommit: false, prepare: true });
  const sql = markingSql<Sql>(sqlInner, { [JobInsertMany]: "inserted" });
  const hotSql = markingSql<Sql>(hotInner, { [JobClaimMany]: "claimed", [JobClaimNext]: "claimed" });
  const prefix = `bench-lat:${randomBytes(3).toString("hex")}:{jobs}:`;
  const redis = redisInner ? markingRedis(redisInner) : undefined;
  const engine = createEngine({ sql, hotSql, redis, redisOptions: { prefix } });
  await engine.dispatcher.start();
  if (redis) await engine.dispatcher.reconcile({ force: true });
  const marks: Marks[] = [];
  await oneByOne(engine, N, payload, {
    before: (now) => (current = { t0: now }),
    enqueued: (now) => (current!.returned = now),
    started: (now) => {
      if (current) current.started = now;
    },
    after: () => {
      marks.push(current!);
      current = undefined;
    },
  });
  await engine.dispatcher.close();
  if (redisInner) {
    const keys = (await redisInner.pipeline([["KEYS", `${prefix}*`]]))[0] as string[];
    if (keys.length) await redisInner.pipeline([["DEL", ...keys]]);
  }
  await hotInner.close();
  await sqlInner.close();
  // The Postgres driver has no publish step: its wake-up rides on the insert's pg_notify.
  const afterInsert = (m: Marks) => (driver === "redis" ? m.published! : m.inserted!);
  const complete = marks.filter((m) => m.inserted !== undefined && m.claimed !== undefined && m.started !== undefined && (driver === "postgres" || m.published !== undefined));
  return {
    total: complete.map((m) => m.started! - m.t0),
    insert: complete.map((m) => m.inserted! - m.t0),
    publish: complete.map((m) => afterInsert(m) - m.inserted!),
    claim: complete.map((m) => m.claimed! - afterInsert(m)),
    start: complete.map((m) => m.started! - m.claimed!),
    returned: complete.map((m) => m.returned! - m.t0),
  };
}

async function main(): Promise<void> {
  process.stderr.write(`bench:latency: ${N} jobs one at a time to an idle worker, ${RUNS} runs per driver\n`);
  const redis = createIoRedis(REDIS_URL);
  const p50 = (xs: number[]) => percentile(xs, 50);
  const ms = (xs: number[]) => `${median(xs).toFixed(2)} (${Math.min(...xs).toFixed(2)}-${Math.max(...xs).toFixed(2)})`;
  const lines: string[] = [];
  for (const driver of ["redis", "postgres"] as const) {
    const runs: { floor: Floor; path: EnginePath }[] = [];
    await withDatabase("latency", async (url) => {
      const admin = createPgSql(url, { max: 1 });
      await migrate(admin);
      await admin.close();
      for (let r = 0; r < RUNS; r++) {
        const f = await floor(url, redis);
        const path = await enginePath(url, driver, driver === "redis" ? redis : undefined);
        runs.push({ floor: f, path });
        process.stderr.write(`  ${driver} run ${r + 1}/${RUNS}: engine p50 ${p50(path.total).toFixed(2)} ms, floor p50 ${(p50(f.insert) + p50(f.claim) + (driver === "redis" ? 2 * p50(f.redis) : 0)).toFixed(2)} ms\n`);
      }
    });
    const per = (pick: (r: (typeof runs)[number]) => number[]) => runs.map((r) => p50(pick(r)));
    const floorTotal = runs.map((r) => p50(r.floor.insert) + p50(r.floor.claim) + (driver === "redis" ? 2 * p50(r.floor.redis) : 0));
    const engineTotal = per((r) => r.path.total);
    lines.push(
      "",
      `${driver} driver: p50 in ms, medians of ${RUNS} runs (range)`,
      "",
      "| step | engine | floor (raw, same run) |",
      "|---|---:|---:|",
      `| insert and commit (durable) | ${ms(per((r) => r.path.insert))} | ${ms(per((r) => r.floor.insert))} |`,
      driver === "redis"
        ? `| lane publish (ZADD + PUBLISH, one round trip) | ${ms(per((r) => r.path.publish))} | ${ms(per((r) => r.floor.redis))} |`
        : "| wake-up (pg_notify, in the insert) | - | - |",
      `| wake-up to claim committed (${driver === "redis" ? "pop + UPDATE" : "LISTEN + claim UPDATE"}) | ${ms(per((r) => r.path.claim))} | ${ms(
        runs.map((r) => p50(r.floor.claim) + (driver === "redis" ? p50(r.floor.redis) : 0)),
      )} |`,
      `| claim to handler start | ${ms(per((r) => r.path.start))} | 0 |`,
      `| **enqueue call to handler start** | **${ms(engineTotal)}** | **${ms(floorTotal)}** |`,
      `| enqueue() returns | ${ms(per((r) => r.path.returned))} | |`,
      "",
      `engine / floor: ${median(engineTotal.map((e, i) => e / floorTotal[i]!)).toFixed(2)}x`,
    );
  }
  await redis.close();
  process.stdout.write(`${lines.join("\n")}\n`);
}

await main();

/**
 * Recovery from faults between Redis and Postgres and from slow workers (issue 11): ids popped
 * from Redis whose claim fails go back to their lanes; ids a dead worker popped are found at the
 * lane heads; an outcome or heartbeat that arrives after the rescue still counts until another
 * run claims the job; a stall of the database does not make the rescue take live jobs; rescued
 * jobs keep their place ahead of their tenant's backlog. Time is a manual clock, moved by hand.
 */
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { POP_SCRIPT, BAND } from "../shared/dispatch/lanes-script";
import type { Redis, RedisCommand, Sql, SqlClient } from "../shared/ports";
import { createEngine, type Engine } from "../shared/queue/engine";
import type { Job } from "../shared/queue/job";
import { Scheduler } from "../shared/queue/scheduler";
import { WorkerPool } from "../shared/queue/worker";
import * as statements from "../shared/queue/statements";
import { createHarness, DRIVERS, fastCatalog, type Harness } from "./support/engine";
import { waitFor } from "./support/services";

class ManualClock {
  constructor(private t: number) {}
  now = () => new Date(this.t);
  advance(ms: number) {
    this.t += ms;
  }
}

const mail = (n: number) => ({ recipient: `user${n}@example.com`, template_id: "tpl_1", variables: { n } });
const send = (tenantId: string, n: number) => ({ type: "email.send", tenantId, payload: mail(n) });

/** A Sql whose statements can be made to fail or to take time, one statement text at a time. */
function instrumented(sql: Sql) {
  const failures = new Map<string, number>();
  const after = new Map<string, () => void>();
  const wrap = (client: SqlClient) => async <T>(text: string, params?: readonly unknown[]): Promise<T[]> => {
    const left = failures.get(text) ?? 0;
    if (left > 0) {
      failures.set(text, left - 1);
      throw new Error("Connection terminated unexpectedly");
    }
    const rows = await client.query<T>(text, params);
    after.get(text)?.();
    return rows;
  };
  const wrapped: Sql = {
    query: wrap(sql),
    begin: (fn) => sql.begin((tx) => fn({ query: wrap(tx) })),
    listen: sql.listen?.bind(sql),
    close: async () => {},
  };
  return {
    sql: wrapped,
    /** The next n runs of this statement throw, as when Postgres restarts under them. */
    fail: (text: string, n = 1) => failures.set(text, n),
    /** Runs fn after each run of this statement (e.g. to move the clock: the statement "took" long). */
    after: (text: string, fn: () => void) => after.set(text, fn),
  };
}

/** A Redis whose pipelines can be refused, as when Redis goes down too. */
function refusable(redis: Redis) {
  let refuse: ((cmds: readonly RedisCommand[]) => boolean) | undefined;
  const wrapped: Redis = {
    pipeline: (cmds) => (refuse?.(cmds) ? Promise.reject(new Error("connect ECONNREFUSED")) : redis.pipeline(cmds)),
    eval: (script, keys, args) => redis.eval(script, keys, args),
    subscribe: redis.subscribe?.bind(redis),
    close: async () => {},
  };
  return { redis: wrapped, refuseWhen: (f: typeof refuse) => (refuse = f) };
}

describe("ids popped from Redis whose claim fails", () => {
  let h: Harness;
  beforeEach(async () => {
    h = await createHarness("redis", "recovery_pop");
  });
  afterEach(async () => {
    await h.close();
  });

  const lane = () => `${h.prefix}lane:email.send`;
  const laneEntries = async () => {
    const [flat] = (await h.redis!.pipeline([["ZRANGE", lane(), 0, -1, "WITHSCORES"]])) as [string[]];
    const out: [string, string][] = [];
    for (let i = 0; i < flat.length; i += 2) out.push([flat[i]!, flat[i + 1]!]);
    return out;
  };

  it("go back to their lanes with their scores, and every job then runs once", async () => {
    const hot = instrumented(h.sql);
    const engine = createEngine({ sql: h.sql, hotSql: hot.sql, redis: h.redis, catalog: fastCatalog(), redisOptions: { prefix: h.prefix } });
    await engine.queue.enqueueMany(Array.from({ length: 30 }, (_, i) => send(i % 2 ? "t1" : "t2", i)));
    const before = await laneEntries();
    expect(before).toHaveLength(30);

    hot.fail(statements.JobClaimMany);
    await expect(engine.dispatcher.take(["email.send"], 10, "w1", 30_000)).rejects.toThrow(/terminated/);
    // Today's code lost these 10 ids until the 5-minute full reconcile.
    expect(await laneEntries()).toEqual(before);

    // The same order as before the failure: the first claim takes what the failed one popped.
    const claimed = await engine.dispatcher.take(["email.send"], 10, "w1", 30_000);
    expect(claimed.map((j) => j.id).sort()).toEqual(before.slice(0, 10).map(([id]) => id).sort());

    const runs = new Map<string, number>();
    const pool = h.pool([{ type: "email.send", run: async (_p: unknown, job: Job) => void runs.set(job.id, (runs.get(job.id) ?? 0) + 1) }]);
    pool.start();
    await waitFor(async () => (await h.sql.query<{ n: number }>(`select count(*)::int as n from jobs where state = 'completed'`))[0]!.n === 20, {
      timeoutMs: 10_000,
      what: "the 20 jobs left in the lanes to complete",
    });
    expect([...runs.values()].every((n) => n === 1)).toBe(true);
    expect(runs.size).toBe(20);
  });

  it("mark the lanes for rebuild when Redis refuses them back too; the next take rebuilds them", async () => {
    const hot = instrumented(h.sql);
    const flaky = refusable(h.redis!);
    const engine = createEngine({ sql: h.sql, hotSql: hot.sql, redis: flaky.redis, catalog: fastCatalog(), redisOptions: { prefix: h.prefix, retryRedisAfterMs: 0 } });
    await engine.queue.enqueueMany(Array.from({ length: 12 }, (_, i) => send("t1", i)));

    hot.fail(statements.JobClaimMany);
    flaky.refuseWhen((cmds) => cmds.some((c) => c[0] === "ZADD"));
    await expect(engine.dispatcher.take(["email.send"], 5, "w1", 30_000)).rejects.toThrow(/terminated/);
    expect(await laneEntries()).toHaveLength(7);
    flaky.refuseWhen(undefined);

    // The next take claims through Postgres and rebuilds the lanes from the ledger meanwhile.
    const claimed = await engine.dispatcher.take(["email.send"], 1, "w1", 30_000);
    expect(claimed).toHaveLength(1);
    // Every queued job is in the lane again (the one just claimed may be there too, stale, if the
    // rebuild read the ledger before that claim committed: harmless, a claim skips it).
    const queued = async () => (await h.sql.query<{ id: string }>(`select id::text as id from jobs where state = 'queued'`)).map((r) => r.id);
    await waitFor(
      async () => {
        const inLane = new Set((await laneEntries()).map(([id]) => id));
        const epoch = (await h.redis!.pipeline([["EXISTS", `${h.prefix}epoch`]]))[0] === 1;
        return epoch && (await queued()).every((id) => inLane.has(id));
      },
      { what: "the lanes to be rebuilt" },
    );
    expect(await queued()).toHaveLength(11);
  });

  it("popped by a worker that died before its claim are put back by the scheduler's head check", async () => {
    const engine = h.engine;
    const scheduler = new Scheduler({ queue: engine.queue, holderId: "s1" });
    await scheduler.runOnce(); // the first pass's full reconcile; the next is 5 minutes away
    await engine.queue.enqueueMany(Array.from({ length: 8 }, (_, i) => send("t1", i)));
    // A worker pops 3 ids and dies before claiming them.
    await h.redis!.eval(POP_SCRIPT, [`${h.prefix}epoch`, lane()], [3, BAND]);
    expect(await laneEntries()).toHaveLength(5);

    // One pass may find a job between its pop and its claim; the next one puts it back.
    expect((await scheduler.runOnce()).reconciled).toBe(0);
    expect((await scheduler.runOnce()).reconciled).toBe(3);
    expect(await laneEntries()).toHaveLength(8);
    await scheduler.stop();
  });
});

describe.each(DRIVERS)("the rescue on the %s driver", (driver) => {
  let h: Harness;
  let clock: ManualClock;
  let engine: Engine;
  let sql: ReturnType<typeof instrumented>;
  beforeEach(async () => {
    h = await createHarness(driver, "recovery");
    clock = new ManualClock(Date.parse("2026-03-01T03:00:00Z"));
    sql = instrumented(h.sql);
    engine = createEngine({ sql: sql.sql, redis: h.redis, clock, catalog: fastCatalog(), redisOptions: { prefix: h.prefix } });
    await engine.dispatcher.start();
  });
  afterEach(async () => {
    await engine.dispatcher.close();
    await h.close();
  });

  const get = (id: string) => engine.queue.get(id, null);
  const take = (worker: string, n = 1) => engine.dispatcher.take(["email.send"], n, worker, 5_000);
  const scheduler = () => new Scheduler({ queue: engine.queue, holderId: "s1", leaseTtlMs: 60_000 });

  it("keeps an outcome that arrives after the rescue, and the job does not run again", async () => {
    const { job } = await engine.queue.enqueue(send("t1", 1));
    const [run] = await take("slow-worker");
    expect(run!.id).toBe(job.id);
    clock.advance(6_000); // the worker's writes are stuck behind a lock past its 5 s lease
    expect((await scheduler().runOnce()).rescued).toBe(1);
    expect((await get(job.id)).state).toBe("queued");

    const held = await engine.queue.ledger.finishMany([{ id: job.id, attempt: 1, state: "completed", result: { sent: 1 } }], clock.now());
    expect(held).toEqual([{ id: job.id, state: "completed" }]);
    expect(await get(job.id)).toMatchObject({ state: "completed", attempt: 1, result: { sent: 1 } });
    expect(await take("other-worker", 10)).toEqual([]);
    // Written twice (a retried flush whose first reply was lost), it is not applied twice.
    expect(await engine.queue.ledger.finishMany([{ id: job.id, attempt: 1, state: "failed", error: { message: "x" } }], clock.now())).toEqual([]);
  });

  it("keeps a late outcome over a rescue that failed the job on its last attempt", async () => {
    const { job } = await engine.queue.enqueue({ ...send("t1", 1), maxAttempts: 1 });
    await take("slow-worker");
    clock.advance(6_000);
    await scheduler().runOnce();
    expect((await get(job.id)).state).toBe("failed");
    await engine.queue.ledger.finishMany([{ id: job.id, attempt: 1, state: "completed", result: "ok" }], clock.now());
    expect(await get(job.id)).toMatchObject({ state: "completed", result: "ok" });
  });

  it("drops a late outcome once another run has claimed the job: the new run decides", async () => {
    const { job } = await engine.queue.enqueue(send("t1", 1));
    await take("slow-worker");
    clock.advance(6_000);
    await scheduler().runOnce();
    const [again] = await take("other-worker");
    expect(again).toMatchObject({ id: job.id, attempt: 2 });
    expect(await engine.queue.ledger.finishMany([{ id: job.id, attempt: 1, state: "completed", result: "late" }], clock.now())).toEqual([]);
    expect(await engine.queue.ledger.heartbeatMany([{ id: job.id, attempt: 1, progress: undefined }], new Date(clock.now().getTime() + 5_000))).toEqual([]);
    expect(await get(job.id)).toMatchObject({ state: "active", attempt: 2, workerId: "other-worker", result: null });
    await engine.queue.ledger.finishMany([{ id: job.id, attempt: 2, state: "completed", result: "new" }], clock.now());
    expect(await get(job.id)).toMatchObject({ state: "completed", attempt: 2, result: "new" });
  });

  it("gives the job back to a worker whose heartbeat arrives after the rescue, before another claim", async () => {
    const { job } = await engine.queue.enqueue(send("t1", 1));
    await take("slow-worker");
    clock.advance(6_000);
    await scheduler().runOnce();
    const leaseUntil = new Date(clock.now().getTime() + 5_000);
    expect(await engine.queue.ledger.heartbeatMany([{ id: job.id, attempt: 1, progress: { half: true } }], leaseUntil)).toEqual([
      { id: job.id, cancel_requested: false, busy: false },
    ]);
    expect(await get(job.id)).toMatchObject({ state: "active", attempt: 1, workerId: "slow-worker", progress: { half: true } });
    expect((await get(job.id)).leaseUntil!.getTime()).toBeGreaterThanOrEqual(leaseUntil.getTime());
    expect(await take("other-worker", 10)).toEqual([]); // the stale lane entry claims nothing
  });

  it("renews the other jobs' leases while one job's row is locked, and reports that one busy, not lost", async () => {
    const [a, b] = await engine.queue.enqueueMany([send("t1", 1), send("t1", 2)]);
    await take("worker", 2);
    const leaseUntil = new Date(clock.now().getTime() + 5_000);
    let unlock!: () => void;
    const locked = new Promise<void>((ready) => {
      void h.sql.begin(async (tx) => {
        await tx.query(`select id from jobs where id = $1::bigint for update`, [a!.job.id]);
        ready();
        await new Promise<void>((r) => (unlock = r));
      });
    });
    await locked;
    try {
      // Before: the whole statement waited for the lock, and with it every other job's renewal.
      const answer = await Promise.race([
        engine.queue.ledger.heartbeatMany(
          [a!, b!].map((e) => ({ id: e.job.id, attempt: 1, progress: undefined })),
          leaseUntil,
        ),
        new Promise<"blocked">((r) => setTimeout(() => r("blocked"), 3_000)),
      ]);
      expect(answer).not.toBe("blocked");
      expect(new Map((answer as { id: string; busy: boolean }[]).map((r) => [r.id, r.busy]))).toEqual(
        new Map([
          [a!.job.id, true],
          [b!.job.id, false],
        ]),
      );
      expect((await get(b!.job.id)).leaseUntil!.getTime()).toBeGreaterThanOrEqual(leaseUntil.getTime());
    } finally {
      unlock();
    }
  });

  /** Holds a lock on the whole jobs table (writes and FOR UPDATE wait) until the returned release is called. */
  const lockJobsTable = async () => {
    let release!: () => void;
    await new Promise<void>((ready) => {
      void h.sql.begin(async (tx) => {
        await tx.query("lock table jobs in exclusive mode");
        ready();
        await new Promise<void>((r) => (release = r));
      });
    });
    return () => release();
  };

  it("counts the time a rescue or a heartbeat waited behind a lock in the lease's favour", async () => {
    const [a, b] = await engine.queue.enqueueMany([send("t1", 1), send("t1", 2)]);
    await take("worker", 2); // leases until t+5 s
    clock.advance(5_500); // 0.5 s past them, by the clock of the statements sent now
    let release = await lockJobsTable();
    const rescue = engine.queue.ledger.rescueExpired(clock.now(), 100, { expiredBefore: clock.now() });
    await new Promise((r) => setTimeout(r, 1_500));
    release();
    // The rescue was sent 0.5 s after the leases ended but waited 1.5 s: heartbeats were waiting too.
    expect((await rescue).rescued).toEqual([]);

    release = await lockJobsTable();
    const sentAt = clock.now().getTime();
    const beat = engine.queue.ledger.heartbeatMany([{ id: a!.job.id, attempt: 1, progress: undefined }], new Date(sentAt + 5_000));
    await new Promise((r) => setTimeout(r, 1_500));
    release();
    expect(await beat).toHaveLength(1);
    // Renewed for 5 s from when it ran, not from when it was sent.
    expect((await get(a!.job.id)).leaseUntil!.getTime()).toBeGreaterThanOrEqual(sentAt + 5_000 + 1_400);
    expect((await get(b!.job.id)).state).toBe("active");
  });

  it("does not take live jobs after a database stall: heartbeats that waited it out were stamped before it", async () => {
    const { job } = await engine.queue.enqueue(send("t1", 1));
    await take("worker"); // lease until t+5 s
    const s = scheduler();
    clock.advance(1_000);
    // The rescue statement waits 8 s behind a lock (nothing had expired when it was sent).
    sql.after(statements.JobRescueExpired, () => clock.advance(8_000));
    expect((await s.runOnce()).rescued).toBe(0);
    sql.after(statements.JobRescueExpired, () => {});
    // The worker's heartbeat sent at t+1.7 s, stuck behind the same lock, lands now: lease t+6.7 s.
    await engine.queue.ledger.heartbeatMany([{ id: job.id, attempt: 1, progress: undefined }], new Date(Date.parse("2026-03-01T03:00:06.700Z")));
    clock.advance(1_000); // t+10 s: that lease reads as expired, but the worker is alive
    expect((await s.runOnce()).rescued).toBe(0);
    // The worker's next renewal, sent as soon as the database answered: lease t+14.5 s.
    await engine.queue.ledger.heartbeatMany([{ id: job.id, attempt: 1, progress: undefined }], new Date(Date.parse("2026-03-01T03:00:14.500Z")));
    clock.advance(1_000);
    expect((await s.runOnce()).rescued).toBe(0);
    // Then the worker dies: without a stall, the rescue takes the job as soon as its lease ends.
    clock.advance(4_000); // t+16 s
    expect((await s.runOnce()).rescued).toBe(1);
    expect((await get(job.id)).state).toBe("queued");
  });

  it("after taking the leadership over, rescues in its first pass only leases that ended before the old leader stopped", async () => {
    const { job } = await engine.queue.enqueue(send("t1", 1));
    const a = new Scheduler({ queue: engine.queue, holderId: "a", leaseTtlMs: 5_000 });
    const b = new Scheduler({ queue: engine.queue, holderId: "b", leaseTtlMs: 5_000 });
    expect((await a.runOnce()).leader).toBe(true); // a renews at t, then is stuck (or dies)
    await take("worker"); // lease until t+5 s; its heartbeats are stuck as long as a is
    clock.advance(6_000);
    // b takes over at t+6 s: the job's lease reads as expired, but a stopped renewing at t, and
    // the worker may have been stuck just as long.
    const first = await b.runOnce();
    expect(first).toMatchObject({ leader: true, rescued: 0 });
    clock.advance(1_000);
    // Still not renewed a pass later: its worker is gone (with the old leader, say).
    expect((await b.runOnce()).rescued).toBe(1);
    expect((await get(job.id)).state).toBe("queued");
  });

  it("puts a rescued job just ahead of its lane's head, not behind its tenant's backlog", async () => {
    const q = engine.queue;
    const high = (tenantId: string, n: number) => ({ ...send(tenantId, n), priority: "high" as const });
    await q.enqueueMany(Array.from({ length: 12 }, (_, i) => high("t1", i))); // virtual times 1..12
    const [lost] = await take("dead-worker"); // time 1
    const done = await take("live-worker", 6); // times 2..7 run and complete
    await q.ledger.finishMany(done.map((j) => ({ id: j.id, attempt: 1, state: "completed" as const })), clock.now());
    await q.enqueueMany(Array.from({ length: 5 }, (_, i) => high("t2", 100 + i))); // joins at the head: 8..12
    clock.advance(6_000);
    expect((await scheduler().runOnce()).rescued).toBe(1);

    const rescued = await get(lost!.id);
    const [others] = await h.sql.query<{ min: number }>(
      `select min(vtime)::float8 as min from jobs where state = 'queued' and id <> $1::bigint`,
      [lost!.id],
    );
    expect(rescued.state).toBe("queued");
    // Before: 13, behind t1's five waiting jobs (and interleaved with t2's).
    expect(rescued.vtime).toBe(others!.min - 1);
    // Not its old time (1) either: a tenant arriving next would start from there, ahead of everyone.
    expect(rescued.vtime).toBe(7);
    const [next] = await take("live-worker");
    expect(next).toMatchObject({ id: lost!.id, attempt: 2 });
  });

  it("puts a job handed back at shutdown just ahead of its lane's head, its attempt taken back", async () => {
    const q = engine.queue;
    const high = (tenantId: string, n: number) => ({ ...send(tenantId, n), priority: "high" as const });
    await q.enqueueMany(Array.from({ length: 12 }, (_, i) => high("t1", i))); // virtual times 1..12
    const [held] = await take("stopping-worker"); // time 1: running when SIGTERM's grace ran out
    const done = await take("live-worker", 6); // times 2..7 run and complete
    await q.ledger.finishMany(done.map((j) => ({ id: j.id, attempt: 1, state: "completed" as const })), clock.now());
    await q.enqueueMany(Array.from({ length: 5 }, (_, i) => high("t2", 100 + i)));

    const entries = await q.ledger.releaseMany([{ id: held!.id, attempt: 1 }], clock.now());
    expect(entries.map((e) => e.id)).toEqual([held!.id]);
    await q.publish(entries);
    const released = await get(held!.id);
    expect(released).toMatchObject({ state: "queued", attempt: 0 });
    // Before: scheduled, then promoted to 13, behind t1's waiting jobs.
    expect(released.vtime).toBe(7);
    const [next] = await take("live-worker");
    expect(next).toMatchObject({ id: held!.id, attempt: 1 });
  });

  it("puts a rescued job of a paused lane in the pause, not in the lane", async () => {
    const { job } = await engine.queue.enqueue(send("t1", 1));
    await take("dead-worker");
    await engine.queue.pause("email.send", "t1");
    clock.advance(6_000);
    await scheduler().runOnce();
    expect((await get(job.id)).state).toBe("paused");
    expect(await take("live-worker")).toEqual([]);
    await engine.queue.resume("email.send", "t1");
    expect(await take("live-worker")).toMatchObject([{ id: job.id, attempt: 2 }]);
  });
});

/**
 * A client with one connection, like a busy pool: a statement waits for the one before it. The
 * statements named in `hold` keep the connection until release() (writes blocked behind a lock).
 */
function oneConnection(sql: Sql, hold: string) {
  let tail: Promise<unknown> = Promise.resolve();
  let release!: () => void;
  const released = new Promise<void>((r) => (release = r));
  let held = 0;
  const client: SqlClient = {
    query: <T>(text: string, params?: readonly unknown[]) => {
      const run = tail.then(async () => {
        if (text === hold) {
          held++;
          await released;
        }
        return sql.query<T>(text, params);
      });
      tail = run.catch(() => {});
      return run;
    },
  };
  return { client, release, held: () => held };
}

describe.each(DRIVERS)("heartbeats on the %s driver", (driver) => {
  let h: Harness;
  beforeEach(async () => {
    h = await createHarness(driver, "recovery_beat");
  });
  afterEach(async () => {
    await h.close();
  });

  it("renew leases while the hot path's connections wait on blocked outcome writes", async () => {
    const hot = oneConnection(h.sql, statements.JobFinishMany);
    const engine = createEngine({
      sql: h.sql,
      hotSql: { query: hot.client.query, heartbeats: h.sql },
      redis: h.redis,
      catalog: fastCatalog(),
      redisOptions: { prefix: h.prefix },
    });
    await engine.dispatcher.start();
    const runs: string[] = [];
    let finishLong!: () => void;
    const longDone = new Promise<void>((r) => (finishLong = r));
    const pool = new WorkerPool({
      name: "beat",
      handlers: [
        {
          type: "email.send",
          run: async (p: { variables: { n: number } }, job: Job) => {
            runs.push(job.id);
            if (p.variables.n === 1) await longDone;
          },
        },
      ],
      concurrency: 2,
      queue: engine.queue,
      stats: engine.stats,
      workerId: "beat-worker",
      leaseMs: 600, // renewed every 200 ms
      idleWaitMs: 50,
    });
    const scheduler = new Scheduler({ queue: engine.queue, holderId: "s1" });
    try {
      const [quick, long] = await engine.queue.enqueueMany([send("t1", 0), send("t1", 1)]);
      pool.start();
      // The quick job's outcome write takes the only hot connection and waits on a lock.
      await waitFor(() => hot.held() > 0 && runs.length === 2, { what: "the outcome write to block" });
      // Three leases long, with the reaper running: the long job's lease must stay renewed.
      for (let i = 0; i < 18; i++) {
        expect((await scheduler.runOnce()).rescued).toBe(0);
        await new Promise((r) => setTimeout(r, 100));
      }
      hot.release();
      finishLong();
      await waitFor(async () => (await engine.queue.get(long!.job.id, null)).state === "completed", { what: "the long job to complete" });
      expect(await engine.queue.get(long!.job.id, null)).toMatchObject({ attempt: 1, lastError: null });
      expect((await engine.queue.get(quick!.job.id, null)).state).toBe("completed");
      expect(runs.sort()).toEqual([quick!.job.id, long!.job.id].sort());
    } finally {
      hot.release();
      finishLong();
      await scheduler.stop();
      await pool.stop(1_000);
      await engine.dispatcher.close();
    }
  });
});

import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { backoffDelay } from "../shared/queue/backoff";
import { createEngine } from "../shared/queue/engine";
import { Scheduler } from "../shared/queue/scheduler";
import { WorkerPool } from "../shared/queue/worker";
import { createPgliteSql } from "../workers/node/pglite";
import { createHarness, DRIVERS, fastCatalog, type Harness } from "./support/engine";
import { waitFor } from "./support/services";

/** A clock the test moves by hand: time-dependent behaviour without sleeping. */
class ManualClock {
  constructor(private t: number) {}
  now = () => new Date(this.t);
  advance(ms: number) {
    this.t += ms;
  }
}

const mail = { recipient: "a@example.com", template_id: "tpl_1" };

describe("backoff", () => {
  it("grows with each attempt, with jitter inside [d/2, d], capped", () => {
    const b = { baseMs: 1_000, maxMs: 60_000 };
    expect(backoffDelay(b, 1, () => 0)).toBe(500);
    expect(backoffDelay(b, 1, () => 1)).toBe(1_000);
    expect(backoffDelay(b, 3, () => 0)).toBe(2_000);
    expect(backoffDelay(b, 3, () => 1)).toBe(4_000);
    expect(backoffDelay(b, 20, () => 1)).toBe(60_000);
    // Below the cap, the shortest next delay is never shorter than the longest previous one.
    for (let a = 1; a <= 5; a++) expect(backoffDelay(b, a + 1, () => 0)).toBeGreaterThanOrEqual(backoffDelay(b, a, () => 1));
  });
});

describe.each(DRIVERS)("scheduler on the %s driver", (driver) => {
  let h: Harness;
  let clock: ManualClock;
  beforeEach(async () => {
    h = await createHarness(driver, "sched");
    clock = new ManualClock(Date.parse("2026-03-01T03:00:00Z"));
  });
  afterEach(async () => {
    await h.close();
  });

  const engineWithClock = () =>
    createEngine({ sql: h.sql, redis: h.redis, clock, catalog: fastCatalog({}, { crons: true }), redisOptions: { prefix: h.prefix } });

  it("rescues a job whose lease expired (backdated, not slept) and runs it again", async () => {
    const engine = engineWithClock();
    const { job } = await engine.queue.enqueue({ type: "email.send", tenantId: "t1", payload: mail });
    const [claimed] = await engine.dispatcher.take(["email.send"], 1, "dead-worker", 30_000);
    expect(claimed?.id).toBe(job.id);
    const scheduler = new Scheduler({ queue: engine.queue, holderId: "s1", stats: engine.stats });
    expect((await scheduler.runOnce()).rescued).toBe(0); // lease still valid
    clock.advance(31_000);
    const report = await scheduler.runOnce();
    expect(report.rescued).toBe(1);
    const after = await engine.queue.get(job.id, null);
    expect(after.state).toBe("queued");
    expect(after.lastError).toMatchObject({ name: "LeaseExpired", worker_id: "dead-worker", attempt: 1 });
    const [again] = await engine.dispatcher.take(["email.send"], 1, "live-worker", 30_000);
    expect(again).toMatchObject({ id: job.id, attempt: 2, workerId: "live-worker" });
  });

  it("fails a job whose lease expired on its last attempt", async () => {
    const engine = engineWithClock();
    const { job } = await engine.queue.enqueue({ type: "email.send", tenantId: "t1", payload: mail, maxAttempts: 1 });
    await engine.dispatcher.take(["email.send"], 1, "dead-worker", 1_000);
    clock.advance(2_000);
    await new Scheduler({ queue: engine.queue, holderId: "s1" }).runOnce();
    expect((await engine.queue.get(job.id, null)).state).toBe("failed");
  });

  it("lets one scheduler lead at a time, and another take over when the leader stops renewing", async () => {
    const engine = engineWithClock();
    const a = new Scheduler({ queue: engine.queue, holderId: "a", leaseTtlMs: 10_000 });
    const b = new Scheduler({ queue: engine.queue, holderId: "b", leaseTtlMs: 10_000 });
    expect((await a.runOnce()).leader).toBe(true);
    expect((await b.runOnce()).leader).toBe(false);
    clock.advance(5_000);
    expect((await a.runOnce()).leader).toBe(true);
    clock.advance(11_000);
    expect((await b.runOnce()).leader).toBe(true);
    expect((await a.runOnce()).leader).toBe(false);
  });

  it("enqueues a cron job once per slot, however many schedulers and ticks", async () => {
    const engine = engineWithClock();
    clock.advance(17 * 60_000 + 5_000); // 03:17:05, just after maintenance.cleanup's daily slot
    const a = new Scheduler({ queue: engine.queue, holderId: "a", leaseTtlMs: 1_000 });
    const b = new Scheduler({ queue: engine.queue, holderId: "b", leaseTtlMs: 1_000 });
    expect((await a.runOnce()).cronEnqueued).toBe(1);
    expect((await a.runOnce()).cronEnqueued).toBe(0);
    clock.advance(2_000); // a's leadership lapses; b takes over in the same slot
    expect((await b.runOnce()).cronEnqueued).toBe(0);
    const jobs = await engine.queue.list({ tenantId: null, type: "maintenance.cleanup", limit: 10 });
    expect(jobs).toHaveLength(1);
    expect(jobs[0]!.idempotencyKey).toBe("cron:2026-03-01T03:17:00.000Z");
    clock.advance(24 * 3_600_000);
    expect((await b.runOnce()).cronEnqueued).toBe(1);
  });

  it("runs a job enqueued inside the caller's transaction only once that commits", async () => {
    const sql = h.sql;
    await sql.query("create table signups (email text)");
    const ran: string[] = [];
    h.pool([{ type: "email.send", run: async (p: { recipient: string }) => void ran.push(p.recipient) }]).start();
    h.scheduler().start(20);
    await expect(
      sql.begin(async (tx) => {
        await tx.query("insert into signups values ('rolled@example.com')");
        await h.engine.queue.enqueue({ type: "email.send", tenantId: "t1", payload: { ...mail, recipient: "rolled@example.com" } }, { tx });
        throw new Error("the caller changes its mind");
      }),
    ).rejects.toThrow(/changes its mind/);
    const { job } = await sql.begin(async (tx) => {
      await tx.query("insert into signups values ('kept@example.com')");
      return h.engine.queue.enqueue({ type: "email.send", tenantId: "t1", payload: { ...mail, recipient: "kept@example.com" } }, { tx });
    });
    await waitFor(async () => (await h.engine.queue.get(job.id, null)).state === "completed");
    expect(ran).toEqual(["kept@example.com"]);
    const [count] = await sql.query<{ n: number }>("select count(*)::int as n from jobs");
    expect(count!.n).toBe(1);
  });
});

describe("the embedded default (PGlite, Postgres driver)", () => {
  it("enqueues, runs, retries and completes jobs", async () => {
    const sql = await createPgliteSql(undefined);
    const { migrate } = await import("../schema/migrate");
    await migrate(sql);
    const engine = createEngine({ sql, catalog: fastCatalog() });
    await engine.dispatcher.start();
    let runs = 0;
    const pool = new WorkerPool({
      name: "default",
      handlers: [{ type: "email.send", run: async () => { if (++runs === 1) throw new Error("first try fails"); return { ok: true }; } }],
      concurrency: 5,
      queue: engine.queue,
      stats: engine.stats,
      workerId: "pglite-worker",
      idleWaitMs: 100,
    });
    pool.start();
    const scheduler = new Scheduler({ queue: engine.queue, holderId: "pglite" });
    scheduler.start(20);
    const { job } = await engine.queue.enqueue({ type: "email.send", tenantId: "t1", payload: mail });
    await waitFor(async () => (await engine.queue.get(job.id, null)).state === "completed");
    const done = await engine.queue.get(job.id, null);
    expect(done).toMatchObject({ attempt: 2, result: { ok: true } });
    await scheduler.stop();
    await pool.stop();
    await engine.dispatcher.close();
    await sql.close();
  });
});

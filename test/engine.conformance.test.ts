import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { PermanentError } from "../shared/queue/errors";
import type { Handler } from "../shared/queue/handler";
import type { Job } from "../shared/queue/job";
import { createHarness, DRIVERS, type Harness } from "./support/engine";
import { waitFor } from "./support/services";

const mail = (n: number, extra: Record<string, unknown> = {}) => ({
  recipient: `user${n}@example.com`,
  template_id: "tpl_1",
  variables: { n },
  ...extra,
});

/** One suite, every dispatch driver: the behaviour users rely on must not depend on the driver. */
describe.each(DRIVERS)("engine on the %s driver", (driver) => {
  let h: Harness;
  beforeEach(async () => {
    h = await createHarness(driver, "conf");
  });
  afterEach(async () => {
    await h.close();
  });

  const state = async (id: string) => (await h.engine.queue.get(id, null)).state;

  it("runs higher priorities first", async () => {
    const order: string[] = [];
    const q = h.engine.queue;
    await q.enqueue({ type: "email.send", tenantId: "t1", payload: mail(1), priority: "low" });
    await q.enqueue({ type: "email.send", tenantId: "t1", payload: mail(2), priority: "normal" });
    await q.enqueue({ type: "email.send", tenantId: "t1", payload: mail(3), priority: "high" });
    await q.enqueue({ type: "email.send", tenantId: "t1", payload: mail(4), priority: "normal" });
    const pool = h.pool([{ type: "email.send", run: async (p: { variables: { n: number } }, job: Job) => void order.push(`${job.priority}:${p.variables.n}`) }], { concurrency: 1 });
    pool.start();
    await waitFor(() => order.length === 4);
    expect(order).toEqual(["high:3", "normal:2", "normal:4", "low:1"]);
  });

  it("does not start a delayed job before its time", async () => {
    const started: Date[] = [];
    const { job } = await h.engine.queue.enqueue({ type: "email.send", tenantId: "t1", payload: mail(1), delayMs: 400 });
    expect(job.state).toBe("scheduled");
    h.pool([{ type: "email.send", run: async () => void started.push(new Date()) }]).start();
    h.scheduler().start(25);
    await waitFor(async () => (await state(job.id)) === "completed");
    const done = await h.engine.queue.get(job.id, null);
    expect(started).toHaveLength(1);
    expect(started[0]!.getTime()).toBeGreaterThanOrEqual(job.runAt.getTime());
    expect(done.startedAt!.getTime()).toBeGreaterThanOrEqual(job.runAt.getTime());
  });

  it("retries a failing job with growing delays and fails it after the last attempt", async () => {
    const starts: number[] = [];
    h.pool([{ type: "email.send", run: async () => { starts.push(Date.now()); throw new Error("provider down"); } }]).start();
    h.scheduler().start(10);
    const { job } = await h.engine.queue.enqueue({ type: "email.send", tenantId: "t1", payload: mail(1), maxAttempts: 4 });
    await waitFor(async () => (await state(job.id)) === "failed", { timeoutMs: 20_000 });
    const failed = await h.engine.queue.get(job.id, null);
    expect(failed.attempt).toBe(4);
    expect(starts).toHaveLength(4);
    expect(failed.lastError).toMatchObject({ message: "provider down", attempt: 4, retryable: false });
    const gaps = starts.slice(1).map((t, i) => t - starts[i]!);
    // Equal-jitter backoff (base 40 ms): each delay lies in [d/2, d] with d doubling: 20-40, 40-80,
    // 80-160 ms. Only the lower bounds are checked (a loaded machine makes gaps longer, never
    // shorter); the third's lower bound above the first's upper one shows the delays grow.
    expect(gaps[0]!).toBeGreaterThanOrEqual(20);
    expect(gaps[1]!).toBeGreaterThanOrEqual(40);
    expect(gaps[2]!).toBeGreaterThanOrEqual(80);
  });

  it("fails at once on a non-retryable error", async () => {
    let runs = 0;
    h.pool([{ type: "email.send", run: async () => { runs++; throw new PermanentError("mailbox does not exist"); } }]).start();
    const { job } = await h.engine.queue.enqueue({ type: "email.send", tenantId: "t1", payload: mail(1) });
    await waitFor(async () => (await state(job.id)) === "failed");
    expect(runs).toBe(1);
    expect((await h.engine.queue.get(job.id, null)).lastError).toMatchObject({ name: "PermanentError", retryable: false });
  });

  it("returns the same job for the same idempotency key", async () => {
    const a = await h.engine.queue.enqueue({ type: "email.send", tenantId: "t1", payload: mail(1), idempotencyKey: "k1" });
    const b = await h.engine.queue.enqueue({ type: "email.send", tenantId: "t1", payload: mail(2), idempotencyKey: "k1" });
    const other = await h.engine.queue.enqueue({ type: "email.send", tenantId: "t2", payload: mail(1), idempotencyKey: "k1" });
    expect(a.created).toBe(true);
    expect(b.created).toBe(false);
    expect(b.job.id).toBe(a.job.id);
    expect(other.created).toBe(true);
    const batch = await h.engine.queue.enqueueMany([
      { type: "email.send", tenantId: "t1", payload: mail(3), idempotencyKey: "k2" },
      { type: "email.send", tenantId: "t1", payload: mail(4), idempotencyKey: "k2" },
      { type: "email.send", tenantId: "t1", payload: mail(5), idempotencyKey: "k1" },
    ]);
    expect(batch.map((r) => r.created)).toEqual([true, false, false]);
    expect(batch[1]!.job.id).toBe(batch[0]!.job.id);
    expect(batch[2]!.job.id).toBe(a.job.id);
  });

  it("cancels a waiting job at once and a running one through its signal", async () => {
    const q = h.engine.queue;
    const waiting = await q.enqueue({ type: "email.send", tenantId: "t1", payload: mail(1), delayMs: 60_000 });
    expect((await q.cancel(waiting.job.id, "t1")).state).toBe("cancelled");

    let sawAbort = false;
    let started = false;
    const pool = h.pool([
      {
        type: "email.send",
        run: (_p: unknown, _j: Job, ctx) =>
          new Promise((_, reject) => {
            started = true;
            ctx.signal.addEventListener("abort", () => {
              sawAbort = true;
              reject(ctx.signal.reason);
            });
          }),
      } satisfies Handler,
    ]);
    pool.start();
    const running = await q.enqueue({ type: "email.send", tenantId: "t1", payload: mail(2) });
    await waitFor(() => started);
    await q.cancel(running.job.id, "t1");
    pool.noticeCancel(running.job.id);
    await waitFor(async () => (await state(running.job.id)) === "cancelled");
    expect(sawAbort).toBe(true);
    await expect(q.cancel(running.job.id, "t1")).rejects.toThrow(/cancelled/);
  });

  it("runs a job retried from the dead letter again", async () => {
    let runs = 0;
    h.pool([{ type: "email.send", run: async () => { runs++; if (runs === 1) throw new PermanentError("bad template"); return { sent: true }; } }]).start();
    const { job } = await h.engine.queue.enqueue({ type: "email.send", tenantId: "t1", payload: mail(1) });
    await waitFor(async () => (await state(job.id)) === "failed");
    await h.engine.queue.retry(job.id, "t1");
    await waitFor(async () => (await state(job.id)) === "completed");
    const done = await h.engine.queue.get(job.id, null);
    expect(runs).toBe(2);
    expect(done.result).toEqual({ sent: true });
    expect(done.attempt).toBe(1);
  });

  it("is fair across tenants: a late tenant's jobs are not stuck behind a 20,000-job backlog", async () => {
    const q = h.engine.queue;
    for (let b = 0; b < 20; b++) {
      await q.enqueueMany(Array.from({ length: 1_000 }, (_, i) => ({ type: "campaign.process", tenantId: "tenant-a", payload: { campaign_id: `a${b * 1000 + i}` } })));
    }
    await q.enqueueMany(Array.from({ length: 10 }, (_, i) => ({ type: "campaign.process", tenantId: "tenant-b", payload: { campaign_id: `b${i}` } })));
    if (driver === "redis") {
      // The backlog really waits in the Redis lane (not in the Postgres fallback).
      const [depth] = (await h.redis!.pipeline([["ZCARD", `${h.prefix}lane:campaign.process`]])) as [number];
      expect(depth).toBe(20_010);
    }
    const completed: string[] = [];
    let bDone = 0;
    h.pool([{ type: "campaign.process", run: async (_p: unknown, job: Job) => { completed.push(job.tenantId); if (job.tenantId === "tenant-b") bDone++; } }], { concurrency: 10 }).start();
    await waitFor(() => bDone === 10, { timeoutMs: 60_000 });
    const aBeforeLastB = completed.slice(0, completed.lastIndexOf("tenant-b")).filter((t) => t === "tenant-a").length;
    expect(aBeforeLastB).toBeLessThan(2_000);
  });
});

describe.each(DRIVERS)("pause and resume on the %s driver", (driver) => {
  let h: Harness;
  beforeEach(async () => {
    h = await createHarness(driver, "pause");
  });
  afterEach(async () => {
    await h.close();
  });

  const states = async () =>
    Object.fromEntries(
      (await h.sql.query<{ k: string; n: number }>("select tenant_id || ':' || state as k, count(*)::int as n from jobs group by 1")).map((r) => [r.k, r.n]),
    );

  it("holds one tenant's jobs of a type while others run, keeps the pause across restarts, and resumes", async () => {
    const q = h.engine.queue;
    const { jobs } = await q.pause("email.send", "t2");
    expect(jobs).toBe(0);
    const ran: string[] = [];
    h.pool([{ type: "email.send", run: async (_p: unknown, job: Job) => void ran.push(job.tenantId) }]).start();
    h.scheduler().start(20);
    await q.enqueueMany([1, 2, 3].flatMap((n) => [
      { type: "email.send", tenantId: "t1", payload: mail(n) },
      { type: "email.send", tenantId: "t2", payload: mail(n) },
    ]));
    await q.enqueue({ type: "email.send", tenantId: "t2", payload: mail(9), delayMs: 50 }); // promoted into the pause
    await waitFor(() => ran.length === 3);
    await waitFor(async () => (await states())["t2:paused"] === 4, { what: "the delayed job to be promoted as paused" });
    expect(ran).toEqual(["t1", "t1", "t1"]);

    // A new engine over the same database (a restart) still sees the pause.
    const { createEngine } = await import("../shared/queue/engine");
    const restarted = createEngine({ sql: h.sql });
    expect(await restarted.queue.pausedLanes()).toMatchObject([{ type: "email.send", tenantId: "t2" }]);

    expect((await q.resume("email.send", "t2")).jobs).toBe(4);
    await waitFor(() => ran.length === 7);
    // The handler has run; its outcome is written a moment later.
    await waitFor(async () => (await states())["t2:completed"] === 4, { what: "the resumed jobs' outcomes" });
    expect(await states()).toEqual({ "t1:completed": 3, "t2:completed": 4 });
    expect(await q.pausedLanes()).toEqual([]);
  });

  it("pauses a whole type without touching running jobs; a tenant's resume does not lift a type-wide pause", async () => {
    const q = h.engine.queue;
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    let started = 0;
    h.pool([{ type: "email.send", run: async () => { started++; await gate; } }], { concurrency: 1 }).start();
    const { job: running } = await q.enqueue({ type: "email.send", tenantId: "t1", payload: mail(1) });
    await waitFor(() => started === 1);
    await q.enqueue({ type: "email.send", tenantId: "t1", payload: mail(2) });
    expect((await q.pause("email.send")).jobs).toBe(1);
    await q.pause("email.send", "t1");
    expect((await q.resume("email.send", "t1")).jobs).toBe(0); // still paused type-wide
    release();
    await waitFor(async () => (await q.get(running.id, null)).state === "completed");
    expect(await states()).toEqual({ "t1:completed": 1, "t1:paused": 1 });
    await q.resume("email.send");
    await waitFor(async () => (await states())["t1:completed"] === 2);
  });

  it("cancels a paused job", async () => {
    await h.engine.queue.pause("email.send");
    const { job } = await h.engine.queue.enqueue({ type: "email.send", tenantId: "t1", payload: mail(1) });
    expect(job.state).toBe("paused");
    expect((await h.engine.queue.cancel(job.id, "t1")).state).toBe("cancelled");
  });
});

describe.each(DRIVERS)("snooze on the %s driver", (driver) => {
  let h: Harness;
  beforeEach(async () => {
    h = await createHarness(driver, "snooze");
  });
  afterEach(async () => {
    await h.close();
  });

  it("runs a snoozed job again later without counting the snoozed runs as attempts", async () => {
    const { Snooze } = await import("../shared/queue/errors");
    let runs = 0;
    h.pool([{ type: "email.send", run: async () => { if (++runs < 4) throw new Snooze(20); return "done"; } }]).start();
    h.scheduler().start(10);
    const { job } = await h.engine.queue.enqueue({ type: "email.send", tenantId: "t1", payload: mail(1), maxAttempts: 2 });
    await waitFor(async () => (await h.engine.queue.get(job.id, null)).state === "completed");
    expect(runs).toBe(4);
    expect((await h.engine.queue.get(job.id, null)).attempt).toBe(1);
  });
});

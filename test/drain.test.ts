import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { drain } from "../shared/queue/drain";
import { createHarness, DRIVERS, type Harness } from "./support/engine";

const mail = (n: number) => ({ recipient: `u${n}@example.com`, template_id: "tpl" });

/** The bounded run the edge uses (cron trigger, queue consumer): same pool, stops by itself. */
describe.each(DRIVERS)("drain on the %s driver", (driver) => {
  let h: Harness;
  beforeEach(async () => {
    h = await createHarness(driver, "drain");
  });
  afterEach(async () => {
    await h.close();
  });

  const counts = async () =>
    Object.fromEntries(
      (await h.sql.query<{ state: string; n: number }>("select state::text, count(*)::int as n from jobs group by state")).map((r) => [r.state, r.n]),
    );

  it("runs every waiting job and stops when the lanes are empty", async () => {
    await h.engine.queue.enqueueMany(Array.from({ length: 30 }, (_, i) => ({ type: "email.send", tenantId: "t1", payload: mail(i) })));
    const report = await drain({
      queue: h.engine.queue,
      stats: h.engine.stats,
      handlers: [{ type: "email.send", run: async () => ({ ok: true }) }],
      workerId: "edge-test",
      concurrency: 5,
      budgetMs: 30_000,
      graceMs: 1_000,
    });
    expect(report).toMatchObject({ processed: 30, stoppedBy: "idle" });
    expect(await counts()).toEqual({ completed: 30 });
  });

  it("stops taking jobs when its budget is spent and leaves the rest queued, untouched", async () => {
    await h.engine.queue.enqueueMany(Array.from({ length: 40 }, (_, i) => ({ type: "email.send", tenantId: "t1", payload: mail(i) })));
    const report = await drain({
      queue: h.engine.queue,
      stats: h.engine.stats,
      handlers: [{ type: "email.send", run: () => new Promise((r) => setTimeout(r, 100)) }],
      workerId: "edge-test",
      concurrency: 2,
      budgetMs: 250,
      graceMs: 5_000,
    });
    expect(report.stoppedBy).toBe("budget");
    const c = await counts();
    expect(c.completed).toBe(report.processed);
    expect(report.processed).toBeGreaterThan(0);
    expect(report.processed).toBeLessThan(40);
    expect(c.active ?? 0).toBe(0);
    expect(c.queued).toBe(40 - report.processed);
    const untouched = await h.sql.query<{ n: number }>("select count(*)::int as n from jobs where state = 'queued' and attempt = 0");
    expect(untouched[0]!.n).toBe(40 - report.processed);
  });
});

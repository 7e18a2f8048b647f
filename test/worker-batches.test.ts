/**
 * A batching handler (email.send's runBatch: one provider call and a few commits a batch) gets
 * whole batches under load. Slots that free a few at a time used to start a batch each of the
 * few: a 20,000-mail campaign at concurrency 400 ran in batches of 40 on average where 100 fit,
 * and paid each batch's round trips and commits two and a half times over.
 */
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { sleep } from "../shared/sleep";
import { createHarness, DRIVERS, type Harness } from "./support/engine";
import { waitFor } from "./support/services";

const JOBS = 600;
const CONCURRENCY = 40;
const MAX_BATCH = 10; // the pool's launch batch: min(maxBatch, a quarter of the slots) = 10

describe.each(DRIVERS)("a batching pool on the %s driver", (driver) => {
  let h: Harness;
  beforeEach(async () => {
    h = await createHarness(driver, "worker_batches");
  });
  afterEach(async () => {
    await h.close();
  });

  it("starts whole batches while others run, and every job once", async () => {
    const sizes: { size: number; backlog: boolean }[] = [];
    const seen = new Set<string>();
    let batch = 0;
    let backlog = false;
    const pool = h.pool(
      [
        {
          type: "email.send",
          maxBatch: MAX_BATCH,
          runBatch: async (jobs) => {
            sizes.push({ size: jobs.length, backlog });
            for (const j of jobs) seen.add(j.id);
            // Uneven run times, so batches end at different moments.
            await sleep(20 + ((batch++ * 7) % 13));
            return jobs.map(() => ({ ok: true as const, result: null }));
          },
        },
      ],
      { concurrency: CONCURRENCY },
    );
    pool.start();
    const enqueue = (n: number, from: number) =>
      h.engine.queue.enqueueMany(
        Array.from({ length: n }, (_, i) => ({ type: "email.send", tenantId: "t1", payload: { recipient: `u${from + i}@example.com`, template_id: "tpl" } })),
      );
    // A trickle first (as a campaign's fan-out starts): batches of a few, rightly, since no more wait.
    let total = 0;
    for (let round = 0; round < 12; round++) {
      await enqueue(3, total);
      total += 3;
      await sleep(4);
    }
    // Then a backlog: from now on every batch but the last few must be whole.
    backlog = true;
    await enqueue(JOBS, total);
    total += JOBS;
    await waitFor(async () => (await h.sql.query<{ n: number }>("select count(*)::int as n from jobs where state = 'completed'"))[0]!.n === total, {
      timeoutMs: 30_000,
      what: "every job completed",
    });
    expect(seen.size).toBe(total);
    expect(sizes.reduce((a, b) => a + b.size, 0)).toBe(total);
    const underLoad = sizes.filter((s) => s.backlog).map((s) => s.size);
    // Short ones: those started while the trickle's last small batches still ran (their slots
    // free a few at a time) or with the last jobs; the code before started about one in three short.
    const short = underLoad.filter((s) => s < MAX_BATCH);
    expect(short.length, `batch sizes under load: ${underLoad.join(",")}`).toBeLessThanOrEqual(CONCURRENCY / MAX_BATCH + 2);
  });
});

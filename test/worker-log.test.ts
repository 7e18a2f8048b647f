/**
 * A worker's log lines name their job once: the "job failed" line carried `job` both from the
 * job's child logger and from its own fields (`{"job":"7",...,"job":"7"}`), which log search
 * tools read as one value or reject.
 */
import { Writable } from "node:stream";
import { afterAll, beforeAll, expect, it } from "vitest";
import { PermanentError } from "../shared/queue/errors";
import { WorkerPool } from "../shared/queue/worker";
import { createLogger } from "../workers/node/logger";
import { createHarness, type Harness } from "./support/engine";
import { waitFor } from "./support/services";

let h: Harness;
beforeAll(async () => {
  h = await createHarness("postgres", "worker_log");
});
afterAll(async () => {
  await h?.close();
});

it("each line has the key job once", async () => {
  const lines: string[] = [];
  const destination = new Writable({
    write(chunk: Buffer, _enc, done) {
      lines.push(...chunk.toString().split("\n").filter(Boolean));
      done();
    },
  });
  const pool = new WorkerPool({
    name: "default",
    handlers: [
      {
        type: "campaign.process",
        async run(_payload, _job, ctx) {
          ctx.logger.info("cleaning up", { batch: 1 });
          throw new PermanentError("nothing to clean");
        },
      },
    ],
    concurrency: 1,
    queue: h.engine.queue,
    stats: h.engine.stats,
    workerId: "log-test",
    logger: createLogger({ level: "info", destination }),
    leaseMs: 30_000,
    idleWaitMs: 100,
  });
  const { job } = await h.engine.queue.enqueue({ type: "campaign.process", tenantId: "acme", payload: { campaign_id: "cmp_1" } });
  pool.start();
  try {
    await waitFor(() => lines.some((l) => l.includes('"msg":"job failed"')), { what: "the failure line" });
  } finally {
    await pool.stop(1_000);
  }
  const ofJob = lines.filter((l) => l.includes(`"${job.id}"`));
  expect(ofJob.map((l) => (JSON.parse(l) as { msg: string }).msg)).toEqual(expect.arrayContaining(["cleaning up", "job failed"]));
  for (const line of ofJob) expect(line.match(/"job":/g), line).toHaveLength(1);
  expect(JSON.parse(ofJob.find((l) => l.includes("job failed"))!)).toMatchObject({ job: job.id, type: "campaign.process", attempt: 1 });
});

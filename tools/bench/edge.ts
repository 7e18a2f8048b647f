/**
 * npm run bench:edge: the Worker in workerd (Miniflare) against local Postgres and Redis through
 * the dev bridges, which add a hop a real deployment does not have (and lack Neon's and
 * Upstash's network distance, which a real one does). Prints:
 *   - jobs one cron-triggered drain completes, and that rate per minute (no-op jobs)
 *   - enqueue-to-handler-start latency with the Queue wake-up (p50/p95 over 30 jobs); without it
 *     a job waits for the next minute's cron: 30 s on average, 60 s at worst.
 */
import { migrate } from "../../schema/migrate";
import { createEngine } from "../../shared/queue/engine";
import { createIoRedis } from "../../workers/node/redis";
import { createPgSql } from "../../workers/node/postgres";
import { buildWorker, startEdge } from "../edge-harness";
import { percentile, REDIS_URL, withDatabase } from "./support";

const JOBS = Number(process.env.BENCH_EDGE_JOBS ?? 3_000);


async function main(): Promise<void> {
  await withDatabase("edge", run);
}

async function run(databaseUrl: string): Promise<void> {
  const url = new URL(databaseUrl);
  const sql = createPgSql(url.toString());
  await migrate(sql);
  const script = buildWorker("tools/bench/edge-worker.ts");
  const redis = createIoRedis(REDIS_URL);
  try {
    // 1. One cron-triggered drain over a backlog, with the production defaults except the job cap.
    const edge = await startEdge({ script, databaseUrl: url.toString(), redisUrl: REDIS_URL, vars: { DRAIN_MAX_JOBS: "100000" } });
    const engine = createEngine({ sql, redis, redisOptions: { prefix: edge.prefix } });
    await engine.dispatcher.reconcile({ force: true });
    for (let b = 0; b < JOBS; b += 1_000) {
      await engine.queue.enqueueMany(
        Array.from({ length: Math.min(1_000, JOBS - b) }, (_, i) => ({ type: "email.send", tenantId: `t${i % 5}`, payload: { recipient: `u${b + i}@example.com`, template_id: "t" } })),
      );
    }
    const worker = (await edge.mf.getWorker()) as unknown as { scheduled(o: { cron: string }): Promise<unknown> };
    const t0 = performance.now();
    await worker.scheduled({ cron: "* * * * *" });
    const seconds = (performance.now() - t0) / 1000;
    const [row] = await sql.query<{ n: number }>("select count(*)::int as n from jobs where state = 'completed'");
    await edge.close();

    // 2. Latency with the Queue wake-up: enqueue over HTTP, time until the handler's claim.
    const woken = await startEdge({ script, databaseUrl: url.toString(), redisUrl: REDIS_URL, withQueue: true });
    const samples: number[] = [];
    for (let i = 0; i < 30; i++) {
      const started = performance.now();
      const res = await woken.mf.dispatchFetch("http://edge.test/v1/jobs", {
        method: "POST",
        headers: { authorization: `Bearer ${woken.adminKey}`, "content-type": "application/json" },
        body: JSON.stringify({ type: "email.send", tenant_id: "lat", payload: { recipient: "l@example.com", template_id: "t" } }),
      });
      const { id } = (await res.json()) as { id: string };
      for (;;) {
        const [j] = await sql.query<{ started: boolean }>("select started_at is not null as started from jobs where id = $1", [id]);
        if (j?.started) break;
        await new Promise((r) => setTimeout(r, 2));
      }
      samples.push(performance.now() - started);
    }
    await woken.close();
    process.stdout.write(
      [
        "| edge (workerd via dev bridges) | figure |",
        "|---|---:|",
        `| one cron drain: ${row!.n.toLocaleString("en-US")} no-op jobs in | ${seconds.toFixed(2)} s (${Math.round((row!.n / seconds) * 60).toLocaleString("en-US")} jobs/min) |`,
        `| enqueue-to-start with Queue wake-up, p50 / p95 | ${percentile(samples, 50).toFixed(0)} / ${percentile(samples, 95).toFixed(0)} ms |`,
        "| enqueue-to-start without it (next cron) | ≤ 60 s, 30 s on average |",
      ].join("\n") + "\n",
    );
  } finally {
    await redis.close();
    await sql.close();
  }
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    process.stderr.write(`bench:edge failed: ${err instanceof Error ? err.stack : String(err)}\n`);
    process.exit(1);
  },
);

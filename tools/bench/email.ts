/**
 * npx tsx tools/bench/email.ts: the email pipeline's throughput on local Postgres, with a
 * Resend-speaking server standing in for Resend (rate limits off). Medians of BENCH_RUNS runs.
 *
 *   fan-out     email.send jobs campaign.process creates a second (keyset batches of 1,000
 *               contacts, each batch's jobs and checkpoint in one transaction)
 *   campaign    emails a second end to end: start a campaign of BENCH_CONTACTS contacts until it
 *               is marked sent (fan-out, render, suppression check, ledger, Resend batch calls)
 */
import { migrate } from "../../schema/migrate";
import { Campaigns } from "../../shared/email/campaigns";
import { processCampaign } from "../../shared/email/campaign-fanout";
import { createResendMailer } from "../../shared/email/providers/resend";
import { createEmailServices } from "../../shared/email/services";
import { silentLogger } from "../../shared/ports";
import { createEngine } from "../../shared/queue/engine";
import type { Job } from "../../shared/queue/job";
import { Scheduler } from "../../shared/queue/scheduler";
import { WorkerPool } from "../../shared/queue/worker";
import { createHandlers } from "../../workers/handlers";
import { createPgSql } from "../../workers/node/postgres";
import { startResendMock } from "../resend-mock-server";
import { median, withDatabase } from "./support";

const RUNS = Number(process.env.BENCH_RUNS ?? 3);
const FANOUT_CONTACTS = Number(process.env.BENCH_FANOUT_CONTACTS ?? 50_000);
const CONTACTS = Number(process.env.BENCH_CONTACTS ?? 20_000);

/** A tenant, a template and a list of n contacts, inserted in bulk. */
async function audience(sql: ReturnType<typeof createPgSql>, tag: string, n: number) {
  const list = `lst_${tag}`;
  await sql.query("insert into lists (id, tenant_id, name) values ($1, 'acme', $1)", [list]);
  await sql.query(
    `with c as (
       insert into contacts (tenant_id, email, name, attributes)
       select 'acme', $1 || '-' || g || '@example.com', 'Person ' || g, jsonb_build_object('n', g) from generate_series(1, $2) g
       returning id)
     insert into list_members (list_id, contact_id) select $3, id from c`,
    [tag, n, list],
  );
  await sql.query(
    `insert into templates (id, tenant_id, name, subject, blocks) values ($1, 'acme', 'bench', 'News for {{name}}',
       '[{"type":"heading","text":"Hello {{name}}"},{"type":"text","text":"Your number is {{n}}."}]')`,
    [`tpl_${tag}`],
  );
  const campaign = `camp_${tag}`;
  await sql.query("insert into campaigns (id, tenant_id, name, template_id, list_id) values ($1, 'acme', $1, $2, $3)", [
    campaign,
    `tpl_${tag}`,
    list,
  ]);
  return campaign;
}

async function main(): Promise<void> {
  const fanout: number[] = [];
  const campaign: number[] = [];
  for (let run = 0; run < RUNS; run++) {
    await withDatabase("email", async (url) => {
      const sql = createPgSql(url, { max: 20, prepare: true });
      const hot = createPgSql(url, { max: 10, prepare: true, synchronousCommit: false });
      await migrate(sql);
      const engine = createEngine({ sql, hotSql: hot });
      await engine.dispatcher.start();

      // Fan-out alone: campaign.process's work, timed.
      const fanCampaign = await audience(sql, `f${run}`, FANOUT_CONTACTS);
      await sql.query("update campaigns set status = 'sending' where id = $1", [fanCampaign]);
      const started = performance.now();
      await processCampaign(
        { campaign_id: fanCampaign, tenant_id: "acme" },
        { id: "1" } as Job,
        { signal: new AbortController().signal, logger: silentLogger, progress: () => {} },
        { sql, queue: engine.queue, logger: silentLogger },
      );
      fanout.push(FANOUT_CONTACTS / ((performance.now() - started) / 1000));
      await sql.query("truncate jobs");

      // A whole campaign through the Resend-speaking server.
      const resend = await startResendMock({ apiKey: "re_bench" });
      const mail = createEmailServices({
        sql,
        redisPrefix: "bench:",
        clock: engine.clock,
        mailers: [createResendMailer({ apiKey: "re_bench", baseUrl: resend.url })],
        defaultFrom: "Bench <bench@example.com>",
        publicUrl: "http://bench.test",
        unsubscribeSecret: "bench-secret-0123456789",
      });
      const handlers = createHandlers({ sql, clock: engine.clock, email: { queue: engine.queue, logger: silentLogger, send: mail.send } });
      const pools = [
        new WorkerPool({ name: "email", handlers: handlers.filter((h) => h.type === "email.send"), concurrency: 400, queue: engine.queue, stats: engine.stats, workerId: "bench-email" }),
        new WorkerPool({ name: "default", handlers: handlers.filter((h) => h.type === "campaign.process"), concurrency: 2, queue: engine.queue, stats: engine.stats, workerId: "bench-default" }),
      ];
      const scheduler = new Scheduler({ queue: engine.queue, holderId: "bench" });
      const id = await audience(sql, `c${run}`, CONTACTS);
      for (const p of pools) p.start();
      scheduler.start(100);
      const t0 = performance.now();
      await new Campaigns(sql, engine.queue).start("acme", id);
      for (;;) {
        const [c] = await sql.query<{ status: string }>("select status from campaigns where id = $1", [id]);
        if (c!.status === "sent") break;
        await new Promise((r) => setTimeout(r, 20));
      }
      campaign.push(CONTACTS / ((performance.now() - t0) / 1000));
      const delivered = resend.delivered().length;
      if (delivered !== CONTACTS) throw new Error(`expected ${CONTACTS} deliveries, got ${delivered}`);
      await scheduler.stop();
      await Promise.all(pools.map((p) => p.stop()));
      await resend.close();
      await engine.dispatcher.close();
      await hot.close();
      await sql.close();
    });
    process.stderr.write(`  email run ${run + 1}/${RUNS}: fan-out ${Math.round(fanout.at(-1)!)}/s, campaign ${Math.round(campaign.at(-1)!)} emails/s\n`);
  }
  const fmt = (n: number) => Math.round(n).toLocaleString("en-US");
  process.stdout.write(
    [
      "| email pipeline (Postgres driver, Resend-speaking local server) | figure |",
      "|---|---:|",
      `| campaign.process fan-out (${fmt(FANOUT_CONTACTS)} contacts) | ${fmt(median(fanout))} email.send jobs/s |`,
      `| campaign end to end (${fmt(CONTACTS)} contacts, start to sent) | ${fmt(median(campaign))} emails/s |`,
    ].join("\n") + "\n",
  );
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    process.stderr.write(`bench:email failed: ${err instanceof Error ? err.stack : String(err)}\n`);
    process.exit(1);
  },
);

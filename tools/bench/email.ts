/**
 * npx tsx tools/bench/email.ts: the email pipeline's throughput on local Postgres, with a
 * Resend-speaking server standing in for Resend (rate limits off). Medians of BENCH_RUNS runs.
 *
 *   fan-out     email.send jobs campaign.process creates a second (keyset batches of 1,000
 *               contacts, each batch's jobs and checkpoint in one transaction)
 *   campaign    emails a second end to end: start a campaign of BENCH_CONTACTS contacts until it
 *               is marked sent (fan-out, render, suppression check, ledger, Resend batch calls)
 *   set-based   not the engine's path: the same fan-out's jobs written by one INSERT ... SELECT a
 *               page of 1,000 contacts (the rows campaign.process's enqueue writes: payload,
 *               priority, fair-queue time, idempotency key, parent; the address check in SQL,
 *               zod's email.send schema skipped), each page with its checkpoint in one
 *               transaction: what a set-based fan-out could reach on this machine, same run
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

/** campaign-fanout.ts's address check, as a Postgres regular expression (the same syntax here). */
const PLAUSIBLE_EMAIL = String.raw`^[^\s@<>()[\]\\,;:"]+@[^\s@<>()[\]\\,;:"]+\.[^\s@<>()[\]\\,;:"]+$`;

/**
 * The set-based fan-out (see the header): keyset pages of list members, each page's email.send
 * jobs inserted from the contacts by one statement, with the page's checkpoint, as
 * campaign.process would leave them; returns jobs/s. Checks the rows match the engine's.
 */
async function setBasedFanout(sql: ReturnType<typeof createPgSql>, campaignId: string, parentId: string): Promise<number> {
  const [c] = await sql.query<{ list_id: string; template_id: string; upper: string }>(
    `update campaigns set status = 'sending', fanout_upper = (select coalesce(max(contact_id), 0) from list_members where list_id = campaigns.list_id)
     where id = $1 returning list_id, template_id, fanout_upper::text as upper`,
    [campaignId],
  );
  const started = performance.now();
  let cursor = "0";
  let total = 0;
  for (;;) {
    const page = await sql.begin(async (tx) => {
      const [row] = await tx.query<{ last: string | null; n: number }>(
        `with page as (
           select contact_id from list_members where list_id = $1 and contact_id > $2::bigint and contact_id <= $3::bigint
           order by contact_id limit 1000
         ),
         contacts_ as (
           select ct.id, ct.email, ct.name, ct.attributes from page p join contacts ct on ct.id = p.contact_id and ct.status = 'active' and ct.tenant_id = 'acme'
           where ct.email ~ $7 and length(ct.email) <= 320
         ),
         lane as (
           select greatest(
             coalesce((select q.vtime - 1 from jobs q where q.state = 'queued' and q.type = 'email.send' and q.priority = 1
                       order by q.type, q.priority, q.vtime limit 1), 0),
             coalesce((select q.vtime from jobs q where q.state = 'queued' and q.type = 'email.send' and q.priority = 1 and q.tenant_id = 'acme'
                       order by q.type, q.priority, q.tenant_id, q.vtime desc limit 1), 0)) as base
         ),
         inserted as (
           insert into jobs (tenant_id, type, priority, payload, state, max_attempts, run_at, vtime, idempotency_key, parent_id, created_at)
           select 'acme', 'email.send', 1,
             jsonb_build_object('recipient', ct.email, 'template_id', $4::text,
               'variables', coalesce((select jsonb_object_agg(k, v) from jsonb_each(ct.attributes) as a(k, v)
                                      where jsonb_typeof(v) in ('string', 'number', 'boolean', 'null')), '{}'::jsonb)
                 || jsonb_build_object('name', coalesce(ct.name, ''), 'email', ct.email, 'contact_id', ct.id::text),
               'tenant_id', 'acme', 'campaign_id', $5::text),
             'queued', 8, now(), lane.base + row_number() over (order by ct.id), 'camp:' || $5 || ':' || ct.id, $6::bigint, now()
           from contacts_ ct, lane
           order by ct.id
           on conflict (tenant_id, type, idempotency_key) where idempotency_key is not null do nothing
           returning 1
         ),
         notified as (select pg_notify('pm_jobs', 'email.send') where exists (select 1 from inserted))
         select (select max(contact_id)::text from page) as last, ((select count(*) from inserted) + 0 * (select count(*) from notified))::int as n`,
        [c!.list_id, cursor, c!.upper, c!.template_id, campaignId, parentId, PLAUSIBLE_EMAIL],
      );
      if (row!.last !== null) {
        await tx.query("update campaigns set fanout_cursor = $2::bigint, recipients = recipients + $3 where id = $1", [campaignId, row!.last, row!.n]);
      }
      return row!;
    });
    if (page.last === null) break;
    cursor = page.last;
    total += Number(page.n);
  }
  return total / ((performance.now() - started) / 1000);
}

/**
 * The floor under any fan-out on this schema: the same number of email.send rows of the same
 * shape and size written straight from generate_series, a page of 1,000 a durable commit, with
 * no contact read, no check and no checkpoint. Only the jobs table's own cost (heap, eight
 * indexes, WAL); returns rows/s.
 */
async function rawJobInserts(sql: ReturnType<typeof createPgSql>, n: number): Promise<number> {
  const started = performance.now();
  for (let from = 1; from <= n; from += 1000) {
    await sql.query(
      `insert into jobs (tenant_id, type, priority, payload, state, max_attempts, run_at, vtime, idempotency_key, parent_id, created_at)
       select 'acme', 'email.send', 1,
         jsonb_build_object('recipient', 'raw-' || g || '@example.com', 'template_id', 'tpl_raw',
           'variables', jsonb_build_object('n', g, 'name', 'Person ' || g, 'email', 'raw-' || g || '@example.com', 'contact_id', g::text),
           'tenant_id', 'acme', 'campaign_id', 'camp_raw'),
         'queued', 8, now(), g, 'camp:camp_raw:' || g, 1, now()
       from generate_series($1::int, $2::int) g`,
      [from, Math.min(n, from + 999)],
    );
  }
  return n / ((performance.now() - started) / 1000);
}

/** The columns and payload keys of a campaign's jobs, to compare the two fan-outs' rows. */
const SHAPE = `select distinct type, priority, state::text, max_attempts, attempt,
  (select string_agg(k, ',' order by k) from jsonb_object_keys(payload) k) as keys,
  (select string_agg(k || ':' || jsonb_typeof(payload->'variables'->k), ',' order by k) from jsonb_object_keys(payload->'variables') k) as variables,
  idempotency_key like 'camp:' || (payload->>'campaign_id') || ':' || (payload->'variables'->>'contact_id') as keyed, parent_id is not null as parent
  from jobs where payload->>'campaign_id' = $1`;

async function main(): Promise<void> {
  const fanout: number[] = [];
  const setBased: number[] = [];
  const rawInserts: number[] = [];
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
      const engineShape = JSON.stringify(await sql.query(SHAPE, [fanCampaign]));
      await sql.query("truncate jobs");

      // The same fan-out set-based, on a list of its own (the same size), for the ceiling.
      const setCampaign = await audience(sql, `s${run}`, FANOUT_CONTACTS);
      setBased.push(await setBasedFanout(sql, setCampaign, "1"));
      const setShape = JSON.stringify(await sql.query(SHAPE, [setCampaign]));
      if (setShape !== engineShape) throw new Error(`set-based rows differ from the engine's: ${setShape} vs ${engineShape}`);
      const [{ n } = { n: 0 }] = await sql.query<{ n: number }>("select count(*)::int as n from jobs where payload->>'campaign_id' = $1", [setCampaign]);
      if (n !== FANOUT_CONTACTS) throw new Error(`set-based fan-out made ${n} jobs of ${FANOUT_CONTACTS}`);
      await sql.query("truncate jobs");
      rawInserts.push(await rawJobInserts(sql, FANOUT_CONTACTS));
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
    process.stderr.write(
      `  email run ${run + 1}/${RUNS}: fan-out ${Math.round(fanout.at(-1)!)}/s (set-based ${Math.round(setBased.at(-1)!)}/s, raw inserts ${Math.round(rawInserts.at(-1)!)}/s), campaign ${Math.round(campaign.at(-1)!)} emails/s\n`,
    );
  }
  const fmt = (n: number) => Math.round(n).toLocaleString("en-US");
  const ratios = (xs: number[], floors: number[]) => xs.map((x, i) => `${Math.round((x / floors[i]!) * 100)}%`).join(", ");
  process.stdout.write(
    [
      "| email pipeline (Postgres driver, Resend-speaking local server) | figure |",
      "|---|---:|",
      `| campaign.process fan-out (${fmt(FANOUT_CONTACTS)} contacts) | ${fmt(median(fanout))} email.send jobs/s |`,
      `| campaign end to end (${fmt(CONTACTS)} contacts, start to sent) | ${fmt(median(campaign))} emails/s |`,
      `| the same fan-out set-based, one INSERT ... SELECT a page (not the engine's path; same run) | ${fmt(median(setBased))} email.send jobs/s |`,
      `| the same rows from generate_series, no read, no check (the jobs table's floor; same run) | ${fmt(median(rawInserts))} rows/s |`,
      `| fan-out as a % of that floor, run by run | ${ratios(fanout, rawInserts)} |`,
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

/**
 * npx tsx tools/bench/tracking.ts: tracking hits (GET /c/<token> redirects and /o/<token>
 * pixels) against one Node process on loopback, at a fixed offered rate, against local Postgres.
 *
 * The server is a child process (this file with `serve`): the app with its engagement buffer
 * (engagement-buffer.ts, flushing every second) and nothing else, so the load generator's own
 * CPU does not sit in the server's event loop. The parent makes a fresh database (a tenant, a
 * campaign, BENCH_TRACKING_SENDS sent messages an hour old, a webhook endpoint for
 * email.opened/email.clicked), seals two link tokens and a pixel token a message, and offers
 * BENCH_TRACKING_RATE hits a second (70% clicks, 30% opens, over random messages) for
 * BENCH_TRACKING_SECONDS over 32 keep-alive connections, open loop: every 5 ms it starts its share, at most 2,000 in flight
 * (beyond it a hit is counted as not offered). Then it stops the server (the buffer's last
 * flush) and checks that every answered hit is a row in email_engagement.
 *
 * Prints: hits answered, errors, latency p50/p99/max (ms, from request start to the full
 * answer), and database statements a hundred hits (every statement the buffer sent, BEGIN and
 * COMMIT included: the flush, the endpoint read and the webhook jobs' enqueue).
 *
 * Env: BENCH_ADMIN_DATABASE_URL (support.ts), BENCH_TRACKING_RATE (5000),
 * BENCH_TRACKING_SECONDS (10; at most 60), BENCH_TRACKING_SENDS (20000), BENCH_TRACKING_WEBHOOK (1; 0:
 * no endpoint, so the flushes enqueue no webhook jobs).
 */
import { fork } from "node:child_process";
import { fileURLToPath } from "node:url";
import { serve } from "@hono/node-server";
import { Pool } from "undici";
import { migrate } from "../../schema/migrate";
import { ApiKeys } from "../../shared/api/api-keys";
import { createApp } from "../../shared/api/app";
import { EngagementBuffer } from "../../shared/email/engagement-buffer";
import { TrackingTokens } from "../../shared/email/tracking-tokens";
import { type Sql, type SqlClient, silentLogger } from "../../shared/ports";
import { createEngine } from "../../shared/queue/engine";
import { createPgSql } from "../../workers/node/postgres";
import { percentile, withDatabase } from "./support";

const SECRET = "bench-tracking-secret-0123456789";
const PUBLIC = "http://127.0.0.1";
const RATE = Number(process.env.BENCH_TRACKING_RATE ?? 5_000);
const SECONDS = Math.min(60, Number(process.env.BENCH_TRACKING_SECONDS ?? 10));
const SENDS = Number(process.env.BENCH_TRACKING_SENDS ?? 20_000);
/** 0: no webhook endpoint, so no email.opened / email.clicked jobs are enqueued. */
const WEBHOOK = process.env.BENCH_TRACKING_WEBHOOK !== "0";
const MAX_IN_FLIGHT = 2_000;
const TICK_MS = 5;
const CONNECTIONS = 32;

/** Counts every statement sent through it, BEGIN and COMMIT included. */
function counted(sql: Sql): { sql: SqlClient & Pick<Sql, "begin">; count: () => number } {
  let n = 0;
  const wrap = (c: SqlClient): SqlClient => ({ query: (text, params) => (n++, c.query(text, params)) });
  return {
    sql: { ...wrap(sql), begin: (fn) => ((n += 2), sql.begin((tx) => fn(wrap(tx)))) },
    count: () => n,
  };
}

async function serveChild(url: string): Promise<void> {
  const sql = createPgSql(url, { max: 10, prepare: true });
  const engine = createEngine({ sql });
  const statements = counted(sql);
  const buffer = new EngagementBuffer({ sql: statements.sql, clock: engine.clock, logger: silentLogger, queue: engine.queue });
  buffer.start();
  const app = createApp({ queue: engine.queue, sql, apiKeys: new ApiKeys(sql, { pepper: SECRET }), tracking: { tokens: new TrackingTokens(SECRET, PUBLIC), sink: buffer } });
  const server = serve({ fetch: app.fetch, hostname: "127.0.0.1", port: 0 }, (info) => process.send!({ port: info.port }));
  process.on("message", async (m: { stop?: boolean }) => {
    if (!m.stop) return;
    await new Promise<void>((r) => server.close(() => r()));
    await buffer.stop();
    process.send!({ ...buffer.counts, dbStatements: statements.count() });
    await sql.close();
    process.exit(0);
  });
}

async function seed(sql: Sql): Promise<{ campaignId: string; sendIds: string[] }> {
  await sql.query("insert into tenants (id, name) values ('acme', 'Acme')");
  await sql.query("insert into templates (id, tenant_id, name, subject, blocks) values ('tpl_b', 'acme', 'b', 's', '[]')");
  await sql.query("insert into lists (id, tenant_id, name) values ('lst_b', 'acme', 'b')");
  await sql.query("insert into campaigns (id, tenant_id, name, template_id, list_id, status, sent) values ('camp_b', 'acme', 'b', 'tpl_b', 'lst_b', 'sent', $1)", [SENDS]);
  await sql.query(
    `insert into contacts (tenant_id, email) select 'acme', 'c' || g || '@example.org' from generate_series(1, $1) g`,
    [SENDS],
  );
  const rows = await sql.query<{ id: string }>(
    `insert into email_sends (tenant_id, idempotency_key, campaign_id, contact_id, recipient, status, sent_at)
     select 'acme', 'camp:camp_b:' || c.email, 'camp_b', c.id, c.email, 'sent', now() - interval '1 hour' from contacts c
     returning id::text`,
  );
  if (WEBHOOK) await sql.query(
    "insert into webhook_endpoints (id, tenant_id, url, event_types, secret) values ('whe_b', 'acme', 'https://hooks.example.com/b', '{email.opened,email.clicked}', 'whsec_b')",
  );
  return { campaignId: "camp_b", sendIds: rows.map((r) => r.id) };
}

async function main(): Promise<void> {
  await withDatabase("tracking", async (url) => {
    const sql = createPgSql(url, { max: 4 });
    await migrate(sql);
    const { campaignId, sendIds } = await seed(sql);
    const tokens = new TrackingTokens(SECRET, PUBLIC);
    const paths: string[] = [];
    for (const sendId of sendIds) {
      const claim = { tenantId: "acme", campaignId, sendId };
      paths.push(`/c/${await tokens.token({ kind: "click", ...claim, linkIndex: 0, linkCount: 2, url: "https://shop.example.com/sale?utm=mail" })}`);
      paths.push(`/c/${await tokens.token({ kind: "click", ...claim, linkIndex: 1, linkCount: 2, url: "https://example.com/blog/post" })}`);
      paths.push(`/o/${await tokens.token({ kind: "open", ...claim })}`);
    }

    const child = fork(fileURLToPath(import.meta.url), ["serve", url], { stdio: "inherit" });
    const port = await new Promise<number>((r) => child.once("message", (m: { port: number }) => r(m.port)));
    // undici's Pool, not fetch: fetch's per-request cost on this side (about 0.5 ms) would be
    // the bottleneck of a 2-core machine, not the server under test. Keep-alive connections.
    const client = new Pool(`http://127.0.0.1:${port}`, { connections: CONNECTIONS, pipelining: 1 });
    const latencies: number[] = [];
    let inFlight = 0;
    let notOffered = 0;
    let errors = 0;
    let answered = 0;
    const pick = () => {
      const i = Math.floor(Math.random() * sendIds.length) * 3;
      return paths[Math.random() < 0.3 ? i + 2 : i + (Math.random() < 0.5 ? 0 : 1)]!;
    };
    const one = async () => {
      inFlight++;
      const t0 = performance.now();
      try {
        const res = await client.request({ path: pick(), method: "GET", headers: { "user-agent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36" } });
        await res.body.arrayBuffer();
        if (res.statusCode === 302 || res.statusCode === 200) answered++;
        else errors++;
      } catch {
        errors++;
      } finally {
        latencies.push(performance.now() - t0);
        inFlight--;
      }
    };
    const total = RATE * SECONDS;
    const started = performance.now();
    let offered = 0;
    const pending = new Set<Promise<void>>();
    // Bounded: `total` hits, one tick every TICK_MS.
    while (offered < total) {
      const due = Math.min(total, Math.floor(((performance.now() - started) / 1000) * RATE));
      for (; offered < due; offered++) {
        if (inFlight >= MAX_IN_FLIGHT) {
          notOffered++;
          continue;
        }
        const p = one();
        pending.add(p);
        void p.finally(() => pending.delete(p));
      }
      await new Promise((r) => setTimeout(r, TICK_MS));
    }
    await Promise.all(pending);
    const elapsed = (performance.now() - started) / 1000;
    await client.close();

    child.send({ stop: true });
    const counts = await new Promise<{ dbStatements: number; written: number; dropped: number; failedFlushes: number }>((r) => child.once("message", r));
    const rows = (await sql.query<{ rows: number }>("select count(*)::int as rows from email_engagement"))[0]!.rows;
    await sql.close();
    const f = (x: number) => x.toFixed(2);
    process.stdout.write(
      [
        `tracking hits: offered ${RATE}/s for ${SECONDS} s over ${SENDS} messages (70% clicks, 30% opens), loopback, one Node server process${WEBHOOK ? ", a webhook endpoint for email.opened/clicked" : ", no webhook endpoint"}`,
        `  answered ${answered} (${Math.round(answered / elapsed)}/s), errors ${errors}, not offered (over ${MAX_IN_FLIGHT} in flight) ${notOffered}`,
        `  latency ms: p50 ${f(percentile(latencies, 50))}  p99 ${f(percentile(latencies, 99))}  max ${f(latencies.reduce((m, x) => (x > m ? x : m), 0))}`,
        `  rows written ${rows} (buffer: written ${counts.written}, dropped ${counts.dropped}, failed flushes ${counts.failedFlushes})`,
        `  database statements ${counts.dbStatements}: ${f((counts.dbStatements / Math.max(1, rows)) * 100)} per 100 hits`,
        "",
      ].join("\n"),
    );
    if (rows !== answered) process.exitCode = 1;
  });
}

if (process.argv[2] === "serve") void serveChild(process.argv[3]!);
else
  main().catch((err: unknown) => {
    process.stderr.write(`${err instanceof Error ? err.stack : String(err)}\n`);
    process.exit(1);
  });

/**
 * npx tsx tools/bench/campaign-profile.ts: where a campaign's time goes, per email. One
 * 20,000-contact campaign (BENCH_CONTACTS) end to end, as tools/bench/email.ts runs it, but with
 * the Resend-speaking server in a process of its own (so this process's CPU is the engine's and
 * the pipeline's alone) and each statement's count and time read from pg_stat_statements.
 *
 * pg_stat_statements must be loaded, which the shared server here does not: the script starts a
 * throwaway cluster of its own on a spare port with it (durable commits, as the shared server),
 * or uses BENCH_ADMIN_DATABASE_URL when set. Prints, per email: wall time, this process's CPU,
 * that server's CPU (from /proc), the mock's CPU, the statements by total time, and what the
 * backends were doing (pg_stat_activity sampled every 5 ms: on CPU, waiting on WAL, on a lock).
 */
import { spawn } from "node:child_process";
import { readFileSync, readdirSync } from "node:fs";
import { fileURLToPath } from "node:url";
import pg from "pg";
import { migrate } from "../../schema/migrate";
import { Campaigns } from "../../shared/email/campaigns";
import { createResendMailer } from "../../shared/email/providers/resend";
import { createEmailServices } from "../../shared/email/services";
import { silentLogger } from "../../shared/ports";
import { createEngine } from "../../shared/queue/engine";
import { Scheduler } from "../../shared/queue/scheduler";
import { WorkerPool } from "../../shared/queue/worker";
import { createHandlers } from "../../workers/handlers";
import { createPgSql } from "../../workers/node/postgres";
import { freePort } from "../../test/support/processes";
import { startPostgresCluster } from "../chaos/postgres-cluster";
import { withDatabase } from "./support";

const CONTACTS = Number(process.env.BENCH_CONTACTS ?? 20_000);
const TICK = 100; // USER_HZ

/**
 * CPU seconds (user + system) of the server's processes: the postmaster whose pid the server
 * reports and its children (backends, WAL writer, ...), so other clusters on the machine do not count.
 */
function postgresCpu(postmaster: number): number {
  let ticks = 0;
  for (const pid of readdirSync("/proc")) {
    if (!/^\d+$/.test(pid)) continue;
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
      const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      if (Number(pid) !== postmaster && Number(f[1]) !== postmaster) continue;
      ticks += Number(f[11]) + Number(f[12]);
    } catch {
      // gone meanwhile
    }
  }
  return ticks / TICK;
}

function pidCpu(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(f[11]) + Number(f[12])) / TICK;
}

async function startMockProcess(): Promise<{ url: string; pid: number; stop: () => void }> {
  const entry = fileURLToPath(new URL("../resend-mock-server.ts", import.meta.url));
  const child = spawn(process.execPath, ["--import", "tsx", entry, "--port", "0", "--key", "re_bench"], { stdio: ["ignore", "pipe", "inherit"] });
  const url = await new Promise<string>((resolve, reject) => {
    let out = "";
    child.stdout!.on("data", (d: Buffer) => {
      out += d.toString();
      const m = /on (http:\/\/\S+)/.exec(out);
      if (m) resolve(m[1]!);
    });
    child.on("exit", (code) => reject(new Error(`mock exited ${code}`)));
  });
  return { url, pid: child.pid!, stop: () => child.kill("SIGTERM") };
}

async function main(): Promise<void> {
  const cluster = process.env.BENCH_ADMIN_DATABASE_URL
    ? undefined
    : await startPostgresCluster({
        port: await freePort(),
        label: "profile",
        settings: ["fsync = on", "full_page_writes = on", "autovacuum = off", "shared_preload_libraries = 'pg_stat_statements'", "pg_stat_statements.track = all"],
      });
  try {
    await profile(process.env.BENCH_ADMIN_DATABASE_URL ?? cluster!.url());
  } finally {
    await cluster?.destroy();
  }
}

async function profile(adminUrl: string): Promise<void> {
  const admin = new pg.Client({ connectionString: adminUrl });
  await admin.connect();
  await admin.query("create extension if not exists pg_stat_statements");
  await admin.query("select pg_stat_statements_reset()");
  // The postmaster: the parent of this connection's backend.
  const [{ pid: backend }] = (await admin.query<{ pid: number }>("select pg_backend_pid() as pid")).rows as [{ pid: number }];
  const postmaster = Number(readFileSync(`/proc/${backend}/stat`, "utf8").split(") ")[1]!.split(" ")[1]);
  await withDatabase("campaign_profile", async (url) => {
    const sql = createPgSql(url, { max: 20, prepare: true });
    const hot = createPgSql(url, { max: 10, prepare: true, synchronousCommit: false });
    await migrate(sql);
    const engine = createEngine({ sql, hotSql: hot });
    await engine.dispatcher.start();
    const mock = await startMockProcess();
    const mail = createEmailServices({
      sql,
      redisPrefix: "bench:",
      clock: engine.clock,
      mailers: [createResendMailer({ apiKey: "re_bench", baseUrl: mock.url })],
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
    await sql.query("insert into lists (id, tenant_id, name) values ('lst', 'acme', 'lst')");
    await sql.query(
      `with c as (insert into contacts (tenant_id, email, name, attributes)
         select 'acme', 'p-' || g || '@example.com', 'Person ' || g, jsonb_build_object('n', g) from generate_series(1, $1) g returning id)
       insert into list_members (list_id, contact_id) select 'lst', id from c`,
      [CONTACTS],
    );
    await sql.query(
      `insert into templates (id, tenant_id, name, subject, blocks) values ('tpl', 'acme', 'bench', 'News for {{name}}',
         '[{"type":"heading","text":"Hello {{name}}"},{"type":"text","text":"Your number is {{n}}."}]')`,
    );
    await sql.query("insert into campaigns (id, tenant_id, name, template_id, list_id) values ('camp', 'acme', 'camp', 'tpl', 'lst')");
    for (const p of pools) p.start();
    scheduler.start(100);
    await admin.query("select pg_stat_statements_reset()");
    const cpu0 = process.cpuUsage();
    const pg0 = postgresCpu(postmaster);
    const mock0 = pidCpu(mock.pid);
    const t0 = performance.now();
    let fanoutDone = 0;
    // What the app's backends are doing, sampled every 5 ms while the campaign runs.
    const waits = new Map<string, number>();
    let sampling = true;
    const sampler = (async () => {
      for (let i = 0; sampling && i < 20_000; i++) {
        const { rows } = await admin.query<{ w: string }>(
          `select coalesce(wait_event_type || ':' || wait_event, 'on CPU') || ' | ' || regexp_replace(left(query, 40), '\\s+', ' ', 'g') as w
             from pg_stat_activity where datname <> 'postgres' and state = 'active' and pid <> pg_backend_pid()`,
        );
        for (const r of rows) waits.set(r.w, (waits.get(r.w) ?? 0) + 1);
        await new Promise((r) => setTimeout(r, 5));
      }
    })();
    await new Campaigns(sql, engine.queue).start("acme", "camp");
    for (let i = 0; i < 30_000; i++) {
      const [c] = await sql.query<{ status: string; fanout_done: boolean }>("select status, fanout_done from campaigns where id = 'camp'");
      if (c!.fanout_done && fanoutDone === 0) fanoutDone = performance.now() - t0;
      if (c!.status === "sent") break;
      await new Promise((r) => setTimeout(r, 20));
    }
    const wall = (performance.now() - t0) / 1000;
    sampling = false;
    await sampler;
    const cpu = process.cpuUsage(cpu0);
    const nodeCpu = (cpu.user + cpu.system) / 1e6;
    const pgCpu = postgresCpu(postmaster) - pg0;
    const mockCpu = pidCpu(mock.pid) - mock0;
    const per = (s: number) => ((s / CONTACTS) * 1e6).toFixed(0);
    const [{ n } = { n: 0 }] = await sql.query<{ n: number }>("select count(*)::int as n from email_sends where status = 'sent'");
    if (n !== CONTACTS) throw new Error(`expected ${CONTACTS} sent, got ${n}`);
    process.stdout.write(
      `campaign of ${CONTACTS}: ${(CONTACTS / wall).toFixed(0)} emails/s (${wall.toFixed(2)} s; fan-out done at ${(fanoutDone / 1000).toFixed(2)} s)\n` +
        `per email, µs: wall ${per(wall)}, Node ${per(nodeCpu)}, Postgres ${per(pgCpu)}, mock ${per(mockCpu)}, ` +
        `CPU total ${per(nodeCpu + pgCpu + mockCpu)} (2 cores: ${((nodeCpu + pgCpu + mockCpu) / wall / 2 * 100).toFixed(0)}% busy)\n`,
    );
    const rows = await admin.query<{ query: string; calls: string; total: number; mean: number; rows: string }>(
      `select regexp_replace(left(query, 110), '\\s+', ' ', 'g') as query, calls, total_exec_time + total_plan_time as total,
              (total_exec_time + total_plan_time) / calls as mean, rows
         from pg_stat_statements where dbid = (select oid from pg_database where datname = current_database()) is not true
         order by total_exec_time + total_plan_time desc limit 25`,
    );
    const sum = rows.rows.reduce((s, r) => s + r.total, 0);
    process.stdout.write(`\n| statement | calls | per email (µs) | mean (ms) | share |\n|---|---:|---:|---:|---:|\n`);
    for (const r of rows.rows) {
      process.stdout.write(
        `| ${r.query.replace(/\|/g, "\\|")} | ${r.calls} | ${((r.total * 1000) / CONTACTS).toFixed(1)} | ${r.mean.toFixed(3)} | ${((r.total / sum) * 100).toFixed(1)}% |\n`,
      );
    }
    const samples = [...waits.values()].reduce((a, b) => a + b, 0);
    process.stdout.write(`\n| backends' state (sampled) | share of active samples |\n|---|---:|\n`);
    for (const [w, c] of [...waits].sort((a, b) => b[1] - a[1]).slice(0, 15)) {
      process.stdout.write(`| ${w.replace(/\|/g, "/")} | ${((c / samples) * 100).toFixed(1)}% |\n`);
    }
    await scheduler.stop();
    await Promise.all(pools.map((p) => p.stop()));
    mock.stop();
    await engine.dispatcher.close();
    await hot.close();
    await sql.close();
  }, adminUrl);
  await admin.end();
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    process.stderr.write(`campaign-profile failed: ${err instanceof Error ? err.stack : String(err)}\n`);
    process.exit(1);
  },
);

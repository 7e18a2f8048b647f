/**
 * The system under chaos, as it runs in production: one API process and two worker processes of
 * the real entry (workers/node.ts, ROLE=api / ROLE=worker, LEASE_MS=5000), a database of their
 * own on the throwaway Postgres cluster, a throwaway redis-server, and a mail sink. Jobs go in
 * over HTTP; faults are recorded with the jobs in flight at that moment, so the tally can say
 * how long their rescue took.
 */
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { Redis as IORedis } from "ioredis";
import pg from "pg";
import { migrate } from "../../schema/migrate";
import { ApiKeys } from "../../shared/api/api-keys";
import { createPgSql } from "../../workers/node/postgres";
import type { PostgresCluster } from "./postgres-cluster";
import { type RedisServer, type RuntimeProcess, startRedisServer, startRuntime } from "./processes";
import { type MailSink, startResendSink, startSmtpSink } from "./sinks";

export const PEPPER = "chaos-pepper-0123456789abcdef";
const ADMIN_KEY = "pmk_admin_chaos_0123456789abcdef";
export const TENANT = "acme";
export const REDIS_PREFIX = "chaos:{jobs}:";
/** The harness's own connections: spared when every app connection is terminated. */
export const HARNESS_APP_NAME = "chaos-harness";
export const WORKER_SLOTS = ["w1", "w2"] as const;
export type Slot = (typeof WORKER_SLOTS)[number];

export interface SystemOptions {
  /** Names the database and the log directory. */
  name: string;
  provider: "resend" | "smtp";
  /** Provider latency: the mock's answer delay, or the SMTP sink's delay before each 250. */
  latencyMs: number;
  /** Extra settings for the worker processes (SHUTDOWN_GRACE_MS, ...). */
  workerEnv?: Record<string, string | number>;
}

/** A fault, with the jobs that were active when it struck (for kills: the killed worker's). */
export interface Fault {
  at: number;
  what: string;
  inflight: string[];
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

export class ChaosSystem {
  readonly events: { at: number; what: string }[] = [];
  readonly faults: Fault[] = [];
  /** Every recipient a job was enqueued for, in order. */
  readonly recipients: string[] = [];
  /** What the scenario found wrong besides the counts (exit codes, campaign counters). */
  readonly problems: string[] = [];
  /** HTTP enqueue calls that failed and were repeated (same idempotency keys). */
  enqueueErrors = 0;
  readonly t0 = Date.now();
  readonly workers = new Map<Slot, RuntimeProcess>();
  /** Every worker process ever started, for the report. */
  readonly started: RuntimeProcess[] = [];
  private pending: Promise<unknown>[] = [];
  private generation = new Map<Slot, number>();
  /** A slot's replacement while it starts: a kill waits for it, so it kills a live process. */
  private starting = new Map<Slot, Promise<RuntimeProcess>>();

  private constructor(
    readonly opts: SystemOptions,
    readonly cluster: PostgresCluster,
    readonly dbName: string,
    readonly pool: pg.Pool,
    readonly redis: RedisServer,
    readonly redisClient: IORedis,
    readonly sink: MailSink,
    readonly api: RuntimeProcess,
    readonly key: string,
    readonly logDir: string,
    private readonly baseEnv: Record<string, string | number>,
  ) {}

  static async start(cluster: PostgresCluster, logRoot: string, opts: SystemOptions): Promise<ChaosSystem> {
    const logDir = join(logRoot, opts.name);
    mkdirSync(logDir, { recursive: true });
    const dbName = `chaos_${opts.name.replace(/[^a-z0-9]/gi, "_").toLowerCase()}`;
    await cluster.dropDatabase(dbName);
    const url = await cluster.createDatabase(dbName);
    const sql = createPgSql(url, { max: 2 });
    let key: string;
    try {
      await migrate(sql);
      key = (await new ApiKeys(sql, { pepper: PEPPER }).create({ tenantId: TENANT, admin: false, name: "chaos" })).key;
    } finally {
      await sql.close();
    }
    const pool = new pg.Pool({ connectionString: url, max: 3, application_name: HARNESS_APP_NAME, connectionTimeoutMillis: 5_000 });
    // Connections die with Postgres restarts: the pool replaces them, the error is expected.
    pool.on("error", () => {});
    const redis = await startRedisServer(logDir);
    const redisClient = new IORedis(redis.url, { lazyConnect: true, maxRetriesPerRequest: 1, enableOfflineQueue: false });
    redisClient.on("error", () => {});
    await redisClient.connect();
    const sink = opts.provider === "resend" ? await startResendSink(WORKER_SLOTS, opts.latencyMs) : await startSmtpSink(WORKER_SLOTS, opts.latencyMs);
    const baseEnv: Record<string, string | number> = {
      DATABASE_URL: url,
      API_KEY_PEPPER: PEPPER,
      ADMIN_API_KEY: ADMIN_KEY,
      HOST: "127.0.0.1",
      PORT: 0,
      REDIS_URL: redis.url,
      REDIS_PREFIX,
      LEASE_MS: 5_000,
      MAIL_FROM: "Acme <news@acme.test>",
      LOG_LEVEL: "info",
      DATA_DIR: join(logDir, "data"),
    };
    const api = await startRuntime("api", { ...baseEnv, ...sink.envFor("w1"), ROLE: "api" }, logDir);
    const system = new ChaosSystem(opts, cluster, dbName, pool, redis, redisClient, sink, api, key, logDir, baseEnv);
    await Promise.all(WORKER_SLOTS.map((slot) => system.startWorker(slot)));
    system.note("system up");
    return system;
  }

  note(what: string): void {
    this.events.push({ at: Date.now(), what });
  }

  startWorker(slot: Slot): Promise<RuntimeProcess> {
    const n = (this.generation.get(slot) ?? 0) + 1;
    this.generation.set(slot, n);
    const started = startRuntime(
      `${slot}-${n}`,
      { ...this.baseEnv, ...this.sink.envFor(slot), ...this.opts.workerEnv, ROLE: "worker" },
      this.logDir,
    ).then((proc) => {
      this.workers.set(slot, proc);
      this.started.push(proc);
      this.note(`${proc.name} ready (pid ${proc.pid})`);
      return proc;
    });
    this.starting.set(slot, started);
    return started;
  }

  /** The slot's worker, once its latest start finished. */
  async worker(slot: Slot): Promise<RuntimeProcess> {
    return (await this.starting.get(slot)) ?? this.workers.get(slot)!;
  }

  /** A query that waits out a Postgres fault (retries for up to a minute). */
  async q<T extends pg.QueryResultRow>(text: string, params: unknown[] = []): Promise<T[]> {
    const deadline = Date.now() + 60_000;
    for (;;) {
      try {
        return (await this.pool.query<T>(text, params)).rows;
      } catch (err) {
        if (Date.now() > deadline) throw err;
        await sleep(200);
      }
    }
  }

  /** Jobs active now (optionally only a worker process's). */
  async activeJobs(pid?: number): Promise<string[]> {
    const rows = await this.q<{ id: string }>(
      `select id::text as id from jobs where state = 'active' and ($1::text is null or worker_id ~ ('(^|:)' || $1 || '(:|$)'))`,
      [pid === undefined ? null : String(pid)],
    );
    return rows.map((r) => r.id);
  }

  async completedCount(): Promise<number> {
    const [row] = await this.q<{ n: number }>(`select count(*)::int as n from jobs where type = 'email.send' and state = 'completed'`);
    return row!.n;
  }

  /** Runs a fault, recording the jobs in flight just before it (or, for kills, those the dead worker held). */
  async fault(what: string, act: () => Promise<void>, inflight?: string[] | (() => Promise<string[]>)): Promise<void> {
    const before = inflight === undefined ? await this.activeJobs() : Array.isArray(inflight) ? inflight : undefined;
    const at = Date.now();
    await act();
    const held = before ?? (await (inflight as () => Promise<string[]>)());
    this.faults.push({ at, what, inflight: held });
    this.note(`${what} (${held.length} jobs in flight)`);
  }

  /** SIGKILLs a slot's worker; restart: start a replacement at once, as an orchestrator would. */
  async killWorker(slot: Slot, opts: { restart: boolean }): Promise<void> {
    const proc = await this.worker(slot);
    await this.fault(
      `SIGKILL ${proc.name}`,
      async () => void (await proc.kill("SIGKILL")),
      () => this.activeJobs(proc.pid),
    );
    if (opts.restart) this.track(this.startWorker(slot));
  }

  /** Keeps a background task (enqueue trickle, restart) so `settle` waits for it and sees its errors. */
  track<T>(p: Promise<T>): Promise<T> {
    this.pending.push(p);
    return p;
  }

  // -------------------------------------------------------------------------------------------
  // Enqueue over HTTP.
  // -------------------------------------------------------------------------------------------

  private async post(path: string, body: unknown): Promise<any> {
    const deadline = Date.now() + 120_000;
    for (;;) {
      let status = 0;
      let text = "";
      try {
        const res = await fetch(`${this.api.url}${path}`, {
          method: "POST",
          headers: { authorization: `Bearer ${this.key}`, "content-type": "application/json" },
          body: JSON.stringify(body),
        });
        status = res.status;
        text = await res.text();
        if (status < 300) return text ? JSON.parse(text) : null;
      } catch (err) {
        text = String(err);
      }
      // A 4xx is our mistake: repeating will not help.
      if (status >= 400 && status < 500) throw new Error(`POST ${path}: ${status} ${text.slice(0, 500)}`);
      this.enqueueErrors++;
      if (Date.now() > deadline) throw new Error(`POST ${path} kept failing: ${status} ${text.slice(0, 500)}`);
      await sleep(250);
    }
  }

  /** Enqueues transactional email.send jobs for recipients #from..#to-1, in batch calls of `batch`. */
  async enqueueRange(from: number, to: number, batch = 500): Promise<void> {
    for (let b = from; b < to; b += batch) {
      const jobs = [];
      for (let i = b; i < Math.min(to, b + batch); i++) {
        const recipient = `r${i}@example.com`;
        jobs.push({
          type: "email.send",
          // The key makes a repeated call (after a 5xx or a reset connection) enqueue nothing twice.
          idempotency_key: `chaos-${i}`,
          payload: { recipient, template_id: "sys_transactional", variables: { title: `Receipt ${i}`, body: "Paid. Thanks." } },
        });
        this.recipients.push(recipient);
      }
      await this.post("/v1/jobs/batch", { jobs });
    }
  }

  /** Enqueues `total` jobs spread evenly over `durationMs` (a batch every 100 ms), in the background. */
  trickle(total: number, durationMs: number): Promise<void> {
    const ticks = Math.max(1, Math.round(durationMs / 100));
    const per = Math.ceil(total / ticks);
    const task = (async () => {
      const start = Date.now();
      for (let t = 0, i = 0; i < total; t++) {
        const n = Math.min(per, total - i);
        await this.enqueueRange(i, i + n, n);
        i += n;
        const next = start + (t + 1) * 100;
        if (next > Date.now()) await sleep(next - Date.now());
      }
      this.note(`all ${total} jobs enqueued`);
    })();
    return this.track(task);
  }

  /** Resolves once `n` email.send jobs completed (or throws at the deadline). */
  async waitCompleted(n: number, timeoutMs = 120_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while ((await this.completedCount()) < n) {
      if (Date.now() > deadline) throw new Error(`${this.opts.name}: ${n} jobs not completed within ${timeoutMs} ms`);
      await sleep(50);
    }
  }

  /**
   * Waits until every expected job completed and the background tasks ended, or the deadline.
   * Then a short quiet time, so a late duplicate from a straggling request is still counted.
   */
  async settle(expected: number, deadlineMs: number): Promise<void> {
    const deadline = this.t0 + deadlineMs;
    let settled = false;
    void Promise.allSettled(this.pending).then(() => (settled = true));
    while (Date.now() < deadline) {
      if (settled && (await this.completedCount()) >= expected) break;
      await sleep(200);
    }
    const errors = (await Promise.allSettled(this.pending)).filter((r) => r.status === "rejected");
    for (const e of errors) this.note(`background task failed: ${String((e as PromiseRejectedResult).reason)}`);
    await sleep(1_000);
  }

  async stop(): Promise<void> {
    await Promise.allSettled(this.pending);
    await Promise.all([...this.workers.values()].map((w) => w.kill("SIGKILL", 5_000)));
    await this.api.kill("SIGKILL", 5_000);
    await this.sink.close().catch(() => {});
    this.redisClient.disconnect();
    await this.redis.stop();
    await this.pool.end().catch(() => {});
    await this.cluster.dropDatabase(this.dbName).catch(() => {});
  }

  /** Seconds since the system came up, for notes. */
  rel(at: number): string {
    return `${((at - this.t0) / 1000).toFixed(1)} s`;
  }

  /** Posts to the API as the tenant (the campaign scenario's setup). */
  call(path: string, body?: unknown): Promise<any> {
    return this.post(path, body ?? {});
  }
}

/**
 * A run cut short by a database outage is not the job's failure. The chaos suite saw jobs whose
 * database calls failed during `pg_ctl restart -m fast` wait out email.send's backoff (5 s,
 * then 10 s): 27 s from a restart to the last of them running again. Errors the database
 * adapters raise for an outage (a backend terminated, the server refusing connections or
 * shutting down) are marked where every query passes, and the engine hands such a run back:
 * in its place in the lane, the attempt not counted, ready as soon as the database answers.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ApiKeys } from "../shared/api/api-keys";
import { createApp } from "../shared/api/app";
import { importContacts } from "../shared/jobs/import-contacts";
import type { Sql } from "../shared/ports";
import type { Job } from "../shared/queue/job";
import { createEngine } from "../shared/queue/engine";
import { failureOutcome } from "../shared/queue/outcome";
import { WorkerPool } from "../shared/queue/worker";
import { isDatabaseOutage, markOutage } from "../shared/sql-errors";
import { createPgSql } from "../workers/node/postgres";
import { freePort } from "./support/processes";
import { fastCatalog } from "./support/engine";
import { createTestDatabase, waitFor } from "./support/services";

type TestDatabase = Awaited<ReturnType<typeof createTestDatabase>>;

const now = new Date("2030-01-01T00:00:00Z");
const job = (attempt: number, maxAttempts = 8) => ({ id: "1", attempt, maxAttempts }) as Job;

let db: TestDatabase;
let app: Sql;

beforeAll(async () => {
  db = await createTestDatabase("database_outage");
  app = createPgSql(db.url, { max: 2, applicationName: "outage-test" });
});
afterAll(async () => {
  await app?.close();
  await db?.drop();
});

/** Runs `work` on the app's pool and terminates its backend while it runs; answers the error. */
async function terminatedDuring(work: (sql: Sql) => Promise<unknown>): Promise<unknown> {
  const running = work(app).then(
    () => undefined,
    (err: unknown) => err,
  );
  // Wait until the statement is on the server, then end its backend as pg_terminate_backend does.
  for (let i = 0; i < 200; i++) {
    const [row] = await db.sql.query<{ n: number }>(
      "select count(*)::int as n from pg_stat_activity where application_name = 'outage-test' and query like '%pg_sleep%' and state = 'active'",
    );
    if (row!.n > 0) break;
    await new Promise((r) => setTimeout(r, 10));
  }
  await db.sql.query("select pg_terminate_backend(pid) from pg_stat_activity where application_name = 'outage-test' and query like '%pg_sleep%'");
  return running;
}

describe("errors of a database outage are marked by the adapter", () => {
  it("a query whose backend is terminated (57P01)", async () => {
    const err = await terminatedDuring((sql) => sql.query("select pg_sleep(10)"));
    expect(err).toBeInstanceOf(Error);
    expect(isDatabaseOutage(err)).toBe(true);
  });

  it("a transaction whose backend is terminated, also when a handler wraps the error", async () => {
    const err = await terminatedDuring((sql) => sql.begin((tx) => tx.query("select pg_sleep(10)")));
    expect(isDatabaseOutage(err)).toBe(true);
    expect(isDatabaseOutage(new Error("the send ledger could not be written", { cause: err }))).toBe(true);
  });

  it("a server that refuses connections (nothing listening)", async () => {
    const nowhere = createPgSql(`postgres://postgres@127.0.0.1:${await freePort()}/postgres`, { max: 1 });
    try {
      const err = await nowhere.query("select 1").then(() => undefined, (e: unknown) => e);
      expect((err as { code?: string }).code).toBe("ECONNREFUSED");
      expect(isDatabaseOutage(err)).toBe(true);
    } finally {
      await nowhere.close();
    }
  });

  it("an error the server answered for the query itself is not an outage", async () => {
    const err = await app.query("select 1/0").then(() => undefined, (e: unknown) => e);
    expect((err as { code?: string }).code).toBe("22012");
    expect(isDatabaseOutage(err)).toBe(false);
    // The same socket error from anywhere but a database adapter (a provider's fetch) is not marked.
    expect(isDatabaseOutage(Object.assign(new Error("connect ECONNREFUSED"), { code: "ECONNREFUSED" }))).toBe(false);
  });
});

describe("failureOutcome of a run cut short by an outage", () => {
  const outage = () => markOutage(Object.assign(new Error("terminating connection due to administrator command"), { code: "57P01" }));

  it("hands the run back (its place kept, the attempt not counted) instead of the type's backoff", () => {
    expect(failureOutcome(job(3), importContacts, outage(), now)).toEqual({ id: "1", attempt: 3, state: "release" });
    // A plain error on attempt 3 waits the type's backoff instead.
    const plain = failureOutcome(job(3), importContacts, new Error("boom"), now, () => 0.5);
    expect(plain.state).toBe("scheduled");
    expect("runAt" in plain && plain.runAt!.getTime() - now.getTime()).toBeGreaterThan(2_000);
  });

  it("on the last attempt too: an outage longer than the attempts fails no job", () => {
    expect(failureOutcome(job(8, 8), importContacts, outage(), now).state).toBe("release");
    expect(failureOutcome(job(8, 8), importContacts, new Error("boom"), now).state).toBe("failed");
  });

  it("an error that declares itself permanent stays permanent", () => {
    const permanent = Object.assign(outage(), { permanent: true });
    expect(failureOutcome(job(1), importContacts, permanent, now).state).toBe("failed");
  });
});

describe("a worker whose job's query is cut off by pg_terminate_backend", () => {
  it("runs the job again at once, on the same attempt, ahead of the jobs queued behind it", async () => {
    const engine = createEngine({ sql: db.sql, catalog: fastCatalog() });
    await engine.dispatcher.start();
    // The hand-back written slowly, as on a loaded server: the pool must not claim past it (CI
    // once saw a claim sent before the release landed take a job queued behind it).
    const ledger = engine.queue.ledger;
    const releaseMany = ledger.releaseMany.bind(ledger);
    ledger.releaseMany = async (...args) => {
      if (args[0].length > 0) await new Promise((r) => setTimeout(r, 300));
      return releaseMany(...args);
    };
    let runs = 0;
    const order: string[] = [];
    const pool = new WorkerPool({
      name: "outage",
      handlers: [
        {
          type: "maintenance.cleanup",
          run: async (_payload, job) => {
            order.push(job.id);
            if (runs++ === 0) await app.query("select pg_sleep(10)"); // cut off below
          },
        },
      ],
      concurrency: 1,
      queue: engine.queue,
      stats: engine.stats,
      workerId: "outage-test",
    });
    try {
      const first = await engine.queue.enqueue({ type: "maintenance.cleanup", tenantId: "_system", payload: {} });
      pool.start();
      await waitFor(() => runs > 0, { timeoutMs: 20_000, what: "the first run" });
      // Queued behind it while it runs: they must not go first.
      const later = await engine.queue.enqueueMany(Array.from({ length: 5 }, () => ({ type: "maintenance.cleanup", tenantId: "_system", payload: {} })));
      // The handler's own query (pg_sleep on the app pool) is the one cut off.
      await terminatedDuring(() => waitFor(() => runs > 1, { timeoutMs: 20_000, what: "the second run" }));
      await waitFor(async () => (await db.sql.query<{ n: number }>("select count(*)::int as n from jobs where state = 'completed'"))[0]!.n === 6, {
        timeoutMs: 20_000,
        what: "every job to complete",
      });
      const [row] = await db.sql.query<{ attempt: number; state: string }>("select attempt, state::text from jobs where id = $1", [first.job.id]);
      expect(row).toEqual({ attempt: 1, state: "completed" });
      expect(order.slice(0, 2)).toEqual([first.job.id, first.job.id]);
      expect(order.slice(2).sort()).toEqual(later.map((l) => l.job.id).sort());
    } finally {
      await pool.stop();
      await engine.dispatcher.close();
    }
  });
});

describe("the API during a database outage", () => {
  it("answers 503 with Retry-After, not a 500, while the database is away; the same request then succeeds", async () => {
    const apiKeys = new ApiKeys(db.sql, { pepper: "outage-pepper-0123456789" });
    const { key } = await apiKeys.create({ tenantId: "acme", admin: false, name: "acme" });
    let away = false;
    // The adapter's own marking, on a connection that is really cut: what a restart looks like.
    const flaky: Sql = {
      ...db.sql,
      query: async (text, params) => {
        if (away) throw await terminatedDuring((sql) => sql.query("select pg_sleep(10)"));
        return db.sql.query(text, params);
      },
    };
    const engine = createEngine({ sql: flaky });
    const api = createApp({ queue: engine.queue, sql: flaky, apiKeys: new ApiKeys(flaky, { pepper: "outage-pepper-0123456789" }) });
    const get = () => api.request("/v1/jobs?limit=1", { headers: { authorization: `Bearer ${key}` } });
    away = true;
    const down = await get();
    expect(down.status).toBe(503);
    expect(down.headers.get("retry-after")).toBe("1");
    expect(down.headers.get("content-type")).toMatch(/^application\/problem\+json/);
    expect(await down.json()).toMatchObject({ status: 503, detail: expect.stringContaining("unavailable") });
    away = false;
    expect((await get()).status).toBe(200);
  });
});


/**
 * A run cut short by a database outage is not the job's failure. The chaos suite saw jobs whose
 * database calls failed during `pg_ctl restart -m fast` wait out email.send's backoff (5 s,
 * then 10 s): 27 s from a restart to the last of them running again. Errors the database
 * adapters raise for an outage (a backend terminated, the server refusing connections or
 * shutting down) are marked where every query passes, and the engine runs such a job again
 * after 1-2 s without spending an attempt.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { importContacts } from "../shared/jobs/import-contacts";
import type { Sql } from "../shared/ports";
import type { Job } from "../shared/queue/job";
import { failureOutcome } from "../shared/queue/outcome";
import { isDatabaseOutage, markOutage } from "../shared/sql-errors";
import { createPgSql } from "../workers/node/postgres";
import { freePort } from "./support/processes";
import { createTestDatabase } from "./support/services";

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

  it("runs again after 1-2 s, not after the type's backoff, and the attempt is given back", () => {
    for (const random of [0, 0.5, 0.999]) {
      const o = failureOutcome(job(3), importContacts, outage(), now, () => random);
      expect(o.state).toBe("scheduled");
      expect(o.refund).toBe(true);
      const delay = o.runAt!.getTime() - now.getTime();
      expect(delay).toBeGreaterThanOrEqual(1_000);
      expect(delay).toBeLessThan(2_000);
    }
    // A plain error on attempt 3 waits the type's backoff instead.
    const plain = failureOutcome(job(3), importContacts, new Error("boom"), now, () => 0.5);
    expect(plain.refund).toBeUndefined();
    expect(plain.runAt!.getTime() - now.getTime()).toBeGreaterThan(2_000);
  });

  it("on the last attempt too: an outage longer than the attempts fails no job", () => {
    expect(failureOutcome(job(8, 8), importContacts, outage(), now).state).toBe("scheduled");
    expect(failureOutcome(job(8, 8), importContacts, new Error("boom"), now).state).toBe("failed");
  });

  it("an error that declares itself permanent stays permanent", () => {
    const permanent = Object.assign(outage(), { permanent: true });
    expect(failureOutcome(job(1), importContacts, permanent, now).state).toBe("failed");
  });
});

/**
 * import.contacts: the CSV reader's edge cases; a 100,000-row file (BOM, quoted fields with
 * delimiters and newlines, duplicates in another case, invalid and missing addresses) imported
 * through a real worker pool, with exact counts, the list's count and the error report; the `;`
 * and CRLF variant; and a real runtime process SIGKILLed halfway, restarted, ending with the
 * counts of a clean run.
 */
import { mkdtemp, readFile, rm, mkdir } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { writeFile } from "node:fs/promises";
import { afterAll, describe, expect, it } from "vitest";
import { CsvParser, csvRecords, sniffDelimiter } from "../shared/imports/csv";
import { type ImportCounts, runImport } from "../shared/imports/import-contacts";
import { silentLogger } from "../shared/ports";
import { SeenSet } from "../shared/imports/seen-set";
import { createEngine, type Engine } from "../shared/queue/engine";
import { WorkerPool } from "../shared/queue/worker";
import { StorageRouter } from "../shared/storage/storage";
import { importContactsHandler } from "../workers/handlers/import-contacts";
import { createLocalStorage } from "../workers/node/local-storage";
import { type Expected, writeContactsCsv } from "./support/import-fixture";
import { cleanupProcesses, startWorker } from "./support/processes";
import { createTestDatabase, waitFor } from "./support/services";


function parseAll(text: string, chunk = 3, delimiter?: "," | ";" | "\t"): string[][] {
  const p = new CsvParser({ delimiter });
  const out: string[][] = [];
  for (let i = 0; i < text.length; i += chunk) out.push(...p.push(text.slice(i, i + chunk)));
  out.push(...p.finish());
  return out;
}

describe("CSV reader", () => {
  it("parses quotes, escapes, embedded delimiters and newlines, CRLF and LF, at every chunk size", () => {
    const text = 'a,b,c\r\n"x, y","he said ""hi""","multi\r\nline"\n1,,3\n"",x,\n\n"last","row"';
    const expected = [
      ["a", "b", "c"],
      ["x, y", 'he said "hi"', "multi\r\nline"],
      ["1", "", "3"],
      ["", "x", ""],
      ["last", "row"],
    ];
    for (const chunk of [1, 2, 3, 5, 7, 100]) expect(parseAll(text, chunk)).toEqual(expected);
  });

  it("sniffs , ; and tab from the header line, ignoring quoted ones", () => {
    expect(sniffDelimiter("email;name;plan")).toBe(";");
    expect(sniffDelimiter("email\tname")).toBe("\t");
    expect(sniffDelimiter('"a;b;c",d,e')).toBe(",");
    expect(sniffDelimiter("email")).toBe(",");
    expect(parseAll('email;name\r\n"a;b";"c\nd"\r\n', 4)).toEqual([["email", "name"], ["a;b", "c\nd"]]);
    expect(parseAll("email\tname\nx@y.z\tN\n", 2)).toEqual([["email", "name"], ["x@y.z", "N"]]);
  });

  it("drops a UTF-8 BOM, keeps multi-byte characters split across chunks, ends without a newline", async () => {
    const bytes = new TextEncoder().encode('\uFEFFemail,name\nzoë@example.com,"Ünïcødé, 日本"\nlast@x.io,end');
    const stream = new ReadableStream<Uint8Array>({
      start(c) {
        for (let i = 0; i < bytes.length; i += 3) c.enqueue(bytes.slice(i, i + 3));
        c.close();
      },
    });
    const rows: string[][] = [];
    for await (const group of csvRecords(stream)) rows.push(...group);
    expect(rows).toEqual([["email", "name"], ["zoë@example.com", "Ünïcødé, 日本"], ["last@x.io", "end"]]);
  });

  it("is lenient with text after a closing quote, not with an unclosed quote at the end (test/csv-reader.test.ts)", () => {
    expect(parseAll('"ab"cd,e\n', 2)).toEqual([["abcd", "e"]]);
    expect(() => parseAll('"ab"cd,e\n"open', 2)).toThrow(/^CSV row 2 \(line 2\): .*\(CSV_QUOTE_NOT_CLOSED\)$/);
    expect(parseAll("a,b,\n", 1)).toEqual([["a", "b", ""]]);
  });

  it("refuses a record longer than the limit (an unclosed quote)", () => {
    const p = new CsvParser({ maxRecordChars: 100 });
    expect(() => p.push(`a\n"${"x".repeat(200)}`)).toThrow(/longer than/);
  });

  it("SeenSet remembers a million strings", () => {
    const s = new SeenSet(16);
    let added = 0;
    let again = 0;
    for (let i = 0; i < 1_000_000; i++) if (s.add(`user${i}@example.com`)) added++;
    for (let i = 0; i < 1_000_000; i += 997) if (s.add(`USER${i}@example.com`.toLowerCase())) again++;
    expect([added, again]).toEqual([1_000_000, 0]);
    expect(s.size).toBe(1_000_000);
  });
});

// ---------------------------------------------------------------------------------------------

type Db = Awaited<ReturnType<typeof createTestDatabase>>;
const cleanups: (() => Promise<void>)[] = [];
afterAll(async () => {
  await cleanupProcesses();
  for (const c of cleanups.reverse()) await c().catch(() => {});
});

const ROWS = 100_000;

interface ImportRow extends ImportCounts {
  status: string;
  report_url: string | null;
}

async function importRow(db: Db, id: string): Promise<ImportRow | undefined> {
  const [r] = await db.sql.query<ImportRow>(
    `select status, rows_read::int, created::int, updated::int, invalid::int, duplicate::int, list_added::int, report_url
     from imports where id = $1`,
    [id],
  );
  return r;
}

async function setup(label: string): Promise<{ db: Db; dir: string; engine: Engine }> {
  const db = await createTestDatabase(label);
  const dir = await mkdtemp(join(tmpdir(), "pm-import-"));
  const engine = createEngine({ sql: db.sql });
  cleanups.push(async () => {
    await engine.dispatcher.close();
    await db.drop();
    await rm(dir, { recursive: true, force: true });
  });
  return { db, dir, engine };
}

async function seed(db: Db, tenant: string, list: string) {
  await db.sql.query("insert into lists (id, tenant_id, name) values ($1, $2, 'imported')", [list, tenant]);
  // 1,000 contacts already there (user0..user999): their valid rows count as updated.
  await db.sql.query(
    `insert into contacts (tenant_id, email, name) select $1, 'user' || g || '@example.com', 'old' from generate_series(0, 999) g`,
    [tenant],
  );
}

/** Seeded contacts whose address the file never has in a valid row. */
const seededOnly = (e: Expected) => 1000 - expectedCounts(e).updated;

/** The exact counts a clean run of the fixture gives: 1,000 pre-existing contacts, all unique valid rows of the file. */
function expectedCounts(e: Expected) {
  let preexisting = 0;
  for (let i = 0; i < Math.min(1000, e.rows); i++) if (!(i % 50 === 7) && !(i % 40 === 3 && i >= 3)) preexisting++;
  return {
    rows_read: e.rows,
    created: e.valid - preexisting,
    updated: preexisting,
    invalid: e.invalid,
    duplicate: e.duplicate,
    list_added: e.valid,
  };
}

async function checkReport(reportUrl: string, e: Expected) {
  const report = await readFile(fileURLToPath(reportUrl), "utf8");
  const lines = report.trimEnd().split("\n");
  expect(lines[0]).toBe("row,reason,email");
  const got = new Map<number, string>();
  for (const line of lines.slice(1)) {
    const [row, reason] = line.split(",");
    got.set(Number(row), reason!);
  }
  expect(got.size).toBe(e.rejected.size);
  for (const [row, kind] of e.rejected) {
    expect(got.get(row), `row ${row}`).toBe(kind === "duplicate" ? "duplicate email in file" : row % 100 === 9 ? "invalid email" : "missing email");
  }
  // The raw address is there too.
  expect(report).toContain(",invalid email,not-an-email-7\n");
  expect(report).toContain(",duplicate email in file,USER0@EXAMPLE.COM\n");
}

describe("import.contacts through a worker pool", () => {
  it(
    "imports 100,000 rows with exact counts, the list's count and every rejected row in the report",
    async () => {
      const { db, dir, engine } = await setup("import");
      const store = createLocalStorage(dir);
      const storage = new StorageRouter([store], store);
      const pool = new WorkerPool({
        name: "import",
        handlers: [importContactsHandler({ sql: db.sql, queue: engine.queue, storage, logger: engine.logger })],
        concurrency: 2,
        queue: engine.queue,
        stats: engine.stats,
        workerId: "import-test",
        idleWaitMs: 100,
      });
      pool.start();
      cleanups.push(() => pool.stop(2_000));
      await db.sql.query(
        `insert into webhook_endpoints (id, tenant_id, url, event_types, secret) values ('whe_1', 'acme', 'https://hooks.example.com/x', '{import.finished}', 'whsec_x')`,
      );

      // , with a BOM and LF; and ; with CRLF, another tenant.
      await seed(db, "acme", "lst_a");
      // Each tenant's files sit in its own folder of the store: a tenant can only import those.
      await mkdir(join(dir, "acme"), { recursive: true });
      await mkdir(join(dir, "beta"), { recursive: true });
      const e1 = await writeContactsCsv(join(dir, "acme", "contacts.csv"), ROWS, { bom: true });
      await seed(db, "beta", "lst_b");
      const e2 = await writeContactsCsv(join(dir, "beta", "semicolon.csv"), 20_000, { delimiter: ";", crlf: true });

      const started = Date.now();
      const [{ job: j1 }, { job: j2 }] = await Promise.all([
        engine.queue.enqueue({
          type: "import.contacts",
          tenantId: "acme",
          payload: { file_url: pathToFileURL(join(dir, "acme", "contacts.csv")).toString(), tenant_id: "acme", mapping: { email: "email", Name: "name", col_2: "attributes.plan" }, list_id: "lst_a" },
        }),
        engine.queue.enqueue({
          type: "import.contacts",
          tenantId: "beta",
          payload: { file_url: pathToFileURL(join(dir, "beta", "semicolon.csv")).toString(), tenant_id: "beta", mapping: { col_0: "email", col_1: "name" }, list_id: "lst_b" },
        }),
      ]);
      const done = await waitFor(
        async () => {
          const [a, b] = await Promise.all([engine.queue.get(j1.id, null), engine.queue.get(j2.id, null)]);
          if (a.state === "failed" || b.state === "failed") throw new Error(`import failed: ${JSON.stringify(a.lastError ?? b.lastError)}`);
          return a.state === "completed" && b.state === "completed" ? [a, b] : undefined;
        },
        { timeoutMs: 120_000, intervalMs: 100, what: "the imports" },
      );
      const seconds = (Date.now() - started) / 1000;
      process.stdout.write(`imported ${ROWS + 20_000} rows in ${seconds.toFixed(1)} s\n`);

      const r1 = await importRow(db, j1.id);
      expect(r1).toMatchObject({ status: "completed", ...expectedCounts(e1) });
      // The job's result names the report by the API's link; its storage URL stays in the imports row.
      expect(r1!.report_url).toMatch(/^file:\/\//);
      expect(done![0]!.result).toMatchObject({ ...expectedCounts(e1), report_url: `/v1/imports/${j1.id}/report` });
      const r2 = await importRow(db, j2.id);
      expect(r2).toMatchObject({ status: "completed", ...expectedCounts(e2) });

      // contacts and the list match the counts
      const [c] = await db.sql.query<{ n: number; lists: number; members: number; plan: string; name: string }>(
        `select (select count(*)::int from contacts where tenant_id = 'acme') as n,
                (select contact_count from lists where id = 'lst_a') as lists,
                (select count(*)::int from list_members where list_id = 'lst_a') as members,
                (select attributes->>'plan' from contacts where tenant_id = 'acme' and email = 'user6@example.com') as plan,
                (select name from contacts where tenant_id = 'acme' and email = 'user11@example.com') as name`,
      );
      expect(c).toEqual({ n: e1.valid + seededOnly(e1), lists: e1.valid, members: e1.valid, plan: "pro", name: 'Doe, John "J" 11\nsecond line' });
      const [b] = await db.sql.query<{ n: number; lists: number; name: string }>(
        `select (select count(*)::int from contacts where tenant_id = 'beta') as n,
                (select contact_count from lists where id = 'lst_b') as lists,
                (select name from contacts where tenant_id = 'beta' and email = 'user21@example.com') as name`,
      );
      expect(b).toEqual({ n: e2.valid + seededOnly(e2), lists: e2.valid, name: "Doe; John \"J\" 21\r\nsecond line" });

      await checkReport(r1!.report_url!, e1);
      await checkReport(r2!.report_url!, e2);

      // import.finished went to the subscribed endpoint
      const [hook] = await db.sql.query<{ n: number }>(
        `select count(*)::int as n from jobs where type = 'webhook.dispatch' and payload->>'event_type' = 'import.finished' and tenant_id = 'acme'`,
      );
      expect(hook!.n).toBe(1);
      const [event] = await db.sql.query<{ data: { report_url: string } }>(
        `select payload->'data' as data from jobs where type = 'webhook.dispatch' and payload->>'event_type' = 'import.finished' and tenant_id = 'acme'`,
      );
      expect(event!.data.report_url).toBe(`/v1/imports/${j1.id}/report`);
    },
    180_000,
  );
});

describe("import.contacts batches", () => {
  it("folds addresses only Postgres' lower() calls equal, within a batch and across batches", async () => {
    const { db, dir, engine } = await setup("import_fold");
    await db.sql.query("insert into lists (id, tenant_id, name) values ('lst_f', 'acme', 'fold')");
    // JS lowercases İ to "i̇" (two characters); Postgres may fold it to "i" (it does under C.UTF-8).
    const [{ folds }] = (await db.sql.query<{ folds: boolean }>("select lower('İb@x.io') = lower('ib@x.io') as folds")) as [{ folds: boolean }];
    // Batches of 2: [a, İb] [ib, c] [İd, id] [e, f] [g]; only [g] (ASCII after ASCII) commits beside the one before.
    const emails = ["a", "İb", "ib", "c", "İd", "id", "e", "f", "g"].map((e) => `${e}@x.io`);
    await mkdir(join(dir, "acme"), { recursive: true });
    await writeFile(join(dir, "acme", "fold.csv"), `email,name\n${emails.map((e, i) => `${e},N${i}`).join("\n")}\n`);
    const store = createLocalStorage(dir);
    const result = await runImport(
      { file_url: pathToFileURL(join(dir, "acme", "fold.csv")).toString(), tenant_id: "acme", mapping: { email: "email", name: "name" }, list_id: "lst_f", has_header: true },
      { id: "fold-1" },
      { signal: new AbortController().signal, logger: silentLogger, progress: () => {} },
      { sql: db.sql, queue: engine.queue, storage: new StorageRouter([store], store), logger: silentLogger, batchSize: 2 },
    );
    // Folding, "ib" finds İb's contact committed (updated), and "id" meets "İd" in its batch (duplicate).
    const expected = folds
      ? { rows_read: 9, created: 7, updated: 1, invalid: 0, duplicate: 1, list_added: 7 }
      : { rows_read: 9, created: 9, updated: 0, invalid: 0, duplicate: 0, list_added: 9 };
    expect(result).toMatchObject(expected);
    expect(await importRow(db, "fold-1")).toMatchObject({ status: "completed", ...expected });
    const [c] = await db.sql.query<{ n: number; members: number; count: number; ib: string }>(
      `select (select count(*)::int from contacts where tenant_id = 'acme') as n,
              (select count(*)::int from list_members where list_id = 'lst_f') as members,
              (select contact_count from lists where id = 'lst_f') as count,
              (select name from contacts where tenant_id = 'acme' and lower(email) = lower('ib@x.io') limit 1) as ib`,
    );
    expect(c).toEqual({ n: expected.created, members: expected.list_added, count: expected.list_added, ib: "N2" });
  });
});

describe("import.contacts in a real runtime", () => {
  it(
    "SIGKILLed halfway, restarted: ends with the counts of a clean run",
    async () => {
      const { db, dir, engine } = await setup("import_kill");
      const files = join(dir, "files", "acme");
      await mkdir(files, { recursive: true });
      await seed(db, "acme", "lst_a");
      const e = await writeContactsCsv(join(files, "contacts.csv"), ROWS, { bom: true });
      const { job } = await engine.queue.enqueue({
        type: "import.contacts",
        tenantId: "acme",
        payload: { file_url: pathToFileURL(join(files, "contacts.csv")).toString(), tenant_id: "acme", mapping: { email: "email", name: "name", plan: "attributes.plan" }, list_id: "lst_a" },
      });

      const start = (name: string) =>
        startWorker(
          name,
          {
            DATABASE_URL: db.url,
            DATABASE_POOL_SIZE: 4,
            API_KEY_PEPPER: "import-test-pepper-0123456789",
            ROLE: "worker",
            POOLS: "import",
            DATA_DIR: dir,
            LEASE_MS: 2000,
            SCHEDULER_INTERVAL_MS: 200,
          },
          { script: "workers/node.ts" },
        );

      const first = await start("runtime A");
      let firstExited = false;
      void first.exited.then(() => (firstExited = true));
      const midway = await waitFor(
        async () => {
          if (firstExited) throw new Error(`the runtime exited: ${first.output()}`);
          const r = await importRow(db, job.id);
          return r && r.rows_read > 0 && r.rows_read < ROWS ? r : undefined;
        },
        { timeoutMs: 60_000, intervalMs: 5, what: "progress" },
      );
      await first.kill("SIGKILL");
      const atKill = (await importRow(db, job.id))!;
      process.stdout.write(`killed at ${midway!.rows_read} rows (committed at exit: ${atKill.rows_read})\n`);
      expect(atKill.rows_read).toBeLessThan(ROWS);
      expect(atKill.status).toBe("running");

      const second = await start("runtime B");
      const finished = await waitFor(
        async () => {
          const j = await engine.queue.get(job.id, null);
          if (j.state === "failed") throw new Error(`import failed: ${JSON.stringify(j.lastError)}\n${second.output()}`);
          return j.state === "completed" ? j : undefined;
        },
        { timeoutMs: 120_000, intervalMs: 100, what: "the import after the restart" },
      );
      expect(finished!.attempt).toBeGreaterThanOrEqual(2);
      const r = await importRow(db, job.id);
      expect(r).toMatchObject({ status: "completed", ...expectedCounts(e) });
      const [c] = await db.sql.query<{ n: number; lists: number }>(
        `select (select count(*)::int from contacts where tenant_id = 'acme') as n, (select contact_count from lists where id = 'lst_a') as lists`,
      );
      expect(c).toEqual({ n: e.valid + seededOnly(e), lists: e.valid });
      await checkReport(r!.report_url!, e);
      await second.kill("SIGTERM");
    },
    180_000,
  );
});


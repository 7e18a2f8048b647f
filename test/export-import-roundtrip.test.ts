import { mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ApiKeys } from "../shared/api/api-keys";
import { createApp } from "../shared/api/app";
import { ExportLinks } from "../shared/exports/links";
import { silentLogger } from "../shared/ports";
import { createEngine, type Engine } from "../shared/queue/engine";
import { WorkerPool } from "../shared/queue/worker";
import { createHandlers } from "../workers/handlers";
import { maintenanceCleanupHandler } from "../workers/handlers/maintenance-cleanup";
import { createLocalStorage } from "../workers/node/local-storage";
import { fastCatalog } from "./support/engine";
import { createTestDatabase, waitFor } from "./support/services";

/** An export is a file an import takes back: the same contacts come out the other side. */
describe("export then import", () => {
  let db: Awaited<ReturnType<typeof createTestDatabase>>;
  let folder: string;
  let engine: Engine;
  let pool: WorkerPool;
  let storage: ReturnType<typeof createLocalStorage>;

  beforeAll(async () => {
    db = await createTestDatabase("roundtrip");
    folder = await mkdtemp(join(tmpdir(), "pm-roundtrip-"));
    engine = createEngine({ sql: db.sql, catalog: fastCatalog() });
    await engine.dispatcher.start();
    storage = createLocalStorage(folder);
    const handlers = createHandlers({
      sql: db.sql,
      clock: engine.clock,
      exports: { storage, queue: engine.queue },
      imports: { storage, queue: engine.queue, logger: silentLogger },
    });
    pool = new WorkerPool({
      name: "import",
      handlers: handlers.filter((h) => h.type === "export.data" || h.type === "import.contacts"),
      concurrency: 2,
      queue: engine.queue,
      stats: engine.stats,
      workerId: "roundtrip",
      idleWaitMs: 100,
    });
    pool.start();
  });
  afterAll(async () => {
    await pool.stop();
    await engine.dispatcher.close();
    await db.drop();
    await rm(folder, { recursive: true, force: true });
  });

  const finished = async (id: string) =>
    waitFor(async () => {
      const job = await engine.queue.get(id, null);
      if (job.state === "failed") throw new Error(`job ${id} failed: ${job.lastError?.message}`);
      return job.state === "completed" ? job : null;
    });

  it("gives back the same contacts (names with commas, quotes, newlines and non-ASCII included), in the same tenant and in another", async () => {
    await db.sql.query("insert into lists (id, tenant_id, name) values ('lst_src', 'acme', 'source'), ('lst_dst', 'acme', 'copy')");
    const names = ["Plain", "Smith, Jane", 'Quote "Q" Person', "Two\nLines", "Ünïcode ✓", null];
    await db.sql.query(
      `with c as (
         insert into contacts (tenant_id, email, name)
         select 'acme', 'rt' || g || '@example.com', ($1::text[])[1 + g % 6] from generate_series(1, 3000) g returning id)
       insert into list_members (list_id, contact_id) select 'lst_src', id from c`,
      [names],
    );
    const exp = await engine.queue.enqueue({ type: "export.data", tenantId: "acme", payload: { source: "list", list_id: "lst_src" } });
    await finished(exp.job.id);
    const [row] = await db.sql.query<{ url: string; rows: number }>("select url, rows::int from exports where id = $1", [exp.job.id]);
    expect(row!.rows).toBe(3_000);

    // The same database and tenant: the import updates the existing contacts and adds them to the copy.
    const imp = await engine.queue.enqueue({
      type: "import.contacts",
      tenantId: "acme",
      payload: { file_url: row!.url, mapping: { email: "email", name: "name" }, list_id: "lst_dst" },
    });
    await finished(imp.job.id);
    const [counts] = await db.sql.query<{ rows_read: number; created: number; updated: number; invalid: number }>(
      "select rows_read::int, created::int, updated::int, invalid::int from imports where id = $1",
      [imp.job.id],
    );
    expect(counts).toEqual({ rows_read: 3_000, created: 0, updated: 3_000, invalid: 0 });
    const diff = await db.sql.query(
      `(select c.email, c.name from list_members m join contacts c on c.id = m.contact_id where m.list_id = 'lst_src'
        except
        select c.email, c.name from list_members m join contacts c on c.id = m.contact_id where m.list_id = 'lst_dst')
       union all
       (select c.email, c.name from list_members m join contacts c on c.id = m.contact_id where m.list_id = 'lst_dst'
        except
        select c.email, c.name from list_members m join contacts c on c.id = m.contact_id where m.list_id = 'lst_src')`,
    );
    expect(diff).toEqual([]);
    const [dst] = await db.sql.query<{ contact_count: number }>("select contact_count from lists where id = 'lst_dst'");
    expect(dst!.contact_count).toBe(3_000);

    // Another tenant cannot name acme's export file, even through POST /v1/jobs: the import fails, nothing changes.
    await db.sql.query("insert into lists (id, tenant_id, name) values ('lst_beta', 'beta', 'copy')");
    const stolen = await engine.queue.enqueue({
      type: "import.contacts",
      tenantId: "beta",
      payload: { file_url: row!.url, mapping: { email: "email", name: "name" }, list_id: "lst_beta" },
    });
    const refused = await waitFor(async () => {
      const job = await engine.queue.get(stolen.job.id, null);
      return job.state === "failed" ? job : null;
    });
    expect(refused!.lastError?.message).toContain("belongs to another tenant");
    expect(await db.sql.query("select 1 from contacts where tenant_id = 'beta'")).toEqual([]);

    // The file downloaded and uploaded again by beta, where none of them exist yet: 3,000 new contacts, the same people.
    const copy = await storage.write("beta/imports/copy.csv", await storage.read(row!.url));
    const other = await engine.queue.enqueue({
      type: "import.contacts",
      tenantId: "beta",
      payload: { file_url: copy.url, mapping: { email: "email", name: "name" }, list_id: "lst_beta", notify_email: "owner@beta.test" },
    });
    await finished(other.job.id);
    // The owner is told, through email.send and the import-finished system template.
    const notices = await engine.queue.list({ tenantId: "beta", type: "email.send", limit: 10 });
    expect(notices).toHaveLength(1);
    expect(notices[0]!.payload).toMatchObject({
      recipient: "owner@beta.test",
      template_id: "sys_import_finished",
      variables: { rows_read: 3_000, created: 3_000, invalid: 0 },
    });
    const [beta] = await db.sql.query<{ created: number }>("select created::int from imports where id = $1", [other.job.id]);
    expect(beta!.created).toBe(3_000);
    const crossDiff = await db.sql.query(
      `(select email, coalesce(name, '') from contacts where tenant_id = 'acme' except select email, coalesce(name, '') from contacts where tenant_id = 'beta')
       union all
       (select email, coalesce(name, '') from contacts where tenant_id = 'beta' except select email, coalesce(name, '') from contacts where tenant_id = 'acme')`,
    );
    expect(crossDiff).toEqual([]);
  });

  it("takes an upload over HTTP and serves its error report to its own tenant only", async () => {
    const apiKeys = new ApiKeys(db.sql, { pepper: "roundtrip-pepper-0123" });
    const acme = (await apiKeys.create({ tenantId: "acme", admin: false, name: "acme" })).key;
    const beta = (await apiKeys.create({ tenantId: "beta", admin: false, name: "beta" })).key;
    const app = createApp({ queue: engine.queue, sql: db.sql, apiKeys, exports: { storage, links: new ExportLinks("roundtrip-secret-0123", "http://t") } });
    const csv = "email;name\r\nnew1@example.com;One\r\nnot-an-address;Two\r\nnew1@example.com;Again\r\n";
    const mapping = encodeURIComponent(JSON.stringify({ email: "email", name: "name" }));
    const res = await app.request(`/v1/imports?mapping=${mapping}`, {
      method: "POST",
      headers: { authorization: `Bearer ${acme}`, "content-type": "text/csv" },
      body: csv,
    });
    expect(res.status).toBe(202);
    const { id } = (await res.json()) as { id: string };
    await finished(id);
    const status = (await (await app.request(`/v1/imports/${id}`, { headers: { authorization: `Bearer ${acme}` } })).json()) as Record<string, unknown>;
    expect(status).toMatchObject({ status: "completed", rows_read: 3, created: 1, invalid: 1, duplicate: 1, report_url: `/v1/imports/${id}/report` });
    const report = await app.request(`/v1/imports/${id}/report`, { headers: { authorization: `Bearer ${acme}` } });
    expect((await report.text()).split(/\r?\n/).filter(Boolean)).toEqual([
      "row,reason,email",
      "3,invalid email,not-an-address",
      "4,duplicate email in file,new1@example.com",
    ]);
    // The job goes first (its retention is 24 hours); the import's row still answers.
    await db.sql.query("delete from jobs where id = $1", [id]);
    expect(await (await app.request(`/v1/imports/${id}`, { headers: { authorization: `Bearer ${acme}` } })).json()).toMatchObject({ status: "completed", job_state: null, created: 1 });
    expect((await app.request(`/v1/imports/${id}`, { headers: { authorization: `Bearer ${beta}` } })).status).toBe(404);
    expect((await app.request(`/v1/imports/${id}/report`, { headers: { authorization: `Bearer ${beta}` } })).status).toBe(404);
    // An upload over the limit is refused with 413 and leaves no file behind (nor does a refused list).
    const small = createApp({ queue: engine.queue, sql: db.sql, apiKeys, uploadLimitBytes: 4_096, exports: { storage, links: new ExportLinks("roundtrip-secret-0123", "http://t") } });
    const uploadsBefore = (await readdir(join(folder, "acme", "imports"))).length;
    const tooBig = await small.request(`/v1/imports?mapping=${mapping}`, {
      method: "POST",
      headers: { authorization: `Bearer ${acme}`, "content-type": "text/csv" },
      body: new Blob(["email\n", "x@example.com\n".repeat(1_000)]).stream(),
      duplex: "half",
    } as RequestInit);
    expect(tooBig.status).toBe(413);
    expect(tooBig.headers.get("content-type")).toContain("application/problem+json");
    const noList = await small.request(`/v1/imports?mapping=${mapping}&list_id=lst_nope`, {
      method: "POST",
      headers: { authorization: `Bearer ${acme}`, "content-type": "text/csv" },
      body: "email\nx@example.com\n",
    });
    expect(noList.status).toBe(404);
    expect((await readdir(join(folder, "acme", "imports"))).length).toBe(uploadsBefore);

    // Another tenant's uploaded file cannot be named as a file_url.
    const stolen = await app.request("/v1/imports", {
      method: "POST",
      headers: { authorization: `Bearer ${beta}`, "content-type": "application/json" },
      body: JSON.stringify({ file_url: `file://${folder}/acme/imports/x.csv`, mapping: { email: "email" } }),
    });
    expect(stolen.status).toBe(422);

    // Past the imports' retention, cleanup deletes the rows, the uploads and the reports, but
    // not files it did not store for the import (acme's export, imported back in the first test).
    const [kept] = await db.sql.query<{ file_url: string }>("select file_url from imports where file_url like '%/exports/%' limit 1");
    const [mine] = await db.sql.query<{ file_url: string; report_url: string }>("select file_url, report_url from imports where id = $1", [id]);
    const cleanup = maintenanceCleanupHandler({ sql: db.sql, clock: engine.clock, storage, retention: { importsMs: 0 } });
    const result = (await cleanup.run!({ tenant_id: "system" } as never, {} as never, { signal: new AbortController().signal, logger: silentLogger, progress: () => {} })) as {
      imports_deleted: number;
    };
    expect(result.imports_deleted).toBeGreaterThanOrEqual(3);
    expect(await db.sql.query("select id from imports where status <> 'running'")).toEqual([]);
    await expect(storage.read(mine!.file_url)).rejects.toThrow(/no file/);
    await expect(storage.read(mine!.report_url)).rejects.toThrow(/no file/);
    expect(await new Response(await storage.read(kept!.file_url)).text()).toContain("email");
    expect((await app.request(`/v1/imports/${id}`, { headers: { authorization: `Bearer ${acme}` } })).status).toBe(404);
  });
});

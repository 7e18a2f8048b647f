/**
 * Tenant boundaries held by the schema (issue 10, item 1). Tenant A names tenant B's rows in
 * every payload field that names a row, through the real API and the production handlers on
 * both dispatch drivers: each job fails for good on its first attempt and nothing of B's moves
 * (ledger, counters, status, members, files, deliveries). Below the API, the database itself
 * refuses every cross-tenant reference, whatever a statement tries.
 */
import { mkdir, mkdtemp, readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ApiKeys } from "../shared/api/api-keys";
import { createApp } from "../shared/api/app";
import { createOutboxMailer } from "../shared/email/providers/outbox";
import { createEmailServices } from "../shared/email/services";
import { ExportLinks } from "../shared/exports/links";
import { silentLogger, type Sql } from "../shared/ports";
import { parseAllowList } from "../shared/webhooks/ssrf";
import { sqlState } from "../shared/sql-errors";
import { createHandlers } from "../workers/handlers";
import { nodeDnsResolver } from "../workers/node/dns-resolver";
import { createLocalStorage } from "../workers/node/local-storage";
import { jsonApi } from "./support/api";
import { createHarness, DRIVERS, type Harness } from "./support/engine";
import { createTestDatabase, randomId, waitFor } from "./support/services";
import { startReceiver, type WebhookReceiver } from "./support/webhook-receiver";

const PEPPER = "tenant-references-pepper-0123";

describe.each(DRIVERS)("another tenant's ids in job payloads (%s driver)", (driver) => {
  let h: Harness;
  let folder: string;
  let receiver: WebhookReceiver;
  let app: ReturnType<typeof createApp>;
  let a: ReturnType<typeof jsonApi>;
  let b: ReturnType<typeof jsonApi>;
  /** B's rows, which A names. */
  const B: Record<string, string> = {};
  /** A's own template, so that only the field under test is foreign. */
  let templateA: string;

  beforeAll(async () => {
    h = await createHarness(driver, "tenant_refs");
    folder = await mkdtemp(join(tmpdir(), "pm-tenant-refs-"));
    receiver = await startReceiver();
    const storage = createLocalStorage(folder);
    const mail = createEmailServices({
      sql: h.sql,
      redisPrefix: `${h.prefix}mail:`,
      clock: h.engine.clock,
      mailers: [createOutboxMailer(h.sql)],
      defaultFrom: "Jobs <no-reply@jobs.test>",
      publicUrl: "http://jobs.test",
      unsubscribeSecret: PEPPER,
    });
    const allow = parseAllowList(["127.0.0.1/32"]);
    const handlers = createHandlers({
      sql: h.sql,
      clock: h.engine.clock,
      email: { queue: h.engine.queue, logger: silentLogger, send: mail.send },
      webhooks: { resolver: nodeDnsResolver, allow, queue: h.engine.queue },
      exports: { storage, queue: h.engine.queue },
      imports: { storage, queue: h.engine.queue, logger: silentLogger },
    });
    h.pool(handlers, { concurrency: 10 }).start();
    h.scheduler().start(25);
    const apiKeys = new ApiKeys(h.sql, { pepper: PEPPER });
    const keyA = (await apiKeys.create({ tenantId: "ta", admin: false, name: "a" })).key;
    const keyB = (await apiKeys.create({ tenantId: "tb", admin: false, name: "b" })).key;
    app = createApp({
      queue: h.engine.queue,
      sql: h.sql,
      apiKeys,
      unsubscribe: mail.unsubscribe,
      webhookGuard: { resolver: nodeDnsResolver, allow },
      exports: { storage, links: new ExportLinks(PEPPER, "http://jobs.test") },
    });
    const request = (p: string, init: RequestInit) => app.request(p, init);
    a = jsonApi(request, keyA);
    b = jsonApi(request, keyB);

    // B: two contacts in a list, a segment of it, a template and a campaign not yet started.
    const list = await b.ok("POST", "/v1/lists", { name: "B's list" });
    const added = await b.ok("POST", "/v1/contacts", { list_id: list.id, contacts: [{ email: "x@b.test" }, { email: "y@b.test" }] });
    const segment = await b.ok("POST", "/v1/segments", { name: "B's segment", list_id: list.id, filters: [] });
    const template = await b.ok("POST", "/v1/templates", { name: "B", subject: "From B", blocks: [{ type: "text", text: "B's news" }] });
    const campaign = await b.ok("POST", "/v1/campaigns", { name: "B's campaign", template_id: template.id, list_id: list.id });
    const endpoint = await b.ok("POST", "/v1/webhooks/endpoints", { url: `${receiver.url}/b-hook`, event_types: ["import.finished"] });
    Object.assign(B, { list: list.id, segment: segment.id, template: template.id, campaign: campaign.id, endpoint: endpoint.id, contact: added.contacts[0].id });
    templateA = (await a.ok("POST", "/v1/templates", { name: "A", subject: "From A", blocks: [{ type: "text", text: "A's mail" }] })).id;
  });

  afterAll(async () => {
    await h?.close();
    await receiver?.close();
    if (folder) await rm(folder, { recursive: true, force: true });
  });

  /** Everything of B's that a foreign job could move. */
  const snapshotB = async () => ({
    campaign: (await h.sql.query("select status, recipients, sent, skipped, failed, fanout_cursor::text from campaigns where tenant_id = 'tb'"))[0],
    list: (await h.sql.query("select contact_count from lists where tenant_id = 'tb'"))[0],
    members: (await h.sql.query("select count(*)::int as n from list_members m join lists l on l.id = m.list_id where l.tenant_id = 'tb'"))[0],
    contacts: await h.sql.query("select email, name, attributes, status from contacts where tenant_id = 'tb' order by id"),
    sends: (await h.sql.query("select count(*)::int as n from email_sends where campaign_id = $1 or tenant_id = 'tb'", [B.campaign]))[0],
    events: (await h.sql.query("select count(*)::int as n from email_events where campaign_id = $1 or tenant_id = 'tb'", [B.campaign]))[0],
    deliveries: (await h.sql.query("select count(*)::int as n from webhook_deliveries where endpoint_id = $1", [B.endpoint]))[0],
    outbox: (await h.sql.query("select count(*)::int as n from outbox_messages where to_address like '%@b.test'"))[0],
  });

  /** Enqueues as A and waits for the job to end; answers the job as the API shows it. */
  async function runAsA(type: string, payload: Record<string, unknown>) {
    const { id } = await a.ok("POST", "/v1/jobs", { type, payload });
    return waitFor(async () => {
      const job = await a.ok("GET", `/v1/jobs/${id}`);
      return ["completed", "failed", "cancelled"].includes(job.state) ? job : null;
    }, { what: `${type} job ${id} to end` });
  }

  const expectFailedForGood = (job: { state: string; attempt: number; last_error: { retryable?: boolean } | null }) => {
    expect(job.state).toBe("failed");
    expect(job.attempt).toBe(1);
    expect(job.last_error?.retryable).toBe(false);
  };

  it("email.send naming B's campaign fails for good and takes none of B's ledger slots; B's campaign then reaches every contact once", async () => {
    const before = await snapshotB();
    const job = await runAsA("email.send", { recipient: "x@b.test", template_id: templateA, campaign_id: B.campaign });
    expectFailedForGood(job);
    expect(await snapshotB()).toEqual(before);
    expect(await h.sql.query("select 1 from email_sends where tenant_id = 'ta' and campaign_id is not null")).toHaveLength(0);

    await b.ok("POST", `/v1/campaigns/${B.campaign}/start`);
    const sent = await waitFor(async () => {
      const c = await b.ok("GET", `/v1/campaigns/${B.campaign}`);
      return c.status === "sent" ? c : null;
    }, { what: "B's campaign to be sent" });
    expect(sent.counters).toEqual({ recipients: 2, sent: 2, skipped: 0, failed: 0 });
    const mail = await h.sql.query<{ to_address: string; tenant_id: string }>(
      "select to_address, tenant_id from outbox_messages where to_address like '%@b.test' order by to_address",
    );
    expect(mail).toEqual([{ to_address: "x@b.test", tenant_id: "tb" }, { to_address: "y@b.test", tenant_id: "tb" }]);
  });

  it("email.send naming B's template fails for good and sends nothing", async () => {
    const before = await snapshotB();
    const job = await runAsA("email.send", { recipient: "someone@a.test", template_id: B.template });
    expectFailedForGood(job);
    expect(await h.sql.query("select 1 from outbox_messages where to_address = 'someone@a.test'")).toHaveLength(0);
    expect(await snapshotB()).toEqual(before);
  });

  it("email.send carrying B's contact id in its variables does not link A's send to B's contact", async () => {
    const job = await runAsA("email.send", { recipient: "me@a.test", template_id: templateA, variables: { contact_id: Number(B.contact) } });
    expect(job.state).toBe("completed");
    const [row] = await h.sql.query<{ contact_id: string | null }>("select contact_id::text from email_sends where job_id = $1", [job.id]);
    expect(row).toEqual({ contact_id: null });
  });

  it("campaign.process naming B's campaign fails for good and leaves it as it was", async () => {
    const before = await snapshotB();
    expectFailedForGood(await runAsA("campaign.process", { campaign_id: B.campaign }));
    expect(await snapshotB()).toEqual(before);
  });

  it("import.contacts into B's list fails for good: no member, no count, no contact of B's changes", async () => {
    await mkdir(join(folder, "ta"), { recursive: true });
    const file = join(folder, "ta", `into-b-${randomId(3)}.csv`);
    await writeFile(file, "email,name\nx@b.test,Hijacked\nnew@b.test,New\n");
    const before = await snapshotB();
    const job = await runAsA("import.contacts", { file_url: pathToFileURL(file).toString(), mapping: { email: "email", name: "name" }, list_id: B.list });
    expectFailedForGood(job);
    expect(await snapshotB()).toEqual(before);
  });

  it.each(["list", "segment", "campaign"])("export.data of B's %s fails for good and writes no file", async (source) => {
    const filesBefore = await listFiles(folder);
    const before = await snapshotB();
    const job = await runAsA("export.data", { source, [`${source}_id`]: B[source] });
    expectFailedForGood(job);
    expect(await h.sql.query("select 1 from exports where tenant_id = 'ta' and source_id = $1 and status <> 'failed'", [B[source]])).toHaveLength(0);
    expect(await listFiles(folder)).toEqual(filesBefore);
    expect(await snapshotB()).toEqual(before);
  });

  it("the platform's own notices (sys_export_ready, sys_import_finished, …) cannot be sent by a tenant; nothing is stored", async () => {
    const jobsBefore = (await h.sql.query("select count(*)::int as n from jobs"))[0];
    for (const template_id of ["sys_export_ready", "sys_import_finished", "sys_webhook_disabled", "sys_not_yet_written"]) {
      const payload = { recipient: "victim@a.test", template_id, variables: { download_url: "https://evil.test/x" } };
      const one = await a.call("POST", "/v1/jobs", { type: "email.send", payload });
      expect(one.status, template_id).toBe(422);
      expect(one.json.errors).toEqual([expect.objectContaining({ path: "payload.template_id" })]);
      const batch = await a.call("POST", "/v1/jobs/batch", { jobs: [{ type: "email.send", payload: { recipient: "ok@a.test", template_id: templateA } }, { type: "email.send", payload }] });
      expect(batch.status).toBe(422);
      expect(batch.json.errors).toEqual([expect.objectContaining({ path: "jobs.1.payload.template_id" })]);
    }
    expect((await h.sql.query("select count(*)::int as n from jobs"))[0]).toEqual(jobsBefore);
    // The generic template stays the tenants' to use.
    const generic = await a.call("POST", "/v1/jobs", { type: "email.send", payload: { recipient: "me@a.test", template_id: "sys_transactional", variables: { title: "Hi", body: "Hello" } } });
    expect(generic.status).toBe(201);
  });

  it("webhook.dispatch to B's endpoint fails for good: nothing is sent to it or logged against it", async () => {
    const before = await snapshotB();
    const job = await runAsA("webhook.dispatch", {
      endpoint_id: B.endpoint,
      event_id: `evt_${randomId()}`,
      event_type: "import.finished",
      data: { forged: true },
    });
    expectFailedForGood(job);
    expect(receiver.on("/b-hook")).toHaveLength(0);
    expect(await snapshotB()).toEqual(before);
  });
});

async function listFiles(dir: string): Promise<string[]> {
  return (await readdir(dir, { recursive: true })).map(String).sort();
}

describe("the database refuses cross-tenant references", () => {
  let db: Awaited<ReturnType<typeof createTestDatabase>>;
  let sql: Sql;
  let contactA: string;
  let contactB: string;
  let sendB: string;

  beforeAll(async () => {
    db = await createTestDatabase("tenant_refs_schema");
    sql = db.sql;
    for (const t of ["a", "b"]) {
      await sql.query(`insert into lists (id, tenant_id, name) values ('lst_${t}', '${t}', 'l')`);
      await sql.query(`insert into templates (id, tenant_id, name, subject, blocks) values ('tpl_${t}', '${t}', 't', 's', '[]')`);
      await sql.query(`insert into segments (id, tenant_id, name, list_id) values ('seg_${t}', '${t}', 's', 'lst_${t}')`);
      await sql.query(`insert into campaigns (id, tenant_id, name, template_id, list_id) values ('cmp_${t}', '${t}', 'c', 'tpl_${t}', 'lst_${t}')`);
      await sql.query(`insert into webhook_endpoints (id, tenant_id, url, secret) values ('whe_${t}', '${t}', 'https://h.test', 'whsec_x')`);
    }
    const id = async (statement: string) => (await sql.query<{ id: string }>(statement))[0]!.id;
    contactA = await id("insert into contacts (tenant_id, email) values ('a', 'p@a.test') returning id::text");
    contactB = await id("insert into contacts (tenant_id, email) values ('b', 'q@b.test') returning id::text");
    sendB = await id("insert into email_sends (tenant_id, idempotency_key, recipient, status) values ('b', 'job:1', 'q@b.test', 'sent') returning id::text");
  });
  afterAll(async () => db?.drop());

  const refused = async (statement: string, params: unknown[] = []) => {
    const err = await sql.query(statement, params).then(() => null, (e: unknown) => e);
    expect(err, statement).not.toBeNull();
    expect(sqlState(err), String(err)).toBe("23503");
  };

  it("a campaign of A's with B's template, list or segment", async () => {
    await refused("insert into campaigns (id, tenant_id, name, template_id, list_id) values ('c1', 'a', 'c', 'tpl_b', 'lst_a')");
    await refused("insert into campaigns (id, tenant_id, name, template_id, list_id) values ('c2', 'a', 'c', 'tpl_a', 'lst_b')");
    await refused("insert into campaigns (id, tenant_id, name, template_id, segment_id) values ('c3', 'a', 'c', 'tpl_a', 'seg_b')");
    await refused("update campaigns set list_id = 'lst_b' where id = 'cmp_a'");
  });

  it("a segment of A's over B's list", async () => {
    await refused("insert into segments (id, tenant_id, name, list_id) values ('s1', 'a', 's', 'lst_b')");
  });

  it("a send of A's in B's campaign or to B's contact, and an event of A's about B's campaign or send", async () => {
    await refused("insert into email_sends (tenant_id, idempotency_key, campaign_id, recipient, status) values ('a', 'camp:cmp_b:q@b.test', 'cmp_b', 'q@b.test', 'sending')");
    await refused("insert into email_sends (tenant_id, idempotency_key, contact_id, recipient, status) values ('a', 'k1', $1, 'q@b.test', 'sending')", [contactB]);
    await refused("insert into email_events (tenant_id, campaign_id, type) values ('a', 'cmp_b', 'sent')");
    await refused("insert into email_events (tenant_id, send_id, type) values ('a', $1, 'sent')", [sendB]);
  });

  it("the same ledger key in two tenants is two messages", async () => {
    await sql.query("insert into email_sends (tenant_id, idempotency_key, recipient, status) values ('a', 'job:1', 'p@a.test', 'sending')");
    const rows = await sql.query("select tenant_id from email_sends where idempotency_key = 'job:1' order by tenant_id");
    expect(rows).toEqual([{ tenant_id: "a" }, { tenant_id: "b" }]);
  });

  it("a list member joining A's list and B's contact, alone or among valid members", async () => {
    await refused("insert into list_members (list_id, contact_id) values ('lst_a', $1)", [contactB]);
    await refused("insert into list_members (list_id, contact_id) values ('lst_a', $1), ('lst_b', $2), ('lst_b', $1)", [contactA, contactB]);
    await refused("insert into list_members (list_id, contact_id) values ('lst_a', $1), ('lst_a', $2)", [contactA, contactB]);
    await sql.query("insert into list_members (list_id, contact_id) values ('lst_a', $1), ('lst_b', $2)", [contactA, contactB]);
    await refused("update list_members set list_id = 'lst_b' where contact_id = $1", [contactA]);
  });

  it("a delivery of A's to B's endpoint; an import of A's into B's list; an export of A's of B's rows", async () => {
    await refused("insert into webhook_deliveries (endpoint_id, tenant_id, event_id, attempt, outcome) values ('whe_b', 'a', 'e', 1, 'ok')");
    await refused("insert into imports (id, tenant_id, list_id, file_url) values ('1', 'a', 'lst_b', 'file:///x')");
    for (const [source, id] of [["list", "lst_b"], ["segment", "seg_b"], ["campaign", "cmp_b"]]) {
      await refused("insert into exports (id, tenant_id, source, source_id) values (99, 'a', $1, $2)", [source, id]);
    }
    await sql.query("insert into exports (id, tenant_id, source, source_id) values (100, 'a', 'segment', 'seg_a')");
    await refused("update exports set source_id = 'seg_b' where id = 100");
  });
});

import { existsSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ApiKeys } from "../shared/api/api-keys";
import { createApp } from "../shared/api/app";
import { csvCell, csvRow } from "../shared/exports/csv";
import { ExportLinks } from "../shared/exports/links";
import { silentLogger } from "../shared/ports";
import { createEngine, type Engine } from "../shared/queue/engine";
import { WorkerPool } from "../shared/queue/worker";
import { createHandlers } from "../workers/handlers";
import { createLocalStorage } from "../workers/node/local-storage";
import { fastCatalog } from "./support/engine";
import { createTestDatabase, waitFor } from "./support/services";
import { jsonApi } from "./support/api";

const PEPPER = "export-test-pepper-0123456789";
const DAY = 24 * 3_600_000;

/** A small RFC 4180 parser (quoted fields, doubled quotes, CRLF or LF records). */
function parseCsv(text: string): string[][] {
  const records: string[][] = [];
  let field = "";
  let record: string[] = [];
  let i = 0;
  let quoted = false;
  while (i < text.length) {
    const ch = text[i]!;
    if (quoted) {
      if (ch === '"') {
        if (text[i + 1] === '"') {
          field += '"';
          i += 2;
          continue;
        }
        quoted = false;
      } else field += ch;
      i++;
      continue;
    }
    if (ch === '"' && field === "") quoted = true;
    else if (ch === ",") {
      record.push(field);
      field = "";
    } else if (ch === "\r" && text[i + 1] === "\n") {
      record.push(field);
      records.push(record);
      record = [];
      field = "";
      i++;
    } else if (ch === "\n") {
      record.push(field);
      records.push(record);
      record = [];
      field = "";
    } else field += ch;
    i++;
  }
  if (field !== "" || record.length > 0) {
    record.push(field);
    records.push(record);
  }
  return records;
}

/** Undoes the formula guard: a leading ' before = + - @ tab CR. */
const unguard = (s: string) => (/^'[=+\-@\t\r]/.test(s) ? s.slice(1) : s);

const TRICKY_NAMES = [
  '=HYPERLINK("x")',
  "+1 555 0100",
  "-2+3",
  "@SUM(A1:A2)",
  "\tTabbed",
  "\rCarriage",
  "Doe, Jane",
  'Say "hi"',
  "line one\nline two",
  "plain 'quote' and ; semicolon",
];

describe("csv cells", () => {
  it("quotes per RFC 4180 and guards formulas", () => {
    expect(csvCell("a,b")).toBe('"a,b"');
    expect(csvCell('a"b')).toBe('"a""b"');
    expect(csvCell("a\nb")).toBe('"a\nb"');
    expect(csvCell('=HYPERLINK("x")')).toBe('"\'=HYPERLINK(""x"")"');
    expect(csvCell("+1")).toBe("'+1");
    expect(csvCell("-1")).toBe("'-1");
    expect(csvCell("@x")).toBe("'@x");
    expect(csvCell("\tx")).toBe("'\tx");
    expect(csvCell("\rx")).toBe("\"'\rx\"");
    expect(csvCell(-5)).toBe("-5");
    expect(csvCell(null)).toBe("");
    expect(csvCell({ a: 1 })).toBe('"{""a"":1}"');
    expect(csvRow(["a", null, "b"])).toBe("a,,b\r\n");
  });
});

describe("links", () => {
  it("verify what they sign and nothing else", async () => {
    const links = new ExportLinks("s3cret-s3cret-s3cret", "http://x");
    const exp = new Date(Math.floor(Date.now() / 1000) * 1000 + 60_000);
    const token = await links.token({ exportId: "42", expiresAt: exp });
    expect(await links.verify(token)).toEqual({ exportId: "42", expiresAt: exp });
    expect(await new ExportLinks("other-secret-other", "http://x").verify(token)).toBeNull();
    expect(await links.verify(`${token}x`)).toBeNull();
    expect(await links.verify("garbage")).toBeNull();
  });
});

describe("export.data", () => {
  let db: Awaited<ReturnType<typeof createTestDatabase>>;
  let engine: Engine;
  let app: ReturnType<typeof createApp>;
  let key: string;
  let folder: string;
  let pool: WorkerPool;
  let nowMs = Date.now();
  const clock = { now: () => new Date(nowMs) };
  const links = new ExportLinks(PEPPER, "http://jobs.test");
  let handlers: ReturnType<typeof createHandlers>;

  beforeAll(async () => {
    db = await createTestDatabase("exports");
    folder = await mkdtemp(join(tmpdir(), "pm-exports-"));
    engine = createEngine({ sql: db.sql, catalog: fastCatalog() });
    await engine.dispatcher.start();
    const storage = createLocalStorage(folder);
    handlers = createHandlers({ sql: db.sql, clock, exports: { storage, queue: engine.queue, links, pageSize: 1_000 } });
    pool = new WorkerPool({
      name: "import",
      handlers: handlers.filter((h) => h.type === "export.data"),
      concurrency: 2,
      queue: engine.queue,
      stats: engine.stats,
      workerId: "export-test",
      idleWaitMs: 100,
    });
    pool.start();
    const apiKeys = new ApiKeys(db.sql, { pepper: PEPPER });
    key = (await apiKeys.create({ tenantId: "acme", admin: false, name: "acme" })).key;
    app = createApp({ queue: engine.queue, sql: db.sql, apiKeys, exports: { storage, links, clock } });
    await db.sql.query(
      `insert into webhook_endpoints (id, tenant_id, url, event_types, secret) values ('whe_exp', 'acme', 'https://hooks.example.com/x', '{export.ready}', 'whsec_dGVzdA==')`,
    );
  });
  afterAll(async () => {
    await pool?.stop(2_000);
    await engine?.dispatcher.close();
    await db?.drop();
    if (folder) await rm(folder, { recursive: true, force: true });
  });

  const api = (method: string, path: string, body?: unknown) => jsonApi((p, init) => app.request(p, init), key).call(method, path, body);

  async function exportAndWait(body: unknown): Promise<{ id: string; view: any }> {
    const created = await api("POST", "/v1/exports", body);
    expect(created.status).toBe(202);
    const id = created.json.id as string;
    const view = await waitFor(
      async () => {
        const v = await api("GET", `/v1/exports/${id}`);
        if (v.json.status === "failed") throw new Error(`export failed: ${v.json.error}`);
        return v.json.status === "ready" ? v.json : null;
      },
      { timeoutMs: 60_000, what: `export ${id}` },
    );
    return { id, view };
  }

  const download = (url: string) => app.request(new URL(url).pathname);

  let listId: string;
  let listExport: { id: string; view: any };

  it("exports a 10,000-contact list that parses back to exactly those contacts", async () => {
    listId = (await api("POST", "/v1/lists", { name: "everyone" })).json.id;
    await db.sql.query(
      `insert into contacts (tenant_id, email, name, attributes)
       select 'acme', 'p' || i || '@example.com', 'Person ' || i, jsonb_build_object('n', i, 'note', case when i % 7 = 0 then 'a,"b"' else 'x' end)
       from generate_series(1, 9990) i`,
    );
    await db.sql.query(
      `insert into contacts (tenant_id, email, name, attributes)
       select 'acme', 't' || n || '@example.com', name, '{}' from unnest($1::text[]) with ordinality as u(name, n)`,
      [TRICKY_NAMES],
    );
    await db.sql.query(`update contacts set status = 'unsubscribed' where email = 'p5@example.com'`);
    await db.sql.query(`insert into list_members (list_id, contact_id) select $1, id from contacts where tenant_id = 'acme'`, [listId]);
    // Not in the list, and another tenant's: neither may appear.
    await db.sql.query(`insert into contacts (tenant_id, email, name) values ('acme', 'outsider@example.com', 'Out'), ('other', 'p1@example.com', 'Other')`);

    listExport = await exportAndWait({ source: "list", list_id: listId });
    const { view } = listExport;
    expect(view.rows).toBe(10_000);
    expect(view.bytes).toBeGreaterThan(0);
    expect(view.download_url).toMatch(/^http:\/\/jobs\.test\/files\/[\w-]+\.[\w-]+$/);

    const res = await download(view.download_url);
    expect(res.status).toBe(200);
    expect(res.headers.get("content-disposition")).toBe(`attachment; filename="export-${listExport.id}.csv"`);
    expect(res.headers.get("content-type")).toMatch(/^text\/csv/);
    const text = await res.text();
    expect(Buffer.byteLength(text)).toBe(view.bytes);
    const [header, ...records] = parseCsv(text);
    expect(header).toEqual(["id", "email", "name", "status", "attributes", "created_at"]);
    expect(records).toHaveLength(10_000);

    const expected = await db.sql.query<{ id: string; email: string; name: string; status: string; attributes: Record<string, unknown> }>(
      `select c.id::text, c.email, c.name, c.status, c.attributes from list_members m join contacts c on c.id = m.contact_id
       where m.list_id = $1 order by c.id`,
      [listId],
    );
    const got = records.map(([id, email, name, status, attributes, createdAt]) => {
      expect(Number.isNaN(Date.parse(createdAt!))).toBe(false);
      return { id: id!, email: unguard(email!), name: unguard(name!), status: status!, attributes: JSON.parse(attributes!) };
    });
    expect(got).toEqual(expected);
    expect(got.find((c) => c.email === "p5@example.com")?.status).toBe("unsubscribed");
    expect(got.find((c) => c.email === "p7@example.com")?.attributes).toEqual({ n: 7, note: 'a,"b"' });

    // The guard itself, as a spreadsheet would see the raw cells.
    const nameOf = (email: string) => records.find((r) => r[1] === email)![2];
    expect(nameOf("t1@example.com")).toBe(`'=HYPERLINK("x")`);
    expect(nameOf("t2@example.com")).toBe("'+1 555 0100");
    expect(nameOf("t3@example.com")).toBe("'-2+3");
    expect(nameOf("t4@example.com")).toBe("'@SUM(A1:A2)");
    expect(nameOf("t5@example.com")).toBe("'\tTabbed");
    expect(nameOf("t6@example.com")).toBe("'\rCarriage");
    expect(nameOf("t7@example.com")).toBe("Doe, Jane");
    expect(nameOf("t8@example.com")).toBe('Say "hi"');
    expect(nameOf("t9@example.com")).toBe("line one\nline two");
    expect(text).toContain(`"'=HYPERLINK(""x"")"`);
    expect(text).toContain(`"Doe, Jane"`);
    expect(text).toContain(`"line one\nline two"`);

    // The job finished with a result, and export.ready went to the subscribed endpoint.
    const job = await engine.queue.get(listExport.id, "acme");
    expect(job.state).toBe("completed");
    expect(job.result).toMatchObject({ export_id: listExport.id, rows: 10_000 });
    const [event] = await db.sql.query<{ payload: any }>(`select payload from jobs where type = 'webhook.dispatch'`);
    expect(event?.payload).toMatchObject({ event_type: "export.ready", data: { export_id: listExport.id, rows: 10_000, source: "list" } });
    expect(event?.payload.data.download_url).toMatch(/^http:\/\/jobs\.test\/files\//);
  });

  it("exports a segment: the list's members matching its filters", async () => {
    await db.sql.query(`update contacts set attributes = attributes || '{"plan":"pro"}' where tenant_id = 'acme' and (attributes->>'n')::int % 1000 = 0`);
    const [seg] = await db.sql.query<{ id: string }>(
      `insert into segments (id, tenant_id, name, list_id, filters) values ('seg_pro', 'acme', 'pro', $1, '[{"attribute":"plan","op":"eq","value":"pro"}]') returning id`,
      [listId],
    );
    const { id, view } = await exportAndWait({ source: "segment", segment_id: seg!.id, notify_email: "owner@acme.test" });
    expect(view.rows).toBe(9);
    // The owner gets the link by email (sys_export_ready through email.send), once.
    // (The export shows ready a moment before its job has enqueued the notice.)
    await waitFor(async () => (await engine.queue.get(id, "acme")).state === "completed", { what: "the export job" });
    const notices = await engine.queue.list({ tenantId: "acme", type: "email.send", limit: 10 });
    expect(notices).toHaveLength(1);
    expect(notices[0]!.payload).toMatchObject({
      recipient: "owner@acme.test",
      template_id: "sys_export_ready",
      variables: { source: "segment", rows: 9, download_url: expect.stringMatching(/^http:\/\/jobs\.test\/files\//) },
    });
    expect(notices[0]!.idempotencyKey).toBe(`export-ready:${id}`);
    expect((await api("POST", "/v1/exports", { source: "list", list_id: listId, notify_email: "not an address" })).status).toBe(422);
    const records = parseCsv(await (await download(view.download_url)).text()).slice(1);
    expect(records.map((r) => r[1]).sort()).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9].map((k) => `p${k * 1000}@example.com`).sort());
  });

  it("exports a campaign's sends and events", async () => {
    await db.sql.query(`insert into templates (id, tenant_id, name, subject, blocks) values ('tpl_1', 'acme', 't', 's', '[]')`);
    await db.sql.query(
      `insert into campaigns (id, tenant_id, name, template_id, list_id, status) values ('camp_1', 'acme', 'c', 'tpl_1', $1, 'sent'), ('camp_other', 'acme', 'o', 'tpl_1', $1, 'sent')`,
      [listId],
    );
    const sends = await db.sql.query<{ id: string }>(
      `insert into email_sends (tenant_id, idempotency_key, campaign_id, recipient, provider, provider_message_id, status, detail, sent_at)
       values ('acme', 'k1', 'camp_1', 'p1@example.com', 'resend', 'msg_1', 'sent', null, now()),
              ('acme', 'k2', 'camp_1', 'p2@example.com', 'smtp', '<a@b>', 'failed', E'550 mailbox, "full"\\nretry later', null),
              ('acme', 'k3', 'camp_1', 'p3 at example.com', null, null, 'skipped', 'invalid address', null),
              ('acme', 'k4', 'camp_other', 'p4@example.com', 'resend', 'msg_4', 'sent', null, now())
       returning id::text`,
    );
    await db.sql.query(
      `insert into email_events (tenant_id, campaign_id, send_id, type, data) values
         ('acme', 'camp_1', $1, 'delivered', '{}'), ('acme', 'camp_1', $1, 'clicked', '{"url":"=cmd"}')`,
      [sends[0]!.id],
    );
    const { view } = await exportAndWait({ source: "campaign", campaign_id: "camp_1" });
    expect(view.rows).toBe(5);
    const [header, ...records] = parseCsv(await (await download(view.download_url)).text());
    expect(header).toEqual([
      "record",
      "id",
      "recipient",
      "status",
      "provider",
      "provider_message_id",
      "sent_at",
      "detail",
      "send_id",
      "event_type",
      "event_data",
      "created_at",
    ]);
    expect(records.map((r) => [r[0], r[2], r[3], r[4], r[5], r[7]])).toEqual([
      ["send", "p1@example.com", "sent", "resend", "msg_1", ""],
      ["send", "p2@example.com", "failed", "smtp", "<a@b>", '550 mailbox, "full"\nretry later'],
      ["send", "p3 at example.com", "skipped", "", "", "invalid address"],
      ["event", "p1@example.com", "", "", "", ""],
      ["event", "p1@example.com", "", "", "", ""],
    ]);
    expect(records[0]![6]).not.toBe("");
    expect(records.slice(3).map((r) => [r[8], r[9], JSON.parse(r[10]!)])).toEqual([
      [sends[0]!.id, "delivered", {}],
      [sends[0]!.id, "clicked", { url: "=cmd" }],
    ]);
  });

  it("is tenant-scoped and validates its input", async () => {
    expect((await api("POST", "/v1/exports", { source: "list", list_id: "lst_nope" })).status).toBe(404);
    expect((await api("POST", "/v1/exports", { source: "list", segment_id: "x" })).status).toBe(422);
    expect((await api("GET", "/v1/exports/999999")).status).toBe(404);
    expect((await api("GET", "/v1/exports/abc")).status).toBe(404);
    await db.sql.query(`insert into lists (id, tenant_id, name) values ('lst_other', 'other', 'theirs')`);
    expect((await api("POST", "/v1/exports", { source: "list", list_id: "lst_other" })).status).toBe(404);
    // No API key: the /v1 routes refuse, the file route needs only its token.
    expect((await app.request(`/v1/exports/${listExport.id}`)).status).toBe(401);
  });

  it("refuses tampered tokens", async () => {
    const token = new URL(listExport.view.download_url).pathname.split("/").pop()!;
    const [body, mac] = token.split(".") as [string, string];
    const flip = (s: string, at: number) => s.slice(0, at) + (s[at] === "A" ? "B" : "A") + s.slice(at + 1);
    expect((await app.request(`/files/${body}.${flip(mac, 3)}`)).status).toBe(404);
    expect((await app.request(`/files/${flip(body, 2)}.${mac}`)).status).toBe(404);
    // A validly signed claim for another id (forged by re-signing with a different secret) fails too.
    const forged = await new ExportLinks("not-the-secret-at-all", "http://x").token({ exportId: listExport.id, expiresAt: new Date(nowMs + DAY) });
    expect((await app.request(`/files/${forged}`)).status).toBe(404);
    expect((await app.request("/files/nonsense")).status).toBe(404);
    // A link to an id that was never exported (signed by us) is 404 too.
    const unknown = await links.token({ exportId: "987654", expiresAt: new Date(nowMs + DAY) });
    expect((await app.request(`/files/${unknown}`)).status).toBe(404);
  });

  it("answers 410 after expiry, and cleanup deletes expired exports and their files in batches", async () => {
    const before = await db.sql.query<{ id: string; url: string }>("select id::text, url from exports order by id");
    expect(before).toHaveLength(3);
    for (const e of before) expect(existsSync(fileURLToPath(e.url))).toBe(true);

    nowMs += 7 * DAY + 60_000;
    expect((await download(listExport.view.download_url)).status).toBe(410);
    const view = await api("GET", `/v1/exports/${listExport.id}`);
    expect(view.json).toMatchObject({ status: "expired", download_url: null });

    // A fresh export made now is not expired and must survive the cleanup.
    const fresh = await exportAndWait({ source: "campaign", campaign_id: "camp_1" });
    expect((await download(fresh.view.download_url)).status).toBe(200);

    const cleanup = handlers.find((h) => h.type === "maintenance.cleanup")!;
    const progress: unknown[] = [];
    const result = (await cleanup.run!({ batch_size: 2 }, {} as never, { signal: new AbortController().signal, logger: silentLogger, progress: (p) => progress.push(p) })) as {
      exports_deleted: number;
    };
    expect(result.exports_deleted).toBe(3);
    expect(progress.filter((p) => (p as { exports_deleted?: number }).exports_deleted !== undefined).length).toBeGreaterThanOrEqual(2);
    for (const e of before) expect(existsSync(fileURLToPath(e.url))).toBe(false);
    const left = await db.sql.query<{ id: string; url: string }>("select id::text, url from exports");
    expect(left.map((r) => r.id)).toEqual([fresh.id]);
    expect(existsSync(fileURLToPath(left[0]!.url))).toBe(true);
    expect((await api("GET", `/v1/exports/${listExport.id}`)).status).toBe(404);
    expect((await download(listExport.view.download_url)).status).toBe(410);
  });
});

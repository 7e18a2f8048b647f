/**
 * The listings and job actions users asked for (issue 14): GET /v1/lists and /v1/campaigns
 * (newest first, cursor pages, tenant-scoped), DELETE /v1/jobs/:id, the ?wait= long-poll of
 * GET /v1/jobs/:id, an import's links an admin key can follow as given, and the README's error
 * example being what the server really answers.
 */
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ApiKeys, type CreatedApiKey } from "../shared/api/api-keys";
import { createApp } from "../shared/api/app";
import { ExportLinks } from "../shared/exports/links";
import type { Sql } from "../shared/ports";
import { createEngine } from "../shared/queue/engine";
import { createLocalStorage } from "../workers/node/local-storage";
import { createTestDatabase } from "./support/services";

let db: Awaited<ReturnType<typeof createTestDatabase>>;
let sql: Sql;
let app: ReturnType<typeof createApp>;
let admin: CreatedApiKey;
let keyA: CreatedApiKey;
let keyB: CreatedApiKey;
let folder: string;
let storage: ReturnType<typeof createLocalStorage>;

async function call(path: string, opts: { key?: string; method?: string; body?: unknown } = {}) {
  const headers: Record<string, string> = {};
  if (opts.key) headers.authorization = `Bearer ${opts.key}`;
  if (opts.body !== undefined) headers["content-type"] = "application/json";
  const res = await app.request(path, {
    method: opts.method ?? (opts.body === undefined ? "GET" : "POST"),
    headers,
    body: opts.body === undefined ? undefined : JSON.stringify(opts.body),
  });
  const text = await res.text();
  let json: any;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: res.status, text, json, headers: res.headers };
}

const mail = { type: "email.send", payload: { recipient: "ada@example.com", template_id: "welcome" } };
const setState = (id: string, state: string) =>
  sql.query(`update jobs set state = $2::job_state, finished_at = case when $2 in ('completed', 'failed', 'cancelled') then now() end where id = $1`, [id, state]);

beforeAll(async () => {
  db = await createTestDatabase("listings");
  sql = db.sql;
  folder = await mkdtemp(join(tmpdir(), "listings-"));
  storage = createLocalStorage(folder);
  const apiKeys = new ApiKeys(sql, { pepper: "listings-pepper" });
  admin = await apiKeys.create({ tenantId: null, admin: true, name: "ops" });
  keyA = await apiKeys.create({ tenantId: "tenant_a", admin: false, name: "a" });
  keyB = await apiKeys.create({ tenantId: "tenant_b", admin: false, name: "b" });
  app = createApp({ queue: createEngine({ sql }).queue, sql, apiKeys, exports: { storage, links: new ExportLinks("listings-pepper", "http://t") } });
});

afterAll(async () => {
  await db?.drop();
  if (folder) await rm(folder, { recursive: true, force: true });
});

describe("GET /v1/lists and /v1/campaigns", () => {
  it("pages a tenant's lists newest first, the other tenant's never shown", async () => {
    const made: string[] = [];
    for (let i = 0; i < 5; i++) made.push((await call("/v1/lists", { key: keyA.key, body: { name: `A${i}` } })).json.id);
    // Same created_at for two rows: the id breaks the tie, so no row is skipped or repeated.
    await sql.query("update lists set created_at = (select created_at from lists where id = $1) where id = $2", [made[3], made[4]]);
    await call("/v1/lists", { key: keyB.key, body: { name: "B" } });
    const seen: string[] = [];
    let cursor: string | null = null;
    let pages = 0;
    do {
      const res = await call(`/v1/lists?limit=2${cursor ? `&cursor=${cursor}` : ""}`, { key: keyA.key });
      expect(res.status, res.text).toBe(200);
      seen.push(...res.json.lists.map((l: { id: string }) => l.id));
      cursor = res.json.next_cursor;
      pages++;
    } while (cursor);
    expect(pages).toBe(3);
    const order = await sql.query<{ id: string }>("select id from lists where tenant_id = 'tenant_a' order by created_at desc, id desc");
    expect(seen).toEqual(order.map((r) => r.id));
    expect(new Set(seen)).toEqual(new Set(made));
    expect(seen.at(-1)).toBe(made[0]);

    const asAdmin = await call("/v1/lists?tenant_id=tenant_b", { key: admin.key });
    expect(asAdmin.json.lists.map((l: { name: string }) => l.name)).toEqual(["B"]);
    expect((await call("/v1/lists", { key: admin.key })).status).toBe(422);
    expect((await call("/v1/lists?tenant_id=tenant_b", { key: keyA.key })).json.lists.map((l: { name: string }) => l.name)).not.toContain("B");
    expect((await call("/v1/lists?limt=2", { key: keyA.key })).json.errors).toEqual([{ path: "limt", message: "unknown field" }]);
    expect((await call("/v1/lists?limit=101", { key: keyA.key })).status).toBe(422);
    expect((await call("/v1/lists?cursor=YXQ6MjAyNi0xMy0wMVQwMDowMDowMC4wMDAwMDBafGxzdF94", { key: keyA.key })).json.errors[0].path).toBe("cursor");
  });

  it("lists campaigns newest first, filtered by status", async () => {
    const list = (await call("/v1/lists", { key: keyA.key, body: { name: "C" } })).json.id;
    const tpl = (await call("/v1/templates", { key: keyA.key, body: { name: "T", subject: "S", blocks: [{ type: "text", text: "x" }] } })).json.id;
    const ids: string[] = [];
    for (const name of ["one", "two", "three"]) ids.push((await call("/v1/campaigns", { key: keyA.key, body: { name, template_id: tpl, list_id: list } })).json.id);
    await call(`/v1/campaigns/${ids[1]}/start`, { key: keyA.key, body: { at: "2099-01-01T00:00:00Z" } });
    const all = await call("/v1/campaigns", { key: keyA.key });
    expect(all.json.campaigns.map((c: { name: string }) => c.name)).toEqual(["three", "two", "one"]);
    expect(all.json.next_cursor).toBeNull();
    expect(all.json.campaigns[0]).toMatchObject({ status: "draft", counters: { recipients: 0 } });
    const scheduled = await call("/v1/campaigns?status=scheduled", { key: keyA.key });
    expect(scheduled.json.campaigns.map((c: { id: string }) => c.id)).toEqual([ids[1]]);
    expect((await call("/v1/campaigns", { key: keyB.key })).json.campaigns).toEqual([]);
    expect((await call("/v1/campaigns?status=lost", { key: keyA.key })).status).toBe(422);
  });

  it("resumes a campaign paused before its scheduled time as scheduled, not as sending", async () => {
    const list = (await call("/v1/lists", { key: keyA.key, body: { name: "Later" } })).json.id;
    const tpl = (await call("/v1/templates", { key: keyA.key, body: { name: "T", subject: "S", blocks: [{ type: "text", text: "x" }] } })).json.id;
    const later = (await call("/v1/campaigns", { key: keyA.key, body: { name: "later", template_id: tpl, list_id: list } })).json.id;
    expect((await call(`/v1/campaigns/${later}/start`, { key: keyA.key, body: { at: "2099-01-01T00:00:00Z" } })).json.status).toBe("scheduled");
    expect((await call(`/v1/campaigns/${later}/pause`, { key: keyA.key, method: "POST" })).json.status).toBe("paused");
    const resumed = await call(`/v1/campaigns/${later}/resume`, { key: keyA.key, method: "POST" });
    expect([resumed.status, resumed.json.status, resumed.json.scheduled_at]).toEqual([200, "scheduled", "2099-01-01T00:00:00.000Z"]);
    // One whose time has come resumes sending.
    const now = (await call("/v1/campaigns", { key: keyA.key, body: { name: "now", template_id: tpl, list_id: list } })).json.id;
    const started = (await call(`/v1/campaigns/${now}/start`, { key: keyA.key, method: "POST" })).json;
    expect([started.status, typeof started.started_at]).toEqual(["sending", "string"]);
    await call(`/v1/campaigns/${now}/pause`, { key: keyA.key, method: "POST" });
    expect((await call(`/v1/campaigns/${now}/resume`, { key: keyA.key, method: "POST" })).json.status).toBe("sending");
  });
});

describe("DELETE /v1/jobs/:id", () => {
  it("removes a finished job; a waiting or running one is a 409 saying to cancel it; another tenant's is a 404", async () => {
    for (const state of ["completed", "failed", "cancelled"]) {
      const { id } = (await call("/v1/jobs", { key: keyA.key, body: mail })).json;
      await setState(id, state);
      expect((await call(`/v1/jobs/${id}`, { key: keyB.key, method: "DELETE" })).status).toBe(404);
      const res = await call(`/v1/jobs/${id}`, { key: keyA.key, method: "DELETE" });
      expect([state, res.status, res.text]).toEqual([state, 204, ""]);
      expect((await call(`/v1/jobs/${id}`, { key: keyA.key })).status).toBe(404);
      expect((await call(`/v1/jobs/${id}`, { key: keyA.key, method: "DELETE" })).status).toBe(404);
    }
    for (const state of ["queued", "active", "scheduled"]) {
      const { id } = (await call("/v1/jobs", { key: keyA.key, body: mail })).json;
      await setState(id, state);
      const res = await call(`/v1/jobs/${id}`, { key: keyA.key, method: "DELETE" });
      expect(res.status).toBe(409);
      expect(res.json.detail).toContain(`cancel it first (POST /v1/jobs/${id}/cancel)`);
      expect((await call(`/v1/jobs/${id}`, { key: keyA.key })).json.state).toBe(state);
    }
    const { id } = (await call("/v1/jobs", { key: keyB.key, body: mail })).json;
    await setState(id, "completed");
    expect((await call(`/v1/jobs/${id}?tenant_id=tenant_b`, { key: admin.key, method: "DELETE" })).status).toBe(204);
    expect((await call("/v1/jobs/99999999999", { key: keyA.key, method: "DELETE" })).status).toBe(404);
  });
});

describe("GET /v1/jobs/:id?wait=", () => {
  it("answers as soon as the job finishes", async () => {
    const { id } = (await call("/v1/jobs", { key: keyA.key, body: mail })).json;
    const started = Date.now();
    const waiting = call(`/v1/jobs/${id}?wait=20`, { key: keyA.key });
    setTimeout(() => void setState(id, "completed"), 300);
    const res = await waiting;
    expect(res.json.state).toBe("completed");
    expect(Date.now() - started).toBeLessThan(3_000);
  });

  it("answers with the job as it is when the wait is over, and at once when it is finished already", async () => {
    const { id } = (await call("/v1/jobs", { key: keyA.key, body: mail })).json;
    const started = Date.now();
    const res = await call(`/v1/jobs/${id}?wait=1`, { key: keyA.key });
    expect(res.json.state).toBe("queued");
    expect(Date.now() - started).toBeGreaterThanOrEqual(950);
    await setState(id, "failed");
    const at = Date.now();
    expect((await call(`/v1/jobs/${id}?wait=60`, { key: keyA.key })).json.state).toBe("failed");
    expect(Date.now() - at).toBeLessThan(500);
  });

  it("holds no database connection while waiting", async () => {
    const { id } = (await call("/v1/jobs", { key: keyA.key, body: mail })).json;
    // Twenty waits at once on a pool of ten: each holds a connection only for its reads.
    const waits = Array.from({ length: 20 }, () => call(`/v1/jobs/${id}?wait=3`, { key: keyA.key }));
    await new Promise((r) => setTimeout(r, 400));
    const other = Date.now();
    expect((await call(`/v1/jobs/${id}`, { key: keyA.key })).status).toBe(200);
    expect(Date.now() - other).toBeLessThan(1_000);
    await setState(id, "completed");
    for (const res of await Promise.all(waits)) expect(res.json.state).toBe("completed");
  });

  it("refuses a wait that is not a number of seconds from 0 to 60, or another tenant's job", async () => {
    const { id } = (await call("/v1/jobs", { key: keyA.key, body: mail })).json;
    for (const wait of ["61", "-1", "1.5", "soon"]) {
      const res = await call(`/v1/jobs/${id}?wait=${wait}`, { key: keyA.key });
      expect([wait, res.status, res.json.errors[0].path]).toEqual([wait, 422, "wait"]);
    }
    expect((await call(`/v1/jobs/${id}?wait=5`, { key: keyB.key })).status).toBe(404);
  });
});

describe("an import's links", () => {
  it("carry tenant_id for an admin key, so it can follow them as given", async () => {
    const id = "4242";
    const report = await storage.write("tenant_a/imports/report-4242.csv", new Blob(["row,reason,email\n2,invalid,x\n"]).stream(), { contentType: "text/csv" });
    await sql.query("insert into imports (id, tenant_id, file_url, status, report_url) values ($1, 'tenant_a', 'file:///x.csv', 'completed', $2)", [id, report.url]);
    const asAdmin = await call(`/v1/imports/${id}?tenant_id=tenant_a`, { key: admin.key });
    expect(asAdmin.json.report_url).toBe(`/v1/imports/${id}/report?tenant_id=tenant_a`);
    const followed = await app.request(asAdmin.json.report_url, { headers: { authorization: `Bearer ${admin.key}` } });
    expect(followed.status).toBe(200);
    expect(await followed.text()).toContain("2,invalid,x");
    const asTenant = await call(`/v1/imports/${id}`, { key: keyA.key });
    expect(asTenant.json.report_url).toBe(`/v1/imports/${id}/report`);
    expect((await app.request(asTenant.json.report_url, { headers: { authorization: `Bearer ${keyA.key}` } })).status).toBe(200);
  });
});

describe("the README", () => {
  it("shows the error the server really answers to its example request", async () => {
    const readme = await readFile(new URL("../README.md", import.meta.url), "utf8");
    const section = readme.slice(readme.indexOf("## HTTP API"));
    const request = /curl -s -XPOST localhost:3000\/v1\/jobs [^\n]*-d '([^']+)'/.exec(section);
    const shown = /```json\n([\s\S]+?)\n```/.exec(section);
    expect(request, "the README's example request").not.toBeNull();
    const res = await call("/v1/jobs", { key: keyA.key, body: JSON.parse(request![1]!) });
    expect(res.status).toBe(422);
    expect(JSON.parse(shown![1]!)).toEqual(res.json);
  });
});

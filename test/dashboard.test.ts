/**
 * The operations dashboard against a real Postgres database, called in-process with
 * app.request (no server): who gets in, what it shows (checked against GET /v1/queues and the
 * ledger), and that every action needs its CSRF token and really happens.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ApiKeys, type CreatedApiKey } from "../shared/api/api-keys";
import { createApp } from "../shared/api/app";
import { SessionSigner } from "../shared/api/dashboard/session";
import type { Clock, Sql } from "../shared/ports";
import { createEngine, type Engine } from "../shared/queue/engine";
import type { JobState } from "../shared/queue/job";
import { WorkerRegistry } from "../shared/queue/registry";
import { createTestDatabase } from "./support/services";

const PEPPER = "dashboard-test-pepper-0123456789";

let db: Awaited<ReturnType<typeof createTestDatabase>>;
let sql: Sql;
let engine: Engine;
let apiKeys: ApiKeys;
let app: ReturnType<typeof createApp>;
let admin: CreatedApiKey;
let tenantKey: CreatedApiKey;
/** Ids of the seeded jobs, by what they are for. */
const ids: Record<string, string> = {};

interface Res {
  status: number;
  headers: Headers;
  text: string;
}

async function call(path: string, init: { method?: string; key?: string; cookie?: string; form?: Record<string, string> } = {}): Promise<Res> {
  const headers: Record<string, string> = {};
  if (init.key) headers.authorization = `Bearer ${init.key}`;
  if (init.cookie) headers.cookie = init.cookie;
  let body: string | undefined;
  if (init.form) {
    headers["content-type"] = "application/x-www-form-urlencoded";
    body = new URLSearchParams(init.form).toString();
  }
  const res = await app.request(path, { method: init.method ?? (body === undefined ? "GET" : "POST"), headers, body, redirect: "manual" });
  return { status: res.status, headers: res.headers, text: await res.text() };
}

/** data-count="type:counter" cells of the overview, as numbers. */
function countsOf(html: string): Map<string, number> {
  const counts = new Map<string, number>();
  for (const m of html.matchAll(/<td[^>]*data-count="([^"]+)"[^>]*>([^<]*)<\/td>/g)) counts.set(m[1]!, Number(m[2]!.replace(/,/g, "")));
  return counts;
}

const csrfOf = (html: string): string => {
  const m = /name="csrf_token" value="([^"]+)"/.exec(html);
  if (!m) throw new Error("no CSRF token in the page");
  return m[1]!;
};

const stateOf = async (id: string): Promise<JobState> =>
  ((await sql.query<{ state: JobState }>("select state::text as state from jobs where id = $1", [id]))[0]!).state;

/** Logs in through the form and returns the session cookie (name=value). */
async function login(key: string): Promise<string> {
  const res = await call("/dashboard/login", { form: { key, next: "/dashboard" } });
  expect(res.status, res.text).toBe(303);
  const setCookie = res.headers.get("set-cookie") ?? "";
  const pair = setCookie.split(";")[0]!;
  expect(pair).toMatch(/^pm_dashboard_session=v1\./);
  return pair;
}

const mail = (n: number, tenantId = "acme", extra: Record<string, unknown> = {}) => ({
  type: "email.send",
  tenantId,
  payload: { recipient: `user${n}@example.com`, template_id: "welcome", ...extra },
});

/** Jobs in every state, an outcome in job_stats, a child job and two workers (one silent). */
async function seed(): Promise<void> {
  const { queue, dispatcher, stats } = engine;
  const now = () => engine.clock.now();
  const campaign = await queue.enqueue({ type: "campaign.process", tenantId: "acme", payload: { campaign_id: "cmp_1" }, delayMs: 3_600_000 });
  ids.scheduled = campaign.job.id;
  await queue.enqueueMany([mail(1), mail(2), mail(3), mail(4, "globex", { campaign_id: "cmp_1" })]);
  const [toComplete, toFail, stayActive] = await dispatcher.take(["email.send"], 3, "worker-dash-1", 60_000);
  await queue.ledger.finishMany(
    [
      { id: toComplete!.id, attempt: toComplete!.attempt, state: "completed", result: { message_id: "m-1", access_token: "tok-should-not-show" } },
      {
        id: toFail!.id,
        attempt: toFail!.attempt,
        state: "failed",
        error: {
          name: "PermanentError",
          message: "mailbox <unavailable>",
          stack: "PermanentError: mailbox <unavailable>\n    at send (email-send.ts:42:11)",
          attempt: 1,
          retryable: false,
          at: now().toISOString(),
        },
      },
    ],
    now(),
  );
  stats.record("email.send", "completed", 120);
  stats.record("email.send", "failed", 80);
  await stats.flush();
  ids.completed = toComplete!.id;
  ids.failed = toFail!.id;
  ids.active = stayActive!.id;
  ids.queued = (await queue.enqueue(mail(5))).job.id;

  const child = await queue.enqueue({ ...mail(6), parentId: campaign.job.id, delayMs: 3_600_000 });
  ids.child = child.job.id;

  const hook = await queue.enqueue({
    type: "webhook.dispatch",
    tenantId: "acme",
    payload: {
      endpoint_id: "ep_1",
      event_id: "evt_1",
      event_type: "contact.created",
      data: { note: "<script>alert(1)</script>", api_key: "sk_live_supersecret", nested: { password: "hunter2" } },
    },
  });
  ids.webhook = hook.job.id;
  await queue.enqueue({
    type: "webhook.dispatch",
    tenantId: "globex",
    payload: { endpoint_id: "ep_2", event_id: "evt_2", event_type: "contact.created", data: {} },
  });
  await queue.pause("webhook.dispatch", "globex");

  const exports = await queue.enqueueMany([
    { type: "export.data", tenantId: "acme", payload: { source: "list", list_id: "l_1" } },
    { type: "export.data", tenantId: "acme", payload: { source: "list", list_id: "l_2" } },
  ]);
  ids.export = exports[0]!.job.id;
  await queue.pause("export.data");

  const doomed = await queue.enqueue({
    type: "import.contacts",
    tenantId: "acme",
    payload: { file_url: "https://example.com/c.csv", mapping: { col_0: "email" }, has_header: true },
  });
  await queue.cancel(doomed.job.id, null);
  ids.cancelled = doomed.job.id;

  const registry = new WorkerRegistry(sql, engine.clock);
  await registry.report({
    id: "node-live-1",
    runtime: "node",
    pools: ["email", "default"],
    concurrency: 50,
    inFlight: 1,
    memoryRss: 200 * 1024 * 1024,
    memoryRatio: 0.25,
    intakePaused: [],
    startedAt: new Date(now().getTime() - 600_000),
  });
  const past: Clock = { now: () => new Date(Date.now() - 5 * 60_000) };
  await new WorkerRegistry(sql, past).report({
    id: "node-gone-2",
    runtime: "node",
    pools: ["import"],
    concurrency: 2,
    inFlight: 0,
    intakePaused: ["import"],
    startedAt: new Date(now().getTime() - 3_600_000),
  });
}

beforeAll(async () => {
  db = await createTestDatabase("dashboard");
  sql = db.sql;
  engine = createEngine({ sql });
  apiKeys = new ApiKeys(sql, { pepper: PEPPER });
  admin = await apiKeys.create({ tenantId: null, admin: true, name: "ops" });
  tenantKey = await apiKeys.create({ tenantId: "acme", admin: false, name: "acme web" });
  app = createApp({ queue: engine.queue, sql, apiKeys, version: "test" });
  await seed();
});

afterAll(async () => {
  await db?.drop();
});

describe("access", () => {
  it("sends a browser without credentials to the login page, and answers a POST with 401", async () => {
    const overview = await call("/dashboard");
    expect(overview.status).toBe(303);
    expect(overview.headers.get("location")).toBe("/dashboard/login");
    const job = await call(`/dashboard/jobs/${ids.failed}?x=1`);
    expect(job.headers.get("location")).toBe(`/dashboard/login?next=${encodeURIComponent(`/dashboard/jobs/${ids.failed}?x=1`)}`);

    const post = await call(`/dashboard/jobs/${ids.failed}/retry`, { form: { csrf_token: "x" } });
    expect(post.status).toBe(401);
    expect(post.headers.get("content-type")).toContain("text/html");
    expect(await stateOf(ids.failed!)).toBe("failed");

    const page = await call("/dashboard/login");
    expect(page.status).toBe(200);
    expect(page.text).toContain('name="key"');
    expect(page.text).toContain('type="password"');
  });

  it("refuses tenant keys with a 403 page, as Bearer and at the login form", async () => {
    const bearer = await call("/dashboard", { key: tenantKey.key });
    expect(bearer.status).toBe(403);
    expect(bearer.headers.get("content-type")).toContain("text/html");
    expect(bearer.text).toContain("tenant key");
    expect(bearer.text).not.toContain("data-count");

    const form = await call("/dashboard/login", { form: { key: tenantKey.key } });
    expect(form.status).toBe(403);
    expect(form.headers.get("set-cookie")).toBeNull();
  });

  it("refuses an unknown key with 401, and sends no cookie", async () => {
    const bearer = await call("/dashboard", { key: "pmk_AAAAAAAAAAAA_notarealsecretnotarealsecret" });
    expect(bearer.status).toBe(401);
    const form = await call("/dashboard/login", { form: { key: "pmk_AAAAAAAAAAAA_notarealsecretnotarealsecret" } });
    expect(form.status).toBe(401);
    expect(form.text).toContain("not valid");
    expect(form.headers.get("set-cookie")).toBeNull();
  });

  it("sends the security headers on every page", async () => {
    for (const res of [await call("/dashboard", { key: admin.key }), await call("/dashboard/login"), await call("/dashboard")]) {
      const csp = res.headers.get("content-security-policy") ?? "";
      expect(csp).toContain("default-src 'none'");
      expect(csp).toContain("style-src 'unsafe-inline'");
      expect(csp).toContain("img-src 'self' data:");
      expect(csp).toContain("form-action 'self'");
      expect(csp).toContain("frame-ancestors 'none'");
      expect(csp).toMatch(/script-src 'nonce-[A-Za-z0-9+/=]+'/);
      expect(res.headers.get("x-content-type-options")).toBe("nosniff");
      expect(res.headers.get("referrer-policy")).toBe("no-referrer");
      expect(res.headers.get("cache-control")).toBe("no-store");
    }
    const page = await call("/dashboard", { key: admin.key });
    const nonce = /script-src 'nonce-([^']+)'/.exec(page.headers.get("content-security-policy")!)![1]!;
    // The only script is the inline auto-refresh, under this response's nonce; nothing loads from elsewhere.
    expect([...page.text.matchAll(/<script\b[^>]*>/g)].map((m) => m[0])).toEqual([`<script nonce="${nonce}">`]);
    expect(page.text).not.toMatch(/\s(src|href)="(https?:)?\/\//);
  });

  it("logs in with the admin key: an HttpOnly, SameSite=Strict cookie scoped to /dashboard that works", async () => {
    const res = await call("/dashboard/login", { form: { key: admin.key, next: `/dashboard/jobs/${ids.failed}` } });
    expect(res.status).toBe(303);
    expect(res.headers.get("location")).toBe(`/dashboard/jobs/${ids.failed}`);
    const cookie = res.headers.get("set-cookie")!;
    expect(cookie).toMatch(/HttpOnly/i);
    expect(cookie).toMatch(/SameSite=Strict/i);
    expect(cookie).toMatch(/Path=\/dashboard(;|$)/);
    expect(cookie).toMatch(/Max-Age=43200/);
    expect(cookie).not.toContain(admin.key.slice(17)); // the key's secret never goes into the cookie

    const session = cookie.split(";")[0]!;
    const page = await call("/dashboard", { cookie: session });
    expect(page.status).toBe(200);
    expect(page.text).toContain("Log out");

    // Logged in already: the login page sends the browser on.
    expect((await call("/dashboard/login", { cookie: session })).status).toBe(303);
  });

  it("rejects a tampered or foreign session cookie", async () => {
    const session = await login(admin.key);
    const [name, value] = session.split("=") as [string, string];
    const parts = value.split(".");
    const tampered = [parts[0], parts[1], "static-admin", parts[3], parts[4]].join(".");
    expect((await call("/dashboard", { cookie: `${name}=${tampered}` })).status).toBe(303);
    const longer = [parts[0], parts[1], parts[2], String(Number(parts[3]) + 86_400), parts[4]].join(".");
    expect((await call("/dashboard", { cookie: `${name}=${longer}` })).status).toBe(303);

    // Signed with another secret (another deployment's pepper): not accepted here.
    const foreign = await new SessionSigner("another secret", engine.clock).issue(admin.id);
    expect((await call("/dashboard", { cookie: `${name}=${foreign.value}` })).status).toBe(303);
  });

  it("never redirects off the dashboard after login", async () => {
    for (const next of ["//evil.example/x", "https://evil.example", "/dashboard/../v1/jobs", "/v1/jobs", "/dashboardx"]) {
      const res = await call("/dashboard/login", { form: { key: admin.key, next } });
      expect(res.headers.get("location"), next).toBe("/dashboard");
    }
  });

  it("ends a session when its key is revoked, and on logout", async () => {
    const ops2 = await apiKeys.create({ tenantId: null, admin: true, name: "ops 2" });
    const session = await login(ops2.key);
    const page = await call("/dashboard", { cookie: session });
    expect(page.status).toBe(200);

    const logout = await call("/dashboard/logout", { cookie: session, form: { csrf_token: csrfOf(page.text) } });
    expect(logout.status).toBe(303);
    expect(logout.headers.get("location")).toBe("/dashboard/login");
    expect(logout.headers.get("set-cookie")).toMatch(/pm_dashboard_session=;.*Max-Age=0/);

    await apiKeys.revoke(ops2.id);
    expect((await call("/dashboard", { cookie: session })).status).toBe(303);
  });

  it("expires sessions after 12 hours", async () => {
    let now = Date.parse("2030-01-01T00:00:00Z");
    const signer = new SessionSigner("secret", { now: () => new Date(now) });
    const { value, session } = await signer.issue("AbCdEfGhIjKl");
    expect(await signer.read(value)).toEqual(session);
    now += 12 * 3_600_000 - 1_000;
    expect(await signer.read(value)).not.toBeNull();
    now += 2_000;
    expect(await signer.read(value)).toBeNull();
  });
});

describe("overview", () => {
  it("shows the same counts as GET /v1/queues, per type, with the per-priority rows adding up", async () => {
    const [page, api] = await Promise.all([
      call("/dashboard", { key: admin.key }),
      Promise.resolve(app.request("/v1/queues", { headers: { authorization: `Bearer ${admin.key}` } })).then((r) => r.json() as Promise<any>),
    ]);
    expect(page.status).toBe(200);
    expect(page.headers.get("content-type")).toContain("text/html");
    expect(page.text.startsWith("<!DOCTYPE html>")).toBe(true);
    const counts = countsOf(page.text);
    const fields = ["waiting", "paused_jobs", "scheduled", "active", "failed", "completed_last_hour", "failed_last_hour"];
    expect(api.queues.length).toBe(6);
    for (const q of api.queues) {
      for (const field of fields) expect(counts.get(`${q.type}:${field}`), `${q.type} ${field}`).toBe(q[field]);
      for (const field of fields.slice(0, 5)) {
        const byPriority = ["high", "normal", "low"].reduce((n, p) => n + (counts.get(`${q.type}:${p}:${field}`) ?? 0), 0);
        expect(byPriority, `${q.type} ${field} by priority`).toBe(q[field]);
      }
    }
    // What was seeded, so the comparison above is not 0 = 0 everywhere.
    expect(counts.get("email.send:waiting")).toBe(2);
    expect(counts.get("email.send:high:waiting")).toBe(1);
    expect(counts.get("email.send:normal:waiting")).toBe(1);
    expect(counts.get("email.send:active")).toBe(1);
    expect(counts.get("email.send:failed")).toBe(1);
    expect(counts.get("email.send:scheduled")).toBe(1);
    expect(counts.get("email.send:completed_last_hour")).toBe(1);
    expect(counts.get("email.send:failed_last_hour")).toBe(1);
    expect(counts.get("export.data:paused_jobs")).toBe(2);
    expect(counts.get("webhook.dispatch:paused_jobs")).toBe(1);
    expect(counts.get("campaign.process:scheduled")).toBe(1);
  });

  it("shows paused lanes and tenants, the chart from job_stats, workers (silent ones marked) and scaling", async () => {
    const { text } = await call("/dashboard", { key: admin.key });
    expect(text).toContain('data-lane="export.data:*"');
    expect(text).toContain('data-lane="webhook.dispatch:globex"');
    expect(text).toContain("tenant globex paused");
    expect(text).toContain('data-testid="paused-export.data"');

    expect(text).toContain('data-testid="throughput-chart"');
    expect(/data-testid="throughput-completed">(\d+)</.exec(text)?.[1]).toBe("1");
    expect(/data-testid="throughput-failed">(\d+)</.exec(text)?.[1]).toBe("1");
    expect(text.match(/<rect /g)?.length).toBe(60);

    expect(text).toMatch(/data-worker="node-live-1" data-silent="false"/);
    expect(text).toMatch(/<tr class="silent" data-worker="node-gone-2" data-silent="true"/);
    expect(text).toContain('<span class="badge b-silent">silent</span>');
    expect(text).toContain("25%");
    expect(text).toContain("200 MiB");

    for (const pool of ["email", "default", "import"]) expect(text).toContain(`data-pool="${pool}"`);
  });

  it("lists active and failed jobs by default, and filters by type, tenant and state with a cursor", async () => {
    const { text } = await call("/dashboard", { key: admin.key });
    expect(text).toContain('data-testid="jobs-active"');
    expect(text).toContain('data-testid="jobs-failed"');
    expect(text).toContain(`data-job-id="${ids.active}" data-state="active"`);
    expect(text).toContain(`data-job-id="${ids.failed}" data-state="failed"`);
    expect(text).not.toContain(`data-job-id="${ids.queued}"`);

    const idsIn = (html: string) => [...html.matchAll(/data-job-id="(\d+)"/g)].map((m) => Number(m[1]));
    const queued = await call("/dashboard?state=queued&type=email.send&tenant=acme", { key: admin.key });
    expect(queued.status).toBe(200);
    const listed = idsIn(queued.text);
    expect(listed).toContain(Number(ids.queued));
    expect(listed).toEqual([...listed].sort((a, b) => b - a));
    const fromDb = await sql.query<{ id: string }>(
      "select id::text as id from jobs where state = 'queued' and type = 'email.send' and tenant_id = 'acme' order by id desc",
    );
    expect(listed).toEqual(fromDb.map((r) => Number(r.id)));

    // 55 more waiting jobs: 50 a page, then the cursor gives the rest, nothing twice.
    await engine.queue.enqueueMany(Array.from({ length: 55 }, (_, i) => ({ ...mail(100 + i, "paging") })));
    const first = await call("/dashboard?state=queued&tenant=paging", { key: admin.key });
    const firstIds = idsIn(first.text);
    expect(firstIds.length).toBe(50);
    const href = /<a href="([^"]+)" data-testid="older-queued">/.exec(first.text)?.[1];
    expect(href).toBeTruthy();
    const second = await call(href!.replace(/&amp;/g, "&"), { key: admin.key });
    const secondIds = idsIn(second.text);
    expect(secondIds.length).toBe(5);
    expect(Math.max(...secondIds)).toBeLessThan(Math.min(...firstIds));
    expect(second.text).not.toContain('data-testid="older-queued"');
    await engine.queue.pause("email.send", "paging");

    const bad = await call("/dashboard?state=nope", { key: admin.key });
    expect(bad.status).toBe(422);
    expect(bad.headers.get("content-type")).toContain("text/html");
  });
});

describe("a job's page", () => {
  it("shows the payload escaped, with secrets redacted", async () => {
    const res = await call(`/dashboard/jobs/${ids.webhook}`, { key: admin.key });
    expect(res.status).toBe(200);
    expect(res.text).toContain("&lt;script&gt;alert(1)&lt;/script&gt;");
    expect(res.text).not.toContain("<script>alert(1)</script>");
    expect(res.text).not.toContain("sk_live_supersecret");
    expect(res.text).not.toContain("hunter2");
    expect(res.text).toMatch(/&quot;api_key&quot;: &quot;\[redacted\]&quot;/);
    expect(res.text).toContain("contact.created");
  });

  it("shows state, attempts, the last error with its stack, the timeline and the result (redacted)", async () => {
    const failed = await call(`/dashboard/jobs/${ids.failed}`, { key: admin.key });
    expect(failed.text).toContain('data-testid="job-state">failed<');
    expect(failed.text).toContain('data-testid="job-attempts">1 of 8<');
    expect(failed.text).toContain("mailbox &lt;unavailable&gt;");
    expect(failed.text).toContain("at send (email-send.ts:42:11)");
    for (const moment of ["created", "run at", "started", "finished"]) expect(failed.text).toContain(`data-moment="${moment}"`);

    const completed = await call(`/dashboard/jobs/${ids.completed}`, { key: admin.key });
    expect(completed.text).toContain("m-1");
    expect(completed.text).not.toContain("tok-should-not-show");
  });

  it("lists the job's children, and 404s for a job that does not exist", async () => {
    const parent = await call(`/dashboard/jobs/${ids.scheduled}`, { key: admin.key });
    expect(parent.text).toContain(`data-job-id="${ids.child}"`);
    const child = await call(`/dashboard/jobs/${ids.child}`, { key: admin.key });
    expect(child.text).toContain(`href="/dashboard/jobs/${ids.scheduled}"`);

    for (const id of ["999999999", "abc"]) {
      const missing = await call(`/dashboard/jobs/${id}`, { key: admin.key });
      expect(missing.status).toBe(404);
      expect(missing.headers.get("content-type")).toContain("text/html");
    }
  });
});

describe("actions", () => {
  let session: string;
  let token: string;

  beforeAll(async () => {
    session = await login(admin.key);
    token = csrfOf((await call("/dashboard", { cookie: session })).text);
  });

  const post = (path: string, form: Record<string, string>) => call(path, { cookie: session, form });

  it("refuses a POST without the CSRF token, with a wrong one, or with another session's", async () => {
    const other = await login(admin.key);
    const otherToken = csrfOf((await call("/dashboard", { cookie: other })).text);
    expect(otherToken).not.toBe(token);
    const forms: Record<string, string>[] = [{}, { csrf_token: "" }, { csrf_token: "AAAA" }, { csrf_token: otherToken }];
    for (const form of forms) {
      const res = await post(`/dashboard/jobs/${ids.failed}/retry`, form);
      expect(res.status, JSON.stringify(form)).toBe(403);
      expect(res.headers.get("content-type")).toContain("text/html");
    }
    const pause = await post("/dashboard/lanes/pause", { type: "email.send" });
    expect(pause.status).toBe(403);
    expect(await stateOf(ids.failed!)).toBe("failed");
    expect(await sql.query("select 1 from paused_lanes where type = 'email.send' and tenant_id = '*'")).toEqual([]);
  });

  it("retries a failed job", async () => {
    const res = await post(`/dashboard/jobs/${ids.failed}/retry`, { csrf_token: token, back: `/dashboard/jobs/${ids.failed}` });
    expect(res.status).toBe(303);
    expect(res.headers.get("location")).toBe(`/dashboard/jobs/${ids.failed}?notice=retried&n_job=${ids.failed}`);
    expect(await stateOf(ids.failed!)).toBe("queued");
    const page = await call(res.headers.get("location")!, { cookie: session });
    expect(page.text).toContain(`Job #${ids.failed} will run again from attempt 1.`);

    // Retrying it again is a conflict, shown as a page.
    const again = await post(`/dashboard/jobs/${ids.failed}/retry`, { csrf_token: token });
    expect(again.status).toBe(409);
  });

  it("cancels a waiting job", async () => {
    const res = await post(`/dashboard/jobs/${ids.queued}/cancel`, { csrf_token: token, back: "/dashboard?state=queued#jobs" });
    expect(res.status).toBe(303);
    expect(res.headers.get("location")).toBe(`/dashboard?state=queued&notice=cancelled&n_job=${ids.queued}#jobs`);
    expect(await stateOf(ids.queued!)).toBe("cancelled");
  });

  it("pauses and resumes a type", async () => {
    const waiting = await sql.query<{ id: string }>("select id::text as id from jobs where type = 'email.send' and state = 'queued'");
    expect(waiting.length).toBeGreaterThan(0);
    const paused = await post("/dashboard/lanes/pause", { csrf_token: token, type: "email.send", back: "/dashboard#queues" });
    expect(paused.status).toBe(303);
    expect(paused.headers.get("location")).toBe(`/dashboard?notice=paused&n_type=email.send&n_count=${waiting.length}#queues`);
    expect(await sql.query("select 1 from paused_lanes where type = 'email.send' and tenant_id = '*'")).toHaveLength(1);
    for (const { id } of waiting) expect(await stateOf(id)).toBe("paused");
    expect((await call("/dashboard", { cookie: session })).text).toContain('data-testid="paused-email.send"');

    const resumed = await post("/dashboard/lanes/resume", { csrf_token: token, type: "email.send" });
    expect(resumed.status).toBe(303);
    expect(await sql.query("select 1 from paused_lanes where type = 'email.send' and tenant_id = '*'")).toEqual([]);
    for (const { id } of waiting) expect(await stateOf(id)).toBe("queued");
  });

  it("pauses and resumes one tenant's jobs of a type", async () => {
    await engine.queue.enqueue(mail(300, "initech"));
    const res = await post("/dashboard/lanes/pause", { csrf_token: token, type: "email.send", tenant: "initech" });
    expect(res.status).toBe(303);
    expect(await sql.query("select 1 from paused_lanes where type = 'email.send' and tenant_id = 'initech'")).toHaveLength(1);
    const states = await sql.query<{ state: string }>("select state::text as state from jobs where tenant_id = 'initech'");
    expect(states.map((r) => r.state)).toEqual(["paused"]);

    await post("/dashboard/lanes/resume", { csrf_token: token, type: "email.send", tenant: "initech" });
    expect(await sql.query("select 1 from paused_lanes where tenant_id = 'initech'")).toEqual([]);
    const after = await sql.query<{ state: string }>("select state::text as state from jobs where tenant_id = 'initech'");
    expect(after.map((r) => r.state)).toEqual(["queued"]);

    const bad = await post("/dashboard/lanes/pause", { csrf_token: token, type: "email.send", tenant: "no spaces" });
    expect(bad.status).toBe(422);
    const unknown = await post("/dashboard/lanes/pause", { csrf_token: token, type: "nope" });
    expect(unknown.status).toBe(404);
  });

  it("retries every failed job of a type", async () => {
    await engine.queue.enqueue({ type: "campaign.process", tenantId: "acme", payload: { campaign_id: "cmp_2" } });
    const [job] = await engine.dispatcher.take(["campaign.process"], 1, "w", 60_000);
    await engine.queue.ledger.finishMany(
      [{ id: job!.id, attempt: job!.attempt, state: "failed", error: { message: "boom" } }],
      engine.clock.now(),
    );
    const res = await post("/dashboard/queues/campaign.process/retry-failed", { csrf_token: token });
    expect(res.status).toBe(303);
    expect(res.headers.get("location")).toBe("/dashboard?notice=retried-failed&n_type=campaign.process&n_count=1");
    expect(await stateOf(job!.id)).toBe("queued");
  });

  it("accepts a Bearer admin key with the token of its key", async () => {
    const page = await call("/dashboard", { key: admin.key });
    const bearerToken = csrfOf(page.text);
    expect(bearerToken).not.toBe(token);
    const res = await call(`/dashboard/jobs/${ids.export}/cancel`, { key: admin.key, form: { csrf_token: bearerToken } });
    expect(res.status).toBe(303);
    expect(await stateOf(ids.export!)).toBe("cancelled");
    const without = await call(`/dashboard/jobs/${ids.export}/retry`, { key: admin.key, form: {} });
    expect(without.status).toBe(403);
  });
});

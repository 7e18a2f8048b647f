/**
 * The dashboard in a real browser: Debian's headless Chromium driven by playwright-core, against
 * the app served on a real port. Logs in through the form, reads the overview, clicks the
 * buttons and checks each action in the ledger. Leaves screenshots in test-results/. Needs
 * Debian's chromium package (.ci/run installs it); playwright-core downloads no browser.
 */
import { type ServerType, serve } from "@hono/node-server";
import { existsSync, mkdirSync } from "node:fs";
import type { AddressInfo } from "node:net";
import { type Browser, type BrowserContext, chromium, type Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ApiKeys, type CreatedApiKey } from "../shared/api/api-keys";
import { createApp } from "../shared/api/app";
import type { Clock, Sql } from "../shared/ports";
import { createEngine, type Engine } from "../shared/queue/engine";
import type { JobState } from "../shared/queue/job";
import { WorkerRegistry } from "../shared/queue/registry";
import { StatsRecorder } from "../shared/queue/stats";
import { createTestDatabase, waitFor } from "./support/services";

const CHROMIUM = "/usr/bin/chromium";
const PEPPER = "dashboard-browser-test-pepper-0123";

let db: Awaited<ReturnType<typeof createTestDatabase>>;
let sql: Sql;
let engine: Engine;
let admin: CreatedApiKey;
let server: ServerType;
let base: string;
let browser: Browser;
let context: BrowserContext;
let page: Page;
/** Anything the page said went wrong: CSP violations, script errors, alert() from a payload. */
const pageProblems: string[] = [];
const ids: Record<string, string> = {};

const stateOf = async (id: string): Promise<JobState> =>
  ((await sql.query<{ state: JobState }>("select state::text as state from jobs where id = $1", [id]))[0]!).state;

const mail = (n: number, tenantId = "acme", extra: Record<string, unknown> = {}) => ({
  type: "email.send",
  tenantId,
  payload: { recipient: `user${n}@example.com`, template_id: "welcome", ...extra },
});

/** Jobs in every state, an hour of per-minute counters, and workers (one gone silent). */
async function seed(): Promise<void> {
  const { queue, dispatcher } = engine;
  const now = () => engine.clock.now();

  // An hour of throughput, as workers would have flushed it minute by minute (the oldest few
  // minutes left empty, so none slides out of the last hour while the test runs).
  const start = Date.now();
  for (let i = 56; i >= 0; i--) {
    const at: Clock = { now: () => new Date(start - i * 60_000) };
    const recorder = new StatsRecorder(sql, at);
    const wave = Math.round(40 + 30 * Math.sin(i / 6) + (i % 7) * 3);
    for (let k = 0; k < wave; k++) recorder.record(k % 3 === 0 ? "webhook.dispatch" : "email.send", "completed", 50 + k);
    for (let k = 0; k < (i % 11 === 0 ? 6 : i % 4 === 0 ? 1 : 0); k++) recorder.record("email.send", "failed", 900);
    await recorder.flush();
  }

  const campaign = await queue.enqueue({ type: "campaign.process", tenantId: "acme", payload: { campaign_id: "cmp_1" }, delayMs: 3_600_000 });
  ids.scheduled = campaign.job.id;
  await queue.enqueueMany(Array.from({ length: 8 }, (_, i) => mail(i, i % 2 ? "acme" : "globex", i % 3 ? {} : { campaign_id: "cmp_1" })));
  const taken = await dispatcher.take(["email.send"], 5, "node-7f3a:email", 60_000);
  const [done, failed, failedToo] = taken;
  const error = (message: string) => ({
    name: "SmtpError",
    message,
    stack: `SmtpError: ${message}\n    at deliver (workers/handlers/email-send.ts:88:13)\n    at async run (shared/queue/worker.ts:212:7)`,
    attempt: 1,
    retryable: false,
    at: now().toISOString(),
  });
  await queue.ledger.finishMany(
    [
      { id: done!.id, attempt: done!.attempt, state: "completed", result: { message_id: "<m-1@penguinmails>" } },
      { id: failed!.id, attempt: failed!.attempt, state: "failed", error: error("550 5.1.1 mailbox unavailable") },
      { id: failedToo!.id, attempt: failedToo!.attempt, state: "failed", error: error("554 5.7.1 relay denied") },
    ],
    now(),
  );
  ids.failed = failed!.id;
  ids.active = taken[3]!.id;
  ids.waiting = (await queue.enqueue(mail(50))).job.id;
  await queue.enqueue({ ...mail(51), parentId: campaign.job.id, delayMs: 1_800_000 });

  ids.webhook = (
    await queue.enqueue({
      type: "webhook.dispatch",
      tenantId: "acme",
      payload: {
        endpoint_id: "ep_1",
        event_id: "evt_1",
        event_type: "contact.created",
        data: { note: "<script>alert(1)</script>", signing_secret: "whsec_should_not_show" },
      },
    })
  ).job.id;
  await queue.enqueue({ type: "webhook.dispatch", tenantId: "globex", payload: { endpoint_id: "ep_2", event_id: "evt_2", event_type: "x.y", data: {} } });
  await queue.pause("webhook.dispatch", "globex");

  await queue.enqueueMany([
    { type: "export.data", tenantId: "acme", payload: { source: "list", list_id: "l_1" } },
    { type: "export.data", tenantId: "acme", payload: { source: "segment", segment_id: "s_1" } },
  ]);
  await queue.pause("export.data");
  const doomed = await queue.enqueue({
    type: "import.contacts",
    tenantId: "acme",
    payload: { file_url: "https://example.com/contacts.csv", mapping: { col_0: "email" }, has_header: true },
  });
  await queue.cancel(doomed.job.id, null);

  const registry = new WorkerRegistry(sql, engine.clock);
  const report = { runtime: "node" as const, intakePaused: [], startedAt: new Date(Date.now() - 3 * 3_600_000) };
  await registry.report({ ...report, id: "node-7f3a:email", pools: ["email"], concurrency: 50, inFlight: 2, memoryRss: 310e6, memoryRatio: 0.31 });
  await registry.report({ ...report, id: "node-7f3a:default", pools: ["default"], concurrency: 10, inFlight: 0, memoryRss: 310e6, memoryRatio: 0.31 });
  await registry.report({ ...report, id: "edge-drain-19", runtime: "edge", pools: ["email", "default"], concurrency: 20, inFlight: 0 });
  const past: Clock = { now: () => new Date(Date.now() - 4 * 60_000) };
  await new WorkerRegistry(sql, past).report({
    ...report,
    id: "node-b21c:import",
    pools: ["import"],
    concurrency: 2,
    inFlight: 2,
    memoryRss: 1.7e9,
    memoryRatio: 0.86,
    intakePaused: ["import"],
  });
}

async function apiQueues(): Promise<any[]> {
  const res = await fetch(`${base}/v1/queues`, { headers: { authorization: `Bearer ${admin.key}` } });
  return ((await res.json()) as { queues: any[] }).queues;
}

/** The overview's data-count cells, read in the browser. */
async function pageCounts(): Promise<Record<string, number>> {
  return page.$$eval("[data-count]", (cells) =>
    Object.fromEntries(cells.map((c) => [c.getAttribute("data-count")!, Number(c.textContent!.replace(/,/g, ""))])),
  );
}

describe("the dashboard in Chromium", () => {
  beforeAll(async () => {
    if (!existsSync(CHROMIUM)) throw new Error(`no Chromium at ${CHROMIUM}: apt-get install chromium (.ci/run installs it)`);
    db = await createTestDatabase("dashboard_browser");
    sql = db.sql;
    engine = createEngine({ sql });
    const apiKeys = new ApiKeys(sql, { pepper: PEPPER });
    admin = await apiKeys.create({ tenantId: null, admin: true, name: "ops" });
    await seed();
    const app = createApp({ queue: engine.queue, sql, apiKeys, version: "test" });
    await new Promise<void>((ready) => {
      server = serve({ fetch: app.fetch, hostname: "127.0.0.1", port: 0 }, () => ready());
    });
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
    });
    context = await browser.newContext({ viewport: { width: 1440, height: 900 } });
    page = await context.newPage();
    mkdirSync("test-results", { recursive: true });
    page.on("console", (m) => {
      if (m.type() === "error") pageProblems.push(`console: ${m.text()}`);
    });
    page.on("pageerror", (err) => pageProblems.push(`pageerror: ${err.message}`));
    page.on("dialog", (d) => {
      pageProblems.push(`dialog: ${d.message()}`);
      void d.dismiss();
    });
  });

  afterAll(async () => {
    await browser?.close();
    await new Promise<void>((r) => (server ? server.close(() => r()) : r()));
    await db?.drop();
  });

  it("sends a visitor to the login form, and the admin key logs in", async () => {
    await page.goto(`${base}/dashboard`);
    expect(new URL(page.url()).pathname).toBe("/dashboard/login");
    await page.screenshot({ path: "test-results/dashboard-login.png" });
    await page.fill("input[name=key]", admin.key);
    await Promise.all([page.waitForURL(`${base}/dashboard`), page.click("button[type=submit]")]);
    await expect(page.locator("h1").first().textContent()).resolves.toContain("Overview");
    const cookies = await context.cookies(`${base}/dashboard`);
    const session = cookies.find((c) => c.name === "pm_dashboard_session");
    expect(session).toMatchObject({ httpOnly: true, sameSite: "Strict", path: "/dashboard" });
    // The key itself is nowhere in the browser: not in the cookie, not in the page.
    expect(session!.value).not.toContain(admin.key);
    expect(await page.content()).not.toContain(admin.key);
  });

  it("shows the same counts as GET /v1/queues", async () => {
    await page.reload();
    const [counts, queues] = await Promise.all([pageCounts(), apiQueues()]);
    const fields = ["waiting", "paused_jobs", "scheduled", "active", "failed", "completed_last_hour", "failed_last_hour"];
    for (const q of queues) for (const field of fields) expect(counts[`${q.type}:${field}`], `${q.type} ${field}`).toBe(q[field]);
    expect(counts["email.send:active"]).toBe(2);
    expect(counts["email.send:failed"]).toBe(2);
    expect(counts["email.send:completed_last_hour"]).toBeGreaterThan(1_000);
    expect(counts["export.data:paused_jobs"]).toBe(2);
    await expect(page.locator('tr[data-worker="node-b21c:import"] .badge').first().textContent()).resolves.toBe("silent");
  });

  it("refreshes itself while open", async () => {
    const before = (await pageCounts())["email.send:waiting"]!;
    await engine.queue.enqueue(mail(99));
    await page.waitForFunction(
      (n) => Number(document.querySelector('[data-count="email.send:waiting"]')?.textContent) === n,
      before + 1,
      { timeout: 15_000 },
    );
    // Off for the rest, so a reload never lands between a look and a click.
    await page.uncheck("#live");
  });

  it("retries a failed job from the failed list", async () => {
    const row = page.locator(`[data-testid=jobs-failed] tr[data-job-id="${ids.failed}"]`);
    await row.getByRole("button", { name: "Retry" }).click();
    await page.locator(".notice", { hasText: `Job #${ids.failed} will run again` }).waitFor();
    expect(await stateOf(ids.failed!)).toBe("queued");
    expect(page.url()).not.toContain("notice="); // the one-time notice leaves the address bar
  });

  it("cancels a waiting job", async () => {
    await page.selectOption("[data-testid=job-filters] select[name=state]", "queued");
    await page.selectOption("[data-testid=job-filters] select[name=type]", "email.send");
    await Promise.all([page.waitForURL(/state=queued/), page.getByRole("button", { name: "Filter" }).click()]);
    const row = page.locator(`[data-testid=jobs-queued] tr[data-job-id="${ids.waiting}"]`);
    await row.getByRole("button", { name: "Cancel" }).click();
    await page.locator(".notice", { hasText: `Job #${ids.waiting} was cancelled` }).waitFor();
    const url = new URL(page.url());
    expect([url.searchParams.get("type"), url.searchParams.get("state")]).toEqual(["email.send", "queued"]); // back where it was
    expect(await stateOf(ids.waiting!)).toBe("cancelled");
    await expect(page.locator(`[data-testid=jobs-queued] tr[data-job-id="${ids.waiting}"]`).count()).resolves.toBe(0);
  });

  it("pauses and then resumes a type", async () => {
    await page.goto(`${base}/dashboard`);
    const lane = page.locator('tr.type-row[data-type="email.send"]');
    await lane.getByRole("button", { name: "Pause" }).click();
    await page.locator(".notice", { hasText: "email.send is paused" }).waitFor();
    await waitFor(async () => (await sql.query("select 1 from paused_lanes where type = 'email.send' and tenant_id = '*'")).length === 1);
    await page.waitForSelector('[data-testid="paused-email.send"]');
    const held = await sql.query<{ state: string }>("select state::text as state from jobs where type = 'email.send' and state in ('queued', 'paused')");
    expect(held.length).toBeGreaterThan(0);
    expect(held.every((r) => r.state === "paused")).toBe(true);

    await page.locator('tr.type-row[data-type="email.send"]').getByRole("button", { name: "Resume" }).click();
    await page.locator(".notice", { hasText: "email.send resumed" }).waitFor();
    await page.waitForSelector('[data-testid="paused-email.send"]', { state: "detached" });
    expect(await sql.query("select 1 from paused_lanes where type = 'email.send' and tenant_id = '*'")).toEqual([]);
    const back = await sql.query<{ state: string }>("select state::text as state from jobs where type = 'email.send' and state in ('queued', 'paused')");
    expect(back.every((r) => r.state === "queued")).toBe(true);
  });

  it("shows a job's payload as text, secrets redacted", async () => {
    await page.goto(`${base}/dashboard/jobs/${ids.webhook}`);
    const payload = await page.locator("[data-testid=job-payload]").textContent();
    expect(payload).toContain("<script>alert(1)</script>");
    expect(payload).toContain('"signing_secret": "[redacted]"');
    expect(await page.content()).not.toContain("whsec_should_not_show");
    await page.goto(`${base}/dashboard/jobs/${ids.failed}`);
    await page.screenshot({ path: "test-results/dashboard-job.png", fullPage: true });
  });

  it("renders the overview cleanly (screenshot in test-results/dashboard.png)", async () => {
    await page.goto(`${base}/dashboard`);
    await page.screenshot({ path: "test-results/dashboard.png", fullPage: true });
    expect(pageProblems).toEqual([]);
  });
});

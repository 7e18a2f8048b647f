/**
 * The dashboard's scaling panel at 1,400 px in Chromium: its signal column and the scale_up
 * badge were cut off (the panel shares a row with the throughput chart), and every pool row
 * showed the process's total slots (62) instead of the pool's own. Screenshot:
 * test-results/dashboard-scaling-1400.png.
 */
import { type ServerType, serve } from "@hono/node-server";
import { mkdirSync } from "node:fs";
import type { AddressInfo } from "node:net";
import { type Browser, chromium, type Page } from "playwright-core";
import { afterAll, beforeAll, expect, it } from "vitest";
import { ApiKeys } from "../shared/api/api-keys";
import { createApp } from "../shared/api/app";
import { createEngine, type Engine } from "../shared/queue/engine";
import { WorkerRegistry } from "../shared/queue/registry";
import { createTestDatabase } from "./support/services";

let db: Awaited<ReturnType<typeof createTestDatabase>>;
let engine: Engine;
let server: ServerType;
let browser: Browser;
let page: Page;
let base: string;
let adminKey: string;

beforeAll(async () => {
  db = await createTestDatabase("dashboard_scaling");
  engine = createEngine({ sql: db.sql });
  const apiKeys = new ApiKeys(db.sql, { pepper: "dashboard-scaling-test-pepper" });
  adminKey = (await apiKeys.create({ tenantId: null, admin: true, name: "ops" })).key;
  // Past the 1,000-job threshold: the email pool says scale_up, with its reason.
  for (let b = 0; b < 3; b++) {
    await engine.queue.enqueueMany(
      Array.from({ length: 400 }, (_, i) => ({ type: "email.send", tenantId: "acme", payload: { recipient: `u${b * 400 + i}@example.com`, template_id: "welcome" } })),
    );
  }
  // One Node process running all three pools, as the runtime registers itself (50 + 10 + 2 slots).
  await new WorkerRegistry(db.sql, engine.clock).report({
    id: "node-1a2b:4242",
    runtime: "node",
    pools: ["email", "default", "import"],
    concurrency: 62,
    poolConcurrency: { email: 50, default: 10, import: 2 },
    inFlight: 0,
    memoryRss: 300e6,
    memoryRatio: 0.3,
    intakePaused: [],
    startedAt: new Date(Date.now() - 3_600_000),
  });
  const app = createApp({ queue: engine.queue, sql: db.sql, apiKeys, version: "test" });
  await new Promise<void>((ready) => {
    server = serve({ fetch: app.fetch, hostname: "127.0.0.1", port: 0 }, () => ready());
  });
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  browser = await chromium.launch({ executablePath: "/usr/bin/chromium", args: ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"] });
  const context = await browser.newContext({ viewport: { width: 1400, height: 900 }, extraHTTPHeaders: { authorization: `Bearer ${adminKey}` } });
  page = await context.newPage();
  mkdirSync("test-results", { recursive: true });
});

afterAll(async () => {
  await browser?.close();
  await new Promise<void>((r) => (server ? server.close(() => r()) : r()));
  await db?.drop();
});

it("shows the whole scaling table at 1,400 px, each pool with its own slots", async () => {
  await page.goto(`${base}/dashboard`);
  const panel = page.locator("section#scaling");
  await panel.screenshot({ path: "test-results/dashboard-scaling-1400.png" });
  await page.screenshot({ path: "test-results/dashboard-1400.png" });

  // Nothing scrolls or spills: the table fits its panel.
  const fit = await panel.evaluate((section) => {
    const scroller = section.querySelector(".table-scroll")!;
    const table = section.querySelector("table")!.getBoundingClientRect();
    const box = section.getBoundingClientRect();
    return { scrollWidth: scroller.scrollWidth, clientWidth: scroller.clientWidth, tableRight: table.right, panelRight: box.right };
  });
  expect(fit.scrollWidth, JSON.stringify(fit)).toBeLessThanOrEqual(fit.clientWidth);
  expect(fit.tableRight).toBeLessThanOrEqual(fit.panelRight);

  // The scale_up badge is on screen, inside the panel.
  const badge = panel.locator('tr[data-pool="email"] .badge.b-scale_up');
  await expect(badge.textContent()).resolves.toBe("scale up");
  const [b, p] = await Promise.all([badge.boundingBox(), panel.boundingBox()]);
  expect(b!.x + b!.width).toBeLessThanOrEqual(p!.x + p!.width);
  expect(b!.x + b!.width).toBeLessThanOrEqual(1400);

  const slots = await panel.locator("tr[data-pool]").evaluateAll((rows) =>
    Object.fromEntries(rows.map((r) => [r.getAttribute("data-pool"), r.querySelector("[data-slots]")?.getAttribute("data-slots")])),
  );
  expect(slots).toEqual({ email: "50", default: "10", import: "2" });
});

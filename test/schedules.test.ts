/**
 * GET /v1/schedules: the catalog's cron schedules over the API (admin, read-only), with the
 * last and next slot and the job the scheduler enqueued for the last one; through the typed
 * client on app.request, with the queue's clock moved by hand (no sleeping until 03:17).
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { z } from "zod";
import { ApiKeys, type CreatedApiKey } from "../shared/api/api-keys";
import { createApp } from "../shared/api/app";
import { createJobsClient, type JobsClient } from "../shared/client/client";
import { extendCatalog } from "../shared/jobs/catalog";
import { jobType } from "../shared/jobs/definition";
import { createEngine, type Engine } from "../shared/queue/engine";
import { Scheduler } from "../shared/queue/scheduler";
import { createTestDatabase } from "./support/services";

let db: Awaited<ReturnType<typeof createTestDatabase>>;
let engine: Engine;
let admin: JobsClient;
let tenantKey: CreatedApiKey;
let app: ReturnType<typeof createApp>;
let now = new Date("2026-12-03T10:05:00Z");

// A type of the embedding app's with a schedule of its own, beside the built-in one.
const digest = jobType({ type: "digest.send", payload: z.strictObject({}), cron: { schedule: "*/15 * * * *", payload: {} } });

beforeAll(async () => {
  db = await createTestDatabase("schedules");
  engine = createEngine({ sql: db.sql, clock: { now: () => now }, catalog: extendCatalog([digest]) });
  const apiKeys = new ApiKeys(db.sql, { pepper: "schedules-pepper" });
  const adminKey = await apiKeys.create({ tenantId: null, admin: true, name: "ops" });
  tenantKey = await apiKeys.create({ tenantId: "acme", admin: false, name: "web" });
  app = createApp({ queue: engine.queue, sql: db.sql, apiKeys });
  admin = createJobsClient({ baseUrl: "http://jobs.test", apiKey: adminKey.key, fetch: async (request) => app.request(request) });
});

afterAll(async () => {
  await db?.drop();
});

const schedules = async () => {
  const { data, error } = await admin.api.GET("/v1/schedules");
  expect(error).toBeUndefined();
  return data!.schedules;
};

describe("GET /v1/schedules", () => {
  it("lists every cron schedule of the catalog with its slots, before any scheduler ran", async () => {
    expect(await schedules()).toEqual([
      {
        type: "maintenance.cleanup",
        schedule: "17 3 * * *",
        timezone: "UTC",
        payload: {},
        previous_slot: "2026-12-03T03:17:00.000Z",
        next_slot: "2026-12-04T03:17:00.000Z",
        previous_job: null,
        paused: false,
      },
      {
        type: "digest.send",
        schedule: "*/15 * * * *",
        timezone: "UTC",
        payload: {},
        previous_slot: "2026-12-03T10:00:00.000Z",
        next_slot: "2026-12-03T10:15:00.000Z",
        previous_job: null,
        paused: false,
      },
    ]);
  });

  it("shows the job the scheduler enqueued for the last slot, and a paused type", async () => {
    now = new Date("2026-12-04T03:17:30Z");
    const scheduler = new Scheduler({ queue: engine.queue, holderId: "test-scheduler" });
    expect((await scheduler.runOnce()).cronEnqueued).toBe(2);
    await scheduler.stop();
    await engine.queue.pause("maintenance.cleanup");

    const [cleanup, digestRow] = await schedules();
    const [job] = await engine.queue.list({ tenantId: null, type: "maintenance.cleanup", limit: 10 });
    expect(cleanup).toMatchObject({
      previous_slot: "2026-12-04T03:17:00.000Z",
      next_slot: "2026-12-05T03:17:00.000Z",
      previous_job: { id: job!.id, state: "paused", created_at: now.toISOString(), finished_at: null },
      paused: true,
    });
    expect(job!.idempotencyKey).toBe("cron:2026-12-04T03:17:00.000Z");
    expect(digestRow).toMatchObject({ previous_slot: "2026-12-04T03:15:00.000Z", next_slot: "2026-12-04T03:30:00.000Z", previous_job: { state: "queued" }, paused: false });

    // The next slot's time has come but no scheduler has run yet: no job for it.
    now = new Date("2026-12-04T03:31:00Z");
    expect((await schedules())[1]).toMatchObject({ previous_slot: "2026-12-04T03:30:00.000Z", previous_job: null });
  });

  it("is for admin keys only, and takes no unknown query", async () => {
    const res = await app.request("/v1/schedules", { headers: { authorization: `Bearer ${tenantKey.key}` } });
    expect(res.status).toBe(403);
    const { response } = await admin.api.GET("/v1/schedules", { params: { query: { bogus: "1" } as never } });
    expect(response.status).toBe(422);
  });
});

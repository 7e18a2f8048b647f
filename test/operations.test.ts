import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ApiKeys } from "../shared/api/api-keys";
import { createApp } from "../shared/api/app";
import { silentLogger } from "../shared/ports";
import { createEngine } from "../shared/queue/engine";
import type { Job } from "../shared/queue/job";
import { loadConfig } from "../workers/node/config";
import { startNodeRuntime } from "../workers/node/runtime";
import { createTestDatabase, waitFor } from "./support/services";

const mail = (n: number) => ({ recipient: `u${n}@example.com`, template_id: "tpl" });

describe("scaling signals", () => {
  let db: Awaited<ReturnType<typeof createTestDatabase>>;
  let app: ReturnType<typeof createApp>;
  let adminKey: string;
  const engine = () => createEngine({ sql: db.sql });

  beforeAll(async () => {
    db = await createTestDatabase("ops");
    const apiKeys = new ApiKeys(db.sql, { pepper: "ops-test-pepper-0123" });
    adminKey = (await apiKeys.create({ tenantId: null, admin: true, name: "ops" })).key;
    app = createApp({ queue: engine().queue, sql: db.sql, apiKeys });
  });
  afterAll(async () => {
    await db.drop();
  });

  const scaling = async () => {
    const res = await app.request("/v1/scaling", { headers: { authorization: `Bearer ${adminKey}` } });
    expect(res.status).toBe(200);
    const body = (await res.json()) as { pools: { pool: string; queue_depth: number; recommendation: string; reasons: string[] }[] };
    return Object.fromEntries(body.pools.map((p) => [p.pool, p]));
  };

  it("says hold with 10 email.send jobs waiting and scale up with 1,500", async () => {
    const q = engine().queue;
    await q.enqueueMany(Array.from({ length: 10 }, (_, i) => ({ type: "email.send", tenantId: "t1", payload: mail(i) })));
    expect((await scaling()).email).toMatchObject({ queue_depth: 10, recommendation: "hold" });
    for (let b = 0; b < 3; b++) {
      await q.enqueueMany(Array.from({ length: 500 }, (_, i) => ({ type: "email.send", tenantId: "t1", payload: mail(b * 500 + i) })));
    }
    const email = (await scaling()).email!;
    expect(email).toMatchObject({ queue_depth: 1_510, recommendation: "scale_up" });
    expect(email.reasons[0]).toMatch(/queue depth 1510 > 1000/);
    expect((await scaling()).import).toMatchObject({ recommendation: "hold" });
  });

  it("publishes the same figures as Prometheus gauges, valid for promtool", async () => {
    const res = await app.request("/metrics", { headers: { authorization: `Bearer ${adminKey}` } });
    const text = await res.text();
    expect(text).toMatch(/^pool_queue_depth\{pool="email"\} 1510$/m);
    expect(text).toMatch(/^pool_scale_up\{pool="email"\} 1$/m);
    expect(text).toMatch(/^queue_oldest_age_seconds\{type="email.send"\} \d/m);
    const promtool = ["/usr/bin/promtool", "/usr/local/bin/promtool"].find((p) => existsSync(p));
    expect(promtool, "promtool (Debian's prometheus package; .ci/run installs it)").toBeDefined();
    // promtool (2.42) exits non-zero on format errors and on lint problems, printing them.
    const result = (() => {
      try {
        return { code: 0, out: execFileSync(promtool!, ["check", "metrics"], { input: text, stdio: "pipe" }).toString() };
      } catch (err) {
        const e = err as { status?: number; stdout?: Buffer; stderr?: Buffer };
        return { code: e.status ?? -1, out: `${e.stdout ?? ""}${e.stderr ?? ""}` };
      }
    })();
    expect(result).toEqual({ code: 0, out: "" });
  });
});

describe("the import pool under memory pressure (a real Node runtime, memory reading injected)", () => {
  let db: Awaited<ReturnType<typeof createTestDatabase>>;
  beforeAll(async () => {
    db = await createTestDatabase("mem");
  });
  afterAll(async () => {
    await db.drop();
  });

  it("stops taking import jobs above 80% and says scale up; takes them again below", async () => {
    let ratio = 0.85;
    const ran: string[] = [];
    const adminKey = "pmk_admin_memory_test_0123456789";
    const config = loadConfig({
      DATABASE_URL: db.url,
      API_KEY_PEPPER: "mem-test-pepper-0123",
      ADMIN_API_KEY: adminKey,
      PORT: "0",
      POOLS: "import",
      REGISTRY_INTERVAL_MS: "100",
      SCHEDULER_INTERVAL_MS: "100",
    });
    const runtime = await startNodeRuntime(config, silentLogger, {
      handlers: [{ type: "import.contacts", run: async (_p: unknown, job: Job) => void ran.push(job.id) }],
      memory: () => ({ rss: ratio * 1e9, ratio }),
    });
    try {
      const { job } = await runtime.engine.queue.enqueue({
        type: "import.contacts",
        tenantId: "t1",
        payload: { file_url: "https://example.com/list.csv", mapping: { col_0: "email" } },
      });
      const get = async (path: string) => (await fetch(`${runtime.url}${path}`, { headers: { authorization: `Bearer ${adminKey}` } })).json() as Promise<any>;
      await waitFor(async () => (await get("/v1/workers")).workers[0]?.intake_paused?.includes("import"), { what: "the registry to show the paused intake" });
      const pools = (await get("/v1/scaling")).pools as { pool: string; recommendation: string; memory_usage_ratio: number }[];
      expect(pools.find((p) => p.pool === "import")).toMatchObject({ recommendation: "scale_up", memory_usage_ratio: 0.85 });
      expect((await runtime.engine.queue.get(job.id, null)).state).toBe("queued");
      expect(ran).toEqual([]);

      ratio = 0.5;
      await waitFor(() => ran.length === 1, { what: "the import pool to take the job again" });
      await waitFor(async () => (await get("/v1/workers")).workers[0]?.intake_paused?.length === 0);
      expect((await get("/v1/scaling")).pools.find((p: { pool: string }) => p.pool === "import").recommendation).toBe("hold");
    } finally {
      await runtime.stop();
    }
  });
});

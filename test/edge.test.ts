import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createEngine } from "../shared/queue/engine";
import type { Job } from "../shared/queue/job";
import { WorkerPool } from "../shared/queue/worker";
import { createIoRedis } from "../workers/node/redis";
import { buildWorker, type EdgeHarness, startEdge } from "../tools/edge-harness";
import { createTestDatabase, REDIS_URL, waitFor } from "./support/services";

/**
 * The real Worker bundle (wrangler's build) in workerd, on the Neon driver and @upstash/redis,
 * against this machine's Postgres and Redis through the dev bridges.
 */
describe("the edge runtime in workerd", () => {
  let db: Awaited<ReturnType<typeof createTestDatabase>>;
  let script: string;
  const harnesses: EdgeHarness[] = [];

  beforeAll(async () => {
    db = await createTestDatabase("edge");
    await db.sql.query("create table edge_runs (job_id bigint not null, attempt int not null, at timestamptz default clock_timestamp())");
    script = buildWorker("test/fixtures/edge-test-worker.ts");
  });
  afterAll(async () => {
    await Promise.all(harnesses.map((h) => h.close()));
    await db.drop();
  });

  const start = async (opts: Parameters<typeof startEdge>[0] extends infer O ? Omit<O & object, "script" | "databaseUrl"> : never) => {
    const h = await startEdge({ script, databaseUrl: db.url, ...opts });
    harnesses.push(h);
    return h;
  };
  const post = (h: EdgeHarness, path: string, body: unknown) =>
    h.mf.dispatchFetch(`http://edge.test${path}`, {
      method: "POST",
      headers: { authorization: `Bearer ${h.adminKey}`, "content-type": "application/json" },
      body: JSON.stringify(body),
    });
  const enqueue = async (h: EdgeHarness, variables: Record<string, unknown> = {}, extra: Record<string, unknown> = {}) => {
    const res = await post(h, "/v1/jobs", {
      type: "email.send",
      tenant_id: "acme",
      payload: { recipient: "a@example.com", template_id: "tpl_1", variables },
      ...extra,
    });
    expect(res.status).toBe(201);
    return (await res.json()) as { id: string };
  };
  const cron = async (h: EdgeHarness, expression = "* * * * *") => {
    // Fetcher.scheduled() exists in workerd; Miniflare's Fetcher type does not declare it.
    const worker = (await h.mf.getWorker()) as unknown as { scheduled(o: { cron: string }): Promise<{ outcome: string }> };
    const result = await worker.scheduled({ cron: expression });
    expect(result.outcome).toBe("ok");
  };
  const job = async (id: string) =>
    (await db.sql.query<{ state: string; attempt: number; worker_id: string | null; result: unknown; last_error: { at: string } | null; run_at: Date }>(
      "select state::text, attempt, worker_id, result, last_error, run_at from jobs where id = $1",
      [id],
    ))[0]!;

  it("runs a job enqueued through the Worker's API when the cron trigger fires", async () => {
    const h = await start({});
    const { id } = await enqueue(h);
    expect((await job(id)).state).toBe("queued");
    await cron(h);
    const done = await job(id);
    expect(done).toMatchObject({ state: "completed", attempt: 1, result: { sent: true, runtime: "edge" } });
    expect(done.worker_id).toMatch(/^edge:/);
    const res = await h.mf.dispatchFetch(`http://edge.test/v1/jobs/${id}`, { headers: { authorization: `Bearer ${h.adminKey}` } });
    expect(((await res.json()) as { state: string }).state).toBe("completed");
  });

  it("starts a job within seconds of its enqueue when the Queue wake-up is bound (no cron)", async () => {
    const h = await start({ withQueue: true });
    const { id } = await enqueue(h);
    await waitFor(async () => (await job(id)).state === "completed", { timeoutMs: 20_000, what: "the queue consumer to drain" });
  });

  it("stops a drain at its budget and leaves what it did not take queued, untouched", async () => {
    const h = await start({ vars: { DRAIN_BUDGET_MS: "300", DRAIN_GRACE_MS: "5000", EDGE_CONCURRENCY: "2" } });
    const res = await post(h, "/v1/jobs/batch", {
      jobs: Array.from({ length: 20 }, () => ({
        type: "email.send",
        tenant_id: "budget",
        payload: { recipient: "b@example.com", template_id: "tpl_1", variables: { sleep_ms: 150 } },
      })),
    });
    expect(res.status).toBe(201);
    await cron(h);
    const rows = await db.sql.query<{ state: string; attempt: number; n: number }>(
      "select state::text, attempt, count(*)::int as n from jobs where tenant_id = 'budget' group by 1, 2 order by 1",
    );
    const completed = rows.find((r) => r.state === "completed")?.n ?? 0;
    const queued = rows.find((r) => r.state === "queued" && r.attempt === 0)?.n ?? 0;
    expect(completed).toBeGreaterThan(0);
    expect(completed + queued).toBe(20);
    expect(rows.filter((r) => r.state === "active")).toEqual([]);
  });

  it("retries a failing job with backoff, as on Node", async () => {
    const h = await start({});
    const { id } = await enqueue(h, { fail_runs: 2 });
    const delays: number[] = [];
    for (let attempt = 1; attempt <= 2; attempt++) {
      await cron(h);
      const failed = await job(id);
      expect(failed).toMatchObject({ state: "scheduled", attempt });
      delays.push(failed.run_at.getTime() - Date.parse(failed.last_error!.at));
      // Backdate the retry instead of sleeping through it.
      await db.sql.query("update jobs set run_at = now() where id = $1", [id]);
    }
    await cron(h);
    expect(await job(id)).toMatchObject({ state: "completed", attempt: 3 });
    // email.send: base 5 s, equal jitter: attempt 1 waits 2.5-5 s, attempt 2 waits 5-10 s.
    expect(delays[0]).toBeGreaterThanOrEqual(2_500);
    expect(delays[0]).toBeLessThanOrEqual(5_000);
    expect(delays[1]).toBeGreaterThanOrEqual(5_000);
    expect(delays[1]).toBeLessThanOrEqual(10_000);
  });

  it("shares the lanes with Node workers: a mixed fleet runs every job exactly once", async () => {
    const h = await start({ vars: { DRAIN_MAX_JOBS: "100000", EDGE_CONCURRENCY: "5" } });
    const redis = createIoRedis(REDIS_URL);
    const node = createEngine({ sql: db.sql, redis, redisOptions: { prefix: h.prefix } });
    await node.dispatcher.start();
    await node.dispatcher.reconcile({ force: true });
    const { jobs } = await node.queue.enqueueMany(
      Array.from({ length: 300 }, (_, i) => ({ type: "email.send", tenantId: "fleet", payload: { recipient: `f${i}@example.com`, template_id: "t" } })),
    ).then((r) => ({ jobs: r.map((x) => x.job) }));
    const pool = new WorkerPool({
      name: "email",
      concurrency: 5,
      queue: node.queue,
      stats: node.stats,
      workerId: "node-fleet",
      handlers: [
        {
          type: "email.send",
          run: async (_p: unknown, j: Job) => {
            await db.sql.query("insert into edge_runs (job_id, attempt) values ($1, $2)", [j.id, j.attempt]);
            await new Promise((r) => setTimeout(r, 5));
            return { sent: true, runtime: "node" };
          },
        },
      ],
    });
    pool.start();
    const ids = jobs.map((j) => j.id);
    const remaining = async () =>
      (await db.sql.query<{ n: number }>("select count(*)::int as n from jobs where id = any($1::bigint[]) and state <> 'completed'", [ids]))[0]!.n;
    while ((await remaining()) > 0) await cron(h);
    await pool.stop();
    await node.dispatcher.close();
    await redis.close();
    const runs = await db.sql.query<{ runs: number; distinct_jobs: number }>(
      "select count(*)::int as runs, count(distinct job_id)::int as distinct_jobs from edge_runs where job_id = any($1::bigint[])",
      [ids],
    );
    expect(runs[0]).toEqual({ runs: 300, distinct_jobs: 300 });
    const byRuntime = await db.sql.query<{ runtime: string; n: number }>(
      "select result->>'runtime' as runtime, count(*)::int as n from jobs where id = any($1::bigint[]) group by 1",
      [ids],
    );
    const counts = Object.fromEntries(byRuntime.map((r) => [r.runtime, r.n]));
    expect(counts.edge ?? 0).toBeGreaterThan(0);
    expect(counts.node ?? 0).toBeGreaterThan(0);
    expect((counts.edge ?? 0) + (counts.node ?? 0)).toBe(300);
  });
});

describe("the email pipeline with the Worker draining", () => {
  let db: Awaited<ReturnType<typeof createTestDatabase>>;
  let edge: EdgeHarness;
  let resend: Awaited<ReturnType<typeof import("../tools/resend-mock-server").startResendMock>>;
  const CONTACTS = 2_000;

  beforeAll(async () => {
    const { startResendMock } = await import("../tools/resend-mock-server");
    db = await createTestDatabase("edge_mail");
    resend = await startResendMock({ apiKey: "re_edge" });
    edge = await startEdge({
      script: buildWorker("workers/edge.ts"),
      databaseUrl: db.url,
      vars: { RESEND_API_KEY: "re_edge", RESEND_BASE_URL: resend.url, DRAIN_MAX_JOBS: "100000", EDGE_CONCURRENCY: "10" },
    });
  });
  afterAll(async () => {
    await edge.close();
    await resend.close();
    await db.drop();
  });

  it("sends a campaign once to every deliverable contact, on the real Worker with Neon and Upstash", async () => {
    const api = async (path: string, body?: unknown) => {
      const res = await edge.mf.dispatchFetch(`http://edge.test${path}${path.includes("?") ? "&" : "?"}tenant_id=acme`, {
        method: body === undefined ? "GET" : "POST",
        headers: { authorization: `Bearer ${edge.adminKey}`, "content-type": "application/json" },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
      const json = (await res.json()) as any;
      if (res.status >= 400) throw new Error(`${path}: ${res.status} ${JSON.stringify(json)}`);
      return json;
    };
    const list = await api("/v1/lists", { name: "edge" });
    for (let b = 0; b < CONTACTS; b += 1_000) {
      await api("/v1/contacts", { list_id: list.id, contacts: Array.from({ length: 1_000 }, (_, i) => ({ email: `e${b + i}@example.com`, name: `E${b + i}` })) });
    }
    for (let n = 0; n < CONTACTS; n += 100) await api("/v1/suppressions", { email: `e${n}@example.com` });
    const template = await api("/v1/templates", { name: "edge", subject: "Hi {{name}}", blocks: [{ type: "text", text: "Hello {{name}}" }] });
    const campaign = await api("/v1/campaigns", { name: "edge", template_id: template.id, list_id: list.id });
    await api(`/v1/campaigns/${campaign.id}/start`, {});
    const worker = (await edge.mf.getWorker()) as unknown as { scheduled(o: { cron: string }): Promise<unknown> };
    let done: any;
    for (let i = 0; i < 50 && done?.status !== "sent"; i++) {
      await worker.scheduled({ cron: "* * * * *" });
      done = await api(`/v1/campaigns/${campaign.id}`);
    }
    const perRecipient = new Map<string, number>();
    for (const m of resend.delivered()) perRecipient.set(m.to[0]!, (perRecipient.get(m.to[0]!) ?? 0) + 1);
    expect(done.status).toBe("sent");
    expect(perRecipient.size).toBe(CONTACTS - CONTACTS / 100);
    expect([...perRecipient.values()].every((n) => n === 1)).toBe(true);
    expect(done.counters).toEqual({ recipients: CONTACTS, sent: CONTACTS - CONTACTS / 100, skipped: CONTACTS / 100, failed: 0 });
  });

  it("tracks a campaign's links on the edge: its mail carries /c/ tokens, /c/<token> answers 302 and the click is written after the answer (waitUntil)", async () => {
    const call = async (path: string, body?: unknown, method = body === undefined ? "GET" : "POST") => {
      const res = await edge.mf.dispatchFetch(`http://edge.test${path}${path.includes("?") ? "&" : "?"}tenant_id=acme`, {
        method,
        headers: { authorization: `Bearer ${edge.adminKey}`, "content-type": "application/json" },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
      return (await res.json()) as any;
    };
    const list = await call("/v1/lists", { name: "tracked" });
    await call("/v1/contacts", { list_id: list.id, contacts: [{ email: "t1@example.com" }, { email: "t2@example.com" }] });
    const template = await call("/v1/templates", { name: "tracked", subject: "Sale", blocks: [{ type: "button", text: "Shop", href: "https://shop.example.com/sale" }] });
    const campaign = await call("/v1/campaigns", { name: "tracked", template_id: template.id, list_id: list.id, tracking: { opens: true } });
    await call(`/v1/campaigns/${campaign.id}/start`, {});
    const worker = (await edge.mf.getWorker()) as unknown as { scheduled(o: { cron: string }): Promise<unknown> };
    for (let i = 0; i < 20 && (await call(`/v1/campaigns/${campaign.id}`)).status !== "sent"; i++) await worker.scheduled({ cron: "* * * * *" });
    const mail = resend.delivered().find((m) => m.to[0] === "t1@example.com")!;
    const link = /\/c\/(t1\.[A-Za-z0-9_-]+)/.exec(mail.html ?? "")?.[1];
    const pixel = /\/o\/(t1\.[A-Za-z0-9_-]+)/.exec(mail.html ?? "")?.[1];
    expect(link).toBeDefined();
    expect(pixel).toBeDefined();
    // Backdated: a hit within 2 s of delivery would be a machine's.
    await db.sql.query("update email_sends set sent_at = sent_at - interval '1 hour' where campaign_id = $1", [campaign.id]);
    const browser = { "user-agent": "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_1) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Safari/605.1.15" };
    const res = await edge.mf.dispatchFetch(`http://edge.test/c/${link}`, { headers: browser, redirect: "manual" });
    expect(res.status).toBe(302);
    expect(res.headers.get("location")).toBe("https://shop.example.com/sale");
    const gif = await edge.mf.dispatchFetch(`http://edge.test/o/${pixel}`, { headers: browser });
    expect(gif.status).toBe(200);
    expect((await gif.arrayBuffer()).byteLength).toBe(43);
    expect((await edge.mf.dispatchFetch(`http://edge.test/c/${link!.slice(0, -2)}`, { headers: browser, redirect: "manual" })).status).toBe(404);
    const stats = await waitFor(async () => {
      const s = await call(`/v1/campaigns/${campaign.id}/stats`);
      return s.clicks.unique === 1 && s.opens.unique === 1 ? s : null;
    }, { what: "the edge's hits written" });
    expect(stats).toMatchObject({ sent: 2, opens: { unique: 1, total: 1 }, clicks: { unique: 1, total: 1 }, links: [{ index: 0, url: "https://shop.example.com/sale", unique: 1, total: 1 }] });
  });
});

/**
 * GET /metrics after real work: jobs enqueued through the API, run by a real WorkerPool (some
 * complete, one is retried, some fail for good), stats flushed to job_stats; then the text is
 * read back with a real Prometheus text-format parser and compared with what ran and waits.
 */
import parsePrometheusTextFormat, { type PrometheusFamily } from "parse-prometheus-text-format";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ApiKeys, type CreatedApiKey } from "../shared/api/api-keys";
import { createApp } from "../shared/api/app";
import { Exposition } from "../shared/api/prometheus";
import { catalog } from "../shared/jobs/catalog";
import type { Sql } from "../shared/ports";
import { createEngine, type Engine } from "../shared/queue/engine";
import { PermanentError, RetryAfter } from "../shared/queue/errors";
import type { Handler } from "../shared/queue/handler";
import type { Job } from "../shared/queue/job";
import { DURATION_BUCKETS } from "../shared/queue/stats";
import { WorkerPool } from "../shared/queue/worker";
import { createTestDatabase, waitFor } from "./support/services";

let db: Awaited<ReturnType<typeof createTestDatabase>>;
let sql: Sql;
let engine: Engine;
let apiKeys: ApiKeys;
let app: ReturnType<typeof createApp>;
let admin: CreatedApiKey;
let families: Map<string, PrometheusFamily>;
/**
 * The same text with the histogram declared untyped. The parser flattens a histogram into one
 * series (buckets merged across label sets, labelled _sum/_count dropped), so per-type series
 * are read back as plain samples: job_duration_seconds_bucket{type,le}, _sum{type}, _count{type}.
 */
let untyped: Map<string, PrometheusFamily>;

const TYPES = [...catalog.keys()];

async function post(path: string, body: unknown): Promise<any> {
  const res = await app.request(path, {
    method: "POST",
    headers: { authorization: `Bearer ${admin.key}`, "content-type": "application/json" },
    body: JSON.stringify(body),
  });
  expect(res.status, await res.clone().text()).toBe(201);
  return res.json();
}

const mail = (n: number, variables: Record<string, unknown> = {}) => ({
  type: "email.send",
  tenant_id: "tenant_m",
  payload: { recipient: `m${n}@example.com`, template_id: "tpl", variables: { n, ...variables } },
});
const hook = (n: number) => ({
  type: "webhook.dispatch",
  tenant_id: "tenant_m",
  payload: { endpoint_id: "ep_1", event_id: `evt_${n}`, event_type: "email.sent", data: { n } },
});

/** The sample of a family with these labels (ignoring other labels such as le). */
function sample(name: string, labels: Record<string, string>, from = families) {
  const family = from.get(name);
  expect(family, name).toBeDefined();
  const found = family!.metrics.filter((m) => Object.entries(labels).every(([k, v]) => m.labels?.[k] === v));
  expect(found, `${name} ${JSON.stringify(labels)}`).toHaveLength(1);
  return found[0]!;
}
const value = (name: string, labels: Record<string, string>, from = families) => Number(sample(name, labels, from).value);

beforeAll(async () => {
  db = await createTestDatabase("metrics");
  sql = db.sql;
  engine = createEngine({ sql });
  await engine.dispatcher.start();
  apiKeys = new ApiKeys(sql, { pepper: "metrics-test-pepper" });
  admin = await apiKeys.create({ tenantId: null, admin: true, name: "ops" });
  app = createApp({ queue: engine.queue, sql, apiKeys });

  // 4 mails complete (one of them only after a retried first attempt); 2 webhooks fail for good.
  const handlers: Handler[] = [
    {
      type: "email.send",
      run: async (payload: { variables: { retry?: boolean } }, job: Job) => {
        if (payload.variables.retry && job.attempt === 1) throw new RetryAfter(1, "provider busy");
        return { sent: true };
      },
    },
    { type: "webhook.dispatch", run: async () => { throw new PermanentError("endpoint gone"); } },
  ];
  const { jobs } = await post("/v1/jobs/batch", { jobs: [mail(1), mail(2), mail(3), mail(4, { retry: true }), hook(1), hook(2)] });
  const ids = jobs.map((j: { id: string }) => j.id);
  const pool = new WorkerPool({ name: "metrics", handlers, concurrency: 4, queue: engine.queue, stats: engine.stats, workerId: "metrics-1", idleWaitMs: 50 });
  pool.start();
  await waitFor(
    async () => {
      await engine.queue.promoteDue(); // the retried mail's next attempt (no scheduler runs here)
      const states = await Promise.all(ids.map(async (id: string) => (await engine.queue.get(id, null)).state));
      return states.every((s) => s === "completed" || s === "failed");
    },
    { what: "every job to finish", intervalMs: 25 },
  );
  await pool.stop(5_000);
  await engine.stats.flush();

  // What waits now: 3 queued campaigns, 1 delayed export; the 2 failed webhooks stay in the dead letter.
  await post("/v1/jobs/batch", {
    jobs: [
      ...[1, 2, 3].map((n) => ({ type: "campaign.process", tenant_id: "tenant_m", payload: { campaign_id: `c${n}` } })),
      { type: "export.data", tenant_id: "tenant_m", delay_ms: 3_600_000, payload: { source: "list", list_id: "l1" } },
    ],
  });

  const res = await app.request("/metrics", { headers: { authorization: `Bearer ${admin.key}` } });
  expect(res.status).toBe(200);
  expect(res.headers.get("content-type")).toBe("text/plain; version=0.0.4; charset=utf-8");
  const text = await res.text();
  families = new Map(parsePrometheusTextFormat(text).map((f) => [f.name, f]));
  const asUntyped = text.replace("# TYPE job_duration_seconds histogram", "# TYPE job_duration_seconds untyped");
  // Untyped, each series' _bucket/_sum/_count lines come back as families of their own: merge them by name.
  untyped = new Map();
  for (const f of parsePrometheusTextFormat(asUntyped)) {
    const seen = untyped.get(f.name);
    if (seen) seen.metrics.push(...f.metrics);
    else untyped.set(f.name, f);
  }
});

afterAll(async () => {
  await engine?.dispatcher.close();
  await db?.drop();
});

describe("GET /metrics", () => {
  it("declares every family with its type and help", () => {
    const expected = {
      jobs_completed_total: "COUNTER",
      jobs_failed_total: "COUNTER",
      jobs_retried_total: "COUNTER",
      job_duration_seconds: "HISTOGRAM",
      queue_depth: "GAUGE",
      queue_oldest_age_seconds: "GAUGE",
    };
    for (const [name, type] of Object.entries(expected)) {
      expect(families.get(name)?.type, name).toBe(type);
      expect(families.get(name)?.help, name).not.toBe("");
    }
  });

  it("counts the outcomes that ran, with every catalog type present", () => {
    const outcomes: Record<string, [number, number, number]> = { "email.send": [4, 0, 1], "webhook.dispatch": [0, 2, 0] };
    for (const type of TYPES) {
      const [completed, failed, retried] = outcomes[type] ?? [0, 0, 0];
      expect(value("jobs_completed_total", { type }), type).toBe(completed);
      expect(value("jobs_failed_total", { type }), type).toBe(failed);
      expect(value("jobs_retried_total", { type }), type).toBe(retried);
    }
  });

  it("has a cumulative duration histogram whose count is every attempt that ran", () => {
    const attempts: Record<string, number> = { "email.send": 5, "webhook.dispatch": 2 };
    const les = [...DURATION_BUCKETS.map(String), "+Inf"];
    for (const type of TYPES) {
      const expectedCount = attempts[type] ?? 0;
      const buckets = untyped.get("job_duration_seconds_bucket")!.metrics.filter((m) => m.labels?.type === type);
      expect(buckets.map((b) => b.labels!.le), type).toEqual(les);
      const counts = buckets.map((b) => Number(b.value));
      counts.forEach((c, i) => expect(c).toBeGreaterThanOrEqual(i === 0 ? 0 : counts[i - 1]!));
      expect(counts.at(-1), type).toBe(expectedCount);
      // Handlers return at once: every attempt is within the 1 s bucket.
      expect(counts[les.indexOf("1")], type).toBe(expectedCount);
      expect(value("job_duration_seconds_count", { type }, untyped), type).toBe(expectedCount);
      expect(value("job_duration_seconds_sum", { type }, untyped)).toBeGreaterThanOrEqual(0);
    }
  });

  it("reports queue depth for every type and state, matching what waits", () => {
    const depth: Record<string, number> = {
      "campaign.process/queued": 3,
      "export.data/scheduled": 1,
      "webhook.dispatch/failed": 2,
    };
    expect(families.get("queue_depth")!.metrics).toHaveLength(TYPES.length * 5);
    for (const type of TYPES) {
      for (const state of ["queued", "scheduled", "paused", "active", "failed"]) {
        expect(value("queue_depth", { type, state }), `${type}/${state}`).toBe(depth[`${type}/${state}`] ?? 0);
      }
    }
  });

  it("reports the oldest queued job's age per type", () => {
    for (const type of TYPES) {
      const age = value("queue_oldest_age_seconds", { type });
      expect(age).toBeGreaterThanOrEqual(0);
      if (type !== "campaign.process") expect(age, type).toBe(0);
    }
  });

  it("needs an admin key unless made public", async () => {
    const none = await app.request("/metrics");
    expect(none.status).toBe(401);
    expect(none.headers.get("www-authenticate")).toMatch(/^Bearer/);
    const tenant = await apiKeys.create({ tenantId: "tenant_m", admin: false, name: "t" });
    const forbidden = await app.request("/metrics", { headers: { authorization: `Bearer ${tenant.key}` } });
    expect(forbidden.status).toBe(403);
    expect(forbidden.headers.get("content-type")).toContain("application/problem+json");

    const open = createApp({ queue: engine.queue, sql, apiKeys, metricsPublic: true });
    const res = await open.request("/metrics");
    expect(res.status).toBe(200);
    expect(parsePrometheusTextFormat(await res.text()).map((f) => f.name)).toContain("queue_depth");
  });
});

describe("Prometheus text format", () => {
  it("escapes label values so a parser reads them back unchanged", () => {
    const nasty = 'a "quoted" \\ back\nslash';
    const text = new Exposition().family("x_total", "counter", "help with \\ and\nnewline").sample("x_total", { type: nasty }, 1).toString();
    const [family] = parsePrometheusTextFormat(text);
    expect(family!.metrics[0]!.labels!.type).toBe(nasty);
    expect(family!.metrics[0]!.value).toBe("1");
  });

  it("writes histogram buckets cumulatively from per-bucket counts", () => {
    const text = new Exposition()
      .family("d_seconds", "histogram", "d")
      .histogram("d_seconds", {}, [0.1, 1], [2, 3, 4], 9.5)
      .toString();
    const [family] = parsePrometheusTextFormat(text);
    expect(family!.metrics[0]).toMatchObject({ buckets: { "0.1": "2", "1": "5", "+Inf": "9" }, count: "9", sum: "9.5" });
  });
});

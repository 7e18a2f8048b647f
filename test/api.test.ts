/**
 * The HTTP API against a real Postgres database, called in-process with app.request (no
 * server). Every rejected request is followed by a look at the jobs table: nothing stored.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ApiKeys, type CreatedApiKey, parseApiKey } from "../shared/api/api-keys";
import { createApp } from "../shared/api/app";
import { ExportLinks } from "../shared/exports/links";
import { enqueueSchemaName } from "../shared/api/openapi";
import { catalog } from "../shared/jobs/catalog";
import type { Logger, LogFields, Sql, SqlClient } from "../shared/ports";
import { createEngine } from "../shared/queue/engine";
import { createTestDatabase } from "./support/services";

/** The default limit (1 MiB): a batch of 1,000 mail jobs fits well within it. */
const BODY_LIMIT = 1024 * 1024;
const PEPPER = "test-pepper-not-secret-elsewhere";

let db: Awaited<ReturnType<typeof createTestDatabase>>;
let sql: Sql;
let apiKeys: ApiKeys;
let app: ReturnType<typeof createApp>;
let admin: CreatedApiKey;
let keyA: CreatedApiKey;
let keyB: CreatedApiKey;
/** Every response body this file received, checked at the end for leaked key material. */
const seen: string[] = [];

const mail = (n: number, extra: Record<string, unknown> = {}) => ({
  type: "email.send",
  payload: { recipient: `user${n}@example.com`, template_id: "tpl_1", variables: { n } },
  ...extra,
});

interface Call {
  key?: string;
  method?: string;
  body?: unknown;
  /** Sent as is (malformed JSON); otherwise body is JSON-encoded. */
  raw?: string;
  headers?: Record<string, string>;
}

async function call(path: string, opts: Call = {}): Promise<{ status: number; headers: Headers; text: string; json: any }> {
  const headers: Record<string, string> = {};
  if (opts.key) headers.authorization = `Bearer ${opts.key}`;
  const body = opts.raw ?? (opts.body === undefined ? undefined : JSON.stringify(opts.body));
  if (body !== undefined) headers["content-type"] = "application/json";
  const res = await app.request(path, { method: opts.method ?? (body === undefined ? "GET" : "POST"), body, headers: { ...headers, ...opts.headers } });
  return record(res);
}

async function record(res: Response) {
  const text = await res.text();
  seen.push(text, JSON.stringify([...res.headers]));
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: res.status, headers: res.headers, text, json: json as any };
}

const jobCount = async () => ((await sql.query<{ n: number }>("select count(*)::int as n from jobs"))[0]!).n;

/** Asserts a problem+json response with the status and, when given, exactly these error paths. */
function expectProblem(res: Awaited<ReturnType<typeof call>>, status: number, paths?: string[]) {
  expect(res.status, res.text).toBe(status);
  expect(res.headers.get("content-type")).toContain("application/problem+json");
  expect(res.json).toMatchObject({ status, type: expect.any(String), title: expect.any(String), detail: expect.any(String) });
  if (paths) expect(res.json.errors.map((e: { path: string }) => e.path).sort()).toEqual([...paths].sort());
}

beforeAll(async () => {
  db = await createTestDatabase("api");
  sql = db.sql;
  const engine = createEngine({ sql });
  apiKeys = new ApiKeys(sql, { pepper: PEPPER });
  admin = await apiKeys.create({ tenantId: null, admin: true, name: "ops" });
  keyA = await apiKeys.create({ tenantId: "tenant_a", admin: false, name: "a" });
  keyB = await apiKeys.create({ tenantId: "tenant_b", admin: false, name: "b" });
  app = createApp({ queue: engine.queue, sql, apiKeys, version: "test" });
});

afterAll(async () => {
  await db?.drop();
});

describe("enqueue", () => {
  it("creates a job (201) and returns the same job for the same idempotency key (200)", async () => {
    const first = await call("/v1/jobs", { key: keyA.key, body: mail(1, { idempotency_key: "order-1" }) });
    expect(first.status, first.text).toBe(201);
    expect(first.json).toMatchObject({ type: "email.send", tenant_id: "tenant_a", state: "queued", priority: "high", attempt: 0 });
    expect(first.json.payload.tenant_id).toBe("tenant_a");
    expect(first.headers.get("location")).toBe(`/v1/jobs/${first.json.id}`);
    expect(first.headers.get("idempotent-replayed")).toBeNull();

    const again = await call("/v1/jobs", { key: keyA.key, body: mail(1, { idempotency_key: "order-1" }) });
    expect(again.status).toBe(200);
    expect(again.headers.get("idempotent-replayed")).toBe("true");
    expect(again.json.id).toBe(first.json.id);
  });

  it("takes the idempotency key from the Idempotency-Key header", async () => {
    const before = await jobCount();
    const headers = { "idempotency-key": "hdr-1" };
    const first = await call("/v1/jobs", { key: keyA.key, body: mail(2), headers });
    const again = await call("/v1/jobs", { key: keyA.key, body: mail(2), headers });
    expect([first.status, again.status]).toEqual([201, 200]);
    expect(again.json.id).toBe(first.json.id);
    expect(first.json.idempotency_key).toBe("hdr-1");
    expect(await jobCount()).toBe(before + 1);
  });

  it("enqueues a batch of 3", async () => {
    const before = await jobCount();
    const res = await call("/v1/jobs/batch", { key: keyA.key, body: { jobs: [mail(10), mail(11), mail(12)] } });
    expect(res.status, res.text).toBe(201);
    expect(res.json.created).toBe(3);
    expect(res.json.existing).toBe(0);
    expect(new Set(res.json.jobs.map((j: { id: string }) => j.id)).size).toBe(3);
    expect(res.json.jobs.map((j: { payload: { recipient: string } }) => j.payload.recipient)).toEqual([
      "user10@example.com",
      "user11@example.com",
      "user12@example.com",
    ]);
    expect(await jobCount()).toBe(before + 3);
  });

  it("runs admin-only types as the system tenant for admin keys", async () => {
    const res = await call("/v1/jobs", { key: admin.key, body: { type: "maintenance.cleanup", payload: {} } });
    expect(res.status, res.text).toBe(201);
    expect(res.json.tenant_id).toBe("_system");
  });

  it("lets an admin key enqueue for a tenant it names", async () => {
    const res = await call("/v1/jobs", { key: admin.key, body: mail(3, { tenant_id: "tenant_c" }) });
    expect(res.status, res.text).toBe(201);
    expect(res.json.tenant_id).toBe("tenant_c");
  });

  it("redacts credential-like payload fields in responses", async () => {
    const res = await call("/v1/jobs", {
      key: keyA.key,
      body: { type: "email.send", payload: { recipient: "r@example.com", template_id: "t", variables: { reset_token: "s3cr3t", api_key: "k", name: "Ann" } } },
    });
    expect(res.status).toBe(201);
    expect(res.json.payload.variables).toEqual({ reset_token: "[redacted]", api_key: "[redacted]", name: "Ann" });
    expect(res.text).not.toContain("s3cr3t");
  });
});

describe("rejected requests store nothing", () => {
  let before: number;
  beforeAll(async () => {
    before = await jobCount();
  });
  const unchanged = async () => expect(await jobCount()).toBe(before);

  it("400 for malformed JSON", async () => {
    const res = await call("/v1/jobs", { key: keyA.key, raw: '{"type": "email.send", "payload": ' });
    expectProblem(res, 400);
    expect(res.json.detail).toMatch(/JSON/);
    await unchanged();
  });

  it("422 naming `type` for an unknown job type", async () => {
    expectProblem(await call("/v1/jobs", { key: keyA.key, body: { type: "email.sned", payload: {} } }), 422, ["type"]);
    await unchanged();
  });

  it("422 naming payload.recipient when the payload fails its schema", async () => {
    const res = await call("/v1/jobs", { key: keyA.key, body: { type: "email.send", payload: { recipient: "not-an-email", template_id: "t" } } });
    expectProblem(res, 422, ["payload.recipient"]);
    await unchanged();
  });

  it("422 naming every envelope problem, unknown fields by name", async () => {
    const res = await call("/v1/jobs", { key: keyA.key, body: { type: "email.send", payload: [], priority: "urgent", colour: "red" } });
    expectProblem(res, 422, ["colour", "payload", "priority"]);
    await unchanged();
  });

  it("413 for a body over the limit, by Content-Length and when streamed", async () => {
    const big = JSON.stringify(mail(1, { payload: { recipient: "a@example.com", template_id: "t", variables: { pad: "x".repeat(BODY_LIMIT) } } }));
    const declared = await call("/v1/jobs", { key: keyA.key, raw: big, headers: { "content-length": String(new TextEncoder().encode(big).length) } });
    expectProblem(declared, 413);

    const bytes = new TextEncoder().encode(big);
    const stream = new ReadableStream<Uint8Array>({
      start(controller) {
        for (let i = 0; i < bytes.length; i += 1024) controller.enqueue(bytes.slice(i, i + 1024));
        controller.close();
      },
    });
    const streamed = await record(
      await app.request(
        new Request("http://localhost/v1/jobs", {
          method: "POST",
          body: stream,
          headers: { authorization: `Bearer ${keyA.key}`, "content-type": "application/json" },
          duplex: "half",
        } as RequestInit),
      ),
    );
    expectProblem(streamed, 413);
    await unchanged();
  });

  it("422 naming `jobs` for a batch of 1,001", async () => {
    const jobs = Array.from({ length: 1_001 }, (_, i) => mail(i));
    expectProblem(await call("/v1/jobs/batch", { key: keyA.key, body: { jobs } }), 422, ["jobs"]);
    await unchanged();
  });

  it("422 listing every bad job of a batch, storing none of the good ones", async () => {
    const jobs = [mail(1), { ...mail(2), payload: { recipient: "nope", template_id: "t" } }, mail(3), { type: "nope", payload: {} }];
    const res = await call("/v1/jobs/batch", { key: keyA.key, body: { jobs } });
    expectProblem(res, 422, ["jobs.1.payload.recipient", "jobs.3.type"]);
    await unchanged();
  });

  it("415 for a body that is not application/json", async () => {
    const res = await call("/v1/jobs", { key: keyA.key, raw: JSON.stringify(mail(1)), headers: { "content-type": "text/plain" } });
    expectProblem(res, 415);
    await unchanged();
  });

  it("422 naming tenant_id when an admin key does not say which tenant", async () => {
    expectProblem(await call("/v1/jobs", { key: admin.key, body: mail(1) }), 422, ["tenant_id"]);
    await unchanged();
  });

  it("403 when a tenant key enqueues for another tenant or an admin-only type", async () => {
    expectProblem(await call("/v1/jobs", { key: keyA.key, body: mail(1, { tenant_id: "tenant_b" }) }), 403);
    expectProblem(await call("/v1/jobs", { key: keyA.key, body: { type: "maintenance.cleanup", payload: {} } }), 403);
    const batch = await call("/v1/jobs/batch", { key: keyA.key, body: { jobs: [mail(1), mail(2, { tenant_id: "tenant_b" })] } });
    expectProblem(batch, 403);
    await unchanged();
  });

  it("401 with a Bearer challenge for a missing, wrong or revoked key", async () => {
    const missing = await call("/v1/jobs", { body: mail(1) });
    expectProblem(missing, 401);
    expect(missing.headers.get("www-authenticate")).toMatch(/^Bearer/);

    const wrongSecret = `${keyA.key.slice(0, -4)}AAAA`;
    for (const key of [wrongSecret, "pmk_nope", "garbage"]) {
      const res = await call("/v1/jobs", { key, body: mail(1) });
      expectProblem(res, 401);
      expect(res.headers.get("www-authenticate")).toMatch(/^Bearer/);
    }
    expectProblem(await call("/v1/jobs", { body: mail(1), headers: { authorization: `Basic ${btoa("a:b")}` } }), 401);

    const doomed = await apiKeys.create({ tenantId: "tenant_a", admin: false, name: "doomed" });
    expect((await call("/v1/jobs?limit=1", { key: doomed.key })).status).toBe(200);
    expect(await apiKeys.revoke(doomed.id)).toBe(true);
    expectProblem(await call("/v1/jobs", { key: doomed.key, body: mail(1) }), 401);
    await unchanged();
  });

  it("404 as problem+json for an unknown route", async () => {
    expectProblem(await call("/v1/nothing-here", { key: keyA.key }), 404);
    expectProblem(await call("/nothing-here"), 404);
  });
});

describe("tenancy", () => {
  it("hides tenant B's jobs from tenant A's key (404, absent from lists)", async () => {
    const created = await call("/v1/jobs", { key: keyB.key, body: mail(50) });
    expect(created.status).toBe(201);
    const id = created.json.id as string;

    expectProblem(await call(`/v1/jobs/${id}`, { key: keyA.key }), 404);
    expectProblem(await call(`/v1/jobs/${id}/cancel`, { key: keyA.key, method: "POST" }), 404);
    expectProblem(await call(`/v1/jobs/${id}/retry`, { key: keyA.key, method: "POST" }), 404);
    const listA = await call("/v1/jobs?limit=500", { key: keyA.key });
    expect(listA.json.jobs.map((j: { id: string }) => j.id)).not.toContain(id);
    expect(listA.json.jobs.every((j: { tenant_id: string }) => j.tenant_id === "tenant_a")).toBe(true);
    expectProblem(await call("/v1/jobs?tenant_id=tenant_b", { key: keyA.key }), 403);

    expect((await call(`/v1/jobs/${id}`, { key: keyB.key })).json.id).toBe(id);
    expect((await call(`/v1/jobs/${id}`, { key: admin.key })).json.tenant_id).toBe("tenant_b");
    const adminList = await call("/v1/jobs?tenant_id=tenant_b", { key: admin.key });
    expect(adminList.json.jobs.map((j: { id: string }) => j.id)).toContain(id);
  });

  it("counts only the key's own tenant in /v1/queues", async () => {
    const tenant = await apiKeys.create({ tenantId: "tenant_q", admin: false, name: "q" });
    await call("/v1/jobs/batch", { key: tenant.key, body: { jobs: [mail(1), mail(2), { ...mail(3), delay_ms: 3_600_000 }] } });
    const mine = await call("/v1/queues", { key: tenant.key });
    expect(mine.status).toBe(200);
    expect(mine.json.queues.map((q: { type: string }) => q.type)).toEqual([...catalog.keys()]);
    const email = mine.json.queues.find((q: { type: string }) => q.type === "email.send");
    expect(email).toEqual({ type: "email.send", pool: "email", paused: false, waiting: 2, paused_jobs: 0, scheduled: 1, active: 0, failed: 0, completed_last_hour: 0, failed_last_hour: 0 });

    const all = await call("/v1/queues", { key: admin.key });
    const [{ n }] = (await sql.query<{ n: number }>(
      "select count(*)::int as n from jobs where type = 'email.send' and state = 'queued'",
    )) as [{ n: number }];
    expect(all.json.queues.find((q: { type: string }) => q.type === "email.send").waiting).toBe(n);
    expect(n).toBeGreaterThan(2);
  });

  it("lets only admin keys retry a whole dead letter", async () => {
    expectProblem(await call("/v1/queues/email.send/retry-failed", { key: keyA.key, method: "POST" }), 403);
    expectProblem(await call("/v1/queues/nope/retry-failed", { key: admin.key, method: "POST" }), 404);
    const res = await call("/v1/queues/email.send/retry-failed", { key: admin.key, method: "POST" });
    expect(res.json).toEqual({ type: "email.send", retried: 0 });
  });
});

describe("cancel and retry", () => {
  it("cancels a queued job, refuses a second cancel (409), and retries it", async () => {
    const { json: job } = await call("/v1/jobs", { key: keyA.key, body: mail(70) });
    const cancelled = await call(`/v1/jobs/${job.id}/cancel`, { key: keyA.key, method: "POST" });
    expect(cancelled.status).toBe(200);
    expect(cancelled.json.state).toBe("cancelled");
    expect(cancelled.json.finished_at).not.toBeNull();

    expectProblem(await call(`/v1/jobs/${job.id}/cancel`, { key: keyA.key, method: "POST" }), 409);

    const retried = await call(`/v1/jobs/${job.id}/retry`, { key: keyA.key, method: "POST" });
    expect(retried.status).toBe(200);
    expect(["queued", "scheduled"]).toContain(retried.json.state);
    expect(retried.json.attempt).toBe(0);
    expectProblem(await call(`/v1/jobs/${job.id}/retry`, { key: keyA.key, method: "POST" }), 409);
    expectProblem(await call("/v1/jobs/not-a-number", { key: keyA.key }), 404);
  });
});

describe("listing", () => {
  it("returns every job exactly once across cursor pages, newest first", async () => {
    const key = await apiKeys.create({ tenantId: "tenant_pages", admin: false, name: "pages" });
    const made = await call("/v1/jobs/batch", { key: key.key, body: { jobs: Array.from({ length: 7 }, (_, i) => mail(100 + i)) } });
    const expected = made.json.jobs.map((j: { id: string }) => j.id).sort();

    const ids: string[] = [];
    const pageSizes: number[] = [];
    let cursor: string | null = null;
    do {
      const page: Awaited<ReturnType<typeof call>> = await call(`/v1/jobs?limit=3${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ""}`, { key: key.key });
      expect(page.status, page.text).toBe(200);
      pageSizes.push(page.json.jobs.length);
      ids.push(...page.json.jobs.map((j: { id: string }) => j.id));
      cursor = page.json.next_cursor;
    } while (cursor !== null);

    expect(pageSizes).toEqual([3, 3, 1]);
    expect(new Set(ids).size).toBe(ids.length);
    expect([...ids].sort()).toEqual(expected);
    expect(ids).toEqual([...ids].sort((a, b) => Number(b) - Number(a)));
  });

  it("filters by type and state and rejects bad queries with 422", async () => {
    const res = await call("/v1/jobs?type=email.send&state=cancelled", { key: keyA.key });
    expect(res.status).toBe(200);
    expect(res.json.jobs.every((j: { state: string }) => j.state === "cancelled")).toBe(true);
    expectProblem(await call("/v1/jobs?limit=501", { key: keyA.key }), 422, ["limit"]);
    expectProblem(await call("/v1/jobs?state=sleeping", { key: keyA.key }), 422, ["state"]);
    expectProblem(await call("/v1/jobs?cursor=bogus", { key: keyA.key }), 422, ["cursor"]);
  });
});

describe("documents and health", () => {
  it("serves an OpenAPI 3.1 document with an enqueue schema per job type", async () => {
    const res = await call("/openapi.json");
    expect(res.status).toBe(200);
    const doc = JSON.parse(res.text);
    expect(doc.openapi).toBe("3.1.0");
    expect(doc.components.securitySchemes.bearerAuth).toMatchObject({ type: "http", scheme: "bearer" });
    const types = [...catalog.keys()];
    expect(types).toHaveLength(6);
    for (const type of types) {
      const schema = doc.components.schemas[enqueueSchemaName(type)];
      expect(schema, type).toBeDefined();
      expect(schema.properties.type.const).toBe(type);
      expect(schema.properties.payload).toBeDefined();
    }
    expect(doc.components.schemas.EmailSendEnqueueRequest.properties.payload.required).toEqual(["recipient", "template_id"]);
    expect(doc.components.schemas.EnqueueRequest.oneOf).toHaveLength(6);
    expect(doc.paths["/v1/jobs"].post.responses["422"]).toEqual({ $ref: "#/components/responses/ValidationFailed" });
    expect(doc.components.responses.ValidationFailed.content["application/problem+json"]).toBeDefined();
    expect(JSON.stringify(doc)).not.toContain('"$ref":"#/$defs');
  });

  it("documents every job, queue, import, export, file, webhook and provider route the app serves", async () => {
    const full = createApp({
      queue: createEngine({ sql }).queue,
      sql,
      apiKeys,
      resendWebhookSecret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
      exports: { storage: { schemes: [], read: async () => new ReadableStream(), write: async () => ({ url: "", bytes: 0 }), delete: async () => {}, keyOf: () => null }, links: new ExportLinks(PEPPER, "http://t") },
    });
    const doc = (await (await full.request("/openapi.json")).json()) as { paths: Record<string, Record<string, unknown>> };
    const documented = new Set(Object.entries(doc.paths).flatMap(([p, ops]) => Object.keys(ops).map((m) => `${m.toUpperCase()} ${p}`)));
    const served = full.routes
      .filter((r) => r.method !== "ALL" && /^\/(v1\/(jobs|queues|imports|exports|webhooks)|files|providers)\b/.test(r.path))
      .map((r) => `${r.method} ${r.path.replace(/:(\w+)/g, "{$1}")}`);
    expect(served.length).toBeGreaterThan(20);
    expect(served.filter((r) => !documented.has(r))).toEqual([]);
    expect(doc.paths["/v1/exports"]!.post).toMatchObject({ requestBody: { content: { "application/json": { schema: { oneOf: expect.any(Array) } } } } });
  });

  it("reports health without a key", async () => {
    const res = await call("/healthz");
    expect(res.status).toBe(200);
    expect(res.json).toEqual({ status: "ok", version: "test" });
  });
});

describe("server-side failures", () => {
  const brokenSql: SqlClient = {
    query: async () => {
      throw new Error("connect ECONNREFUSED postgres://jobs:hunter2@db:5432/jobs");
    },
  };
  function capture(): { logger: Logger; errors: [string, LogFields | undefined][] } {
    const errors: [string, LogFields | undefined][] = [];
    const logger: Logger = {
      debug() {},
      info() {},
      warn: (msg, fields) => void errors.push([msg, fields]),
      error: (msg, fields) => void errors.push([msg, fields]),
      child: () => logger,
    };
    return { logger, errors };
  }

  it("answers an unexpected error with a generic 500 problem and logs it", async () => {
    const { logger, errors } = capture();
    const broken = createApp({ queue: createEngine({ sql }).queue, sql: brokenSql, apiKeys, logger });
    const res = await record(await broken.request("/v1/queues", { headers: { authorization: `Bearer ${admin.key}` } }));
    expectProblem(res, 500);
    expect(res.text).not.toContain("hunter2");
    expect(res.text).not.toContain("ECONNREFUSED");
    expect(errors).toHaveLength(1);
    expect(String(errors[0]![1]?.err)).toContain("ECONNREFUSED");
  });

  it("reports 503 from /healthz when the database fails", async () => {
    const { logger, errors } = capture();
    const broken = createApp({ queue: createEngine({ sql }).queue, sql: brokenSql, apiKeys, logger });
    const res = await record(await broken.request("/healthz"));
    expectProblem(res, 503);
    expect(res.text).not.toContain("hunter2");
    expect(errors).toHaveLength(1);
  });
});

describe("API keys", () => {
  it("stores only a peppered hash and lists keys without it", async () => {
    expect(keyA.key).toMatch(/^pmk_[A-Za-z0-9]{12}_[A-Za-z0-9_-]{43}$/);
    const { secret } = parseApiKey(keyA.key)!;
    const [row] = await sql.query<{ key_hash: string }>("select key_hash from api_keys where id = $1", [keyA.id]);
    expect(row!.key_hash).toMatch(/^[0-9a-f]{64}$/);
    expect(row!.key_hash).toBe(await apiKeys.hashSecret(secret));
    const listed = await apiKeys.list();
    expect(listed.find((k) => k.id === keyA.id)).toMatchObject({ tenantId: "tenant_a", admin: false, name: "a", revokedAt: null });
    expect(JSON.stringify(listed)).not.toMatch(/[0-9a-f]{64}/);
  });

  it("accepts a configured static admin key", async () => {
    const staticKeys = new ApiKeys(sql, { pepper: PEPPER, adminKey: "static-admin-key-for-tests-0123456789" });
    expect(await staticKeys.verify("static-admin-key-for-tests-0123456789")).toMatchObject({ admin: true, tenantId: null });
    expect(await staticKeys.verify("static-admin-key-for-tests-012345678")).toBeNull();
  });

  it("never returned a key's secret or hash in any response", async () => {
    const hashes = (await sql.query<{ key_hash: string }>("select key_hash from api_keys")).map((r) => r.key_hash);
    const secrets = [admin, keyA, keyB].flatMap((k) => [k.key, parseApiKey(k.key)!.secret]);
    expect(seen.length).toBeGreaterThan(40);
    for (const text of seen) {
      for (const s of [...secrets, ...hashes]) expect(text).not.toContain(s);
    }
  });
});

/**
 * Issue 10, item 5: no secret in any output. A marker secret is planted where a hostile or
 * careless client puts credentials (a file URL's userinfo, a presigned query string, an error
 * quoting them, fields named passwd/cookie/…, our own pmk_/whsec_ formats) and must appear in
 * no response body, no log line (the real Node logger, captured), no stored last_error or
 * imports.error, and no dashboard page.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { ApiKeys, type CreatedApiKey } from "../shared/api/api-keys";
import { createApp } from "../shared/api/app";
import { toJobView } from "../shared/api/job-view";
import { ExportLinks } from "../shared/exports/links";
import { importContacts } from "../shared/jobs/import-contacts";
import { serializeError } from "../shared/queue/outcome";
import { createEngine, type Engine } from "../shared/queue/engine";
import { WorkerPool } from "../shared/queue/worker";
import { generateDkimKeyPair } from "../shared/email/dkim-crypto";
import { isSecretName, redact, redactText } from "../shared/redact";
import { createHttpsStorage, shown } from "../shared/storage/https";
import { StorageRouter } from "../shared/storage/storage";
import { generateSecret } from "../shared/webhooks/signature";
import { createConsoleLogger } from "../workers/edge/logger";
import { createLocalStorage } from "../workers/node/local-storage";
import { createLogger } from "../workers/node/logger";
import { fastCatalog } from "./support/engine";
import { createTestDatabase, waitFor } from "./support/services";

const MARKER = "S3cr3tMarker";
/** Shaped like a real key (pmk_<12-char id>_<base64url secret>) with the marker in its secret. */
const API_KEY_LIKE = `pmk_AbCdEf123456_${MARKER}xyzXYZ0123456789`;

describe("redaction rules (shared/redact.ts)", () => {
  it("masks credential field names the old rules missed, at any depth, and leaves ordinary ones", () => {
    for (const name of ["passwd", "pwd", "pass", "authorization", "auth", "credentials", "private_key", "privateKey", "cookie", "Set-Cookie", "session", "bearer", "X-Amz-Signature", "client_secret", "api-key", "databaseUrl"]) {
      expect(isSecretName(name), name).toBe(true);
      expect(JSON.stringify(redact({ deep: [{ inner: { [name]: MARKER } }] })), name).not.toContain(MARKER);
    }
    for (const name of ["author", "passed", "keyword", "email", "name", "compass", "sessions_total_count_x"]) {
      if (name === "sessions_total_count_x") continue; // "session"-words are masked on purpose
      expect(isSecretName(name), name).toBe(false);
    }
    expect(redact({ author: "Ann", key: "jobs:email", nested: { key: MARKER } })).toEqual({ author: "Ann", key: "jobs:email", nested: { key: "[redacted]" } });
  });

  it("masks secrets by value whatever the field is called", () => {
    const whsec = generateSecret();
    const text = [
      `fetch https://user:${MARKER}@files.example/c.csv failed`,
      `https://${MARKER}@github.example/x.git`,
      `GET https://b.example/k.csv?X-Amz-Credential=AKIA${MARKER}&X-Amz-Signature=${MARKER}&page=2`,
      `/upload?token=${MARKER}&x=1`,
      `Authorization: Bearer ${MARKER}abcdef`,
      `key ${API_KEY_LIKE} was used`,
      `the secret is ${whsec}`,
    ].join("\n");
    const out = redactText(text);
    expect(out).not.toContain(MARKER);
    expect(out).not.toContain(whsec.slice(6));
    expect(out).toContain("https://user:***@files.example/c.csv");
    expect(out).toContain("page=2");
    expect(out).toContain("pmk_AbCdEf123456_***");
    expect(redact({ note: text, list: [text] })).not.toMatchObject({ note: expect.stringContaining(MARKER) });
    // Errors become plain objects with the message, stack and cause redacted.
    const err = new Error(`boom at https://u:${MARKER}@h.example/`, { cause: new Error(`token=${MARKER}`) });
    expect(JSON.stringify(redact({ err }))).not.toContain(MARKER);
  });

  it("masks a PEM private key (a DKIM key) by value, whole or cut short, keeping only its BEGIN line", async () => {
    const { privateKeyPem } = await generateDkimKeyPair();
    const body = privateKeyPem.split("\n").slice(1, -2).join("\n");
    const cases = [
      `signing with ${privateKeyPem} failed`,
      JSON.stringify({ note: privateKeyPem }),
      `cut short: ${privateKeyPem.slice(0, 400)}`,
      privateKeyPem.replace(/PRIVATE KEY/g, "RSA PRIVATE KEY"),
    ];
    for (const text of cases) {
      const out = redactText(text);
      expect(out).toMatch(/-----BEGIN (RSA )?PRIVATE KEY-----\*\*\*/);
      for (const line of body.split("\n").slice(0, 3)) expect(out).not.toContain(line);
    }
    expect(JSON.stringify(redact({ err: new Error(`bad key ${privateKeyPem}`) }))).not.toContain(body.split("\n")[1]);
    // What a key's public half and DNS record look like is not a secret, and stays.
    expect(redactText("v=DKIM1; k=rsa; p=MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA")).toBe("v=DKIM1; k=rsa; p=MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA");
  });

  it("keeps URLs that hold no secret as they were", () => {
    for (const plain of ["https://example.com/a?b=c", "postgres://user@host/db", "file:///data/files/acme/x.csv", "s3://bucket/acme/imports/a.csv"]) {
      expect(redactText(plain)).toBe(plain);
    }
  });

  it("stores no secret in last_error and shows none in a job view, even for rows stored before", () => {
    const err = new Error(`GET https://u:${MARKER}@h.example/f.csv?X-Amz-Signature=${MARKER}: 403 (Bearer ${MARKER}0000)`);
    const stored = serializeError(err, 1, new Date(), true);
    expect(JSON.stringify(stored)).not.toContain(MARKER);
    // A row written by older code still holds the secret: the view masks it.
    const job = {
      id: "1",
      tenantId: "acme",
      type: "import.contacts",
      priority: "low",
      state: "failed",
      attempt: 1,
      maxAttempts: 3,
      payload: { file_url: `https://h.example/f.csv?token=${MARKER}`, mapping: { email: "email" }, passwd: MARKER },
      progress: { note: `at https://a:${MARKER}@b.example/` },
      result: { cookie: MARKER, session: MARKER },
      lastError: { name: "Error", message: err.message, stack: err.stack, attempt: 1, retryable: false, at: new Date().toISOString() },
      runAt: new Date(),
      createdAt: new Date(),
      startedAt: null,
      finishedAt: null,
      idempotencyKey: null,
      parentId: null,
      cancelRequested: false,
    } as never;
    expect(JSON.stringify(toJobView(job, { def: importContacts, admin: true }))).not.toContain(MARKER);
  });

  it("shows no userinfo or query in the https store's errors", () => {
    expect(shown(`https://u:${MARKER}@h.example/f.csv?sig=${MARKER}`)).not.toContain(MARKER);
  });
});

describe("loggers", () => {
  const hostile = {
    url: `https://u:${MARKER}@files.example/c.csv?X-Amz-Signature=${MARKER}`,
    passwd: MARKER,
    pwd: MARKER,
    pass: MARKER,
    auth: MARKER,
    credentials: { user: "u", secret: MARKER },
    private_key: MARKER,
    cookie: MARKER,
    session: MARKER,
    bearer: MARKER,
    headers: { authorization: `Bearer ${MARKER}` },
    note: `the key ${API_KEY_LIKE}`,
    err: new Error(`connect to https://x:${MARKER}@db.example failed`),
    deep: { a: { b: { c: { d: { password: MARKER } } } } },
  };

  it("the Node logger writes no secret: message, fields at any depth, child bindings, errors", () => {
    const lines: string[] = [];
    const destination = new Writable({
      write(chunk: Buffer, _e, cb) {
        lines.push(...chunk.toString().split("\n").filter(Boolean));
        cb();
      },
    });
    const log = createLogger({ destination });
    log.info(`reading https://u:${MARKER}@files.example/c.csv`, hostile);
    log.child({ token: MARKER, url: `https://h.example/?token=${MARKER}` }).warn("child", { error: hostile.err });
    expect(lines).toHaveLength(2);
    for (const line of lines) expect(line).not.toContain(MARKER);
    const first = JSON.parse(lines[0]!);
    expect(first).toMatchObject({ passwd: "[redacted]", cookie: "[redacted]", url: expect.stringContaining("files.example/c.csv") });
    expect(first.err).toMatchObject({ type: "Error", message: expect.stringContaining("db.example failed") });
  });

  it("the edge logger writes no secret either", () => {
    const out: string[] = [];
    const spies = (["log", "warn", "error"] as const).map((m) => vi.spyOn(console, m).mockImplementation((...args: unknown[]) => void out.push(String(args[0]))));
    try {
      const log = createConsoleLogger({ runtime: "edge", token: MARKER });
      log.error(`reading https://u:${MARKER}@files.example/c.csv`, hostile);
      log.child({ session: MARKER }).info("child", { note: `Bearer ${MARKER}abcdefgh` });
    } finally {
      for (const s of spies) s.mockRestore();
    }
    expect(out).toHaveLength(2);
    for (const line of out) expect(line).not.toContain(MARKER);
  });
});

// ---------------------------------------------------------------------------------------------
// Over HTTP, with a worker: responses, logs, stored errors and the dashboard.
// ---------------------------------------------------------------------------------------------

describe("secrets through the API, the worker and the dashboard", () => {
  let db: Awaited<ReturnType<typeof createTestDatabase>>;
  let folder: string;
  let engine: Engine;
  let app: ReturnType<typeof createApp>;
  let tenant: CreatedApiKey;
  let admin: CreatedApiKey;
  const logLines: string[] = [];
  /** Every response body and header this block received. */
  const seen: string[] = [];
  const pools: WorkerPool[] = [];

  beforeAll(async () => {
    db = await createTestDatabase("secrets");
    folder = await mkdtemp(join(tmpdir(), "pm-secrets-"));
    engine = createEngine({ sql: db.sql, catalog: fastCatalog({ maxAttempts: 1 }) });
    await engine.dispatcher.start();
    const destination = new Writable({
      write(chunk: Buffer, _e, cb) {
        logLines.push(...chunk.toString().split("\n").filter(Boolean));
        cb();
      },
    });
    const logger = createLogger({ destination, level: "debug" });
    const local = createLocalStorage(folder);
    // Resolves every name publicly; nothing here connects anywhere.
    const guard = { resolver: { resolve: async () => ["93.184.216.34"] } };
    const storage = new StorageRouter([local, createHttpsStorage(guard)], local);
    const apiKeys = new ApiKeys(db.sql, { pepper: "secrets-test-pepper-0123" });
    tenant = await apiKeys.create({ tenantId: "acme", admin: false, name: "acme" });
    admin = await apiKeys.create({ tenantId: null, admin: true, name: "ops" });
    app = createApp({ queue: engine.queue, sql: db.sql, apiKeys, logger, webhookGuard: guard, exports: { storage, links: new ExportLinks("secrets-links-0123", "http://t") } });
    // A stand-in import handler that fails the way a real fetch error reads: quoting the URL,
    // its signature and an Authorization header, and logging what a careless handler would.
    const pool = new WorkerPool({
      name: "import",
      handlers: [
        {
          type: importContacts.type,
          run: async (payload: { file_url: string }, _job, ctx) => {
            ctx.logger.warn(`fetching ${payload.file_url}`, { url: payload.file_url, passwd: MARKER, detail: { cookie: MARKER } });
            throw new Error(`GET https://u:${MARKER}@files.example/c.csv (from ${payload.file_url}) failed; sent Authorization: Bearer ${MARKER}0000`);
          },
        },
      ],
      concurrency: 1,
      queue: engine.queue,
      stats: engine.stats,
      workerId: "secrets-test",
      idleWaitMs: 50,
      logger,
    });
    pools.push(pool);
  });
  afterAll(async () => {
    for (const p of pools) await p.stop();
    await engine.dispatcher.close();
    await db.drop();
    await rm(folder, { recursive: true, force: true });
  });

  async function request(path: string, init: { method?: string; key?: string; body?: unknown; cookie?: string; form?: Record<string, string> } = {}) {
    const headers: Record<string, string> = {};
    if (init.key) headers.authorization = `Bearer ${init.key}`;
    if (init.cookie) headers.cookie = init.cookie;
    let body: string | undefined;
    if (init.form) {
      headers["content-type"] = "application/x-www-form-urlencoded";
      body = new URLSearchParams(init.form).toString();
    } else if (init.body !== undefined) {
      headers["content-type"] = "application/json";
      body = JSON.stringify(init.body);
    }
    const res = await app.request(path, { method: init.method ?? (body === undefined ? "GET" : "POST"), headers, body, redirect: "manual" });
    const text = await res.text();
    seen.push(text, JSON.stringify([...res.headers]));
    let json: any;
    try {
      json = JSON.parse(text);
    } catch {
      json = undefined;
    }
    return { status: res.status, headers: res.headers, text, json };
  }

  const jobCount = async () => ((await db.sql.query<{ n: number }>("select count(*)::int as n from jobs"))[0]!).n;

  it("refuses credentials in a file URL with 422 naming file_url, on POST /v1/imports and POST /v1/jobs, storing nothing", async () => {
    const before = await jobCount();
    for (const fileUrl of [`https://user:${MARKER}@files.example/c.csv`, `https://${MARKER}@files.example/c.csv`, `s3://key:${MARKER}@bucket/acme/c.csv`]) {
      const imp = await request("/v1/imports", { key: tenant.key, body: { file_url: fileUrl, mapping: { col_0: "email" } } });
      expect(imp.status, imp.text).toBe(422);
      expect(imp.headers.get("content-type")).toContain("application/problem+json");
      expect(imp.json.errors.map((e: { path: string }) => e.path)).toEqual(["file_url"]);

      const job = await request("/v1/jobs", { key: tenant.key, body: { type: "import.contacts", payload: { file_url: fileUrl, mapping: { col_0: "email" } } } });
      expect(job.status, job.text).toBe(422);
      expect(job.json.errors.map((e: { path: string }) => e.path)).toEqual(["payload.file_url"]);

      const batch = await request("/v1/jobs/batch", { key: tenant.key, body: { jobs: [{ type: "import.contacts", payload: { file_url: fileUrl, mapping: { col_0: "email" } } }] } });
      expect(batch.status, batch.text).toBe(422);
      expect(batch.json.errors.map((e: { path: string }) => e.path)).toEqual(["jobs.0.payload.file_url"]);
    }
    expect(await jobCount()).toBe(before);
  });

  it("keeps presigned query values out of job listings, last_error, logs, GET /v1/imports/:id and the dashboard", async () => {
    const presigned = `https://files.example/c.csv?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIA${MARKER}&X-Amz-Signature=${MARKER}&token=${MARKER}`;
    const created = await request("/v1/jobs", { key: tenant.key, body: { type: "import.contacts", payload: { file_url: presigned, mapping: { col_0: "email" } } } });
    expect(created.status, created.text).toBe(201);
    expect(created.json.payload.file_url).toContain("X-Amz-Algorithm=AWS4-HMAC-SHA256");
    const id = created.json.id as string;

    pools[0]!.start();
    const failed = await waitFor(async () => {
      const job = await engine.queue.get(id, null);
      return job.state === "failed" ? job : null;
    });
    // Stored redacted, not only shown redacted.
    const [raw] = await db.sql.query<{ last_error: unknown }>("select last_error from jobs where id = $1", [id]);
    expect(JSON.stringify(raw!.last_error)).not.toContain(MARKER);
    expect(failed!.lastError?.message).toContain("files.example/c.csv");

    // The import's own row, as a handler that quotes the URL would have left it.
    await db.sql.query("insert into imports (id, tenant_id, file_url, status, error, finished_at) values ($1, 'acme', $2, 'failed', $3, now())", [
      id,
      presigned,
      `${presigned}: the server answered 403 (https://u:${MARKER}@files.example/)`,
    ]);

    const listing = await request("/v1/jobs?type=import.contacts", { key: tenant.key });
    expect(listing.status).toBe(200);
    expect(listing.json.jobs.length).toBeGreaterThan(0);
    const one = await request(`/v1/jobs/${id}`, { key: admin.key });
    expect(one.json.last_error.stack).toBeDefined();
    const status = await request(`/v1/imports/${id}`, { key: tenant.key });
    expect(status.status).toBe(200);
    expect(status.json.error).toContain("the server answered 403");

    const login = await request("/dashboard/login", { form: { key: admin.key, next: "/dashboard" } });
    expect(login.status, login.text).toBe(303);
    const cookie = (login.headers.get("set-cookie") ?? "").split(";")[0]!;
    const page = await request(`/dashboard/jobs/${id}`, { cookie });
    expect(page.status).toBe(200);
    expect(page.text).toContain("files.example/c.csv");
    const overview = await request("/dashboard?state=failed", { cookie });
    expect(overview.status).toBe(200);

    for (const body of seen) expect(body).not.toContain(MARKER);
    expect(logLines.some((l) => l.includes("fetching"))).toBe(true);
    for (const line of logLines) expect(line).not.toContain(MARKER);
  });
});

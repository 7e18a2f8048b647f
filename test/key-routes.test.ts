/**
 * The admin key API (shared/api/key-routes.ts) in-process: admin only, problem+json errors,
 * keys shown once and never listed with a secret or hash, revocation at once in the serving
 * process (its verification cache included), and the routes in /openapi.json. Also --help of
 * the two commands.
 */
import { execFile } from "node:child_process";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ApiKeys, type CreatedApiKey } from "../shared/api/api-keys";
import { createApp } from "../shared/api/app";
import { createEngine } from "../shared/queue/engine";
import { jsonApi } from "./support/api";
import { cleanupProcesses, startWorker } from "./support/processes";
import { createTestDatabase } from "./support/services";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const STATIC_ADMIN = "static-admin-key-for-the-key-routes-test";

let db: Awaited<ReturnType<typeof createTestDatabase>>;
let app: ReturnType<typeof createApp>;
let admin: CreatedApiKey;
let tenant: CreatedApiKey;

const request = (path: string, init: RequestInit) => app.request(path, init);
const as = (key: string) => jsonApi(request, key);

beforeAll(async () => {
  db = await createTestDatabase("key_routes");
  const engine = createEngine({ sql: db.sql });
  // A long cache: revocation must still be immediate here, as the routes use the app's ApiKeys.
  const apiKeys = new ApiKeys(db.sql, { pepper: "key-routes-test-pepper-0123", adminKey: STATIC_ADMIN, cacheTtlMs: 3_600_000 });
  admin = await apiKeys.create({ tenantId: null, admin: true, name: "ops" });
  tenant = await apiKeys.create({ tenantId: "acme", admin: false, name: "acme backend" });
  app = createApp({ queue: engine.queue, sql: db.sql, apiKeys, version: "test" });
});

afterAll(async () => {
  await db?.drop();
});

describe("/v1/keys", () => {
  it("creates a tenant key that works at once, shown once, listed without secret or hash", async () => {
    const created = await as(admin.key).call("POST", "/v1/keys", { tenant_id: "globex", name: "globex web" });
    expect(created.status).toBe(201);
    expect(created.json).toMatchObject({ tenant_id: "globex", admin: false, name: "globex web", revoked_at: null });
    expect(created.json.key).toMatch(new RegExp(`^pmk_${created.json.id}_[A-Za-z0-9_-]{40,}$`));

    const jobs = await as(created.json.key).call("POST", "/v1/jobs", { type: "email.send", payload: { recipient: "a@example.com", template_id: "welcome" } });
    expect(jobs.status).toBe(201);
    expect(jobs.json.tenant_id).toBe("globex");

    const list = await as(admin.key).ok("GET", "/v1/keys");
    const secret = created.json.key.slice(17);
    expect(JSON.stringify(list)).not.toContain(secret);
    expect(JSON.stringify(list)).not.toMatch(/hash|[0-9a-f]{64}/);
    expect(list.keys.find((k: { id: string }) => k.id === created.json.id)).toEqual({ ...created.json, key: undefined });
    const onlyGlobex = await as(admin.key).ok("GET", "/v1/keys?tenant_id=globex");
    expect(onlyGlobex.keys.map((k: { id: string }) => k.id)).toEqual([created.json.id]);
    expect(await as(admin.key).ok("GET", `/v1/keys/${created.json.id}`)).toEqual(list.keys.find((k: { id: string }) => k.id === created.json.id));
  });

  it("creates an admin key, with a default name", async () => {
    const created = await as(STATIC_ADMIN).call("POST", "/v1/keys", { admin: true });
    expect(created.status).toBe(201);
    expect(created.json).toMatchObject({ tenant_id: null, admin: true, name: "admin" });
    expect((await as(created.json.key).call("GET", "/v1/scaling")).status).toBe(200);
  });

  it("revokes at once in this process, by DELETE and by POST .../revoke; twice is a 409", async () => {
    for (const how of ["DELETE", "POST"] as const) {
      const created = await as(admin.key).ok("POST", "/v1/keys", { tenant_id: "acme", name: `to revoke by ${how}` });
      expect((await as(created.key).call("GET", "/v1/jobs")).status).toBe(200); // now in the verification cache
      const path = how === "DELETE" ? `/v1/keys/${created.id}` : `/v1/keys/${created.id}/revoke`;
      const revoked = await as(admin.key).call(how, path);
      expect(revoked.status).toBe(200);
      expect(revoked.json.revoked_at).toEqual(expect.any(String));
      const after = await as(created.key).call("GET", "/v1/jobs");
      expect(after.status).toBe(401);
      const again = await as(admin.key).call(how, path);
      expect(again.status).toBe(409);
      expect(again.json.type).toBe("urn:penguinmails:problem:conflict");
    }
  });

  it("is admin only, and answers every mistake with problem+json", async () => {
    const refusals: [string, string, unknown, number, RegExp][] = [
      ["POST", "/v1/keys", { admin: true }, 403, /admin key/],
      ["GET", "/v1/keys", undefined, 403, /admin key/],
      ["DELETE", `/v1/keys/${admin.key.slice(4, 16)}`, undefined, 403, /admin key/],
    ];
    for (const [method, path, body, status, detail] of refusals) {
      const res = await request(path, {
        method,
        headers: { authorization: `Bearer ${tenant.key}`, "content-type": "application/json" },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
      expect(res.status, `${method} ${path}`).toBe(status);
      expect(res.headers.get("content-type")).toBe("application/problem+json");
      expect(((await res.json()) as { detail: string }).detail).toMatch(detail);
    }
    expect((await request("/v1/keys", { method: "GET" })).status).toBe(401);

    const api = as(admin.key);
    const invalid = [
      [{}, "tenant_id"],
      [{ admin: true, tenant_id: "acme" }, "tenant_id"],
      [{ tenant_id: "not a tenant!" }, "tenant_id"],
      [{ tenant_id: "acme", name: "" }, "name"],
      [{ tenant_id: "acme", tenantId: "acme" }, "tenantId"],
      [{ admin: "yes" }, "admin"],
    ] as const;
    for (const [body, path] of invalid) {
      const res = await api.call("POST", "/v1/keys", body);
      expect(res.status, JSON.stringify(body)).toBe(422);
      expect(res.json.errors.map((e: { path: string }) => e.path), JSON.stringify(body)).toContain(path);
    }
    expect((await api.call("GET", "/v1/keys?tenant=acme")).status).toBe(422);
    expect((await api.call("DELETE", "/v1/keys/AAAAAAAAAAAA")).status).toBe(404);
    expect((await api.call("DELETE", "/v1/keys/nope")).status).toBe(404);
    const staticKey = await api.call("DELETE", "/v1/keys/static-admin");
    expect(staticKey.status).toBe(409);
    expect(staticKey.json.detail).toMatch(/ADMIN_API_KEY/);
  });

  it("is in the OpenAPI document", async () => {
    const doc = (await (await app.request("/openapi.json")).json()) as { paths: Record<string, Record<string, { operationId: string }>> };
    expect(doc.paths["/v1/keys"]?.post?.operationId).toBe("createApiKey");
    expect(doc.paths["/v1/keys"]?.get?.operationId).toBe("listApiKeys");
    expect(doc.paths["/v1/keys/{id}"]?.get?.operationId).toBe("getApiKey");
    expect(doc.paths["/v1/keys/{id}"]?.delete?.operationId).toBe("revokeApiKey");
    expect(doc.paths["/v1/keys/{id}/revoke"]?.post?.operationId).toBe("revokeApiKeyPost");
  });
});

const run = (args: string[]): Promise<{ code: number; stdout: string; stderr: string }> =>
  new Promise((resolve) => {
    execFile(process.execPath, ["--import", "tsx", ...args], { cwd: ROOT, env: { ...process.env, PORT: "not a port" } }, (error, stdout, stderr) => {
      resolve({ code: error ? ((error as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
  });

describe("--help", () => {
  it("npm start -- --help prints the usage and exits 0 (before reading the environment)", async () => {
    const r = await run(["workers/node.ts", "--help"]);
    expect(r).toMatchObject({ code: 0, stderr: "" });
    expect(r.stdout).toMatch(/^usage: npm start/);
    expect(r.stdout).toContain("--worker-only");
  }, 60_000);

  it("npm run keys -- --help prints the usage and exits 0", async () => {
    for (const args of [["keys", "--help"], ["keys", "create", "--help"], ["migrate", "--help"]]) {
      const r = await run(["workers/cli.ts", ...args]);
      expect(r, args.join(" ")).toMatchObject({ code: 0, stderr: "" });
      expect(r.stdout).toContain("npm run keys -- create --admin");
      expect(r.stdout).toContain("POST /v1/keys");
    }
  }, 60_000);
});

describe("the first admin key with DATABASE_URL", () => {
  afterAll(async () => {
    await cleanupProcesses();
  });

  it("the banner says how to make one while there is none, and npm run keys makes it with the server running", async () => {
    const pg = await createTestDatabase("first_admin");
    const env = { DATABASE_URL: pg.url, API_KEY_PEPPER: "first-admin-test-pepper-0123", PORT: 0, ROLE: "api", LOG_LEVEL: "info" };
    try {
      const before = await startWorker("api without admin", env, { script: "workers/node.ts" });
      expect(before.output()).toContain("admin key: none yet. Make the first one with `npm run keys -- create --admin --name ops`");
      const made = await new Promise<{ code: number; stdout: string }>((resolve) => {
        const childEnv: Record<string, string> = { ...(process.env as Record<string, string>), DATABASE_URL: pg.url, API_KEY_PEPPER: env.API_KEY_PEPPER };
        execFile(process.execPath, ["--import", "tsx", "workers/cli.ts", "keys", "create", "--admin", "--name", "ops"], { cwd: ROOT, env: childEnv }, (error, stdout) =>
          resolve({ code: error ? 1 : 0, stdout }),
        );
      });
      expect(made.code).toBe(0);
      const key = made.stdout.split("\n")[1]!;
      // Postgres is shared: the running server knows the key at once.
      expect((await fetch(`${before.url}/v1/keys`, { headers: { authorization: `Bearer ${key}` } })).status).toBe(200);
      await before.kill("SIGTERM");
      const after = await startWorker("api with admin", env, { script: "workers/node.ts" });
      expect(after.output()).not.toContain("admin key: none yet");
      await after.kill("SIGTERM");
    } finally {
      await pg.drop();
    }
  }, 120_000);
});

describe("the dashboard's Keys page", () => {
  it("lists keys, makes one (shown once, on the answer itself) and revokes it", async () => {
    const get = (path: string) => app.request(path, { headers: { authorization: `Bearer ${admin.key}` } });
    const post = (path: string, form: Record<string, string>) =>
      app.request(path, {
        method: "POST",
        headers: { authorization: `Bearer ${admin.key}`, "content-type": "application/x-www-form-urlencoded" },
        body: new URLSearchParams(form).toString(),
      });
    const page = await (await get("/dashboard/keys")).text();
    expect(page).toContain(`data-key="${tenant.key.slice(4, 16)}"`);
    expect(page).not.toContain(tenant.key.slice(17));
    const csrf = /name="csrf_token" value="([^"]+)"/.exec(page)![1]!;

    const made = await post("/dashboard/keys", { csrf_token: csrf, tenant: "initech", name: "from the dashboard" });
    expect(made.status).toBe(201);
    const html = await made.text();
    const key = /pmk_[A-Za-z0-9]{12}_[A-Za-z0-9_-]+/.exec(html.slice(html.indexOf('data-testid="created-key"')))![0];
    expect((await as(key).call("GET", "/v1/jobs")).status).toBe(200);
    expect(await (await get("/dashboard/keys")).text()).not.toContain(key); // once

    expect((await post("/dashboard/keys", { csrf_token: "forged", tenant: "initech" })).status).toBe(403);
    expect((await post("/dashboard/keys", { csrf_token: csrf, tenant: "initech", admin: "true" })).status).toBe(422);

    const revoked = await post(`/dashboard/keys/${key.slice(4, 16)}/revoke`, { csrf_token: csrf, back: "/dashboard/keys" });
    expect(revoked.status).toBe(303);
    expect(revoked.headers.get("location")).toBe(`/dashboard/keys?notice=key-revoked&n_key=${key.slice(4, 16)}`);
    expect((await as(key).call("GET", "/v1/jobs")).status).toBe(401);
    expect(await (await get(revoked.headers.get("location")!)).text()).toContain(`Key ${key.slice(4, 16)} was revoked.`);
  });
});

/**
 * The API as a contract: the served /openapi.json against the app that serves it.
 * - Every route the app serves (walked from Hono's app.routes by routeCoverage, not a list kept
 *   here; the dashboard's pages aside) is in the document, which is generated from the routes'
 *   own declarations: an app with one route registered without its declaration fails the check.
 * - Every operation declares its tag, summary, security and the problems it can answer with
 *   (the middleware's too: 400 and 422 for any URL, 401 and 503 for any /v1 route).
 * - The document is valid OpenAPI 3.1 (swagger-parser), and request schemas leave fields with
 *   defaults optional.
 * - The answers of a small end-to-end flow, successes and problems, are validated against the
 *   schema the document gives for that operation, status and media type (ajv, JSON Schema
 *   2020-12 as OpenAPI 3.1 uses it); an undocumented status fails too, and so does an answer
 *   whose shape changed from its route's declaration.
 * - Redocly's recommended ruleset finds nothing (tools/redocly.yaml), run with no network.
 */
import SwaggerParser from "@apidevtools/swagger-parser";
import Ajv2020 from "ajv/dist/2020.js";
import addFormats from "ajv-formats";
import { execFile, spawnSync } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { Hono } from "hono";
import { z } from "zod";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ApiKeys, type CreatedApiKey } from "../shared/api/api-keys";
import { createApp } from "../shared/api/app";
import { openApiDocument } from "../shared/api/openapi";
import { documentedOperations, routeCoverage, servedOperations, undeclaredRoutes } from "../shared/api/openapi-coverage";
import { declarationOf, describeRoute, json, jsonBody, problems } from "../shared/api/openapi-route";
import { queueListSchema } from "../shared/api/schemas";
import { catalog } from "../shared/jobs/catalog";
import { UnsubscribeLinks } from "../shared/email/unsubscribe";
import { TrackingTokens } from "../shared/email/tracking-tokens";
import { ExportLinks } from "../shared/exports/links";
import type { Sql } from "../shared/ports";
import { createEngine } from "../shared/queue/engine";
import { createLocalStorage } from "../workers/node/local-storage";
import { postfixDsn } from "./support/dsn";
import { createTestDatabase } from "./support/services";

type Json = Record<string, any>;

let db: Awaited<ReturnType<typeof createTestDatabase>>;
let sql: Sql;
const trackingTokens = new TrackingTokens("contract-unsubscribe-secret", "http://localhost");
let app: ReturnType<typeof createApp>;
let doc: Json;
let admin: CreatedApiKey;
let tenant: CreatedApiKey;
let folder: string;
/** Operations the flow answered, to tell how much of the document it covered. */
const exercised = new Set<string>();

const pointer = (...parts: string[]) => parts.map((p) => p.replace(/~/g, "~0").replace(/\//g, "~1")).join("/");

interface Answer {
  status: number;
  type: string;
  text: string;
}

/**
 * A checker of answers against a document: the operation must document the status, and a body
 * with a documented media type must match its schema. Throws (an expect) naming what is off.
 */
function contractChecker(document: Json): (method: string, template: string, res: Answer) => void {
  const ajv = new Ajv2020({ strict: false, allErrors: true });
  addFormats(ajv);
  ajv.addSchema(document, "openapi");
  return (method, template, res) => {
    const op = document.paths[template]?.[method.toLowerCase()];
    expect(op, `${method} ${template} is not in the document`).toBeDefined();
    let response = op.responses[String(res.status)];
    let where = `#/${pointer("paths", template, method.toLowerCase(), "responses", String(res.status))}`;
    expect(response, `${method} ${template} answered ${res.status}, which it does not document: ${res.text.slice(0, 300)}`).toBeDefined();
    if (response.$ref) {
      where = response.$ref;
      response = where.slice(2).split("/").reduce((o: Json, k: string) => o[k.replace(/~1/g, "/").replace(/~0/g, "~")], document);
    }
    // No content: a 204, and a redirect documented without a body (GET /c/{token}).
    if (res.status === 204 || (res.status >= 300 && res.status < 400 && !response.content)) return expect(res.text).toBe("");
    const base = (type: string) => type.split(";")[0]!.trim();
    const content = response.content as Json | undefined;
    expect(content, `${method} ${template} ${res.status} documents no body`).toBeDefined();
    // Matched by media type; the documented key may carry parameters (Prometheus' version).
    const mediaType = Object.keys(content!).find((k) => base(k) === base(res.type));
    expect(mediaType, `${method} ${template} ${res.status}: media type ${res.type} is not documented`).toBeDefined();
    if (!mediaType!.includes("json")) return;
    const validate = ajv.getSchema(`openapi${where}/${pointer("content", mediaType!, "schema")}`);
    expect(validate).toBeDefined();
    const body = JSON.parse(res.text);
    const ok = validate!(body);
    expect(ok, `${method} ${template} ${res.status}: ${ajv.errorsText(validate!.errors)}\n${res.text.slice(0, 600)}`).toBe(true);
  };
}

let checkAnswer: ReturnType<typeof contractChecker>;

/** Checks one answer of the contract flow's app against the document it serves. */
function expectDocumented(method: string, template: string, res: Answer): void {
  checkAnswer(method, template, res);
  exercised.add(`${method} ${template}`);
}

interface Call {
  key?: string;
  params?: Record<string, string>;
  query?: Record<string, string>;
  body?: unknown;
  /** Sent as text/csv instead of a JSON body. */
  csv?: string;
  /** Sent as is with its own media type (a DSN's message/rfc822). */
  raw?: { type: string; body: string };
}

/** Calls the app and checks the answer against the document; returns it for the flow to use. */
async function api(method: string, template: string, opts: Call = {}): Promise<{ status: number; json: any; text: string }> {
  let url = template.replace(/\{(\w+)\}/g, (_, name: string) => encodeURIComponent(opts.params?.[name] ?? ""));
  if (opts.query) url += `?${new URLSearchParams(opts.query)}`;
  const headers: Record<string, string> = {};
  if (opts.key) headers.authorization = `Bearer ${opts.key}`;
  if (opts.body !== undefined) headers["content-type"] = "application/json";
  if (opts.csv !== undefined) headers["content-type"] = "text/csv";
  if (opts.raw !== undefined) headers["content-type"] = opts.raw.type;
  const res = await app.request(url, { method, headers, body: opts.raw?.body ?? opts.csv ?? (opts.body === undefined ? undefined : JSON.stringify(opts.body)) });
  const text = await res.text();
  expectDocumented(method, template, { status: res.status, type: res.headers.get("content-type") ?? "", text });
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: res.status, json, text };
}

beforeAll(async () => {
  db = await createTestDatabase("contract");
  sql = db.sql;
  folder = await mkdtemp(join(tmpdir(), "contract-"));
  const engine = createEngine({ sql });
  const apiKeys = new ApiKeys(sql, { pepper: "contract-pepper" });
  admin = await apiKeys.create({ tenantId: null, admin: true, name: "ops" });
  tenant = await apiKeys.create({ tenantId: "acme", admin: false, name: "web" });
  await sql.query("insert into tenants (id, name) values ('acme', 'Acme')");
  app = createApp({
    queue: engine.queue,
    sql,
    apiKeys,
    version: "contract",
    unsubscribe: new UnsubscribeLinks("contract-unsubscribe-secret", "http://localhost"),
    // Hits go nowhere here: the routes' answers are what is checked (test/engagement.test.ts records them).
    tracking: { tokens: trackingTokens, sink: { record: () => {} } },
    exports: { storage: createLocalStorage(folder), links: new ExportLinks("contract-pepper", "http://localhost") },
    resendWebhookSecret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    dkimEncryptionKey: "contract-dkim-encryption-key-0123456789",
    // Webhook endpoints on a name that resolves to a public address (nothing is delivered here).
    webhookGuard: { resolver: { resolve: async () => ["93.184.215.14"] } },
  });
  doc = (await (await app.request("/openapi.json")).json()) as Json;
  checkAnswer = contractChecker(doc);
});

afterAll(async () => {
  await db?.drop();
  if (folder) await rm(folder, { recursive: true, force: true });
});

const root = resolve(import.meta.dirname, "..");
/** In a network namespace of its own where the machine allows it (root, or user namespaces): then it cannot fetch anything. */
const OFFLINE = spawnSync("unshare", ["-n", "true"], { stdio: "ignore" }).status === 0 ? ["unshare", "-n"] : [];

/** Redocly CLI's findings on a document: "<severity> <rule> at <pointer>: <message>". */
async function redoclyLint(dir: string, document: Json): Promise<string[]> {
  const file = join(dir, "openapi.json");
  await writeFile(file, JSON.stringify(document));
  const [cmd, ...args] = [
    ...OFFLINE,
    process.execPath,
    join(root, "node_modules", "@redocly", "cli", "bin", "cli.js"),
    "lint",
    file,
    "--config",
    join(root, "tools", "redocly.yaml"),
    "--format=json",
  ];
  // Exit code 1 when it finds errors; the findings are on stdout either way.
  const stdout = await new Promise<string>((done, fail) =>
    execFile(cmd!, args, { cwd: dir, timeout: 60_000, env: { ...process.env, REDOCLY_TELEMETRY: "off", REDOCLY_SUPPRESS_UPDATE_NOTICE: "true" } }, (err, out, errOut) =>
      out.trim().startsWith("{") ? done(out) : fail(err ?? new Error(`redocly printed no report: ${errOut}`)),
    ),
  );
  const report = JSON.parse(stdout) as { problems: { ruleId: string; severity: string; message: string; location: { pointer?: string }[] }[] };
  return report.problems.map((p) => `${p.severity} ${p.ruleId} at ${p.location[0]?.pointer ?? "?"}: ${p.message}`);
}

describe("the document covers the app", () => {
  it("documents every route the app serves, and nothing else", () => {
    expect(servedOperations(app.routes).length).toBeGreaterThan(55);
    expect(routeCoverage(app.routes, doc)).toEqual({ undocumented: [], unserved: [] });
  });

  it("fails when a route is registered without its declaration", async () => {
    // The same app, its routes registered again, but GET /v1/lists and DELETE /v1/jobs/:id
    // without their describeRoute: both are still served, and missing from the document.
    const dropped = new Set(["GET /v1/lists", "DELETE /v1/jobs/:id"]);
    const trimmed = new Hono();
    for (const r of app.routes) {
      if (dropped.has(`${r.method} ${r.path}`) && declarationOf(r.handler)) continue;
      trimmed.on(r.method, r.path, r.handler);
    }
    const trimmedDoc = openApiDocument(trimmed, { catalog, version: "contract" });
    expect(routeCoverage(trimmed.routes, trimmedDoc)).toEqual({ undocumented: ["DELETE /v1/jobs/{id}", "GET /v1/lists"], unserved: [] });
    expect(trimmedDoc.paths).not.toHaveProperty(["/v1/lists", "get"]);
    expect(documentedOperations(trimmedDoc)).toHaveLength(documentedOperations(doc).length - 2);
    // createApp refuses such an app at once, by the same routes, without making the document.
    expect(undeclaredRoutes(trimmed.routes)).toEqual(["DELETE /v1/jobs/{id}", "GET /v1/lists"]);
    expect(undeclaredRoutes(app.routes)).toEqual([]);

    // A route added to the real app without a declaration is found the same way.
    const grown = createApp({ queue: { catalog } as never, sql, apiKeys: new ApiKeys(sql, { pepper: "contract-pepper" }) });
    grown.get("/v1/undeclared", (c) => c.json({}));
    const grownDoc = (await (await grown.request("/openapi.json")).json()) as Json;
    expect(routeCoverage(grown.routes, grownDoc).undocumented).toEqual(["GET /v1/undeclared"]);
  });

  it("declares a tag, a summary, security and the middleware's problems on every operation", () => {
    const tags = new Set((doc.tags as Json[]).map((t) => t.name));
    const publicPaths = /^\/(healthz|openapi\.json|files\/|providers\/|u\/|c\/|o\/)/;
    const offenders: string[] = [];
    for (const [path, ops] of Object.entries<Json>(doc.paths)) {
      for (const [method, op] of Object.entries<Json>(ops)) {
        const at = `${method.toUpperCase()} ${path}`;
        const statuses = Object.keys(op.responses);
        const need = (ok: boolean, what: string) => ok || offenders.push(`${at}: ${what}`);
        need(op.operationId && op.summary, "operationId and summary");
        need(op.tags?.length === 1 && tags.has(op.tags[0]), `one declared tag, not ${JSON.stringify(op.tags)}`);
        need(Array.isArray(op.security), "security");
        // Redocly's operation-2xx-response, here (tools/redocly.yaml): the tracked-link redirect has none.
        need(statuses.some((s) => s.startsWith("2")) || (at === "GET /c/{token}" && statuses.includes("302")), "a 2xx answer");
        need(statuses.includes("400") && statuses.includes("422"), "400 and 422 (the text rule of every URL)");
        if (path.startsWith("/v1/")) {
          need(JSON.stringify(op.security) === JSON.stringify([{ bearerAuth: [] }]), "bearer security");
          need(statuses.includes("401") && statuses.includes("503"), "401 and 503 (the key check reads the database)");
        } else if (publicPaths.test(path)) {
          need(op.security.length === 0, "no security");
        }
        // Every route but the unsubscribe page, the tracking redirect and pixel (their hits go to a
        // buffer written later) and this document reads the database.
        const readsNothing = ["GET /u/{token}", "GET /openapi.json", "GET /c/{token}", "GET /o/{token}"];
        if (!readsNothing.includes(at)) need(statuses.includes("503"), "503");
        if (op.requestBody?.content?.["application/json"]) need(statuses.includes("413"), "413 (a body over the limit)");
        for (const [status, response] of Object.entries<Json>(op.responses)) {
          if (Number(status) >= 400 && !(path === "/u/{token}" && status === "404")) {
            need(response.$ref?.startsWith("#/components/responses/"), `${status} is a problem response`);
          }
        }
      }
    }
    expect(offenders).toEqual([]);
    expect(doc.components.responses.Unavailable.headers).toHaveProperty("Retry-After");
    expect(doc.servers).toEqual([{ url: "/", description: expect.any(String) }]);
    expect(doc.components.securitySchemes.bearerAuth).toMatchObject({ type: "http", scheme: "bearer" });
  });

  it("is a valid OpenAPI 3.1 document", async () => {
    await expect(SwaggerParser.validate(structuredClone(doc) as never)).resolves.toBeDefined();
    const ids = Object.values<Json>(doc.paths).flatMap((ops) => Object.values<Json>(ops).map((o) => o.operationId));
    expect(new Set(ids).size, "operationIds are unique").toBe(ids.length);
  });

  it("lints clean with Redocly's recommended rules, without the network", async () => {
    const dir = await mkdtemp(join(tmpdir(), "pm-redocly-"));
    try {
      expect(await redoclyLint(dir, doc)).toEqual([]);
      // Not vacuous: the same document without its servers is an error of that ruleset.
      const { servers: _servers, ...bare } = doc;
      expect(await redoclyLint(dir, bare)).toContain("error no-empty-servers at #/openapi: Servers must be present.");
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it("leaves fields with defaults optional in request bodies and queries", () => {
    const offenders: string[] = [];
    const walk = (schema: unknown, at: string) => {
      if (!schema || typeof schema !== "object") return;
      const s = schema as Json;
      if (s.$ref) return walk(s.$ref.slice(2).split("/").reduce((o: Json, k: string) => o[k], doc), s.$ref);
      for (const [name, prop] of Object.entries<Json>(s.properties ?? {})) {
        if (prop && "default" in prop && (s.required ?? []).includes(name)) offenders.push(`${at}.${name}`);
        walk(prop, `${at}.${name}`);
      }
      for (const k of ["items", "additionalProperties"]) walk(s[k], `${at}.${k}`);
      for (const k of ["oneOf", "anyOf", "allOf"]) for (const [i, b] of (s[k] ?? []).entries()) walk(b, `${at}.${k}.${i}`);
    };
    for (const [p, ops] of Object.entries<Json>(doc.paths)) {
      for (const [m, op] of Object.entries<Json>(ops)) {
        for (const [type, media] of Object.entries<Json>(op.requestBody?.content ?? {})) walk(media.schema, `${m} ${p} ${type}`);
        for (const prm of op.parameters ?? []) if (prm.required && prm.schema && "default" in prm.schema) offenders.push(`${m} ${p} ?${prm.name}`);
      }
    }
    expect(offenders).toEqual([]);
    // The case users hit: a webhook endpoint needs only its url, a segment no filters.
    expect(doc.paths["/v1/webhooks/endpoints"].post.requestBody.content["application/json"].schema.required).toEqual(["url"]);
  });

  it("gives the shown-once secret and the download link real schemas", () => {
    const created = doc.paths["/v1/webhooks/endpoints"].post.responses["201"].content["application/json"].schema;
    expect(created.required).toContain("secret");
    const exported = doc.paths["/v1/exports/{id}"].get.responses["200"].content["application/json"].schema;
    expect(exported).toEqual({ $ref: "#/components/schemas/Export" });
    expect(doc.components.schemas.Export.properties.download_url).toBeDefined();
  });
});

describe("real answers match their documented schemas", () => {
  it("the jobs and queues routes", async () => {
    const job = await api("POST", "/v1/jobs", {
      key: tenant.key,
      body: { type: "email.send", payload: { recipient: "ada@example.com", template_id: "sys_transactional", variables: { title: "Hi" } } },
    });
    expect(job.status).toBe(201);
    const id = job.json.id as string;
    await api("POST", "/v1/jobs/batch", { key: tenant.key, body: { jobs: [{ type: "email.send", payload: { recipient: "b@example.com", template_id: "t1" } }] } });
    await api("GET", "/v1/jobs", { key: tenant.key, query: { limit: "1" } });
    await api("GET", "/v1/jobs/{id}", { key: tenant.key, params: { id } });
    const waited = await api("GET", "/v1/jobs/{id}", { key: tenant.key, params: { id }, query: { wait: "1" } });
    expect(waited.json.state).toBe("queued");
    expect((await api("DELETE", "/v1/jobs/{id}", { key: tenant.key, params: { id } })).status).toBe(409);
    await api("POST", "/v1/jobs/{id}/cancel", { key: tenant.key, params: { id } });
    // A finished job's event stream is its view and `end`, then it closes.
    const events = await api("GET", "/v1/jobs/{id}/events", { key: tenant.key, params: { id } });
    expect(events.text).toMatch(/^event: job\n[\s\S]*event: end\n/);
    await api("GET", "/v1/jobs/{id}/events", { key: tenant.key, params: { id: "999999999" } });
    expect((await api("POST", "/v1/jobs/{id}/cancel", { key: tenant.key, params: { id } })).status).toBe(409);
    await api("POST", "/v1/jobs/{id}/retry", { key: tenant.key, params: { id } });
    await api("POST", "/v1/jobs/{id}/cancel", { key: tenant.key, params: { id } });
    expect((await api("DELETE", "/v1/jobs/{id}", { key: tenant.key, params: { id } })).status).toBe(204);
    expect((await api("GET", "/v1/jobs/{id}", { key: tenant.key, params: { id } })).status).toBe(404);
    expect((await api("POST", "/v1/jobs", { key: tenant.key, body: { type: "email.send", payload: { recipient: "nope" } } })).status).toBe(422);
    expect((await api("GET", "/v1/jobs", {})).status).toBe(401);
    expect((await api("GET", "/v1/jobs/{id}", { key: tenant.key, params: { id }, query: { wait: "61" } })).status).toBe(422);

    for (const key of [admin.key, tenant.key]) await api("GET", "/v1/queues", { key });
    await api("POST", "/v1/queues/{type}/pause", { key: admin.key, params: { type: "email.send" }, body: { tenant_id: "acme" } });
    const paused = await api("GET", "/v1/queues", { key: admin.key });
    expect(paused.json.queues.find((q: Json) => q.type === "email.send")).toMatchObject({ paused_tenants: ["acme"] });
    await api("POST", "/v1/queues/{type}/resume", { key: admin.key, params: { type: "email.send" }, body: { tenant_id: "acme" } });
    await api("POST", "/v1/queues/{type}/retry-failed", { key: admin.key, params: { type: "email.send" } });
    expect((await api("POST", "/v1/queues/{type}/pause", { key: tenant.key, params: { type: "email.send" } })).status).toBe(403);
    await api("GET", "/v1/scaling", { key: admin.key });
    await api("GET", "/v1/workers", { key: admin.key });
    await api("GET", "/v1/schedules", { key: admin.key });
    expect((await api("GET", "/v1/schedules", { key: tenant.key })).status).toBe(403);
    expect((await api("GET", "/v1/sending/guards", { key: tenant.key })).json.guards).toMatchObject([{ tenant_id: "acme", state: "clear" }]);
    await api("GET", "/v1/sending/guards", { key: admin.key });
    expect((await api("POST", "/v1/sending/guards/reset", { key: admin.key, query: { tenant_id: "acme" } })).json).toMatchObject({ state: "clear" });
    expect((await api("POST", "/v1/sending/guards/reset", { key: tenant.key })).status).toBe(403);
    await api("GET", "/healthz");
  });

  it("the DKIM routes", async () => {
    const t = { key: tenant.key, params: { domain: "mail.acme.example" } };
    expect((await api("GET", "/v1/domains/{domain}/dkim", t)).status).toBe(404);
    expect((await api("POST", "/v1/domains/{domain}/dkim/rotate", t)).status).toBe(404);
    expect((await api("POST", "/v1/domains/{domain}/dkim", t)).status).toBe(201);
    expect((await api("POST", "/v1/domains/{domain}/dkim", t)).status).toBe(409);
    expect((await api("POST", "/v1/domains/{domain}/dkim/rotate", { ...t, body: { retiring_hours: 24 } })).status).toBe(200);
    const list = await api("GET", "/v1/domains/{domain}/dkim", { key: admin.key, params: t.params, query: { tenant_id: "acme" } });
    expect(list.json.keys.map((k: { status: string }) => k.status)).toEqual(["active", "retiring"]);
    expect((await api("GET", "/v1/domains/{domain}/dkim", { ...t, params: { domain: "not a domain" } })).status).toBe(422);
    expect((await api("POST", "/v1/domains/{domain}/dkim/rotate", { ...t, body: { retiring_hours: -1 } })).status).toBe(422);
  });

  it("the email pipeline's routes", async () => {
    const t = { key: tenant.key };
    const list = await api("POST", "/v1/lists", { ...t, body: { name: "Newsletter" } });
    expect(list.status).toBe(201);
    await api("GET", "/v1/lists/{id}", { ...t, params: { id: list.json.id } });
    await api("GET", "/v1/lists", t);
    await api("GET", "/v1/lists", { key: admin.key, query: { tenant_id: "acme", limit: "1" } });
    expect((await api("GET", "/v1/lists", { key: admin.key })).status).toBe(422);
    expect((await api("GET", "/v1/lists", { ...t, query: { cursor: "bogus" } })).status).toBe(422);
    await api("POST", "/v1/contacts", { ...t, body: { list_id: list.json.id, contacts: [{ email: "ada@example.com", name: "Ada", attributes: { plan: "pro" } }] } });
    await api("GET", "/v1/contacts", t);
    const segment = await api("POST", "/v1/segments", { ...t, body: { name: "Pro", list_id: list.json.id, filters: [{ attribute: "plan", op: "eq", value: "pro" }] } });
    expect(segment.status).toBe(201);
    const template = await api("POST", "/v1/templates", {
      ...t,
      body: { name: "Hello", subject: "Hi {{name}}", blocks: [{ type: "heading", text: "Hi" }, { type: "button", text: "Go", href: "https://example.com" }, { type: "divider" }] },
    });
    await api("GET", "/v1/templates/{id}", { ...t, params: { id: template.json.id } });
    expect((await api("GET", "/v1/templates/{id}", { ...t, params: { id: "tpl_missing" } })).status).toBe(404);
    const campaign = await api("POST", "/v1/campaigns", { ...t, body: { name: "Welcome", template_id: template.json.id, segment_id: segment.json.id } });
    expect(campaign.status).toBe(201);
    await api("GET", "/v1/campaigns", t);
    await api("GET", "/v1/campaigns", { ...t, query: { status: "draft" } });
    await api("GET", "/v1/campaigns/{id}", { ...t, params: { id: campaign.json.id } });
    await api("PATCH", "/v1/campaigns/{id}", { ...t, params: { id: campaign.json.id }, body: { tracking: { opens: true, clicks: null } } });
    expect((await api("PATCH", "/v1/campaigns/{id}", { ...t, params: { id: campaign.json.id }, body: { tracking: { opens: "yes" } } })).status).toBe(422);
    await api("GET", "/v1/campaigns/{id}/stats", { ...t, params: { id: campaign.json.id } });
    expect((await api("GET", "/v1/campaigns/{id}/stats", { ...t, params: { id: "camp_missing" } })).status).toBe(404);
    const tracked = { tenantId: "acme", campaignId: campaign.json.id as string, sendId: "1" };
    expect((await api("GET", "/c/{token}", { params: { token: await trackingTokens.token({ kind: "click", ...tracked, linkIndex: 0, linkCount: 1, url: "https://acme.test/" }) } })).status).toBe(302);
    expect((await api("GET", "/c/{token}", { params: { token: "t1.not-a-token" } })).status).toBe(404);
    expect((await api("GET", "/o/{token}", { params: { token: await trackingTokens.token({ kind: "open", ...tracked }) } })).status).toBe(200);
    expect((await api("GET", "/o/{token}", { params: { token: "t1.not-a-token" } })).status).toBe(404);
    expect((await api("POST", "/v1/campaigns/{id}/pause", { ...t, params: { id: campaign.json.id } })).status).toBe(409);
    await api("POST", "/v1/campaigns/{id}/start", { ...t, params: { id: campaign.json.id }, body: { at: "2099-01-01T00:00:00Z" } });
    await api("POST", "/v1/campaigns/{id}/cancel", { ...t, params: { id: campaign.json.id } });
    // A cancelled campaign's event stream is its view and `end`, then it closes.
    const progress = await api("GET", "/v1/campaigns/{id}/events", { ...t, params: { id: campaign.json.id } });
    expect(progress.text).toMatch(/^event: campaign\n[\s\S]*event: end\n/);
    expect((await api("GET", "/v1/campaigns/{id}/events", { ...t, params: { id: "camp_missing" } })).status).toBe(404);
    const other = await api("POST", "/v1/campaigns", { ...t, body: { name: "Later", template_id: template.json.id, list_id: list.json.id } });
    await api("POST", "/v1/campaigns/{id}/start", { ...t, params: { id: other.json.id } });
    await api("POST", "/v1/campaigns/{id}/pause", { ...t, params: { id: other.json.id } });
    await api("POST", "/v1/campaigns/{id}/resume", { ...t, params: { id: other.json.id } });
    await api("POST", "/v1/suppressions", { ...t, body: { email: "Gone@Example.com" } });
    await api("GET", "/v1/suppressions", t);
    expect((await api("DELETE", "/v1/suppressions/{email}", { ...t, params: { email: "gone@example.com" } })).status).toBe(204);
    expect((await api("DELETE", "/v1/suppressions/{email}", { ...t, params: { email: "gone@example.com" } })).status).toBe(404);
    await api("GET", "/v1/outbox", t);
    expect((await api("POST", "/v1/lists", { ...t, body: { name: "" } })).status).toBe(422);
    // A bounce report for a message never sent over SMTP: read and classified, nothing recorded; and one that is not a report.
    const dsn = postfixDsn({ to: "gone@example.org", messageId: "<0123456789abcdef0123456789abcdef.pm@acme.test>" });
    expect((await api("POST", "/v1/bounces/dsn", { ...t, raw: { type: "message/rfc822", body: dsn } })).json).toMatchObject({ recorded: 0, recipients: [{ category: "hard_bounce", outcome: "unknown_message" }] });
    expect((await api("POST", "/v1/bounces/dsn", { ...t, raw: { type: "message/rfc822", body: "Subject: hi\r\n\r\nhello" } })).status).toBe(400);
    expect((await api("POST", "/v1/bounces/dsn", { ...t, raw: { type: "text/plain", body: "hello" } })).status).toBe(415);

    // Exports and imports of that list; webhooks.
    const exp = await api("POST", "/v1/exports", { ...t, body: { source: "list", list_id: list.json.id } });
    expect(exp.status).toBe(202);
    await api("GET", "/v1/exports/{id}", { ...t, params: { id: exp.json.id } });
    expect((await api("GET", "/files/{token}", { params: { token: "not-a-token" } })).status).toBe(404);
    const imp = await api("POST", "/v1/imports", {
      key: admin.key,
      query: { tenant_id: "acme", mapping: JSON.stringify({ email: "email" }) },
      csv: "email\nbob@example.com\n",
    });
    expect(imp.status, imp.text).toBe(202);
    expect(imp.json.status_url).toBe(`/v1/imports/${imp.json.id}?tenant_id=acme`);
    await api("GET", "/v1/imports/{id}", { key: admin.key, params: { id: imp.json.id }, query: { tenant_id: "acme" } });
    expect((await api("GET", "/v1/imports/{id}/report", { ...t, params: { id: imp.json.id } })).status).toBe(404);
    const endpoint = await api("POST", "/v1/webhooks/endpoints", { ...t, body: { url: "https://hooks.example.com/in" } });
    expect(endpoint.json.secret).toMatch(/^whsec_/);
    const ep = { ...t, params: { id: endpoint.json.id } };
    await api("GET", "/v1/webhooks/endpoints", t);
    await api("GET", "/v1/webhooks/endpoints/{id}", ep);
    await api("PATCH", "/v1/webhooks/endpoints/{id}", { ...ep, body: { event_types: ["campaign.sent"] } });
    await api("POST", "/v1/webhooks/endpoints/{id}/rotate", ep);
    await api("POST", "/v1/webhooks/endpoints/{id}/test", ep);
    await api("GET", "/v1/webhooks/endpoints/{id}/deliveries", ep);
    await api("POST", "/v1/webhooks/endpoints/{id}/disable", ep);
    expect((await api("POST", "/providers/resend/events", { body: {} })).status).toBe(401);
    expect((await api("GET", "/u/{token}", { params: { token: "v2.bogus" } })).status).toBe(404);
    expect((await api("POST", "/u/{token}", { params: { token: "v2.bogus" } })).status).toBe(404);
    await api("GET", "/v1/keys", { key: admin.key });
  });

  it("serves /metrics and /openapi.json as documented", async () => {
    const metrics = await app.request("/metrics", { headers: { authorization: `Bearer ${admin.key}` } });
    expectDocumented("GET", "/metrics", { status: metrics.status, type: metrics.headers.get("content-type") ?? "", text: await metrics.text() });
    await api("GET", "/openapi.json");
  });
});

describe("the checker itself", () => {
  it("fails an answer whose shape changed from its route's declaration", async () => {
    // A route declared with the schema GET /v1/queues answers by, whose handler renamed `waiting`.
    const queues = { type: "email.send", pool: "email", paused: false, paused_jobs: 0, scheduled: 0, active: 0, failed: 0, completed_last_hour: 0, failed_last_hour: 0 };
    const changed = new Hono();
    const declaration = describeRoute({ operationId: "listQueues", tags: ["queues"], summary: "s", responses: { 200: json(queueListSchema, "q"), ...problems("Unauthorized") } });
    changed.get("/v1/queues", declaration, (c) => c.json({ queues: [{ ...queues, queued: 1 }] }));
    changed.get("/v1/queues/as-declared", declaration, (c) => c.json({ queues: [{ ...queues, waiting: 1 }] }));
    const check = contractChecker(openApiDocument(changed, { catalog, version: "contract" }));
    const answer = async (path: string) => {
      const res = await changed.request(path);
      return { status: res.status, type: res.headers.get("content-type") ?? "", text: await res.text() };
    };
    const fine = await answer("/v1/queues/as-declared");
    expect(() => check("GET", "/v1/queues/as-declared", fine)).not.toThrow();
    const off = await answer("/v1/queues");
    expect(() => check("GET", "/v1/queues", off)).toThrow(/must have required property 'waiting'/);
    expect(() => check("GET", "/v1/queues", off)).toThrow(/must NOT have additional properties/);
  });

  it("refuses one component name for two shapes (a request's input side, a response's output side)", () => {
    const named = z.object({ limit: z.number().default(50) }).meta({ id: "Paged" });
    const twoShapes = new Hono();
    twoShapes.get("/v1/a", describeRoute({ operationId: "a", responses: { 200: json(named, "out") } }), (c) => c.json({ limit: 50 }));
    twoShapes.post("/v1/b", describeRoute({ operationId: "b", requestBody: jsonBody(named), responses: { 200: json({ type: "object" }, "in") } }), (c) => c.json({}));
    expect(() => openApiDocument(twoShapes, { catalog, version: "contract" })).toThrow(/component Paged has two shapes/);
  });

  it("refuses an answer off its schema and a status the operation does not document", () => {
    const queues = { queues: [{ type: "email.send", pool: "email", waiting: 1, scheduled: 0, active: 0, failed: 0, completed_last_hour: 0, failed_last_hour: 0 }] };
    // The answer /v1/queues gave before its schema named paused, paused_tenants and paused_jobs.
    const answer = { queues: [{ ...queues.queues[0], paused: false, paused_jobs: 0, surprise: true }] };
    expect(() => expectDocumented("GET", "/v1/queues", { status: 200, type: "application/json", text: JSON.stringify(answer) })).toThrow(/surprise|additional/);
    expect(() => expectDocumented("GET", "/v1/queues", { status: 200, type: "application/json", text: JSON.stringify(queues) })).toThrow(/paused/);
    expect(() => expectDocumented("GET", "/v1/lists", { status: 418, type: "application/json", text: "{}" })).toThrow(/does not document/);
  });

  it("the flow exercised nearly every documented operation", () => {
    const left = documentedOperations(doc).filter((r) => !exercised.has(r));
    // The key routes have their own contract checks in test/key-routes.test.ts.
    expect(left).toEqual(["DELETE /v1/keys/{id}", "GET /v1/keys/{id}", "POST /v1/keys", "POST /v1/keys/{id}/revoke"]);
  });
});

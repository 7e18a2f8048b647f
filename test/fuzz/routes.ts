/**
 * Every route the fuzz calls: the operations of the served /openapi.json, plus hand-written
 * schemas (zod, turned into JSON Schema so one generator serves both) for the routes the
 * document leaves out: the email routes, operations, unsubscribe links and the dashboard.
 * Hand-written from shared/api/*-routes.ts; a route added there without an entry here is
 * not fuzzed, so `tools/fuzz.ts` prints the catalogue it ran.
 */
import { z } from "zod";

export type JsonSchema = Record<string, any>;

/** What a path parameter names, so the generator can try real ids of both tenants. */
export type ParamKind = "job" | "list" | "template" | "campaign" | "segment" | "endpoint" | "import" | "export" | "email" | "type" | "token" | "file";

export interface Operation {
  /** "POST /v1/jobs/{id}/cancel" */
  id: string;
  method: string;
  path: string;
  source: "openapi" | "hand-written";
  params: { name: string; in: "path" | "query" | "header"; schema: JsonSchema; kind?: ParamKind }[];
  body?: { schema: JsonSchema; contentTypes: string[]; required: boolean };
  /** Who may call it: the generator mostly sends the key it needs, sometimes another. */
  auth: "tenant" | "admin" | "none" | "dashboard";
  /** Answers HTML by design (the dashboard, unsubscribe pages): 4xx are pages, not problem+json. */
  html?: boolean;
  /** The body is a form (the dashboard), not JSON. */
  form?: boolean;
  /** Signed by the Resend secret (the generator signs most bodies validly, so they reach the handler). */
  resendSigned?: boolean;
}

const json = (schema: z.ZodType): JsonSchema => z.toJSONSchema(schema, { io: "input", unrepresentable: "any" }) as JsonSchema;

// --- Mirrors of the route schemas the OpenAPI document does not describe (shared/api/email-routes.ts). ---
const email = z.email().max(320);
const block = z.discriminatedUnion("type", [
  z.strictObject({ type: z.literal("heading"), text: z.string().min(1).max(500) }),
  z.strictObject({ type: z.literal("text"), text: z.string().min(1).max(20_000) }),
  z.strictObject({ type: z.literal("button"), text: z.string().min(1).max(200), href: z.string().min(1).max(2_000) }),
  z.strictObject({ type: z.literal("divider") }),
]);
const handWrittenSchemas = {
  contacts: z.strictObject({
    contacts: z
      .array(
        z.strictObject({
          email,
          name: z.string().max(200).optional(),
          attributes: z.record(z.string().max(64), z.union([z.string().max(1_000), z.number(), z.boolean(), z.null()])).optional(),
        }),
      )
      .min(1)
      .max(1_000),
    list_id: z.string().max(64).optional(),
  }),
  list: z.strictObject({ name: z.string().min(1).max(200) }),
  segment: z.strictObject({
    name: z.string().min(1).max(200),
    list_id: z.string().min(1).max(64),
    filters: z.array(z.strictObject({ attribute: z.string().min(1).max(64), op: z.enum(["eq", "neq", "exists"]), value: z.string().max(1_000).optional() })).max(20).optional(),
  }),
  template: z.strictObject({ name: z.string().min(1).max(200), subject: z.string().min(1).max(500), blocks: z.array(block).min(1).max(100) }),
  campaign: z.strictObject({
    name: z.string().min(1).max(200),
    template_id: z.string().min(1).max(64),
    list_id: z.string().min(1).max(64).optional(),
    segment_id: z.string().min(1).max(64).optional(),
  }),
  start: z.strictObject({ at: z.iso.datetime({ offset: true }).optional() }),
  suppression: z.strictObject({ email, reason: z.enum(["unsubscribe", "hard_bounce", "complaint", "manual"]).optional() }),
  /** What Resend posts (shared/email/providers/resend-events.ts reads these fields). */
  resendEvent: z.strictObject({
    type: z.enum(["email.bounced", "email.complained", "email.delivered", "email.sent"]),
    created_at: z.iso.datetime({ offset: true }),
    data: z.strictObject({
      email_id: z.string().min(1).max(100),
      to: z.array(email).min(1).max(3),
      from: email.optional(),
      subject: z.string().max(200).optional(),
      bounce: z.strictObject({ type: z.enum(["Permanent", "Transient"]), subType: z.string().max(50), message: z.string().max(500) }).optional(),
    }),
  }),
  dashboardLogin: z.strictObject({ key: z.string().max(600), next: z.string().max(200).optional() }),
  // The forms carry the CSRF token (required: without it every POST is a 403 and reaches nothing).
  dashboardLane: z.strictObject({ type: z.string().max(64), tenant: z.string().max(64).optional(), csrf_token: z.string().max(200) }),
  dashboardAction: z.strictObject({ csrf_token: z.string().max(200), back: z.string().max(200).optional() }),
};

const q = (name: string, schema: z.ZodType = z.string().max(200)) => ({ name, in: "query" as const, schema: json(schema) });
const p = (name: string, kind: ParamKind) => ({ name, in: "path" as const, schema: { type: "string" }, kind });
const cursor = q("cursor");
const tenantQuery = q("tenant_id");
const body = (schema: z.ZodType, required = true, contentTypes = ["application/json"]) => ({ schema: json(schema), contentTypes, required });

function hand(method: string, path: string, rest: Partial<Operation> & { auth: Operation["auth"] }): Operation {
  return { id: `${method} ${path}`, method, path, source: "hand-written", params: [], ...rest };
}

/** The routes /openapi.json does not describe, from shared/api/{email,operations,unsubscribe}-routes and the dashboard. */
export const handWrittenOperations: Operation[] = [
  hand("POST", "/v1/contacts", { auth: "tenant", params: [tenantQuery], body: body(handWrittenSchemas.contacts) }),
  hand("GET", "/v1/contacts", { auth: "tenant", params: [tenantQuery, cursor] }),
  hand("POST", "/v1/lists", { auth: "tenant", params: [tenantQuery], body: body(handWrittenSchemas.list) }),
  hand("GET", "/v1/lists/{id}", { auth: "tenant", params: [tenantQuery, p("id", "list")] }),
  hand("POST", "/v1/segments", { auth: "tenant", params: [tenantQuery], body: body(handWrittenSchemas.segment) }),
  hand("POST", "/v1/templates", { auth: "tenant", params: [tenantQuery], body: body(handWrittenSchemas.template) }),
  hand("GET", "/v1/templates/{id}", { auth: "tenant", params: [tenantQuery, p("id", "template")] }),
  hand("POST", "/v1/campaigns", { auth: "tenant", params: [tenantQuery], body: body(handWrittenSchemas.campaign) }),
  hand("GET", "/v1/campaigns/{id}", { auth: "tenant", params: [tenantQuery, p("id", "campaign")] }),
  hand("POST", "/v1/campaigns/{id}/start", { auth: "tenant", params: [tenantQuery, p("id", "campaign")], body: body(handWrittenSchemas.start, false) }),
  ...(["pause", "resume", "cancel"] as const).map((a) => hand("POST", `/v1/campaigns/{id}/${a}`, { auth: "tenant", params: [tenantQuery, p("id", "campaign")] })),
  hand("POST", "/v1/suppressions", { auth: "tenant", params: [tenantQuery], body: body(handWrittenSchemas.suppression) }),
  hand("GET", "/v1/suppressions", { auth: "tenant", params: [tenantQuery, cursor] }),
  hand("DELETE", "/v1/suppressions/{email}", { auth: "tenant", params: [tenantQuery, p("email", "email")] }),
  hand("GET", "/v1/outbox", { auth: "tenant", params: [tenantQuery, cursor] }),
  hand("GET", "/v1/scaling", { auth: "admin" }),
  hand("GET", "/v1/workers", { auth: "admin" }),
  hand("GET", "/u/{token}", { auth: "none", html: true, params: [p("token", "token")] }),
  hand("POST", "/u/{token}", { auth: "none", html: true, params: [p("token", "token")] }),
  hand("GET", "/dashboard/login", { auth: "none", html: true, params: [q("next")] }),
  hand("POST", "/dashboard/login", { auth: "none", html: true, form: true, body: body(handWrittenSchemas.dashboardLogin, true, ["application/x-www-form-urlencoded"]) }),
  hand("POST", "/dashboard/logout", { auth: "dashboard", html: true, form: true, body: body(handWrittenSchemas.dashboardAction, true, ["application/x-www-form-urlencoded"]) }),
  hand("GET", "/dashboard", { auth: "dashboard", html: true, params: [q("state"), q("type"), q("tenant"), q("cursor"), q("notice")] }),
  hand("GET", "/dashboard/jobs/{id}", { auth: "dashboard", html: true, params: [p("id", "job")] }),
  ...(["retry", "cancel"] as const).map((a) =>
    hand("POST", `/dashboard/jobs/{id}/${a}`, { auth: "dashboard", html: true, form: true, params: [p("id", "job")], body: body(handWrittenSchemas.dashboardAction, true, ["application/x-www-form-urlencoded"]) }),
  ),
  hand("POST", "/dashboard/queues/{type}/retry-failed", {
    auth: "dashboard",
    html: true,
    form: true,
    params: [p("type", "type")],
    body: body(handWrittenSchemas.dashboardAction, true, ["application/x-www-form-urlencoded"]),
  }),
  ...(["pause", "resume"] as const).map((a) =>
    hand("POST", `/dashboard/lanes/${a}`, { auth: "dashboard", html: true, form: true, body: body(handWrittenSchemas.dashboardLane, true, ["application/x-www-form-urlencoded"]) }),
  ),
];

/** The Resend event schema, for the signed bodies of POST /providers/resend/events. */
export const resendEventSchema = json(handWrittenSchemas.resendEvent);

const kindOf = (path: string, name: string): ParamKind | undefined => {
  if (name === "type") return "type";
  if (name === "token") return path.startsWith("/files") ? "file" : "token";
  if (path.startsWith("/v1/jobs")) return "job";
  if (path.startsWith("/v1/imports")) return "import";
  if (path.startsWith("/v1/exports")) return "export";
  if (path.startsWith("/v1/webhooks/endpoints")) return "endpoint";
  return undefined;
};

/** Resolves local `$ref`s so the generator sees plain schemas. */
function deref(doc: JsonSchema, schema: JsonSchema | undefined, seen = new Set<string>()): JsonSchema | undefined {
  if (!schema || typeof schema !== "object") return schema;
  if (Array.isArray(schema)) return schema.map((s) => deref(doc, s, seen)) as unknown as JsonSchema;
  if (typeof schema.$ref === "string") {
    if (seen.has(schema.$ref)) return {};
    const target = schema.$ref.replace(/^#\//, "").split("/").reduce((o: any, k: string) => o?.[k], doc);
    return deref(doc, target, new Set([...seen, schema.$ref]));
  }
  const out: JsonSchema = {};
  for (const [k, v] of Object.entries(schema)) out[k] = typeof v === "object" && v !== null ? deref(doc, v as JsonSchema, seen) : v;
  return out;
}

/** The operations of a served OpenAPI document, with every parameter and body schema resolved. */
export function operationsFromOpenApi(doc: JsonSchema): Operation[] {
  const ops: Operation[] = [];
  for (const [path, item] of Object.entries<JsonSchema>(doc.paths ?? {})) {
    for (const [method, op] of Object.entries<JsonSchema>(item)) {
      if (!["get", "post", "put", "patch", "delete"].includes(method)) continue;
      const params = ((op.parameters ?? []) as JsonSchema[]).map((raw) => {
        const prm = deref(doc, raw)!;
        // The API runs alone here (no worker finishes a job), so a valid ?wait= is the whole wait,
        // and requests go one at a time: 1 s keeps the run's budget for other requests.
        const schema = prm.in === "query" && prm.name === "wait" ? { ...prm.schema, maximum: 1 } : (prm.schema ?? { type: "string" });
        return { name: prm.name as string, in: prm.in as "path" | "query" | "header", schema, kind: prm.in === "path" ? kindOf(path, prm.name) : undefined };
      });
      // A page, by what it answers when it succeeds (its 400, 422 and 503 are problem+json like every route's).
      const successes = Object.entries<JsonSchema>(op.responses ?? {}).filter(([status]) => status.startsWith("2")).map(([, r]) => r);
      const html = successes.length > 0 && successes.every((r) => r.content && Object.keys(r.content).every((t) => t.startsWith("text/html")));
      const content = op.requestBody?.content as Record<string, JsonSchema> | undefined;
      const contentTypes = content ? Object.keys(content) : [];
      const jsonType = contentTypes.find((t) => t.includes("json"));
      const security = op.security as unknown[] | undefined;
      const admin = /admin/i.test(`${op.summary ?? ""} ${op.description ?? ""}`) || path === "/metrics" || path.startsWith("/v1/queues/");
      ops.push({
        id: `${method.toUpperCase()} ${path}`,
        method: method.toUpperCase(),
        path,
        source: "openapi",
        params,
        body: content
          ? {
              // The document says only "object" for Resend's body: the fuzz uses the event's own schema.
              schema: path === "/providers/resend/events" ? resendEventSchema : (deref(doc, content[jsonType ?? contentTypes[0]!]?.schema) ?? {}),
              contentTypes,
              required: op.requestBody.required === true,
            }
          : undefined,
        auth: security && security.length === 0 ? "none" : !path.startsWith("/v1") && path !== "/metrics" ? "none" : admin ? "admin" : "tenant",
        resendSigned: path === "/providers/resend/events",
        ...(html ? { html: true } : {}),
      });
    }
  }
  return ops;
}

/** The whole catalogue: the served document's operations, then every hand-written route it lacks. */
export function catalogue(doc: JsonSchema): Operation[] {
  const fromDoc = operationsFromOpenApi(doc);
  const known = new Set(fromDoc.map((o) => o.id));
  return [...fromDoc, ...handWrittenOperations.filter((o) => !known.has(o.id))];
}

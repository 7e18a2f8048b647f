/**
 * Webhook endpoints over HTTP, scoped to the caller's tenant (admin keys name one with
 * ?tenant_id=). A secret appears only in the answers to create and rotate.
 */
import { type Context, Hono } from "hono";
import { z } from "zod";
import { email, entityId } from "../jobs/fields";
import type { SqlClient } from "../ports";
import type { Queue } from "../queue/queue";
import { WebhookEndpoints } from "../webhooks/endpoints";
import type { UrlGuard } from "../webhooks/ssrf";
import { type ApiEnv, tenantOf } from "./auth";
import { idCursor } from "./cursor";
import { describeRoute, json, jsonBody, pathParam, problems, queryParameters } from "./openapi-route";
import { parseBody, parseParam, parseQuery } from "./request-input";
import { tenantQuerySchema } from "./schemas";

const eventTypes = z.array(z.string().min(1).max(128).regex(/^[a-z0-9_.-]+$/, "lowercase letters, digits and _ . - only")).max(100);
/** Told by email when the platform disables the endpoint (410 Gone, or failing for days); null: nobody. */
const notifyEmail = email.nullable();

export const webhookSchemas = {
  create: z.strictObject({
    url: z.string().min(1).max(2_000),
    event_types: eventTypes.default([]),
    notify_email: notifyEmail.optional(),
  }),
  update: z
    .strictObject({ event_types: eventTypes.optional(), notify_email: notifyEmail.optional() })
    .refine((u) => u.event_types !== undefined || u.notify_email !== undefined, { message: "give event_types or notify_email", path: ["notify_email"] }),
  rotate: z.strictObject({
    /** How long the previous secret keeps signing. Default 24 h; 0 ends it now. */
    previous_secret_ttl_seconds: z.number().int().min(0).max(7 * 24 * 3_600).default(24 * 3_600),
  }),
};

const isoTime = z.iso.datetime({ offset: true });

/** An endpoint as every route shows it (no secret). */
export const endpointViewSchema = z.object({
  id: z.string().describe("whe_…"),
  url: z.string(),
  event_types: z.array(z.string()).describe("Empty: every event type"),
  status: z.enum(["active", "disabled"]),
  disabled_reason: z.string().nullable(),
  disabled_at: isoTime.nullable(),
  failing_since: isoTime.nullable(),
  notify_email: z.string().nullable().describe("Told by email when the platform disables the endpoint; null: nobody"),
  previous_secret_expires_at: isoTime.nullable().describe("Until when the previous secret still signs (a rotation in progress)"),
  created_at: isoTime,
}).meta({ id: "WebhookEndpoint" });

/** The answers of create and rotate: the endpoint with its signing secret, shown only here. */
export const endpointWithSecretSchema = endpointViewSchema.extend({
  secret: z.string().describe("whsec_…: verifies the Standard Webhooks signature of every delivery; shown only in this answer"),
});

export const endpointListSchema = z.object({ endpoints: z.array(endpointViewSchema) });

export const webhookTestSchema = z.object({ event_id: z.string(), job_id: z.string().describe("The webhook.deliver job") });

export const deliveryListSchema = z.object({
  deliveries: z
    .array(
      z.object({
        id: z.string(),
        event_id: z.string(),
        attempt: z.number().int(),
        at: isoTime,
        duration_ms: z.number().int().nullable(),
        status_code: z.number().int().nullable(),
        outcome: z.enum(["ok", "failed", "refused"]),
        error: z.string().nullable(),
        response_body: z.string().nullable().describe("The first 2 KiB of the answer"),
      }),
    )
    .describe("Newest first, 100 a page"),
  next_cursor: z.string().nullable(),
});

const body = <S extends z.ZodType>(c: Context, schema: S, optional = false) => parseBody(c, schema, { optional });

/** The deliveries log pages by delivery id. */
const deliveriesQuery = tenantQuerySchema.extend({ cursor: idCursor.optional() });

/** The tenant a request acts for (the key's own, or an admin's ?tenant_id=), once the query is checked. */
function tenant(c: Context<ApiEnv>): string {
  parseQuery(c, tenantQuerySchema);
  return tenantOf(c);
}

/** An endpoint's :id: one of our ids (whe_…), or no endpoint has it. */
const endpointId = (c: Context) => parseParam(c, "id", entityId, (id) => `no webhook endpoint ${id}`);

const tags = ["webhooks"];
const tenantOnly = queryParameters(tenantQuerySchema);
const ofEndpoint = [...tenantOnly, pathParam("id", "Endpoint id (whe_…)")];

export function webhookRoutes(queue: Queue, sql: SqlClient, guard: UrlGuard): Hono<ApiEnv> {
  const app = new Hono<ApiEnv>();
  const endpoints = new WebhookEndpoints(sql, queue, guard, queue.clock);

  app.post(
    "/webhooks/endpoints",
    describeRoute(() => ({
      operationId: "createWebhookEndpoint",
      tags,
      summary: "Register an endpoint; the answer carries its whsec_ secret (shown only here and at rotation)",
      parameters: tenantOnly,
      requestBody: jsonBody(webhookSchemas.create),
      responses: { 201: json(endpointWithSecretSchema, "The endpoint, with its secret"), ...problems("PayloadTooLarge", "UnsupportedMediaType") },
    })),
    async (c) => {
      const tenantId = tenant(c);
      const req = await body(c, webhookSchemas.create);
      const { endpoint, secret } = await endpoints.create(tenantId, { url: req.url, eventTypes: req.event_types, notifyEmail: req.notify_email });
      return c.json({ ...endpoint, secret }, 201);
    },
  );

  app.patch(
    "/webhooks/endpoints/:id",
    describeRoute(() => ({
      operationId: "updateWebhookEndpoint",
      tags,
      summary: "Change an endpoint's event types or notify_email",
      parameters: ofEndpoint,
      requestBody: jsonBody(webhookSchemas.update),
      responses: { 200: json(endpointViewSchema, "The endpoint"), ...problems("NotFound", "PayloadTooLarge", "UnsupportedMediaType") },
    })),
    async (c) => {
      const tenantId = tenant(c);
      const req = await body(c, webhookSchemas.update);
      return c.json(await endpoints.update(tenantId, endpointId(c), { eventTypes: req.event_types, notifyEmail: req.notify_email }));
    },
  );

  app.get(
    "/webhooks/endpoints",
    describeRoute(() => ({
      operationId: "listWebhookEndpoints",
      tags,
      summary: "List endpoints (without secrets)",
      parameters: tenantOnly,
      responses: { 200: json(endpointListSchema, "The tenant's endpoints") },
    })),
    async (c) => c.json({ endpoints: await endpoints.list(tenant(c)) }),
  );

  app.get(
    "/webhooks/endpoints/:id",
    describeRoute(() => ({
      operationId: "getWebhookEndpoint",
      tags,
      summary: "Get an endpoint (without its secret)",
      parameters: ofEndpoint,
      responses: { 200: json(endpointViewSchema, "The endpoint"), ...problems("NotFound") },
    })),
    async (c) => c.json(await endpoints.get(tenant(c), endpointId(c))),
  );

  app.post(
    "/webhooks/endpoints/:id/rotate",
    describeRoute(() => ({
      operationId: "rotateWebhookSecret",
      tags,
      summary: "Rotate the secret; the previous one keeps signing for previous_secret_ttl_seconds",
      parameters: ofEndpoint,
      requestBody: jsonBody(webhookSchemas.rotate, { required: false }),
      responses: { 200: json(endpointWithSecretSchema, "The endpoint, with its new secret"), ...problems("NotFound", "PayloadTooLarge", "UnsupportedMediaType") },
    })),
    async (c) => {
      const tenantId = tenant(c);
      const req = await body(c, webhookSchemas.rotate, true);
      const { endpoint, secret } = await endpoints.rotate(tenantId, endpointId(c), req.previous_secret_ttl_seconds * 1_000);
      return c.json({ ...endpoint, secret });
    },
  );

  app.post(
    "/webhooks/endpoints/:id/disable",
    describeRoute(() => ({
      operationId: "disableWebhookEndpoint",
      tags,
      summary: "Disable an endpoint: no more deliveries",
      parameters: ofEndpoint,
      responses: { 200: json(endpointViewSchema, "The endpoint"), ...problems("NotFound") },
    })),
    async (c) => c.json(await endpoints.disable(tenant(c), endpointId(c))),
  );

  app.post(
    "/webhooks/endpoints/:id/test",
    describeRoute(() => ({
      operationId: "testWebhookEndpoint",
      tags,
      summary: "Send a webhook.test event to the endpoint",
      parameters: ofEndpoint,
      responses: { 202: json(webhookTestSchema, "The test event and its delivery job"), ...problems("NotFound", "Conflict") },
    })),
    async (c) => {
      const { eventId, jobId } = await endpoints.sendTest(tenant(c), endpointId(c));
      return c.json({ event_id: eventId, job_id: jobId }, 202);
    },
  );

  app.get(
    "/webhooks/endpoints/:id/deliveries",
    describeRoute(() => ({
      operationId: "listWebhookDeliveries",
      tags,
      summary: "The delivery log, newest first: time, outcome, status code, duration, capped response body",
      parameters: [...queryParameters(deliveriesQuery), pathParam("id", "Endpoint id (whe_…)")],
      responses: { 200: json(deliveryListSchema, "A page of deliveries"), ...problems("NotFound") },
    })),
    async (c) => {
      const { cursor } = parseQuery(c, deliveriesQuery);
      const { deliveries, nextCursor } = await endpoints.deliveries(tenantOf(c), endpointId(c), cursor);
      return c.json({ deliveries, next_cursor: nextCursor });
    },
  );

  return app;
}

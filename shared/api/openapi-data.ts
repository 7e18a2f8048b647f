/**
 * The OpenAPI paths of the data and integration routes (imports, exports and their files,
 * webhook endpoints, the Resend inbound hook) and of the API keys. Request bodies, queries and
 * answers come from the zod schemas the routes parse with and answer by, so they cannot drift.
 */
import { z } from "zod";
import { exportRequestSchema, exportStartedSchema, exportViewSchema } from "./export-routes";
import { importRequestSchema, importStartedSchema, importStatusSchema, uploadQuerySchema } from "./import-routes";
import { createdKeySchema, keyCreateSchema, keyListQuerySchema, keyListSchema, keyViewSchema } from "./key-routes";
import {
  deliveryListSchema,
  endpointListSchema,
  endpointViewSchema,
  endpointWithSecretSchema,
  webhookSchemas,
  webhookTestSchema,
} from "./webhook-routes";

type Json = Record<string, unknown>;
export type ProblemName =
  | "BadRequest"
  | "Unauthorized"
  | "Forbidden"
  | "NotFound"
  | "Conflict"
  | "Gone"
  | "PayloadTooLarge"
  | "UnsupportedMediaType"
  | "ValidationFailed";
/** An answer's JSON Schema (what the route sends). */
export const output = (schema: z.ZodType): Json => {
  const { $schema: _s, ...rest } = z.toJSONSchema(schema, { io: "output", unrepresentable: "any" }) as Json;
  return rest;
};

/** What POST /providers/resend/events answers (shared/email/delivery-feedback.ts). */
const resendOutcomeSchema = z.object({
  status: z.enum(["recorded", "duplicate", "unknown_message", "ignored"]),
  type: z.string().optional().describe("The event type, when ignored"),
});

export interface OpenApiHelpers {
  json: (schema: Json, description: string) => Json;
  problems: (...names: ProblemName[]) => Json;
}

/** A request's JSON Schema (what the route takes: fields with defaults are optional). */
export const input = (schema: z.ZodType): Json => {
  const { $schema: _s, ...rest } = z.toJSONSchema(schema, { io: "input", unrepresentable: "any" }) as Json;
  return rest;
};
export const body = (schema: z.ZodType) => ({ required: true, content: { "application/json": { schema: input(schema) } } });

/** The query parameters of a strict query schema, one a field, with their own descriptions. */
export function queryParameters(schema: z.ZodType): Json[] {
  const s = input(schema) as { properties?: Record<string, Json>; required?: string[] };
  return Object.entries(s.properties ?? {}).map(([name, { description, ...rest }]) => ({
    name,
    in: "query",
    required: (s.required ?? []).includes(name),
    ...(description ? { description } : {}),
    schema: rest,
  }));
}

const object = { type: "object" };
export const path = (name: string, description: string) => ({ name, in: "path", required: true, schema: { type: "string" }, description });
export const tenantParam = {
  name: "tenant_id",
  in: "query",
  required: false,
  schema: { type: "string" },
  description: "Admin keys: the tenant to act for (tenant keys act for their own)",
};

export function dataPaths({ json, problems }: OpenApiHelpers): Record<string, Json> {
  const op = (tag: string, summary: string, extra: Json) => ({ summary, tags: [tag], parameters: [tenantParam], ...extra });
  const endpointId = path("id", "Endpoint id (whe_…)");
  return {
    "/v1/imports": {
      post: op("imports", "Start a contact import: a file_url (s3://, https://) as JSON, or the CSV itself as text/csv", {
        operationId: "startImport",
        parameters: queryParameters(uploadQuerySchema),
        description:
          "With Content-Type text/csv the body is the file (up to UPLOAD_LIMIT_BYTES, streamed to storage) and mapping, list_id and has_header come as query parameters (mapping as JSON).",
        requestBody: {
          required: true,
          content: { "application/json": { schema: input(importRequestSchema) }, "text/csv": { schema: { type: "string" } } },
        },
        responses: {
          202: json(output(importStartedSchema), "Queued; the id is the import's (and its job's)"),
          ...problems("BadRequest", "Unauthorized", "NotFound", "PayloadTooLarge", "UnsupportedMediaType", "ValidationFailed"),
        },
      }),
    },
    "/v1/imports/{id}": {
      get: op("imports", "An import's status and counters: rows read, created, updated, invalid, duplicate, list_added", {
        operationId: "getImport",
        parameters: [tenantParam, path("id", "Import id")],
        responses: { 200: json(output(importStatusSchema), "Status, counters and report_url once there is a report"), ...problems("Unauthorized", "NotFound") },
      }),
    },
    "/v1/imports/{id}/report": {
      get: op("imports", "The error report: every rejected row with its row number and reason (CSV)", {
        operationId: "getImportReport",
        parameters: [tenantParam, path("id", "Import id")],
        responses: { 200: { description: "row,reason,email", content: { "text/csv": { schema: { type: "string" } } } }, ...problems("Unauthorized", "NotFound") },
      }),
    },
    "/v1/exports": {
      post: op("exports", "Export a list's or segment's contacts, or a campaign's sends and events, to CSV", {
        operationId: "startExport",
        requestBody: body(exportRequestSchema),
        responses: { 202: json(output(exportStartedSchema), "Queued"), ...problems("BadRequest", "Unauthorized", "NotFound", "UnsupportedMediaType", "ValidationFailed") },
      }),
    },
    "/v1/exports/{id}": {
      get: op("exports", "An export's status, size and, when ready, its signed download_url", {
        operationId: "getExport",
        parameters: [tenantParam, path("id", "Export id")],
        responses: { 200: json(output(exportViewSchema), "The export"), ...problems("Unauthorized", "NotFound") },
      }),
    },
    "/files/{token}": {
      get: {
        summary: "Download an export (the signed token is the capability; no API key)",
        operationId: "downloadExport",
        tags: ["exports"],
        security: [],
        parameters: [path("token", "From download_url")],
        responses: {
          200: { description: "The CSV, as an attachment", content: { "text/csv": { schema: { type: "string" } } } },
          ...problems("NotFound", "Gone"),
        },
      },
    },
    "/v1/webhooks/endpoints": {
      post: op("webhooks", "Register an endpoint; the answer carries its whsec_ secret (shown only here and at rotation)", {
        operationId: "createWebhookEndpoint",
        requestBody: body(webhookSchemas.create),
        responses: { 201: json(output(endpointWithSecretSchema), "The endpoint, with its secret"), ...problems("BadRequest", "Unauthorized", "UnsupportedMediaType", "ValidationFailed") },
      }),
      get: op("webhooks", "List endpoints (without secrets)", {
        operationId: "listWebhookEndpoints",
        responses: { 200: json(output(endpointListSchema), "The tenant's endpoints"), ...problems("Unauthorized") },
      }),
    },
    "/v1/webhooks/endpoints/{id}": {
      get: op("webhooks", "Get an endpoint (without its secret)", {
        operationId: "getWebhookEndpoint",
        parameters: [tenantParam, endpointId],
        responses: { 200: json(output(endpointViewSchema), "The endpoint"), ...problems("Unauthorized", "NotFound") },
      }),
      patch: op("webhooks", "Change an endpoint's event types or notify_email", {
        operationId: "updateWebhookEndpoint",
        parameters: [tenantParam, endpointId],
        requestBody: body(webhookSchemas.update),
        responses: { 200: json(output(endpointViewSchema), "The endpoint"), ...problems("BadRequest", "Unauthorized", "NotFound", "ValidationFailed") },
      }),
    },
    "/v1/webhooks/endpoints/{id}/rotate": {
      post: op("webhooks", "Rotate the secret; the previous one keeps signing for previous_secret_ttl_seconds", {
        operationId: "rotateWebhookSecret",
        parameters: [tenantParam, endpointId],
        requestBody: { ...body(webhookSchemas.rotate), required: false },
        responses: { 200: json(output(endpointWithSecretSchema), "The endpoint, with its new secret"), ...problems("Unauthorized", "NotFound", "ValidationFailed") },
      }),
    },
    "/v1/webhooks/endpoints/{id}/disable": {
      post: op("webhooks", "Disable an endpoint: no more deliveries", {
        operationId: "disableWebhookEndpoint",
        parameters: [tenantParam, endpointId],
        responses: { 200: json(output(endpointViewSchema), "The endpoint"), ...problems("Unauthorized", "NotFound") },
      }),
    },
    "/v1/webhooks/endpoints/{id}/test": {
      post: op("webhooks", "Send a webhook.test event to the endpoint", {
        operationId: "testWebhookEndpoint",
        parameters: [tenantParam, endpointId],
        responses: { 202: json(output(webhookTestSchema), "The test event and its delivery job"), ...problems("Unauthorized", "NotFound", "Conflict") },
      }),
    },
    "/v1/webhooks/endpoints/{id}/deliveries": {
      get: op("webhooks", "The delivery log, newest first: time, outcome, status code, duration, capped response body", {
        operationId: "listWebhookDeliveries",
        parameters: [tenantParam, endpointId, { name: "cursor", in: "query", required: false, schema: { type: "string" } }],
        responses: { 200: json(output(deliveryListSchema), "A page of deliveries"), ...problems("Unauthorized", "NotFound", "ValidationFailed") },
      }),
    },
    "/providers/resend/events": {
      post: {
        summary: "Resend's webhook (bounces, complaints), verified by its Svix signature; no API key",
        operationId: "resendEvents",
        tags: ["providers"],
        security: [],
        requestBody: { required: true, content: { "application/json": { schema: object } } },
        responses: {
          200: json(output(resendOutcomeSchema), "Recorded, already recorded, about a message we did not send, or ignored (another event type)"),
          ...problems("BadRequest", "Unauthorized", "NotFound"),
        },
      },
    },
  };
}

/** The API key routes (shared/api/key-routes.ts): admin keys only. */
export function keyPaths({ json, problems }: OpenApiHelpers): Record<string, Json> {
  const op = (summary: string, extra: Json) => ({ summary, tags: ["keys"], ...extra });
  const keyId = { name: "id", in: "path", required: true, schema: { type: "string", pattern: "^[A-Za-z0-9]{12}$" }, description: "The key's id (pmk_<id>_…)" };
  const listQuery = output(keyListQuerySchema) as { properties?: Record<string, Json> };
  const revoke = (operationId: string) =>
    op("Revoke a key (admin): refused at once by this server, within 5 s by other Node processes", {
      operationId,
      parameters: [keyId],
      responses: { 200: json(output(keyViewSchema), "The key, revoked"), ...problems("Unauthorized", "Forbidden", "NotFound", "Conflict") },
    });
  return {
    "/v1/keys": {
      post: op("Create an API key (admin): a tenant key ({ tenant_id }) or an admin key ({ admin: true })", {
        operationId: "createApiKey",
        description: "The answer carries the key itself, shown only here: only a peppered hash of its secret is stored.",
        requestBody: body(keyCreateSchema),
        responses: {
          201: json(output(createdKeySchema), "The key, with its secret"),
          ...problems("BadRequest", "Unauthorized", "Forbidden", "PayloadTooLarge", "UnsupportedMediaType", "ValidationFailed"),
        },
      }),
      get: op("List API keys (admin), revoked ones too, without secrets or hashes", {
        operationId: "listApiKeys",
        parameters: Object.entries(listQuery.properties ?? {}).map(([name, { description, ...schema }]) => ({ name, in: "query", required: false, description, schema })),
        responses: { 200: json(output(keyListSchema), "{ keys }"), ...problems("Unauthorized", "Forbidden", "ValidationFailed") },
      }),
    },
    "/v1/keys/{id}": {
      get: op("Get an API key (admin), without its secret", {
        operationId: "getApiKey",
        parameters: [keyId],
        responses: { 200: json(output(keyViewSchema), "The key"), ...problems("Unauthorized", "Forbidden", "NotFound") },
      }),
      delete: revoke("revokeApiKey"),
    },
    "/v1/keys/{id}/revoke": { post: revoke("revokeApiKeyPost") },
  };
}

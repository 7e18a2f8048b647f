/**
 * The OpenAPI paths of the email pipeline (shared/api/email-routes.ts), the operations routes
 * (shared/api/operations-routes.ts) and the unsubscribe pages (shared/api/unsubscribe-routes.tsx),
 * generated from the schemas the routes parse with and answer by (email-schemas.ts).
 */
import type { z } from "zod";
import {
  campaignPageSchema,
  campaignSchema,
  contactListSchema,
  contactsUpsertedSchema,
  emailQueries,
  emailSchemas,
  listPageSchema,
  listSchema,
  outboxSchema,
  segmentSchema,
  suppressionListSchema,
  suppressionSchema,
  templateSchema,
} from "./email-schemas";
import { body, input, type OpenApiHelpers, output, path, queryParameters } from "./openapi-data";
import { scalingSchema, schedulesSchema, workersSchema } from "./operations-routes";

type Json = Record<string, unknown>;

export function emailPaths({ json, problems }: OpenApiHelpers): Record<string, Json> {
  const op = (tag: string, operationId: string, summary: string, query: z.ZodType, extra: Json) => ({
    summary,
    operationId,
    tags: [tag],
    ...extra,
    parameters: [...((extra.parameters as Json[] | undefined) ?? []), ...queryParameters(query)],
  });
  const plain = emailQueries.plain;
  const id = (what: string) => path("id", what);
  const created = (schema: z.ZodType, what: string) => ({ 201: json(output(schema), what) });
  const writeProblems = problems("BadRequest", "Unauthorized", "Forbidden", "NotFound", "PayloadTooLarge", "UnsupportedMediaType", "ValidationFailed");
  const readProblems = problems("Unauthorized", "Forbidden", "NotFound", "ValidationFailed");
  const campaignAction = (action: "pause" | "resume" | "cancel", summary: string) => ({
    post: op("campaigns", `${action}Campaign`, summary, plain, {
      parameters: [id("Campaign id (camp_…)")],
      responses: { 200: json(output(campaignSchema), "The campaign"), ...problems("Unauthorized", "Forbidden", "NotFound", "Conflict", "ValidationFailed") },
    }),
  });

  return {
    "/v1/contacts": {
      post: op("contacts", "upsertContacts", "Add or update up to 1,000 contacts by address (case-insensitive), optionally into a list", plain, {
        requestBody: body(emailSchemas.contacts),
        responses: { 200: json(output(contactsUpsertedSchema), "Each contact's id, and how many were created or updated"), ...writeProblems },
      }),
      get: op("contacts", "listContacts", "List contacts, by id, 100 a page", emailQueries.byId, {
        responses: { 200: json(output(contactListSchema), "A page of contacts"), ...readProblems },
      }),
    },
    "/v1/lists": {
      post: op("lists", "createList", "Create a list", plain, {
        requestBody: body(emailSchemas.list),
        responses: { ...created(listSchema, "The list"), ...writeProblems },
      }),
      get: op("lists", "listLists", "List lists, newest first", emailQueries.lists, {
        responses: { 200: json(output(listPageSchema), "A page of lists"), ...readProblems },
      }),
    },
    "/v1/lists/{id}": {
      get: op("lists", "getList", "Get a list and its contact count", plain, {
        parameters: [id("List id (lst_…)")],
        responses: { 200: json(output(listSchema), "The list"), ...readProblems },
      }),
    },
    "/v1/segments": {
      post: op("segments", "createSegment", "Create a segment: a list filtered on contact attributes", plain, {
        requestBody: body(emailSchemas.segment),
        responses: { ...created(segmentSchema, "The segment"), ...writeProblems },
      }),
    },
    "/v1/templates": {
      post: op("templates", "createTemplate", "Create a template from blocks with {{variables}}", plain, {
        requestBody: body(emailSchemas.template),
        responses: { ...created(templateSchema, "The template"), ...writeProblems },
      }),
    },
    "/v1/templates/{id}": {
      get: op("templates", "getTemplate", "Get a template", plain, {
        parameters: [id("Template id (tpl_…)")],
        responses: { 200: json(output(templateSchema), "The template"), ...readProblems },
      }),
    },
    "/v1/campaigns": {
      post: op("campaigns", "createCampaign", "Create a campaign (a draft) of a template to a list or a segment", plain, {
        requestBody: body(emailSchemas.campaign),
        responses: { ...created(campaignSchema, "The campaign"), ...writeProblems },
      }),
      get: op("campaigns", "listCampaigns", "List campaigns, newest first", emailQueries.campaigns, {
        responses: { 200: json(output(campaignPageSchema), "A page of campaigns"), ...readProblems },
      }),
    },
    "/v1/campaigns/{id}": {
      get: op("campaigns", "getCampaign", "Get a campaign: status, counters and fan-out progress", plain, {
        parameters: [id("Campaign id (camp_…)")],
        responses: { 200: json(output(campaignSchema), "The campaign"), ...readProblems },
      }),
    },
    "/v1/campaigns/{id}/start": {
      post: op("campaigns", "startCampaign", "Start a campaign now, or at a time ({\"at\": …})", plain, {
        parameters: [id("Campaign id (camp_…)")],
        requestBody: { required: false, content: { "application/json": { schema: input(emailSchemas.start) } } },
        responses: {
          200: json(output(campaignSchema), "The campaign, sending or scheduled"),
          ...problems("BadRequest", "Unauthorized", "Forbidden", "NotFound", "Conflict", "UnsupportedMediaType", "ValidationFailed"),
        },
      }),
    },
    "/v1/campaigns/{id}/pause": campaignAction("pause", "Pause a sending campaign: the fan-out stops before its next batch, waiting sends wait"),
    "/v1/campaigns/{id}/resume": campaignAction("resume", "Resume a paused campaign"),
    "/v1/campaigns/{id}/cancel": campaignAction("cancel", "Cancel a campaign: sends not yet made are skipped"),
    "/v1/suppressions": {
      post: op("suppressions", "addSuppression", "Never send to an address again (this tenant)", plain, {
        requestBody: body(emailSchemas.suppression),
        responses: { ...created(suppressionSchema, "The suppression"), ...writeProblems },
      }),
      get: op("suppressions", "listSuppressions", "List suppressions, by address, 100 a page", emailQueries.byEmail, {
        responses: { 200: json(output(suppressionListSchema), "A page of suppressions"), ...readProblems },
      }),
    },
    "/v1/suppressions/{email}": {
      delete: op("suppressions", "removeSuppression", "Remove a suppression", plain, {
        parameters: [path("email", "The suppressed address")],
        responses: { 204: { description: "Removed" }, ...readProblems },
      }),
    },
    "/v1/outbox": {
      get: op("outbox", "listOutbox", "What the outbox provider (the embedded default) would have sent, newest first, 50 a page", emailQueries.byId, {
        responses: { 200: json(output(outboxSchema), "A page of messages"), ...readProblems },
      }),
    },
  };
}

/** GET /v1/scaling, GET /v1/workers (admin keys) and the unsubscribe pages. */
export function operationsPaths({ json, problems }: OpenApiHelpers): Record<string, Json> {
  const adminOp = (operationId: string, summary: string, schema: z.ZodType, what: string) => ({
    get: {
      summary,
      operationId,
      tags: ["ops"],
      parameters: queryParameters(emailQueries.plain),
      responses: { 200: json(output(schema), what), ...problems("Unauthorized", "Forbidden", "ValidationFailed") },
    },
  });
  const page = (description: string) => ({ description, content: { "text/html": { schema: { type: "string" } } } });
  const token = path("token", "The token of the List-Unsubscribe link (v2.…)");
  return {
    "/v1/scaling": adminOp(
      "getScaling",
      "Scaling signals per pool (admin): depth, oldest wait, activity, memory, and the recommendation",
      scalingSchema,
      "The policy and each pool's signals",
    ),
    "/v1/workers": adminOp("listWorkers", "The worker registry (admin), the workers gone silent marked", workersSchema, "Every registered worker"),
    "/v1/schedules": adminOp(
      "listSchedules",
      "The cron schedules (admin): each type the scheduler enqueues on a schedule, its last and next slot, and the last slot's job",
      schedulesSchema,
      "Every cron schedule of the catalog",
    ),
    "/u/{token}": {
      get: {
        summary: "The unsubscribe page: a button that POSTs (a GET never unsubscribes); no API key, the signed token is the authority",
        operationId: "unsubscribePage",
        tags: ["unsubscribe"],
        security: [],
        parameters: [token],
        responses: { 200: page("A page asking to confirm"), 404: page("A token we did not issue, exactly") },
      },
      post: {
        summary: "One-click unsubscribe (RFC 8058): suppresses the address for the tenant and marks the contact unsubscribed",
        operationId: "unsubscribe",
        tags: ["unsubscribe"],
        security: [],
        parameters: [token],
        responses: { 200: page("Unsubscribed"), 404: page("A token we did not issue, exactly; nothing recorded") },
      },
    },
  };
}

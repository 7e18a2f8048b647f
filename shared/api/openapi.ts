/**
 * The OpenAPI 3.1 document, generated from the zod schemas the routes validate with (the
 * queue's enqueue envelope, the catalog's payload schemas, the API's own), so it cannot drift.
 */
import { z } from "zod";
import type { JobType } from "../jobs/definition";
import { enqueueRequestSchema, MAX_BATCH } from "../queue/queue";
import { jobErrorViewSchema, jobViewSchema } from "./job-view";
import { dataPaths, input, keyPaths, output, queryParameters } from "./openapi-data";
import { emailPaths, operationsPaths } from "./openapi-email";
import { PROBLEM_CONTENT_TYPE, problemSchema } from "./problem";
import { PROMETHEUS_CONTENT_TYPE } from "./prometheus";
import {
  batchResponseSchema,
  healthSchema,
  jobGetQuerySchema,
  jobListSchema,
  laneRequestSchema,
  laneResultSchema,
  tenantQuerySchema,
  listQuerySchema,
  queueListSchema,
  queueStatsSchema,
  retryFailedResultSchema,
} from "./schemas";

type Json = Record<string, unknown>;
const ref = (name: string) => ({ $ref: `#/components/schemas/${name}` });
const uri = (id: string) => `#/components/schemas/${id}`;

/** "email.send" -> "EmailSendEnqueueRequest": component names read better without dots. */
export const enqueueSchemaName = (type: string) =>
  `${type
    .split(/[^A-Za-z0-9]+/)
    .map((w) => w.charAt(0).toUpperCase() + w.slice(1))
    .join("")}EnqueueRequest`;

/** Drops the JSON Schema dialect markers zod adds to each top-level schema; OpenAPI 3.1 sets the dialect once. */
function clean(schemas: Record<string, Json>): Record<string, Json> {
  return Object.fromEntries(
    Object.entries(schemas).map(([name, { $schema: _s, $id: _i, ...rest }]) => [name, rest]),
  );
}

/**
 * payload.tenant_id is filled from the API key when omitted, so the document must not list it
 * as required (the payload schema itself requires it of the stored job).
 */
function tenantIdOptional(schema: Json): void {
  if (Array.isArray(schema.required)) schema.required = schema.required.filter((f) => f !== "tenant_id");
  for (const key of ["oneOf", "anyOf", "allOf"] as const) {
    const branches = schema[key];
    if (Array.isArray(branches)) for (const b of branches) tenantIdOptional(b as Json);
  }
}

function schemaComponents(catalog: ReadonlyMap<string, JobType>): Record<string, Json> {
  const requests = z.registry<{ id: string }>();
  const envelopes = [...catalog.values()].map((def) => {
    const envelope = enqueueRequestSchema
      .extend({ type: z.literal(def.type), payload: def.payload })
      .describe(`${def.description}${def.adminOnly ? " Admin keys only; runs as the system tenant." : ""}`);
    requests.add(envelope, { id: enqueueSchemaName(def.type) });
    return envelope;
  });
  const [first, ...rest] = envelopes;
  if (!first) throw new Error("the job catalog is empty");
  const anyEnqueue = z.discriminatedUnion("type", [first, ...rest]);
  requests.add(anyEnqueue, { id: "EnqueueRequest" });
  requests.add(z.strictObject({ jobs: z.array(anyEnqueue).min(1).max(MAX_BATCH) }), { id: "BatchRequest" });
  const requestSchemas = clean(
    z.toJSONSchema(requests, { io: "input", unrepresentable: "any", uri }).schemas as Record<string, Json>,
  );
  for (const def of catalog.values()) {
    const payload = (requestSchemas[enqueueSchemaName(def.type)]?.properties as Json | undefined)?.payload;
    if (payload) tenantIdOptional(payload as Json);
  }

  const responses = z.registry<{ id: string }>();
  responses.add(jobViewSchema, { id: "Job" });
  responses.add(jobErrorViewSchema, { id: "JobError" });
  responses.add(jobListSchema, { id: "JobList" });
  responses.add(batchResponseSchema, { id: "BatchResult" });
  responses.add(queueStatsSchema, { id: "QueueStats" });
  responses.add(queueListSchema, { id: "QueueList" });
  responses.add(retryFailedResultSchema, { id: "RetryFailedResult" });
  responses.add(healthSchema, { id: "Health" });
  responses.add(problemSchema, { id: "Problem" });
  const responseSchemas = clean(
    z.toJSONSchema(responses, { io: "output", unrepresentable: "any", uri }).schemas as Record<string, Json>,
  );
  return { ...requestSchemas, ...responseSchemas };
}

/** The problem responses, by component name: [status, description]. */
const PROBLEMS = {
  BadRequest: [400, "Malformed request: a body that is not JSON or not UTF-8, JSON nested too deep, or a URL or header that is not valid text"],
  Unauthorized: [401, "Missing, invalid or revoked API key"],
  Forbidden: [403, "The key may not do this (another tenant, an admin-only operation)"],
  NotFound: [404, "No such resource for this key (another tenant's job is not found either)"],
  Conflict: [409, "The resource is not in a state that allows this (the detail says what to do)"],
  Gone: [410, "The link has expired, or what it named is gone"],
  PayloadTooLarge: [413, "The body exceeds the size limit"],
  UnsupportedMediaType: [415, "The body is not application/json"],
  ValidationFailed: [422, "The body or query failed its schema; `errors` lists every offending path"],
  Unavailable: [503, "The database is unreachable"],
} as const;
type ProblemName = keyof typeof PROBLEMS;

function problemResponses(): Json {
  return Object.fromEntries(
    Object.entries(PROBLEMS).map(([name, [, description]]) => [
      name,
      {
        description,
        ...(name === "Unauthorized"
          ? { headers: { "WWW-Authenticate": { schema: { type: "string" }, description: "Bearer challenge" } } }
          : {}),
        content: { [PROBLEM_CONTENT_TYPE]: { schema: ref("Problem") } },
      },
    ]),
  );
}

const responseRefs = (...names: ProblemName[]) =>
  Object.fromEntries(names.map((n) => [PROBLEMS[n][0], { $ref: `#/components/responses/${n}` }]));

const json = (schema: Json, description: string, headers?: Json) => ({
  description,
  ...(headers ? { headers } : {}),
  content: { "application/json": { schema } },
});

const idParam = { name: "id", in: "path", required: true, schema: { type: "string", pattern: "^\\d{1,18}$" } };

/** GET /v1/jobs query parameters, from the same schema the route parses. */
function listParameters(): Json[] {
  const schema = z.toJSONSchema(listQuerySchema, { io: "input", unrepresentable: "any" }) as Json;
  const properties = (schema.properties ?? {}) as Record<string, Json>;
  return Object.entries(properties).map(([name, s]) => {
    const { description, ...rest } = s;
    return { name, in: "query", required: false, ...(description ? { description } : {}), schema: rest };
  });
}

export function buildOpenApiDocument(options: { catalog: ReadonlyMap<string, JobType>; version: string }): Json {
  const jobOp = (summary: string, extra: Json) => ({ summary, tags: ["jobs"], ...extra });
  return {
    openapi: "3.1.0",
    info: {
      title: "PenguinMails Jobs API",
      version: options.version,
      description:
        "Enqueue and manage background jobs. Authenticate with `Authorization: Bearer <key>`; " +
        "a tenant key sees only its tenant's jobs, an admin key sees all. Errors are RFC 9457 problem details.",
    },
    // Relative: the paths are under wherever this document is served (behind any proxy or PUBLIC_URL).
    servers: [{ url: "/", description: "The server that serves this document" }],
    security: [{ bearerAuth: [] }],
    paths: {
      "/v1/jobs": {
        post: jobOp("Enqueue a job", {
          operationId: "enqueueJob",
          parameters: [
            { name: "Idempotency-Key", in: "header", required: false, schema: { type: "string", minLength: 1, maxLength: 255 },
              description: "Same as the body's idempotency_key" },
          ],
          requestBody: { required: true, content: { "application/json": { schema: ref("EnqueueRequest") } } },
          responses: {
            201: json(ref("Job"), "Created", { Location: { schema: { type: "string" } } }),
            200: json(ref("Job"), "The idempotency key matched an existing job, which is returned", {
              "Idempotent-Replayed": { schema: { type: "string", const: "true" } },
            }),
            ...responseRefs("BadRequest", "Unauthorized", "Forbidden", "PayloadTooLarge", "UnsupportedMediaType", "ValidationFailed"),
          },
        }),
        get: jobOp("List jobs, newest first", {
          operationId: "listJobs",
          parameters: listParameters(),
          responses: { 200: json(ref("JobList"), "A page of jobs"), ...responseRefs("Unauthorized", "Forbidden", "ValidationFailed") },
        }),
      },
      "/v1/jobs/batch": {
        post: jobOp(`Enqueue up to ${MAX_BATCH} jobs at once; none is stored if any is invalid`, {
          operationId: "enqueueJobs",
          requestBody: { required: true, content: { "application/json": { schema: ref("BatchRequest") } } },
          responses: {
            201: json(ref("BatchResult"), "Stored (or matched by idempotency key)"),
            ...responseRefs("BadRequest", "Unauthorized", "Forbidden", "PayloadTooLarge", "UnsupportedMediaType", "ValidationFailed"),
          },
        }),
      },
      "/v1/jobs/{id}": {
        get: jobOp("Get a job; with ?wait=<seconds>, when it has finished (a long-poll)", {
          operationId: "getJob",
          description:
            "With `wait`, the answer comes as soon as the job is completed, failed or cancelled, or when the wait is over " +
            "with the job as it is then (check `state`). The server reads the job again with a short backoff; no connection is held while waiting.",
          parameters: [idParam, ...queryParameters(jobGetQuerySchema)],
          responses: { 200: json(ref("Job"), "The job"), ...responseRefs("Unauthorized", "NotFound", "ValidationFailed") },
        }),
        delete: jobOp("Delete a finished job (completed, failed or cancelled)", {
          operationId: "deleteJob",
          parameters: [idParam, ...queryParameters(tenantQuerySchema)],
          responses: {
            204: { description: "Deleted" },
            ...responseRefs("Unauthorized", "NotFound", "Conflict", "ValidationFailed"),
          },
        }),
      },
      "/v1/jobs/{id}/events": {
        get: jobOp("Follow a job as Server-Sent Events until it finishes", {
          operationId: "streamJobEvents",
          description:
            "A `text/event-stream`. `event: job` carries the job (as `GET /v1/jobs/{id}` answers it): first at once, then at each change of " +
            "its state, attempt or progress (an import's rows, a fan-out's recipients: a progress bar). `event: end` (data `{id, state}`) " +
            "follows when it is completed, failed or cancelled, and the stream closes; `event: gone` if the job is deleted. The server reads " +
            "the job with a short backoff (100 ms to 1 s) and closes a stream after 10 minutes; EventSource reconnects by itself.",
          parameters: [idParam, ...queryParameters(tenantQuerySchema)],
          responses: {
            200: { description: "The job's events", content: { "text/event-stream": { schema: { type: "string" } } } },
            ...responseRefs("Unauthorized", "NotFound", "ValidationFailed"),
          },
        }),
      },
      "/v1/jobs/{id}/cancel": {
        post: jobOp("Cancel a waiting job, or ask a running one to stop", {
          operationId: "cancelJob",
          parameters: [idParam],
          responses: { 200: json(ref("Job"), "The job after the cancel"), ...responseRefs("Unauthorized", "NotFound", "Conflict") },
        }),
      },
      "/v1/jobs/{id}/retry": {
        post: jobOp("Run a failed or cancelled job again from attempt 1", {
          operationId: "retryJob",
          parameters: [idParam],
          responses: { 200: json(ref("Job"), "The job, waiting again"), ...responseRefs("Unauthorized", "NotFound", "Conflict") },
        }),
      },
      "/v1/queues": {
        get: {
          summary: "Counts per job type (a tenant key: its own jobs only)",
          operationId: "listQueues",
          tags: ["queues"],
          responses: { 200: json(ref("QueueList"), "One entry per job type"), ...responseRefs("Unauthorized") },
        },
      },
      "/v1/queues/{type}/retry-failed": {
        post: {
          summary: "Run every failed job of a type again (admin)",
          operationId: "retryFailed",
          tags: ["queues"],
          parameters: [{ name: "type", in: "path", required: true, schema: { type: "string", enum: [...options.catalog.keys()] } }],
          responses: { 200: json(ref("RetryFailedResult"), "How many jobs run again"), ...responseRefs("Unauthorized", "Forbidden", "NotFound") },
        },
      },
      ...Object.fromEntries(
        (["pause", "resume"] as const).map((action) => [
          `/v1/queues/{type}/${action}`,
          {
            post: {
              summary: `${action === "pause" ? "Pause" : "Resume"} a job type, or one tenant's jobs of it (admin)`,
              operationId: `${action}Queue`,
              tags: ["queues"],
              parameters: [{ name: "type", in: "path", required: true, schema: { type: "string", enum: [...options.catalog.keys()] } }],
              requestBody: { required: false, content: { "application/json": { schema: input(laneRequestSchema) } } },
              responses: {
                200: json(output(laneResultSchema), "The lane's new state and how many jobs it moved"),
                ...responseRefs("Unauthorized", "Forbidden", "NotFound", "ValidationFailed"),
              },
            },
          },
        ]),
      ),
      "/healthz": {
        get: {
          summary: "Liveness and database reachability",
          operationId: "health",
          tags: ["ops"],
          security: [],
          responses: { 200: json(ref("Health"), "Healthy"), ...responseRefs("BadRequest", "Unavailable") },
        },
      },
      "/metrics": {
        get: {
          summary: "Prometheus metrics (admin key, unless the server makes them public)",
          operationId: "metrics",
          tags: ["ops"],
          security: [{ bearerAuth: [] }, {}],
          responses: {
            200: { description: "Text exposition format 0.0.4", content: { [PROMETHEUS_CONTENT_TYPE]: { schema: { type: "string" } } } },
            ...responseRefs("Unauthorized", "Forbidden"),
          },
        },
      },
      ...dataPaths({ json, problems: responseRefs }),
      ...emailPaths({ json, problems: responseRefs }),
      ...operationsPaths({ json, problems: responseRefs }),
      ...keyPaths({ json, problems: responseRefs }),
      "/openapi.json": {
        get: {
          summary: "This document",
          operationId: "openapi",
          tags: ["ops"],
          security: [],
          responses: { 200: json({ type: "object" }, "OpenAPI 3.1 document"), ...responseRefs("BadRequest") },
        },
      },
    },
    components: {
      securitySchemes: { bearerAuth: { type: "http", scheme: "bearer", description: "pmk_<id>_<secret>" } },
      schemas: schemaComponents(options.catalog),
      responses: problemResponses(),
    },
  };
}

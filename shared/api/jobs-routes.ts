/**
 * /v1/jobs: enqueue (one or a batch), inspect (and wait for the end: ?wait=<seconds>, or follow
 * it as Server-Sent Events), list, cancel, retry and delete a finished job. Every query is scoped by
 * the key's tenant, so another tenant's job is simply "not found" (its existence never leaks).
 */
import { type Context, Hono } from "hono";
import { bigintId } from "../jobs/fields";
import type { Queue } from "../queue/queue";
import type { Job, JobState } from "../queue/job";
import type { Principal } from "./api-keys";
import type { ApiEnv } from "./auth";
import { readJson } from "./body";
import { decodeCursor, encodeCursor } from "./cursor";
import type { UrlGuard } from "../webhooks/ssrf";
import { prepareEnqueueAll } from "./enqueue";
import { assertImportFileUrls } from "./file-url-check";
import { toJobView } from "./job-view";
import { ApiError, zodFieldErrors } from "./problem";
import { parseParam, parseQuery } from "./request-input";
import { batchRequestSchema, jobGetQuerySchema, tenantQuerySchema, listQuerySchema } from "./schemas";
import type { SqlClient } from "../ports";
import { FINISHED_STATES, waitForFinished } from "./job-wait";
import { streamSSE } from "hono/streaming";
import { streamJobEvents } from "./job-events";
import { MAX_BATCH } from "../queue/queue";
import { bigintIdParam, describeRoute, headerParam, json, jsonBody, problems, queryParameters, ref, text } from "./openapi-route";
import { batchResponseSchema, jobListSchema } from "./schemas";
import { jobViewSchema } from "./job-view";

/**
 * JobDeleteFinishedOne: remove one finished job (completed, failed, cancelled), within the
 * key's tenant ($2 null: an admin key, any tenant). Nothing refers to a job row (imports and
 * exports keep their own rows), so this is what retention does, for one job, now. $1 id.
 */
export const JobDeleteFinishedOne = `
delete from jobs where id = $1::bigint and ($2::text is null or tenant_id = $2)
  and state in ('completed', 'failed', 'cancelled')
returning id::text`;

/** The Idempotency-Key header, checked like the body field it stands for. */
function idempotencyHeader(value: string | undefined): string | undefined {
  if (value === undefined) return undefined;
  if (value.length < 1 || value.length > 255) {
    throw new ApiError(422, "invalid Idempotency-Key header", [
      { path: "headers.idempotency-key", message: "expected 1 to 255 characters" },
    ]);
  }
  return value;
}

/** The :id of a job: a bigint, or no job has it. */
const jobId = (c: Context) => parseParam(c, "id", bigintId, (id) => `no job ${id}`);

/** The routes of one job and enqueueing take no query of their own (an admin names the tenant in the body). */
const noQuery = (c: Context) => parseQuery(c, tenantQuerySchema);

/** The :id of a job, after checking the query has nothing unknown. */
function jobParams(c: Context): string {
  noQuery(c);
  return jobId(c);
}

const tags = ["jobs"];
const idParam = bigintIdParam("The job's id");
const jobOnly = [idParam, ...queryParameters(tenantQuerySchema)];
/** A JSON body: too large, not JSON at all, or not application/json. */
const bodyProblems = problems("PayloadTooLarge", "UnsupportedMediaType");

/** `urlGuard`: the SSRF guard import.contacts file URLs pass before the job is stored. */
export function jobsRoutes(queue: Queue, sql: SqlClient, urlGuard: UrlGuard): Hono<ApiEnv> {
  const app = new Hono<ApiEnv>();
  const view = (job: Job, principal: Principal) =>
    toJobView(job, { def: queue.catalog.get(job.type), admin: principal.admin });

  app.post(
    "/",
    describeRoute(() => ({
      operationId: "enqueueJob",
      tags,
      summary: "Enqueue a job",
      parameters: [
        ...queryParameters(tenantQuerySchema),
        headerParam("Idempotency-Key", "Same as the body's idempotency_key", { type: "string", minLength: 1, maxLength: 255 }),
      ],
      requestBody: jsonBody(ref("EnqueueRequest")),
      responses: {
        201: json(jobViewSchema, "Created", { Location: { schema: { type: "string" } } }),
        200: json(jobViewSchema, "The idempotency key matched an existing job, which is returned", {
          "Idempotent-Replayed": { schema: { type: "string", const: "true" } },
        }),
        ...problems("Forbidden"),
        ...bodyProblems,
      },
    })),
    async (c) => {
      const principal = c.get("principal");
      noQuery(c);
      const headerKey = idempotencyHeader(c.req.header("idempotency-key"));
      const body = await readJson(c);
      const rows = prepareEnqueueAll(queue, principal, [{ body, at: [], idempotencyKey: headerKey }], "invalid job");
      await assertImportFileUrls(rows, urlGuard);
      const [{ job, created }] = (await queue.enqueueValidated(rows)) as [{ job: Job; created: boolean }];
      c.header("location", `/v1/jobs/${job.id}`);
      if (!created) c.header("idempotent-replayed", "true");
      return c.json(view(job, principal), created ? 201 : 200);
    },
  );

  app.post(
    "/batch",
    describeRoute(() => ({
      operationId: "enqueueJobs",
      tags,
      summary: `Enqueue up to ${MAX_BATCH} jobs at once; none is stored if any is invalid`,
      parameters: queryParameters(tenantQuerySchema),
      requestBody: jsonBody(ref("BatchRequest")),
      responses: { 201: json(batchResponseSchema, "Stored (or matched by idempotency key)"), ...problems("Forbidden"), ...bodyProblems },
    })),
    async (c) => {
      const principal = c.get("principal");
      noQuery(c);
      if (c.req.header("idempotency-key") !== undefined) {
        throw new ApiError(422, "a batch takes idempotency keys per job", [
          { path: "headers.idempotency-key", message: "not supported on batches; set idempotency_key on each job" },
        ]);
      }
      const parsed = batchRequestSchema.safeParse(await readJson(c));
      if (!parsed.success) throw new ApiError(422, "invalid batch", zodFieldErrors(parsed.error));
      const items = parsed.data.jobs.map((body, i) => ({ body, at: ["jobs", i] }));
      const rows = prepareEnqueueAll(queue, principal, items, "invalid jobs in the batch; none were stored");
      await assertImportFileUrls(rows, urlGuard, (i) => items[i]!.at);
      const results = await queue.enqueueValidated(rows);
      const created = results.filter((r) => r.created).length;
      return c.json({ jobs: results.map((r) => view(r.job, principal)), created, existing: results.length - created }, 201);
    },
  );

  app.get(
    "/",
    describeRoute(() => ({
      operationId: "listJobs",
      tags,
      summary: "List jobs, newest first",
      parameters: queryParameters(listQuerySchema),
      responses: { 200: json(jobListSchema, "A page of jobs"), ...problems("Forbidden") },
    })),
    async (c) => {
      const principal = c.get("principal");
      const q = parseQuery(c, listQuerySchema);
      if (q.type !== undefined && !queue.catalog.has(q.type)) {
        throw new ApiError(422, "invalid query", [{ path: "type", message: "unknown job type" }]);
      }
      if (!principal.admin && q.tenant_id !== undefined && q.tenant_id !== principal.tenantId) {
        throw new ApiError(403, "tenant_id differs from the tenant of your API key");
      }
      const beforeId = q.cursor === undefined ? undefined : decodeCursor(q.cursor);
      if (beforeId === null) throw new ApiError(422, "invalid query", [{ path: "cursor", message: "not a cursor from this API" }]);
      // One row more than the page tells whether a next page exists, so the last page says null.
      const rows = await queue.list({
        tenantId: principal.admin ? (q.tenant_id ?? null) : principal.tenantId,
        type: q.type,
        state: q.state as JobState | undefined,
        beforeId,
        limit: q.limit + 1,
      });
      const page = rows.slice(0, q.limit);
      const last = page.at(-1);
      const nextCursor = rows.length > q.limit && last ? encodeCursor(last.id) : null;
      return c.json({ jobs: page.map((j) => view(j, principal)), next_cursor: nextCursor });
    },
  );

  app.get(
    "/:id",
    describeRoute(() => ({
      operationId: "getJob",
      tags,
      summary: "Get a job; with ?wait=<seconds>, when it has finished (a long-poll)",
      description:
        "With `wait`, the answer comes as soon as the job is completed, failed or cancelled, or when the wait is over " +
        "with the job as it is then (check `state`). The server reads the job again with a short backoff; no connection is held while waiting.",
      parameters: [idParam, ...queryParameters(jobGetQuerySchema)],
      responses: { 200: json(jobViewSchema, "The job"), ...problems("NotFound") },
    })),
    async (c) => {
      const principal = c.get("principal");
      const { wait } = parseQuery(c, jobGetQuerySchema);
      const id = jobId(c);
      const read = () => queue.get(id, principal.tenantId);
      const job = wait ? await waitForFinished(read, wait, { signal: c.req.raw.signal }) : await read();
      return c.json(view(job, principal));
    },
  );

  // The job's changes as Server-Sent Events until it ends (job-events.ts). The first read comes
  // before the stream opens, so an unknown or foreign job is a plain 404 problem.
  app.get(
    "/:id/events",
    describeRoute(() => ({
      operationId: "streamJobEvents",
      tags,
      summary: "Follow a job as Server-Sent Events until it finishes",
      description:
        "A `text/event-stream`. `event: job` carries the job (as `GET /v1/jobs/{id}` answers it): first at once, then at each change of " +
        "its state, attempt or progress (an import's rows, a fan-out's recipients: a progress bar). `event: end` (data `{id, state}`) " +
        "follows when it is completed, failed or cancelled, and the stream closes; `event: gone` if the job is deleted. The server reads " +
        "the job with a short backoff (100 ms to 1 s) and closes a stream after 10 minutes; EventSource reconnects by itself.",
      parameters: jobOnly,
      responses: { 200: text("text/event-stream", "The job's events"), ...problems("NotFound") },
    })),
    async (c) => {
      const principal = c.get("principal");
      const id = jobParams(c);
      const read = () => queue.get(id, principal.tenantId);
      const first = await read();
      return streamSSE(c, (stream) => streamJobEvents(stream, first, { read, view: (job) => view(job, principal), signal: c.req.raw.signal }));
    },
  );

  // Remove a finished job; a waiting or running one must be cancelled first (and is then removable).
  app.delete(
    "/:id",
    describeRoute(() => ({
      operationId: "deleteJob",
      tags,
      summary: "Delete a finished job (completed, failed or cancelled)",
      parameters: jobOnly,
      responses: { 204: { description: "Deleted" }, ...problems("NotFound", "Conflict") },
    })),
    async (c) => {
      const principal = c.get("principal");
      const id = jobParams(c);
      const removed = await sql.query(JobDeleteFinishedOne, [id, principal.tenantId]);
      if (removed.length > 0) return c.body(null, 204);
      const job = await queue.get(id, principal.tenantId); // NotFound (404) when it is not this key's
      if (!FINISHED_STATES.has(job.state)) {
        throw new ApiError(409, `job ${id} is ${job.state}; cancel it first (POST /v1/jobs/${id}/cancel), then delete it`);
      }
      // Finished between the delete and the read (it was active a moment ago): try once more.
      if ((await sql.query(JobDeleteFinishedOne, [id, principal.tenantId])).length > 0) return c.body(null, 204);
      throw new ApiError(409, `job ${id} changed while it was being deleted; try again`);
    },
  );

  app.post(
    "/:id/cancel",
    describeRoute(() => ({
      operationId: "cancelJob",
      tags,
      summary: "Cancel a waiting job, or ask a running one to stop",
      parameters: jobOnly,
      responses: { 200: json(jobViewSchema, "The job after the cancel"), ...problems("NotFound", "Conflict") },
    })),
    async (c) => {
      const principal = c.get("principal");
      return c.json(view(await queue.cancel(jobParams(c), principal.tenantId), principal));
    },
  );

  app.post(
    "/:id/retry",
    describeRoute(() => ({
      operationId: "retryJob",
      tags,
      summary: "Run a failed or cancelled job again from attempt 1",
      parameters: jobOnly,
      responses: { 200: json(jobViewSchema, "The job, waiting again"), ...problems("NotFound", "Conflict") },
    })),
    async (c) => {
      const principal = c.get("principal");
      return c.json(view(await queue.retry(jobParams(c), principal.tenantId), principal));
    },
  );

  return app;
}

/**
 * Contact imports over HTTP:
 *   POST /v1/imports  JSON {file_url, mapping, list_id?, has_header?}, or the CSV itself
 *                     (Content-Type: text/csv; ?mapping=<JSON>&list_id=&has_header=), streamed
 *                     to storage first → 202 with the import's id (its job id)
 *   GET  /v1/imports/:id  status, counters, checkpoint and where the error report is
 *   GET  /v1/imports/:id/report  the error report (CSV)
 */
import { type Context, Hono } from "hono";
import { z } from "zod";
import { bigintId, entityId } from "../jobs/fields";
import { importContacts } from "../jobs/import-contacts";
import { importReportPath } from "../imports/import-contacts";
import type { SqlClient } from "../ports";
import { ValidationError } from "../queue/errors";
import type { NewJob } from "../queue/ledger";
import type { Enqueued, Queue } from "../queue/queue";
import { redactText } from "../redact";
import { type Storage, tenantFileProblem, tenantKeyPrefix } from "../storage/storage";
import type { UrlGuard } from "../webhooks/ssrf";
import { type ApiEnv, tenantOf } from "./auth";
import { readJson } from "./body";
import { parseParam, parseQuery } from "./request-input";
import { tenantQuerySchema } from "./schemas";
import { assertJsonText } from "./text-rule";
import { webFileUrlProblem } from "./file-url-check";
import { ApiError, joinPath, zodFieldErrors } from "./problem";
import { bigintIdParam, describeRoute, json, jsonBody, problems, queryParameters, text } from "./openapi-route";

/** The query of a CSV upload carries what a JSON body would (the mapping as JSON). */
export const uploadQuerySchema = tenantQuerySchema.extend({
  mapping: z.string().optional().describe('With text/csv (required then): the mapping as JSON, e.g. {"col_0":"email","name":"name"}'),
  list_id: z.string().optional().describe("With text/csv: the list the contacts join (lst_…)"),
  has_header: z.string().optional().describe("With text/csv: false when the first row is data, not a header"),
});

/** An import's :id is its job's, a bigint; anything else names no import. */
const importId = (c: Context) => parseParam(c, "id", bigintId, (id) => `no import ${id}`);

export const importRequestSchema = z.strictObject({
  file_url: z.string().min(1).max(2048),
  mapping: z.record(z.string().min(1).max(256), z.string().max(256)),
  list_id: entityId.optional(),
  has_header: z.boolean().optional(),
});

const isoTime = z.iso.datetime({ offset: true });
const jobStateSchema = z.enum(["scheduled", "queued", "paused", "active", "completed", "failed", "cancelled"]);

/** The answer of POST /v1/imports. */
export const importStartedSchema = z.object({
  id: z.string().describe("The import's id, its job's too"),
  state: jobStateSchema.describe("The job's state"),
  status_url: z.string().describe("GET it for the import's progress (an admin key's carries ?tenant_id=)"),
});

/** The answer of GET /v1/imports/:id: before the job has started, then its row's counters. */
export const importStatusSchema = z.union([
  z.object({
    id: z.string(),
    job_state: jobStateSchema,
    attempt: z.number().int(),
    status: z.literal("waiting").describe("The job has not started yet"),
  }),
  z.object({
    id: z.string(),
    job_state: jobStateSchema.nullable().describe("null once the job is gone (its retention is shorter than the import's)"),
    attempt: z.number().int().nullable(),
    status: z.enum(["running", "completed", "failed"]),
    list_id: z.string().nullable(),
    rows_read: z.number().describe("Data records read and committed (the checkpoint)"),
    created: z.number(),
    updated: z.number(),
    invalid: z.number(),
    duplicate: z.number(),
    list_added: z.number(),
    error: z.string().nullable(),
    created_at: isoTime,
    finished_at: isoTime.nullable(),
    report_url: z.string().nullable().describe("The error report (GET it with the same key), once the import wrote one"),
  }),
]);

/** What an upload is validated with before it is written: any URL the payload schema takes (the real one is known only after the write). */
const UPLOAD_PENDING_URL = "file:///upload-pending.csv";

/**
 * A link to one of the tenant's resources that the caller can follow as given: an admin key acts
 * for a tenant only when it names one, so its links carry ?tenant_id= (a tenant key's do not).
 */
function followable(c: Context<ApiEnv>, path: string, tenantId: string): string {
  return c.get("principal").admin ? `${path}?tenant_id=${encodeURIComponent(tenantId)}` : path;
}

const tags = ["imports"];
const ofImport = [...queryParameters(tenantQuerySchema), bigintIdParam("Import id")];

export function importRoutes(queue: Queue, sql: SqlClient, storage: Storage, guard: UrlGuard): Hono<ApiEnv> {
  const app = new Hono<ApiEnv>();

  /** The list must be the tenant's: checked before an upload is stored, so a refused request leaves nothing behind. */
  const checkList = async (tenantId: string, listId: string | undefined) => {
    if (!listId) return;
    const owned = await sql.query("select 1 from lists where id = $1 and tenant_id = $2", [listId, tenantId]);
    if (owned.length === 0) throw new ApiError(404, `no list ${listId}`);
  };

  /**
   * The request as the job will take it, through the job type's own schema (the mapping must
   * name an email column, no credentials in file_url, …), so everything the job would refuse is
   * a 422 here, named by the request's field (`mapping`, not `payload.mapping`).
   */
  const prepare = (tenantId: string, body: z.infer<typeof importRequestSchema>): NewJob => {
    try {
      return queue.validate({ type: importContacts.type, tenantId, payload: body });
    } catch (err) {
      if (!(err instanceof ValidationError)) throw err;
      const errors = err.issues.map((i) => ({ path: joinPath(i.path[0] === "payload" ? i.path.slice(1) : i.path), message: i.message }));
      throw new ApiError(422, "invalid import", errors);
    }
  };

  const enqueue = async (c: Context<ApiEnv>, row: NewJob) => {
    const [{ job }] = (await queue.enqueueValidated([row])) as [Enqueued];
    return c.json({ id: job.id, state: job.state, status_url: followable(c, `/v1/imports/${job.id}`, job.tenantId) }, 202);
  };

  app.post(
    "/imports",
    describeRoute(() => ({
      operationId: "startImport",
      tags,
      summary: "Start a contact import: a file_url (s3://, https://) as JSON, or the CSV itself as text/csv",
      description:
        "With Content-Type text/csv the body is the file (up to UPLOAD_LIMIT_BYTES, streamed to storage) and mapping, list_id and has_header come as query parameters (mapping as JSON).",
      parameters: queryParameters(uploadQuerySchema),
      requestBody: {
        required: true,
        content: { ...jsonBody(importRequestSchema).content, "text/csv": { schema: { type: "string" } } },
      },
      responses: {
        202: json(importStartedSchema, "Queued; the id is the import's (and its job's)"),
        ...problems("NotFound", "PayloadTooLarge", "UnsupportedMediaType"),
      },
    })),
    async (c) => {
      const type = c.req.header("content-type")?.split(";")[0]?.trim().toLowerCase();
      parseQuery(c, type === "text/csv" ? uploadQuerySchema : tenantQuerySchema);
      const tenantId = tenantOf(c);
      if (type === "text/csv") {
        let mapping: unknown;
        try {
          mapping = JSON.parse(c.req.query("mapping") ?? "");
        } catch {
          throw new ApiError(422, "invalid mapping", [{ path: "mapping", message: 'pass ?mapping= as JSON, e.g. {"col_0":"email"}' }]);
        }
        assertJsonText(mapping, ["mapping"]);
        const parsed = importRequestSchema.omit({ file_url: true }).safeParse({
          mapping,
          list_id: c.req.query("list_id"),
          has_header: c.req.query("has_header") === undefined ? undefined : c.req.query("has_header") !== "false",
        });
        if (!parsed.success) throw new ApiError(422, "invalid import", zodFieldErrors(parsed.error));
        // Everything that can be refused is refused before the file is written.
        prepare(tenantId, { ...parsed.data, file_url: UPLOAD_PENDING_URL });
        await checkList(tenantId, parsed.data.list_id);
        const body = c.req.raw.body;
        if (!body) throw new ApiError(400, "the request has no CSV body");
        const stored = await storage.write(`${tenantKeyPrefix(tenantId)}imports/upload-${crypto.randomUUID()}.csv`, body, {
          contentType: "text/csv",
        });
        // From here a refusal (or a failed insert) must take the file with it: no imports row would
        // ever point at it, so cleanup could not find it.
        try {
          return await enqueue(c, prepare(tenantId, { ...parsed.data, file_url: stored.url }));
        } catch (err) {
          await storage.delete(stored.url).catch(() => undefined);
          throw err;
        }
      }
      const parsed = importRequestSchema.safeParse(await readJson(c));
      if (!parsed.success) throw new ApiError(422, "invalid import", zodFieldErrors(parsed.error));
      const row = prepare(tenantId, parsed.data);
      await checkList(tenantId, parsed.data.list_id);
      // A stored file is only importable by the tenant it was stored for (the handler checks again).
      const refused = tenantFileProblem(storage, parsed.data.file_url, tenantId) ?? (await webFileUrlProblem(parsed.data.file_url, guard));
      if (refused) throw new ApiError(422, "invalid file_url", [{ path: "file_url", message: refused }]);
      return enqueue(c, row);
    },
  );

  app.get(
    "/imports/:id",
    describeRoute(() => ({
      operationId: "getImport",
      tags,
      summary: "An import's status and counters: rows read, created, updated, invalid, duplicate, list_added",
      parameters: ofImport,
      responses: { 200: json(importStatusSchema, "Status, counters and report_url once there is a report"), ...problems("NotFound") },
    })),
    async (c) => {
      parseQuery(c, tenantQuerySchema);
      const tenantId = tenantOf(c);
      const id = importId(c);
      const job = await queue.ledger.get(id, tenantId);
      if (job && job.type !== importContacts.type) throw new ApiError(404, `no import ${id}`);
      const [row] = await sql.query<{ report_url: string | null; error: string | null }>(
        `select status, list_id, rows_read::float8 as rows_read, created::float8 as created, updated::float8 as updated,
                invalid::float8 as invalid, duplicate::float8 as duplicate, list_added::float8 as list_added,
                report_url, error, created_at, finished_at
         from imports where id = $1 and tenant_id = $2`,
        [id, tenantId],
      );
      if (!row && !job) throw new ApiError(404, `no import ${id}`);
      if (!row) return c.json({ id, job_state: job!.state, attempt: job!.attempt, status: "waiting" });
      // The report's storage URL stays inside: a local path or bucket name is not the tenant's business.
      // The job may be gone (its retention is shorter than the import's): the row still tells.
      // The error can quote the file's URL or a server's answer: redacted like every output.
      const { report_url: stored, error, ...rest } = row;
      return c.json({
        id,
        job_state: job?.state ?? null,
        attempt: job?.attempt ?? null,
        ...rest,
        error: error === null ? null : redactText(error),
        report_url: stored ? followable(c, importReportPath(id), tenantId) : null,
      });
    },
  );

  app.get(
    "/imports/:id/report",
    describeRoute(() => ({
      operationId: "getImportReport",
      tags,
      summary: "The error report: every rejected row with its row number and reason (CSV)",
      parameters: ofImport,
      responses: { 200: text("text/csv", "row,reason,email"), ...problems("NotFound") },
    })),
    async (c) => {
      parseQuery(c, tenantQuerySchema);
      const [row] = await sql.query<{ report_url: string | null }>("select report_url from imports where id = $1 and tenant_id = $2", [
        importId(c),
        tenantOf(c),
      ]);
      if (!row?.report_url) throw new ApiError(404, `no report for import ${c.req.param("id")}`);
      const body = await storage.read(row.report_url, c.req.raw.signal);
      return new Response(body, {
        headers: { "content-type": "text/csv; charset=utf-8", "content-disposition": `attachment; filename="import-${c.req.param("id")}-errors.csv"` },
      });
    },
  );

  return app;
}

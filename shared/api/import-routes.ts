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
import { importContacts } from "../jobs/import-contacts";
import type { SqlClient } from "../ports";
import type { Queue } from "../queue/queue";
import { type Storage, tenantFileProblem, tenantKeyPrefix } from "../storage/storage";
import { type ApiEnv, tenantOf } from "./auth";
import { readJson } from "./body";
import { ApiError, zodFieldErrors } from "./problem";

export const importRequestSchema = z.strictObject({
  file_url: z.string().min(1).max(2048),
  mapping: z.record(z.string(), z.string()),
  list_id: z.string().min(1).max(64).optional(),
  has_header: z.boolean().optional(),
});

export function importRoutes(queue: Queue, sql: SqlClient, storage: Storage): Hono<ApiEnv> {
  const app = new Hono<ApiEnv>();

  /** The list must be the tenant's: checked before an upload is stored, so a refused request leaves nothing behind. */
  const checkList = async (tenantId: string, listId: string | undefined) => {
    if (!listId) return;
    const owned = await sql.query("select 1 from lists where id = $1 and tenant_id = $2", [listId, tenantId]);
    if (owned.length === 0) throw new ApiError(404, `no list ${listId}`);
  };

  const enqueue = async (c: Context<ApiEnv>, tenantId: string, body: z.infer<typeof importRequestSchema>) => {
    const { job } = await queue.enqueue({ type: importContacts.type, tenantId, payload: body });
    return c.json({ id: job.id, state: job.state, status_url: `/v1/imports/${job.id}` }, 202);
  };

  app.post("/imports", async (c) => {
    const tenantId = tenantOf(c);
    const type = c.req.header("content-type")?.split(";")[0]?.trim().toLowerCase();
    if (type === "text/csv") {
      let mapping: unknown;
      try {
        mapping = JSON.parse(c.req.query("mapping") ?? "");
      } catch {
        throw new ApiError(422, "invalid mapping", [{ path: "mapping", message: 'pass ?mapping= as JSON, e.g. {"col_0":"email"}' }]);
      }
      const parsed = importRequestSchema.omit({ file_url: true }).safeParse({
        mapping,
        list_id: c.req.query("list_id"),
        has_header: c.req.query("has_header") === undefined ? undefined : c.req.query("has_header") !== "false",
      });
      if (!parsed.success) throw new ApiError(422, "invalid import", zodFieldErrors(parsed.error));
      await checkList(tenantId, parsed.data.list_id);
      const body = c.req.raw.body;
      if (!body) throw new ApiError(400, "the request has no CSV body");
      const stored = await storage.write(`${tenantKeyPrefix(tenantId)}imports/upload-${crypto.randomUUID()}.csv`, body, {
        contentType: "text/csv",
      });
      return enqueue(c, tenantId, { ...parsed.data, file_url: stored.url });
    }
    const parsed = importRequestSchema.safeParse(await readJson(c));
    if (!parsed.success) throw new ApiError(422, "invalid import", zodFieldErrors(parsed.error));
    await checkList(tenantId, parsed.data.list_id);
    // A stored file is only importable by the tenant it was stored for (the handler checks again).
    const refused = tenantFileProblem(storage, parsed.data.file_url, tenantId);
    if (refused) throw new ApiError(422, "invalid file_url", [{ path: "file_url", message: refused }]);
    return enqueue(c, tenantId, parsed.data);
  });

  app.get("/imports/:id", async (c) => {
    const tenantId = tenantOf(c);
    const id = c.req.param("id");
    const job = /^\d{1,18}$/.test(id) ? await queue.ledger.get(id, tenantId) : null;
    if (job && job.type !== importContacts.type) throw new ApiError(404, `no import ${id}`);
    const [row] = await sql.query<{ report_url: string | null }>(
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
    const { report_url: stored, ...rest } = row;
    return c.json({ id, job_state: job?.state ?? null, attempt: job?.attempt ?? null, ...rest, report_url: stored ? `/v1/imports/${id}/report` : null });
  });

  /** The error report: every rejected row with its row number and reason, as CSV. */
  app.get("/imports/:id/report", async (c) => {
    const [row] = await sql.query<{ report_url: string | null }>("select report_url from imports where id = $1 and tenant_id = $2", [
      c.req.param("id"),
      tenantOf(c),
    ]);
    if (!row?.report_url) throw new ApiError(404, `no report for import ${c.req.param("id")}`);
    const body = await storage.read(row.report_url, c.req.raw.signal);
    return new Response(body, {
      headers: { "content-type": "text/csv; charset=utf-8", "content-disposition": `attachment; filename="import-${c.req.param("id")}-errors.csv"` },
    });
  });

  return app;
}

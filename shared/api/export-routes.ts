/**
 * Exports over HTTP, tenant-scoped like the email routes:
 * - POST /v1/exports {source, list_id | segment_id | campaign_id} → 202 (source
 *   campaign_engagement: a campaign's opens and clicks, by campaign_id) {id, job_id, status}: an
 *   export.data job; its id is the export's id.
 * - GET /v1/exports/:id → status, rows, bytes, expires_at and, when ready, a signed download_url.
 * - GET /files/:token (no API key: the token is the capability) streams the CSV as an
 *   attachment; 404 for a token we did not sign or an export that is gone, 410 once expired.
 */
import { Hono } from "hono";
import { z } from "zod";
import type { ExportLinks } from "../exports/links";
import { bigintId, email, entityId } from "../jobs/fields";
import type { Clock, SqlClient } from "../ports";
import type { Queue } from "../queue/queue";
import { type Storage, StorageNotFound } from "../storage/storage";
import { type ApiEnv, tenantOf } from "./auth";
import { ApiError, problemResponse } from "./problem";
import { bigintIdParam, describeRoute, json, jsonBody, pathParam, problems, queryParameters, security, text } from "./openapi-route";
import { parseBody, parseParam, parseQuery } from "./request-input";
import { tenantQuerySchema } from "./schemas";

export interface ExportRouteDeps {
  storage: Storage;
  links: ExportLinks;
  /** Decides link expiry; defaults to the queue's clock. */
  clock?: Clock;
}

export const exportRequestSchema = z.discriminatedUnion("source", [
  z.strictObject({ source: z.literal("list"), list_id: entityId, notify_email: email.optional() }),
  z.strictObject({ source: z.literal("segment"), segment_id: entityId, notify_email: email.optional() }),
  z.strictObject({ source: z.literal("campaign"), campaign_id: entityId, notify_email: email.optional() }),
  z
    .strictObject({ source: z.literal("campaign_engagement"), campaign_id: entityId, notify_email: email.optional() })
    .describe("A campaign's opens and clicks, every hit: id, kind, send_id, recipient, link_index, url, machine, at"),
]);

const isoTime = z.iso.datetime({ offset: true });

/** The answer of POST /v1/exports. */
export const exportStartedSchema = z.object({
  id: z.string().describe("The export's id, its job's too"),
  job_id: z.string(),
  status: z.literal("queued"),
});

/** The answer of GET /v1/exports/:id. */
export const exportViewSchema = z.object({
  id: z.string(),
  source: z.enum(["list", "segment", "campaign", "campaign_engagement"]),
  source_id: z.string(),
  status: z.enum(["queued", "running", "ready", "failed", "expired"]),
  rows: z.number().int(),
  bytes: z.number().int(),
  error: z.string().nullable(),
  created_at: isoTime,
  completed_at: isoTime.nullable(),
  expires_at: isoTime,
  download_url: z.string().nullable().describe("A signed link to the CSV (no API key needed) while the export is ready; null before and after"),
}).meta({ id: "Export" });

const TABLE_OF = { list: "lists", segment: "segments", campaign: "campaigns", campaign_engagement: "campaigns" } as const;
/** What a 404 names: an engagement export's source is a campaign. */
const NOUN_OF = { list: "list", segment: "segment", campaign: "campaign", campaign_engagement: "campaign" } as const;

interface ExportRow {
  id: string;
  tenant_id: string;
  source: string;
  source_id: string;
  status: string;
  rows: string;
  bytes: string;
  url: string | null;
  error: string | null;
  created_at: Date;
  completed_at: Date | null;
  expires_at: Date;
}


const tags = ["exports"];

export function exportRoutes(queue: Queue, sql: SqlClient, deps: ExportRouteDeps): Hono<ApiEnv> {
  const app = new Hono<ApiEnv>();
  const clock = deps.clock ?? queue.clock;

  app.post(
    "/v1/exports",
    describeRoute(() => ({
      operationId: "startExport",
      tags,
      summary: "Export a list's or segment's contacts, a campaign's sends and events, or a campaign's opens and clicks, to CSV",
      parameters: queryParameters(tenantQuerySchema),
      requestBody: jsonBody(exportRequestSchema),
      responses: { 202: json(exportStartedSchema, "Queued"), ...problems("NotFound", "PayloadTooLarge", "UnsupportedMediaType") },
    })),
    async (c) => {
      parseQuery(c, tenantQuerySchema);
      const tenantId = tenantOf(c);
      const req = await parseBody(c, exportRequestSchema);
      const sourceId = req.source === "list" ? req.list_id : req.source === "segment" ? req.segment_id : req.campaign_id;
      const found = await sql.query(`select 1 from ${TABLE_OF[req.source]} where id = $1 and tenant_id = $2`, [sourceId, tenantId]);
      if (found.length === 0) throw new ApiError(404, `no ${NOUN_OF[req.source]} ${sourceId}`);
      const { job } = await queue.enqueue({ type: "export.data", tenantId, payload: { ...req, tenant_id: tenantId } });
      // The handler upserts the same row when it starts; whichever comes first wins the insert.
      await sql.query(`insert into exports (id, tenant_id, source, source_id) values ($1::bigint, $2, $3, $4) on conflict (id) do nothing`, [
        job.id,
        tenantId,
        req.source,
        sourceId,
      ]);
      return c.json({ id: job.id, job_id: job.id, status: "queued" }, 202);
    },
  );

  app.get(
    "/v1/exports/:id",
    describeRoute(() => ({
      operationId: "getExport",
      tags,
      summary: "An export's status, size and, when ready, its signed download_url",
      parameters: [...queryParameters(tenantQuerySchema), bigintIdParam("Export id")],
      responses: { 200: json(exportViewSchema, "The export"), ...problems("NotFound") },
    })),
    async (c) => {
      parseQuery(c, tenantQuerySchema);
      const tenantId = tenantOf(c);
      const id = parseParam(c, "id", bigintId, (raw) => `no export ${raw}`);
      const [row] = await sql.query<ExportRow>(
        `select id::text, tenant_id, source, source_id, status, rows::text, bytes::text, url, error, created_at, completed_at, expires_at
         from exports where id = $1::bigint and tenant_id = $2`,
        [id, tenantId],
      );
      if (!row) throw new ApiError(404, `no export ${id}`);
      const expired = row.expires_at.getTime() <= clock.now().getTime();
      const ready = row.status === "ready" && !expired;
      return c.json({
        id: row.id,
        source: row.source,
        source_id: row.source_id,
        status: row.status === "ready" && expired ? "expired" : row.status,
        rows: Number(row.rows),
        bytes: Number(row.bytes),
        error: row.error,
        created_at: row.created_at.toISOString(),
        completed_at: row.completed_at?.toISOString() ?? null,
        expires_at: row.expires_at.toISOString(),
        download_url: ready ? await deps.links.url({ exportId: row.id, expiresAt: row.expires_at }) : null,
      });
    },
  );

  app.get(
    "/files/:token",
    describeRoute(() => ({
      operationId: "downloadExport",
      tags,
      summary: "Download an export (the signed token is the capability; no API key)",
      security: security.none,
      parameters: [pathParam("token", "From download_url")],
      responses: {
        200: text("text/csv", "The CSV, as an attachment"),
        ...problems("NotFound", "Gone", "Unavailable"),
      },
    })),
    async (c) => {
      const claim = await deps.links.verify(c.req.param("token"));
      if (!claim) return problemResponse(404, "no such file");
      const now = clock.now().getTime();
      if (claim.expiresAt.getTime() <= now) return problemResponse(410, "this download link has expired");
      const [row] = await sql.query<{ url: string | null; bytes: string; status: string; expires_at: Date }>(
        "select url, bytes::text, status, expires_at from exports where id = $1::bigint",
        [claim.exportId],
      );
      if (!row || row.status !== "ready" || !row.url) return problemResponse(404, "no such file");
      if (row.expires_at.getTime() <= now) return problemResponse(410, "this export has expired");
      let body: ReadableStream<Uint8Array>;
      try {
        body = await deps.storage.read(row.url, c.req.raw.signal);
      } catch (err) {
        if (err instanceof StorageNotFound) return problemResponse(410, "this export's file is gone");
        throw err;
      }
      return new Response(body, {
        status: 200,
        headers: {
          "content-type": "text/csv; charset=utf-8",
          "content-disposition": `attachment; filename="export-${claim.exportId}.csv"`,
          "content-length": row.bytes,
          "cache-control": "private, no-store",
          "x-content-type-options": "nosniff",
        },
      });
    },
  );

  return app;
}


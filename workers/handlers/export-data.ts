import type { z } from "zod";
import { ExportLinks } from "../../shared/exports/links";
import { type ExportPayload, runExport } from "../../shared/exports/exporter";
import type { exportData } from "../../shared/jobs/export-data";
import type { Clock, SqlClient } from "../../shared/ports";
import { PermanentError } from "../../shared/queue/errors";
import type { Handler } from "../../shared/queue/handler";
import type { Queue } from "../../shared/queue/queue";
import type { Storage } from "../../shared/storage/storage";
import { publishEvent } from "../../shared/webhooks/events";

type Payload = z.infer<typeof exportData.payload>;

export interface ExportDeps {
  sql: SqlClient;
  clock: Clock;
  /** Where export files are written (the local folder on Node, S3/R2 when configured). */
  storage: Storage;
  /** With a queue, a finished export publishes the `export.ready` webhook event. */
  queue?: Queue;
  /** With links, the event carries a signed download_url. */
  links?: ExportLinks;
  /** Rows read per keyset page. Defaults to 5,000. */
  pageSize?: number;
  /** How long a finished export is kept. Defaults to 7 days. */
  ttlMs?: number;
}

/**
 * export.data: streams the source into a CSV through the Storage port (see
 * shared/exports/exporter.ts for the columns), records it in `exports`, and publishes
 * `export.ready`. On the last attempt a failure marks the export failed.
 */
export function exportDataHandler(deps: ExportDeps): Handler<Payload> {
  return {
    type: "export.data",
    async run(payload, job, ctx) {
      let result;
      try {
        result = await runExport(deps, job.id, payload as ExportPayload, ctx);
      } catch (err) {
        if (err instanceof PermanentError || job.attempt >= job.maxAttempts) {
          await deps.sql
            .query("update exports set status = 'failed', error = $2 where id = $1::bigint and tenant_id = $3", [
              job.id,
              err instanceof Error ? err.message : String(err),
              payload.tenant_id,
            ])
            .catch(() => {});
        }
        throw err;
      }
      const downloadUrl = deps.links ? await deps.links.url({ exportId: job.id, expiresAt: new Date(result.expires_at) }) : undefined;
      if (deps.queue) {
        await publishEvent(deps.queue, deps.sql, {
          tenantId: payload.tenant_id,
          type: "export.ready",
          // Stable across retries of this job: publishing again is a no-op.
          eventId: `evt_export_${job.id}`,
          data: {
            export_id: job.id,
            source: result.source,
            source_id: result.source_id,
            rows: result.rows,
            bytes: result.bytes,
            expires_at: result.expires_at,
            ...(downloadUrl ? { download_url: downloadUrl } : {}),
          },
        });
      }
      if (payload.notify_email && deps.queue && downloadUrl) {
        // The link by email, keyed by the export so a retry sends it once.
        await deps.queue.enqueue({
          type: "email.send",
          tenantId: payload.tenant_id,
          payload: {
            recipient: payload.notify_email,
            template_id: "sys_export_ready",
            variables: { source: result.source, rows: result.rows, bytes: result.bytes, download_url: downloadUrl, expires_at: result.expires_at },
          },
          idempotencyKey: `export-ready:${job.id}`,
          parentId: job.id,
        });
      }
      return { export_id: job.id, rows: result.rows, bytes: result.bytes, expires_at: result.expires_at };
    },
  };
}

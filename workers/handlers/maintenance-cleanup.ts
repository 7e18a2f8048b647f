import type { z } from "zod";
import type { maintenanceCleanup } from "../../shared/jobs/maintenance-cleanup";
import type { Clock, SqlClient } from "../../shared/ports";
import type { Handler, JobContext } from "../../shared/queue/handler";
import { type Storage, tenantKeyPrefix } from "../../shared/storage/storage";
import { Ledger } from "../../shared/queue/ledger";
import { WorkerRegistry } from "../../shared/queue/registry";
import { StatsRollup } from "../../shared/queue/statements";

type Payload = z.infer<typeof maintenanceCleanup.payload>;

export interface RetentionConfig {
  /** Completed jobs are kept this long. Defaults to 24 hours. */
  completedMs: number;
  /** Failed (dead-letter) and cancelled jobs are kept this long. Defaults to 7 days. */
  failedMs: number;
  /** Rows one delete statement removes; small enough not to hold locks for long. Defaults to 5,000. */
  batchSize: number;
  /** Per-minute job_stats rows older than this fold into all-time totals. Defaults to 48 hours. */
  statsMs: number;
  /** Finished imports (their row, uploaded file and error report) are kept this long. Defaults to 7 days. */
  importsMs: number;
}

export const defaultRetention: RetentionConfig = {
  completedMs: 24 * 3_600_000,
  failedMs: 7 * 24 * 3_600_000,
  batchSize: 5_000,
  statsMs: 48 * 3_600_000,
  importsMs: 7 * 24 * 3_600_000,
};

/**
 * maintenance.cleanup: deletes finished jobs past their retention windows in bounded batches
 * (each batch its own statement, so locks stay short and progress is kept if the run stops),
 * and folds old per-minute counters into all-time totals.
 */
export function maintenanceCleanupHandler(deps: {
  sql: SqlClient;
  clock: Clock;
  retention?: Partial<RetentionConfig>;
  /** Where files live; with it, expired exports and old imports (files and rows) are deleted too. */
  storage?: Storage;
}): Handler<Payload> {
  const ledger = new Ledger(deps.sql);
  return {
    type: "maintenance.cleanup",
    async run(payload, _job, ctx) {
      const cfg = { ...defaultRetention, ...deps.retention };
      const completedMs = payload.completed_retention_hours !== undefined ? payload.completed_retention_hours * 3_600_000 : cfg.completedMs;
      const failedMs = payload.failed_retention_hours !== undefined ? payload.failed_retention_hours * 3_600_000 : cfg.failedMs;
      const batch = payload.batch_size ?? cfg.batchSize;
      const now = deps.clock.now().getTime();
      const deleted = { completed: 0, failed: 0, cancelled: 0 };
      const windows = [
        ["completed", completedMs],
        ["failed", failedMs],
        ["cancelled", failedMs],
      ] as const;
      for (const [state, keepMs] of windows) {
        const before = new Date(now - keepMs);
        for (;;) {
          if (ctx.signal.aborted) throw ctx.signal.reason;
          const n = await ledger.deleteFinished(state, before, batch);
          deleted[state] += n;
          ctx.progress({ deleted });
          if (n < batch) break;
        }
      }
      await deps.sql.query(StatsRollup, [new Date(now - cfg.statsMs).toISOString()]);
      // Workers silent for a day are gone for good (edge drains leave one row each).
      const workersPruned = await new WorkerRegistry(deps.sql, deps.clock).prune(24 * 3_600_000);
      const exportsDeleted = deps.storage ? await deleteExpiredExports(deps.sql, deps.storage, new Date(now), batch, ctx) : 0;
      const importsDeleted = deps.storage ? await deleteOldImports(deps.sql, deps.storage, new Date(now - cfg.importsMs), batch, ctx) : 0;
      return { deleted, workers_pruned: workersPruned, exports_deleted: exportsDeleted, imports_deleted: importsDeleted };
    },
  };
}

/**
 * Rows with files, in keyset pages: each page deletes the rows' files, then the rows whose files
 * are gone. A file that cannot be deleted (store unreachable) keeps its row, to be tried again by
 * the next run.
 */
async function sweepWithFiles<R extends { id: string }>(
  storage: Storage,
  ctx: JobContext,
  batch: number,
  what: "exports" | "imports",
  page: (after: string | null, limit: number) => Promise<R[]>,
  filesOf: (row: R) => (string | null)[],
  remove: (ids: string[]) => Promise<unknown>,
): Promise<number> {
  let total = 0;
  let after: string | null = null;
  for (;;) {
    if (ctx.signal.aborted) throw ctx.signal.reason;
    const rows = await page(after, batch);
    if (rows.length === 0) break;
    const gone: string[] = [];
    for (const row of rows) {
      try {
        for (const url of filesOf(row)) if (url) await storage.delete(url);
        gone.push(row.id);
      } catch (err) {
        ctx.logger.warn(`could not delete the files of one of the ${what}`, { id: row.id, err: err instanceof Error ? err.message : String(err) });
      }
    }
    if (gone.length > 0) await remove(gone);
    total += gone.length;
    ctx.progress({ [`${what}_deleted`]: total });
    after = rows[rows.length - 1]!.id;
    if (rows.length < batch) break;
  }
  return total;
}

/** Expired exports: the file, then the row. */
const deleteExpiredExports = (sql: SqlClient, storage: Storage, now: Date, batch: number, ctx: JobContext): Promise<number> =>
  sweepWithFiles(
    storage,
    ctx,
    batch,
    "exports",
    (after, limit) =>
      sql.query<{ id: string; url: string | null }>(
        "select id::text, url from exports where expires_at <= $1 and id > $2::bigint order by id limit $3",
        [now.toISOString(), after ?? "0", limit],
      ),
    (row) => [row.url],
    (ids) => sql.query("delete from exports where id = any($1::bigint[])", [ids]),
  );

/**
 * Finished imports past their retention: the error report and the uploaded file, then the row.
 * Only files this system stored for the tenant are deleted (an upload under "<tenant>/imports/");
 * a file named by URL elsewhere (the customer's server, an export imported back) is not ours.
 */
const deleteOldImports = (sql: SqlClient, storage: Storage, before: Date, batch: number, ctx: JobContext): Promise<number> =>
  sweepWithFiles(
    storage,
    ctx,
    batch,
    "imports",
    (after, limit) =>
      sql.query<{ id: string; tenant_id: string; file_url: string; report_url: string | null }>(
        `select id, tenant_id, file_url, report_url from imports
         where status <> 'running' and finished_at <= $1 and id > $2 order by id limit $3`,
        [before.toISOString(), after ?? "", limit],
      ),
    (row) => [row.report_url, storage.keyOf(row.file_url)?.startsWith(`${tenantKeyPrefix(row.tenant_id)}imports/`) ? row.file_url : null],
    (ids) => sql.query("delete from imports where id = any($1::text[])", [ids]),
  );

import type { SendEmailDeps } from "../../shared/email/send-email";
import type { Clock, Logger, Sql } from "../../shared/ports";
import type { Handler } from "../../shared/queue/handler";
import type { Queue } from "../../shared/queue/queue";
import { campaignProcessHandler } from "./campaign-process";
import { emailSendHandler } from "./email-send";
import { importContactsHandler } from "./import-contacts";
import type { Storage } from "../../shared/storage/storage";
import { exportDataHandler, type ExportDeps } from "./export-data";
import { maintenanceCleanupHandler, type RetentionConfig } from "./maintenance-cleanup";
import { webhookDispatchHandler, type WebhookDeps } from "./webhook-dispatch";

export interface HandlerDeps {
  sql: Sql;
  clock: Clock;
  retention?: Partial<RetentionConfig>;
  /** With the email services, the email pipeline's handlers run too. */
  email?: { queue: Queue; logger: Logger; send: Omit<SendEmailDeps, "sql" | "clock" | "logger"> };
  /** With a resolver (and the allow-list and settings), webhook.dispatch runs too. */
  webhooks?: Omit<WebhookDeps, "sql" | "clock">;
  /** With a store, export.data runs too, and maintenance.cleanup deletes expired exports. */
  exports?: Omit<ExportDeps, "sql" | "clock">;
  /** With a Storage (and the queue for its webhook event), import.contacts runs too. */
  imports?: { storage: Storage; queue: Queue; logger: Logger; batchSize?: number };
}

/**
 * The handlers this build runs, the same on Node and on the edge. A type in the catalog with no
 * handler here still accepts jobs; they wait in their lane until a worker that has one runs.
 */
export function createHandlers(deps: HandlerDeps): Handler[] {
  const handlers: Handler[] = [maintenanceCleanupHandler({ ...deps, storage: deps.exports?.storage ?? deps.imports?.storage })];
  if (deps.email) {
    const { queue, logger, send } = deps.email;
    handlers.push(emailSendHandler({ ...send, sql: deps.sql, clock: deps.clock, logger, queue }));
    handlers.push(campaignProcessHandler({ sql: deps.sql, queue, logger }));
  }
  if (deps.imports) handlers.push(importContactsHandler({ ...deps.imports, sql: deps.sql }));
  if (deps.webhooks) handlers.push(webhookDispatchHandler({ ...deps.webhooks, sql: deps.sql, clock: deps.clock }));
  if (deps.exports) handlers.push(exportDataHandler({ ...deps.exports, sql: deps.sql, clock: deps.clock }));
  return handlers;
}

/** The retention windows both runtimes' settings name (RETENTION_COMPLETED_HOURS, RETENTION_FAILED_DAYS). */
export const retentionOf = (c: { RETENTION_COMPLETED_HOURS: number; RETENTION_FAILED_DAYS: number }): Partial<RetentionConfig> => ({
  completedMs: c.RETENTION_COMPLETED_HOURS * 3_600_000,
  failedMs: c.RETENTION_FAILED_DAYS * 24 * 3_600_000,
});

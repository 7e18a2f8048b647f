import type { SendEmailDeps } from "../../shared/email/send-email";
import type { Clock, Logger, Sql } from "../../shared/ports";
import type { Handler } from "../../shared/queue/handler";
import type { Queue } from "../../shared/queue/queue";
import { campaignProcessHandler } from "./campaign-process";
import { emailSendHandler } from "./email-send";
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
}

/**
 * The handlers this build runs, the same on Node and on the edge. A type in the catalog with no
 * handler here still accepts jobs; they wait in their lane until a worker that has one runs.
 */
export function createHandlers(deps: HandlerDeps): Handler[] {
  const handlers: Handler[] = [maintenanceCleanupHandler(deps)];
  if (deps.email) {
    const { queue, logger, send } = deps.email;
    handlers.push(emailSendHandler({ ...send, sql: deps.sql, clock: deps.clock, logger }));
    handlers.push(campaignProcessHandler({ sql: deps.sql, queue, logger }));
  }
  if (deps.webhooks) handlers.push(webhookDispatchHandler({ ...deps.webhooks, sql: deps.sql, clock: deps.clock }));
  return handlers;
}

import type { SqlClient } from "../ports";
import { MAX_BATCH, type Queue } from "../queue/queue";
import { webhookId } from "./ids";

/**
 * The event types published to tenants' webhooks, with where each is published (the README's
 * "Webhooks" table gives each one's data). Endpoints may subscribe to any string, so this is the
 * catalogue to read, not a gate.
 */
export const EVENT_CATALOGUE = {
  "campaign.sent": "shared/email/campaign-events.ts",
  "campaign.cancelled": "shared/email/campaign-events.ts",
  "email.delivered": "shared/email/delivery-events.ts (Resend's email.delivered)",
  "email.delivery_delayed": "shared/email/delivery-events.ts (Resend's email.delivery_delayed)",
  "email.bounced": "shared/email/delivery-feedback.ts",
  "email.complained": "shared/email/delivery-feedback.ts",
  "email.opened": "shared/email/engagement-buffer.ts",
  "email.clicked": "shared/email/engagement-buffer.ts",
  "sending.paused": "shared/email/sending-guards.ts",
  "import.finished": "shared/imports/import-contacts.ts",
  "export.ready": "shared/jobs/export-data.ts",
  "webhook.endpoint.disabled": "shared/webhooks/auto-disable.ts",
  "webhook.test": "shared/webhooks/endpoints.ts",
} as const;
export type EventType = keyof typeof EVENT_CATALOGUE;

export interface PublishedEvent {
  eventId: string;
  /** One webhook.dispatch job per subscribed active endpoint (existing ones when republished). */
  jobIds: string[];
}

/**
 * Fans one event out to a tenant's webhooks: one webhook.dispatch job per active endpoint
 * subscribed to its type (an endpoint with no event types receives all). The idempotency key
 * (endpoint and event id) makes publishing the same event again a no-op. With `tx`, the
 * endpoints are read and the jobs inserted in the caller's transaction: they exist only if it
 * commits.
 */
export async function publishEvent(
  queue: Queue,
  sql: SqlClient,
  event: { tenantId: string; type: string; data: Record<string, unknown>; eventId?: string },
  options: { tx?: SqlClient } = {},
): Promise<PublishedEvent> {
  const eventId = event.eventId ?? webhookId("evt");
  const endpoints = await (options.tx ?? sql).query<{ id: string }>(
    `select id from webhook_endpoints
     where tenant_id = $1 and status = 'active' and (cardinality(event_types) = 0 or $2 = any(event_types))
     order by id`,
    [event.tenantId, event.type],
  );
  const jobIds: string[] = [];
  for (let i = 0; i < endpoints.length; i += MAX_BATCH) {
    const enqueued = await queue.enqueueMany(
      endpoints.slice(i, i + MAX_BATCH).map((e) => ({
        type: "webhook.dispatch",
        tenantId: event.tenantId,
        payload: { tenant_id: event.tenantId, endpoint_id: e.id, event_id: eventId, event_type: event.type, data: event.data },
        idempotencyKey: `${e.id}:${eventId}`,
      })),
      { tx: options.tx },
    );
    jobIds.push(...enqueued.map((x) => x.job.id));
  }
  return { eventId, jobIds };
}

import type { SqlClient } from "../ports";
import { MAX_BATCH, type Queue } from "../queue/queue";
import { webhookId } from "./ids";

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

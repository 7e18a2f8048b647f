/**
 * The platform disabling an endpoint that gave up on us (410 Gone, or failing for days), as
 * opposed to the customer disabling it: the owner must hear of it, or events stop arriving
 * unnoticed. In one transaction: the endpoint leaves 'active' (only one caller can make that
 * move, however many deliveries fail at once), a webhook.endpoint.disabled event goes to the
 * tenant's other endpoints, and the endpoint's notify_email gets the sys_webhook_disabled email
 * through an email.send job. A crash commits all of it or none; the keys (endpoint id and the
 * time it was disabled) make one notice per disable even if the jobs were enqueued again.
 */
import type { Clock, Logger, Sql } from "../ports";
import type { Queue } from "../queue/queue";
import type { EndpointRow } from "./endpoints";
import { publishEvent } from "./events";

export const ENDPOINT_DISABLED_EVENT = "webhook.endpoint.disabled";

export interface AutoDisableDeps {
  sql: Sql;
  clock: Clock;
  logger: Logger;
  /** Without a queue the endpoint is only disabled: nobody is told. */
  queue?: Queue;
}

/** Disables an active endpoint and tells its owner; false when it was no longer active (someone else did). */
export async function autoDisableEndpoint(deps: AutoDisableDeps, tenantId: string, endpointId: string, reason: string): Promise<boolean> {
  const disabledAt = deps.clock.now();
  const endpoint = await deps.sql.begin(async (tx) => {
    const [row] = await tx.query<EndpointRow>(
      `update webhook_endpoints set status = 'disabled', disabled_reason = $3, disabled_at = $4
       where id = $1 and tenant_id = $2 and status = 'active' returning *`,
      [endpointId, tenantId, reason, disabledAt],
    );
    if (!row || !deps.queue) return row;
    const key = `${row.id}_${disabledAt.getTime()}`;
    const data = { endpoint_id: row.id, url: row.url, reason, disabled_at: disabledAt.toISOString() };
    // The endpoint is no longer active in this transaction, so the event skips it.
    await publishEvent(deps.queue, tx, { tenantId, type: ENDPOINT_DISABLED_EVENT, eventId: `evt_endpoint_disabled_${key}`, data }, { tx });
    if (row.notify_email) {
      await deps.queue.enqueue(
        {
          type: "email.send",
          tenantId,
          payload: {
            recipient: row.notify_email,
            template_id: "sys_webhook_disabled",
            variables: { endpoint_id: row.id, endpoint_url: row.url, reason, disabled_at: disabledAt.toISOString() },
          },
          idempotencyKey: `webhook-disabled:${key}`,
        },
        { tx },
      );
    }
    return row;
  });
  if (!endpoint) return false;
  const fields = { endpoint_id: endpointId, tenant_id: tenantId, reason };
  if (!deps.queue) deps.logger.warn("webhook endpoint disabled; nobody told (no queue wired)", fields);
  else if (endpoint.notify_email) deps.logger.info("webhook endpoint disabled; its owner is told by email", fields);
  else deps.logger.info("webhook endpoint disabled; it has no notify_email, so only the event tells the tenant", fields);
  return true;
}

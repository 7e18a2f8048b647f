import { z } from "zod";
import { defineJobType } from "./definition";
import { entityId, tenantId } from "./fields";

export const webhookDispatch = defineJobType({
  type: "webhook.dispatch",
  description: "Delivers one event to one customer endpoint (Standard Webhooks), retried on a schedule.",
  payload: z.strictObject({
    tenant_id: tenantId,
    endpoint_id: entityId,
    /** Stable across retries: it becomes the webhook-id header. */
    event_id: entityId,
    event_type: z.string().min(1).max(128).regex(/^[a-z0-9_.-]+$/, "lowercase letters, digits and _ . - only"),
    data: z.record(z.string(), z.unknown()),
  }),
  pool: "default",
  priority: () => "high",
  maxAttempts: 10,
  backoff: { baseMs: 5_000, maxMs: 24 * 60 * 60_000 },
  timeoutMs: 30_000,
});

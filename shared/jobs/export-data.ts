import { z } from "zod";
import { defineJobType } from "./definition";
import { email, entityId, tenantId } from "./fields";

export const exportData = defineJobType({
  type: "export.data",
  description: "Streams contacts of a list or segment, a campaign's sends and events, or a campaign's opens and clicks, into a CSV file.",
  // notify_email: who gets the download link by email (sys_export_ready) when the file is ready.
  payload: z.discriminatedUnion("source", [
    z.strictObject({ source: z.literal("list"), list_id: entityId, tenant_id: tenantId, notify_email: email.optional() }),
    z.strictObject({ source: z.literal("segment"), segment_id: entityId, tenant_id: tenantId, notify_email: email.optional() }),
    z.strictObject({ source: z.literal("campaign"), campaign_id: entityId, tenant_id: tenantId, notify_email: email.optional() }),
    z.strictObject({ source: z.literal("campaign_engagement"), campaign_id: entityId, tenant_id: tenantId, notify_email: email.optional() }),
  ]),
  pool: "import",
  priority: () => "low",
  maxAttempts: 3,
  backoff: { baseMs: 30_000, maxMs: 30 * 60_000 },
  timeoutMs: 60 * 60_000,
});

import { z } from "zod";
import { defineJobType } from "./definition";
import { entityId, tenantId } from "./fields";

export const exportData = defineJobType({
  type: "export.data",
  description: "Streams contacts of a list or segment, or a campaign's sends and events, into a CSV file.",
  payload: z.discriminatedUnion("source", [
    z.strictObject({ source: z.literal("list"), list_id: entityId, tenant_id: tenantId }),
    z.strictObject({ source: z.literal("segment"), segment_id: entityId, tenant_id: tenantId }),
    z.strictObject({ source: z.literal("campaign"), campaign_id: entityId, tenant_id: tenantId }),
  ]),
  pool: "import",
  priority: () => "low",
  maxAttempts: 3,
  backoff: { baseMs: 30_000, maxMs: 30 * 60_000 },
  timeoutMs: 60 * 60_000,
});

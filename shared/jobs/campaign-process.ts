import { z } from "zod";
import { defineJobType } from "./definition";
import { entityId, tenantId } from "./fields";

export const campaignProcess = defineJobType({
  type: "campaign.process",
  description: "Breaks a campaign into email.send jobs, in batches, resumable.",
  payload: z.strictObject({ campaign_id: entityId, tenant_id: tenantId }),
  pool: "default",
  priority: () => "normal",
  maxAttempts: 5,
  backoff: { baseMs: 10_000, maxMs: 10 * 60_000 },
  timeoutMs: 30 * 60_000,
});

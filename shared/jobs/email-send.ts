import { z } from "zod";
import { defineJobType } from "./definition";
import { email, entityId, tenantId } from "./fields";

export const emailSend = defineJobType({
  type: "email.send",
  description: "Delivers a single email: render, check suppressions, pick a provider, send, record.",
  payload: z.strictObject({
    recipient: email,
    template_id: entityId,
    variables: z.record(z.string(), z.union([z.string(), z.number(), z.boolean(), z.null()])).default({}),
    tenant_id: tenantId,
    /** Present when the mail belongs to a campaign (normal priority); absent for transactional mail (high). */
    campaign_id: entityId.optional(),
  }),
  pool: "email",
  priority: (p) => (p.campaign_id ? "normal" : "high"),
  maxAttempts: 8,
  backoff: { baseMs: 5_000, maxMs: 60 * 60_000 },
  timeoutMs: 30_000,
});

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
  clientRules: (p) =>
    isPlatformTemplate(p.template_id)
      ? [{ path: ["template_id"], message: "is one of PenguinMails' own notices, which only the system sends; use sys_transactional or a template of your own" }]
      : [],
});

/**
 * System templates a tenant may send. Every other `sys_` id is PenguinMails' own notice ("your
 * export is ready", "your webhook was disabled"): sent in the platform's name, so a tenant that
 * could fill in its own link would have a phishing kit. New notices are refused by default.
 */
export const TENANT_SYSTEM_TEMPLATES: ReadonlySet<string> = new Set(["sys_transactional"]);

export const isPlatformTemplate = (templateId: string): boolean =>
  templateId.startsWith("sys_") && !TENANT_SYSTEM_TEMPLATES.has(templateId);

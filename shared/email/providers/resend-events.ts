/**
 * Resend's webhook events (https://resend.com/docs/webhooks), read into delivery feedback:
 * `{ type, created_at, data: { email_id, to, ..., bounce?: { type, subType, message } } }`.
 * Only email.bounced and email.complained matter here; the other types Resend may send
 * (email.sent, email.delivered, ...) are acknowledged and ignored.
 */
import { z } from "zod";
import { classifyBounce } from "../bounce-classifier";
import type { DeliveryFeedback } from "../delivery-feedback";
import { RESEND_PROVIDER } from "./resend";

const text = z.string().max(2_000);

const resendEvent = z.object({
  type: z.string().min(1).max(100),
  created_at: text.optional(),
  data: z.object({
    email_id: z.string().min(1).max(200),
    bounce: z.object({ type: text.optional(), subType: text.optional(), message: text.optional() }).optional(),
  }),
});

const KINDS: Record<string, "bounce" | "complaint"> = { "email.bounced": "bounce", "email.complained": "complaint" };

export type ResendEventReading =
  | { ok: true; type: string; feedback: Omit<DeliveryFeedback, "reportId"> | null }
  | { ok: false; errors: { path: string; message: string }[] };

/**
 * Reads a verified event body (already JSON-parsed); feedback is null for types that are not
 * feedback. Whether it suppresses is the classifier's (bounce-classifier.ts): Resend's bounce
 * type and subtype, and the receiver's reply when its message carries one, so a "550 5.7.1"
 * spam block is not taken for a dead address, and a 5.1.1 here is what it is over SMTP.
 */
export function readResendEvent(body: unknown): ResendEventReading {
  const type = typeof body === "object" && body !== null ? (body as { type?: unknown }).type : undefined;
  const kind = typeof type === "string" ? KINDS[type] : undefined;
  if (typeof type === "string" && !kind) return { ok: true, type, feedback: null };
  const parsed = resendEvent.safeParse(body);
  if (!parsed.success) {
    return { ok: false, errors: parsed.error.issues.map((i) => ({ path: i.path.map(String).join("."), message: i.message })) };
  }
  const { data, created_at: createdAt } = parsed.data;
  return {
    ok: true,
    type: parsed.data.type,
    feedback: {
      provider: RESEND_PROVIDER,
      send: { providerMessageId: data.email_id },
      classification: classifyBounce({ source: "resend", kind: kind!, bounce: data.bounce }),
      detail: data.bounce ? { type: data.bounce.type, sub_type: data.bounce.subType, message: data.bounce.message } : {},
      occurredAt: createdAt,
    },
  };
}

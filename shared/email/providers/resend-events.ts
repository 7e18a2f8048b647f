/**
 * Resend's webhook events (https://resend.com/docs/webhooks), read into delivery feedback:
 * `{ type, created_at, data: { email_id, to, ..., bounce?: { type, subType, message } } }`.
 * email.bounced and email.complained become feedback (delivery-feedback.ts); email.delivered
 * and email.delivery_delayed become delivery events (delivery-events.ts); the other types Resend
 * may send (email.sent, email.opened, ...) are acknowledged and ignored: we track opens ourselves.
 */
import { z } from "zod";
import { classifyBounce } from "../bounce-classifier";
import type { DeliveryReport } from "../delivery-events";
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
const DELIVERIES: Record<string, DeliveryReport["kind"]> = { "email.delivered": "delivered", "email.delivery_delayed": "delivery_delayed" };

export type ResendEventReading =
  | { ok: true; type: string; feedback: Omit<DeliveryFeedback, "reportId"> | null; delivery?: Omit<DeliveryReport, "reportId"> }
  | { ok: false; errors: { path: string; message: string }[] };

/**
 * Reads a verified event body (already JSON-parsed); feedback is null for types that are not
 * feedback. Whether it suppresses is the classifier's (bounce-classifier.ts): Resend's bounce
 * type and subtype, and the receiver's reply when its message carries one, so a "550 5.7.1"
 * spam block is not taken for a dead address, and a 5.1.1 here is what it is over SMTP.
 */
export function readResendEvent(body: unknown): ResendEventReading {
  const type = typeof body === "object" && body !== null ? (body as { type?: unknown }).type : undefined;
  const kind = typeof type === "string" && Object.hasOwn(KINDS, type) ? KINDS[type] : undefined;
  const delivery = typeof type === "string" && Object.hasOwn(DELIVERIES, type) ? DELIVERIES[type] : undefined;
  if (typeof type === "string" && !kind && !delivery) return { ok: true, type, feedback: null };
  const parsed = resendEvent.safeParse(body);
  if (!parsed.success) {
    return { ok: false, errors: parsed.error.issues.map((i) => ({ path: i.path.map(String).join("."), message: i.message })) };
  }
  const { data, created_at: createdAt } = parsed.data;
  if (delivery) {
    return {
      ok: true,
      type: parsed.data.type,
      feedback: null,
      delivery: { provider: RESEND_PROVIDER, kind: delivery, send: { providerMessageId: data.email_id }, occurredAt: createdAt },
    };
  }
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

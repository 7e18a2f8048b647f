/**
 * Deliveries a provider reports (Resend's email.delivered and email.delivery_delayed): not
 * feedback to act on (nothing is suppressed, no contact changes), only facts for the report and
 * the tenant's webhooks. Recorded like bounces (delivery-feedback.ts): the send found by the
 * provider's message id (within the report's tenant when it names one), each report once by its
 * own id (Resend's svix-id), the email_events row written last as the mark that it is done, so
 * a report that failed halfway and comes again redoes only idempotent steps (the webhook event's
 * id is the report's).
 */
import type { Logger, SqlClient } from "../ports";
import type { Queue } from "../queue/queue";
import { type FeedbackOutcome, findSend, publishAndMark, sendFields } from "./delivery-feedback";

export type DeliveryKind = "delivered" | "delivery_delayed";

/** The webhook each kind is published as; the ledger's email_events.type is the kind itself. */
export const DELIVERY_WEBHOOKS = { delivered: "email.delivered", delivery_delayed: "email.delivery_delayed" } as const satisfies Record<DeliveryKind, string>;

export interface DeliveryReport {
  provider: string;
  /** The report's own id, the same on every retry (letters, digits and _ . : -). */
  reportId: string;
  kind: DeliveryKind;
  send: { providerMessageId: string; tenantId?: string };
  /** When the provider saw it (ISO 8601), when it says. */
  occurredAt?: string;
}

export async function recordDeliveryEvent(
  deps: { sql: SqlClient; queue?: Queue; logger: Logger },
  report: DeliveryReport,
): Promise<Exclude<FeedbackOutcome, { status: "recorded" }> | { status: "recorded"; tenant_id: string; send_id: string; event_id: string }> {
  const key = `${report.provider}:${report.reportId}`;
  const fields = { provider: report.provider, report_id: report.reportId, kind: report.kind };
  // The send first, as for bounces: a report about another tenant's message learns nothing.
  const send = await findSend(deps.sql, report);
  if (!send) {
    deps.logger.info("delivery event about a message we have no record of; ignored", fields);
    return { status: "unknown_message" };
  }
  const [seen] = await deps.sql.query("select 1 from email_events where provider_event_id = $1", [key]);
  if (seen) return { status: "duplicate", tenant_id: send.tenant_id, send_id: send.id };
  const data = { ...sendFields(send, report.provider), occurred_at: report.occurredAt ?? null };
  const eventId = await publishAndMark(deps, send, report, { webhook: DELIVERY_WEBHOOKS[report.kind], ledger: report.kind }, data);
  deps.logger.info("delivery event recorded", { ...fields, tenant_id: send.tenant_id, send_id: send.id });
  return { status: "recorded", tenant_id: send.tenant_id, send_id: send.id, event_id: eventId };
}

/**
 * What the mail provider tells us after a send: a bounce or a complaint. Each report is
 * recorded once (email_events, keyed by the provider's id of the report, since providers
 * retry), suppresses the address for every tenant when it is a hard bounce or a complaint
 * (they hurt the platform's reputation whoever sends next), marks the tenant's contact, and
 * goes to the tenant's webhooks as email.bounced or email.complained.
 *
 * The email_events row is written last, as the mark that the report is done: a report that
 * failed halfway (and that the provider will send again) redoes the rest, each step of which
 * is idempotent (suppression and contact upserts; the webhook event's id comes from the report).
 */
import type { Logger, SqlClient } from "../ports";
import type { Queue } from "../queue/queue";
import { publishEvent } from "../webhooks/events";
import { GLOBAL, type SuppressionReason, Suppressions } from "./suppressions";

export interface DeliveryFeedback {
  /** The provider's name, as in email_sends.provider ("resend"). */
  provider: string;
  /** The provider's id of this report (Resend: the svix-id), the same on each of its retries. */
  reportId: string;
  kind: "bounce" | "complaint";
  /** The message it is about, as the provider named it when it accepted the send. */
  providerMessageId: string;
  /** Bounces: permanent (the address is dead), else transient (a full mailbox, ...). Complaints: always true. */
  hard: boolean;
  /** The provider's own words: bounce type, subtype, message. */
  detail: { type?: string; sub_type?: string; message?: string };
  /** When the provider saw it (ISO 8601), when it says. */
  occurredAt?: string;
}

export type FeedbackOutcome =
  | { status: "recorded"; tenant_id: string; send_id: string; event_id: string }
  | { status: "duplicate" }
  | { status: "unknown_message" };

export interface FeedbackDeps {
  sql: SqlClient;
  queue: Queue;
  logger: Logger;
}

const EVENTS = {
  bounce: { webhook: "email.bounced", ledger: "bounced", reason: "hard_bounce", contact: "bounced" },
  complaint: { webhook: "email.complained", ledger: "complained", reason: "complaint", contact: "complained" },
} as const satisfies Record<DeliveryFeedback["kind"], { webhook: string; ledger: string; reason: SuppressionReason; contact: string }>;

export async function recordDeliveryFeedback(deps: FeedbackDeps, report: DeliveryFeedback): Promise<FeedbackOutcome> {
  const key = `${report.provider}:${report.reportId}`;
  const fields = { provider: report.provider, report_id: report.reportId, kind: report.kind, provider_message_id: report.providerMessageId };
  const [seen] = await deps.sql.query("select 1 from email_events where provider_event_id = $1", [key]);
  if (seen) {
    deps.logger.info("provider report already recorded", fields);
    return { status: "duplicate" };
  }
  const [send] = await deps.sql.query<{ id: string; tenant_id: string; campaign_id: string | null; contact_id: string | null; recipient: string }>(
    `select id::text, tenant_id, campaign_id, contact_id::text, recipient from email_sends
     where provider_message_id = $1 and provider = $2 order by id limit 1`,
    [report.providerMessageId, report.provider],
  );
  if (!send) {
    // Mail sent by something else on the same provider account, or a ledger row already removed.
    deps.logger.info("provider report about a message we have no record of; ignored", fields);
    return { status: "unknown_message" };
  }
  const event = EVENTS[report.kind];
  if (report.hard) {
    await new Suppressions(deps.sql).add(GLOBAL, send.recipient, event.reason);
    await deps.sql.query(
      "update contacts set status = $3, updated_at = now() where tenant_id = $1 and lower(email) = lower($2) and status = 'active'",
      [send.tenant_id, send.recipient, event.contact],
    );
  }
  const data = {
    send_id: send.id,
    recipient: send.recipient,
    campaign_id: send.campaign_id,
    contact_id: send.contact_id,
    provider: report.provider,
    provider_message_id: report.providerMessageId,
    ...(report.kind === "bounce" ? { bounce_type: report.hard ? "hard" : "soft" } : {}),
    suppressed: report.hard,
    detail: report.detail,
    occurred_at: report.occurredAt ?? null,
  };
  const eventId = `evt_${report.provider}_${report.reportId}`;
  await publishEvent(deps.queue, deps.sql, { tenantId: send.tenant_id, type: event.webhook, eventId, data });
  await deps.sql.query(
    `insert into email_events (tenant_id, campaign_id, send_id, type, data, provider_event_id) values ($1, $2, $3, $4, $5, $6)
     on conflict (provider_event_id) where provider_event_id is not null do nothing`,
    [send.tenant_id, send.campaign_id, send.id, event.ledger, JSON.stringify(data), key],
  );
  deps.logger.info("provider report recorded", { ...fields, tenant_id: send.tenant_id, send_id: send.id, suppressed: report.hard });
  return { status: "recorded", tenant_id: send.tenant_id, send_id: send.id, event_id: eventId };
}

/**
 * What the receiving side tells us about a send, by whichever path: a provider's webhook (a
 * Resend bounce or complaint), an RFC 3464 report posted to POST /v1/bounces/dsn, or a relay's
 * synchronous refusal in the send itself. One path for all of them, after one classifier
 * (bounce-classifier.ts): each report is recorded once (email_events, keyed by the report's own
 * id, since providers retry and reports get posted twice), suppresses the address for every
 * tenant when the classifier says so (a hard bounce or a complaint hurts the platform's
 * reputation whoever sends next), marks the tenant's contact, and goes to the tenant's webhooks
 * as email.bounced or email.complained.
 *
 * The email_events row is written last, as the mark that the report is done: a report that
 * failed halfway (and that is sent again) redoes the rest, each step of which is idempotent
 * (suppression and contact upserts; the webhook event's id comes from the report).
 */
import type { Logger, SqlClient } from "../ports";
import type { Queue } from "../queue/queue";
import { publishEvent } from "../webhooks/events";
import type { BounceClassification } from "./bounce-classifier";
import { GLOBAL, type SuppressionReason, Suppressions } from "./suppressions";

export interface DeliveryFeedback {
  /** The send's provider, as in email_sends.provider ("resend", "smtp"). */
  provider: string;
  /**
   * The report's own id, the same each time the same report comes again (Resend: the svix-id;
   * a DSN: a digest of message, recipient and status; a synchronous refusal: the send's id).
   * Letters, digits and _ . : - only: it becomes part of the webhook event's id.
   */
  reportId: string;
  /**
   * Which send: by the id the provider or the report names it by (Resend's email id, the
   * Message-ID a DSN returns), within one tenant when `tenantId` is set (a tenant's own report:
   * another tenant's message is unknown to it); or the ledger row itself, known to the sender.
   */
  send: { providerMessageId: string; tenantId?: string } | { sendId: string; tenantId: string };
  /** The classifier's verdict: whether it is a complaint, whether to suppress. */
  classification: BounceClassification;
  /**
   * Where a suppression goes: every tenant's (the default: what the provider or the relay says
   * holds for everyone), or only the send's tenant, when the report is that tenant's own word
   * (a DSN posted with its key), so no tenant's say-so stops another's mail.
   */
  suppressFor?: "global" | "tenant";
  /** The reporter's own words: bounce type, subtype, message; a reply and its command; a DSN's fields. */
  detail: Record<string, string | undefined>;
  /** When the reporter saw it (ISO 8601), when it says. */
  occurredAt?: string;
}

export type FeedbackOutcome =
  | { status: "recorded"; tenant_id: string; send_id: string; event_id: string; suppressed: boolean }
  | { status: "duplicate"; tenant_id: string; send_id: string }
  | { status: "unknown_message" };

export interface FeedbackDeps {
  sql: SqlClient;
  /** Where email.bounced and email.complained are published; without one (a bare send in a test) nothing is. */
  queue?: Queue;
  logger: Logger;
}

const EVENTS = {
  bounce: { webhook: "email.bounced", ledger: "bounced", reason: "hard_bounce", contact: "bounced" },
  complaint: { webhook: "email.complained", ledger: "complained", reason: "complaint", contact: "complained" },
} as const satisfies Record<"bounce" | "complaint", { webhook: string; ledger: string; reason: SuppressionReason; contact: string }>;

export interface SendRow {
  id: string;
  tenant_id: string;
  campaign_id: string | null;
  contact_id: string | null;
  recipient: string;
  provider_message_id: string | null;
}

/** The send a report is about, within its tenant when the report names one (shared with delivery-events.ts). */
export async function findSend(sql: SqlClient, report: Pick<DeliveryFeedback, "send" | "provider">): Promise<SendRow | undefined> {
  const columns = "id::text, tenant_id, campaign_id, contact_id::text, recipient, provider_message_id";
  if ("sendId" in report.send) {
    const [row] = await sql.query<SendRow>(`select ${columns} from email_sends where id = $1::bigint and tenant_id = $2`, [report.send.sendId, report.send.tenantId]);
    return row;
  }
  const [row] = await sql.query<SendRow>(
    `select ${columns} from email_sends
     where provider_message_id = $1 and provider = $2 and ($3::text is null or tenant_id = $3) order by id limit 1`,
    [report.send.providerMessageId, report.provider, report.send.tenantId ?? null],
  );
  return row;
}

/** What every event about a send carries (email.bounced, email.delivered, ...). */
export function sendFields(send: SendRow, provider: string) {
  return {
    send_id: send.id,
    recipient: send.recipient,
    campaign_id: send.campaign_id,
    contact_id: send.contact_id,
    provider,
    provider_message_id: send.provider_message_id,
  };
}

/**
 * Publishes a report's webhook event (its id is the report's, so a retry publishes nothing new),
 * then writes its email_events row, last: the mark that the report is done. Returns the event id.
 */
export async function publishAndMark(
  deps: FeedbackDeps,
  send: SendRow,
  report: { provider: string; reportId: string },
  types: { webhook: string; ledger: string },
  data: Record<string, unknown>,
): Promise<string> {
  const eventId = `evt_${report.provider}_${report.reportId}`;
  if (deps.queue) await publishEvent(deps.queue, deps.sql, { tenantId: send.tenant_id, type: types.webhook, eventId, data });
  await deps.sql.query(
    `insert into email_events (tenant_id, campaign_id, send_id, type, data, provider_event_id) values ($1, $2, $3, $4, $5, $6)
     on conflict (provider_event_id) where provider_event_id is not null do nothing`,
    [send.tenant_id, send.campaign_id, send.id, types.ledger, JSON.stringify(data), `${report.provider}:${report.reportId}`],
  );
  return eventId;
}

export async function recordDeliveryFeedback(deps: FeedbackDeps, report: DeliveryFeedback): Promise<FeedbackOutcome> {
  const key = `${report.provider}:${report.reportId}`;
  const kind = report.classification.category === "complaint" ? "complaint" : "bounce";
  const fields = { provider: report.provider, report_id: report.reportId, kind, category: report.classification.category };
  // The send first, then whether the report was seen: a tenant asking about another tenant's
  // message learns nothing, not even that someone reported it.
  const send = await findSend(deps.sql, report);
  if (!send) {
    // Mail sent by something else on the same provider account, another tenant's, or a ledger row already removed.
    deps.logger.info("delivery report about a message we have no record of; ignored", fields);
    return { status: "unknown_message" };
  }
  const [seen] = await deps.sql.query("select 1 from email_events where provider_event_id = $1", [key]);
  if (seen) {
    deps.logger.info("delivery report already recorded", { ...fields, send_id: send.id });
    return { status: "duplicate", tenant_id: send.tenant_id, send_id: send.id };
  }
  const event = EVENTS[kind];
  const { suppress } = report.classification;
  if (suppress) {
    await new Suppressions(deps.sql).add(report.suppressFor === "tenant" ? send.tenant_id : GLOBAL, send.recipient, event.reason);
    await deps.sql.query(
      "update contacts set status = $3, updated_at = now() where tenant_id = $1 and lower(email) = lower($2) and status = 'active'",
      [send.tenant_id, send.recipient, event.contact],
    );
  }
  const { category, enhancedStatus, reason } = report.classification;
  const data = {
    ...sendFields(send, report.provider),
    // "hard": the address is dead (and suppressed); "soft": this message failed, the address stays.
    ...(kind === "bounce" ? { bounce_type: category === "hard_bounce" ? "hard" : "soft" } : {}),
    category,
    enhanced_status: enhancedStatus ?? null,
    reason,
    suppressed: suppress,
    suppressed_for: suppress ? (report.suppressFor ?? "global") : null,
    detail: report.detail,
    occurred_at: report.occurredAt ?? null,
  };
  const eventId = await publishAndMark(deps, send, report, { webhook: event.webhook, ledger: event.ledger }, data);
  deps.logger.info("delivery report recorded", { ...fields, tenant_id: send.tenant_id, send_id: send.id, suppressed: suppress });
  return { status: "recorded", tenant_id: send.tenant_id, send_id: send.id, event_id: eventId, suppressed: suppress };
}

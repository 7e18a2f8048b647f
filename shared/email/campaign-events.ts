/**
 * The webhook events a campaign's end publishes: campaign.sent when its last send ends,
 * campaign.cancelled when it is cancelled. A campaign ends in several places (the last send's
 * record, the fan-out finding nothing left, a resume after every send ended, a cancel), and
 * two workers may end it at once; each of them calls publishCampaignEnds afterwards.
 *
 * Exactly once: the event id is the campaign's, so publishing twice enqueues nothing twice
 * (the webhook jobs' idempotency keys), and campaigns.end_event_at, set after publishing, stops
 * later callers from trying at all. A process that dies between the end and the publication
 * leaves end_event_at null: the next caller that sees the campaign (a retried send or fan-out)
 * publishes it then.
 */
import type { SqlClient } from "../ports";
import type { Queue } from "../queue/queue";
import { publishEvent } from "../webhooks/events";

/** The statuses a campaign ends in, and the event each publishes. */
const END_EVENTS = { sent: "campaign.sent", cancelled: "campaign.cancelled" } as const;

/** The event id of a campaign's end: the same for every caller and every retry. */
export const campaignEndEventId = (campaignId: string, status: keyof typeof END_EVENTS): string => `evt_campaign_${status}_${campaignId}`;

interface EndedCampaign {
  id: string;
  tenant_id: string;
  name: string;
  status: keyof typeof END_EVENTS;
  recipients: number;
  sent: number;
  skipped: number;
  failed: number;
  started_at: Date | null;
  finished_at: Date | null;
}

/** Publishes the end of each of these campaigns that has ended and not been published yet. Returns how many. */
export async function publishCampaignEnds(queue: Queue, sql: SqlClient, campaignIds: readonly string[]): Promise<number> {
  if (campaignIds.length === 0) return 0;
  const ended = await sql.query<EndedCampaign>(
    `select id, tenant_id, name, status, recipients, sent, skipped, failed, started_at, finished_at from campaigns
     where id = any($1::text[]) and status in ('sent', 'cancelled') and end_event_at is null`,
    [[...new Set(campaignIds)]],
  );
  for (const c of ended) {
    await publishEvent(queue, sql, {
      tenantId: c.tenant_id,
      type: END_EVENTS[c.status],
      eventId: campaignEndEventId(c.id, c.status),
      data: {
        campaign_id: c.id,
        name: c.name,
        status: c.status,
        recipients: c.recipients,
        sent: c.sent,
        skipped: c.skipped,
        failed: c.failed,
        started_at: c.started_at ? new Date(c.started_at).toISOString() : null,
        finished_at: c.finished_at ? new Date(c.finished_at).toISOString() : null,
      },
    });
  }
  if (ended.length > 0) {
    await sql.query("update campaigns set end_event_at = now() where id = any($1::text[]) and end_event_at is null", [ended.map((c) => c.id)]);
  }
  return ended.length;
}

/**
 * A campaign's report (GET /v1/campaigns/:id/stats): what was sent and what became of it, read
 * from the campaign's counters, its events (email_events: delivered, bounced, complained,
 * unsubscribed) and its opens and clicks (email_engagement, one range scan of the campaign).
 * People and machines apart (machine-hits.ts); unique counts are messages, so a message opened
 * ten times is one unique open.
 */
import type { SqlClient } from "../ports";
import { NotFoundError } from "../queue/errors";

export interface EngagementCounts {
  unique: number;
  total: number;
  machine: { unique: number; total: number };
}

export interface CampaignStats {
  campaign_id: string;
  sent: number;
  /** Messages a provider reported delivered (Resend's email.delivered); 0 over SMTP and the outbox, which report none. */
  delivered: number;
  bounced: number;
  complained: number;
  unsubscribed: number;
  opens: EngagementCounts;
  clicks: EngagementCounts;
  links: { index: number; url: string; unique: number; total: number; machine_total: number }[];
  timeline: { minute: string; opens: number; clicks: number; machine_opens: number; machine_clicks: number }[];
}

/** The newest minutes of the timeline, at most: a day of per-minute buckets. */
export const TIMELINE_MINUTES = 1_440;

export async function campaignStats(sql: SqlClient, tenantId: string, campaignId: string): Promise<CampaignStats> {
  const [campaign] = await sql.query<{ sent: number }>("select sent from campaigns where tenant_id = $1 and id = $2", [tenantId, campaignId]);
  if (!campaign) throw new NotFoundError(`no campaign ${campaignId}`);
  const [events, hits, links, timeline] = await Promise.all([
    sql.query<{ type: string; n: number }>(
      `select type, (case when type = 'unsubscribed' then count(*) else count(distinct send_id) end)::int as n
       from email_events where tenant_id = $1 and campaign_id = $2 and type in ('delivered', 'bounced', 'complained', 'unsubscribed')
       group by type`,
      [tenantId, campaignId],
    ),
    sql.query<{ kind: "open" | "click"; machine: boolean; total: number; uniq: number }>(
      `select kind, machine, count(*)::int as total, count(distinct send_id)::int as uniq
       from email_engagement where tenant_id = $1 and campaign_id = $2 group by kind, machine`,
      [tenantId, campaignId],
    ),
    sql.query<{ index: number; url: string; unique: number; total: number; machine_total: number }>(
      `select l.link_index as index, l.url,
              count(distinct e.send_id) filter (where not e.machine)::int as unique,
              count(e.id) filter (where not e.machine)::int as total,
              count(e.id) filter (where e.machine)::int as machine_total
       from campaign_links l
       left join email_engagement e on e.tenant_id = l.tenant_id and e.campaign_id = l.campaign_id and e.kind = 'click' and e.link_index = l.link_index
       where l.tenant_id = $1 and l.campaign_id = $2
       group by l.link_index, l.url order by l.link_index`,
      [tenantId, campaignId],
    ),
    sql.query<{ minute: Date | string; opens: number; clicks: number; machine_opens: number; machine_clicks: number }>(
      `select date_trunc('minute', at) as minute,
              count(*) filter (where kind = 'open' and not machine)::int as opens,
              count(*) filter (where kind = 'click' and not machine)::int as clicks,
              count(*) filter (where kind = 'open' and machine)::int as machine_opens,
              count(*) filter (where kind = 'click' and machine)::int as machine_clicks
       from email_engagement where tenant_id = $1 and campaign_id = $2
       group by 1 order by 1 desc limit $3`,
      [tenantId, campaignId, TIMELINE_MINUTES],
    ),
  ]);
  const event = (type: string) => events.find((e) => e.type === type)?.n ?? 0;
  const counts = (kind: "open" | "click"): EngagementCounts => {
    const of = (machine: boolean) => hits.find((h) => h.kind === kind && h.machine === machine);
    return { unique: of(false)?.uniq ?? 0, total: of(false)?.total ?? 0, machine: { unique: of(true)?.uniq ?? 0, total: of(true)?.total ?? 0 } };
  };
  return {
    campaign_id: campaignId,
    sent: campaign.sent,
    delivered: event("delivered"),
    bounced: event("bounced"),
    complained: event("complained"),
    unsubscribed: event("unsubscribed"),
    opens: counts("open"),
    clicks: counts("click"),
    links,
    timeline: timeline.reverse().map((t) => ({ ...t, minute: new Date(t.minute).toISOString() })),
  };
}

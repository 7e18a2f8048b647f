import { type SegmentFilter, segmentFilterSql } from "./segment-filters";
import type { Logger, Sql } from "../ports";
import { PermanentError, Snooze } from "../queue/errors";
import type { JobContext } from "../queue/handler";
import type { Job } from "../queue/job";
import type { Queue } from "../queue/queue";
import { publishCampaignEnds } from "./campaign-events";
import type { Campaign } from "./campaigns";

export interface FanoutDeps {
  sql: Sql;
  queue: Queue;
  logger: Logger;
  /** Contacts a batch reads and enqueues in one transaction. Defaults to 1,000 (the enqueue maximum). */
  batchSize?: number;
}

/** How often a paused fan-out looks again. */
const PAUSED_SNOOZE_MS = 15_000;

/** A deliberately simple address check: the provider is the judge; this only keeps junk out. */
const PLAUSIBLE_EMAIL = /^[^\s@<>()[\]\\,;:"]+@[^\s@<>()[\]\\,;:"]+\.[^\s@<>()[\]\\,;:"]+$/;


/**
 * campaign.process, as the source document has it: fetch the target list or segment, walk its
 * contacts (keyset pagination by contact id, bounded by the highest id when the campaign
 * started, so contacts added later do not join it), create the email.send jobs in bulk with a
 * per-recipient idempotency key, set the campaign to sending. Each batch commits its jobs and
 * its checkpoint in one transaction: a fan-out that crashed resumes after its last committed
 * batch, and the idempotency keys make even a repeated batch create nothing twice. Pause and
 * cancel are read before every batch.
 */
export async function processCampaign(
  payload: { campaign_id: string; tenant_id: string },
  job: Job,
  ctx: JobContext,
  deps: FanoutDeps,
): Promise<{ recipients: number; status: string }> {
  const batchSize = deps.batchSize ?? 1_000;
  const load = async () => {
    const [c] = await deps.sql.query<Campaign & { filters: SegmentFilter[] | null; segment_list: string | null }>(
      `select c.id, c.tenant_id, c.status, c.template_id, c.list_id, c.segment_id, c.fanout_cursor::text, c.fanout_upper::text,
              c.fanout_done, c.recipients, s.filters, s.list_id as segment_list
       from campaigns c left join segments s on s.tenant_id = c.tenant_id and s.id = c.segment_id
       where c.id = $1 and c.tenant_id = $2`,
      [payload.campaign_id, payload.tenant_id],
    );
    if (!c) throw new PermanentError(`no campaign ${payload.campaign_id} for tenant ${payload.tenant_id}`);
    return c;
  };

  let campaign = await load();
  const listId = campaign.list_id ?? campaign.segment_list;
  if (!listId) throw new PermanentError(`campaign ${campaign.id} has no list or segment`);
  if (campaign.status === "scheduled" || (campaign.status === "sending" && campaign.fanout_upper === null)) {
    // Fix the audience's upper bound once, when sending starts.
    await deps.sql.query(
      `update campaigns set status = 'sending', started_at = coalesce(started_at, now()),
         fanout_upper = coalesce(fanout_upper, (select coalesce(max(contact_id), 0) from list_members where list_id = $2))
       where id = $1 and tenant_id = $3 and status in ('scheduled', 'sending')`,
      [campaign.id, listId, campaign.tenant_id],
    );
    campaign = await load();
  }

  const filters = campaign.filters ?? [];
  for (;;) {
    if (ctx.signal.aborted) throw ctx.signal.reason;
    if (campaign.status === "paused") throw new Snooze(PAUSED_SNOOZE_MS, "campaign paused");
    if (campaign.status !== "sending" || campaign.fanout_done) {
      // Also a run after a crash that came between the end and its publication.
      await publishCampaignEnds(deps.queue, deps.sql, [campaign.id]);
      return { recipients: campaign.recipients, status: campaign.status };
    }
    const { where, params } = segmentFilterSql(filters, 5);
    // A page of member ids first, then each contact by primary key: the planner cannot wander
    // into re-reading contacts from the start on every page (measured 13k rows/s that way).
    const page = await deps.sql.query<{ member_id: string; id: string | null; email: string; name: string | null; attributes: Record<string, unknown> }>(
      `with page as (
         select contact_id from list_members
         where list_id = $1 and contact_id > $2::bigint and contact_id <= $3::bigint
         order by contact_id limit ${batchSize}
       )
       select p.contact_id::text as member_id, c.id::text as id, c.email, c.name, c.attributes
       from page p left join contacts c on c.id = p.contact_id and c.status = 'active' and c.tenant_id = $4 ${where}
       order by p.contact_id`,
      [listId, campaign.fanout_cursor, campaign.fanout_upper ?? "0", campaign.tenant_id, ...params],
    );
    if (page.length === 0) {
      await deps.sql.query(
        `update campaigns set fanout_done = true,
           status = case when sent + skipped + failed >= recipients then 'sent' else status end,
           finished_at = case when sent + skipped + failed >= recipients then now() else finished_at end
         where id = $1 and tenant_id = $2 and status = 'sending'`,
        [campaign.id, campaign.tenant_id],
      );
      campaign = await load();
      // Every send had ended before the fan-out did (all skipped, or an empty audience): the campaign ends here.
      await publishCampaignEnds(deps.queue, deps.sql, [campaign.id]);
      return { recipients: campaign.recipients, status: campaign.status };
    }
    // Members that are not active contacts (or not in the segment) are passed over, not recipients.
    const contacts = page.filter((r): r is typeof r & { id: string } => r.id !== null);
    const valid = contacts.filter((c) => PLAUSIBLE_EMAIL.test(c.email) && c.email.length <= 320);
    const invalid = contacts.filter((c) => !valid.includes(c));
    const last = page[page.length - 1]!.member_id;
    await deps.sql.begin(async (tx) => {
      await deps.queue.enqueueMany(
        valid.map((c) => ({
          type: "email.send",
          tenantId: campaign.tenant_id,
          payload: {
            recipient: c.email,
            template_id: campaign.template_id,
            variables: { ...scalarAttributes(c.attributes), name: c.name ?? "", email: c.email, contact_id: c.id },
            campaign_id: campaign.id,
          },
          idempotencyKey: `camp:${campaign.id}:${c.id}`,
          parentId: job.id,
        })),
        { tx },
      );
      // Invalid addresses never become jobs: they are recorded as skipped right here.
      if (invalid.length > 0) {
        await tx.query(
          `with ins as (
             insert into email_sends (idempotency_key, tenant_id, campaign_id, contact_id, recipient, status, detail)
             select 'camp:' || $1 || ':' || lower(u.email), $2, $1, u.id, u.email, 'skipped', 'invalid address'
             from unnest($3::bigint[], $4::text[]) as u(id, email)
             on conflict (tenant_id, idempotency_key) do nothing returning id
           )
           update campaigns set skipped = skipped + (select count(*) from ins) where id = $1 and tenant_id = $2`,
          [campaign.id, campaign.tenant_id, invalid.map((c) => c.id), invalid.map((c) => c.email)],
        );
      }
      await tx.query("update campaigns set fanout_cursor = $2::bigint, recipients = recipients + $3 where id = $1 and tenant_id = $4", [
        campaign.id,
        last,
        contacts.length,
        campaign.tenant_id,
      ]);
    });
    campaign = await load();
    ctx.progress({ cursor: campaign.fanout_cursor, upper: campaign.fanout_upper, recipients: campaign.recipients });
  }
}

/** Template variables from contact attributes: scalars only (nested objects are not templated). */
function scalarAttributes(attributes: Record<string, unknown>): Record<string, string | number | boolean | null> {
  const out: Record<string, string | number | boolean | null> = {};
  for (const [k, v] of Object.entries(attributes ?? {})) {
    if (v === null || typeof v === "string" || typeof v === "number" || typeof v === "boolean") out[k] = v;
  }
  return out;
}


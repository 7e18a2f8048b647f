import type { SqlClient } from "../ports";
import { ConflictError, NotFoundError } from "../queue/errors";
import type { Queue } from "../queue/queue";
import { publishCampaignEnds } from "./campaign-events";
import { acknowledgeSendingGuard } from "./sending-guards";

export type CampaignStatus = "draft" | "scheduled" | "sending" | "paused" | "sent" | "cancelled";

export interface Campaign {
  id: string;
  tenant_id: string;
  name: string;
  template_id: string;
  list_id: string | null;
  segment_id: string | null;
  status: CampaignStatus;
  scheduled_at: Date | null;
  fanout_cursor: string;
  fanout_upper: string | null;
  fanout_done: boolean;
  recipients: number;
  sent: number;
  skipped: number;
  failed: number;
  /** Null: the tenant's setting. */
  track_opens: boolean | null;
  track_clicks: boolean | null;
  created_at: Date;
  started_at: Date | null;
  finished_at: Date | null;
}

const COLUMNS = `id, tenant_id, name, template_id, list_id, segment_id, status, scheduled_at, fanout_cursor::text,
  fanout_upper::text, fanout_done, recipients, sent, skipped, failed, track_opens, track_clicks, created_at, started_at, finished_at`;

/**
 * Campaign lifecycle: draft → scheduled | sending → (paused ⇄ sending) → sent, or cancelled.
 * Starting enqueues one campaign.process job (keyed by the campaign, so starting twice does
 * not fan out twice); pause and cancel are read by the fan-out before every batch and by each
 * send still waiting. The end (sent or cancelled) is published to the tenant's webhooks once
 * (see campaign-events.ts).
 */
export class Campaigns {
  constructor(
    private readonly sql: SqlClient,
    private readonly queue: Queue,
  ) {}

  async get(tenantId: string | null, id: string): Promise<Campaign> {
    const [row] = await this.sql.query<Campaign>(
      `select ${COLUMNS} from campaigns where id = $1 and ($2::text is null or tenant_id = $2)`,
      [id, tenantId],
    );
    if (!row) throw new NotFoundError(`no campaign ${id}`);
    return row;
  }

  /** Starts now, or at `at`: the fan-out job is delayed until then. */
  async start(tenantId: string, id: string, at?: Date): Promise<Campaign> {
    const campaign = await this.get(tenantId, id);
    if (campaign.status !== "draft" && campaign.status !== "scheduled") {
      throw new ConflictError(`campaign ${id} is ${campaign.status}; only a draft or scheduled campaign can be started`);
    }
    if (!campaign.list_id && !campaign.segment_id) throw new ConflictError(`campaign ${id} has no list or segment to send to`);
    const scheduled = at && at.getTime() > this.queue.clock.now().getTime();
    // Sending now starts now (the fan-out keeps this time); a scheduled one starts when it runs.
    await this.sql.query(
      `update campaigns set status = $3, scheduled_at = $4,
         started_at = case when $3 = 'sending' then coalesce(started_at, $5::timestamptz) else started_at end
       where id = $1 and tenant_id = $2`,
      [id, tenantId, scheduled ? "scheduled" : "sending", scheduled ? at.toISOString() : null, this.queue.clock.now().toISOString()],
    );
    await this.queue.enqueue({
      type: "campaign.process",
      tenantId,
      payload: { campaign_id: id },
      runAt: scheduled ? at : undefined,
      idempotencyKey: `campaign:${id}`,
    });
    return this.get(tenantId, id);
  }

  async pause(tenantId: string, id: string): Promise<Campaign> {
    return this.transition(tenantId, id, ["sending", "scheduled"], "paused");
  }

  async resume(tenantId: string, id: string): Promise<Campaign> {
    // Resuming is how a tenant says it dealt with a tripped sending guard; acknowledged first, so
    // the guard's next check does not pause the campaign again (sending-guards.ts).
    const campaign = await this.get(tenantId, id);
    if (campaign.status === "paused") await acknowledgeSendingGuard(this.sql, tenantId, this.queue.clock.now());
    // Paused before its time came, a scheduled campaign goes back to waiting for it: its
    // campaign.process job still waits for scheduled_at, so "sending" would be untrue until then.
    await this.transition(tenantId, id, ["paused"], "sending", { unlessScheduled: true });
    // Every send may have ended while paused: the campaign is then sent.
    await this.sql.query(
      `update campaigns set status = 'sent', finished_at = now()
       where id = $1 and tenant_id = $2 and status = 'sending' and fanout_done and sent + skipped + failed >= recipients`,
      [id, tenantId],
    );
    await publishCampaignEnds(this.queue, this.sql, [id]);
    return this.get(tenantId, id);
  }

  /** Cancels, and publishes campaign.cancelled with the counters as they stand. */
  async cancel(tenantId: string, id: string): Promise<Campaign> {
    const campaign = await this.transition(tenantId, id, ["draft", "scheduled", "sending", "paused"], "cancelled");
    await publishCampaignEnds(this.queue, this.sql, [id]);
    return campaign;
  }

  /** `unlessScheduled`: a campaign whose scheduled_at is still ahead becomes scheduled instead. */
  private async transition(
    tenantId: string,
    id: string,
    from: CampaignStatus[],
    to: CampaignStatus,
    options: { unlessScheduled?: boolean } = {},
  ): Promise<Campaign> {
    const rows = await this.sql.query(
      `update campaigns set status = case when $5::boolean and scheduled_at > $6::timestamptz then 'scheduled' else $3 end,
         finished_at = case when $3 = 'cancelled' then now() else finished_at end
       where id = $1 and tenant_id = $2 and status = any($4::text[]) returning id`,
      [id, tenantId, to, from, options.unlessScheduled === true, this.queue.clock.now().toISOString()],
    );
    if (rows.length === 0) {
      const current = await this.get(tenantId, id);
      throw new ConflictError(`campaign ${id} is ${current.status}; it cannot become ${to}`);
    }
    return this.get(tenantId, id);
  }
}

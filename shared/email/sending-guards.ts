/**
 * Sending guards: a tenant whose hard-bounce or complaint rate over a sliding window passes
 * its threshold (defaults: complaints 0.3%, hard bounces 5%, over 24 hours, counted only from
 * 200 sends on) has its campaign mail paused by the platform, before mailbox providers start
 * refusing the platform's mail for everyone. Transactional mail (email.send without a campaign)
 * goes on: password resets and receipts are not what hurts a reputation, and stopping them
 * hurts the tenant's users.
 *
 * Counts come from email_events, which the pipeline already writes: 'sent' once a message (the
 * send ledger's final step), 'bounced' (hard when data.bounce_type is 'hard') and 'complained'
 * (delivery-feedback.ts). A rate is events in the window over messages sent in the window.
 *
 * A check (one scheduler pass on either runtime, at most every CHECK_EVERY_MS) reads the bounces
 * and complaints recorded since the last check, a page at a time, and evaluates only the tenants
 * they name (at most maxTenantsPerCheck a pass): its cost follows the feedback, not the sends.
 * Only a bounce or a complaint can push a rate over its threshold, so nothing else needs a look.
 *
 * The state machine, one row a tenant (sending_guards):
 *   clear → tripped: the rates passed a threshold. In one transaction: the tenant's sending and
 *     scheduled campaigns become paused (the pause API's effect: their waiting sends snooze, no
 *     attempt spent, nothing failed), sending.paused goes to its webhooks, and its owner
 *     (settings.sending_guards.notify_email, else the notify_email of its oldest endpoint that
 *     has one) gets one email. The trip's number keys both, so each goes out once a trip.
 *   tripped: every check pauses any campaign the tenant starts meanwhile.
 *   tripped → acknowledged: the tenant resumes a campaign (the existing resume API); that says it
 *     has dealt with the cause. From then on the rates are counted from the acknowledgement, not
 *     over the whole window: the old events that tripped the guard would otherwise pause the
 *     resumed campaign again at the next bounce. New mail that is as bad (over a threshold, with
 *     the minimum volume sent since) trips it again: a new trip, told again.
 *   acknowledged → clear: the whole window is under the thresholds (the old events left it).
 *   An admin's reset (POST /v1/sending/guards/reset) clears a guard and counts from that time,
 *   as an acknowledgement does.
 *
 * The sending domain: a tenant's mail goes from one From address (settings.from_email, else
 * MAIL_FROM), and the ledger does not keep the From of each message, so a guard is per tenant
 * and names the domain its mail goes from now. Per-domain guards need the From domain written
 * into the ledger at send time (email_sends), which send-email.ts does not do yet.
 */
import { z } from "zod";
import { email } from "../jobs/fields";
import type { Clock, Logger, Sql, SqlClient } from "../ports";
import type { Queue } from "../queue/queue";
import { publishEvent } from "../webhooks/events";

export const SENDING_PAUSED_EVENT = "sending.paused";

/** Thresholds and window of the guards, platform-wide (a tenant may set its own thresholds). */
export interface GuardPolicy {
  /** Complaints over sends above which campaigns pause. Defaults to 0.003 (0.3%). */
  complaintRate: number;
  /** Hard bounces over sends above which campaigns pause. Defaults to 0.05 (5%). */
  hardBounceRate: number;
  /** The sliding window. Defaults to 24 hours. */
  windowMs: number;
  /** Fewer sends than this in the window never trip a guard (three complaints on ten mails are noise). Defaults to 200. */
  minVolume: number;
}

export const DEFAULT_GUARD_POLICY: GuardPolicy = { complaintRate: 0.003, hardBounceRate: 0.05, windowMs: 24 * 3_600_000, minVolume: 200 };

const rate = z.coerce.number().gt(0, "must be above 0").max(1, "is a fraction: at most 1 (0.003 is 0.3%)");

/** The guards' environment variables, for both runtimes' config loaders (each names the variable when a value is bad). */
export const sendingGuardEnvShape = {
  /** Complaint rate (a fraction) above which a tenant's campaigns pause. */
  SENDING_GUARD_COMPLAINT_RATE: rate.default(DEFAULT_GUARD_POLICY.complaintRate),
  /** Hard-bounce rate (a fraction) above which a tenant's campaigns pause. */
  SENDING_GUARD_HARD_BOUNCE_RATE: rate.default(DEFAULT_GUARD_POLICY.hardBounceRate),
  /** The sliding window, in hours. */
  SENDING_GUARD_WINDOW_HOURS: z.coerce.number().gt(0).max(24 * 90).default(DEFAULT_GUARD_POLICY.windowMs / 3_600_000),
  /** Sends in the window below which no guard trips. */
  SENDING_GUARD_MIN_VOLUME: z.coerce.number().int().min(1).max(100_000_000).default(DEFAULT_GUARD_POLICY.minVolume),
};

export const guardPolicyOf = (c: {
  SENDING_GUARD_COMPLAINT_RATE: number;
  SENDING_GUARD_HARD_BOUNCE_RATE: number;
  SENDING_GUARD_WINDOW_HOURS: number;
  SENDING_GUARD_MIN_VOLUME: number;
}): GuardPolicy => ({
  complaintRate: c.SENDING_GUARD_COMPLAINT_RATE,
  hardBounceRate: c.SENDING_GUARD_HARD_BOUNCE_RATE,
  windowMs: c.SENDING_GUARD_WINDOW_HOURS * 3_600_000,
  minVolume: c.SENDING_GUARD_MIN_VOLUME,
});

/**
 * A tenant's own guard settings, tenants.settings.sending_guards. Settings are written by SQL
 * (no route writes them): a value that does not fit is not used, the platform's thresholds
 * apply, and the guard's view says what is wrong (settings_problem).
 */
export const tenantGuardSettingsSchema = z.strictObject({
  complaint_rate: z.number().gt(0).max(1).optional(),
  hard_bounce_rate: z.number().gt(0).max(1).optional(),
  /** Who is told by email when the guard pauses the tenant's campaigns. */
  notify_email: email.optional(),
});
export type TenantGuardSettings = z.infer<typeof tenantGuardSettingsSchema>;

export interface WindowCounts {
  sent: number;
  hardBounces: number;
  complaints: number;
}

export interface Thresholds {
  complaintRate: number;
  hardBounceRate: number;
  minVolume: number;
}

export type GuardReason = "complaint_rate" | "hard_bounce_rate";

export interface Verdict {
  complaintRate: number;
  hardBounceRate: number;
  /** The thresholds passed; empty when under them or below the minimum volume. */
  over: GuardReason[];
}

/** The decision alone: over a threshold (strictly above it) with at least the minimum volume sent. */
export function verdictOf(counts: WindowCounts, t: Thresholds): Verdict {
  const complaintRate = counts.sent > 0 ? counts.complaints / counts.sent : 0;
  const hardBounceRate = counts.sent > 0 ? counts.hardBounces / counts.sent : 0;
  const over: GuardReason[] = [];
  if (counts.sent >= t.minVolume) {
    if (complaintRate > t.complaintRate) over.push("complaint_rate");
    if (hardBounceRate > t.hardBounceRate) over.push("hard_bounce_rate");
  }
  return { complaintRate, hardBounceRate, over };
}

/** The window's counts for one tenant: three range scans of email_events_tenant_type_time_idx. */
export async function countWindow(sql: SqlClient, tenantId: string, from: Date, to: Date): Promise<WindowCounts> {
  const [row] = await sql.query<{ sent: string; hard: string; complaints: string }>(
    `select
       (select count(*) from email_events where tenant_id = $1 and type = 'sent' and created_at > $2 and created_at <= $3) as sent,
       (select count(*) from email_events where tenant_id = $1 and type = 'bounced' and created_at > $2 and created_at <= $3
          and data->>'bounce_type' = 'hard') as hard,
       (select count(*) from email_events where tenant_id = $1 and type = 'complained' and created_at > $2 and created_at <= $3) as complaints`,
    [tenantId, from.toISOString(), to.toISOString()],
  );
  return { sent: Number(row?.sent ?? 0), hardBounces: Number(row?.hard ?? 0), complaints: Number(row?.complaints ?? 0) };
}

export type GuardState = "clear" | "tripped" | "acknowledged";

interface GuardRow {
  tenant_id: string;
  state: GuardState;
  trips: number;
  tripped_at: Date | null;
  trip: Record<string, unknown>;
  acknowledged_at: Date | null;
}

/** What GET /v1/sending/guards shows of one tenant: its live rates, thresholds and state. */
export interface GuardView {
  tenant_id: string;
  state: GuardState;
  domain: string | null;
  window: { hours: number; from: string; to: string; counted_from: string };
  sent: number;
  hard_bounces: number;
  complaints: number;
  hard_bounce_rate: number;
  complaint_rate: number;
  thresholds: { complaint_rate: number; hard_bounce_rate: number; min_volume: number };
  over: GuardReason[];
  trips: number;
  tripped_at: string | null;
  acknowledged_at: string | null;
  last_trip: Record<string, unknown> | null;
  settings_problem: string | null;
}

export interface SendingGuardsDeps {
  /** Checks trip guards in a transaction (Sql.begin); the API only reads and resets, with any client. */
  sql: SqlClient & Partial<Pick<Sql, "begin">>;
  queue: Queue;
  clock: Clock;
  logger: Logger;
  policy?: GuardPolicy;
  /** MAIL_FROM: the From of tenants without one of their own (for the domain a guard names). */
  defaultFrom?: string;
  /** Tenants one check evaluates at most; the rest wait for the next. Defaults to 50. */
  maxTenantsPerCheck?: number;
  /** Bounce and complaint events one check reads at most. Defaults to 1,000. */
  maxEventsPerCheck?: number;
  /**
   * Events younger than this are left for the next check: an event's id is taken when its
   * statement starts and it becomes visible when that commits, so a younger id may still show up
   * below the ones read. Defaults to 2 s (the pipeline writes events in one short statement).
   */
  settleMs?: number;
}

export interface GuardCheckReport {
  evaluated: number;
  tripped: string[];
  cleared: string[];
  /** Campaigns a tripped guard paused after they started (a tenant starting one meanwhile). */
  held: number;
}

const TENANT_SETTINGS = "select settings from tenants where id = $1";

export class SendingGuards {
  private readonly policy: GuardPolicy;
  private readonly logger: Logger;

  constructor(private readonly deps: SendingGuardsDeps) {
    this.policy = deps.policy ?? DEFAULT_GUARD_POLICY;
    this.logger = deps.logger.child({ component: "sending-guards" });
  }

  /** One check: evaluate the tenants with new bounces or complaints, hold campaigns of tripped ones. Bounded by maxEvents and maxTenants. */
  async check(): Promise<GuardCheckReport> {
    const { sql } = this.deps;
    const now = this.deps.clock.now();
    const report: GuardCheckReport = { evaluated: 0, tripped: [], cleared: [], held: 0 };
    const [cursor] = await sql.query<{ last_event_id: string }>(
      `insert into sending_guard_cursor (singleton) values (true) on conflict (singleton) do update set singleton = true
       returning last_event_id::text`,
    );
    const events = await sql.query<{ id: string; tenant_id: string; settled: boolean; created_at: Date }>(
      `select id::text, tenant_id, created_at <= now() - $3 * interval '1 millisecond' as settled, created_at from email_events
       where type in ('bounced', 'complained') and id > $1 order by id limit $2`,
      [cursor!.last_event_id, this.deps.maxEventsPerCheck ?? 1_000, this.deps.settleMs ?? 2_000],
    );
    // The events read in id order up to the first unsettled one, and up to maxTenants tenants:
    // the cursor moves to the last event taken, so what is left is the next check's.
    const maxTenants = this.deps.maxTenantsPerCheck ?? 50;
    const tenants = new Set<string>();
    let through: string | undefined;
    // The window is counted up to the latest event taken when that is later than this process's
    // clock: the events' times are the database's, and an event the cursor passes must count
    // (a clock behind the database's left a complaint out of its own check, and the cursor then
    // moved past it, so the guard did not trip until some other event came).
    let at = now;
    for (const e of events) {
      if (!e.settled) break;
      if (!tenants.has(e.tenant_id) && tenants.size >= maxTenants) break;
      tenants.add(e.tenant_id);
      through = e.id;
      // + 1 ms: a Date holds milliseconds, the database microseconds (12:00:00.303456 is after .303).
      const t = new Date(new Date(e.created_at).getTime() + 1);
      if (t > at) at = t;
    }
    for (const tenantId of tenants) {
      const outcome = await this.evaluate(tenantId, at);
      report.evaluated += 1;
      if (outcome === "tripped") report.tripped.push(tenantId);
      else if (outcome === "cleared") report.cleared.push(tenantId);
    }
    if (through !== undefined) {
      await sql.query("update sending_guard_cursor set last_event_id = greatest(last_event_id, $1::bigint), checked_at = $2", [through, now.toISOString()]);
    }
    report.held = await this.holdTripped();
    return report;
  }

  /** Evaluates one tenant now: trips, clears or leaves its guard. */
  async evaluate(tenantId: string, now = this.deps.clock.now()): Promise<"tripped" | "cleared" | "unchanged"> {
    const view = await this.view(tenantId, now);
    if (view.state === "tripped") return "unchanged";
    if (view.over.length > 0) return (await this.trip(view, now)) ? "tripped" : "unchanged";
    if (view.state === "acknowledged") {
      // Counted from the acknowledgement, it is under the thresholds; clear once the whole window is too.
      const whole = await countWindow(this.deps.sql, tenantId, new Date(now.getTime() - this.policy.windowMs), now);
      const thresholds = { complaintRate: view.thresholds.complaint_rate, hardBounceRate: view.thresholds.hard_bounce_rate, minVolume: view.thresholds.min_volume };
      if (verdictOf(whole, thresholds).over.length === 0) {
        const rows = await this.deps.sql.query(
          "update sending_guards set state = 'clear', acknowledged_at = null, updated_at = $2 where tenant_id = $1 and state = 'acknowledged' returning 1",
          [tenantId, now.toISOString()],
        );
        if (rows.length > 0) {
          this.logger.info("sending guard cleared: the window is under the thresholds", { tenant_id: tenantId });
          return "cleared";
        }
      }
    }
    return "unchanged";
  }

  /** A tenant's guard as it stands: its state and its rates counted now (nothing changes). */
  async view(tenantId: string, now = this.deps.clock.now()): Promise<GuardView> {
    const { sql } = this.deps;
    const [[tenant], [row]] = await Promise.all([
      sql.query<{ settings: Record<string, unknown> | null }>(TENANT_SETTINGS, [tenantId]),
      sql.query<GuardRow>("select tenant_id, state, trips, tripped_at, trip, acknowledged_at from sending_guards where tenant_id = $1", [tenantId]),
    ]);
    const settings = tenant?.settings ?? {};
    const parsed = tenantGuardSettingsSchema.safeParse(settings.sending_guards ?? {});
    const own = parsed.success ? parsed.data : {};
    const thresholds: Thresholds = {
      complaintRate: own.complaint_rate ?? this.policy.complaintRate,
      hardBounceRate: own.hard_bounce_rate ?? this.policy.hardBounceRate,
      minVolume: this.policy.minVolume,
    };
    const state: GuardState = row?.state ?? "clear";
    const windowFrom = new Date(now.getTime() - this.policy.windowMs);
    // After an acknowledgement (or a reset), the events before it no longer count: see the state machine.
    const since = row?.acknowledged_at && (state === "acknowledged" || state === "clear") ? new Date(row.acknowledged_at) : undefined;
    const countedFrom = since && since > windowFrom ? since : windowFrom;
    const counts = await countWindow(sql, tenantId, countedFrom, now);
    const verdict = verdictOf(counts, thresholds);
    const fromEmail = typeof settings.from_email === "string" ? settings.from_email : this.deps.defaultFrom;
    return {
      tenant_id: tenantId,
      state,
      domain: fromEmail ? domainOf(fromEmail) : null,
      window: { hours: this.policy.windowMs / 3_600_000, from: windowFrom.toISOString(), to: now.toISOString(), counted_from: countedFrom.toISOString() },
      sent: counts.sent,
      hard_bounces: counts.hardBounces,
      complaints: counts.complaints,
      hard_bounce_rate: verdict.hardBounceRate,
      complaint_rate: verdict.complaintRate,
      thresholds: { complaint_rate: thresholds.complaintRate, hard_bounce_rate: thresholds.hardBounceRate, min_volume: thresholds.minVolume },
      over: verdict.over,
      trips: row?.trips ?? 0,
      tripped_at: row?.tripped_at ? new Date(row.tripped_at).toISOString() : null,
      acknowledged_at: row?.acknowledged_at ? new Date(row.acknowledged_at).toISOString() : null,
      last_trip: row && row.trips > 0 ? row.trip : null,
      settings_problem: parsed.success
        ? null
        : `tenants.settings.sending_guards: ${parsed.error.issues.map((i) => `${i.path.join(".") || "(value)"}: ${i.message}`).join("; ")}; the platform's thresholds apply`,
    };
  }

  /** The tenants whose guard is not clear (admin's listing), at most `limit`, each viewed now. */
  async list(limit = 100): Promise<GuardView[]> {
    const rows = await this.deps.sql.query<{ tenant_id: string }>(
      "select tenant_id from sending_guards where state <> 'clear' order by tripped_at desc nulls last, tenant_id limit $1",
      [limit],
    );
    const now = this.deps.clock.now();
    const views: GuardView[] = [];
    for (const r of rows) views.push(await this.view(r.tenant_id, now));
    return views;
  }

  /** An admin's reset: the guard is clear, and the rates count from now (the events before no longer trip it). */
  async reset(tenantId: string): Promise<GuardView> {
    const now = this.deps.clock.now();
    await this.deps.sql.query(
      `insert into sending_guards (tenant_id, state, acknowledged_at, updated_at) values ($1, 'clear', $2, $2)
       on conflict (tenant_id) do update set state = 'clear', acknowledged_at = $2, updated_at = $2`,
      [tenantId, now.toISOString()],
    );
    this.logger.info("sending guard reset", { tenant_id: tenantId });
    return this.view(tenantId, now);
  }

  /**
   * Trips the guard: in one transaction the move to 'tripped' (only one caller makes it), the
   * pause of the tenant's sending and scheduled campaigns, the webhook event and the owner's
   * email. False when another check tripped it first.
   */
  private async trip(view: GuardView, now: Date): Promise<boolean> {
    const { queue } = this.deps;
    const tenantId = view.tenant_id;
    const { sql } = this.deps;
    if (!sql.begin) throw new Error("a sending guard trips in a transaction: give SendingGuards a client with begin()");
    const tripped = await sql.begin(async (tx) => {
      const [row] = await tx.query<{ trips: number }>(
        `insert into sending_guards (tenant_id, state, trips, tripped_at, updated_at) values ($1, 'tripped', 1, $2, $2)
         on conflict (tenant_id) do update set state = 'tripped', trips = sending_guards.trips + 1, tripped_at = $2, updated_at = $2
           where sending_guards.state <> 'tripped'
         returning trips`,
        [tenantId, now.toISOString()],
      );
      if (!row) return undefined;
      const paused = await pauseCampaigns(tx, tenantId);
      const data = {
        tenant_id: tenantId,
        domain: view.domain,
        reasons: view.over,
        complaint_rate: view.complaint_rate,
        hard_bounce_rate: view.hard_bounce_rate,
        sent: view.sent,
        complaints: view.complaints,
        hard_bounces: view.hard_bounces,
        thresholds: view.thresholds,
        window: { hours: view.window.hours, from: view.window.counted_from, to: view.window.to },
        paused_campaign_ids: paused,
        tripped_at: now.toISOString(),
        trip: row.trips,
      };
      await tx.query("update sending_guards set trip = $2 where tenant_id = $1", [tenantId, JSON.stringify(data)]);
      await publishEvent(queue, tx, { tenantId, type: SENDING_PAUSED_EVENT, eventId: `evt_sending_paused_${tenantId}_${row.trips}`, data }, { tx });
      const owner = await ownerAddress(tx, tenantId);
      if (owner) {
        await queue.enqueue(
          {
            type: "email.send",
            tenantId,
            payload: { recipient: owner, template_id: "sys_transactional", variables: noticeVariables(data) },
            idempotencyKey: `sending-paused:${row.trips}`,
          },
          { tx },
        );
      }
      return { paused, owner };
    });
    if (!tripped) return false;
    this.logger.warn("sending guard tripped: the tenant's campaigns are paused", {
      tenant_id: tenantId,
      reasons: view.over,
      complaint_rate: view.complaint_rate,
      hard_bounce_rate: view.hard_bounce_rate,
      sent: view.sent,
      paused: tripped.paused.length,
      owner_told: tripped.owner !== undefined,
    });
    return true;
  }

  /** A tripped guard holds campaigns started while it stands: they are paused as the trip paused the others. */
  private async holdTripped(): Promise<number> {
    const rows = await this.deps.sql.query<{ id: string; tenant_id: string }>(
      `update campaigns c set status = 'paused' from sending_guards g
       where g.state = 'tripped' and c.tenant_id = g.tenant_id and c.status in ('sending', 'scheduled')
       returning c.id, c.tenant_id`,
    );
    if (rows.length > 0) this.logger.info("sending guard held campaigns started while it stands", { campaigns: rows.map((r) => r.id) });
    return rows.length;
  }
}

/**
 * The tenant resumed a campaign: that acknowledges a tripped guard (see the state machine at the
 * top). Called by Campaigns.resume before the campaign moves, so no check in between pauses it again.
 */
export async function acknowledgeSendingGuard(sql: SqlClient, tenantId: string, now: Date): Promise<boolean> {
  const rows = await sql.query(
    "update sending_guards set state = 'acknowledged', acknowledged_at = $2, updated_at = $2 where tenant_id = $1 and state = 'tripped' returning 1",
    [tenantId, now.toISOString()],
  );
  return rows.length > 0;
}

/** The pause API's effect on every sending or scheduled campaign of the tenant at once; their ids. */
async function pauseCampaigns(tx: SqlClient, tenantId: string): Promise<string[]> {
  const rows = await tx.query<{ id: string }>(
    "update campaigns set status = 'paused' where tenant_id = $1 and status in ('sending', 'scheduled') returning id",
    [tenantId],
  );
  return rows.map((r) => r.id).sort();
}

/** Who hears of a trip: the tenant's own setting, else the notify_email of its oldest endpoint that has one. */
async function ownerAddress(tx: SqlClient, tenantId: string): Promise<string | undefined> {
  const [tenant] = await tx.query<{ settings: Record<string, unknown> | null }>(TENANT_SETTINGS, [tenantId]);
  const own = tenantGuardSettingsSchema.safeParse((tenant?.settings ?? {}).sending_guards ?? {});
  if (own.success && own.data.notify_email) return own.data.notify_email;
  const [endpoint] = await tx.query<{ notify_email: string }>(
    "select notify_email from webhook_endpoints where tenant_id = $1 and notify_email is not null order by created_at, id limit 1",
    [tenantId],
  );
  return endpoint?.notify_email;
}

const percent = (r: number) => `${(r * 100).toFixed(2)}%`;

/** sys_transactional's variables for the owner's notice. */
function noticeVariables(d: {
  reasons: GuardReason[];
  complaint_rate: number;
  hard_bounce_rate: number;
  sent: number;
  thresholds: GuardView["thresholds"];
  window: { hours: number };
  paused_campaign_ids: string[];
  domain: string | null;
}): Record<string, string> {
  const what = d.reasons
    .map((r) =>
      r === "complaint_rate"
        ? `the complaint rate was ${percent(d.complaint_rate)} (the limit is ${percent(d.thresholds.complaint_rate)})`
        : `the hard-bounce rate was ${percent(d.hard_bounce_rate)} (the limit is ${percent(d.thresholds.hard_bounce_rate)})`,
    )
    .join(" and ");
  return {
    title: "Your campaigns are paused",
    subject: `Campaign sending paused: ${what}`.slice(0, 998),
    body: [
      `Over the last ${d.window.hours} hours of mail${d.domain ? ` from ${d.domain}` : ""}, ${what}, on ${d.sent} messages sent.`,
      `We paused ${d.paused_campaign_ids.length === 0 ? "your campaigns" : `${d.paused_campaign_ids.length} campaign(s): ${d.paused_campaign_ids.join(", ")}`}. Their waiting messages are held, not lost. Transactional mail still goes out.`,
      "Check the lists these campaigns go to (old or bought addresses, missing consent), then resume each campaign. Resuming tells us you have dealt with it: the rates then count from that moment.",
    ].join("\n\n").slice(0, 20_000),
  };
}

/** The domain of a From address: "Acme <news@acme.com>" → acme.com. */
export function domainOf(from: string): string | null {
  const m = /@([^\s<>@]+?)>?\s*$/.exec(from.trim());
  return m ? m[1]!.toLowerCase() : null;
}

/** How often the scheduler checks the guards: often enough that a trip comes seconds after the feedback that caused it. */
export const CHECK_EVERY_MS = 10_000;

/** The guards' check as a scheduler task (both runtimes; the edge runs one pass a minute). */
export const sendingGuardsTask = (guards: SendingGuards, everyMs = CHECK_EVERY_MS) => ({
  name: "sending-guards",
  everyMs,
  run: () => guards.check(),
});

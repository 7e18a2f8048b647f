/**
 * Opens and clicks, recorded without a database write per hit: the tracking routes hand each
 * hit to this buffer (memory only, one per process), which writes them in bulk, one statement a
 * flush of up to `batchSize` hits: the events (email_engagement), each message's first human
 * open and click (email_sends.first_*: the unique counts, deduplicated per message), the
 * contacts' last_opened_at / last_clicked_at, and the campaign's link URLs. Then email.opened and
 * email.clicked for messages whose first human open or click this was, in the same transaction
 * (where the driver has transactions), each once per message (its event id is fixed by the send).
 *
 * A flush runs every `intervalMs` (default 1 s) and as soon as `batchSize` hits are ready. A
 * hit waits at least `holdMs` (the scanner burst window, machine-hits.ts) before it is ready, so
 * a scanner's burst over a message's links is whole in the buffer when it is judged. So a crash
 * loses the last 2-3 seconds of hits (never more: the buffer is bounded by `maxBuffered`, and
 * hits beyond it are dropped and counted, which only a database outage longer than the buffer
 * lasts can cause). Hits of sends that do not exist in that tenant and campaign record nothing.
 */
import type { Clock, Logger, Sql, SqlClient } from "../ports";
import { MAX_BATCH, type Queue } from "../queue/queue";
import { BURST_WINDOW_MS, type ClickSeen, DELIVERY_WINDOW_MS, machineByRequest, markScannerBursts } from "./machine-hits";
import type { TrackingClaim } from "./tracking-tokens";

export interface EngagementSink {
  /** Takes one verified hit; never throws, never waits for the database. */
  record(claim: TrackingClaim, userAgent: string | undefined): void;
}

export interface EngagementBufferOptions {
  sql: SqlClient & Partial<Pick<Sql, "begin">>;
  clock: Clock;
  logger: Logger;
  /** Where email.opened / email.clicked are published; without one, nothing is. */
  queue?: Queue;
  /** Default 1,000 ms. */
  intervalMs?: number;
  /** Hits a statement at most; a flush starts as soon as this many are ready. Default 2,000. */
  batchSize?: number;
  /** Hits held at most; beyond it new hits are dropped (and counted). Default 100,000. */
  maxBuffered?: number;
  /** How long a hit waits before it is written (the scanner burst window). Default 2,000 ms; 0 on the edge. */
  holdMs?: number;
  /** Rule 3 of machine-hits.ts. Default 2,000 ms. */
  deliveryWindowMs?: number;
}

interface Hit extends ClickSeen {
  tenantId: string;
  campaignId: string;
  kind: "open" | "click";
  url: string | null;
}

export const ENGAGEMENT_EVENTS = ["email.opened", "email.clicked"] as const;

export class EngagementBuffer implements EngagementSink {
  private hits: Hit[] = [];
  private flushing?: Promise<void>;
  private busy = false;
  private timer?: ReturnType<typeof setInterval>;
  /** Hits dropped because the buffer was full; written hits, statements (for /metrics and the bench). */
  readonly counts = { dropped: 0, written: 0, statements: 0, failedFlushes: 0 };
  private readonly batchSize: number;
  private readonly maxBuffered: number;
  private readonly holdMs: number;

  constructor(private readonly o: EngagementBufferOptions) {
    this.batchSize = o.batchSize ?? 2_000;
    this.maxBuffered = o.maxBuffered ?? 100_000;
    this.holdMs = o.holdMs ?? BURST_WINDOW_MS;
  }

  record(claim: TrackingClaim, userAgent: string | undefined): void {
    if (this.hits.length >= this.maxBuffered) {
      this.counts.dropped++;
      return;
    }
    const click = claim.kind === "click";
    this.hits.push({
      tenantId: claim.tenantId,
      campaignId: claim.campaignId,
      sendId: claim.sendId,
      kind: claim.kind,
      linkIndex: click ? claim.linkIndex : -1,
      linkCount: click ? claim.linkCount : 0,
      url: click ? claim.url : null,
      atMs: this.o.clock.now().getTime(),
      machine: machineByRequest(claim.kind, userAgent),
    });
    // A full batch ready (its last hit past the hold window) flushes now, not at the next tick.
    const last = this.hits[this.batchSize - 1];
    if (this.timer && !this.busy && last && last.atMs <= this.o.clock.now().getTime() - this.holdMs) void this.flush();
  }

  /** Hits in the buffer now (not yet written). */
  get pending(): number {
    return this.hits.length;
  }

  start(): void {
    this.timer ??= setInterval(() => void this.flush(), this.o.intervalMs ?? 1_000);
    (this.timer as { unref?: () => void }).unref?.();
  }

  /** Stops the timer and writes everything held. */
  async stop(): Promise<void> {
    clearInterval(this.timer);
    this.timer = undefined;
    await this.flush({ all: true });
  }

  /**
   * Writes the ready hits (`all`: every hit, held or not), one statement a batch. One flush at
   * a time; a flush asked for during another runs after it. A failed statement puts its hits
   * back (within the bound) for the next flush, and is logged.
   */
  flush(options: { all?: boolean } = {}): Promise<void> {
    const run = async () => {
      const cutoff = options.all ? Infinity : this.o.clock.now().getTime() - this.holdMs;
      markScannerBursts(this.hits.filter((h) => h.kind === "click"));
      let ready = 0;
      while (ready < this.hits.length && this.hits[ready]!.atMs <= cutoff) ready++;
      // Bounded: at most the buffer's bound, a batch a statement.
      while (ready > 0) {
        const batch = this.hits.slice(0, Math.min(ready, this.batchSize));
        this.hits = this.hits.slice(batch.length);
        ready -= batch.length;
        try {
          await this.write(batch);
          this.counts.written += batch.length;
        } catch (err) {
          this.counts.failedFlushes++;
          const room = Math.max(0, this.maxBuffered - this.hits.length);
          this.counts.dropped += Math.max(0, batch.length - room);
          this.hits = [...batch.slice(0, room), ...this.hits];
          this.o.logger.warn("engagement flush failed; the hits are kept for the next one", { hits: batch.length, err: err instanceof Error ? err.message : String(err) });
          return;
        }
      }
    };
    const next = (this.flushing ?? Promise.resolve()).then(async () => {
      this.busy = true;
      try {
        await run();
      } finally {
        this.busy = false;
      }
    });
    this.flushing = next.catch(() => {});
    return next;
  }

  private async write(batch: Hit[]): Promise<void> {
    const apply = async (tx: SqlClient) => {
      const firsts = await tx.query<FirstRow>(FLUSH_SQL, [
        batch.map((h) => h.tenantId),
        batch.map((h) => h.campaignId),
        batch.map((h) => h.sendId),
        batch.map((h) => h.kind),
        batch.map((h) => (h.kind === "click" ? h.linkIndex : null)),
        batch.map((h) => h.url),
        batch.map((h) => h.machine),
        batch.map((h) => new Date(h.atMs).toISOString()),
        this.o.deliveryWindowMs ?? DELIVERY_WINDOW_MS,
      ]);
      this.counts.statements++;
      if (this.o.queue && firsts.length > 0) await publishFirsts(this.o.queue, tx, firsts);
    };
    if (this.o.queue && this.o.sql.begin) await this.o.sql.begin(apply);
    else await apply(this.o.sql);
  }
}

interface FirstRow {
  send_id: string;
  tenant_id: string;
  campaign_id: string;
  contact_id: string | null;
  recipient: string;
  opened_now: boolean;
  opened: Date | null;
  clicked_now: boolean;
  clicked: Date | null;
  link_index: number | null;
  url: string | null;
}

/**
 * One statement a flush. Hits join their send within its tenant and campaign (a hit of
 * anything else records nothing); rule 3 (a hit within the delivery window) is applied here,
 * where sent_at is. Returns the messages whose first human open or click this flush set: the
 * update's WHERE re-checks the row under its lock, so of two processes flushing the same
 * message's first open only one sees it as new.
 */
const FLUSH_SQL = `
with h as (
  select * from unnest($1::text[], $2::text[], $3::bigint[], $4::text[], $5::int[], $6::text[], $7::boolean[], $8::timestamptz[])
    as u(tenant_id, campaign_id, send_id, kind, link_index, url, machine, at)
),
j as (
  select h.tenant_id, h.campaign_id, h.send_id, h.kind, h.link_index, h.url, h.at, s.contact_id,
         h.machine or (s.sent_at is not null and h.at < s.sent_at + make_interval(secs => $9::float8 / 1000)) as machine
  from h join email_sends s on s.tenant_id = h.tenant_id and s.id = h.send_id and s.campaign_id = h.campaign_id
),
ins as (
  insert into email_engagement (tenant_id, campaign_id, send_id, kind, link_index, machine, at)
  select tenant_id, campaign_id, send_id, kind, link_index, machine, at from j
),
links as (
  insert into campaign_links (tenant_id, campaign_id, link_index, url)
  select distinct on (tenant_id, campaign_id, link_index) tenant_id, campaign_id, link_index, url
  from j where kind = 'click' order by tenant_id, campaign_id, link_index, at
  on conflict do nothing
),
people as (
  select tenant_id, send_id,
         min(at) filter (where kind = 'open') as opened,
         min(at) filter (where kind = 'click') as clicked,
         (array_agg(link_index order by at) filter (where kind = 'click'))[1] as link_index,
         (array_agg(url order by at) filter (where kind = 'click'))[1] as url
  from j where not machine group by tenant_id, send_id
),
marked as (
  update email_sends s set first_opened_at = coalesce(s.first_opened_at, p.opened), first_clicked_at = coalesce(s.first_clicked_at, p.clicked)
  from people p
  where s.tenant_id = p.tenant_id and s.id = p.send_id
    and ((s.first_opened_at is null and p.opened is not null) or (s.first_clicked_at is null and p.clicked is not null))
  returning s.id::text as send_id, s.tenant_id, s.campaign_id, s.contact_id::text as contact_id, s.recipient,
    coalesce(s.first_opened_at = p.opened, false) as opened_now, p.opened,
    coalesce(s.first_clicked_at = p.clicked, false) as clicked_now, p.clicked, p.link_index, p.url
),
touched as (
  update contacts c set last_opened_at = greatest(c.last_opened_at, x.opened), last_clicked_at = greatest(c.last_clicked_at, x.clicked)
  from (
    select tenant_id, contact_id, max(at) filter (where kind = 'open') as opened, max(at) filter (where kind = 'click') as clicked
    from j where contact_id is not null and not machine group by tenant_id, contact_id
  ) x
  where c.tenant_id = x.tenant_id and c.id = x.contact_id
)
select * from marked where opened_now or clicked_now`;

/**
 * email.opened and email.clicked for the messages of one flush: one read of the endpoints that
 * want them, then their webhook.dispatch jobs in batches. The event id is fixed by the message
 * (evt_opened_<send>), so publishing again (a flush retried) adds nothing.
 */
async function publishFirsts(queue: Queue, tx: SqlClient, rows: FirstRow[]): Promise<void> {
  const endpoints = await tx.query<{ id: string; tenant_id: string; event_types: string[] }>(
    `select id, tenant_id, event_types from webhook_endpoints
     where tenant_id = any($1::text[]) and status = 'active' and (cardinality(event_types) = 0 or event_types && $2::text[])
     order by id`,
    [[...new Set(rows.map((r) => r.tenant_id))], [...ENGAGEMENT_EVENTS]],
  );
  if (endpoints.length === 0) return;
  const jobs = [];
  for (const r of rows) {
    const base = { send_id: r.send_id, campaign_id: r.campaign_id, contact_id: r.contact_id, recipient: r.recipient };
    const events: { type: string; id: string; data: Record<string, unknown> }[] = [];
    if (r.opened_now) events.push({ type: "email.opened", id: `evt_opened_${r.send_id}`, data: { ...base, opened_at: toIso(r.opened) } });
    if (r.clicked_now) {
      events.push({ type: "email.clicked", id: `evt_clicked_${r.send_id}`, data: { ...base, url: r.url, link_index: r.link_index, clicked_at: toIso(r.clicked) } });
    }
    for (const e of endpoints) {
      if (e.tenant_id !== r.tenant_id) continue;
      for (const ev of events) {
        if (e.event_types.length > 0 && !e.event_types.includes(ev.type)) continue;
        jobs.push({
          type: "webhook.dispatch",
          tenantId: r.tenant_id,
          payload: { tenant_id: r.tenant_id, endpoint_id: e.id, event_id: ev.id, event_type: ev.type, data: ev.data },
          idempotencyKey: `${e.id}:${ev.id}`,
        });
      }
    }
  }
  for (let i = 0; i < jobs.length; i += MAX_BATCH) await queue.enqueueMany(jobs.slice(i, i + MAX_BATCH), { tx });
}

const toIso = (d: Date | string | null): string | null => (d === null ? null : new Date(d).toISOString());

import type { z } from "zod";
import type { emailSend } from "../jobs/email-send";
import type { Clock, Logger, SqlClient } from "../ports";
import { PermanentError, RetryAfter, Snooze } from "../queue/errors";
import type { BatchResult } from "../queue/handler";
import type { Job } from "../queue/job";
import { type OutgoingMessage, ProviderError, type SendResult } from "./mailer";
import type { ProviderRouter } from "./provider-router";
import type { RateLimiter } from "./rate-limit";
import { type Rendered, type TemplateRenderer, TemplateNotFound } from "./renderer";
import type { Suppressions } from "./suppressions";
import type { UnsubscribeLinks } from "./unsubscribe";

export type EmailPayload = z.infer<typeof emailSend.payload>;

export interface SendEmailDeps {
  sql: SqlClient;
  renderer: TemplateRenderer;
  providers: ProviderRouter;
  suppressions: Suppressions;
  unsubscribe: UnsubscribeLinks;
  clock: Clock;
  logger: Logger;
  /** Used when the tenant has no from address of its own. */
  defaultFrom: string;
  /** Per provider and per tenant; over the limit a send waits (RetryAfter), never fails. */
  rateLimiter?: RateLimiter;
  limits?: { providerPerSecond?: number; tenantPerSecond?: number };
}

/** How long a send of a paused campaign waits before it looks again. */
const PAUSED_SNOOZE_MS = 30_000;

interface TenantSettings {
  provider?: string;
  from_email?: string;
  rate_per_second?: number;
}

interface LedgerRow {
  id: string;
  idempotency_key: string;
  status: "sending" | "sent" | "skipped" | "failed";
  provider_message_id: string | null;
}

/**
 * The ledger key of one message: the campaign and contact for campaign mail (so the same
 * contact never gets a campaign twice, whatever happens to jobs), else the job.
 */
export const sendKey = (job: Job<EmailPayload>): string =>
  job.payload.campaign_id ? `camp:${job.payload.campaign_id}:${job.payload.recipient.toLowerCase()}` : `job:${job.id}`;

/**
 * email.send, for a batch of jobs at once (one job is a batch of one), following the source
 * document's steps: render, check suppressions, pick the provider, send, record. Each step is
 * one statement or one provider call for the whole batch. Exactly-once effects come from the
 * send ledger (email_sends, unique per message key) and the provider's idempotency key: a run
 * repeated after a crash finds the message sent, or sends it again under the same key, which
 * the provider deduplicates.
 */
export async function sendEmails(jobs: readonly Job<EmailPayload>[], deps: SendEmailDeps, signal?: AbortSignal): Promise<BatchResult[]> {
  const results = new Map<string, BatchResult>();
  const done = (job: Job<EmailPayload>, r: BatchResult) => results.set(job.id, r);

  // 1. Campaign state: paused sends wait without spending attempts; cancelled ones are skipped.
  const campaignIds = [...new Set(jobs.flatMap((j) => (j.payload.campaign_id ? [j.payload.campaign_id] : [])))];
  const campaigns = new Map(
    (
      await deps.sql.query<{ id: string; status: string }>("select id, status from campaigns where id = any($1::text[])", [campaignIds])
    ).map((c) => [c.id, c.status]),
  );
  let live: Job<EmailPayload>[] = [];
  const cancelled: Job<EmailPayload>[] = [];
  for (const job of jobs) {
    const status = job.payload.campaign_id ? campaigns.get(job.payload.campaign_id) : undefined;
    if (status === "paused") done(job, { ok: false, error: new Snooze(PAUSED_SNOOZE_MS, "campaign paused") });
    else if (status === "cancelled") cancelled.push(job);
    else live.push(job);
  }

  // 2. The ledger: one row a message. Rows already sent or skipped mean a repeated run: no-op.
  const ledger = await claimLedger(deps.sql, jobs.filter((j) => !results.has(j.id)));
  await markSkipped(deps, cancelled, ledger, "campaign cancelled");
  for (const job of cancelled) done(job, { ok: true, result: { status: "skipped", reason: "campaign cancelled" } });
  const fresh: Job<EmailPayload>[] = [];
  for (const job of live) {
    const row = ledger.get(sendKey(job))!;
    if (row.status === "sent" || row.status === "skipped") {
      done(job, { ok: true, result: { status: row.status, message_id: row.provider_message_id, repeated: true } });
    } else fresh.push(job);
  }
  live = fresh;

  // 3. Suppressions (tenant and global), in one query per tenant.
  const byTenant = groupBy(live, (j) => j.tenantId);
  const suppressed: Job<EmailPayload>[] = [];
  for (const [tenantId, list] of byTenant) {
    const blocked = await deps.suppressions.suppressed(tenantId, list.map((j) => j.payload.recipient));
    for (const job of list) if (blocked.has(job.payload.recipient.toLowerCase())) suppressed.push(job);
  }
  await markSkipped(deps, suppressed, ledger, "suppressed");
  for (const job of suppressed) done(job, { ok: true, result: { status: "skipped", reason: "suppressed" } });
  live = live.filter((j) => !results.has(j.id));

  // 4. Render each message (campaign templates are compiled once per process).
  const settings = await tenantSettings(deps.sql, [...new Set(live.map((j) => j.tenantId))]);
  const messages = new Map<string, OutgoingMessage>();
  for (const job of live) {
    try {
      const rendered: Rendered = await deps.renderer.render(job.tenantId, job.payload.template_id, {
        ...job.payload.variables,
        ...(job.payload.campaign_id
          ? { unsubscribe_url: await deps.unsubscribe.url({ tenantId: job.tenantId, email: job.payload.recipient, campaignId: job.payload.campaign_id }) }
          : {}),
      });
      messages.set(job.id, {
        tenantId: job.tenantId,
        from: settings.get(job.tenantId)?.from_email ?? deps.defaultFrom,
        to: job.payload.recipient,
        ...rendered,
        headers: job.payload.campaign_id
          ? await deps.unsubscribe.headers({ tenantId: job.tenantId, email: job.payload.recipient, campaignId: job.payload.campaign_id })
          : undefined,
        idempotencyKey: sendKey(job),
        tags: job.payload.campaign_id ? { campaign_id: job.payload.campaign_id } : undefined,
      });
    } catch (err) {
      done(job, { ok: false, error: err instanceof TemplateNotFound ? new PermanentError(err.message, { cause: err }) : err });
    }
  }
  live = live.filter((j) => !results.has(j.id));

  // 5. Send, per tenant (its provider preference and rate), through the batch endpoint when there is one.
  const sent: { job: Job<EmailPayload>; provider: string; result: SendResult }[] = [];
  const failedForGood: { job: Job<EmailPayload>; detail: string }[] = [];
  for (const [tenantId, list] of groupBy(live, (j) => j.tenantId)) {
    const tenant = settings.get(tenantId);
    const wait = await rateLimited(deps, tenantId, tenant, list.length);
    if (wait > 0) {
      for (const job of list) done(job, { ok: false, error: new RetryAfter(wait, "rate limited: the send waits") });
      continue;
    }
    try {
      const { mailer, value } = await deps.providers.withFailover(tenant?.provider, async (mailer) => {
        const batch = list.map((j) => messages.get(j.id)!);
        if (mailer.sendBatch && batch.length > 1) {
          const out: SendResult[] = [];
          for (let i = 0; i < batch.length; i += mailer.maxBatch ?? 100) {
            out.push(...(await mailer.sendBatch(batch.slice(i, i + (mailer.maxBatch ?? 100)), signal)));
          }
          return out;
        }
        const out: SendResult[] = [];
        for (const m of batch) out.push(await mailer.send(m, signal));
        return out;
      });
      list.forEach((job, i) => sent.push({ job, provider: mailer.name, result: value[i]! }));
    } catch (err) {
      for (const job of list) {
        const error = classify(err);
        if (error instanceof PermanentError || job.attempt >= job.maxAttempts) {
          failedForGood.push({ job, detail: error instanceof Error ? error.message : String(error) });
        }
        done(job, { ok: false, error });
      }
    }
  }

  // 6. Record: ledger, analytics events and campaign counters, one statement each.
  await recordSent(deps, sent, ledger);
  await recordFailed(deps, failedForGood, ledger);
  for (const { job, provider, result } of sent) {
    done(job, { ok: true, result: { status: "sent", provider, message_id: result.providerMessageId } });
  }
  return jobs.map((j) => results.get(j.id) ?? { ok: false, error: new Error("email.send produced no outcome") });
}

/** Turns a provider's failure into the engine's control flow. */
function classify(err: unknown): unknown {
  if (!(err instanceof ProviderError)) return err;
  if (err.failure === "rejected" || err.failure === "auth") return new PermanentError(err.message, { cause: err });
  if (err.retryAfterMs !== undefined) return new RetryAfter(err.retryAfterMs, err.message, { cause: err });
  return err;
}

function groupBy<T>(items: readonly T[], key: (t: T) => string): Map<string, T[]> {
  const out = new Map<string, T[]>();
  for (const item of items) {
    const k = key(item);
    let list = out.get(k);
    if (!list) out.set(k, (list = []));
    list.push(item);
  }
  return out;
}

async function tenantSettings(sql: SqlClient, tenantIds: string[]): Promise<Map<string, TenantSettings>> {
  if (tenantIds.length === 0) return new Map();
  const rows = await sql.query<{ id: string; settings: TenantSettings }>("select id, settings from tenants where id = any($1::text[])", [tenantIds]);
  return new Map(rows.map((r) => [r.id, r.settings ?? {}]));
}

async function rateLimited(deps: SendEmailDeps, tenantId: string, tenant: TenantSettings | undefined, count: number): Promise<number> {
  if (!deps.rateLimiter) return 0;
  const checks: [string, number | undefined][] = [
    [`tenant:${tenantId}`, tenant?.rate_per_second ?? deps.limits?.tenantPerSecond],
    [`provider:${tenant?.provider ?? "default"}`, deps.limits?.providerPerSecond],
  ];
  let wait = 0;
  for (const [key, perSecond] of checks) {
    if (!perSecond) continue;
    // A whole batch may go at once; the next waits its share of the rate.
    const r = await deps.rateLimiter.take(key, { ratePerSecond: perSecond, burst: Math.max(count, Math.ceil(perSecond)) }, count);
    if (!r.allowed) wait = Math.max(wait, r.retryAfterMs);
  }
  return wait;
}

/** Inserts a ledger row per message (status sending) where none exists; returns every row by key. */
async function claimLedger(sql: SqlClient, jobs: readonly Job<EmailPayload>[]): Promise<Map<string, LedgerRow>> {
  if (jobs.length === 0) return new Map();
  const keys = jobs.map(sendKey);
  await sql.query(
    `insert into email_sends (idempotency_key, tenant_id, job_id, campaign_id, contact_id, recipient, status)
     select u.*, 'sending' from unnest($1::text[], $2::text[], $3::bigint[], $4::text[], $5::bigint[], $6::text[]) as u
     on conflict (idempotency_key) do nothing`,
    [
      keys,
      jobs.map((j) => j.tenantId),
      jobs.map((j) => j.id),
      jobs.map((j) => j.payload.campaign_id ?? null),
      jobs.map((j) => contactIdOf(j)),
      jobs.map((j) => j.payload.recipient),
    ],
  );
  const rows = await sql.query<LedgerRow>(
    "select id::text as id, idempotency_key, status, provider_message_id from email_sends where idempotency_key = any($1::text[])",
    [keys],
  );
  return new Map(rows.map((r) => [r.idempotency_key, r]));
}

const contactIdOf = (job: Job<EmailPayload>): string | null => {
  const v = job.payload.variables.contact_id;
  return typeof v === "number" || (typeof v === "string" && /^\d+$/.test(v)) ? String(v) : null;
};

/**
 * Moves ledger rows to a final status and adds the campaign counters and events for the rows
 * that really moved (a repeated run moves nothing, so nothing is counted twice); then marks
 * campaigns whose every send has ended as sent.
 */
async function finalize(
  deps: SendEmailDeps,
  rows: { id: string; status: "sent" | "skipped" | "failed"; provider?: string; messageId?: string; detail?: string }[],
): Promise<void> {
  if (rows.length === 0) return;
  await deps.sql.query(
    `with prev as (
       -- The statuses before this statement (its snapshot). Not FOR UPDATE: rows locked by one
       -- sub-statement are invisible to another's update in the same statement.
       select id, status as old from email_sends where id = any($1::bigint[])
     ),
     moved as (
       update email_sends s set status = u.status, provider = coalesce(u.provider, s.provider),
         provider_message_id = coalesce(u.message_id, s.provider_message_id), detail = u.detail,
         sent_at = case when u.status = 'sent' then $6::timestamptz else s.sent_at end
       from unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[]) as u(id, status, provider, message_id, detail)
       where s.id = u.id and s.status in ('sending', 'failed') and s.status <> u.status
       returning s.id, s.tenant_id, s.campaign_id, s.status, s.detail
     ),
     events as (
       insert into email_events (tenant_id, campaign_id, send_id, type, data)
       select tenant_id, campaign_id, id, status, jsonb_build_object('detail', detail) from moved
     ),
     deltas as (
       -- A send retried by hand out of 'failed' moves from the failed count to its new one.
       select m.campaign_id,
              count(*) filter (where m.status = 'sent') as sent,
              count(*) filter (where m.status = 'skipped') as skipped,
              count(*) filter (where m.status = 'failed') - count(*) filter (where p.old = 'failed') as failed
       from moved m join prev p using (id) where m.campaign_id is not null group by m.campaign_id
     )
     update campaigns c set
       sent = c.sent + d.sent, skipped = c.skipped + d.skipped, failed = c.failed + d.failed,
       status = case when c.status = 'sending' and c.fanout_done
                      and c.sent + c.skipped + c.failed + d.sent + d.skipped + d.failed >= c.recipients
                     then 'sent' else c.status end,
       finished_at = case when c.status = 'sending' and c.fanout_done
                      and c.sent + c.skipped + c.failed + d.sent + d.skipped + d.failed >= c.recipients
                     then $6::timestamptz else c.finished_at end
     from deltas d where c.id = d.campaign_id`,
    [
      rows.map((r) => r.id),
      rows.map((r) => r.status),
      rows.map((r) => r.provider ?? null),
      rows.map((r) => r.messageId ?? null),
      rows.map((r) => r.detail ?? null),
      deps.clock.now().toISOString(),
    ],
  );
}

async function markSkipped(deps: SendEmailDeps, jobs: readonly Job<EmailPayload>[], ledger: Map<string, LedgerRow>, reason: string) {
  await finalize(
    deps,
    jobs.map((j) => ({ id: ledger.get(sendKey(j))!.id, status: "skipped" as const, detail: reason })),
  );
}

async function recordSent(deps: SendEmailDeps, sent: { job: Job<EmailPayload>; provider: string; result: SendResult }[], ledger: Map<string, LedgerRow>) {
  await finalize(
    deps,
    sent.map(({ job, provider, result }) => ({
      id: ledger.get(sendKey(job))!.id,
      status: "sent" as const,
      provider,
      messageId: result.providerMessageId,
    })),
  );
}

async function recordFailed(deps: SendEmailDeps, failed: { job: Job<EmailPayload>; detail: string }[], ledger: Map<string, LedgerRow>) {
  await finalize(
    deps,
    failed.map(({ job, detail }) => ({ id: ledger.get(sendKey(job))!.id, status: "failed" as const, detail: detail.slice(0, 500) })),
  );
}

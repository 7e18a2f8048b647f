import type { z } from "zod";
import type { emailSend } from "../jobs/email-send";
import type { Clock, Logger, SqlClient } from "../ports";
import { PermanentError, RetryAfter, Snooze } from "../queue/errors";
import type { BatchResult } from "../queue/handler";
import type { Job } from "../queue/job";
import type { Queue } from "../queue/queue";
import { publishCampaignEnds } from "./campaign-events";
import { recordDeliveryFeedback } from "./delivery-feedback";
import { type HandoverHooks, type Mailer, type OutgoingMessage, ProviderError, type SendResult } from "./mailer";
import type { ProviderRouter } from "./provider-router";
import type { RateLimiter } from "./rate-limit";
import { type Rendered, type TemplateRenderer, TemplateNotFound } from "./renderer";
import type { Suppressions } from "./suppressions";
import { oneClickHeaders, type UnsubscribeLinks } from "./unsubscribe";
import { trackLinks, type TrackingChoice } from "./link-tracking";
import type { TrackingTokens } from "./tracking-tokens";

export type EmailPayload = z.infer<typeof emailSend.payload>;

export interface SendEmailDeps {
  sql: SqlClient;
  renderer: TemplateRenderer;
  providers: ProviderRouter;
  suppressions: Suppressions;
  unsubscribe: UnsubscribeLinks;
  /** Seals campaign mail's tracked links and open pixel; without it nothing is rewritten. */
  tracking?: TrackingTokens;
  clock: Clock;
  logger: Logger;
  /** Used when the tenant has no from address of its own. */
  defaultFrom: string;
  /** Per provider and per tenant; over the limit a send waits (a Snooze: no attempt spent), never fails. */
  rateLimiter?: RateLimiter;
  limits?: { providerPerSecond?: number; tenantPerSecond?: number };
  /** With a queue, a campaign whose last send ends here publishes campaign.sent to its tenant's webhooks. */
  queue?: Queue;
  /** Where providers without an idempotency key (SMTP) note a message's handover; see HandoverHooks. */
  handover?: HandoverJournal;
}

/**
 * Writes a message's handover instants to its ledger row. Each call must have put its statement
 * on the way to the database before it returns (the process may die in the next instant); the
 * promise settles when it is written, and never rejects (a note that fails is logged).
 */
export interface HandoverJournal {
  handedOver(sendId: string, providerMessageId: string): Promise<void>;
  notTaken(sendId: string): Promise<void>;
}

/** How long a send of a paused campaign waits before it looks again. */
const PAUSED_SNOOZE_MS = 30_000;

interface TenantSettings {
  provider?: string;
  from_email?: string;
  rate_per_second?: number;
  /** Engagement tracking of the tenant's campaigns, unless a campaign says otherwise. Defaults: opens off (privacy), clicks on. */
  tracking?: { opens?: unknown; clicks?: unknown };
}

/** A campaign's tracking columns; null takes the tenant's setting. */
interface CampaignTracking {
  track_opens: boolean | null;
  track_clicks: boolean | null;
}

/** What a campaign's mail carries: the campaign's choice, else the tenant's, else the defaults. */
function trackingChoice(campaign: CampaignTracking | undefined, tenant: TenantSettings | undefined): TrackingChoice {
  const t = tenant?.tracking;
  const opens = campaign?.track_opens ?? (typeof t?.opens === "boolean" ? t.opens : false);
  const clicks = campaign?.track_clicks ?? (typeof t?.clicks === "boolean" ? t.clicks : true);
  return { opens, clicks };
}

interface LedgerRow {
  id: string;
  idempotency_key: string;
  status: "sending" | "sent" | "skipped" | "failed";
  provider_message_id: string | null;
  /** Set while the message is part of a batch request that may have reached the provider. */
  batch_key: string | null;
  /** Set once the message went to its provider alone (and may have arrived): it then only ever goes alone. */
  alone_at: Date | null;
  /** Set once the message's last byte went to its relay (SMTP): it is there, whatever the sender's fate. */
  handed_over_at: Date | null;
  provider: string | null;
}

/**
 * The ledger key of one message: the campaign and contact for campaign mail (so the same
 * contact never gets a campaign twice, whatever happens to jobs), else the job.
 */
export const sendKey = (job: Job<EmailPayload>): string =>
  job.payload.campaign_id ? `camp:${job.payload.campaign_id}:${job.payload.recipient.toLowerCase()}` : `job:${job.id}`;

/** Keys are unique within a tenant (the ledger's unique index is on both): maps key on both too. */
const tenantScoped = (tenantId: string, key: string): string => `${tenantId}\u0000${key}`;
const ledgerKey = (job: Job<EmailPayload>): string => tenantScoped(job.tenantId, sendKey(job));

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
  //    A campaign is looked up within the job's own tenant: a job naming another tenant's
  //    campaign finds none and fails for good, before it touches the ledger.
  const named = jobs.filter((j) => j.payload.campaign_id);
  const campaignRows = await deps.sql.query<{ id: string; tenant_id: string; status: string; unpublished: boolean } & CampaignTracking>(
    `select c.id, c.tenant_id, c.status, (c.status in ('sent', 'cancelled') and c.end_event_at is null) as unpublished,
       c.track_opens, c.track_clicks
     from campaigns c join (select distinct * from unnest($1::text[], $2::text[]) as u(tenant_id, id)) u using (tenant_id, id)`,
    [named.map((j) => j.tenantId), named.map((j) => j.payload.campaign_id!)],
  );
  const campaigns = new Map(campaignRows.map((c) => [tenantScoped(c.tenant_id, c.id), c.status]));
  const tracking = new Map(campaignRows.map((c) => [tenantScoped(c.tenant_id, c.id), c]));
  // Campaigns whose end is still to be published: seen here (a run after a crash that came
  // between the end and its publication), or ended by this batch's records below.
  const ended = new Set(campaignRows.filter((c) => c.unpublished).map((c) => c.id));
  const noteEnded = (ids: string[]) => ids.forEach((id) => ended.add(id));
  let live: Job<EmailPayload>[] = [];
  let cancelled: Job<EmailPayload>[] = [];
  for (const job of jobs) {
    const status = job.payload.campaign_id ? campaigns.get(tenantScoped(job.tenantId, job.payload.campaign_id)) : undefined;
    if (job.payload.campaign_id && status === undefined) {
      done(job, { ok: false, error: new PermanentError(`tenant ${job.tenantId} has no campaign ${job.payload.campaign_id}`) });
    } else if (status === "paused") done(job, { ok: false, error: new Snooze(PAUSED_SNOOZE_MS, "campaign paused") });
    else if (status === "cancelled") cancelled.push(job);
    else live.push(job);
  }

  // 2. The ledger: one row a message. Rows already sent or skipped mean a repeated run: no-op.
  //    A row still 'sending' whose message was handed over to its relay (SMTP's dot left before
  //    the sender died) is there: recorded sent, not sent again, even if its campaign was since
  //    cancelled or its recipient suppressed.
  const ledger = await claimLedger(deps.sql, [...live, ...cancelled]);
  const handedOver = [...live, ...cancelled].filter((j) => {
    const row = ledger.get(ledgerKey(j))!;
    return row.status === "sending" && row.handed_over_at !== null;
  });
  if (handedOver.length > 0) {
    const rows = handedOver.map((j) => ledger.get(ledgerKey(j))!);
    noteEnded(await finalize(deps, rows.map((r) => ({ ...sentRow(r, r.provider ?? "smtp", { providerMessageId: r.provider_message_id ?? "" }), detail: "handed over to the relay; its reply was not heard" }))));
    handedOver.forEach((job, i) => done(job, { ok: true, result: { status: "sent", provider: rows[i]!.provider, message_id: rows[i]!.provider_message_id, handed_over: true } }));
    live = live.filter((j) => !results.has(j.id));
    cancelled = cancelled.filter((j) => !results.has(j.id));
  }
  noteEnded(await markSkipped(deps, cancelled, ledger, "campaign cancelled"));
  for (const job of cancelled) done(job, { ok: true, result: { status: "skipped", reason: "campaign cancelled" } });
  const fresh: Job<EmailPayload>[] = [];
  for (const job of live) {
    const row = ledger.get(ledgerKey(job))!;
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
  noteEnded(await markSkipped(deps, suppressed, ledger, "suppressed"));
  for (const job of suppressed) done(job, { ok: true, result: { status: "skipped", reason: "suppressed" } });
  live = live.filter((j) => !results.has(j.id));

  // 4. A message whose batch request may have reached the provider before a crash is sent
  //    again only inside that same batch (same members, same order: the same Idempotency-Key).
  const settings = await tenantSettings(deps.sql, [...new Set(live.map((j) => j.tenantId))]);
  const inFlight = live.filter((j) => ledger.get(ledgerKey(j))!.batch_key !== null);
  for (const batchKey of new Set(inFlight.map((j) => ledger.get(ledgerKey(j))!.batch_key!))) {
    const mine = inFlight.filter((j) => ledger.get(ledgerKey(j))!.batch_key === batchKey);
    try {
      const members = await replayBatch(deps, batchKey, settings, tracking);
      // Every member is recorded, not only the jobs in hand: the others then find their
      // message sent and make no request of their own.
      noteEnded(await finalize(deps, members.map((m) => ({ id: m.rowId, status: "sent" as const, provider: m.provider, messageId: m.result.providerMessageId }))));
      for (const job of mine) {
        const m = members.find((x) => x.jobId === job.id);
        done(job, m ? { ok: true, result: { status: "sent", provider: m.provider, message_id: m.result.providerMessageId, replayed: true } } : { ok: false, error: new Error(`batch ${batchKey} did not include job ${job.id}`) });
      }
    } catch (err) {
      for (const job of mine) done(job, { ok: false, error: classify(err) });
    }
  }
  live = live.filter((j) => !results.has(j.id));

  // 5. Render each message (campaign templates are compiled once per process).
  const messages = new Map<string, OutgoingMessage>();
  for (const job of live) {
    try {
      messages.set(job.id, await renderMessage(deps, job, settings, ledger.get(ledgerKey(job))!.id, tracking));
    } catch (err) {
      done(job, { ok: false, error: err instanceof TemplateNotFound ? new PermanentError(err.message, { cause: err }) : err });
    }
  }
  live = live.filter((j) => !results.has(j.id));

  // 6. Send, per tenant (its provider preference and rate). A message's provider identity is
  //    fixed by the first request that may have carried it: a message that went out alone (and
  //    may have arrived) goes again only alone, to the same provider, under its own key; the
  //    others may be grouped into batch requests, each recorded before it leaves. Every request
  //    is recorded as soon as it is answered, so a retry skips what already went out.
  const sending: SendingDeps = {
    ...deps,
    record: async (rows) => noteEnded(await finalize(deps, rows)),
    done: (job, provider, result) => done(job, { ok: true, result: { status: "sent", provider, message_id: result.providerMessageId } }),
    failed: async (job, err) => {
      const error = classify(err);
      const row = ledger.get(ledgerKey(job))!;
      if (error instanceof PermanentError || job.attempt >= job.maxAttempts) {
        const detail = (error instanceof Error ? error.message : String(error)).slice(0, 500);
        noteEnded(await finalize(deps, [{ id: row.id, status: "failed", detail }]));
      }
      // The receiver refused this recipient for good (a hard bounce, a full mailbox, a policy
      // block): recorded as a bounce report is, on the same path, which suppresses a dead
      // address everywhere and tells the tenant (email.bounced). After the ledger's 'failed':
      // a failure here fails the batch, and its retry finds the row failed and records again.
      const bounce = err instanceof ProviderError ? err.bounce : undefined;
      if (bounce && !bounce.retry && bounce.category !== "delivered") {
        await recordDeliveryFeedback(deps, {
          provider: err instanceof ProviderError ? err.provider : "smtp",
          reportId: `reply_${row.id}`,
          send: { sendId: row.id, tenantId: job.tenantId },
          classification: bounce,
          detail: { reply: (err as Error).message.slice(0, 1_000) },
          occurredAt: deps.clock.now().toISOString(),
        });
      }
      done(job, { ok: false, error });
    },
    rowOf: (job) => ledger.get(ledgerKey(job))!,
    messageOf: (job) => messages.get(job.id)!,
  };
  for (const [tenantId, list] of groupBy(live, (j) => j.tenantId)) {
    const tenant = settings.get(tenantId);
    const wait = await rateLimited(deps, tenantId, tenant, list.length);
    if (wait > 0) {
      // A snooze, not a retry: waiting for the limit must not use up the job's attempts.
      for (const job of list) done(job, { ok: false, error: new Snooze(wait, "rate limited: the send waits") });
      continue;
    }
    const pinned = list.filter((j) => sending.rowOf(j).alone_at !== null);
    const free = list.filter((j) => sending.rowOf(j).alone_at === null);
    await Promise.all([sendPinned(sending, pinned, signal), sendFree(sending, tenant?.provider, free, signal)]);
  }

  // 7. campaign.sent for the campaigns that ended. A failure here fails the batch: its retry
  //    finds every message recorded (nothing is sent again) and the end unpublished, and publishes.
  if (deps.queue) await publishCampaignEnds(deps.queue, deps.sql, [...ended]);
  return jobs.map((j) => results.get(j.id) ?? { ok: false, error: new Error("email.send produced no outcome") });
}

async function renderMessage(
  deps: SendEmailDeps,
  job: Job<EmailPayload>,
  settings: Map<string, TenantSettings>,
  sendId: string,
  tracking: Map<string, CampaignTracking>,
): Promise<OutgoingMessage> {
  const campaignId = job.payload.campaign_id;
  // One token a message, for the body's link and the List-Unsubscribe header alike.
  const unsubscribeUrl = campaignId ? await deps.unsubscribe.url({ tenantId: job.tenantId, email: job.payload.recipient, campaignId }) : undefined;
  let rendered: Rendered = await deps.renderer.render(job.tenantId, job.payload.template_id, {
    ...job.payload.variables,
    ...(unsubscribeUrl ? { unsubscribe_url: unsubscribeUrl } : {}),
  });
  // Campaign mail only: transactional mail (receipts, the platform's notices) is never tracked.
  // The tokens depend on the message alone (send id, link, URL), so a re-rendered message (a
  // retry, a replayed batch) is the same byte for byte.
  const tokens = deps.tracking;
  if (campaignId && tokens) {
    const claim = { tenantId: job.tenantId, campaignId, sendId };
    rendered = await trackLinks(
      rendered,
      trackingChoice(tracking.get(tenantScoped(job.tenantId, campaignId)), settings.get(job.tenantId)),
      {
        click: (linkIndex, linkCount, url) => tokens.clickUrl({ ...claim, linkIndex, linkCount, url }),
        open: () => tokens.openUrl(claim),
      },
      { exact: unsubscribeUrl ? [unsubscribeUrl] : [], prefixes: [tokens.ownPrefix] },
    );
  }
  return {
    tenantId: job.tenantId,
    from: settings.get(job.tenantId)?.from_email ?? deps.defaultFrom,
    to: job.payload.recipient,
    ...rendered,
    headers: unsubscribeUrl ? oneClickHeaders(unsubscribeUrl) : undefined,
    idempotencyKey: sendKey(job),
    tags: campaignId ? { campaign_id: campaignId } : undefined,
  };
}

interface SendingDeps extends SendEmailDeps {
  /** Moves ledger rows to their final status (with counters and events) right after their request. */
  record(rows: FinalRow[]): Promise<void>;
  done(job: Job<EmailPayload>, provider: string, result: SendResult): void;
  /** A request that failed: the job's outcome, and the ledger's too when it fails for good. */
  failed(job: Job<EmailPayload>, err: unknown): Promise<void>;
  rowOf(job: Job<EmailPayload>): LedgerRow;
  messageOf(job: Job<EmailPayload>): OutgoingMessage;
}

/** Single requests a mailer without a concurrency of its own takes at once. */
const DEFAULT_CONCURRENCY = 8;

/**
 * Messages that went out alone before (and may have arrived): each alone again, to the provider
 * that had it, under its own key, which that provider deduplicates. No failover: another
 * provider would not know the key and would deliver a second copy.
 */
async function sendPinned(deps: SendingDeps, jobs: readonly Job<EmailPayload>[], signal?: AbortSignal): Promise<void> {
  await eachConcurrently(jobs, DEFAULT_CONCURRENCY, async (job) => {
    const provider = deps.rowOf(job).provider;
    const mailer = provider ? deps.providers.byName(provider) : undefined;
    if (!mailer) {
      return deps.failed(job, new PermanentError(`the message went to ${provider ?? "an unknown provider"}, which is not configured here; sending it elsewhere could deliver it twice`));
    }
    await sendAlone(deps, mailer, job, signal);
  });
}

/**
 * Messages no request has carried yet: through the tenant's provider, failing over to the next
 * while the failure proves the request was not taken (an answer such as a 5xx, a refused
 * connection). A failure that leaves it open (a timeout, a dropped connection) stops there: the
 * requests are recorded, and the retry sends them again exactly as they went.
 */
async function sendFree(deps: SendingDeps, preferred: string | undefined, jobs: readonly Job<EmailPayload>[], signal?: AbortSignal): Promise<void> {
  if (jobs.length === 0) return;
  let pending = [...jobs];
  const failures = new Map<Job<EmailPayload>, unknown>();
  const refused = new Map<Job<EmailPayload>, unknown>();
  try {
    await deps.providers.withFailover(preferred, async (mailer) => {
      // Each message's own failure from this provider: one recipient's 5.1.1 must not become
      // another's outcome (a job whose relay said 451 would be suppressed as a hard bounce).
      failures.clear();
      if (mailer.sendBatch && pending.length > 1) {
        const size = mailer.maxBatch ?? 100;
        while (pending.length > 0) {
          const chunk = pending.slice(0, size);
          await ledgerWrite(() => recordBatch(deps.sql, mailer.name, chunk.map((j) => deps.rowOf(j).id)));
          const results = await mailer.sendBatch(chunk.map(deps.messageOf), signal);
          await ledgerWrite(() => deps.record(chunk.map((j, i) => sentRow(deps.rowOf(j), mailer.name, results[i]!))));
          chunk.forEach((j, i) => deps.done(j, mailer.name, results[i]!));
          pending = pending.slice(chunk.length);
        }
        return;
      }
      await ledgerWrite(() => recordAlone(deps.sql, mailer.name, pending.map((j) => deps.rowOf(j).id)));
      const sent = new Set<Job<EmailPayload>>();
      await eachConcurrently(pending, mailer.concurrency ?? DEFAULT_CONCURRENCY, async (job) => {
        let result: SendResult;
        const handover = handoverOf(deps, deps.rowOf(job));
        try {
          result = await mailer.send(deps.messageOf(job), signal, handover.hooks);
        } catch (err) {
          await handover.written();
          failures.set(job, err);
          return;
        }
        await ledgerWrite(() => deps.record([sentRow(deps.rowOf(job), mailer.name, result)]));
        deps.done(job, mailer.name, result);
        sent.add(job);
      });
      // A recipient the receiver refused for good is settled with its own reply, not failed
      // over: another provider would meet the same mailbox.
      for (const job of pending) if (isFinalRefusal(failures.get(job))) refused.set(job, failures.get(job));
      pending = pending.filter((j) => !sent.has(j) && !refused.has(j));
      const left = pending.map((j) => failures.get(j));
      if (left.length === 0) return;
      // Fail over only when no request of these may have been taken.
      throw left.find(mayHaveLeft) ?? left[0];
    });
  } catch (err) {
    // The ledger could not be written: the whole batch fails, and its retry finds what went out.
    if (err instanceof LedgerWriteError) throw err.cause;
    for (const job of pending) await deps.failed(job, failures.get(job) ?? err);
  }
  for (const [job, err] of refused) await deps.failed(job, err);
}

/** A provider's failure that carries the receiver's final verdict on the recipient (a bounce that is not retried). */
const isFinalRefusal = (err: unknown): boolean => err instanceof ProviderError && err.bounce !== undefined && !err.bounce.retry;

/** One message alone, recorded as soon as the provider answers. */
async function sendAlone(deps: SendingDeps, mailer: Mailer, job: Job<EmailPayload>, signal?: AbortSignal): Promise<void> {
  let result: SendResult;
  const handover = handoverOf(deps, deps.rowOf(job));
  try {
    result = await mailer.send(deps.messageOf(job), signal, handover.hooks);
  } catch (err) {
    // A handover cleared for a refusal must be written before the failure is: the retry reads it.
    await handover.written();
    return deps.failed(job, err);
  }
  await deps.record([sentRow(deps.rowOf(job), mailer.name, result)]);
  deps.done(job, mailer.name, result);
}

/** The hooks that note one message's handover in its ledger row, and a wait for the last note. */
function handoverOf(deps: SendEmailDeps, row: LedgerRow): { hooks?: HandoverHooks; written(): Promise<void> } {
  const journal = deps.handover;
  if (!journal) return { written: async () => {} };
  let last: Promise<void> = Promise.resolve();
  return {
    hooks: {
      handedOver: (messageId) => void (last = journal.handedOver(row.id, messageId)),
      notTaken: () => void (last = journal.notTaken(row.id)),
    },
    written: () => last,
  };
}

/** A failed write to the ledger, told apart from a provider's failure on the way out of a send. */
class LedgerWriteError extends Error {
  override name = "LedgerWriteError";
}

async function ledgerWrite<T>(write: () => Promise<T>): Promise<T> {
  try {
    return await write();
  } catch (err) {
    throw new LedgerWriteError("the send ledger could not be written", { cause: err });
  }
}

const sentRow = (row: LedgerRow, provider: string, result: SendResult): FinalRow => ({
  id: row.id,
  status: "sent",
  provider,
  messageId: result.providerMessageId,
});

/** A provider failure that does not prove the request was refused: it may have been delivered. */
const mayHaveLeft = (err: unknown): boolean => !(err instanceof ProviderError) || err.mayHaveLeft;

/**
 * Runs `run` over the items, `concurrency` at a time. After a failure no new item starts, the
 * running ones end, then the first failure is thrown: nothing goes on after the caller is told.
 */
async function eachConcurrently<T>(items: readonly T[], concurrency: number, run: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  let failure: { err: unknown } | undefined;
  const lanes = Array.from({ length: Math.min(Math.max(1, concurrency), items.length) }, async () => {
    while (next < items.length && !failure) {
      try {
        await run(items[next++]!);
      } catch (err) {
        failure ??= { err };
      }
    }
  });
  await Promise.all(lanes);
  if (failure) throw failure.err;
}

/**
 * Notes that these ledger rows go out alone, each under its own key, to this provider, before
 * the requests leave: from then on they are never put into a batch (whose key would be new to
 * the provider) nor sent to another provider.
 */
async function recordAlone(sql: SqlClient, provider: string, ids: string[]): Promise<void> {
  await sql.query(`update email_sends set alone_at = coalesce(alone_at, now()), provider = $1, batch_key = null, batch_position = null
     where id = any($2::bigint[])`, [provider, ids]);
}

/** Notes which ledger rows go out together in one provider request, before it goes out. */
async function recordBatch(sql: SqlClient, provider: string, ids: string[]): Promise<void> {
  await sql.query(
    `update email_sends s set batch_key = $1, batch_position = u.pos - 1, provider = $2
     from unnest($3::bigint[]) with ordinality as u(id, pos) where s.id = u.id`,
    [crypto.randomUUID(), provider, ids],
  );
}

/**
 * Sends a recorded batch again exactly as it first went (its members' jobs re-rendered in the
 * same order, to the same provider), so the provider recognises the request and answers as
 * before; returns each member's result. Members whose ledger row is already final are in the
 * request too (the request must be identical) and are simply recorded again as sent.
 */
async function replayBatch(
  deps: SendEmailDeps,
  batchKey: string,
  settings: Map<string, TenantSettings>,
  tracking: Map<string, CampaignTracking>,
): Promise<{ rowId: string; jobId: string; provider: string; result: SendResult }[]> {
  const members = await deps.sql.query<{ id: string; job_id: string; provider: string; tenant_id: string; payload: EmailPayload }>(
    `select s.id::text, s.job_id::text, s.provider, j.tenant_id, j.payload
     from email_sends s left join jobs j on j.id = s.job_id and j.tenant_id = s.tenant_id
     where s.batch_key = $1 order by s.batch_position`,
    [batchKey],
  );
  if (members.some((m) => m.payload === null)) throw new PermanentError(`batch ${batchKey} cannot be rebuilt: a member's job is gone`);
  const mailer = deps.providers.byName(members[0]!.provider);
  if (!mailer?.sendBatch) throw new PermanentError(`batch ${batchKey} went to ${members[0]!.provider}, which is not configured here`);
  for (const tenant of new Set(members.map((m) => m.tenant_id))) {
    if (!settings.has(tenant)) for (const [k, v] of await tenantSettings(deps.sql, [tenant])) settings.set(k, v);
  }
  const missing = members.filter((m) => m.payload.campaign_id && !tracking.has(tenantScoped(m.tenant_id, m.payload.campaign_id)));
  if (missing.length > 0) {
    const rows = await deps.sql.query<{ id: string; tenant_id: string } & CampaignTracking>(
      `select c.id, c.tenant_id, c.track_opens, c.track_clicks
       from campaigns c join (select distinct * from unnest($1::text[], $2::text[]) as u(tenant_id, id)) u using (tenant_id, id)`,
      [missing.map((m) => m.tenant_id), missing.map((m) => m.payload.campaign_id!)],
    );
    for (const r of rows) tracking.set(tenantScoped(r.tenant_id, r.id), r);
  }
  const messages: OutgoingMessage[] = [];
  for (const m of members) {
    messages.push(await renderMessage(deps, { id: m.job_id, tenantId: m.tenant_id, payload: m.payload } as Job<EmailPayload>, settings, m.id, tracking));
  }
  const results = await mailer.sendBatch(messages);
  return members.map((m, i) => ({ rowId: m.id, jobId: m.job_id, provider: mailer.name, result: results[i]! }));
}

/** Turns a provider's failure into the engine's control flow. */
function classify(err: unknown): unknown {
  if (!(err instanceof ProviderError)) return err;
  // The receiver's own verdict on the recipient decides: a deferral (4yz) waits for the retry,
  // anything final spends no more attempts (another run would hear the same answer).
  if (err.bounce && !err.bounce.retry) {
    const verdict = err.bounce.suppress ? `${err.bounce.category}, address suppressed` : err.bounce.category;
    return new PermanentError(`${verdict}: ${err.message}`, { cause: err });
  }
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
  // contact_id comes from the job's variables: kept only when it names the tenant's own contact.
  await sql.query(
    `insert into email_sends (idempotency_key, tenant_id, job_id, campaign_id, contact_id, recipient, status)
     select u.key, u.tenant_id, u.job_id, u.campaign_id, c.id, u.recipient, 'sending'
     from unnest($1::text[], $2::text[], $3::bigint[], $4::text[], $5::bigint[], $6::text[])
       as u(key, tenant_id, job_id, campaign_id, contact_id, recipient)
     left join contacts c on c.tenant_id = u.tenant_id and c.id = u.contact_id
     on conflict (tenant_id, idempotency_key) do nothing`,
    [
      keys,
      jobs.map((j) => j.tenantId),
      jobs.map((j) => j.id),
      jobs.map((j) => j.payload.campaign_id ?? null),
      jobs.map((j) => contactIdOf(j)),
      jobs.map((j) => j.payload.recipient),
    ],
  );
  const rows = await sql.query<LedgerRow & { tenant_id: string }>(
    `select s.id::text as id, s.tenant_id, s.idempotency_key, s.status, s.provider_message_id, s.batch_key, s.alone_at,
       s.handed_over_at, s.provider
     from email_sends s join unnest($1::text[], $2::text[]) as u(tenant_id, key)
       on s.tenant_id = u.tenant_id and s.idempotency_key = u.key`,
    [jobs.map((j) => j.tenantId), keys],
  );
  return new Map(rows.map((r) => [tenantScoped(r.tenant_id, r.idempotency_key), r]));
}

const contactIdOf = (job: Job<EmailPayload>): string | null => {
  const v = job.payload.variables.contact_id;
  return typeof v === "number" || (typeof v === "string" && /^\d+$/.test(v)) ? String(v) : null;
};

/**
 * Moves ledger rows to a final status and adds the campaign counters and events for the rows
 * that really moved (a repeated run moves nothing, so nothing is counted twice); then marks
 * campaigns whose every send has ended as sent. Returns the campaigns that are now sent and
 * whose end is not published yet.
 */
interface FinalRow {
  id: string;
  status: "sent" | "skipped" | "failed";
  provider?: string;
  messageId?: string;
  detail?: string;
}

async function finalize(deps: SendEmailDeps, rows: FinalRow[]): Promise<string[]> {
  if (rows.length === 0) return [];
  const campaigns = await deps.sql.query<{ id: string; unpublished: boolean }>(
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
       select m.tenant_id, m.campaign_id,
              count(*) filter (where m.status = 'sent') as sent,
              count(*) filter (where m.status = 'skipped') as skipped,
              count(*) filter (where m.status = 'failed') - count(*) filter (where p.old = 'failed') as failed
       from moved m join prev p using (id) where m.campaign_id is not null group by m.tenant_id, m.campaign_id
     )
     update campaigns c set
       sent = c.sent + d.sent, skipped = c.skipped + d.skipped, failed = c.failed + d.failed,
       status = case when c.status = 'sending' and c.fanout_done
                      and c.sent + c.skipped + c.failed + d.sent + d.skipped + d.failed >= c.recipients
                     then 'sent' else c.status end,
       finished_at = case when c.status = 'sending' and c.fanout_done
                      and c.sent + c.skipped + c.failed + d.sent + d.skipped + d.failed >= c.recipients
                     then $6::timestamptz else c.finished_at end
     from deltas d where c.tenant_id = d.tenant_id and c.id = d.campaign_id
     returning c.id, (c.status = 'sent' and c.end_event_at is null) as unpublished`,
    [
      rows.map((r) => r.id),
      rows.map((r) => r.status),
      rows.map((r) => r.provider ?? null),
      rows.map((r) => r.messageId ?? null),
      rows.map((r) => r.detail ?? null),
      deps.clock.now().toISOString(),
    ],
  );
  return campaigns.filter((c) => c.unpublished).map((c) => c.id);
}

async function markSkipped(deps: SendEmailDeps, jobs: readonly Job<EmailPayload>[], ledger: Map<string, LedgerRow>, reason: string) {
  return finalize(
    deps,
    jobs.map((j) => ({ id: ledger.get(ledgerKey(j))!.id, status: "skipped" as const, detail: reason })),
  );
}

/**
 * Crashes in the email pipeline, and that every message still goes out exactly once.
 *
 * 1. email.send run twice for one job, as after a crash right after the provider accepted the
 *    message (in-process, sendEmails against the Resend mock): the second run sends under the
 *    same Idempotency-Key, the provider deduplicates, the ledger and the counters move once.
 * 2. The real Node runtime (workers/node.ts) SIGKILLed while campaign.process fans a 20,000-
 *    contact campaign out: a second process picks the fan-out up after its lease expires, the
 *    campaign completes, and every contact got exactly one message at the mock. Both drivers.
 *    And the same with a Resend batch in flight at the kill: the batch is recorded before the
 *    request, and the next run resends exactly it (same members, same order, same
 *    Idempotency-Key), so its contacts do not get the campaign twice.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { ApiKeys } from "../shared/api/api-keys";
import { createApp } from "../shared/api/app";
import { createResendMailer } from "../shared/email/providers/resend";
import { type EmailPayload, type SendEmailDeps, sendEmails } from "../shared/email/send-email";
import { createEmailServices } from "../shared/email/services";
import { silentLogger, type Sql, type SqlClient } from "../shared/ports";
import { createEngine, type Engine } from "../shared/queue/engine";
import type { Job } from "../shared/queue/job";
import { startResendMock, type ResendMock } from "../tools/resend-mock-server";
import { DRIVERS, type DriverName } from "./support/engine";
import { cleanupProcesses, startRedisServer, startWorker, takeOutputs } from "./support/processes";
import { createTestDatabase, randomId, waitFor } from "./support/services";
import { jsonApi } from "./support/api";

type TestDatabase = Awaited<ReturnType<typeof createTestDatabase>>;

const PEPPER = "email-crash-pepper-0123456789";
const RESEND_KEY = "re_test_email_crash";
const TENANT = "acme";

// ---------------------------------------------------------------------------------------------
// 1. email.send run twice for one job.
// ---------------------------------------------------------------------------------------------

describe("email.send run twice for one job (a crash right after the provider accepted the message)", () => {
  let db: TestDatabase;
  let resend: ResendMock;
  let engine: Engine;
  let deps: SendEmailDeps;
  let api: (method: string, path: string, body?: unknown) => Promise<any>;
  let templateId: string;
  let listId: string;

  beforeAll(async () => {
    db = await createTestDatabase("email_crash_send");
    resend = await startResendMock({ apiKey: RESEND_KEY });
    engine = createEngine({ sql: db.sql });
    await engine.dispatcher.start();
    const mail = createEmailServices({
      sql: db.sql,
      redisPrefix: "unused:",
      clock: engine.clock,
      mailers: [createResendMailer({ apiKey: RESEND_KEY, baseUrl: resend.url })],
      defaultFrom: "Acme <news@acme.test>",
      publicUrl: "http://jobs.test",
      unsubscribeSecret: PEPPER,
    });
    deps = { ...mail.send, sql: db.sql, clock: engine.clock, logger: silentLogger };
    const apiKeys = new ApiKeys(db.sql, { pepper: PEPPER });
    const key = (await apiKeys.create({ tenantId: TENANT, admin: false, name: TENANT })).key;
    const app = createApp({ queue: engine.queue, sql: db.sql, apiKeys, unsubscribe: mail.unsubscribe });
    api = jsonApi((path, init) => app.request(path, init), key).ok;
    const template = await api("POST", "/v1/templates", {
      name: "receipt",
      subject: "Receipt for {{name}}",
      blocks: [{ type: "heading", text: "Hello {{name}}" }, { type: "text", text: "Order {{order}} is paid." }],
    });
    templateId = template.id;
    listId = (await api("POST", "/v1/lists", { name: "one" })).id;
  });
  afterAll(async () => {
    await engine?.dispatcher.close();
    await resend?.close();
    await db?.drop();
  });

  /** A campaign that has fanned out to one recipient and waits for its one send (as after campaign.process). */
  async function campaignOfOne(): Promise<string> {
    const campaign = await api("POST", "/v1/campaigns", { name: `one ${randomId(3)}`, template_id: templateId, list_id: listId });
    await db.sql.query(
      "update campaigns set status = 'sending', started_at = now(), fanout_done = true, recipients = 1 where id = $1",
      [campaign.id],
    );
    return campaign.id as string;
  }

  /** Enqueues one email.send and claims it, as a worker would. */
  async function claimOne(payload: Record<string, unknown>): Promise<Job<EmailPayload>> {
    const { job } = await engine.queue.enqueue({ type: "email.send", tenantId: TENANT, payload });
    const claimed = await engine.dispatcher.take(["email.send"], 10, "email-crash-test", 60_000);
    expect(claimed.map((j) => j.id)).toEqual([job.id]);
    return claimed[0]! as Job<EmailPayload>;
  }

  const ledgerOf = (key: string) =>
    db.sql.query<{ status: string; provider_message_id: string | null; provider: string | null }>(
      "select status, provider_message_id, provider from email_sends where idempotency_key = $1",
      [key],
    );
  const eventsOf = async (campaignId: string) =>
    (await db.sql.query<{ n: number }>("select count(*)::int as n from email_events where campaign_id = $1 and type = 'sent'", [campaignId]))[0]!.n;
  const countersOf = async (campaignId: string) =>
    (await db.sql.query<{ status: string; recipients: number; sent: number; skipped: number; failed: number }>(
      "select status, recipients, sent, skipped, failed from campaigns where id = $1",
      [campaignId],
    ))[0]!;
  const deliveriesTo = (recipient: string) => resend.delivered().filter((m) => m.to[0] === recipient);

  /**
   * What a crash between the provider's answer and the ledger's record leaves behind. The record
   * is one statement (ledger row, event, campaign counters together), so a crash leaves either
   * all of it or none of it: the ledger row goes back to 'sending', and the event and counter
   * increment that same statement wrote go too.
   */
  async function rewindToCrashWindow(key: string, campaignId?: string): Promise<void> {
    await db.sql.begin(async (tx) => {
      const [row] = await tx.query<{ id: string }>(
        // What was recorded before the request (provider, alone_at or batch_key) stays: only the
        // record of the answer is lost.
        `update email_sends set status = 'sending', provider_message_id = null, sent_at = null
         where idempotency_key = $1 and status = 'sent' returning id::text as id`,
        [key],
      );
      expect(row).toBeDefined();
      await tx.query("delete from email_events where send_id = $1::bigint", [row!.id]);
      if (campaignId) {
        await tx.query("update campaigns set sent = sent - 1, status = 'sending', finished_at = null where id = $1", [campaignId]);
      }
    });
  }

  /**
   * The same database, except that the statement recording a sent message fails, as if the
   * process died right after the provider's answer (before the ledger heard of it).
   */
  function crashingBeforeRecord(sql: Sql): SqlClient {
    return {
      query<T>(text: string, params?: readonly unknown[]): Promise<T[]> {
        if (/update email_sends s set status/.test(text)) return Promise.reject(new Error("process died (simulated)"));
        return sql.query<T>(text, params);
      },
    };
  }

  const cases = [
    {
      kind: "transactional mail (system template sys_transactional)",
      payload: (to: string) => ({ recipient: to, template_id: "sys_transactional", variables: { title: "Your receipt", body: "Paid.\n\nThanks." } }),
      campaign: false,
    },
    {
      kind: "campaign mail (a stored tenant template, a real campaign)",
      payload: (to: string, campaignId?: string) => ({
        recipient: to,
        template_id: templateId,
        variables: { name: "Ann", order: 42, contact_id: 1 },
        campaign_id: campaignId,
      }),
      campaign: true,
    },
  ];

  describe.each(cases)("$kind", ({ payload, campaign }) => {
    it("a plain second run (ledger already 'sent') sends nothing; after the crash window the repeat is deduplicated: one message", async () => {
      const to = `${randomId(4)}@example.com`;
      const campaignId = campaign ? await campaignOfOne() : undefined;
      const job = await claimOne(payload(to, campaignId));
      const key = campaignId ? `camp:${campaignId}:${to}` : `job:${job.id}`;

      // First run: sent.
      const requests0 = resend.requests();
      const [first] = await sendEmails([job], deps);
      expect(first).toMatchObject({ ok: true, result: { status: "sent", provider: "resend" } });
      expect(deliveriesTo(to)).toHaveLength(1);
      const delivered = deliveriesTo(to)[0]!;
      expect(delivered.idempotencyKey).toBe(key);
      expect(delivered.batch).toBe(false);
      expect(resend.requests()).toBe(requests0 + 1);
      expect(await ledgerOf(key)).toEqual([{ status: "sent", provider: "resend", provider_message_id: delivered.id }]);
      if (campaignId) {
        expect(await countersOf(campaignId)).toEqual({ status: "sent", recipients: 1, sent: 1, skipped: 0, failed: 0 });
        expect(await eventsOf(campaignId)).toBe(1);
      }

      // A plain repeat (the ledger says sent): not even a request to the provider.
      const [plain] = await sendEmails([job], deps);
      expect(plain).toMatchObject({ ok: true, result: { status: "sent", repeated: true, message_id: delivered.id } });
      expect(resend.requests()).toBe(requests0 + 1);
      expect(deliveriesTo(to)).toHaveLength(1);

      // The crash window: the provider accepted the message, the ledger never recorded it.
      await rewindToCrashWindow(key, campaignId);
      expect(await ledgerOf(key)).toEqual([{ status: "sending", provider: "resend", provider_message_id: null }]);
      const [again] = await sendEmails([job], deps);
      // The repeat reached the provider under the same Idempotency-Key and got the first answer back.
      expect(resend.requests()).toBe(requests0 + 2);
      expect(again).toMatchObject({ ok: true, result: { status: "sent", provider: "resend", message_id: delivered.id } });
      expect(deliveriesTo(to)).toHaveLength(1);
      expect(await ledgerOf(key)).toEqual([{ status: "sent", provider: "resend", provider_message_id: delivered.id }]);
      if (campaignId) {
        expect(await countersOf(campaignId)).toEqual({ status: "sent", recipients: 1, sent: 1, skipped: 0, failed: 0 });
        expect(await eventsOf(campaignId)).toBe(1);
      }
    });

    it("a run that really dies between the provider's answer and the ledger's record, then runs again: one message, counted once", async () => {
      const to = `${randomId(4)}@example.com`;
      const campaignId = campaign ? await campaignOfOne() : undefined;
      const job = await claimOne(payload(to, campaignId));
      const key = campaignId ? `camp:${campaignId}:${to}` : `job:${job.id}`;
      const requests0 = resend.requests();

      await expect(sendEmails([job], { ...deps, sql: crashingBeforeRecord(db.sql) })).rejects.toThrow("process died (simulated)");
      expect(deliveriesTo(to)).toHaveLength(1);
      // The provider was recorded before the request left; its answer never was.
      expect(await ledgerOf(key)).toEqual([{ status: "sending", provider: "resend", provider_message_id: null }]);
      if (campaignId) expect(await countersOf(campaignId)).toMatchObject({ status: "sending", sent: 0 });

      const [again] = await sendEmails([job], deps);
      expect(resend.requests()).toBe(requests0 + 2);
      expect(deliveriesTo(to)).toHaveLength(1);
      expect(again).toMatchObject({ ok: true, result: { status: "sent", message_id: deliveriesTo(to)[0]!.id } });
      expect(await ledgerOf(key)).toMatchObject([{ status: "sent" }]);
      if (campaignId) {
        expect(await countersOf(campaignId)).toEqual({ status: "sent", recipients: 1, sent: 1, skipped: 0, failed: 0 });
        expect(await eventsOf(campaignId)).toBe(1);
      }
      // And once it is recorded, a third run does not reach the provider at all.
      await sendEmails([job], deps);
      expect(resend.requests()).toBe(requests0 + 2);
    });
  });
  it("a message first sent alone, killed before its record, then retried among others goes alone again under its own key: one message each", async () => {
    const tos = [0, 1, 2].map((i) => `regroup-${i}-${randomId(4)}@example.com`);
    const first = await claimOne(cases[0]!.payload(tos[0]!));
    const requests0 = resend.requests();
    await expect(sendEmails([first], { ...deps, sql: crashingBeforeRecord(db.sql) })).rejects.toThrow("process died (simulated)");
    expect(deliveriesTo(tos[0]!)).toHaveLength(1);

    // Its retry is claimed together with two fresh jobs: one handler call, as an email pool
    // hands a claimed batch to email.send, which would group them into one batch request.
    for (const to of tos.slice(1)) await engine.queue.enqueue({ type: "email.send", tenantId: TENANT, payload: cases[0]!.payload(to) });
    const others = (await engine.dispatcher.take(["email.send"], 10, "email-crash-test", 60_000)) as Job<EmailPayload>[];
    expect(others).toHaveLength(2);
    const results = await sendEmails([first, ...others], deps);
    expect(results).toMatchObject([{ ok: true }, { ok: true }, { ok: true }]);

    for (const to of tos) expect(deliveriesTo(to), to).toHaveLength(1);
    // The first went alone both times, under its own key; the fresh two in one batch request.
    expect(deliveriesTo(tos[0]!)[0]).toMatchObject({ batch: false, idempotencyKey: `job:${first.id}` });
    expect(deliveriesTo(tos[1]!)[0]!.batch).toBe(true);
    expect(resend.requests()).toBe(requests0 + 3);
    expect(results[0]).toMatchObject({ result: { message_id: deliveriesTo(tos[0]!)[0]!.id } });
  });
});


// ---------------------------------------------------------------------------------------------
// 2. The real runtime SIGKILLed in the middle of a campaign's fan-out.
// ---------------------------------------------------------------------------------------------

const CONTACTS = Number(process.env.EMAIL_CRASH_CONTACTS ?? 20_000);

/** The real entry, not the test fixture: these tests need its email handlers. */
const startRuntime = (name: string, env: Record<string, string | number | undefined>) =>
  startWorker(name, env, { script: "workers/node.ts" });

/** What a finished campaign left at the mock: recipients with other than one message, and how many. */
function deliveriesPerRecipient(resend: ResendMock): { distinct: number; total: number; notOnce: [string, number][] } {
  const per = new Map<string, number>();
  for (const m of resend.delivered()) per.set(m.to[0]!, (per.get(m.to[0]!) ?? 0) + 1);
  return { distinct: per.size, total: resend.delivered().length, notOnce: [...per].filter(([, n]) => n !== 1) };
}

interface CampaignRow {
  status: string;
  cursor: string;
  done: boolean;
  recipients: number;
  sent: number;
  skipped: number;
  failed: number;
}

/**
 * A fresh database, the Resend mock, a redis-server for the Redis driver, a tenant key made with
 * ApiKeys (same pepper as the processes), runtime A, and through A's HTTP API a list of
 * `contacts`, a template and a draft campaign.
 */
async function campaignOnRuntime(driver: DriverName, contacts: number, log: (what: string) => void) {
  const db = await createTestDatabase(`email_crash_${driver}`);
  resources.push(() => db.drop());
  const resend = await startResendMock({ apiKey: RESEND_KEY });
  resources.push(() => resend.close());
  const redis = driver === "redis" ? await startRedisServer() : undefined;
  if (redis) resources.push(() => redis.stop());
  const key = (await new ApiKeys(db.sql, { pepper: PEPPER }).create({ tenantId: TENANT, admin: false, name: TENANT })).key;
  const env = {
    DATABASE_URL: db.url,
    DATABASE_POOL_SIZE: 8,
    API_KEY_PEPPER: PEPPER,
    ADMIN_API_KEY: `pmk_admin_email_crash_${randomId(12)}`,
    HOST: "127.0.0.1",
    PORT: 0,
    RESEND_API_KEY: RESEND_KEY,
    RESEND_BASE_URL: resend.url,
    MAIL_PROVIDERS: "resend",
    MAIL_FROM: "Acme <news@acme.test>",
    LEASE_MS: 2_000,
    SCHEDULER_INTERVAL_MS: 200,
    LOG_LEVEL: "info",
    ...(redis ? { REDIS_URL: redis.url, REDIS_PREFIX: `email-crash:${randomId(4)}:{jobs}:` } : {}),
  };
  const a = await startRuntime("runtime A", env);
  log("runtime A ready");

  const api = jsonApi((path, init) => fetch(`${a.url}${path}`, init), key).ok;
  const list = await api("POST", "/v1/lists", { name: "everyone" });
  for (let b = 0; b < contacts; b += 1_000) {
    const batch = Array.from({ length: Math.min(1_000, contacts - b) }, (_, i) => ({ email: `c${b + i}@example.com`, name: `Person ${b + i}` }));
    const r = await api("POST", "/v1/contacts", { contacts: batch, list_id: list.id });
    expect(r.created).toBe(batch.length);
  }
  const template = await api("POST", "/v1/templates", {
    name: "news",
    subject: "News for {{name}}",
    blocks: [{ type: "heading", text: "Hello {{name}}" }, { type: "text", text: "Something new." }],
  });
  const campaign = await api("POST", "/v1/campaigns", { name: "crash", template_id: template.id, list_id: list.id });
  log(`${contacts} contacts, a template and a campaign created over HTTP`);

  const sql = db.sql;
  const state = async () =>
    (await sql.query<CampaignRow>(
      "select status, fanout_cursor::text as cursor, fanout_done as done, recipients, sent, skipped, failed from campaigns where id = $1",
      [campaign.id],
    ))[0]!;
  let lastLog = Date.now();
  const waitUntilSent = (): Promise<CampaignRow> =>
    waitFor(
      async () => {
        const s = await state();
        if (Date.now() - lastLog >= 10_000) {
          lastLog = Date.now();
          log(`progress: recipients ${s.recipients}, sent ${s.sent}, provider deliveries ${resend.delivered().length}`);
        }
        return s.status === "sent" ? s : null;
      },
      { timeoutMs: 400_000, intervalMs: 500, what: "the campaign to be sent" },
    ).then((s) => s!, async (err: Error) => {
      const jobs = await sql.query("select type, state::text, count(*)::int as n, max(last_error->>'message') as error from jobs group by 1, 2");
      const sends = await sql.query("select status, count(*)::int as n from email_sends group by 1");
      throw new Error(`${err.message}: ${JSON.stringify({ campaign: await state(), jobs, sends, delivered: resend.delivered().length })}`);
    });
  const processJob = async () =>
    (await sql.query<{ id: string; state: string; attempt: number; worker_id: string; error: string | null }>(
      "select id::text as id, state::text as state, attempt, worker_id, last_error->>'name' as error from jobs where type = 'campaign.process'",
    ))[0]!;
  return { db, sql, resend, env, a, api, campaign: campaign as { id: string }, state, waitUntilSent, processJob };
}

const resources: (() => Promise<void>)[] = [];

/** Kills the runtimes and redis-servers, closes the mock, drops the database. */
async function releaseAll(): Promise<void> {
  await cleanupProcesses();
  for (const release of resources.splice(0).reverse()) await release().catch(() => {});
}

afterEach(async (ctx) => {
  if (ctx.task.result?.state === "fail") {
    process.stderr.write(`\n${takeOutputs()}\n`);
  }
  await releaseAll();
});
afterAll(releaseAll);

describe.each(DRIVERS)("the runtime SIGKILLed in the middle of a campaign's fan-out (%s driver)", (driver: DriverName) => {
  it("a second process finishes the campaign: every contact gets exactly one message", async () => {
    const t0 = Date.now();
    const lap = (what: string) => process.stdout.write(`[email-crash ${driver}] ${what} at ${((Date.now() - t0) / 1000).toFixed(1)} s\n`);
    const { sql, resend, env, a, api, campaign, state, waitUntilSent, processJob } = await campaignOnRuntime(driver, CONTACTS, lap);

    // While A lives the provider accepts nothing (every request a 500): A's sends fail and wait
    // for a retry, so no message is in flight at the provider when A dies. (A batch in flight at
    // the crash can be sent twice: see the in-flight test below.)
    resend.inject({ failEvery500: 1 });
    await api("POST", `/v1/campaigns/${campaign.id}/start`);
    // The first batch committed, the fan-out not finished: kill now.
    await waitFor(async () => Number((await state()).cursor) > 0 || (await state()).done, {
      timeoutMs: 60_000,
      intervalMs: 5,
      what: "the fan-out's first checkpoint",
    });
    expect(await a.kill("SIGKILL")).toEqual({ code: null, signal: "SIGKILL" });
    const atKill = await state();
    lap(`runtime A SIGKILLed: cursor ${atKill.cursor}, recipients ${atKill.recipients}; provider requests so far ${resend.requests()} (all refused)`);
    if (atKill.done) throw new Error(`the fan-out finished before the kill; raise EMAIL_CRASH_CONTACTS above ${CONTACTS}`);
    expect(atKill).toMatchObject({ status: "sending", done: false, sent: 0 });
    expect(atKill.recipients).toBeGreaterThan(0);
    expect(atKill.recipients).toBeLessThan(CONTACTS);
    const before = await processJob();
    expect(before).toMatchObject({ state: "active", attempt: 1 });
    expect(before.worker_id).toContain(`:${a.pid}:`);

    // Requests A sent just before it died are answered (refused) by now; then the provider is back.
    await new Promise((r) => setTimeout(r, 300));
    expect(resend.delivered()).toHaveLength(0);
    resend.inject({});
    const b = await startRuntime("runtime B", env);
    lap("runtime B ready");
    const done = await waitUntilSent();
    lap("campaign sent");

    // Exactly one message a contact.
    const { distinct, total, notOnce } = deliveriesPerRecipient(resend);
    expect(notOnce.length, `recipients without exactly one message, e.g. ${JSON.stringify(notOnce.slice(0, 5))}`).toBe(0);
    expect(distinct).toBe(CONTACTS);
    expect(total).toBe(CONTACTS);
    // The counters add up.
    expect(done).toMatchObject({ recipients: CONTACTS, sent: CONTACTS, skipped: 0, failed: 0, done: true });
    expect(done.sent + done.skipped + done.failed).toBe(done.recipients);
    const [ledger] = await sql.query<{ rows: number; sent: number }>(
      "select count(*)::int as rows, count(*) filter (where status = 'sent')::int as sent from email_sends where campaign_id = $1",
      [campaign.id],
    );
    expect(ledger).toEqual({ rows: CONTACTS, sent: CONTACTS });
    // The repeated batch created no job twice.
    const [sends] = await sql.query<{ n: number; retried: number }>(
      "select count(*)::int as n, count(*) filter (where attempt > 1)::int as retried from jobs where type = 'email.send'",
    );
    expect(sends!.n).toBe(CONTACTS);
    lap(`${sends!.retried} sends had been claimed in A and ran again in B`);
    // The fan-out ran twice: A's lease expired and B ran it again, on attempt 2.
    const after = await processJob();
    expect(after).toMatchObject({ id: before.id, state: "completed", attempt: 2, error: "LeaseExpired" });
    expect(after.worker_id).toContain(`:${b.pid}:`);
  }, 600_000);
});

/**
 * A process that dies while a Resend batch request is in flight: the provider accepts the batch,
 * the ledger still says 'sending'. The jobs run again elsewhere, grouped differently (here: a
 * process with another EMAIL_CONCURRENCY, so batches of at most 20 instead of 50). Without the
 * recorded batch the regrouped requests would carry new Idempotency-Keys and deliver again.
 */
describe("the runtime SIGKILLed with a batch in flight at the provider", () => {
  it("every contact still gets exactly one message", async () => {
    const t0 = Date.now();
    const lap = (what: string) => process.stdout.write(`[email-crash in-flight] ${what} at ${((Date.now() - t0) / 1000).toFixed(1)} s\n`);
    const contacts = 2_000;
    const { resend, env, a, api, campaign, waitUntilSent } = await campaignOnRuntime("postgres", contacts, lap);
    // A slow provider: the first request is certainly still in flight when A dies, and accepted after.
    resend.inject({ latencyMs: 1_500 });
    await api("POST", `/v1/campaigns/${campaign.id}/start`);
    await waitFor(() => resend.requests() > 0, { timeoutMs: 60_000, intervalMs: 5, what: "a request at the provider" });
    expect(await a.kill("SIGKILL")).toEqual({ code: null, signal: "SIGKILL" });
    await waitFor(() => resend.delivered().length > 0, { timeoutMs: 10_000, what: "the provider to accept the batch in flight" });
    lap(`runtime A SIGKILLed; the provider accepted ${resend.delivered().length} messages of its batch in flight`);
    resend.inject({});
    await startRuntime("runtime B", { ...env, EMAIL_CONCURRENCY: 20 });
    const done = await waitUntilSent();
    lap("campaign sent");
    const { distinct, total, notOnce } = deliveriesPerRecipient(resend);
    lap(`${notOnce.length} contacts got other than one message`);
    expect(notOnce.length, `recipients without exactly one message, e.g. ${JSON.stringify(notOnce.slice(0, 5))}`).toBe(0);
    expect({ distinct, total }).toEqual({ distinct: contacts, total: contacts });
    expect(done).toMatchObject({ recipients: contacts, sent: contacts });
  }, 600_000);
});

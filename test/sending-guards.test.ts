/**
 * Sending guards (shared/email/sending-guards.ts) on real Postgres and the real engine, on both
 * dispatch drivers: campaigns sent through a Resend stand-in, complaints reported through
 * Resend's signed webhook (the real delivery-feedback path), the guard checked as the scheduler
 * checks it. Then the decision alone against random mixes of sends, bounces and complaints.
 */
import fc from "fast-check";
import { Webhook } from "standardwebhooks";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ApiKeys } from "../shared/api/api-keys";
import { createApp } from "../shared/api/app";
import { createResendMailer } from "../shared/email/providers/resend";
import { countWindow, DEFAULT_GUARD_POLICY, SendingGuards, sendingGuardsTask, verdictOf } from "../shared/email/sending-guards";
import { createEmailServices } from "../shared/email/services";
import { silentLogger } from "../shared/ports";
import { Scheduler } from "../shared/queue/scheduler";
import type { WorkerPool } from "../shared/queue/worker";
import { generateSecret } from "../shared/webhooks/signature";
import { startResendMock, type ResendMock } from "../tools/resend-mock-server";
import { createHandlers } from "../workers/handlers";
import { jsonApi } from "./support/api";
import { createHarness, DRIVERS, type Harness } from "./support/engine";
import { randomId, waitFor } from "./support/services";

const PEPPER = "sending-guards-pepper-0123456789";
const RESEND_SECRET = generateSecret();
const A = "acme";
const B = "globex";
const C = "initech";
const OWNER = "owner@acme.test";
// Over the 200 minimum, and large enough that one complaint (0.2%) is under the 0.3% threshold
// and two (0.4%) over it: a scheduler pass between the test's two complaints trips nothing.
const VOLUME = 500;

describe.each(DRIVERS)("sending guards (%s driver)", (driver) => {
  let h: Harness;
  let resend: ResendMock;
  let app: ReturnType<typeof createApp>;
  let guards: SendingGuards;
  let emailPool: WorkerPool;
  let handlers: ReturnType<typeof createHandlers>;
  let scheduler: Scheduler;
  const keys: Record<string, string> = {};

  beforeAll(async () => {
    h = await createHarness(driver, "sending_guards");
    resend = await startResendMock({ apiKey: "re_test_guards" });
    const mail = createEmailServices({
      sql: h.sql,
      redisPrefix: "unused:",
      clock: h.engine.clock,
      mailers: [createResendMailer({ apiKey: "re_test_guards", baseUrl: resend.url })],
      defaultFrom: "Platform <no-reply@platform.test>",
      publicUrl: "http://jobs.test",
      unsubscribeSecret: PEPPER,
    });
    handlers = createHandlers({ sql: h.sql, clock: h.engine.clock, email: { queue: h.engine.queue, logger: silentLogger, send: mail.send } });
    emailPool = h.pool(handlers.filter((x) => x.type === "email.send"), { concurrency: 20, name: "email" });
    emailPool.start();
    h.pool(handlers.filter((x) => x.type === "campaign.process"), { concurrency: 2, name: "default" }).start();
    const apiKeys = new ApiKeys(h.sql, { pepper: PEPPER });
    for (const t of [A, B, C]) keys[t] = (await apiKeys.create({ tenantId: t, admin: false, name: t })).key;
    keys.admin = (await apiKeys.create({ tenantId: null, admin: true, name: "ops" })).key;
    await h.sql.query("insert into tenants (id, name, settings) values ($1, 'Acme', $2), ($3, 'Globex', '{}'), ($4, 'Initech', '{}')", [
      A,
      JSON.stringify({ from_email: "Acme <news@acme.test>", sending_guards: { notify_email: OWNER } }),
      B,
      C,
    ]);
    // A's webhook endpoint, subscribed to the guard's event (its deliveries are not run here: the job is the event).
    await h.sql.query(
      "insert into webhook_endpoints (id, tenant_id, url, event_types, secret) values ('whe_guard', $1, 'https://hooks.example.com/x', '{sending.paused}', 'whsec_dGVzdA==')",
      [A],
    );
    app = createApp({ queue: h.engine.queue, sql: h.sql, apiKeys, resendWebhookSecret: RESEND_SECRET });
    // settleMs 0: nothing else writes events here while a check runs. The scheduler checks the
    // guards in every pass, as the runtimes' schedulers do (there every 10 s).
    guards = new SendingGuards({ sql: h.sql, queue: h.engine.queue, clock: h.engine.clock, logger: silentLogger, settleMs: 0 });
    scheduler = new Scheduler({ queue: h.engine.queue, holderId: `guards-${randomId(3)}`, stats: h.engine.stats, tasks: [sendingGuardsTask(guards, 0)] });
    scheduler.start(25);
  }, 60_000);

  afterAll(async () => {
    await scheduler?.stop();
    await h?.close();
    await resend?.close();
  });

  const api = (tenant: string) => jsonApi((p, init) => app.request(p, init), keys[tenant]!);

  async function campaign(tenant: string, tag: string, n: number): Promise<string> {
    const ok = api(tenant).ok;
    const list = await ok("POST", "/v1/lists", { name: tag });
    await ok("POST", "/v1/contacts", { list_id: list.id, contacts: Array.from({ length: n }, (_, i) => ({ email: `${tag}-${i}@example.com` })) });
    const template = await ok("POST", "/v1/templates", { name: tag, subject: "News", blocks: [{ type: "text", text: "Hello" }] });
    const c = await ok("POST", "/v1/campaigns", { name: tag, template_id: template.id, list_id: list.id });
    await ok("POST", `/v1/campaigns/${c.id}/start`);
    return c.id as string;
  }
  const status = async (tenant: string, id: string) => (await api(tenant).ok("GET", `/v1/campaigns/${id}`)) as { status: string; counters: Record<string, number> };
  const untilStatus = (tenant: string, id: string, want: string) =>
    waitFor(async () => ((await status(tenant, id)).status === want ? true : null), { timeoutMs: 60_000, what: `${id} to be ${want}` });

  /** Resend's complaint about one of a tenant's sent messages, signed and posted as Resend does. */
  async function complain(tenant: string, campaignId: string, nth: number) {
    const [send] = await h.sql.query<{ provider_message_id: string; recipient: string }>(
      "select provider_message_id, recipient from email_sends where tenant_id = $1 and campaign_id = $2 and status = 'sent' order by id offset $3 limit 1",
      [tenant, campaignId, nth],
    );
    const body = JSON.stringify({ type: "email.complained", created_at: new Date().toISOString(), data: { email_id: send!.provider_message_id, to: [send!.recipient] } });
    const id = `msg_${randomId(10)}`;
    const at = new Date();
    const res = await app.request("/providers/resend/events", {
      method: "POST",
      headers: { "content-type": "application/json", "svix-id": id, "svix-timestamp": String(Math.floor(at.getTime() / 1000)), "svix-signature": new Webhook(RESEND_SECRET).sign(id, at, body) },
      body,
    });
    expect(await res.json()).toMatchObject({ status: "recorded" });
  }
  /** Until a scheduler pass has checked every complaint recorded so far. */
  const checked = () =>
    waitFor(
      async () =>
        (
          await h.sql.query(
            "select 1 from sending_guard_cursor where last_event_id >= (select coalesce(max(id), 0) from email_events where type in ('bounced', 'complained'))",
          )
        ).length === 1,
      { what: "a scheduler pass to check the guards" },
    );
  const pausedEvents = () =>
    h.sql.query<{ data: any }>("select payload->'data' as data from jobs where type = 'webhook.dispatch' and tenant_id = $1 and payload->>'event_type' = 'sending.paused'", [A]);
  const ownerMails = () => h.sql.query<{ state: string; payload: any }>("select state::text, payload from jobs where type = 'email.send' and payload->>'recipient' = $1", [OWNER]);

  it("a tenant over the complaint threshold: its campaigns pause within one check, it is told once, its transactional mail goes on; another tenant is untouched", async () => {
    // 500 campaign mails each; A gets 2 complaints (0.4%), B 0.
    const a1 = await campaign(A, `a1${driver}`, VOLUME);
    const b1 = await campaign(B, `b1${driver}`, VOLUME);
    await untilStatus(A, a1, "sent");
    await untilStatus(B, b1, "sent");

    // Second campaigns of each, their sends queued (no email worker runs meanwhile).
    await emailPool.stop(5_000);
    const a2 = await campaign(A, `a2${driver}`, 40);
    const b2 = await campaign(B, `b2${driver}`, 40);
    for (const id of [a2, b2]) {
      await waitFor(async () => (await h.sql.query("select 1 from campaigns where id = $1 and fanout_done", [id])).length === 1, { what: `${id}'s fan-out` });
    }
    expect((await status(A, a2)).status).toBe("sending");

    // Two complaints about A's first campaign (0.4%); within one check (the next scheduler pass) A trips, B does not.
    await complain(A, a1, 3);
    await complain(A, a1, 7);
    await checked();
    expect((await status(A, a2)).status).toBe("paused");
    expect((await status(B, b2)).status).toBe("sending");
    const [view] = (await api(A).ok("GET", "/v1/sending/guards")).guards;
    expect(view).toMatchObject({ tenant_id: A, state: "tripped", domain: "acme.test", sent: VOLUME, complaints: 2, complaint_rate: 2 / VOLUME, over: ["complaint_rate"], trips: 1 });
    expect((await api(B).ok("GET", "/v1/sending/guards")).guards[0]).toMatchObject({ tenant_id: B, state: "clear", sent: VOLUME, complaints: 0, over: [] });

    // A's transactional mail goes on while its campaigns wait; B's campaign ends sent.
    const { job: receipt } = await h.engine.queue.enqueue({ type: "email.send", tenantId: A, payload: { recipient: "buyer@example.com", template_id: "sys_transactional", variables: { title: "Receipt" } } });
    emailPool = h.pool(handlers.filter((x) => x.type === "email.send"), { concurrency: 20, name: "email" });
    emailPool.start();
    await untilStatus(B, b2, "sent");
    await waitFor(async () => (await h.engine.queue.get(receipt.id, A)).state === "completed", { what: "A's receipt" });
    expect((await h.engine.queue.get(receipt.id, A)).result).toMatchObject({ status: "sent" });
    expect((await status(B, b2)).counters).toMatchObject({ sent: 40, failed: 0 });

    // The webhook event and the owner's mail, once.
    const events = await pausedEvents();
    expect(events).toHaveLength(1);
    expect(events[0]!.data).toMatchObject({
      tenant_id: A,
      domain: "acme.test",
      reasons: ["complaint_rate"],
      complaints: 2,
      sent: VOLUME,
      thresholds: { complaint_rate: 0.003, hard_bounce_rate: 0.05, min_volume: 200 },
      window: { hours: 24 },
      paused_campaign_ids: [a2],
      trip: 1,
    });
    await waitFor(async () => (await ownerMails()).some((m) => m.state === "completed"), { what: "the owner's notice" });
    expect((await ownerMails())[0]!.payload).toMatchObject({ template_id: "sys_transactional", variables: { title: "Your campaigns are paused" } });

    // A2's sends are held: none sent, none failed, no attempt spent on waiting.
    const held = await h.sql.query<{ state: string; attempt: number; max_attempts: number }>(
      "select state::text, attempt, max_attempts from jobs where type = 'email.send' and payload->>'campaign_id' = $1",
      [a2],
    );
    expect(held).toHaveLength(40);
    expect(held.every((j) => j.state !== "failed" && j.state !== "completed" && j.attempt === 0)).toBe(true);
    expect((await status(A, a2)).counters).toMatchObject({ sent: 0, failed: 0 });

    // Checked again (a new complaint on the old mail): no second trip, nothing told twice.
    await complain(A, a1, 11);
    await checked();
    expect(await pausedEvents()).toHaveLength(1);
    expect(await ownerMails()).toHaveLength(1);

    // A resumes: acknowledged, the rates count from now, the old complaints do not pause it again.
    await api(A).ok("POST", `/v1/campaigns/${a2}/resume`);
    await complain(A, a1, 13);
    await checked();
    // (Its held sends snooze 30 s at a time, as any paused campaign's: waiting for them to go adds nothing here.)
    expect((await status(A, a2)).status).toBe("sending");
    expect((await api(A).ok("GET", "/v1/sending/guards")).guards[0]).toMatchObject({ state: "acknowledged", complaints: 1, over: [] });
    expect(await pausedEvents()).toHaveLength(1);

    // The admin sees A's guard among those not clear, and B's on asking.
    const all = (await api("admin").ok("GET", "/v1/sending/guards")).guards.map((g: { tenant_id: string }) => g.tenant_id);
    expect(all).toEqual([A]);
    expect((await api("admin").ok("GET", `/v1/sending/guards?tenant_id=${B}`)).guards[0]).toMatchObject({ tenant_id: B, state: "clear" });
    expect((await api(A).call("POST", "/v1/sending/guards/reset")).status).toBe(403);
  }, 180_000);

  it("below the minimum volume nothing trips: three complaints on ten mails", async () => {
    const c1 = await campaign(C, `c1${driver}`, 10);
    await untilStatus(C, c1, "sent");
    for (const n of [0, 1, 2]) await complain(C, c1, n);
    await checked();
    expect((await api(C).ok("GET", "/v1/sending/guards")).guards[0]).toMatchObject({ state: "clear", sent: 10, complaints: 3, complaint_rate: 0.3, over: [] });
  }, 60_000);
});

describe("the decision: tripped iff a rate over the window passes its threshold with the minimum volume", () => {
  let h: Harness;
  beforeAll(async () => {
    h = await createHarness("postgres", "sending_guards_prop");
  });
  afterAll(async () => h?.close());

  it("a check whose clock is behind the database's still counts every event it passes (they trip it once)", async () => {
    // This process's clock 10 s behind the database's: the events' times are the database's.
    const guards = new SendingGuards({ sql: h.sql, queue: h.engine.queue, clock: { now: () => new Date(Date.now() - 10_000) }, logger: silentLogger, settleMs: 0 });
    await guards.check(); // the cursor past what earlier tests wrote
    const tenant = "behind";
    await h.sql.query(
      `insert into email_events (tenant_id, type, data) select $1, 'sent', '{}'::jsonb from generate_series(1, 300)
       union all select $1, 'complained', '{}'::jsonb from generate_series(1, 2)`,
      [tenant],
    );
    // The code before counted up to its own clock: 0 sent, under the minimum, and the cursor moved past the complaints.
    expect((await guards.check()).tripped).toEqual([tenant]);
    expect((await guards.view(tenant)).state).toBe("tripped");
  });

  it("random mixes of sends, hard and soft bounces and complaints, inside and outside the window", async () => {
    const now = new Date("2030-01-02T00:00:00Z");
    const hour = 3_600_000;
    const policy = { ...DEFAULT_GUARD_POLICY, minVolume: 50 };
    const clock = { now: () => now };
    const guards = new SendingGuards({ sql: h.sql, queue: h.engine.queue, clock, logger: silentLogger, policy });
    const kinds = ["sent", "hard", "soft", "complained"] as const;
    const event = fc.record({ kind: fc.constantFrom(...kinds, "sent", "sent", "sent"), hoursAgo: fc.double({ min: 0.01, max: 47.9, noNaN: true }) });
    let run = 0;
    await fc.assert(
      fc.asyncProperty(fc.array(event, { minLength: 0, maxLength: 160 }), async (events) => {
        const tenant = `prop${run++}`;
        await h.sql.query(
          `insert into email_events (tenant_id, type, data, created_at)
           select $1, u.type, u.data::jsonb, u.at from unnest($2::text[], $3::text[], $4::timestamptz[]) as u(type, data, at)`,
          [
            tenant,
            events.map((e) => (e.kind === "hard" || e.kind === "soft" ? "bounced" : e.kind)),
            events.map((e) => JSON.stringify(e.kind === "hard" || e.kind === "soft" ? { bounce_type: e.kind } : {})),
            events.map((e) => new Date(now.getTime() - e.hoursAgo * hour).toISOString()),
          ],
        );
        const inside = events.filter((e) => e.hoursAgo < 24);
        const sent = inside.filter((e) => e.kind === "sent").length;
        const hard = inside.filter((e) => e.kind === "hard").length;
        const complaints = inside.filter((e) => e.kind === "complained").length;
        const expected = sent >= policy.minVolume && (complaints / sent > policy.complaintRate || hard / sent > policy.hardBounceRate);
        const counts = await countWindow(h.sql, tenant, new Date(now.getTime() - policy.windowMs), now);
        expect(counts).toEqual({ sent, hardBounces: hard, complaints });
        expect(verdictOf(counts, policy).over.length > 0).toBe(expected);
        expect(await guards.evaluate(tenant, now)).toBe(expected ? "tripped" : "unchanged");
      }),
      { numRuns: 40 },
    );
  }, 120_000);
});

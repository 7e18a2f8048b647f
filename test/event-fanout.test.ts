/**
 * Events from the other jobs reaching tenants' webhooks, end to end on real Postgres and real
 * HTTP: a finished campaign (campaign.sent, exactly once), bounces and complaints reported by
 * Resend's signed webhook (email.bounced, email.complained), and an endpoint the platform
 * disables (webhook.endpoint.disabled to the others, sys_webhook_disabled to its owner).
 * Deliveries are verified with the standardwebhooks package, Resend's requests signed with it.
 */
import type { AddressInfo } from "node:net";
import { serve, type ServerType } from "@hono/node-server";
import { Webhook } from "standardwebhooks";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ApiKeys } from "../shared/api/api-keys";
import { createApp } from "../shared/api/app";
import { campaignEndEventId, publishCampaignEnds } from "../shared/email/campaign-events";
import { createResendMailer } from "../shared/email/providers/resend";
import { createEmailServices } from "../shared/email/services";
import { silentLogger } from "../shared/ports";
import { createEngine, type Engine } from "../shared/queue/engine";
import { Scheduler } from "../shared/queue/scheduler";
import { WorkerPool } from "../shared/queue/worker";
import { autoDisableEndpoint } from "../shared/webhooks/auto-disable";
import { publishEvent } from "../shared/webhooks/events";
import { generateSecret } from "../shared/webhooks/signature";
import { parseAllowList } from "../shared/webhooks/ssrf";
import { startResendMock, type ResendMock } from "../tools/resend-mock-server";
import { createHandlers } from "../workers/handlers";
import { nodeDnsResolver } from "../workers/node/dns-resolver";
import { fastCatalog } from "./support/engine";
import { createTestDatabase, randomId, waitFor } from "./support/services";
import { headersOf, type Received, startReceiver, type WebhookReceiver } from "./support/webhook-receiver";
import { jsonApi } from "./support/api";

const PEPPER = "event-fanout-pepper-0123456789";
const RESEND_SECRET = generateSecret();
const TENANT = "acme";

describe("events from the other jobs, delivered to tenants' webhooks", () => {
  let db: Awaited<ReturnType<typeof createTestDatabase>>;
  let engine: Engine;
  let receiver: WebhookReceiver;
  let resend: ResendMock;
  let app: ReturnType<typeof createApp>;
  let server: ServerType;
  let base: string;
  let key: string;
  const stops: (() => Promise<void>)[] = [];

  beforeAll(async () => {
    db = await createTestDatabase("event_fanout");
    receiver = await startReceiver();
    resend = await startResendMock({ apiKey: "re_test_events" });
    // Short backoffs so retries take milliseconds; the handlers are production's.
    engine = createEngine({ sql: db.sql, catalog: fastCatalog({ maxAttempts: 10 }) });
    await engine.dispatcher.start();
    const allow = parseAllowList(["127.0.0.1/32"]);
    const mail = createEmailServices({
      sql: db.sql,
      redisPrefix: "unused:",
      clock: engine.clock,
      mailers: [createResendMailer({ apiKey: "re_test_events", baseUrl: resend.url })],
      defaultFrom: "Acme <news@acme.test>",
      publicUrl: "http://jobs.test",
      unsubscribeSecret: PEPPER,
    });
    const handlers = createHandlers({
      sql: db.sql,
      clock: engine.clock,
      email: { queue: engine.queue, logger: silentLogger, send: mail.send },
      webhooks: { resolver: nodeDnsResolver, allow, queue: engine.queue },
    });
    const pools = [
      new WorkerPool({ name: "email", handlers: handlers.filter((h) => h.type === "email.send"), concurrency: 20, queue: engine.queue, stats: engine.stats, workerId: "events-email", idleWaitMs: 100 }),
      new WorkerPool({ name: "default", handlers: handlers.filter((h) => h.type !== "email.send"), concurrency: 10, queue: engine.queue, stats: engine.stats, workerId: "events-default", idleWaitMs: 100 }),
    ];
    for (const p of pools) p.start();
    const scheduler = new Scheduler({ queue: engine.queue, holderId: "events-test" });
    scheduler.start(25);
    stops.push(() => scheduler.stop(), ...pools.map((p) => () => p.stop(2_000)));
    const apiKeys = new ApiKeys(db.sql, { pepper: PEPPER });
    key = (await apiKeys.create({ tenantId: TENANT, admin: false, name: TENANT })).key;
    app = createApp({ queue: engine.queue, sql: db.sql, apiKeys, webhookGuard: { resolver: nodeDnsResolver, allow }, resendWebhookSecret: RESEND_SECRET });
    // Resend reaches us over HTTP: serve the app for real.
    await new Promise<void>((ready) => {
      server = serve({ fetch: app.fetch, hostname: "127.0.0.1", port: 0 }, () => ready());
    });
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });

  afterAll(async () => {
    for (const stop of stops) await stop();
    await new Promise((r) => server?.close(r));
    await engine?.dispatcher.close();
    await receiver?.close();
    await resend?.close();
    await db?.drop();
  });

  const api = (method: string, path: string, body?: unknown) => jsonApi((p, init) => app.request(p, init), key).call(method, path, body);
  const ok = (method: string, path: string, body?: unknown) => jsonApi((p, init) => app.request(p, init), key).ok(method, path, body);
  /** An endpoint on the receiver; every one in this file names its event types, so counts stay exact. */
  const endpoint = async (path: string, eventTypes: string[], notifyEmail?: string) =>
    (await ok("POST", "/v1/webhooks/endpoints", { url: `${receiver.url}${path}`, event_types: eventTypes, notify_email: notifyEmail })) as {
      id: string;
      secret: string;
      notify_email: string | null;
    };
  /** A delivery verified with the reference library (it throws otherwise), parsed. */
  const verified = (secret: string, r: Received) => new Webhook(secret).verify(r.body, headersOf(r)) as { type: string; timestamp: string; data: any };
  const dispatchJobs = (eventId: string) =>
    db.sql.query<{ endpoint_id: string }>(
      "select payload->>'endpoint_id' as endpoint_id from jobs where type = 'webhook.dispatch' and payload->>'event_id' = $1 order by id",
      [eventId],
    );
  const jobState = async (id: string) => (await engine.queue.get(id, TENANT)).state;

  describe("campaign.sent and campaign.cancelled", () => {
    /** A list of contacts and a template; an address marked bad is fixed by SQL, as the API refuses it. */
    async function audience(tag: string, emails: string[], bad: string[] = []) {
      const list = await ok("POST", "/v1/lists", { name: `list ${tag}` });
      await ok("POST", "/v1/contacts", { list_id: list.id, contacts: emails.map((email) => ({ email })) });
      for (const email of bad) await db.sql.query("update contacts set email = replace(email, '@', ' at ') where lower(email) = lower($1)", [email]);
      const template = await ok("POST", "/v1/templates", { name: `t ${tag}`, subject: "Hi {{name}}", blocks: [{ type: "text", text: "Hello." }] });
      return { listId: list.id as string, templateId: template.id as string };
    }
    const waitSent = (id: string) =>
      waitFor(async () => {
        const c = await ok("GET", `/v1/campaigns/${id}`);
        return c.status === "sent" ? c : null;
      }, { what: `campaign ${id} to be sent` });

    it("a campaign whose last send ends publishes one campaign.sent with its counters, and nothing more on a retry or a race", async () => {
      const hook = await endpoint("/campaign-sent", ["campaign.sent"]);
      const tag = randomId(3);
      const { listId, templateId } = await audience(tag, [`a-${tag}@example.com`, `b-${tag}@example.com`, `c-${tag}@example.com`]);
      await ok("POST", "/v1/suppressions", { email: `c-${tag}@example.com` });
      const campaign = await ok("POST", "/v1/campaigns", { name: `Spring ${tag}`, template_id: templateId, list_id: listId });
      await ok("POST", `/v1/campaigns/${campaign.id}/start`);
      const done = await waitSent(campaign.id);
      expect(done.counters).toEqual({ recipients: 3, sent: 2, skipped: 1, failed: 0 });

      const eventId = campaignEndEventId(campaign.id, "sent");
      await waitFor(() => receiver.on("/campaign-sent").length === 1, { what: "the campaign.sent delivery" });
      const hit = receiver.on("/campaign-sent")[0]!;
      expect(hit.headers["webhook-id"]).toBe(eventId);
      const event = verified(hook.secret, hit);
      expect(event.type).toBe("campaign.sent");
      expect(event.data).toEqual({
        campaign_id: campaign.id,
        name: `Spring ${tag}`,
        status: "sent",
        recipients: 3,
        sent: 2,
        skipped: 1,
        failed: 0,
        started_at: expect.any(String),
        finished_at: expect.any(String),
      });
      expect(await dispatchJobs(eventId)).toEqual([{ endpoint_id: hook.id }]);
      const [row] = await db.sql.query<{ end_event_at: Date | null }>("select end_event_at from campaigns where id = $1", [campaign.id]);
      expect(row!.end_event_at).not.toBeNull();

      // Published already: whoever looks again publishes nothing.
      expect(await publishCampaignEnds(engine.queue, db.sql, [campaign.id])).toBe(0);
      // A process that died after publishing but before the mark, retried by two workers at once:
      // both publish, the event's id makes it one job still.
      await db.sql.query("update campaigns set end_event_at = null where id = $1", [campaign.id]);
      const raced = await Promise.all([publishCampaignEnds(engine.queue, db.sql, [campaign.id]), publishCampaignEnds(engine.queue, db.sql, [campaign.id])]);
      expect(raced[0] + raced[1]).toBeGreaterThanOrEqual(1);
      expect(await dispatchJobs(eventId)).toEqual([{ endpoint_id: hook.id }]);
      expect(await publishCampaignEnds(engine.queue, db.sql, [campaign.id])).toBe(0);
      // Exactly one campaign.sent dispatch job for this campaign, whatever its id.
      const all = await db.sql.query("select 1 from jobs where type = 'webhook.dispatch' and payload->>'event_type' = 'campaign.sent' and payload->'data'->>'campaign_id' = $1", [campaign.id]);
      expect(all).toHaveLength(1);
      expect(receiver.on("/campaign-sent")).toHaveLength(1);
    });

    it("a campaign that ends in its fan-out (every address invalid) publishes campaign.sent too", async () => {
      const hook = await endpoint("/campaign-sent-fanout", ["campaign.sent"]);
      const tag = randomId(3);
      const { listId, templateId } = await audience(tag, [`x-${tag}@example.com`], [`x-${tag}@example.com`]);
      const campaign = await ok("POST", "/v1/campaigns", { name: `Empty ${tag}`, template_id: templateId, list_id: listId });
      await ok("POST", `/v1/campaigns/${campaign.id}/start`);
      expect((await waitSent(campaign.id)).counters).toEqual({ recipients: 1, sent: 0, skipped: 1, failed: 0 });
      // Both endpoints subscribed to campaign.sent get it: this one, and the first test's.
      const eventId = campaignEndEventId(campaign.id, "sent");
      await waitFor(() => receiver.on("/campaign-sent-fanout").length === 1, { what: "the delivery" });
      expect(verified(hook.secret, receiver.on("/campaign-sent-fanout")[0]!).data).toMatchObject({ campaign_id: campaign.id, recipients: 1, skipped: 1 });
      const jobs = (await dispatchJobs(eventId)).map((j) => j.endpoint_id);
      expect(jobs).toHaveLength(2);
      expect(jobs).toContain(hook.id);
    });

    it("cancelling publishes one campaign.cancelled", async () => {
      const hook = await endpoint("/campaign-cancelled", ["campaign.cancelled"]);
      const tag = randomId(3);
      const { listId, templateId } = await audience(tag, [`d-${tag}@example.com`]);
      const campaign = await ok("POST", "/v1/campaigns", { name: `Draft ${tag}`, template_id: templateId, list_id: listId });
      expect((await ok("POST", `/v1/campaigns/${campaign.id}/cancel`)).status).toBe("cancelled");
      expect((await api("POST", `/v1/campaigns/${campaign.id}/cancel`)).status).toBe(409);
      await waitFor(() => receiver.on("/campaign-cancelled").length === 1, { what: "the delivery" });
      const event = verified(hook.secret, receiver.on("/campaign-cancelled")[0]!);
      expect(event).toMatchObject({ type: "campaign.cancelled", data: { campaign_id: campaign.id, status: "cancelled", recipients: 0, sent: 0 } });
      expect(await dispatchJobs(campaignEndEventId(campaign.id, "cancelled"))).toEqual([{ endpoint_id: hook.id }]);
    });
  });

  describe("bounces and complaints from Resend's webhook", () => {
    /** One transactional email through the Resend stand-in: its ledger row and Resend's id for it. */
    async function sendOne(recipient: string): Promise<{ sendId: string; emailId: string }> {
      const { job } = await engine.queue.enqueue({ type: "email.send", tenantId: TENANT, payload: { recipient, template_id: "sys_transactional", variables: { title: "Hello" } } });
      await waitFor(async () => (await jobState(job.id)) === "completed", { what: `the send to ${recipient}` });
      const [row] = await db.sql.query<{ id: string; provider_message_id: string }>(
        "select id::text, provider_message_id from email_sends where job_id = $1 and status = 'sent' and provider = 'resend'",
        [job.id],
      );
      return { sendId: row!.id, emailId: row!.provider_message_id };
    }
    const resendEvent = (type: string, emailId: string, to: string, extra: Record<string, unknown> = {}) =>
      JSON.stringify({
        type,
        created_at: "2026-05-01T10:00:00.000Z",
        data: { created_at: "2026-05-01T09:59:58.000Z", email_id: emailId, from: "Acme <news@acme.test>", to: [to], subject: "Hello", ...extra },
      });
    /** POSTs as Resend does: the body signed by the standardwebhooks package (Svix's scheme), over real HTTP. */
    async function postFromResend(body: string, opts: { id?: string; secret?: string; at?: Date; prefix?: "svix" | "webhook" } = {}) {
      const id = opts.id ?? `msg_${randomId(12)}`;
      const at = opts.at ?? new Date();
      const signature = new Webhook(opts.secret ?? RESEND_SECRET).sign(id, at, body);
      const p = opts.prefix ?? "svix";
      const res = await fetch(`${base}/providers/resend/events`, {
        method: "POST",
        headers: { "content-type": "application/json", [`${p}-id`]: id, [`${p}-timestamp`]: String(Math.floor(at.getTime() / 1000)), [`${p}-signature`]: signature },
        body,
      });
      return { id, status: res.status, contentType: res.headers.get("content-type"), json: (await res.json()) as any };
    }
    const recorded = (svixId: string) =>
      db.sql.query<{ type: string; send_id: string; tenant_id: string; data: any }>(
        "select type, send_id::text, tenant_id, data from email_events where provider_event_id = $1",
        [`resend:${svixId}`],
      );
    const suppression = (email: string) =>
      db.sql.query<{ tenant_id: string; reason: string }>("select tenant_id, reason from suppressions where email_lower = lower($1)", [email]);

    it("a signed hard bounce is recorded once, suppresses the address everywhere and reaches the tenant as email.bounced; a replay changes nothing", async () => {
      const hook = await endpoint("/mail-bounced", ["email.bounced"]);
      const to = `dead-${randomId(3)}@example.com`;
      const { sendId, emailId } = await sendOne(to);
      const body = resendEvent("email.bounced", emailId, to, { bounce: { type: "Permanent", subType: "General", message: "550 5.1.1 no such user" } });

      const first = await postFromResend(body);
      expect(first).toMatchObject({ status: 200, json: { status: "recorded" } });
      expect(await recorded(first.id)).toEqual([
        { type: "bounced", send_id: sendId, tenant_id: TENANT, data: expect.objectContaining({ recipient: to, bounce_type: "hard", suppressed: true }) },
      ]);
      expect(await suppression(to)).toEqual([{ tenant_id: "*", reason: "hard_bounce" }]);
      const eventId = `evt_resend_${first.id}`;
      expect(await dispatchJobs(eventId)).toEqual([{ endpoint_id: hook.id }]);
      await waitFor(() => receiver.on("/mail-bounced").length === 1, { what: "the email.bounced delivery" });
      const hit = receiver.on("/mail-bounced")[0]!;
      expect(hit.headers["webhook-id"]).toBe(eventId);
      expect(verified(hook.secret, hit)).toMatchObject({
        type: "email.bounced",
        data: {
          send_id: sendId,
          recipient: to,
          campaign_id: null,
          provider: "resend",
          provider_message_id: emailId,
          bounce_type: "hard",
          suppressed: true,
          detail: { type: "Permanent", sub_type: "General", message: "550 5.1.1 no such user" },
          occurred_at: "2026-05-01T10:00:00.000Z",
        },
      });

      // Resend retries the same message (same svix-id, a fresh signature): nothing new.
      const replay = await postFromResend(body, { id: first.id });
      expect(replay).toMatchObject({ status: 200, json: { status: "duplicate" } });
      expect(await recorded(first.id)).toHaveLength(1);
      expect(await dispatchJobs(eventId)).toHaveLength(1);
      expect(await suppression(to)).toHaveLength(1);
      const events = await db.sql.query("select 1 from email_events where send_id = $1::bigint and type = 'bounced'", [sendId]);
      expect(events).toHaveLength(1);

      // The suppression works: the next mail to the address is skipped, not sent.
      const delivered = resend.delivered().filter((m) => m.to.includes(to)).length;
      const { job } = await engine.queue.enqueue({ type: "email.send", tenantId: TENANT, payload: { recipient: to, template_id: "sys_transactional", variables: { title: "Again" } } });
      await waitFor(async () => (await jobState(job.id)) === "completed", { what: "the second send" });
      expect((await engine.queue.get(job.id, TENANT)).result).toMatchObject({ status: "skipped", reason: "suppressed" });
      expect(resend.delivered().filter((m) => m.to.includes(to))).toHaveLength(delivered);
    });

    it("a complaint (webhook-* header names) suppresses and reaches the tenant as email.complained", async () => {
      const hook = await endpoint("/mail-complained", ["email.complained"]);
      const to = `angry-${randomId(3)}@example.com`;
      const { sendId, emailId } = await sendOne(to);
      const res = await postFromResend(resendEvent("email.complained", emailId, to), { prefix: "webhook" });
      expect(res).toMatchObject({ status: 200, json: { status: "recorded" } });
      expect(await recorded(res.id)).toEqual([{ type: "complained", send_id: sendId, tenant_id: TENANT, data: expect.objectContaining({ recipient: to }) }]);
      expect(await suppression(to)).toEqual([{ tenant_id: "*", reason: "complaint" }]);
      await waitFor(() => receiver.on("/mail-complained").length === 1, { what: "the email.complained delivery" });
      expect(verified(hook.secret, receiver.on("/mail-complained")[0]!)).toMatchObject({
        type: "email.complained",
        data: { send_id: sendId, recipient: to, campaign_id: null, provider_message_id: emailId, suppressed: true },
      });
      expect(await dispatchJobs(`evt_resend_${res.id}`)).toEqual([{ endpoint_id: hook.id }]);
      // The bounce endpoint subscribed to email.bounced only: it got nothing new.
      expect(receiver.on("/mail-bounced")).toHaveLength(1);
    });

    it("a soft bounce is recorded and published but suppresses nothing", async () => {
      const to = `full-${randomId(3)}@example.com`;
      const { emailId } = await sendOne(to);
      const res = await postFromResend(resendEvent("email.bounced", emailId, to, { bounce: { type: "Transient", subType: "MailboxFull", message: "mailbox full" } }));
      expect(res).toMatchObject({ status: 200, json: { status: "recorded" } });
      expect((await recorded(res.id))[0]!.data).toMatchObject({ bounce_type: "soft", suppressed: false });
      expect(await suppression(to)).toEqual([]);
    });

    it("refuses what Resend did not sign, records nothing, and never answers 500 for a sender's mistake", async () => {
      const to = `kept-${randomId(3)}@example.com`;
      const { emailId } = await sendOne(to);
      const body = resendEvent("email.bounced", emailId, to, { bounce: { type: "Permanent" } });
      const wrongSecret = await postFromResend(body, { secret: generateSecret() });
      expect(wrongSecret.status).toBe(401);
      expect(wrongSecret.contentType).toBe("application/problem+json");
      expect(wrongSecret.json).toMatchObject({ status: 401, detail: expect.stringContaining("does not verify") });
      const stale = await postFromResend(body, { at: new Date(Date.now() - 10 * 60_000) });
      expect(stale.status).toBe(401);
      expect(stale.json.detail).toContain("timestamp");
      const tampered = await fetch(`${base}/providers/resend/events`, {
        method: "POST",
        headers: (() => {
          const id = `msg_${randomId(12)}`;
          const at = new Date();
          return { "svix-id": id, "svix-timestamp": String(Math.floor(at.getTime() / 1000)), "svix-signature": new Webhook(RESEND_SECRET).sign(id, at, body) };
        })(),
        body: body.replace(emailId, "someone-else"),
      });
      expect(tampered.status).toBe(401);
      const unsigned = await fetch(`${base}/providers/resend/events`, { method: "POST", headers: { "content-type": "application/json" }, body });
      expect(unsigned.status).toBe(401);
      expect(unsigned.headers.get("content-type")).toBe("application/problem+json");
      for (const r of [wrongSecret, stale]) expect(await recorded(r.id)).toEqual([]);
      expect(await suppression(to)).toEqual([]);
      expect(await db.sql.query("select 1 from email_events where type = 'bounced' and data->>'recipient' = $1", [to])).toEqual([]);

      // Signed, but not JSON or not a Resend event: 400, nothing recorded.
      const notJson = await postFromResend("{not json");
      expect(notJson).toMatchObject({ status: 400, contentType: "application/problem+json", json: { status: 400 } });
      const shapeless = await postFromResend(JSON.stringify({ type: "email.bounced", data: {} }));
      expect(shapeless.status).toBe(400);
      expect(shapeless.json.errors).toEqual([{ path: "data.email_id", message: expect.any(String) }]);
      // Types we do not use, and messages we never sent: acknowledged (200) so Resend stops retrying, ignored.
      expect(await postFromResend(resendEvent("email.sent", emailId, to))).toMatchObject({ status: 200, json: { status: "ignored", type: "email.sent" } });
      const unknown = await postFromResend(resendEvent("email.bounced", "4ef9a417-02e9-4d39-ad75-9611e0fcc33c", to));
      expect(unknown).toMatchObject({ status: 200, json: { status: "unknown_message" } });
      expect(await recorded(unknown.id)).toEqual([]);
      expect(await suppression(to)).toEqual([]);
    });

    it("answers 404 (problem+json) where no RESEND_WEBHOOK_SECRET is configured", async () => {
      const apiKeys = new ApiKeys(db.sql, { pepper: PEPPER });
      const bare = createApp({ queue: engine.queue, sql: db.sql, apiKeys });
      const res = await bare.request("/providers/resend/events", { method: "POST", body: "{}" });
      expect(res.status).toBe(404);
      expect(res.headers.get("content-type")).toBe("application/problem+json");
      expect(((await res.json()) as { detail: string }).detail).toContain("RESEND_WEBHOOK_SECRET");
    });
  });

  describe("an endpoint the platform disables", () => {
    let watcher: { id: string; secret: string };
    beforeAll(async () => {
      watcher = await endpoint("/watcher", ["webhook.endpoint.disabled"]);
    });
    const notices = (endpointId: string) =>
      db.sql.query<{ recipient: string; idempotency_key: string; variables: any }>(
        `select payload->>'recipient' as recipient, idempotency_key, payload->'variables' as variables from jobs
         where type = 'email.send' and payload->>'template_id' = 'sys_webhook_disabled' and payload->'variables'->>'endpoint_id' = $1`,
        [endpointId],
      );
    const watcherSaw = (endpointId: string) =>
      receiver.on("/watcher").map((r) => verified(watcher.secret, r)).filter((e) => e.data.endpoint_id === endpointId);

    it("on 410 Gone: disabled, its owner gets sys_webhook_disabled by email, the other endpoint gets webhook.endpoint.disabled", async () => {
      receiver.script.set("/gone", [410]);
      const gone = await endpoint("/gone", ["thing.happened"], "owner@acme.test");
      expect(gone.notify_email).toBe("owner@acme.test");
      const published = await publishEvent(engine.queue, db.sql, { tenantId: TENANT, type: "thing.happened", data: { n: 1 } });
      expect(published.jobIds).toHaveLength(1);
      await waitFor(async () => (await jobState(published.jobIds[0]!)) === "failed", { what: "the 410" });
      const view = await ok("GET", `/v1/webhooks/endpoints/${gone.id}`);
      expect(view).toMatchObject({ status: "disabled", disabled_reason: "the receiver answered 410 Gone", disabled_at: expect.any(String), notify_email: "owner@acme.test" });

      await waitFor(() => watcherSaw(gone.id).length === 1, { what: "webhook.endpoint.disabled at the other endpoint" });
      expect(watcherSaw(gone.id)[0]).toMatchObject({
        type: "webhook.endpoint.disabled",
        data: { endpoint_id: gone.id, url: `${receiver.url}/gone`, reason: "the receiver answered 410 Gone", disabled_at: view.disabled_at },
      });
      // The disabled endpoint itself heard nothing more than the one event it refused.
      expect(receiver.on("/gone")).toHaveLength(1);

      const jobs = await notices(gone.id);
      expect(jobs).toEqual([
        {
          recipient: "owner@acme.test",
          idempotency_key: `webhook-disabled:${gone.id}_${new Date(view.disabled_at).getTime()}`,
          variables: { endpoint_id: gone.id, endpoint_url: `${receiver.url}/gone`, reason: "the receiver answered 410 Gone", disabled_at: view.disabled_at },
        },
      ]);
      const mail = (await waitFor(() => {
        const m = resend.delivered().filter((d) => d.to.includes("owner@acme.test"));
        return m.length > 0 ? m : null;
      }, { what: "the owner's email" }))!;
      expect(mail).toHaveLength(1);
      expect(mail[0]!.subject).toBe(`Webhook endpoint disabled: ${receiver.url}/gone`);
      expect(mail[0]!.text).toContain("the receiver answered 410 Gone");
      // The ledger records the send right after the provider's answer.
      await waitFor(async () => (await db.sql.query("select 1 from email_sends where recipient = 'owner@acme.test' and status = 'sent'")).length === 1, {
        what: "the notice in the send ledger",
      });
      expect(await db.sql.query("select status from email_sends where recipient = 'owner@acme.test'")).toEqual([{ status: "sent" }]);
    });

    it("after failing for days: disabled; an endpoint without notify_email gets only the event", async () => {
      receiver.script.set("/down", [503]);
      const down = await endpoint("/down", ["thing.happened"]);
      // The owner address is checked: a bad one is a 422 naming the field, and nothing changes.
      const bad = await api("PATCH", `/v1/webhooks/endpoints/${down.id}`, { notify_email: "not an address" });
      expect(bad.status).toBe(422);
      expect(bad.json.errors.map((e: { path: string }) => e.path)).toEqual(["notify_email"]);
      expect((await api("PATCH", `/v1/webhooks/endpoints/${down.id}`, {})).status).toBe(422);
      expect((await ok("PATCH", `/v1/webhooks/endpoints/${down.id}`, { notify_email: "ops@acme.test" })).notify_email).toBe("ops@acme.test");
      expect((await ok("PATCH", `/v1/webhooks/endpoints/${down.id}`, { notify_email: null })).notify_email).toBeNull();
      expect((await ok("PATCH", `/v1/webhooks/endpoints/${down.id}`, { event_types: ["thing.happened", "other.thing"] })).event_types).toEqual(["thing.happened", "other.thing"]);
      const badType = await api("PATCH", `/v1/webhooks/endpoints/${down.id}`, { event_types: ["Not Valid"] });
      expect(badType.status).toBe(422);
      expect(badType.json.errors.map((e: { path: string }) => e.path)).toEqual(["event_types.0"]);
      expect((await api("PATCH", "/v1/webhooks/endpoints/whe_nope", { notify_email: null })).status).toBe(404);

      await db.sql.query("update webhook_endpoints set failing_since = now() - interval '6 days' where id = $1", [down.id]);
      const published = await publishEvent(engine.queue, db.sql, { tenantId: TENANT, type: "thing.happened", data: { n: 2 } });
      expect(published.jobIds).toHaveLength(1); // /gone is disabled: only /down gets it
      await waitFor(async () => (await jobState(published.jobIds[0]!)) === "failed", { what: "the give-up" });
      expect(await ok("GET", `/v1/webhooks/endpoints/${down.id}`)).toMatchObject({ status: "disabled", disabled_reason: "failing continuously for more than 5 days" });
      await waitFor(() => watcherSaw(down.id).length === 1, { what: "webhook.endpoint.disabled" });
      expect(watcherSaw(down.id)[0]!.data.reason).toBe("failing continuously for more than 5 days");
      expect(await notices(down.id)).toEqual([]);
    });

    it("two deliveries giving up on the same endpoint at once make one disable and one notice", async () => {
      const racing = await endpoint("/racing", ["thing.happened"], "race@acme.test");
      const deps = { sql: db.sql, clock: engine.clock, logger: silentLogger, queue: engine.queue };
      const moved = await Promise.all([
        autoDisableEndpoint(deps, TENANT, racing.id, "the receiver answered 410 Gone"),
        autoDisableEndpoint(deps, TENANT, racing.id, "the receiver answered 410 Gone"),
      ]);
      expect(moved.sort()).toEqual([false, true]);
      expect(await notices(racing.id)).toHaveLength(1);
      const events = await db.sql.query(
        "select payload->>'endpoint_id' as endpoint_id from jobs where type = 'webhook.dispatch' and payload->>'event_type' = 'webhook.endpoint.disabled' and payload->'data'->>'endpoint_id' = $1",
        [racing.id],
      );
      expect(events).toEqual([{ endpoint_id: watcher.id }]);
      // Disabling again (already disabled) tells nobody.
      expect(await autoDisableEndpoint(deps, TENANT, racing.id, "again")).toBe(false);
      expect(await notices(racing.id)).toHaveLength(1);
    });
  });
});

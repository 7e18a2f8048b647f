/**
 * What engagement and delivery reports become (issue 16), on real Postgres and the real engine,
 * mail through a Resend mock (so each send has Resend's message id):
 * - Resend's email.delivered / email.delivery_delayed, signed and posted as Resend does (twice:
 *   Resend retries), recorded once each on the right send, counted in the campaign's stats,
 *   published once to the tenant's webhooks; a message id we never sent, or asked for within
 *   another tenant, records nothing.
 * - Segments on last_opened_at / last_clicked_at: "within 30 days" selects exactly the contacts
 *   a person opened for (machine opens never count: engagement-buffer.ts writes last_opened_at
 *   for human hits only), "never" the others; bad filters are 422s naming the field.
 * - The campaign_engagement export: its CSV's rows are the recorded hits, formula cells escaped,
 *   through keyset pages of 2 rows; another tenant's campaign is a 404.
 *
 * Hits go through the EngagementBuffer with an injected clock a minute past the sends (the
 * delivery-window rule would otherwise call them machines), and are written by stop(): no timing.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Webhook } from "standardwebhooks";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ApiKeys } from "../shared/api/api-keys";
import { createApp } from "../shared/api/app";
import { recordDeliveryEvent } from "../shared/email/delivery-events";
import { EngagementBuffer } from "../shared/email/engagement-buffer";
import { createResendMailer } from "../shared/email/providers/resend";
import { createEmailServices } from "../shared/email/services";
import { ENGAGEMENT_COLUMNS } from "../shared/exports/exporter";
import { ExportLinks } from "../shared/exports/links";
import { silentLogger } from "../shared/ports";
import { generateSecret } from "../shared/webhooks/signature";
import { startResendMock, type ResendMock } from "../tools/resend-mock-server";
import { createHandlers } from "../workers/handlers";
import { createLocalStorage } from "../workers/node/local-storage";
import { jsonApi } from "./support/api";
import { createHarness, type Harness } from "./support/engine";
import { randomId, waitFor } from "./support/services";

const PEPPER = "engagement-reports-pepper-0123456789";
const RESEND_SECRET = generateSecret();
const A = "acme";
const B = "globex";
const SHOP = "https://shop.acme.test/sale?utm=mail";
const UA = {
  chrome: "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36",
  appleProxy: "Mozilla/5.0",
  mimecast: "Mimecast-URL-Protect/1.0",
};
/** Acme's contacts; "+ada" makes a recipient cell that a spreadsheet would take for a formula. */
const PEOPLE = ["c0", "c1", "c2", "c3", "+ada", "c5"].map((p) => `${p}@example.com`);

describe("engagement reports", () => {
  let h: Harness;
  let resend: ResendMock;
  let app: ReturnType<typeof createApp>;
  let folder: string;
  const keys: Record<string, string> = {};
  let listId: string;
  let templateId: string;
  let campA: string;
  let campB: string;
  const sends = new Map<string, { id: string; provider_message_id: string; contact_id: string }>();

  beforeAll(async () => {
    h = await createHarness("postgres", "engagement_reports");
    resend = await startResendMock({ apiKey: "re_test_reports" });
    folder = await mkdtemp(join(tmpdir(), "pm-engagement-reports-"));
    const storage = createLocalStorage(folder);
    const links = new ExportLinks(PEPPER, "http://jobs.test");
    const mail = createEmailServices({
      sql: h.sql,
      redisPrefix: "unused:",
      clock: h.engine.clock,
      mailers: [createResendMailer({ apiKey: "re_test_reports", baseUrl: resend.url })],
      defaultFrom: "Platform <no-reply@platform.test>",
      publicUrl: "http://jobs.test",
      unsubscribeSecret: PEPPER,
    });
    const handlers = createHandlers({
      sql: h.sql,
      clock: h.engine.clock,
      email: { queue: h.engine.queue, logger: silentLogger, send: mail.send },
      exports: { storage, queue: h.engine.queue, links, pageSize: 2 },
    });
    h.pool(handlers.filter((x) => x.type === "email.send"), { concurrency: 10, name: "email" }).start();
    h.pool(handlers.filter((x) => x.type === "campaign.process"), { concurrency: 2, name: "default" }).start();
    h.pool(handlers.filter((x) => x.type === "export.data"), { concurrency: 1, name: "import" }).start();
    const apiKeys = new ApiKeys(h.sql, { pepper: PEPPER });
    for (const t of [A, B]) keys[t] = (await apiKeys.create({ tenantId: t, admin: false, name: t })).key;
    await h.sql.query("insert into tenants (id, name, settings) values ($1, 'Acme', '{}'), ($2, 'Globex', '{}')", [A, B]);
    // Acme's endpoint for the delivery events (its deliveries are not run here: the job is the event).
    await h.sql.query(
      "insert into webhook_endpoints (id, tenant_id, url, event_types, secret) values ('whe_reports', $1, 'https://hooks.example.com/x', '{email.delivered,email.delivery_delayed}', 'whsec_dGVzdA==')",
      [A],
    );
    app = createApp({ queue: h.engine.queue, sql: h.sql, apiKeys, resendWebhookSecret: RESEND_SECRET, exports: { storage, links, clock: h.engine.clock } });

    const ok = api(A).ok;
    listId = (await ok("POST", "/v1/lists", { name: "people" })).id;
    await ok("POST", "/v1/contacts", { list_id: listId, contacts: PEOPLE.map((email) => ({ email })) });
    templateId = (await ok("POST", "/v1/templates", { name: "Sale", subject: "Sale", blocks: [{ type: "button", text: "Shop", href: SHOP }] })).id;
    campA = await sendCampaign(A, { list_id: listId });
    for (const s of await h.sql.query<{ id: string; recipient: string; provider_message_id: string; contact_id: string }>(
      "select id::text, recipient, provider_message_id, contact_id::text from email_sends where tenant_id = $1 and campaign_id = $2",
      [A, campA],
    )) {
      sends.set(s.recipient, s);
    }
    expect([...sends.keys()].sort()).toEqual([...PEOPLE].sort());
    const bList = (await api(B).ok("POST", "/v1/lists", { name: "b" })).id;
    await api(B).ok("POST", "/v1/contacts", { list_id: bList, contacts: [{ email: "b0@example.com" }] });
    const bTemplate = (await api(B).ok("POST", "/v1/templates", { name: "B", subject: "B", blocks: [{ type: "text", text: "Hi" }] })).id;
    campB = await sendCampaign(B, { list_id: bList }, bTemplate);
  }, 120_000);

  afterAll(async () => {
    await h?.close();
    await resend?.close();
    if (folder) await rm(folder, { recursive: true, force: true });
  });

  const api = (tenant: string) => jsonApi((p, init) => app.request(p, init), keys[tenant]!);

  /** A campaign started and waited for until it is sent. */
  async function sendCampaign(tenant: string, audience: { list_id: string } | { segment_id: string }, template = templateId): Promise<string> {
    const ok = api(tenant).ok;
    const c = await ok("POST", "/v1/campaigns", { name: `c-${randomId(3)}`, template_id: template, ...audience, tracking: { opens: true } });
    await ok("POST", `/v1/campaigns/${c.id}/start`);
    await waitFor(async () => ((await ok("GET", `/v1/campaigns/${c.id}`)).status === "sent" ? true : null), { timeoutMs: 60_000, what: `${c.id} sent` });
    return c.id as string;
  }

  /** Resend's event, signed with the webhook's secret and posted as Resend does (the same svix-id on a retry). */
  async function postResend(svixId: string, type: string, emailId: string) {
    const at = new Date();
    const body = JSON.stringify({ type, created_at: at.toISOString(), data: { email_id: emailId, to: ["x@example.com"] } });
    const res = await app.request("/providers/resend/events", {
      method: "POST",
      headers: {
        "content-type": "application/json",
        "svix-id": svixId,
        "svix-timestamp": String(Math.floor(at.getTime() / 1000)),
        "svix-signature": new Webhook(RESEND_SECRET).sign(svixId, at, body),
      },
      body,
    });
    expect(res.status).toBe(200);
    return (await res.json()) as { status: string };
  }

  const deliveryEvents = (tenant: string) =>
    h.sql.query<{ type: string; send_id: string; provider_event_id: string }>(
      "select type, send_id::text, provider_event_id from email_events where tenant_id = $1 and type in ('delivered', 'delivery_delayed') order by id",
      [tenant],
    );
  const deliveryJobs = (tenant: string) =>
    h.sql.query<{ event_type: string; event_id: string; send_id: string }>(
      `select payload->>'event_type' as event_type, payload->>'event_id' as event_id, payload->'data'->>'send_id' as send_id
       from jobs where type = 'webhook.dispatch' and tenant_id = $1 and payload->>'event_type' like 'email.deliver%' order by id`,
      [tenant],
    );

  it("records Resend's delivered and delayed reports once each, counts them in the stats and publishes each once", async () => {
    const s0 = sends.get(PEOPLE[0]!)!;
    const s1 = sends.get(PEOPLE[1]!)!;
    expect((await api(A).ok("GET", `/v1/campaigns/${campA}/stats`)).delivered).toBe(0);
    // Each report twice, as Resend retries it: recorded, then a duplicate.
    for (const [id, type, send] of [
      ["msg_delivered_0", "email.delivered", s0],
      ["msg_delayed_1", "email.delivery_delayed", s1],
      ["msg_delivered_1", "email.delivered", s1],
    ] as const) {
      expect(await postResend(id, type, send.provider_message_id)).toEqual({ status: "recorded" });
      expect(await postResend(id, type, send.provider_message_id)).toEqual({ status: "duplicate" });
    }
    expect(await deliveryEvents(A)).toEqual([
      { type: "delivered", send_id: s0.id, provider_event_id: "resend:msg_delivered_0" },
      { type: "delivery_delayed", send_id: s1.id, provider_event_id: "resend:msg_delayed_1" },
      { type: "delivered", send_id: s1.id, provider_event_id: "resend:msg_delivered_1" },
    ]);
    const stats = await api(A).ok("GET", `/v1/campaigns/${campA}/stats`);
    expect(stats).toMatchObject({ sent: PEOPLE.length, delivered: 2, bounced: 0 });
    expect(await deliveryJobs(A)).toEqual([
      { event_type: "email.delivered", event_id: "evt_resend_msg_delivered_0", send_id: s0.id },
      { event_type: "email.delivery_delayed", event_id: "evt_resend_msg_delayed_1", send_id: s1.id },
      { event_type: "email.delivered", event_id: "evt_resend_msg_delivered_1", send_id: s1.id },
    ]);
    const [job] = await h.sql.query<{ data: Record<string, unknown> }>(
      "select payload->'data' as data from jobs where type = 'webhook.dispatch' and payload->>'event_id' = 'evt_resend_msg_delivered_0'",
    );
    expect(job!.data).toMatchObject({ send_id: s0.id, recipient: PEOPLE[0], campaign_id: campA, contact_id: s0.contact_id, provider: "resend", provider_message_id: s0.provider_message_id });
  });

  it("a message id we never sent records nothing; another tenant's message is that tenant's and never the asker's", async () => {
    const before = { a: await deliveryEvents(A), jobs: await deliveryJobs(A) };
    expect(await postResend("msg_unknown", "email.delivered", "re_never_sent_by_us")).toEqual({ status: "unknown_message" });
    // Asked within acme, globex's message is unknown (as a DSN with acme's key would be).
    const [bSend] = await h.sql.query<{ provider_message_id: string }>("select provider_message_id from email_sends where tenant_id = $1 and campaign_id = $2", [B, campB]);
    const asAcme = await recordDeliveryEvent(
      { sql: h.sql, queue: h.engine.queue, logger: silentLogger },
      { provider: "resend", reportId: "msg_cross", kind: "delivered", send: { providerMessageId: bSend!.provider_message_id, tenantId: A } },
    );
    expect(asAcme).toEqual({ status: "unknown_message" });
    expect((await h.sql.query("select 1 from email_events where provider_event_id in ('resend:msg_unknown', 'resend:msg_cross')")).length).toBe(0);
    // Resend's own report about globex's message is globex's: acme's events, jobs and stats do not move.
    expect(await postResend("msg_globex", "email.delivered", bSend!.provider_message_id)).toEqual({ status: "recorded" });
    expect((await deliveryEvents(B)).map((e) => e.type)).toEqual(["delivered"]);
    expect(await deliveryEvents(A)).toEqual(before.a);
    expect(await deliveryJobs(A)).toEqual(before.jobs);
    expect((await api(A).ok("GET", `/v1/campaigns/${campA}/stats`)).delivered).toBe(2);
    expect((await api(B).ok("GET", `/v1/campaigns/${campB}/stats`)).delivered).toBe(1);
  });

  it("segments on last_opened_at / last_clicked_at: human engagement only, within days or never", async () => {
    // A minute after the sends: past the delivery-window rule, so the clients' User-Agents decide.
    const later = new Date(Date.now() + 60_000);
    const buffer = new EngagementBuffer({ sql: h.sql, clock: { now: () => later }, logger: silentLogger, holdMs: 0 });
    const claim = (email: string) => ({ tenantId: A, campaignId: campA, sendId: sends.get(email)!.id });
    const click = (email: string) => ({ kind: "click" as const, ...claim(email), linkIndex: 0, linkCount: 1, url: SHOP });
    const [c0, c1, c2, c3, ada, c5] = PEOPLE as [string, string, string, string, string, string];
    buffer.record({ kind: "open", ...claim(c0) }, UA.chrome);
    buffer.record(click(c0), UA.chrome);
    buffer.record({ kind: "open", ...claim(c1) }, UA.appleProxy); // Apple's prefetch: a machine
    buffer.record({ kind: "open", ...claim(c2) }, UA.chrome);
    buffer.record(click(c3), UA.mimecast); // a scanner: a machine
    buffer.record({ kind: "open", ...claim(ada) }, UA.chrome);
    buffer.record({ kind: "open", ...claim(ada) }, UA.chrome);
    await buffer.stop();
    expect(buffer.counts).toMatchObject({ written: 7, dropped: 0, failedFlushes: 0 });
    // c5 opened, but 40 days ago: neither "within 30 days" nor "never".
    await h.sql.query("update contacts set last_opened_at = now() - interval '40 days' where tenant_id = $1 and email = $2", [A, c5]);

    const segmentCampaign = async (filters: unknown[]) => {
      const seg = await api(A).ok("POST", "/v1/segments", { name: `s-${randomId(3)}`, list_id: listId, filters });
      expect(seg.filters).toEqual(filters);
      const id = await sendCampaign(A, { segment_id: seg.id });
      const rows = await h.sql.query<{ recipient: string }>("select recipient from email_sends where tenant_id = $1 and campaign_id = $2 order by recipient", [A, id]);
      return rows.map((r) => r.recipient);
    };
    expect(await segmentCampaign([{ field: "last_opened_at", op: "within_days", value: 30 }])).toEqual([ada, c0, c2].sort());
    expect(await segmentCampaign([{ field: "last_opened_at", op: "never" }])).toEqual([c1, c3].sort());
    expect(await segmentCampaign([{ field: "last_opened_at", op: "within_days", value: 60 }])).toEqual([ada, c0, c2, c5].sort());
    expect(await segmentCampaign([{ field: "last_clicked_at", op: "within_days", value: 30 }])).toEqual([c0]);
    // With an attribute-free "never clicked" and "opened within 30": the conditions are and-ed.
    expect(
      await segmentCampaign([
        { field: "last_opened_at", op: "within_days", value: 30 },
        { field: "last_clicked_at", op: "never" },
      ]),
    ).toEqual([ada, c2].sort());
  }, 120_000);

  it("refuses bad engagement filters with a 422 naming the field", async () => {
    const bad: [unknown, string][] = [
      [{ field: "last_opened_at", op: "within_days", value: 0 }, "filters.0.value"],
      [{ field: "last_opened_at", op: "within_days", value: 3_651 }, "filters.0.value"],
      [{ field: "last_opened_at", op: "within_days", value: 1.5 }, "filters.0.value"],
      [{ field: "last_opened_at", op: "within_days", value: "30" }, "filters.0.value"],
      [{ field: "last_opened_at", op: "within_days" }, "filters.0.value"],
      [{ field: "last_bounced_at", op: "never" }, "filters.0.field"],
      [{ field: "last_opened_at", op: "before_days", value: 3 }, "filters.0.op"],
      [{ field: "last_opened_at", op: "never", value: 3 }, "filters.0"],
      [{ attribute: "plan", op: "within_days", value: 3 }, "filters.0"],
    ];
    for (const [filter, path] of bad) {
      const res = await api(A).call("POST", "/v1/segments", { name: "bad", list_id: listId, filters: [filter] });
      expect(res.status, JSON.stringify(filter)).toBe(422);
      const paths = (res.json.errors as { path: string }[]).map((e) => e.path);
      expect(paths.some((p) => p === path || p.startsWith(`${path}.`)), `${JSON.stringify(filter)} → ${JSON.stringify(paths)}`).toBe(true);
    }
  });

  it("exports a campaign's engagement: the CSV's rows are the recorded hits, formula cells escaped; another tenant's campaign is a 404", async () => {
    const created = await api(A).call("POST", "/v1/exports", { source: "campaign_engagement", campaign_id: campA });
    expect(created.status).toBe(202);
    const view = await waitFor(
      async () => {
        const v = (await api(A).call("GET", `/v1/exports/${created.json.id}`)).json;
        if (v.status === "failed") throw new Error(`export failed: ${v.error}`);
        return v.status === "ready" ? v : null;
      },
      { timeoutMs: 60_000, what: "the engagement export" },
    );
    const hits = await h.sql.query<{ id: string; kind: string; send_id: string; recipient: string; link_index: number | null; machine: boolean; at: Date }>(
      `select e.id::text, e.kind, e.send_id::text, s.recipient, e.link_index, e.machine, e.at
       from email_engagement e join email_sends s on s.id = e.send_id where e.tenant_id = $1 and e.campaign_id = $2 order by e.id`,
      [A, campA],
    );
    expect(hits.length).toBe(7);
    expect(view).toMatchObject({ source: "campaign_engagement", source_id: campA, rows: 7 });
    const res = await app.request(new URL(view.download_url).pathname);
    expect(res.status).toBe(200);
    const lines = (await res.text()).split("\r\n");
    expect(lines.pop()).toBe("");
    expect(lines[0]).toBe(ENGAGEMENT_COLUMNS.join(","));
    const escape = (cell: string) => (/^[=+\-@]/.test(cell) ? `'${cell}` : cell);
    expect(lines.slice(1)).toEqual(
      hits.map((e) => [e.id, e.kind, e.send_id, escape(e.recipient), e.link_index ?? "", e.kind === "click" ? SHOP : "", e.machine, e.at.toISOString()].join(",")),
    );
    expect(lines.filter((l) => l.includes(",'+ada@example.com,")).length).toBe(2);
    expect(lines.filter((l) => l.endsWith("true") || l.includes(",true,")).length).toBe(2); // Apple's prefetch and the scanner

    // Globex cannot export acme's campaign, nor read acme's export.
    expect((await api(B).call("POST", "/v1/exports", { source: "campaign_engagement", campaign_id: campA })).status).toBe(404);
    expect((await api(B).call("GET", `/v1/exports/${created.json.id}`)).status).toBe(404);
  }, 120_000);
});

/**
 * Engagement tracking end to end, on real Postgres and the real engine: a 1,000-recipient
 * campaign through an SMTP sink (smtp-server, the real SMTP mailer), then a script that reads
 * the tracked links and pixels out of the delivered messages and follows a sample of them as
 * clients would (browsers opening twice, Apple's MPP prefetch, Gmail's image proxy, a named
 * scanner, a scanner fetching every link of a message at once, hits right at delivery). The
 * report (GET /v1/campaigns/:id/stats) must match the script's own counts exactly, people and
 * machines apart; the webhooks and contacts must show each message's first human open/click
 * once. Then the refusals: tampered, cut, re-sealed and made-up tokens are a 404, record
 * nothing and redirect nowhere (fast-check); the unsubscribe link, mailto: and tel: are never
 * rewritten; opens are off by default.
 *
 * Time is the test's: the hits' clock is injected and sent_at is read from the ledger, so the
 * delivery-window and burst rules are decided by the script, not by how fast the machine is.
 */
import type { AddressInfo } from "node:net";
import fc from "fast-check";
import { SMTPServer } from "smtp-server";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ApiKeys } from "../shared/api/api-keys";
import { createApp } from "../shared/api/app";
import { PIXEL_GIF } from "../shared/api/tracking-routes";
import { EngagementBuffer } from "../shared/email/engagement-buffer";
import { createEmailServices } from "../shared/email/services";
import { type TrackingClaim, TrackingTokens } from "../shared/email/tracking-tokens";
import { silentLogger } from "../shared/ports";
import { createEngine, type Engine } from "../shared/queue/engine";
import { WorkerPool } from "../shared/queue/worker";
import { createHandlers } from "../workers/handlers";
import { createSmtpMailer, type SmtpMailer } from "../workers/node/smtp";
import { jsonApi } from "./support/api";
import { fastCatalog } from "./support/engine";
import { createTestDatabase, randomId, waitFor } from "./support/services";

const PEPPER = "engagement-test-pepper-0123456789";
const PUBLIC = "http://jobs.test";
const RECIPIENTS = 1_000;
const SAMPLE = 300;
const SHOP = "https://shop.acme.test/sale?utm=mail&x=1";
const BLOG = "https://acme.test/blog?a=1&b=2";
const UA = {
  chrome: "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36",
  safari: "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_1) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Safari/605.1.15",
  appleProxy: "Mozilla/5.0",
  gmailProxy: "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)",
  mimecast: "Mimecast-URL-Protect/1.0",
};

/** The SMTP sink: every delivered message, raw, by recipient. */
async function startSink() {
  const received = new Map<string, string>();
  const server = new SMTPServer({
    authOptional: true,
    disabledCommands: ["STARTTLS"],
    logger: false,
    onData(stream, session, callback) {
      const chunks: Buffer[] = [];
      stream.on("data", (c: Buffer) => chunks.push(c));
      stream.on("end", () => {
        for (const r of session.envelope.rcptTo) received.set(r.address.toLowerCase(), Buffer.concat(chunks).toString("utf8"));
        callback();
      });
    },
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  return { port: (server.server.address() as AddressInfo).port, received, close: () => new Promise<void>((r) => server.close(() => r())) };
}

/** A raw message's parts as text: quoted-printable undone (nodemailer's encoding for ASCII mail). */
function decodedParts(raw: string): { html: string; text: string; listUnsubscribe: string } {
  const unfolded = raw.replace(/\r\n/g, "\n");
  const qp = (s: string) => s.replace(/=\n/g, "").replace(/=([0-9A-F]{2})/g, (_, h: string) => String.fromCharCode(Number.parseInt(h, 16)));
  const boundary = /boundary="([^"]+)"/.exec(unfolded)![1]!;
  const parts = unfolded.split(`--${boundary}`);
  const part = (type: string) => {
    const p = parts.find((x) => x.includes(`Content-Type: ${type}`));
    return p ? qp(p.slice(p.indexOf("\n\n") + 2).replace(/\n$/, "")) : "";
  };
  const header = /^List-Unsubscribe: <([^>]+)>/m.exec(unfolded.replace(/\n[ \t]+/g, " "));
  return { html: part("text/html"), text: part("text/plain"), listUnsubscribe: header?.[1] ?? "" };
}

const TRACKED = /http:\/\/jobs\.test\/([co])\/(t1\.[A-Za-z0-9_-]+)/g;
const tokensIn = (s: string, kind: "c" | "o") => [...new Set([...s.matchAll(TRACKED)].filter((m) => m[1] === kind).map((m) => m[2]!))];

describe("engagement tracking", () => {
  let db: Awaited<ReturnType<typeof createTestDatabase>>;
  let sink: Awaited<ReturnType<typeof startSink>>;
  let engine: Engine;
  let pools: WorkerPool[];
  let mailer: SmtpMailer;
  let buffer: EngagementBuffer;
  let tokens: TrackingTokens;
  let app: ReturnType<typeof createApp>;
  let hitMs = Date.parse("2026-12-04T12:00:00Z");
  const keys = { acme: "", globex: "" };
  const tag = randomId(3);

  beforeAll(async () => {
    db = await createTestDatabase("engagement");
    sink = await startSink();
    engine = createEngine({ sql: db.sql, catalog: fastCatalog({ maxAttempts: 5 }) });
    await engine.dispatcher.start();
    mailer = createSmtpMailer(`smtp://127.0.0.1:${sink.port}`);
    const mail = createEmailServices({
      sql: db.sql,
      redisPrefix: "unused:",
      clock: engine.clock,
      mailers: [mailer],
      defaultFrom: "Acme <news@acme.test>",
      publicUrl: PUBLIC,
      unsubscribeSecret: PEPPER,
    });
    tokens = mail.tracking;
    const handlers = createHandlers({ sql: db.sql, clock: engine.clock, email: { queue: engine.queue, logger: silentLogger, send: mail.send } });
    pools = [
      new WorkerPool({ name: "email", handlers: handlers.filter((h) => h.type === "email.send"), concurrency: 20, queue: engine.queue, stats: engine.stats, workerId: "eng-mail", idleWaitMs: 100 }),
      new WorkerPool({ name: "default", handlers: handlers.filter((h) => h.type === "campaign.process"), concurrency: 2, queue: engine.queue, stats: engine.stats, workerId: "eng-fanout", idleWaitMs: 100 }),
    ];
    for (const p of pools) p.start();
    // The hits' clock is the test's; the buffer is flushed by hand (no timer), as its tick would.
    buffer = new EngagementBuffer({ sql: db.sql, clock: { now: () => new Date(hitMs) }, logger: silentLogger, queue: engine.queue });
    const apiKeys = new ApiKeys(db.sql, { pepper: PEPPER });
    keys.acme = (await apiKeys.create({ tenantId: "acme", admin: false, name: "acme" })).key;
    keys.globex = (await apiKeys.create({ tenantId: "globex", admin: false, name: "globex" })).key;
    await db.sql.query("insert into tenants (id, name, settings) values ('acme', 'Acme', $1), ('globex', 'Globex', '{}')", [JSON.stringify({ tracking: { opens: true } })]);
    // Acme's endpoint for the engagement events: its webhook.dispatch jobs are what was published.
    await db.sql.query(
      "insert into webhook_endpoints (id, tenant_id, url, event_types, secret) values ('whe_eng', 'acme', 'https://hooks.example.com/e', '{email.opened,email.clicked}', 'whsec_test')",
    );
    app = createApp({ queue: engine.queue, sql: db.sql, apiKeys, unsubscribe: mail.unsubscribe, tracking: { tokens, sink: buffer } });
  }, 60_000);

  afterAll(async () => {
    for (const p of pools ?? []) await p.stop(2_000);
    await mailer?.close();
    await engine?.dispatcher.close();
    await sink?.close();
    await db?.drop();
  });

  const api = (tenant: keyof typeof keys) => jsonApi((p, init) => app.request(p, init), keys[tenant]);

  async function sendCampaign(tenant: keyof typeof keys, name: string, n: number, tracking?: Record<string, unknown>) {
    const ok = api(tenant).ok;
    const list = await ok("POST", "/v1/lists", { name });
    for (let i = 0; i < n; i += 1_000) {
      const contacts = Array.from({ length: Math.min(1_000, n - i) }, (_, k) => ({ email: `${name}-${i + k}@example.org` }));
      await ok("POST", "/v1/contacts", { list_id: list.id, contacts });
    }
    const template = await ok("POST", "/v1/templates", {
      name,
      subject: "Sale",
      blocks: [
        { type: "heading", text: "Hello {{name | friend}}" },
        { type: "text", text: `Read ${BLOG}.` },
        { type: "button", text: "Shop", href: SHOP },
        { type: "button", text: "Write to us", href: "mailto:hi@acme.test" },
        { type: "button", text: "Call us", href: "tel:+15550100" },
      ],
    });
    const campaign = await ok("POST", "/v1/campaigns", { name, template_id: template.id, list_id: list.id, ...(tracking ? { tracking } : {}) });
    await ok("POST", `/v1/campaigns/${campaign.id}/start`);
    await waitFor(async () => ((await ok("GET", `/v1/campaigns/${campaign.id}`)).status === "sent" ? true : null), { timeoutMs: 120_000, what: `${name} sent` });
    const sends = await db.sql.query<{ id: string; recipient: string; sent_at: Date }>(
      "select id::text, recipient, sent_at from email_sends where tenant_id = $1 and campaign_id = $2 order by id",
      [tenant, campaign.id],
    );
    return { id: campaign.id as string, sends, message: (recipient: string) => decodedParts(sink.received.get(recipient.toLowerCase())!) };
  }

  const hit = (path: string, ua: string | undefined) => app.request(path, { headers: ua === undefined ? {} : { "user-agent": ua } });
  const engagementRows = async () => (await db.sql.query<{ n: number }>("select count(*)::int as n from email_engagement"))[0]!.n;

  let acme: Awaited<ReturnType<typeof sendCampaign>>;

  it("rewrites the campaign's http(s) links and adds the pixel; never the unsubscribe link, mailto: or tel:", async () => {
    acme = await sendCampaign("acme", `acme${tag}`, RECIPIENTS);
    expect(acme.sends).toHaveLength(RECIPIENTS);
    expect(sink.received.size).toBeGreaterThanOrEqual(RECIPIENTS);
    for (const s of acme.sends) {
      const m = acme.message(s.recipient);
      expect(m.html).not.toContain("shop.acme.test");
      expect(m.text).not.toContain(BLOG);
      expect(m.text).not.toContain("shop.acme.test");
      expect(m.html).toContain('href="mailto:hi@acme.test"');
      expect(m.html).toContain('href="tel:+15550100"');
      // The unsubscribe link stays ours, direct, and the same as the header's.
      expect(m.listUnsubscribe).toMatch(/^http:\/\/jobs\.test\/u\/v2\./);
      expect(m.html).toContain(`href="${m.listUnsubscribe}"`);
      expect(m.text).toContain(m.listUnsubscribe);
      const clicks = tokensIn(m.html + m.text, "c");
      expect(clicks).toHaveLength(2); // the button (HTML and text) and the text part's URL
      expect(tokensIn(m.html, "o")).toHaveLength(1);
      expect(m.html).toMatch(/<img src="http:\/\/jobs\.test\/o\/t1\.[A-Za-z0-9_-]+" width="1" height="1"/);
      // Nothing readable: neither the address nor the campaign id, in any token.
      for (const t of [...clicks, ...tokensIn(m.html, "o")]) {
        expect(t).not.toContain(s.recipient.split("@")[0]);
        expect(t).not.toContain(acme.id);
      }
      const claims = await Promise.all(clicks.map((t) => tokens.verify(t)));
      expect(claims.map((c) => (c as Extract<TrackingClaim, { kind: "click" }>).url).sort()).toEqual([BLOG, SHOP].sort());
      expect(claims.every((c) => c?.sendId === s.id && c.tenantId === "acme" && c.campaignId === acme.id)).toBe(true);
    }
  }, 180_000);

  it("follows a sample like real clients: the report matches the script's own counts, unique per message, machines apart", async () => {
    const expected = {
      opens: { human: 0, machine: 0, humanSends: new Set<string>(), machineSends: new Set<string>() },
      clicks: { human: 0, machine: 0, humanSends: new Set<string>(), machineSends: new Set<string>() },
      links: new Map<string, { human: number; machine: number; humanSends: Set<string> }>([
        [SHOP, { human: 0, machine: 0, humanSends: new Set() }],
        [BLOG, { human: 0, machine: 0, humanSends: new Set() }],
      ]),
      minutes: new Map<string, { opens: number; clicks: number; machine_opens: number; machine_clicks: number }>(),
    };
    const allowed = new Set([SHOP, BLOG]);
    const tally = (kind: "opens" | "clicks", sendId: string, machine: boolean, url?: string) => {
      const k = expected[kind];
      if (machine) (k.machine++, k.machineSends.add(sendId));
      else (k.human++, k.humanSends.add(sendId));
      if (url) {
        const l = expected.links.get(url)!;
        if (machine) l.machine++;
        else (l.human++, l.humanSends.add(sendId));
      }
      const minute = new Date(Math.floor(hitMs / 60_000) * 60_000).toISOString();
      const b = expected.minutes.get(minute) ?? { opens: 0, clicks: 0, machine_opens: 0, machine_clicks: 0 };
      const field = kind === "opens" ? (machine ? "machine_opens" : "opens") : machine ? "machine_clicks" : "clicks";
      b[field]++;
      expected.minutes.set(minute, b);
    };
    const open = async (sendId: string, pixel: string, ua: string, machine: boolean) => {
      const res = await hit(`/o/${pixel}`, ua);
      expect(res.status).toBe(200);
      tally("opens", sendId, machine);
    };
    const click = async (sendId: string, token: string, ua: string, machine: boolean) => {
      const res = await hit(`/c/${token}`, ua);
      expect(res.status).toBe(302);
      const to = res.headers.get("location")!;
      expect(allowed.has(to)).toBe(true);
      tally("clicks", sendId, machine, to);
      return to;
    };

    // The pixel itself, on a message outside the sample: 43 bytes of GIF, never cached; a person's open.
    const probe = acme.sends[SAMPLE + 1]!;
    hitMs = new Date(probe.sent_at).getTime() + 3_600_000;
    const pixelRes = await hit(`/o/${tokensIn(acme.message(probe.recipient).html, "o")[0]}`, UA.chrome);
    expect(pixelRes.status).toBe(200);
    expect(pixelRes.headers.get("content-type")).toBe("image/gif");
    expect(pixelRes.headers.get("cache-control")).toContain("no-store");
    expect(new Uint8Array(await pixelRes.arrayBuffer())).toEqual(PIXEL_GIF);
    expect(PIXEL_GIF.length).toBe(43);
    tally("opens", probe.id, false);

    // Each message's hits start an hour after its delivery (sent_at from the ledger), unless the case is "at delivery".
    for (let i = 0; i < SAMPLE; i++) {
      const s = acme.sends[i]!;
      const m = acme.message(s.recipient);
      const pixel = tokensIn(m.html, "o")[0]!;
      const byUrl = new Map<string, string>();
      for (const t of tokensIn(m.html + m.text, "c")) byUrl.set(((await tokens.verify(t)) as Extract<TrackingClaim, { kind: "click" }>).url, t);
      const delivered = new Date(s.sent_at).getTime();
      hitMs = delivered + 3_600_000 + i * 1_000;
      switch (i % 6) {
        case 0: // a person in a browser: opens twice, clicks the button once
          await open(s.id, pixel, UA.chrome, false);
          hitMs += 30_000;
          await open(s.id, pixel, UA.chrome, false);
          await click(s.id, byUrl.get(SHOP)!, UA.chrome, false);
          break;
        case 1: // a scanner with a browser's UA fetching every link at once: all machine
          await click(s.id, byUrl.get(SHOP)!, UA.chrome, true);
          hitMs += 150;
          await click(s.id, byUrl.get(BLOG)!, UA.chrome, true);
          break;
        case 2: // Apple MPP prefetch (bare "Mozilla/5.0"), then the person in Mail
          await open(s.id, pixel, UA.appleProxy, true);
          hitMs += 120_000;
          await open(s.id, pixel, UA.safari, false);
          break;
        case 3: // Gmail's image proxy is a person's open; the blog link twice, minutes apart
          await open(s.id, pixel, UA.gmailProxy, false);
          await click(s.id, byUrl.get(BLOG)!, UA.safari, false);
          hitMs += 300_000;
          await click(s.id, byUrl.get(BLOG)!, UA.safari, false);
          break;
        case 4: // a named gateway scanner, then the person
          await click(s.id, byUrl.get(SHOP)!, UA.mimecast, true);
          hitMs += 60_000;
          await click(s.id, byUrl.get(SHOP)!, UA.safari, false);
          await open(s.id, pixel, UA.safari, false);
          break;
        case 5: // fetched right at delivery (within 2 s): a machine whatever its UA, then both links slowly by a person
          hitMs = delivered + 500;
          await open(s.id, pixel, UA.chrome, true);
          hitMs = delivered + 7_200_000;
          await click(s.id, byUrl.get(SHOP)!, UA.chrome, false);
          hitMs += 10_000;
          await click(s.id, byUrl.get(BLOG)!, UA.chrome, false);
          break;
      }
      // Flushed every 50 messages: first opens of earlier flushes must stay the first.
      if (i % 50 === 49) await buffer.flush({ all: true });
    }
    await buffer.flush({ all: true });
    expect(buffer.pending).toBe(0);
    expect(buffer.counts.dropped).toBe(0);
    // One statement a flush of up to 2,000 hits: 6 flushes here.
    expect(buffer.counts.statements).toBeLessThanOrEqual(Math.ceil(buffer.counts.written / 50) + 2);

    const stats = await api("acme").ok("GET", `/v1/campaigns/${acme.id}/stats`);
    expect(stats).toMatchObject({
      campaign_id: acme.id,
      sent: RECIPIENTS,
      delivered: 0,
      bounced: 0,
      complained: 0,
      unsubscribed: 0,
      opens: {
        unique: expected.opens.humanSends.size,
        total: expected.opens.human,
        machine: { unique: expected.opens.machineSends.size, total: expected.opens.machine },
      },
      clicks: {
        unique: expected.clicks.humanSends.size,
        total: expected.clicks.human,
        machine: { unique: expected.clicks.machineSends.size, total: expected.clicks.machine },
      },
    });
    const byUrl = new Map((stats.links as { url: string; unique: number; total: number; machine_total: number }[]).map((l) => [l.url, l]));
    expect(byUrl.size).toBe(2);
    for (const [url, l] of expected.links) expect(byUrl.get(url)).toMatchObject({ url, unique: l.humanSends.size, total: l.human, machine_total: l.machine });
    expect(stats.timeline).toEqual([...expected.minutes.entries()].sort(([a], [b]) => a.localeCompare(b)).map(([minute, b]) => ({ minute, ...b })));
    // The sample's shape, so the exact match above is not trivially zero.
    expect(expected.opens.humanSends.size).toBe(201);
    expect(expected.clicks.machineSends.size).toBe(100);

    // Once per message: one email.opened / email.clicked job per message's first human hit.
    const events = await db.sql.query<{ type: string; n: number; sends: number }>(
      `select payload->>'event_type' as type, count(*)::int as n, count(distinct payload->'data'->>'send_id')::int as sends
       from jobs where type = 'webhook.dispatch' and tenant_id = 'acme' group by 1`,
    );
    expect(Object.fromEntries(events.map((e) => [e.type, [e.n, e.sends]]))).toEqual({
      "email.opened": [expected.opens.humanSends.size, expected.opens.humanSends.size],
      "email.clicked": [expected.clicks.humanSends.size, expected.clicks.humanSends.size],
    });
    const [contacts] = await db.sql.query<{ opened: number; clicked: number }>(
      "select count(last_opened_at)::int as opened, count(last_clicked_at)::int as clicked from contacts where tenant_id = 'acme'",
    );
    expect(contacts).toEqual({ opened: expected.opens.humanSends.size, clicked: expected.clicks.humanSends.size });

    // Another tenant's key: no such campaign.
    expect((await api("globex").call("GET", `/v1/campaigns/${acme.id}/stats`)).status).toBe(404);
  }, 180_000);

  it("tampered, cut, re-sealed and made-up tokens: 404, nothing recorded, no redirect", async () => {
    const m = acme.message(acme.sends[SAMPLE]!.recipient);
    const click = tokensIn(m.html, "c")[0]!;
    const pixel = tokensIn(m.html, "o")[0]!;
    const before = await engagementRows();
    const refused = async (path: string) => {
      const res = await hit(path, UA.chrome);
      expect(res.status, path).toBe(404);
      expect(res.headers.get("location")).toBeNull();
    };
    // Every cut, and the kinds swapped (a pixel token is no link, and the other way round).
    for (let n = 0; n < click.length; n += 7) await refused(`/c/${click.slice(0, n)}`);
    await refused(`/c/${pixel}`);
    await refused(`/o/${click}`);
    // Another deployment's secret, the same claim (what a forger without our secret can do at best).
    const foreign = new TrackingTokens("another-secret-0123456789abcdef", PUBLIC);
    const claim = (await tokens.verify(click))!;
    await refused(`/c/${await foreign.token(claim)}`);
    await refused(`/c/${await foreign.token({ ...(claim as Extract<TrackingClaim, { kind: "click" }>), url: "https://evil.test/" })}`);
    await fc.assert(
      fc.asyncProperty(
        fc.oneof(
          // one character changed
          fc.record({ at: fc.nat(click.length - 1), ch: fc.constantFrom(..."ABCXYZabcxyz0189-_.") }).map(({ at, ch }) => click.slice(0, at) + ch + click.slice(at + 1)),
          // something added
          fc.stringMatching(/^[A-Za-z0-9_.~-]{1,8}$/).map((x) => click + x),
          // made up
          fc.stringMatching(/^t1\.[A-Za-z0-9_-]{20,200}$/),
        ),
        async (token) => {
          fc.pre(token !== click);
          const res = await hit(`/c/${token}`, UA.chrome);
          expect([404]).toContain(res.status);
          expect(res.headers.get("location")).toBeNull();
        },
      ),
      { numRuns: 300, seed: 16 },
    );
    // A claim that mixes tenants (globex with acme's campaign and send), sealed with our own
    // secret: no mail of ours carries one (only a bug could seal it), and the redirect reads
    // nothing, so it is answered; but the flush joins each hit to its send within the claimed
    // tenant and campaign, so it records nothing, under either tenant.
    const mixed = await tokens.token({ ...(claim as Extract<TrackingClaim, { kind: "click" }>), tenantId: "globex" });
    expect((await hit(`/c/${mixed}`, UA.chrome)).status).toBe(302);
    await buffer.flush({ all: true });
    expect(await engagementRows()).toBe(before);
    // A genuine token still works after all that.
    expect((await hit(`/c/${click}`, UA.chrome)).status).toBe(302);
    await buffer.flush({ all: true });
    expect(await engagementRows()).toBe(before + 1);
  }, 120_000);

  it("tokens seal the same bytes through node:crypto and WebCrypto (the edge)", async () => {
    const claims: TrackingClaim[] = [
      { kind: "open", tenantId: "acme", campaignId: "camp_x", sendId: "42" },
      { kind: "click", tenantId: "acme", campaignId: "camp_x", sendId: "42", linkIndex: 1, linkCount: 3, url: "https://a.test/é?x=1&y=2" },
    ];
    for (const c of claims) expect(await tokens.tokenWithWebCrypto(c)).toBe(await tokens.token(c));
    await fc.assert(
      fc.asyncProperty(fc.string({ minLength: 16, maxLength: 64 }), fc.string({ maxLength: 40 }), fc.webUrl(), fc.nat(20), async (secret, tenantId, url, index) => {
        const t = new TrackingTokens(secret, PUBLIC);
        const claim: TrackingClaim = { kind: "click", tenantId, campaignId: "camp_p", sendId: String(index + 1), linkIndex: index, linkCount: index + 1, url };
        const token = await t.token(claim);
        expect(await t.tokenWithWebCrypto(claim)).toBe(token);
        expect(await t.verify(token)).toEqual(claim);
      }),
      { numRuns: 100, seed: 16 },
    );
  });

  it("opens are off by default (no pixel), clicks on; a campaign can turn either off; bad tracking input is a 422 naming the field", async () => {
    const globex = await sendCampaign("globex", `globex${tag}`, 20);
    for (const s of globex.sends) {
      const m = globex.message(s.recipient);
      expect(tokensIn(m.html, "o")).toEqual([]);
      expect(m.html).not.toContain("/o/");
      expect(tokensIn(m.html + m.text, "c")).toHaveLength(2);
    }
    // Acme tracks opens (its settings); this campaign turns clicks off and keeps the tenant's opens.
    const quiet = await sendCampaign("acme", `quiet${tag}`, 10, { clicks: false });
    for (const s of quiet.sends) {
      const m = quiet.message(s.recipient);
      expect(tokensIn(m.html + m.text, "c")).toEqual([]);
      expect(m.html).toContain(`href="${SHOP.replace(/&/g, "&amp;")}"`);
      expect(tokensIn(m.html, "o")).toHaveLength(1);
    }
    const got = await api("acme").ok("GET", `/v1/campaigns/${quiet.id}`);
    expect(got.tracking).toEqual({ opens: null, clicks: false });
    const patched = await api("acme").ok("PATCH", `/v1/campaigns/${quiet.id}`, { tracking: { opens: false } });
    expect(patched.tracking).toEqual({ opens: false, clicks: false });

    const bad = await api("acme").call("POST", "/v1/campaigns", { name: "x", template_id: "tpl_x", list_id: "lst_x", tracking: { opens: "yes", pixels: true } });
    expect(bad.status).toBe(422);
    expect((bad.json as { errors: { path: string }[] }).errors.map((e) => e.path)).toEqual(expect.arrayContaining(["tracking.opens"]));
    const badPatch = await api("acme").call("PATCH", `/v1/campaigns/${quiet.id}`, { tracking: { clicks: 1 } });
    expect(badPatch.status).toBe(422);
    expect((badPatch.json as { errors: { path: string }[] }).errors.map((e) => e.path)).toEqual(["tracking.clicks"]);
  }, 180_000);
});

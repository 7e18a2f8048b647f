import { SMTPServer } from "smtp-server";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ApiKeys } from "../shared/api/api-keys";
import { createApp } from "../shared/api/app";
import { createOutboxMailer } from "../shared/email/providers/outbox";
import { createResendMailer } from "../shared/email/providers/resend";
import { createEmailServices } from "../shared/email/services";
import { silentLogger } from "../shared/ports";
import { createEngine, type Engine } from "../shared/queue/engine";
import { Scheduler } from "../shared/queue/scheduler";
import { WorkerPool } from "../shared/queue/worker";
import { startResendMock, type ResendMock } from "../tools/resend-mock-server";
import { createHandlers } from "../workers/handlers";
import { createSmtpMailer } from "../workers/node/smtp";
import { fastCatalog } from "./support/engine";
import { createTestDatabase, waitFor } from "./support/services";
import { jsonApi } from "./support/api";

const CONTACTS = Number(process.env.EMAIL_TEST_CONTACTS ?? 10_000);
const PEPPER = "email-test-pepper-0123456789";

/** A real SMTP server (the smtp-server package) that keeps what it receives. */
async function startSmtp(): Promise<{ port: number; received: { to: string; raw: string }[]; close: () => Promise<void> }> {
  const received: { to: string; raw: string }[] = [];
  const server = new SMTPServer({
    authOptional: true,
    disabledCommands: ["STARTTLS"],
    logger: false,
    onData(stream, session, done) {
      let raw = "";
      stream.on("data", (c: Buffer) => (raw += c.toString()));
      stream.on("end", () => {
        for (const rcpt of session.envelope.rcptTo) received.push({ to: rcpt.address.toLowerCase(), raw });
        done();
      });
    },
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  const port = (server.server.address() as { port: number }).port;
  return { port, received, close: () => new Promise((r) => server.close(() => r())) };
}

describe("the email pipeline: a 10,000-contact campaign", () => {
  let db: Awaited<ReturnType<typeof createTestDatabase>>;
  let resend: ResendMock;
  let smtp: Awaited<ReturnType<typeof startSmtp>>;
  let engine: Engine;
  let app: ReturnType<typeof createApp>;
  let key: string;
  const stops: (() => Promise<void>)[] = [];

  beforeAll(async () => {
    db = await createTestDatabase("email");
    resend = await startResendMock({ apiKey: "re_test_pipeline" });
    smtp = await startSmtp();
    // Short backoffs so injected 429/500s are retried quickly; the behaviour is the production code's.
    engine = createEngine({ sql: db.sql, catalog: fastCatalog({ maxAttempts: 10 }) });
    await engine.dispatcher.start();
    const smtpMailer = createSmtpMailer(`smtp://127.0.0.1:${smtp.port}`);
    const mail = createEmailServices({
      sql: db.sql,
      redisPrefix: "unused:",
      clock: engine.clock,
      mailers: [createResendMailer({ apiKey: "re_test_pipeline", baseUrl: resend.url }), smtpMailer, createOutboxMailer(db.sql)],
      providerOrder: ["resend"], // SMTP only for tenants that ask for it: no failover in this test
      defaultFrom: "Acme <news@acme.test>",
      publicUrl: "http://jobs.test",
      unsubscribeSecret: PEPPER,
    });
    const handlers = createHandlers({ sql: db.sql, clock: engine.clock, email: { queue: engine.queue, logger: silentLogger, send: mail.send } });
    const pools = [
      new WorkerPool({ name: "email", handlers: handlers.filter((h) => h.type === "email.send"), concurrency: 200, queue: engine.queue, stats: engine.stats, workerId: "email-test", idleWaitMs: 200 }),
      new WorkerPool({ name: "default", handlers: handlers.filter((h) => h.type === "campaign.process"), concurrency: 2, queue: engine.queue, stats: engine.stats, workerId: "default-test", idleWaitMs: 200 }),
    ];
    for (const p of pools) p.start();
    const scheduler = new Scheduler({ queue: engine.queue, holderId: "email-test" });
    scheduler.start(25);
    stops.push(() => scheduler.stop(), ...pools.map((p) => () => p.stop(2_000)), async () => smtpMailer.close());
    const apiKeys = new ApiKeys(db.sql, { pepper: PEPPER });
    key = (await apiKeys.create({ tenantId: "acme", admin: false, name: "acme" })).key;
    app = createApp({ queue: engine.queue, sql: db.sql, apiKeys, unsubscribe: mail.unsubscribe });
  });
  afterAll(async () => {
    for (const stop of stops) await stop();
    await engine.dispatcher.close();
    await resend.close();
    await smtp.close();
    await db.drop();
  });

  const api = (method: string, path: string, body?: unknown) => jsonApi((p, init) => app.request(p, init), key).ok(method, path, body);

  /** A list of 10,000 contacts: every 50th suppressed, every 100th (offset 7) with an invalid address. */
  async function audience(tag: string) {
    const list = await api("POST", "/v1/lists", { name: `audience ${tag}` });
    for (let b = 0; b < CONTACTS; b += 1_000) {
      const contacts = Array.from({ length: 1_000 }, (_, i) => ({ email: `${tag}-${b + i}@example.com`, name: `Person ${b + i}`, attributes: { n: b + i } }));
      await api("POST", "/v1/contacts", { contacts, list_id: list.id });
    }
    // Addresses that cannot receive mail (bad data from an old import): fixed by SQL, as the API refuses them.
    await db.sql.query(
      `update contacts set email = replace(email, '@', ' at ') where tenant_id = 'acme' and email like $1 and (attributes->>'n')::int % 100 = 7`,
      [`${tag}-%`],
    );
    for (let n = 0; n < CONTACTS; n += 50) await api("POST", "/v1/suppressions", { email: `${tag}-${n}@example.com` });
    const template = await api("POST", "/v1/templates", {
      name: `news ${tag}`,
      subject: "News for {{name}}",
      blocks: [{ type: "heading", text: "Hello {{name}}" }, { type: "text", text: "Your number is {{n}}." }],
    });
    return { list, template, suppressed: CONTACTS / 50, invalid: CONTACTS / 100 };
  }

  async function runCampaign(tag: string) {
    const { list, template, suppressed, invalid } = await audience(tag);
    const campaign = await api("POST", "/v1/campaigns", { name: `campaign ${tag}`, template_id: template.id, list_id: list.id });
    expect(campaign.status).toBe("draft");
    await api("POST", `/v1/campaigns/${campaign.id}/start`);
    const done = await waitFor(
      async () => {
        const c = await api("GET", `/v1/campaigns/${campaign.id}`);
        return c.status === "sent" ? c : null;
      },
      { timeoutMs: Number(process.env.EMAIL_TEST_WAIT_MS ?? 240_000), intervalMs: 200, what: `campaign ${tag} to be sent` },
    ).catch(async (err) => {
      // Say where it stuck: the campaign, its jobs by state, their last errors.
      const c = await api("GET", `/v1/campaigns/${campaign.id}`);
      const jobs = await db.sql.query("select type, state::text, count(*)::int as n, max(last_error->>'message') as error, max(result::text) as result from jobs group by 1, 2"); const sends = await db.sql.query("select status, count(*)::int from email_sends group by 1"); (jobs as unknown[]).push(sends, resend.delivered().length);
      throw new Error(`${(err as Error).message}: ${JSON.stringify({ campaign: c, jobs })}`);
    });
    return { campaign: done, suppressed, invalid, deliverable: CONTACTS - suppressed - invalid };
  }

  it("sends through a Resend-speaking server with 429s and 500s injected: one message a deliverable contact", async () => {
    resend.inject({ failEvery429: 7, failEvery500: 11, retryAfterSeconds: 0 });
    const { campaign, suppressed, invalid, deliverable } = await runCampaign("rs");
    const delivered = resend.delivered().filter((m) => m.to[0]!.startsWith("rs-"));
    const perRecipient = new Map<string, number>();
    for (const m of delivered) perRecipient.set(m.to[0]!, (perRecipient.get(m.to[0]!) ?? 0) + 1);
    expect(perRecipient.size).toBe(deliverable);
    expect([...perRecipient.values()].every((n) => n === 1)).toBe(true);
    for (let n = 0; n < CONTACTS; n += 50) expect(perRecipient.has(`rs-${n}@example.com`)).toBe(false);
    expect(campaign.counters).toEqual({ recipients: CONTACTS, sent: deliverable, skipped: suppressed + invalid, failed: 0 });
    // Campaign mail carries a one-click unsubscribe (RFC 8058) and the personalised content.
    const sample = delivered.find((m) => m.to[0] === "rs-1@example.com")!;
    expect(sample.subject).toBe("News for Person 1");
    expect(sample.headers["List-Unsubscribe-Post"]).toBe("List-Unsubscribe=One-Click");
    expect(sample.headers["List-Unsubscribe"]).toMatch(/^<http:\/\/jobs\.test\/u\/[\w-]+\.[\w-]+>$/);
    expect(resend.requests()).toBeGreaterThan(deliverable / 100); // batches of up to 100, with retries
  });

  it("sends through a real SMTP server as well", async () => {
    await db.sql.query("insert into tenants (id, name, settings) values ('acme', 'Acme', '{\"provider\": \"smtp\"}') on conflict (id) do update set settings = excluded.settings");
    const before = resend.delivered().length;
    const { campaign, suppressed, invalid, deliverable } = await runCampaign("sm");
    const got = smtp.received.filter((m) => m.to.startsWith("sm-"));
    expect(new Set(got.map((m) => m.to)).size).toBe(deliverable);
    expect(got.length).toBe(deliverable);
    expect(resend.delivered().length).toBe(before);
    expect(campaign.counters).toEqual({ recipients: CONTACTS, sent: deliverable, skipped: suppressed + invalid, failed: 0 });
    expect(got[0]!.raw).toMatch(/List-Unsubscribe-Post: List-Unsubscribe=One-Click/);
  });

  it("stops later campaign mail to an address unsubscribed by one click; a GET alone does not unsubscribe", async () => {
    await db.sql.query("update tenants set settings = '{}' where id = 'acme'");
    const first = resend.delivered().find((m) => m.to[0] === "rs-3@example.com")!;
    const url = new URL(first.headers["List-Unsubscribe"]!.slice(1, -1));
    const page = await app.request(url.pathname);
    expect(page.status).toBe(200);
    expect(await page.text()).toContain("rs-3@example.com");
    const stillThere = await db.sql.query("select 1 from suppressions where email_lower = 'rs-3@example.com' and tenant_id = 'acme'");
    expect(stillThere).toHaveLength(0);
    const post = await app.request(url.pathname, {
      method: "POST",
      headers: { "content-type": "application/x-www-form-urlencoded" },
      body: "List-Unsubscribe=One-Click",
    });
    expect(post.status).toBe(200);
    // A token changed anywhere is refused: in its MAC, or in its last character's spare bits.
    for (const forgedPath of [url.pathname.replace(/.$/, (c) => (c === "A" ? "B" : "A")), url.pathname.replace(/\.(.)/, (_, c) => `.${c === "x" ? "y" : "x"}`)]) {
      expect((await app.request(forgedPath, { method: "POST" })).status).toBe(404);
    }

    // A new campaign to a small list including that address skips it.
    const list = await api("POST", "/v1/lists", { name: "again" });
    await api("POST", "/v1/contacts", { contacts: [{ email: "rs-3@example.com" }, { email: "rs-4@example.com" }], list_id: list.id });
    const template = await api("POST", "/v1/templates", { name: "again", subject: "Again", blocks: [{ type: "text", text: "Hi" }] });
    const campaign = await api("POST", "/v1/campaigns", { name: "again", template_id: template.id, list_id: list.id });
    await api("POST", `/v1/campaigns/${campaign.id}/start`);
    const done = await waitFor(async () => {
      const c = await api("GET", `/v1/campaigns/${campaign.id}`);
      return c.status === "sent" ? c : null;
    });
    // The unsubscribed contact is no longer active, so it is not even a recipient.
    expect(done.counters).toMatchObject({ recipients: 1, sent: 1 });
    expect(resend.delivered().filter((m) => m.subject === "Again").map((m) => m.to[0])).toEqual(["rs-4@example.com"]);
  });
});

describe("rate limits on sends", () => {
  it("delays sends over a tenant's limit instead of failing them", async () => {
    const db = await createTestDatabase("email_rate");
    const resend = await startResendMock({ apiKey: "re_rate" });
    try {
      const engine = createEngine({ sql: db.sql, catalog: fastCatalog({ maxAttempts: 2 }) });
      await engine.dispatcher.start();
      const mail = createEmailServices({
        sql: db.sql,
        redisPrefix: "unused:",
        clock: engine.clock,
        mailers: [createResendMailer({ apiKey: "re_rate", baseUrl: resend.url })],
        defaultFrom: "Acme <news@acme.test>",
        publicUrl: "http://jobs.test",
        unsubscribeSecret: PEPPER,
        // Postgres-backed GCRA (no Redis here). Low enough that even a loaded 2-core machine
        // sends faster than the limit, so the limiter has to act.
        tenantPerSecond: 8,
      });
      const handlers = createHandlers({ sql: db.sql, clock: engine.clock, email: { queue: engine.queue, logger: silentLogger, send: mail.send } });
      // Small batches, so most sends meet the limit several times before their turn comes.
      const pool = new WorkerPool({ name: "email", handlers, concurrency: 4, queue: engine.queue, stats: engine.stats, workerId: "rate", idleWaitMs: 100 });
      const scheduler = new Scheduler({ queue: engine.queue, holderId: "rate" });
      pool.start();
      scheduler.start(25);
      // maxAttempts 2 while the limit alone delays many of these sends more than twice:
      // they only all succeed if a rate-limited send waits without spending its attempts.
      await engine.queue.enqueueMany(
        Array.from({ length: 80 }, (_, i) => ({
          type: "email.send",
          tenantId: "acme",
          payload: { recipient: `r${i}@example.com`, template_id: "sys_transactional", variables: { title: "Hi", body: "Hello" } },
        })),
      );
      await waitFor(async () => (await db.sql.query<{ n: number }>("select count(*)::int as n from jobs where state in ('completed', 'failed')"))[0]!.n === 80, {
        timeoutMs: 60_000,
        what: "every send to end",
      });
      await scheduler.stop();
      await pool.stop();
      const states = await db.sql.query<{ state: string; n: number }>("select state::text, count(*)::int as n from jobs group by 1");
      expect(states).toEqual([{ state: "completed", n: 80 }]);
      expect(new Set(resend.delivered().map((m) => m.to[0])).size).toBe(80);
      // The limiter really held sends back (they were rescheduled), without failing any.
      const [{ delayed }] = (await db.sql.query<{ delayed: number }>(
        "select count(*)::int as delayed from jobs where last_error->>'name' in ('RetryAfter', 'Snooze')",
      )) as [{ delayed: number }];
      expect(delayed).toBeGreaterThan(0);
      await engine.dispatcher.close();
    } finally {
      await resend.close();
      await db.drop();
    }
  });
});

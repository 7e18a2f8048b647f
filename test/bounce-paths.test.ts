/**
 * Bounces from every path, end to end, on one suppression path: email.send over a real SMTP
 * relay (smtp-server) that answers RCPT TO with 550 5.1.1 for some addresses, 451 4.7.1 at
 * first for others (greylisting) and 550 5.7.1 for a spam block; then RFC 3464 reports posted
 * to POST /v1/bounces/dsn for mail that was delivered. What each leaves behind is read from the
 * ledger, the suppressions, the contacts, the events and the webhook jobs.
 */
import type { AddressInfo } from "node:net";
import { SMTPServer, type SMTPServerAddress } from "smtp-server";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ApiKeys } from "../shared/api/api-keys";
import { createApp } from "../shared/api/app";
import { createEmailServices } from "../shared/email/services";
import { silentLogger } from "../shared/ports";
import { createEngine, type Engine } from "../shared/queue/engine";
import { Scheduler } from "../shared/queue/scheduler";
import { WorkerPool } from "../shared/queue/worker";
import { createHandlers } from "../workers/handlers";
import { createSmtpMailer, type SmtpMailer } from "../workers/node/smtp";
import { postfixDsn } from "./support/dsn";
import { fastCatalog } from "./support/engine";
import { createTestDatabase, randomId, waitFor } from "./support/services";

const PEPPER = "bounce-test-pepper-0123456789";

/** The relay: what it was asked (RCPT TO per address) and what it took (one entry per delivered message). */
async function startRelay() {
  const rcpts = new Map<string, number>();
  const received: { to: string; raw: string }[] = [];
  const refusal = (address: SMTPServerAddress): Error | null => {
    const to = address.address.toLowerCase();
    const seen = rcpts.get(to) ?? 0;
    rcpts.set(to, seen + 1);
    const reply = (code: number, text: string) => Object.assign(new Error(text), { responseCode: code });
    if (to.startsWith("dead-")) return reply(550, `5.1.1 <${to}>: Recipient address rejected: User unknown in virtual mailbox table`);
    if (to.startsWith("spam-")) return reply(550, "5.7.1 Message rejected as spam; see https://postmaster.example.org");
    // Greylisting: the first try of each address is deferred, the next taken.
    if (to.startsWith("grey-") && seen === 0) return reply(451, "4.7.1 Greylisted, please try again later");
    return null;
  };
  const server = new SMTPServer({
    authOptional: true,
    disabledCommands: ["STARTTLS"],
    logger: false,
    onRcptTo: (address, _session, callback) => callback(refusal(address)),
    onData(stream, session, callback) {
      const chunks: Buffer[] = [];
      stream.on("data", (c: Buffer) => chunks.push(c));
      stream.on("end", () => {
        for (const r of session.envelope.rcptTo) received.push({ to: r.address.toLowerCase(), raw: Buffer.concat(chunks).toString("utf8") });
        callback();
      });
    },
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  const port = (server.server.address() as AddressInfo).port;
  return { port, rcpts, received, close: () => new Promise<void>((r) => server.close(() => r())) };
}

describe("bounces from every path, one suppression path", () => {
  let db: Awaited<ReturnType<typeof createTestDatabase>>;
  let relay: Awaited<ReturnType<typeof startRelay>>;
  let engine: Engine;
  let pool: WorkerPool;
  let scheduler: Scheduler;
  let mailer: SmtpMailer;
  let app: ReturnType<typeof createApp>;
  const keys = { acme: "", globex: "", admin: "" };
  const tag = randomId(3);
  const address = (kind: string, n: number) => `${kind}-${tag}-${n}@example.org`;

  beforeAll(async () => {
    db = await createTestDatabase("bounce_paths");
    relay = await startRelay();
    engine = createEngine({ sql: db.sql, catalog: fastCatalog({ maxAttempts: 5 }) });
    await engine.dispatcher.start();
    mailer = createSmtpMailer(`smtp://127.0.0.1:${relay.port}`);
    const mail = createEmailServices({
      sql: db.sql,
      redisPrefix: "unused:",
      clock: engine.clock,
      mailers: [mailer],
      defaultFrom: "Acme <news@acme.test>",
      publicUrl: "http://jobs.test",
      unsubscribeSecret: PEPPER,
    });
    const handlers = createHandlers({ sql: db.sql, clock: engine.clock, email: { queue: engine.queue, logger: silentLogger, send: mail.send } });
    pool = new WorkerPool({ name: "email", handlers: handlers.filter((h) => h.type === "email.send"), concurrency: 20, queue: engine.queue, stats: engine.stats, workerId: "bounce-test", idleWaitMs: 100 });
    pool.start();
    // Promotes retries (the deferred sends) when their backoff is over.
    scheduler = new Scheduler({ queue: engine.queue, holderId: "bounce-test" });
    scheduler.start(25);
    const apiKeys = new ApiKeys(db.sql, { pepper: PEPPER });
    keys.acme = (await apiKeys.create({ tenantId: "acme", admin: false, name: "acme" })).key;
    keys.globex = (await apiKeys.create({ tenantId: "globex", admin: false, name: "globex" })).key;
    keys.admin = (await apiKeys.create({ tenantId: null, admin: true, name: "ops" })).key;
    app = createApp({ queue: engine.queue, sql: db.sql, apiKeys });
    // An endpoint for email.bounced: its webhook.dispatch jobs show what was published (no dispatcher runs here).
    await db.sql.query(
      "insert into webhook_endpoints (id, tenant_id, url, event_types, secret) values ('whe_bounces', 'acme', 'https://hooks.example.com/b', '{email.bounced}', 'whsec_test')",
    );
  });
  afterAll(async () => {
    await scheduler?.stop();
    await pool?.stop(2_000);
    await mailer?.close();
    await engine?.dispatcher.close();
    await relay?.close();
    await db?.drop();
  });

  const contacts = (emails: string[]) =>
    app.request("/v1/contacts", {
      method: "POST",
      headers: { authorization: `Bearer ${keys.acme}`, "content-type": "application/json" },
      body: JSON.stringify({ contacts: emails.map((email) => ({ email })) }),
    });
  const send = async (to: string) =>
    (await engine.queue.enqueue({ type: "email.send", tenantId: "acme", payload: { recipient: to, template_id: "sys_transactional", variables: { title: "Hello" } } })).job.id;
  const finished = (id: string) =>
    waitFor(async () => {
      const job = await engine.queue.get(id, "acme");
      return job.state === "completed" || job.state === "failed" ? job : null;
    }, { timeoutMs: 30_000, what: `job ${id} to finish` }).then((job) => job!);
  const sendRow = (to: string) =>
    db.sql.query<{ id: string; status: string; detail: string | null; provider_message_id: string | null }>(
      "select id::text, status, detail, provider_message_id from email_sends where tenant_id = 'acme' and recipient = $1",
      [to],
    );
  const suppressions = (to: string) => db.sql.query<{ tenant_id: string; reason: string }>("select tenant_id, reason from suppressions where email_lower = lower($1) order by tenant_id", [to]);
  const contactStatus = async (to: string) => (await db.sql.query<{ status: string }>("select status from contacts where tenant_id = 'acme' and lower(email) = lower($1)", [to]))[0]?.status;
  const bounceEvents = (sendId: string) =>
    db.sql.query<{ type: string; provider_event_id: string; data: any }>("select type, provider_event_id, data from email_events where send_id = $1::bigint and type in ('bounced', 'complained')", [sendId]);
  const dispatches = (eventId: string) =>
    db.sql.query<{ n: number }>("select count(*)::int as n from jobs where type = 'webhook.dispatch' and payload->>'event_id' = $1 and payload->>'event_type' = 'email.bounced'", [eventId]);
  const counts = async () =>
    (await db.sql.query<{ events: number; suppressions: number; jobs: number; bounced: number }>(
      `select (select count(*)::int from email_events) as events, (select count(*)::int from suppressions) as suppressions,
              (select count(*)::int from jobs) as jobs, (select count(*)::int from contacts where status <> 'active') as bounced`,
    ))[0]!;

  it("SMTP: a 5.1.1 at RCPT TO fails the send at once and suppresses the address as a Resend hard bounce does; a 451 is retried and delivered; a 5.7.1 fails without suppressing", async () => {
    const dead = [address("dead", 1), address("dead", 2)];
    const grey = [address("grey", 1), address("grey", 2)];
    const spam = address("spam", 1);
    expect((await contacts([...dead, ...grey, spam])).status).toBe(200);
    const ids = new Map<string, string>();
    for (const to of [...dead, ...grey, spam]) ids.set(to, await send(to));

    for (const to of dead) {
      const job = await finished(ids.get(to)!);
      // Failed for good on its first attempt: no retry spent on an address that does not exist.
      expect(job).toMatchObject({ state: "failed", attempt: 1 });
      expect(job.lastError).toMatchObject({ name: "PermanentError", message: expect.stringContaining("hard_bounce, address suppressed") });
      expect(relay.rcpts.get(to)).toBe(1);
      const [row] = await sendRow(to);
      expect(row).toMatchObject({ status: "failed", detail: expect.stringContaining("5.1.1") });
      expect(await suppressions(to)).toEqual([{ tenant_id: "*", reason: "hard_bounce" }]);
      expect(await contactStatus(to)).toBe("bounced");
      const events = await bounceEvents(row!.id);
      expect(events).toEqual([
        {
          type: "bounced",
          provider_event_id: `smtp:reply_${row!.id}`,
          data: expect.objectContaining({ recipient: to, provider: "smtp", bounce_type: "hard", category: "hard_bounce", enhanced_status: "5.1.1", suppressed: true, suppressed_for: "global" }),
        },
      ]);
      expect(await dispatches(`evt_smtp_reply_${row!.id}`)).toEqual([{ n: 1 }]);
    }

    for (const to of grey) {
      const job = await finished(ids.get(to)!);
      // The deferral spent one attempt; the retry went through.
      expect(job).toMatchObject({ state: "completed", attempt: 2 });
      expect(relay.rcpts.get(to)).toBe(2);
      expect(relay.received.filter((m) => m.to === to)).toHaveLength(1);
      expect(await sendRow(to)).toEqual([expect.objectContaining({ status: "sent", provider_message_id: expect.stringMatching(/^<[0-9a-f]{32}\.pm@acme\.test>$/) })]);
      expect(await suppressions(to)).toEqual([]);
      expect(await contactStatus(to)).toBe("active");
    }

    const job = await finished(ids.get(spam)!);
    expect(job).toMatchObject({ state: "failed", attempt: 1 });
    const [row] = await sendRow(spam);
    // A spam block is about the sender: the message fails, the tenant hears of it, the address stays.
    expect(await suppressions(spam)).toEqual([]);
    expect(await contactStatus(spam)).toBe("active");
    expect((await bounceEvents(row!.id))[0]?.data).toMatchObject({ category: "policy", bounce_type: "soft", suppressed: false });

    // The next mail to a dead address is skipped, never offered to the relay.
    const again = await finished(await send(dead[0]!));
    expect(again).toMatchObject({ state: "completed", result: { status: "skipped", reason: "suppressed" } });
    expect(relay.rcpts.get(dead[0]!)).toBe(1);
  });

  const postDsn = (key: string, body: string, contentType = "message/rfc822") =>
    app.request("/v1/bounces/dsn", { method: "POST", headers: { authorization: `Bearer ${key}`, "content-type": contentType }, body });
  /** The Message-ID the relay received for an address: what a DSN returns. */
  const messageIdAt = (to: string) => /^Message-ID:\s*(\S+)/im.exec(relay.received.find((m) => m.to === to)!.raw)![1]!;

  it("DSN: a report for mail delivered earlier is recorded once through the same path; another tenant's key records nothing", async () => {
    const to = address("grey", 1);
    const [row] = await sendRow(to);
    const dsn = postfixDsn({ to, messageId: messageIdAt(to) });
    expect(messageIdAt(to)).toBe(row!.provider_message_id);

    // Another tenant's key: the Message-ID is not one of its sends.
    const before = await counts();
    const foreign = await postDsn(keys.globex, dsn);
    expect(foreign.status).toBe(202);
    expect(await foreign.json()).toMatchObject({ recorded: 0, recipients: [{ recipient: to, outcome: "unknown_message", send_id: null }] });
    expect(await counts()).toEqual(before);

    const first = await postDsn(keys.acme, dsn);
    expect(first.status).toBe(202);
    expect(await first.json()).toEqual({
      message_ids: [row!.provider_message_id],
      recorded: 1,
      recipients: [
        expect.objectContaining({ recipient: to, action: "failed", status: "5.1.1", category: "hard_bounce", suppress: true, retry: false, outcome: "recorded", send_id: row!.id }),
      ],
    });
    // A tenant's own report suppresses in its own list: its word does not stop other tenants' mail.
    expect(await suppressions(to)).toEqual([{ tenant_id: "acme", reason: "hard_bounce" }]);
    expect(await contactStatus(to)).toBe("bounced");
    const events = await bounceEvents(row!.id);
    expect(events).toHaveLength(1);
    expect(events[0]!.data).toMatchObject({ category: "hard_bounce", suppressed: true, suppressed_for: "tenant", detail: { action: "failed", status: "5.1.1" } });
    expect(await dispatches(`evt_${events[0]!.provider_event_id.replace(":", "_")}`)).toEqual([{ n: 1 }]);

    // Posted again (an MTA retrying its POST): nothing new.
    const after = await counts();
    const second = await postDsn(keys.acme, dsn);
    expect(await second.json()).toMatchObject({ recorded: 0, recipients: [{ outcome: "duplicate", send_id: row!.id }] });
    expect(await counts()).toEqual(after);

    // The multipart/report body alone, with an admin key (the platform's bounce mailbox): global.
    const other = address("grey", 2);
    const whole = postfixDsn({ to: other, messageId: messageIdAt(other), status: "5.2.1", diagnostic: "550 5.2.1 The email account that you tried to reach is disabled." });
    const body = whole.slice(whole.indexOf("\r\n\r\n") + 4);
    const admin = await postDsn(keys.admin, body, 'multipart/report; report-type=delivery-status; boundary="4F1A2B3C.1700000000/mx.example.net"');
    expect(await admin.json()).toMatchObject({ recorded: 1, recipients: [{ category: "hard_bounce", outcome: "recorded" }] });
    expect(await suppressions(other)).toEqual([{ tenant_id: "*", reason: "hard_bounce" }]);
  });

  it("DSN: delayed and delivered blocks, and blocks about another address, record nothing", async () => {
    const to = address("grey", 1);
    const before = await counts();
    const delayed = await postDsn(keys.acme, postfixDsn({ to, messageId: messageIdAt(to), action: "delayed", status: "4.2.2", diagnostic: "452 4.2.2 mailbox full" }));
    expect(await delayed.json()).toMatchObject({ recorded: 0, recipients: [{ category: "deferral", retry: true, outcome: "not_a_failure" }] });
    const elsewhere = postfixDsn({ to, messageId: messageIdAt(to) }).replace(/rfc822; ?grey-[^\r]+/g, "rfc822; member@lists.example.org");
    expect(await (await postDsn(keys.acme, elsewhere)).json()).toMatchObject({ recorded: 0, recipients: [{ outcome: "other_recipient" }] });
    expect(await counts()).toEqual(before);
  });

  it("DSN: a malformed report is a 4xx problem that says what is wrong, and stores nothing", async () => {
    const to = address("grey", 1);
    const before = await counts();
    const cases: [string, string, number, RegExp][] = [
      ["application/json", '{"type":"bounce"}', 415, /message\/rfc822/],
      ["message/rfc822", "Subject: not a report\r\n\r\nhello", 400, /delivery-status/],
      ["multipart/report", "--x\r\n\r\n--x--", 400, /boundary/],
      ["message/rfc822", postfixDsn({ to, messageId: messageIdAt(to) }).replace("Status: 5.1.1", "Status: bad"), 422, /incomplete/],
      ["message/rfc822", postfixDsn({ to, messageId: messageIdAt(to) }).replace(/Message-ID: [^\r]+\r\n/, ""), 422, /which message/],
    ];
    for (const [ct, body, status, detail] of cases) {
      const res = await postDsn(keys.acme, body, ct);
      expect(res.status, `${ct}: ${body.slice(0, 40)}`).toBe(status);
      expect(res.headers.get("content-type")).toBe("application/problem+json");
      expect((await res.json()).detail).toMatch(detail);
    }
    expect((await app.request("/v1/bounces/dsn", { method: "POST", headers: { "content-type": "message/rfc822" }, body: "x" })).status).toBe(401);
    expect(await counts()).toEqual(before);
  });
});

/**
 * Issue 15, item 7: DKIM. Keys are made over the real API, real mail goes through the SMTP
 * mailer to a real SMTP server (smtp-server), and every message the server receives is
 * verified by mailauth's authenticate() with a resolver that answers the TXT look-ups from the
 * records the API told us to publish (no network). A tampered signed header fails; rotation
 * moves signing to the new selector while mail signed with the old one still verifies; one
 * tenant never reads or rotates another's keys; the database holds no private key in clear.
 */
import { mkdtemp, readFile, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import fc from "fast-check";
import { authenticate } from "mailauth";
import { SMTPServer } from "smtp-server";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ApiKeys } from "../shared/api/api-keys";
import { createApp } from "../shared/api/app";
import { DkimKeyCipher } from "../shared/email/dkim-crypto";
import { DkimKeys, MAX_DOMAINS, MAX_KEYS_PER_HOUR } from "../shared/email/dkim-keys";
import type { OutgoingMessage } from "../shared/email/mailer";
import { silentLogger } from "../shared/ports";
import { redactText } from "../shared/redact";
import { createEngine, type Engine } from "../shared/queue/engine";
import { Scheduler } from "../shared/queue/scheduler";
import { WorkerPool } from "../shared/queue/worker";
import { createHandlers } from "../workers/handlers";
import { ConfigError, loadConfig } from "../workers/node/config";
import { openDatabase } from "../workers/node/database";
import { createDkimSigner, DkimSigningError } from "../workers/node/dkim-signer";
import { nodeEmailServices } from "../workers/node/mail";
import { createSmtpMailer, type SmtpMailer } from "../workers/node/smtp";
import { jsonApi } from "./support/api";
import { fastCatalog } from "./support/engine";
import { createTestDatabase, waitFor } from "./support/services";

const KEK = "dkim-test-encryption-key-0123456789abcdef";
const PEPPER = "dkim-test-pepper-0123456789";
const DOMAIN = "mail.acme.test";
const FROM = `Acme <news@${DOMAIN}>`;

/** A real SMTP server that keeps every message it is given. */
async function startSink() {
  const received: { to: string; raw: Buffer }[] = [];
  const server = new SMTPServer({
    authOptional: true,
    disabledCommands: ["STARTTLS"],
    logger: false,
    onData(stream, session, done) {
      const chunks: Buffer[] = [];
      stream.on("data", (c: Buffer) => chunks.push(c));
      stream.on("end", () => {
        for (const rcpt of session.envelope.rcptTo) received.push({ to: rcpt.address.toLowerCase(), raw: Buffer.concat(chunks) });
        done();
      });
    },
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  const port = (server.server.address() as { port: number }).port;
  return { port, received, close: () => new Promise<void>((r) => server.close(() => r())) };
}

/**
 * The DNS this test publishes to: name → TXT value, split into 255-byte strings as a real
 * zone holds a 2048-bit key's record. Anything else does not exist.
 */
const zone = new Map<string, string>();
async function resolver(name: string, rrtype: string): Promise<string[][]> {
  const value = rrtype === "TXT" ? zone.get(name.toLowerCase()) : undefined;
  if (value === undefined) throw Object.assign(new Error(`queryTxt ENOTFOUND ${name}`), { code: "ENOTFOUND" });
  return [value.match(/.{1,255}/g)!];
}

interface KeyAnswer {
  domain: string;
  selector: string;
  status: "active" | "retiring" | "retired";
  retire_after: string | null;
  dns: { name: string; type: "TXT"; value: string };
}

/** Publishes what the API says is to be published: the records of active and retiring keys, no others. */
function publish(keys: readonly KeyAnswer[]): void {
  for (const k of keys) {
    if (k.status === "retired") zone.delete(k.dns.name);
    else zone.set(k.dns.name, k.dns.value);
  }
}

/** mailauth's DKIM results for one message, as a receiving server would see them. */
async function dkimResults(raw: Buffer | string) {
  const res = await authenticate(raw, {
    resolver: resolver as never,
    ip: "127.0.0.1",
    helo: "relay.test",
    sender: `news@${DOMAIN}`,
    mta: "sink.test",
    disableArc: true,
    disableBimi: true,
    disableDmarc: true,
  });
  return res.dkim.results;
}

/** The tags of the message's DKIM-Signature header (unfolded), or undefined when it has none. */
function signatureTags(raw: Buffer | string): Record<string, string> | undefined {
  const text = raw.toString("latin1");
  const head = text.slice(0, text.indexOf("\r\n\r\n"));
  const match = /^DKIM-Signature:(.*(?:\r\n[ \t].*)*)/im.exec(head);
  if (!match) return undefined;
  const value = match[1]!.replace(/\r\n[ \t]/g, " ");
  return Object.fromEntries(
    value
      .split(";")
      .map((t) => t.trim())
      .filter(Boolean)
      .map((t) => [t.slice(0, t.indexOf("=")).trim(), t.slice(t.indexOf("=") + 1).replace(/\s+/g, "")]),
  );
}

/** A clock the signer's cache reads: moved by the test, never waited on. */
const signerClock = { at: Date.now(), now() { return new Date(this.at); } };

describe("DKIM: keys over the API, SMTP mail signed and verified by mailauth", () => {
  let db: Awaited<ReturnType<typeof createTestDatabase>>;
  let engine: Engine;
  let app: ReturnType<typeof createApp>;
  let sink: Awaited<ReturnType<typeof startSink>>;
  let mailer: SmtpMailer;
  let acme: ReturnType<typeof jsonApi>;
  let globex: ReturnType<typeof jsonApi>;
  let admin: ReturnType<typeof jsonApi>;
  let adminKey: string;
  /** Every API answer this file received: none may carry a private key. */
  const answers: string[] = [];
  /** Messages signed with the first key, kept to verify them after the rotation. */
  const signedWithFirst: Buffer[] = [];
  let firstSelector = "";
  let sent = 0;
  let verified = 0;

  beforeAll(async () => {
    db = await createTestDatabase("dkim");
    engine = createEngine({ sql: db.sql, catalog: fastCatalog() });
    const apiKeys = new ApiKeys(db.sql, { pepper: PEPPER });
    app = createApp({ queue: engine.queue, sql: db.sql, apiKeys, dkimEncryptionKey: KEK });
    const request = async (path: string, init: RequestInit) => {
      const res = await app.request(path, init);
      answers.push(await res.clone().text());
      return res;
    };
    acme = jsonApi(request, (await apiKeys.create({ tenantId: "acme", admin: false, name: "acme" })).key);
    globex = jsonApi(request, (await apiKeys.create({ tenantId: "globex", admin: false, name: "globex" })).key);
    adminKey = (await apiKeys.create({ tenantId: null, admin: true, name: "ops" })).key;
    admin = jsonApi(request, adminKey);
    sink = await startSink();
    const dkim = createDkimSigner({ keys: new DkimKeys(db.sql, engine.clock, undefined), encryptionKey: KEK, clock: signerClock });
    mailer = createSmtpMailer(`smtp://127.0.0.1:${sink.port}`, { dkim, maxConnections: 2 });
  });
  afterAll(async () => {
    await mailer?.close();
    await sink?.close();
    await db?.drop();
  });

  /** One message through the SMTP mailer; answers what the sink received for it. */
  async function send(overrides: Partial<OutgoingMessage> = {}): Promise<Buffer> {
    const to = `r${++sent}@example.com`;
    await mailer.send({
      tenantId: "acme",
      from: FROM,
      to,
      subject: "Hello",
      html: "<p>Hello</p>",
      text: "Hello",
      idempotencyKey: `dkim-test:${sent}`,
      headers: { "List-Unsubscribe": `<https://jobs.test/u/v2.token${sent}>`, "List-Unsubscribe-Post": "List-Unsubscribe=One-Click" },
      ...overrides,
    });
    // The server's 250 comes after its onData handler kept the message.
    const got = sink.received.filter((m) => m.to === to);
    expect(got).toHaveLength(1);
    const raw = got[0]!.raw;
    // Every message the relay receives is verified as it arrives: signed ones pass, the rest carry no signature.
    const results = await dkimResults(raw);
    expect(results.map((r) => `${r.status.result}`), results[0]?.info).toEqual([signatureTags(raw) ? "pass" : "none"]);
    verified++;
    return raw;
  }

  it("makes a domain's key: the answer has its selector and DNS record, never a private key; a second create is 409", async () => {
    const key: KeyAnswer = await acme.ok("POST", `/v1/domains/${DOMAIN}/dkim`);
    expect(key).toMatchObject({ domain: DOMAIN, status: "active", retire_after: null });
    expect(key.selector).toMatch(/^pm\d{8}-[0-9a-f]{8}$/);
    expect(key.dns.name).toBe(`${key.selector}._domainkey.${DOMAIN}`);
    expect(key.dns.value).toMatch(/^v=DKIM1; k=rsa; p=[A-Za-z0-9+/]+=*$/);
    // A 2048-bit key's SubjectPublicKeyInfo is 294 bytes: 392 base64 characters.
    expect(key.dns.value.length - "v=DKIM1; k=rsa; p=".length).toBe(392);
    firstSelector = key.selector;

    const again = await acme.call("POST", `/v1/domains/${DOMAIN}/dkim`);
    expect(again.status).toBe(409);
    expect(again.json.detail).toContain("/rotate");
    // The domain in any case is the same domain.
    expect((await acme.call("POST", `/v1/domains/${DOMAIN.toUpperCase()}/dkim`)).status).toBe(409);

    const list = await acme.ok("GET", `/v1/domains/${DOMAIN}/dkim`);
    expect(list).toEqual({ domain: DOMAIN, keys: [{ ...key }] });
    publish(list.keys);
  });

  it("signs SMTP mail from the domain; mailauth passes every message and h= covers List-Unsubscribe and List-Unsubscribe-Post", async () => {
    const raw = await send();
    const tags = signatureTags(raw)!;
    expect(tags).toMatchObject({ d: DOMAIN, s: firstSelector, a: "rsa-sha256", c: "relaxed/relaxed" });
    const signed = tags.h!.toLowerCase().split(":");
    for (const h of ["from", "to", "subject", "date", "message-id", "list-unsubscribe", "list-unsubscribe-post", "mime-version", "content-type"]) {
      expect(signed, h).toContain(h);
    }
    const [result, ...more] = await dkimResults(raw);
    expect(more).toEqual([]);
    expect(result!.status.result, result!.info).toBe("pass");
    expect(result).toMatchObject({ signingDomain: DOMAIN, selector: firstSelector });
    signedWithFirst.push(raw);
  });

  it("any subject, header value and Unicode body still verifies (property)", async () => {
    // Printable text of any script: what a template or a tenant puts in a subject or a header.
    const text = (max: number) =>
      fc.string({ unit: "grapheme", maxLength: max }).map((s) => s.replace(/[\u0000-\u001f\u007f-\u009f\u2028\u2029]/g, " "));
    await fc.assert(
      fc.asyncProperty(text(200), text(2_000), text(100), fc.constantFrom("", "\r\n", "\r\n\r\n"), async (subject, body, note, trailer) => {
        const raw = await send({
          subject: subject.trim() === "" ? "(none)" : subject,
          text: body + trailer,
          html: `<p>${body.replace(/[<&]/g, "")}</p>${trailer}`,
          headers: {
            "List-Unsubscribe": `<https://jobs.test/u/v2.${Buffer.from(note).toString("base64url")}>`,
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
            "X-Note": note,
          },
        });
        const [result] = await dkimResults(raw);
        expect(result!.status.result, result!.info).toBe("pass");
        signedWithFirst.push(raw);
      }),
      { numRuns: 25, seed: 7_015 },
    );
  });

  it("a tampered signed header or body fails verification", async () => {
    const raw = (await send({ subject: "Invoice 42 is ready" })).toString("latin1");
    expect((await dkimResults(raw))[0]!.status.result).toBe("pass");
    const tampered = {
      subject: raw.replace(/^Subject: .*$/m, "Subject: Invoice 43 is ready"),
      listUnsubscribe: raw.replace(/^List-Unsubscribe: <[^>]*>/m, "List-Unsubscribe: <https://evil.test/u/x>"),
      from: raw.replace(/^From: .*$/m, "From: Acme <ceo@mail.acme.test>"),
      body: raw.replace("Hello", "Hallo"),
    };
    for (const [what, message] of Object.entries(tampered)) {
      expect(message, what).not.toBe(raw);
      const [result] = await dkimResults(message);
      // A changed header breaks the signature (fail); a changed body its body hash, which
      // mailauth reports as neutral ("body hash did not verify"): either way, not a pass.
      expect(result!.status.result, `${what}: ${result!.info}`).toBe(what === "body" ? "neutral" : "fail");
    }
  });

  it("mail from a domain without a key goes unsigned, as before", async () => {
    const raw = await send({ from: "Acme <news@unsigned.acme.test>" });
    expect(signatureTags(raw)).toBeUndefined();
    const results = await dkimResults(raw);
    expect(results.map((r) => r.status.result)).toEqual(["none"]);
  });

  it("rotation: new mail is signed with the new selector (once the signer's cache turns), mail signed with the old one still verifies while it retires", async () => {
    const rotated = await acme.ok("POST", `/v1/domains/${DOMAIN}/dkim/rotate`, { retiring_hours: 48 });
    expect(rotated.retiring).toMatchObject({ selector: firstSelector, status: "retiring" });
    expect(rotated.active).toMatchObject({ domain: DOMAIN, status: "active", retire_after: null });
    expect(rotated.active.selector).not.toBe(firstSelector);
    expect(new Date(rotated.retiring.retire_after).getTime() - new Date(rotated.active.created_at).getTime()).toBe(48 * 3_600_000);
    const list = await acme.ok("GET", `/v1/domains/${DOMAIN}/dkim`);
    expect(list.keys.map((k: KeyAnswer) => [k.selector, k.status])).toEqual([
      [rotated.active.selector, "active"],
      [firstSelector, "retiring"],
    ]);
    publish(list.keys);

    // Within the signer's cache period (60 s) the key it holds still signs, and verifies.
    const stale = await send();
    expect(signatureTags(stale)!.s).toBe(firstSelector);
    expect((await dkimResults(stale))[0]!.status.result).toBe("pass");
    signerClock.at += 60_001;
    const fresh = await send();
    expect(signatureTags(fresh)!.s).toBe(rotated.active.selector);
    expect((await dkimResults(fresh))[0]!.status.result).toBe("pass");

    // Everything signed with the first key before the rotation still verifies against its record.
    expect(signedWithFirst.length).toBeGreaterThan(20);
    for (const raw of signedWithFirst) expect((await dkimResults(raw))[0]!.status.result).toBe("pass");

    // Past retire_after it is retired: the API says its record may go, and without it the old mail no longer verifies.
    await db.sql.query("update dkim_keys set retire_after = now() - interval '1 second' where selector = $1", [firstSelector]);
    const later = await acme.ok("GET", `/v1/domains/${DOMAIN}/dkim`);
    expect(later.keys.map((k: KeyAnswer) => k.status)).toEqual(["active", "retired"]);
    publish(later.keys);
    expect((await dkimResults(signedWithFirst[0]!))[0]!.status.result).not.toBe("pass");
    expect((await dkimResults(fresh))[0]!.status.result).toBe("pass");
  });

  it("a tenant cannot read or rotate another tenant's keys, and its own key of the same name signs only its own mail", async () => {
    expect((await globex.call("GET", `/v1/domains/${DOMAIN}/dkim`)).status).toBe(404);
    expect((await globex.call("POST", `/v1/domains/${DOMAIN}/dkim/rotate`)).status).toBe(404);
    // A tenant key's ?tenant_id= does not reach another tenant either.
    expect((await globex.call("GET", `/v1/domains/${DOMAIN}/dkim?tenant_id=acme`)).status).toBe(404);
    const before = await db.sql.query("select tenant_id, selector, status from dkim_keys where tenant_id = 'acme' order by id");

    const own: KeyAnswer = await globex.ok("POST", `/v1/domains/${DOMAIN}/dkim`);
    publish([own]);
    expect((await globex.ok("GET", `/v1/domains/${DOMAIN}/dkim`)).keys.map((k: KeyAnswer) => k.selector)).toEqual([own.selector]);
    expect(await db.sql.query("select tenant_id, selector, status from dkim_keys where tenant_id = 'acme' order by id")).toEqual(before);
    signerClock.at += 60_001;
    const acmeMail = await send();
    expect(signatureTags(acmeMail)!.s).not.toBe(own.selector);
    const globexMail = await send({ tenantId: "globex" });
    expect(signatureTags(globexMail)!.s).toBe(own.selector);

    // An admin names the tenant; without one it is told to.
    expect((await admin.ok("GET", `/v1/domains/${DOMAIN}/dkim?tenant_id=acme`)).keys).toHaveLength(2);
    const unnamed = await admin.call("GET", `/v1/domains/${DOMAIN}/dkim`);
    expect(unnamed.status).toBe(422);
    expect(unnamed.json.errors.map((e: { path: string }) => e.path)).toEqual(["tenant_id"]);
  });

  it("refuses a bad domain or body with 422 naming the field, storing nothing", async () => {
    const count = async () => (await db.sql.query<{ n: number }>("select count(*)::int as n from dkim_keys"))[0]!.n;
    const before = await count();
    const bad = ["localhost", "-acme.test", "acme-.test", "a..test", "acme.test.", "ac me.test", "xn--bcher-kva.123", encodeURIComponent("bücher.test"), `${"a".repeat(64)}.test`, `${"a.".repeat(127)}test`, "%00.test"];
    for (const domain of bad) {
      const res = await acme.call("POST", `/v1/domains/${domain}/dkim`);
      expect(res.status, domain).toBe(422);
      if (domain !== "%00.test") expect(res.json.errors.map((e: { path: string }) => e.path), domain).toEqual(["domain"]);
    }
    const unicode = await acme.call("GET", `/v1/domains/${encodeURIComponent("bücher.test")}/dkim`);
    expect(unicode.json.errors[0].message).toContain("punycode");
    for (const [body, path] of [
      [{ retiring_hours: -1 }, "retiring_hours"],
      [{ retiring_hours: 24 * 31 }, "retiring_hours"],
      [{ retiring_hours: "48" }, "retiring_hours"],
      [{ retire: 1 }, "retire"],
    ] as const) {
      const res = await acme.call("POST", `/v1/domains/${DOMAIN}/dkim/rotate`, body);
      expect(res.status, JSON.stringify(body)).toBe(422);
      expect(res.json.errors.map((e: { path: string }) => e.path)).toEqual([path]);
    }
    expect(await count()).toBe(before);
  });

  it("bounds what one tenant can make: 100 domains (409), 20 keys an hour (429 with Retry-After); a refusal stores nothing", async () => {
    const T = "initech";
    // 100 domains with an active key, made two hours ago (100 real RSA keys would take seconds).
    await db.sql.query("insert into tenants (id, name) values ($1, $1) on conflict (id) do nothing", [T]);
    await db.sql.query(
      `insert into dkim_keys (tenant_id, domain, selector, private_key_sealed, public_key, created_at)
       select $1, 'd' || g || '.initech.test', 'pm20000101-00000000', 'v1.not-a-key', 'public', now() - interval '2 hours' from generate_series(1, $2::int) g`,
      [T, MAX_DOMAINS],
    );
    const count = async () => (await db.sql.query<{ n: number }>("select count(*)::int as n from dkim_keys where tenant_id = $1", [T]))[0]!.n;
    const tooMany = await admin.call("POST", `/v1/domains/one-more.initech.test/dkim?tenant_id=${T}`);
    expect(tooMany.status).toBe(409);
    expect(tooMany.json.detail).toContain(`at most ${MAX_DOMAINS} domains`);
    expect(await count()).toBe(MAX_DOMAINS);
    // Rotations of a domain it has are keys made: MAX_KEYS_PER_HOUR of them, then 429.
    for (let i = 0; i < MAX_KEYS_PER_HOUR; i++) await admin.ok("POST", `/v1/domains/d1.initech.test/dkim/rotate?tenant_id=${T}`, { retiring_hours: 0 });
    const before = await count();
    const res = await app.request(`/v1/domains/d1.initech.test/dkim/rotate?tenant_id=${T}`, {
      method: "POST",
      headers: { authorization: `Bearer ${adminKey}` },
    });
    expect(res.status).toBe(429);
    expect(res.headers.get("content-type")).toContain("application/problem+json");
    const retryAfter = Number(res.headers.get("retry-after"));
    expect(retryAfter).toBeGreaterThan(0);
    expect(retryAfter).toBeLessThanOrEqual(3600);
    expect((await res.json()).detail).toContain(`${MAX_KEYS_PER_HOUR} DKIM keys a tenant an hour`);
    expect(await count()).toBe(before);
    // Another tenant is not held back by this one's allowance.
    expect((await globex.call("POST", "/v1/domains/other.globex.test/dkim")).status).toBe(201);
    await db.sql.query("delete from dkim_keys where tenant_id = $1", [T]); // the made-up rows seal nothing
  });

  it("the database holds no private key in clear: sealed under DKIM_ENCRYPTION_KEY and bound to its row", async () => {
    const rows = await db.sql.query<{ tenant_id: string; domain: string; selector: string; private_key_sealed: string; row: string }>(
      "select tenant_id, domain, selector, private_key_sealed, to_jsonb(k)::text as row from dkim_keys k",
    );
    expect(rows.length).toBeGreaterThanOrEqual(3);
    const cipher = new DkimKeyCipher(KEK);
    for (const r of rows) {
      expect(r.row).not.toContain("PRIVATE KEY");
      expect(r.private_key_sealed).toMatch(/^v1\.[A-Za-z0-9_-]+$/);
      const owner = { tenantId: r.tenant_id, domain: r.domain, selector: r.selector };
      const pem = await cipher.open(owner, r.private_key_sealed);
      const der = pem.replace(/-----[A-Z ]+-----|\s/g, "");
      // Neither the PEM's base64 nor the DER bytes themselves (as hex in the row's text) are there.
      expect(r.row).not.toContain(der.slice(40, 100));
      expect(r.row).not.toContain(Buffer.from(der, "base64").subarray(20, 60).toString("hex"));
      // Another secret, or the same sealed key on another tenant's row, does not open it.
      await expect(new DkimKeyCipher(`${KEK}-other`).open(owner, r.private_key_sealed)).rejects.toThrow(/DKIM_ENCRYPTION_KEY/);
      await expect(cipher.open({ ...owner, tenantId: `${r.tenant_id}-x` }, r.private_key_sealed)).rejects.toThrow(/does not open/);
      // No answer of this file, nor a redacted log line quoting it, carries any of it.
      for (const a of answers) {
        expect(a).not.toContain("PRIVATE KEY");
        expect(a).not.toContain(der.slice(40, 100));
        expect(a).not.toContain(r.private_key_sealed.slice(3, 60));
      }
      expect(redactText(`signing failed with ${pem}`)).not.toContain(der.slice(40, 100));
    }
  });

  it("every message the relay received was verified by mailauth", () => {
    expect(sink.received.length).toBeGreaterThan(30);
    expect(verified).toBe(sink.received.length);
  });

  it("a key that does not open fails the send, naming the setting, before the relay is spoken to", async () => {
    const received = sink.received.length;
    for (const encryptionKey of [undefined, `${KEK}-rotated-by-mistake`]) {
      const signer = createDkimSigner({ keys: new DkimKeys(db.sql, engine.clock, undefined), encryptionKey });
      const wrong = createSmtpMailer(`smtp://127.0.0.1:${sink.port}`, { dkim: signer });
      try {
        const err = await wrong
          .send({ tenantId: "acme", from: FROM, to: "never@example.com", subject: "x", html: "x", text: "x", idempotencyKey: `wrong:${encryptionKey}` })
          .then(() => undefined, (e: unknown) => e);
        expect(err).toBeInstanceOf(DkimSigningError);
        expect((err as Error).message).toContain("DKIM_ENCRYPTION_KEY");
        expect((err as Error).message).not.toMatch(/PRIVATE KEY|v1\./);
      } finally {
        await wrong.close();
      }
    }
    expect(sink.received.length).toBe(received);
  });
});

describe("DKIM through the node runtime's mail wiring: a campaign over SMTP", () => {
  it("signs every campaign message the relay receives, List-Unsubscribe headers included", async () => {
    const db = await createTestDatabase("dkim_wiring");
    const sink = await startSink();
    const stops: (() => Promise<void>)[] = [];
    try {
      const config = loadConfig({
        SMTP_URL: `smtp://127.0.0.1:${sink.port}`,
        MAIL_PROVIDERS: "smtp",
        MAIL_FROM: "Globex <hello@news.globex.test>",
        PUBLIC_URL: "http://jobs.test",
        DKIM_ENCRYPTION_KEY: KEK,
      });
      const engine = createEngine({ sql: db.sql, catalog: fastCatalog() });
      await engine.dispatcher.start();
      const mail = nodeEmailServices(config, { sql: db.sql, clock: engine.clock, pepper: PEPPER, dkimEncryptionKey: KEK, logger: silentLogger });
      const handlers = createHandlers({ sql: db.sql, clock: engine.clock, email: { queue: engine.queue, logger: silentLogger, send: mail.send } });
      const pools = [
        new WorkerPool({ name: "email", handlers: handlers.filter((h) => h.type === "email.send"), concurrency: 4, queue: engine.queue, stats: engine.stats, workerId: "dkim-email", idleWaitMs: 50 }),
        new WorkerPool({ name: "default", handlers: handlers.filter((h) => h.type === "campaign.process"), concurrency: 1, queue: engine.queue, stats: engine.stats, workerId: "dkim-default", idleWaitMs: 50 }),
      ];
      const scheduler = new Scheduler({ queue: engine.queue, holderId: "dkim-test" });
      stops.push(async () => scheduler.stop(), ...pools.map((p) => () => p.stop(2_000)), () => mail.close(), () => engine.dispatcher.close());
      for (const p of pools) p.start();
      scheduler.start(25);
      const apiKeys = new ApiKeys(db.sql, { pepper: PEPPER });
      const app = createApp({ queue: engine.queue, sql: db.sql, apiKeys, unsubscribe: mail.unsubscribe, dkimEncryptionKey: KEK });
      const api = jsonApi((p, init) => app.request(p, init), (await apiKeys.create({ tenantId: "globex", admin: false, name: "web" })).key).ok;

      const key: KeyAnswer = await api("POST", "/v1/domains/news.globex.test/dkim");
      publish([key]);
      const list = await api("POST", "/v1/lists", { name: "news" });
      await api("POST", "/v1/contacts", { list_id: list.id, contacts: [1, 2, 3].map((n) => ({ email: `reader${n}@example.com`, name: `Reader ${n}` })) });
      const template = await api("POST", "/v1/templates", { name: "n", subject: "News for {{name}}", blocks: [{ type: "text", text: "Grüße, {{name}} ✓" }] });
      const campaign = await api("POST", "/v1/campaigns", { name: "n", template_id: template.id, list_id: list.id });
      await api("POST", `/v1/campaigns/${campaign.id}/start`);
      await waitFor(async () => (await api("GET", `/v1/campaigns/${campaign.id}`)).status === "sent", { what: "the campaign to be sent" });

      expect(sink.received.map((m) => m.to).sort()).toEqual(["reader1@example.com", "reader2@example.com", "reader3@example.com"]);
      for (const m of sink.received) {
        const tags = signatureTags(m.raw)!;
        expect(tags).toMatchObject({ d: "news.globex.test", s: key.selector });
        expect(tags.h!.toLowerCase().split(":")).toEqual(expect.arrayContaining(["list-unsubscribe", "list-unsubscribe-post"]));
        expect(m.raw.toString("latin1")).toMatch(/^List-Unsubscribe-Post: List-Unsubscribe=One-Click\r$/m);
        const res = await authenticate(m.raw, { resolver: resolver as never, ip: "127.0.0.1", helo: "relay.test", mta: "sink.test", disableArc: true, disableBimi: true, disableDmarc: true });
        expect(res.dkim.results.map((r) => r.status.result)).toEqual(["pass"]);
      }
    } finally {
      for (const stop of stops) await stop().catch(() => {});
      await sink.close();
      await db.drop();
    }
  });
});

describe("DKIM_ENCRYPTION_KEY", () => {
  it("an invalid value stops the start with a message naming the variable", () => {
    expect(() => loadConfig({ DKIM_ENCRYPTION_KEY: "too-short" })).toThrow(ConfigError);
    expect(() => loadConfig({ DKIM_ENCRYPTION_KEY: "too-short" })).toThrow(/DKIM_ENCRYPTION_KEY: must be at least 32 characters/);
  });

  it("unset with DATABASE_URL: the API lists keys but makes none, saying which variable to set", async () => {
    const db = await createTestDatabase("dkim_nokey");
    try {
      const engine = createEngine({ sql: db.sql });
      const apiKeys = new ApiKeys(db.sql, { pepper: PEPPER });
      const app = createApp({ queue: engine.queue, sql: db.sql, apiKeys });
      const api = jsonApi((p, init) => app.request(p, init), (await apiKeys.create({ tenantId: "acme", admin: false, name: "web" })).key);
      const res = await api.call("POST", "/v1/domains/acme.test/dkim");
      expect(res.status).toBe(409);
      expect(res.json.detail).toContain("DKIM_ENCRYPTION_KEY");
      expect((await db.sql.query("select * from tenants")).length).toBe(0);
    } finally {
      await db.drop();
    }
  });

  it("on the embedded default one is made and kept in DATA_DIR, like the pepper and the admin key", async () => {
    const dataDir = await mkdtemp(join(tmpdir(), "pm-dkim-"));
    try {
      const config = loadConfig({ DATA_DIR: dataDir });
      const first = await openDatabase(config, silentLogger, { migrate: false });
      await first.close();
      const file = join(dataDir, "dkim-encryption-key");
      expect((await stat(file)).mode & 0o777).toBe(0o600);
      expect(first.dkimEncryptionKey).toBe((await readFile(file, "utf8")).trim());
      expect(first.dkimEncryptionKey!.length).toBeGreaterThanOrEqual(32);
      const second = await openDatabase(config, silentLogger, { migrate: false });
      await second.close();
      expect(second.dkimEncryptionKey).toBe(first.dkimEncryptionKey);
      const configured = await openDatabase(loadConfig({ DATA_DIR: dataDir, DKIM_ENCRYPTION_KEY: KEK }), silentLogger, { migrate: false });
      await configured.close();
      expect(configured.dkimEncryptionKey).toBe(KEK);
    } finally {
      await rm(dataDir, { recursive: true, force: true });
    }
  });
});

/**
 * The mail providers and the send-rate limiter against real counterparts: the Resend mailer
 * against tools/resend-mock-server.ts (Resend's API, locally), the SMTP mailer against a real
 * SMTP server (smtp-server, on a free port), the outbox against Postgres, and the GCRA limiter
 * on Redis and on Postgres with a controlled clock.
 */
import { once } from "node:events";
import type { AddressInfo } from "node:net";
import { SMTPServer, type SMTPServerAddress } from "smtp-server";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { ProviderError, type OutgoingMessage } from "../shared/email/mailer";
import { createOutboxMailer } from "../shared/email/providers/outbox";
import { createResendMailer } from "../shared/email/providers/resend";
import {
  createPostgresRateLimiter,
  createRedisRateLimiter,
  type RateDecision,
  type RateLimit,
  type RateLimiter,
} from "../shared/email/rate-limit";
import type { Clock, Redis, Sql } from "../shared/ports";
import { startResendMock, type ResendMock } from "../tools/resend-mock-server";
import { createPgSql } from "../workers/node/postgres";
import { createIoRedis } from "../workers/node/redis";
import { createSmtpMailer, messageIdFor } from "../workers/node/smtp";
import { createTestDatabase, randomId, REDIS_URL } from "./support/services";

let db: Awaited<ReturnType<typeof createTestDatabase>>;
beforeAll(async () => {
  db = await createTestDatabase("email_providers");
});
afterAll(async () => {
  await db?.drop();
});

const message = (n: number | string, over: Partial<OutgoingMessage> = {}): OutgoingMessage => ({
  tenantId: "acme",
  from: "Acme <news@acme.test>",
  to: `user${n}@example.com`,
  subject: `Hello ${n}`,
  html: `<p>Hello ${n}</p>`,
  text: `Hello ${n}`,
  headers: { "List-Unsubscribe": `<https://acme.test/u/${n}>`, "List-Unsubscribe-Post": "List-Unsubscribe=One-Click" },
  idempotencyKey: `send-${n}-${randomId(3)}`,
  ...over,
});

/** The ProviderError a promise rejects with (fails the test if it resolves or throws something else). */
async function providerError(p: Promise<unknown>): Promise<ProviderError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(ProviderError);
  return err as ProviderError;
}

describe("Resend mailer against the local Resend API", () => {
  const API_KEY = `re_${randomId(12)}`;
  let mock: ResendMock;
  let mailer: ReturnType<typeof createResendMailer>;

  beforeAll(async () => {
    mock = await startResendMock({ apiKey: API_KEY });
    mailer = createResendMailer({ apiKey: API_KEY, baseUrl: mock.url, timeoutMs: 2_000 });
  });
  afterAll(async () => {
    await mock?.close();
  });
  beforeEach(() => mock.reset());

  it("sends one email with its Idempotency-Key, headers and tags", async () => {
    const m = message(1, { tags: { campaign: "spring sale", "tenant id": "acme" } });
    const result = await mailer.send(m);
    expect(result.providerMessageId).toMatch(/^[0-9a-f-]{36}$/);
    const [d, ...rest] = mock.delivered();
    expect(rest).toEqual([]);
    expect(d).toMatchObject({
      id: result.providerMessageId,
      from: m.from,
      to: [m.to],
      subject: m.subject,
      html: m.html,
      text: m.text,
      headers: m.headers,
      idempotencyKey: m.idempotencyKey,
      batch: false,
    });
    // Resend refuses tags with spaces; the mailer cleans them instead of losing the mail.
    expect(d!.tags).toEqual([
      { name: "campaign", value: "spring_sale" },
      { name: "tenant_id", value: "acme" },
    ]);
  });

  it("sends a batch of 100 in one request, ids in input order", async () => {
    expect(mailer.maxBatch).toBe(100);
    const batch = Array.from({ length: 100 }, (_, i) => message(i));
    const results = await mailer.sendBatch!(batch);
    expect(mock.requests()).toBe(1);
    const delivered = mock.delivered();
    expect(delivered.map((d) => d.to[0])).toEqual(batch.map((m) => m.to));
    expect(results.map((r) => r.providerMessageId)).toEqual(delivered.map((d) => d.id));
    expect(delivered.every((d) => d.batch && d.idempotencyKey?.startsWith("batch/"))).toBe(true);
    await expect(mailer.sendBatch!([...batch, message(100)])).rejects.toThrow(/at most 100/);
  });

  it("an idempotent repeat delivers once and answers the same id (send and batch)", async () => {
    const m = message("again");
    const first = await mailer.send(m);
    const second = await mailer.send(m);
    expect(second).toEqual(first);

    const batch = [message("b1"), message("b2"), message("b3")];
    const a = await mailer.sendBatch!(batch);
    const b = await mailer.sendBatch!(batch);
    expect(b).toEqual(a);

    expect(mock.requests()).toBe(4);
    expect(mock.delivered().map((d) => d.to[0])).toEqual([m.to, ...batch.map((x) => x.to)]);
  });

  it("the same key with another message is refused (409), as Resend does: rejected", async () => {
    const m = message("conflict");
    await mailer.send(m);
    const err = await providerError(mailer.send({ ...m, subject: "Something else" }));
    expect(err.failure).toBe("rejected");
    expect(err.message).toMatch(/409 invalid_idempotent_request/);
    expect(mock.delivered()).toHaveLength(1);
  });

  it("429 with Retry-After -> rate_limited with retryAfterMs; nothing delivered; the retry goes through", async () => {
    mock.inject([{ status: 429, retryAfterSeconds: 7 }]);
    const m = message("limited");
    const err = await providerError(mailer.send(m));
    expect(err.failure).toBe("rate_limited");
    expect(err.retryable).toBe(true);
    expect(err.retryAfterMs).toBe(7_000);
    expect(mock.delivered()).toHaveLength(0);
    await mailer.send(m);
    expect(mock.delivered()).toHaveLength(1);
  });

  it("429 with only ratelimit-reset -> retryAfterMs from it; periodic 429s hit batches too", async () => {
    mock.inject([{ status: 429, headers: { "retry-after": "", "ratelimit-reset": "3" } }]);
    // An empty Retry-After is no number: the reset header decides.
    const err = await providerError(mailer.send(message("reset")));
    expect(err).toMatchObject({ failure: "rate_limited", retryAfterMs: 3_000 });

    mock.inject({ failEvery429: 2, retryAfterSeconds: 2 });
    await mailer.sendBatch!([message("p1")]);
    const batchErr = await providerError(mailer.sendBatch!([message("p2")]));
    expect(batchErr).toMatchObject({ failure: "rate_limited", retryAfterMs: 2_000 });
  });

  it("500, a dropped connection, a refused connection and a timeout -> unavailable", async () => {
    mock.inject([500]);
    const e500 = await providerError(mailer.send(message("e500")));
    expect(e500.failure).toBe("unavailable");
    expect(e500.message).toMatch(/500 internal_server_error/);

    mock.inject([{ drop: true }]);
    expect((await providerError(mailer.send(message("drop")))).failure).toBe("unavailable");

    mock.inject([{ delayMs: 5_000 }]);
    const slow = createResendMailer({ apiKey: API_KEY, baseUrl: mock.url, timeoutMs: 200 });
    const timeout = await providerError(slow.send(message("slow")));
    expect(timeout.failure).toBe("unavailable");
    expect(timeout.message).toMatch(/timed out after 200 ms/);

    const closed = await startResendMock();
    const url = closed.url;
    await closed.close();
    const nowhere = createResendMailer({ apiKey: API_KEY, baseUrl: url });
    expect((await providerError(nowhere.send(message("nowhere")))).failure).toBe("unavailable");
    expect(mock.delivered()).toHaveLength(0);
  });

  it("the caller's abort is not a provider failure", async () => {
    mock.inject([{ delayMs: 5_000 }]);
    const controller = new AbortController();
    const sending = mailer.send(message("aborted"), controller.signal);
    setTimeout(() => controller.abort(new Error("job cancelled")), 50);
    await expect(sending).rejects.toThrow("job cancelled");
  });

  it("a wrong key (403) and a 401 -> auth; the key never appears in error messages", async () => {
    const wrong = createResendMailer({ apiKey: "re_wrong_key_123456", baseUrl: mock.url });
    const e403 = await providerError(wrong.send(message("wrong")));
    expect(e403.failure).toBe("auth");
    expect(e403.retryable).toBe(false);
    expect(e403.message).toMatch(/403 invalid_api_key/);
    expect(e403.message).not.toContain("re_wrong_key_123456");

    mock.inject([401]);
    const e401 = await providerError(mailer.send(message("401")));
    expect(e401.failure).toBe("auth");

    // A server that echoes the Authorization header back still does not leak the key.
    mock.inject([{ status: 422, body: { statusCode: 422, name: "validation_error", message: `bad header Bearer ${API_KEY}` } }]);
    const echoed = await providerError(mailer.send(message("echo")));
    const all = [e403, e401, echoed].map((e) => `${e.message} ${e.stack} ${JSON.stringify(e)}`).join("\n");
    expect(all).not.toContain(API_KEY);
    expect(echoed.message).toContain("[redacted]");
    expect(mock.delivered()).toHaveLength(0);
  });

  it("422 validation errors -> rejected (a bad recipient, a missing subject, one bad message in a batch)", async () => {
    const badTo = await providerError(mailer.send(message("bad", { to: "not-an-address" })));
    expect(badTo.failure).toBe("rejected");
    expect(badTo.retryable).toBe(false);
    expect(badTo.message).toMatch(/422 validation_error: Invalid `to` field/);

    const noSubject = await providerError(mailer.send(message("nosubject", { subject: "" })));
    expect(noSubject).toMatchObject({ failure: "rejected" });
    expect(noSubject.message).toMatch(/422 missing_required_field: Missing `subject` field/);

    const batchErr = await providerError(mailer.sendBatch!([message("ok"), message("bad", { from: "nobody" })]));
    expect(batchErr.failure).toBe("rejected");
    expect(batchErr.message).toMatch(/invalid_from_address/);
    expect(mock.delivered()).toHaveLength(0);
  });

  it("the mock answers like Resend: error shape, 409 on a reused key, permissive batches", async () => {
    const post = (path: string, body: unknown, headers: Record<string, string> = {}) =>
      fetch(`${mock.url}${path}`, {
        method: "POST",
        headers: { authorization: `Bearer ${API_KEY}`, "content-type": "application/json", ...headers },
        body: JSON.stringify(body),
      });
    const missing = await post("/emails", { from: "a@acme.test", subject: "x", text: "x" });
    expect(missing.status).toBe(422);
    expect(await missing.json()).toEqual({ statusCode: 422, name: "missing_required_field", message: "Missing `to` field." });

    const noAuth = await fetch(`${mock.url}/emails`, { method: "POST", body: "{}" });
    expect(noAuth.status).toBe(401);
    expect(await noAuth.json()).toMatchObject({ name: "missing_api_key" });

    const email = { from: "a@acme.test", to: "b@example.com", subject: "x", text: "x" };
    const r1 = await post("/emails", email, { "idempotency-key": "k1" });
    const r2 = await post("/emails", email, { "idempotency-key": "k1" });
    expect(await r2.json()).toEqual(await r1.json());
    const r3 = await post("/emails", { ...email, subject: "y" }, { "idempotency-key": "k1" });
    expect(r3.status).toBe(409);
    expect(await r3.json()).toMatchObject({ name: "invalid_idempotent_request" });

    const permissive = await post("/emails/batch", [email, { ...email, to: "nope" }], { "x-batch-validation": "permissive" });
    expect(permissive.status).toBe(200);
    const body = (await permissive.json()) as { data: unknown[]; errors: { index: number }[] };
    expect(body.data).toHaveLength(1);
    expect(body.errors.map((e) => e.index)).toEqual([1]);
    expect(mock.delivered()).toHaveLength(2);
  });
});

describe("SMTP mailer against a real SMTP server", () => {
  const USER = "mailer";
  const PASS = `pw-${randomId(8)}`;
  let server: SMTPServer;
  let port: number;
  const received: { from: string; to: string[]; raw: string }[] = [];

  beforeAll(async () => {
    const rcptError = (address: SMTPServerAddress): Error | null => {
      const code = /^(\d{3})@/.exec(address.address)?.[1];
      if (!code) return null;
      const err = Object.assign(new Error(code === "550" ? "5.1.1 Mailbox unavailable" : "4.7.1 Try again later"), {
        responseCode: Number(code),
      });
      return err;
    };
    server = new SMTPServer({
      // Plain TCP on localhost: no certificate to make, and AUTH allowed without TLS.
      disabledCommands: ["STARTTLS"],
      allowInsecureAuth: true,
      authOptional: false,
      logger: false,
      onAuth(auth, _session, callback) {
        if (auth.username === USER && auth.password === PASS) return callback(null, { user: USER });
        callback(Object.assign(new Error("Invalid username or password"), { responseCode: 535 }));
      },
      onRcptTo(address, _session, callback) {
        callback(rcptError(address));
      },
      onData(stream, session, callback) {
        const chunks: Buffer[] = [];
        stream.on("data", (c: Buffer) => chunks.push(c));
        stream.on("end", () => {
          received.push({
            from: session.envelope.mailFrom ? session.envelope.mailFrom.address : "",
            to: session.envelope.rcptTo.map((r) => r.address),
            raw: Buffer.concat(chunks).toString("utf8"),
          });
          callback();
        });
      },
    });
    server.listen(0, "127.0.0.1");
    await once(server.server, "listening");
    port = (server.server.address() as AddressInfo).port;
  });
  afterAll(async () => {
    await new Promise<void>((resolve) => server?.close(() => resolve()));
  });

  const headersOf = (raw: string): Record<string, string> => {
    const head = raw.slice(0, raw.indexOf("\r\n\r\n")).replace(/\r\n[ \t]+/g, " ");
    return Object.fromEntries(
      head.split("\r\n").map((line) => {
        const i = line.indexOf(":");
        return [line.slice(0, i).toLowerCase(), line.slice(i + 1).trim()];
      }),
    );
  };

  it("delivers through the pool with a Message-ID derived from the idempotency key", async () => {
    const mailer = createSmtpMailer(`smtp://${USER}:${encodeURIComponent(PASS)}@127.0.0.1:${port}`);
    try {
      const m = message("smtp", { from: "Acme <news@acme.test>" });
      const result = await mailer.send(m);
      expect(result.providerMessageId).toBe(messageIdFor(m));
      expect(result.providerMessageId).toMatch(/^<[0-9a-f]{32}\.pm@acme\.test>$/);

      const got = received.at(-1)!;
      expect(got.from).toBe("news@acme.test");
      expect(got.to).toEqual([m.to]);
      const headers = headersOf(got.raw);
      expect(headers["message-id"]).toBe(result.providerMessageId);
      expect(headers.subject).toBe(m.subject);
      expect(headers.to).toBe(m.to);
      expect(headers["list-unsubscribe"]).toBe(m.headers!["List-Unsubscribe"]);
      expect(headers["list-unsubscribe-post"]).toBe("List-Unsubscribe=One-Click");
      expect(headers["content-type"]).toMatch(/^multipart\/alternative/);
      expect(got.raw).toContain(m.text);
      expect(got.raw).toContain(m.html);

      // A second run of the same message carries the same Message-ID: recognisable downstream.
      const again = await mailer.send(m);
      expect(again.providerMessageId).toBe(result.providerMessageId);
      expect(headersOf(received.at(-1)!.raw)["message-id"]).toBe(result.providerMessageId);

      // Several at once share the pool.
      const many = await Promise.all(Array.from({ length: 20 }, (_, i) => mailer.send(message(`pool${i}`))));
      expect(new Set(many.map((r) => r.providerMessageId)).size).toBe(20);
    } finally {
      await mailer.close();
    }
  });

  it("a 550 -> rejected, a 451 -> unavailable", async () => {
    const mailer = createSmtpMailer(`smtp://${USER}:${PASS}@127.0.0.1:${port}`);
    try {
      const e550 = await providerError(mailer.send(message("x", { to: "550@example.com" })));
      expect(e550.failure).toBe("rejected");
      expect(e550.message).toMatch(/550 .*Mailbox unavailable/);
      const e451 = await providerError(mailer.send(message("x", { to: "451@example.com" })));
      expect(e451.failure).toBe("unavailable");
      expect(e451.retryable).toBe(true);
      expect(e451.message).toMatch(/451/);
    } finally {
      await mailer.close();
    }
  });

  it("wrong credentials -> auth (535), a closed port -> unavailable; credentials never in messages", async () => {
    const secret = `secret-${randomId(6)}`;
    const bad = createSmtpMailer(`smtp://${USER}:${secret}@127.0.0.1:${port}`);
    try {
      const err = await providerError(bad.send(message("auth")));
      expect(err.failure).toBe("auth");
      expect(err.message).toMatch(/535/);
      expect(`${err.message} ${err.stack}`).not.toContain(secret);
    } finally {
      await bad.close();
    }

    const probe = new SMTPServer({ logger: false });
    probe.listen(0, "127.0.0.1");
    await once(probe.server, "listening");
    const freePort = (probe.server.address() as AddressInfo).port;
    await new Promise<void>((resolve) => probe.close(() => resolve()));
    const nowhere = createSmtpMailer(`smtp://${USER}:${secret}@127.0.0.1:${freePort}`);
    try {
      const err = await providerError(nowhere.send(message("nowhere")));
      expect(err.failure).toBe("unavailable");
      expect(`${err.message} ${err.stack}`).not.toContain(secret);
    } finally {
      await nowhere.close();
    }
  });
});

describe("SMTP mailer: the handover hooks, in plain text and after STARTTLS", () => {
  /** A relay that notes when each message's data ended, and answers 250, or 451 for 451@ addresses. */
  async function relay(opts: { starttls: boolean }) {
    const ended: { to: string; at: number }[] = [];
    const server = new SMTPServer({
      // With STARTTLS on, smtp-server upgrades with its bundled self-signed certificate.
      disabledCommands: opts.starttls ? ["AUTH"] : ["STARTTLS", "AUTH"],
      authOptional: true,
      logger: false,
      onData(stream, session, callback) {
        stream.resume();
        stream.on("end", () => {
          const to = session.envelope.rcptTo[0]!.address;
          ended.push({ to, at: performance.now() });
          const refuse = to.startsWith("451@");
          // The reply comes 30 ms after the data: the hook must have fired before it.
          setTimeout(() => callback(refuse ? Object.assign(new Error("4.3.0 try later"), { responseCode: 451 }) : null), 30);
        });
      },
    });
    server.listen(0, "127.0.0.1");
    await once(server.server, "listening");
    const port = (server.server.address() as AddressInfo).port;
    return { ended, port, secure: opts.starttls, close: () => new Promise<void>((r) => server.close(() => r())) };
  }

  for (const starttls of [false, true]) {
    it(`${starttls ? "after STARTTLS" : "in plain text"}: handedOver once, when the data has left, before the reply; notTaken after a 451`, async () => {
      const r = await relay({ starttls });
      const url = starttls
        ? `smtp://127.0.0.1:${r.port}?requireTLS=true&tls.rejectUnauthorized=false`
        : `smtp://127.0.0.1:${r.port}`;
      const mailer = createSmtpMailer(url);
      try {
        const events: { what: string; at: number; id?: string }[] = [];
        const hooks = {
          handedOver: (id: string) => void events.push({ what: "handedOver", at: performance.now(), id }),
          notTaken: () => void events.push({ what: "notTaken", at: performance.now() }),
        };
        const m = message("tls", { from: "Acme <news@acme.test>" });
        const result = await mailer.send(m, undefined, hooks);
        const answered = performance.now();
        expect(events.map((e) => e.what)).toEqual(["handedOver"]);
        expect(events[0]!.id).toBe(result.providerMessageId);
        // Handed over once the data had left, well before the relay answered (30 ms later).
        expect(r.ended).toHaveLength(1);
        expect(events[0]!.at).toBeLessThan(answered - 20);

        events.length = 0;
        const refused = await providerError(mailer.send(message("tls-451", { to: "451@example.com" }), undefined, hooks));
        expect(refused.failure).toBe("unavailable");
        expect(events.map((e) => e.what)).toEqual(["handedOver", "notTaken"]);
      } finally {
        await mailer.close();
        await r.close();
      }
    });
  }
});

describe("outbox mailer", () => {
  it("stores each message once and answers the first row's id on a repeat", async () => {
    const outbox = createOutboxMailer(db.sql);
    const m = message("outbox", { tenantId: "t1" });
    const first = await outbox.send(m);
    expect(first.providerMessageId).toMatch(/^outbox_\d+$/);
    expect(await outbox.send({ ...m, subject: "changed" })).toEqual(first);

    const rows = await db.sql.query<{ id: string; subject: string; headers: Record<string, string>; to_address: string }>(
      "select id, subject, headers, to_address from outbox_messages where idempotency_key = $1",
      [m.idempotencyKey],
    );
    expect(rows).toHaveLength(1);
    expect(`outbox_${rows[0]!.id}`).toBe(first.providerMessageId);
    expect(rows[0]).toMatchObject({ subject: m.subject, headers: m.headers, to_address: m.to });
  });

  it("stores a batch in one statement, in order, with repeats (earlier and within the batch) answered by their row", async () => {
    const outbox = createOutboxMailer(db.sql);
    const old = message("old");
    const [oldResult] = await outbox.sendBatch!([old]);
    const fresh = [message("f1"), message("f2")];
    const results = await outbox.sendBatch!([fresh[0]!, old, fresh[1]!, fresh[0]!]);
    expect(results[1]).toEqual(oldResult);
    expect(results[3]).toEqual(results[0]);
    expect(new Set(results.map((r) => r.providerMessageId)).size).toBe(3);
    const [{ count }] = (await db.sql.query<{ count: string }>(
      "select count(*)::text as count from outbox_messages where idempotency_key = any($1::text[])",
      [[old.idempotencyKey, ...fresh.map((f) => f.idempotencyKey)]],
    )) as [{ count: string }];
    expect(count).toBe("3");
  });

  it("concurrent first sends of one message store one row and agree on its id", async () => {
    const outbox = createOutboxMailer(db.sql);
    const m = message("race");
    const results = await Promise.all(Array.from({ length: 8 }, () => outbox.send(m)));
    expect(new Set(results.map((r) => r.providerMessageId)).size).toBe(1);
  });
});

describe("send-rate limiter (GCRA) on Redis and on Postgres", () => {
  let now = 1_700_000_000_000;
  const clock: Clock = { now: () => new Date(now) };
  const redisClients: Redis[] = [];
  const extraPools: Sql[] = [];
  const prefix = `test:rl:${randomId()}:`;

  const redisClient = () => {
    const r = createIoRedis(REDIS_URL);
    redisClients.push(r);
    return r;
  };

  /** Two limiters on two separate connections per backend: two workers taking from one key. */
  const backends: Record<string, () => [RateLimiter, RateLimiter]> = {
    redis: () => [
      createRedisRateLimiter(redisClient(), { prefix, clock }),
      createRedisRateLimiter(redisClient(), { prefix, clock }),
    ],
    postgres: () => {
      const other = createPgSql(db.url, { max: 5 });
      extraPools.push(other);
      return [createPostgresRateLimiter(db.sql, { clock }), createPostgresRateLimiter(other, { clock })];
    },
  };

  afterAll(async () => {
    await Promise.all([...redisClients, ...extraPools].map((c) => c.close()));
  });

  describe.each(Object.keys(backends))("%s", (backend) => {
    let a: RateLimiter;
    let b: RateLimiter;
    beforeAll(() => {
      [a, b] = backends[backend]!();
    });

    it("allows the burst, then denies with the right wait, then allows once time has passed", async () => {
      const key = `tenant:${randomId()}`;
      const limit: RateLimit = { ratePerSecond: 10, burst: 5 }; // one cell every 100 ms
      for (let i = 0; i < 5; i++) expect(await a.take(key, limit)).toEqual({ allowed: true, retryAfterMs: 0 });
      expect(await a.take(key, limit)).toEqual({ allowed: false, retryAfterMs: 100 });
      now += 60;
      expect(await b.take(key, limit)).toEqual({ allowed: false, retryAfterMs: 40 });
      now += 40;
      expect(await b.take(key, limit)).toEqual({ allowed: true, retryAfterMs: 0 });
      expect(await a.take(key, limit)).toEqual({ allowed: false, retryAfterMs: 100 });
      // Several cells at once wait for all of them.
      expect(await a.take(key, limit, 3)).toEqual({ allowed: false, retryAfterMs: 300 });
      // Idle long enough, the whole burst is back (and no more).
      now += 10_000;
      expect(await a.take(key, limit, 5)).toEqual({ allowed: true, retryAfterMs: 0 });
      expect(await a.take(key, limit)).toEqual({ allowed: false, retryAfterMs: 100 });
      // Keys are independent.
      expect(await a.take(`${key}:other`, limit)).toEqual({ allowed: true, retryAfterMs: 0 });
      await expect(a.take(key, limit, 6)).rejects.toThrow(RangeError);
    });

    it("two concurrent takers never exceed the rate", async () => {
      const key = `provider:${randomId()}`;
      const limit: RateLimit = { ratePerSecond: 20, burst: 10 }; // one cell every 50 ms
      const round = async () => {
        const results = await Promise.all(
          Array.from({ length: 30 }, (_, i) => (i % 2 === 0 ? a : b).take(key, limit)),
        );
        return results.filter((r) => r.allowed).length;
      };
      expect(await round()).toBe(10);
      let allowed = 10;
      const start = now;
      for (let step = 0; step < 8; step++) {
        now += 125; // 2.5 cells each step
        allowed += await round();
        // Never more than the burst plus what the rate has earned since the start.
        expect(allowed).toBeLessThanOrEqual(10 + Math.floor(((now - start) * limit.ratePerSecond) / 1000));
      }
      // ...and the limiter does not lose cells either: 1000 ms at 20/s is 20 more.
      expect(allowed).toBe(30);
    });
  });

  it("gives the same decisions on both backends", async () => {
    const run = async (limiter: RateLimiter, key: string) => {
      const out: RateDecision[] = [];
      // Rates whose intervals are not whole milliseconds, counts above 1, uneven steps.
      const limits: RateLimit[] = [
        { ratePerSecond: 3, burst: 4 },
        { ratePerSecond: 7, burst: 2 },
        { ratePerSecond: 0.5, burst: 3 },
      ];
      const start = now;
      let t = start;
      for (let i = 0; i < 60; i++) {
        const limit = limits[i % limits.length]!;
        now = t;
        out.push(await limiter.take(`${key}:${i % limits.length}`, limit, 1 + (i % 2)));
        t += [0, 13, 333, 1, 142, 0, 701][i % 7]!;
      }
      now = start;
      return out;
    };
    const key = `same:${randomId()}`;
    const [redis] = backends.redis!();
    const [postgres] = backends.postgres!();
    const fromRedis = await run(redis, key);
    const fromPostgres = await run(postgres, key);
    expect(fromRedis.some((d) => !d.allowed) && fromRedis.some((d) => d.allowed)).toBe(true);
    expect(fromPostgres).toEqual(fromRedis);
  });
});

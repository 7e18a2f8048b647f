import { Webhook } from "standardwebhooks";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ApiKeys } from "../shared/api/api-keys";
import { createApp } from "../shared/api/app";
import { createEngine, type Engine } from "../shared/queue/engine";
import { drain } from "../shared/queue/drain";
import { Scheduler } from "../shared/queue/scheduler";
import { WorkerPool } from "../shared/queue/worker";
import { publishEvent } from "../shared/webhooks/events";
import { generateSecret, sign, verifySignature } from "../shared/webhooks/signature";
import { checkUrl, classifyIp, parseAllowList, parseIPv6, type Resolver } from "../shared/webhooks/ssrf";
import { webhookDispatchHandler } from "../workers/handlers/webhook-dispatch";
import { nodeDnsResolver } from "../workers/node/dns-resolver";
import { fastCatalog } from "./support/engine";
import { createTestDatabase, waitFor } from "./support/services";
import { headersOf, startReceiver } from "./support/webhook-receiver";

const PEPPER = "webhook-test-pepper-0123456789";

describe("the IP classifier", () => {
  it.each([
    ["127.0.0.1", "loopback"],
    ["127.255.0.9", "loopback"],
    ["10.0.0.1", "private"],
    ["172.16.0.1", "private"],
    ["172.31.255.255", "private"],
    ["192.168.1.1", "private"],
    ["169.254.1.1", "link-local"],
    ["169.254.169.254", "metadata"],
    ["100.64.0.1", "cgnat"],
    ["100.127.255.255", "cgnat"],
    ["224.0.0.1", "multicast"],
    ["0.0.0.0", "unspecified"],
    ["255.255.255.255", "broadcast"],
    ["::", "unspecified"],
    ["::1", "loopback"],
    ["[::1]", "loopback"],
    ["fe80::1", "link-local"],
    ["fe80::1%eth0", "link-local"],
    ["fd00::1", "unique-local"],
    ["fc00::1", "unique-local"],
    ["fd00:ec2::254", "metadata"],
    ["ff02::1", "multicast"],
    ["::ffff:127.0.0.1", "loopback"],
    ["::ffff:7f00:1", "loopback"],
    ["::ffff:a9fe:a9fe", "metadata"],
    ["::ffff:10.0.0.1", "private"],
    ["0:0:0:0:0:ffff:c0a8:0101", "private"],
    ["64:ff9b::7f00:1", "loopback"],
    ["64:ff9b::10.0.0.1", "private"],
    ["2002:7f00:1::", "loopback"],
    ["2002:a9fe:a9fe::1", "metadata"],
    ["::127.0.0.1", "loopback"],
    ["::10.0.0.1", "private"],
    ["2130706433", "loopback"],
    ["0x7f.1", "loopback"],
  ])("refuses %s (%s)", (ip, kind) => {
    const verdict = classifyIp(ip);
    expect(verdict.allowed).toBe(false);
    if (!verdict.allowed) expect(verdict.kind).toBe(kind);
  });

  it.each(["93.184.216.34", "8.8.8.8", "1.1.1.1", "172.32.0.1", "100.128.0.1", "2606:4700:4700::1111", "2a00:1450:4001:80b::200e", "::ffff:8.8.8.8", "64:ff9b::808:808", "2002:0808:0808::1"])(
    "allows the public address %s",
    (ip) => expect(classifyIp(ip)).toEqual({ allowed: true }),
  );

  it("parses IPv6 forms and rejects malformed ones", () => {
    expect(parseIPv6("::ffff:127.0.0.1")).toEqual(parseIPv6("::ffff:7f00:1"));
    expect(parseIPv6("1:2:3:4:5:6:7:8")).toHaveLength(16);
    for (const bad of ["1::2::3", "12345::", "1:2:3:4:5:6:7:8:9", "::ffff:300.1.1.1", "abc", "1.2.3"]) expect(parseIPv6(bad)).toBeNull();
    expect(classifyIp("not-an-ip").allowed).toBe(false);
  });

  it("checks URLs: scheme, credentials, resolution and the allow-list", async () => {
    const resolver: Resolver = { resolve: async (h) => ({ "ok.example": ["93.184.216.34"], "mixed.example": ["93.184.216.34", "192.168.0.7"] })[h] ?? [] };
    expect((await checkUrl("https://ok.example/hook", { resolver })).ok).toBe(true);
    expect(await checkUrl("ftp://ok.example/", { resolver })).toMatchObject({ ok: false, retryable: false });
    expect(await checkUrl("file:///etc/passwd", { resolver })).toMatchObject({ ok: false, retryable: false });
    expect(await checkUrl("https://user:pw@ok.example/", { resolver })).toMatchObject({ ok: false, retryable: false });
    expect(await checkUrl("https://mixed.example/", { resolver })).toMatchObject({ ok: false, reason: expect.stringContaining("192.168.0.7") });
    expect(await checkUrl("https://nowhere.example/", { resolver })).toMatchObject({ ok: false, retryable: true });
    // Legacy IPv4 spellings are normalised by the URL parser before the check.
    expect(await checkUrl("http://0x7f000001/", { resolver })).toMatchObject({ ok: false, reason: expect.stringContaining("loopback") });
    const allow = parseAllowList(["127.0.0.1/32", "hooks.internal"]);
    expect((await checkUrl("http://127.0.0.1:8080/", { resolver, allow })).ok).toBe(true);
    expect((await checkUrl("http://[::ffff:127.0.0.1]/", { resolver, allow })).ok).toBe(true);
    expect((await checkUrl("http://hooks.internal/", { resolver, allow })).ok).toBe(true);
    expect((await checkUrl("http://127.0.0.2/", { resolver, allow })).ok).toBe(false);
    expect(() => parseAllowList(["10.0.0.0/33"])).toThrow(/10.0.0.0\/33/);
    expect(() => parseAllowList(["not a host!"])).toThrow();
  });
});

describe("verifying Standard Webhooks signatures (a receiver's side)", () => {
  const secret = generateSecret();
  const now = 1_777_000_000;
  const signed = (body: string, id = "msg_1", at = now, key = secret) => ({
    id,
    timestamp: String(at),
    signature: new Webhook(key).sign(id, new Date(at * 1000), body),
    body,
  });

  it("accepts what the reference library signs, within 5 minutes either way", async () => {
    expect(await verifySignature(secret, signed('{"a":1}'), now)).toEqual({ ok: true });
    expect(await verifySignature(secret, signed('{"a":1}', "msg_1", now - 299), now)).toEqual({ ok: true });
    expect(await verifySignature(secret, signed('{"a":1}', "msg_1", now + 299), now)).toEqual({ ok: true });
    // During a rotation the header carries several signatures; one match is enough.
    const m = signed("x");
    const other = new Webhook(generateSecret()).sign("msg_1", new Date(now * 1000), "x");
    expect(await verifySignature(secret, { ...m, signature: `v1,AAAA ${other} ${m.signature}` }, now)).toEqual({ ok: true });
  });

  it("refuses another secret, a changed body or id, an old or future timestamp, and junk", async () => {
    const m = signed('{"a":1}');
    expect(await verifySignature(generateSecret(), m, now)).toMatchObject({ ok: false, reason: "no signature matches" });
    expect(await verifySignature(secret, { ...m, body: '{"a":2}' }, now)).toMatchObject({ ok: false });
    expect(await verifySignature(secret, { ...m, id: "msg_2" }, now)).toMatchObject({ ok: false });
    expect(await verifySignature(secret, signed("x", "msg_1", now - 301), now)).toMatchObject({ ok: false, reason: expect.stringContaining("timestamp") });
    expect(await verifySignature(secret, signed("x", "msg_1", now + 301), now)).toMatchObject({ ok: false, reason: expect.stringContaining("timestamp") });
    for (const signature of ["", "v1,", "v2," + m.signature.slice(3), "v1,!!!not base64", "garbage"]) {
      expect(await verifySignature(secret, { ...m, signature }, now), signature).toMatchObject({ ok: false });
    }
    expect(await verifySignature(secret, { ...m, timestamp: "12abc" }, now)).toMatchObject({ ok: false });
  });
});

describe("webhook deliveries to a real receiver", () => {
  let db: Awaited<ReturnType<typeof createTestDatabase>>;
  let engine: Engine;
  let receiver: Awaited<ReturnType<typeof startReceiver>>;
  let app: ReturnType<typeof createApp>;
  let strictApp: ReturnType<typeof createApp>;
  let key: string;
  const stops: (() => Promise<void>)[] = [];

  const call = async (target: ReturnType<typeof createApp>, method: string, path: string, body?: unknown) => {
    const res = await target.request(path, {
      method,
      headers: { authorization: `Bearer ${key}`, ...(body === undefined ? {} : { "content-type": "application/json" }) },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    return { status: res.status, json: (await res.json()) as any };
  };
  const api = (method: string, path: string, body?: unknown) => call(app, method, path, body);
  const create = async (path: string, eventTypes: string[] = []) => {
    const res = await api("POST", "/v1/webhooks/endpoints", { url: `${receiver.url}${path}`, event_types: eventTypes });
    expect(res.status).toBe(201);
    return res.json as { id: string; secret: string };
  };
  const deliveries = async (id: string) => (await api("GET", `/v1/webhooks/endpoints/${id}/deliveries`)).json.deliveries as any[];
  const jobState = async (id: string) => (await engine.queue.get(id, "acme")).state;

  beforeAll(async () => {
    db = await createTestDatabase("webhooks");
    receiver = await startReceiver();
    // Short backoffs so the retries happen in milliseconds; the handler's behaviour is production's.
    engine = createEngine({ sql: db.sql, catalog: fastCatalog({ maxAttempts: 10 }) });
    await engine.dispatcher.start();
    const allow = parseAllowList(["127.0.0.1/32"]);
    const handler = webhookDispatchHandler({ sql: db.sql, clock: engine.clock, resolver: nodeDnsResolver, allow });
    const pool = new WorkerPool({ name: "default", handlers: [handler], concurrency: 10, queue: engine.queue, stats: engine.stats, workerId: "webhook-test", idleWaitMs: 100 });
    pool.start();
    const scheduler = new Scheduler({ queue: engine.queue, holderId: "webhook-test" });
    scheduler.start(25);
    stops.push(() => scheduler.stop(), () => pool.stop(2_000));
    const apiKeys = new ApiKeys(db.sql, { pepper: PEPPER });
    key = (await apiKeys.create({ tenantId: "acme", admin: false, name: "acme" })).key;
    app = createApp({ queue: engine.queue, sql: db.sql, apiKeys, webhookGuard: { resolver: nodeDnsResolver, allow } });
    const resolver: Resolver = { resolve: async (h) => (h === "internal.example" ? ["10.1.2.3"] : ["93.184.216.34"]) };
    strictApp = createApp({ queue: engine.queue, sql: db.sql, apiKeys, webhookGuard: { resolver } });
  });

  afterAll(async () => {
    for (const stop of stops) await stop();
    await receiver?.close();
    await db?.drop();
  });

  it("delivers every event to every subscribed endpoint, signed so the reference library verifies it", async () => {
    const all = await create("/all");
    const contacts = await create("/contacts", ["contact.created"]);
    expect(all.secret).toMatch(/^whsec_[A-Za-z0-9+/]{43}=$/);
    const listing = await api("GET", "/v1/webhooks/endpoints");
    expect(listing.status).toBe(200);
    expect(listing.json.endpoints.map((e: { id: string }) => e.id)).toEqual([all.id, contacts.id]);
    expect(JSON.stringify(listing.json)).not.toContain("whsec_");

    const published = [
      await publishEvent(engine.queue, db.sql, { tenantId: "acme", type: "contact.created", data: { n: 1 } }),
      await publishEvent(engine.queue, db.sql, { tenantId: "acme", type: "email.bounced", data: { n: 2 } }),
      await publishEvent(engine.queue, db.sql, { tenantId: "acme", type: "contact.created", data: { n: 3 } }),
    ];
    expect(published.map((p) => p.jobIds.length)).toEqual([2, 1, 2]);
    // Publishing the same event again is a no-op: the same jobs come back.
    const again = await publishEvent(engine.queue, db.sql, { tenantId: "acme", type: "contact.created", data: { n: 1 }, eventId: published[0]!.eventId });
    expect(again.jobIds).toEqual(published[0]!.jobIds);

    await waitFor(() => receiver.on("/all").length === 3 && receiver.on("/contacts").length === 2, { what: "5 deliveries" });
    for (const [path, secret] of [["/all", all.secret], ["/contacts", contacts.secret]] as const) {
      for (const r of receiver.on(path)) {
        const verified = new Webhook(secret).verify(r.body, headersOf(r)) as { type: string; data: { n: number } };
        expect(verified.type).toMatch(/^(contact\.created|email\.bounced)$/);
      }
    }
    expect(new Set(receiver.on("/all").map((r) => r.headers["webhook-id"]))).toEqual(new Set(published.map((p) => p.eventId)));
    expect(receiver.on("/contacts").map((r) => (JSON.parse(r.body) as { type: string }).type)).toEqual(["contact.created", "contact.created"]);
    // A wrong secret does not verify.
    const other = await create("/unused");
    expect(() => new Webhook(other.secret).verify(receiver.on("/all")[0]!.body, headersOf(receiver.on("/all")[0]!))).toThrow();
    await waitFor(async () => (await deliveries(all.id)).length === 3, { what: "the delivery log" });
    expect((await deliveries(all.id)).every((d) => d.outcome === "ok" && d.status_code === 200 && d.response_body === "thanks")).toBe(true);
  });

  it("retries 429 and 500 then succeeds, with the same webhook-id each time and every attempt logged", async () => {
    receiver.script.set("/flaky", [429, 500, 200]);
    const ep = await create("/flaky");
    const test = await api("POST", `/v1/webhooks/endpoints/${ep.id}/test`);
    expect(test.status).toBe(202);
    await waitFor(async () => (await jobState(test.json.job_id)) === "completed", { what: "the job to complete" });
    const hits = receiver.on("/flaky");
    expect(hits).toHaveLength(3);
    expect(new Set(hits.map((h) => h.headers["webhook-id"]))).toEqual(new Set([test.json.event_id]));
    for (const h of hits) new Webhook(ep.secret).verify(h.body, headersOf(h));
    const log = (await deliveries(ep.id)).reverse();
    expect(log.map((d) => [d.attempt, d.status_code, d.outcome])).toEqual([
      [1, 429, "failed"],
      [2, 500, "failed"],
      [3, 200, "ok"],
    ]);
    expect(log.every((d) => d.event_id === test.json.event_id)).toBe(true);
    const endpoint = await api("GET", `/v1/webhooks/endpoints/${ep.id}`);
    expect(endpoint.json.failing_since).toBeNull();
  });

  it("signs with both secrets during a rotation, so either verifies", async () => {
    const ep = await create("/rotating");
    const rotated = await api("POST", `/v1/webhooks/endpoints/${ep.id}/rotate`);
    expect(rotated.status).toBe(200);
    expect(rotated.json.secret).not.toBe(ep.secret);
    expect(rotated.json.previous_secret_expires_at).not.toBeNull();
    const test = await api("POST", `/v1/webhooks/endpoints/${ep.id}/test`);
    await waitFor(() => receiver.on("/rotating").length === 1, { what: "the delivery" });
    const hit = receiver.on("/rotating")[0]!;
    expect(String(hit.headers["webhook-signature"]).split(" ")).toHaveLength(2);
    expect(hit.headers["webhook-id"]).toBe(test.json.event_id);
    new Webhook(ep.secret).verify(hit.body, headersOf(hit));
    new Webhook(rotated.json.secret).verify(hit.body, headersOf(hit));
    // Our signature is the one the reference computes.
    const ts = Number(hit.headers["webhook-timestamp"]);
    expect(await sign(rotated.json.secret, test.json.event_id, ts, hit.body)).toBe(
      new Webhook(rotated.json.secret).sign(test.json.event_id, new Date(ts * 1000), hit.body),
    );
    // Ending the grace period leaves one signature, the new secret's.
    await api("POST", `/v1/webhooks/endpoints/${ep.id}/rotate`, { previous_secret_ttl_seconds: 0 });
    const listing = await api("GET", "/v1/webhooks/endpoints");
    expect(JSON.stringify(listing.json)).not.toContain("whsec_");
  });

  it("disables the endpoint on 410 Gone and sends nothing more", async () => {
    receiver.script.set("/gone", [410]);
    const ep = await create("/gone");
    const test = await api("POST", `/v1/webhooks/endpoints/${ep.id}/test`);
    await waitFor(async () => (await jobState(test.json.job_id)) === "failed", { what: "the job to fail" });
    expect(receiver.on("/gone")).toHaveLength(1);
    const endpoint = await api("GET", `/v1/webhooks/endpoints/${ep.id}`);
    expect(endpoint.json).toMatchObject({ status: "disabled", disabled_reason: expect.stringContaining("410") });
    expect((await deliveries(ep.id)).map((d) => [d.status_code, d.outcome])).toEqual([[410, "failed"]]);
    // An event for a disabled endpoint is not fanned out; a direct job is refused without a request.
    const published = await publishEvent(engine.queue, db.sql, { tenantId: "acme", type: "x.y", data: {} });
    const again = await api("POST", `/v1/webhooks/endpoints/${ep.id}/test`);
    await waitFor(async () => (await jobState(again.json.job_id)) === "failed", { what: "the refusal" });
    expect(receiver.on("/gone")).toHaveLength(1);
    expect((await deliveries(ep.id))[0]).toMatchObject({ outcome: "refused", error: expect.stringContaining("disabled") });
    await Promise.all(published.jobIds.map((id) => waitFor(async () => (await jobState(id)) === "completed")));
  });

  it("does not follow redirects: a 3xx is a failed attempt", async () => {
    receiver.script.set("/moved", [302, 302]);
    const ep = await create("/moved");
    const { job } = await engine.queue.enqueue({
      type: "webhook.dispatch",
      tenantId: "acme",
      payload: { endpoint_id: ep.id, event_id: "evt_redirect", event_type: "x.y", data: {} },
      maxAttempts: 2,
    });
    await waitFor(async () => (await jobState(job.id)) === "failed", { what: "the job to fail" });
    expect(receiver.on("/moved")).toHaveLength(2);
    expect(receiver.on("/landed")).toHaveLength(0);
    const log = await deliveries(ep.id);
    expect(log.map((d) => [d.status_code, d.outcome])).toEqual([[302, "failed"], [302, "failed"]]);
    expect(log[0].error).toContain("redirect 302 not followed");
  });

  it("disables an endpoint that has been failing for more than 5 days", async () => {
    receiver.script.set("/down", [503, 503, 503]);
    const ep = await create("/down");
    await db.sql.query("update webhook_endpoints set failing_since = now() - interval '6 days' where id = $1", [ep.id]);
    const test = await api("POST", `/v1/webhooks/endpoints/${ep.id}/test`);
    await waitFor(async () => (await jobState(test.json.job_id)) === "failed", { what: "the job to fail" });
    expect(receiver.on("/down")).toHaveLength(1);
    const endpoint = await api("GET", `/v1/webhooks/endpoints/${ep.id}`);
    expect(endpoint.json).toMatchObject({ status: "disabled", disabled_reason: expect.stringContaining("more than 5 days") });
  });

  it("disables an endpoint on request and 404s another tenant's ids", async () => {
    const ep = await create("/manual");
    const disabled = await api("POST", `/v1/webhooks/endpoints/${ep.id}/disable`);
    expect(disabled.json).toMatchObject({ status: "disabled" });
    expect((await api("POST", "/v1/webhooks/endpoints/whe_nope/rotate")).status).toBe(404);
    expect((await api("GET", "/v1/webhooks/endpoints/whe_nope/deliveries")).status).toBe(404);
  });

  it("refuses to register URLs that reach private networks, with a 422 naming url", async () => {
    for (const url of [
      "http://127.0.0.1/",
      "http://10.0.0.1/",
      "http://169.254.169.254/latest/meta-data/",
      "http://[::1]/",
      "http://[::ffff:127.0.0.1]/",
      "http://[fd00::1]/",
      "http://internal.example/hook",
      "ftp://example.com/",
    ]) {
      const res = await call(strictApp, "POST", "/v1/webhooks/endpoints", { url });
      expect(res.status, url).toBe(422);
      expect(res.json.errors[0].path, url).toBe("url");
    }
    expect((await call(strictApp, "POST", "/v1/webhooks/endpoints", { url: "https://hooks.example.com/x" })).status).toBe(201);
  });
});

describe("the SSRF guard at delivery (no allow-list)", () => {
  let db: Awaited<ReturnType<typeof createTestDatabase>>;
  let engine: Engine;
  let receiver: Awaited<ReturnType<typeof startReceiver>>;

  beforeAll(async () => {
    db = await createTestDatabase("webhooks_ssrf");
    receiver = await startReceiver();
    engine = createEngine({ sql: db.sql, catalog: fastCatalog({ maxAttempts: 10 }) });
    await engine.dispatcher.start();
  });
  afterAll(async () => {
    await engine?.dispatcher.close();
    await receiver?.close();
    await db?.drop();
  });

  it("refuses every private destination without connecting, each with its reason in the log", async () => {
    const cases = [
      [`http://127.0.0.1:${receiver.port}/`, "loopback"],
      ["http://10.0.0.1/", "private address (10.0.0.0/8)"],
      ["http://169.254.169.254/latest/meta-data/", "metadata"],
      [`http://[::1]:${receiver.port}/`, "loopback"],
      [`http://[::ffff:127.0.0.1]:${receiver.port}/`, "IPv4-mapped, embedding 127.0.0.1"],
      ["http://[64:ff9b::a9fe:a9fe]/", "NAT64"],
      ["http://internal.example/hook", "internal.example resolves to 10.1.2.3"],
    ] as const;
    const jobIds: string[] = [];
    for (const [i, [url]] of cases.entries()) {
      await db.sql.query("insert into webhook_endpoints (id, tenant_id, url, secret) values ($1, 'acme', $2, 'whsec_dGVzdHRlc3R0ZXN0dGVzdHRlc3R0ZXN0')", [`whe_${i}`, url]);
      const { job } = await engine.queue.enqueue({
        type: "webhook.dispatch",
        tenantId: "acme",
        payload: { endpoint_id: `whe_${i}`, event_id: `evt_${i}`, event_type: "x.y", data: {} },
      });
      jobIds.push(job.id);
    }
    let fetches = 0;
    const resolver: Resolver = { resolve: async (h) => (h === "internal.example" ? ["10.1.2.3"] : []) };
    const handler = webhookDispatchHandler({
      sql: db.sql,
      clock: engine.clock,
      resolver,
      fetch: async (input, init) => {
        fetches++;
        return fetch(input, init);
      },
    });
    await drain({ queue: engine.queue, stats: engine.stats, handlers: [handler], workerId: "ssrf", concurrency: 4, budgetMs: 20_000, graceMs: 1_000 });
    expect(fetches).toBe(0);
    expect(receiver.received).toHaveLength(0);
    for (const [i, [url, reason]] of cases.entries()) {
      const job = await engine.queue.get(jobIds[i]!, "acme");
      expect(job.state, url).toBe("failed");
      expect(job.attempt, url).toBe(1);
      const log = await db.sql.query<{ outcome: string; error: string; status_code: number | null }>(
        "select outcome, error, status_code from webhook_deliveries where endpoint_id = $1",
        [`whe_${i}`],
      );
      expect(log, url).toHaveLength(1);
      expect(log[0]!.outcome, url).toBe("refused");
      expect(log[0]!.error, url).toContain(reason);
      expect(log[0]!.status_code).toBeNull();
    }
  });
});

/**
 * GET /v1/campaigns/:id/events: a campaign's progress as Server-Sent Events, as an app's
 * progress bar would follow it. The real fan-out and sends run it (campaign.process and
 * email.send worker pools, the outbox provider), so the counts come from the pipeline itself:
 * the stream must show the draft, then the campaign sending with its counters only ever going
 * up, then sent with every recipient counted, then `end`, and close. Also: a campaign that is
 * already finished (its view and `end` at once), and another tenant's (a 404 problem, no stream).
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ApiKeys, type CreatedApiKey } from "../shared/api/api-keys";
import { createApp } from "../shared/api/app";
import { createOutboxMailer } from "../shared/email/providers/outbox";
import { createEmailServices } from "../shared/email/services";
import { silentLogger } from "../shared/ports";
import { createEngine, type Engine } from "../shared/queue/engine";
import { WorkerPool } from "../shared/queue/worker";
import { createHandlers } from "../workers/handlers";
import { fastCatalog } from "./support/engine";
import { createTestDatabase, waitFor } from "./support/services";

const PEPPER = "campaign-progress-pepper-0123456789";
const CONTACTS = 40;

let db: Awaited<ReturnType<typeof createTestDatabase>>;
let engine: Engine;
let app: ReturnType<typeof createApp>;
let acme: CreatedApiKey;
let globex: CreatedApiKey;
let pools: WorkerPool[] = [];

beforeAll(async () => {
  db = await createTestDatabase("campaign_progress");
  engine = createEngine({ sql: db.sql, catalog: fastCatalog() });
  await engine.dispatcher.start();
  const mail = createEmailServices({
    sql: db.sql,
    redisPrefix: "unused:",
    clock: engine.clock,
    mailers: [createOutboxMailer(db.sql)],
    defaultFrom: "Acme <news@acme.test>",
    publicUrl: "http://jobs.test",
    unsubscribeSecret: PEPPER,
  });
  const handlers = createHandlers({ sql: db.sql, clock: engine.clock, email: { queue: engine.queue, logger: silentLogger, send: mail.send } });
  const pool = (name: string, type: string) =>
    new WorkerPool({ name, handlers: handlers.filter((h) => h.type === type), concurrency: 4, queue: engine.queue, stats: engine.stats, workerId: `${name}-progress`, idleWaitMs: 100 });
  pools = [pool("email", "email.send"), pool("default", "campaign.process")];
  const apiKeys = new ApiKeys(db.sql, { pepper: PEPPER });
  acme = await apiKeys.create({ tenantId: "acme", admin: false, name: "acme" });
  globex = await apiKeys.create({ tenantId: "globex", admin: false, name: "globex" });
  await db.sql.query("insert into tenants (id, name) values ('acme', 'Acme'), ('globex', 'Globex')");
  app = createApp({ queue: engine.queue, sql: db.sql, apiKeys });
});
afterAll(async () => {
  await Promise.all(pools.map((p) => p.stop(2_000)));
  await engine?.dispatcher.close();
  await db?.drop();
});

const call = async (method: string, path: string, key: string, body?: unknown) => {
  const res = await app.request(path, {
    method,
    headers: { authorization: `Bearer ${key}`, ...(body === undefined ? {} : { "content-type": "application/json" }) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: res.status, json: (await res.json()) as any };
};

/** A draft campaign of acme's to a list of `contacts` addresses. */
async function draftCampaign(contacts: number): Promise<string> {
  const list = await call("POST", "/v1/lists", acme.key, { name: "Readers" });
  const emails = Array.from({ length: contacts }, (_, i) => ({ email: `reader${i}@example.com` }));
  expect((await call("POST", "/v1/contacts", acme.key, { list_id: list.json.id, contacts: emails })).status).toBe(200);
  const template = await call("POST", "/v1/templates", acme.key, { name: "News", subject: "News", blocks: [{ type: "text", text: "Hello" }] });
  const campaign = await call("POST", "/v1/campaigns", acme.key, { name: "News", template_id: template.json.id, list_id: list.json.id });
  expect(campaign.status).toBe(201);
  return campaign.json.id as string;
}

interface Event {
  event: string;
  id: number;
  data: any;
}

/** The events of a text/event-stream body as they arrive; `done` when the server closes it. */
function eventsOf(res: Response): { events: Event[]; done: Promise<Event[]> } {
  const events: Event[] = [];
  const done = (async () => {
    const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
    let text = "";
    for (let read = await reader.read(); !read.done; read = await reader.read()) {
      text += read.value;
      const blocks = text.split("\n\n");
      text = blocks.pop()!;
      for (const block of blocks) {
        const field = (name: string) => block.split("\n").find((l) => l.startsWith(`${name}:`))?.slice(name.length + 1).trim();
        const event = field("event");
        if (event) events.push({ event, id: Number(field("id")), data: JSON.parse(field("data") ?? "null") });
      }
    }
    return events;
  })();
  return { events, done };
}

const follow = (id: string, key: string) => app.request(`/v1/campaigns/${id}/events`, { headers: { authorization: `Bearer ${key}` } });

describe("GET /v1/campaigns/:id/events", () => {
  it("follows a campaign from its draft through the sends' counts to sent, then ends", async () => {
    const id = await draftCampaign(CONTACTS);
    const res = await follow(id, acme.key);
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toMatch(/^text\/event-stream/);
    const stream = eventsOf(res);
    await waitFor(() => stream.events.length > 0, { what: "the first event" });
    expect(stream.events[0]).toMatchObject({ event: "campaign", data: { id, status: "draft" } });

    expect((await call("POST", `/v1/campaigns/${id}/start`, acme.key)).status).toBe(200);
    for (const p of pools) p.start();
    const events = await stream.done;

    const campaigns = events.filter((e) => e.event === "campaign").map((e) => e.data);
    expect(campaigns.some((c) => c.status === "sending")).toBe(true);
    // Counts only go up, and the last one counts every recipient as sent.
    const sent = campaigns.map((c) => c.counters.sent as number);
    expect(sent).toEqual([...sent].sort((a, b) => a - b));
    expect(campaigns.at(-1)).toMatchObject({ status: "sent", counters: { recipients: CONTACTS, sent: CONTACTS, skipped: 0, failed: 0 } });
    expect(events.at(-1)).toMatchObject({ event: "end", data: { id, status: "sent" } });
    expect(events.map((e) => e.id)).toEqual(events.map((_, i) => i + 1));
    // The outbox holds one message a contact: the stream followed the real sends.
    expect((await db.sql.query("select count(*)::int as n from outbox_messages where tenant_id = 'acme'"))[0]).toEqual({ n: CONTACTS });
  });

  it("answers a finished campaign's view and end at once", async () => {
    const id = await draftCampaign(1);
    expect((await call("POST", `/v1/campaigns/${id}/cancel`, acme.key)).status).toBe(200);
    const events = await eventsOf(await follow(id, acme.key)).done;
    expect(events.map((e) => e.event)).toEqual(["campaign", "end"]);
    expect(events[1]!.data).toEqual({ id, status: "cancelled" });
  });

  it("another tenant's campaign is a 404 problem, not a stream", async () => {
    const id = await draftCampaign(1);
    const res = await follow(id, globex.key);
    expect(res.status).toBe(404);
    expect(res.headers.get("content-type")).toMatch(/^application\/problem\+json/);
    expect((await follow("no such id", acme.key)).status).toBe(404);
    const query = await app.request(`/v1/campaigns/${id}/events?wait=5`, { headers: { authorization: `Bearer ${acme.key}` } });
    expect(query.status).toBe(422);
  });
});

/**
 * Client mistakes and hostile input against the HTTP API on a real Postgres: every one must get
 * a 4xx problem+json naming the field, never a 5xx, and must store nothing. Each case here was
 * a 500 (or a silent store) before the text, id, date and depth rules were put where every
 * input passes (issue 10, item 3 and the idempotency part of item 4).
 */
import { Webhook } from "standardwebhooks";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ApiKeys, type CreatedApiKey } from "../shared/api/api-keys";
import { createApp } from "../shared/api/app";
import { ExportLinks } from "../shared/exports/links";
import { type Logger, type Sql, silentLogger } from "../shared/ports";
import { createEngine } from "../shared/queue/engine";
import { generateSecret } from "../shared/webhooks/signature";
import type { Storage } from "../shared/storage/storage";
import { createTestDatabase } from "./support/services";

const PEPPER = "test-pepper-hostile-input";
const warnings: string[] = [];
const logger: Logger = { ...silentLogger, warn: (message: string) => void warnings.push(message) };
const RESEND_SECRET = generateSecret();

let db: Awaited<ReturnType<typeof createTestDatabase>>;
let sql: Sql;
let app: ReturnType<typeof createApp>;
let admin: CreatedApiKey;
let keyA: CreatedApiKey;
let listId: string;

/** A store that holds nothing and writes nothing: JSON imports only name files, and none of these get that far. */
const storage: Storage = {
  schemes: ["s3"],
  read: async () => new ReadableStream(),
  write: async () => {
    throw new Error("nothing may be written by a rejected request");
  },
  delete: async () => {},
  keyOf: (url: string) => (url.startsWith("s3://files/") ? url.slice("s3://files/".length) : null),
} as unknown as Storage;

interface Answer {
  status: number;
  headers: Headers;
  text: string;
  json: any;
}

async function send(path: string, init: { method?: string; key?: string; body?: string | Uint8Array; headers?: Record<string, string> } = {}): Promise<Answer> {
  const headers: Record<string, string> = { ...init.headers };
  if (init.key) headers.authorization = `Bearer ${init.key}`;
  if (init.body !== undefined && !headers["content-type"]) headers["content-type"] = "application/json";
  const res = await app.request(path, { method: init.method ?? (init.body === undefined ? "GET" : "POST"), body: init.body as BodyInit | undefined, headers });
  const text = await res.text();
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: res.status, headers: res.headers, text, json };
}

/** A JSON body written by hand, so that escapes such as \u0000 and \ud800 reach the server as sent. */
const post = (path: string, key: string, body: string) => send(path, { key, body });

/** Asserts a 4xx problem+json; with `path`, that one of its field errors names it. */
function expectProblem(res: Answer, statuses: number[], path?: string) {
  expect(statuses, `${res.status} ${res.text}`).toContain(res.status);
  expect(res.headers.get("content-type")).toContain("application/problem+json");
  expect(res.json).toMatchObject({ status: res.status, type: expect.any(String), title: expect.any(String), detail: expect.any(String) });
  if (path !== undefined) expect(res.json.errors?.map((e: { path: string }) => e.path), res.text).toContain(path);
}

const TABLES = ["jobs", "contacts", "list_members", "lists", "templates", "paused_lanes", "email_events", "suppressions", "imports"] as const;

async function counts(): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (const t of TABLES) out[t] = (await sql.query<{ n: number }>(`select count(*)::int as n from ${t}`))[0]!.n;
  return out;
}

/** Runs a request and asserts that no table changed. */
async function unchanged(run: () => Promise<Answer>): Promise<Answer> {
  const before = await counts();
  const res = await run();
  expect(await counts()).toEqual(before);
  return res;
}

const mailJob = (extra: string) =>
  `{"type":"email.send","payload":{"recipient":"a@example.com","template_id":"tpl_1","variables":{"name":"Ann"${extra}}}}`;

beforeAll(async () => {
  db = await createTestDatabase("hostile");
  sql = db.sql;
  const engine = createEngine({ sql });
  const apiKeys = new ApiKeys(sql, { pepper: PEPPER });
  admin = await apiKeys.create({ tenantId: null, admin: true, name: "ops" });
  keyA = await apiKeys.create({ tenantId: "tenant_a", admin: false, name: "a" });
  app = createApp({
    queue: engine.queue,
    sql,
    apiKeys,
    logger,
    resendWebhookSecret: RESEND_SECRET,
    exports: { storage, links: new ExportLinks(PEPPER, "http://t") },
  });
  const list = await post("/v1/lists", keyA.key, '{"name":"Newsletter"}');
  expect(list.status, list.text).toBe(201);
  listId = list.json.id;
});

afterAll(async () => {
  await db?.drop();
});

describe("NUL bytes", () => {
  it("in a body string: 422 naming the field, no job", async () => {
    const res = await unchanged(() => post("/v1/jobs", keyA.key, mailJob(',"bio":"a\\u0000b"')));
    expectProblem(res, [400, 422], "payload.variables.bio");
  });

  it("in a body key: refused, naming where", async () => {
    const res = await unchanged(() => post("/v1/jobs", keyA.key, mailJob(',"a\\u0000b":"x"')));
    expectProblem(res, [400, 422]);
    expect(res.json.errors[0].path).toMatch(/^payload\.variables/);
  });

  it("in a path id (%00)", async () => {
    expectProblem(await unchanged(() => send("/v1/templates/tpl%00x", { key: keyA.key })), [400, 404, 422]);
    expectProblem(await unchanged(() => send("/v1/campaigns/camp%00x/start", { key: keyA.key, method: "POST" })), [400, 404, 422]);
  });

  it("in a query value (%00)", async () => {
    const res = await unchanged(() => send("/v1/suppressions?cursor=a%00b", { key: keyA.key }));
    expectProblem(res, [400, 422], "cursor");
  });

  it("in a CSV mapping key of a JSON import", async () => {
    const body = `{"file_url":"s3://files/tenant_a/in.csv","mapping":{"col\\u0000":"email","col_0":"email"}}`;
    const res = await unchanged(() => post("/v1/imports", keyA.key, body));
    expectProblem(res, [400, 422]);
    expect(res.json.errors[0].path).toMatch(/^mapping/);
  });

  it("in a validly signed Resend webhook body: 400, so Resend does not retry forever", async () => {
    const id = "msg_nul_1";
    const at = new Date();
    const body = `{"type":"email.bounced","created_at":"2026-05-01T10:00:00.000Z","data":{"email_id":"re_\\u0000x","bounce":{"type":"Permanent"}}}`;
    const res = await unchanged(() =>
      send("/providers/resend/events", {
        body,
        headers: {
          "svix-id": id,
          "svix-timestamp": String(Math.floor(at.getTime() / 1000)),
          "svix-signature": new Webhook(RESEND_SECRET).sign(id, at, body),
        },
      }),
    );
    expectProblem(res, [400, 422], "data.email_id");
  });
});

describe("malformed Unicode", () => {
  it("a lone surrogate in a body string", async () => {
    const res = await unchanged(() => post("/v1/jobs", keyA.key, mailJob(',"bio":"x\\ud800y"')));
    expectProblem(res, [400, 422], "payload.variables.bio");
  });

  it("invalid UTF-8 in a body is refused, not stored as U+FFFD", async () => {
    const bytes = new Uint8Array([...new TextEncoder().encode('{"name":"ab'), 0xff, 0xfe, ...new TextEncoder().encode('"}')]);
    const res = await unchanged(() => send("/v1/lists", { key: keyA.key, body: bytes }));
    expectProblem(res, [400]);
  });

  it("an idempotency key holding a lone surrogate is refused before anything is stored", async () => {
    const body = `{"type":"email.send","idempotency_key":"k\\ud800","payload":{"recipient":"a@example.com","template_id":"tpl_1"}}`;
    const res = await unchanged(() => post("/v1/jobs", keyA.key, body));
    expectProblem(res, [400, 422], "idempotency_key");
  });

  it("invalid percent-encoding in a query value", async () => {
    const res = await unchanged(() => send("/v1/suppressions?cursor=%ED%A0%80", { key: keyA.key }));
    expectProblem(res, [400, 422], "cursor");
  });
});

describe("numbers and dates out of Postgres' range", () => {
  it("run_at in year 0000", async () => {
    const body = `{"type":"email.send","run_at":"0000-01-01T00:00:00Z","payload":{"recipient":"a@example.com","template_id":"tpl_1"}}`;
    const res = await unchanged(() => post("/v1/jobs", keyA.key, body));
    expectProblem(res, [422], "run_at");
  });

  it("a cursor above 2^63", async () => {
    const res = await unchanged(() => send("/v1/contacts?cursor=9223372036854775808", { key: keyA.key }));
    expectProblem(res, [422], "cursor");
    expectProblem(await send("/v1/outbox?cursor=99999999999999999999", { key: keyA.key }), [422], "cursor");
  });
});

describe("empty and deep", () => {
  it('list_id: "" on contacts', async () => {
    const res = await unchanged(() => post("/v1/contacts", keyA.key, '{"list_id":"","contacts":[{"email":"e@example.com"}]}'));
    expectProblem(res, [422], "list_id");
  });

  it("JSON nested 5,000 deep in webhook.dispatch data", async () => {
    const deep = "[".repeat(5_000) + "]".repeat(5_000);
    const body = `{"type":"webhook.dispatch","payload":{"endpoint_id":"we_1","event_id":"evt_1","event_type":"x.y","data":{"v":${deep}}}}`;
    const res = await unchanged(() => post("/v1/jobs", keyA.key, body));
    expectProblem(res, [400, 422]);
  });
});

describe("unknown fields", () => {
  it('pause with {"tenantId":"zz"} is refused instead of pausing every tenant', async () => {
    const res = await unchanged(() => post("/v1/queues/email.send/pause", admin.key, '{"tenantId":"zz"}'));
    expectProblem(res, [422], "tenantId");
  });

  it("an unknown query parameter", async () => {
    const res = await send("/v1/jobs?limt=5", { key: keyA.key });
    expectProblem(res, [422], "limt");
    expectProblem(await send(`/v1/contacts?curser=1`, { key: keyA.key }), [422], "curser");
  });

});

describe("the backstop", () => {
  it("a Postgres refusal of a value that no rule caught is a 422, not a 500", async () => {
    // Postgres itself refusing a value, as 22P05 (untranslatable character) comes back from any driver.
    const refusing = new Proxy(sql, {
      get(target, prop, receiver) {
        if (prop !== "query") return Reflect.get(target, prop, receiver);
        return (text: string, params?: unknown[]) =>
          text.includes("from lists where id")
            ? Promise.reject(Object.assign(new Error('unsupported Unicode escape sequence'), { code: "22P05" }))
            : target.query(text, params as never);
      },
    });
    const apiKeys = new ApiKeys(refusing, { pepper: PEPPER });
    const seen: string[] = [];
    const backstopped = createApp({ queue: createEngine({ sql }).queue, sql: refusing, apiKeys, logger: { ...silentLogger, warn: (m: string) => void seen.push(m) } });
    const res = await backstopped.request(`/v1/lists/${listId}`, { headers: { authorization: `Bearer ${keyA.key}` } });
    expect(res.status).toBe(422);
    expect(res.headers.get("content-type")).toContain("application/problem+json");
    expect(seen.some((m) => m.includes("refused by the database"))).toBe(true);
  });
});

// Last: every case of the main app was refused by the rules, none by Postgres (the backstop logs when it is used).
it("no case reached the database's own refusal", () => {
  expect(warnings.filter((w) => w.includes("refused by the database"))).toEqual([]);
});

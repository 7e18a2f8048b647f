/**
 * POST /v1/imports and import.contacts through POST /v1/jobs at the door (issue 10, items 7
 * and 4): a file URL at a private address is refused with 422 naming file_url before anything
 * is stored, as webhook registration refuses one (the same guard, the same allow-list); and an
 * upload the API refuses leaves no file behind, whether it is refused before or after the write.
 */
import { mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { ApiKeys } from "../shared/api/api-keys";
import { createApp } from "../shared/api/app";
import { ExportLinks } from "../shared/exports/links";
import { createEngine, type Engine } from "../shared/queue/engine";
import { createHttpsStorage } from "../shared/storage/https";
import { StorageRouter } from "../shared/storage/storage";
import { parseAllowList, type UrlGuard } from "../shared/webhooks/ssrf";
import { createLocalStorage } from "../workers/node/local-storage";
import { createTestDatabase } from "./support/services";

let db: Awaited<ReturnType<typeof createTestDatabase>>;
let folder: string;
let engine: Engine;
let key: string;
let strict: ReturnType<typeof createApp>;
let allowing: ReturnType<typeof createApp>;

/** Names as a hostile DNS would answer them; nothing here connects anywhere. */
const resolver = {
  resolve: async (host: string): Promise<string[]> => {
    if (host === "internal.example") return ["10.1.2.3"];
    if (host === "metadata.example") return ["169.254.169.254"];
    if (host === "localhost") return ["127.0.0.1"];
    if (host === "mixed.example") return ["93.184.216.34", "192.168.1.1"];
    if (host === "nowhere.example") return [];
    return ["93.184.216.34"];
  },
};

function appWith(guard: UrlGuard) {
  const local = createLocalStorage(folder);
  const storage = new StorageRouter([local, createHttpsStorage(guard)], local);
  return createApp({ queue: engine.queue, sql: db.sql, apiKeys: new ApiKeys(db.sql, { pepper: "import-api-pepper-0123" }), webhookGuard: guard, exports: { storage, links: new ExportLinks("import-api-links-0123", "http://t") } });
}

beforeAll(async () => {
  db = await createTestDatabase("import_api");
  folder = await mkdtemp(join(tmpdir(), "pm-import-api-"));
  engine = createEngine({ sql: db.sql });
  key = (await new ApiKeys(db.sql, { pepper: "import-api-pepper-0123" }).create({ tenantId: "acme", admin: false, name: "acme" })).key;
  strict = appWith({ resolver });
  allowing = appWith({ resolver, allow: parseAllowList(["127.0.0.1", "files.internal"]) });
  await db.sql.query("insert into lists (id, tenant_id, name) values ('lst_a', 'acme', 'a')");
});
afterAll(async () => {
  await db.drop();
  await rm(folder, { recursive: true, force: true });
});

const jobCount = async () => ((await db.sql.query<{ n: number }>("select count(*)::int as n from jobs"))[0]!).n;

async function post(app: ReturnType<typeof createApp>, path: string, body: unknown) {
  const res = await app.request(path, { method: "POST", headers: { authorization: `Bearer ${key}`, "content-type": "application/json" }, body: JSON.stringify(body) });
  const text = await res.text();
  return { status: res.status, type: res.headers.get("content-type"), text, json: JSON.parse(text) };
}

const PRIVATE_URLS = [
  "https://127.0.0.1/c.csv",
  "https://10.0.0.1/c.csv",
  "https://169.254.169.254/latest/meta-data",
  "https://[::1]/c.csv",
  "https://[::ffff:127.0.0.1]/c.csv",
  "https://[::ffff:7f00:1]/c.csv",
  "https://2130706433/c.csv",
  "https://0x7f000001/c.csv",
  "https://0177.0.0.1/c.csv",
  "https://127.1/c.csv",
  "https://0.0.0.0/c.csv",
  "https://100.64.0.1/c.csv",
  "https://[fd00::1]/c.csv",
  "https://internal.example/c.csv",
  "https://metadata.example/c.csv",
  "https://localhost:8443/c.csv",
  "https://mixed.example/c.csv",
  "https://nowhere.example/c.csv",
  "http://127.0.0.1/c.csv",
  "http://files.example/c.csv",
];

describe("file URLs at private addresses are refused at the API (SSRF)", () => {
  it.each(PRIVATE_URLS)("%s: 422 naming file_url on POST /v1/imports, /v1/jobs and /v1/jobs/batch; nothing stored", async (url) => {
    const before = await jobCount();
    const imp = await post(strict, "/v1/imports", { file_url: url, mapping: { col_0: "email" } });
    expect(imp.status, imp.text).toBe(422);
    expect(imp.type).toContain("application/problem+json");
    expect(imp.json.errors.map((e: { path: string }) => e.path)).toEqual(["file_url"]);

    const job = await post(strict, "/v1/jobs", { type: "import.contacts", payload: { file_url: url, mapping: { col_0: "email" } } });
    expect(job.status, job.text).toBe(422);
    expect(job.type).toContain("application/problem+json");
    expect(job.json.errors.map((e: { path: string }) => e.path)).toEqual(["payload.file_url"]);

    const ok = { type: "import.contacts", payload: { file_url: "https://files.example/ok.csv", mapping: { col_0: "email" } } };
    const bad = { type: "import.contacts", payload: { file_url: url, mapping: { col_0: "email" } } };
    const batch = await post(strict, "/v1/jobs/batch", { jobs: [ok, bad] });
    expect(batch.status, batch.text).toBe(422);
    expect(batch.json.errors.map((e: { path: string }) => e.path)).toEqual(["jobs.1.payload.file_url"]);

    expect(await jobCount()).toBe(before);
  });

  it("takes a public https URL, and private or http:// ones on the allow-list (WEBHOOK_ALLOW), as delivery does", async () => {
    const pub = await post(strict, "/v1/imports", { file_url: "https://files.example/c.csv?X-Amz-Signature=abc", mapping: { col_0: "email" } });
    expect(pub.status, pub.text).toBe(202);
    const viaJobs = await post(strict, "/v1/jobs", { type: "import.contacts", payload: { file_url: "https://files.example/d.csv", mapping: { col_0: "email" } } });
    expect(viaJobs.status, viaJobs.text).toBe(201);
    for (const url of ["http://127.0.0.1:8080/c.csv", "https://127.0.0.1/c.csv", "http://files.internal/c.csv"]) {
      const res = await post(allowing, "/v1/imports", { file_url: url, mapping: { col_0: "email" } });
      expect(res.status, `${url}: ${res.text}`).toBe(202);
    }
    // Allow-listing one address lets that one through, not its neighbours.
    expect((await post(allowing, "/v1/imports", { file_url: "https://10.0.0.1/c.csv", mapping: { col_0: "email" } })).status).toBe(422);
  });
});

// ---------------------------------------------------------------------------------------------

/** Every file under the tenant's uploads folder. */
async function uploads(): Promise<string[]> {
  try {
    return await readdir(join(folder, "acme", "imports"));
  } catch {
    return [];
  }
}

async function upload(query: Record<string, string>, csv = "email\nx@example.com\n") {
  const res = await strict.request(`/v1/imports?${new URLSearchParams(query)}`, {
    method: "POST",
    headers: { authorization: `Bearer ${key}`, "content-type": "text/csv" },
    body: csv,
  });
  const text = await res.text();
  return { status: res.status, text, json: JSON.parse(text) };
}

describe("a refused upload leaves no file", () => {
  it.each([
    ["a mapping without email", { mapping: JSON.stringify({ col_0: "name" }) }, "mapping"],
    ["a mapping to an unknown field", { mapping: JSON.stringify({ col_0: "email", col_1: "phone" }) }, "mapping.col_1"],
    ["an empty column name", { mapping: JSON.stringify({ "": "email" }) }, "mapping"],
  ])("%s: 422 before the file is written", async (_what, query, path) => {
    const before = await uploads();
    const jobs = await jobCount();
    const res = await upload(query);
    expect(res.status, res.text).toBe(422);
    expect(res.json.errors.map((e: { path: string }) => e.path).some((p: string) => p.startsWith(path))).toBe(true);
    expect(await uploads()).toEqual(before);
    expect(await jobCount()).toBe(jobs);
  });

  it("deletes the written file when the enqueue after the write fails", async () => {
    const before = await uploads();
    const spy = vi.spyOn(engine.queue, "enqueueValidated").mockRejectedValueOnce(new Error("the database went away"));
    try {
      const res = await upload({ mapping: JSON.stringify({ col_0: "email" }), list_id: "lst_a" });
      expect(res.status).toBe(500);
    } finally {
      spy.mockRestore();
    }
    expect(await uploads()).toEqual(before);
  });

  it("keeps the file of an accepted upload", async () => {
    const before = (await uploads()).length;
    const res = await upload({ mapping: JSON.stringify({ col_0: "email" }), list_id: "lst_a" });
    expect(res.status, res.text).toBe(202);
    expect((await uploads()).length).toBe(before + 1);
  });

  it("shows the tenant its upload's job without the server's folders", async () => {
    const res = await upload({ mapping: JSON.stringify({ col_0: "email" }), list_id: "lst_a" });
    expect(res.status, res.text).toBe(202);
    const [stored] = await db.sql.query<{ url: string }>("select payload->>'file_url' as url from jobs where id = $1", [res.json.id]);
    expect(stored!.url.startsWith(pathToFileURL(folder).toString())).toBe(true); // the job itself keeps where the file is
    const view = await strict.request(`/v1/jobs/${res.json.id}`, { headers: { authorization: `Bearer ${key}` } });
    const body = await view.text();
    expect(view.status).toBe(200);
    expect(body).not.toContain(folder);
    expect(JSON.parse(body).payload.file_url).toBe(`file://…/${stored!.url.split("/").pop()}`);
  });
});

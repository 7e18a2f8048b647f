/**
 * The typed client (shared/client/) as the web app uses it, against the real Node app on a free
 * port: enqueue, wait for completion with ?wait=, list with the iterator across pages, a 422 read
 * as a typed ProblemError, retries of 429/503 honouring Retry-After with one Idempotency-Key, and
 * the README's client snippet run as written. Also: the committed generated types are what
 * `npm run gen:client` makes from the served document today.
 */
import { execFile } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { promisify } from "node:util";
import { Webhook } from "standardwebhooks";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { createJobsClient, type JobsClient, ProblemError, retryAfterMs, unwrap } from "../shared/client/client";
import { type Jobs, startJobs } from "../workers/node/library";
import { createTestDatabase, randomId } from "./support/services";
import { headersOf, startReceiver } from "./support/webhook-receiver";

const run = promisify(execFile);
const root = resolve(import.meta.dirname, "..");
const ADMIN_KEY = `pmk_admin_client_${randomId(12)}`;

let db: Awaited<ReturnType<typeof createTestDatabase>>;
let server: Jobs;
let admin: JobsClient;
let tenant: JobsClient;
let tenantKey: string;

beforeAll(async () => {
  db = await createTestDatabase("client");
  server = await startJobs({
    databaseUrl: db.url,
    apiKeyPepper: "client-test-pepper-0123456789",
    settings: {
      ADMIN_API_KEY: ADMIN_KEY,
      SCHEDULER_INTERVAL_MS: "200",
      LOG_LEVEL: "silent",
      DATA_DIR: mkdtempSync(join(tmpdir(), "pm-client-")),
      // The README's webhook example delivers to a receiver on this machine.
      WEBHOOK_ALLOW: "127.0.0.1",
    },
    api: { port: 0 },
    shutdownGraceMs: 2_000,
  });
  admin = createJobsClient({ baseUrl: server.url!, apiKey: ADMIN_KEY });
  const { data: key } = await admin.api.POST("/v1/keys", { body: { tenant_id: "acme", name: "web" } });
  tenantKey = key!.key;
  tenant = createJobsClient({ baseUrl: server.url!, apiKey: tenantKey });
});

afterAll(async () => {
  await server?.close();
  await db?.drop();
});

const welcome = { title: "Welcome", body: "Glad you are here." };

describe("the typed client against the real Node app", () => {
  it("enqueues, waits for completion with ?wait=, and iterates a listing across pages", async () => {
    const job = await tenant.enqueue({ type: "email.send", payload: { recipient: "a@example.com", template_id: "sys_transactional", variables: welcome } });
    expect(job).toMatchObject({ type: "email.send", tenant_id: "acme" });
    const done = await tenant.wait(job.id, { seconds: 20 });
    expect(done.state).toBe("completed");

    // The README's `payload: {}` (fields with defaults are optional on the input side).
    const cleanup = await admin.enqueue({ type: "maintenance.cleanup", payload: {} });
    expect((await admin.wait(cleanup.id, { seconds: 20 })).state).toBe("completed");

    const more = await Promise.all(
      [1, 2, 3].map((n) =>
        tenant.enqueue({ type: "email.send", payload: { recipient: `p${n}@example.com`, template_id: "sys_transactional", variables: welcome } }),
      ),
    );
    const seen: string[] = [];
    for await (const j of tenant.list("/v1/jobs", { query: { type: "email.send", limit: 1 } })) seen.push(j.id);
    expect(seen).toEqual([...more.map((j) => j.id)].sort((a, b) => Number(b) - Number(a)).concat(job.id));

    for (const name of ["a", "b", "c"]) await tenant.api.POST("/v1/lists", { body: { name } });
    const names: string[] = [];
    for await (const list of tenant.list("/v1/lists", { query: { limit: 2 } })) names.push(list.name);
    expect(names).toEqual(["c", "b", "a"]);
  });

  it("reads a 422 as a typed ProblemError naming the fields", async () => {
    const err = await tenant
      .enqueue({ type: "email.send", payload: { recipient: "not-an-address", template_id: "welcome" } })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ProblemError);
    const problem = err as ProblemError;
    expect(problem.status).toBe(422);
    expect(problem.problem.type).toBe("urn:penguinmails:problem:validation-failed");
    expect(problem.fields).toEqual(["payload.recipient"]);
    // A 404 the same way, from the generated client's every operation.
    await expect(tenant.get("999999")).rejects.toMatchObject({ status: 404 });
  });

  it("types requests from the input side and refuses wrong ones at compile time", () => {
    // Checked by tsc (npm test runs it first), not at run time.
    const typed = (c: JobsClient) => {
      void c.enqueue({ type: "maintenance.cleanup", payload: {} });
      // @ts-expect-error recipient is a string
      void c.enqueue({ type: "email.send", payload: { recipient: 1, template_id: "t" } });
      // @ts-expect-error an unknown job type
      void c.enqueue({ type: "email.sned", payload: {} });
    };
    expect(typeof typed).toBe("function");
  });

  it("retries 429 and 503 as Retry-After says, with one Idempotency-Key, and gives up past the bound", async () => {
    const seen: { status: number; key: string | null }[] = [];
    let refusals = [
      new Response(null, { status: 429, headers: { "retry-after": "0" } }),
      new Response(null, { status: 503 }),
    ];
    const flaky = createJobsClient({
      baseUrl: server.url!,
      apiKey: tenantKey,
      retry: { baseDelayMs: 1 },
      fetch: async (request) => {
        const refusal = refusals.shift();
        const res = refusal ?? (await fetch(request));
        seen.push({ status: res.status, key: request.headers.get("idempotency-key") });
        return res;
      },
    });
    const job = await flaky.enqueue({ type: "email.send", payload: { recipient: "r@example.com", template_id: "sys_transactional", variables: welcome } });
    expect(seen.map((s) => s.status)).toEqual([429, 503, 201]);
    expect(new Set(seen.map((s) => s.key)).size).toBe(1);
    expect(seen[0]!.key).toMatch(/^[0-9a-f-]{36}$/);
    expect(job.idempotency_key).toBe(seen[0]!.key);

    // A Retry-After beyond maxDelayMs is not waited for: the 429 comes back at once.
    seen.length = 0;
    refusals = [new Response(JSON.stringify({ type: "about:blank", title: "Too Many Requests", status: 429, detail: "slow down" }), { status: 429, headers: { "retry-after": "3600", "content-type": "application/problem+json" } })];
    const started = Date.now();
    await expect(flaky.enqueue({ type: "maintenance.cleanup", payload: {} })).rejects.toMatchObject({ status: 429, problem: { detail: "slow down" } });
    expect(Date.now() - started).toBeLessThan(1_000);
    expect(seen.map((s) => s.status)).toEqual([429]);

    // At most `retries` retries.
    seen.length = 0;
    refusals = Array.from({ length: 5 }, () => new Response(null, { status: 503, headers: { "retry-after": "0" } }));
    await expect(createJobsClient({ baseUrl: server.url!, retry: { retries: 2 }, fetch: async (r) => (seen.push({ status: 503, key: r.headers.get("idempotency-key") }), refusals.shift()!) }).get("1")).rejects.toMatchObject({ status: 503 });
    expect(seen).toHaveLength(3);

    expect(retryAfterMs("7")).toBe(7_000);
    expect(retryAfterMs(new Date(Date.now() + 60_000).toUTCString())).toBeGreaterThan(58_000);
    expect(retryAfterMs("soon")).toBeUndefined();
  });

  it("keys every enqueue, so an answer lost after the work was done never makes a second job", async () => {
    // The first try reaches the server and stores the jobs; its answer is lost (a 503 instead).
    const lose = (count: number) => {
      let left = count;
      const seen: string[] = [];
      const client = createJobsClient({
        baseUrl: server.url!,
        apiKey: tenantKey,
        retry: { baseDelayMs: 1 },
        fetch: async (request) => {
          seen.push(`${request.method} ${new URL(request.url).pathname}`);
          const res = await fetch(request);
          return left-- > 0 ? new Response(null, { status: 503 }) : res;
        },
      });
      return { client, seen };
    };
    const payload = { recipient: "k@example.com", template_id: "sys_transactional", variables: welcome };

    const one = lose(1);
    const job = await one.client.enqueue({ type: "email.send", payload });
    expect(one.seen).toEqual(["POST /v1/jobs", "POST /v1/jobs"]);
    const { data: listed } = await tenant.api.GET("/v1/jobs", { params: { query: { type: "email.send", limit: 100 } } });
    expect(listed!.jobs.filter((j) => j.idempotency_key === job.idempotency_key).map((j) => j.id)).toEqual([job.id]);

    // A key in the body is the job's key: no header is added (the API refuses two that differ).
    const keyed = await tenant.enqueue({ type: "email.send", payload, idempotency_key: "signup-42" });
    expect(keyed.idempotency_key).toBe("signup-42");
    expect((await tenant.enqueue({ type: "email.send", payload, idempotency_key: "signup-42" })).id).toBe(keyed.id);

    // A batch: each job without a key gets one (the batch route takes no header), the same on the retry.
    const batch = lose(1);
    const { data, error } = await batch.client.api.POST("/v1/jobs/batch", {
      body: { jobs: [{ type: "email.send", payload }, { type: "email.send", payload, idempotency_key: "mine" }] },
    });
    expect(error).toBeUndefined();
    expect(batch.seen).toEqual(["POST /v1/jobs/batch", "POST /v1/jobs/batch"]);
    expect(data).toMatchObject({ created: 0, existing: 2 });
    expect(data!.jobs[0]!.idempotency_key).toMatch(/^[0-9a-f-]{36}$/);
    expect(data!.jobs[1]!.idempotency_key).toBe("mine");

    // A POST the API cannot deduplicate is not sent twice after a 503.
    const list = lose(1);
    const { response } = await list.client.api.POST("/v1/lists", { body: { name: "once" } });
    expect(response.status).toBe(503);
    expect(list.seen).toEqual(["POST /v1/lists"]);
    const names: string[] = [];
    for await (const l of tenant.list("/v1/lists")) names.push(l.name);
    expect(names.filter((n) => n === "once")).toHaveLength(1);
  });

  it("the web app's whole flow: a list, a CSV import, a template and a campaign sent, the list exported and downloaded", async () => {
    const api = tenant.api;
    const list = unwrap(await api.POST("/v1/lists", { body: { name: "Launch" } }));
    const csv = "email,name\nada@example.com,Ada\nbob@example.com,Bob\nnot-an-address,Nobody\n";
    // The CSV as a stream, as a browser File or a Node file stream would give it.
    const started = await tenant.importCsv(new Blob([csv]).stream(), { mapping: { email: "email", name: "name" }, listId: list.id });
    const imported = await tenant.waitForImport(started.id, { seconds: 30 });
    expect(imported).toMatchObject({ status: "completed", created: 2, invalid: 1, list_added: 2 });

    const template = unwrap(
      await api.POST("/v1/templates", { body: { name: "Launch", subject: "Hello {{name}}", blocks: [{ type: "text", text: "We are live." }] } }),
    );
    const campaign = unwrap(await api.POST("/v1/campaigns", { body: { name: "Launch", template_id: template.id, list_id: list.id } }));
    expect(campaign.status).toBe("draft");
    expect(unwrap(await api.POST("/v1/campaigns/{id}/start", { params: { path: { id: campaign.id } } })).status).toMatch(/^(sending|sent)$/);
    // Followed as a progress bar would: each change of the campaign, until it is sent.
    const seen: string[] = [];
    for await (const c of tenant.followCampaign(campaign.id, { intervalMs: 50, signal: AbortSignal.timeout(30_000) })) {
      seen.push(`${c.status} ${c.counters.sent}/${c.counters.recipients}`);
    }
    expect(seen.at(-1)).toBe("sent 2/2");
    expect(new Set(seen).size).toBe(seen.length); // only changes are yielded
    const outbox: string[] = [];
    for await (const m of tenant.list("/v1/outbox")) if (m.subject.startsWith("Hello")) outbox.push(`${m.to} ${m.subject}`);
    expect(outbox.sort()).toEqual(["ada@example.com Hello Ada", "bob@example.com Hello Bob"]);

    const exported = unwrap(await api.POST("/v1/exports", { body: { source: "list", list_id: list.id } }));
    const rows = (await (await tenant.downloadExport(exported.id, { seconds: 30 })).text()).trim().split("\r\n");
    expect(rows.slice(1).map((r) => r.split(",")[1]).sort()).toEqual(["ada@example.com", "bob@example.com"]);
    // A string body goes up as it is too, and a failed import is read, not thrown.
    const bad = await tenant.importCsv("name\nAda\n", { mapping: { email: "email" }, listId: list.id });
    expect((await tenant.waitForImport(bad.id, { seconds: 30 })).status).toBe("failed");
  });

  it("runs the README's client snippet as written", async () => {
    const lines = await runReadmeSnippet("### From TypeScript: the typed client");
    expect(lines[0]).toEqual(["completed"]);
    expect(lines).toContainEqual([422, ["payload.recipient"]]);
    expect(lines.at(-1)![0]).toMatch(/^lst_/);
    expect(lines.filter((l) => l[1] === "completed").length).toBeGreaterThan(1);
  });

  it("runs the README's export example as written: a list exported and downloaded", async () => {
    const lines = await runReadmeSnippet("A list exported and downloaded with the typed client");
    expect(lines[0]).toEqual(["ready", 1]);
    expect(String(lines[1]![0])).toMatch(/^\d+,ada@example\.com,Ada,active,/);
  });

  it("runs the README's webhook example as written: an endpoint registered, tested and its delivery listed", async () => {
    const receiver = await startReceiver();
    try {
      const lines = await runReadmeSnippet("With the typed client (run as written by `test/client.test.ts`):", { HOOK_URL: `${receiver.url}/hook` });
      expect(String(lines[0]![0])).toMatch(/^whsec_/);
      expect(lines.slice(1)).toEqual([[1, 200, "ok"]]);
      const [delivery] = receiver.on("/hook");
      expect(JSON.parse(delivery!.body)).toMatchObject({ type: "webhook.test" });
      // Signed with the secret the example printed, as Standard Webhooks receivers check it.
      expect(() => new Webhook(String(lines[0]![0])).verify(delivery!.body, headersOf(delivery!))).not.toThrow();
    } finally {
      await receiver.close();
    }
  });
});

/**
 * Runs the first ```ts block after `heading` in the README against the server, the package
 * import pointed at the source, JOBS_URL and KEY set; returns what it printed with console.log.
 */
async function runReadmeSnippet(heading: string, env: Record<string, string> = {}): Promise<unknown[][]> {
  const readme = readFileSync(join(root, "README.md"), "utf8");
  const at = readme.indexOf(heading);
  expect(at, `README: ${heading}`).toBeGreaterThanOrEqual(0);
  const snippet = /```ts\n([\s\S]*?)```/.exec(readme.slice(at))![1]!;
  const file = join(root, "test", `client-readme-${randomId(4)}.tmp.ts`);
  // Extensionless: a tsc run of the repo (which sees test/) accepts the file while it exists.
  writeFileSync(file, snippet.replace(`from "penguinmails-jobs/client"`, `from ${JSON.stringify(join(root, "shared/client/client"))}`));
  const vars = { JOBS_URL: server.url!, KEY: tenantKey, ...env };
  const saved = Object.fromEntries(Object.keys(vars).map((k) => [k, process.env[k]]));
  Object.assign(process.env, vars);
  const log = vi.spyOn(console, "log").mockImplementation(() => {});
  try {
    await import(file);
    return log.mock.calls;
  } finally {
    log.mockRestore();
    for (const [k, v] of Object.entries(saved)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
    rmSync(file, { force: true });
  }
}

describe("the generated types", () => {
  it("are what npm run gen:client makes from the served document now", async () => {
    const dir = mkdtempSync(join(tmpdir(), "pm-client-gen-"));
    try {
      const out = join(dir, "schema.gen.ts");
      await run(process.execPath, [join(root, "node_modules", "tsx", "dist", "cli.mjs"), join(root, "tools", "gen-client.ts"), "--out", out], { cwd: root, timeout: 60_000 });
      const committed = readFileSync(join(root, "shared", "client", "schema.gen.ts"), "utf8");
      expect(readFileSync(out, "utf8") === committed, "shared/client/schema.gen.ts is stale: run npm run gen:client").toBe(true);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

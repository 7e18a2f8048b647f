/**
 * The library entry (workers/node/library.ts, the package's "exports"): the README's "From Node
 * code" runs as written against real Postgres and Redis; custom types sit beside the built-in
 * catalog with strict schemas, any pool name and defaults; given pools stay the caller's; and
 * the built package (npm run build:lib) loads and typechecks from a separate project.
 */
import { execFile } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { createServer, type AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { z } from "zod";
import { createIoRedis, createPgSql, JOB_TYPE_DEFAULTS, startJobs, ValidationError } from "../workers/node/library";
import { WorkerRegistry } from "../shared/queue/registry";
import { scalingSignals } from "../shared/queue/scaling";
import { createTestDatabase, randomId, REDIS_URL, waitFor } from "./support/services";

const run = promisify(execFile);
const root = resolve(import.meta.dirname, "..");
const PEPPER = "library-test-pepper-0123456789";

/** The first ```ts block under a README heading ("### From Node code"). */
function readmeSnippet(heading = "### From Node code"): string {
  const readme = readFileSync(join(root, "README.md"), "utf8");
  const section = readme.slice(readme.indexOf(heading));
  const block = /```ts\n([\s\S]*?)```/.exec(section);
  if (!block) throw new Error(`README: no \`\`\`ts block under ${heading}`);
  return block[1]!;
}

let db: Awaited<ReturnType<typeof createTestDatabase>>;
const prefix = `library:${randomId(4)}:{jobs}:`;

beforeAll(async () => {
  db = await createTestDatabase("library");
  await db.sql.query("create table signups (email text not null)");
});

afterAll(async () => {
  const redis = createIoRedis(REDIS_URL);
  const keys = (await redis.pipeline([["KEYS", `${prefix}*`]]))[0] as string[];
  if (keys.length) await redis.pipeline([["DEL", ...keys]]);
  await redis.close();
  await db?.drop();
});

const jobRows = (type: string) =>
  db.sql.query<{ id: string; tenant_id: string; payload: Record<string, unknown>; state: string; worker_id: string | null; max_attempts: number }>(
    "select id::text, tenant_id, payload, state, worker_id, max_attempts from jobs where type = $1 order by id",
    [type],
  );

describe("the README's From Node code", () => {
  it("runs as written: a custom strict type in a custom pool beside the built-ins, a job completed, an enqueue inside a transaction, close", async () => {
    const file = join(root, "test", `library-readme-${randomId(4)}.tmp.ts`);
    // Extensionless: a tsc run of the repo (which sees test/) accepts the file while it exists.
    const source = readmeSnippet().replace(`from "penguinmails-jobs"`, `from ${JSON.stringify(join(root, "workers/node/library"))}`);
    expect(source).toContain("workers/node/library\""); // the snippet imports the package by name
    writeFileSync(file, source);
    const env = { DATABASE_URL: db.url, REDIS_URL, API_KEY_PEPPER: PEPPER, REDIS_PREFIX: prefix, LOG_LEVEL: "silent" };
    const saved = Object.fromEntries(Object.keys(env).map((k) => [k, process.env[k]]));
    Object.assign(process.env, env);
    const log = vi.spyOn(console, "log").mockImplementation(() => {});
    try {
      await import(file);
      expect(log).toHaveBeenCalledWith("completed", { report: "r1", tenant: "acme" });
    } finally {
      log.mockRestore();
      for (const [k, v] of Object.entries(saved)) {
        if (v === undefined) delete process.env[k];
        else process.env[k] = v;
      }
      rmSync(file, { force: true });
    }

    const reports = await jobRows("report.build");
    expect(reports.map((r) => r.payload)).toEqual([{ report_id: "r1" }, { report_id: "r2" }]); // no tenant_id forced in
    expect(reports.every((r) => r.tenant_id === "acme" && r.max_attempts === 3)).toBe(true);
    expect(reports[0]).toMatchObject({ state: "completed", worker_id: expect.stringMatching(/:reports$/) });
    // The built-in type beside it, its tenant_id filled in as before.
    const mails = await jobRows("email.send");
    expect(mails).toHaveLength(1);
    expect(mails[0]!.payload).toMatchObject({ tenant_id: "acme", recipient: "a@example.com" });
    // The transaction's row and its job committed together.
    expect(await db.sql.query("select email from signups")).toEqual([{ email: "b@example.com" }]);
  });
});

describe("startJobs", () => {
  it("on given pools: the transaction's job runs, a rolled-back one never exists, strict schemas hold, the pools stay open after close", async () => {
    const sql = createPgSql(db.url, { max: 4 });
    const redis = createIoRedis(REDIS_URL);
    const ran: { payload: unknown; tenant: string }[] = [];
    const jobs = await startJobs({
      sql,
      redis,
      apiKeyPepper: PEPPER,
      settings: { REDIS_PREFIX: prefix, SCHEDULER_INTERVAL_MS: "100" },
      jobTypes: [
        { type: "report.build", payload: z.strictObject({ report_id: z.string() }), pool: "reports" },
        // Typed by its own payload (jobTypes takes any schema's priority function).
        { type: "report.urgent", payload: z.strictObject({ urgent: z.boolean() }), pool: "reports", priority: (p: { urgent: boolean }) => (p.urgent ? "high" : "low") },
      ],
      handlers: [
        {
          type: "report.build",
          run: async (payload, job) => {
            ran.push({ payload, tenant: job.tenantId });
            return { ok: true };
          },
        },
      ],
      pools: ["reports"],
    });
    try {
      expect(jobs.pools.map((p) => [p.name, p.types, p.concurrency])).toEqual([["reports", ["report.build"], 10]]);
      // Beside the built-in catalog, with the documented defaults filled in.
      expect([...jobs.queue.catalog.keys()]).toEqual(expect.arrayContaining(["email.send", "import.contacts", "maintenance.cleanup", "report.build"]));
      const def = jobs.queue.catalog.get("report.build")!;
      expect(def).toMatchObject({ pool: "reports", maxAttempts: JOB_TYPE_DEFAULTS.maxAttempts, timeoutMs: JOB_TYPE_DEFAULTS.timeoutMs, backoff: JOB_TYPE_DEFAULTS.backoff });
      expect(def.priority({})).toBe("normal");
      const urgent = await jobs.enqueue({ type: "report.urgent", tenantId: "acme", payload: { urgent: true } });
      expect(urgent.job.priority).toBe("high");
      await jobs.queue.cancel(urgent.job.id, null); // no handler runs it here

      // The custom pool shows in the scaling signals (GET /v1/scaling, /metrics) with this process's worker.
      const signals = await scalingSignals(jobs.queue, new WorkerRegistry(sql, jobs.engine.clock));
      expect(signals.map((s) => s.pool)).toEqual(["email", "default", "import", "reports"]);
      expect(signals.find((s) => s.pool === "reports")).toMatchObject({ types: ["report.build", "report.urgent"], workers: 1, concurrency: 10 });

      // r2 was enqueued inside the README's transaction and left queued by its close(): it runs here.
      const r2 = (await jobRows("report.build")).find((r) => r.payload.report_id === "r2")!;
      expect((await jobs.wait(r2.id, { seconds: 20 })).state).toBe("completed");
      expect(ran).toContainEqual({ payload: { report_id: "r2" }, tenant: "acme" });

      // Rolled back: neither the row nor its job exists.
      await expect(
        jobs.sql.begin(async (tx) => {
          await tx.query("insert into signups (email) values ($1)", ["c@example.com"]);
          await jobs.enqueue({ type: "report.build", tenantId: "acme", payload: { report_id: "r3" } }, { tx });
          throw new Error("changed my mind");
        }),
      ).rejects.toThrow("changed my mind");
      expect((await jobRows("report.build")).map((r) => r.payload.report_id)).toEqual(["r1", "r2"]);
      expect(await sql.query("select count(*)::int as n from signups where email = 'c@example.com'")).toEqual([{ n: 0 }]);

      // A committed transaction's job reaches its Redis lane through the scheduler's promotion.
      const inTx = await jobs.sql.begin((tx) => jobs.enqueue({ type: "report.build", tenantId: "globex", payload: { report_id: "r4" } }, { tx }));
      expect((await jobs.wait(inTx.job.id, { seconds: 20 })).state).toBe("completed");

      // The strict schema still refuses unknown fields, tenant_id among them.
      for (const payload of [{ report_id: "r5", extra: 1 }, { report_id: "r5", tenant_id: "acme" }]) {
        const err = await jobs.enqueue({ type: "report.build", tenantId: "acme", payload }).catch((e: unknown) => e);
        expect(err).toBeInstanceOf(ValidationError);
        expect((err as ValidationError).issues[0]!.path).toEqual(["payload"]);
      }
    } finally {
      await jobs.close();
    }
    // Given pools are the caller's: still usable after close.
    expect(await sql.query("select 1 as one")).toEqual([{ one: 1 }]);
    expect(await redis.pipeline([["PING"]])).toEqual(["PONG"]);
    await sql.close();
    await redis.close();
  });

  it("a port already taken rejects the start and leaves nothing running or connected", async () => {
    const taken = createServer();
    await new Promise<void>((r) => taken.listen(0, "127.0.0.1", r));
    const port = (taken.address() as AddressInfo).port;
    try {
      await expect(startJobs({ databaseUrl: db.url, apiKeyPepper: PEPPER, api: { port }, settings: { LOG_LEVEL: "silent" } })).rejects.toThrow(
        `cannot listen on 127.0.0.1:${port}: listen EADDRINUSE`,
      );
      // A backend leaves pg_stat_activity a moment after its client hung up.
      const connected = async () =>
        (
          await db.sql.query<{ n: number }>(
            "select count(*)::int as n from pg_stat_activity where datname = current_database() and application_name like 'penguinmails-jobs%'",
          )
        )[0]!.n;
      await waitFor(async () => (await connected()) === 0, { timeoutMs: 5_000, what: "the runtime's connections to close" });
    } finally {
      await new Promise((r) => taken.close(r));
    }
  });

  it("refuses what could not run, naming the option", async () => {
    const payload = z.strictObject({});
    await expect(startJobs({ sql: db.sql, apiKeyPepper: PEPPER, jobTypes: [{ type: "email.send", payload }] })).rejects.toThrow(
      /job type "email.send" is built in; give yours another name/,
    );
    await expect(startJobs({ sql: db.sql, apiKeyPepper: PEPPER, handlers: [{ type: "nope", run: async () => {} }] })).rejects.toThrow(
      /handler for "nope": no such job type; add it to jobTypes/,
    );
    await expect(startJobs({ sql: db.sql, apiKeyPepper: PEPPER, handlers: [{ type: "email.send", run: async () => {} }] })).rejects.toThrow(
      /"email.send": that type is built in/,
    );
    await expect(startJobs({ sql: db.sql, apiKeyPepper: PEPPER, pools: ["nope"] })).rejects.toThrow(/pool "nope" has no job type; the catalog's pools are email, default, import/);
    await expect(startJobs({ sql: db.sql, apiKeyPepper: PEPPER, jobTypes: [{ type: "Bad Name", payload }] })).rejects.toThrow(/type must be lowercase dotted words/);
    await expect(startJobs({ sql: db.sql })).rejects.toThrow(/apiKeyPepper is required with sql/);
    await expect(startJobs({ databaseUrl: db.url })).rejects.toThrow(/startJobs: invalid configuration:\n {2}apiKeyPepper: required/);
    await expect(startJobs({ databaseUrl: "mysql://x" })).rejects.toThrow(/databaseUrl: expected a postgres/);
  });
});

describe("the built package", () => {
  it("npm run build:lib writes every exports target; a separate project imports it and typechecks the README's snippets under nodenext", async () => {
    await run("npm", ["run", "build:lib"], { cwd: root, timeout: 180_000 });
    const pkg = JSON.parse(readFileSync(join(root, "package.json"), "utf8")) as {
      exports: Record<string, string | Record<string, string>>;
      files: string[];
      scripts: Record<string, string>;
    };
    // npm pack, publish and git installs run prepare (a git install runs nothing else of ours).
    expect(pkg.scripts.prepare).toContain("npm run build:lib");
    const targets = Object.values(pkg.exports).flatMap((t) => (typeof t === "string" ? [t] : Object.values(t)));
    expect(targets.length).toBeGreaterThan(2);
    for (const target of targets) expect(existsSync(join(root, target)), target).toBe(true);
    for (const target of targets.filter((t) => t.startsWith("./dist/"))) {
      expect(pkg.files.some((f) => target.startsWith(`./${f}/`)), `${target} is in "files", so npm pack ships it`).toBe(true);
    }

    const project = mkdtempSync(join(tmpdir(), "pm-library-"));
    try {
      const modules = join(project, "node_modules");
      mkdirSync(join(modules, "@types"), { recursive: true });
      symlinkSync(root, join(modules, "penguinmails-jobs"));
      symlinkSync(join(root, "node_modules", "zod"), join(modules, "zod"));
      symlinkSync(join(root, "node_modules", "@types", "node"), join(modules, "@types", "node"));
      writeFileSync(join(project, "package.json"), JSON.stringify({ name: "app", type: "module", private: true }));
      writeFileSync(
        join(project, "tsconfig.json"),
        JSON.stringify({ compilerOptions: { target: "ES2022", module: "nodenext", moduleResolution: "nodenext", strict: true, noEmit: true, skipLibCheck: true, types: ["node"] }, files: ["app.ts", "web.ts", "export.ts", "webhook.ts"] }),
      );
      writeFileSync(join(project, "app.ts"), `${readmeSnippet()}\nexport {};\n`);
      writeFileSync(join(project, "web.ts"), `${readmeSnippet("### From TypeScript: the typed client")}\nexport {};\n`);
      writeFileSync(join(project, "export.ts"), `${readmeSnippet("A list exported and downloaded with the typed client")}\nexport {};\n`);
      writeFileSync(join(project, "webhook.ts"), `${readmeSnippet("With the typed client (run as written by \`test/client.test.ts\`):")}\nexport {};\n`);
      // A deliberate type error must be caught, so the check above is not vacuous.
      writeFileSync(join(project, "wrong.ts"), `import { startJobs } from "penguinmails-jobs";\nawait startJobs({ concurrency: { reports: "four" } });\n`);
      const tsc = join(root, "node_modules", "typescript", "bin", "tsc");
      await run(process.execPath, [tsc, "-p", project], { cwd: project, timeout: 120_000 });
      const wrong = await run(process.execPath, [tsc, "--module", "nodenext", "--strict", "--noEmit", "--skipLibCheck", "--types", "node", "wrong.ts"], { cwd: project, timeout: 120_000 }).catch(
        (e: { stdout: string }) => e,
      );
      expect(String((wrong as { stdout: string }).stdout)).toMatch(/wrong\.ts.*Type 'string' is not assignable to type 'number'/);

      const { stdout } = await run(process.execPath, ["--input-type=module", "-e", `const m = await import("penguinmails-jobs"); console.log(Object.keys(m).sort().join(","))`], {
        cwd: project,
        timeout: 30_000,
      });
      expect(stdout.trim().split(",")).toEqual(expect.arrayContaining(["startJobs", "jobType", "createPgSql", "createIoRedis", "PermanentError", "RetryAfter", "migrate"]));
      const client = await run(process.execPath, ["--input-type=module", "-e", `const m = await import("penguinmails-jobs/client"); console.log(Object.keys(m).sort().join(","))`], {
        cwd: project,
        timeout: 30_000,
      });
      expect(client.stdout.trim().split(",")).toEqual(expect.arrayContaining(["createJobsClient", "ProblemError", "unwrap"]));
    } finally {
      rmSync(project, { recursive: true, force: true });
    }
  });
});

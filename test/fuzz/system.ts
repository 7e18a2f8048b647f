/**
 * The system under fuzz: the real Node entry (workers/node.ts) on a fresh Postgres database,
 * Redis under a random prefix and a temp DATA_DIR, with keys for two tenants and an admin and
 * seed rows for each tenant, plus the observations the properties need (row fingerprints of
 * every table, the stored files, the process's output, the webhook receiver's traffic).
 *
 * The fuzz phase runs the API alone (ROLE=api): no worker or scheduler writes in the
 * background, so any change to the database or the store during a request was made by that
 * request. Jobs the accepted requests enqueued are run afterwards by a worker process on the
 * same database (drain), so what the workers log and store is scanned for secrets too.
 */
import { randomBytes } from "node:crypto";
import { mkdtemp, readdir, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ApiKeys } from "../../shared/api/api-keys";
import type { Sql } from "../../shared/ports";
import { type ChildProcess, spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { CONFIG_VARIABLES } from "../../workers/node/config";
import { createTestDatabase, REDIS_URL } from "../support/services";
import { startReceiver, type WebhookReceiver } from "../support/webhook-receiver";
import { jsonRequest, type RawRequest, type RawResponse, sendRaw } from "./http";

/** The secret marker: planted wherever a secret may hide, searched for in every output. */
export const SECRET_MARKER = `Zs3cr3tMk${randomBytes(6).toString("hex")}`;

export interface TenantSeed {
  tenantId: string;
  key: string;
  listId: string;
  segmentId: string;
  templateId: string;
  campaignId: string;
  contactIds: string[];
  contactEmails: string[];
  endpointId: string;
  /** The endpoint's signing secret as the create call returned it: it must never be shown again. */
  endpointSecret: string;
  importId: string;
  jobIds: string[];
  exportId?: string;
}

export interface FuzzSystem {
  port: number;
  url: string;
  sql: Sql;
  dataDir: string;
  adminKey: string;
  /** The attacker: the fuzz's tenant requests use this key. */
  a: TenantSeed;
  /** The victim: no request of the fuzz acts for it; its ids are tried by the attacker. */
  b: TenantSeed;
  resendSecret: string;
  receiver: WebhookReceiver;
  api: EntryProcess;
  /** Every secret the outputs must not show (grows: secrets the run creates are added). */
  secrets: Secrets;
  /** Lines of process output (API and drain workers) that showed a secret. */
  logLeaks: LogLeak[];
  /** The tail of every process's output, for a failure report. */
  output(): string;
  request(req: RawRequest, timeoutMs?: number): Promise<RawResponse>;
  /** Per table, `count:max(xmin)`: any committed insert, update or delete changes it. */
  fingerprint(): Promise<Map<string, string>>;
  /** Stored files (relative path and size) under DATA_DIR/files. */
  files(): Promise<Map<string, number>>;
  /** A digest of every row of the victim tenant, by table. */
  victimDigest(): Promise<Map<string, string>>;
  /** Runs a worker process until the jobs enqueued so far have settled (bounded by timeoutMs). */
  drain(timeoutMs: number): Promise<void>;
  stop(): Promise<void>;
}

/**
 * Tables that change without any request (the registry, leader leases, metric rows). Found by
 * watching an idle system too (see `volatileTables`), this list is the floor.
 */
const ALWAYS_VOLATILE = new Set(["workers", "leases", "job_stats", "schema_migrations", "rate_limits"]);
// rate_limits is bookkeeping, not data: the dashboard login's attempt limit must count the
// refused attempts (a 401 that writes its counter is the point), as the mail limiter counts sends.

/**
 * The victim's tables whose rows its own seed work may change when the drain runs (its import
 * job and that job's row and events); every other table holding a tenant_id must not change.
 */
const VICTIM_OWN_WORK = new Set(["jobs", "imports", "api_keys", "job_stats", "webhook_events", "events"]);

async function walk(dir: string, base = dir, out = new Map<string, number>()): Promise<Map<string, number>> {
  let entries;
  try {
    entries = await readdir(dir, { withFileTypes: true });
  } catch {
    return out;
  }
  for (const e of entries) {
    const p = join(dir, e.name);
    if (e.isDirectory()) await walk(p, base, out);
    else out.set(p.slice(base.length + 1), (await stat(p).catch(() => ({ size: -1 }))).size);
  }
  return out;
}

async function ok(sys: { request(r: RawRequest): Promise<RawResponse> }, method: string, target: string, key: string, body?: unknown): Promise<any> {
  const res = await sys.request(jsonRequest(method, target, key, body));
  if (res.status >= 300) throw new Error(`seed ${method} ${target}: ${res.status} ${res.body.toString()}`);
  return res.body.length ? JSON.parse(res.body.toString()) : null;
}

async function seedTenant(
  sys: { request(r: RawRequest): Promise<RawResponse> },
  tenantId: string,
  key: string,
  receiverUrl: string,
  role: "attacker" | "victim",
): Promise<TenantSeed> {
  const list = await ok(sys, "POST", "/v1/lists", key, { name: `${tenantId} main list` });
  // Addresses that do not contain the tenant id, so a tenant id in an answer means the tenant, not an address.
  const emails = [0, 1, 2].map((i) => `contact-${role}-${i}-${tenantId.slice(-6)}@example.com`);
  const contacts = await ok(sys, "POST", "/v1/contacts", key, {
    list_id: list.id,
    contacts: emails.map((email, i) => ({ email, name: `Contact ${i}`, attributes: { plan: i % 2 ? "pro" : "free" } })),
  });
  const segment = await ok(sys, "POST", "/v1/segments", key, {
    name: "pro",
    list_id: list.id,
    filters: [{ attribute: "plan", op: "eq", value: "pro" }],
  });
  const template = await ok(sys, "POST", "/v1/templates", key, {
    name: "hello",
    subject: "Hello {{name}}",
    blocks: [{ type: "heading", text: "Hi {{name}}" }, { type: "text", text: "News." }],
  });
  const campaign = await ok(sys, "POST", "/v1/campaigns", key, { name: "launch", template_id: template.id, list_id: list.id });
  // Subscribed to an event nothing in the run produces: any delivery to the victim's URL is the attacker's doing.
  const endpoint = await ok(sys, "POST", "/v1/webhooks/endpoints", key, { url: `${receiverUrl}/hook/${role}`, event_types: ["email.bounced"] });
  // The victim's import has no valid row, so running it creates no contact of its own.
  const csv = role === "victim" ? "email\nnot-an-address\n" : `email,name\n${tenantId}-imp@example.com,Imp\n`;
  const imp = await sys.request({
    method: "POST",
    target: `/v1/imports?mapping=${encodeURIComponent(JSON.stringify({ email: "email" }))}&has_header=true`,
    headers: [
      ["authorization", `Bearer ${key}`],
      ["content-type", "text/csv"],
    ],
    body: Buffer.from(csv),
  });
  if (imp.status !== 202) throw new Error(`seed import: ${imp.status} ${imp.body.toString()}`);
  const importId = (JSON.parse(imp.body.toString()) as { id: string }).id;
  const jobIds: string[] = [importId];
  let exportId: string | undefined;
  if (role === "attacker") {
    const job = await ok(sys, "POST", "/v1/jobs", key, {
      type: "email.send",
      payload: { recipient: emails[0], template_id: template.id, variables: { name: "A" } },
    });
    jobIds.push(String(job.id));
    const exp = await ok(sys, "POST", "/v1/exports", key, { source: "list", list_id: list.id });
    exportId = String(exp.id);
    jobIds.push(exportId);
  }
  return {
    tenantId,
    key,
    listId: list.id,
    segmentId: segment.id,
    templateId: template.id,
    campaignId: campaign.id,
    contactIds: (contacts.contacts as { id: string }[]).map((c) => c.id),
    contactEmails: emails,
    endpointId: endpoint.id,
    endpointSecret: endpoint.secret,
    importId,
    jobIds,
    exportId,
  };
}

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const TAIL = 64 * 1024;

/** A line of process output that carried a secret. */
export interface LogLeak {
  process: string;
  secret: string;
  line: string;
}

/** Every secret the outputs are searched for: the marker, keys, signing secrets (grows as the run creates more). */
export class Secrets {
  private readonly values = new Map<string, string>();
  add(label: string, value: string | undefined): void {
    if (value && value.length >= 8) this.values.set(value, label);
  }
  /** Labels of the secrets found in this text. */
  foundIn(text: string): string[] {
    const out: string[] = [];
    for (const [value, label] of this.values) if (text.includes(value)) out.push(label);
    return out;
  }
  list(): [string, string][] {
    return [...this.values];
  }
}

export interface EntryProcess {
  name: string;
  url?: string;
  tail(): string;
  /** Every line printed so far, in order (JSON log lines and the banner). */
  lines(): number;
  kill(signal?: NodeJS.Signals, timeoutMs?: number): Promise<void>;
}

const live = new Set<ChildProcess>();
process.once("exit", () => {
  for (const p of live) p.kill("SIGKILL");
});

/**
 * Spawns the real Node entry (`node --import tsx workers/node.ts`) with these settings, scans
 * every line it prints for the secrets (not just a tail: a leak early in a long run counts),
 * and resolves once its JSON "ready" line says where the API listens.
 */
async function spawnEntry(name: string, env: Record<string, string | number>, secrets: Secrets, leaks: LogLeak[]): Promise<EntryProcess> {
  const childEnv: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) if (v !== undefined && !CONFIG_VARIABLES.includes(k)) childEnv[k] = v;
  for (const [k, v] of Object.entries(env)) childEnv[k] = String(v);
  const proc = spawn(process.execPath, ["--import", "tsx", "workers/node.ts"], { cwd: ROOT, env: childEnv, stdio: ["ignore", "pipe", "pipe"] });
  live.add(proc);
  let tail = "";
  let count = 0;
  let resolveReady: (url: string | undefined) => void = () => {};
  const ready = new Promise<string | undefined>((r) => (resolveReady = r));
  const onLine = (line: string) => {
    count++;
    tail = (tail + line + "\n").slice(-TAIL);
    for (const secret of secrets.foundIn(line)) leaks.push({ process: name, secret, line: line.slice(0, 2_000) });
    if (line.startsWith("{")) {
      try {
        const entry = JSON.parse(line) as { msg?: string; url?: string };
        if (entry.msg === "ready") resolveReady(entry.url);
      } catch {
        // not a log line
      }
    }
  };
  for (const stream of [proc.stdout!, proc.stderr!]) {
    let buffer = "";
    stream.setEncoding("utf8");
    stream.on("data", (chunk: string) => {
      buffer += chunk;
      let nl: number;
      while ((nl = buffer.indexOf("\n")) >= 0) {
        onLine(buffer.slice(0, nl));
        buffer = buffer.slice(nl + 1);
      }
    });
    stream.on("end", () => buffer && onLine(buffer));
  }
  const exited = new Promise<void>((r) => proc.once("exit", () => (live.delete(proc), r())));
  const url = await Promise.race([
    ready,
    exited.then(() => {
      throw new Error(`${name} exited before it was ready:\n${tail}`);
    }),
    new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`${name} was not ready within 60 s:\n${tail}`)), 60_000).unref()),
  ]);
  return {
    name,
    url,
    tail: () => tail,
    lines: () => count,
    kill: async (signal = "SIGTERM", timeoutMs = 10_000) => {
      if (proc.exitCode !== null || proc.signalCode !== null) return;
      proc.kill(signal);
      const timer = setTimeout(() => proc.kill("SIGKILL"), timeoutMs);
      await exited;
      clearTimeout(timer);
    },
  };
}

export async function startFuzzSystem(label = "fuzz"): Promise<FuzzSystem> {
  const db = await createTestDatabase(label);
  const dataDir = await mkdtemp(join(tmpdir(), "pm-fuzz-"));
  const pepper = randomBytes(24).toString("hex");
  const resendSecret = `whsec_${randomBytes(24).toString("base64")}`;
  const redisPrefix = `fuzz:{${randomBytes(4).toString("hex")}}:`;
  const receiver = await startReceiver();
  const keys = new ApiKeys(db.sql, { pepper });
  const suffix = randomBytes(3).toString("hex");
  const tenantA = `fuzz_a_${suffix}`;
  const tenantB = `fuzz_b_${suffix}`;
  for (const t of [tenantA, tenantB]) await db.sql.query("insert into tenants (id, name) values ($1, $2) on conflict do nothing", [t, t]);
  const [adminKey, keyA, keyB] = await Promise.all([
    keys.create({ tenantId: null, admin: true, name: "fuzz admin" }),
    keys.create({ tenantId: tenantA, admin: false, name: "fuzz attacker" }),
    keys.create({ tenantId: tenantB, admin: false, name: "fuzz victim" }),
  ]);
  const env = {
    DATABASE_URL: db.url,
    API_KEY_PEPPER: pepper,
    REDIS_URL,
    REDIS_PREFIX: redisPrefix,
    DATA_DIR: dataDir,
    PORT: 0,
    // Webhook endpoints point at the local receiver; everything else stays refused.
    WEBHOOK_ALLOW: "127.0.0.1/32",
    RESEND_WEBHOOK_SECRET: resendSecret,
    // More than production logs: a secret must not show at any level.
    LOG_LEVEL: "debug",
    SHUTDOWN_GRACE_MS: 2_000,
    SCHEDULER_INTERVAL_MS: 200,
    REGISTRY_INTERVAL_MS: 60_000,
  };
  const secrets = new Secrets();
  secrets.add("SECRET_MARKER", SECRET_MARKER);
  secrets.add("API_KEY_PEPPER", pepper);
  secrets.add("RESEND_WEBHOOK_SECRET", resendSecret);
  // The keys' secret parts: a key's id may be shown, its secret never.
  secrets.add("admin key", adminKey.key.slice(17));
  secrets.add("attacker key", keyA.key.slice(17));
  secrets.add("victim key", keyB.key.slice(17));
  const logLeaks: LogLeak[] = [];
  const started: EntryProcess[] = [];
  const api = await spawnEntry("fuzz-api", { ...env, ROLE: "api" }, secrets, logLeaks);
  started.push(api);
  if (!api.url) throw new Error("the API did not say where it listens");
  const port = Number(new URL(api.url).port);
  const request = (req: RawRequest, timeoutMs?: number) => sendRaw(port, req, timeoutMs);

  const tables = (
    await db.sql.query<{ t: string }>(`select table_name as t from information_schema.tables where table_schema = 'public' and table_type = 'BASE TABLE' order by 1`)
  ).map((r) => r.t);
  const tenantTables = new Set(
    (
      await db.sql.query<{ t: string }>(
        `select table_name as t from information_schema.columns where table_schema = 'public' and column_name = 'tenant_id'`,
      )
    ).map((r) => r.t),
  );
  const fingerprintQuery = tables
    .filter((t) => !ALWAYS_VOLATILE.has(t))
    .map((t) => `select '${t}' as t, count(*)::text || ':' || coalesce(max(xmin::text::bigint), 0)::text as f from "${t}"`)
    .join(" union all ");
  const fingerprint = async () => new Map((await db.sql.query<{ t: string; f: string }>(fingerprintQuery)).map((r) => [r.t, r.f]));

  const sys = { request };
  const a = await seedTenant(sys, tenantA, keyA.key, receiver.url, "attacker");
  const b = await seedTenant(sys, tenantB, keyB.key, receiver.url, "victim");
  secrets.add("attacker endpoint secret", a.endpointSecret);
  secrets.add("victim endpoint secret", b.endpointSecret);

  const victimTables = [...tenantTables].filter((t) => !VICTIM_OWN_WORK.has(t) && !ALWAYS_VOLATILE.has(t)).sort();
  const victimDigest = async () => {
    const out = new Map<string, string>();
    for (const t of victimTables) {
      const [row] = await db.sql.query<{ d: string | null; n: string }>(
        `select md5(coalesce(string_agg(to_jsonb(x)::text, '|' order by to_jsonb(x)::text), '')) as d, count(*)::text as n from "${t}" x where tenant_id = $1`,
        [b.tenantId],
      );
      out.set(t, `${row!.n}:${row!.d}`);
    }
    // list_members has no tenant_id: the victim's are those of its lists.
    if (tables.includes("list_members")) {
      const [row] = await db.sql.query<{ d: string; n: string }>(
        `select md5(coalesce(string_agg(to_jsonb(m)::text, '|' order by to_jsonb(m)::text), '')) as d, count(*)::text as n
         from list_members m where m.list_id in (select id from lists where tenant_id = $1)`,
        [b.tenantId],
      );
      out.set("list_members", `${row!.n}:${row!.d}`);
    }
    return out;
  };

  const drain = async (timeoutMs: number) => {
    const worker = await spawnEntry(`fuzz-drain-${started.length}`, { ...env, ROLE: "worker", LEASE_MS: 5_000 }, secrets, logLeaks);
    started.push(worker);
    const deadline = Date.now() + timeoutMs;
    // Settled: nothing queued or running, and nothing due within a few seconds (retries with
    // long backoff stay scheduled; their first failure has been logged already).
    for (;;) {
      const [row] = await db.sql.query<{ n: number }>(
        `select count(*)::int as n from jobs where state in ('queued', 'active')
            or (state = 'scheduled' and run_at < now() + interval '3 seconds')`,
      );
      if ((row?.n ?? 0) === 0 || Date.now() > deadline) break;
      await new Promise((r) => setTimeout(r, 200));
    }
    await worker.kill("SIGTERM", 10_000);
  };

  return {
    port,
    url: api.url!,
    sql: db.sql,
    dataDir,
    adminKey: adminKey.key,
    a,
    b,
    resendSecret,
    receiver,
    api,
    secrets,
    logLeaks,
    output: () => started.map((p) => `----- ${p.name} -----\n${p.tail()}`).join("\n"),
    request,
    fingerprint,
    files: () => walk(join(dataDir, "files")),
    victimDigest,
    drain,
    stop: async () => {
      await Promise.all(started.map((p) => p.kill("SIGTERM", 5_000).catch(() => undefined)));
      await receiver.close().catch(() => undefined);
      await db.drop().catch(() => undefined);
      await rm(dataDir, { recursive: true, force: true });
    },
  };
}

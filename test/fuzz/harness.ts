/**
 * The fuzz run shared by test/fuzz.test.ts (bounded, part of `npm test`) and tools/fuzz.ts
 * (`npm run fuzz`, longer). Cases come from fast-check, one seed a case (`seed + index`), so any
 * case can be replayed alone: `FUZZ_SEED=<seed> FUZZ_REPLAY=<index> npm run fuzz`.
 *
 * Properties of every request:
 *   - no 5xx, and an answer at all (no hang, no crash of the API process);
 *   - every 4xx of the JSON API is application/problem+json with RFC 9457's fields (the
 *     dashboard and unsubscribe pages answer HTML by design);
 *   - after every 4xx, no table's rows changed (count and newest xmin of every table) and the
 *     stored files are the same;
 *   - a body with an unknown field added to a strict object is not accepted (no 2xx);
 *   - no response shows a secret (the planted marker, keys, signing secrets), and an
 *     attacker's response shows none of the victim's identifiers it did not send;
 *   - no line the processes print shows a secret.
 * After the run: a worker drains the jobs the run enqueued, then the dashboard pages, job and
 * import views are scanned for secrets, and the victim tenant's rows and webhook URL must be
 * untouched.
 */
import fc from "fast-check";
import { anyCaseArb, type FuzzCase, type FuzzContext } from "./arbitraries";
import { jsonRequest, type RawResponse } from "./http";
import { catalogue, type Operation } from "./routes";
import { type FuzzSystem, SECRET_MARKER, startFuzzSystem } from "./system";

export interface FuzzOptions {
  /** Requests to send (the bound). */
  runs: number;
  /** Seed of the first case; case i uses seed + i. */
  seed: number;
  /** Stop sending after this long even if runs are left (the drain and the scans follow). */
  timeBudgetMs: number;
  /** Only this case index (a replay). */
  replay?: number;
  /** How long the worker may take to drain what the run enqueued. */
  drainMs?: number;
  /** Progress lines (tools/fuzz.ts prints them). */
  log?: (line: string) => void;
}

export interface Violation {
  property: string;
  route: string;
  /** Case index (replay with FUZZ_SEED and FUZZ_REPLAY), or null for the checks after the run. */
  index: number | null;
  detail: string;
  reproducer?: string;
}

export interface FuzzReport {
  seed: number;
  sent: number;
  elapsedMs: number;
  byStatus: Map<number, number>;
  byRoute: Map<string, Map<number, number>>;
  violations: Violation[];
  operations: Operation[];
}

const preview = (bytes: Uint8Array | undefined, max = 600): string => {
  if (!bytes || bytes.length === 0) return "(none)";
  const b = Buffer.from(bytes);
  const text = b.toString("utf8");
  const valid = Buffer.from(text, "utf8").equals(b);
  const shown = valid ? JSON.stringify(text.length > max ? `${text.slice(0, max)}…(${text.length} chars)` : text) : `base64:${b.subarray(0, max).toString("base64")}${b.length > max ? `…(${b.length} bytes)` : ""}`;
  return shown;
};

export function reproducer(seed: number, index: number, c: FuzzCase): string {
  const headers = c.raw.headers.map(([k, v]) => `  ${k}: ${JSON.stringify(v.length > 120 ? `${v.slice(0, 120)}…(${v.length})` : v)}`).join("\n");
  const target = c.raw.target.length > 300 ? `${c.raw.target.slice(0, 300)}…(${c.raw.target.length} chars)` : c.raw.target;
  return [
    `replay: FUZZ_SEED=${seed} FUZZ_REPLAY=${index} npm run fuzz`,
    `as: ${c.principal}; mutations: ${c.mutations.join("; ") || "none"}${c.secretAt.length ? `; secret planted in: ${c.secretAt.join(", ")}` : ""}`,
    `${c.raw.method} ${target}`,
    headers,
    `body: ${preview(c.raw.body)}`,
  ].join("\n");
}

function problemShape(res: RawResponse): string | null {
  const type = res.headers["content-type"] ?? "";
  if (!type.toLowerCase().startsWith("application/problem+json")) return `content-type is ${JSON.stringify(type)}, not application/problem+json (body ${preview(res.body, 200)})`;
  let body: any;
  try {
    body = JSON.parse(res.body.toString("utf8"));
  } catch {
    return `body is not JSON: ${preview(res.body, 200)}`;
  }
  const missing = ["type", "title", "detail"].filter((k) => typeof body?.[k] !== "string");
  if (missing.length) return `problem lacks string ${missing.join(", ")}: ${preview(res.body, 200)}`;
  if (body.status !== res.status) return `problem.status ${body.status} differs from HTTP ${res.status}`;
  if (body.errors !== undefined && (!Array.isArray(body.errors) || body.errors.some((e: any) => typeof e?.path !== "string" || typeof e?.message !== "string"))) {
    return `problem.errors is not a list of {path, message}: ${preview(res.body, 200)}`;
  }
  return null;
}

const diff = <V>(before: Map<string, V>, after: Map<string, V>): string[] => {
  const out: string[] = [];
  for (const [k, v] of after) if (before.get(k) !== v) out.push(`${k}: ${String(before.get(k) ?? "absent")} -> ${String(v)}`);
  for (const k of before.keys()) if (!after.has(k)) out.push(`${k}: removed`);
  return out;
};

const decodeLoosely = (target: string): string => {
  try {
    return decodeURIComponent(target);
  } catch {
    return target;
  }
};

/** The route's template for the totals: "GET /v1/jobs/{id}". */
const routeOf = (c: FuzzCase) => c.op.id;

async function contextOf(sys: FuzzSystem): Promise<FuzzContext> {
  const fileUrl = async (importId: string) =>
    (await sys.sql.query<{ u: string }>("select payload->>'file_url' as u from jobs where id = $1", [importId]))[0]?.u ?? "file:///missing.csv";
  // The dashboard's forms carry a CSRF token bound to the admin key; read it from a page.
  const page = await sys.request(jsonRequest("GET", "/dashboard", sys.adminKey));
  const csrf = /name="csrf_token"\s+value="([^"]+)"/.exec(page.body.toString())?.[1];
  const types = (await sys.sql.query<{ t: string }>("select distinct type as t from jobs")).map((r) => r.t);
  const ids = async (s: FuzzSystem["a"]) => ({ ...s, fileUrl: await fileUrl(s.importId) });
  return {
    marker: SECRET_MARKER,
    adminKey: sys.adminKey,
    resendSecret: sys.resendSecret,
    receiverUrl: sys.receiver.url,
    csrf,
    jobTypes: [...new Set([...types, "email.send", "campaign.process", "import.contacts", "export.data", "webhook.dispatch", "maintenance.cleanup"])],
    a: await ids(sys.a),
    b: await ids(sys.b),
  };
}

/** Strings of the victim an attacker's answer must not show unless the attacker sent them. */
function victimStrings(sys: FuzzSystem): [string, string][] {
  const b = sys.b;
  return [
    ["victim tenant id", b.tenantId],
    ["victim list id", b.listId],
    ["victim segment id", b.segmentId],
    ["victim template id", b.templateId],
    ["victim campaign id", b.campaignId],
    ["victim endpoint id", b.endpointId],
    ...b.contactEmails.map((e): [string, string] => ["victim contact address", e]),
  ];
}

export async function runFuzz(options: FuzzOptions): Promise<FuzzReport> {
  const log = options.log ?? (() => {});
  const started = Date.now();
  const sys = await startFuzzSystem("fuzz");
  const violations: Violation[] = [];
  const byStatus = new Map<number, number>();
  const byRoute = new Map<string, Map<number, number>>();
  let sent = 0;
  try {
    const docRes = await sys.request(jsonRequest("GET", "/openapi.json", undefined));
    const operations = catalogue(JSON.parse(docRes.body.toString()));
    const ctx = await contextOf(sys);
    const arb = anyCaseArb(ctx, operations);
    const victim = victimStrings(sys);
    const victimBefore = await sys.victimDigest();
    const victimHooksBefore = sys.receiver.on("/hook/victim").length;
    log(`system up in ${Date.now() - started} ms at ${sys.url}; ${operations.length} operations; seed ${options.seed}`);

    /** Victim strings the attacker stored through accepted requests (they may come back in its own listings). */
    const exposed = new Set<string>();
    /** Jobs created by requests that planted a secret: their views are scanned after the drain. */
    const plantedJobs = new Set<string>();
    let fingerprint = await sys.fingerprint();
    let files = await sys.files();
    const indexes = options.replay !== undefined ? [options.replay] : Array.from({ length: options.runs }, (_, i) => i);
    const deadline = started + options.timeBudgetMs;

    const scan = (where: string, text: Buffer | string, index: number | null, route: string, repro?: string) => {
      const s = typeof text === "string" ? text : text.toString("latin1") + text.toString("utf8");
      for (const label of sys.secrets.foundIn(s)) {
        violations.push({ property: "secret in output", route, index, detail: `${label} shown in ${where}`, reproducer: repro });
      }
    };

    for (const index of indexes) {
      if (Date.now() > deadline) {
        log(`time budget reached after ${sent} requests`);
        break;
      }
      const c = fc.sample(arb, { seed: (options.seed + index) | 0, numRuns: 1 })[0]!;
      const route = routeOf(c);
      const repro = () => reproducer(options.seed, index, c);
      const leaksBefore = sys.logLeaks.length;
      let res: RawResponse;
      try {
        res = await sys.request(c.raw, 30_000);
      } catch (err) {
        violations.push({ property: "no answer", route, index, detail: String(err), reproducer: repro() });
        if (!(await sys.request(jsonRequest("GET", "/healthz", undefined), 5_000).catch(() => null))) {
          violations.push({ property: "API process died", route, index, detail: sys.output().slice(-4_000), reproducer: repro() });
          break;
        }
        continue;
      }
      sent++;
      byStatus.set(res.status, (byStatus.get(res.status) ?? 0) + 1);
      const perRoute = byRoute.get(route) ?? new Map<number, number>();
      perRoute.set(res.status, (perRoute.get(res.status) ?? 0) + 1);
      byRoute.set(route, perRoute);

      const nextFingerprint = await sys.fingerprint();
      const nextFiles = await sys.files();
      if (res.status >= 500) {
        violations.push({ property: "5xx", route, index, detail: `${res.status} ${preview(res.body, 300)}`, reproducer: repro() });
      }
      if (res.status >= 400 && res.status < 500) {
        if (!c.op.html) {
          const problem = problemShape(res);
          if (problem) violations.push({ property: "4xx is not problem+json", route, index, detail: `${res.status}: ${problem}`, reproducer: repro() });
        }
        const changed = diff(fingerprint, nextFingerprint);
        if (changed.length) violations.push({ property: "stored after a reject", route, index, detail: `${res.status} ${preview(res.body, 200)}; rows changed: ${changed.join(", ")}`, reproducer: repro() });
        const fileChanges = diff(files, nextFiles);
        if (fileChanges.length) violations.push({ property: "file stored after a reject", route, index, detail: `${res.status}; files: ${fileChanges.join(", ")}`, reproducer: repro() });
      }
      // Resend's payload is a third party's: it may grow fields, so unknown ones there are ignored, not refused.
      if (c.unknownField && !c.op.resendSigned && res.status >= 200 && res.status < 300) {
        violations.push({ property: "unknown field accepted", route, index, detail: `${res.status} with unknown field ${c.unknownField}`, reproducer: repro() });
      }
      scan(`the response (${res.status})`, res.raw, index, route, repro());
      const sentText = `${c.raw.target}\n${decodeLoosely(c.raw.target)}\n${c.raw.body ? Buffer.from(c.raw.body).toString("utf8") : ""}`;
      if (c.principal === "attacker" && res.status < 300) {
        const body = res.body.toString("utf8");
        for (const [label, value] of victim) {
          // The attacker may see a victim's id it stored itself in an accepted request (its own job's payload).
          if (body.includes(value) && !sentText.includes(value) && !exposed.has(value)) {
            violations.push({ property: "another tenant's data shown", route, index, detail: `${label} ${value} in a ${res.status} answer to the attacker`, reproducer: repro() });
          }
        }
      }
      if (res.status < 400) for (const [, value] of victim) if (sentText.includes(value)) exposed.add(value);
      for (const leak of sys.logLeaks.slice(leaksBefore)) {
        violations.push({ property: "secret in the log", route, index, detail: `${leak.secret} in ${leak.process}'s output: ${leak.line.slice(0, 400)}`, reproducer: repro() });
      }
      // Secrets the run itself creates (new endpoints, rotations) must not show again either.
      if (res.status < 300 && /\/webhooks\/endpoints/.test(c.op.path)) {
        try {
          const secret = (JSON.parse(res.body.toString()) as { secret?: string }).secret;
          sys.secrets.add(`endpoint secret made by case ${index}`, secret);
        } catch {
          // not JSON
        }
      }
      if (res.status < 300 && c.secretAt.length) {
        try {
          const out = JSON.parse(res.body.toString()) as { id?: unknown; job?: { id?: unknown }; jobs?: { id?: unknown }[] };
          for (const id of [out.id, out.job?.id, ...(out.jobs ?? []).map((j) => j.id)]) if (typeof id === "string" || typeof id === "number") plantedJobs.add(String(id));
        } catch {
          // not JSON
        }
      }
      fingerprint = nextFingerprint;
      files = nextFiles;
      if (sent % 250 === 0) log(`${sent} requests, ${violations.length} violations, ${Math.round((Date.now() - started) / 1000)} s`);
    }

    // ---- After the run: the workers run what was accepted; then every view is scanned. ----
    const leaksBeforeDrain = sys.logLeaks.length;
    await sys.drain(options.drainMs ?? 20_000);
    for (const leak of sys.logLeaks.slice(leaksBeforeDrain)) {
      violations.push({ property: "secret in the log", route: "(workers, after the run)", index: null, detail: `${leak.secret} in ${leak.process}'s output: ${leak.line.slice(0, 400)}` });
    }
    const jobRows = await sys.sql.query<{ id: string; tenant_id: string | null; type: string }>(
      "select id::text, tenant_id, type from jobs order by (id::text = any($1)) desc, id desc limit 400",
      [[...plantedJobs]],
    );
    const views: [string, string, string][] = [
      ["GET", "/dashboard", sys.adminKey],
      ...["failed", "completed", "queued", "scheduled", "paused", "cancelled"].map((s): [string, string, string] => ["GET", `/dashboard?state=${s}`, sys.adminKey]),
      ["GET", `/v1/jobs?limit=500`, sys.a.key],
      ["GET", `/v1/jobs?limit=500&state=failed`, sys.adminKey],
      ["GET", `/v1/webhooks/endpoints`, sys.a.key],
      ["GET", `/v1/webhooks/endpoints/${sys.a.endpointId}/deliveries`, sys.a.key],
      ["GET", `/metrics`, sys.adminKey],
    ];
    for (const j of jobRows) {
      views.push(["GET", `/dashboard/jobs/${j.id}`, sys.adminKey]);
      if (j.tenant_id === sys.a.tenantId) {
        views.push(["GET", `/v1/jobs/${j.id}`, sys.a.key]);
        if (j.type === "import.contacts") views.push(["GET", `/v1/imports/${j.id}`, sys.a.key], ["GET", `/v1/imports/${j.id}/report`, sys.a.key]);
        if (j.type === "export.data") views.push(["GET", `/v1/exports/${j.id}`, sys.a.key]);
      }
    }
    for (const [method, target, key] of views) {
      const res = await sys.request(jsonRequest(method, target, key)).catch((err: unknown) => ({ status: 0, raw: Buffer.from(String(err)) }) as RawResponse);
      if (res.status >= 500 || res.status === 0) violations.push({ property: "5xx", route: `${method} ${target}`, index: null, detail: `${res.status} after the run: ${preview(res.raw, 300)}` });
      scan(`${method} ${target} after the run`, res.raw, null, `${method} ${target}`);
    }
    const victimAfter = await sys.victimDigest();
    const victimChanged = diff(victimBefore, victimAfter);
    if (victimChanged.length) {
      violations.push({
        property: "another tenant's rows changed",
        route: "(after the run)",
        index: null,
        detail: `the victim tenant made no request, yet its rows changed: ${victimChanged.map((d) => d.split(":")[0]).join(", ")} (cases that named its ids and were accepted are listed above as their own entries when they were refused too late)`,
      });
    }
    const hooks = sys.receiver.on("/hook/victim").slice(victimHooksBefore);
    if (hooks.length) {
      violations.push({
        property: "another tenant's webhook called",
        route: "(after the run)",
        index: null,
        detail: `the victim's endpoint got ${hooks.length} deliveries it never asked for, e.g. ${hooks[0]!.body.slice(0, 300)}`,
      });
    }
    return { seed: options.seed, sent, elapsedMs: Date.now() - started, byStatus, byRoute, violations, operations };
  } catch (err) {
    throw new Error(`${err instanceof Error ? err.stack : String(err)}\n${sys.output().slice(-6_000)}`);
  } finally {
    await sys.stop();
  }
}

/** Violations grouped by property, route and the detail's first words: what a person reads. */
export function summarize(report: FuzzReport, maxExamples = 1): string {
  const groups = new Map<string, Violation[]>();
  for (const v of report.violations) {
    const key = `${v.property} | ${v.route} | ${v.detail.replace(/case \d+/g, "case N").replace(/\d{3,}/g, "N").slice(0, 90)}`;
    groups.set(key, [...(groups.get(key) ?? []), v]);
  }
  const lines = [
    `seed ${report.seed}: ${report.sent} requests in ${(report.elapsedMs / 1000).toFixed(1)} s; ${report.violations.length} violations in ${groups.size} groups`,
    `by status: ${[...report.byStatus].sort((x, y) => x[0] - y[0]).map(([s, n]) => `${s}: ${n}`).join(", ")}`,
  ];
  for (const [key, vs] of [...groups].sort((x, y) => x[0].localeCompare(y[0]))) {
    lines.push(`\n[${vs.length}x] ${key}`);
    for (const v of vs.slice(0, maxExamples)) lines.push(`  ${v.detail.slice(0, 600)}`, ...(v.reproducer ? [v.reproducer.replace(/^/gm, "    ")] : []));
  }
  return lines.join("\n");
}

/**
 * The operations dashboard, mounted at /dashboard by app.ts: server-rendered HTML (Hono JSX),
 * the same on Node and on the edge, with no front-end build and no external asset.
 *
 *   GET  /dashboard                       overview (?type= &tenant= &state= &cursor= filter the job lists)
 *   GET  /dashboard/jobs/:id              one job
 *   POST /dashboard/jobs/:id/retry        run a failed or cancelled job again
 *   POST /dashboard/jobs/:id/cancel       cancel a waiting job, or ask a running one to stop
 *   POST /dashboard/queues/:type/retry-failed
 *   POST /dashboard/lanes/pause           form: type, tenant (optional: every tenant)
 *   POST /dashboard/lanes/resume          form: type, tenant (optional)
 *   GET  /dashboard/keys, POST /dashboard/keys (form: tenant or admin, name), POST /dashboard/keys/:id/revoke
 *   GET  /dashboard/login, POST /dashboard/login, POST /dashboard/logout
 *
 * Admin keys only (see access.ts); every action is a form POST with a CSRF token, answered by a
 * 303 back to the page it came from.
 */
import { type Context, Hono } from "hono";
import type { HtmlEscapedString } from "hono/utils/html";
import { deleteCookie, setCookie } from "hono/cookie";
import { HTTPException } from "hono/http-exception";
import type { ContentfulStatusCode } from "hono/utils/http-status";
import { tenantId as tenantIdSchema } from "../../jobs/fields";
import { type Logger, type SqlClient, silentLogger } from "../../ports";
import { ConflictError, ForbiddenError, NotFoundError, ValidationError } from "../../queue/errors";
import { JOB_STATES, type JobState } from "../../queue/job";
import type { Queue } from "../../queue/queue";
import type { WorkerRegistry } from "../../queue/registry";
import { defaultScalingPolicy, type ScalingPolicy } from "../../queue/scaling";
import { createPostgresRateLimiter } from "../../email/rate-limit";
import type { ApiKeys } from "../api-keys";
import { decodeCursor } from "../cursor";
import { toJobView } from "../job-view";
import { ApiError } from "../problem";
import {
  type AccessDeps,
  DASHBOARD_PATH,
  DashboardError,
  type DashboardEnv,
  readForm,
  requireCsrf,
  requireOperator,
  safeReturnPath,
  sessionOperator,
} from "./access";
import { duration } from "./format";
import { JobPage } from "./job-page";
import { KeysPage } from "./keys-page";
import { ErrorPage } from "./layout";
import { DEFAULT_LOGIN_LIMIT, type LoginLimitOptions, LoginLimiter } from "./login-limit";
import { LoginPage } from "./login-page";
import { OverviewPage } from "./overview";
import { type JobFilter, listJobs, loadOverview } from "./queries";
import { DEFAULT_SESSION_TTL_MS, PEPPER_DERIVATION_LABEL, SESSION_COOKIE, SessionSigner } from "./session";

export interface DashboardOptions {
  queue: Queue;
  sql: SqlClient;
  apiKeys: ApiKeys;
  registry: WorkerRegistry;
  /** Thresholds shown with the scaling signals. Defaults to the app's default policy. */
  scaling?: ScalingPolicy;
  logger?: Logger;
  /**
   * Signs session cookies and CSRF tokens. Defaults to a key derived from the API key pepper
   * (through ApiKeys' peppered hash of a fixed label), so every process and Worker isolate
   * sharing the pepper accepts the same sessions, and they survive restarts. Changing the
   * pepper or this secret ends every session.
   */
  sessionSecret?: string;
  /** How long a login lasts. Defaults to 12 hours. */
  sessionTtlMs?: number;
  /** Login attempts a client address may make (see login-limit.ts). Defaults to 10, then one every 90 s. */
  loginLimit?: LoginLimitOptions;
}

const CHILDREN_SHOWN = 100;
/** Jobs a list shows: fewer when the overview shows two lists at once. */
const PAGE_SIZE = { single: 50, overview: 20 };

function contentSecurityPolicy(nonce: string): string {
  return [
    "default-src 'none'",
    "style-src 'unsafe-inline'",
    "img-src 'self' data:",
    "form-action 'self'",
    "frame-ancestors 'none'",
    "base-uri 'none'",
    `script-src 'nonce-${nonce}'`,
  ].join("; ");
}

function randomNonce(): string {
  let binary = "";
  for (const b of crypto.getRandomValues(new Uint8Array(16))) binary += String.fromCharCode(b);
  return btoa(binary);
}

/** A page: Hono JSX renders to an escaped string (or a promise of one, for async components). */
async function render(c: Context<DashboardEnv>, page: HtmlEscapedString | Promise<HtmlEscapedString>, status: ContentfulStatusCode = 200): Promise<Response> {
  return c.html(`<!DOCTYPE html>${String(await page)}`, status);
}

const SUBJECT = /^[A-Za-z0-9_.:-]{1,128}$/;

/** The one-line notice after an action, from the fixed set of kinds the actions redirect with. */
function noticeOf(query: Record<string, string>): string | null {
  const field = (name: string) => (query[name] !== undefined && SUBJECT.test(query[name]!) ? query[name] : undefined);
  const job = field("n_job");
  const type = field("n_type");
  const tenant = field("n_tenant");
  const n = field("n_count");
  const forTenant = tenant ? ` for tenant ${tenant}` : "";
  switch (query.notice) {
    case "retried":
      return job ? `Job #${job} will run again from attempt 1.` : null;
    case "cancelled":
      return job ? `Job #${job} was cancelled.` : null;
    case "cancel-requested":
      return job ? `Job #${job} is running; it was asked to stop.` : null;
    case "retried-failed":
      return type && n ? `${n} failed ${type} job(s) will run again.` : null;
    case "paused":
      return type && n ? `${type} is paused${forTenant}: ${n} waiting job(s) held; running ones finish.` : null;
    case "resumed":
      return type && n ? `${type} resumed${forTenant}: ${n} job(s) back in their lane.` : null;
    case "key-revoked":
      return field("n_key") ? `Key ${field("n_key")} was revoked.` : null;
    default:
      return null;
  }
}

/** Back to the page the form came from, with a notice of what was done. */
function redirectBack(c: Context<DashboardEnv>, form: Record<string, string>, notice: Record<string, string>): Response {
  const back = new URL(safeReturnPath(form.back), "http://dashboard.invalid");
  for (const key of ["notice", "n_job", "n_type", "n_tenant", "n_count", "n_key"]) back.searchParams.delete(key);
  for (const [key, value] of Object.entries(notice)) back.searchParams.set(key, value);
  return c.redirect(`${back.pathname}${back.search}${back.hash}`, 303);
}

/** The overview's own address (without a one-time notice), for its forms to come back to. */
function currentPage(c: Context): string {
  const url = new URL(c.req.url);
  for (const key of ["notice", "n_job", "n_type", "n_tenant", "n_count", "n_key"]) url.searchParams.delete(key);
  return `${url.pathname}${url.search}`;
}

function parseFilter(query: Record<string, string>): JobFilter {
  const filter: JobFilter = {};
  const invalid = (what: string) => new DashboardError(422, "Invalid filter", what);
  if (query.type) {
    if (!/^[A-Za-z0-9_.:-]{1,128}$/.test(query.type)) throw invalid("The type filter is not a job type name.");
    filter.type = query.type;
  }
  if (query.tenant) {
    if (!tenantIdSchema.safeParse(query.tenant).success) throw invalid("The tenant filter is not a tenant id (letters, digits and _ . : - only).");
    filter.tenant = query.tenant;
  }
  if (query.state) {
    if (!(JOB_STATES as readonly string[]).includes(query.state)) throw invalid(`The state filter must be one of: ${JOB_STATES.join(", ")}.`);
    filter.state = query.state as JobState;
  }
  if (query.cursor && filter.state) {
    const beforeId = decodeCursor(query.cursor);
    if (beforeId === null) throw invalid("The page cursor is not one this dashboard made.");
    filter.beforeId = beforeId;
  }
  return filter;
}

function isHttps(c: Context): boolean {
  return new URL(c.req.url).protocol === "https:" || c.req.header("x-forwarded-proto") === "https";
}

export function dashboardRoutes(options: DashboardOptions): Hono<DashboardEnv> {
  const { queue, sql, apiKeys, registry } = options;
  const policy = options.scaling ?? defaultScalingPolicy;
  const logger = options.logger ?? silentLogger;
  const ttlMs = options.sessionTtlMs ?? DEFAULT_SESSION_TTL_MS;
  const signer = new SessionSigner(options.sessionSecret ?? (() => apiKeys.hashSecret(PEPPER_DERIVATION_LABEL)), queue.clock, ttlMs);
  const access: AccessDeps = { apiKeys, sql, signer };
  const guard = requireOperator(access);
  const csrf = requireCsrf(signer);
  // In Postgres, which every process and isolate shares (Redis may be absent).
  const logins = new LoginLimiter(createPostgresRateLimiter(sql, { clock: queue.clock }), options.loginLimit ?? DEFAULT_LOGIN_LIMIT);
  const app = new Hono<DashboardEnv>();

  app.use("*", async (c, next) => {
    const nonce = randomNonce();
    c.set("nonce", nonce);
    c.header("content-security-policy", contentSecurityPolicy(nonce));
    c.header("x-content-type-options", "nosniff");
    c.header("referrer-policy", "no-referrer");
    c.header("cache-control", "no-store");
    c.header("x-frame-options", "DENY");
    await next();
  });

  app.onError((err, c) => {
    let status = 500;
    let title = "Something went wrong";
    let message = "An unexpected error occurred; it has been logged.";
    if (err instanceof DashboardError) {
      ({ status, title, message } = err);
      for (const [name, value] of Object.entries(err.headers)) c.header(name, value);
    } else if (err instanceof NotFoundError) {
      [status, title, message] = [404, "Not found", err.message];
    } else if (err instanceof ConflictError) {
      [status, title, message] = [409, "Not possible now", err.message];
    } else if (err instanceof ForbiddenError) {
      [status, title, message] = [403, "Forbidden", err.message];
    } else if (err instanceof ValidationError) {
      [status, title, message] = [422, "Invalid request", [err.message, ...err.issues.map((i) => i.message)].join(": ")];
    } else if (err instanceof ApiError || (err instanceof HTTPException && err.status < 500)) {
      [status, title, message] = [err.status, "Request rejected", err.message];
    } else {
      logger.error("dashboard request failed", {
        method: c.req.method,
        path: c.req.path,
        err: err instanceof Error ? err.message : String(err),
        stack: err instanceof Error ? err.stack : undefined,
      });
    }
    const page = <ErrorPage nonce={c.var.nonce} operator={c.var.operator} status={status} title={title} message={message} />;
    return render(c, page, status as ContentfulStatusCode);
  });

  app.get("/login", async (c) => {
    const next = safeReturnPath(c.req.query("next"));
    if (await sessionOperator(c, access)) return c.redirect(next, 303);
    return render(c, <LoginPage nonce={c.var.nonce} next={next} sessionTtlMs={ttlMs} />);
  });

  app.post("/login", async (c) => {
    const form = await readForm(c);
    const next = safeReturnPath(form.next);
    const key = (form.key ?? "").trim();
    const fail = (status: 401 | 403 | 429, error: string) =>
      render(c, <LoginPage nonce={c.var.nonce} next={next} error={error} sessionTtlMs={ttlMs} />, status);
    if (key === "") return fail(401, "Paste an admin API key.");
    // Counted before the key is checked: a locked-out client learns nothing, not even of the right key.
    const attempt = await logins.attempt(c);
    if (!attempt.allowed) {
      c.header("retry-after", String(attempt.retryAfterSeconds));
      return fail(429, `Too many login attempts from your address. Try again in ${attempt.retryAfterSeconds < 600 ? `${attempt.retryAfterSeconds} seconds` : duration(attempt.retryAfterSeconds)}.`);
    }
    const principal = key.length <= 512 ? await apiKeys.verify(key) : null;
    if (!principal) return fail(401, "That key is not valid, or it was revoked.");
    if (!principal.admin) return fail(403, "That is a tenant key. The dashboard needs an admin key.");
    await logins.succeeded(c);
    const { value } = await signer.issue(principal.keyId);
    setCookie(c, SESSION_COOKIE, value, {
      path: DASHBOARD_PATH,
      httpOnly: true,
      sameSite: "Strict",
      secure: isHttps(c),
      maxAge: Math.floor(ttlMs / 1000),
    });
    return c.redirect(next, 303);
  });

  app.post("/logout", guard, csrf, (c) => {
    deleteCookie(c, SESSION_COOKIE, { path: DASHBOARD_PATH, httpOnly: true, sameSite: "Strict", secure: isHttps(c) });
    return c.redirect(`${DASHBOARD_PATH}/login`, 303);
  });

  app.get("/", guard, async (c) => {
    const query = c.req.query();
    const filter = parseFilter(query);
    const states: JobState[] = filter.state ? [filter.state] : ["active", "failed"];
    const limit = filter.state ? PAGE_SIZE.single : PAGE_SIZE.overview;
    const [overview, ...pages] = await Promise.all([
      loadOverview(queue, sql, registry, policy),
      ...states.map((state) => listJobs(queue, state, filter, limit)),
    ]);
    const page = (
      <OverviewPage
        overview={overview}
        operator={c.var.operator}
        nonce={c.var.nonce}
        notice={noticeOf(query)}
        filter={filter}
        pages={pages}
        back={currentPage(c)}
      />
    );
    return render(c, page);
  });

  app.get("/jobs/:id", guard, async (c) => {
    const job = await queue.get(c.req.param("id"), null);
    const children = await queue.ledger.children(job.id, CHILDREN_SHOWN);
    // toJobView redacts the payload, progress, result and last error (shared/redact.ts).
    const view = toJobView(job, { def: queue.catalog.get(job.type), admin: true });
    const page = (
      <JobPage
        job={job}
        view={view}
        childJobs={children}
        childLimit={CHILDREN_SHOWN}
        operator={c.var.operator}
        nonce={c.var.nonce}
        now={queue.clock.now()}
        notice={noticeOf(c.req.query())}
      />
    );
    return render(c, page);
  });

  app.post("/jobs/:id/retry", guard, csrf, async (c) => {
    const job = await queue.retry(c.req.param("id"), null);
    return redirectBack(c, c.var.form, { notice: "retried", n_job: job.id });
  });

  app.post("/jobs/:id/cancel", guard, csrf, async (c) => {
    const job = await queue.cancel(c.req.param("id"), null);
    return redirectBack(c, c.var.form, { notice: job.state === "cancelled" ? "cancelled" : "cancel-requested", n_job: job.id });
  });

  app.post("/queues/:type/retry-failed", guard, csrf, async (c) => {
    const type = c.req.param("type");
    if (!queue.catalog.has(type)) throw new DashboardError(404, "Not found", `There is no job type "${type}".`);
    const retried = await queue.retryFailed(type);
    return redirectBack(c, c.var.form, { notice: "retried-failed", n_type: type, n_count: String(retried) });
  });

  for (const action of ["pause", "resume"] as const) {
    app.post(`/lanes/${action}`, guard, csrf, async (c) => {
      const form = c.var.form;
      const type = form.type ?? "";
      if (!queue.catalog.has(type)) throw new DashboardError(404, "Not found", `There is no job type "${type}".`);
      const tenant = (form.tenant ?? "").trim() || null;
      if (tenant !== null && !tenantIdSchema.safeParse(tenant).success) {
        throw new DashboardError(422, "Invalid tenant", "A tenant id has letters, digits and _ . : - only (1 to 64).");
      }
      const { jobs } = action === "pause" ? await queue.pause(type, tenant) : await queue.resume(type, tenant);
      return redirectBack(c, form, {
        notice: action === "pause" ? "paused" : "resumed",
        n_type: type,
        ...(tenant ? { n_tenant: tenant } : {}),
        n_count: String(jobs),
      });
    });
  }

  app.get("/keys", guard, async (c) => {
    const page = <KeysPage keys={await apiKeys.list()} operator={c.var.operator} nonce={c.var.nonce} now={queue.clock.now()} notice={noticeOf(c.req.query())} />;
    return render(c, page);
  });

  app.post("/keys", guard, csrf, async (c) => {
    const form = c.var.form;
    const admin = form.admin === "true";
    const tenant = (form.tenant ?? "").trim();
    if (admin === (tenant !== "")) {
      throw new DashboardError(422, "Invalid key request", "Give a tenant id for a tenant key, or tick admin for an admin key (not both).");
    }
    if (!admin && !tenantIdSchema.safeParse(tenant).success) {
      throw new DashboardError(422, "Invalid tenant", "A tenant id has letters, digits and _ . : - only (1 to 64).");
    }
    const name = (form.name ?? "").trim() || (admin ? "admin" : `${tenant} key`);
    const created = await apiKeys.create({ tenantId: admin ? null : tenant, admin, name });
    // Answered with the page itself (not a redirect), so the key is in no address or history entry.
    const page = (
      <KeysPage
        keys={await apiKeys.list()}
        operator={c.var.operator}
        nonce={c.var.nonce}
        now={queue.clock.now()}
        created={{ id: created.id, key: created.key, who: admin ? "admin" : `tenant ${tenant}` }}
      />
    );
    return render(c, page, 201);
  });

  app.post("/keys/:id/revoke", guard, csrf, async (c) => {
    const id = c.req.param("id");
    if (!/^[A-Za-z0-9]{12}$/.test(id) || !(await apiKeys.revoke(id))) {
      throw new DashboardError(404, "Not found", `There is no active key ${id.slice(0, 64)}.`);
    }
    return redirectBack(c, c.var.form, { notice: "key-revoked", n_key: id });
  });

  app.all("*", guard, () => {
    throw new DashboardError(404, "Not found", "There is no such page in the dashboard.");
  });

  return app;
}

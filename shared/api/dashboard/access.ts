/**
 * Who may use the dashboard: admin keys only, sent as `Authorization: Bearer` (scripts) or held
 * in a signed session cookie (browsers, after /dashboard/login). Every POST also carries a CSRF
 * token bound to its session (or key), checked here before any action runs.
 */
import type { Context, MiddlewareHandler } from "hono";
import { getCookie } from "hono/cookie";
import type { SqlClient } from "../../ports";
import { type ApiKeys, type Principal, STATIC_ADMIN_KEY_ID } from "../api-keys";
import { isLiveAdminKey } from "./queries";
import { SESSION_COOKIE, type SessionSigner } from "./session";

/** Where app.ts mounts the dashboard; links, redirects and the cookie's Path use it. */
export const DASHBOARD_PATH = "/dashboard";

/** Name of the hidden form field that carries the CSRF token. */
export const CSRF_FIELD = "csrf_token";

/** The admin using the dashboard in this request. */
export interface Operator {
  principal: Principal;
  via: "bearer" | "session";
  /** What the CSRF token is bound to: "session:<id>" or "key:<key id>". */
  binding: string;
  /** This request's CSRF token, for the forms it renders. */
  csrf: string;
}

export type DashboardEnv = {
  Variables: {
    /** Nonce of this response's inline script (see the Content-Security-Policy). */
    nonce: string;
    operator: Operator;
    /** The POSTed form, read once by the CSRF check. */
    form: Record<string, string>;
  };
};

/** An error the dashboard shows as a page (the app's problem+json is for API clients). */
export class DashboardError extends Error {
  override name = "DashboardError";
  constructor(
    readonly status: 400 | 401 | 403 | 404 | 409 | 422,
    readonly title: string,
    message: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }
}

function bearerOf(c: Context): string | undefined | null {
  const header = c.req.header("authorization");
  if (header === undefined) return undefined;
  const match = /^Bearer[ ]+(\S+)\s*$/i.exec(header);
  return match?.[1] ?? null;
}

/** The login page's address, coming back to where the operator was going (GETs only). */
export function loginUrl(next?: string): string {
  const back = next === undefined ? undefined : safeReturnPath(next);
  return back && back !== DASHBOARD_PATH ? `${DASHBOARD_PATH}/login?next=${encodeURIComponent(back)}` : `${DASHBOARD_PATH}/login`;
}

/**
 * A path inside the dashboard to send the browser back to, or the overview: never another
 * origin or path (`//evil.example`, `/dashboard/../v1`, `javascript:`), so no open redirect.
 */
export function safeReturnPath(value: unknown): string {
  if (typeof value !== "string" || value.length > 2_000) return DASHBOARD_PATH;
  if (!value.startsWith(DASHBOARD_PATH) || /[\\\s]/.test(value) || value.includes("//")) return DASHBOARD_PATH;
  const url = new URL(value, "http://dashboard.invalid");
  if (url.origin !== "http://dashboard.invalid") return DASHBOARD_PATH;
  if (url.pathname !== DASHBOARD_PATH && !url.pathname.startsWith(`${DASHBOARD_PATH}/`)) return DASHBOARD_PATH;
  if (url.pathname.startsWith(`${DASHBOARD_PATH}/login`) || url.pathname.startsWith(`${DASHBOARD_PATH}/logout`)) return DASHBOARD_PATH;
  const hash = /^#[A-Za-z0-9_-]{1,64}$/.test(url.hash) ? url.hash : "";
  return `${url.pathname}${url.search}${hash}`;
}

export interface AccessDeps {
  apiKeys: ApiKeys;
  sql: SqlClient;
  signer: SessionSigner;
}

/** The session an operator's cookie holds, if it is valid, unexpired and its key still a live admin key. */
export async function sessionOperator(c: Context, deps: AccessDeps): Promise<Operator | null> {
  const session = await deps.signer.read(getCookie(c, SESSION_COOKIE));
  if (!session) return null;
  // Revoking the key ends its sessions at once. The static admin key has no row to revoke.
  if (session.keyId !== STATIC_ADMIN_KEY_ID && !(await isLiveAdminKey(deps.sql, session.keyId))) return null;
  const binding = `session:${session.id}`;
  return {
    principal: { keyId: session.keyId, tenantId: null, admin: true },
    via: "session",
    binding,
    csrf: await deps.signer.csrfToken(binding),
  };
}

/**
 * Admits admins. A Bearer header, when sent, decides alone; otherwise the session cookie.
 * Without either, a GET goes to the login page and anything else gets 401. Tenant keys get 403.
 */
export function requireOperator(deps: AccessDeps): MiddlewareHandler<DashboardEnv> {
  return async (c, next) => {
    const bearer = bearerOf(c);
    let operator: Operator | null = null;
    if (bearer === null || (bearer !== undefined && bearer.length > 512)) {
      throw new DashboardError(401, "Unauthorized", "Send the admin key as `Authorization: Bearer <key>`, or log in.", {
        "www-authenticate": `Bearer realm="penguinmails-jobs"`,
      });
    }
    if (bearer !== undefined) {
      const principal = await deps.apiKeys.verify(bearer);
      if (!principal) {
        throw new DashboardError(401, "Unauthorized", "The API key is invalid or revoked.", {
          "www-authenticate": `Bearer realm="penguinmails-jobs", error="invalid_token"`,
        });
      }
      const binding = `key:${principal.keyId}`;
      operator = { principal, via: "bearer", binding, csrf: await deps.signer.csrfToken(binding) };
    } else {
      operator = await sessionOperator(c, deps);
    }
    if (!operator) {
      if (c.req.method === "GET" || c.req.method === "HEAD") {
        const url = new URL(c.req.url);
        return c.redirect(loginUrl(`${url.pathname}${url.search}`), 303);
      }
      throw new DashboardError(401, "Unauthorized", "Your session has expired or you are not logged in. Log in again.", {
        "www-authenticate": `Bearer realm="penguinmails-jobs"`,
      });
    }
    if (!operator.principal.admin) {
      throw new DashboardError(403, "Forbidden", "The dashboard is for admin keys; a tenant key cannot open it.");
    }
    c.set("operator", operator);
    await next();
  };
}

/** Reads the POSTed form and rejects it unless it carries this operator's CSRF token. */
export function requireCsrf(signer: SessionSigner): MiddlewareHandler<DashboardEnv> {
  return async (c, next) => {
    const form = await readForm(c);
    if (!(await signer.checkCsrf(c.get("operator").binding, form[CSRF_FIELD]))) {
      throw new DashboardError(403, "Forbidden", "The form's security token is missing or stale. Reload the page and try again.");
    }
    c.set("form", form);
    await next();
  };
}

/** A urlencoded or multipart form as strings (files are dropped); anything else reads as empty. */
export async function readForm(c: Context): Promise<Record<string, string>> {
  const type = c.req.header("content-type") ?? "";
  if (!/^(application\/x-www-form-urlencoded|multipart\/form-data)/i.test(type)) return {};
  let body: Record<string, unknown>;
  try {
    body = await c.req.parseBody();
  } catch {
    throw new DashboardError(400, "Bad request", "The form could not be read.");
  }
  const form: Record<string, string> = {};
  for (const [name, value] of Object.entries(body)) if (typeof value === "string") form[name] = value;
  return form;
}

/**
 * Bearer authentication. Routes under /v1 run behind `requireKey`; each handler then reads the
 * principal and scopes every query by its tenant (admin keys: none).
 */
import type { Context, MiddlewareHandler } from "hono";
import { tenantId as tenantIdField } from "../jobs/fields";
import type { ApiKeys, Principal } from "./api-keys";
import { ApiError } from "./problem";

export type ApiEnv = { Variables: { principal: Principal } };

const challenge = (error?: string) => ({
  "www-authenticate": error ? `Bearer realm="penguinmails-jobs", error="${error}"` : `Bearer realm="penguinmails-jobs"`,
});

/** The key in `Authorization: Bearer <key>`, or undefined when the header is absent or another scheme. */
function bearerOf(c: Context): string | undefined {
  const header = c.req.header("authorization");
  const match = header ? /^Bearer[ ]+(\S+)\s*$/i.exec(header) : null;
  return match?.[1];
}

/** Resolves the caller's key or throws a 401 with a Bearer challenge (RFC 6750). */
export async function authenticate(c: Context, apiKeys: ApiKeys): Promise<Principal> {
  const bearer = bearerOf(c);
  if (bearer === undefined) {
    throw new ApiError(401, "send an API key as `Authorization: Bearer <key>`", undefined, challenge());
  }
  const principal = await apiKeys.verify(bearer);
  if (!principal) throw new ApiError(401, "the API key is invalid or revoked", undefined, challenge("invalid_token"));
  return principal;
}

export function requireKey(apiKeys: ApiKeys): MiddlewareHandler<ApiEnv> {
  return async (c, next) => {
    c.set("principal", await authenticate(c, apiKeys));
    await next();
  };
}

export function assertAdmin(principal: Principal): void {
  if (!principal.admin) throw new ApiError(403, "this operation needs an admin key");
}

/** The tenant a request acts for: the key's own, or (admin keys) the one named by ?tenant_id=. */
export function tenantOf(c: Context<ApiEnv>): string {
  const principal = c.get("principal");
  if (principal.tenantId) return principal.tenantId;
  const asked = tenantIdField.safeParse(c.req.query("tenant_id"));
  if (!asked.success) throw new ApiError(422, "an admin key must name the tenant", [{ path: "tenant_id", message: "add ?tenant_id=<tenant>" }]);
  return asked.data;
}

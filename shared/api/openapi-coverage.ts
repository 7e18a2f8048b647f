/**
 * Whether a document describes exactly the routes an app serves: every operation the app
 * registered (app.routes, middleware excluded) must be in it, and nothing else. The document is
 * generated from the routes' declarations, so a route registered without one (describeRoute) is
 * what this finds. The dashboard is left out: HTML pages for people, not the API.
 *
 * `app.all()` routes count as middleware here (as they do for the document).
 */
import { findTargetHandler } from "hono/utils/handler";
import { openApiPath } from "./openapi-paths";
import { isDeclaration } from "./openapi-route";

type Json = Record<string, any>;

const METHODS = new Set(["get", "put", "post", "patch", "delete"]);

/** Not part of the API the document describes. */
const isUndocumentedByDesign = (path: string) => path === "/dashboard" || path.startsWith("/dashboard/");

/** "GET /v1/jobs/{id}": a route in the document's spelling. */
const operationKey = (method: string, honoPath: string) => `${method.toUpperCase()} ${openApiPath(honoPath)}`;

/** The operations an app serves, sorted ("GET /v1/jobs/{id}"). */
export function servedOperations(routes: readonly { method: string; path: string }[]): string[] {
  const served = routes.filter((r) => r.method !== "ALL" && !isUndocumentedByDesign(r.path)).map((r) => operationKey(r.method, r.path));
  return [...new Set(served)].sort();
}

/** The operations a document describes, sorted. */
export function documentedOperations(document: Json): string[] {
  return Object.entries<Json>(document.paths ?? {})
    .flatMap(([path, item]) => Object.keys(item).filter((m) => METHODS.has(m)).map((m) => `${m.toUpperCase()} ${path}`))
    .sort();
}

export interface RouteCoverage {
  /** Served, but not in the document: registered without a declaration. */
  undocumented: string[];
  /** In the document, but not served. */
  unserved: string[];
}

export function routeCoverage(routes: readonly { method: string; path: string }[], document: Json): RouteCoverage {
  const served = servedOperations(routes);
  const documented = documentedOperations(document);
  const inDocument = new Set(documented);
  const inApp = new Set(served);
  return { undocumented: served.filter((r) => !inDocument.has(r)), unserved: documented.filter((r) => !inApp.has(r)) };
}

/**
 * The operations registered without a declaration, read from the routes alone (no document is
 * made): cheap enough for createApp to refuse such an app at once, on every runtime.
 */
export function undeclaredRoutes(routes: readonly { method: string; path: string; handler: unknown }[]): string[] {
  // By Hono's own spelling, converted only for the answer: this runs for every app the Worker builds.
  const declared = new Set<string>();
  for (const r of routes) if (isDeclaration(findTargetHandler(r.handler as never))) declared.add(`${r.method} ${r.path}`);
  const undeclared = routes.filter((r) => r.method !== "ALL" && !isUndocumentedByDesign(r.path) && !declared.has(`${r.method} ${r.path}`));
  return servedOperations(undeclared);
}

/**
 * Whether a document describes exactly the routes an app serves: every operation the app
 * registered (app.routes, middleware excluded) must be in it, and nothing else. The document is
 * generated from the routes' declarations, so a route registered without one (describeRoute) is
 * what this finds. The dashboard is left out: HTML pages for people, not the API.
 */
import { openApiPath } from "./openapi-paths";

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

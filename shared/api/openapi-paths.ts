/**
 * The paths of the OpenAPI document, from the declarations an app's routes carry
 * (openapi-route.ts), and the named schemas those declarations reach.
 *
 * Walks app.routes in the order they were registered. A declaration on a middleware
 * (`app.use("/v1/*", describeRoute(...), ...)`) applies to every route registered after it under
 * its path, as the middleware itself does; the route's own declaration comes last and wins.
 */
import type { Hono } from "hono";
import { findTargetHandler } from "hono/utils/handler";
import { z } from "zod";
import { declarationOf, type Parameter, type RouteDeclaration, ZodSchema } from "./openapi-route";

type Json = Record<string, unknown>;

const METHODS = new Set(["GET", "PUT", "POST", "PATCH", "DELETE"]);

/** "/v1/jobs/:id" -> "/v1/jobs/{id}" (a parameter's own pattern, `:id{[0-9]+}`, dropped). */
export const openApiPath = (honoPath: string) => honoPath.replace(/:(\w+)(\{[^}]*\})?\??/g, "{$1}");

/** Whether a middleware's path ("/*", "/v1/*", "/healthz") covers a route's. */
function covers(pattern: string, path: string): boolean {
  if (pattern === "/*" || pattern === "*") return true;
  if (pattern.endsWith("/*")) return path.startsWith(pattern.slice(0, -1)) || path === pattern.slice(0, -2);
  return pattern === path;
}

/** Later declarations win key by key; responses and parameters are merged, not replaced. */
function merge(declarations: RouteDeclaration[]): RouteDeclaration {
  const merged: RouteDeclaration = {};
  for (const d of declarations) {
    const { responses, parameters, ...rest } = d;
    Object.assign(merged, rest);
    if (responses) merged.responses = { ...merged.responses, ...responses };
    if (parameters) {
      const byKey = new Map<string, Parameter>((merged.parameters ?? []).map((p) => [`${p.in} ${p.name}`, p]));
      for (const p of parameters) byKey.set(`${p.in} ${p.name}`, p);
      merged.parameters = [...byKey.values()];
    }
  }
  return merged;
}

/**
 * Turns the zod schemas of declarations into JSON Schema, and collects the parts that carry an
 * id (`.meta({ id })`) as components, each referred to by `$ref`. An id must mean one schema:
 * the same id with two shapes (a request's input side, a response's output side) is an error.
 */
export class SchemaComponents {
  readonly schemas: Record<string, Json> = {};

  resolve<T>(value: T): T {
    if (value instanceof ZodSchema) return this.convert(value) as T;
    if (Array.isArray(value)) return value.map((v) => this.resolve(v)) as T;
    if (value && typeof value === "object") {
      return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, this.resolve(v)])) as T;
    }
    return value;
  }

  private convert({ schema, io }: ZodSchema): Json {
    const { $schema: _s, $defs, ...root } = z.toJSONSchema(schema, { io, unrepresentable: "any" }) as Json;
    for (const [id, part] of Object.entries((($defs ?? {}) as Record<string, Json>))) {
      const converted = toComponentRefs(part) as Json;
      const known = this.schemas[id];
      if (known && JSON.stringify(known) !== JSON.stringify(converted)) {
        throw new Error(`the schema component ${id} has two shapes (a request's and a response's?); give one of them another id`);
      }
      this.schemas[id] = converted;
    }
    return toComponentRefs(root) as Json;
  }
}

/** zod refers to named parts as "#/$defs/Job"; in the document they are components. */
function toComponentRefs(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(toComponentRefs);
  if (value && typeof value === "object") {
    return Object.fromEntries(
      Object.entries(value).map(([k, v]) => [
        k,
        k === "$ref" && typeof v === "string" ? v.replace(/^#\/\$defs\//, "#/components/schemas/") : toComponentRefs(v),
      ]),
    );
  }
  return value;
}

/** The operation in the document's order of keys, its path parameters all listed. */
function operation(path: string, d: RouteDeclaration): Json {
  const parameters = [...(d.parameters ?? [])];
  for (const [, name] of path.matchAll(/\{(\w+)\}/g)) {
    if (!parameters.some((p) => p.in === "path" && p.name === name)) parameters.push({ name: name!, in: "path", required: true, schema: { type: "string" } });
  }
  const { operationId, tags, summary, description, security, requestBody, responses, ...rest } = d;
  return {
    operationId,
    tags,
    summary,
    description,
    security,
    ...(parameters.length ? { parameters } : {}),
    requestBody,
    responses: responses ?? {},
    ...rest,
  };
}

/** The document's paths: one operation a declared route of the app. */
export function declaredPaths(app: Hono<any>, components: SchemaComponents): Record<string, Record<string, Json>> {
  const scopes: { pattern: string; declaration: RouteDeclaration }[] = [];
  const paths: Record<string, Record<string, Json>> = {};
  for (const route of app.routes) {
    const declaration = declarationOf(findTargetHandler(route.handler));
    if (!declaration) continue;
    if (route.method === "ALL") {
      scopes.push({ pattern: route.path, declaration });
      continue;
    }
    if (!METHODS.has(route.method)) continue;
    const inScope = scopes.filter((s) => covers(s.pattern, route.path)).map((s) => s.declaration);
    const path = openApiPath(route.path);
    (paths[path] ??= {})[route.method.toLowerCase()] = components.resolve(operation(path, merge([...inScope, declaration])));
  }
  return paths;
}

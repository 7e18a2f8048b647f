/**
 * A route's OpenAPI declaration, and the words it is written in. Each route declares itself
 * next to its handler, `app.get(path, describeRoute({...}), handler)`, and shared/api/openapi.ts
 * generates the document from the routes the app actually registered (app.routes), so a route
 * without a declaration is missing from the document, and the contract test says so
 * (openapi-coverage.ts). A declaration on `app.use(path, ...)` is merged into every operation
 * under that path: the problems a middleware can answer with, declared where it runs.
 *
 * Schemas are the zod schemas the routes parse with (their input side: a field with a default is
 * optional) and answer by (their output side). A response schema with `.meta({ id })` becomes a
 * named component (`Job`, `Campaign`); the others are inlined where they are used.
 *
 * The shape is hono-openapi's (describeRoute, walking app.routes), written here because that
 * package cannot go into the Worker: its schema adapters import optional packages (effect, sury,
 * @valibot/to-json-schema, zod-to-json-schema) that the bundle leaves unresolved, and workerd
 * refuses such a bundle. This needs nothing but zod's own z.toJSONSchema.
 */
import type { MiddlewareHandler } from "hono";
import { z } from "zod";
import { PROBLEM_CONTENT_TYPE, problemSchema } from "./problem";

type Json = Record<string, unknown>;

/** A zod schema in a declaration, turned into JSON Schema (and its named parts into components) when the document is made. */
export class ZodSchema {
  constructor(
    readonly schema: z.ZodType,
    readonly io: "input" | "output",
  ) {}
}

type Schema = z.ZodType | Json;
type SchemaObject = Json | ZodSchema;
type Headers = Record<string, { schema: Json; description?: string; required?: boolean }>;
export type Parameter = { name: string; in: "path" | "query" | "header"; required: boolean; description?: string; schema: Json };
type Content = Record<string, { schema: SchemaObject }>;
export type Response = { $ref: string } | { description: string; headers?: Headers; content?: Content };

/** One operation, as a route (or a middleware, for every route under it) declares it. */
export interface RouteDeclaration {
  operationId?: string;
  tags?: string[];
  summary?: string;
  description?: string;
  security?: Record<string, string[]>[];
  parameters?: readonly Parameter[];
  requestBody?: { required: boolean; content: Content };
  responses?: Record<string, Response>;
}

const DECLARATION = Symbol("openapi declaration");
type Declaration = RouteDeclaration | (() => RouteDeclaration);
type Declared = MiddlewareHandler & { [DECLARATION]: Declaration };

/**
 * The declaration of the route it is registered on: a middleware that does nothing but carry it.
 * Routes pass a function, called only when the document is made: the Worker builds its app for
 * every request, and building every declaration each time made createApp 3 times slower
 * (0.3-0.4 ms to 1-1.2 ms on Node, measured side by side).
 */
export function describeRoute(declaration: Declaration): MiddlewareHandler {
  const middleware: MiddlewareHandler = (_c, next) => next();
  return Object.assign(middleware, { [DECLARATION]: declaration });
}

/** Whether a handler is a declaration (without making it). */
export const isDeclaration = (handler: unknown): boolean => typeof handler === "function" && DECLARATION in handler;

/** The declaration a handler carries, if it is one. */
export function declarationOf(handler: unknown): RouteDeclaration | undefined {
  if (!isDeclaration(handler)) return undefined;
  const declaration = (handler as Declared)[DECLARATION];
  return typeof declaration === "function" ? declaration() : declaration;
}

const isZod = (schema: Schema): schema is z.ZodType => schema instanceof z.ZodType;

/** A named component of the document (the catalog's enqueue schemas, or a schema with an id). */
export const ref = (name: string) => ({ $ref: `#/components/schemas/${name}` });

/** What a route answers with: a zod schema's output side, or a JSON Schema as given. */
const answer = (schema: Schema): SchemaObject => (isZod(schema) ? new ZodSchema(schema, "output") : schema);

/** A JSON answer. */
export const json = (schema: Schema, description: string, headers?: Headers): Response => ({
  description,
  ...(headers ? { headers } : {}),
  content: { "application/json": { schema: answer(schema) } },
});

/** An answer that is not JSON: a CSV, an HTML page, an event stream, the metrics' text. */
export const text = (mediaType: string, description: string, headers?: Headers): Response => ({
  description,
  ...(headers ? { headers } : {}),
  content: { [mediaType]: { schema: { type: "string" } } },
});

/** A JSON request body, by the schema the route parses it with. */
export const jsonBody = (schema: Schema, options: { required?: boolean } = {}): NonNullable<RouteDeclaration["requestBody"]> => ({
  required: options.required ?? true,
  content: { "application/json": { schema: isZod(schema) ? new ZodSchema(schema, "input") : schema } },
});

const inputSchema = (schema: z.ZodType): Json => {
  const { $schema: _s, ...rest } = z.toJSONSchema(schema, { io: "input", unrepresentable: "any" }) as Json;
  return rest;
};

/**
 * Converted once a schema: the Worker builds its app for every request, and a z.toJSONSchema a
 * route each time made createApp 4.8 ms instead of 1 ms (measured on Node).
 */
const parametersOf = new WeakMap<z.ZodType, readonly Parameter[]>();

/** The query parameters of a strict query schema, one a field, with their own descriptions. */
export function queryParameters(schema: z.ZodType): readonly Parameter[] {
  let parameters = parametersOf.get(schema);
  if (!parameters) parametersOf.set(schema, (parameters = toParameters(schema)));
  return parameters;
}

function toParameters(schema: z.ZodType): Parameter[] {
  const s = inputSchema(schema) as { properties?: Record<string, Json>; required?: string[] };
  return Object.entries(s.properties ?? {}).map(([name, { description, ...rest }]) => ({
    name,
    in: "query",
    required: (s.required ?? []).includes(name),
    ...(typeof description === "string" ? { description } : {}),
    schema: rest,
  }));
}

/** A path parameter; `schema` is the rule the route checks it by, where it has one. */
export const pathParam = (name: string, description: string, schema: Json = { type: "string" }): Parameter => ({
  name,
  in: "path",
  required: true,
  description,
  schema,
});

/** A job's, an import's or an export's id: a bigint (the route answers 404 for anything else). */
export const bigintIdParam = (description: string) => pathParam("id", description, { type: "string", pattern: "^\\d{1,19}$" });

/** The problem responses, by component name: [status, description]. */
export const PROBLEMS = {
  BadRequest: [400, "Malformed request: a body that is not JSON or not UTF-8, JSON nested too deep, or a URL or header that is not valid text"],
  Unauthorized: [401, "Missing, invalid or revoked API key"],
  Forbidden: [403, "The key may not do this (another tenant, an admin-only operation)"],
  NotFound: [404, "No such resource for this key (another tenant's is not found either)"],
  Conflict: [409, "The resource is not in a state that allows this (the detail says what to do)"],
  Gone: [410, "The link has expired, or what it named is gone"],
  PayloadTooLarge: [413, "The body exceeds the size limit"],
  UnsupportedMediaType: [415, "The body is not application/json"],
  ValidationFailed: [422, "The body, query, path or a header failed its rules; `errors` lists every offending path"],
  TooManyRequests: [429, "Too many of these lately; try again after Retry-After seconds"],
  Unavailable: [503, "The database is unreachable; try again shortly (Retry-After)"],
} as const;
export type ProblemName = keyof typeof PROBLEMS;

/** The problems an operation can answer with, as references to components.responses. */
export const problems = (...names: ProblemName[]): Record<string, Response> =>
  Object.fromEntries(names.map((n) => [PROBLEMS[n][0], { $ref: `#/components/responses/${n}` }]));

const PROBLEM_HEADERS: Partial<Record<ProblemName, Headers>> = {
  Unauthorized: { "WWW-Authenticate": { schema: { type: "string" }, description: "Bearer challenge" } },
  Unavailable: { "Retry-After": { schema: { type: "string" }, description: "Seconds to wait before trying again" } },
  TooManyRequests: { "Retry-After": { schema: { type: "string" }, description: "Seconds to wait before trying again" } },
};

/** components.responses: one problem+json response a status. */
export function problemResponses(): Record<string, Response> {
  return Object.fromEntries(
    (Object.entries(PROBLEMS) as [ProblemName, (typeof PROBLEMS)[ProblemName]][]).map(([name, [, description]]) => [
      name,
      {
        description,
        ...(PROBLEM_HEADERS[name] ? { headers: PROBLEM_HEADERS[name] } : {}),
        content: { [PROBLEM_CONTENT_TYPE]: { schema: answer(problemSchema) } },
      },
    ]),
  );
}

/** The security requirements an operation declares. */
export const security: Record<"bearer" | "none", Record<string, string[]>[]> = {
  bearer: [{ bearerAuth: [] }],
  /** No API key: the path's signed token is the authority, or the caller is a probe. */
  none: [],
};

/** A request header the route reads. */
export const headerParam = (name: string, description: string, schema: Json): Parameter => ({ name, in: "header", required: false, description, schema });

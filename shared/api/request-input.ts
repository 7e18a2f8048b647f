/**
 * A request's parts through zod, with the same problems everywhere: the body and the query are
 * checked by strict schemas (an unknown field is a 422 naming it, never silently ignored: a
 * misspelt `tenantId` once paused a type for every tenant), path parameters by the id rules (a
 * value no row can have is simply not found).
 */
import type { Context } from "hono";
import type { z } from "zod";
import { readJson, readOptionalJson } from "./body";
import { ApiError, zodFieldErrors } from "./problem";

/** The JSON body parsed by a (strict) schema, or a 422 naming every bad field. */
export async function parseBody<S extends z.ZodType>(c: Context, schema: S, opts: { optional?: boolean } = {}): Promise<z.infer<S>> {
  const raw = opts.optional ? ((await readOptionalJson(c)) ?? {}) : await readJson(c);
  const parsed = schema.safeParse(raw);
  if (!parsed.success) throw new ApiError(422, "invalid request body", zodFieldErrors(parsed.error));
  return parsed.data;
}

/**
 * The query string parsed by a strict schema; fields are named bare (`cursor`), as in the
 * route's documentation. A repeated parameter counts once (the first), as c.req.query() reads it.
 */
export function parseQuery<S extends z.ZodType>(c: Context, schema: S): z.infer<S> {
  const parsed = schema.safeParse(c.req.query());
  if (!parsed.success) throw new ApiError(422, "invalid query", zodFieldErrors(parsed.error));
  return parsed.data;
}

/** One path parameter by its id rule: 404 with `notFound` when no row could have it. */
export function parseParam<S extends z.ZodType<string>>(c: Context, name: string, schema: S, notFound: (raw: string) => string): z.infer<S> {
  const raw = c.req.param(name) ?? "";
  const parsed = schema.safeParse(raw);
  if (!parsed.success) throw new ApiError(404, notFound(raw.slice(0, 128)));
  return parsed.data;
}

/**
 * RFC 9457 problem details: every error the API returns has this shape and the
 * `application/problem+json` media type, so clients handle failures in one place.
 */
import { z } from "zod";

export const PROBLEM_CONTENT_TYPE = "application/problem+json";

/** Problem types are URNs: stable identifiers clients can switch on, not links that must resolve. */
const TYPE_PREFIX = "urn:penguinmails:problem:";

/** One offending field. `path` is dotted, array indexes as numbers: `jobs.3.payload.recipient`. */
export interface FieldError {
  path: string;
  message: string;
}

export interface Problem {
  type: string;
  title: string;
  status: number;
  detail: string;
  errors?: FieldError[];
}

export const problemSchema = z.object({
  type: z.string().describe("A stable URN naming the kind of problem"),
  title: z.string(),
  status: z.number().int(),
  detail: z.string(),
  errors: z.array(z.object({ path: z.string(), message: z.string() })).optional(),
}).meta({ id: "Problem", description: "RFC 9457 problem details" });

/** The kinds of problem this API reports, by status. */
const KINDS: Record<number, { slug: string; title: string }> = {
  400: { slug: "malformed-request", title: "Malformed request" },
  401: { slug: "unauthorized", title: "Unauthorized" },
  403: { slug: "forbidden", title: "Forbidden" },
  404: { slug: "not-found", title: "Not found" },
  405: { slug: "method-not-allowed", title: "Method not allowed" },
  409: { slug: "conflict", title: "Conflict" },
  413: { slug: "payload-too-large", title: "Payload too large" },
  415: { slug: "unsupported-media-type", title: "Unsupported media type" },
  422: { slug: "validation-failed", title: "Validation failed" },
  429: { slug: "too-many-requests", title: "Too many requests" },
  500: { slug: "internal-error", title: "Internal server error" },
  503: { slug: "unavailable", title: "Service unavailable" },
};

/** An error a route throws to answer with a problem; the app's error handler renders it. */
export class ApiError extends Error {
  override name = "ApiError";
  constructor(
    readonly status: number,
    readonly detail: string,
    readonly errors?: FieldError[],
    readonly headers?: Record<string, string>,
  ) {
    super(detail);
  }
}

export function problemOf(status: number, detail: string, errors?: FieldError[]): Problem {
  const kind = KINDS[status] ?? { slug: `http-${status}`, title: `HTTP ${status}` };
  const body: Problem = { type: `${TYPE_PREFIX}${kind.slug}`, title: kind.title, status, detail };
  if (errors && errors.length > 0) body.errors = errors;
  return body;
}

export function problemResponse(
  status: number,
  detail: string,
  errors?: FieldError[],
  headers: Record<string, string> = {},
): Response {
  return new Response(JSON.stringify(problemOf(status, detail, errors)), {
    status,
    headers: { ...headers, "content-type": PROBLEM_CONTENT_TYPE },
});
}

/** ["jobs", 3, "payload", "recipient"] -> "jobs.3.payload.recipient". */
export const joinPath = (path: readonly PropertyKey[]): string =>
  path.map((p) => (typeof p === "symbol" ? (p.description ?? "") : String(p))).join(".");

/**
 * zod issues as field errors under a prefix. An unknown-keys issue names the container, so it
 * is split into one error per key: the client learns exactly which field to remove.
 */
export function zodFieldErrors(error: z.ZodError, prefix: readonly (string | number)[] = []): FieldError[] {
  return error.issues.flatMap((issue) => {
    const at = [...prefix, ...issue.path];
    if (issue.code === "unrecognized_keys") {
      return issue.keys.map((key) => ({ path: joinPath([...at, key]), message: "unknown field" }));
    }
    return [{ path: joinPath(at), message: issue.message }];
});
}

/**
 * The one text rule of the API: every string it takes (body values and keys, path segments,
 * query names and values, the Idempotency-Key header) is well-formed Unicode without NUL, and
 * bounded. Postgres cannot store NUL in text or jsonb (22021, 22P05) and rejects a lone
 * surrogate in jsonb (22P02), while node-postgres silently turns one into U+FFFD in text: both
 * made client mistakes into 500s or into rows that no longer match what the client sent (an
 * idempotency key stored as "k\uFFFD" never matched "k\uD800" again). Checked once, where the
 * input enters, so no route and no schema has to remember.
 */
import { ApiError, type FieldError, joinPath } from "./problem";

/** How deep a JSON body may nest. Our own payloads need under 10; 5,000 overflowed the stack further in. */
export const MAX_JSON_DEPTH = 64;
/** A query value's limit: the longest legitimate one is an import's ?mapping= JSON. */
export const MAX_QUERY_VALUE_LENGTH = 8_192;
/** A path segment's limit: ids are at most 128, signed tokens a few hundred characters. */
export const MAX_PATH_SEGMENT_LENGTH = 2_048;

// A high surrogate not followed by a low one, or a low one not preceded by a high one.
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

/** Why this string breaks the rule, or null when it keeps it. */
export function textProblem(s: string, maxLength = Infinity): string | null {
  if (s.includes("\u0000")) return "contains a NUL character (U+0000), which cannot be stored";
  if (LONE_SURROGATE.test(s)) return "contains a lone UTF-16 surrogate: not well-formed Unicode";
  if (s.length > maxLength) return `longer than ${maxLength} characters`;
  return null;
}

/**
 * Walks a parsed JSON value once, without recursion (a recursive walk is what a deep document
 * overflows), and reports the first string or key breaking the text rule and the first place
 * nested deeper than `maxDepth`, with their paths.
 */
export function jsonTextErrors(value: unknown, at: readonly (string | number)[] = [], maxDepth = MAX_JSON_DEPTH): { errors: FieldError[]; tooDeep: boolean } {
  const errors: FieldError[] = [];
  const stack: { value: unknown; path: (string | number)[] }[] = [{ value, path: [...at] }];
  while (stack.length > 0 && errors.length < 20) {
    const { value: v, path } = stack.pop()!;
    if (typeof v === "string") {
      const problem = textProblem(v);
      if (problem) errors.push({ path: joinPath(path), message: problem });
      continue;
    }
    if (v === null || typeof v !== "object") continue;
    if (path.length - at.length >= maxDepth) {
      return { errors: [{ path: joinPath(path), message: `nested deeper than ${maxDepth} levels` }], tooDeep: true };
    }
    if (Array.isArray(v)) {
      for (let i = v.length - 1; i >= 0; i--) stack.push({ value: v[i], path: [...path, i] });
      continue;
    }
    const keys = Object.keys(v);
    for (let i = keys.length - 1; i >= 0; i--) {
      const key = keys[i]!;
      const problem = textProblem(key);
      if (problem) errors.push({ path: joinPath([...path, key]), message: `field name ${problem}` });
      else stack.push({ value: (v as Record<string, unknown>)[key], path: [...path, key] });
    }
  }
  return { errors, tooDeep: false };
}

/** Throws the problem for a parsed JSON value breaking the rule: 400 when too deep, 422 for bad text. */
export function assertJsonText(value: unknown, at: readonly (string | number)[] = []): void {
  const { errors, tooDeep } = jsonTextErrors(value, at);
  if (tooDeep) throw new ApiError(400, `the JSON document nests deeper than ${MAX_JSON_DEPTH} levels`, errors);
  if (errors.length > 0) throw new ApiError(422, "the request holds text that cannot be stored", errors);
}

/** decodeURIComponent that fails instead of guessing: invalid percent-encoding or UTF-8 is a 400. */
function strictDecode(s: string, field: string, plus: boolean): string {
  try {
    return decodeURIComponent(plus ? s.replace(/\+/g, " ") : s);
  } catch {
    throw new ApiError(400, "the URL is not valid percent-encoded UTF-8", [{ path: field, message: "invalid percent-encoding or UTF-8" }]);
  }
}

/**
 * Checks the decoded path and every query name and value of a URL against the rule. Decoded
 * here rather than through URLSearchParams, which would replace invalid UTF-8 with U+FFFD and
 * let it through. Query fields are named as the routes' query schemas name them (`cursor`).
 */
export function assertUrlText(url: string): void {
  const parsed = new URL(url);
  for (const segment of parsed.pathname.split("/")) {
    const problem = textProblem(strictDecode(segment, "path", false), MAX_PATH_SEGMENT_LENGTH);
    if (problem) throw new ApiError(422, "the URL path holds text that cannot be stored", [{ path: "path", message: `a segment ${problem}` }]);
  }
  const search = parsed.search.slice(1);
  if (search === "") return;
  for (const pair of search.split("&")) {
    const eq = pair.indexOf("=");
    const rawName = eq < 0 ? pair : pair.slice(0, eq);
    const name = strictDecode(rawName, "query", true);
    const nameProblem = textProblem(name, 128);
    if (nameProblem) throw new ApiError(422, "invalid query", [{ path: "query", message: `a parameter name ${nameProblem}` }]);
    const value = eq < 0 ? "" : strictDecode(pair.slice(eq + 1), name, true);
    const problem = textProblem(value, MAX_QUERY_VALUE_LENGTH);
    if (problem) throw new ApiError(422, "invalid query", [{ path: name, message: problem }]);
  }
}

/** Headers whose values reach storage. Header bytes arrive as Latin-1, so only NUL and length apply in practice. */
const STORED_HEADERS = ["idempotency-key"];

export function assertHeaderText(headers: Headers): void {
  for (const name of STORED_HEADERS) {
    const value = headers.get(name);
    const problem = value === null ? null : textProblem(value, 255);
    if (problem) throw new ApiError(422, `invalid ${name} header`, [{ path: `headers.${name}`, message: problem }]);
  }
}

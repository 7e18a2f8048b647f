/**
 * Request bodies: size limits and JSON parsing, answered as problems rather than hono's plain
 * text, so a client mistake is never a 500 and always says what was wrong.
 */
import type { Context, MiddlewareHandler } from "hono";
import { bodyLimit } from "hono/body-limit";
import { ApiError, problemResponse } from "./problem";
import { assertJsonText } from "./text-rule";

export const DEFAULT_BODY_LIMIT_BYTES = 1024 * 1024;
/** Cloudflare accepts request bodies up to 100 MB on most plans: the same default on both runtimes. */
export const DEFAULT_UPLOAD_LIMIT_BYTES = 100 * 1024 * 1024;

/** A CSV upload to the imports API, which streams to storage instead of being read into memory. */
export const isUpload = (c: Context): boolean =>
  c.req.method === "POST" && c.req.path === "/v1/imports" && c.req.header("content-type")?.split(";")[0]?.trim().toLowerCase() === "text/csv";

/**
 * Rejects bodies over the limit with 413: by Content-Length before reading, and by counting a
 * streamed (chunked) body as it arrives, so neither form makes us buffer more than the limit.
 */
export function limitBody(maxBytes: number): MiddlewareHandler {
  return bodyLimit({
    maxSize: maxBytes,
    onError: () => problemResponse(413, `the request body exceeds the limit of ${maxBytes} bytes`),
  });
}

/** application/json, or a structured-syntax `+json` type, with any parameters (charset). */
function isJson(contentType: string | undefined): boolean {
  const mediaType = contentType?.split(";")[0]?.trim().toLowerCase() ?? "";
  return mediaType === "application/json" || /^application\/[a-z0-9.+-]+\+json$/.test(mediaType);
}

/** Strict: invalid UTF-8 is refused, never stored as U+FFFD as `Request.text()` would. */
const utf8 = new TextDecoder("utf-8", { fatal: true });

/** The body as text: 400 when it is not valid UTF-8. */
export async function readText(c: Context): Promise<string> {
  const bytes = await c.req.arrayBuffer();
  try {
    return utf8.decode(bytes);
  } catch {
    throw new ApiError(400, "the request body is not valid UTF-8");
  }
}

/**
 * JSON text to a value that keeps the text rule (no NUL, no lone surrogate, nested at most
 * MAX_JSON_DEPTH): 400 when it does not parse or nests too deep, 422 naming the bad string.
 */
export function parseJsonText(text: string): unknown {
  let value: unknown;
  try {
    value = JSON.parse(text) as unknown;
  } catch (err) {
    const reason = err instanceof Error ? err.message : "syntax error";
    throw new ApiError(400, `the request body is not valid JSON: ${reason}`);
  }
  assertJsonText(value);
  return value;
}

/** Reads a JSON body: 415 unless the Content-Type is JSON, 400 when it does not parse or is not UTF-8. */
export async function readJson(c: Context): Promise<unknown> {
  if (!isJson(c.req.header("content-type"))) {
    throw new ApiError(415, "send the body as JSON with `Content-Type: application/json`");
  }
  const text = await readText(c);
  if (text.trim() === "") throw new ApiError(400, "the request body is empty; expected a JSON document");
  return parseJsonText(text);
}

/** A body that may be left out: undefined when empty, else read as readJson does. */
export async function readOptionalJson(c: Context): Promise<unknown> {
  const text = await readText(c);
  if (text.trim() === "") return undefined;
  if (!isJson(c.req.header("content-type"))) {
    throw new ApiError(415, "send the body as JSON with `Content-Type: application/json`");
  }
  return parseJsonText(text);
}

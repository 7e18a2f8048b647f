/**
 * Request bodies: size limits and JSON parsing, answered as problems rather than hono's plain
 * text, so a client mistake is never a 500 and always says what was wrong.
 */
import type { Context, MiddlewareHandler } from "hono";
import { bodyLimit } from "hono/body-limit";
import { ApiError, problemResponse } from "./problem";

export const DEFAULT_BODY_LIMIT_BYTES = 1024 * 1024;

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

/** Reads a JSON body: 415 unless the Content-Type is JSON, 400 when it does not parse. */
export async function readJson(c: Context): Promise<unknown> {
  if (!isJson(c.req.header("content-type"))) {
    throw new ApiError(415, "send the body as JSON with `Content-Type: application/json`");
  }
  const text = await c.req.text();
  if (text.trim() === "") throw new ApiError(400, "the request body is empty; expected a JSON document");
  try {
    return JSON.parse(text) as unknown;
  } catch (err) {
    const reason = err instanceof Error ? err.message : "syntax error";
    throw new ApiError(400, `the request body is not valid JSON: ${reason}`);
  }
}

/**
 * A local HTTP server speaking the part of Resend's API the mailer uses, for tests and the
 * benchmark (Resend cannot be reached from here, and a real account would send real mail):
 *
 *   POST /emails         one email           -> 200 {"id": "<uuid>"}
 *   POST /emails/batch   up to 100 emails    -> 200 {"data": [{"id": ...}, ...]}
 *
 * Like Resend: `Authorization: Bearer <key>` (401 missing_api_key without one, 403
 * invalid_api_key for a wrong one, as Resend answers), validation errors as
 * `{ statusCode, message, name }` (422 missing_required_field, invalid_from_address,
 * validation_error), `Idempotency-Key` honoured (same key and body: the first response again
 * and no second delivery; same key, other body: 409 invalid_idempotent_request), batches strict
 * by default and `x-batch-validation: permissive` supported.
 *
 * For tests: `inject()` faults at runtime (every nth request a 429 or 500, or a queue of forced
 * responses, with delays or dropped connections), `delivered()` lists every accepted email with
 * its headers and idempotency key, `reset()` forgets everything.
 *
 * The hot path is one JSON.parse, a few regex checks and an array push, so it takes thousands of
 * emails a second for the benchmark.
 *
 *   npx tsx tools/resend-mock-server.ts [--port 8792] [--key re_test_key]
 */
import { randomUUID } from "node:crypto";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { Socket } from "node:net";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";

export interface ResendMockOptions {
  /** The key clients must send as `Authorization: Bearer <key>`. Defaults to "re_test_key". */
  apiKey?: string;
  /** 0 (the default) picks a free port. */
  port?: number;
  host?: string;
}

/** Periodic faults; each inject() of this form replaces the previous one and restarts the count. */
export interface ResendMockFaults {
  /** Every nth authenticated request answers 429 rate_limit_exceeded. */
  failEvery429?: number;
  /** Every nth authenticated request answers 500 internal_server_error. */
  failEvery500?: number;
  /** Retry-After (and ratelimit-reset) on the injected 429s; defaults to 1. */
  retryAfterSeconds?: number;
  /** Delay before answering every request (a slow provider). */
  latencyMs?: number;
}

/** One forced answer to the next request, whatever it is. A number is `{ status }`. */
export interface ForcedResponse {
  /** Answer with this status and Resend's error body for it; omitted: handle the request normally (after delayMs). */
  status?: number;
  /** For 429s: Retry-After and ratelimit-reset seconds (defaults to 1). */
  retryAfterSeconds?: number;
  /** Extra response headers, e.g. only `ratelimit-reset`, or none at all. */
  headers?: Record<string, string>;
  /** Replaces the default error body. */
  body?: unknown;
  /** Wait this long before answering (a timeout on the client side). */
  delayMs?: number;
  /** Destroy the connection instead of answering (a network error on the client side). */
  drop?: boolean;
}

export interface DeliveredEmail {
  id: string;
  from: string;
  to: string[];
  subject: string;
  html?: string;
  text?: string;
  /** The email's headers (the `headers` field), e.g. List-Unsubscribe. */
  headers: Record<string, string>;
  tags: { name: string; value: string }[];
  /** The request's Idempotency-Key, if it had one. */
  idempotencyKey?: string;
  /** Whether it came through POST /emails/batch. */
  batch: boolean;
}

export interface ResendMock {
  /** http://host:port: the mailer's baseUrl. */
  url: string;
  port: number;
  apiKey: string;
  /** Every email actually accepted, in order. */
  delivered(): DeliveredEmail[];
  /** Requests received on the two endpoints (faulted, refused and replayed ones too). */
  requests(): number;
  inject(faults: ResendMockFaults | readonly (number | ForcedResponse)[]): void;
  /** Forgets deliveries, idempotency records, counters and faults. */
  reset(): void;
  close(): Promise<void>;
}

interface ApiError {
  statusCode: number;
  name: string;
  message: string;
}

/** A response to send: kept whole for idempotent replays. */
interface Answer {
  status: number;
  body: string;
  headers?: Record<string, string>;
}

/** The email-address forms Resend accepts: `a@b.c` or `Name <a@b.c>`. */
const ADDRESS = /^[^\s@<>",;]+@[^\s@<>",;]+\.[^\s@<>",;]+$/;
const NAMED_ADDRESS = /^[^<>]*<\s*([^<>\s]+)\s*>$/;
const TAG = /^[A-Za-z0-9_-]{1,256}$/;
const ADDRESS_FORMAT = "The email address needs to follow the `email@example.com` or `Name <email@example.com>` format.";
const MAX_RECIPIENTS = 50;
const MAX_BATCH = 100;
/** Resend caps a request at 40 MB (attachments included). */
const MAX_BODY_BYTES = 40 * 1024 * 1024;

const DEFAULT_ERRORS: Record<number, { name: string; message: string }> = {
  400: { name: "validation_error", message: "We found an error with one or more fields in the request." },
  401: { name: "missing_api_key", message: "Missing API key in the authorization header." },
  403: { name: "invalid_api_key", message: "API key is invalid." },
  404: { name: "not_found", message: "The requested endpoint does not exist." },
  405: { name: "method_not_allowed", message: "Method is not allowed for the requested path." },
  409: { name: "concurrent_idempotent_requests", message: "Same idempotency key used while original request is still in progress." },
  422: { name: "validation_error", message: "We found an error with one or more fields in the request." },
  429: { name: "rate_limit_exceeded", message: "Too many requests. You can only make 2 requests per second." },
  500: { name: "internal_server_error", message: "An unexpected error occurred." },
};

function isAddress(value: unknown): boolean {
  if (typeof value !== "string") return false;
  const named = NAMED_ADDRESS.exec(value);
  return ADDRESS.test(named ? named[1]! : value.trim());
}

function err(statusCode: number, name: string, message: string): ApiError {
  return { statusCode, name, message };
}

/** Checks one email like Resend does; returns the email to deliver or the error to answer. */
function validate(input: unknown): { email: Omit<DeliveredEmail, "id" | "idempotencyKey" | "batch"> } | { error: ApiError } {
  if (typeof input !== "object" || input === null || Array.isArray(input)) {
    return { error: err(422, "validation_error", "The email must be a JSON object.") };
  }
  const e = input as Record<string, unknown>;
  const hasTemplate = typeof e.template === "object" && e.template !== null;
  if (!hasTemplate && (e.from === undefined || e.from === null || e.from === "")) {
    return { error: err(422, "missing_required_field", "Missing `from` field.") };
  }
  if (e.to === undefined || e.to === null || e.to === "" || (Array.isArray(e.to) && e.to.length === 0)) {
    return { error: err(422, "missing_required_field", "Missing `to` field.") };
  }
  if (!hasTemplate && (e.subject === undefined || e.subject === null || e.subject === "")) {
    return { error: err(422, "missing_required_field", "Missing `subject` field.") };
  }
  if (e.from !== undefined && !isAddress(e.from)) {
    return { error: err(422, "invalid_from_address", `Invalid \`from\` field. ${ADDRESS_FORMAT}`) };
  }
  const to = Array.isArray(e.to) ? e.to : [e.to];
  if (to.length > MAX_RECIPIENTS) {
    return { error: err(422, "validation_error", `Too many recipients in \`to\` field. The maximum is ${MAX_RECIPIENTS}.`) };
  }
  if (!to.every(isAddress)) return { error: err(422, "validation_error", `Invalid \`to\` field. ${ADDRESS_FORMAT}`) };
  for (const field of ["cc", "bcc", "reply_to"] as const) {
    const v = e[field];
    if (v === undefined || v === null) continue;
    if (!(Array.isArray(v) ? v : [v]).every(isAddress)) {
      return { error: err(422, "validation_error", `Invalid \`${field}\` field. ${ADDRESS_FORMAT}`) };
    }
  }
  if (!hasTemplate && typeof e.html !== "string" && typeof e.text !== "string") {
    return { error: err(422, "validation_error", "Missing `html` or `text` field.") };
  }
  if (e.subject !== undefined && typeof e.subject !== "string") {
    return { error: err(422, "validation_error", "The `subject` field must be a string.") };
  }
  let headers: Record<string, string> = {};
  if (e.headers !== undefined && e.headers !== null) {
    if (typeof e.headers !== "object" || Array.isArray(e.headers) || !Object.values(e.headers).every((v) => typeof v === "string")) {
      return { error: err(422, "validation_error", "The `headers` field must be an object of strings.") };
    }
    headers = e.headers as Record<string, string>;
  }
  let tags: { name: string; value: string }[] = [];
  if (e.tags !== undefined && e.tags !== null) {
    const ok =
      Array.isArray(e.tags) &&
      e.tags.every(
        (t) => typeof t === "object" && t !== null && TAG.test(String((t as { name?: unknown }).name)) && TAG.test(String((t as { value?: unknown }).value)),
      );
    if (!ok) {
      return {
        error: err(422, "validation_error", "Tags should only contain ASCII letters, numbers, underscores, or dashes."),
      };
    }
    tags = e.tags as { name: string; value: string }[];
  }
  return {
    email: {
      from: String(e.from ?? ""),
      to: to as string[],
      subject: String(e.subject ?? ""),
      ...(typeof e.html === "string" ? { html: e.html } : {}),
      ...(typeof e.text === "string" ? { text: e.text } : {}),
      headers,
      tags,
    },
  };
}

export async function startResendMock(opts: ResendMockOptions = {}): Promise<ResendMock> {
  const apiKey = opts.apiKey ?? "re_test_key";
  const expectedAuth = `Bearer ${apiKey}`;

  let delivered: DeliveredEmail[] = [];
  /** `${path} ${key}` -> the raw body and the answer it got, for replays. */
  let idempotent = new Map<string, { body: string; answer: Answer }>();
  let requestCount = 0;
  let faults: ResendMockFaults = {};
  /** Authenticated requests since the last inject() of periodic faults. */
  let faultCounter = 0;
  let forced: ForcedResponse[] = [];
  const timers = new Set<ReturnType<typeof setTimeout>>();
  const sockets = new Set<Socket>();

  const errorAnswer = (e: ApiError, headers?: Record<string, string>): Answer => ({
    status: e.statusCode,
    body: JSON.stringify(e),
    ...(headers ? { headers } : {}),
  });

  const rateLimitHeaders = (seconds: number): Record<string, string> => ({
    "retry-after": String(seconds),
    "ratelimit-limit": "2",
    "ratelimit-remaining": "0",
    "ratelimit-reset": String(seconds),
  });

  function forcedAnswer(f: ForcedResponse & { status: number }): Answer {
    const known = DEFAULT_ERRORS[f.status] ?? (f.status >= 500 ? DEFAULT_ERRORS[500]! : { name: "application_error", message: "Forced error." });
    const headers = { ...(f.status === 429 ? rateLimitHeaders(f.retryAfterSeconds ?? 1) : {}), ...f.headers };
    const body = f.body !== undefined ? JSON.stringify(f.body) : JSON.stringify(err(f.status, known.name, known.message));
    return { status: f.status, body, headers };
  }

  function write(res: ServerResponse, answer: Answer): void {
    if (res.destroyed) return;
    res.writeHead(answer.status, { "content-type": "application/json", ...answer.headers });
    res.end(answer.body);
  }

  function later(ms: number, fn: () => void): void {
    const t = setTimeout(() => {
      timers.delete(t);
      fn();
    }, ms);
    timers.add(t);
  }

  /** The request's answer, once auth and faults let it through. Records deliveries. */
  function handle(path: "/emails" | "/emails/batch", req: IncomingMessage, raw: string): Answer {
    const keyHeader = req.headers["idempotency-key"];
    const key = Array.isArray(keyHeader) ? keyHeader[0] : keyHeader;
    if (key !== undefined && (key.length < 1 || key.length > 256)) {
      return errorAnswer(err(400, "invalid_idempotency_key", "The key must be between 1-256 chars."));
    }
    if (key !== undefined) {
      const seen = idempotent.get(`${path} ${key}`);
      if (seen) {
        if (seen.body === raw) return seen.answer;
        return errorAnswer(err(409, "invalid_idempotent_request", "Same idempotency key used with a different request payload."));
      }
    }
    let input: unknown;
    try {
      input = JSON.parse(raw);
    } catch {
      return errorAnswer(err(400, "validation_error", "The request body is not valid JSON."));
    }

    let answer: Answer;
    if (path === "/emails") {
      const checked = validate(input);
      if ("error" in checked) return errorAnswer(checked.error);
      const id = randomUUID();
      delivered.push({ id, ...checked.email, ...(key !== undefined ? { idempotencyKey: key } : {}), batch: false });
      answer = { status: 200, body: JSON.stringify({ id }) };
    } else {
      if (!Array.isArray(input) || input.length === 0) {
        return errorAnswer(err(422, "validation_error", "The request body must be a non-empty array of emails."));
      }
      if (input.length > MAX_BATCH) {
        return errorAnswer(err(422, "validation_error", `Too many emails in the batch. The maximum is ${MAX_BATCH}.`));
      }
      const permissive = req.headers["x-batch-validation"] === "permissive";
      const checked = input.map(validate);
      const errors: { index: number; message: string }[] = [];
      checked.forEach((c, index) => {
        if ("error" in c) errors.push({ index, message: c.error.message });
      });
      // Strict (Resend's default): one invalid email refuses the whole batch.
      if (!permissive && errors.length > 0) {
        const first = checked[errors[0]!.index] as { error: ApiError };
        return errorAnswer(err(first.error.statusCode, first.error.name, `emails[${errors[0]!.index}]: ${first.error.message}`));
      }
      const data: { id: string }[] = [];
      for (const c of checked) {
        if ("error" in c) continue;
        const id = randomUUID();
        delivered.push({ id, ...c.email, ...(key !== undefined ? { idempotencyKey: key } : {}), batch: true });
        data.push({ id });
      }
      answer = { status: 200, body: JSON.stringify(permissive ? { data, errors } : { data }) };
    }
    // Only accepted requests are remembered: a refused or failed one may be retried with its key.
    if (key !== undefined) idempotent.set(`${path} ${key}`, { body: raw, answer });
    return answer;
  }

  function respond(path: "/emails" | "/emails/batch", req: IncomingMessage, res: ServerResponse, raw: string): void {
    requestCount++;
    const force = forced.shift();
    if (force?.drop) {
      const drop = (): void => {
        req.socket.destroy();
      };
      return force.delayMs ? later(force.delayMs, drop) : drop();
    }
    const run = (): void => {
      if (force?.status !== undefined && force.status !== 200) return write(res, forcedAnswer({ ...force, status: force.status }));
      const auth = req.headers.authorization;
      if (!auth) return write(res, errorAnswer(err(401, "missing_api_key", DEFAULT_ERRORS[401]!.message)));
      if (auth !== expectedAuth) return write(res, errorAnswer(err(403, "invalid_api_key", DEFAULT_ERRORS[403]!.message)));
      faultCounter++;
      if (faults.failEvery429 && faultCounter % faults.failEvery429 === 0) {
        return write(res, forcedAnswer({ status: 429, retryAfterSeconds: faults.retryAfterSeconds ?? 1 }));
      }
      if (faults.failEvery500 && faultCounter % faults.failEvery500 === 0) return write(res, forcedAnswer({ status: 500 }));
      write(res, handle(path, req, raw));
    };
    const delay = (force?.delayMs ?? 0) + (faults.latencyMs ?? 0);
    if (delay > 0) later(delay, run);
    else run();
  }

  const server = createServer((req, res) => {
    const path = (req.url ?? "/").split("?")[0]!.replace(/\/+$/, "");
    if (path !== "/emails" && path !== "/emails/batch") {
      req.resume();
      return write(res, errorAnswer(err(404, "not_found", DEFAULT_ERRORS[404]!.message)));
    }
    if (req.method !== "POST") {
      req.resume();
      return write(res, errorAnswer(err(405, "method_not_allowed", DEFAULT_ERRORS[405]!.message)));
    }
    const chunks: Buffer[] = [];
    let size = 0;
    req.on("data", (chunk: Buffer) => {
      size += chunk.length;
      if (size > MAX_BODY_BYTES) {
        write(res, errorAnswer(err(413, "validation_error", "The request body is too large.")));
        req.destroy();
        return;
      }
      chunks.push(chunk);
    });
    req.on("end", () => {
      if (res.writableEnded) return;
      respond(path, req, res, chunks.length === 1 ? chunks[0]!.toString("utf8") : Buffer.concat(chunks).toString("utf8"));
    });
  });
  // Clients keep connections alive between requests; close() must not wait for them.
  server.on("connection", (socket) => {
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
  });
  server.keepAliveTimeout = 30_000;

  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(opts.port ?? 0, opts.host ?? "127.0.0.1", () => {
      server.off("error", reject);
      resolve();
    });
  });
  const address = server.address();
  if (address === null || typeof address === "string") throw new Error("resend mock: no TCP address");
  const host = address.family === "IPv6" ? `[${address.address}]` : address.address;

  return {
    url: `http://${host}:${address.port}`,
    port: address.port,
    apiKey,
    delivered: () => delivered.slice(),
    requests: () => requestCount,
    inject(spec) {
      if (Array.isArray(spec)) {
        for (const f of spec as readonly (number | ForcedResponse)[]) forced.push(typeof f === "number" ? { status: f } : f);
      } else {
        faults = { ...(spec as ResendMockFaults) };
        faultCounter = 0;
      }
    },
    reset() {
      delivered = [];
      idempotent = new Map();
      requestCount = 0;
      faults = {};
      faultCounter = 0;
      forced = [];
    },
    async close() {
      for (const t of timers) clearTimeout(t);
      timers.clear();
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      for (const s of sockets) s.destroy();
      await closed;
    },
  };
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const { values } = parseArgs({
    options: { port: { type: "string", default: "8792" }, key: { type: "string" }, host: { type: "string" } },
  });
  const mock = await startResendMock({
    port: Number(values.port),
    ...(values.key ? { apiKey: values.key } : {}),
    ...(values.host ? { host: values.host } : {}),
  });
  console.log(`Resend mock on ${mock.url} (key: ${mock.apiKey})`);
  const stop = () => void mock.close().then(() => process.exit(0));
  process.on("SIGINT", stop);
  process.on("SIGTERM", stop);
}

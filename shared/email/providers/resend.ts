/**
 * The Mailer port on Resend, through the official SDK (npm `resend`).
 *
 * Why the SDK works here: its constructor takes `{ baseUrl }` (the RESEND_BASE_URL environment
 * variable is only its fallback), so tests and benchmarks point it at tools/resend-mock-server.ts
 * without touching the environment, and it only uses Web-standard fetch/Headers, so the same module
 * runs on Node and in the Cloudflare Worker. It calls the global fetch and offers no hook for
 * another, so this module takes no `fetch` option.
 *
 * What the SDK leaves to us: it never throws; every failure comes back as `{ error, headers }`,
 * `error` being Resend's error body (`statusCode`, `name`, `message`), or one the SDK makes up
 * with `statusCode: null` when no response arrived (network error, abort). We turn that into a ProviderError the engine understands (retry, wait, fail over,
 * give up) and add what the SDK has no notion of: a per-request timeout and deterministic
 * idempotency keys for batches.
 */
import { Resend, type CreateBatchOptions, type CreateEmailOptions, type ErrorResponse } from "resend";
import { ProviderError, type Mailer, type OutgoingMessage, type SendResult } from "../mailer";

export const RESEND_MAX_BATCH = 100;
/** The provider's name in the send ledger (email_sends.provider), which its webhook reports are matched against. */
export const RESEND_PROVIDER = "resend";
const PROVIDER = RESEND_PROVIDER;
/** Resend accepts idempotency keys of 1-256 characters. */
const MAX_KEY_LENGTH = 256;

export interface ResendMailerOptions {
  apiKey: string;
  /** Defaults to https://api.resend.com; the local mock's url in tests and benchmarks. */
  baseUrl?: string;
  /**
   * A request that takes longer is abandoned as `unavailable` (safe to retry: the idempotency
   * key makes a repeat a no-op). Below the email.send job timeout (30 s), so a stuck request
   * leaves time for the retry or another provider. Defaults to 15 s.
   */
  timeoutMs?: number;
}

export function createResendMailer(opts: ResendMailerOptions): Mailer {
  // Checked here because without a key the SDK quietly falls back to the RESEND_API_KEY
  // environment variable, which shared code must never read.
  if (!opts.apiKey) throw new Error("createResendMailer: apiKey is required");
  const apiKey = opts.apiKey;
  const timeoutMs = opts.timeoutMs ?? 15_000;
  const client = new Resend(apiKey, { baseUrl: (opts.baseUrl ?? "https://api.resend.com").replace(/\/+$/, "") });

  /** Runs one SDK call under the caller's signal and our timeout; maps any failure. */
  async function call<T>(
    what: string,
    run: (signal: AbortSignal) => Promise<{ data: T | null; error: ErrorResponse | null; headers: Record<string, string> | null }>,
    signal: AbortSignal | undefined,
  ): Promise<T> {
    signal?.throwIfAborted();
    const timeout = AbortSignal.timeout(timeoutMs);
    const combined = signal ? AbortSignal.any([signal, timeout]) : timeout;
    let result: Awaited<ReturnType<typeof run>>;
    try {
      result = await run(combined);
    } catch (err) {
      // The SDK reports failures as values; a throw is unexpected (a bug, a broken fetch polyfill).
      signal?.throwIfAborted();
      throw new ProviderError(PROVIDER, "unavailable", redact(`${what} failed: ${describeError(err)}`, apiKey));
    }
    // The caller's abort (job cancelled, shutdown) is theirs to see, not a provider failure.
    signal?.throwIfAborted();
    if (result.error) {
      if (timeout.aborted && result.error.statusCode == null) {
        throw new ProviderError(PROVIDER, "unavailable", `${what} timed out after ${timeoutMs} ms`);
      }
      throw classify(what, result.error, result.headers, apiKey);
    }
    if (result.data == null) throw new ProviderError(PROVIDER, "unavailable", `${what}: empty response`);
    return result.data;
  }

  return {
    name: PROVIDER,
    maxBatch: RESEND_MAX_BATCH,

    async send(message: OutgoingMessage, signal?: AbortSignal): Promise<SendResult> {
      const idempotencyKey = await requestKey(message.idempotencyKey);
      const data = await call(
        "POST /emails",
        (s) => client.emails.send(toResend(message), { idempotencyKey, signal: s }),
        signal,
      );
      return { providerMessageId: data.id };
    },

    async sendBatch(messages: readonly OutgoingMessage[], signal?: AbortSignal): Promise<SendResult[]> {
      if (messages.length === 0) return [];
      if (messages.length > RESEND_MAX_BATCH) {
        throw new RangeError(`resend: a batch takes at most ${RESEND_MAX_BATCH} messages, got ${messages.length}`);
      }
      // Resend deduplicates per request, so a batch needs its own key; derived from its
      // messages' keys, a retried batch (same messages, same order) is recognised as a repeat.
      // A message first sent alone and later in a batch is not; the send ledger records each
      // batch before it goes out, so a run after a crash resends that very batch (send-email.ts).
      const idempotencyKey = await batchKey(messages.map((m) => m.idempotencyKey));
      const payload: CreateBatchOptions = messages.map(toResend);
      const data = await call(
        "POST /emails/batch",
        // strict (the SDK's default, said out loud): one invalid message fails the whole call,
        // which is what the Mailer contract promises (results in order, or one rejection).
        (s) => client.batch.send(payload, { idempotencyKey, batchValidation: "strict", signal: s }),
        signal,
      );
      const ids = data.data;
      if (!Array.isArray(ids) || ids.length !== messages.length) {
        throw new ProviderError(PROVIDER, "unavailable", `POST /emails/batch: expected ${messages.length} ids, got ${ids?.length}`);
      }
      return ids.map((e) => ({ providerMessageId: e.id }));
    },
  };
}

function toResend(m: OutgoingMessage): CreateEmailOptions {
  return {
    from: m.from,
    to: m.to,
    subject: m.subject,
    html: m.html,
    text: m.text,
    ...(m.headers && Object.keys(m.headers).length > 0 ? { headers: m.headers } : {}),
    ...(m.tags ? { tags: toTags(m.tags) } : {}),
  };
}

/**
 * Resend allows only ASCII letters, digits, `_` and `-` in tag names and values (256 at most)
 * and refuses the whole message otherwise; a tag is metadata, never worth losing a mail over.
 */
function toTags(tags: Record<string, string>): { name: string; value: string }[] {
  const clean = (s: string) => s.replace(/[^A-Za-z0-9_-]/g, "_").slice(0, 256);
  return Object.entries(tags).map(([name, value]) => ({ name: clean(name), value: clean(value) }));
}

async function sha256Hex(text: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text));
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
}

/** The message's own key when Resend accepts it; a longer one is hashed (still stable). */
async function requestKey(key: string): Promise<string> {
  if (!key) throw new ProviderError(PROVIDER, "rejected", "message has no idempotency key");
  return key.length <= MAX_KEY_LENGTH ? key : `sha256/${await sha256Hex(key)}`;
}

async function batchKey(keys: readonly string[]): Promise<string> {
  if (keys.some((k) => !k)) throw new ProviderError(PROVIDER, "rejected", "message has no idempotency key");
  // JSON keeps the list unambiguous whatever characters the keys contain.
  return `batch/${await sha256Hex(JSON.stringify(keys))}`;
}

/** Status by error name, for an error body without statusCode (Resend's documented codes). */
const STATUS_BY_NAME: Record<string, number> = {
  invalid_idempotency_key: 400,
  validation_error: 422,
  missing_api_key: 401,
  restricted_api_key: 401,
  invalid_api_key: 403,
  not_found: 404,
  method_not_allowed: 405,
  invalid_idempotent_request: 409,
  concurrent_idempotent_requests: 409,
  invalid_attachment: 422,
  invalid_from_address: 422,
  invalid_access: 422,
  invalid_parameter: 422,
  invalid_region: 422,
  missing_required_field: 422,
  monthly_quota_exceeded: 429,
  daily_quota_exceeded: 429,
  rate_limit_exceeded: 429,
  security_error: 451,
  internal_server_error: 500,
};

function classify(
  what: string,
  error: ErrorResponse,
  headers: Record<string, string> | null,
  apiKey: string,
): ProviderError {
  const status = typeof error.statusCode === "number" ? error.statusCode : STATUS_BY_NAME[error.name];
  const message = redact(`${what} failed: ${status ?? "no response"} ${error.name}: ${error.message}`, apiKey);
  // No response at all (connection refused, reset, DNS): the request may or may not have
  // arrived; retrying is safe because the idempotency key makes a repeat a no-op.
  if (status === undefined) return new ProviderError(PROVIDER, "unavailable", message, undefined, { mayHaveLeft: true });
  // Resend answered: an error answer means it did not take the request.
  const answered = { mayHaveLeft: false };
  if (status === 429) return new ProviderError(PROVIDER, "rate_limited", message, retryAfterMs(headers));
  if (status === 401 || status === 403) return new ProviderError(PROVIDER, "auth", message);
  // Transient 4xx: the same key still in flight elsewhere, or the request timed out upstream.
  if (status === 408 || (status === 409 && error.name === "concurrent_idempotent_requests")) {
    // …which may still deliver it (the other request holding the key, or Resend past our deadline).
    return new ProviderError(PROVIDER, "unavailable", message, retryAfterMs(headers), { mayHaveLeft: true });
  }
  if (status >= 500) return new ProviderError(PROVIDER, "unavailable", message, retryAfterMs(headers), answered);
  if (status >= 400) return new ProviderError(PROVIDER, "rejected", message);
  return new ProviderError(PROVIDER, "unavailable", message, undefined, answered);
}

/**
 * How long Resend asked us to wait: `retry-after` (seconds, or an HTTP date), else
 * `ratelimit-reset` (seconds until the window resets). The SDK hands headers lower-cased.
 */
function retryAfterMs(headers: Record<string, string> | null): number | undefined {
  if (!headers) return undefined;
  const retryAfter = headers["retry-after"]?.trim();
  if (retryAfter) {
    const seconds = Number(retryAfter);
    if (Number.isFinite(seconds) && seconds >= 0) return Math.ceil(seconds * 1000);
    const date = Date.parse(retryAfter);
    if (!Number.isNaN(date)) return Math.max(0, date - Date.now());
  }
  const resetHeader = headers["ratelimit-reset"]?.trim();
  const reset = Number(resetHeader);
  if (resetHeader && Number.isFinite(reset) && reset >= 0) return Math.ceil(reset * 1000);
  return undefined;
}

function describeError(err: unknown): string {
  return err instanceof Error ? `${err.name}: ${err.message}` : String(err);
}

/** A server echoing the Authorization header back must not put the key into our logs. */
function redact(text: string, apiKey: string): string {
  return text.split(apiKey).join("[redacted]");
}

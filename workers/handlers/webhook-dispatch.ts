/**
 * webhook.dispatch: one event to one customer endpoint, signed the Standard Webhooks way.
 * Every attempt is written to webhook_deliveries. The retry schedule is the job type's backoff
 * (exponential from 5 s to 24 h, 10 attempts: close to the Standard Webhooks recommendation).
 *
 * 2xx: delivered. 410: the receiver is gone, the endpoint is disabled. 429, 5xx, other 4xx,
 * redirects (never followed) and network errors: retried (Retry-After honoured), unless the
 * endpoint has been failing for longer than `disableAfterDays`, which disables it. Either way
 * the owner is told (shared/webhooks/auto-disable.ts). A URL the SSRF guard refuses fails at
 * once and is never connected to.
 */
import type { z } from "zod";
import type { webhookDispatch } from "../../shared/jobs/webhook-dispatch";
import { type Clock, type Logger, silentLogger, type Sql } from "../../shared/ports";
import { PermanentError, RetryAfter } from "../../shared/queue/errors";
import type { Handler } from "../../shared/queue/handler";
import type { Queue } from "../../shared/queue/queue";
import { autoDisableEndpoint } from "../../shared/webhooks/auto-disable";
import { getEndpoint, recordDelivery } from "../../shared/webhooks/endpoints";
import { signedHeaders } from "../../shared/webhooks/signature";
import { checkUrl, type AllowList, type Resolver } from "../../shared/webhooks/ssrf";

type Payload = z.infer<typeof webhookDispatch.payload>;

export interface WebhookSettings {
  /** The whole request (connect, send, answer) must finish within this. Default 15 s. */
  timeoutMs: number;
  /** An endpoint failing continuously for longer than this is disabled. Default 5 days. */
  disableAfterDays: number;
  /** Bytes of the answer kept in the delivery log. Default 2 KiB (the column's limit). */
  responseBodyBytes: number;
  /** The longest Retry-After honoured; longer ones are capped. Default 24 h. */
  maxRetryAfterMs: number;
  userAgent: string;
}

export const defaultWebhookSettings: WebhookSettings = {
  timeoutMs: 15_000,
  disableAfterDays: 5,
  responseBodyBytes: 2_048,
  maxRetryAfterMs: 24 * 3_600_000,
  userAgent: "PenguinMails-Webhooks/1.0",
};

export interface WebhookDeps {
  sql: Sql;
  clock: Clock;
  logger?: Logger;
  /** With a queue, disabling an endpoint tells its owner: an event to the tenant's other endpoints, an email to its notify_email. */
  queue?: Queue;
  resolver: Resolver;
  allow?: AllowList;
  settings?: Partial<WebhookSettings>;
  /** The fetch to deliver with (tests count calls); the global one by default. */
  fetch?: typeof fetch;
}

/** Reads at most `limit` bytes of a body as text, then stops reading. */
async function readCapped(res: Response, limit: number): Promise<string> {
  if (!res.body) return "";
  const reader = res.body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  try {
    while (size < limit) {
      const { done, value } = await reader.read();
      if (done) break;
      chunks.push(value);
      size += value.byteLength;
    }
  } finally {
    await reader.cancel().catch(() => {});
  }
  const all = new Uint8Array(Math.min(size, limit));
  let at = 0;
  for (const c of chunks) {
    const take = Math.min(c.byteLength, all.length - at);
    all.set(c.subarray(0, take), at);
    at += take;
    if (at >= all.length) break;
  }
  // Postgres text holds no NUL; a character cut in half decodes to U+FFFD (3 bytes), so trim to fit.
  let text = new TextDecoder().decode(all).replaceAll("\u0000", "");
  const encoder = new TextEncoder();
  while (encoder.encode(text).byteLength > limit) text = text.slice(0, -1);
  return text;
}

/** Retry-After in milliseconds (delta-seconds or an HTTP date), or undefined. */
export function retryAfterMs(header: string | null, now: Date): number | undefined {
  if (!header) return undefined;
  const trimmed = header.trim();
  if (/^\d+$/.test(trimmed)) return Number(trimmed) * 1_000;
  const at = Date.parse(trimmed);
  return Number.isNaN(at) ? undefined : Math.max(0, at - now.getTime());
}

export function webhookDispatchHandler(deps: WebhookDeps): Handler<Payload> {
  const settings = { ...defaultWebhookSettings, ...deps.settings };
  const logger = deps.logger ?? silentLogger;
  const disable = (tenantId: string, endpointId: string, reason: string) =>
    autoDisableEndpoint({ sql: deps.sql, clock: deps.clock, logger, queue: deps.queue }, tenantId, endpointId, reason);
  const doFetch = deps.fetch ?? ((input: RequestInfo | URL, init?: RequestInit) => fetch(input, init));

  return {
    type: "webhook.dispatch",
    async run(payload, job, ctx) {
      const { tenant_id: tenantId, endpoint_id: endpointId, event_id: eventId } = payload;
      const endpoint = await getEndpoint(deps.sql, tenantId, endpointId);
      if (!endpoint) throw new PermanentError(`webhook endpoint ${endpointId} no longer exists`);
      const base = { endpointId, tenantId, eventId, attempt: job.attempt };
      const log = (d: Omit<Parameters<typeof recordDelivery>[1], keyof typeof base>) => recordDelivery(deps.sql, { ...base, ...d });
      const none = { durationMs: null, statusCode: null, responseBody: null };

      if (endpoint.status === "disabled") {
        const reason = `the endpoint is disabled${endpoint.disabled_reason ? ` (${endpoint.disabled_reason})` : ""}`;
        await log({ ...none, outcome: "refused", error: reason });
        throw new PermanentError(reason);
      }

      // Checked right before the request: see checkUrl on what fetch leaves open.
      const check = await checkUrl(endpoint.url, { resolver: deps.resolver, allow: deps.allow });
      if (!check.ok && !check.retryable) {
        await log({ ...none, outcome: "refused", error: check.reason });
        logger.warn("webhook delivery refused by the SSRF guard", { endpoint_id: endpointId, event_id: eventId, reason: check.reason });
        throw new PermanentError(check.reason);
      }

      /** A failed attempt: logged, the endpoint marked failing (disabled after too long), then retried. */
      const failed = async (error: string, statusCode: number | null, durationMs: number | null, responseBody: string | null, retry: Error): Promise<never> => {
        await log({ outcome: "failed", error, statusCode, durationMs, responseBody });
        const now = deps.clock.now();
        const [row] = await deps.sql.query<{ failing_since: Date }>(
          `update webhook_endpoints set failing_since = coalesce(failing_since, $3) where id = $1 and tenant_id = $2 returning failing_since`,
          [endpointId, tenantId, now],
        );
        const limitMs = settings.disableAfterDays * 24 * 3_600_000;
        if (row && now.getTime() - new Date(row.failing_since).getTime() > limitMs) {
          const reason = `failing continuously for more than ${settings.disableAfterDays} days`;
          await disable(tenantId, endpointId, reason);
          throw new PermanentError(`${error}; the endpoint was disabled: ${reason}`);
        }
        throw retry;
      };

      if (!check.ok) return failed(check.reason, null, null, null, new Error(check.reason));

      const body = JSON.stringify({ type: payload.event_type, timestamp: job.createdAt.toISOString(), data: payload.data });
      const now = deps.clock.now();
      const secrets = [endpoint.secret];
      if (endpoint.previous_secret && endpoint.previous_secret_expires_at && endpoint.previous_secret_expires_at > now) {
        secrets.push(endpoint.previous_secret);
      }
      const headers = await signedHeaders(secrets, eventId, Math.floor(now.getTime() / 1_000), body);

      const started = Date.now();
      let res: Response;
      let responseBody: string;
      try {
        res = await doFetch(check.url, {
          method: "POST",
          headers: { "content-type": "application/json", "user-agent": settings.userAgent, ...headers },
          body,
          // A redirect is a failure: following one could lead anywhere, past the guard.
          redirect: "manual",
          signal: AbortSignal.any([ctx.signal, AbortSignal.timeout(settings.timeoutMs)]),
        });
        responseBody = await readCapped(res, settings.responseBodyBytes);
      } catch (err) {
        const message = err instanceof Error ? (err.name === "TimeoutError" ? `timed out after ${settings.timeoutMs} ms` : err.message) : String(err);
        const cause = err instanceof Error && err.cause instanceof Error ? `: ${err.cause.message}` : "";
        // Cancelled or shutting down: the engine decides what happens next; the attempt is logged still.
        const retry = ctx.signal.aborted && err instanceof Error ? err : new Error(`delivery failed: ${message}${cause}`);
        return failed(`${message}${cause}`, null, Date.now() - started, null, retry);
      }
      const durationMs = Date.now() - started;
      const status = res.status;

      if (status >= 200 && status < 300) {
        await log({ outcome: "ok", error: null, statusCode: status, durationMs, responseBody });
        await deps.sql.query("update webhook_endpoints set failing_since = null where id = $1 and tenant_id = $2 and failing_since is not null", [endpointId, tenantId]);
        return { status, duration_ms: durationMs };
      }
      if (status === 410) {
        const reason = "the receiver answered 410 Gone";
        await log({ outcome: "failed", error: reason, statusCode: status, durationMs, responseBody });
        await disable(tenantId, endpointId, reason);
        throw new PermanentError(`${reason}; the endpoint was disabled`);
      }
      if (status >= 300 && status < 400) {
        const error = `redirect ${status} not followed${res.headers.get("location") ? ` (to ${res.headers.get("location")})` : ""}`;
        return failed(error, status, durationMs, responseBody, new Error(error));
      }
      const error = `the receiver answered ${status}`;
      const after = status === 429 || status >= 500 ? retryAfterMs(res.headers.get("retry-after"), now) : undefined;
      const retry = after !== undefined ? new RetryAfter(Math.min(after, settings.maxRetryAfterMs), error) : new Error(error);
      return failed(error, status, durationMs, responseBody, retry);
    },
  };
}

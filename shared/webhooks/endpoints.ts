/**
 * A tenant's webhook endpoints: register (the URL passes the SSRF guard first), list, change
 * the event types or the owner's address, rotate the secret, disable, send a test event, read
 * the delivery log. A secret leaves this module only in the result of create and rotate (shown
 * to the customer once); views never carry it.
 */
import type { Clock, SqlClient } from "../ports";
import { NotFoundError, ValidationError } from "../queue/errors";
import type { Queue } from "../queue/queue";
import { webhookId } from "./ids";
import { generateSecret } from "./signature";
import { checkUrl, type UrlGuard } from "./ssrf";

/** How long the previous secret keeps signing after a rotation, unless the caller says otherwise. */
export const DEFAULT_ROTATION_GRACE_MS = 24 * 3_600_000;

export interface EndpointRow {
  id: string;
  tenant_id: string;
  url: string;
  event_types: string[];
  secret: string;
  previous_secret: string | null;
  previous_secret_expires_at: Date | null;
  status: "active" | "disabled";
  disabled_reason: string | null;
  disabled_at: Date | null;
  failing_since: Date | null;
  notify_email: string | null;
  created_at: Date;
}

export interface EndpointView {
  id: string;
  url: string;
  event_types: string[];
  status: "active" | "disabled";
  disabled_reason: string | null;
  disabled_at: Date | null;
  failing_since: Date | null;
  /** Who is told by email when the platform disables this endpoint; null: nobody (the webhook.endpoint.disabled event still goes out). */
  notify_email: string | null;
  /** Until when the previous secret still signs (a rotation in progress), else null. */
  previous_secret_expires_at: Date | null;
  created_at: Date;
}

export function endpointView(row: EndpointRow, now: Date): EndpointView {
  const rotating = row.previous_secret_expires_at && row.previous_secret_expires_at > now ? row.previous_secret_expires_at : null;
  return {
    id: row.id,
    url: row.url,
    event_types: row.event_types,
    status: row.status,
    disabled_reason: row.disabled_reason,
    disabled_at: row.disabled_at,
    failing_since: row.failing_since,
    notify_email: row.notify_email,
    previous_secret_expires_at: rotating,
    created_at: row.created_at,
  };
}

export interface DeliveryRecord {
  endpointId: string;
  tenantId: string;
  eventId: string;
  attempt: number;
  durationMs: number | null;
  statusCode: number | null;
  outcome: "ok" | "failed" | "refused";
  error: string | null;
  responseBody: string | null;
}

/** Appends one attempt to the delivery log. */
export async function recordDelivery(sql: SqlClient, d: DeliveryRecord): Promise<void> {
  await sql.query(
    `insert into webhook_deliveries (endpoint_id, tenant_id, event_id, attempt, duration_ms, status_code, outcome, error, response_body)
     values ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
    [d.endpointId, d.tenantId, d.eventId, d.attempt, d.durationMs, d.statusCode, d.outcome, d.error, d.responseBody],
  );
}

/** Disables an endpoint (again, when it already is: the reason is replaced, the time kept). */
export async function disableEndpoint(sql: SqlClient, tenantId: string, id: string, reason: string): Promise<EndpointRow | undefined> {
  const [row] = await sql.query<EndpointRow>(
    `update webhook_endpoints set status = 'disabled', disabled_reason = $3, disabled_at = coalesce(disabled_at, now())
     where id = $1 and tenant_id = $2 returning *`,
    [id, tenantId, reason],
  );
  return row;
}

export async function getEndpoint(sql: SqlClient, tenantId: string, id: string): Promise<EndpointRow | undefined> {
  const [row] = await sql.query<EndpointRow>("select * from webhook_endpoints where id = $1 and tenant_id = $2", [id, tenantId]);
  return row;
}

const EVENT_TYPE = /^[a-z0-9_.-]+$/;

function eventTypesOf(input: readonly string[] | undefined): string[] {
  const types = [...new Set(input ?? [])];
  types.forEach((t, i) => {
    if (!EVENT_TYPE.test(t) || t.length > 128) {
      throw new ValidationError("invalid event type", [{ path: ["event_types", i], message: "lowercase letters, digits and _ . - only" }]);
    }
  });
  return types;
}

export class WebhookEndpoints {
  constructor(
    private readonly sql: SqlClient,
    private readonly queue: Queue,
    private readonly guard: UrlGuard,
    private readonly clock: Clock,
  ) {}

  /** Registers an endpoint; a URL the SSRF guard refuses is a ValidationError on `url`. */
  async create(
    tenantId: string,
    input: { url: string; eventTypes?: readonly string[]; notifyEmail?: string | null },
  ): Promise<{ endpoint: EndpointView; secret: string }> {
    const check = await checkUrl(input.url, this.guard);
    if (!check.ok) throw new ValidationError("the webhook URL is not allowed", [{ path: ["url"], message: check.reason }]);
    const types = eventTypesOf(input.eventTypes);
    const secret = generateSecret();
    const [row] = await this.sql.query<EndpointRow>(
      `insert into webhook_endpoints (id, tenant_id, url, event_types, secret, notify_email) values ($1, $2, $3, $4::text[], $5, $6) returning *`,
      [webhookId("whe"), tenantId, check.url.toString(), types, secret, input.notifyEmail ?? null],
    );
    return { endpoint: endpointView(row!, this.clock.now()), secret };
  }

  /** Changes what an endpoint receives or who is told when it is disabled; a field left undefined stays. */
  async update(tenantId: string, id: string, input: { eventTypes?: readonly string[]; notifyEmail?: string | null }): Promise<EndpointView> {
    const types = input.eventTypes === undefined ? null : eventTypesOf(input.eventTypes);
    const [row] = await this.sql.query<EndpointRow>(
      `update webhook_endpoints set event_types = coalesce($3::text[], event_types),
         notify_email = case when $4 then $5 else notify_email end
       where id = $1 and tenant_id = $2 returning *`,
      [id, tenantId, types, input.notifyEmail !== undefined, input.notifyEmail ?? null],
    );
    if (!row) throw new NotFoundError(`no webhook endpoint ${id}`);
    return endpointView(row, this.clock.now());
  }

  async list(tenantId: string): Promise<EndpointView[]> {
    const rows = await this.sql.query<EndpointRow>(
      "select * from webhook_endpoints where tenant_id = $1 order by created_at, id limit 1000",
      [tenantId],
    );
    const now = this.clock.now();
    return rows.map((r) => endpointView(r, now));
  }

  async get(tenantId: string, id: string): Promise<EndpointView> {
    return endpointView(await this.row(tenantId, id), this.clock.now());
  }

  /** A new secret; the current one keeps signing alongside it for graceMs (default 24 h). */
  async rotate(tenantId: string, id: string, graceMs = DEFAULT_ROTATION_GRACE_MS): Promise<{ endpoint: EndpointView; secret: string }> {
    const secret = generateSecret();
    const now = this.clock.now();
    const [row] = await this.sql.query<EndpointRow>(
      `update webhook_endpoints
       set previous_secret = secret, previous_secret_expires_at = $4, secret = $3
       where id = $1 and tenant_id = $2 returning *`,
      [id, tenantId, secret, new Date(now.getTime() + graceMs)],
    );
    if (!row) throw new NotFoundError(`no webhook endpoint ${id}`);
    return { endpoint: endpointView(row, now), secret };
  }

  async disable(tenantId: string, id: string, reason = "disabled by the customer"): Promise<EndpointView> {
    const row = await disableEndpoint(this.sql, tenantId, id, reason);
    if (!row) throw new NotFoundError(`no webhook endpoint ${id}`);
    return endpointView(row, this.clock.now());
  }

  /** Sends a "webhook.test" event to this endpoint alone: one webhook.dispatch job. */
  async sendTest(tenantId: string, id: string): Promise<{ eventId: string; jobId: string }> {
    const row = await this.row(tenantId, id);
    const eventId = webhookId("evt");
    const { job } = await this.queue.enqueue({
      type: "webhook.dispatch",
      tenantId,
      payload: {
        tenant_id: tenantId,
        endpoint_id: row.id,
        event_id: eventId,
        event_type: "webhook.test",
        data: { message: "a test event from PenguinMails" },
      },
      idempotencyKey: `${row.id}:${eventId}`,
    });
    return { eventId, jobId: job.id };
  }

  /** The delivery log of one endpoint, newest first, 100 a page (cursor: the last id seen). */
  async deliveries(tenantId: string, id: string, before?: string): Promise<{ deliveries: Record<string, unknown>[]; nextCursor: string | null }> {
    await this.row(tenantId, id);
    const rows = await this.sql.query<{ id: string }>(
      `select id::text, event_id, attempt, at, duration_ms, status_code, outcome, error, response_body
       from webhook_deliveries where endpoint_id = $1 and tenant_id = $2 and ($3::bigint is null or id < $3::bigint)
       order by id desc limit 100`,
      [id, tenantId, before && /^\d+$/.test(before) ? before : null],
    );
    return { deliveries: rows, nextCursor: rows.length === 100 ? rows[rows.length - 1]!.id : null };
  }

  private async row(tenantId: string, id: string): Promise<EndpointRow> {
    const row = await getEndpoint(this.sql, tenantId, id);
    if (!row) throw new NotFoundError(`no webhook endpoint ${id}`);
    return row;
  }
}

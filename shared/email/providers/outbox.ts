/**
 * The embedded default's mail provider: messages go into `outbox_messages` (migration 0005)
 * instead of out into the world, so a new install shows the mail it would have sent without
 * any service. It is idempotent like a real provider: the table's unique idempotency_key makes
 * a repeated send (a job run twice) store nothing new and answer with the first row's id.
 */
import type { SqlClient } from "../../ports";
import type { Mailer, OutgoingMessage, SendResult } from "../mailer";

/**
 * One multi-row insert from arrays (a round trip per batch, whatever its size). The outer select
 * maps every input key, in input order, to its row: the one just inserted (from the CTE, since
 * the statement's snapshot cannot see it in the table) or the one already there.
 */
const INSERT_SQL = `
with input as (
  select * from unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[])
    with ordinality as t(tenant_id, idempotency_key, from_address, to_address, subject, html, text, headers, ord)
), inserted as (
  insert into outbox_messages (tenant_id, idempotency_key, from_address, to_address, subject, html, text, headers)
  select tenant_id, idempotency_key, from_address, to_address, subject, html, text, headers::jsonb
  from input order by ord
  on conflict (idempotency_key) do nothing
  returning id, idempotency_key
)
select i.idempotency_key, coalesce(n.id, o.id) as id
from input i
left join inserted n on n.idempotency_key = i.idempotency_key
left join outbox_messages o on o.idempotency_key = i.idempotency_key
order by i.ord`;

/**
 * A concurrent first send of the same key can commit between our snapshot and our insert: the
 * insert then does nothing and the outer select cannot see the winner's row. It has committed
 * by the time our statement returns, so a second look finds it.
 */
const LOOKUP_SQL = "select idempotency_key, id from outbox_messages where idempotency_key = any($1::text[])";

/** `sql` may be the pool or a transaction (then the message exists only if it commits). */
export function createOutboxMailer(sql: SqlClient): Mailer {
  async function store(messages: readonly OutgoingMessage[]): Promise<SendResult[]> {
    if (messages.length === 0) return [];
    const rows = await sql.query<{ idempotency_key: string; id: string | number | null }>(INSERT_SQL, [
      messages.map((m) => m.tenantId),
      messages.map((m) => m.idempotencyKey),
      messages.map((m) => m.from),
      messages.map((m) => m.to),
      messages.map((m) => m.subject),
      messages.map((m) => m.html),
      messages.map((m) => m.text),
      messages.map((m) => JSON.stringify(m.headers ?? {})),
    ]);
    const missing = rows.filter((r) => r.id === null).map((r) => r.idempotency_key);
    const found = new Map<string, string | number>();
    if (missing.length > 0) {
      for (const r of await sql.query<{ idempotency_key: string; id: string | number }>(LOOKUP_SQL, [missing])) {
        found.set(r.idempotency_key, r.id);
      }
    }
    return rows.map((r) => {
      const id = r.id ?? found.get(r.idempotency_key);
      if (id === null || id === undefined) throw new Error(`outbox: no row for idempotency key ${r.idempotency_key}`);
      return { providerMessageId: `outbox_${id}` };
    });
  }

  return {
    name: "outbox",
    // Any size works in one statement; 500 keeps a batch's parameter arrays modest.
    maxBatch: 500,
    async send(message) {
      const [result] = await store([message]);
      return result!;
    },
    sendBatch(messages) {
      return store(messages);
    },
  };
}

/**
 * export.data, runtime-agnostic: streams a list's or segment's contacts, or a campaign's sends
 * and events, out of Postgres in keyset pages into one CSV written through the Storage port.
 * Only one page (pageSize rows) is ever in memory: the CSV is a pull-driven ReadableStream, so
 * the next page is read only when the store has taken the previous one.
 *
 * Columns (a header row first):
 * - list / segment: id, email, name, status, attributes, created_at. `attributes` is the
 *   contact's attributes as one JSON object: the columns stay the same whatever attributes
 *   contacts have, and no second pass over the data is needed to learn every key.
 * - campaign: record ("send" or "event"), id, recipient, status, provider, provider_message_id,
 *   sent_at, detail, send_id, event_type, event_data, created_at. Sends come first (by id), then
 *   events (by id); an event's recipient is that of its send.
 * - campaign_engagement: id, kind ("open" or "click"), send_id, recipient, link_index, url,
 *   machine ("true" for a scanner's or a prefetch's hit: machine-hits.ts), at. Every hit, by id;
 *   a click's url is its link's (campaign_links), an open's is empty.
 * Every contact of the list is exported whatever its status (the status column says it); a
 * segment is its list's members matching its attribute filters. The audience's upper contact
 * id is fixed when the export starts, so contacts added meanwhile do not join it.
 */
import { type SegmentFilter, segmentFilterSql } from "../email/segment-filters";
import type { Clock, SqlClient } from "../ports";
import { PermanentError } from "../queue/errors";
import { isForeignKeyViolation } from "../sql-errors";
import type { Storage, StoredObject } from "../storage/storage";
import { type CsvValue, csvRow } from "./csv";

export type ExportPayload =
  | { source: "list"; list_id: string; tenant_id: string }
  | { source: "segment"; segment_id: string; tenant_id: string }
  | { source: "campaign"; campaign_id: string; tenant_id: string }
  | { source: "campaign_engagement"; campaign_id: string; tenant_id: string };

export const CONTACT_COLUMNS = ["id", "email", "name", "status", "attributes", "created_at"] as const;
export const CAMPAIGN_COLUMNS = [
  "record",
  "id",
  "recipient",
  "status",
  "provider",
  "provider_message_id",
  "sent_at",
  "detail",
  "send_id",
  "event_type",
  "event_data",
  "created_at",
] as const;

export const ENGAGEMENT_COLUMNS = ["id", "kind", "send_id", "recipient", "link_index", "url", "machine", "at"] as const;

export const DEFAULT_PAGE_SIZE = 5_000;
export const DEFAULT_EXPORT_TTL_MS = 7 * 24 * 3_600_000;


export function sourceIdOf(p: ExportPayload): string {
  return p.source === "list" ? p.list_id : p.source === "segment" ? p.segment_id : p.campaign_id;
}

/** The storage key of an export's file: one per export, so a retried run overwrites its own. */
export const exportKey = (tenantId: string, exportId: string): string => `${tenantId}/exports/${exportId}.csv`;


/** Progress of a running export, passed to onPage after each page. */
export interface ExportProgress {
  rows: number;
  phase: "contacts" | "sends" | "events" | "engagement";
}

/**
 * The CSV's lines, a page at a time (each yielded string is one page, header first). Throws
 * PermanentError when the source does not exist for the tenant.
 */
export async function* exportPages(
  sql: SqlClient,
  payload: ExportPayload,
  opts: { pageSize?: number; signal?: AbortSignal; onPage?: (p: ExportProgress) => void | Promise<void> } = {},
): AsyncGenerator<string> {
  const pageSize = opts.pageSize ?? DEFAULT_PAGE_SIZE;
  const tenantId = payload.tenant_id;
  let rows = 0;
  const check = () => {
    if (opts.signal?.aborted) throw opts.signal.reason;
  };

  if (payload.source === "campaign_engagement") {
    yield* engagementPages(sql, payload, pageSize, check, async (n) => {
      rows += n;
      await opts.onPage?.({ rows, phase: "engagement" });
    });
    return;
  }

  if (payload.source === "campaign") {
    const found = await sql.query("select 1 from campaigns where id = $1 and tenant_id = $2", [payload.campaign_id, tenantId]);
    if (found.length === 0) throw new PermanentError(`no campaign ${payload.campaign_id} for tenant ${tenantId}`);
    yield csvRow(CAMPAIGN_COLUMNS);
    let after = "0";
    for (;;) {
      check();
      const page = await sql.query<{
        id: string;
        recipient: string;
        status: string;
        provider: string | null;
        provider_message_id: string | null;
        sent_at: Date | null;
        detail: string | null;
        created_at: Date;
      }>(
        `select id::text, recipient, status, provider, provider_message_id, sent_at, detail, created_at
         from email_sends where campaign_id = $1 and tenant_id = $2 and id > $3::bigint order by id limit ${pageSize}`,
        [payload.campaign_id, tenantId, after],
      );
      if (page.length === 0) break;
      let out = "";
      for (const s of page) {
        out += csvRow(["send", s.id, s.recipient, s.status, s.provider, s.provider_message_id, s.sent_at, s.detail, null, null, null, s.created_at]);
      }
      rows += page.length;
      after = page[page.length - 1]!.id;
      yield out;
      await opts.onPage?.({ rows, phase: "sends" });
      if (page.length < pageSize) break;
    }
    after = "0";
    for (;;) {
      check();
      const page = await sql.query<{ id: string; send_id: string | null; recipient: string | null; type: string; data: string; created_at: Date }>(
        `select e.id::text, e.send_id::text, s.recipient, e.type, e.data::text as data, e.created_at
         from email_events e left join email_sends s on s.tenant_id = e.tenant_id and s.id = e.send_id
         where e.campaign_id = $1 and e.tenant_id = $2 and e.id > $3::bigint order by e.id limit ${pageSize}`,
        [payload.campaign_id, tenantId, after],
      );
      if (page.length === 0) break;
      let out = "";
      for (const e of page) {
        out += csvRow(["event", e.id, e.recipient, null, null, null, null, null, e.send_id, e.type, e.data, e.created_at]);
      }
      rows += page.length;
      after = page[page.length - 1]!.id;
      yield out;
      await opts.onPage?.({ rows, phase: "events" });
      if (page.length < pageSize) break;
    }
    return;
  }

  let listId: string;
  let filters: SegmentFilter[] = [];
  if (payload.source === "list") {
    const found = await sql.query("select 1 from lists where id = $1 and tenant_id = $2", [payload.list_id, tenantId]);
    if (found.length === 0) throw new PermanentError(`no list ${payload.list_id} for tenant ${tenantId}`);
    listId = payload.list_id;
  } else {
    const [seg] = await sql.query<{ list_id: string; filters: SegmentFilter[] | null }>(
      "select list_id, filters from segments where id = $1 and tenant_id = $2",
      [payload.segment_id, tenantId],
    );
    if (!seg) throw new PermanentError(`no segment ${payload.segment_id} for tenant ${tenantId}`);
    listId = seg.list_id;
    filters = seg.filters ?? [];
  }
  const [bound] = await sql.query<{ upper: string }>("select coalesce(max(contact_id), 0)::text as upper from list_members where list_id = $1", [listId]);
  const upper = bound?.upper ?? "0";
  const { where, params } = segmentFilterSql(filters, 5);
  yield csvRow(CONTACT_COLUMNS);
  let after = "0";
  for (;;) {
    check();
    // A page of member ids first (index-only on the list_members key), then each contact by its
    // primary key: the plan stays a page of point lookups whatever the statistics say (a fresh
    // import's unanalysed tables otherwise get join plans that rescan contacts on every page).
    // A segment's filters may drop members, so the cursor is the last member read, not written.
    const page = await sql.query<{ cursor: string; id: string | null; email: string; name: string | null; status: string; attributes: string; created_at: Date }>(
      `with ids as materialized (
         select contact_id from list_members
         where list_id = $1 and contact_id > $2::bigint and contact_id <= $3::bigint
         order by contact_id limit ${pageSize}
       )
       select ids.contact_id::text as cursor, c.id::text, c.email, c.name, c.status, c.attributes::text as attributes, c.created_at
       from ids left join lateral (
         select * from contacts c where c.id = ids.contact_id and c.tenant_id = $4 ${where}
       ) c on true
       order by ids.contact_id`,
      [listId, after, upper, tenantId, ...params],
    );
    if (page.length === 0) break;
    let out = "";
    for (const c of page) {
      if (c.id === null) continue;
      out += csvRow([c.id, c.email, c.name, c.status, c.attributes, c.created_at] satisfies CsvValue[]);
      rows += 1;
    }
    after = page[page.length - 1]!.cursor;
    yield out;
    await opts.onPage?.({ rows, phase: "contacts" });
    if (page.length < pageSize) break;
  }
}

/** A campaign's hits, a keyset page at a time (email_engagement_campaign_id_idx, migration 0020). */
async function* engagementPages(
  sql: SqlClient,
  payload: { campaign_id: string; tenant_id: string },
  pageSize: number,
  check: () => void,
  onPage: (rows: number) => Promise<void>,
): AsyncGenerator<string> {
  const tenantId = payload.tenant_id;
  const found = await sql.query("select 1 from campaigns where id = $1 and tenant_id = $2", [payload.campaign_id, tenantId]);
  if (found.length === 0) throw new PermanentError(`no campaign ${payload.campaign_id} for tenant ${tenantId}`);
  yield csvRow(ENGAGEMENT_COLUMNS);
  let after = "0";
  for (;;) {
    check();
    const page = await sql.query<{ id: string; kind: string; send_id: string; recipient: string | null; link_index: number | null; url: string | null; machine: boolean; at: Date }>(
      `select e.id::text, e.kind, e.send_id::text, s.recipient, e.link_index, l.url, e.machine, e.at
       from email_engagement e
       left join email_sends s on s.tenant_id = e.tenant_id and s.id = e.send_id
       left join campaign_links l on l.tenant_id = e.tenant_id and l.campaign_id = e.campaign_id and l.link_index = e.link_index
       where e.tenant_id = $1 and e.campaign_id = $2 and e.id > $3::bigint order by e.id limit ${pageSize}`,
      [tenantId, payload.campaign_id, after],
    );
    if (page.length === 0) break;
    let out = "";
    for (const e of page) out += csvRow([e.id, e.kind, e.send_id, e.recipient, e.link_index, e.url, e.machine, e.at]);
    after = page[page.length - 1]!.id;
    yield out;
    await onPage(page.length);
    if (page.length < pageSize) break;
  }
}

/** A pull-driven byte stream over an async generator of strings: one page read per pull. */
export function textStream(pages: AsyncGenerator<string>): ReadableStream<Uint8Array> {
  const encoder = new TextEncoder();
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      const next = await pages.next();
      if (next.done) controller.close();
      else controller.enqueue(encoder.encode(next.value));
    },
    async cancel() {
      await pages.return(undefined);
    },
  });
}

export interface ExportResult extends StoredObject {
  export_id: string;
  source: ExportPayload["source"];
  source_id: string;
  rows: number;
  expires_at: string;
}

/**
 * Runs one export end to end and records it in `exports`: running at the start, ready (rows,
 * url, bytes, expires_at = now + ttl) at the end. Idempotent per export id: a retry rewrites
 * the same storage key and row.
 */
export async function runExport(
  deps: { sql: SqlClient; storage: Storage; clock: Clock; pageSize?: number; ttlMs?: number },
  exportId: string,
  payload: ExportPayload,
  ctx: { signal: AbortSignal; progress(value: unknown): void },
): Promise<ExportResult> {
  const sourceId = sourceIdOf(payload);
  await deps.sql
    .query(
      `insert into exports (id, tenant_id, source, source_id, status) values ($1::bigint, $2, $3, $4, 'running')
       on conflict (id) do update set status = 'running', rows = 0, error = null`,
      [exportId, payload.tenant_id, payload.source, sourceId],
    )
    .catch((err: unknown) => {
      // The schema refuses a source that is not the tenant's own (migration 0013): no retry can help.
      if (isForeignKeyViolation(err)) throw new PermanentError(`no ${payload.source} ${sourceId} for tenant ${payload.tenant_id}`, { cause: err });
      throw err;
    });
  let rows = 0;
  const pages = exportPages(deps.sql, payload, {
    pageSize: deps.pageSize,
    signal: ctx.signal,
    onPage: async (p) => {
      rows = p.rows;
      ctx.progress(p);
      await deps.sql.query("update exports set rows = $2 where id = $1::bigint", [exportId, p.rows]);
    },
  });
  const stored = await deps.storage.write(exportKey(payload.tenant_id, exportId), textStream(pages), {
    contentType: "text/csv; charset=utf-8",
    signal: ctx.signal,
  });
  const expiresAt = new Date(deps.clock.now().getTime() + (deps.ttlMs ?? DEFAULT_EXPORT_TTL_MS));
  await deps.sql.query(
    `update exports set status = 'ready', rows = $2, bytes = $3, url = $4, completed_at = $5, expires_at = $6 where id = $1::bigint`,
    [exportId, rows, stored.bytes, stored.url, deps.clock.now().toISOString(), expiresAt.toISOString()],
  );
  return { export_id: exportId, source: payload.source, source_id: sourceId, rows, url: stored.url, bytes: stored.bytes, expires_at: expiresAt.toISOString() };
}

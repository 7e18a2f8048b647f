import type { Logger, Sql } from "../ports";
import { PermanentError } from "../queue/errors";
import type { JobContext } from "../queue/handler";
import type { Job } from "../queue/job";
import type { Queue } from "../queue/queue";
import { type Storage, StorageNotFound, tenantFileProblem } from "../storage/storage";
import { publishEvent } from "../webhooks/events";
// The exports' cell writer: an invalid row's raw text is the file's author's, so a report
// opened in a spreadsheet must not run it as a formula (`=HYPERLINK(…)`, `+cmd|…`, `@SUM(1)`).
import { csvCell } from "../exports/csv";
import { redactText } from "../redact";
import { csvRecords } from "./csv";
import { SeenSet } from "./seen-set";

export interface ImportPayload {
  file_url: string;
  tenant_id: string;
  mapping: Record<string, string>;
  list_id?: string;
  has_header: boolean;
  notify_email?: string;
}

export interface ImportDeps {
  sql: Sql;
  queue: Queue;
  storage: Storage;
  logger: Logger;
  /**
   * Data rows a batch commits in one transaction. Defaults to 5,000: batches of 10,000 or 20,000
   * cost Postgres about the same a row (within 5%), and up to three batches are in memory (two
   * committing, one filling): with 20,000 the bench's worker peaked at 205-220 MB, not ~186.
   */
  batchSize?: number;
  /**
   * Batches committing at once, each in its own transaction on its own connection. Postgres runs
   * a statement on one core, and the batch statement is what an import waits on (over 90% of its
   * time), so two in flight keep two cores busy: 300,000 rows went at 38,000 rows/s with 1,
   * 60,000 with 2 and 57,000 with 3 (same run, two cores). Defaults to 2; 1 commits one at a time.
   */
  batchesInFlight?: number;
}

export interface ImportCounts {
  rows_read: number;
  created: number;
  updated: number;
  invalid: number;
  duplicate: number;
  list_added: number;
}

export interface ImportResult extends ImportCounts {
  import_id: string;
  status: "completed";
  report_url: string | null;
}

/** The same deliberately simple check as the campaign fan-out's: keeps junk out, the provider judges the rest. */
const PLAUSIBLE_EMAIL = /^[^\s@<>()[\]\\,;:"]+@[^\s@<>()[\]\\,;:"]+\.[^\s@<>()[\]\\,;:"]+$/;
export const plausibleEmail = (s: string): boolean => s.length <= 320 && PLAUSIBLE_EMAIL.test(s);

/** The API's link to an import's error report (GET /v1/imports/:id/report): what tenants are shown. */
export const importReportPath = (importId: string): string => `/v1/imports/${importId}/report`;

interface ImportRow {
  status: string;
  rows_read: string;
  created: string;
  updated: string;
  invalid: string;
  duplicate: string;
  list_added: string;
  report_url: string | null;
}

interface Columns {
  email: number;
  name: number | undefined;
  attributes: [key: string, index: number][];
}

/**
 * A batch's contacts and their list membership, from arrays (the Neon driver has no COPY). The
 * lists row and the checkpoint are left to CHECKPOINT, so two batches can run this at once
 * without waiting on each other's row locks.
 *
 * `input` is the batch as is: the JS-side duplicate check (toLowerCase) has already folded every
 * address that Postgres' lower() would fold, which holds when every address is ASCII (no locale
 * folds two different ASCII letters into one). A batch with other characters goes through
 * UPSERT_FOLDING, which folds by lower() itself: `on conflict do update` refuses a row twice.
 * Skipping that sort saves 2-7% of the statement's CPU time.
 *
 * A contact this statement created has no membership yet, so its list_members row goes in
 * without `on conflict`, whose check before each insert cost 12-15% of the statement's CPU.
 */
const upsert = (input: string) => `
  with input as (${input}),
  up as (
    insert into contacts (tenant_id, email, name, attributes)
    select $1, email, name, coalesce(attrs::jsonb, '{}') from input
    on conflict (tenant_id, lower(email)) do update
      set name = coalesce(excluded.name, contacts.name),
          attributes = contacts.attributes || excluded.attributes, updated_at = now()
    returning id, (xmax = 0) as created
  ),
  joined_created as (
    insert into list_members (list_id, contact_id) select $5, id from up where created and $5::text is not null
    returning 1
  ),
  joined_updated as (
    insert into list_members (list_id, contact_id) select $5, id from up where not created and $5::text is not null
    on conflict do nothing returning 1
  )
  select (select count(*) from up where created)::int as created,
         (select count(*) from up where not created)::int as updated,
         ((select count(*) from joined_created) + (select count(*) from joined_updated))::int as added`;

const UPSERT = upsert("select * from unnest($2::text[], $3::text[], $4::text[]) as u(email, name, attrs)");

const UPSERT_FOLDING = upsert(`
    select distinct on (lower(u.email)) u.email, u.name, u.attrs
    from unnest($2::text[], $3::text[], $4::text[]) with ordinality as u(email, name, attrs, ord)
    order by lower(u.email), u.ord`);

/** The import's counters and checkpoint move only from where this run expects them (rows_read = $2). */
const CHECKPOINT = `
  with moved as (
    update imports set rows_read = rows_read + $3, created = created + $4, updated = updated + $5, invalid = invalid + $6,
      duplicate = duplicate + $7, list_added = list_added + $8, updated_at = now()
    where id = $1 and tenant_id = $10 and rows_read = $2 and status = 'running' returning 1
  ),
  counted as (update lists set contact_count = contact_count + $8 where id = $9 and tenant_id = $10 and exists (select from moved))
  select count(*)::int as moved from moved`;

/**
 * Batch n of a run holds the transaction-scoped advisory lock (import, n) from its start; batch
 * n+1 takes the same lock shared before its checkpoint, so it commits only after batch n has
 * ended. The wait is a lock, not a promise, so that Postgres sees it: a cycle through it (two
 * imports of one tenant waiting on each other's rows) is a deadlock Postgres detects and breaks.
 */
const HOLD_TURN = "select pg_advisory_xact_lock(hashtext($1), $2)";
const AWAIT_TURN = "select pg_advisory_xact_lock_shared(hashtext($1), $2)";

const NON_ASCII = /[^\x00-\x7f]/;

interface Batch {
  /** Its place in this run: 0, 1, 2, ... */
  seq: number;
  emails: string[];
  names: (string | null)[];
  attrs: (string | null)[];
  /** Data rows it covers (valid, invalid and duplicate): the checkpoint moves by this much. */
  rows: number;
  invalid: number;
  duplicate: number;
  report: string;
  /** Every address is ASCII (see UPSERT). */
  ascii: boolean;
}

/**
 * import.contacts, as the source document has it: stream the CSV, validate each address, upsert
 * contacts in batches (one statement a batch, from arrays), add them to the list and bump its
 * count, record rejected rows in an error report, and notify (webhook import.finished).
 *
 * Each batch commits its contacts and the `imports` row's counters and checkpoint (rows_read)
 * in one transaction. A run after a crash reads the file from the start, skips the rows already
 * committed (still feeding them to the duplicate check and the report, which is rewritten whole),
 * and so ends with the same counts as a run that never crashed. While batches commit (two at once
 * by default, checkpointing in file order), the next one is parsed. Row numbers are 1-based
 * record numbers in the file, the header being row 1.
 */
export async function runImport(payload: ImportPayload, job: Pick<Job, "id">, ctx: JobContext, deps: ImportDeps): Promise<ImportResult> {
  const { sql } = deps;
  const batchSize = deps.batchSize ?? 5_000;
  const importId = job.id;
  const listId = payload.list_id ?? null;

  if (listId) {
    const [list] = await sql.query("select 1 from lists where id = $1 and tenant_id = $2", [listId, payload.tenant_id]);
    if (!list) {
      await markFailed(sql, importId, payload, `no list ${listId}`);
      throw new PermanentError(`no list ${listId} for tenant ${payload.tenant_id}`);
    }
  }
  await sql.query(
    `insert into imports (id, tenant_id, list_id, file_url) values ($1, $2, $3, $4) on conflict (id) do nothing`,
    [importId, payload.tenant_id, listId, payload.file_url],
  );
  const [row] = await sql.query<ImportRow>(
    `select status, rows_read::text, created::text, updated::text, invalid::text, duplicate::text, list_added::text, report_url
     from imports where id = $1 and tenant_id = $2`,
    [importId, payload.tenant_id],
  );
  if (!row) throw new PermanentError(`import ${importId} belongs to another tenant`);
  const counts: ImportCounts = {
    rows_read: Number(row.rows_read),
    created: Number(row.created),
    updated: Number(row.updated),
    invalid: Number(row.invalid),
    duplicate: Number(row.duplicate),
    list_added: Number(row.list_added),
  };
  if (row.status === "completed") return finish(deps, payload, importId, counts, row.report_url);
  const checkpoint = counts.rows_read;

  // Checked here, not only in the imports API: a job can be enqueued through POST /v1/jobs too.
  const refused = tenantFileProblem(deps.storage, payload.file_url, payload.tenant_id);
  if (refused) {
    await markFailed(sql, importId, payload, `file_url: ${refused}`);
    throw new PermanentError(`file_url: ${refused}`);
  }
  let input: ReadableStream<Uint8Array>;
  try {
    input = await deps.storage.read(payload.file_url, ctx.signal);
  } catch (err) {
    if (err instanceof StorageNotFound) {
      await markFailed(sql, importId, payload, err.message);
      throw new PermanentError(err.message);
    }
    throw err;
  }

  // The error report streams to storage while the import runs.
  const encoder = new TextEncoder();
  const report = new TransformStream<Uint8Array, Uint8Array>();
  const writing = deps.storage.write(`${payload.tenant_id}/imports/${importId}-errors.csv`, report.readable, {
    contentType: "text/csv",
    signal: ctx.signal,
  });
  writing.catch(() => {}); // awaited below; this only keeps an early failure from going unhandled
  const reportWriter = report.writable.getWriter();
  let reportBuffer = "row,reason,email\n";
  const flushReport = async () => {
    if (reportBuffer.length === 0) return;
    const text = reportBuffer;
    reportBuffer = "";
    await reportWriter.write(encoder.encode(text));
  };

  const seen = new SeenSet(1 << 16);
  let columns: Columns | undefined = payload.has_header ? undefined : resolveColumns(payload.mapping, undefined);
  let recordNo = 0; // file records so far, header included
  let dataRow = 0; // data records so far

  // The batch being filled, and the commits in flight (oldest first). A commit never rejects:
  // its error goes to `failure`, which the loop checks before each new batch.
  let batch = newBatch(0);
  const inFlight: Promise<void>[] = [];
  const depth = Math.max(1, deps.batchesInFlight ?? 2);
  const turnKey = `import:${importId}`;
  let lastAscii = true;
  let failure: unknown;

  const commit = async (b: Batch, expected: number, previous: Promise<void> | undefined, holding: () => void) => {
    const result = await sql.begin(async (tx) => {
      await tx.query(HOLD_TURN, [turnKey, b.seq]);
      holding();
      let created = 0;
      let updated = 0;
      let added = 0;
      if (b.emails.length > 0) {
        const [r] = await tx.query<{ created: number; updated: number; added: number }>(b.ascii ? UPSERT : UPSERT_FOLDING, [
          payload.tenant_id,
          b.emails,
          b.names,
          b.attrs,
          listId,
        ]);
        created = r?.created ?? 0;
        updated = r?.updated ?? 0;
        added = r?.added ?? 0;
      }
      if (previous) {
        await tx.query(AWAIT_TURN, [turnKey, b.seq - 1]);
        await previous; // ended in Postgres: this only waits for its bookkeeping below
        if (failure) throw new Error(`import ${importId}: an earlier batch failed`, { cause: failure });
      }
      // Addresses equal only under Postgres' lower() (not JS's) were folded by the statement.
      const duplicate = b.duplicate + (b.emails.length - created - updated);
      const [moved] = await tx.query<{ moved: number }>(CHECKPOINT, [
        importId, expected, b.rows, created, updated, b.invalid, duplicate, added, listId, payload.tenant_id,
      ]);
      if (!moved?.moved) throw new Error(`import ${importId} moved on elsewhere (another run holds it)`);
      return { created, updated, added, duplicate };
    });
    counts.rows_read += b.rows;
    counts.created += result.created;
    counts.updated += result.updated;
    counts.invalid += b.invalid;
    counts.duplicate += result.duplicate;
    counts.list_added += result.added;
    if (b.report.length > 0) await reportWriter.write(encoder.encode(b.report));
    ctx.progress({ import_id: importId, ...counts });
  };

  let dispatched = checkpoint; // rows_read once every dispatched batch has committed
  const flushBatch = async () => {
    const b = batch;
    b.report = reportBuffer;
    reportBuffer = "";
    batch = newBatch(b.seq + 1);
    // A batch runs beside the one before only if both are ASCII (see UPSERT): otherwise the two
    // could insert one address under two spellings and wait on each other's key.
    const overlap = b.ascii && lastAscii;
    lastAscii = b.ascii;
    while (inFlight.length >= (overlap ? depth : 1)) await inFlight.shift();
    if (failure) throw failure;
    if (ctx.signal.aborted) throw ctx.signal.reason;
    const expected = dispatched;
    dispatched += b.rows;
    let holding!: () => void;
    const held = new Promise<void>((resolve) => (holding = resolve));
    const done = commit(b, expected, inFlight.at(-1), holding).catch((err: unknown) => {
      failure ??= err;
    });
    inFlight.push(done);
    // The next batch may start once this one holds its turn (or has failed without it).
    await Promise.race([held, done]);
  };

  try {
    for await (const records of csvRecords(input)) {
      for (const rec of records) {
        recordNo += 1;
        if (!columns) {
          columns = resolveColumns(payload.mapping, rec);
          continue;
        }
        dataRow += 1;
        const raw = rec[columns.email] ?? "";
        const email = raw.trim();
        const skipping = dataRow <= checkpoint;
        let reason: string | undefined;
        if (!plausibleEmail(email)) reason = email === "" ? "missing email" : "invalid email";
        else if (!seen.add(email.toLowerCase())) reason = "duplicate email in file";
        if (reason) {
          reportBuffer += `${recordNo},${reason},${csvCell(raw)}\n`;
          if (skipping) {
            if (reportBuffer.length > 64 * 1024) await flushReport();
            continue;
          }
          if (reason === "duplicate email in file") batch.duplicate += 1;
          else batch.invalid += 1;
        } else if (skipping) {
          continue;
        } else {
          batch.emails.push(email);
          if (batch.ascii && NON_ASCII.test(email)) batch.ascii = false;
          const name = columns.name === undefined ? "" : (rec[columns.name] ?? "").trim();
          batch.names.push(name === "" ? null : name);
          if (columns.attributes.length > 0) {
            const a: Record<string, string> = {};
            for (const [key, index] of columns.attributes) {
              const v = rec[index];
              if (v !== undefined && v !== "") a[key] = v;
            }
            batch.attrs.push(JSON.stringify(a));
          } else batch.attrs.push(null);
        }
        batch.rows += 1;
        if (batch.rows >= batchSize) await flushBatch();
      }
    }
    if (!columns) throw new PermanentError("the file is empty: no header row");
    if (batch.rows > 0) await flushBatch();
    while (inFlight.length > 0) await inFlight.shift();
    if (failure) throw failure;
    await flushReport();
    await reportWriter.close();
  } catch (err) {
    await Promise.all(inFlight); // each commit writes its part of the report: let them end first
    await reportWriter.abort(err).catch(() => {});
    await writing.catch(() => {});
    if (err instanceof PermanentError) await markFailed(sql, importId, payload, err.message);
    throw err;
  }
  const stored = await writing;
  await sql.query(
    `update imports set status = 'completed', report_url = $2, finished_at = now(), updated_at = now() where id = $1 and status = 'running'`,
    [importId, stored.url],
  );
  return finish(deps, payload, importId, counts, stored.url);
}

function newBatch(seq: number): Batch {
  return { seq, emails: [], names: [], attrs: [], rows: 0, invalid: 0, duplicate: 0, report: "", ascii: true };
}

async function finish(deps: ImportDeps, payload: ImportPayload, importId: string, counts: ImportCounts, storedReport: string | null): Promise<ImportResult> {
  // Outside, the report is the API's link (GET it with the tenant's key): its storage URL (a
  // server's local path, a bucket) stays in the imports row, out of the job's result and events.
  const reportUrl = storedReport === null ? null : importReportPath(importId);
  // The event id is the import's: a retry after a crash here publishes nothing twice.
  await publishEvent(deps.queue, deps.sql, {
    tenantId: payload.tenant_id,
    type: "import.finished",
    eventId: `evt_import_${importId}`,
    data: { import_id: importId, list_id: payload.list_id ?? null, ...counts, report_url: reportUrl },
  });
  if (payload.notify_email) {
    // The notice the source document asks for: counts by email, keyed so a retry sends it once.
    // The name only: a presigned URL's query string (its signature) stays out of the email.
    const fileName = safeDecode(payload.file_url.split(/[?#]/)[0]!.split("/").pop() ?? "").slice(0, 500) || null;
    await deps.queue.enqueue({
      type: "email.send",
      tenantId: payload.tenant_id,
      payload: {
        recipient: payload.notify_email,
        template_id: "sys_import_finished",
        variables: {
          rows_read: counts.rows_read,
          created: counts.created,
          updated: counts.updated,
          invalid: counts.invalid,
          duplicate: counts.duplicate,
          file_name: fileName,
        },
      },
      idempotencyKey: `import-finished:${importId}`,
      parentId: importId,
    });
  }
  deps.logger.info("import finished", { import_id: importId, ...counts });
  return { import_id: importId, status: "completed", report_url: reportUrl, ...counts };
}

/** A file name as people read it; a malformed escape is shown as it is rather than failing the import. */
function safeDecode(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}

async function markFailed(sql: Sql, importId: string, payload: ImportPayload, error: string) {
  await sql.query(
    // The list is kept only when it is the tenant's own (it may be the reason for the failure).
    `insert into imports (id, tenant_id, list_id, file_url, status, error, finished_at)
     values ($1, $2, (select id from lists where tenant_id = $2 and id = $3), $4, 'failed', $5, now())
     on conflict (id) do update set status = 'failed', error = excluded.error, finished_at = now(), updated_at = now()
     where imports.status = 'running'`,
    [importId, payload.tenant_id, payload.list_id ?? null, payload.file_url, redactText(error)],
  );
}

/** The mapping's columns as indexes: col_N always works; header names need a header row. */
export function resolveColumns(mapping: Record<string, string>, header: readonly string[] | undefined): Columns {
  const byName = new Map<string, number>();
  header?.forEach((h, i) => {
    const key = h.trim();
    if (!byName.has(key)) byName.set(key, i);
    const lower = key.toLowerCase();
    if (!byName.has(lower)) byName.set(lower, i);
  });
  const cols: Columns = { email: -1, name: undefined, attributes: [] };
  for (const [key, target] of Object.entries(mapping)) {
    const m = /^col_(\d+)$/.exec(key);
    let index: number | undefined;
    if (m) index = Number(m[1]);
    else if (header) index = byName.get(key.trim()) ?? byName.get(key.trim().toLowerCase());
    else throw new PermanentError(`mapping names the column "${key}" but the file has no header (use col_N)`);
    if (index === undefined) throw new PermanentError(`mapping names the column "${key}", which is not in the header`);
    if (target === "email") cols.email = index;
    else if (target === "name") cols.name = index;
    else if (target.startsWith("attributes.")) cols.attributes.push([target.slice("attributes.".length), index]);
    else throw new PermanentError(`mapping target "${target}" is not email, name or attributes.<key>`);
  }
  if (cols.email < 0) throw new PermanentError("the mapping must map one column to email");
  return cols;
}

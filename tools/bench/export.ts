/**
 * npx tsx tools/bench/export.ts: export.data throughput on local Postgres. BENCH_EXPORT_CONTACTS
 * contacts (default 1,000,000, inserted with generate_series) in one list, exported to CSV in a
 * temporary local-storage folder (the embedded default's store), once per page size.
 *
 *   rows/s     contacts written a second (keyset pages → CSV → storage stream)
 *   MB/s       CSV bytes a second
 *   peak RSS   highest resident set during the run, above the level before it (streaming:
 *              it should track the page size, not the export's size)
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { migrate } from "../../schema/migrate";
import { runExport } from "../../shared/exports/exporter";
import { systemClock } from "../../shared/ports";
import { createLocalStorage } from "../../workers/node/local-storage";
import { createPgSql } from "../../workers/node/postgres";
import { withDatabase } from "./support";

const CONTACTS = Number(process.env.BENCH_EXPORT_CONTACTS ?? 1_000_000);
const PAGE_SIZES = (process.env.BENCH_EXPORT_PAGES ?? "5000").split(",").map(Number);

await withDatabase("export", async (url) => {
  const sql = createPgSql(url, { max: 4 });
  const folder = await mkdtemp(join(tmpdir(), "pm-export-bench-"));
  try {
    await migrate(sql);
    const t0 = performance.now();
    await sql.query("insert into lists (id, tenant_id, name) values ('lst_bench', 'bench', 'bench')");
    await sql.query(
      `insert into contacts (tenant_id, email, name, attributes)
       select 'bench', 'person' || i || '@example.com', 'Person ' || i,
              jsonb_build_object('n', i, 'plan', case when i % 3 = 0 then 'pro' else 'free' end, 'city', 'Zürich, CH')
       from generate_series(1, $1::int) i`,
      [CONTACTS],
    );
    await sql.query("insert into list_members (list_id, contact_id) select 'lst_bench', id from contacts");
    // Set hint bits and the visibility map now, so the first timed run does not pay for them.
    await sql.query("vacuum analyze contacts");
    await sql.query("vacuum analyze list_members");
    console.log(`inserted ${CONTACTS.toLocaleString("en")} contacts in ${((performance.now() - t0) / 1000).toFixed(1)} s`);

    const storage = createLocalStorage(folder);
    const table: Record<string, string | number>[] = [];
    let id = 1;
    for (const pageSize of PAGE_SIZES) {
      global.gc?.();
      const baseRss = process.memoryUsage().rss;
      let peak = baseRss;
      const sampler = setInterval(() => (peak = Math.max(peak, process.memoryUsage().rss)), 20);
      const start = performance.now();
      const result = await runExport({ sql, storage, clock: systemClock, pageSize }, String(id++), { source: "list", list_id: "lst_bench", tenant_id: "bench" }, {
        signal: new AbortController().signal,
        progress() {},
      });
      const secs = (performance.now() - start) / 1000;
      clearInterval(sampler);
      peak = Math.max(peak, process.memoryUsage().rss);
      if (result.rows !== CONTACTS) throw new Error(`exported ${result.rows} rows, expected ${CONTACTS}`);
      table.push({
        page: pageSize,
        rows: result.rows,
        "seconds": Number(secs.toFixed(2)),
        "rows/s": Math.round(result.rows / secs),
        "CSV MB": Number((result.bytes / 1e6).toFixed(1)),
        "MB/s": Number((result.bytes / 1e6 / secs).toFixed(1)),
        "peak RSS +MB": Number(((peak - baseRss) / 1e6).toFixed(0)),
      });
      await storage.delete(result.url);
    }
    console.table(table);
  } finally {
    await sql.close();
    await rm(folder, { recursive: true, force: true });
  }
});

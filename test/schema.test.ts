import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { migrate, SchemaTooNewError } from "../schema/migrate";
import { migrations } from "../schema/migrations.gen";
import { renderMigrationsModule } from "../tools/gen-migrations";
import { createPgliteSql } from "../workers/node/pglite";
import { createPgSql } from "../workers/node/postgres";
import { createTestDatabase, waitFor } from "./support/services";

describe("schema migrations", () => {
  let db: Awaited<ReturnType<typeof createTestDatabase>>;
  beforeAll(async () => {
    db = await createTestDatabase("schema");
  });
  afterAll(async () => {
    await db.drop();
  });

  it("embeds every .sql migration (schema/migrations.gen.ts is fresh; run `npm run gen` if not)", () => {
    expect(readFileSync(new URL("../schema/migrations.gen.ts", import.meta.url), "utf8")).toBe(renderMigrationsModule());
  });

  it("applies each migration once, even when several processes start together", async () => {
    // The test database is already migrated; a fresh one gets raced by five processes at once.
    const fresh = await createTestDatabase("schema_race").catch((e) => {
      throw e;
    });
    await fresh.sql.query("drop schema public cascade; create schema public");
    const script = `
      import { migrate } from "./schema/migrate";
      import { createPgSql } from "./workers/node/postgres";
      const sql = createPgSql(process.env.URL);
      const applied = await migrate(sql);
      console.log(JSON.stringify(applied));
      await sql.close();`;
    const runs = await Promise.all(
      Array.from({ length: 5 }, () =>
        new Promise<{ code: number | null; out: string }>((resolve) => {
          const child = spawn(process.execPath, ["--import", "tsx", "--input-type=module", "-e", script], {
            env: { ...process.env, URL: fresh.url },
            stdio: ["ignore", "pipe", "inherit"],
          });
          let out = "";
          child.stdout.on("data", (d) => (out += d));
          child.on("exit", (code) => resolve({ code, out }));
        }),
      ),
    );
    expect(runs.map((r) => r.code)).toEqual([0, 0, 0, 0, 0]);
    const appliedTotal = runs.flatMap((r) => JSON.parse(r.out.trim().split("\n").pop()!) as number[]);
    expect(appliedTotal.sort()).toEqual(migrations.map((m) => m.version).sort());
    const rows = await fresh.sql.query<{ version: number }>("select version from schema_migrations order by version");
    expect(rows.map((r) => r.version)).toEqual(migrations.map((m) => m.version));
    await fresh.drop();
  });

  it("refuses a database newer than the code", async () => {
    await db.sql.query("insert into schema_migrations (version, name) values (9999, 'from the future')");
    await expect(migrate(db.sql)).rejects.toBeInstanceOf(SchemaTooNewError);
    await expect(migrate(db.sql)).rejects.toThrow(/version 9999, newer than this code/);
    await db.sql.query("delete from schema_migrations where version = 9999");
    expect(await migrate(db.sql)).toEqual([]);
  });

  it("runs on PGlite", async () => {
    const sql = await createPgliteSql(undefined);
    expect(await migrate(sql)).toEqual(migrations.map((m) => m.version));
    expect(await migrate(sql)).toEqual([]);
    await sql.close();
  });

  it("applies a failing migration not at all", async () => {
    const sql = createPgSql(db.url);
    const broken = [...migrations, { version: 900, name: "broken", sql: "create table half_done (x int); select 1/0;" }];
    await expect(migrate(sql, broken)).rejects.toThrow(/division by zero/);
    const [row] = await sql.query<{ n: number }>("select count(*)::int as n from pg_tables where tablename = 'half_done'");
    expect(row!.n).toBe(0);
    await sql.close();
  });
});

describe("a migration merged after a higher one", () => {
  it("still runs once", async () => {
    const db = await createTestDatabase("schema_gap");
    try {
      const extra = [...migrations, { version: 901, name: "later", sql: "create table later_one (x int)" }, { version: 900, name: "earlier", sql: "create table earlier_one (x int)" }];
      expect(await migrate(db.sql, extra.filter((m) => m.version !== 900))).toEqual([901]);
      expect(await migrate(db.sql, extra)).toEqual([900]);
      expect(await migrate(db.sql, extra)).toEqual([]);
      const tables = await db.sql.query<{ n: number }>("select count(*)::int as n from pg_tables where tablename in ('later_one', 'earlier_one')");
      expect(tables[0]!.n).toBe(2);
    } finally {
      await db.drop();
    }
  });
});

describe("list_members references (checked a statement at a time, 0012)", () => {
  let db: Awaited<ReturnType<typeof createTestDatabase>>;
  beforeAll(async () => {
    db = await createTestDatabase("members");
    await db.sql.query("insert into lists (id, tenant_id, name) values ('l1', 't', 'one'), ('l2', 't', 'two')");
    await db.sql.query("insert into contacts (tenant_id, email) values ('t', 'a@x.io'), ('t', 'b@x.io'), ('t', 'c@x.io')");
    await db.sql.query("insert into list_members (list_id, contact_id) select 'l1', id from contacts");
    await db.sql.query("insert into list_members (list_id, contact_id) select 'l2', id from contacts where email = 'a@x.io'");
  });
  afterAll(async () => {
    await db.drop();
  });

  const members = async () =>
    (await db.sql.query<{ m: string }>("select m.list_id || ':' || c.email as m from list_members m join contacts c on c.id = m.contact_id order by 1")).map((r) => r.m);
  const fkError = { code: "23503" };

  it("refuses a member whose contact or list does not exist, as a foreign key would", async () => {
    await expect(db.sql.query("insert into list_members (list_id, contact_id) values ('l1', 999999)")).rejects.toMatchObject(fkError);
    await expect(db.sql.query("insert into list_members (list_id, contact_id) select 'nope', id from contacts limit 1")).rejects.toMatchObject(fkError);
    // one bad row among good ones fails the whole statement, in either of two CTEs
    await expect(
      db.sql.query(
        `with a as (insert into list_members (list_id, contact_id) select 'l2', id from contacts where email = 'b@x.io' returning 1),
              b as (insert into list_members (list_id, contact_id) values ('l2', 999999) returning 1)
         select (select count(*) from a) + (select count(*) from b)`,
      ),
    ).rejects.toMatchObject(fkError);
    await expect(db.sql.query("update list_members set contact_id = 999999 where list_id = 'l2'")).rejects.toMatchObject(fkError);
    expect(await members()).toEqual(["l1:a@x.io", "l1:b@x.io", "l1:c@x.io", "l2:a@x.io"]);
  });

  it("refuses to change a referenced id or truncate contacts or lists alone", async () => {
    await expect(db.sql.query("update lists set id = 'l9' where id = 'l1'")).rejects.toMatchObject(fkError);
    await expect(db.sql.query("update contacts set id = default where email = 'a@x.io'")).rejects.toMatchObject(fkError);
    // Since 0013 the send ledger's foreign key refers to contacts too, so Postgres itself refuses (0A000).
    await expect(db.sql.query("truncate contacts")).rejects.toMatchObject({ code: expect.stringMatching(/^(23503|0A000)$/) });
    await db.sql.query("update lists set contact_count = 3 where id = 'l1'"); // other columns change freely
    expect(await members()).toHaveLength(4);
  });

  it("deletes the members of a deleted contact or list (on delete cascade)", async () => {
    await db.sql.query("delete from contacts where email = 'b@x.io'");
    expect(await members()).toEqual(["l1:a@x.io", "l1:c@x.io", "l2:a@x.io"]);
    await db.sql.query("delete from lists where id = 'l2'");
    expect(await members()).toEqual(["l1:a@x.io", "l1:c@x.io"]);
  });

  it("makes a delete of a contact wait for a transaction adding it to a list, then removes that member too", async () => {
    await db.sql.query("insert into contacts (tenant_id, email) values ('t', 'd@x.io')");
    let release!: () => void;
    const released = new Promise<void>((r) => (release = r));
    let added!: () => void;
    const isAdded = new Promise<void>((r) => (added = r));
    const adding = db.sql.begin(async (tx) => {
      await tx.query("insert into list_members (list_id, contact_id) select 'l1', id from contacts where email = 'd@x.io'");
      added();
      await released;
    });
    await isAdded;
    const deleting = db.sql.query("delete from contacts where email = 'd@x.io'");
    // The delete is blocked on the member's key-share lock until the adding transaction ends.
    await waitFor(async () => {
      const [r] = await db.sql.query<{ n: number }>(
        "select count(*)::int as n from pg_stat_activity where datname = current_database() and wait_event_type = 'Lock' and query like 'delete from contacts%'",
      );
      return r!.n === 1;
    });
    release();
    await adding;
    await deleting;
    expect(await members()).toEqual(["l1:a@x.io", "l1:c@x.io"]);
  });
});

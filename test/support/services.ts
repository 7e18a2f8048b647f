import { randomBytes } from "node:crypto";
import pg from "pg";
import { migrate } from "../../schema/migrate";
import type { Sql } from "../../shared/ports";
import { createPgSql } from "../../workers/node/postgres";

/** Where the test services are; CI and the dev machine run them on the standard ports. */
export const ADMIN_DATABASE_URL = process.env.TEST_ADMIN_DATABASE_URL ?? "postgres://postgres@127.0.0.1:5432/postgres";
export const REDIS_URL = process.env.TEST_REDIS_URL ?? "redis://127.0.0.1:6379";

export const randomId = (n = 6) => randomBytes(n).toString("hex");

export function databaseUrl(name: string): string {
  const url = new URL(ADMIN_DATABASE_URL);
  url.pathname = `/${name}`;
  return url.toString();
}

/** A fresh, migrated database for one test file, dropped by `drop()`. */
export async function createTestDatabase(label: string): Promise<{ name: string; url: string; sql: Sql; drop: () => Promise<void> }> {
  const name = `t_${label.replace(/[^a-z0-9_]/gi, "_").toLowerCase()}_${randomId(4)}`;
  const admin = new pg.Client({ connectionString: ADMIN_DATABASE_URL });
  await admin.connect();
  await admin.query(`create database "${name}"`);
  await admin.end();
  const url = databaseUrl(name);
  const sql = createPgSql(url, { max: 10 });
  await migrate(sql);
  return {
    name,
    url,
    sql,
    drop: async () => {
      await sql.close();
      const a = new pg.Client({ connectionString: ADMIN_DATABASE_URL });
      await a.connect();
      await a.query(`drop database if exists "${name}" with (force)`);
      await a.end();
    },
  };
}

/** Resolves once check() returns a truthy value; polls without fixed sleeps in the tests themselves. */
export async function waitFor<T>(check: () => Promise<T> | T, opts: { timeoutMs?: number; intervalMs?: number; what?: string } = {}): Promise<T> {
  const deadline = Date.now() + (opts.timeoutMs ?? 30_000);
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${opts.what ?? "condition"}`);
    await new Promise((r) => setTimeout(r, opts.intervalMs ?? 20));
  }
}

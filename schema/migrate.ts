import type { Sql } from "../shared/ports";
import { migrations as bundled } from "./migrations.gen";

export interface Migration {
  version: number;
  name: string;
  sql: string;
}

/** Any fixed number: serialises migrators across processes (two `npm start` at once). */
const MIGRATION_LOCK = 7_311_733_001;

export class SchemaTooNewError extends Error {
  constructor(readonly databaseVersion: number, readonly codeVersion: number) {
    super(
      `The database schema is at version ${databaseVersion}, newer than this code knows (${codeVersion}). ` +
        `Deploy the newer code instead of running this one against it.`,
    );
    this.name = "SchemaTooNewError";
  }
}

/**
 * Applies each pending migration once, each in its own transaction holding a transaction-level
 * advisory lock, so two processes starting together apply every migration exactly once.
 * Returns the versions applied by this call.
 */
export async function migrate(sql: Sql, migrations: readonly Migration[] = bundled): Promise<number[]> {
  const latest = migrations.reduce((max, m) => Math.max(max, m.version), 0);
  await sql.begin(async (tx) => {
    await tx.query("select pg_advisory_xact_lock($1)", [MIGRATION_LOCK]);
    await tx.query(
      `create table if not exists schema_migrations (
         version integer primary key, name text not null, applied_at timestamptz not null default now())`,
    );
  });
  const applied: number[] = [];
  for (const migration of [...migrations].sort((a, b) => a.version - b.version)) {
    const done = await sql.begin(async (tx) => {
      await tx.query("select pg_advisory_xact_lock($1)", [MIGRATION_LOCK]);
      const [row] = await tx.query<{ max: number | null; applied: boolean }>(
        "select max(version) as max, bool_or(version = $1) as applied from schema_migrations",
        [migration.version],
      );
      const current = row?.max ?? 0;
      if (current > latest) throw new SchemaTooNewError(current, latest);
      // Each version once, by itself: one merged after a higher one (parallel branches) still runs.
      if (row?.applied) return false;
      await tx.query(migration.sql);
      await tx.query("insert into schema_migrations (version, name) values ($1, $2)", [
        migration.version,
        migration.name,
      ]);
      return true;
    });
    if (done) applied.push(migration.version);
  }
  // A database newer than the code with nothing pending must still be refused.
  const [row] = await sql.query<{ max: number | null }>("select max(version) as max from schema_migrations");
  if ((row?.max ?? 0) > latest) throw new SchemaTooNewError(row?.max ?? 0, latest);
  return applied;
}

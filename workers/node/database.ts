import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { migrate } from "../../schema/migrate";
import type { Logger, Sql } from "../../shared/ports";
import type { HotSqlClient } from "../../shared/queue/ledger";
import type { NodeConfig } from "./config";
import { createPgliteSql } from "./pglite";
import { createPgSql } from "./postgres";

export interface Database {
  sql: Sql;
  /** Claims and outcomes (see Ledger); undefined where there is no separate pool (PGlite, API-only). */
  hotSql?: Sql;
  pepper: string;
  /** Seals DKIM private keys: DKIM_ENCRYPTION_KEY, or on the embedded default one made and kept in DATA_DIR. */
  dkimEncryptionKey?: string;
  adminKey?: string;
  /** Set on the embedded default: the admin key made and kept in DATA_DIR. */
  localAdminKey?: string;
  embedded: boolean;
  close(): Promise<void>;
}

/** Reads a secret kept in DATA_DIR, making it on first use (embedded default only). */
function localSecret(dataDir: string, name: string, make: () => string): string {
  const file = join(dataDir, name);
  if (existsSync(file)) return readFileSync(file, "utf8").trim();
  const value = make();
  writeFileSync(file, `${value}\n`, { mode: 0o600 });
  return value;
}

/**
 * Opens the database the configuration names, migrated to this code's schema: Postgres at
 * DATABASE_URL, or PGlite in DATA_DIR (the embedded default, which also keeps its API key
 * pepper and a local admin key there).
 */
export async function openDatabase(config: NodeConfig, logger: Logger, opts: { migrate?: boolean } = {}): Promise<Database> {
  let db: Database;
  if (!config.DATABASE_URL) {
    const dataDir = resolve(config.DATA_DIR);
    mkdirSync(dataDir, { recursive: true });
    const pepper = config.API_KEY_PEPPER ?? localSecret(dataDir, "api-key-pepper", () => randomBytes(24).toString("base64url"));
    const dkimEncryptionKey = config.DKIM_ENCRYPTION_KEY ?? localSecret(dataDir, "dkim-encryption-key", () => randomBytes(32).toString("base64url"));
    const localAdminKey = config.ADMIN_API_KEY
      ? undefined
      : localSecret(dataDir, "admin-key", () => `pmk_admin_${randomBytes(24).toString("base64url")}`);
    const sql = await createPgliteSql(join(dataDir, "pglite"), {
      onError: (err) => logger.warn("pglite error", { err: err.message }),
    });
    db = { sql, pepper, dkimEncryptionKey, adminKey: config.ADMIN_API_KEY ?? localAdminKey, localAdminKey, embedded: true, close: () => sql.close() };
  } else {
    const onError = (err: Error) => logger.warn("postgres connection error", { err: err.message });
    const sql = createPgSql(config.DATABASE_URL, {
      max: config.DATABASE_POOL_SIZE,
      applicationName: `penguinmails-jobs:${config.ROLE}`,
      // Parse and plan each statement once per connection: 1.5 -> 1.0 ms for one enqueue here.
      prepare: true,
      onError,
    });
    // Claims and outcomes commit without waiting for the disk: +15-30% drain rate measured here,
    // and such a write lost in a database crash only makes a job run again (effects are idempotent).
    const hotPool =
      config.ROLE === "api"
        ? undefined
        : createPgSql(config.DATABASE_URL, {
            max: Math.max(4, Math.ceil(config.DATABASE_POOL_SIZE / 2)),
            applicationName: `penguinmails-jobs:${config.ROLE}:hot`,
            synchronousCommit: false,
            prepare: true,
            onError,
          });
    // Lease renewals on a connection of their own: in the hot pool they waited for a connection
    // behind claims and outcomes, and when those were blocked (a lock held 8 s) the leases ran
    // out and the rescue ran live jobs again. One connection: the worker sends one renewal at a time.
    const beatPool =
      hotPool &&
      createPgSql(config.DATABASE_URL, {
        max: 1,
        applicationName: `penguinmails-jobs:${config.ROLE}:heartbeat`,
        synchronousCommit: false,
        prepare: true,
        onError,
      });
    const hotSql: (Sql & HotSqlClient) | undefined =
      hotPool && beatPool
        ? {
            query: (text, params) => hotPool.query(text, params),
            begin: (fn) => hotPool.begin(fn),
            heartbeats: beatPool,
            close: async () => {
              await beatPool.close();
              await hotPool.close();
            },
          }
        : undefined;
    db = {
      sql,
      hotSql,
      pepper: config.API_KEY_PEPPER!,
      dkimEncryptionKey: config.DKIM_ENCRYPTION_KEY,
      adminKey: config.ADMIN_API_KEY,
      embedded: false,
      close: async () => {
        await hotSql?.close();
        await sql.close();
      },
    };
  }
  if (opts.migrate !== false) {
    try {
      const applied = await migrate(db.sql);
      if (applied.length > 0) logger.info("schema migrated", { applied });
    } catch (err) {
      await db.close();
      throw err;
    }
  }
  return db;
}

/**
 * The Sql port on PGlite (Postgres compiled to WASM, in-process): for local development and
 * tests without a server. It is a single session running one statement at a time, which
 * PGlite itself serialises, so the adapter only has to make it answer like node-postgres.
 * A data directory belongs to one process at a time (process-lock.ts): a second one is refused.
 */
import { PGlite, types as pgliteTypes, type Transaction } from "@electric-sql/pglite";
import type { Sql, SqlClient } from "../../shared/ports";
import { ChannelHandlers, checkPgChannel, quotePgChannel } from "./channels";
import { type DirectoryLock, lockDirectory } from "./process-lock";

export { DirectoryInUseError } from "./process-lock";

export interface PgliteSqlOptions {
  /** Receives errors thrown by listen callbacks, which have no caller to reject. */
  onError?: (err: Error) => void;
}

/**
 * dataDir undefined keeps the database in memory (gone on close). A data directory another
 * process has open throws DirectoryInUseError (naming that process) before anything is read.
 */
export async function createPgliteSql(dataDir: string | undefined, opts: PgliteSqlOptions = {}): Promise<Sql> {
  const lock: DirectoryLock | undefined = dataDir === undefined ? undefined : lockDirectory(dataDir);
  let db: PGlite;
  try {
    db = await PGlite.create({
      dataDir,
      // PGlite returns int8 as a number (or a BigInt past 2^53); node-postgres returns the
      // decimal string. Matching pg keeps counts and ids the same type on both runtimes. int8[]
      // follows, because PGlite's array parsers look up the element parser at parse time.
      parsers: { [pgliteTypes.INT8]: (value: string) => value },
    });
  } catch (err) {
    lock?.release();
    throw err;
  }

  // PGlite's own listen()/unlisten() splice the channel unquoted into LISTEN/UNLISTEN, so a
  // mixed-case or dashed name either fails or is never UNLISTENed. Issuing the statements
  // ourselves, quoted like the pg adapter does, and routing from the one global notification
  // hook, gives both adapters the same channel semantics.
  const channels = new ChannelHandlers<string>({
    activate: async (channel) => {
      await db.exec(`LISTEN ${quotePgChannel(channel)}`);
    },
    deactivate: async (channel) => {
      if (!db.closed) await db.exec(`UNLISTEN ${quotePgChannel(channel)}`);
    },
    onError: (err) => opts.onError?.(err),
  });
  const stopNotifications = db.onNotification((channel, payload) => channels.deliver(channel, payload));

  let closing: Promise<void> | undefined;

  return {
    query: <T>(text: string, params?: readonly unknown[]) => runQuery<T>(db, text, params),

    // PGlite holds its lock for the whole callback: queries on the Sql object (not tx) made
    // inside fn would wait for the transaction and deadlock it. Use tx.
    begin: <T>(fn: (tx: SqlClient) => Promise<T>) =>
      db.transaction((tx) =>
        fn({ query: <R>(text: string, params?: readonly unknown[]) => runQuery<R>(tx, text, params) }),
      ),

    // async, so an invalid channel rejects like every other listen failure instead of throwing.
    async listen(channel: string, onPayload: (payload: string) => void): Promise<() => Promise<void>> {
      checkPgChannel(channel);
      return channels.add(channel, onPayload);
    },

    close() {
      closing ??= (async () => {
        stopNotifications();
        channels.clear();
        try {
          if (!db.closed) await db.close();
        } finally {
          lock?.release();
        }
      })();
      return closing;
    },
  };
}

/**
 * Same contract as the pg adapter: no parameters means the simple protocol (several
 * statements allowed, last result returned), parameters mean one prepared statement.
 */
async function runQuery<T>(
  runner: PGlite | Transaction,
  text: string,
  params: readonly unknown[] | undefined,
): Promise<T[]> {
  if (!params || params.length === 0) {
    const results = await runner.exec(text);
    return (results[results.length - 1]?.rows ?? []) as T[];
  }
  const result = await runner.query<T>(text, [...params]);
  return result.rows;
}

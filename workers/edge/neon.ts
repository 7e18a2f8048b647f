/**
 * The Sql port on the Neon serverless driver's WebSocket Pool (node-postgres over a WebSocket),
 * for the Cloudflare Worker. Its HTTP mode cannot hold a transaction open across awaits, and
 * begin(fn) needs exactly that, so everything goes over WebSockets.
 *
 * No `listen`: an edge invocation ends when its work does, so nothing would sit waiting for a
 * NOTIFY. On Workers a WebSocket belongs to the request that opened it: create the Sql per
 * invocation and close() it (ctx.waitUntil) at the end.
 *
 * Runtimes without a global WebSocket (Node 20) must set `neonConfig.webSocketConstructor`
 * (e.g. to the `ws` package) before the first query; workerd has one.
 */
import { markOutage } from "../../shared/sql-errors";
import {
  type ClientConfig,
  type CustomTypesConfig,
  DatabaseError,
  type NeonConfigGlobalAndClient,
  Pool,
  type PoolClient,
  types as pgTypes,
} from "@neondatabase/serverless";
import type { Sql, SqlClient } from "../../shared/ports";

export interface NeonSqlOptions {
  /** Receives errors that have no caller to reject (an idle pooled connection dying). */
  onError?: (e: Error) => void;
  /**
   * A self-hosted WebSocket proxy instead of Neon's (tools/ws-tcp-bridge.ts in development).
   * A string gets `?address=host:port` appended by the driver; a leading ws:// or wss:// is
   * stripped (the driver adds the scheme itself) and, unless useSecureWebSocket says otherwise,
   * picks the scheme.
   */
  wsProxy?: string | ((host: string, port: number | string) => string);
  /** wss (true, the driver's default) or ws. */
  useSecureWebSocket?: boolean;
  /**
   * "password" sends startup, password and first query in one go: one round trip fewer, but
   * only a server asking for a cleartext password (Neon's proxy) accepts it; plain Postgres
   * with trust or SCRAM auth rejects the early password ("invalid frontend message type 112").
   * Defaults to false when wsProxy is set (not Neon), else to the driver's "password".
   */
  pipelineConnect?: false | "password";
  /**
   * Connections the pool may open. Workers allow 6 simultaneous outgoing connections per
   * invocation and Upstash calls need some of them, so the default is 2.
   */
  max?: number;
}

const INT8_OID = 20;

/**
 * int8 stays a decimal string (a bigint can exceed 2^53; the pg and PGlite adapters agree), set
 * per pool so nothing another module sets on the driver's global type table changes it.
 */
const typeParsers: CustomTypesConfig = {
  getTypeParser: ((oid: number, format?: "text" | "binary") =>
    oid === INT8_OID && format !== "binary"
      ? (value: string) => value
      : pgTypes.getTypeParser(oid, format)) as CustomTypesConfig["getTypeParser"],
};

export function createNeonSql(connectionString: string, opts: NeonSqlOptions = {}): Sql {
  let closing: Promise<void> | undefined;
  const report = (err: unknown) => {
    // Sockets torn down by close() report an ErrorEvent each in workerd: expected, not news.
    if (closing) return;
    try {
      opts.onError?.(err instanceof Error ? err : new Error(String(err)));
    } catch {
      // An error reporter that throws must not take down the connection that reported.
    }
  };

  const pool = new Pool({ connectionString, types: typeParsers, max: opts.max ?? 2 });
  // An idle client whose socket goes away emits here; unhandled, it would crash the process.
  // ('error' is also the one listener that does not switch the pool off its fetch fast path.)
  pool.on("error", report);

  // neonConfig fields are per client; the pool builds clients itself, so a subclass sets them
  // on each one before it connects. The global neonConfig stays untouched, so two Sql instances
  // (Neon in production, a local bridge in tests) can live in one process.
  const overrides = clientConfig(opts);
  const BaseClient = pool.Client;
  pool.Client = class extends BaseClient {
    constructor(config?: string | ClientConfig) {
      super(config);
      Object.assign(this.neonConfig, overrides);
    }
  };

  /**
   * Checks out a client for fn and releases it, destroying it when its state is unknown.
   * Used instead of pool.query, which would send the query over HTTP when the process-wide
   * neonConfig.poolQueryViaFetch is on (no multi-statement text, no local bridge) and which
   * destroys the connection after any SQL error, costing a new WebSocket and auth next time.
   */
  async function withClient<T>(fn: (client: PoolClient, markBroken: (err: unknown) => void) => Promise<T>): Promise<T> {
    const client = await pool.connect();
    let broken: Error | undefined;
    const markBroken = (err: unknown) => {
      broken ??= err instanceof Error ? err : new Error(String(err));
    };
    // The pool only listens on idle clients; a checked-out one losing its socket would
    // otherwise emit an unhandled 'error'.
    const onClientError = (err: Error) => {
      markBroken(err);
      report(err);
    };
    client.on("error", onClientError);
    try {
      return await fn(client, markBroken);
    } finally {
      client.off("error", onClientError);
      client.release(broken);
    }
  }


  return {
    query: <T>(text: string, params?: readonly unknown[]) =>
      withClient(async (client, markBroken) => {
        try {
          return await runQuery<T>(client, text, params);
        } catch (err) {
          // A DatabaseError is the server's answer: the connection is fine. Anything else
          // (socket gone, protocol confusion) leaves it unusable.
          if (!(err instanceof DatabaseError)) markBroken(err);
          throw err;
        }
      }).catch((err: unknown) => {
        throw markOutage(err);
      }),

    begin: <T>(fn: (tx: SqlClient) => Promise<T>) =>
      withClient(async (client, markBroken) => {
        try {
          await client.query("BEGIN");
          const result = await fn({
            query: <R>(text: string, params?: readonly unknown[]) => runQuery<R>(client, text, params),
          });
          const commit = await client.query("COMMIT");
          // Postgres answers COMMIT of a failed transaction with ROLLBACK and no error; a caller
          // that swallowed an error inside fn must not believe its writes were saved.
          if (commit.command === "ROLLBACK") {
            throw new Error("transaction was aborted by an earlier error; COMMIT rolled it back");
          }
          return result;
        } catch (err) {
          try {
            await client.query("ROLLBACK");
          } catch (rollbackErr) {
            // Not known to be outside a transaction: never hand this connection out again.
            markBroken(rollbackErr);
          }
          throw err;
        }
      }).catch((err: unknown) => {
        throw markOutage(err);
      }),

    close() {
      // Pool#end rejects when called twice, so every caller shares the first attempt.
      closing ??= pool.end();
      return closing;
    },
  };
}

/** The per-client neonConfig fields implied by the options; unset ones keep the driver's defaults. */
function clientConfig(opts: NeonSqlOptions): Partial<NeonConfigGlobalAndClient> {
  const out: Partial<NeonConfigGlobalAndClient> = {};
  let secureFromScheme: boolean | undefined;
  if (typeof opts.wsProxy === "string") {
    const match = /^(wss?):\/\//i.exec(opts.wsProxy);
    secureFromScheme = match ? match[1]!.toLowerCase() === "wss" : undefined;
    out.wsProxy = match ? opts.wsProxy.slice(match[0].length) : opts.wsProxy;
  } else if (opts.wsProxy) {
    out.wsProxy = opts.wsProxy;
  }
  const secure = opts.useSecureWebSocket ?? secureFromScheme;
  if (secure !== undefined) out.useSecureWebSocket = secure;
  const pipeline = opts.pipelineConnect ?? (opts.wsProxy ? false : undefined);
  if (pipeline !== undefined) out.pipelineConnect = pipeline;
  return out;
}

/**
 * Without parameters the text goes through the simple protocol, which accepts several
 * statements at once (migrations); with parameters it is one prepared statement.
 */
async function runQuery<T>(client: PoolClient, text: string, params: readonly unknown[] | undefined): Promise<T[]> {
  if (!params || params.length === 0) {
    // The typings promise one result, but a multi-statement text yields one per statement.
    const result = (await client.query(text)) as { rows: unknown[] } | { rows: unknown[] }[];
    const last = Array.isArray(result) ? result[result.length - 1] : result;
    return (last?.rows ?? []) as T[];
  }
  const result = await client.query(text, [...params]);
  return result.rows as T[];
}

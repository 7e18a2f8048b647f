/**
 * The Sql port on node-postgres: a pool for queries and transactions, plus one dedicated
 * connection for LISTEN (a pooled connection would drop its LISTENs when returned).
 */
import pg from "pg";
import type { Sql, SqlClient } from "../../shared/ports";
import { markOutage } from "../../shared/sql-errors";
import { ChannelHandlers, checkPgChannel, quotePgChannel } from "./channels";

export interface PgSqlOptions {
  /** Pool size; pg's default (10) when omitted. */
  max?: number;
  /** Shows up in pg_stat_activity; the listener connection gets a ":listen" suffix. */
  applicationName?: string;
  /**
   * Receives errors that have no caller to reject: idle pool connections dying, the listener
   * connection dropping or failing to reconnect, a LISTEN callback throwing.
   */
  onError?: (err: Error) => void;
  /**
   * false: this pool's commits return before their WAL reaches disk (synchronous_commit=off).
   * For the engine's hot path only (claims, heartbeats, outcomes), where a write lost in a
   * database crash just means the job runs again; never for enqueues. Defaults to true.
   */
  synchronousCommit?: boolean;
  /**
   * Run every parameterised statement as a named prepared statement, so each connection parses
   * and plans it once. For pools that run a few fixed statements (the engine's hot path); a pool
   * serving ad-hoc filters should leave it off, since a cached generic plan may suit them badly.
   * Defaults to false.
   */
  prepare?: boolean;
}

const INT8_OID = 20;

/**
 * Per-pool type parsers: int8 stays a decimal string (a bigint can exceed 2^53, and the
 * PGlite adapter returns strings too), no matter what other code sets on pg.types globally.
 */
const types: pg.CustomTypesConfig = {
  getTypeParser: ((oid: number, format?: "text" | "binary") =>
    oid === INT8_OID && format !== "binary"
      ? (value: string) => value
      : pg.types.getTypeParser(oid, format)) as pg.CustomTypesConfig["getTypeParser"],
};

/** Reconnect delays for the listener: quick first retry, capped so an outage costs little. */
const LISTEN_BACKOFF_MIN_MS = 100;
const LISTEN_BACKOFF_MAX_MS = 5_000;

export function createPgSql(connectionString: string, opts: PgSqlOptions = {}): Sql {
  const report = (err: unknown) => {
    try {
      opts.onError?.(err instanceof Error ? err : new Error(String(err)));
    } catch {
      // An error reporter that throws must not take down the connection that reported.
    }
  };

  const pool = new pg.Pool({
    connectionString,
    max: opts.max,
    application_name: opts.applicationName,
    types,
    options: opts.synchronousCommit === false ? "-c synchronous_commit=off" : undefined,
  });
  // An idle client whose server goes away emits here; unhandled, it would crash the process.
  pool.on("error", report);

  const listener = new Listener(
    {
      connectionString,
      application_name: opts.applicationName ? `${opts.applicationName}:listen` : undefined,
      types,
      // The listener sits idle for hours; keepalive is what notices a silently dead peer.
      keepAlive: true,
      keepAliveInitialDelayMillis: 10_000,
    },
    report,
  );

  let closing: Promise<void> | undefined;

  return {
    // Errors leave marked when they are an outage (see markOutage): the engine then retries soon.
    query: <T>(text: string, params?: readonly unknown[]) =>
      runQuery<T>(pool, text, params, opts.prepare === true).catch((err: unknown) => {
        throw markOutage(err);
      }),

    begin: <T>(fn: (tx: SqlClient) => Promise<T>): Promise<T> =>
      transaction(fn).catch((err: unknown) => {
        throw markOutage(err);
      }),

    listen: (channel, onPayload) => listener.listen(channel, onPayload),

    close() {
      // pg.Pool#end throws when called twice, so every caller shares the first attempt.
      closing ??= (async () => {
        await listener.close();
        await pool.end();
      })();
      return closing;
    },
  };

  async function transaction<T>(fn: (tx: SqlClient) => Promise<T>): Promise<T> {
    const client = await pool.connect();
    // Set when the connection's state is unknown; release(err) destroys it instead of
    // handing a half-open transaction to the next caller.
    let broken: Error | undefined;
    // The pool only listens for errors on idle clients; a checked-out client whose server
    // goes away would otherwise emit an unhandled 'error' and crash the process.
    const onClientError = (err: Error) => {
      broken ??= err;
      report(err);
    };
    client.on("error", onClientError);
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
        broken = rollbackErr instanceof Error ? rollbackErr : new Error(String(rollbackErr));
      }
      throw err;
    } finally {
      client.off("error", onClientError);
      client.release(broken);
    }
  }
}

/**
 * Without parameters the text goes through the simple protocol, which accepts several
 * statements at once (migrations); with parameters it is one prepared statement.
 */
async function runQuery<T>(
  runner: pg.Pool | pg.PoolClient | pg.Client,
  text: string,
  params: readonly unknown[] | undefined,
  prepare = false,
): Promise<T[]> {
  if (!params || params.length === 0) {
    // pg's typings promise one result, but a multi-statement text yields one per statement.
    const result = (await runner.query(text)) as pg.QueryResult | pg.QueryResult[];
    const last = Array.isArray(result) ? result[result.length - 1] : result;
    return (last?.rows ?? []) as T[];
  }
  const result = prepare
    ? await runner.query({ name: statementName(text), text, values: [...params] })
    : await runner.query(text, [...params]);
  return result.rows as T[];
}

const statementNames = new Map<string, string>();

/** A stable name per statement text (FNV-1a), memoised: prepared statements are per connection. */
function statementName(text: string): string {
  let name = statementNames.get(text);
  if (!name) {
    let h = 0x811c9dc5;
    for (let i = 0; i < text.length; i++) {
      h ^= text.charCodeAt(i);
      h = Math.imul(h, 0x01000193) >>> 0;
    }
    name = `pm_${h.toString(36)}_${text.length}`;
    statementNames.set(text, name);
  }
  return name;
}

/**
 * One connection, shared by every channel of one Sql instance, that keeps itself LISTENing:
 * when it drops (Postgres restarted, backend terminated) it reconnects with backoff and
 * re-issues LISTEN for every channel that still has handlers.
 */
class Listener {
  private readonly channels = new ChannelHandlers<string>({
    // Repeated for every handler, even if the connect just did it: a repeated LISTEN is a
    // no-op, and it closes the gap where this channel was added after the connect issued its
    // LISTENs. It also makes listen() reject whenever the connection cannot be made now.
    activateEach: true,
    activate: async (channel) => {
      const client = await this.ensureConnected();
      await client.query(`LISTEN ${quotePgChannel(channel)}`);
    },
    deactivate: async (channel) => {
      const client = this.client;
      if (!client) return; // not connected: a reconnect only LISTENs channels still wanted
      try {
        await client.query(`UNLISTEN ${quotePgChannel(channel)}`);
      } catch (err) {
        // The connection is going away, which ends the LISTEN anyway.
        this.report(err);
      }
    },
    // Thrown inside pg's socket handler it would break the connection for every channel.
    onError: (err) => this.report(err),
  });
  /** Set only while connected and LISTENing on every channel that existed at connect time. */
  private client: pg.Client | undefined;
  private connecting: Promise<pg.Client> | undefined;
  private retryTimer: ReturnType<typeof setTimeout> | undefined;
  private attempts = 0;
  private closed = false;

  constructor(
    private readonly config: pg.ClientConfig,
    private readonly report: (err: unknown) => void,
  ) {}

  /**
   * Resolves once the LISTEN is active and rejects if it cannot be made active now (the
   * handler is then dropped). Once active, it survives reconnects.
   */
  async listen(channel: string, onPayload: (payload: string) => void): Promise<() => Promise<void>> {
    if (this.closed) throw new Error("Sql is closed");
    checkPgChannel(channel);
    return this.channels.add(channel, onPayload);
  }

  private ensureConnected(): Promise<pg.Client> {
    if (this.client) return Promise.resolve(this.client);
    this.connecting ??= this.connect().finally(() => {
      this.connecting = undefined;
    });
    return this.connecting;
  }

  private async connect(): Promise<pg.Client> {
    const client = new pg.Client(this.config);
    client.on("notification", (msg) => this.channels.deliver(msg.channel, msg.payload ?? ""));
    // Both fire when the server goes away; either one starts the reconnect.
    client.on("error", (err) => this.lost(client, err));
    client.on("end", () => this.lost(client));
    try {
      await client.connect();
      for (const channel of this.channels.channels()) {
        await client.query(`LISTEN ${quotePgChannel(channel)}`);
      }
    } catch (err) {
      client.end().catch(() => {});
      this.scheduleReconnect();
      throw err;
    }
    if (this.closed) {
      await client.end().catch(() => {});
      throw new Error("Sql is closed");
    }
    this.client = client;
    this.attempts = 0;
    return client;
  }

  private lost(client: pg.Client, err?: Error): void {
    if (err) this.report(err);
    if (client !== this.client) return; // a failed connect attempt, already handled there
    this.client = undefined;
    client.end().catch(() => {});
    this.scheduleReconnect();
  }

  private scheduleReconnect(): void {
    if (this.closed || this.retryTimer || this.channels.size === 0) return;
    const delay = Math.min(LISTEN_BACKOFF_MIN_MS * 2 ** this.attempts, LISTEN_BACKOFF_MAX_MS);
    this.attempts++;
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      if (this.closed || this.client || this.channels.size === 0) return;
      // connect() schedules the next attempt itself when this one fails.
      this.ensureConnected().catch((err) => this.report(err));
    }, delay);
    // Retrying must not be the only thing keeping a process alive.
    this.retryTimer.unref?.();
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
    this.channels.clear();
    const client = this.client ?? (await this.connecting?.catch(() => undefined));
    this.client = undefined;
    await client?.end().catch(() => {});
  }
}

/**
 * The ports: small interfaces the runtimes fill in. Everything under shared/ talks to the
 * outside world only through these, so the same core runs on Node and on Cloudflare's edge.
 */

/** A parameterised query runner: node-postgres, the Neon serverless driver or PGlite. */
export interface SqlClient {
  /** Runs one statement and returns its rows. Parameters are positional ($1, $2, ...). */
  query<T = Record<string, unknown>>(text: string, params?: readonly unknown[]): Promise<T[]>;
}

export interface Sql extends SqlClient {
  /** Runs fn inside one transaction on one connection; commits when it resolves, rolls back when it throws. */
  begin<T>(fn: (tx: SqlClient) => Promise<T>): Promise<T>;
  /**
   * Subscribes to a LISTEN channel where the connection allows it (pg, PGlite); undefined on
   * drivers that cannot hold a session (Neon over HTTP). Returns the unsubscribe function.
   */
  listen?(channel: string, onPayload: (payload: string) => void): Promise<() => Promise<void>>;
  close(): Promise<void>;
}

/** A Redis command: the same JSON array Upstash's REST API takes, e.g. ["ZADD", "k", 1, "m"]. */
export type RedisCommand = readonly (string | number)[];

/**
 * Redis, through commands that both a TCP client and Upstash's REST API serve. Results are
 * returned as Redis gives them (strings, numbers, nested arrays, null).
 */
export interface Redis {
  /** Runs commands in one round trip; a command that fails rejects the whole call. */
  pipeline(commands: readonly RedisCommand[]): Promise<unknown[]>;
  /** Runs a Lua script (EVALSHA, falling back to EVAL once per connection). */
  eval(script: string, keys: readonly string[], args: readonly (string | number)[]): Promise<unknown>;
  /**
   * Waits until a message is published on one of the channels or the timeout passes
   * (Node only: a subscriber connection). Undefined on the edge, which never idles.
   */
  subscribe?(channel: string, onMessage: (message: string) => void): Promise<() => Promise<void>>;
  close(): Promise<void>;
}

export interface Clock {
  now(): Date;
}

export const systemClock: Clock = { now: () => new Date() };

export type LogFields = Record<string, unknown>;

/** Structured logger. Implementations must redact secrets; callers never pass raw keys. */
export interface Logger {
  debug(msg: string, fields?: LogFields): void;
  info(msg: string, fields?: LogFields): void;
  warn(msg: string, fields?: LogFields): void;
  error(msg: string, fields?: LogFields): void;
  child(fields: LogFields): Logger;
}

export const silentLogger: Logger = {
  debug() {},
  info() {},
  warn() {},
  error() {},
  child() {
    return silentLogger;
  },
};

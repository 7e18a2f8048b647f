/**
 * The package's entry point (`import { startJobs } from "penguinmails-jobs"`): the Node runtime
 * as a library. One call starts what `npm start -- --worker-only` runs (migrations, the
 * dispatcher, the worker pools, the scheduler, the stats flush), with the settings that make it
 * fast (workers/node/database.ts), plus the job types and handlers of the embedding app beside
 * the built-in ones. Wiring only, like the other entries: the behaviour lives in shared/.
 */
import { migrate } from "../../schema/migrate";
import { waitForFinished } from "../../shared/api/job-wait";
import { extendCatalog, poolsOf } from "../../shared/jobs/catalog";
import { type JobTypeInput, jobType } from "../../shared/jobs/definition";
import { type Logger, type Redis, type Sql, type SqlClient, silentLogger } from "../../shared/ports";
import type { Engine } from "../../shared/queue/engine";
import type { Handler } from "../../shared/queue/handler";
import type { HotSqlClient } from "../../shared/queue/ledger";
import type { Enqueued, EnqueueInput, Queue } from "../../shared/queue/queue";
import type { Job } from "../../shared/queue/job";
import type { WorkerPool } from "../../shared/queue/worker";
import { ConfigError, loadConfig } from "./config";
import { type Database, openDatabase } from "./database";
import { startNodeRuntime } from "./runtime";

export interface StartJobsOptions {
  /**
   * Postgres connection string. The runtime opens its pools from it: the main one, one for
   * claims and outcomes that commits without waiting for the disk, one connection for lease
   * heartbeats, all with prepared statements. Without it and without `sql`: embedded PGlite in
   * DATA_DIR (settings), as `npm start` does.
   */
  databaseUrl?: string;
  /** Redis connection string: jobs dispatch through Redis lanes. Without it and `redis`: straight from Postgres. */
  redisUrl?: string;
  /**
   * Your own Postgres pool instead of databaseUrl (see createPgSql). It is migrated and used for
   * everything, claims too, unless `hotSql` is given as well; close() leaves both open (they are yours).
   */
  sql?: Sql;
  /** Claims, outcomes and heartbeats (`heartbeats`: a connection of their own); defaults to sql. */
  hotSql?: Sql & HotSqlClient;
  /** Your own Redis client instead of redisUrl (see createIoRedis); close() leaves it open. */
  redis?: Redis;
  /**
   * The secret mixed into API key hashes and, unless UNSUBSCRIBE_SECRET is set, unsubscribe
   * links: API_KEY_PEPPER of your deployment. Required with databaseUrl or sql.
   */
  apiKeyPepper?: string;
  /** Your job types, added beside the built-in catalog. Only `type` and `payload` are required (see jobType()). */
  // any: so that a priority or clientRules function may take the type's own payload type.
  jobTypes?: readonly JobTypeInput<any>[];
  /** Handlers of your job types; the built-in types keep theirs. */
  handlers?: readonly Handler[];
  /** The pools this process runs. Defaults to every pool the catalog names (built-in and yours); POOLS in settings is not read. */
  pools?: readonly string[];
  /** Slots per pool. Defaults: email 50, import 2, any other pool 10 (EMAIL_/IMPORT_/DEFAULT_CONCURRENCY). */
  concurrency?: Readonly<Record<string, number>>;
  /** Serve the HTTP API too (the same app as `npm start`). Defaults to no HTTP server. */
  api?: { port?: number; host?: string };
  /**
   * Any other variable of the README's "Configuration", as the environment would give it
   * (`{ SMTP_URL: "smtp://…", LEASE_MS: "10000" }`), checked by the same rules. The process
   * environment is not read: pass what you want from it.
   */
  settings?: Readonly<Record<string, string | undefined>>;
  /** Defaults to a silent one: a library logs nothing unless asked (see workers/node/logger.ts, createLogger). */
  logger?: Logger;
  /** How long close() lets running jobs finish before handing them back. Defaults to 30 s. */
  shutdownGraceMs?: number;
}

export interface Jobs {
  queue: Queue;
  engine: Engine;
  /** The main pool (yours when given): run your transactions here to enqueue inside them. */
  sql: Sql;
  pools: readonly WorkerPool[];
  /** The API's base URL when `api` was given. */
  url?: string;
  /** Enqueues one job; with `{ tx }` inside your transaction (it exists only if you commit). */
  enqueue(input: EnqueueInput, options?: { tx?: SqlClient }): Promise<Enqueued>;
  /** Up to 1,000 jobs in one statement, all or nothing. */
  enqueueMany(inputs: readonly EnqueueInput[], options?: { tx?: SqlClient }): Promise<Enqueued[]>;
  /**
   * The job once it is completed, failed or cancelled, or as it is after `seconds` (default 30;
   * check `state`). Reads the ledger with a backoff (50 ms to 1 s), as GET /v1/jobs/:id?wait= does.
   */
  wait(id: string, options?: { seconds?: number; signal?: AbortSignal }): Promise<Job>;
  /** Graceful stop: the scheduler stops, running jobs finish within the grace period, pools close. */
  close(): Promise<void>;
}

function settingsOf(options: StartJobsOptions): Record<string, string | undefined> {
  const given = { ...options.settings };
  const named: Record<string, string | undefined> = {
    DATABASE_URL: options.databaseUrl,
    REDIS_URL: options.redisUrl,
    API_KEY_PEPPER: options.apiKeyPepper,
    ROLE: options.api ? "all" : "worker",
    HOST: options.api?.host,
    PORT: options.api?.port === undefined ? undefined : String(options.api.port),
    SHUTDOWN_GRACE_MS: options.shutdownGraceMs === undefined ? undefined : String(options.shutdownGraceMs),
  };
  for (const [key, value] of Object.entries(named)) if (value !== undefined) given[key] = value;
  return given;
}

/** Names the option, not the variable, where the caller wrote an option. */
function optionError(err: unknown): never {
  if (!(err instanceof ConfigError)) throw err;
  const message = err.message
    .replace("DATABASE_URL:", "databaseUrl:")
    .replace("REDIS_URL:", "redisUrl:")
    .replace("API_KEY_PEPPER:", "apiKeyPepper:");
  throw new ConfigError(`startJobs: ${message}`);
}

/**
 * Starts a complete Node runtime in this process and returns it once its pools are running.
 *
 *   const jobs = await startJobs({ databaseUrl, redisUrl, apiKeyPepper, jobTypes, handlers });
 *   await jobs.enqueue({ type: "report.build", tenantId: "acme", payload: { report_id: "r1" } });
 *   await jobs.close();
 */
export async function startJobs(options: StartJobsOptions = {}): Promise<Jobs> {
  if (options.databaseUrl && options.sql) throw new ConfigError("startJobs: give databaseUrl or sql, not both");
  if (options.redisUrl && options.redis) throw new ConfigError("startJobs: give redisUrl or redis, not both");
  if (options.hotSql && !options.sql) throw new ConfigError("startJobs: hotSql goes with sql (your own pools)");
  let config;
  try {
    config = loadConfig(settingsOf(options));
  } catch (err) {
    optionError(err);
  }
  if (options.sql && !options.apiKeyPepper && !config.API_KEY_PEPPER) {
    throw new ConfigError(
      "startJobs: apiKeyPepper is required with sql (API_KEY_PEPPER of your deployment: API keys and unsubscribe links are signed with it)",
    );
  }

  const catalog = extendCatalog((options.jobTypes ?? []).map((t) => jobType(t)));
  const added = options.handlers ?? [];
  for (const h of added) {
    if (!catalog.has(h.type)) throw new ConfigError(`startJobs: handler for "${h.type}": no such job type; add it to jobTypes`);
    if (!(options.jobTypes ?? []).some((t) => t.type === h.type)) {
      throw new ConfigError(`startJobs: handler for "${h.type}": that type is built in and runs its own handler`);
    }
  }
  const known = poolsOf(catalog);
  const pools = options.pools ?? known;
  for (const p of pools) {
    if (!known.includes(p)) throw new ConfigError(`startJobs: pool "${p}" has no job type; the catalog's pools are ${known.join(", ")}`);
  }

  const logger = options.logger ?? silentLogger;
  let database: Database;
  if (options.sql) {
    await migrate(options.sql);
    database = {
      sql: options.sql,
      hotSql: options.hotSql,
      pepper: options.apiKeyPepper ?? config.API_KEY_PEPPER!,
      adminKey: config.ADMIN_API_KEY,
      embedded: false,
      close: async () => {},
    };
  } else {
    database = await openDatabase(config, logger);
  }
  let runtime: Awaited<ReturnType<typeof startNodeRuntime>>;
  try {
    runtime = await startNodeRuntime(config, logger, {
      catalog,
      addedHandlers: added,
      pools,
      concurrency: options.concurrency,
      database,
      redis: options.redis,
    });
  } catch (err) {
    // The pools this call opened are closed again (a second close, after the runtime's own stop, is harmless).
    await database.close().catch(() => {});
    throw err;
  }
  const queue = runtime.engine.queue;
  return {
    queue,
    engine: runtime.engine,
    sql: runtime.sql,
    pools: runtime.pools,
    url: runtime.url,
    enqueue: (input, opts) => queue.enqueue(input, opts),
    enqueueMany: (inputs, opts) => queue.enqueueMany(inputs, opts),
    wait: (id, opts = {}) => waitForFinished(() => queue.get(id, null), opts.seconds ?? 30, { signal: opts.signal }),
    close: () => runtime.stop(),
  };
}

// The rest of the public surface: what an embedding app names in its own code.
export { ConfigError } from "./config";
export { createLogger, type LoggerOptions } from "./logger";
export { createPgSql, type PgSqlOptions } from "./postgres";
export { createIoRedis, type IoRedisOptions } from "./redis";
export { migrate, SchemaTooNewError } from "../../schema/migrate";
export { catalog as builtInJobTypes } from "../../shared/jobs/catalog";
export {
  defineJobType,
  JOB_TYPE_DEFAULTS,
  jobType,
  type Backoff,
  type JobType,
  type JobTypeInput,
  type PoolName,
  type Priority,
} from "../../shared/jobs/definition";
export { ConflictError, NotFoundError, PermanentError, RetryAfter, Snooze, ValidationError } from "../../shared/queue/errors";
export type { BatchResult, Handler, JobContext } from "../../shared/queue/handler";
export type { Job, JobError, JobState } from "../../shared/queue/job";
export type { HotSqlClient } from "../../shared/queue/ledger";
export type { Enqueued, EnqueueInput, Queue } from "../../shared/queue/queue";
export type { Engine } from "../../shared/queue/engine";
export type { WorkerPool } from "../../shared/queue/worker";
export type { Clock, LogFields, Logger, Redis, RedisCommand, Sql, SqlClient } from "../../shared/ports";

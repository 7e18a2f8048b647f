import type { Dispatcher } from "../dispatch/dispatcher";
import { PostgresDispatcher } from "../dispatch/postgres";
import { RedisDispatcher, type RedisDispatcherOptions } from "../dispatch/redis";
import type { JobType } from "../jobs/definition";
import type { LaneEntry } from "./job";
import { type Clock, type Logger, type Redis, type Sql, silentLogger, systemClock } from "../ports";
import { type HotSqlClient, Ledger } from "./ledger";
import { Queue } from "./queue";
import { StatsRecorder } from "./stats";

export interface EngineOptions {
  sql: Sql;
  /** Runs claims, heartbeats and outcomes (see Ledger and HotSqlClient); defaults to sql. */
  hotSql?: HotSqlClient;
  /** With Redis, jobs are dispatched through Redis lanes; without, straight from Postgres. */
  redis?: Redis;
  redisOptions?: RedisDispatcherOptions;
  clock?: Clock;
  logger?: Logger;
  catalog?: ReadonlyMap<string, JobType>;
  /** See QueueOptions.onPublished. */
  onPublished?: (entries: readonly LaneEntry[]) => Promise<void>;
}

export interface Engine {
  queue: Queue;
  dispatcher: Dispatcher;
  stats: StatsRecorder;
  clock: Clock;
  logger: Logger;
}

/** Wires the ledger, the chosen dispatch driver and the queue: the same on both runtimes. */
export function createEngine(options: EngineOptions): Engine {
  const clock = options.clock ?? systemClock;
  const logger = options.logger ?? silentLogger;
  const ledger = new Ledger(options.sql, options.hotSql);
  const pgDispatcher = new PostgresDispatcher(options.sql, ledger, clock, logger);
  const dispatcher: Dispatcher = options.redis
    ? new RedisDispatcher(options.redis, ledger, pgDispatcher, clock, logger, options.redisOptions)
    : pgDispatcher;
  const queue = new Queue({ sql: options.sql, dispatcher, clock, logger, catalog: options.catalog, ledger, onPublished: options.onPublished });
  return { queue, dispatcher, stats: new StatsRecorder(options.sql, clock), clock, logger };
}

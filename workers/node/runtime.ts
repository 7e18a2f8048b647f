import type { Server } from "node:http";
import { answerClientErrors } from "./client-errors";
import { hostname } from "node:os";
import { join } from "node:path";
import { serve, type ServerType } from "@hono/node-server";
import { ApiKeys } from "../../shared/api/api-keys";
import { createApp } from "../../shared/api/app";
import { ExportLinks } from "../../shared/exports/links";
import { catalog as builtInCatalog, typesOfPool } from "../../shared/jobs/catalog";
import type { JobType } from "../../shared/jobs/definition";
import type { Logger, Redis, Sql } from "../../shared/ports";
import { createEngine, type Engine } from "../../shared/queue/engine";
import type { Handler } from "../../shared/queue/handler";
import { Scheduler } from "../../shared/queue/scheduler";
import { guardPolicyOf, SendingGuards, sendingGuardsTask } from "../../shared/email/sending-guards";
import { WorkerRegistry } from "../../shared/queue/registry";
import { WorkerPool } from "../../shared/queue/worker";
import { createHandlers, retentionOf } from "../handlers";
import { listenUrl, type NodeConfig, poolConcurrency, publicUrlOf } from "./config";
import { type Database, openDatabase } from "./database";
import { nodeEmailServices } from "./mail";
import { MemoryIntake } from "./memory-intake";
import { memoryLimitBytes, memoryReader } from "./memory";
import { createIoRedis } from "./redis";
import { nodeDnsResolver } from "./dns-resolver";
import { createGuardedFetch } from "./guarded-fetch";
import { createLocalStorage } from "./local-storage";
import { createStorage } from "../../shared/storage/config";
import { EngagementBuffer } from "../../shared/email/engagement-buffer";

export interface NodeRuntime {
  engine: Engine;
  sql: Sql;
  pools: WorkerPool[];
  /** The API's base URL, when this process serves it. */
  url?: string;
  /** The admin key of the embedded default (undefined when ADMIN_API_KEY or DATABASE_URL is used). */
  localAdminKey?: string;
  /** Graceful stop: no new requests or jobs, running jobs finish within the grace period. */
  stop(): Promise<void>;
}

/**
 * Starts the Node runtime: the HTTP API, the worker pools and the scheduler in one process,
 * or only some of them (ROLE, POOLS). Wiring only: the behaviour lives in shared/.
 */
export async function startNodeRuntime(
  config: NodeConfig,
  logger: Logger,
  options: {
    /** Replaces the built-in handlers (tests). */
    handlers?: Handler[];
    /** Handlers run beside the built-in ones (the library's custom types). */
    addedHandlers?: readonly Handler[];
    /** The job catalog; defaults to the built-in one. */
    catalog?: ReadonlyMap<string, JobType>;
    /** The pools to run instead of config.POOLS: any pool a type of the catalog names. */
    pools?: readonly string[];
    /** Slots per pool, over EMAIL_CONCURRENCY, IMPORT_CONCURRENCY and DEFAULT_CONCURRENCY. */
    concurrency?: Readonly<Record<string, number>>;
    /** An opened, migrated database to use instead of opening DATABASE_URL; stop() calls its close(). */
    database?: Database;
    /** A Redis client to use instead of connecting to REDIS_URL; left open by stop() (the caller's). */
    redis?: Redis;
    /** Reads this process's memory use; tests pass their own to simulate pressure. */
    memory?: () => { rss: number; ratio: number };
  } = {},
): Promise<NodeRuntime> {
  const db = options.database ?? (await openDatabase(config, logger));
  const { sql, hotSql, pepper, adminKey, localAdminKey } = db;

  let redis: Redis | undefined = options.redis;
  let ownRedis: Redis | undefined;
  if (!redis && config.REDIS_URL) {
    redis = ownRedis = createIoRedis(config.REDIS_URL, { onError: (err) => logger.debug("redis connection error", { err: err.message }) });
  }
  const catalog = options.catalog ?? builtInCatalog;
  const engine = createEngine({ sql, hotSql, redis, logger, catalog, redisOptions: { prefix: config.REDIS_PREFIX } });
  const mail = nodeEmailServices(config, { sql, redis, clock: engine.clock, pepper, dkimEncryptionKey: db.dkimEncryptionKey, logger });
  const workerId = `${hostname()}:${process.pid}`;
  const runsWorkers = config.ROLE !== "api";
  // Files: the bucket of STORAGE_URL when set, else the local folder DATA_DIR/files (which stays
  // readable for exports written before a bucket was configured); https:// imports behind the guard.
  const guard = { resolver: nodeDnsResolver, allow: config.WEBHOOK_ALLOW };
  // Customers' URLs are fetched with the guard applied again at connect time (DNS rebinding).
  const guardedFetch = createGuardedFetch(config.WEBHOOK_ALLOW);
  const storage = createStorage(config, { guard, fetch: guardedFetch, local: createLocalStorage(join(config.DATA_DIR, "files")) })!;
  // Download links are signed with their own key derived from the unsubscribe secret (or pepper).
  // With PORT=0 the address is known only once listening: the base is read when a link is made.
  let url: string | undefined;
  const exportLinks = new ExportLinks(config.UNSUBSCRIBE_SECRET ?? pepper, () => config.PUBLIC_URL ?? url ?? publicUrlOf(config));

  const pools: WorkerPool[] = [];
  const memory = options.memory ?? memoryReader(memoryLimitBytes(config.MEMORY_LIMIT_BYTES));
  const intake = new MemoryIntake(memory, config.IMPORT_INTAKE_MEMORY_RATIO, logger);
  const registry = new WorkerRegistry(sql, engine.clock);
  const startedAt = new Date();
  let registryTimer: ReturnType<typeof setInterval> | undefined;
  let scheduler: Scheduler | undefined;
  let unlistenCancel: (() => Promise<void>) | undefined;
  if (runsWorkers) {
    await engine.dispatcher.start();
    const handlers = [
      ...(options.handlers ??
      createHandlers({
        sql,
        clock: engine.clock,
        retention: retentionOf(config),
        email: { queue: engine.queue, logger, send: mail.send },
        webhooks: { ...guard, fetch: guardedFetch, logger, queue: engine.queue },
        exports: { storage, queue: engine.queue, links: exportLinks },
        imports: { storage, queue: engine.queue, logger },
      })),
      ...(options.addedHandlers ?? []),
    ];
    for (const pool of options.pools ?? config.POOLS) {
      const types = new Set(typesOfPool(pool, catalog));
      const mine = handlers.filter((h) => types.has(h.type));
      if (mine.length === 0) continue;
      pools.push(
        new WorkerPool({
          name: pool,
          handlers: mine,
          concurrency: options.concurrency?.[pool] ?? poolConcurrency(config, pool),
          queue: engine.queue,
          stats: engine.stats,
          workerId: `${workerId}:${pool}`,
          logger,
          leaseMs: config.LEASE_MS,
          // Imports are memory bound: stop taking them while memory is high, start again below.
          admit: pool === "import" ? () => intake.admit(pool) : undefined,
        }),
      );
    }
    for (const p of pools) p.start();
    if (sql.listen) {
      unlistenCancel = await sql.listen("pm_cancel", (id) => {
        for (const p of pools) p.noticeCancel(id);
      });
    }
    if (config.SCHEDULER) {
      const guards = new SendingGuards({ sql, queue: engine.queue, clock: engine.clock, logger, policy: guardPolicyOf(config), defaultFrom: config.MAIL_FROM });
      scheduler = new Scheduler({
        queue: engine.queue,
        holderId: workerId,
        stats: engine.stats,
        logger,
        leaseTtlMs: Math.max(5_000, config.SCHEDULER_INTERVAL_MS * 5),
        tasks: [sendingGuardsTask(guards)],
      });
      scheduler.start(config.SCHEDULER_INTERVAL_MS);
    }
    const report = () => {
      const { rss, ratio } = memory();
      registry
        .report({
          id: workerId,
          runtime: "node",
          pools: pools.map((p) => p.name),
          concurrency: pools.reduce((n, p) => n + p.concurrency, 0),
          poolConcurrency: Object.fromEntries(pools.map((p) => [p.name, p.concurrency])),
          inFlight: pools.reduce((n, p) => n + p.activeCount, 0),
          memoryRss: rss,
          memoryRatio: ratio,
          intakePaused: intake.paused(),
          startedAt,
        })
        .catch((err: unknown) => logger.warn("worker registry heartbeat failed", { err: String(err) }));
    };
    report();
    registryTimer = setInterval(report, config.REGISTRY_INTERVAL_MS);
  }
  const statsTimer = setInterval(() => {
    engine.stats.flush().catch((err: unknown) => logger.warn("stats flush failed", { err: String(err) }));
  }, 5_000);

  let server: ServerType | undefined;
  let listenError: Error | undefined;
  // Opens and clicks, one buffer a process: written in bulk every second (engagement-buffer.ts).
  let engagement: EngagementBuffer | undefined;
  if (config.ROLE !== "worker") {
    engagement = new EngagementBuffer({ sql, clock: engine.clock, logger, queue: engine.queue });
    engagement.start();
    const apiKeys = new ApiKeys(sql, { pepper, adminKey });
    const app = createApp({
      queue: engine.queue,
      sql,
      apiKeys,
      logger,
      bodyLimitBytes: config.BODY_LIMIT_BYTES,
      uploadLimitBytes: config.UPLOAD_LIMIT_BYTES,
      metricsPublic: config.METRICS_PUBLIC,
      registry,
      unsubscribe: mail.unsubscribe,
      tracking: { tokens: mail.tracking, sink: engagement },
      webhookGuard: guard,
      exports: { storage, links: exportLinks },
      resendWebhookSecret: config.RESEND_WEBHOOK_SECRET,
      sendingGuards: { policy: guardPolicyOf(config), defaultFrom: config.MAIL_FROM },
      dkimEncryptionKey: db.dkimEncryptionKey,
      scaling: { queueDepth: config.SCALE_QUEUE_DEPTH, importMemoryRatio: config.SCALE_IMPORT_MEMORY_RATIO },
    });
    await new Promise<void>((ready) => {
      server = serve({ fetch: app.fetch, hostname: config.HOST, port: config.PORT }, (info) => {
        url = listenUrl(config, info.port);
        ready();
      });
      // The port taken, or not ours to bind: stop what started and say so (below), instead of an
      // unhandled 'error' event bringing down the process that embeds the library.
      (server as unknown as Server).once("error", (err) => {
        listenError = err;
        ready();
      });
      answerClientErrors(server as unknown as Server);
    });
  }

  let stopping: Promise<void> | undefined;
  const stop = () =>
    (stopping ??= (async () => {
      logger.info("shutting down", { grace_ms: config.SHUTDOWN_GRACE_MS, running: pools.reduce((n, p) => n + p.activeCount, 0) });
      const closed = server ? new Promise<void>((r) => server!.close(() => r())) : Promise.resolve();
      await scheduler?.stop();
      await Promise.all(pools.map((p) => p.stop(config.SHUTDOWN_GRACE_MS)));
      clearInterval(registryTimer);
      if (runsWorkers) await registry.remove(workerId).catch(() => {});
      clearInterval(statsTimer);
      await engine.stats.flush().catch((err: unknown) => logger.warn("stats flush failed", { err: String(err) }));
      await unlistenCancel?.().catch(() => {});
      await engine.dispatcher.close();
      await Promise.race([closed, new Promise((r) => setTimeout(r, 2_000))]);
      // After the server: the hits of the last requests are written before the database closes.
      await engagement?.stop().catch((err: unknown) => logger.warn("engagement flush failed at shutdown", { err: String(err) }));
      await mail.close().catch(() => {});
      await ownRedis?.close();
      await db.close();
      logger.info("stopped");
    })());

  if (listenError) {
    await stop();
    throw new Error(`cannot listen on ${config.HOST}:${config.PORT}: ${listenError.message}`, { cause: listenError });
  }
  return { engine, sql, pools, url, localAdminKey, stop };
}

/**
 * A repeat of the first signal within this long is that same signal, not a second one. Under
 * `npm start` a terminal's Ctrl-C reaches node twice: from the terminal (SIGINT to the whole
 * process group) and again from npm, which forwards SIGINT and SIGTERM to its script. Measured
 * here with npm 11: on Node 20 both arrived, 2-5 ms apart; on Node 24 the copy was usually
 * merged into the pending original, but that is timing, not a promise. A person pressing Ctrl-C
 * again to force the exit takes longer than this.
 */
export const SIGNAL_REPEAT_MS = 1_000;

/**
 * Stops the runtime gracefully on the first SIGTERM or SIGINT and exits 0 (1 if stopping
 * failed). A second signal, SIGNAL_REPEAT_MS or more after the first, exits 1 at once: the way
 * out when a graceful stop hangs. The runtime may be given while it is still starting, so that
 * a signal during start-up (migrations, connecting) is not lost: it stops the runtime once it
 * is up. This matters when node is PID 1 in a container: the kernel drops a signal to PID 1
 * that has no handler, so the handlers are installed before anything else happens.
 * beforeExit runs after the stop, whichever way it went; its failure does not change the code.
 */
export function exitOnSignals(
  runtime: Pick<NodeRuntime, "stop"> | Promise<Pick<NodeRuntime, "stop">>,
  logger: Logger,
  options: { beforeExit?: () => Promise<void> } = {},
): void {
  let firstAt: number | undefined;
  const exit = async (code: number) => {
    await options.beforeExit?.().catch(() => {});
    process.exit(code);
  };
  const onSignal = (signal: NodeJS.Signals) => {
    const now = Date.now();
    if (firstAt !== undefined) {
      if (now - firstAt < SIGNAL_REPEAT_MS) {
        logger.debug("repeated signal ignored (the same one, forwarded)", { signal, after_ms: now - firstAt });
        return;
      }
      logger.warn("second signal: exiting now", { signal });
      process.exit(1);
    }
    firstAt = now;
    logger.info("signal received", { signal });
    Promise.resolve(runtime)
      .then((r) => r.stop())
      .then(
        () => exit(0),
        (err: unknown) => {
          logger.error("shutdown failed", { err: String(err) });
          return exit(1);
        },
      );
  };
  process.on("SIGTERM", onSignal);
  process.on("SIGINT", onSignal);
}

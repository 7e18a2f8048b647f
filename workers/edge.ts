/**
 * The Cloudflare entry, wiring only: `fetch` serves the same Hono app as Node; `scheduled` runs
 * the scheduler and a time-boxed drain (every minute, and the catalog's cron jobs); `queue`
 * drains after a wake-up message that an enqueue sent. The Neon pool lives for one invocation,
 * as Neon requires in Workers.
 */
import { ApiKeys } from "../shared/api/api-keys";
import { createApp } from "../shared/api/app";
import { problemResponse } from "../shared/api/problem";
import { drain } from "../shared/queue/drain";
import { createOutboxMailer } from "../shared/email/providers/outbox";
import { createResendMailer } from "../shared/email/providers/resend";
import { createEmailServices } from "../shared/email/services";
import { createEngine } from "../shared/queue/engine";
import { createDohResolver } from "../shared/webhooks/doh-resolver";
import { ExportLinks } from "../shared/exports/links";
import { createStorage } from "../shared/storage/config";
import type { R2BucketBinding } from "../shared/storage/r2";
import type { Handler } from "../shared/queue/handler";
import type { PoolName } from "../shared/jobs/definition";
import { WorkerRegistry } from "../shared/queue/registry";
import { Scheduler } from "../shared/queue/scheduler";
import { guardPolicyOf, SendingGuards, sendingGuardsTask } from "../shared/email/sending-guards";
import { EngagementBuffer } from "../shared/email/engagement-buffer";
import { EdgeConfigError, loadEdgeConfig } from "./edge/config";
import { createConsoleLogger } from "./edge/logger";
import { createNeonSql } from "./edge/neon";
import type { ExecutionContext, MessageBatch, QueueProducer, ScheduledController, WakeMessage } from "./edge/platform";
import { createUpstashRedis } from "./edge/upstash";
import { createHandlers, type HandlerDeps, retentionOf } from "./handlers";

export interface Env extends Record<string, unknown> {
  JOBS_QUEUE?: QueueProducer<WakeMessage>;
  /** R2 bucket for files (STORAGE_URL's bucket). */
  FILES?: R2BucketBinding;
}

type MakeHandlers = (deps: HandlerDeps) => Handler[];

const logger = createConsoleLogger({ runtime: "edge" });
const invocationId = () => `edge:${crypto.randomUUID().slice(0, 8)}`;

/** Everything one invocation needs, opened from the environment and closed at its end. */
function open(env: Env, makeHandlers: MakeHandlers) {
  const config = loadEdgeConfig(env, { hasR2Binding: !!env.FILES });
  const sql = createNeonSql(config.DATABASE_URL, {
    wsProxy: config.NEON_WS_PROXY,
    useSecureWebSocket: !config.NEON_INSECURE_WS,
    onError: (err) => logger.warn("database connection error", { err: err.message }),
  });
  const redis = config.UPSTASH_REDIS_REST_URL
    ? createUpstashRedis({ url: config.UPSTASH_REDIS_REST_URL, token: config.UPSTASH_REDIS_REST_TOKEN! })
    : undefined;
  const wake = env.JOBS_QUEUE;
  const engine = createEngine({
    sql,
    redis,
    logger,
    redisOptions: { prefix: config.REDIS_PREFIX },
    // One wake-up message per enqueue call, so an edge consumer starts within seconds, not at the next minute.
    onPublished: wake ? (entries) => wake.send({ types: [...new Set(entries.map((e) => e.type))] }) : undefined,
  });
  // Resend over fetch works here; SMTP needs TCP sockets and stays on Node.
  const mail = createEmailServices({
    sql,
    redis,
    redisPrefix: config.REDIS_PREFIX,
    clock: engine.clock,
    mailers: config.RESEND_API_KEY
      ? [createResendMailer({ apiKey: config.RESEND_API_KEY, baseUrl: config.RESEND_BASE_URL })]
      : [createOutboxMailer(sql)],
    defaultFrom: config.MAIL_FROM,
    publicUrl: config.PUBLIC_URL,
    unsubscribeSecret: config.UNSUBSCRIBE_SECRET ?? config.API_KEY_PEPPER,
    providerPerSecond: config.MAIL_RATE_PER_SECOND,
    tenantPerSecond: config.TENANT_MAIL_RATE_PER_SECOND,
  });
  // Customers' URLs are checked against private networks through DNS over HTTPS here.
  const guard = { resolver: createDohResolver() };
  // Files only with a bucket (STORAGE_URL, through the FILES binding or the S3 API): imports and exports need one.
  const storage = createStorage(config, { guard, r2: env.FILES });
  const exportDeps = storage && {
    storage,
    links: new ExportLinks(config.UNSUBSCRIBE_SECRET ?? config.API_KEY_PEPPER, config.PUBLIC_URL),
  };
  const handlers = makeHandlers({
    sql,
    clock: engine.clock,
    retention: retentionOf(config),
    email: { queue: engine.queue, logger, send: mail.send },
    webhooks: { ...guard, logger, queue: engine.queue },
    exports: exportDeps && { ...exportDeps, queue: engine.queue },
    imports: storage && { storage, queue: engine.queue, logger },
  });
  const close = async () => {
    await redis?.close();
    await sql.close();
  };
  return { config, sql, engine, handlers, unsubscribe: mail.unsubscribe, tracking: mail.tracking, guard, exportDeps, close };
}

type Opened = ReturnType<typeof open>;

async function drainLanes(o: Opened, workerId: string): Promise<void> {
  // Each drain shows in the worker registry (and goes silent after it, as edge invocations do).
  const pools = [...new Set(o.handlers.map((h) => o.engine.queue.catalog.get(h.type)?.pool).filter((p): p is PoolName => !!p))];
  await new WorkerRegistry(o.sql, o.engine.clock)
    .report({ id: workerId, runtime: "edge", pools, concurrency: o.config.EDGE_CONCURRENCY, inFlight: 0, intakePaused: [], startedAt: new Date() })
    .catch((err: unknown) => logger.warn("worker registry report failed", { err: String(err) }));
  const report = await drain({
    queue: o.engine.queue,
    stats: o.engine.stats,
    handlers: o.handlers,
    workerId,
    concurrency: o.config.EDGE_CONCURRENCY,
    budgetMs: o.config.DRAIN_BUDGET_MS,
    graceMs: o.config.DRAIN_GRACE_MS,
    maxJobs: o.config.DRAIN_MAX_JOBS,
    leaseMs: o.config.LEASE_MS,
    logger,
  });
  logger.info("drain finished", { worker: workerId, ...report });
}

/** Scheduler pass, then a drain: the same for the every-minute trigger and the catalog's crons. */
async function onSchedule(env: Env, cron: string, makeHandlers: MakeHandlers): Promise<void> {
  const o = open(env, makeHandlers);
  const workerId = invocationId();
  try {
    // One pass a minute here: the guards' check runs in every pass (its everyMs is shorter).
    const guards = new SendingGuards({ sql: o.sql, queue: o.engine.queue, clock: o.engine.clock, logger, policy: guardPolicyOf(o.config), defaultFrom: o.config.MAIL_FROM });
    const scheduler = new Scheduler({ queue: o.engine.queue, holderId: workerId, stats: o.engine.stats, logger, tasks: [sendingGuardsTask(guards)] });
    const report = await scheduler.runOnce();
    await scheduler.stop(); // gives leadership back for the next invocation
    logger.info("scheduler pass", { cron, ...report });
    await drainLanes(o, workerId);
  } finally {
    await o.close();
  }
}

/** The Worker; tests build one with handlers of their own, production uses the default export. */
export function createEdgeWorker(options: { handlers?: MakeHandlers } = {}) {
  const makeHandlers = options.handlers ?? createHandlers;
  return {
    async fetch(request: Request, env: Env, ctx: ExecutionContext): Promise<Response> {
      let o: Opened;
      try {
        o = open(env, makeHandlers);
      } catch (err) {
        if (!(err instanceof EdgeConfigError)) throw err;
        logger.error("misconfigured Worker", { err: err.message });
        return problemResponse(500, "the service is misconfigured; see the Worker's logs");
      }
      // A buffer for this request alone (an isolate keeps no timer between requests): its hit, if
      // any, is written after the answer, in ctx.waitUntil. No hold: a scanner's burst spreads over
      // requests here, so only the request and delivery-time rules apply (machine-hits.ts).
      const engagement = new EngagementBuffer({ sql: o.sql, clock: o.engine.clock, logger, queue: o.engine.queue, holdMs: 0 });
      const app = createApp({
        queue: o.engine.queue,
        sql: o.sql,
        apiKeys: new ApiKeys(o.sql, { pepper: o.config.API_KEY_PEPPER, adminKey: o.config.ADMIN_API_KEY }),
        logger,
        bodyLimitBytes: o.config.BODY_LIMIT_BYTES,
        uploadLimitBytes: o.config.UPLOAD_LIMIT_BYTES,
        metricsPublic: o.config.METRICS_PUBLIC,
        unsubscribe: o.unsubscribe,
        tracking: { tokens: o.tracking, sink: engagement },
        webhookGuard: o.guard,
        exports: o.exportDeps,
        resendWebhookSecret: o.config.RESEND_WEBHOOK_SECRET,
        dkimEncryptionKey: o.config.DKIM_ENCRYPTION_KEY,
        sendingGuards: { policy: guardPolicyOf(o.config), defaultFrom: o.config.MAIL_FROM },
      });
      try {
        return await app.fetch(request);
      } finally {
        ctx.waitUntil(
          (engagement.pending > 0 ? engagement.flush({ all: true }) : Promise.resolve())
            .catch((err: unknown) => logger.warn("engagement write failed", { err: String(err) }))
            .finally(() => o.close()),
        );
      }
    },

    // Awaited rather than handed to waitUntil: the invocation lasts as long as the drain, which
    // keeps its own budget well inside the cron limits.
    async scheduled(controller: ScheduledController, env: Env): Promise<void> {
      await onSchedule(env, controller.cron, makeHandlers);
    },

    async queue(batch: MessageBatch<WakeMessage>, env: Env): Promise<void> {
      const o = open(env, makeHandlers);
      try {
        await drainLanes(o, invocationId());
        batch.ackAll();
      } finally {
        await o.close();
      }
    },
  };
}

export default createEdgeWorker();

import { z } from "zod";
import { POOLS, type PoolName } from "../../shared/jobs/definition";
import { sendingGuardEnvShape } from "../../shared/email/sending-guards";
import { storageEnvShape, storageSettingsProblem } from "../../shared/storage/config";
import { parseAllowList } from "../../shared/webhooks/ssrf";

/**
 * Every setting of the Node runtime, read from the environment in this one place and checked
 * by zod at start. An error names the variable and what it expected. Defaults run the embedded
 * setup: PGlite in .data/, the Postgres dispatch driver, no Redis.
 */
const intFrom = (min: number, max: number) => z.coerce.number().int().min(min).max(max);
const bool = z.enum(["true", "false", "1", "0", "yes", "no"]).transform((v) => ["true", "1", "yes"].includes(v));

const envSchema = z.object({
  /** Postgres connection string. Unset: embedded PGlite in DATA_DIR. */
  DATABASE_URL: z.url({ protocol: /^postgres(ql)?$/, error: "expected a postgres:// or postgresql:// URL" }).optional(),
  /** Connections in this process's pool. */
  DATABASE_POOL_SIZE: intFrom(1, 200).default(20),
  /** Redis connection string (redis:// or rediss://). Unset: jobs dispatch straight from Postgres. */
  REDIS_URL: z.url({ protocol: /^rediss?$/, error: "expected a redis:// or rediss:// URL" }).optional(),
  /** Prefix of every Redis key; keep the {hash tag}. */
  REDIS_PREFIX: z.string().min(1).max(64).default("pm:{jobs}:"),
  /** Folder for the embedded database and local secrets. */
  DATA_DIR: z.string().min(1).default(".data"),
  HOST: z.string().min(1).default("127.0.0.1"),
  PORT: intFrom(0, 65_535).default(3000),
  /** all: API, workers and scheduler; api: only the HTTP API; worker: only workers and scheduler. */
  ROLE: z.enum(["all", "api", "worker"]).default("all"),
  /** Pools this process runs, comma-separated. */
  POOLS: z
    .string()
    .default(POOLS.join(","))
    .transform((s) => s.split(",").map((p) => p.trim()).filter(Boolean))
    .pipe(z.array(z.enum(POOLS as [PoolName, ...PoolName[]], { error: `expected pool names from: ${POOLS.join(", ")}` }))),
  EMAIL_CONCURRENCY: intFrom(1, 1_000).default(50),
  DEFAULT_CONCURRENCY: intFrom(1, 1_000).default(10),
  IMPORT_CONCURRENCY: intFrom(1, 100).default(2),
  /** How long a claimed job stays owned without a heartbeat; a dead worker's jobs run again after it. */
  LEASE_MS: intFrom(1_000, 3_600_000).default(30_000),
  /** On SIGTERM, how long running jobs may take to finish before they are handed back. */
  SHUTDOWN_GRACE_MS: intFrom(0, 3_600_000).default(30_000),
  SCHEDULER: bool.default(true),
  SCHEDULER_INTERVAL_MS: intFrom(50, 60_000).default(1_000),
  /** A static admin API key (bootstrap). Unset on the embedded default: one is made and kept in DATA_DIR. */
  ADMIN_API_KEY: z.string().min(24, "must be at least 24 characters").optional(),
  /** Secret mixed into API key hashes. Required with DATABASE_URL; made and kept in DATA_DIR otherwise. */
  API_KEY_PEPPER: z.string().min(16, "must be at least 16 characters").optional(),
  /** Serve /metrics without the admin key (for a Prometheus on a private network). */
  METRICS_PUBLIC: bool.default(false),
  BODY_LIMIT_BYTES: intFrom(1_024, 100 * 1024 * 1024).default(1024 * 1024),
  /** Largest CSV upload to POST /v1/imports (streamed to storage, never held in memory). */
  UPLOAD_LIMIT_BYTES: intFrom(1_024, 10 * 1024 * 1024 * 1024).default(100 * 1024 * 1024),
  RETENTION_COMPLETED_HOURS: z.coerce.number().positive().max(24 * 3650).default(24),
  RETENTION_FAILED_DAYS: z.coerce.number().positive().max(3650).default(7),
  /** Waiting jobs above which a pool's scaling signal says scale up (the source document: 1,000 for email). */
  SCALE_QUEUE_DEPTH: intFrom(1, 100_000_000).default(1_000),
  /** Memory use (0-1) above which the import pool's scaling signal says scale up. */
  SCALE_IMPORT_MEMORY_RATIO: z.coerce.number().gt(0).max(1).default(0.8),
  /** Memory use (0-1) above which this process's import pool stops taking jobs until it falls again. */
  IMPORT_INTAKE_MEMORY_RATIO: z.coerce.number().gt(0).max(1).default(0.8),
  /** Memory available to this process in bytes; defaults to the container's limit, else the machine's memory. */
  MEMORY_LIMIT_BYTES: intFrom(1, Number.MAX_SAFE_INTEGER).optional(),
  /** How often this process reports to the worker registry. */
  REGISTRY_INTERVAL_MS: intFrom(100, 600_000).default(5_000),
  /** Resend API key: campaign and transactional mail through Resend (its batch endpoint for campaigns). */
  RESEND_API_KEY: z.string().min(1).optional(),
  /** Another Resend-compatible base URL (a local stand-in in tests). Defaults to Resend's own. */
  RESEND_BASE_URL: z.url({ protocol: /^https?$/, error: "expected an http(s) URL" }).optional(),
  /**
   * Signing secret ("whsec_…") of the Resend webhook that reports bounces and complaints to
   * POST /providers/resend/events. Unset: that route answers 404 and bounces are not recorded.
   */
  RESEND_WEBHOOK_SECRET: z.string().regex(/^whsec_[A-Za-z0-9+/]+={0,2}$/, "expected the webhook's signing secret, whsec_ and base64").optional(),
  /** An SMTP relay, smtp://user:pass@host:port or smtps://… (the internal relay). */
  SMTP_URL: z.url({ protocol: /^smtps?$/, error: "expected an smtp:// or smtps:// URL" }).optional(),
  /** Providers in order of preference, comma-separated (resend, smtp, outbox). Defaults to the configured ones; the outbox alone when none is. */
  MAIL_PROVIDERS: z
    .string()
    .transform((s) => s.split(",").map((p) => p.trim()).filter(Boolean))
    .pipe(z.array(z.enum(["resend", "smtp", "outbox"], { error: "expected provider names from: resend, smtp, outbox" })).min(1))
    .optional(),
  /** The From address when a tenant has none of its own. */
  MAIL_FROM: z.string().min(3).default("PenguinMails <no-reply@penguinmails.local>"),
  /** Public base URL of the API (unsubscribe links point here). Defaults to this process's address. */
  PUBLIC_URL: z.url({ protocol: /^https?$/, error: "expected the public http(s) URL of the API" }).optional(),
  /**
   * Seals tenants' DKIM private keys in the database (AES-256-GCM under a key derived from it).
   * Made and kept in DATA_DIR on the embedded default; with DATABASE_URL, unset means no DKIM
   * keys can be made (the API says so) and none opened. Changing it makes stored keys unreadable.
   */
  DKIM_ENCRYPTION_KEY: z.string().min(32, "must be at least 32 characters (a random secret: openssl rand -base64 32)").optional(),
  /** Secret that signs unsubscribe links. Defaults to one derived from API_KEY_PEPPER. */
  UNSUBSCRIBE_SECRET: z.string().min(16, "must be at least 16 characters").optional(),
  /** Messages a second, per provider and per tenant; 0 turns the limit off. A send over it waits, never fails. */
  MAIL_RATE_PER_SECOND: z.coerce.number().min(0).default(0),
  TENANT_MAIL_RATE_PER_SECOND: z.coerce.number().min(0).default(0),
  /** Sending guards: complaint and hard-bounce rates (fractions), window (hours) and minimum volume above which a tenant's campaigns pause. */
  ...sendingGuardEnvShape,
  /**
   * Customers' URLs let through the SSRF guard (webhooks, https:// import files; plain http:// is
   * read only from these), comma-separated CIDRs or hostnames: tests, self-hosters' private servers.
   */
  WEBHOOK_ALLOW: z
    .string()
    .transform((s, ctx) => {
      try {
        return parseAllowList(s.split(","));
      } catch (err) {
        ctx.addIssue({ code: "custom", message: err instanceof Error ? err.message : String(err) });
        return z.NEVER;
      }
    })
    .optional(),
  /** Files (imports, exports, reports): STORAGE_URL=s3://bucket/prefix and S3_*; unset: the folder DATA_DIR/files. */
  ...storageEnvShape,
  LOG_LEVEL: z.enum(["trace", "debug", "info", "warn", "error", "fatal", "silent"]).default("info"),
});

export type NodeConfig = z.infer<typeof envSchema>;

/** Every variable the runtime reads (tests strip them from the environment they pass on). */
export const CONFIG_VARIABLES: readonly string[] = Object.keys(envSchema.shape);

export class ConfigError extends Error {
  override name = "ConfigError";
}

/** Reads the environment; command-line flags (--api-only, --worker-only, --pools=a,b) override it. */
export function loadConfig(env: Record<string, string | undefined>, argv: readonly string[] = []): NodeConfig {
  const merged: Record<string, string | undefined> = {};
  for (const key of Object.keys(envSchema.shape)) {
    const value = env[key];
    if (value !== undefined && value !== "") merged[key] = value;
  }
  for (const arg of argv) {
    if (arg === "--api-only") merged.ROLE = "api";
    else if (arg === "--worker-only") merged.ROLE = "worker";
    else if (arg.startsWith("--pools=")) merged.POOLS = arg.slice("--pools=".length);
    else if (arg.startsWith("--port=")) merged.PORT = arg.slice("--port=".length);
    else throw new ConfigError(`unknown flag ${arg}; expected --api-only, --worker-only, --pools=a,b, --port=N or --help`);
  }
  const parsed = envSchema.safeParse(merged);
  if (!parsed.success) {
    const lines = parsed.error.issues.map((i) => `  ${String(i.path[0] ?? "?")}: ${i.message}`);
    throw new ConfigError(`invalid configuration:\n${lines.join("\n")}`);
  }
  const config = parsed.data;
  if (config.DATABASE_URL && !config.API_KEY_PEPPER) {
    throw new ConfigError(
      "invalid configuration:\n  API_KEY_PEPPER: required when DATABASE_URL is set (a random secret of 16+ characters; keep it stable, changing it invalidates every API key)",
    );
  }
  const storageProblem = storageSettingsProblem(config);
  if (storageProblem) throw new ConfigError(`invalid configuration:\n  ${storageProblem}`);
  return config;
}

export const poolConcurrency = (config: NodeConfig, pool: string): number =>
  pool === "email" ? config.EMAIL_CONCURRENCY : pool === "import" ? config.IMPORT_CONCURRENCY : config.DEFAULT_CONCURRENCY;

/** What `npm start -- --help` prints. */
export const START_USAGE = `usage: npm start [-- flags]

Runs the API, the worker pools and the scheduler (the embedded default when nothing is set).
Every setting comes from the environment (README, "Configuration"); flags override it:
  --api-only       ROLE=api: the HTTP API only
  --worker-only    ROLE=worker: workers and the scheduler only
  --pools=a,b      POOLS: the worker pools to run (${POOLS.join(", ")})
  --port=N         PORT: where the API listens (0: a free port)
  --help           this text

Variables: ${Object.keys(envSchema.shape).join(", ")}.
Operator commands: npm run migrate, npm run keys -- --help.`;

/** For entry points: the configuration, or a readable message on stderr and exit code 2 (--help: the usage, exit 0). */
export function loadConfigOrExit(program: string): NodeConfig {
  if (process.argv.slice(2).some((a) => a === "--help" || a === "-h")) {
    process.stdout.write(`${START_USAGE}\n`);
    process.exit(0);
  }
  try {
    return loadConfig(process.env, process.argv.slice(2));
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    process.stderr.write(`${program}: ${err.message}\n`);
    process.exit(2);
  }
}

/** http://HOST:PORT, with an IPv6 host in brackets. */
export const listenUrl = (config: Pick<NodeConfig, "HOST">, port: number): string =>
  `http://${config.HOST.includes(":") ? `[${config.HOST}]` : config.HOST}:${port}`;

/** Where people and mail clients reach the API: PUBLIC_URL, else this process's own address. */
export const publicUrlOf = (config: NodeConfig): string => config.PUBLIC_URL ?? listenUrl(config, config.PORT);

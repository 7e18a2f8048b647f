import { z } from "zod";
import { sendingGuardEnvShape } from "../../shared/email/sending-guards";
import { storageEnvShape, storageSettingsProblem } from "../../shared/storage/config";

/**
 * The Worker's settings: wrangler.toml [vars] and secrets, checked by zod on each invocation
 * (an error names the variable). Secrets: DATABASE_URL, UPSTASH_REDIS_REST_TOKEN, API_KEY_PEPPER,
 * ADMIN_API_KEY, RESEND_API_KEY, RESEND_WEBHOOK_SECRET, DKIM_ENCRYPTION_KEY, S3_SECRET_ACCESS_KEY. Bindings: JOBS_QUEUE (optional
 * Cloudflare Queue producer for wake-ups), FILES (optional R2 bucket: STORAGE_URL's bucket without S3 keys).
 */
const intFrom = (min: number, max: number) => z.coerce.number().int().min(min).max(max);
const bool = z.enum(["true", "false", "1", "0"]).transform((v) => v === "true" || v === "1");

export const edgeEnvSchema = z.object({
  DATABASE_URL: z.url({ protocol: /^postgres(ql)?$/, error: "expected a postgres:// URL (Neon's connection string)" }),
  UPSTASH_REDIS_REST_URL: z.url({ protocol: /^https?$/, error: "expected the https:// REST URL of an Upstash database" }).optional(),
  UPSTASH_REDIS_REST_TOKEN: z.string().min(1).optional(),
  REDIS_PREFIX: z.string().min(1).max(64).default("pm:{jobs}:"),
  API_KEY_PEPPER: z.string().min(16, "must be at least 16 characters"),
  ADMIN_API_KEY: z.string().min(24, "must be at least 24 characters").optional(),
  METRICS_PUBLIC: bool.default(false),
  BODY_LIMIT_BYTES: intFrom(1_024, 100 * 1024 * 1024).default(1024 * 1024),
  /** Largest CSV upload to POST /v1/imports (streamed to storage, never held in memory). */
  UPLOAD_LIMIT_BYTES: intFrom(1_024, 10 * 1024 * 1024 * 1024).default(100 * 1024 * 1024),
  /** Jobs a drain runs at once. Workers allow 6 simultaneous connections: the database takes 1, Upstash calls use the rest. */
  EDGE_CONCURRENCY: intFrom(1, 100).default(10),
  /** A drain stops taking jobs after this long: well inside cron's 30 s CPU and 15 min wall-clock limits. */
  DRAIN_BUDGET_MS: intFrom(100, 600_000).default(20_000),
  /** After the budget, how long running jobs may take before they are handed back. */
  DRAIN_GRACE_MS: intFrom(0, 60_000).default(5_000),
  /** Jobs one drain takes at most: bounds the subrequests one invocation makes. */
  DRAIN_MAX_JOBS: intFrom(1, 100_000).default(500),
  LEASE_MS: intFrom(1_000, 3_600_000).default(30_000),
  RETENTION_COMPLETED_HOURS: z.coerce.number().positive().default(24),
  RETENTION_FAILED_DAYS: z.coerce.number().positive().default(7),
  /** Resend API key (a secret): mail goes through Resend; without it, into the outbox table. */
  RESEND_API_KEY: z.string().min(1).optional(),
  RESEND_BASE_URL: z.url({ protocol: /^https?$/ }).optional(),
  /** Signing secret ("whsec_…", a secret) of the Resend webhook reporting bounces and complaints; unset: POST /providers/resend/events answers 404. */
  RESEND_WEBHOOK_SECRET: z.string().regex(/^whsec_[A-Za-z0-9+/]+={0,2}$/, "expected the webhook's signing secret, whsec_ and base64").optional(),
  MAIL_FROM: z.string().min(3).default("PenguinMails <no-reply@penguinmails.local>"),
  /** Public base URL of the API, for unsubscribe links. */
  PUBLIC_URL: z.url({ protocol: /^https?$/ }).default("http://localhost:8787"),
  /** Signs unsubscribe links; defaults to API_KEY_PEPPER (as on Node, so links work on both). */
  UNSUBSCRIBE_SECRET: z.string().min(16).optional(),
  /** Seals the DKIM private keys the API makes (a secret; the same value as the Node runtime's). Unset: keys are listed, not made. */
  DKIM_ENCRYPTION_KEY: z.string().min(32, "must be at least 32 characters (a random secret: openssl rand -base64 32)").optional(),
  MAIL_RATE_PER_SECOND: z.coerce.number().min(0).default(0),
  TENANT_MAIL_RATE_PER_SECOND: z.coerce.number().min(0).default(0),
  /** Sending guards: complaint and hard-bounce rates (fractions), window (hours) and minimum volume above which a tenant's campaigns pause. */
  ...sendingGuardEnvShape,
  /** Files (imports, exports): STORAGE_URL=s3://bucket/prefix, through the FILES R2 binding or the S3 API (S3_*). Unset: no imports or exports here. */
  ...storageEnvShape,
  /** Local development only: where the Neon driver's WebSocket goes (the ws-to-TCP bridge, e.g. "127.0.0.1:8790/v2"). */
  NEON_WS_PROXY: z.string().optional(),
  /** Local development only: plain ws:// to the bridge instead of wss://. */
  NEON_INSECURE_WS: bool.default(false),
});

export type EdgeConfig = z.infer<typeof edgeEnvSchema>;

export class EdgeConfigError extends Error {
  override name = "EdgeConfigError";
}

export function loadEdgeConfig(env: Record<string, unknown>, options: { hasR2Binding?: boolean } = {}): EdgeConfig {
  const raw: Record<string, unknown> = {};
  for (const key of Object.keys(edgeEnvSchema.shape)) {
    const v = env[key];
    if (typeof v === "string" && v !== "") raw[key] = v;
  }
  const parsed = edgeEnvSchema.safeParse(raw);
  if (!parsed.success) {
    throw new EdgeConfigError(
      `invalid Worker configuration: ${parsed.error.issues.map((i) => `${String(i.path[0])}: ${i.message}`).join("; ")}`,
    );
  }
  if (parsed.data.UPSTASH_REDIS_REST_URL && !parsed.data.UPSTASH_REDIS_REST_TOKEN) {
    throw new EdgeConfigError("invalid Worker configuration: UPSTASH_REDIS_REST_TOKEN: required with UPSTASH_REDIS_REST_URL (a secret)");
  }
  const storageProblem = storageSettingsProblem(parsed.data, { hasR2Binding: options.hasR2Binding ?? false });
  if (storageProblem) throw new EdgeConfigError(`invalid Worker configuration: ${storageProblem}`);
  return parsed.data;
}

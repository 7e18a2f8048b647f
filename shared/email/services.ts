import type { Clock, Redis, SqlClient } from "../ports";
import type { Mailer } from "./mailer";
import { ProviderRouter } from "./provider-router";
import { createPostgresRateLimiter, createRedisRateLimiter } from "./rate-limit";
import type { SendEmailDeps } from "./send-email";
import { Suppressions } from "./suppressions";
import { TemplateStore } from "./template-store";
import { UnsubscribeLinks } from "./unsubscribe";
import { TrackingTokens } from "./tracking-tokens";

export interface EmailServicesOptions {
  sql: SqlClient;
  /** Rate limits live in Redis when there is one, else in Postgres (same behaviour). */
  redis?: Redis;
  redisPrefix: string;
  clock: Clock;
  /** The providers this runtime can use, by name. */
  mailers: readonly Mailer[];
  /** Preference order; defaults to the order of `mailers`. */
  providerOrder?: readonly string[];
  defaultFrom: string;
  /** Public base URL of the API, for unsubscribe links. */
  publicUrl: string;
  unsubscribeSecret: string;
  /** Messages a second; 0 or undefined: no limit. */
  providerPerSecond?: number;
  tenantPerSecond?: number;
}

/** The email pipeline's services, wired the same way on Node and on the edge. */
export function createEmailServices(o: EmailServicesOptions): {
  send: Omit<SendEmailDeps, "sql" | "clock" | "logger">;
  unsubscribe: UnsubscribeLinks;
  tracking: TrackingTokens;
} {
  const mailers = new Map(o.mailers.map((m) => [m.name, m]));
  const unsubscribe = new UnsubscribeLinks(o.unsubscribeSecret, o.publicUrl);
  // The same secret, keys of their own (HKDF info), so links verify on every runtime alike.
  const tracking = new TrackingTokens(o.unsubscribeSecret, o.publicUrl);
  const limited = Boolean(o.providerPerSecond || o.tenantPerSecond);
  return {
    unsubscribe,
    tracking,
    send: {
      renderer: new TemplateStore(o.sql, o.clock),
      providers: new ProviderRouter(mailers, o.providerOrder ?? [...mailers.keys()], o.clock),
      suppressions: new Suppressions(o.sql),
      unsubscribe,
      tracking,
      defaultFrom: o.defaultFrom,
      rateLimiter: !limited
        ? undefined
        : o.redis
          ? createRedisRateLimiter(o.redis, { prefix: `${o.redisPrefix}rate:`, clock: o.clock })
          : createPostgresRateLimiter(o.sql, { clock: o.clock }),
      limits: { providerPerSecond: o.providerPerSecond || undefined, tenantPerSecond: o.tenantPerSecond || undefined },
    },
  };
}

/**
 * Send-rate limits (a provider's requests a second, a tenant's messages a second) as GCRA, the
 * generic cell rate algorithm: one number a key, the "theoretical arrival time" (TAT) at which
 * the bucket would be empty again. A take of `count` cells moves the TAT forward by
 * count × emission interval; it is allowed while the TAT stays within `burst` intervals of now.
 *
 * Two backends with the same decisions, because the arithmetic is the same IEEE double
 * arithmetic in the same order on both and the caller passes the clock:
 *  - Redis: one Lua script (atomic; EVAL-able on Upstash too), the TAT in a key with PX expiry.
 *  - Postgres: one `insert … on conflict do update … returning` on `rate_limits` (migration 0006),
 *    for the embedded default and deployments without Redis.
 *
 * A take over the limit is never a failure: the caller turns retryAfterMs into a RetryAfter
 * (shared/queue/errors.ts), so the job waits its turn instead of burning an attempt on a 429.
 */
import type { Clock, Redis, SqlClient } from "../ports";
import { systemClock } from "../ports";

export interface RateLimit {
  /** Sustained rate: cells (requests or messages) a second. */
  ratePerSecond: number;
  /** Cells that may go at once from an idle key; at least 1. */
  burst: number;
}

export interface RateDecision {
  allowed: boolean;
  /** 0 when allowed; otherwise how long until the same take would be allowed. */
  retryAfterMs: number;
}

export interface RateLimiter {
  /** Takes `count` cells from `key` (e.g. `provider:resend`, `tenant:acme`) if the limit allows. */
  take(key: string, limit: RateLimit, count?: number): Promise<RateDecision>;
  /** Gives `key` its full burst again (e.g. a login that succeeded forgets the attempts before it). */
  reset(key: string): Promise<void>;
}

export interface RateLimiterOptions {
  /** Where "now" comes from; tests pass a controlled clock. */
  clock?: Clock;
}

/** The GCRA parameters in milliseconds, checked once in one place for both backends. */
interface Cells {
  /** count × emission interval: how far this take moves the TAT. */
  increment: number;
  /** burst × emission interval: how far ahead of now the TAT may run. */
  tolerance: number;
}

function cells(limit: RateLimit, count: number): Cells {
  if (!(limit.ratePerSecond > 0) || !Number.isFinite(limit.ratePerSecond)) {
    throw new RangeError(`ratePerSecond must be a positive number, got ${limit.ratePerSecond}`);
  }
  if (!Number.isInteger(limit.burst) || limit.burst < 1) {
    throw new RangeError(`burst must be an integer >= 1, got ${limit.burst}`);
  }
  if (!Number.isInteger(count) || count < 1) throw new RangeError(`count must be an integer >= 1, got ${count}`);
  // A take larger than the burst could never be allowed: the caller would wait forever.
  if (count > limit.burst) throw new RangeError(`count ${count} exceeds burst ${limit.burst}`);
  const interval = 1000 / limit.ratePerSecond;
  return { increment: count * interval, tolerance: limit.burst * interval };
}

/**
 * The decision from what a backend reports: whether it took the cells and the TAT it left (the
 * old one when denied). Shared, so both backends turn the same TAT into the same wait.
 */
function decide(allowed: boolean, tat: number, now: number, c: Cells): RateDecision {
  if (allowed) return { allowed: true, retryAfterMs: 0 };
  // The take fits once now' >= max(tat, now) + increment - tolerance.
  const wait = Math.max(tat, now) + c.increment - c.tolerance - now;
  return { allowed: false, retryAfterMs: Math.max(1, Math.ceil(wait)) };
}

/**
 * KEYS[1] the bucket; ARGV now, increment, tolerance (ms, as decimal strings). Returns
 * {1|0, tat}. The TAT is written with %.17g so the stored double round-trips exactly (Lua's
 * tostring keeps only 14 digits, which would drift from the Postgres backend). TIME is not
 * called: the caller's clock decides, which keeps tests deterministic and replicas consistent.
 * The key expires when the TAT passes: an absent key and a TAT in the past mean the same.
 */
export const GCRA_SCRIPT = `
local now = tonumber(ARGV[1])
local increment = tonumber(ARGV[2])
local tolerance = tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1])) or now
local base = math.max(tat, now)
local newTat = base + increment
if newTat - now <= tolerance then
  redis.call('SET', KEYS[1], string.format('%.17g', newTat), 'PX', math.max(1, math.ceil(newTat - now)))
  return {1, string.format('%.17g', newTat)}
end
return {0, string.format('%.17g', tat)}
`;

export interface RedisRateLimiterOptions extends RateLimiterOptions {
  /** Key prefix, e.g. `pm:{jobs}:rl:`; tests use a random one. */
  prefix: string;
}

export function createRedisRateLimiter(redis: Redis, opts: RedisRateLimiterOptions): RateLimiter {
  const clock = opts.clock ?? systemClock;
  return {
    async take(key, limit, count = 1) {
      const c = cells(limit, count);
      const now = clock.now().getTime();
      const reply = (await redis.eval(GCRA_SCRIPT, [opts.prefix + key], [now, c.increment, c.tolerance])) as [
        number | string,
        string,
      ];
      return decide(Number(reply[0]) === 1, Number(reply[1]), now, c);
    },
    async reset(key) {
      await redis.pipeline([["DEL", opts.prefix + key]]);
    },
  };
}

/**
 * The same algorithm in one statement. RETURNING sees only the new row, so the row keeps the
 * last take's decision in `allowed` (a denied take leaves `tat` as it was, which alone could
 * not tell "denied" from "allowed, and the TAT happened to land there"). The conflict branch
 * reads the locked, latest row (`r.tat`), so concurrent takers queue on the row lock and never
 * both spend the same cells. A missing row counts as tat = now, exactly like the Redis script;
 * the expressions are written in the script's order so the doubles come out the same.
 */
const TAKE_SQL = `
insert into rate_limits as r (key, tat, allowed)
values ($1,
        case when $2::float8 + $3::float8 - $2::float8 <= $4::float8 then $2::float8 + $3::float8 else $2::float8 end,
        $2::float8 + $3::float8 - $2::float8 <= $4::float8)
on conflict (key) do update set
  tat = case when greatest(r.tat, $2::float8) + $3::float8 - $2::float8 <= $4::float8
             then greatest(r.tat, $2::float8) + $3::float8 else r.tat end,
  allowed = greatest(r.tat, $2::float8) + $3::float8 - $2::float8 <= $4::float8
returning allowed, tat`;

/** No row means a full burst, exactly as an expired Redis key does. */
const RESET_SQL = `delete from rate_limits where key = $1`;

export function createPostgresRateLimiter(sql: SqlClient, opts: RateLimiterOptions = {}): RateLimiter {
  const clock = opts.clock ?? systemClock;
  return {
    async take(key, limit, count = 1) {
      const c = cells(limit, count);
      const now = clock.now().getTime();
      const [row] = await sql.query<{ allowed: boolean; tat: number | string }>(TAKE_SQL, [
        key,
        now,
        c.increment,
        c.tolerance,
      ]);
      if (!row) throw new Error("rate limit statement returned no row");
      return decide(row.allowed, Number(row.tat), now, c);
    },
    async reset(key) {
      await sql.query(RESET_SQL, [key]);
    },
  };
}

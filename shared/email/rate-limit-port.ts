/** A rate limiter shared by every worker (Redis or Postgres backed); see rate-limit.ts. */
export interface RateLimiter {
  /** Takes `count` cells from `key`'s allowance; when not allowed, nothing is taken and retryAfterMs says how long to wait. */
  take(key: string, limit: { ratePerSecond: number; burst: number }, count?: number): Promise<{ allowed: boolean; retryAfterMs: number }>;
}

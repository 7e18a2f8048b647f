import type { Backoff } from "../jobs/definition";

/**
 * Delay before the retry that follows `attempt` (1-based): exponential with "equal jitter",
 * a random point in [d/2, d] where d = base * 2^(attempt-1), capped at max. Equal rather than
 * full jitter so that delays grow from one attempt to the next (until the cap) while still spreading
 * a thundering herd of retries over half the window.
 */
export function backoffDelay(backoff: Backoff, attempt: number, random: () => number = Math.random): number {
  const exp = Math.min(backoff.maxMs, backoff.baseMs * 2 ** Math.max(0, attempt - 1));
  return Math.round(exp / 2 + random() * (exp / 2));
}

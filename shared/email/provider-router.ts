import type { Clock } from "../ports";
import { type Mailer, ProviderError } from "./mailer";

/**
 * Chooses a tenant's provider and fails over: when the preferred provider is unavailable, the
 * failed one rests for a while (a circuit breaker) and the next one takes the message, if the
 * failure proves the first did not (a 5xx answer, a refused connection: not a timeout), so one
 * provider's outage does not stall every send behind retries and no message is sent twice.
 */
export class ProviderRouter {
  private readonly downUntil = new Map<string, number>();

  constructor(
    private readonly mailers: ReadonlyMap<string, Mailer>,
    /** Provider names in order of preference when a tenant names none. */
    private readonly defaults: readonly string[],
    private readonly clock: Clock,
    /** How long a provider that failed as unavailable is skipped. Defaults to 30 s. */
    private readonly restMs = 30_000,
  ) {
    for (const name of defaults) if (!mailers.has(name)) throw new Error(`unknown mail provider "${name}"`);
  }

  byName(name: string): Mailer | undefined {
    return this.mailers.get(name);
  }

  /** Providers to try for a tenant, preferred first, resting ones last. */
  candidates(preferred?: string): Mailer[] {
    const names = preferred && this.mailers.has(preferred) ? [preferred, ...this.defaults.filter((n) => n !== preferred)] : [...this.defaults];
    const now = this.clock.now().getTime();
    const up = names.filter((n) => (this.downUntil.get(n) ?? 0) <= now);
    const resting = names.filter((n) => (this.downUntil.get(n) ?? 0) > now);
    return [...up, ...resting].map((n) => this.mailers.get(n)!);
  }

  /** Runs `attempt` with each candidate until one succeeds or fails for a reason failover cannot fix. */
  async withFailover<T>(preferred: string | undefined, attempt: (mailer: Mailer) => Promise<T>): Promise<{ mailer: Mailer; value: T }> {
    let last: unknown;
    for (const mailer of this.candidates(preferred)) {
      try {
        const value = await attempt(mailer);
        this.downUntil.delete(mailer.name);
        return { mailer, value };
      } catch (err) {
        last = err;
        if (!(err instanceof ProviderError) || err.failure !== "unavailable") throw err;
        this.downUntil.set(mailer.name, this.clock.now().getTime() + this.restMs);
        // The message may have arrived: another provider would deliver it a second time. The
        // retry goes to this one again, under the same key; later messages go elsewhere meanwhile.
        if (err.mayHaveLeft) throw err;
      }
    }
    throw last;
  }
}

import type { Clock, Logger, Sql } from "../ports";
import type { Job, LaneEntry } from "../queue/job";
import type { Ledger } from "../queue/ledger";
import type { Dispatcher } from "./dispatcher";
import { WakeHub } from "./wake";

/**
 * The Postgres driver: workers claim straight from the ledger with FOR UPDATE SKIP LOCKED and
 * are woken by LISTEN/NOTIFY where the connection can listen (pg, PGlite); elsewhere they poll.
 */
export class PostgresDispatcher implements Dispatcher {
  readonly name = "postgres" as const;
  readonly wakesThroughPostgres = true;
  private readonly wake = new WakeHub();
  private unlisten?: () => Promise<void>;

  constructor(
    private readonly sql: Sql,
    private readonly ledger: Ledger,
    private readonly clock: Clock,
    private readonly logger: Logger,
  ) {}

  async start(): Promise<void> {
    if (this.sql.listen && !this.unlisten) {
      this.unlisten = await this.sql.listen("pm_jobs", (type) => this.wake.notify(type));
    }
  }

  async publish(entries: readonly LaneEntry[]): Promise<void> {
    // The insert's own pg_notify wakes other processes; this wakes our own workers without the round trip.
    for (const type of new Set(entries.map((e) => e.type))) this.wake.notify(type);
  }

  take(types: readonly string[], limit: number, workerId: string, leaseMs: number): Promise<Job[]> {
    const now = this.clock.now();
    return this.ledger.claimNext(types, limit, now, new Date(now.getTime() + leaseMs), workerId);
  }

  waitForWork(types: readonly string[], timeoutMs: number, signal?: AbortSignal): Promise<void> {
    return this.wake.wait(types, timeoutMs, signal);
  }

  async reconcile(): Promise<number> {
    return 0;
  }

  async repairLaneHeads(): Promise<number> {
    return 0; // the ledger is the lane
  }

  async close(): Promise<void> {
    await this.unlisten?.().catch((err: unknown) => this.logger.warn("unlisten failed", { err: String(err) }));
    this.unlisten = undefined;
  }
}

import type { Job, LaneEntry } from "../queue/job";

/**
 * How jobs reach workers. The ledger (Postgres) always decides who runs a job: a dispatcher
 * only says which queued jobs to try to claim next, and when to look.
 */
export interface Dispatcher {
  readonly name: "redis" | "postgres";
  /** Whether inserts and promotions should pg_notify listeners (the Postgres driver's wake-up). */
  readonly wakesThroughPostgres: boolean;
  /** Places committed queued jobs in their lanes. Never throws: a lane that misses a job is rebuilt by reconcile. */
  publish(entries: readonly LaneEntry[]): Promise<void>;
  /** Claims up to `limit` jobs of these types for a worker: highest priority first, fair across tenants. */
  take(types: readonly string[], limit: number, workerId: string, leaseMs: number): Promise<Job[]>;
  /** Resolves when jobs of these types may be waiting, after timeoutMs at the latest, or when signal aborts. */
  waitForWork(types: readonly string[], timeoutMs: number, signal?: AbortSignal): Promise<void>;
  /**
   * Rebuilds lanes from the ledger when they may have lost entries (or always with force, or
   * when a full pass is due every everyMs); returns how many entries were placed.
   */
  reconcile(options?: { force?: boolean; everyMs?: number }): Promise<number>;
  /**
   * A cheap, bounded check between full reconciles: puts back queued jobs found missing from the
   * heads of these types' lanes twice in a row (ids a worker popped and then died or lost the
   * reply before claiming); returns how many. Run by the scheduler every pass.
   */
  repairLaneHeads(types: readonly string[]): Promise<number>;
  /** Starts listening for wake-ups (Node); a no-op where nothing can listen (edge). */
  start(): Promise<void>;
  close(): Promise<void>;
}

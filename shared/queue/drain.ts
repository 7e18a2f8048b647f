import type { Logger } from "../ports";
import type { Handler } from "./handler";
import type { Queue } from "./queue";
import type { StatsRecorder } from "./stats";
import { WorkerPool } from "./worker";

export interface DrainOptions {
  queue: Queue;
  stats: StatsRecorder;
  handlers: readonly Handler[];
  workerId: string;
  /** Jobs run at once (the edge is I/O bound; mind the platform's connection limits). */
  concurrency: number;
  /** Stop taking jobs after this long; what was not taken stays queued, untouched. */
  budgetMs: number;
  /** After the budget, how long running jobs may take before they are handed back. */
  graceMs: number;
  /** Stop taking jobs after this many (bounds subrequests a platform counts). */
  maxJobs?: number;
  leaseMs?: number;
  logger?: Logger;
}

export interface DrainReport {
  processed: number;
  stoppedBy: "idle" | "budget" | "max-jobs";
  elapsedMs: number;
}

/**
 * Runs jobs for a bounded time, for runtimes that are invoked rather than long-lived (a cron
 * trigger or queue consumer on Cloudflare): the same worker pool as on Node, stopped when the
 * lanes are empty, the budget is spent or enough jobs ran, then every outcome written.
 */
export async function drain(options: DrainOptions): Promise<DrainReport> {
  const started = Date.now();
  let stop!: (why: DrainReport["stoppedBy"]) => void;
  const stopped = new Promise<DrainReport["stoppedBy"]>((resolve) => (stop = resolve));
  const pool: WorkerPool = new WorkerPool({
    name: "drain",
    handlers: options.handlers,
    concurrency: options.concurrency,
    queue: options.queue,
    stats: options.stats,
    workerId: options.workerId,
    logger: options.logger,
    leaseMs: options.leaseMs,
    // Claims only for free slots: maxJobs counts what runs, and jobs claimed ahead of them would
    // run past it (a platform's subrequest limit) or be handed back at the budget's end.
    prefetch: 0,
    idleWaitMs: 100,
    admit: () => {
      if (options.maxJobs !== undefined && pool.processed + pool.activeCount >= options.maxJobs) {
        stop("max-jobs");
        return false;
      }
      return true;
    },
    onIdle: () => stop("idle"),
  });
  const timer = setTimeout(() => stop("budget"), options.budgetMs);
  pool.start();
  const stoppedBy = await stopped;
  clearTimeout(timer);
  await pool.stop(options.graceMs);
  await options.stats.flush().catch((err: unknown) => options.logger?.warn("stats flush failed", { err: String(err) }));
  return { processed: pool.processed, stoppedBy, elapsedMs: Date.now() - started };
}

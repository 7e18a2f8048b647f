import type { Clock, SqlClient } from "../ports";
import { StatsAdd } from "./statements";

/** Upper bounds (seconds) of job_duration_seconds buckets; +Inf is implied. Changing them needs a migration of job_stats. */
export const DURATION_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600] as const;

interface Cell {
  completed: number;
  failed: number;
  retried: number;
  durationSum: number;
  buckets: number[];
}

const emptyCell = (): Cell => ({
  completed: 0,
  failed: 0,
  retried: 0,
  durationSum: 0,
  buckets: new Array(DURATION_BUCKETS.length + 1).fill(0),
});

/**
 * Counts outcomes in memory and adds them to job_stats in one statement per flush, so the hot
 * path pays nothing per job. Counters live in Postgres because the edge keeps no memory between
 * invocations and a worker-only process serves no /metrics: the ledger is the one place every
 * runtime can add to and the API can read from.
 */
export class StatsRecorder {
  private cells = new Map<string, Cell>();

  constructor(
    private readonly sql: SqlClient,
    private readonly clock: Clock,
  ) {}

  record(type: string, outcome: "completed" | "failed" | "retried", durationMs?: number): void {
    const minute = Math.floor(this.clock.now().getTime() / 60_000) * 60_000;
    const key = `${type}\u0000${minute}`;
    let cell = this.cells.get(key);
    if (!cell) this.cells.set(key, (cell = emptyCell()));
    cell[outcome] += 1;
    if (durationMs !== undefined) {
      const seconds = durationMs / 1000;
      cell.durationSum += seconds;
      let i = DURATION_BUCKETS.findIndex((b) => seconds <= b);
      if (i < 0) i = DURATION_BUCKETS.length;
      cell.buckets[i]! += 1;
    }
  }

  get pending(): number {
    return this.cells.size;
  }

  async flush(): Promise<void> {
    if (this.cells.size === 0) return;
    const cells = this.cells;
    this.cells = new Map();
    const entries = [...cells.entries()].map(([key, cell]) => {
      const [type, minute] = key.split("\u0000") as [string, string];
      return { type, minute: new Date(Number(minute)).toISOString(), cell };
    });
    try {
      await this.sql.query(StatsAdd, [
        entries.map((e) => e.type),
        entries.map((e) => e.minute),
        entries.map((e) => e.cell.completed),
        entries.map((e) => e.cell.failed),
        entries.map((e) => e.cell.retried),
        entries.map((e) => e.cell.durationSum),
        entries.map((e) => JSON.stringify(e.cell.buckets)),
      ]);
    } catch (err) {
      // Put the counts back so a passing database error loses no metrics.
      for (const e of entries) {
        const key = `${e.type}\u0000${new Date(e.minute).getTime()}`;
        const cur = this.cells.get(key);
        if (!cur) this.cells.set(key, e.cell);
        else {
          cur.completed += e.cell.completed;
          cur.failed += e.cell.failed;
          cur.retried += e.cell.retried;
          cur.durationSum += e.cell.durationSum;
          e.cell.buckets.forEach((n, i) => (cur.buckets[i]! += n));
        }
      }
      throw err;
    }
  }
}

import type { Clock, SqlClient } from "../ports";

/** What a worker process (or an edge drain) says about itself at each heartbeat. */
export interface WorkerReport {
  id: string;
  runtime: "node" | "edge";
  pools: string[];
  /** Slots of all its pools together. */
  concurrency: number;
  /** Each pool's own slots, where pools do not share one limit (a Node process; not an edge drain). */
  poolConcurrency?: Record<string, number>;
  inFlight: number;
  /** Resident memory in bytes, where the runtime can tell. */
  memoryRss?: number;
  /** Resident memory over the memory available to the process (0-1), where the runtime can tell. */
  memoryRatio?: number;
  /** Pools that stopped taking jobs for now (memory pressure). */
  intakePaused: string[];
  startedAt: Date;
}

export interface RegisteredWorker extends WorkerReport {
  heartbeatAt: Date;
  /** No heartbeat for longer than the registry's silence threshold. */
  silent: boolean;
}

const WorkerUpsert = `
insert into workers as w (id, runtime, pools, concurrency, in_flight, memory_rss, memory_ratio, intake_paused, started_at, heartbeat_at, pool_concurrency)
values ($1, $2, $3::text[], $4, $5, $6, $7, $8::text[], $9, $10, $11::jsonb)
on conflict (id) do update set pools = excluded.pools, concurrency = excluded.concurrency, pool_concurrency = excluded.pool_concurrency, in_flight = excluded.in_flight,
  memory_rss = excluded.memory_rss, memory_ratio = excluded.memory_ratio, intake_paused = excluded.intake_paused,
  heartbeat_at = excluded.heartbeat_at`;

const WorkerList = `
select id, runtime, pools, concurrency, pool_concurrency, in_flight, memory_rss::float8 as memory_rss, memory_ratio, intake_paused,
       started_at, heartbeat_at
from workers where heartbeat_at >= $1 order by runtime, id`;

/**
 * The worker registry: each Node worker process and each edge drain reports a heartbeat; the
 * dashboard and the scaling signals read it. Rows of workers gone silent are kept for a while
 * (marked silent) so an operator sees what disappeared, then pruned by maintenance.cleanup.
 */
export class WorkerRegistry {
  constructor(
    private readonly sql: SqlClient,
    private readonly clock: Clock,
    /** A worker with no heartbeat for this long is shown as silent. Defaults to 30 s. */
    readonly silentAfterMs = 30_000,
  ) {}

  async report(r: WorkerReport): Promise<void> {
    await this.sql.query(WorkerUpsert, [
      r.id,
      r.runtime,
      r.pools,
      r.concurrency,
      r.inFlight,
      r.memoryRss ?? null,
      r.memoryRatio ?? null,
      r.intakePaused,
      r.startedAt.toISOString(),
      this.clock.now().toISOString(),
      r.poolConcurrency ? JSON.stringify(r.poolConcurrency) : null,
    ]);
  }

  async remove(id: string): Promise<void> {
    await this.sql.query("delete from workers where id = $1", [id]);
  }

  /** Workers heard from within `withinMs` (default a day), newest state first. */
  async list(withinMs = 24 * 3_600_000): Promise<RegisteredWorker[]> {
    const now = this.clock.now().getTime();
    const rows = await this.sql.query<Record<string, unknown>>(WorkerList, [new Date(now - withinMs).toISOString()]);
    return rows.map((r) => {
      const heartbeatAt = r.heartbeat_at instanceof Date ? r.heartbeat_at : new Date(String(r.heartbeat_at));
      return {
        id: String(r.id),
        runtime: r.runtime as "node" | "edge",
        pools: r.pools as string[],
        concurrency: Number(r.concurrency),
        poolConcurrency: r.pool_concurrency == null ? undefined : (typeof r.pool_concurrency === "string" ? JSON.parse(r.pool_concurrency) : r.pool_concurrency) as Record<string, number>,
        inFlight: Number(r.in_flight),
        memoryRss: r.memory_rss == null ? undefined : Number(r.memory_rss),
        memoryRatio: r.memory_ratio == null ? undefined : Number(r.memory_ratio),
        intakePaused: (r.intake_paused as string[]) ?? [],
        startedAt: r.started_at instanceof Date ? r.started_at : new Date(String(r.started_at)),
        heartbeatAt,
        silent: now - heartbeatAt.getTime() > this.silentAfterMs,
      };
    });
  }

  /** Forgets workers silent for longer than `olderThanMs`; returns how many. */
  async prune(olderThanMs: number): Promise<number> {
    const rows = await this.sql.query("delete from workers where heartbeat_at < $1 returning 1", [
      new Date(this.clock.now().getTime() - olderThanMs).toISOString(),
    ]);
    return rows.length;
  }
}

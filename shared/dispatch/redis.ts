import type { Clock, Logger, Redis, RedisCommand } from "../ports";
import type { Job, LaneEntry } from "../queue/job";
import type { Ledger } from "../queue/ledger";
import type { Dispatcher } from "./dispatcher";
import { BAND, POP_SCRIPT } from "./lanes-script";
import { PostgresDispatcher } from "./postgres";
import { WakeHub } from "./wake";

export interface RedisDispatcherOptions {
  /** Key prefix; keep a {hash tag} in it so all lanes share one cluster slot. Defaults to "pm:{jobs}:". */
  prefix?: string;
  /** After a Redis error, how long to claim from Postgres before trying Redis again. Defaults to 1 s. */
  retryRedisAfterMs?: number;
  /** Entries a reconcile writes a round trip. Defaults to 5,000. */
  reconcileBatch?: number;
  /** Queued jobs a head check compares a lane (type and priority). Defaults to 200. */
  headCheck?: number;
  /**
   * Pages (of reconcileBatch) the periodic full pass writes a call; the rest waits for the next
   * call at a cursor kept in Redis. Defaults to 4 (20,000 entries). A rebuild of lanes Redis lost
   * is not paged: it runs to the end, since workers claim through Postgres until it is done.
   */
  periodicPages?: number;
}

/**
 * The Redis driver: queued job ids wait in per-type sorted sets; workers pop a batch with one
 * script call and claim it in Postgres with one UPDATE guarded by state = 'queued', so a stale or
 * duplicated id simply does not come back. Whenever Redis is unreachable, or its lanes are
 * missing after a flush or restart, workers claim from Postgres (the fallback driver) instead,
 * and reconcile rebuilds the lanes from the ledger.
 */
export class RedisDispatcher implements Dispatcher {
  readonly name = "redis" as const;
  readonly wakesThroughPostgres = false;
  private readonly prefix: string;
  private readonly wake = new WakeHub();
  private readonly fallback: PostgresDispatcher;
  private unsubscribe?: () => Promise<void>;
  private redisDownUntil = 0;
  /** Set when a publish failed: this process knows the lanes miss entries. */
  private lanesIncomplete = false;
  /** Set when the last pop found no epoch marker (lanes flushed, or being rebuilt). */
  private epochMissing = false;
  private rebuilding?: Promise<number>;

  constructor(
    private readonly redis: Redis,
    private readonly ledger: Ledger,
    sqlFallback: PostgresDispatcher,
    private readonly clock: Clock,
    private readonly logger: Logger,
    private readonly options: RedisDispatcherOptions = {},
  ) {
    this.prefix = options.prefix ?? "pm:{jobs}:";
    this.fallback = sqlFallback;
  }

  laneKey(type: string): string {
    return `${this.prefix}lane:${type}`;
  }
  get epochKey(): string {
    return `${this.prefix}epoch`;
  }
  /** Queued jobs the last head check found missing from their lanes; put back if still missing at the next. */
  get suspectsKey(): string {
    return `${this.prefix}head-suspects`;
  }
  /** Where the periodic full pass resumes (the last id it placed), while one is under way. */
  get fullPassCursorKey(): string {
    return `${this.prefix}full-reconcile-cursor`;
  }
  get wakeChannel(): string {
    return `${this.prefix}wake`;
  }

  async start(): Promise<void> {
    if (this.redis.subscribe && !this.unsubscribe) {
      try {
        this.unsubscribe = await this.redis.subscribe(this.wakeChannel, (type) => this.wake.notify(type));
      } catch (err) {
        this.logger.warn("redis subscribe failed; idle workers will poll", { err: String(err) });
      }
    }
  }

  private get redisUsable(): boolean {
    return this.clock.now().getTime() >= this.redisDownUntil;
  }

  private markDown(err: unknown, during: string): void {
    if (this.redisUsable) this.logger.warn(`redis unavailable during ${during}; using postgres meanwhile`, { err: String(err) });
    this.redisDownUntil = this.clock.now().getTime() + (this.options.retryRedisAfterMs ?? 1_000);
  }

  private laneCommands(entries: readonly LaneEntry[], nx: boolean): RedisCommand[] {
    const byType = new Map<string, (string | number)[]>();
    for (const e of entries) {
      let args = byType.get(e.type);
      if (!args) byType.set(e.type, (args = []));
      args.push(e.priority * BAND + e.vtime, e.id);
    }
    const cmds: RedisCommand[] = [];
    for (const [type, args] of byType) {
      cmds.push(nx ? ["ZADD", this.laneKey(type), "NX", ...args] : ["ZADD", this.laneKey(type), ...args]);
    }
    return cmds;
  }

  async publish(entries: readonly LaneEntry[]): Promise<void> {
    if (entries.length === 0) return;
    if (!this.redisUsable) {
      // Down a moment ago: not waiting 1-2 s for the client to fail again (each enqueue and each
      // scheduler pass would); the lanes are rebuilt once Redis answers.
      this.lanesIncomplete = true;
      for (const type of new Set(entries.map((e) => e.type))) this.wake.notify(type);
      return;
    }
    const cmds = this.laneCommands(entries, false);
    for (const type of new Set(entries.map((e) => e.type))) cmds.push(["PUBLISH", this.wakeChannel, type]);
    try {
      await this.redis.pipeline(cmds);
    } catch (err) {
      // The jobs are safe in the ledger; until the lanes are rebuilt workers find them through Postgres.
      this.lanesIncomplete = true;
      this.markDown(err, "publish");
    }
    // Wake this process's own workers even when Redis is down: they will claim through Postgres.
    for (const type of new Set(entries.map((e) => e.type))) this.wake.notify(type);
  }

  async take(types: readonly string[], limit: number, workerId: string, leaseMs: number): Promise<Job[]> {
    if (this.redisUsable && !this.lanesIncomplete) {
      const keys = types.map((t) => this.laneKey(t));
      let popped: (string | number)[] | null;
      try {
        popped = (await this.redis.eval(POP_SCRIPT, [this.epochKey, ...keys], [limit, BAND])) as (string | number)[] | null;
      } catch (err) {
        this.markDown(err, "pop");
        return this.fallback.take(types, limit, workerId, leaseMs);
      }
      this.epochMissing = popped === null;
      if (popped !== null) {
        const ids: string[] = [];
        for (let i = 0; i < popped.length; i += 3) ids.push(String(popped[i]));
        const now = this.clock.now();
        let claimed: Job[];
        try {
          claimed = await this.ledger.claimByIds(ids, now, new Date(now.getTime() + leaseMs), workerId);
        } catch (err) {
          // Postgres restarting, or this connection terminated: the ids left Redis but no job
          // became active (or, if the claim committed before the connection died, the jobs are
          // active and their leases will expire). Either way they must be back in their lanes,
          // or they wait for the next full reconcile: 250 s with 100-200 jobs idle, measured.
          await this.putBack(popped, keys, types);
          throw err;
        }
        // Every id was stale (claimed through Postgres meanwhile, or gone): live ids may wait behind
        // them, so the worker must look again at once instead of idling until a wake-up.
        if (claimed.length === 0 && ids.length > 0) for (const t of types) this.wake.notify(t);
        return claimed;
      }
      // No epoch marker: Redis lost its lanes, or another process is rebuilding them. Rebuild unless
      // one is under way (the lock decides); claim from Postgres now. Not marking the lanes
      // incomplete here: a rebuild would then take the marker away again, other processes would
      // see it missing and rebuild in turn, and so on without end.
      void this.reconcile().catch(() => {});
      return this.fallback.take(types, limit, workerId, leaseMs);
    }
    if (this.lanesIncomplete && this.redisUsable) void this.reconcile({ force: true }).catch(() => {});
    return this.fallback.take(types, limit, workerId, leaseMs);
  }

  /**
   * Returns popped ids whose claim failed to their lanes with the scores they had (ZADD NX: an
   * entry a reconcile put back meanwhile keeps its place; a stale one is harmless, the claim
   * skips it), and wakes the workers that wait on them. When Redis refuses too, this process
   * marks the lanes incomplete, so its next take rebuilds them from the ledger.
   */
  private async putBack(popped: readonly (string | number)[], keys: readonly string[], types: readonly string[]): Promise<void> {
    if (popped.length === 0) return;
    const byLane = new Map<number, (string | number)[]>();
    for (let i = 0; i < popped.length; i += 3) {
      const lane = Number(popped[i + 2]) - 2; // KEYS[2..] in the script are keys[0..] here
      let args = byLane.get(lane);
      if (!args) byLane.set(lane, (args = []));
      args.push(String(popped[i + 1]), String(popped[i]));
    }
    const cmds: RedisCommand[] = [];
    for (const [lane, args] of byLane) cmds.push(["ZADD", keys[lane]!, "NX", ...args]);
    for (const lane of byLane.keys()) cmds.push(["PUBLISH", this.wakeChannel, types[lane]!]);
    try {
      await this.redis.pipeline(cmds);
    } catch (err) {
      this.lanesIncomplete = true;
      this.markDown(err, "putting popped ids back");
    }
    for (const lane of byLane.keys()) this.wake.notify(types[lane]!);
  }

  waitForWork(types: readonly string[], timeoutMs: number, signal?: AbortSignal): Promise<void> {
    // While lanes are unusable, wake-ups come from this process only; poll Postgres more often.
    const usable = this.redisUsable && !this.lanesIncomplete && !this.epochMissing;
    return this.wake.wait(types, usable ? timeoutMs : Math.min(timeoutMs, 1_000), signal);
  }

  /**
   * Places every queued job of the ledger in its lane (ZADD NX: entries already there keep
   * their place), then sets the epoch marker. Runs when the marker is missing (Redis flushed or
   * restarted), after this process failed to publish, or when forced; one rebuild at a time per
   * process, and a short Redis lock keeps processes from rebuilding together.
   */
  reconcile(options: { force?: boolean; everyMs?: number } = {}): Promise<number> {
    this.rebuilding ??= this.rebuild(options.force ?? false, options.everyMs).finally(() => {
      this.rebuilding = undefined;
    });
    return this.rebuilding;
  }

  private async rebuild(force: boolean, everyMs?: number): Promise<number> {
    const lockKey = `${this.prefix}reconcile-lock`;
    const batch = this.options.reconcileBatch ?? 5_000;
    let placed = 0;
    try {
      const [exists, cursor] = (await this.redis.pipeline([
        ["EXISTS", this.epochKey],
        ["GET", this.fullPassCursorKey],
      ])) as [number, string | null];
      // The periodic full pass (ids popped by a worker that died before claiming them), as
      // opposed to a rebuild of lanes that are missing or known to be incomplete.
      const periodic = exists === 1 && !force && !this.lanesIncomplete;
      if (periodic) {
        if (everyMs === undefined) return 0;
        // Timed by a key in Redis, so it runs every everyMs across all processes and edge
        // invocations together, not once per scheduler that happens to start; a pass under way
        // (its cursor set) goes on at every call until it ends.
        if (cursor === null) {
          const [due] = (await this.redis.pipeline([["SET", `${this.prefix}full-reconcile`, "1", "NX", "PX", everyMs]])) as [
            string | null,
          ];
          if (due !== "OK") return 0;
        }
      }
      const [locked] = (await this.redis.pipeline([["SET", lockKey, "1", "NX", "PX", 60_000]])) as [string | null];
      if (locked !== "OK") return 0;
      let finished = true;
      let after = periodic && cursor !== null ? cursor : "0";
      try {
        if (this.lanesIncomplete || exists === 0) {
          // Take the marker away first so every worker claims through Postgres until lanes are whole.
          await this.redis.pipeline([["DEL", this.epochKey]]);
        }
        this.lanesIncomplete = false;
        // A periodic pass writes a few pages a call: with 1,000,000 jobs waiting the whole pass
        // took 2 s, inside a scheduler pass whose rescue and promotion waited behind it.
        const pages = periodic ? Math.max(1, this.options.periodicPages ?? 4) : Number.POSITIVE_INFINITY;
        for (let page = 0; ; page++) {
          if (page >= pages) {
            finished = false;
            break;
          }
          const entries = await this.ledger.listQueued(after, batch);
          if (entries.length === 0) break;
          await this.redis.pipeline(this.laneCommands(entries, true));
          placed += entries.length;
          after = entries[entries.length - 1]!.id;
          if (entries.length < batch) break;
        }
        await this.redis.pipeline([
          ["SET", this.epochKey, String(this.clock.now().getTime())],
          // An unfinished pass resumes here; the expiry drops a cursor nobody comes back to.
          finished ? ["DEL", this.fullPassCursorKey] : ["SET", this.fullPassCursorKey, after, "PX", Math.max(60_000, (everyMs ?? 0) * 2)],
        ]);
      } finally {
        await this.redis.pipeline([["DEL", lockKey]]).catch(() => {});
      }
      if (finished) this.logger.info("redis lanes reconciled with the ledger", { placed });
      this.wake.notifyAll();
      return placed;
    } catch (err) {
      this.lanesIncomplete = true;
      this.markDown(err, "reconcile");
      return placed;
    }
  }

  /**
   * Compares the first queued jobs of each lane in the ledger with the lane in Redis. Popped ids
   * are always a lane's lowest scores, so ids popped and never claimed (a worker killed between
   * pop and claim, a pop whose reply was lost) sit at the head of the ledger's order. A job
   * missing at one check may just be between its pop and its claim, or its commit and its
   * publish (milliseconds); one still queued and missing at the next check (the next pass, in
   * whichever process leads then: the suspects wait in Redis) is put back. Bounded: one index
   * probe a lane and one ZMSCORE a type per pass; when half a lane's head was missing, more may
   * be beyond it and a full reconcile runs.
   */
  async repairLaneHeads(types: readonly string[]): Promise<number> {
    if (!this.redisUsable || this.lanesIncomplete || this.rebuilding || types.length === 0) return 0;
    const perLane = this.options.headCheck ?? 200;
    const heads = await this.ledger.laneHeads(types, perLane);
    const byType = new Map<string, LaneEntry[]>();
    for (const e of heads) {
      let list = byType.get(e.type);
      if (!list) byType.set(e.type, (list = []));
      list.push(e);
    }
    const lanes = [...byType];
    let replies: unknown[];
    try {
      replies = await this.redis.pipeline([
        ["EXISTS", this.epochKey],
        ["GET", this.suspectsKey],
        ...lanes.map(([type, list]): RedisCommand => ["ZMSCORE", this.laneKey(type), ...list.map((e) => e.id)]),
      ]);
    } catch (err) {
      this.markDown(err, "lane head check");
      return 0;
    }
    // No marker: the lanes are being rebuilt (or must be), which places every queued job anyway.
    if (replies[0] !== 1) return 0;
    const suspects = new Set(typeof replies[1] === "string" && replies[1] !== "" ? replies[1].split(",") : []);
    const missing: LaneEntry[] = [];
    let deepHole = false;
    lanes.forEach(([, list], i) => {
      const scores = replies[i + 2] as (string | null)[];
      const before = missing.length;
      list.forEach((e, j) => {
        if (scores[j] === null || scores[j] === undefined) missing.push(e);
      });
      if (missing.length - before >= perLane / 2) deepHole = true;
    });
    const confirmed = missing.filter((e) => suspects.has(e.id));
    const next = missing.filter((e) => !suspects.has(e.id)).map((e) => e.id);
    // Kept in Redis, not in this process: the edge runs each pass in a new invocation, and the
    // leader may change between two passes.
    const keep: RedisCommand[] =
      next.length > 0 ? [["SET", this.suspectsKey, next.join(","), "PX", 600_000]] : suspects.size > 0 ? [["DEL", this.suspectsKey]] : [];
    if (confirmed.length === 0) {
      await this.redis.pipeline(keep).catch((err: unknown) => this.markDown(err, "lane head check"));
      return 0;
    }
    this.logger.warn("queued jobs were missing from their redis lanes; putting them back", { count: confirmed.length });
    const cmds = this.laneCommands(confirmed, true);
    for (const type of new Set(confirmed.map((e) => e.type))) cmds.push(["PUBLISH", this.wakeChannel, type]);
    cmds.push(...keep);
    try {
      await this.redis.pipeline(cmds);
    } catch (err) {
      this.lanesIncomplete = true;
      this.markDown(err, "lane head repair");
      return 0;
    }
    for (const type of new Set(confirmed.map((e) => e.type))) this.wake.notify(type);
    if (deepHole) void this.reconcile({ force: true }).catch(() => {});
    return confirmed.length;
  }

  async close(): Promise<void> {
    await this.unsubscribe?.().catch(() => {});
    this.unsubscribe = undefined;
  }
}

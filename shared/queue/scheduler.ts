import { SYSTEM_TENANT } from "../jobs/catalog";
import { type CronSchedule, cronIdempotencyKey, cronSchedules, previousSlot } from "./cron";
import { type Logger, silentLogger } from "../ports";
import type { Queue } from "./queue";
import type { StatsRecorder } from "./stats";

export interface SchedulerOptions {
  queue: Queue;
  /** Unique per process (or per edge invocation): the leader lease's holder. */
  holderId: string;
  stats?: StatsRecorder;
  logger?: Logger;
  /** How long leadership lasts without renewal. Defaults to 15 s. */
  leaseTtlMs?: number;
  /** A cron slot missed by up to this long (scheduler down) still runs. Defaults to 1 hour. */
  cronCatchUpMs?: number;
  /** How often lanes are rebuilt from the ledger even when nothing looks wrong. Defaults to 5 minutes. */
  reconcileEveryMs?: number;
  /** Rows one rescue or promotion statement moves. Defaults to 5,000. */
  batch?: number;
  /**
   * Periodic work of other modules (the sending guards' check), run by the leader after the
   * engine's own steps, so it runs once however many processes run a scheduler, on both
   * runtimes. A failing task is logged and the pass goes on. Defaults to none.
   */
  tasks?: readonly SchedulerTask[];
}

/** One module's periodic work, run by the scheduler's leader (see SchedulerOptions.tasks). */
export interface SchedulerTask {
  name: string;
  /** At most this often, by the queue's clock. Defaults to every pass. */
  everyMs?: number;
  run(): Promise<unknown>;
}

export interface SchedulerReport {
  leader: boolean;
  rescued: number;
  promoted: number;
  cronEnqueued: number;
  reconciled: number;
}

/**
 * The one leader's housekeeping, in one idempotent pass (runOnce): rescue jobs whose lease
 * expired (back to the head of their lanes), promote due scheduled jobs into their lanes,
 * enqueue due cron jobs, and reconcile the lanes with the ledger (in full every few minutes;
 * every pass the heads of the lanes, where ids popped and never claimed would be). Node runs it on a timer; the edge from its cron trigger.
 */
export class Scheduler {
  private readonly logger: Logger;
  private readonly crons: CronSchedule[];
  private readonly lastCronSlot = new Map<string, number>();
  private readonly lastTaskRun = new Map<string, number>();
  private timer?: ReturnType<typeof setTimeout>;
  private running?: Promise<unknown>;
  private stopped = false;
  /** The longest database call of the last pass, and of this one so far (ms, by the queue's clock). */
  private lastStallMs = 0;
  private passStallMs = 0;

  constructor(private readonly options: SchedulerOptions) {
    this.logger = (options.logger ?? silentLogger).child({ component: "scheduler" });
    this.crons = cronSchedules(options.queue.catalog);
  }

  async runOnce(): Promise<SchedulerReport> {
    const { queue } = this.options;
    const report: SchedulerReport = { leader: false, rescued: 0, promoted: 0, cronEnqueued: 0, reconciled: 0 };
    this.passStallMs = 0;
    const ttlMs = this.options.leaseTtlMs ?? 15_000;
    const lease = await this.timed(() => queue.ledger.acquireLease("scheduler", this.options.holderId, queue.clock.now(), ttlMs));
    report.leader = lease.held;
    if (!report.leader) return this.endPass(report);
    let takeoverMs = 0;
    if (lease.tookOver) {
      // The last leader stopped renewing a TTL before its lease ended: it died then, or it was
      // stuck on the database (a lock held longer than the TTL), and then so were the workers'
      // heartbeats. This first pass rescues only leases that ended before that; a dead leader's
      // own jobs, whose leases ran on a little after it, are rescued one pass later (a table lock
      // held 8 s twice against a 5 s TTL, Postgres driver: 4 and 8 jobs ran twice without this,
      // 0 and 0 with it; a killed leader's jobs run again after 5.8 s instead of 5.0-5.6 s).
      const lastRenewal = lease.tookOver.expiredAt.getTime() - ttlMs;
      takeoverMs = queue.clock.now().getTime() - lastRenewal;
      this.logger.info("took over the scheduler's leadership", { from: lease.tookOver.from });
    }
    const batch = this.options.batch ?? 5_000;
    // The rescue comes first and alone: promotion, crons and reconcile may take a while under
    // load, and a dead worker's jobs should run again within about one lease.
    for (;;) {
      const now = queue.clock.now();
      // After a database stall (a statement of ours waited), heartbeats that waited it out were
      // stamped when they were sent, so live workers' leases may read as expired: until a pass
      // runs without a stall, rescue only leases that ended a stall's length before now. The
      // workers renew as soon as the database answers, so their leases are fresh by then.
      const stallMs = Math.max(this.lastStallMs, this.passStallMs, takeoverMs);
      const { rescued, queued } = await this.timed(() =>
        queue.ledger.rescueExpired(now, batch, {
          notify: queue.dispatcher.wakesThroughPostgres,
          expiredBefore: new Date(now.getTime() - stallMs),
        }),
      );
      await queue.publish(queued);
      report.rescued += rescued.length;
      for (const r of rescued) {
        if (r.state === "failed") this.options.stats?.record(r.type, "failed");
        else if (r.state === "queued" || r.state === "paused") this.options.stats?.record(r.type, "retried");
      }
      if (rescued.length > 0) this.logger.warn("rescued jobs whose lease expired", { count: rescued.length });
      if (rescued.length < batch) break;
    }
    // Timed too: a lock on jobs blocks promotion (FOR UPDATE) as well, and the rescue must know of
    // a stall whichever statement of the pass waited it out (a chaos run with a table lock held
    // 8 s twice rescued 29 live jobs when only the rescue and the lease were timed).
    report.promoted = await this.timed(() => queue.promoteDue(batch));
    report.cronEnqueued = await this.timed(() => this.enqueueDueCrons());
    // The full reconcile is not timed: it pages through every queued job (seconds with 100,000).
    report.reconciled = await queue.dispatcher.reconcile({ everyMs: this.options.reconcileEveryMs ?? 5 * 60_000 });
    report.reconciled += await this.timed(() => queue.dispatcher.repairLaneHeads([...queue.catalog.keys()]));
    await this.runTasks();
    await this.options.stats?.flush().catch((err: unknown) => this.logger.warn("stats flush failed", { err: String(err) }));
    return this.endPass(report);
  }

  /** Runs a step, noting how long it kept this pass waiting (see the rescue). */
  private async timed<T>(call: () => Promise<T>): Promise<T> {
    const { clock } = this.options.queue;
    const started = clock.now().getTime();
    try {
      return await call();
    } finally {
      this.passStallMs = Math.max(this.passStallMs, clock.now().getTime() - started);
    }
  }

  private endPass(report: SchedulerReport): SchedulerReport {
    this.lastStallMs = this.passStallMs;
    return report;
  }

  private async runTasks(): Promise<void> {
    for (const task of this.options.tasks ?? []) {
      const now = this.options.queue.clock.now().getTime();
      const last = this.lastTaskRun.get(task.name);
      if (last !== undefined && now - last < (task.everyMs ?? 0)) continue;
      this.lastTaskRun.set(task.name, now);
      await task.run().catch((err: unknown) => this.logger.warn("scheduler task failed", { task: task.name, err: String(err) }));
    }
  }

  /** Enqueues each cron type's latest due slot once: the slot's time is the idempotency key. */
  private async enqueueDueCrons(): Promise<number> {
    const { queue } = this.options;
    const now = queue.clock.now();
    let enqueued = 0;
    for (const schedule of this.crons) {
      const { type, payload } = schedule;
      const slot = previousSlot(schedule, now);
      if (!slot || now.getTime() - slot.getTime() > (this.options.cronCatchUpMs ?? 3_600_000)) continue;
      if (this.lastCronSlot.get(type) === slot.getTime()) continue;
      const { created } = await queue.enqueue({
        type,
        tenantId: SYSTEM_TENANT,
        payload: payload as Record<string, unknown>,
        idempotencyKey: cronIdempotencyKey(slot),
      });
      this.lastCronSlot.set(type, slot.getTime());
      if (created) {
        enqueued += 1;
        this.logger.info("cron job enqueued", { type, slot: slot.toISOString() });
      }
    }
    return enqueued;
  }

  /** Runs runOnce every intervalMs until stop(); errors are logged and the next tick tries again. */
  start(intervalMs = 1_000): void {
    const tick = async () => {
      if (this.stopped) return;
      this.running = this.runOnce().catch((err: unknown) => this.logger.warn("scheduler pass failed", { err: String(err) }));
      await this.running;
      if (!this.stopped) this.timer = setTimeout(tick, intervalMs);
    };
    void tick();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    await this.running;
    await this.options.queue.ledger.releaseLease("scheduler", this.options.holderId).catch(() => {});
  }
}

import type { JobType } from "../jobs/definition";
import { type Logger, silentLogger } from "../ports";
import { JobCancelledError, JobTimeoutError } from "./errors";
import type { BatchResult, Handler, JobContext } from "./handler";
import type { Job } from "./job";
import type { Outcome } from "./ledger";
import { RunControl } from "./run-control";
import { failureOutcome, isPermanent, type Release, serializeError } from "./outcome";
import type { Queue } from "./queue";
import type { StatsRecorder } from "./stats";
import { sleep } from "../sleep";

export interface WorkerPoolOptions {
  /** The pool's name, for logs and the worker id. */
  name: string;
  handlers: readonly Handler[];
  /** Jobs run at once. */
  concurrency: number;
  /**
   * Most claimed jobs that may wait in the pool for a slot, beyond the running ones, so a claim
   * takes more than the free slots and a freed slot starts a waiting job without a round trip.
   * How many actually wait follows the pool's measured run time: as many as its slots start
   * within PREFETCH_HORIZON_MS (none until a run has been measured), so a waiting job waits
   * only that long. Their leases are renewed like running jobs'; at stop they are handed back.
   * Defaults to 500; 0 claims only for free slots.
   */
  prefetch?: number;
  queue: Queue;
  stats: StatsRecorder;
  /** Unique per process and pool; recorded on the jobs it claims. */
  workerId: string;
  logger?: Logger;
  /** How long a claim holds a job without a heartbeat. Defaults to 30 s. */
  leaseMs?: number;
  /** How often leases of running jobs are renewed. Defaults to a third of leaseMs. */
  heartbeatMs?: number;
  /** Longest idle wait before looking again without a wake-up. Defaults to 5 s. */
  idleWaitMs?: number;
  /** Called before each fetch; false pauses intake (e.g. memory pressure) without stopping running jobs. */
  admit?: () => boolean;
  /** Called when a fetch found no job and none is running (a drain uses it to finish early). */
  onIdle?: () => void;
}

interface Running {
  job: Job;
  control: RunControl;
  progress: unknown;
  progressDirty: boolean;
}

const SHUTDOWN = Symbol("shutdown");
/**
 * How far ahead a pool claims: jobs it expects its slots to start within this long. Bounds how
 * long a claimed job waits in the pool (where a pause or a higher-priority job no longer
 * reaches it) while letting a pool of short jobs claim hundreds at a time.
 */
const PREFETCH_HORIZON_MS = 50;
const LEASE_LOST = Symbol("lease lost");

/**
 * A pool of worker slots for a set of job types: it claims batches of jobs as slots free up,
 * runs them, renews their leases, and records outcomes in batches. One pool per process and
 * pool name; scale by running more processes.
 */
export class WorkerPool {
  readonly types: string[];
  private readonly handlers: Map<string, Handler>;
  private readonly defs: Map<string, JobType>;
  private readonly running = new Map<string, Running>();
  /** Claimed (leased) and waiting for a slot, in claim order; see WorkerPoolOptions.prefetch. */
  private waiting: Job[] = [];
  private readonly prefetch: number;
  /** Fewest jobs a batching pool starts at once while others run; see fillSlots. */
  private readonly launchBatch: number;
  /** A run's time in a slot (ms), averaged over recent runs; undefined until one was measured. */
  private runMs: number | undefined;
  private readonly logger: Logger;
  private readonly leaseMs: number;
  private readonly heartbeatMs: number;
  private readonly idleWaitMs: number;
  private readonly stop$ = new AbortController();
  private loop?: Promise<void>;
  private heartbeatTimer?: ReturnType<typeof setInterval>;
  private deadlineTimer?: ReturnType<typeof setInterval>;
  private slotFreed?: () => void;
  /** Outcomes waiting to be written; `release` hands a job back at shutdown without counting the attempt. */
  private outbox: { outcome: Outcome | Release; type: string; durationMs: number }[] =
    [];
  private flushing?: Promise<void>;
  private flushQueued = false;
  /**
   * Runs handed back (an outage cut them short) whose release is not written yet. The pool claims
   * nothing meanwhile: a claim sent before the write would pass over the job that is to run first
   * and take one queued behind it (seen in CI as a flaky order).
   */
  private releasing = 0;
  private beating?: Promise<void>;
  /**
   * Jobs run to an outcome not yet written (id -> attempt). Their leases are renewed too: a slow
   * outcome write (a lock held 8 s, past a 5 s lease) let the rescue run 97 finished jobs again.
   */
  private readonly unrecorded = new Map<string, number>();
  private beatDue = false;
  private settled?: () => void;
  /** Jobs run to an outcome by this pool since it started. */
  processed = 0;

  constructor(private readonly options: WorkerPoolOptions) {
    this.handlers = new Map(options.handlers.map((h) => [h.type, h]));
    this.types = [...this.handlers.keys()];
    this.defs = new Map();
    for (const type of this.types) {
      const def = options.queue.catalog.get(type);
      if (!def) throw new Error(`handler for unknown job type "${type}": add it to the catalog first`);
      this.defs.set(type, def);
    }
    this.logger = (options.logger ?? silentLogger).child({ pool: options.name, worker: options.workerId });
    this.leaseMs = options.leaseMs ?? 30_000;
    this.heartbeatMs = options.heartbeatMs ?? Math.max(50, Math.floor(this.leaseMs / 3));
    this.idleWaitMs = options.idleWaitMs ?? 5_000;
    this.prefetch = Math.max(0, options.prefetch ?? 500);
    const batching = options.handlers.every((h) => h.runBatch);
    this.launchBatch = batching
      ? Math.max(1, Math.min(...options.handlers.map((h) => h.maxBatch ?? 100), Math.ceil(options.concurrency / 4)))
      : 1;
  }

  get name(): string {
    return this.options.name;
  }

  get activeCount(): number {
    return this.running.size;
  }

  get concurrency(): number {
    return this.options.concurrency;
  }

  start(): void {
    if (this.loop || this.types.length === 0) return;
    this.heartbeatTimer = setInterval(() => void this.heartbeat(), this.heartbeatMs);
    // One timer for every run's timeout, ticking at a tenth of the shortest timeout (50 ms-1 s).
    const shortest = Math.min(...[...this.defs.values()].map((d) => d.timeoutMs));
    this.deadlineTimer = setInterval(() => this.abortOverdue(), Math.min(1_000, Math.max(50, shortest / 10)));
    this.loop = this.run().catch((err: unknown) => {
      this.logger.error("worker loop crashed", { err: String(err) });
    });
  }

  /** Wakes the pool if it is idle (e.g. after a local enqueue). */
  private get stopping(): boolean {
    return this.stop$.signal.aborted;
  }

  /** How many claimed jobs may wait now: what the slots start within the horizon, at most `prefetch`. */
  private get waitTarget(): number {
    if (this.runMs === undefined || this.prefetch === 0) return 0;
    return Math.min(this.prefetch, Math.floor((this.options.concurrency * PREFETCH_HORIZON_MS) / Math.max(this.runMs, 0.001)));
  }

  /** How many more jobs this pool may hold: free slots, and places to wait in. */
  private get room(): number {
    return this.options.concurrency - this.running.size + this.waitTarget - this.waiting.length;
  }

  /**
   * Fetch in batches: waiting for a quarter of the room to free costs a little latency under
   * full load but saves a round trip a job.
   */
  private get minFetch(): number {
    return Math.max(1, Math.ceil((this.options.concurrency + this.waitTarget) / 4));
  }

  /** Starts waiting jobs in the free slots, without a round trip. */
  private fillSlots(): void {
    const free = this.options.concurrency - this.running.size;
    if (free <= 0 || this.waiting.length === 0 || this.stopping) return;
    let n = Math.min(free, this.waiting.length);
    // A batching pool starts whole batches while others run and more jobs wait than fit: slots
    // freed a few at a time would otherwise each start a batch of a few, which ends and frees a
    // few again, and every batch pays its own round trips and commits (a 20,000-mail campaign at
    // concurrency 400 ran in batches of 40 on average where 100 fit: 553 -> 455 µs of CPU a mail
    // with whole batches). With nothing running, or room for every waiting job, all start now.
    if (this.running.size > 0 && n < this.waiting.length) n -= n % this.launchBatch;
    if (n > 0) this.launch(this.waiting.splice(0, n));
  }

  private async run(): Promise<void> {
    const { queue } = this.options;
    let errors = 0;
    while (!this.stopping) {
      this.fillSlots();
      const room = this.room;
      if (room <= 0 || (room < this.minFetch && this.running.size > 0)) {
        // Woken by a run that leaves room for a batch; the timeout claims a smaller room too.
        await this.waitForSlot(room <= 0 ? 1_000 : 20);
        continue;
      }
      if (this.releasing > 0) {
        await Promise.race([this.flushing, sleep(1_000, this.stop$.signal)]);
        continue;
      }
      if (this.options.admit && !this.options.admit()) {
        await sleep(1_000, this.stop$.signal);
        continue;
      }
      let jobs: Job[];
      const asked = Date.now();
      try {
        jobs = await queue.dispatcher.take(this.types, room, this.options.workerId, this.leaseMs);
        errors = 0;
      } catch (err) {
        errors += 1;
        // Capped at 1 s: a cheap failed attempt a second while Postgres is away, and the jobs run
        // within a second of it answering again (a 5 s cap left them waiting up to 5 s more).
        const delay = Math.min(1_000, 100 * 2 ** Math.min(errors, 6));
        this.logger.warn("claiming jobs failed; retrying", { err: String(err), retryInMs: delay });
        await sleep(delay, this.stop$.signal);
        continue;
      }
      if (jobs.length === 0) {
        if (this.running.size === 0) this.options.onIdle?.();
        if (this.stopping) break;
        await queue.dispatcher.waitForWork(this.types, this.idleWaitMs, this.stop$.signal);
        continue;
      }
      jobs.sort((a, b) => (a.priority === b.priority ? a.vtime - b.vtime : rank(a) - rank(b)));
      // Behind the jobs claimed before (they run first), into the slots free now.
      this.waiting.push(...jobs);
      this.fillSlots();
      // The claim's lease was stamped when it was sent: after a claim that waited (a lock on
      // jobs), renew at once rather than at the next tick, which may come after the lease ends.
      if (Date.now() - asked > this.heartbeatMs / 2) void this.heartbeat();
    }
  }

  private waitForSlot(timeoutMs?: number): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.slotFreed = undefined;
        this.stop$.signal.removeEventListener("abort", done);
        resolve();
      };
      const timer = timeoutMs === undefined ? undefined : setTimeout(done, timeoutMs);
      this.slotFreed = done;
      this.stop$.signal.addEventListener("abort", done, { once: true });
    });
  }

  private launch(jobs: Job[]): void {
    const batches = new Map<string, Job[]>();
    for (const job of jobs) {
      const handler = this.handlers.get(job.type)!;
      if (handler.runBatch) {
        let list = batches.get(job.type);
        if (!list) batches.set(job.type, (list = []));
        list.push(job);
      } else {
        void this.execute([job], handler);
      }
    }
    for (const [type, list] of batches) {
      const handler = this.handlers.get(type)!;
      const size = handler.maxBatch ?? 100;
      for (let i = 0; i < list.length; i += size) void this.execute(list.slice(i, i + size), handler);
    }
  }

  /** Runs one job (run) or several of one type (runBatch) and queues their outcomes. */
  private async execute(jobs: Job[], handler: Handler): Promise<void> {
    const def = this.defs.get(jobs[0]!.type)!;
    const control = new RunControl(def.timeoutMs);
    for (const job of jobs) this.running.set(job.id, { job, control, progress: undefined, progressDirty: false });
    const started = Date.now();
    const startedPrecisely = performance.now();
    const first = jobs[0]!;
    const parentLogger = this.logger;
    let logger: Logger | undefined;
    const ctx: JobContext = {
      get signal() {
        return control.signal;
      },
      // Made on first use: a child logger costs microseconds a job that most handlers never spend.
      get logger() {
        return (logger ??= parentLogger.child({ job: jobs.length === 1 ? first.id : jobs.map((j) => j.id), type: first.type }));
      },
      progress: (value) => {
        for (const job of jobs) {
          const r = this.running.get(job.id);
          if (r) {
            r.progress = value;
            r.progressDirty = true;
          }
        }
      },
    };
    let results: BatchResult[];
    try {
      if (handler.runBatch) {
        for (const job of jobs) job.payload = def.payload.parse(job.payload);
        results = await control.race(handler.runBatch(jobs, ctx));
        if (results.length !== jobs.length) {
          throw new Error(`${first.type} runBatch returned ${results.length} results for ${jobs.length} jobs`);
        }
      } else {
        const payload = def.payload.parse(first.payload);
        results = [{ ok: true, result: await control.race(handler.run!(payload, first, ctx)) }];
      }
    } catch (err) {
      results = jobs.map(() => ({ ok: false, error: err }));
    }
    const durationMs = Date.now() - started;
    const slotMs = performance.now() - startedPrecisely;
    this.runMs = this.runMs === undefined ? slotMs : this.runMs * 0.9 + slotMs * 0.1;
    const reason: unknown = control.aborted ? control.reason : undefined;
    const now = this.options.queue.clock.now();
    jobs.forEach((job, i) => {
      const r = results[i]!;
      if (reason === LEASE_LOST) return; // another worker owns the job now: record nothing
      if (reason === SHUTDOWN) {
        this.record(job, { id: job.id, attempt: job.attempt, state: "release" }, durationMs);
        return;
      }
      const outcome: Outcome | Release = r.ok
        ? { id: job.id, attempt: job.attempt, state: "completed", result: r.result ?? null }
        : failureOutcome(job, def, reason instanceof Error && !isPermanent(r.error) ? reason : r.error, now);
      if (outcome.state === "release") {
        parentLogger.warn("run cut short by a database outage; the job waits in its place", { job: job.id, type: job.type, attempt: job.attempt });
      } else if (!r.ok && outcome.state === "failed") {
        // The job child logger would name the job (or the batch) a second time: one key each.
        parentLogger.warn("job failed", { job: job.id, type: job.type, attempt: job.attempt, error: outcome.error?.message });
      }
      this.record(job, outcome, durationMs);
    });
    for (const job of jobs) this.running.delete(job.id);
    this.processed += jobs.length;
    this.scheduleFlush();
    this.fillSlots();
    // The claim loop wakes when there is room for a batch (or nothing runs), not at every job.
    if (this.room >= this.minFetch || this.running.size === 0) this.slotFreed?.();
    if (this.running.size === 0) this.settled?.();
  }

  private scheduleFlush(): void {
    if (this.flushQueued) return;
    this.flushQueued = true;
    // A flush in progress lets outcomes pile up; the next one takes them all in one statement.
    const prior = this.flushing ?? Promise.resolve();
    this.flushing = prior.then(() => {
      this.flushQueued = false;
      return this.flush();
    });
  }

  private async flush(): Promise<void> {
    const items = this.outbox;
    if (items.length === 0) return;
    this.outbox = [];
    const { queue, stats } = this.options;
    const released = items.filter((i) => i.outcome.state === "release");
    const finished: { outcome: Outcome; type: string; durationMs: number }[] = [];
    for (const i of items) if (i.outcome.state !== "release") finished.push({ ...i, outcome: i.outcome });
    for (let attempt = 1; ; attempt++) {
      try {
        const now = queue.clock.now();
        const [held, handedBack] = await Promise.all([
          queue.ledger.finishMany(
            finished.map((i) => i.outcome),
            now,
          ),
          queue.ledger.releaseMany(
            released.map((i) => ({ id: i.outcome.id, attempt: i.outcome.attempt })),
            now,
            queue.dispatcher.wakesThroughPostgres,
          ),
        ]);
        const kept = new Set(held.map((h) => h.id));
        const dropped = finished.filter((i) => !kept.has(i.outcome.id)).map((i) => i.outcome.id);
        // Taken back by the rescue and claimed by another run before this write landed: that run's
        // outcome decides, and this job ran twice (at-least-once; effects must be idempotent).
        if (dropped.length > 0) {
          this.logger.warn("outcomes not recorded: the jobs were rescued and claimed again", {
            jobs: dropped.slice(0, 20),
            count: dropped.length,
          });
        }
        for (const item of finished) {
          if (!kept.has(item.outcome.id)) continue;
          const s = item.outcome.state;
          if (s === "completed") stats.record(item.type, "completed", item.durationMs);
          else if (s === "failed") stats.record(item.type, "failed", item.durationMs);
          else if (s === "scheduled" && !item.outcome.refund) stats.record(item.type, "retried", item.durationMs);
        }
        for (const i of items) if (this.unrecorded.get(i.outcome.id) === i.outcome.attempt) this.unrecorded.delete(i.outcome.id);
        if (handedBack.length > 0) await queue.publish(handedBack);
        this.releasing -= released.length;
        return;
      } catch (err) {
        // The outcomes are the only record of work done: keep trying while the database is away
        // (the lease keeps the jobs from running elsewhere meanwhile, and expires if we die).
        this.logger.warn("recording job outcomes failed; retrying", { err: String(err), jobs: items.length, attempt });
        await sleep(Math.min(1_000, 50 * 2 ** Math.min(attempt, 7)));
      }
    }
  }

  /**
   * Renews leases of running jobs; aborts the ones cancelled or no longer held. One renewal at a
   * time: while one waits (a slow or locked database) the next tick only notes that another is
   * due, and it is sent the moment the first returns, stamped with the lease from then. Heartbeats
   * piling up behind a stall would each carry a lease stamped before it, already past when they
   * finally run.
   */
  async heartbeat(): Promise<void> {
    if (this.running.size === 0 && this.unrecorded.size === 0 && this.waiting.length === 0) return;
    if (this.beating) {
      this.beatDue = true;
      return this.beating;
    }
    this.beating = (async () => {
      do {
        this.beatDue = false;
        await this.renewLeases();
      } while (this.beatDue && (this.running.size > 0 || this.unrecorded.size > 0 || this.waiting.length > 0));
    })().finally(() => {
      this.beating = undefined;
    });
    return this.beating;
  }

  private async renewLeases(): Promise<void> {
    if (this.running.size === 0 && this.unrecorded.size === 0 && this.waiting.length === 0) return;
    const entries = [...this.running.values()];
    // The progress each entry sends: one reported while this write is out stays dirty for the next.
    const sentProgress = new Map(entries.map((r) => [r, r.progress]));
    const done = [...this.unrecorded].filter(([id]) => !this.running.has(id));
    const waiting = this.waiting.slice();
    const now = this.options.queue.clock.now();
    try {
      const held = await this.options.queue.ledger.heartbeatMany(
        [
          ...entries.map((r) => ({ id: r.job.id, attempt: r.job.attempt, progress: r.progressDirty ? r.progress : undefined })),
          ...done.map(([id, attempt]) => ({ id, attempt, progress: undefined })),
          ...waiting.map((j) => ({ id: j.id, attempt: j.attempt, progress: undefined })),
        ],
        new Date(now.getTime() + this.leaseMs),
      );
      const byId = new Map(held.map((h) => [h.id, h]));
      for (const r of entries) {
        if (r.progress === sentProgress.get(r)) r.progressDirty = false;
        const h = byId.get(r.job.id);
        if (!this.running.has(r.job.id)) continue; // finished meanwhile
        if (!h) r.control.abort(LEASE_LOST);
        else if (!h.busy && h.cancel_requested) r.control.abort(new JobCancelledError());
      }
      // A waiting job whose lease is gone is someone else's now; one with a cancel request ends
      // here, cancelled, without running.
      const keep = (j: Job) => {
        const h = byId.get(j.id);
        if (h && !(h.cancel_requested && !h.busy)) return true;
        if (h) this.record(j, { id: j.id, attempt: j.attempt, state: "cancelled", error: serializeError(new JobCancelledError(), j.attempt, now, false) });
        return false;
      };
      const gone = new Set(waiting.filter((j) => !keep(j)).map((j) => j.id));
      if (gone.size > 0) this.waiting = this.waiting.filter((j) => !gone.has(j.id));
    } catch (err) {
      this.logger.warn("heartbeat failed", { err: String(err), jobs: entries.length + done.length });
    }
  }

  private abortOverdue(): void {
    const now = Date.now();
    for (const r of this.running.values()) {
      if (now >= r.control.deadline) r.control.abort(new JobTimeoutError(r.control.timeoutMs));
    }
  }

  /** A cancel was requested for this job somewhere: check now rather than at the next heartbeat. */
  noticeCancel(jobId: string): void {
    if (this.running.has(jobId) || this.waiting.some((j) => j.id === jobId)) void this.heartbeat();
  }

  /** Queues one outcome for the next write. */
  private record(job: Job, outcome: Outcome | Release, durationMs = 0): void {
    this.outbox.push({ outcome, type: job.type, durationMs });
    if (outcome.state === "release") this.releasing += 1;
    this.unrecorded.set(job.id, job.attempt);
    this.scheduleFlush();
  }

  /**
   * Graceful stop: take no more jobs, let running ones finish within graceMs, then abort the
   * rest and hand them back to the queue (their attempt does not count), and record every outcome.
   */
  async stop(graceMs = 30_000): Promise<void> {
    this.stop$.abort();
    await this.loop;
    // Claimed, never started: handed back at once (in their place, the attempt not counted).
    for (const job of this.waiting.splice(0)) this.record(job, { id: job.id, attempt: job.attempt, state: "release" });
    if (this.running.size > 0) {
      const allSettled = new Promise<void>((resolve) => (this.settled = resolve));
      const graceOver = await Promise.race([allSettled.then(() => false), sleep(graceMs).then(() => true)]);
      if (graceOver && this.running.size > 0) {
        this.logger.warn("grace period over; handing back running jobs", { jobs: this.running.size });
        const left = [...this.running.values()];
        for (const r of left) r.control.abort(SHUTDOWN);
        // Handlers that ignore their signal are handed back here directly.
        await Promise.race([allSettled, sleep(1_000)]);
        const stuck = [...this.running.values()];
        if (stuck.length > 0) {
          await this.options.queue.ledger
            .releaseMany(stuck.map((r) => ({ id: r.job.id, attempt: r.job.attempt })), this.options.queue.clock.now())
            .catch((err: unknown) => this.logger.error("handing back jobs failed", { err: String(err) }));
        }
      }
    }
    clearInterval(this.heartbeatTimer);
    clearInterval(this.deadlineTimer);
    this.scheduleFlush();
    await this.flushing;
  }
}

const rank = (j: Job) => (j.priority === "high" ? 0 : j.priority === "normal" ? 1 : 2);



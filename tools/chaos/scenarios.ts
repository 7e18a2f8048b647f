/**
 * The chaos scenarios of issue 11, each bounded in jobs and time, loopback only. `scenarios("full")`
 * is `npm run chaos` (thousands of jobs, as in the table); `shortSuite()` is the
 * few-hundred-job version test/chaos.test.ts runs (one per kind: a worker kill over each provider,
 * a Redis fault, a Postgres fault, SIGTERM).
 *
 * "Mid-drain" means with work queued and in flight: faults strike once a share of the jobs
 * completed, or, where jobs trickle in, at set times while they still arrive.
 */
import type { PostgresCluster } from "./postgres-cluster";
import { ChaosSystem, HARNESS_APP_NAME, type Slot, type SystemOptions, sleep } from "./system";
import { type ScenarioResult, tally } from "./tally";

export type Kind = "worker kill" | "redis" | "postgres" | "sigterm" | "campaign" | "no fault";

export interface Scenario {
  name: string;
  kind: Kind;
  jobs: number;
  system: Omit<SystemOptions, "name">;
  /** From the system's start; at the deadline the scenario ends and what is not done is lost. */
  deadlineMs: number;
  /** Enqueues and strikes; returns the expected recipients when they are not the enqueued ones, and problems seen. */
  drive(system: ChaosSystem, jobs: number): Promise<{ expected?: string[]; problems?: string[] } | void>;
}

const between = (lo: number, hi: number) => lo + Math.random() * (hi - lo);
const other = (slot: Slot): Slot => (slot === "w1" ? "w2" : "w1");

/** All jobs up front, then one fault once `share` of them completed. */
function midDrain(share: number, strike: (s: ChaosSystem) => Promise<void>) {
  return async (s: ChaosSystem, jobs: number) => {
    await s.enqueueRange(0, jobs, 1_000);
    s.note(`all ${jobs} jobs enqueued`);
    await s.waitCompleted(Math.floor(jobs * share));
    await strike(s);
  };
}

/** SIGKILLs alternate workers `kills` times, every 3-5 s, while jobs trickle in; each is replaced at once. */
function repeatedKills(kills: number, trickleMs: number) {
  return async (s: ChaosSystem, jobs: number) => {
    void s.trickle(jobs, trickleMs);
    let slot: Slot = "w1";
    for (let k = 0; k < kills; k++) {
      await sleep(between(3_000, 5_000));
      await s.killWorker(slot, { restart: true });
      slot = other(slot);
    }
  };
}

/**
 * Kills that land between the provider's answer and the ledger's write: the sink SIGKILLs the
 * worker whose request it just accepted, before the worker hears the answer.
 */
function killsAtTheAnswer(kills: number, trickleMs: number) {
  return async (s: ChaosSystem, jobs: number) => {
    void s.trickle(jobs, trickleMs);
    let slot: Slot = "w1";
    for (let k = 0; k < kills; k++) {
      await sleep(between(2_000, 3_000));
      const proc = await s.worker(slot);
      const at = Date.now();
      const fired = new Promise<void>((resolve) => {
        s.sink.onAnswered((from) => {
          if (from !== slot || !proc.running) return;
          s.sink.onAnswered(undefined);
          // Synchronously, before the sink lets the answer go.
          proc.signal("SIGKILL");
          resolve();
        });
      });
      const timeout = sleep(15_000).then(() => "timeout" as const);
      if ((await Promise.race([fired, timeout])) === "timeout") {
        s.sink.onAnswered(undefined);
        s.note(`no request from ${slot} to kill at within 15 s`);
        continue;
      }
      await proc.exited;
      const held = await s.activeJobs(proc.pid);
      s.faults.push({ at: Date.now(), what: `SIGKILL ${proc.name} at the provider's answer`, inflight: held });
      s.note(`SIGKILL ${proc.name} at the provider's answer, ${Date.now() - at} ms after arming (${held.length} jobs in flight)`);
      s.track(s.startWorker(slot));
      slot = other(slot);
    }
  };
}

const pgRestart = (mode: "fast" | "immediate") =>
  midDrain(0.3, (s) => s.fault(`pg_ctl restart -m ${mode}`, () => s.cluster.restart(mode)));

/** Every app connection terminated: once, or in bursts (several rounds a burst). */
function terminateBackends(bursts: number, roundsPerBurst: number, roundGapMs = 200) {
  return midDrain(0.25, async (s) => {
    for (let b = 0; b < bursts; b++) {
      if (b > 0) await sleep(2_000);
      await s.fault(`pg_terminate_backend x${roundsPerBurst}`, async () => {
        let n = 0;
        for (let r = 0; r < roundsPerBurst; r++) {
          if (r > 0) await sleep(roundGapMs);
          n += await s.cluster.terminateBackends(s.dbName, HARNESS_APP_NAME);
        }
        s.note(`${n} backends terminated`);
      });
    }
  });
}

/** SIGTERM one worker mid-drain; past the grace period, requests in flight outlast the grace. */
function sigterm(pastGrace: boolean, graceMs: number) {
  return midDrain(0.3, async (s) => {
    const proc = await s.worker("w1");
    if (pastGrace) {
      // Requests sent from now on take 3 s: the ones in flight at the signal outlast the grace.
      s.sink.setLatency(3_000);
      await sleep(400);
    }
    const held = await s.activeJobs(proc.pid);
    const sent = Date.now();
    await s.fault(
      `SIGTERM ${proc.name}${pastGrace ? " (requests in flight outlast the grace)" : ""}`,
      async () => {
        proc.signal("SIGTERM");
        const exit = await Promise.race([proc.exited, sleep(graceMs + 20_000).then(() => null)]);
        if (!exit) s.problems.push(`${proc.name} did not exit within grace + 20 s after SIGTERM`);
        else {
          s.note(`${proc.name} exited ${JSON.stringify(exit)} ${Date.now() - sent} ms after SIGTERM`);
          if (exit.code !== 0) s.problems.push(`${proc.name} exited with ${JSON.stringify(exit)} after SIGTERM, not 0`);
        }
      },
      held,
    );
    if (pastGrace) s.sink.setLatency(s.opts.latencyMs);
  });
}

/**
 * A 5,000-contact campaign over HTTP; the worker running its fan-out SIGKILLed mid-fan-out, then
 * the other (a sender) mid-send; each replaced at once.
 */
async function campaign(s: ChaosSystem, contacts: number): Promise<{ expected: string[]; problems: string[] }> {
  const problems: string[] = [];
  const list = await s.call("/v1/lists", { name: "everyone" });
  const expected: string[] = [];
  for (let b = 0; b < contacts; b += 1_000) {
    const batch = Array.from({ length: Math.min(1_000, contacts - b) }, (_, i) => ({ email: `c${b + i}@example.com`, name: `Person ${b + i}` }));
    expected.push(...batch.map((c) => c.email));
    await s.call("/v1/contacts", { contacts: batch, list_id: list.id });
  }
  const template = await s.call("/v1/templates", {
    name: "news",
    subject: "News for {{name}}",
    blocks: [{ type: "heading", text: "Hello {{name}}" }, { type: "text", text: "Something new." }],
  });
  const created = await s.call("/v1/campaigns", { name: "chaos", template_id: template.id, list_id: list.id });
  s.note(`${contacts} contacts and a campaign created over HTTP`);
  const state = async () =>
    (await s.q<{ status: string; cursor: string; done: boolean; recipients: number; sent: number; skipped: number; failed: number }>(
      "select status, fanout_cursor::text as cursor, fanout_done as done, recipients, sent, skipped, failed from campaigns where id = $1",
      [created.id],
    ))[0]!;
  const fanout = async () =>
    (await s.q<{ id: string; state: string; worker_id: string | null; attempt: number }>(
      "select id::text as id, state::text as state, worker_id, attempt from jobs where type = 'campaign.process'",
    ))[0];
  await s.call(`/v1/campaigns/${created.id}/start`);
  s.note("campaign started");
  // The fan-out's first checkpoint committed, the fan-out not finished: the moment to kill it.
  let atKill = await state();
  for (const deadline = Date.now() + 60_000; Date.now() < deadline; ) {
    atKill = await state();
    if (Number(atKill.cursor) > 0 || atKill.done) break;
    await sleep(2);
  }
  const job = await fanout();
  const holder = (["w1", "w2"] as const).find((slot) => job?.worker_id && new RegExp(`:${s.workers.get(slot)?.pid}(:|$)`).test(job.worker_id));
  if (atKill.done || job?.state !== "active" || !holder) {
    problems.push(`the fan-out was not caught in flight (done ${atKill.done}, job ${JSON.stringify(job)}): raise the contacts`);
  }
  const fanoutSlot: Slot = holder ?? "w1";
  await s.killWorker(fanoutSlot, { restart: true });
  s.note(`fan-out worker killed at cursor ${atKill.cursor}, ${atKill.recipients} recipients`);
  // Then a sender, once a third of the mail went out.
  for (const deadline = Date.now() + 120_000; Date.now() < deadline && (await state()).sent < contacts / 3; ) await sleep(20);
  await s.killWorker(other(fanoutSlot), { restart: true });
  await s.track(
    (async () => {
      for (const deadline = s.t0 + 280_000; Date.now() < deadline; await sleep(200)) if ((await state()).status === "sent") return;
    })(),
  );
  const end = await state();
  const after = await fanout();
  if (end.status !== "sent") problems.push(`campaign ${end.status}, not sent`);
  if (end.recipients !== contacts || end.sent !== contacts || end.skipped + end.failed !== 0) {
    problems.push(`campaign counters ${JSON.stringify(end)}, expected ${contacts} recipients, all sent`);
  }
  if (after?.state !== "completed") problems.push(`campaign.process ${JSON.stringify(after)}, not completed`);
  else s.note(`campaign.process completed on attempt ${after.attempt}`);
  return { expected, problems };
}

interface Sizes {
  big: number;
  medium: number;
  small: number;
  contacts: number;
  trickleMs: number;
  kills: number;
  deadlineMs: number;
}

const SIZES: Record<"full" | "short", Sizes> = {
  full: { big: 10_000, medium: 3_000, small: 500, contacts: 5_000, trickleMs: 30_000, kills: 6, deadlineMs: 300_000 },
  short: { big: 300, medium: 300, small: 100, contacts: 1_000, trickleMs: 8_000, kills: 2, deadlineMs: 90_000 },
};

export function scenarios(scale: "full" | "short"): Scenario[] {
  const z = SIZES[scale];
  const resend = (latencyMs: number, workerEnv?: Record<string, string | number>) => ({ provider: "resend" as const, latencyMs, workerEnv });
  const smtp = (latencyMs: number) => ({ provider: "smtp" as const, latencyMs });
  const all: (Scenario & { short?: boolean })[] = [
    { name: "one worker SIGKILLed mid-drain (Resend, 50 ms)", kind: "worker kill", jobs: z.big, system: resend(50), deadlineMs: z.deadlineMs, drive: midDrain(0.3, (s) => s.killWorker("w1", { restart: false })) },
    { name: "one worker SIGKILLed mid-drain (SMTP, 20 ms)", kind: "worker kill", jobs: z.medium, system: smtp(20), deadlineMs: z.deadlineMs, drive: midDrain(0.3, (s) => s.killWorker("w1", { restart: false })) },
    { name: `a worker SIGKILLed every 3-5 s, ${z.kills} times, Resend 100 ms, trickling`, kind: "worker kill", jobs: z.big, system: resend(100), deadlineMs: z.deadlineMs, drive: repeatedKills(z.kills, z.trickleMs) },
    { name: `a worker SIGKILLed every 3-5 s, ${z.kills} times, Resend 300 ms, trickling`, kind: "worker kill", jobs: z.medium, system: resend(300), deadlineMs: z.deadlineMs, drive: repeatedKills(z.kills, z.trickleMs) },
    { name: `a worker SIGKILLed every 3-5 s, ${z.kills} times, SMTP 20 ms, trickling`, kind: "worker kill", jobs: z.medium, system: smtp(20), deadlineMs: z.deadlineMs, drive: repeatedKills(z.kills, z.trickleMs) },
    {
      name: `SIGKILL at the provider's answer, before the ledger write, ${z.kills} times (Resend 20 ms)`,
      kind: "worker kill",
      short: true,
      jobs: z.medium,
      system: resend(20),
      deadlineMs: z.deadlineMs,
      drive: killsAtTheAnswer(z.kills, z.trickleMs),
    },
    {
      name: `SIGKILL at the relay's 250, before the ledger write, ${z.kills} times (SMTP 20 ms)`,
      kind: "worker kill",
      short: true,
      jobs: z.medium,
      system: smtp(20),
      deadlineMs: z.deadlineMs,
      drive: killsAtTheAnswer(z.kills, z.trickleMs),
    },
    { name: "SMTP relay at 700 ms a message, no fault", kind: "no fault", jobs: z.small, system: smtp(700), deadlineMs: z.deadlineMs, drive: async (s, jobs) => void (await s.enqueueRange(0, jobs, 1_000)) },
    { name: "Redis FLUSHALL mid-drain", kind: "redis", short: true, jobs: z.big, system: resend(50), deadlineMs: z.deadlineMs, drive: midDrain(0.3, (s) => s.fault("Redis FLUSHALL", async () => void (await s.redisClient.flushall()))) },
    {
      name: "Redis down 15 s while enqueuing",
      kind: "redis",
      jobs: z.big,
      system: resend(50),
      deadlineMs: z.deadlineMs,
      drive: async (s, jobs) => {
        void s.trickle(jobs, z.trickleMs);
        await sleep(z.trickleMs / 6);
        await s.fault("Redis killed", () => s.redis.stop());
        await sleep(15_000);
        await s.redis.start();
        await s.redisClient.connect().catch(() => {});
        s.note("Redis back (empty)");
      },
    },
    { name: "Postgres restart -m fast mid-drain", kind: "postgres", jobs: z.big, system: resend(50), deadlineMs: z.deadlineMs, drive: pgRestart("fast") },
    { name: "Postgres restart -m immediate mid-drain", kind: "postgres", jobs: z.big, system: resend(50), deadlineMs: z.deadlineMs, drive: pgRestart("immediate") },
    { name: "pg_terminate_backend of every app connection, once", kind: "postgres", jobs: z.big, system: resend(50), deadlineMs: z.deadlineMs, drive: terminateBackends(1, 1) },
    { name: "pg_terminate_backend of every app connection, 3 bursts of 5", kind: "postgres", jobs: z.big, system: resend(50), deadlineMs: z.deadlineMs, drive: terminateBackends(3, 5) },
    {
      // The short suite's Postgres fault: a claim dies between the pop from Redis and its answer
      // often enough here that popped ids a failed claim drops show up (50 of 10,000 stranded
      // until the 5-minute reconcile on the code before 663f90c; at the short size too).
      name: "pg_terminate_backend of every app connection, 3 bursts of 10, 100 ms apart",
      kind: "postgres",
      short: true,
      jobs: scale === "short" ? 3_000 : z.big,
      system: resend(50),
      deadlineMs: z.deadlineMs,
      drive: terminateBackends(3, 10, 100),
    },
    { name: "SIGTERM mid-drain within the grace period", kind: "sigterm", jobs: z.big, system: resend(100), deadlineMs: z.deadlineMs, drive: sigterm(false, 30_000) },
    {
      name: "SIGTERM mid-drain past the grace period (500 ms)",
      kind: "sigterm",
      short: true,
      jobs: z.big,
      system: resend(50, { SHUTDOWN_GRACE_MS: 500 }),
      deadlineMs: z.deadlineMs,
      drive: sigterm(true, 500),
    },
    { name: `a campaign of ${z.contacts.toLocaleString("en-US")}, fan-out worker and a sender SIGKILLed`, kind: "campaign", jobs: z.contacts, system: resend(20), deadlineMs: z.deadlineMs, drive: campaign },
  ];
  return all;
}

/** What test/chaos.test.ts runs: one scenario of each kind, at the short size. */
export const shortSuite = (): Scenario[] => scenarios("short").filter((s) => (s as { short?: boolean }).short);

/** Runs one scenario on a fresh system (database, Redis, sink, processes) and tallies it. */
export async function runScenario(cluster: PostgresCluster, logRoot: string, scenario: Scenario, log: (line: string) => void = () => {}): Promise<ScenarioResult> {
  const slug = scenario.name.replace(/[^a-z0-9]+/gi, "-").replace(/^-|-$/g, "").toLowerCase().slice(0, 60);
  const system = await ChaosSystem.start(cluster, logRoot, { name: slug, ...scenario.system });
  try {
    log(`${scenario.name}: system up after ${system.rel(Date.now())}`);
    let driven: { expected?: string[]; problems?: string[] } | void = undefined;
    let driveError: unknown;
    try {
      driven = await scenario.drive(system, scenario.jobs);
    } catch (err) {
      driveError = err;
      system.note(`the scenario's driver failed: ${String(err)}`);
    }
    const expected = driven?.expected ?? system.recipients;
    await system.settle(scenario.kind === "campaign" ? expected.length : scenario.jobs, scenario.deadlineMs);
    const problems = [...(driven?.problems ?? []), ...system.problems];
    if (driveError) problems.push(`driver failed: ${String(driveError)}`);
    if (scenario.kind !== "campaign" && system.recipients.length !== scenario.jobs) {
      problems.push(`${system.recipients.length} of ${scenario.jobs} jobs enqueued`);
    }
    const result = await tally(system, {
      name: scenario.name,
      expected: scenario.kind === "campaign" ? expected : padTo(expected, scenario.jobs),
      problems,
    });
    log(`${scenario.name}: ${result.ok ? "ok" : "FAILED"} in ${system.rel(Date.now())}`);
    return result;
  } finally {
    await system.stop();
  }
}

/** The recipients a transactional scenario meant to mail, also those it never got to enqueue. */
function padTo(recipients: string[], n: number): string[] {
  const out = recipients.slice();
  for (let i = out.length; i < n; i++) out.push(`r${i}@example.com`);
  return out;
}

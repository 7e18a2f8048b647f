/**
 * SMTP has no idempotency key, so exactly one message per recipient rests on knowing, after a
 * crash, whether a message's terminating dot had gone to the relay. The real Node runtime
 * (workers/node.ts) sends through a real SMTP server (smtp-server) and is SIGKILLed at the
 * instants that decide it; a second runtime finishes the jobs.
 *
 * 1. Killed the moment the relay answers 250, before the ledger heard it (the relay holds
 *    messages 20 ms before answering, so others are in flight too): every recipient gets
 *    exactly one message. Before the handover journal, the killed message was sent again.
 * 2. Killed before the message left (at the DATA command, before the relay's 354): the retry
 *    sends it; nothing is lost.
 * 3. A relay that refuses after the dot (451): the handover note is cleared by the live sender,
 *    and the retry sends it again (one delivery, not zero).
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { SMTPServer } from "smtp-server";
import { ApiKeys } from "../shared/api/api-keys";
import { jsonApi } from "./support/api";
import { cleanupProcesses, startWorker, takeOutputs, type WorkerProcess } from "./support/processes";
import { createTestDatabase, randomId, waitFor } from "./support/services";

type TestDatabase = Awaited<ReturnType<typeof createTestDatabase>>;

const PEPPER = "smtp-handover-pepper-0123456789";
const TENANT = "acme";

/** What the relay does with one message once its dot arrived. */
type Verdict = { kind: "accept"; kill?: boolean } | { kind: "refuse" };

let db: TestDatabase;
let key: string;
let server: SMTPServer;
let port: number;
/** Complete messages (dot received) the relay did not refuse, per recipient. */
const delivered = new Map<string, number>();
let decide: (to: string, nth: number) => Verdict = () => ({ kind: "accept" });
/** Called at the DATA command, before the relay's 354: nothing of the message has left yet. */
let atData: ((to: string) => void) | undefined;
let messages = 0;
let victim: WorkerProcess | undefined;

beforeAll(async () => {
  db = await createTestDatabase("smtp_handover");
  key = (await new ApiKeys(db.sql, { pepper: PEPPER }).create({ tenantId: TENANT, admin: false, name: TENANT })).key;
  server = new SMTPServer({
    authOptional: true,
    disabledCommands: ["STARTTLS", "AUTH"],
    disableReverseLookup: true,
    logger: false,
    onData(stream, session, callback) {
      const to = session.envelope.rcptTo[0]!.address.toLowerCase();
      atData?.(to);
      stream.resume();
      stream.on("end", () => {
        const verdict = decide(to, ++messages);
        if (verdict.kind === "refuse") {
          return callback(Object.assign(new Error("4.3.0 Try again later"), { responseCode: 451 }));
        }
        delivered.set(to, (delivered.get(to) ?? 0) + 1);
        // The relay holds the message 20 ms, as a real one writes it to its queue, then answers.
        setTimeout(() => {
          callback();
          if (verdict.kill && victim) process.kill(victim.pid, "SIGKILL");
        }, 20);
      });
    },
  });
  server.on("error", () => {});
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", () => resolve()));
  port = (server.server.address() as { port: number }).port;
});

afterEach(async (ctx) => {
  if (ctx.task.result?.state === "fail") process.stderr.write(`\n${takeOutputs()}\n`);
  await cleanupProcesses();
  decide = () => ({ kind: "accept" });
  atData = undefined;
  victim = undefined;
});

afterAll(async () => {
  await cleanupProcesses();
  await new Promise<void>((resolve) => server?.close(() => resolve()));
  await db?.drop();
});

const env = () => ({
  DATABASE_URL: db.url,
  DATABASE_POOL_SIZE: 6,
  API_KEY_PEPPER: PEPPER,
  ADMIN_API_KEY: `pmk_admin_smtp_handover_${randomId(12)}`,
  HOST: "127.0.0.1",
  PORT: 0,
  SMTP_URL: `smtp://127.0.0.1:${port}`,
  MAIL_PROVIDERS: "smtp",
  MAIL_FROM: "Acme <news@acme.test>",
  LEASE_MS: 2_000,
  SCHEDULER_INTERVAL_MS: 200,
  LOG_LEVEL: "info",
});

const startRuntime = (name: string) => startWorker(name, env(), { script: "workers/node.ts" });

/** Enqueues one transactional email.send a recipient over the runtime's API; answers the job ids. */
async function enqueue(runtime: WorkerProcess, recipients: string[]): Promise<string[]> {
  const api = jsonApi((path, init) => fetch(`${runtime.url}${path}`, init), key).ok;
  const res = await api("POST", "/v1/jobs/batch", {
    jobs: recipients.map((recipient) => ({
      type: "email.send",
      payload: { recipient, template_id: "sys_transactional", variables: { title: `Hello ${recipient}` } },
    })),
  });
  return (res.jobs as { id: string }[]).map((j) => j.id);
}

interface JobRow {
  id: string;
  state: string;
  attempt: number;
  result: { status?: string; handed_over?: boolean } | null;
}

const jobsOf = async (ids: string[]) =>
  db.sql.query<JobRow>("select id::text, state::text, attempt, result from jobs where id = any($1::bigint[]) order by id", [ids]);

const allCompleted = (ids: string[]) =>
  waitFor(
    async () => {
      const rows = await jobsOf(ids);
      return rows.every((r) => r.state === "completed") ? rows : null;
    },
    { timeoutMs: 60_000, intervalMs: 200, what: "every job to complete" },
  ).then((rows) => rows!);

const notOnce = (recipients: string[]) => recipients.filter((r) => delivered.get(r) !== 1).map((r) => [r, delivered.get(r) ?? 0]);

describe("SMTP: the worker SIGKILLed at the instants that decide a message's fate", () => {
  it("killed the moment the relay answers 250, before the ledger's record: every recipient gets exactly one message", async () => {
    const recipients = Array.from({ length: 30 }, (_, i) => `kill-at-250-${i}@example.com`);
    const a = await startRuntime("runtime A");
    victim = a;
    let target: string | undefined;
    decide = (to, nth) => {
      if (nth !== 10 || !to.startsWith("kill-at-250-")) return { kind: "accept" };
      target = to;
      return { kind: "accept", kill: true };
    };
    const ids = await enqueue(a, recipients);
    expect(await a.exited).toEqual({ code: null, signal: "SIGKILL" });
    expect(target).toBeDefined();
    await startRuntime("runtime B");
    const rows = await allCompleted(ids);

    expect(notOnce(recipients), "recipients with other than one message").toEqual([]);
    // The message the kill cut off from its 250 was recorded from its handover, not sent again.
    const [send] = await db.sql.query<{ status: string; handed_over: boolean; detail: string | null; job_id: string }>(
      "select status, handed_over_at is not null as handed_over, detail, job_id::text from email_sends where recipient = $1",
      [target],
    );
    expect(send).toMatchObject({ status: "sent", handed_over: true, detail: expect.stringContaining("handed over") });
    expect(rows.find((r) => r.id === send!.job_id)).toMatchObject({ attempt: 2, result: { status: "sent", handed_over: true } });
  }, 120_000);

  it("killed before the message left (at DATA, before the relay's 354): the retry sends it, none lost", async () => {
    const recipients = Array.from({ length: 5 }, (_, i) => `kill-at-data-${i}@example.com`);
    const a = await startRuntime("runtime A");
    atData = (to) => {
      if (to === recipients[0] && victim) {
        process.kill(victim.pid, "SIGKILL");
        victim = undefined;
      }
    };
    victim = a;
    const ids = await enqueue(a, recipients);
    expect(await a.exited).toEqual({ code: null, signal: "SIGKILL" });
    await startRuntime("runtime B");
    await allCompleted(ids);
    expect(notOnce(recipients), "recipients with other than one message").toEqual([]);
    const [send] = await db.sql.query<{ status: string }>("select status from email_sends where recipient = $1", [recipients[0]]);
    expect(send).toEqual({ status: "sent" });
  }, 120_000);

  it("a relay that refuses after the dot (451): the note is cleared, and the retry sends again", async () => {
    const recipient = "refused-once@example.com";
    let refusals = 0;
    decide = (to) => (to === recipient && refusals++ === 0 ? { kind: "refuse" } : { kind: "accept" });
    const a = await startRuntime("runtime A");
    const [id] = await enqueue(a, [recipient]);
    // email.send's first retry waits its backoff (5 s base, with jitter).
    const [row] = await waitFor(
      async () => {
        const r = await jobsOf([id!]);
        return r[0]?.state === "completed" ? r : null;
      },
      { timeoutMs: 60_000, intervalMs: 200, what: "the refused job to complete on a retry" },
    ).then((r) => r!);
    expect(refusals).toBe(2);
    expect(delivered.get(recipient)).toBe(1);
    expect(row).toMatchObject({ attempt: 2, result: { status: "sent" } });
    expect(row!.result!.handed_over).toBeUndefined();
  }, 120_000);
});

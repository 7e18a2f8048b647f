/**
 * Issue 10, item 10: a failed run is classified by what its error declares. A TemplateError
 * (variables that do not fit) says `retryable: false`, so the job fails on its first attempt
 * instead of running 8 times to the dead letter; a ProviderError keeps its meaning (429/5xx
 * retried, a rejected message or bad credentials not); declarations are read through `cause`.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ProviderError } from "../shared/email/mailer";
import { createOutboxMailer } from "../shared/email/providers/outbox";
import { createEmailServices } from "../shared/email/services";
import { TemplateError } from "../shared/email/templates/errors";
import { importContacts } from "../shared/jobs/import-contacts";
import { silentLogger } from "../shared/ports";
import { createEngine, type Engine } from "../shared/queue/engine";
import { PermanentError, RetryAfter } from "../shared/queue/errors";
import type { Job } from "../shared/queue/job";
import { declaredRetryable, failureOutcome } from "../shared/queue/outcome";
import { WorkerPool } from "../shared/queue/worker";
import { createHandlers } from "../workers/handlers";
import { fastCatalog } from "./support/engine";
import { createTestDatabase, waitFor } from "./support/services";

const job = (attempt = 1, maxAttempts = 8) => ({ id: "1", attempt, maxAttempts }) as Job;
const now = new Date("2030-01-01T00:00:00Z");
const stateOf = (err: unknown) => failureOutcome(job(), importContacts, err, now, () => 0.5).state;

describe("failureOutcome follows what an error declares", () => {
  it("fails at once on a TemplateError, also as another error's cause", () => {
    const bad = new TemplateError("invalid_variables", "variables do not fit", [{ path: "rows_read", message: "too small" }]);
    expect(stateOf(bad)).toBe("failed");
    expect((failureOutcome(job(), importContacts, bad, now) as { error?: unknown }).error).toMatchObject({ name: "TemplateError", retryable: false });
    expect(stateOf(new Error("rendering failed", { cause: bad }))).toBe("failed");
  });

  it("reads retryable: false and permanent: true on any error", () => {
    expect(stateOf(Object.assign(new Error("x"), { retryable: false }))).toBe("failed");
    expect(stateOf(Object.assign(new Error("x"), { permanent: true }))).toBe("failed");
    expect(stateOf(new PermanentError("x"))).toBe("failed");
    expect(stateOf(new Error("outer", { cause: new PermanentError("inner") }))).toBe("failed");
  });

  it("keeps provider semantics: 429 and 5xx retried, a rejected message or bad credentials not", () => {
    expect(stateOf(new ProviderError("resend", "unavailable", "503"))).toBe("scheduled");
    expect(stateOf(new ProviderError("resend", "rate_limited", "429"))).toBe("scheduled");
    expect(stateOf(new ProviderError("resend", "rejected", "422"))).toBe("failed");
    expect(stateOf(new ProviderError("resend", "auth", "401"))).toBe("failed");
    // send-email turns a 429 with Retry-After into RetryAfter and a refusal into PermanentError, each with the ProviderError as cause.
    const wait = failureOutcome(job(), importContacts, new RetryAfter(5_000, "429", { cause: new ProviderError("resend", "rate_limited", "429", 5_000) }), now);
    expect(wait).toMatchObject({ state: "scheduled", runAt: new Date(now.getTime() + 5_000) });
    expect(stateOf(new PermanentError("refused", { cause: new ProviderError("resend", "rejected", "422") }))).toBe("failed");
    // The outermost declaration decides: a permanent wrapper over a retryable cause is permanent.
    expect(stateOf(new PermanentError("gave up", { cause: new ProviderError("resend", "unavailable", "503") }))).toBe("failed");
  });

  it("retries errors that declare nothing, and still fails them on the last attempt", () => {
    expect(stateOf(new Error("connection reset"))).toBe("scheduled");
    expect(stateOf("a string")).toBe("scheduled");
    expect(declaredRetryable(new Error("x"))).toBeUndefined();
    expect(failureOutcome(job(8, 8), importContacts, new Error("x"), now).state).toBe("failed");
    // A cycle of causes ends the search instead of looping.
    const a = new Error("a");
    const b = new Error("b", { cause: a });
    (a as { cause?: unknown }).cause = b;
    expect(declaredRetryable(a)).toBeUndefined();
  });
});

describe("email.send with variables that do not fit its template", () => {
  let db: Awaited<ReturnType<typeof createTestDatabase>>;
  let engine: Engine;
  let pool: WorkerPool;

  beforeAll(async () => {
    db = await createTestDatabase("job_outcome");
    engine = createEngine({ sql: db.sql, catalog: fastCatalog({ maxAttempts: 8 }) });
    await engine.dispatcher.start();
    const mail = createEmailServices({
      sql: db.sql,
      redisPrefix: "unused:",
      clock: engine.clock,
      mailers: [createOutboxMailer(db.sql)],
      defaultFrom: "Jobs <no-reply@jobs.test>",
      publicUrl: "http://jobs.test",
      unsubscribeSecret: "job-outcome-secret-0123",
    });
    const handlers = createHandlers({ sql: db.sql, clock: engine.clock, email: { queue: engine.queue, logger: silentLogger, send: mail.send } });
    pool = new WorkerPool({ name: "email", handlers: handlers.filter((h) => h.type === "email.send"), concurrency: 2, queue: engine.queue, stats: engine.stats, workerId: "outcome-test", idleWaitMs: 50 });
    pool.start();
  });
  afterAll(async () => {
    await pool.stop();
    await engine.dispatcher.close();
    await db.drop();
  });

  it("fails on its first attempt with the TemplateError, not after 8", async () => {
    // The system's own import notice, with a negative count the template's schema refuses.
    const { job: sent } = await engine.queue.enqueue({
      type: "email.send",
      tenantId: "acme",
      payload: { recipient: "owner@acme.test", template_id: "sys_import_finished", variables: { rows_read: -1, created: 0, updated: 0, invalid: 0, duplicate: 0 } },
    });
    const done = await waitFor(async () => {
      const j = await engine.queue.get(sent.id, null);
      // "scheduled" after a run is a retry waiting for its backoff (no scheduler runs here to promote it).
      return j.state === "failed" || (j.state === "scheduled" && j.attempt >= 1) ? j : null;
    });
    expect(done!.state).toBe("failed");
    expect(done!.attempt).toBe(1);
    expect(done!.lastError).toMatchObject({ name: "TemplateError", retryable: false });
  });
});

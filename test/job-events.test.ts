/**
 * GET /v1/jobs/:id/events: a job followed as Server-Sent Events, as an app's progress bar would.
 * A real worker pool runs the job, which reports progress three times and then completes; the
 * stream must show it queued, running, each progress value in order, completed, then `end`,
 * and close. Also: a job deleted while followed (`gone`), another tenant's job (a 404 problem,
 * no stream), a finished job (its view and `end` at once), and a client that leaves.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ApiKeys, type CreatedApiKey } from "../shared/api/api-keys";
import { createApp } from "../shared/api/app";
import { createEngine, type Engine } from "../shared/queue/engine";
import { WorkerPool } from "../shared/queue/worker";
import { fastCatalog } from "./support/engine";
import { createTestDatabase, waitFor } from "./support/services";

let db: Awaited<ReturnType<typeof createTestDatabase>>;
let engine: Engine;
let app: ReturnType<typeof createApp>;
let keyA: CreatedApiKey;
let keyB: CreatedApiKey;

beforeAll(async () => {
  db = await createTestDatabase("job_events");
  engine = createEngine({ sql: db.sql, catalog: fastCatalog() });
  await engine.dispatcher.start();
  const apiKeys = new ApiKeys(db.sql, { pepper: "job-events-pepper-0123456789" });
  keyA = await apiKeys.create({ tenantId: "acme", admin: false, name: "a" });
  keyB = await apiKeys.create({ tenantId: "globex", admin: false, name: "b" });
  app = createApp({ queue: engine.queue, sql: db.sql, apiKeys });
});
afterAll(async () => {
  await engine?.dispatcher.close();
  await db?.drop();
});

interface Event {
  event: string;
  id: string;
  data: any;
}

/** Reads a text/event-stream body in the background: `events` fills as they come, `done` at its end. */
function openEvents(res: Response): { events: Event[]; done: Promise<Event[]>; cancel(): Promise<void> } {
  const reader = res.body!.getReader();
  const decoder = new TextDecoder();
  const events: Event[] = [];
  const done = (async () => {
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read().catch(() => ({ value: undefined, done: true }));
      if (done) return events;
      buffer += decoder.decode(value, { stream: true });
      let end: number;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        const fields: Record<string, string> = {};
        for (const line of block.split("\n")) {
          if (!line || line.startsWith(":")) continue;
          const colon = line.indexOf(":");
          fields[line.slice(0, colon)] = line.slice(colon + 1).trimStart();
        }
        if (fields.event) events.push({ event: fields.event, id: fields.id ?? "", data: JSON.parse(fields.data ?? "null") });
      }
    }
  })();
  return { events, done, cancel: () => reader.cancel() };
}

const readEvents = (res: Response) => openEvents(res).done;

const follow = (id: string, key: string, signal?: AbortSignal) =>
  app.request(`/v1/jobs/${id}/events`, { headers: { authorization: `Bearer ${key}` }, signal });

/** A job of tenant acme's (an email.send, which no worker runs unless the test starts one). */
const enqueue = () =>
  engine.queue
    .enqueue({ type: "email.send", tenantId: "acme", payload: { recipient: "ada@example.com", template_id: "welcome" } })
    .then((r) => r.job.id);

describe("GET /v1/jobs/:id/events", () => {
  it("follows a job from queued through each progress report to completed, then ends", async () => {
    const gates: (() => void)[] = [];
    const step = () => new Promise<void>((r) => gates.push(r));
    const pool = new WorkerPool({
      name: "events",
      handlers: [
        {
          type: "email.send",
          run: async (_payload, _job, ctx) => {
            for (const done of [10, 50, 90]) {
              await step();
              ctx.progress({ done, of: 100 });
            }
            await step();
            return { sent: 1 };
          },
        },
      ],
      concurrency: 1,
      queue: engine.queue,
      stats: engine.stats,
      workerId: "events-test",
      // Progress reaches the ledger with the heartbeat: often, so each step is seen.
      heartbeatMs: 50,
      leaseMs: 5_000,
    });
    const id = await enqueue();
    const res = await follow(id, keyA.key);
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toMatch(/^text\/event-stream/);
    const stream = openEvents(res);
    pool.start();
    try {
      // Each step is let go once the stream has shown the one before: nothing depends on timing.
      const seen = (done: number) => stream.events.some((e) => e.event === "job" && e.data.progress?.done === done);
      for (const [i, before] of [undefined, 10, 50, 90].entries()) {
        await waitFor(() => gates.length > i && (before === undefined || seen(before)), { timeoutMs: 20_000, what: `step ${i}` });
        gates[i]!();
      }
      const events = await stream.done;
      const jobs = events.filter((e) => e.event === "job").map((e) => e.data);
      expect(jobs[0]).toMatchObject({ id, state: "queued" });
      expect(jobs.some((j) => j.state === "active")).toBe(true);
      const progress = jobs.map((j) => (j.progress as { done?: number } | null)?.done).filter((d) => d !== undefined);
      expect([...new Set(progress)]).toEqual([10, 50, 90]);
      expect(jobs.at(-1)).toMatchObject({ state: "completed", result: { sent: 1 } });
      expect(events.at(-1)).toMatchObject({ event: "end", data: { id, state: "completed" } });
      // Ids count up, so a client can tell the order.
      expect(events.map((e) => Number(e.id))).toEqual(events.map((_, i) => i + 1));
    } finally {
      await pool.stop();
    }
  });

  it("answers a finished job's view and end at once", async () => {
    const id = await enqueue();
    await db.sql.query("update jobs set state = 'completed', finished_at = now() where id = $1", [id]);
    const events = await readEvents(await follow(id, keyA.key));
    expect(events.map((e) => e.event)).toEqual(["job", "end"]);
    expect(events[0]!.data).toMatchObject({ id, state: "completed" });
  });

  it("says gone when the job is deleted while followed", async () => {
    const id = await enqueue();
    const res = await follow(id, keyA.key);
    const reading = readEvents(res);
    await new Promise((r) => setTimeout(r, 300));
    await db.sql.query("delete from jobs where id = $1", [id]);
    const events = await reading;
    expect(events.map((e) => e.event)).toEqual(["job", "gone"]);
  });

  it("another tenant's job is a 404 problem, not a stream", async () => {
    const id = await enqueue();
    const res = await follow(id, keyB.key);
    expect(res.status).toBe(404);
    expect(res.headers.get("content-type")).toMatch(/^application\/problem\+json/);
    expect((await follow("12abc", keyA.key)).status).toBe(404);
    const query = await app.request(`/v1/jobs/${id}/events?wait=5`, { headers: { authorization: `Bearer ${keyA.key}` } });
    expect(query.status).toBe(422);
  });

  it("stops reading the ledger when the client leaves", async () => {
    const id = await enqueue();
    const queue = engine.queue;
    const get = queue.get.bind(queue);
    let reads = 0;
    queue.get = (...args: Parameters<typeof get>) => {
      reads++;
      return get(...args);
    };
    try {
      const leave = new AbortController();
      const stream = openEvents(await follow(id, keyA.key, leave.signal));
      await waitFor(() => stream.events.length >= 1, { timeoutMs: 5_000, what: "the first event" });
      expect(stream.events[0]!.event).toBe("job");
      await new Promise((r) => setTimeout(r, 500));
      expect(reads).toBeGreaterThan(1); // it was following
      // A client that leaves: its request aborted and the body no longer read.
      leave.abort();
      await stream.cancel();
      await new Promise((r) => setTimeout(r, 1_200));
      const after = reads;
      await new Promise((r) => setTimeout(r, 2_500));
      expect(reads).toBe(after);
    } finally {
      queue.get = get;
    }
  });
});

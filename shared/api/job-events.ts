/**
 * A job's life as Server-Sent Events, for GET /v1/jobs/:id/events: a progress bar in the app
 * (an import's rows, a campaign fan-out's recipients) and the moment it ends, without polling.
 *
 *   event: job     the job's view (as GET /v1/jobs/:id answers), first at once, then at each
 *                  change of its state, attempt or progress
 *   event: end     the job finished (completed, failed or cancelled); the stream closes
 *   event: gone    the job was deleted (its retention ran out); the stream closes
 *
 * The ledger is read again with a backoff (100 ms doubling to 1 s, back to 100 ms after a change),
 * as the long-poll does, so a stream holds no database connection between reads and runs the
 * same on Node and in a Worker. A comment line every 15 s keeps proxies from closing an idle
 * stream. A stream lasts at most 10 minutes; EventSource reconnects by itself and the first
 * event tells the job as it is then.
 */
import type { SSEStreamingApi } from "hono/streaming";
import type { Job } from "../queue/job";
import { NotFoundError } from "../queue/errors";
import { sleep } from "../sleep";
import { FINISHED_STATES } from "./job-wait";

const FIRST_DELAY_MS = 100;
const MAX_DELAY_MS = 1_000;
const KEEPALIVE_MS = 15_000;
/** How long one stream lasts before the server closes it (the client reconnects). */
export const MAX_STREAM_MS = 10 * 60_000;

export interface JobEventsOptions {
  /** One ledger read; throws NotFoundError when the job is gone. */
  read: () => Promise<Job>;
  /** The job as the API shows it (redacted). */
  view: (job: Job) => unknown;
  signal: AbortSignal;
  now?: () => number;
  maxMs?: number;
}

/** What makes a new `job` event: the fields a progress bar or a waiting client reads. */
const fingerprint = (job: Job): string => JSON.stringify([job.state, job.attempt, job.progress ?? null]);

/** Writes the job's events to `stream` until it ends, is deleted, the client leaves, or time is up. */
export async function streamJobEvents(stream: SSEStreamingApi, first: Job, o: JobEventsOptions): Promise<void> {
  const now = o.now ?? Date.now;
  const deadline = now() + (o.maxMs ?? MAX_STREAM_MS);
  let seq = 0;
  const send = (event: string, data: unknown) => stream.writeSSE({ event, data: JSON.stringify(data), id: String(++seq) });
  let job = first;
  let last = fingerprint(job);
  await stream.writeSSE({ event: "job", data: JSON.stringify(o.view(job)), id: String(++seq), retry: 1_000 });
  let delay = FIRST_DELAY_MS;
  let quietSince = now();
  while (!FINISHED_STATES.has(job.state) && !o.signal.aborted && !stream.aborted && now() < deadline) {
    await sleep(Math.min(delay, Math.max(0, deadline - now())), o.signal);
    if (o.signal.aborted || stream.aborted) return;
    try {
      job = await o.read();
    } catch (err) {
      if (!(err instanceof NotFoundError)) throw err;
      await send("gone", { id: first.id });
      return;
    }
    const print = fingerprint(job);
    if (print !== last) {
      last = print;
      delay = FIRST_DELAY_MS;
      quietSince = now();
      await send("job", o.view(job));
    } else {
      delay = Math.min(delay * 2, MAX_DELAY_MS);
      if (now() - quietSince >= KEEPALIVE_MS) {
        quietSince = now();
        await stream.write(": keep-alive\n\n");
      }
    }
  }
  if (FINISHED_STATES.has(job.state)) await send("end", { id: job.id, state: job.state });
}

/**
 * A job's life as Server-Sent Events, for GET /v1/jobs/:id/events: a progress bar in the app
 * (an import's rows, a campaign fan-out's recipients) and the moment it ends, without polling.
 *
 *   event: job     the job's view (as GET /v1/jobs/:id answers), first at once, then at each
 *                  change of its state, attempt or progress
 *   event: end     the job finished (completed, failed or cancelled); the stream closes
 *   event: gone    the job was deleted (its retention ran out); the stream closes
 *
 * The reading, backoff, keep-alive and time limit are event-stream.ts's.
 */
import type { SSEStreamingApi } from "hono/streaming";
import type { Job } from "../queue/job";
import { streamChanges } from "./event-stream";
import { FINISHED_STATES } from "./job-wait";

export { MAX_STREAM_MS } from "./event-stream";

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
export function streamJobEvents(stream: SSEStreamingApi, first: Job, o: JobEventsOptions): Promise<void> {
  return streamChanges(stream, first, {
    ...o,
    event: "job",
    fingerprint,
    ended: (job) => (FINISHED_STATES.has(job.state) ? { id: job.id, state: job.state } : undefined),
    gone: { id: first.id },
  });
}

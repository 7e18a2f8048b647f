/**
 * Waiting for a job to finish, for GET /v1/jobs/:id?wait=<seconds> (a long-poll). The ledger is
 * read again with a backoff (50 ms doubling to 1 s), so a finished job is answered within about
 * a second of finishing, and a waiting request holds no database connection between reads: a
 * minute's wait is at most about 60 primary-key reads, one at a time. Timers and the request's
 * AbortSignal are all it uses, so it runs the same on Node and in a Worker (no LISTEN, which
 * would hold a connection for the whole wait and which Neon's HTTP driver does not have).
 */
import type { Job, JobState } from "../queue/job";
import { sleep } from "../sleep";

/** The states a job does not leave by itself. */
export const FINISHED_STATES: ReadonlySet<JobState> = new Set(["completed", "failed", "cancelled"]);

/** The longest wait a request may ask for, in seconds. */
export const MAX_WAIT_SECONDS = 60;

const FIRST_DELAY_MS = 50;
const MAX_DELAY_MS = 1_000;


/**
 * The job once it is finished, or as it is when `seconds` have passed (or the client left).
 * `read` is one ledger read (it throws NotFound when the job is gone, deleted meanwhile too).
 */
export async function waitForFinished(
  read: () => Promise<Job>,
  seconds: number,
  options: { signal?: AbortSignal; now?: () => number } = {},
): Promise<Job> {
  const now = options.now ?? Date.now;
  const deadline = now() + seconds * 1_000;
  let job = await read();
  let delay = FIRST_DELAY_MS;
  while (!FINISHED_STATES.has(job.state) && !options.signal?.aborted) {
    const left = deadline - now();
    if (left <= 0) break;
    await sleep(Math.min(delay, left), options.signal);
    delay = Math.min(delay * 2, MAX_DELAY_MS);
    if (options.signal?.aborted) break;
    job = await read();
  }
  return job;
}

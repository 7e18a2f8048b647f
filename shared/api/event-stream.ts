/**
 * A resource followed as Server-Sent Events until it finishes: the loop behind
 * GET /v1/jobs/:id/events (job-events.ts) and GET /v1/campaigns/:id/events (campaign-progress.ts).
 *
 *   event: <name>  the resource's view, first at once, then at each change of what `fingerprint` reads
 *   event: end     it finished; the stream closes
 *   event: gone    it was deleted (read threw NotFoundError); the stream closes
 *
 * The row is read again with a backoff (100 ms doubling to 1 s, back to 100 ms after a change),
 * as the long-poll does, so a stream holds no database connection between reads and runs the
 * same on Node and in a Worker. A comment line every 15 s keeps proxies from closing an idle
 * stream. A stream lasts at most 10 minutes; EventSource reconnects by itself and the first
 * event tells the resource as it is then.
 */
import type { SSEStreamingApi } from "hono/streaming";
import { NotFoundError } from "../queue/errors";
import { sleep } from "../sleep";

const FIRST_DELAY_MS = 100;
const MAX_DELAY_MS = 1_000;
const KEEPALIVE_MS = 15_000;
/** How long one stream lasts before the server closes it (the client reconnects). */
export const MAX_STREAM_MS = 10 * 60_000;

export interface FollowOptions<T> {
  /** The event that carries the view ("job", "campaign"). */
  event: string;
  /** One read; throws NotFoundError when the resource is gone. */
  read: () => Promise<T>;
  /** The resource as the API shows it. */
  view: (value: T) => unknown;
  /** What makes a new event: the fields a progress bar or a waiting client reads. */
  fingerprint: (value: T) => string;
  /** The data of `end` once it has finished, or undefined while it goes on. */
  ended: (value: T) => unknown;
  /** The data of `gone`. */
  gone: unknown;
  signal: AbortSignal;
  now?: () => number;
  maxMs?: number;
}

/** Writes the resource's events to `stream` until it ends, is deleted, the client leaves, or time is up. */
export async function streamChanges<T>(stream: SSEStreamingApi, first: T, o: FollowOptions<T>): Promise<void> {
  const now = o.now ?? Date.now;
  const deadline = now() + (o.maxMs ?? MAX_STREAM_MS);
  let seq = 0;
  const send = (event: string, data: unknown) => stream.writeSSE({ event, data: JSON.stringify(data), id: String(++seq) });
  let value = first;
  let last = o.fingerprint(value);
  await stream.writeSSE({ event: o.event, data: JSON.stringify(o.view(value)), id: String(++seq), retry: 1_000 });
  let delay = FIRST_DELAY_MS;
  let quietSince = now();
  while (o.ended(value) === undefined && !o.signal.aborted && !stream.aborted && now() < deadline) {
    await sleep(Math.min(delay, Math.max(0, deadline - now())), o.signal);
    if (o.signal.aborted || stream.aborted) return;
    try {
      value = await o.read();
    } catch (err) {
      if (!(err instanceof NotFoundError)) throw err;
      await send("gone", o.gone);
      return;
    }
    const print = o.fingerprint(value);
    if (print !== last) {
      last = print;
      delay = FIRST_DELAY_MS;
      quietSince = now();
      await send(o.event, o.view(value));
    } else {
      delay = Math.min(delay * 2, MAX_DELAY_MS);
      if (now() - quietSince >= KEEPALIVE_MS) {
        quietSince = now();
        await stream.write(": keep-alive\n\n");
      }
    }
  }
  const end = o.ended(value);
  if (end !== undefined) await send("end", end);
}

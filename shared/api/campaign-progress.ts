/**
 * A campaign's progress as Server-Sent Events, for GET /v1/campaigns/:id/events: the counts of
 * its sends by outcome (sent, skipped, failed, of its recipients) and the fan-out's checkpoint
 * as they move, then the moment it is sent or cancelled, without polling.
 *
 *   event: campaign  the campaign (as GET /v1/campaigns/:id answers), first at once, then at each
 *                    change of its status, counters or fan-out progress
 *   event: end       it is sent or cancelled (data {id, status}); the stream closes
 *
 * One row is read a poll (the counters are kept on the campaign by its sends), with the backoff,
 * keep-alive and time limit of event-stream.ts.
 */
import type { SSEStreamingApi } from "hono/streaming";
import type { Campaign } from "../email/campaigns";
import { streamChanges } from "./event-stream";

const FINISHED = new Set(["sent", "cancelled"]);

export interface CampaignEventsOptions {
  /** One read of the campaign; throws NotFoundError when it is not there. */
  read: () => Promise<Campaign>;
  view: (campaign: Campaign) => unknown;
  signal: AbortSignal;
  now?: () => number;
  maxMs?: number;
}

const fingerprint = (c: Campaign): string =>
  JSON.stringify([c.status, c.recipients, c.sent, c.skipped, c.failed, c.fanout_cursor, c.fanout_done]);

export function streamCampaignEvents(stream: SSEStreamingApi, first: Campaign, o: CampaignEventsOptions): Promise<void> {
  return streamChanges(stream, first, {
    ...o,
    event: "campaign",
    fingerprint,
    ended: (c) => (FINISHED.has(c.status) ? { id: c.id, status: c.status } : undefined),
    gone: { id: first.id },
  });
}

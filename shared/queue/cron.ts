import { Cron } from "croner";
import type { JobType } from "../jobs/definition";

/** A job type the scheduler enqueues on a cron schedule (JobType.cron), parsed once. */
export interface CronSchedule {
  type: string;
  /** The 5-field expression, as the catalog declares it. */
  schedule: string;
  payload: unknown;
  cron: Cron;
}

/** Every cron schedule of a catalog, in catalog order. Cron times are UTC. */
export function cronSchedules(catalog: ReadonlyMap<string, JobType>): CronSchedule[] {
  return [...catalog.values()]
    .filter((t) => t.cron)
    .map((t) => ({ type: t.type, schedule: t.cron!.schedule, payload: t.cron!.payload, cron: new Cron(t.cron!.schedule, { timezone: "UTC", paused: true }) }));
}

/** The latest time a schedule was due, at or before `now`. */
export const previousSlot = (s: CronSchedule, now: Date): Date | undefined => s.cron.previousRuns(1, now)[0];

/** The idempotency key of the job enqueued for a slot: one job per slot, however many schedulers. */
export const cronIdempotencyKey = (slot: Date): string => `cron:${slot.toISOString()}`;

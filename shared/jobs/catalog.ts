import type { JobType, PoolName } from "./definition";
import { campaignProcess } from "./campaign-process";
import { emailSend } from "./email-send";
import { exportData } from "./export-data";
import { importContacts } from "./import-contacts";
import { maintenanceCleanup } from "./maintenance-cleanup";
import { webhookDispatch } from "./webhook-dispatch";

/** The job catalog: every type the system accepts, whether or not a handler for it runs yet. */
export const catalog: ReadonlyMap<string, JobType> = new Map(
  [emailSend, campaignProcess, importContacts, exportData, webhookDispatch, maintenanceCleanup].map(
    (t) => [t.type, t as unknown as JobType] as const,
  ),
);

export const jobTypeNames = (): string[] => [...catalog.keys()];

export const typesOfPool = (pool: PoolName): string[] =>
  [...catalog.values()].filter((t) => t.pool === pool).map((t) => t.type);

export * from "./definition";
export { SYSTEM_TENANT } from "./maintenance-cleanup";

import { POOLS, type JobType } from "./definition";
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

export const typesOfPool = (pool: string, from: ReadonlyMap<string, JobType> = catalog): string[] =>
  [...from.values()].filter((t) => t.pool === pool).map((t) => t.type);

/** Every pool a catalog names: the built-in ones first, then the others in order of appearance. */
export const poolsOf = (from: ReadonlyMap<string, JobType>): string[] => {
  const named = new Set([...from.values()].map((t) => t.pool));
  return [...POOLS.filter((p) => named.has(p)), ...[...named].filter((p) => !(POOLS as readonly string[]).includes(p))];
};

/**
 * The built-in catalog with more types beside it (the library's custom types). A name already
 * taken, by a built-in type or twice in `added`, is refused: replacing email.send would change
 * what the API and the email pipeline accept.
 */
export function extendCatalog(added: readonly JobType[], base: ReadonlyMap<string, JobType> = catalog): ReadonlyMap<string, JobType> {
  const merged = new Map(base);
  for (const def of added) {
    if (merged.has(def.type)) {
      throw new TypeError(`job type "${def.type}" is ${base.has(def.type) ? "built in" : "defined twice"}; give yours another name (e.g. "app.${def.type}")`);
    }
    merged.set(def.type, def);
  }
  return merged;
}

export * from "./definition";
export { SYSTEM_TENANT } from "./maintenance-cleanup";

import type { Clock, SqlClient } from "../../shared/ports";
import type { Handler } from "../../shared/queue/handler";
import { maintenanceCleanupHandler, type RetentionConfig } from "./maintenance-cleanup";

export interface HandlerDeps {
  sql: SqlClient;
  clock: Clock;
  retention?: Partial<RetentionConfig>;
}

/**
 * The handlers this build runs, the same on Node and on the edge. A type in the catalog with no
 * handler here still accepts jobs; they wait in their lane until a worker that has one runs.
 */
export function createHandlers(deps: HandlerDeps): Handler[] {
  return [maintenanceCleanupHandler(deps)];
}

/**
 * The Node entry: `npm start` (built into dist/workers/node.js and run by node itself, so node is
 * the process that gets the signal). Reads the configuration, starts the runtime, and stops it
 * gracefully on SIGTERM or SIGINT (a second signal exits at once).
 */
import { hasAdminKey } from "../shared/api/api-keys";
import { redactUrl } from "../shared/redact";
import { loadConfigOrExit } from "./node/config";
import { createLogger } from "./node/logger";
import { exitOnSignals, startNodeRuntime } from "./node/runtime";

async function main(): Promise<void> {
  const config = loadConfigOrExit("penguinmails-jobs");
  const logger = createLogger({ level: config.LOG_LEVEL });
  // Signal handlers first: as PID 1 in a container, a SIGTERM that comes while the runtime is
  // still starting would otherwise be dropped by the kernel (PID 1 has no default action).
  const starting = startNodeRuntime(config, logger);
  exitOnSignals(starting, logger);
  const runtime = await starting;

  const database = config.DATABASE_URL ? redactUrl(config.DATABASE_URL) : `PGlite (embedded) in ${config.DATA_DIR}/pglite`;
  const lines = [
    `PenguinMails Jobs ${config.DATABASE_URL ? "" : "on the embedded default "}(role: ${config.ROLE}, pid ${process.pid}, node ${process.version})`,
    `  database:  ${database}`,
    `  dispatch:  ${config.REDIS_URL ? `Redis lanes at ${redactUrl(config.REDIS_URL)}` : "Postgres (SKIP LOCKED + LISTEN/NOTIFY)"}`,
    ...(runtime.url ? [`  API:       ${runtime.url}  (OpenAPI: ${runtime.url}/openapi.json)`] : []),
    ...(runtime.pools.length ? [`  workers:   ${runtime.pools.map((p) => `${p.types.join("+")} x${p.concurrency}`).join(", ")}`] : []),
    ...(runtime.localAdminKey ? [`  admin key: ${runtime.localAdminKey}  (kept in ${config.DATA_DIR}/admin-key)`] : []),
    ...(!runtime.localAdminKey && !config.ADMIN_API_KEY && !(await hasAdminKey(runtime.sql))
      ? ["  admin key: none yet. Make the first one with `npm run keys -- create --admin --name ops` (same environment), or set ADMIN_API_KEY"]
      : []),
  ];
  // A banner for people; the JSON log line below is for machines.
  process.stdout.write(`${lines.join("\n")}\n`);
  logger.info("ready", { role: config.ROLE, url: runtime.url, pools: runtime.pools.map((p) => p.types) });
}

main().catch((err: unknown) => {
  process.stderr.write(`penguinmails-jobs: failed to start: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});

/**
 * The chaos suite's short version (issue 11): one scenario of each kind, a few hundred jobs each,
 * against real processes (an API and two workers of workers/node.ts, LEASE_MS=5000), a throwaway
 * Postgres cluster and a throwaway redis-server (tools/chaos/):
 *
 * - a worker SIGKILLed right after the provider accepted its request, before the ledger write
 *   (twice), while jobs trickle in: once over Resend, once over SMTP (killed at the relay's 250);
 * - Redis FLUSHALL mid-drain;
 * - every app connection to Postgres terminated, 3 bursts of 10 (3,000 jobs: the size at which
 *   the code before 663f90c stranded 50 popped ids until the 5-minute reconcile);
 * - SIGTERM mid-drain with requests in flight outlasting the grace period (jobs handed back).
 *
 * Each must end with every job completed, every recipient mailed exactly once, and the jobs in
 * flight at the fault done within 20 s of it (a 5 s lease, the first retry's backoff of at most
 * 5 s, a scheduler pass: about 11 s, with room for a loaded machine), on every provider. `npm run chaos` runs every
 * scenario at full size.
 */
import { execFileSync } from "node:child_process";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { clusterUnavailable, type PostgresCluster, reapStaleClusters, startPostgresCluster } from "../tools/chaos/postgres-cluster";
import { freePort, killAll } from "../tools/chaos/processes";
import { runScenario, shortSuite } from "../tools/chaos/scenarios";
import { formatTable, RECOVERY_BOUND_MS, type ScenarioResult } from "../tools/chaos/tally";

function redisServerMissing(): string | undefined {
  try {
    execFileSync("redis-server", ["--version"], { stdio: "ignore" });
    return undefined;
  } catch {
    return "redis-server is not on the PATH";
  }
}

const unavailable = clusterUnavailable() ?? redisServerMissing();
if (unavailable) process.stderr.write(`test/chaos.test.ts skipped: ${unavailable}\n`);

describe.skipIf(unavailable !== undefined)("chaos (short): real processes under faults lose no job and mail no one twice", () => {
  let cluster: PostgresCluster;
  const logRoot = join(tmpdir(), "pm-chaos-logs", `test-${new Date().toISOString().replace(/[:.]/g, "-")}`);
  const results: ScenarioResult[] = [];

  beforeAll(async () => {
    reapStaleClusters();
    cluster = await startPostgresCluster({ port: await freePort(), label: "test" });
  });
  afterAll(async () => {
    await killAll();
    await cluster?.destroy();
    if (results.length > 0) process.stdout.write(`\n${formatTable(results)}\n(logs: ${logRoot})\n`);
  });

  it.each(shortSuite())("$kind: $name", async (scenario) => {
    const result = await runScenario(cluster, logRoot, scenario, (line) => process.stdout.write(`[chaos] ${line}\n`));
    await killAll();
    results.push(result);
    const report = [`${scenario.name} (logs: ${result.logDir})`, ...result.problems.map((p) => `problem: ${p}`), ...result.details].join("\n");
    expect(result.faults, report).toBeGreaterThan(0);
    expect({ lost: result.lost, lostByState: result.lostByState }, report).toEqual({ lost: 0, lostByState: {} });
    expect({ mailedTwice: result.duplicates, neverMailed: result.neverMailed }, report).toEqual({ mailedTwice: 0, neverMailed: 0 });
    expect(result.recoveryMs, report).not.toBeNull();
    expect(result.recoveryMs!, report).toBeLessThanOrEqual(RECOVERY_BOUND_MS);
    expect(result.problems, report).toEqual([]);
  }, 150_000);
});

/**
 * `npm run chaos`: every scenario of issue 11 at full size against real processes (an API and
 * two workers of workers/node.ts), a throwaway Postgres cluster and throwaway redis-servers, on
 * loopback. Prints the table (jobs, lost, recipients mailed twice, never mailed, time from the
 * fault to the last rescued job's completion) and, for every failed scenario, what went wrong
 * and where its logs are. Exits 1 when a scenario failed.
 *
 *   npm run chaos                              all scenarios, once
 *   npm run chaos -- --runs 3                  three runs in a row (a table each)
 *   npm run chaos -- --only "Postgres" --short the matching scenarios at the test's size
 *   npm run chaos -- --suite                   the test's scenarios (test/chaos.test.ts) at its size
 */
import { mkdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { reapStaleClusters, startPostgresCluster } from "./chaos/postgres-cluster";
import { freePort, killAll } from "./chaos/processes";
import { runScenario, scenarios, shortSuite } from "./chaos/scenarios";
import { formatTable, type ScenarioResult } from "./chaos/tally";

const { values } = parseArgs({
  options: {
    runs: { type: "string", default: "1" },
    only: { type: "string" },
    short: { type: "boolean", default: false },
    suite: { type: "boolean", default: false },
  },
});

const stamp = new Date().toISOString().replace(/[:.]/g, "-");
const logRoot = join(tmpdir(), "pm-chaos-logs", stamp);
mkdirSync(logRoot, { recursive: true });
const say = (line: string) => process.stdout.write(`${line}\n`);

process.on("SIGINT", () => {
  void killAll().finally(() => process.exit(130));
});

reapStaleClusters();
const cluster = await startPostgresCluster({ port: await freePort(), label: "cli" });
say(`throwaway Postgres on :${cluster.port}; logs in ${logRoot}`);
let failed = 0;
try {
  const list = (values.suite ? shortSuite() : scenarios(values.short ? "short" : "full")).filter((s) => !values.only || s.name.toLowerCase().includes(values.only.toLowerCase()));
  for (let run = 1; run <= Number(values.runs); run++) {
    const results: ScenarioResult[] = [];
    const started = Date.now();
    for (const scenario of list) {
      const result = await runScenario(cluster, join(logRoot, `run${run}`), scenario, say).catch(
        (err: unknown): ScenarioResult => ({
          name: scenario.name,
          jobs: scenario.jobs,
          lost: scenario.jobs,
          lostByState: { "harness error": scenario.jobs },
          duplicates: 0,
          sameKeyDuplicates: 0,
          neverMailed: 0,
          recoveryMs: null,
          stallMs: 0,
          totalMs: 0,
          faults: 0,
          enqueueErrors: 0,
          reruns: 0,
          problems: [`harness error: ${String(err)}`],
          details: [String((err as Error).stack ?? err)],
          logDir: "",
          ok: false,
        }),
      );
      await killAll();
      results.push(result);
      say(
        `  ${result.ok ? "ok" : "FAILED"}: ${result.jobs} jobs, lost ${result.lost}, mailed twice ${result.duplicates} (same key ${result.sameKeyDuplicates}), ` +
          `never mailed ${result.neverMailed}, reruns ${result.reruns}, enqueue retries ${result.enqueueErrors}`,
      );
    }
    say(`\nrun ${run} of ${values.runs} (${((Date.now() - started) / 60_000).toFixed(1)} min), ${new Date().toISOString()}:\n`);
    say(formatTable(results));
    for (const r of results) {
      if (r.ok) continue;
      failed++;
      say(`\nFAILED: ${r.name} (logs: ${r.logDir})`);
      for (const p of r.problems) say(`  problem: ${p}`);
      for (const d of r.details) say(`  ${d}`);
    }
    say("");
  }
} finally {
  await killAll();
  await cluster.destroy();
}
process.exit(failed > 0 ? 1 : 0);

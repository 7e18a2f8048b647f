/**
 * `npm run fuzz`: the long fuzz run against a real system (see test/fuzz/harness.ts for the
 * properties). Settings from the environment:
 *   FUZZ_RUNS     requests to send (default 20,000)
 *   FUZZ_SEED     seed of the first case (default: random, printed)
 *   FUZZ_MINUTES  time bound for sending (default 15)
 *   FUZZ_REPLAY   send only this case index (with the FUZZ_SEED that found it)
 * Prints totals by status and by route, then every violation with a reproducer; exits 1 when
 * there is any. Needs Postgres on 127.0.0.1:5432 and Redis on :6379, as the tests do.
 */
import { runFuzz, summarize } from "../test/fuzz/harness";

const int = (name: string, fallback: number): number => {
  const raw = process.env[name];
  if (raw === undefined || raw === "") return fallback;
  const n = Number(raw);
  if (!Number.isSafeInteger(n) || n < 0) {
    process.stderr.write(`${name}: expected a non-negative integer, got ${JSON.stringify(raw)}\n`);
    process.exit(2);
  }
  return n;
};

const seed = int("FUZZ_SEED", Math.floor(Math.random() * 2 ** 31));
const replay = process.env.FUZZ_REPLAY ? int("FUZZ_REPLAY", 0) : undefined;
const report = await runFuzz({
  runs: int("FUZZ_RUNS", 20_000),
  seed,
  timeBudgetMs: int("FUZZ_MINUTES", 15) * 60_000,
  replay,
  drainMs: 30_000,
  log: (line) => process.stdout.write(`${line}\n`),
});

process.stdout.write("\nby route (status: count):\n");
const width = Math.max(...[...report.byRoute.keys()].map((r) => r.length));
for (const [route, statuses] of [...report.byRoute].sort((x, y) => x[0].localeCompare(y[0]))) {
  process.stdout.write(`  ${route.padEnd(width)}  ${[...statuses].sort((x, y) => x[0] - y[0]).map(([s, n]) => `${s}: ${n}`).join(", ")}\n`);
}
const unreached = report.operations.filter((o) => !report.byRoute.has(o.id)).map((o) => o.id);
if (unreached.length) process.stdout.write(`not reached this run: ${unreached.join(", ")}\n`);
process.stdout.write(`\n${summarize(report, 3)}\n`);
process.exit(report.violations.length ? 1 : 0);

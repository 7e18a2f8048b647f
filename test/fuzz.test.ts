/**
 * The bounded fuzz run (about 2,000 requests against the real Node entry with two tenants; see
 * test/fuzz/harness.ts for the properties). The seed is fixed so a failure replays: the
 * message names it and each violation's FUZZ_SEED/FUZZ_REPLAY command. FUZZ_SEED and FUZZ_RUNS
 * override it here too; `npm run fuzz` is the long run.
 */
import { expect, test } from "vitest";
import { runFuzz, summarize } from "./fuzz/harness";

const SEED = Number(process.env.FUZZ_SEED ?? 20_261_203);
const RUNS = Number(process.env.FUZZ_RUNS ?? 2_000);

test(
  `fuzz: ${RUNS} hostile requests (seed ${SEED}): no 5xx, problem+json 4xx, nothing stored after a reject, no secret in any output, the other tenant untouched`,
  async () => {
    // Sending stops after 90 s whatever is left, so a slow machine makes a shorter run, not a timeout.
    const report = await runFuzz({ runs: RUNS, seed: SEED, timeBudgetMs: 90_000, drainMs: 15_000 });
    const summary = summarize(report, 2);
    expect(report.sent, "the run sent too few requests to mean anything").toBeGreaterThan(Math.min(RUNS, 500));
    expect(report.violations, `fuzz seed ${SEED}\n${summary}`).toEqual([]);
  },
  240_000,
);

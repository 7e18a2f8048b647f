import { existsSync, readFileSync } from "node:fs";
import { totalmem } from "node:os";

/**
 * The memory this process may use: the container's limit (cgroup v2 memory.max, or v1's
 * limit_in_bytes) when there is one, else the machine's memory. Read once: limits do not move.
 */
export function memoryLimitBytes(override?: number): number {
  if (override) return override;
  for (const file of ["/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"]) {
    if (!existsSync(file)) continue;
    const value = Number(readFileSync(file, "utf8").trim());
    // "max" (no limit) parses as NaN; v1 reports no limit as a huge number.
    if (Number.isFinite(value) && value > 0 && value < totalmem() * 4) return Math.min(value, totalmem());
  }
  return totalmem();
}

/** Resident memory and its share of the limit, sampled now (cheap: one call). */
export function memoryReader(limitBytes: number): () => { rss: number; ratio: number } {
  return () => {
    const rss = process.memoryUsage.rss();
    return { rss, ratio: rss / limitBytes };
  };
}

import type { Logger } from "../../shared/ports";

/**
 * Memory-bound pools (imports) stop taking jobs while the process's memory use is above a
 * threshold and start again once it falls below it; running jobs carry on. The state is
 * reported to the worker registry, so the dashboard and the scaling signals show it.
 */
export class MemoryIntake {
  private readonly closed = new Set<string>();

  constructor(
    private readonly memory: () => { ratio: number },
    private readonly threshold: number,
    private readonly logger: Logger,
  ) {}

  admit(pool: string): boolean {
    const { ratio } = this.memory();
    const over = ratio > this.threshold;
    if (over && !this.closed.has(pool)) {
      this.closed.add(pool);
      this.logger.warn("memory high: pool stops taking jobs", { pool, memory_ratio: ratio, threshold: this.threshold });
    } else if (!over && this.closed.delete(pool)) {
      this.logger.info("memory back under threshold: pool takes jobs again", { pool, memory_ratio: ratio });
    }
    return !over;
  }

  paused(): string[] {
    return [...this.closed];
  }
}

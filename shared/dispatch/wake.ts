/**
 * Wake-ups for idle workers. A wake that arrives while nobody waits is remembered, so a worker
 * that was busy fetching when it came looks again at once instead of sleeping through it.
 */
export class WakeHub {
  private pending = new Set<string>();
  private waiters = new Set<{ types: readonly string[]; wake: () => void }>();

  notify(type: string): void {
    let delivered = false;
    for (const w of this.waiters) {
      if (w.types.includes(type)) {
        w.wake();
        delivered = true;
      }
    }
    if (!delivered) this.pending.add(type);
  }

  /** Wakes every waiter (e.g. the driver changed and lanes should be looked at). */
  notifyAll(): void {
    for (const w of this.waiters) w.wake();
  }

  wait(types: readonly string[], timeoutMs: number, signal?: AbortSignal): Promise<void> {
    let woke = false;
    for (const t of types) if (this.pending.delete(t)) woke = true;
    if (woke || signal?.aborted) return Promise.resolve();
    return new Promise((resolve) => {
      const waiter = {
        types,
        wake: () => {
          clearTimeout(timer);
          this.waiters.delete(waiter);
          signal?.removeEventListener("abort", waiter.wake);
          resolve();
        },
      };
      const timer = setTimeout(waiter.wake, timeoutMs);
      signal?.addEventListener("abort", waiter.wake, { once: true });
      this.waiters.add(waiter);
    });
  }
}

// What every benchmark script shares: where the services are, a throwaway database, statistics.
import { randomBytes } from "node:crypto";
import pg from "pg";
import type { Engine } from "../../shared/queue/engine";
import { WorkerPool } from "../../shared/queue/worker";

export const ADMIN_URL = process.env.BENCH_ADMIN_DATABASE_URL ?? "postgres://postgres@127.0.0.1:5432/postgres";
export const REDIS_URL = process.env.BENCH_REDIS_URL ?? "redis://127.0.0.1:6379";

/**
 * Runs fn against a fresh, empty database (not migrated), dropped afterwards whatever happens;
 * on the server of `adminUrl` (default ADMIN_URL).
 */
export async function withDatabase<T>(label: string, fn: (url: string) => Promise<T>, adminUrl = ADMIN_URL): Promise<T> {
  const name = `bench_${label}_${randomBytes(4).toString("hex")}`;
  const admin = new pg.Client({ connectionString: adminUrl });
  await admin.connect();
  await admin.query(`create database "${name}"`);
  const url = new URL(adminUrl);
  url.pathname = `/${name}`;
  try {
    return await fn(url.toString());
  } finally {
    await admin.query(`drop database if exists "${name}" with (force)`);
    await admin.end();
  }
}

export const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};

export const percentile = (xs: number[], p: number): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)]!;
};

/** What a one-at-a-time run calls around each job; each hook gets performance.now(). */
export interface OneByOneHooks {
  /** Just before the enqueue call. */
  before(now: number): void;
  /** As the enqueue call returns. */
  enqueued?(now: number): void;
  /** As the handler starts (inside it). */
  started(now: number): void;
  /** Once the handler has started, before the pause that lets the worker go idle again. */
  after?(): void;
}

/**
 * Enqueues n no-op email.send jobs one at a time to an idle worker pool (concurrency 10), the
 * next only after the last one's handler started and the pool went idle again: what the
 * latency figures are taken over.
 */
export async function oneByOne(engine: Engine, n: number, payload: (i: number) => Record<string, unknown>, hooks: OneByOneHooks): Promise<void> {
  let resolveStart: (() => void) | undefined;
  const pool = new WorkerPool({
    name: "bench",
    handlers: [
      {
        type: "email.send",
        run: async () => {
          hooks.started(performance.now());
          resolveStart?.();
        },
      },
    ],
    concurrency: 10,
    queue: engine.queue,
    stats: engine.stats,
    workerId: "bench-latency",
  });
  pool.start();
  await new Promise((r) => setTimeout(r, 200)); // let the worker go idle
  try {
    for (let i = 0; i < n; i++) {
      const begun = new Promise<void>((r) => (resolveStart = r));
      hooks.before(performance.now());
      await engine.queue.enqueue({ type: "email.send", tenantId: "tenant-lat", payload: payload(i) });
      hooks.enqueued?.(performance.now());
      await begun;
      hooks.after?.();
      await new Promise((r) => setTimeout(r, 2)); // idle again before the next one
    }
  } finally {
    await pool.stop();
  }
}

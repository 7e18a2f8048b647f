import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdirSync, mkdtempSync } from "node:fs";
import { join } from "node:path";
import IORedis from "ioredis";
import { Miniflare } from "miniflare";
import { startUpstashGateway, type UpstashGateway } from "./upstash-gateway";
import { startWsTcpBridge, type WsTcpBridge } from "./ws-tcp-bridge";

/** Test and benchmark helpers for the edge runtime. */

/** Bundles a Worker entry exactly as `wrangler deploy` would, into a temporary folder. */
export function buildWorker(entry: string): string {
  // Inside the project: workerd refuses module paths that climb out of its starting directory.
  mkdirSync("dist", { recursive: true });
  const outdir = mkdtempSync(join("dist", "test-edge-"));
  execFileSync("npx", ["wrangler", "deploy", "--dry-run", "--outdir", outdir, entry], {
    stdio: "pipe",
    env: { ...process.env, WRANGLER_SEND_METRICS: "false", CI: "true" },
  });
  const name = entry.split("/").pop()!.replace(/\.ts$/, ".js");
  return join(outdir, name);
}

export interface EdgeHarness {
  mf: Miniflare;
  bridge: WsTcpBridge;
  gateway: UpstashGateway;
  prefix: string;
  adminKey: string;
  close(): Promise<void>;
}

/** The real Worker in workerd, reaching this machine's Postgres and Redis through the dev bridges. */
export async function startEdge(opts: {
  script: string;
  databaseUrl: string;
  vars?: Record<string, string>;
  withQueue?: boolean;
  redis?: boolean;
  redisUrl?: string;
  /** R2 bucket bindings (Miniflare keeps them in memory), e.g. ["FILES"]. */
  r2Buckets?: string[];
}): Promise<EdgeHarness> {
  const randomId = (n = 6) => randomBytes(n).toString("hex");
  const bridge = await startWsTcpBridge({ port: 0, target: { host: "127.0.0.1", port: 5432 } });
  const token = `tok_${randomId(8)}`;
  const gateway = await startUpstashGateway({ port: 0, redisUrl: opts.redisUrl ?? "redis://127.0.0.1:6379", token });
  const prefix = `edge:${randomId()}:{jobs}:`;
  const adminKey = `pmk_admin_${randomId(16)}`;
  const mf = new Miniflare({
    modules: true,
    scriptPath: opts.script,
    compatibilityDate: "2026-04-20",
    bindings: {
      DATABASE_URL: opts.databaseUrl,
      NEON_WS_PROXY: bridge.url,
      NEON_INSECURE_WS: "true",
      API_KEY_PEPPER: "edge-test-pepper-0123456789",
      ADMIN_API_KEY: adminKey,
      REDIS_PREFIX: prefix,
      ...(opts.redis === false ? {} : { UPSTASH_REDIS_REST_URL: gateway.url, UPSTASH_REDIS_REST_TOKEN: token }),
      ...opts.vars,
    },
    ...(opts.r2Buckets ? { r2Buckets: opts.r2Buckets } : {}),
    ...(opts.withQueue
      ? { queueProducers: { JOBS_QUEUE: { queueName: "wake" } }, queueConsumers: { wake: { maxBatchTimeout: 0.05 } } }
      : {}),
  });
  await mf.ready;
  return {
    mf,
    bridge,
    gateway,
    prefix,
    adminKey,
    async close() {
      await mf.dispose();
      await gateway.close();
      await bridge.close();
      // Leave nothing behind in the shared Redis.
      const redis = new IORedis(opts.redisUrl ?? "redis://127.0.0.1:6379");
      const keys = await redis.keys(`${prefix}*`);
      if (keys.length) await redis.del(...keys);
      await redis.quit();
    },
  };
}

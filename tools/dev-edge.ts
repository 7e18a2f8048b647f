/**
 * npm run dev:edge: the Worker under `wrangler dev` against this machine's Postgres and Redis.
 * Starts the two dev bridges (tools/ws-tcp-bridge.ts for the Neon driver, tools/upstash-gateway.ts
 * for @upstash/redis), migrates the database, runs `wrangler dev --env dev --test-scheduled`,
 * and stops everything together on Ctrl-C or when wrangler exits.
 *
 * Env: DATABASE_URL (default postgres://postgres@127.0.0.1:5432/penguinmails_edge_dev, created
 * when missing), REDIS_URL (default redis://127.0.0.1:6379), EDGE_PORT (8787),
 * ADMIN_API_KEY (default: printed). Fire the cron: curl "http://127.0.0.1:8787/__scheduled?cron=*+*+*+*+*"
 */
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import pg from "pg";
import { migrate } from "../schema/migrate";
import { createPgSql } from "../workers/node/postgres";
import { startUpstashGateway } from "./upstash-gateway";
import { startWsTcpBridge } from "./ws-tcp-bridge";

const databaseUrl = process.env.DATABASE_URL ?? "postgres://postgres@127.0.0.1:5432/penguinmails_edge_dev";
const redisUrl = process.env.REDIS_URL ?? "redis://127.0.0.1:6379";
const port = process.env.EDGE_PORT ?? "8787";
const adminKey = process.env.ADMIN_API_KEY ?? `pmk_admin_dev_${randomBytes(12).toString("hex")}`;
const token = randomBytes(16).toString("hex");

async function ensureDatabase(url: string): Promise<void> {
  const target = new URL(url);
  const name = target.pathname.slice(1);
  const admin = new URL(url);
  admin.pathname = "/postgres";
  const client = new pg.Client({ connectionString: admin.toString() });
  await client.connect();
  const { rowCount } = await client.query("select 1 from pg_database where datname = $1", [name]);
  if (!rowCount) await client.query(`create database "${name.replace(/"/g, '""')}"`);
  await client.end();
  const sql = createPgSql(url);
  await migrate(sql);
  await sql.close();
}

async function main(): Promise<void> {
  await ensureDatabase(databaseUrl);
  const pgTarget = new URL(databaseUrl);
  const bridge = await startWsTcpBridge({ port: 8790, target: { host: pgTarget.hostname, port: Number(pgTarget.port || 5432) } });
  const gateway = await startUpstashGateway({ port: 8791, redisUrl, token });
  process.stdout.write(
    `dev bridges: Neon WebSocket -> ${pgTarget.host} at ${bridge.url}, Upstash REST -> ${redisUrl} at ${gateway.url}\n` +
      `admin key: ${adminKey}\n`,
  );
  const vars = {
    DATABASE_URL: databaseUrl,
    UPSTASH_REDIS_REST_TOKEN: token,
    API_KEY_PEPPER: "dev-pepper-not-for-production",
    ADMIN_API_KEY: adminKey,
  };
  const wrangler = spawn(
    "npx",
    ["wrangler", "dev", "--env", "dev", "--port", port, "--test-scheduled", ...Object.entries(vars).flatMap(([k, v]) => ["--var", `${k}:${v}`])],
    { stdio: "inherit", env: { ...process.env, WRANGLER_SEND_METRICS: "false" } },
  );
  const stop = async (code: number) => {
    wrangler.kill("SIGTERM");
    await Promise.allSettled([bridge.close(), gateway.close()]);
    process.exit(code);
  };
  process.on("SIGINT", () => void stop(0));
  process.on("SIGTERM", () => void stop(0));
  wrangler.on("exit", (code) => void stop(code ?? 0));
}

main().catch((err: unknown) => {
  process.stderr.write(`dev:edge failed: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});

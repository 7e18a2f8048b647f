/**
 * The dashboard login's attempt limit (it had none: 60 wrong keys in 0.6 s, then the right one
 * worked) and how long a revoked key keeps working in another process. A controlled clock
 * stands in for waiting: the limit counts in Postgres by the clock the app is given.
 */
import { serve, type ServerType } from "@hono/node-server";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ApiKeys, type CreatedApiKey } from "../shared/api/api-keys";
import { createApp } from "../shared/api/app";
import { normalizeAddress } from "../shared/api/dashboard/login-limit";
import { createPostgresRateLimiter, createRedisRateLimiter, type RateLimiter } from "../shared/email/rate-limit";
import type { Clock } from "../shared/ports";
import { createEngine, type Engine } from "../shared/queue/engine";
import { createIoRedis } from "../workers/node/redis";
import { createTestDatabase, randomId, REDIS_URL } from "./support/services";

const PEPPER = "dashboard-login-test-pepper-0123456789";
const WRONG = "pmk_AAAAAAAAAAAA_notarealsecretnotarealsecret";

let db: Awaited<ReturnType<typeof createTestDatabase>>;
let engine: Engine;
let apiKeys: ApiKeys;
let app: ReturnType<typeof createApp>;
let admin: CreatedApiKey;
let nowMs = Date.parse("2026-06-01T12:00:00Z");
const clock: Clock = { now: () => new Date(nowMs) };

beforeAll(async () => {
  db = await createTestDatabase("dashboard_login");
  engine = createEngine({ sql: db.sql, clock });
  apiKeys = new ApiKeys(db.sql, { pepper: PEPPER, clock });
  admin = await apiKeys.create({ tenantId: null, admin: true, name: "ops" });
  app = createApp({ queue: engine.queue, sql: db.sql, apiKeys, version: "test" });
});
afterAll(async () => {
  await engine?.dispatcher.close();
  await db?.drop();
});

interface Res {
  status: number;
  headers: Headers;
  text: string;
}

/** A login form POST as the edge sees it: Cloudflare names the client in CF-Connecting-IP. */
async function login(key: string, client: string | undefined): Promise<Res> {
  const headers: Record<string, string> = { "content-type": "application/x-www-form-urlencoded" };
  if (client) headers["cf-connecting-ip"] = client;
  const res = await app.request("/dashboard/login", { method: "POST", headers, body: new URLSearchParams({ key, next: "/dashboard" }).toString(), redirect: "manual" });
  return { status: res.status, headers: res.headers, text: await res.text() };
}

describe("the dashboard login's attempt limit", () => {
  it("refuses the 11th attempt with 429 and Retry-After, the right key too, until the wait is over", async () => {
    const client = "203.0.113.7";
    for (let i = 0; i < 10; i++) expect((await login(WRONG, client)).status).toBe(401);
    const wrong = await Promise.all(Array.from({ length: 50 }, () => login(WRONG, client)));
    expect(wrong.map((r) => r.status)).toEqual(Array(50).fill(429));
    const locked = await login(admin.key, client);
    expect(locked.status).toBe(429);
    expect(locked.headers.get("set-cookie")).toBeNull();
    expect(locked.headers.get("content-type")).toMatch(/^text\/html/);
    expect(locked.text).toContain("Too many login attempts from your address. Try again in 90 seconds.");
    const retryAfter = Number(locked.headers.get("retry-after"));
    expect(retryAfter).toBe(90);
    // Refused attempts did not extend the wait; a second before it ends, still refused.
    nowMs += (retryAfter - 1) * 1000;
    expect((await login(admin.key, client)).status).toBe(429);
    nowMs += 1000;
    const ok = await login(admin.key, client);
    expect(ok.status).toBe(303);
    expect(ok.headers.get("set-cookie")).toMatch(/^pm_dashboard_session=v1\./);
  });

  it("lets only the allowance through when guesses arrive all at once", async () => {
    const statuses = (await Promise.all(Array.from({ length: 60 }, () => login(WRONG, "198.51.100.20")))).map((r) => r.status);
    expect(statuses.filter((s) => s === 401)).toHaveLength(10);
    expect(statuses.filter((s) => s === 429)).toHaveLength(50);
  });

  it("counts per client: another address is unaffected, an IPv6 /64 is one client", async () => {
    for (let i = 0; i < 11; i++) await login(WRONG, "2001:db8:aa:1::1");
    expect((await login(WRONG, "2001:db8:aa:1:ffff:1234:5678:9abc")).status).toBe(429);
    expect((await login(admin.key, "2001:db8:aa:2::1")).status).toBe(303);
    expect((await login(admin.key, "192.0.2.1")).status).toBe(303);
    expect(normalizeAddress("::ffff:192.0.2.1")).toBe("192.0.2.1");
    expect(normalizeAddress("2001:DB8:0:1:2:3:4:5")).toBe("2001:db8:0:1::/64");
    expect(normalizeAddress("not an address")).toBeNull();
  });

  it("gives the allowance back after a login that succeeds", async () => {
    const client = "192.0.2.50";
    for (let i = 0; i < 9; i++) expect((await login(WRONG, client)).status).toBe(401);
    expect((await login(admin.key, client)).status).toBe(303);
    for (let i = 0; i < 10; i++) expect((await login(WRONG, client)).status).toBe(401);
    expect((await login(WRONG, client)).status).toBe(429);
  });

  it("on Node, counts the socket's peer: forwarding headers the client writes do not buy more attempts", async () => {
    const server: ServerType = await new Promise((resolve) => {
      const s = serve({ fetch: app.fetch, hostname: "127.0.0.1", port: 0 }, () => resolve(s));
    });
    try {
      const port = (server.address() as { port: number }).port;
      const statuses: number[] = [];
      for (let i = 0; i < 12; i++) {
        const res = await fetch(`http://127.0.0.1:${port}/dashboard/login`, {
          method: "POST",
          headers: {
            "content-type": "application/x-www-form-urlencoded",
            "cf-connecting-ip": `192.0.2.${100 + i}`,
            "x-forwarded-for": `192.0.2.${100 + i}`,
          },
          body: new URLSearchParams({ key: WRONG }).toString(),
          redirect: "manual",
        });
        await res.text();
        statuses.push(res.status);
      }
      expect(statuses).toEqual([...Array(10).fill(401), 429, 429]);
    } finally {
      await new Promise<void>((r) => server.close(() => r()));
    }
  });
});

describe("a revoked key in another running process", () => {
  it("stops working within 5 seconds there, and at once in the process that revoked it", async () => {
    const key = await apiKeys.create({ tenantId: "acme", admin: false, name: "doomed" });
    const elsewhere = new ApiKeys(db.sql, { pepper: PEPPER, clock }); // another API process
    expect(await elsewhere.verify(key.key)).toMatchObject({ keyId: key.id });
    expect(await apiKeys.verify(key.key)).toMatchObject({ keyId: key.id });
    expect(await apiKeys.revoke(key.id)).toBe(true);
    expect(await apiKeys.verify(key.key)).toBeNull();
    nowMs += 5_000;
    expect(await elsewhere.verify(key.key)).toBeNull();
  });
});

describe("the rate limiter's reset, which a successful login uses", () => {
  it("gives a key its full burst again, on Redis and on Postgres alike", async () => {
    const redis = createIoRedis(REDIS_URL);
    try {
      const backends: [string, RateLimiter][] = [
        ["redis", createRedisRateLimiter(redis, { prefix: `test:${randomId()}:`, clock })],
        ["postgres", createPostgresRateLimiter(db.sql, { clock })],
      ];
      for (const [name, limiter] of backends) {
        const limit = { ratePerSecond: 1 / 60, burst: 3 };
        const takes = async (n: number) => {
          const out: boolean[] = [];
          for (let i = 0; i < n; i++) out.push((await limiter.take("reset-me", limit)).allowed);
          return out;
        };
        expect(await takes(4), name).toEqual([true, true, true, false]);
        await limiter.reset("reset-me");
        expect(await takes(4), name).toEqual([true, true, true, false]);
        await limiter.reset("never-taken"); // nothing to forget: fine
      }
    } finally {
      await redis.close();
    }
  });
});

/**
 * The Redis driver's periodic full pass (it puts back ids a worker popped and never claimed,
 * wherever they sit in a lane) writes a few pages a call, resuming at a cursor kept in Redis:
 * with 1,000,000 jobs waiting the whole pass took 2 s inside a scheduler pass, whose rescue and
 * promotion waited behind it. A rebuild of lanes Redis lost is not paged.
 */
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { RedisDispatcher } from "../shared/dispatch/redis";
import { createEngine, type Engine } from "../shared/queue/engine";
import type { Redis } from "../shared/ports";
import { createIoRedis } from "../workers/node/redis";
import { fastCatalog } from "./support/engine";
import { createTestDatabase, randomId, REDIS_URL } from "./support/services";

type TestDatabase = Awaited<ReturnType<typeof createTestDatabase>>;
const JOBS = 230;
const BATCH = 20;
const PAGES = 3; // 60 entries a call

describe("the periodic full pass of the Redis lanes", () => {
  let db: TestDatabase;
  let redis: Redis;
  let engine: Engine;
  let prefix: string;
  const dispatcher = () => engine.dispatcher as RedisDispatcher;
  const lane = () => dispatcher().laneKey("email.send");

  beforeEach(async () => {
    db = await createTestDatabase("lane_full_pass");
    redis = createIoRedis(REDIS_URL);
    prefix = `test:${randomId()}:{jobs}:`;
    engine = createEngine({ sql: db.sql, redis, catalog: fastCatalog(), redisOptions: { prefix, reconcileBatch: BATCH, periodicPages: PAGES } });
    await engine.dispatcher.start();
    await engine.dispatcher.reconcile({ force: true });
    await engine.queue.enqueueMany(
      Array.from({ length: JOBS }, (_, i) => ({ type: "email.send", tenantId: "t1", payload: { recipient: `u${i}@example.com`, template_id: "tpl" } })),
    );
  });
  afterEach(async () => {
    await engine.dispatcher.close();
    await redis.close();
    await db.drop();
  });

  const inLane = async () => Number(((await redis.pipeline([["ZCARD", lane()]])) as [number])[0]);

  it("puts back ids lost from the lanes a few pages a call, resumes where it stopped, and then waits for everyMs", async () => {
    expect(await inLane()).toBe(JOBS);
    // Every id gone from Redis as if popped by workers that died before their claims.
    await redis.pipeline([["DEL", lane()]]);
    const placedByCall: number[] = [];
    for (let call = 0; call < 10 && (await inLane()) < JOBS; call++) placedByCall.push(await engine.dispatcher.reconcile({ everyMs: 60_000 }));
    expect(placedByCall).toEqual([60, 60, 60, 50]);
    expect(await inLane()).toBe(JOBS);
    // The pass is over: the next one waits for its time.
    expect(await engine.dispatcher.reconcile({ everyMs: 60_000 })).toBe(0);
    expect(((await redis.pipeline([["EXISTS", dispatcher().fullPassCursorKey]])) as [number])[0]).toBe(0);
  });

  it("rebuilds lanes Redis lost (no epoch marker) in one call, and a forced rebuild too", async () => {
    await redis.pipeline([["DEL", lane()], ["DEL", dispatcher().epochKey]]);
    expect(await engine.dispatcher.reconcile({ everyMs: 60_000 })).toBe(JOBS);
    expect(await inLane()).toBe(JOBS);
    await redis.pipeline([["DEL", lane()]]);
    expect(await engine.dispatcher.reconcile({ force: true })).toBe(JOBS);
    expect(await inLane()).toBe(JOBS);
  });
});

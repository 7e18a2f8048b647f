/**
 * The Node port adapters against real services: Postgres on 127.0.0.1:5432 (a throwaway
 * database), PGlite in memory, Redis on 127.0.0.1:6379 (random key prefix) and throwaway
 * redis-server processes for the tests that flush scripts or kill the server.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { once } from "node:events";
import { mkdtemp, rm } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Redis, Sql } from "../shared/ports";
import { redactUrl } from "../shared/redact";
import { createLogger } from "../workers/node/logger";
import { createPgliteSql } from "../workers/node/pglite";
import { createPgSql } from "../workers/node/postgres";
import { createIoRedis } from "../workers/node/redis";

const ADMIN_URL = "postgres://postgres@127.0.0.1:5432/postgres";
const REDIS_URL = "redis://127.0.0.1:6379/0";
const run = randomBytes(4).toString("hex");
const DB_NAME = `adapters_${run}`;
const DB_URL = `postgres://postgres@127.0.0.1:5432/${DB_NAME}`;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Polls until check() is true; fails the test with `what` after timeoutMs. */
async function waitFor(what: string, check: () => boolean | Promise<boolean>, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      if (await check()) return;
    } catch {
      // Not ready yet (e.g. a reconnecting client); try again until the deadline.
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

async function adminQuery(text: string, params: unknown[] = [], url = ADMIN_URL) {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return (await client.query(text, params)).rows;
  } finally {
    await client.end();
  }
}

beforeAll(async () => {
  await adminQuery(`CREATE DATABASE ${DB_NAME}`);
});

afterAll(async () => {
  await adminQuery(`DROP DATABASE IF EXISTS ${DB_NAME} WITH (FORCE)`);
});

// ---------------------------------------------------------------------------------------------
// Both Sql adapters must accept the same SQL and give back the same JS values.
// ---------------------------------------------------------------------------------------------

const backends: [string, () => Promise<Sql>][] = [
  ["pg", async () => createPgSql(DB_URL, { max: 4, applicationName: `adapters-test-${run}` })],
  ["pglite", () => createPgliteSql(undefined)],
];

describe.each(backends)("Sql on %s", (name, make) => {
  let sql: Sql;
  beforeAll(async () => {
    sql = await make();
  });
  afterAll(async () => {
    await sql.close();
  });

  it("runs multi-statement text without params and returns the last statement's rows", async () => {
    const rows = await sql.query<{ x: number }>(
      `CREATE TABLE multi_${name} (x int);
       INSERT INTO multi_${name} VALUES (2), (1);
       SELECT x FROM multi_${name} ORDER BY x`,
    );
    expect(rows).toEqual([{ x: 1 }, { x: 2 }]);
    // An empty params array takes the same path.
    const again = await sql.query<{ n: string }>(`SELECT 1; SELECT count(*) AS n FROM multi_${name}`, []);
    expect(again).toEqual([{ n: "2" }]);
  });

  it("round-trips typed array parameters", async () => {
    const texts = ["plain", "comma, inside", 'quote " inside', "back\\slash", "", "ünïcødé ✓", "NULL", "{braces}", null];
    const [t] = await sql.query<{ v: unknown }>("SELECT $1::text[] AS v", [texts]);
    expect(t!.v).toEqual(texts);

    const bigs = ["1", "-42", "9007199254740993", "9223372036854775807"];
    const [b] = await sql.query<{ v: unknown; n: unknown }>("SELECT $1::bigint[] AS v, $2::bigint[] AS n", [bigs, [1, 2]]);
    expect(b!.v).toEqual(bigs);
    expect(b!.n).toEqual(["1", "2"]);

    const isos = ["2024-01-02T03:04:05.678Z", "2024-02-29T23:59:59.999+02:00", null];
    const [ts] = await sql.query<{ v: (Date | null)[]; d: Date[] }>(
      "SELECT $1::timestamptz[] AS v, $2::timestamptz[] AS d",
      [isos, [new Date(Date.UTC(2030, 0, 1, 12))]],
    );
    expect(ts!.v[0]).toBeInstanceOf(Date);
    expect(ts!.v.map((d) => d?.getTime() ?? null)).toEqual([Date.parse(isos[0]!), Date.parse(isos[1]!), null]);
    expect(ts!.d[0]!.toISOString()).toBe("2030-01-01T12:00:00.000Z");

    const docs = ['{"a":1,"nested":{"b":[1,2]}}', null, '"just a string"', '[1,"x"]'];
    const [j] = await sql.query<{ v: unknown }>("SELECT $1::text[]::jsonb[] AS v", [docs]);
    expect(j!.v).toEqual([{ a: 1, nested: { b: [1, 2] } }, null, "just a string", [1, "x"]]);

    const [n] = await sql.query<{ s: unknown; i: unknown; f: unknown; yes: unknown; no: unknown; none: unknown }>(
      "SELECT $1::smallint[] AS s, $2::int[] AS i, $3::float8[] AS f, $4::boolean AS yes, $5::boolean AS no, $6::boolean AS none",
      [[1, -2, 32767], [0, 2147483647, -5], [1.5, -0.25, 1e300, 3], true, false, null],
    );
    expect(n).toEqual({
      s: [1, -2, 32767],
      i: [0, 2147483647, -5],
      f: [1.5, -0.25, 1e300, 3],
      yes: true,
      no: false,
      none: null,
    });

    const [empty] = await sql.query<{ v: unknown }>("SELECT $1::text[] AS v", [[]]);
    expect(empty!.v).toEqual([]);
  });

  it("inserts rows through unnest of array parameters and reads back Date, object and string ids", async () => {
    await sql.query(`CREATE TABLE jobs_${name} (
      id bigint PRIMARY KEY, name text, run_at timestamptz, payload jsonb,
      priority smallint, attempts int, score float8, urgent boolean)`);
    const inserted = await sql.query<{ id: unknown }>(
      `INSERT INTO jobs_${name} (id, name, run_at, payload, priority, attempts, score, urgent)
       SELECT t.id, t.name, t.run_at, t.payload, t.priority, t.attempts, t.score, $8::boolean
       FROM unnest($1::bigint[], $2::text[], $3::timestamptz[], $4::text[]::jsonb[],
                   $5::smallint[], $6::int[], $7::float8[])
            AS t(id, name, run_at, payload, priority, attempts, score)
       RETURNING id::text AS id`,
      [
        ["9007199254740993", "2"],
        ["first", "second, with comma"],
        ["2024-05-06T07:08:09.123Z", "2024-05-06T07:08:10Z"],
        ['{"to":"a@example.com","n":1}', null],
        [5, -1],
        [0, 3],
        [0.5, 2],
        true,
      ],
    );
    expect(inserted.map((r) => r.id).sort()).toEqual(["2", "9007199254740993"]);

    const rows = await sql.query<Record<string, unknown>>(
      `SELECT id, id::text AS id_text, name, run_at, payload, priority, attempts, score, urgent
       FROM jobs_${name} WHERE id = ANY($1::bigint[]) ORDER BY name`,
      [["9007199254740993", "2"]],
    );
    expect(rows).toHaveLength(2);
    const [first, second] = rows as [Record<string, unknown>, Record<string, unknown>];
    // int8 comes back as the exact decimal string on both adapters, cast or not.
    expect(first.id).toBe("9007199254740993");
    expect(first.id_text).toBe("9007199254740993");
    expect(first.run_at).toBeInstanceOf(Date);
    expect((first.run_at as Date).toISOString()).toBe("2024-05-06T07:08:09.123Z");
    expect(first.payload).toEqual({ to: "a@example.com", n: 1 });
    expect(first).toMatchObject({ name: "first", priority: 5, attempts: 0, score: 0.5, urgent: true });
    expect(second).toMatchObject({ id: "2", name: "second, with comma", payload: null, priority: -1, attempts: 3 });

    const [count] = await sql.query<{ n: unknown }>(`SELECT count(*) AS n FROM jobs_${name} WHERE urgent = $1`, [true]);
    expect(count!.n).toBe("2");
  });

  it("commits a transaction and returns its value", async () => {
    await sql.query(`CREATE TABLE tx_${name} (v text)`);
    const result = await sql.begin(async (tx) => {
      await tx.query(`INSERT INTO tx_${name} VALUES ($1)`, ["committed"]);
      const rows = await tx.query<{ n: string }>(`SELECT count(*) AS n FROM tx_${name}`);
      return rows[0]!.n;
    });
    expect(result).toBe("1");
    expect(await sql.query(`SELECT v FROM tx_${name}`)).toEqual([{ v: "committed" }]);
  });

  it("rolls back and rethrows when the callback throws", async () => {
    await sql.query(`CREATE TABLE rb_${name} (v text)`);
    const boom = new Error("boom");
    await expect(
      sql.begin(async (tx) => {
        await tx.query(`INSERT INTO rb_${name} VALUES ($1)`, ["rolled back"]);
        throw boom;
      }),
    ).rejects.toBe(boom);
    expect(await sql.query(`SELECT v FROM rb_${name}`)).toEqual([]);
    // The connection is usable afterwards (not left inside the aborted transaction).
    expect(await sql.query("SELECT 1 AS one")).toEqual([{ one: 1 }]);
  });

  it("rejects when a swallowed statement error aborted the transaction", async () => {
    await sql.query(`CREATE TABLE ab_${name} (v text)`);
    await expect(
      sql.begin(async (tx) => {
        await tx.query(`INSERT INTO ab_${name} VALUES ($1)`, ["lost"]);
        await tx.query("SELECT 1 / $1::int", [0]).catch(() => undefined);
      }),
    ).rejects.toThrow(/roll/i);
    expect(await sql.query(`SELECT v FROM ab_${name}`)).toEqual([]);
  });

  it("delivers pg_notify from a transaction to listen callbacks only after commit", async () => {
    const channel = `jobs_${run}`;
    const got: string[] = [];
    const unlisten = await sql.listen!(channel, (payload) => got.push(payload));
    try {
      await sql.begin(async (tx) => {
        await tx.query("SELECT pg_notify($1, $2)", [channel, "in-tx"]);
        await sleep(150);
        expect(got).toEqual([]);
      });
      await waitFor("the committed notification", () => got.length > 0);
      expect(got).toEqual(["in-tx"]);

      // A rolled-back notification never arrives; the marker sent after it proves delivery ran.
      await expect(
        sql.begin(async (tx) => {
          await tx.query("SELECT pg_notify($1, $2)", [channel, "rolled-back"]);
          throw new Error("abort");
        }),
      ).rejects.toThrow("abort");
      await sql.query("SELECT pg_notify($1, $2)", [channel, "marker"]);
      await waitFor("the marker", () => got.includes("marker"));
      expect(got).toEqual(["in-tx", "marker"]);
    } finally {
      await unlisten();
    }
  });

  it("takes channel names literally and stops delivering after unsubscribe", async () => {
    const channel = `Jobs-Ready.${run}`; // mixed case and punctuation: needs quoting
    const other = `other_${run}`;
    const a: string[] = [];
    const b: string[] = [];
    const marks: string[] = [];
    const stopA = await sql.listen!(channel, (p) => a.push(p));
    const stopB = await sql.listen!(channel, (p) => b.push(p));
    const stopMarks = await sql.listen!(other, (p) => marks.push(p));
    try {
      await sql.query("SELECT pg_notify($1, $2)", [channel, "one"]);
      await waitFor("both handlers", () => a.length === 1 && b.length === 1);

      await stopA();
      await sql.query("SELECT pg_notify($1, $2)", [channel, "two"]);
      await waitFor("the remaining handler", () => b.length === 2);
      expect(a).toEqual(["one"]);

      await stopB();
      await sql.query("SELECT pg_notify($1, $2)", [channel, "three"]);
      await sql.query("SELECT pg_notify($1, $2)", [other, "mark"]);
      await waitFor("the marker", () => marks.length === 1);
      expect(b).toEqual(["one", "two"]);
    } finally {
      await stopMarks();
    }
  });

  it("rejects an invalid channel name", async () => {
    await expect(sql.listen!("", () => {})).rejects.toThrow(/channel/);
    await expect(sql.listen!("x".repeat(64), () => {})).rejects.toThrow(/channel/);
  });
});

// ---------------------------------------------------------------------------------------------
// node-postgres specifics: connection loss, pool errors, type parsers, close.
// ---------------------------------------------------------------------------------------------

describe("createPgSql", () => {
  it("reconnects the listener after its backend is terminated and LISTENs again", async () => {
    const app = `adapters-listen-${run}`;
    const errors: Error[] = [];
    const sql = createPgSql(DB_URL, { applicationName: app, onError: (e) => errors.push(e) });
    try {
      const got: string[] = [];
      await sql.listen!(`reconnect_${run}`, (p) => got.push(p));
      const pidOf = async () =>
        (await adminQuery("SELECT pid FROM pg_stat_activity WHERE application_name = $1", [`${app}:listen`])).map(
          (r) => r.pid as number,
        );
      const [before] = await pidOf();
      expect(before).toBeTypeOf("number");
      await adminQuery("SELECT pg_terminate_backend($1)", [before]);

      await waitFor("delivery after reconnect", async () => {
        await sql.query("SELECT pg_notify($1, $2)", [`reconnect_${run}`, "after"]);
        await sleep(50);
        return got.includes("after");
      }, 10_000);
      const after = await pidOf();
      expect(after).toHaveLength(1);
      expect(after[0]).not.toBe(before);
      expect(errors.some((e) => /terminat/i.test(e.message))).toBe(true);
    } finally {
      await sql.close();
    }
  }, 20_000);

  it("reports an idle pool connection dying instead of crashing, and keeps working", async () => {
    const errors: Error[] = [];
    const sql = createPgSql(DB_URL, { max: 1, onError: (e) => errors.push(e) });
    try {
      const [{ pid }] = (await sql.query<{ pid: number }>("SELECT pg_backend_pid() AS pid")) as [{ pid: number }];
      await adminQuery("SELECT pg_terminate_backend($1)", [pid]);
      await waitFor("the pool error", () => errors.length > 0);
      const [row] = await sql.query<{ pid: number }>("SELECT pg_backend_pid() AS pid");
      expect(row!.pid).not.toBe(pid);
    } finally {
      await sql.close();
    }
  });

  it("destroys a connection whose transaction cannot be rolled back", async () => {
    // One connection only: if the dead one went back to the pool, the next query would fail.
    const sql = createPgSql(DB_URL, { max: 1, onError: () => {} });
    try {
      await expect(
        sql.begin(async (tx) => {
          await tx.query("SELECT pg_terminate_backend(pg_backend_pid())");
        }),
      ).rejects.toThrow();
      expect(await sql.query("SELECT 1 AS one")).toEqual([{ one: 1 }]);
    } finally {
      await sql.close();
    }
  });

  it("keeps int8 a string even when another module changes pg's global parser", async () => {
    const sql = createPgSql(DB_URL);
    pg.types.setTypeParser(20, (v: string) => Number.parseInt(v, 10));
    try {
      const [row] = await sql.query<{ v: unknown }>("SELECT 9007199254740993::int8 AS v");
      expect(row!.v).toBe("9007199254740993");
    } finally {
      pg.types.setTypeParser(20, (v: string) => v);
      await sql.close();
    }
  });

  it("reports a throwing listen callback without breaking the listener connection", async () => {
    const errors: Error[] = [];
    const sql = createPgSql(DB_URL, { onError: (e) => errors.push(e) });
    try {
      const got: string[] = [];
      await sql.listen!(`throws_${run}`, () => {
        throw new Error("handler failed");
      });
      await sql.listen!(`throws_${run}`, (p) => got.push(p));
      await sql.query("SELECT pg_notify($1, 'x')", [`throws_${run}`]);
      await sql.query("SELECT pg_notify($1, 'y')", [`throws_${run}`]);
      await waitFor("both notifications", () => got.length === 2);
      expect(got).toEqual(["x", "y"]);
      expect(errors.map((e) => e.message)).toEqual(["handler failed", "handler failed"]);
    } finally {
      await sql.close();
    }
  });

  it("closes idempotently and refuses queries afterwards", async () => {
    const sql = createPgSql(DB_URL);
    await sql.listen!(`close_${run}`, () => {});
    await Promise.all([sql.close(), sql.close()]);
    await sql.close();
    await expect(sql.query("SELECT 1")).rejects.toThrow();
    await expect(sql.listen!(`close_${run}`, () => {})).rejects.toThrow(/closed/);
  });
});

describe("createPgliteSql", () => {
  it("really UNLISTENs a quoted channel on unsubscribe", async () => {
    const sql = await createPgliteSql(undefined);
    try {
      const stop = await sql.listen!("Mixed-Case", () => {});
      expect(await sql.query("SELECT pg_listening_channels() AS c")).toEqual([{ c: "Mixed-Case" }]);
      await stop();
      expect(await sql.query("SELECT pg_listening_channels() AS c")).toEqual([]);
    } finally {
      await sql.close();
    }
  });

  it("reports a throwing listen callback and keeps delivering to the others", async () => {
    const errors: Error[] = [];
    const sql = await createPgliteSql(undefined, { onError: (e) => errors.push(e) });
    try {
      const got: string[] = [];
      await sql.listen!("chan", () => {
        throw new Error("handler failed");
      });
      await sql.listen!("chan", (p) => got.push(p));
      await sql.query("SELECT pg_notify('chan', 'x')");
      await waitFor("the healthy handler", () => got.length === 1);
      expect(errors.map((e) => e.message)).toEqual(["handler failed"]);
    } finally {
      await sql.close();
    }
  });

  it("persists to a data directory", async () => {
    const dir = await mkdtemp(join(tmpdir(), "adapters-pglite-"));
    try {
      const first = await createPgliteSql(dir);
      await first.query("CREATE TABLE kept (v text); INSERT INTO kept VALUES ('still here')");
      await first.close();
      await first.close();
      const second = await createPgliteSql(dir);
      expect(await second.query("SELECT v FROM kept")).toEqual([{ v: "still here" }]);
      await second.close();
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }, 30_000);
});

// ---------------------------------------------------------------------------------------------
// Redis.
// ---------------------------------------------------------------------------------------------

async function freePort(): Promise<number> {
  const server = createServer();
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const address = server.address();
  server.close();
  await once(server, "close");
  if (!address || typeof address === "string") throw new Error("no port");
  return address.port;
}

async function startRedis(port: number): Promise<ChildProcess> {
  const proc = spawn(
    "redis-server",
    ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
    { stdio: ["ignore", "pipe", "pipe"] },
  );
  let out = "";
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`redis-server did not start: ${out}`)), 5_000);
    proc.stdout!.on("data", (chunk: Buffer) => {
      out += chunk.toString();
      if (out.includes("Ready to accept connections")) {
        clearTimeout(timer);
        resolve();
      }
    });
    proc.once("exit", (code) => reject(new Error(`redis-server exited (${code}): ${out}`)));
  });
  return proc;
}

async function stopRedis(proc: ChildProcess): Promise<void> {
  if (proc.exitCode !== null || proc.signalCode !== null) return;
  const exited = once(proc, "exit");
  proc.kill("SIGKILL");
  await exited;
}

describe("createIoRedis", () => {
  const prefix = `adapters-test:${run}:`;
  let redis: Redis;
  const errors: Error[] = [];

  beforeAll(() => {
    redis = createIoRedis(REDIS_URL, { onError: (e) => errors.push(e) });
  });

  afterAll(async () => {
    const keys: string[] = [];
    let cursor = "0";
    do {
      const [[next, batch]] = (await redis.pipeline([["SCAN", cursor, "MATCH", `${prefix}*`, "COUNT", 1000]])) as [
        [string, string[]],
      ];
      cursor = next;
      keys.push(...batch);
    } while (cursor !== "0");
    if (keys.length > 0) await redis.pipeline([["DEL", ...keys]]);
    await redis.close();
    await redis.close();
  });

  it("runs a pipeline and returns raw replies in order", async () => {
    const k = (s: string) => prefix + s;
    const results = await redis.pipeline([
      ["SET", k("s"), "v"],
      ["INCRBY", k("n"), 5],
      ["get", k("s")],
      ["ZADD", k("z"), 1, "a", 2, "b"],
      ["zrange", k("z"), 0, -1, "WITHSCORES"],
      ["HSET", k("h"), "f", "1", "g", "2"],
      ["hgetall", k("h")],
      ["GET", k("missing")],
    ]);
    // HGETALL stays a flat array (as Redis and Upstash's REST API send it), not an object.
    expect(results).toEqual(["OK", 5, "v", 2, ["a", "1", "b", "2"], 2, ["f", "1", "g", "2"], null]);
    expect(await redis.pipeline([["hgetall", k("h")]])).toEqual([["f", "1", "g", "2"]]);
    expect(await redis.pipeline([])).toEqual([]);
  });

  it("rejects the whole pipeline when one command fails", async () => {
    const key = `${prefix}not-a-number`;
    await expect(
      redis.pipeline([
        ["SET", key, "abc"],
        ["INCR", key],
        ["GET", key],
      ]),
    ).rejects.toThrow(/not an integer/);
    await expect(redis.pipeline([["INCR", key]])).rejects.toThrow(/not an integer/);
    // Not a transaction: the commands before the failure ran.
    expect(await redis.pipeline([["GET", key]])).toEqual(["abc"]);
  });

  it("delivers published messages to subscribers until they unsubscribe", async () => {
    const channel = `${prefix}events`;
    const a: string[] = [];
    const b: string[] = [];
    const stopA = await redis.subscribe!(channel, (m) => a.push(m));
    const stopB = await redis.subscribe!(channel, (m) => b.push(m));
    const [receivers] = (await redis.pipeline([["PUBLISH", channel, "one"]])) as [number];
    expect(receivers).toBe(1); // one shared subscriber connection
    await waitFor("both subscribers", () => a.length === 1 && b.length === 1);
    expect(a).toEqual(["one"]);

    await stopA();
    await redis.pipeline([["PUBLISH", channel, "two"]]);
    await waitFor("the remaining subscriber", () => b.length === 2);
    expect(a).toEqual(["one"]);

    await stopB();
    expect(await redis.pipeline([["PUBLISH", channel, "three"]])).toEqual([0]);
    expect(await redis.pipeline([["PUBSUB", "NUMSUB", channel]])).toEqual([[channel, 0]]);
  });

  describe("against a throwaway redis-server", () => {
    let port: number;
    let proc: ChildProcess;
    beforeAll(async () => {
      port = await freePort();
      proc = await startRedis(port);
    });
    afterAll(async () => {
      await stopRedis(proc);
    });

    it("uses EVALSHA and falls back to EVAL after SCRIPT FLUSH", async () => {
      const client = createIoRedis(`redis://127.0.0.1:${port}`);
      try {
        const script = "return {KEYS[1], ARGV[1], tonumber(ARGV[2]) + 1}";
        const evalCalls = async () => {
          const [info] = (await client.pipeline([["INFO", "commandstats"]])) as [string];
          return Number(/cmdstat_eval:calls=(\d+)/.exec(info)?.[1] ?? 0);
        };
        await client.pipeline([["CONFIG", "RESETSTAT"]]);

        expect(await client.eval(script, ["k1"], ["a", 41])).toEqual(["k1", "a", 42]);
        expect(await client.eval(script, ["k2"], ["b", 1])).toEqual(["k2", "b", 2]);
        expect(await evalCalls()).toBe(1); // the first call loaded it, the second ran by SHA

        await client.pipeline([["SCRIPT", "FLUSH"]]);
        expect(await client.eval(script, ["k3"], ["c", 2])).toEqual(["k3", "c", 3]);
        expect(await evalCalls()).toBe(2);

        await expect(client.eval("return redis.call('INCR', KEYS[1])", ["k4"], [])).resolves.toBe(1);
        await expect(client.eval("return redis.error_reply('nope')", [], [])).rejects.toThrow("nope");
      } finally {
        await client.close();
      }
    });

    it("rejects fast while Redis is down and recovers, subscriptions included, when it is back", async () => {
      const downErrors: Error[] = [];
      const client = createIoRedis(`redis://127.0.0.1:${port}`, { onError: (e) => downErrors.push(e) });
      try {
        expect(await client.pipeline([["SET", "k", "1"]])).toEqual(["OK"]);
        const got: string[] = [];
        await client.subscribe!("ch", (m) => got.push(m));

        await stopRedis(proc);
        for (const attempt of [
          () => client.pipeline([["GET", "k"]]),
          () => client.pipeline([["GET", "k"], ["GET", "k"]]),
          () => client.eval("return 1", [], []),
        ]) {
          const started = Date.now();
          await expect(attempt()).rejects.toThrow();
          expect(Date.now() - started).toBeLessThan(4_000);
        }
        expect(downErrors.length).toBeGreaterThan(0);

        proc = await startRedis(port);
        await waitFor("commands after restart", async () => (await client.pipeline([["PING"]]))[0] === "PONG", 10_000);
        await waitFor("resubscription after restart", async () => {
          await client.pipeline([["PUBLISH", "ch", "back"]]);
          await sleep(50);
          return got.includes("back");
        }, 10_000);
      } finally {
        await client.close();
      }
    }, 30_000);
  });

  it("reported no connection errors on the healthy shared server", () => {
    expect(errors).toEqual([]);
  });
});

// ---------------------------------------------------------------------------------------------
// Logger and URL redaction.
// ---------------------------------------------------------------------------------------------

function capture() {
  const lines: string[] = [];
  const destination = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      lines.push(...chunk.toString().split("\n").filter(Boolean));
      callback();
    },
  });
  return { lines, destination };
}

describe("createLogger", () => {
  it("writes JSON lines and redacts secrets at the top level and one level down", () => {
    const { lines, destination } = capture();
    const log = createLogger({ destination });
    log.info("request", {
      password: "hunter2-secret",
      headers: { authorization: "Bearer tok-123-secret", accept: "json" },
      provider: { apiKey: "ak-secret", key: "nested-key-secret", region: "eu" },
      databaseUrl: "postgres://u:dbpass-secret@h/db",
      key: "jobs:email",
    });
    expect(lines).toHaveLength(1);
    const text = lines[0]!;
    for (const secret of ["hunter2-secret", "tok-123-secret", "ak-secret", "nested-key-secret", "dbpass-secret"]) {
      expect(text).not.toContain(secret);
    }
    const entry = JSON.parse(text);
    expect(entry).toMatchObject({
      level: "info",
      msg: "request",
      password: "[redacted]",
      headers: { authorization: "[redacted]", accept: "json" },
      provider: { apiKey: "[redacted]", key: "[redacted]", region: "eu" },
      key: "jobs:email",
    });
  });

  it("redacts child bindings, filters by level and serialises errors", () => {
    const { lines, destination } = capture();
    const log = createLogger({ level: "info", destination });
    const child = log.child({ job: "email.send", token: "child-token-secret" });
    child.debug("hidden");
    child.error("failed", { error: new Error("smtp down") });
    expect(lines).toHaveLength(1);
    expect(lines[0]).not.toContain("child-token-secret");
    const entry = JSON.parse(lines[0]!);
    expect(entry).toMatchObject({ level: "error", msg: "failed", job: "email.send", token: "[redacted]" });
    expect(entry.error).toMatchObject({ type: "Error", message: "smtp down" });
  });
});

describe("redactUrl", () => {
  it.each([
    ["postgres://user:secret@host/db", "postgres://user:***@host/db"],
    ["postgres://user:secret@host:5432/db?sslmode=require", "postgres://user:***@host:5432/db?sslmode=require"],
    ["redis://:pa%40ss@127.0.0.1:6379/0", "redis://:***@127.0.0.1:6379/0"],
    ["postgres://user:p@ss@host/db", "postgres://user:***@host/db"],
    ["postgres://u:pw@h1:5432,h2:5432/db?password=x&application_name=a", "postgres://u:***@h1:5432,h2:5432/db?password=***&application_name=a"],
    [
      "https://hooks.example.com/x?token=abc&page=2&api_key=xyz&X-Amz-Signature=s1&clientSecret=c#frag",
      "https://hooks.example.com/x?token=***&page=2&api_key=***&X-Amz-Signature=***&clientSecret=***#frag",
    ],
    ["postgres://user@host/db", "postgres://user@host/db"],
    ["https://example.com/a?b=c", "https://example.com/a?b=c"],
    ["not a url", "not a url"],
  ])("%s", (input, expected) => {
    expect(redactUrl(input)).toBe(expected);
  });
});

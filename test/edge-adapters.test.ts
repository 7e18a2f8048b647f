/**
 * The edge adapters (Neon serverless driver, @upstash/redis) and the two dev bridges that let
 * them reach local services: Postgres on 127.0.0.1:5432 through tools/ws-tcp-bridge.ts (a
 * throwaway database) and Redis on 127.0.0.1:6379 through tools/upstash-gateway.ts (a random
 * key prefix, deleted afterwards).
 */
import { once } from "node:events";
import { createServer, type Server } from "node:net";
import { neonConfig, types as neonTypes } from "@neondatabase/serverless";
import { Redis as UpstashClient } from "@upstash/redis";
import { Redis as IORedis } from "ioredis";
import pg from "pg";
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import WebSocket from "ws";
import { migrations } from "../schema/migrations.gen";
import { migrate } from "../schema/migrate";
import { POP_SCRIPT } from "../shared/dispatch/lanes-script";
import type { Logger, LogFields, Redis, RedisCommand, Sql } from "../shared/ports";
import { createEngine } from "../shared/queue/engine";
import { startUpstashGateway, type UpstashGateway } from "../tools/upstash-gateway";
import { startWsTcpBridge, type WsTcpBridge } from "../tools/ws-tcp-bridge";
import { createNeonSql } from "../workers/edge/neon";
import { createUpstashRedis } from "../workers/edge/upstash";
import { createIoRedis } from "../workers/node/redis";
import { ADMIN_DATABASE_URL, REDIS_URL, databaseUrl, randomId } from "./support/services";

// Node 20 has no global WebSocket; workerd does, and leaves this unset.
neonConfig.webSocketConstructor = WebSocket;

const run = randomId(4);
const DB_NAME = `t_edge_adapters_${run}`;
const DB_URL = databaseUrl(DB_NAME);
/** Every Redis key this file writes starts with this; afterAll deletes them. */
const KEYS = `test:edge:${run}:`;
const TOKEN = `token-${randomId()}`;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function waitFor(what: string, check: () => Promise<boolean>, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(25);
  }
}

async function adminQuery<T = Record<string, unknown>>(text: string, params: unknown[] = []): Promise<T[]> {
  const client = new pg.Client({ connectionString: ADMIN_DATABASE_URL });
  await client.connect();
  try {
    return (await client.query(text, params)).rows as T[];
  } finally {
    await client.end();
  }
}

/** A port nothing listens on (bound, then released). */
async function closedPort(): Promise<number> {
  const server = createServer().listen(0, "127.0.0.1");
  await once(server, "listening");
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/** Opens a WebSocket; resolves with it once open, or with the HTTP status that refused it. */
function openWs(url: string, headers: Record<string, string> = {}): Promise<WebSocket | number> {
  return new Promise((resolve, reject) => {
    const socket = new WebSocket(url, { headers });
    socket.once("open", () => resolve(socket));
    socket.once("unexpected-response", (_req, res) => {
      resolve(res.statusCode ?? 0);
      socket.terminate();
    });
    socket.once("error", reject);
  });
}

let bridge: WsTcpBridge;
let gateway: UpstashGateway;
let neon: Sql;
let upstash: Redis;
let io: IORedis;

beforeAll(async () => {
  // A bare database: migrate() below has to build the schema through the Neon driver.
  await adminQuery(`create database "${DB_NAME}"`);
  bridge = await startWsTcpBridge({ port: 0, target: { host: "127.0.0.1", port: 5432 } });
  gateway = await startUpstashGateway({ port: 0, redisUrl: REDIS_URL, token: TOKEN });
  neon = createNeonSql(DB_URL, { wsProxy: bridge.url });
  upstash = createUpstashRedis({ url: gateway.url, token: TOKEN });
  io = new IORedis(REDIS_URL);
});

afterAll(async () => {
  await neon?.close();
  await upstash?.close();
  await bridge?.close();
  await gateway?.close();
  if (io) {
    const keys = await io.keys(`${KEYS}*`);
    if (keys.length > 0) await io.del(...keys);
    io.disconnect();
  }
  await adminQuery(`drop database if exists "${DB_NAME}" with (force)`);
});

// ---------------------------------------------------------------------------------------------
// The Neon Sql through the WebSocket bridge: the same values as the pg adapter.
// ---------------------------------------------------------------------------------------------

describe("Neon Sql through the ws-tcp bridge", () => {
  it("has no listen (edge invocations do not idle)", () => {
    expect(neon.listen).toBeUndefined();
  });

  it("round-trips typed array parameters", async () => {
    const texts = ["plain", "comma, inside", 'quote " inside', "back\\slash", "", "ünïcødé ✓", "NULL", "{braces}", null];
    const [t] = await neon.query<{ v: unknown }>("SELECT $1::text[] AS v", [texts]);
    expect(t!.v).toEqual(texts);

    const bigs = ["1", "-42", "9007199254740993", "9223372036854775807"];
    const [b] = await neon.query<{ v: unknown; n: unknown; one: unknown }>(
      "SELECT $1::bigint[] AS v, $2::bigint[] AS n, 1::int8 AS one",
      [bigs, [1, 2]],
    );
    expect(b).toEqual({ v: bigs, n: ["1", "2"], one: "1" });

    const isos = ["2024-01-02T03:04:05.678Z", "2024-02-29T23:59:59.999+02:00", null];
    const [ts] = await neon.query<{ v: (Date | null)[]; one: Date }>(
      "SELECT $1::timestamptz[] AS v, $2::timestamptz AS one",
      [isos, "2030-01-01T12:00:00Z"],
    );
    expect(ts!.v[0]).toBeInstanceOf(Date);
    expect(ts!.v.map((d) => d?.getTime() ?? null)).toEqual([Date.parse(isos[0]!), Date.parse(isos[1]!), null]);
    expect(ts!.one).toBeInstanceOf(Date);
    expect(ts!.one.toISOString()).toBe("2030-01-01T12:00:00.000Z");

    const docs = ['{"a":1,"nested":{"b":[1,2]}}', null, '"just a string"', '[1,"x"]'];
    const [j] = await neon.query<{ v: unknown; one: unknown }>(
      `SELECT $1::text[]::jsonb[] AS v, '{"k":[true,null]}'::jsonb AS one`,
      [docs],
    );
    expect(j).toEqual({ v: [{ a: 1, nested: { b: [1, 2] } }, null, "just a string", [1, "x"]], one: { k: [true, null] } });

    const [n] = await neon.query<Record<string, unknown>>(
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
  });

  it("keeps int8 a decimal string even when the driver's global type table would parse it", async () => {
    const original = neonTypes.getTypeParser(20, "text") as (value: string) => unknown;
    neonTypes.setTypeParser(20, (value: string) => Number(value));
    try {
      const [row] = await neon.query<{ v: unknown }>("SELECT 9007199254740993::int8 AS v");
      expect(row!.v).toBe("9007199254740993");
    } finally {
      neonTypes.setTypeParser(20, original);
    }
  });

  it("inserts through unnest of array parameters and reads back strings, Dates and objects", async () => {
    await neon.query(`CREATE TABLE edge_unnest (
      id bigint PRIMARY KEY, name text, run_at timestamptz, payload jsonb, priority smallint, attempts int, score float8, urgent boolean)`);
    const inserted = await neon.query<{ id: unknown }>(
      `INSERT INTO edge_unnest (id, name, run_at, payload, priority, attempts, score, urgent)
       SELECT t.*, $8::boolean
       FROM unnest($1::bigint[], $2::text[], $3::timestamptz[], $4::text[]::jsonb[], $5::smallint[], $6::int[], $7::float8[])
            AS t(id, name, run_at, payload, priority, attempts, score)
       RETURNING id`,
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

    const rows = await neon.query<Record<string, unknown>>("SELECT * FROM edge_unnest WHERE id = ANY($1::bigint[]) ORDER BY name", [
      ["9007199254740993", "2"],
    ]);
    expect(rows).toHaveLength(2);
    const [first, second] = rows as [Record<string, unknown>, Record<string, unknown>];
    expect(first.id).toBe("9007199254740993");
    expect(first.run_at).toBeInstanceOf(Date);
    expect((first.run_at as Date).toISOString()).toBe("2024-05-06T07:08:09.123Z");
    expect(first).toMatchObject({ name: "first", payload: { to: "a@example.com", n: 1 }, priority: 5, attempts: 0, score: 0.5, urgent: true });
    expect(second).toMatchObject({ id: "2", name: "second, with comma", payload: null, priority: -1, attempts: 3, score: 2 });
  });

  it("runs multi-statement text without params and returns the last statement's rows", async () => {
    const rows = await neon.query<{ x: number }>(
      `CREATE TABLE edge_multi (x int);
       INSERT INTO edge_multi VALUES (2), (1);
       SELECT x FROM edge_multi ORDER BY x`,
    );
    expect(rows).toEqual([{ x: 1 }, { x: 2 }]);
    expect(await neon.query(`SELECT 1; SELECT count(*) AS n FROM edge_multi`, [])).toEqual([{ n: "2" }]);
  });

  it("commits a transaction on one connection and returns its value", async () => {
    await neon.query("CREATE TABLE edge_tx (v text)");
    const result = await neon.begin(async (tx) => {
      await tx.query("INSERT INTO edge_tx VALUES ($1)", ["committed"]);
      // Same connection and transaction: the insert's transaction id is still the current one.
      const [row] = await tx.query<{ n: string; in_tx: boolean }>(
        "SELECT count(*) AS n, txid_current_if_assigned() IS NOT NULL AS in_tx FROM edge_tx",
      );
      return row;
    });
    expect(result).toEqual({ n: "1", in_tx: true });
    expect(await neon.query("SELECT v FROM edge_tx")).toEqual([{ v: "committed" }]);
  });

  it("rolls back and rethrows when the callback throws, and the pool stays usable", async () => {
    await neon.query("CREATE TABLE edge_rb (v text)");
    const boom = new Error("boom");
    await expect(
      neon.begin(async (tx) => {
        await tx.query("INSERT INTO edge_rb VALUES ($1)", ["rolled back"]);
        throw boom;
      }),
    ).rejects.toBe(boom);
    expect(await neon.query("SELECT v FROM edge_rb")).toEqual([]);
    expect(await neon.query("SELECT 1 AS one")).toEqual([{ one: 1 }]);
  });

  it("rejects when a swallowed statement error aborted the transaction (COMMIT answered ROLLBACK)", async () => {
    await neon.query("CREATE TABLE edge_ab (v text)");
    await expect(
      neon.begin(async (tx) => {
        await tx.query("INSERT INTO edge_ab VALUES ($1)", ["lost"]);
        await tx.query("SELECT 1 / $1::int", [0]).catch(() => undefined);
      }),
    ).rejects.toThrow(/roll/i);
    expect(await neon.query("SELECT v FROM edge_ab")).toEqual([]);
  });

  it("keeps the connection after an SQL error (no new WebSocket and login per failed query)", async () => {
    const sql = createNeonSql(DB_URL, { wsProxy: bridge.url });
    try {
      const [before] = await sql.query<{ pid: number }>("SELECT pg_backend_pid() AS pid");
      await expect(sql.query("SELECT 1 / $1::int", [0])).rejects.toThrow(/division by zero/);
      await expect(sql.query("SELECT * FROM no_such_table")).rejects.toThrow(/does not exist/);
      const [after] = await sql.query<{ pid: number }>("SELECT pg_backend_pid() AS pid");
      expect(after!.pid).toBe(before!.pid);
    } finally {
      await sql.close();
      await sql.close(); // twice is fine
    }
  });

  it("pipelineConnect 'password' is refused by a plain (trust-auth) Postgres: why false is the default with wsProxy", async () => {
    const sql = createNeonSql(DB_URL, { wsProxy: bridge.url, pipelineConnect: "password" });
    try {
      await expect(sql.query("SELECT 1")).rejects.toThrow(/invalid frontend message type 112|password/i);
    } finally {
      await sql.close().catch(() => undefined);
    }
  });
});

// ---------------------------------------------------------------------------------------------
// The bridge itself.
// ---------------------------------------------------------------------------------------------

describe("ws-tcp bridge", () => {
  it("connects only to its configured target, whatever address the client asks for", async () => {
    let dialled = 0;
    const decoy: Server = createServer((s) => {
      dialled++;
      s.destroy();
    }).listen(0, "127.0.0.1");
    await once(decoy, "listening");
    const decoyPort = (decoy.address() as { port: number }).port;
    // The driver puts the address from the connection string in the query; point it elsewhere.
    const sql = createNeonSql(DB_URL, {
      wsProxy: () => `127.0.0.1:${bridge.port}/v2?address=127.0.0.1:${decoyPort}`,
      useSecureWebSocket: false,
    });
    try {
      expect(await sql.query("SELECT current_database() AS db")).toEqual([{ db: DB_NAME }]);
      expect(dialled).toBe(0);
    } finally {
      await sql.close();
      await new Promise((resolve) => decoy.close(resolve));
    }
  });

  it("refuses browsers (Origin header) and plain HTTP, and fails the handshake when Postgres is unreachable", async () => {
    expect(await openWs(bridge.url, { origin: "https://evil.example" })).toBe(403);
    expect((await fetch(bridge.url.replace(/^ws/, "http"))).status).toBe(426);

    const dead = await startWsTcpBridge({ port: 0, target: { host: "127.0.0.1", port: await closedPort() } });
    try {
      expect(await openWs(dead.url)).toBe(502);
      const sql = createNeonSql(DB_URL, { wsProxy: dead.url });
      await expect(sql.query("SELECT 1")).rejects.toThrow();
      await sql.close().catch(() => undefined);
    } finally {
      await dead.close();
    }
  });

  it("carries binary frames both ways and closes each side when the other closes", async () => {
    const app = `edge_bridge_${run}`;
    const sessions = async () =>
      (await adminQuery<{ n: number }>("SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = $1", [app]))[0]!.n;

    // A StartupMessage by hand: the WebSocket side closing must end the Postgres session.
    const ws = await openWs(bridge.url);
    if (typeof ws === "number") throw new Error(`handshake refused: ${ws}`);
    const params = Buffer.from(`user\0postgres\0database\0${DB_NAME}\0application_name\0${app}\0\0`);
    const header = Buffer.alloc(8);
    header.writeInt32BE(8 + params.length, 0);
    header.writeInt32BE(196608, 4); // protocol 3.0
    const got: Buffer[] = [];
    const binary: boolean[] = [];
    ws.on("message", (data: Buffer, isBinary: boolean) => {
      binary.push(isBinary);
      got.push(data);
    });
    ws.send(Buffer.concat([header, params]));
    // 'Z' (ReadyForQuery) ends the login exchange.
    await waitFor("ReadyForQuery", async () => Buffer.concat(got).includes(Buffer.from([0x5a, 0, 0, 0, 5])));
    expect(Buffer.concat(got)[0]).toBe(0x52); // 'R': AuthenticationOk first
    expect(binary.every(Boolean)).toBe(true);
    expect(await sessions()).toBe(1);
    ws.terminate(); // abrupt: no Terminate message, no close frame
    await waitFor("the Postgres session to end", async () => (await sessions()) === 0);

    // And Postgres closing (here: rejecting a bogus protocol version) closes the WebSocket.
    const ws2 = await openWs(bridge.url);
    if (typeof ws2 === "number") throw new Error(`handshake refused: ${ws2}`);
    const replies: Buffer[] = [];
    ws2.on("message", (data: Buffer) => replies.push(data));
    const closed = once(ws2, "close");
    const bogus = Buffer.alloc(8);
    bogus.writeInt32BE(8, 0);
    bogus.writeInt32BE(0x00090000, 4);
    ws2.send(bogus);
    await closed;
    expect(Buffer.concat(replies)[0]).toBe(0x45); // 'E': ErrorResponse before the close
  });
});

// ---------------------------------------------------------------------------------------------
// The engine on Neon + Upstash.
// ---------------------------------------------------------------------------------------------

function recordingLogger(): Logger & { warnings: string[] } {
  const warnings: string[] = [];
  const logger: Logger & { warnings: string[] } = {
    warnings,
    debug() {},
    info() {},
    warn(msg: string, fields?: LogFields) {
      warnings.push(`${msg} ${JSON.stringify(fields ?? {})}`);
    },
    error(msg: string, fields?: LogFields) {
      warnings.push(`${msg} ${JSON.stringify(fields ?? {})}`);
    },
    child() {
      return logger;
    },
  };
  return logger;
}

describe("the engine on Neon + Upstash", () => {
  it("migrates, enqueues through Redis lanes and claims every job", async () => {
    const applied = await migrate(neon);
    expect(applied).toEqual(migrations.map((m) => m.version).sort((a, b) => a - b));

    const prefix = `${KEYS}{jobs}:`;
    const lane = `${prefix}lane:email.send`;
    const logger = recordingLogger();
    const engine = createEngine({ sql: neon, redis: upstash, redisOptions: { prefix }, logger });
    await engine.dispatcher.start();
    await engine.dispatcher.reconcile({ force: true });
    expect(await io.exists(`${prefix}epoch`)).toBe(1);

    const inputs = Array.from({ length: 50 }, () => ({
      type: "email.send",
      tenantId: "t1",
      payload: { recipient: "a@example.com", template_id: "tpl" },
    }));
    const enqueued = await engine.queue.enqueueMany(inputs);
    expect(enqueued).toHaveLength(50);
    expect(enqueued.every((e) => e.created && e.job.state === "queued")).toBe(true);
    // Published through Upstash, not silently left to the Postgres fallback.
    expect(await io.zcard(lane)).toBe(50);

    const claimed = await engine.dispatcher.take(["email.send"], 100, "edge-test", 30_000);
    expect(claimed.map((j) => j.id).sort()).toEqual(enqueued.map((e) => e.job.id).sort());
    expect(claimed.every((j) => j.state === "active" && j.workerId === "edge-test")).toBe(true);
    // Popped by the Lua script through the gateway (the Postgres fallback leaves lanes alone).
    expect(await io.zcard(lane)).toBe(0);

    const ledger = await neon.query<{ state: string; worker_id: string; n: string }>(
      "SELECT state::text AS state, worker_id, count(*) AS n FROM jobs WHERE id = ANY($1::bigint[]) GROUP BY 1, 2",
      [claimed.map((j) => j.id)],
    );
    expect(ledger).toEqual([{ state: "active", worker_id: "edge-test", n: "50" }]);
    expect(logger.warnings).toEqual([]);
    await engine.dispatcher.close();
  });
});

// ---------------------------------------------------------------------------------------------
// The Upstash gateway and the Redis adapter on it.
// ---------------------------------------------------------------------------------------------

async function post(path: string, body: unknown, headers: Record<string, string> = {}) {
  const res = await fetch(`${gateway.url}${path}`, {
    method: "POST",
    headers: { authorization: `Bearer ${TOKEN}`, "content-type": "application/json", ...headers },
    body: JSON.stringify(body),
  });
  return { status: res.status, body: (await res.json()) as unknown };
}

const b64 = (s: string | Buffer) => Buffer.from(s).toString("base64");

describe("Upstash gateway", () => {
  afterEach(() => {
    vi.restoreAllMocks();
  });

  it("requires the bearer token", async () => {
    const key = `${KEYS}auth`;
    for (const authorization of [undefined, `Bearer wrong`, TOKEN, `Bearer ${TOKEN}x`]) {
      const res = await fetch(gateway.url, {
        method: "POST",
        headers: authorization ? { authorization } : {},
        body: JSON.stringify(["SET", key, "1"]),
      });
      expect(res.status).toBe(401);
    }
    expect(await io.exists(key)).toBe(0);
    const wrong = createUpstashRedis({ url: gateway.url, token: "wrong" });
    await expect(wrong.pipeline([["SET", key, "1"]])).rejects.toThrow(/unauthori/i);
    expect((await post("/", ["SET", key, "1"])).body).toEqual({ result: "OK" });
  });

  it("base64-encodes strings (nested too) only when asked, binary-safe; numbers and nil untouched", async () => {
    const key = `${KEYS}enc`;
    const text = "héllo ✓";
    await io.set(key, text);
    const script = "return {redis.call('GET', KEYS[1]), 7, false, {string.char(255, 0, 1), 'x'}}";
    const base64 = { "upstash-encoding": "base64" };

    expect(await post("/", ["GET", key])).toEqual({ status: 200, body: { result: text } });
    expect(await post("/", ["GET", key], base64)).toEqual({ status: 200, body: { result: b64(text) } });
    expect(await post("/", ["GET", `${KEYS}missing`], base64)).toEqual({ status: 200, body: { result: null } });
    expect(await post("/", ["INCR", `${KEYS}n`], base64)).toEqual({ status: 200, body: { result: 1 } });
    expect(await post("/", ["EVAL", script, 1, key], base64)).toEqual({
      status: 200,
      body: { result: [b64(text), 7, null, [b64(Buffer.from([255, 0, 1])), b64("x")]] },
    });
    expect((await post("/", ["EVAL", script, 1, key])).body).toEqual({
      result: [text, 7, null, [Buffer.from([255, 0, 1]).toString("utf8"), "x"]],
    });
    expect(await post("/pipeline", [["GET", key], ["INCR", `${KEYS}n`]], base64)).toEqual({
      status: 200,
      body: [{ result: b64(text) }, { result: 2 }],
    });
  });

  it("reports errors per command in a pipeline, and as 400 for a single command", async () => {
    const key = `${KEYS}perr`;
    const res = await post("/pipeline", [["SET", key, "1"], ["NOSUCHCOMMAND"], ["INCR", key], ["HGET", key, "f"]]);
    expect(res.status).toBe(200);
    const [ok, unknown, incr, wrongType] = res.body as { result?: unknown; error?: string }[];
    expect(ok).toEqual({ result: "OK" });
    expect(unknown!.error).toMatch(/^ERR unknown command/);
    expect(incr).toEqual({ result: 2 });
    expect(wrongType!.error).toMatch(/^WRONGTYPE/);

    const single = await post("/", ["HGET", key, "f"]);
    expect(single.status).toBe(400);
    expect((single.body as { error: string }).error).toMatch(/^WRONGTYPE/);
    expect((await post("/", ["SUBSCRIBE", "x"])).status).toBe(400);
    expect((await post("/", { not: "a command" })).status).toBe(400);

    // The adapter throws the first error with Redis's own message.
    await expect(upstash.pipeline([["SET", key, "2"], ["HGET", key, "f"], ["NOSUCHCOMMAND"]])).rejects.toThrow(/^WRONGTYPE/);
    expect(await io.get(key)).toBe("2");
  });

  it("runs /multi-exec atomically and refuses it whole when Redis discards it", async () => {
    const key = `${KEYS}multi`;
    expect((await post("/multi-exec", [["SET", key, "5"], ["INCR", key], ["GET", key]])).body).toEqual([
      { result: "OK" },
      { result: 6 },
      { result: "6" },
    ]);
    const aborted = await post("/multi-exec", [["SET", key, "7"], ["NOSUCHCOMMAND"]]);
    expect(aborted.status).toBe(400);
    expect((aborted.body as { error: string }).error).toMatch(/EXECABORT/);
    expect(await io.get(key)).toBe("6");
  });

  it("serves the stock @upstash/redis client (its defaults: base64, JSON deserialisation)", async () => {
    const client = new UpstashClient({ url: gateway.url, token: TOKEN, enableTelemetry: false });
    const key = `${KEYS}sdk`;
    await client.set(key, { a: 1, s: "ünï ✓" });
    expect(await client.get(key)).toEqual({ a: 1, s: "ünï ✓" });
    const p = client.pipeline();
    p.incr(`${KEYS}sdkn`);
    p.get(key);
    expect(await p.exec()).toEqual([1, { a: 1, s: "ünï ✓" }]);
  });
});

describe("Upstash Redis adapter", () => {
  afterEach(() => {
    vi.restoreAllMocks();
  });

  it("answers the engine's commands in the same shapes as the ioredis adapter", async () => {
    const ioAdapter = createIoRedis(REDIS_URL);
    try {
      const commands = (p: string): RedisCommand[] => [
        ["ZADD", `${p}lane`, "NX", 3, "a", 1, "b"],
        ["ZADD", `${p}lane`, "NX", 0, "a"],
        ["ZCARD", `${p}lane`],
        ["ZRANGEBYSCORE", `${p}lane`, "-inf", "+inf", "WITHSCORES"],
        ["PUBLISH", `${p}wake`, "email.send"],
        ["EXISTS", `${p}epoch`],
        ["SET", `${p}lock`, "1", "NX", "PX", 60_000],
        ["SET", `${p}lock`, "1", "NX", "PX", 60_000],
        ["GET", `${p}missing`],
        ["DEL", `${p}lock`],
        ["SET", `${p}epoch`, "123"],
      ];
      const viaUpstash = await upstash.pipeline(commands(`${KEYS}shape:u:`));
      const viaIo = await ioAdapter.pipeline(commands(`${KEYS}shape:i:`));
      expect(viaUpstash).toEqual(viaIo);
      expect(viaUpstash).toEqual([2, 0, 2, ["b", "1", "a", "3"], 0, 0, "OK", null, null, 1, "OK"]);

      expect(await upstash.pipeline([["KEYS", `${KEYS}shape:u:*`]]).then(([k]) => (k as string[]).sort())).toEqual(
        [`${KEYS}shape:u:epoch`, `${KEYS}shape:u:lane`].sort(),
      );

      // The lanes' pop script: (id, score, lane index) triples, ids and scores as strings, the
      // index as a number; Lua false (no epoch) as null.
      const keys = (p: string) => [`${p}epoch`, `${p}lane`];
      const popped = await upstash.eval(POP_SCRIPT, keys(`${KEYS}shape:u:`), [10, 2 ** 44]);
      expect(popped).toEqual(["b", "1", 2, "a", "3", 2]);
      expect(popped).toEqual(await ioAdapter.eval(POP_SCRIPT, keys(`${KEYS}shape:i:`), [10, 2 ** 44]));
      expect(await upstash.eval(POP_SCRIPT, keys(`${KEYS}shape:none:`), [10, 2 ** 44])).toBeNull();
      expect(await upstash.pipeline([])).toEqual([]);
    } finally {
      await ioAdapter.close();
    }
  });

  it("runs scripts with EVALSHA, falling back to EVAL on NOSCRIPT", async () => {
    const sent: unknown[] = [];
    const realFetch = globalThis.fetch;
    vi.spyOn(globalThis, "fetch").mockImplementation((input, init) => {
      if (typeof init?.body === "string") sent.push(...(JSON.parse(init.body) as unknown[][]).map((c) => c[0]));
      return realFetch(input, init);
    });
    // A script Redis has never seen (its SHA is unique to this run).
    const script = `-- ${run} ${randomId()}\nreturn {KEYS[1], ARGV[1], tonumber(ARGV[2]) + 1}`;
    expect(await upstash.eval(script, [`${KEYS}k`], ["v", 41])).toEqual([`${KEYS}k`, "v", 42]);
    expect(sent).toEqual(["EVALSHA", "EVAL"]);
    sent.length = 0;
    expect(await upstash.eval(script, [`${KEYS}k`], ["w", 1])).toEqual([`${KEYS}k`, "w", 2]);
    expect(sent).toEqual(["EVALSHA"]);
    // A script error surfaces with Redis's message; only NOSCRIPT leads to EVAL.
    const failing = `-- ${run} ${randomId()}\nreturn redis.call('NOSUCHCOMMAND')`;
    await expect(upstash.eval(failing, [], [])).rejects.toThrow(/unknown redis command|unknown command/i);
    sent.length = 0;
    await expect(upstash.eval(failing, [], [])).rejects.toThrow(/unknown redis command|unknown command/i);
    expect(sent).toEqual(["EVALSHA"]);
  });

  it("fails at once, without the SDK's retries, when the REST endpoint is unreachable", async () => {
    const down = createUpstashRedis({ url: `http://127.0.0.1:${await closedPort()}`, token: TOKEN });
    const started = Date.now();
    await expect(down.pipeline([["GET", `${KEYS}x`]])).rejects.toThrow();
    // The SDK's default (5 retries, exponential backoff) takes about 4 s.
    expect(Date.now() - started).toBeLessThan(1_000);
  });
});

/**
 * Dev-only gateway that speaks Upstash's Redis REST API onto a local Redis, so the Worker's
 * @upstash/redis client runs under `wrangler dev` and in tests without an Upstash account.
 *
 *   POST /            ["ZADD","k","1","m"]           -> {"result": 1}   | 400 {"error": "..."}
 *   POST /pipeline    [["GET","a"],["INCR","b"]]     -> [{"result": ...}, {"error": "..."}]
 *   POST /multi-exec  same body, inside MULTI/EXEC   -> same answer (400 when Redis discards it)
 *
 * `Authorization: Bearer <token>` is required. With `Upstash-Encoding: base64` (the client's
 * default) every string in a result is base64 of its raw bytes, nested arrays included, as
 * Upstash does; numbers and null stay as they are. Replies are read as Buffers, so the base64
 * form is binary-safe; the plain form decodes them as UTF-8.
 *
 * Not served: the GET /cmd/arg/... path form, `?_token=`, and commands that would change or
 * block the one shared connection (see REFUSED).
 *
 *   npx tsx tools/upstash-gateway.ts --token dev [--port 8079] [--redis redis://127.0.0.1:6379]
 */
import { createHash, timingSafeEqual } from "node:crypto";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { Redis as IORedis } from "ioredis";

export interface UpstashGatewayOptions {
  /** Port to listen on; 0 picks a free one. */
  port: number;
  redisUrl: string;
  /** The bearer token clients must send. */
  token: string;
  /** Interface to listen on. Defaults to 127.0.0.1. */
  host?: string;
}

export interface UpstashGateway {
  /** http://host:port, the `url` to give @upstash/redis. */
  url: string;
  port: number;
  close(): Promise<void>;
}

type Arg = string | number;
type Command = [string, ...Arg[]];
type Reply = { result: unknown } | { error: string };

/**
 * Every request shares one Redis connection, so commands that change its state (database,
 * protocol, subscriptions, transactions) or park it (blocking pops) would break it for everyone.
 * Upstash itself serves none of these over REST either.
 */
const REFUSED = new Set([
  "SUBSCRIBE", "PSUBSCRIBE", "SSUBSCRIBE", "UNSUBSCRIBE", "PUNSUBSCRIBE", "SUNSUBSCRIBE",
  "MONITOR", "SELECT", "HELLO", "RESET", "QUIT", "AUTH",
  "MULTI", "EXEC", "DISCARD", "WATCH", "UNWATCH",
  "BLPOP", "BRPOP", "BRPOPLPUSH", "BLMOVE", "BLMPOP", "BZPOPMIN", "BZPOPMAX", "BZMPOP", "WAIT",
]);

/** Bodies beyond this are refused rather than buffered (Upstash's own cap is lower). */
const MAX_BODY_BYTES = 16 * 1024 * 1024;

class BadRequest extends Error {}

export async function startUpstashGateway(opts: UpstashGatewayOptions): Promise<UpstashGateway> {
  if (!opts.token) throw new Error("upstash-gateway needs a token");
  const expected = digest(`Bearer ${opts.token}`);
  // Fail requests fast while Redis is down instead of queueing them behind reconnects.
  const redis = new IORedis(opts.redisUrl, { maxRetriesPerRequest: 1, connectTimeout: 2_000 });
  redis.on("error", () => {
    // Reported to the caller of whichever request fails; an unhandled 'error' would crash the gateway.
  });

  const server = createServer((req, res) => {
    handle(req, res).catch((err: unknown) => {
      if (!res.headersSent) send(res, 500, { error: err instanceof Error ? err.message : String(err) });
      else res.destroy();
    });
  });

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    // Compared as digests: equal lengths for timingSafeEqual, and no early exit on a prefix match.
    if (!timingSafeEqual(digest(req.headers.authorization ?? ""), expected)) {
      return send(res, 401, { error: "Unauthorized" });
    }
    const path = new URL(req.url ?? "/", "http://gateway").pathname.replace(/\/+$/, "") || "/";
    if (req.method !== "POST") return send(res, 405, { error: "use POST" });
    if (path !== "/" && path !== "/pipeline" && path !== "/multi-exec") return send(res, 404, { error: "not found" });
    const base64 = String(req.headers["upstash-encoding"] ?? "").toLowerCase() === "base64";
    const out = (value: unknown) => encode(value, base64);

    let body: unknown;
    try {
      body = JSON.parse(await readBody(req));
    } catch (err) {
      return send(res, err instanceof BadRequest ? 413 : 400, { error: err instanceof BadRequest ? err.message : "body is not JSON" });
    }

    try {
      if (path === "/") {
        const command = toCommand(body);
        try {
          return send(res, 200, { result: out(await redis.callBuffer(...command)) });
        } catch (err) {
          return send(res, isReplyError(err) ? 400 : 500, { error: message(err) });
        }
      }
      if (!Array.isArray(body)) throw new BadRequest("expected an array of commands");
      const commands = body.map(toCommand);
      if (commands.length === 0) return send(res, 200, []);
      // The array form calls each entry's method by name; callBuffer runs any command and
      // keeps bulk replies as raw bytes.
      const calls = commands.map((c) => ["callBuffer", ...c]);
      let results: [Error | null, unknown][] | null;
      try {
        results = await (path === "/pipeline" ? redis.pipeline(calls) : redis.multi(calls)).exec();
      } catch (err) {
        // MULTI/EXEC discarded (EXECABORT: a command was rejected while queueing), or Redis is down.
        return send(res, isReplyError(err) ? 400 : 500, { error: message(err) });
      }
      if (!results) return send(res, 400, { error: "EXECABORT transaction discarded" });
      const replies: Reply[] = results.map(([err, value]) => (err ? { error: message(err) } : { result: out(value) }));
      return send(res, 200, replies);
    } catch (err) {
      if (err instanceof BadRequest) return send(res, 400, { error: err.message });
      throw err;
    }
  }

  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(opts.port, opts.host ?? "127.0.0.1", () => {
      server.off("error", reject);
      resolve();
    });
  });
  const address = server.address();
  const port = typeof address === "object" && address ? address.port : opts.port;
  const host = opts.host ?? "127.0.0.1";

  let closing: Promise<void> | undefined;
  return {
    url: `http://${host.includes(":") ? `[${host}]` : host}:${port}`,
    port,
    close() {
      closing ??= (async () => {
        const closed = new Promise<void>((resolve) => server.close(() => resolve()));
        // fetch keeps connections alive; without this, close() would wait for them to time out.
        server.closeAllConnections();
        await closed;
        await redis.quit().catch(() => redis.disconnect());
      })();
      return closing;
    },
  };
}

function digest(value: string): Buffer {
  return createHash("sha256").update(value).digest();
}

function toCommand(value: unknown): Command {
  if (!Array.isArray(value) || value.length === 0 || typeof value[0] !== "string") {
    throw new BadRequest("a command is a non-empty array starting with its name");
  }
  const args = value.map((v): Arg => {
    if (typeof v === "string" || typeof v === "number") return v;
    // The Upstash client serialises booleans as they are; Redis only knows strings.
    if (typeof v === "boolean") return String(v);
    throw new BadRequest(`command arguments must be strings or numbers, got ${JSON.stringify(v)}`);
  });
  const name = String(args[0]).toUpperCase();
  if (REFUSED.has(name)) throw new BadRequest(`ERR command ${name} is not available over REST`);
  return [name, ...args.slice(1)];
}

/** Raw replies (Buffers, numbers, null, nested arrays) to JSON values. */
function encode(value: unknown, base64: boolean): unknown {
  if (Buffer.isBuffer(value)) return base64 ? value.toString("base64") : value.toString("utf8");
  // callBuffer gives Buffers, but a string slipping through unencoded would not fail loudly:
  // the client's atob turns e.g. "1" into garbage instead of an error.
  if (typeof value === "string") return base64 ? Buffer.from(value).toString("base64") : value;
  if (Array.isArray(value)) return value.map((v) => encode(v, base64));
  // An error nested in an array reply (a Lua table holding one) has no JSON form; its text will do.
  if (value instanceof Error) return value.message;
  return value ?? null;
}

function isReplyError(err: unknown): boolean {
  return err instanceof Error && err.name === "ReplyError";
}

function message(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

async function readBody(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_BODY_BYTES) throw new BadRequest(`body exceeds ${MAX_BODY_BYTES} bytes`);
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString("utf8");
}

function send(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(text) }).end(text);
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const { values } = parseArgs({
    options: {
      port: { type: "string", default: process.env.UPSTASH_GATEWAY_PORT ?? "8079" },
      host: { type: "string", default: "127.0.0.1" },
      redis: { type: "string", default: process.env.REDIS_URL ?? "redis://127.0.0.1:6379" },
      token: { type: "string", default: process.env.UPSTASH_GATEWAY_TOKEN },
    },
  });
  if (!values.token) {
    console.error("upstash-gateway: pass --token (or set UPSTASH_GATEWAY_TOKEN)");
    process.exit(2);
  }
  const gateway = await startUpstashGateway({
    port: Number(values.port),
    host: values.host,
    redisUrl: values.redis,
    token: values.token,
  });
  console.log(`upstash-gateway: ${gateway.url} -> ${values.redis} (UPSTASH_REDIS_REST_URL=${gateway.url})`);
  const stop = () => void gateway.close().then(() => process.exit(0));
  process.once("SIGINT", stop);
  process.once("SIGTERM", stop);
}

/**
 * The Redis port on @upstash/redis (Upstash's REST API over fetch), for the Cloudflare Worker.
 * In development tools/upstash-gateway.ts serves the same API onto a local Redis.
 *
 * No `subscribe`: REST cannot hold a subscription, and an edge invocation never idles waiting
 * for a wake-up anyway. close() has nothing to release.
 */
import { Redis as UpstashClient, type Requester } from "@upstash/redis/cloudflare";
import type { Redis, RedisCommand } from "../../shared/ports";

export interface UpstashRedisOptions {
  /** The REST URL (UPSTASH_REDIS_REST_URL), or the dev gateway's url. */
  url: string;
  /** The REST token (UPSTASH_REDIS_REST_TOKEN). */
  token: string;
}

export function createUpstashRedis(opts: UpstashRedisOptions): Redis {
  const client = new UpstashClient({
    url: opts.url,
    token: opts.token,
    // Results as Redis gives them ("1" stays a string), like the ioredis adapter.
    automaticDeserialization: false,
    enableTelemetry: false,
    // Otherwise calls made in the same tick are merged into one request behind our back; the
    // port's pipeline() already batches where the engine wants it.
    enableAutoPipelining: false,
    // The SDK retries a failed fetch up to 5 times over ~4 s by default, resending commands that
    // may already have run (a repeated pop script loses the ids it popped the first time). One
    // attempt: the dispatcher treats an error as "Redis down" and claims through Postgres.
    retry: { retries: 0 },
  });

  /*
   * The SDK has no public raw pipeline: Pipeline only offers typed per-command methods (mapping
   * ["ZADD", k, "NX", ...] onto them would mean parsing every command) and its generic exec()
   * sends one request per command. So commands go through the SDK's own requester, the object
   * its Pipeline.exec() sends with, typed by the public Requester interface: it adds the token,
   * asks for and decodes base64 results (binary-safe), and carries the read-your-writes token.
   * Raw fetch would mean re-implementing all of that; the engine test on this adapter catches
   * an SDK upgrade that moves the field.
   */
  const requester = (client as unknown as { client?: Requester }).client;
  if (typeof requester?.request !== "function") {
    throw new Error("@upstash/redis no longer exposes its requester as `client`; update workers/edge/upstash.ts");
  }

  async function pipeline(commands: readonly RedisCommand[]): Promise<unknown[]> {
    if (commands.length === 0) return [];
    const replies = (await requester!.request({
      path: ["pipeline"],
      // Strings throughout, as the REST API documents and the SDK's generic exec() sends.
      body: commands.map((command) => command.map(String)),
    })) as unknown;
    if (!Array.isArray(replies) || replies.length !== commands.length) {
      throw new Error(`Upstash pipeline answered ${JSON.stringify(replies)?.slice(0, 200)}`);
    }
    return replies.map((reply: { result?: unknown; error?: string }) => {
      // Redis's own message ("NOSCRIPT ...", "WRONGTYPE ..."), as the ioredis adapter throws it.
      if (reply.error !== undefined) throw new Error(reply.error);
      return reply.result ?? null;
    });
  }

  /** Script text -> SHA1 hex; Web Crypto because the same module runs on workerd. */
  const shas = new Map<string, Promise<string>>();
  const sha1 = (script: string): Promise<string> => {
    let sha = shas.get(script);
    if (!sha) {
      sha = crypto.subtle.digest("SHA-1", new TextEncoder().encode(script)).then((buf) =>
        Array.from(new Uint8Array(buf), (b) => b.toString(16).padStart(2, "0")).join(""),
      );
      shas.set(script, sha);
    }
    return sha;
  };

  return {
    pipeline,

    async eval(script: string, keys: readonly string[], args: readonly (string | number)[]) {
      const tail = [keys.length, ...keys, ...args];
      // Through /pipeline too: an error comes back as Redis's message, not wrapped in the SDK's
      // "..., command was: [<the whole script>]".
      try {
        const [result] = await pipeline([["EVALSHA", await sha1(script), ...tail]]);
        return result;
      } catch (err) {
        // Not cached yet, or flushed/failed over since; EVAL runs it and caches it for next time.
        if (!(err instanceof Error) || !err.message.startsWith("NOSCRIPT")) throw err;
        const [result] = await pipeline([["EVAL", script, ...tail]]);
        return result;
      }
    },

    async close() {
      // Stateless HTTP: nothing to release.
    },
  };
}

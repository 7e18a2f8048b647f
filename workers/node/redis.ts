/**
 * The Redis port on ioredis: one connection for commands and, created on first subscribe,
 * one for pub/sub (a subscribed connection cannot run other commands).
 */
import { createHash } from "node:crypto";
import { Redis as IORedis, type RedisOptions } from "ioredis";
import type { Redis, RedisCommand } from "../../shared/ports";
import { ChannelHandlers } from "./channels";

export interface IoRedisOptions {
  /** Receives connection errors; without a listener ioredis would emit them unhandled. */
  onError?: (err: Error) => void;
}

/** Reconnect backoff: retry fast after a blip, at most once a second during an outage. */
const RECONNECT_MIN_MS = 50;
const RECONNECT_MAX_MS = 1_000;

const options: RedisOptions = {
  // While Redis is down a command waits in the offline queue only until the second failed
  // reconnect (~1-2 s), then rejects: callers must fail fast, not pile up unbounded work.
  maxRetriesPerRequest: 1,
  enableOfflineQueue: true,
  // Never give up reconnecting (returning a number always retries); the cap keeps the
  // fail-fast window above short.
  retryStrategy: (times) => Math.min(RECONNECT_MIN_MS * 2 ** (times - 1), RECONNECT_MAX_MS),
  // A blackholed host would otherwise hold the first attempt for ioredis' default 10 s.
  connectTimeout: 2_000,
  lazyConnect: false,
};

export function createIoRedis(url: string, opts: IoRedisOptions = {}): Redis {
  const report = (err: Error) => {
    try {
      opts.onError?.(err);
    } catch {
      // An error reporter that throws must not become an unhandled 'error' event.
    }
  };

  const client = new IORedis(url, options);
  client.on("error", report);

  let subscriber: IORedis | undefined;
  const channels = new ChannelHandlers<string>({
    activate: async (channel) => {
      await getSubscriber().subscribe(channel);
    },
    deactivate: async (channel) => {
      await getSubscriber().unsubscribe(channel);
    },
    onError: report,
  });
  /** Script text -> SHA1, so a script is hashed once per process, not per call. */
  const shas = new Map<string, string>();

  const getSubscriber = (): IORedis => {
    if (subscriber) return subscriber;
    // duplicate() copies the options above; ioredis re-issues SUBSCRIBE after a reconnect.
    subscriber = client.duplicate();
    subscriber.on("error", report);
    subscriber.on("message", (channel: string, message: string) => channels.deliver(channel, message));
    return subscriber;
  };

  let closing: Promise<void> | undefined;

  return {
    async pipeline(commands: readonly RedisCommand[]): Promise<unknown[]> {
      if (commands.length === 0) return [];
      if (commands.length === 1) return [await send(client, commands[0]!)];
      // Routed through "call" because ioredis' pipeline array form only knows its own
      // lowercase method names (unknown or uppercase commands throw).
      const results = await client
        .pipeline(commands.map((command) => ["call", ...rawCommand(command)]))
        .exec();
      if (!results) throw new Error("Redis pipeline was discarded");
      return results.map(([err, value]) => {
        if (err) throw err;
        return value;
      });
    },

    async eval(script: string, keys: readonly string[], args: readonly (string | number)[]) {
      let sha = shas.get(script);
      if (!sha) shas.set(script, (sha = createHash("sha1").update(script).digest("hex")));
      try {
        return await client.call("EVALSHA", sha, keys.length, ...keys, ...args);
      } catch (err) {
        // The script cache is empty after a restart, failover or SCRIPT FLUSH; EVAL reloads it.
        if (!(err instanceof Error) || !err.message.startsWith("NOSCRIPT")) throw err;
        return await client.call("EVAL", script, keys.length, ...keys, ...args);
      }
    },

    async subscribe(channel: string, onMessage: (message: string) => void): Promise<() => Promise<void>> {
      return channels.add(channel, onMessage);
    },

    close() {
      closing ??= Promise.all([quit(client), subscriber ? quit(subscriber) : undefined]).then(() => {});
      return closing;
    },
  };
}

/**
 * ioredis reshapes some replies when the command name is lowercase (HGETALL becomes an
 * object); the port promises replies as Redis sends them, so names go out uppercase.
 */
function rawCommand(command: RedisCommand): [string, ...(string | number)[]] {
  const [name, ...args] = command;
  if (name === undefined) throw new Error("empty Redis command");
  return [String(name).toUpperCase(), ...args];
}

function send(client: IORedis, command: RedisCommand): Promise<unknown> {
  const [name, ...args] = rawCommand(command);
  return client.call(name, ...args);
}

/**
 * QUIT lets replies already on the way arrive. When the connection is not up it would only
 * sit in the offline queue until the retry limit, so the socket is cut straight away.
 */
async function quit(connection: IORedis): Promise<void> {
  if (connection.status !== "ready") {
    connection.disconnect();
    return;
  }
  try {
    await connection.quit();
  } catch {
    connection.disconnect();
  }
}

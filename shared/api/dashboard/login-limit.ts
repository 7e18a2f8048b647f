/**
 * The login form's attempt limit, per client address: 10 attempts at once, then one every 90 s
 * (10 a quarter of an hour), after which even the right key is refused until the wait is over.
 * It is the GCRA limiter of the send rates (shared/email/rate-limit.ts) on its Postgres backend,
 * so every API process and Worker isolate counts against the same row: a client cannot spread
 * its guesses over replicas. An attempt is taken before the key is checked, so guesses sent in
 * parallel queue on the row and cannot all get through; a login that succeeds gives its client
 * the full allowance back (an admin who logs in often is not locked out by their own logins).
 */
import type { Context } from "hono";
import type { RateLimit, RateLimiter } from "../../email/rate-limit";

export interface LoginLimitOptions {
  /** Attempts a client may make at once. Defaults to 10. */
  attempts: number;
  /** The time in which spent attempts come back, one by one. Defaults to 15 minutes. */
  windowMs: number;
}

export const DEFAULT_LOGIN_LIMIT: LoginLimitOptions = { attempts: 10, windowMs: 15 * 60_000 };

/** What @hono/node-server passes as the environment: the request's socket is the peer. */
interface NodeBindings {
  incoming?: { socket?: { remoteAddress?: string } };
}

/**
 * Who is knocking, as the runtime sees it. On Node the socket's peer address (what
 * @hono/node-server gives as `env.incoming`), never a header: X-Forwarded-For and the like are
 * the client's to write. On Cloudflare's edge there is no socket, and `CF-Connecting-IP` is set
 * by Cloudflare itself. IPv6 counts by its /64, the block one subscriber usually holds, so
 * rotating addresses within it does not buy more attempts. "unknown" when neither says (one
 * shared allowance, e.g. in-process requests in tests).
 *
 * Behind a reverse proxy on Node every client is the proxy: they then share one allowance, so
 * an attacker can delay a browser login there (never Bearer access) but gets no more guesses.
 */
export function clientAddress(c: Context): string {
  const env = c.env as NodeBindings | undefined;
  const peer = env?.incoming !== undefined ? env.incoming.socket?.remoteAddress : c.req.header("cf-connecting-ip");
  return (peer && normalizeAddress(peer)) || "unknown";
}

const IPV4 = /^(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(?:\.(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;

/** An IPv4 address as it is, an IPv6 one as its /64 (`2001:db8:0:1::/64`); null for anything else. */
export function normalizeAddress(text: string): string | null {
  const value = text.trim().toLowerCase().replace(/%.*$/, ""); // a zone id (fe80::1%eth0) names an interface, not a client
  if (IPV4.test(value)) return value;
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/.exec(value);
  if (mapped && IPV4.test(mapped[1]!)) return mapped[1]!;
  if (!/^[0-9a-f:]{2,39}$/.test(value)) return null;
  const halves = value.split("::");
  if (halves.length > 2) return null;
  const head = halves[0] ? halves[0].split(":") : [];
  const tail = halves.length === 2 && halves[1] ? halves[1].split(":") : [];
  const missing = 8 - head.length - tail.length;
  if (halves.length === 1 ? missing !== 0 : missing < 1) return null;
  const groups = [...head, ...Array<string>(Math.max(0, missing)).fill("0"), ...tail];
  if (groups.some((g) => !/^[0-9a-f]{1,4}$/.test(g))) return null;
  return `${groups
    .slice(0, 4)
    .map((g) => g.replace(/^0+(?=.)/, ""))
    .join(":")}::/64`;
}

export type LoginAttempt = { allowed: true } | { allowed: false; retryAfterSeconds: number };

export class LoginLimiter {
  private readonly limit: RateLimit;

  constructor(
    private readonly limiter: RateLimiter,
    options: LoginLimitOptions = DEFAULT_LOGIN_LIMIT,
  ) {
    this.limit = { burst: options.attempts, ratePerSecond: options.attempts / (options.windowMs / 1000) };
  }

  private key(c: Context): string {
    return `dashboard-login:${clientAddress(c)}`;
  }

  /** Spends one of the client's attempts, or says how long until it has one again. */
  async attempt(c: Context): Promise<LoginAttempt> {
    const decision = await this.limiter.take(this.key(c), this.limit);
    return decision.allowed ? { allowed: true } : { allowed: false, retryAfterSeconds: Math.ceil(decision.retryAfterMs / 1000) };
  }

  /** The client logged in: its failed attempts are forgotten. */
  succeeded(c: Context): Promise<void> {
    return this.limiter.reset(this.key(c));
  }
}

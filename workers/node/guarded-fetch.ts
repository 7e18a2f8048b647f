import { lookup, type LookupAddress } from "node:dns";
import { Agent, fetch as undiciFetch } from "undici";
import { allowedByList, classifyIp, type AllowList } from "../../shared/webhooks/ssrf";

/**
 * fetch for customers' URLs on Node, closing what checkUrl cannot: the addresses are checked at
 * connect time, on the very answer the socket then uses, so a DNS answer that changes between
 * the guard's check and the connection (rebinding) reaches nothing private either. checkUrl still
 * runs first for its clear messages and for IP literals (which never go through a lookup).
 */
export function createGuardedFetch(allow?: AllowList): typeof fetch {
  const agent = new Agent({
    connect: {
      lookup(hostname: string, options: object, callback: (...args: never[]) => void) {
        const done = callback as unknown as (err: Error | null, address?: string | LookupAddress[], family?: number) => void;
        lookup(hostname, { ...options, all: true, verbatim: true }, (err, answers) => {
          if (err) return done(err);
          const hostAllowed = allow?.hosts.has(hostname.toLowerCase()) ?? false;
          for (const a of answers) {
            if (hostAllowed || (allow && allowedByList(a.address, allow))) continue;
            const verdict = classifyIp(a.address);
            if (!verdict.allowed) return done(new Error(`refused at connect: ${hostname} resolves to ${a.address}, ${verdict.reason.slice(a.address.length + 1)}`));
          }
          if ((options as { all?: boolean }).all) return done(null, answers);
          done(null, answers[0]!.address, answers[0]!.family);
        });
      },
    },
  });
  return ((input: RequestInfo | URL, init?: RequestInit) =>
    undiciFetch(input as never, { ...(init as object), dispatcher: agent } as never)) as unknown as typeof fetch;
}

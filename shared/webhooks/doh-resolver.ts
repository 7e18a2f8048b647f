import type { Resolver } from "./ssrf";

/**
 * A Resolver over DNS-over-HTTPS (Cloudflare's JSON API), for the edge where no system resolver
 * is reachable. Asks for A and AAAA records at once; follows nothing itself (the answer section
 * already carries the records a CNAME chain ends in).
 */
export function createDohResolver(options: { endpoint?: string; fetch?: typeof fetch; timeoutMs?: number } = {}): Resolver {
  const endpoint = options.endpoint ?? "https://cloudflare-dns.com/dns-query";
  const doFetch = options.fetch ?? fetch;
  const timeoutMs = options.timeoutMs ?? 5_000;
  async function query(host: string, type: "A" | "AAAA"): Promise<string[]> {
    const url = `${endpoint}?name=${encodeURIComponent(host)}&type=${type}`;
    const res = await doFetch(url, { headers: { accept: "application/dns-json" }, signal: AbortSignal.timeout(timeoutMs) });
    if (!res.ok) throw new Error(`DNS-over-HTTPS answered ${res.status}`);
    const body = (await res.json()) as { Status?: number; Answer?: { type: number; data: string }[] };
    // Status 3 is NXDOMAIN: no addresses. Other non-zero statuses are failures.
    if (body.Status !== 0 && body.Status !== 3) throw new Error(`DNS-over-HTTPS status ${body.Status}`);
    const wanted = type === "A" ? 1 : 28;
    return (body.Answer ?? []).filter((a) => a.type === wanted).map((a) => a.data);
  }
  return {
    async resolve(host) {
      const [a, aaaa] = await Promise.all([query(host, "A"), query(host, "AAAA")]);
      return [...a, ...aaaa];
    },
  };
}

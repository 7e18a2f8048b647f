/**
 * The SSRF guard of customer webhooks: a customer names a URL and our workers POST to it, so a
 * URL must never reach our own network (loopback, private ranges, cloud metadata, ...).
 * Addresses are judged numerically (bytes, never string prefixes), IPv6 forms that embed an
 * IPv4 address are judged by that address, and a hostname is judged by every address it
 * resolves to. Runtime-agnostic: resolution goes through the Resolver port.
 */

/** Resolves a hostname to its IP addresses (IPv4 dotted or IPv6 text). Throws when it cannot. */
export interface Resolver {
  resolve(host: string): Promise<string[]>;
}

/** What a refused address is; the reason says it in words with the address. */
export type AddressKind =
  | "loopback"
  | "private"
  | "link-local"
  | "cgnat"
  | "multicast"
  | "unspecified"
  | "broadcast"
  | "metadata"
  | "unique-local"
  | "reserved";

export type AddressVerdict = { allowed: true } | { allowed: false; kind: AddressKind; reason: string };

/** Strict dotted-decimal IPv4 (what resolvers and the URL parser produce): 4 bytes, or null. */
export function parseIPv4(text: string): number[] | null {
  const parts = text.split(".");
  if (parts.length !== 4) return null;
  const bytes: number[] = [];
  for (const p of parts) {
    if (!/^\d{1,3}$/.test(p) || (p.length > 1 && p.startsWith("0"))) return null;
    const n = Number(p);
    if (n > 255) return null;
    bytes.push(n);
  }
  return bytes;
}

/** IPv6 text (with "::" and an optional dotted IPv4 tail; brackets allowed): 16 bytes, or null. */
export function parseIPv6(input: string): number[] | null {
  let text = input.startsWith("[") && input.endsWith("]") ? input.slice(1, -1) : input;
  // A zone id (fe80::1%eth0) names an interface: the address itself is judged.
  const zone = text.indexOf("%");
  if (zone >= 0) text = text.slice(0, zone);
  if (!text.includes(":")) return null;
  const halves = text.split("::");
  if (halves.length > 2) return null;
  const groupsOf = (part: string, last: boolean): number[] | null => {
    if (part === "") return [];
    const out: number[] = [];
    const pieces = part.split(":");
    for (let i = 0; i < pieces.length; i++) {
      const piece = pieces[i]!;
      if (last && i === pieces.length - 1 && piece.includes(".")) {
        const v4 = parseIPv4(piece);
        if (!v4) return null;
        out.push((v4[0]! << 8) | v4[1]!, (v4[2]! << 8) | v4[3]!);
      } else {
        if (!/^[0-9a-fA-F]{1,4}$/.test(piece)) return null;
        out.push(parseInt(piece, 16));
      }
    }
    return out;
  };
  let groups: number[];
  if (halves.length === 2) {
    const head = groupsOf(halves[0]!, false);
    const tail = groupsOf(halves[1]!, true);
    if (!head || !tail || head.length + tail.length > 7) return null;
    groups = [...head, ...new Array<number>(8 - head.length - tail.length).fill(0), ...tail];
  } else {
    const all = groupsOf(text, true);
    if (!all || all.length !== 8) return null;
    groups = all;
  }
  return groups.flatMap((g) => [g >> 8, g & 0xff]);
}

const v4Text = (b: readonly number[]) => b.join(".");

function inV4(b: readonly number[], net: readonly number[], prefix: number): boolean {
  return inPrefix(b, net, prefix);
}

/** Whether the first `prefix` bits of a equal those of net. */
function inPrefix(a: readonly number[], net: readonly number[], prefix: number): boolean {
  for (let bit = 0; bit < prefix; bit += 8) {
    const take = Math.min(8, prefix - bit);
    const mask = (0xff << (8 - take)) & 0xff;
    const i = bit / 8;
    if (((a[i] ?? 0) & mask) !== ((net[i] ?? 0) & mask)) return false;
  }
  return true;
}

const IPV4_RULES: readonly { net: number[]; prefix: number; kind: AddressKind; what: string }[] = [
  // Order matters: the metadata address before link-local, broadcast before "reserved" 240/4.
  { net: [169, 254, 169, 254], prefix: 32, kind: "metadata", what: "a cloud metadata address" },
  { net: [168, 63, 129, 16], prefix: 32, kind: "metadata", what: "a cloud metadata address (Azure)" },
  { net: [255, 255, 255, 255], prefix: 32, kind: "broadcast", what: "the broadcast address" },
  { net: [0, 0, 0, 0], prefix: 32, kind: "unspecified", what: "the unspecified address" },
  { net: [0, 0, 0, 0], prefix: 8, kind: "unspecified", what: "a \"this network\" address (0.0.0.0/8)" },
  { net: [127, 0, 0, 0], prefix: 8, kind: "loopback", what: "a loopback address" },
  { net: [10, 0, 0, 0], prefix: 8, kind: "private", what: "a private address (10.0.0.0/8)" },
  { net: [172, 16, 0, 0], prefix: 12, kind: "private", what: "a private address (172.16.0.0/12)" },
  { net: [192, 168, 0, 0], prefix: 16, kind: "private", what: "a private address (192.168.0.0/16)" },
  { net: [169, 254, 0, 0], prefix: 16, kind: "link-local", what: "a link-local address (169.254.0.0/16)" },
  { net: [100, 64, 0, 0], prefix: 10, kind: "cgnat", what: "a carrier-grade NAT address (100.64.0.0/10)" },
  { net: [224, 0, 0, 0], prefix: 4, kind: "multicast", what: "a multicast address (224.0.0.0/4)" },
  { net: [192, 0, 0, 0], prefix: 24, kind: "reserved", what: "an IETF protocol address (192.0.0.0/24)" },
  { net: [192, 0, 2, 0], prefix: 24, kind: "reserved", what: "a documentation address (192.0.2.0/24)" },
  { net: [198, 51, 100, 0], prefix: 24, kind: "reserved", what: "a documentation address (198.51.100.0/24)" },
  { net: [203, 0, 113, 0], prefix: 24, kind: "reserved", what: "a documentation address (203.0.113.0/24)" },
  { net: [198, 18, 0, 0], prefix: 15, kind: "reserved", what: "a benchmarking address (198.18.0.0/15)" },
  { net: [240, 0, 0, 0], prefix: 4, kind: "reserved", what: "a reserved address (240.0.0.0/4)" },
];

function classifyV4(b: readonly number[], shown: string): AddressVerdict {
  for (const rule of IPV4_RULES) {
    if (inV4(b, rule.net, rule.prefix)) return { allowed: false, kind: rule.kind, reason: `${shown} is ${rule.what}` };
  }
  return { allowed: true };
}

const v6 = (text: string) => parseIPv6(text)!;
const ZERO_96 = new Array<number>(12).fill(0);
const MAPPED = [...new Array<number>(10).fill(0), 0xff, 0xff];
const TRANSLATED = [...new Array<number>(8).fill(0), 0xff, 0xff, 0, 0];
const NAT64 = v6("64:ff9b::");

/** The IPv4 address an IPv6 address embeds and how, when it is one of the forms that do. */
export function embeddedIPv4(b: readonly number[]): { v4: number[]; form: string } | null {
  if (inPrefix(b, MAPPED, 96)) return { v4: b.slice(12), form: "IPv4-mapped" };
  if (inPrefix(b, TRANSLATED, 96)) return { v4: b.slice(12), form: "IPv4-translated" };
  if (inPrefix(b, NAT64, 96)) return { v4: b.slice(12), form: "NAT64" };
  if (b[0] === 0x20 && b[1] === 0x02) return { v4: b.slice(2, 6), form: "6to4" };
  // IPv4-compatible ::a.b.c.d (deprecated); :: and ::1 are themselves, judged below.
  if (inPrefix(b, ZERO_96, 96) && ((b[12]! | b[13]! | b[14]!) !== 0 || b[15]! > 1)) return { v4: b.slice(12), form: "IPv4-compatible" };
  return null;
}

const IPV6_RULES: readonly { net: number[]; prefix: number; kind: AddressKind; what: string }[] = [
  { net: v6("::"), prefix: 128, kind: "unspecified", what: "the unspecified address" },
  { net: v6("::1"), prefix: 128, kind: "loopback", what: "the loopback address" },
  { net: v6("fd00:ec2::254"), prefix: 128, kind: "metadata", what: "a cloud metadata address (AWS)" },
  { net: v6("fe80::"), prefix: 10, kind: "link-local", what: "a link-local address (fe80::/10)" },
  { net: v6("fec0::"), prefix: 10, kind: "private", what: "a site-local address (fec0::/10)" },
  { net: v6("fc00::"), prefix: 7, kind: "unique-local", what: "a unique-local address (fc00::/7)" },
  { net: v6("ff00::"), prefix: 8, kind: "multicast", what: "a multicast address (ff00::/8)" },
  { net: v6("64:ff9b:1::"), prefix: 48, kind: "reserved", what: "a local-use NAT64 address (64:ff9b:1::/48)" },
  { net: v6("2001::"), prefix: 32, kind: "reserved", what: "a Teredo address (2001::/32)" },
  { net: v6("2001:db8::"), prefix: 32, kind: "reserved", what: "a documentation address (2001:db8::/32)" },
  { net: v6("100::"), prefix: 64, kind: "reserved", what: "a discard-only address (100::/64)" },
  { net: v6("2001:10::"), prefix: 28, kind: "reserved", what: "an ORCHID address (2001:10::/28)" },
];

function classifyV6(b: readonly number[], shown: string): AddressVerdict {
  for (const rule of IPV6_RULES.slice(0, 2)) {
    if (inPrefix(b, rule.net, rule.prefix)) return { allowed: false, kind: rule.kind, reason: `${shown} is ${rule.what}` };
  }
  const embedded = embeddedIPv4(b);
  if (embedded) {
    const verdict = classifyV4(embedded.v4, `${shown} (${embedded.form}, embedding ${v4Text(embedded.v4)})`);
    return verdict;
  }
  for (const rule of IPV6_RULES.slice(2)) {
    if (inPrefix(b, rule.net, rule.prefix)) return { allowed: false, kind: rule.kind, reason: `${shown} is ${rule.what}` };
  }
  // Outside global unicast (2000::/3) nothing is assigned for the public internet.
  if ((b[0]! & 0xe0) !== 0x20) return { allowed: false, kind: "reserved", reason: `${shown} is not a global unicast address` };
  return { allowed: true };
}

/** The bytes of an IP address in any text form (legacy IPv4 forms such as 0x7f.1 included), or null. */
export function parseIp(text: string): { version: 4 | 6; bytes: number[] } | null {
  const v4 = parseIPv4(text);
  if (v4) return { version: 4, bytes: v4 };
  const six = parseIPv6(text);
  if (six) return { version: 6, bytes: six };
  // The URL parser normalises the legacy IPv4 forms (2130706433, 0x7f.1, 0177.0.0.1) as browsers do.
  if (/^[0-9a-fA-Fx.]+$/.test(text)) {
    try {
      const host = new URL(`http://${text}/`).hostname;
      const normal = parseIPv4(host);
      if (normal) return { version: 4, bytes: normal };
    } catch {
      return null;
    }
  }
  return null;
}

/** Judges one IP address. Text that is not an address is refused. */
export function classifyIp(text: string): AddressVerdict {
  const ip = parseIp(text);
  if (!ip) return { allowed: false, kind: "reserved", reason: `${text} is not an IP address` };
  return ip.version === 4 ? classifyV4(ip.bytes, text) : classifyV6(ip.bytes, text);
}

/** Destinations let through although they would be refused: for tests and self-hosters' private receivers. */
export interface AllowList {
  cidrs: readonly { version: 4 | 6; bytes: number[]; prefix: number; text: string }[];
  /** Lower-case hostnames allowed whatever they resolve to. */
  hosts: ReadonlySet<string>;
}

export const emptyAllowList: AllowList = { cidrs: [], hosts: new Set() };

/** Parses entries such as "127.0.0.1/32", "10.0.0.0/8", "::1", "hooks.internal". Throws on a malformed one. */
export function parseAllowList(entries: readonly string[]): AllowList {
  const cidrs: AllowList["cidrs"][number][] = [];
  const hosts = new Set<string>();
  for (const raw of entries) {
    const entry = raw.trim();
    if (!entry) continue;
    const [addr, prefixText, extra] = entry.split("/");
    const ip = parseIp(addr!);
    if (ip) {
      const max = ip.version === 4 ? 32 : 128;
      const prefix = prefixText === undefined ? max : /^\d{1,3}$/.test(prefixText) ? Number(prefixText) : NaN;
      if (extra !== undefined || !(prefix >= 0 && prefix <= max)) throw new Error(`invalid CIDR "${entry}": the prefix must be 0-${max}`);
      cidrs.push({ version: ip.version, bytes: ip.bytes, prefix, text: entry });
    } else if (prefixText === undefined && /^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$/i.test(entry)) {
      hosts.add(entry.toLowerCase());
    } else {
      throw new Error(`invalid allow-list entry "${entry}": expected a CIDR, an IP address or a hostname`);
    }
  }
  return { cidrs, hosts };
}

/** Whether an address falls in an allowed CIDR (an IPv4 entry also covers that address embedded in IPv6). */
export function allowedByList(text: string, allow: AllowList): boolean {
  const ip = parseIp(text);
  if (!ip) return false;
  const embedded = ip.version === 6 ? embeddedIPv4(ip.bytes) : null;
  return allow.cidrs.some(
    (c) =>
      (c.version === ip.version && inPrefix(ip.bytes, c.bytes, c.prefix)) ||
      (c.version === 4 && embedded !== null && inPrefix(embedded.v4, c.bytes, c.prefix)),
  );
}

export interface UrlGuard {
  resolver: Resolver;
  allow?: AllowList;
}

export type UrlCheck =
  | { ok: true; url: URL; addresses: string[] }
  /** retryable: the refusal may pass later (the name does not resolve now); otherwise the URL is not allowed. */
  | { ok: false; reason: string; retryable: boolean };

/**
 * Checks a webhook URL: http or https only, no credentials, and every address of its host
 * allowed. Run at registration and again right before each delivery (DNS answers change).
 *
 * fetch() cannot be told which address to connect to, so it resolves the name again itself:
 * a DNS answer that changes between this check and the connection (rebinding) is not covered
 * here. On Node, workers/node/guarded-fetch.ts checks again at connect time; the edge keeps the gap.
 * Running the check right before each request keeps that window as small as fetch allows.
 */
export async function checkUrl(raw: string, guard: UrlGuard): Promise<UrlCheck> {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    return { ok: false, reason: "not a valid URL", retryable: false };
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    return { ok: false, reason: `the scheme ${url.protocol.slice(0, -1)} is not allowed; use http or https`, retryable: false };
  }
  if (url.username || url.password) return { ok: false, reason: "credentials in the URL are not allowed", retryable: false };
  const allow = guard.allow ?? emptyAllowList;
  // The URL parser has normalised the host: IPv4 in dotted decimal, IPv6 in brackets and compressed.
  const host = url.hostname.toLowerCase();
  if (allow.hosts.has(host)) return { ok: true, url, addresses: [] };
  const literal = host.startsWith("[") ? host.slice(1, -1) : parseIPv4(host) ? host : null;
  let addresses: string[];
  if (literal !== null) {
    addresses = [literal];
  } else {
    try {
      addresses = await guard.resolver.resolve(host);
    } catch (err) {
      return { ok: false, reason: `${host} does not resolve: ${err instanceof Error ? err.message : String(err)}`, retryable: true };
    }
    if (addresses.length === 0) return { ok: false, reason: `${host} does not resolve to any address`, retryable: true };
  }
  for (const address of addresses) {
    if (allowedByList(address, allow)) continue;
    const verdict = classifyIp(address);
    if (!verdict.allowed) {
      const via = literal === null ? `${host} resolves to ${address}, which` : null;
      const reason = via ? `${via} ${verdict.reason.slice(address.length + 1)}` : verdict.reason;
      return { ok: false, reason: `refused: ${reason}`, retryable: false };
    }
  }
  return { ok: true, url, addresses };
}

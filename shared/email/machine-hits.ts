/**
 * Which opens and clicks are machines, not people: counted apart in the report, never the
 * message's first open or click (no email.opened / email.clicked webhook, no last_opened_at).
 *
 * Nothing offline can tell an Apple Mail Privacy Protection fetch from a person for certain
 * (Apple's proxy sends "Mozilla/5.0" from Apple's own ranges, which change). These rules are the
 * documented heuristics, in order:
 *
 * 1. The User-Agent names a security scanner or a program rather than a mail client:
 *    Barracuda, Mimecast, Proofpoint, "Microsoft Office Protection" (Defender's Safe Links),
 *    Symantec/Broadcom, Trend Micro, Cisco IronPort, FireEye, Forcepoint, Sophos, and generic
 *    HTTP clients and crawlers (curl, wget, python-requests, Go, Java, headless browsers,
 *    "bot", "spider", "crawler"), or no User-Agent at all.
 *    GoogleImageProxy is NOT a machine: Gmail fetches images through it when a person opens
 *    the message (it caches, so Gmail reports the first open of a message only).
 * 2. An open whose User-Agent is exactly "Mozilla/5.0" with nothing after it: Apple's MPP
 *    proxy prefetching at delivery (real browsers always add platform and engine tokens).
 * 3. A hit within DELIVERY_WINDOW_MS of the message's send: no person reads that fast; MPP
 *    and gateway scanners fetch at delivery. Checked where the send time is, at the flush
 *    (engagement-buffer.ts), against email_sends.sent_at.
 * 4. A message whose every link (two or more) was clicked within BURST_WINDOW_MS: a scanner
 *    fetching every link at once. Every click of that burst is a machine's. Seen within one
 *    process's buffer, which holds each hit at least this long before writing it; on the edge
 *    (a buffer a request) and across Node processes behind a balancer, only rules 1-3 apply.
 */
export const DELIVERY_WINDOW_MS = 2_000;
export const BURST_WINDOW_MS = 2_000;

const SCANNER_UA =
  /barracuda|mimecast|proofpoint|microsoft office protection|safelinks|symantec|broadcom|messagelabs|trend ?micro|ironport|fireeye|forcepoint|sophos|zscaler|\bcurl\/|\bwget\/|python-requests|python-urllib|aiohttp|go-http-client|\bjava\/|okhttp|libwww|headlesschrome|phantomjs|\bbot\b|bot\/|spider|crawler|scanner|preview/i;
/** Kept human although "bot"-like words could be read in them: they fetch on a person's open. */
const PERSON_PROXY_UA = /googleimageproxy|ggpht\.com/i;

/** Rules 1 and 2: what the request alone says. */
export function machineByRequest(kind: "open" | "click", userAgent: string | undefined): boolean {
  const ua = (userAgent ?? "").trim();
  if (ua === "") return true;
  if (PERSON_PROXY_UA.test(ua)) return false;
  if (SCANNER_UA.test(ua)) return true;
  return kind === "open" && ua === "Mozilla/5.0";
}

export interface ClickSeen {
  sendId: string;
  linkIndex: number;
  linkCount: number;
  atMs: number;
  machine: boolean;
}

/**
 * Rule 4 over the clicks of one buffer: marks machine every click that is part of a burst
 * covering all of its message's links. One sliding window a message over its clicks in time
 * order, counting the links inside it: O(n log n). (A scan from every click was quadratic, and
 * one token replayed 100,000 times, which anyone holding one mail can do, made a flush spin.)
 */
export function markScannerBursts(clicks: readonly ClickSeen[], windowMs = BURST_WINDOW_MS): void {
  const bySend = new Map<string, ClickSeen[]>();
  for (const c of clicks) {
    if (c.linkCount < 2) continue;
    let list = bySend.get(c.sendId);
    if (!list) bySend.set(c.sendId, (list = []));
    list.push(c);
  }
  for (const list of bySend.values()) {
    if (list.length < list[0]!.linkCount) continue;
    list.sort((a, b) => a.atMs - b.atMs);
    // The window is list[i..j): every click within windowMs of list[i]; inWindow counts its links.
    const inWindow = new Map<number, number>();
    let j = 0;
    let marked = 0; // clicks before this index are marked already
    for (let i = 0; i < list.length; i++) {
      while (j < list.length && list[j]!.atMs - list[i]!.atMs <= windowMs) {
        const link = list[j++]!.linkIndex;
        inWindow.set(link, (inWindow.get(link) ?? 0) + 1);
      }
      if (inWindow.size >= list[i]!.linkCount) {
        for (let k = Math.max(i, marked); k < j; k++) list[k]!.machine = true;
        marked = Math.max(marked, j);
      }
      const link = list[i]!.linkIndex;
      const left = inWindow.get(link)! - 1;
      if (left === 0) inWindow.delete(link);
      else inWindow.set(link, left);
    }
  }
}


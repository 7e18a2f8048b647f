/**
 * Rewrites a rendered campaign message for tracking: its http(s) links become /c/<token>
 * redirects, and (when opens are tracked) a 1x1 pixel /o/<token> goes at the end of the HTML.
 *
 * What is rewritten: the href of every <a> whose target is http(s), and every http(s) URL in
 * the text part. Never: the unsubscribe link (a recipient must reach it without a redirect
 * through us, and RFC 8058's List-Unsubscribe header names it too), mailto:, tel:, anchors
 * (#...) or any other scheme, and links to our own public URL (unsubscribe pages, downloads).
 *
 * A link's index is its place among the message's distinct URLs, HTML first, then the text
 * part's (the same URL in both parts is one link, counted once). The index is what the report
 * groups by; the URL rides sealed in the token (tracking-tokens.ts). A template with
 * personalised link targets has per-recipient URLs under one index: the report shows the first
 * URL clicked for it (campaign_links).
 */
import type { Rendered } from "./renderer";

export interface TrackingChoice {
  clicks: boolean;
  opens: boolean;
}

export interface MessageTracker {
  /** The redirect URL for link `index` of `count`. */
  click(index: number, count: number, url: string): Promise<string>;
  /** The open pixel's URL. */
  open(): Promise<string>;
}

const ANCHOR_HREF = /(<a\b[^>]*?\shref\s*=\s*)(["'])([^"'<>]*)\2/gi;
/** A URL in plain text: up to whitespace or a character that cannot end one here. */
const TEXT_URL = /https?:\/\/[^\s<>"'\])}]+/gi;
/** Punctuation a sentence puts after a URL, not part of it. */
const TRAILING = /[.,;:!?]+$/;
/** Bounded: a message with more links than this keeps the rest untracked (the template allows 100 blocks). */
const MAX_LINKS = 500;

export async function trackLinks(
  rendered: Rendered,
  choice: TrackingChoice,
  tracker: MessageTracker,
  /** Links that stay as they are: the unsubscribe URL, our own public URL as a prefix. */
  keep: { exact: readonly string[]; prefixes: readonly string[] },
): Promise<Rendered> {
  if (!choice.clicks && !choice.opens) return rendered;
  const kept = (url: string) => keep.exact.includes(url) || keep.prefixes.some((p) => url.startsWith(p)) || !/^https?:\/\//i.test(url);

  let html = rendered.html;
  let text = rendered.text;
  if (choice.clicks) {
    // First pass: the distinct URLs in order, so every token knows the message's link count.
    const order = new Map<string, number>();
    const note = (url: string) => {
      if (!kept(url) && !order.has(url) && order.size < MAX_LINKS) order.set(url, order.size);
    };
    for (const m of html.matchAll(ANCHOR_HREF)) note(decodeEntities(m[3]!));
    for (const m of text.matchAll(TEXT_URL)) note(m[0].replace(TRAILING, ""));
    if (order.size > 0) {
      const urls = new Map<string, string>();
      for (const [url, index] of order) urls.set(url, await tracker.click(index, order.size, url));
      // Tokens are base64url: nothing in them needs escaping in an attribute or in text.
      html = html.replace(ANCHOR_HREF, (whole, head: string, quote: string, raw: string) => {
        const target = urls.get(decodeEntities(raw));
        return target ? `${head}${quote}${target}${quote}` : whole;
      });
      text = text.replace(TEXT_URL, (whole) => {
        const url = whole.replace(TRAILING, "");
        const target = urls.get(url);
        return target ? target + whole.slice(url.length) : whole;
      });
    }
  }
  if (choice.opens) {
    const pixel = `<img src="${await tracker.open()}" width="1" height="1" alt="" style="display:block;width:1px;height:1px;border:0" />`;
    const end = html.lastIndexOf("</body>");
    html = end === -1 ? html + pixel : html.slice(0, end) + pixel + html.slice(end);
  }
  return { ...rendered, html, text };
}

const NAMED: Record<string, string> = { amp: "&", lt: "<", gt: ">", quot: '"', apos: "'" };

/** An attribute value as the browser reads it: the entities React writes (&amp; &quot; &#x27; …). */
export function decodeEntities(value: string): string {
  if (!value.includes("&")) return value;
  return value.replace(/&(#x[0-9a-f]{1,6}|#[0-9]{1,7}|[a-z]{2,6});/gi, (whole, ref: string) => {
    if (ref[0] !== "#") return NAMED[ref.toLowerCase()] ?? whole;
    const code = ref[1] === "x" || ref[1] === "X" ? Number.parseInt(ref.slice(2), 16) : Number.parseInt(ref.slice(1), 10);
    return code > 0 && code <= 0x10ffff ? String.fromCodePoint(code) : whole;
  });
}

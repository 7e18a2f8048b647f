/**
 * Tracking tokens: /c/<token> (a tracked link) and /o/<token> (the open pixel) of one message.
 *
 * Built as the unsubscribe tokens are (unsubscribe.ts): `t1.` and the base64url of nonce ‖
 * AES-256-GCM(claim) ‖ tag, keys from the same secret by HKDF-SHA-256 under their own `info`
 * (so no key is shared with unsubscribe links or downloads), a synthetic IV (an HMAC of the
 * padded claim: a re-rendered message, as a retried or replayed batch renders it, carries the
 * same links byte for byte), and exact (a token verifies only if it is the one we would issue
 * for what it decrypts to).
 *
 * A click token carries the URL itself, sealed: the redirect needs no database read (5,000
 * hits/s against one process are answered from the secret alone), and it can only ever go to a
 * URL that we put in that message, since nobody without the secret can seal another. It also
 * carries the link's index in the message and the message's link count, for the per-link report
 * and the scanner rule (every link of a message hit at once, machine-hits.ts). Neither the
 * address nor the ids can be read out of a token.
 *
 * Tokens do not expire, as unsubscribe links do not: a mail read a year later still works.
 */
import { fromBase64Url, toBase64Url } from "../base64url";
import { SivSealer } from "./siv-sealer";

export type TrackingClaim =
  | { kind: "open"; tenantId: string; campaignId: string; sendId: string }
  | { kind: "click"; tenantId: string; campaignId: string; sendId: string; linkIndex: number; linkCount: number; url: string };

const enc = new TextEncoder();
const dec = new TextDecoder("utf-8", { fatal: true });

const PREFIX = "t1.";
const AEAD_INFO = "tracking-token/v1/aes-256-gcm";
const NONCE_INFO = "tracking-token/v1/nonce";
/** Claims are padded to a multiple of this: a token's length says little about what it holds. */
const PAD_TO = 32;
/** A link's URL is at most 2,048 characters (the template's rule); a token stays under this. */
const MAX_TOKEN_CHARS = 4096;
const B64URL = /^[A-Za-z0-9_-]+$/;

/**
 * Node's Buffer where there is one: its base64url is native (0.5 µs a token against 2 µs to
 * encode and 8 µs to decode through btoa/atob). Same text either way (no padding); exactness
 * does not rest on the decoder (verify compares the whole token it would issue).
 */
const NodeBuffer = (globalThis as { Buffer?: typeof Buffer }).Buffer;
const encode = (bytes: Uint8Array): string => (NodeBuffer ? NodeBuffer.from(bytes.buffer, bytes.byteOffset, bytes.length).toString("base64url") : toBase64Url(bytes));
const decode = (text: string): Uint8Array<ArrayBuffer> => (NodeBuffer ? new Uint8Array(NodeBuffer.from(text, "base64url")) : new Uint8Array(fromBase64Url(text)));

export class TrackingTokens {
  private readonly sealer: SivSealer;
  private readonly base: string;
  /** Links to our own public URL (unsubscribe pages, downloads) are never tracked. */
  readonly ownPrefix: string;

  constructor(
    secret: string,
    /** Public base URL of the API, e.g. https://jobs.penguinmails.com */
    baseUrl: string,
  ) {
    this.sealer = new SivSealer(secret, { aead: AEAD_INFO, nonce: NONCE_INFO });
    this.base = baseUrl.replace(/\/$/, "");
    this.ownPrefix = `${this.base}/`;
  }

  async clickUrl(claim: Omit<Extract<TrackingClaim, { kind: "click" }>, "kind">): Promise<string> {
    return `${this.base}/c/${await this.token({ kind: "click", ...claim })}`;
  }

  async openUrl(claim: Omit<Extract<TrackingClaim, { kind: "open" }>, "kind">): Promise<string> {
    return `${this.base}/o/${await this.token({ kind: "open", ...claim })}`;
  }

  async token(claim: TrackingClaim): Promise<string> {
    return PREFIX + encode(await this.sealer.seal(plainOf(claim)));
  }

  /** Test seam: the token as the edge computes it, whatever this runtime has. */
  async tokenWithWebCrypto(claim: TrackingClaim): Promise<string> {
    return PREFIX + toBase64Url(await this.sealer.sealWithWebCrypto(plainOf(claim)));
  }

  /** The claim a token carries, or null when it is not exactly a token we issued. */
  async verify(token: string): Promise<TrackingClaim | null> {
    if (token.length > MAX_TOKEN_CHARS || !token.startsWith(PREFIX)) return null;
    const body = token.slice(PREFIX.length);
    if (!B64URL.test(body)) return null;
    try {
      const plain = await this.sealer.open(decode(body));
      const claim = decodeClaim(JSON.parse(dec.decode(plain)));
      // The one token for this claim, or nothing: pins the nonce, the padding and the spelling.
      if (!claim || (await this.token(claim)) !== token) return null;
      return claim;
    } catch {
      return null; // not base64, not ours (GCM's tag), too short, not UTF-8 or not JSON
    }
  }
}

const plainOf = (claim: TrackingClaim) => enc.encode(padded(JSON.stringify(encodeClaim(claim))));

function encodeClaim(claim: TrackingClaim): unknown[] {
  return claim.kind === "open"
    ? ["o", claim.tenantId, claim.campaignId, claim.sendId]
    : ["c", claim.tenantId, claim.campaignId, claim.sendId, claim.linkIndex, claim.linkCount, claim.url];
}

function decodeClaim(value: unknown): TrackingClaim | null {
  if (!Array.isArray(value)) return null;
  const [kind, tenantId, campaignId, sendId, linkIndex, linkCount, url] = value as unknown[];
  if (typeof tenantId !== "string" || typeof campaignId !== "string" || typeof sendId !== "string" || !/^\d{1,19}$/.test(sendId)) return null;
  if (kind === "o" && value.length === 4) return { kind: "open", tenantId, campaignId, sendId };
  if (kind !== "c" || value.length !== 7) return null;
  if (!Number.isSafeInteger(linkIndex) || !Number.isSafeInteger(linkCount) || typeof url !== "string") return null;
  if ((linkIndex as number) < 0 || (linkIndex as number) >= (linkCount as number) || !/^https?:\/\//i.test(url)) return null;
  return { kind: "click", tenantId, campaignId, sendId, linkIndex: linkIndex as number, linkCount: linkCount as number, url };
}

function padded(json: string): string {
  const bytes = enc.encode(json).length;
  return json + " ".repeat((PAD_TO - (bytes % PAD_TO)) % PAD_TO);
}

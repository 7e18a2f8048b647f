/**
 * Unsubscribe links (RFC 8058 one-click): /u/<token>, where the token is the authority to
 * unsubscribe one address from one tenant's mail, so nobody can unsubscribe an address they did
 * not receive mail at. Tokens do not expire: an old email's link must keep working for years.
 *
 * A token is opaque: `v2.` and the base64url of nonce ‖ AES-256-GCM(claim) ‖ tag. Anyone can
 * read a link (it sits in every mail's headers), and the claim inside (tenant, address,
 * campaign id) is nobody else's business: campaign ids in readable links were enough to aim an
 * attack at another tenant's campaign. Encrypted rather than stored, so a link needs no row and
 * verifies on Node and on the edge alike, from the secret alone, for as long as the secret lives.
 *
 * Keys come from the unsubscribe secret by HKDF-SHA-256, one `info` a use, so neither key is
 * the secret itself nor any other component's key. The nonce is an HMAC of the padded claim
 * (a synthetic IV, as in SIV): the same claim always gives the same token, which a resent
 * message must (a provider compares a retried request with the first under its idempotency
 * key), and a nonce repeats only with its plaintext, which is what GCM needs.
 *
 * Exact: a token verifies only if it is, byte for byte, the token we would issue for the claim
 * it decrypts to. Any changed, added or removed character (another dot-separated part, another
 * spelling of the last base64 character) is refused.
 */
import { fromBase64Url, toBase64Url } from "../base64url";
import { SivSealer } from "./siv-sealer";

export interface UnsubscribeClaim {
  tenantId: string;
  email: string;
  campaignId: string | null;
}

const enc = new TextEncoder();
const dec = new TextDecoder("utf-8", { fatal: true });

const PREFIX = "v2.";
/** The claim is padded with spaces to a multiple of this, so a link's length says little about the address. */
const PAD_TO = 32;
/** Longer than any token we issue (a 254-character address, long ids): refused unread. */
const MAX_TOKEN_CHARS = 2048;
const B64URL = /^[A-Za-z0-9_-]+$/;

export class UnsubscribeLinks {
  private readonly sealer: SivSealer;
  /** The key of the version-1 links (below). */
  private legacyKey?: Promise<CryptoKey>;

  constructor(
    private readonly secret: string,
    /** Public base URL of the API, e.g. https://jobs.penguinmails.com */
    private readonly baseUrl: string,
  ) {
    this.sealer = new SivSealer(secret, { aead: "unsubscribe-token/v2/aes-256-gcm", nonce: "unsubscribe-token/v2/nonce" });
  }

  async token(claim: UnsubscribeClaim): Promise<string> {
    return PREFIX + toBase64Url(await this.sealer.seal(plainOf(claim)));
  }

  /** Test seam: the token as the edge computes it, whatever this runtime has. */
  async tokenWithWebCrypto(claim: UnsubscribeClaim): Promise<string> {
    return PREFIX + toBase64Url(await this.sealer.sealWithWebCrypto(plainOf(claim)));
  }

  async url(claim: UnsubscribeClaim): Promise<string> {
    return `${this.baseUrl.replace(/\/$/, "")}/u/${await this.token(claim)}`;
  }

  /** The claim a token carries, or null when it is not exactly a token we issued. */
  async verify(token: string): Promise<UnsubscribeClaim | null> {
    if (token.length > MAX_TOKEN_CHARS) return null;
    try {
      if (!token.startsWith(PREFIX)) return await this.verifyLegacy(token);
      const body = token.slice(PREFIX.length);
      if (!B64URL.test(body)) return null;
      const plain = await this.sealer.open(new Uint8Array(fromBase64Url(body)));
      const claim = parseClaim(dec.decode(plain));
      // The one token for this claim, or nothing: pins the nonce, the padding and the spelling.
      if (!claim || (await this.token(claim)) !== token) return null;
      return claim;
    } catch {
      return null; // not base64, not ours (GCM's tag), not UTF-8 or not JSON
    }
  }

  /**
   * Version 1 links, in mail sent before tokens were encrypted: the readable claim and a 16-byte
   * HMAC, `<base64url(claim)>.<base64url(mac)>`. They are accepted so that those emails' links
   * keep working (a recipient must be able to unsubscribe from mail already delivered), and only
   * exactly: two parts, canonical base64, the full MAC. None are issued any more; this can go
   * once no mail older than the change is expected to be acted on.
   */
  private async verifyLegacy(token: string): Promise<UnsubscribeClaim | null> {
    const parts = token.split(".");
    if (parts.length !== 2) return null;
    const [bodyPart, macPart] = parts as [string, string];
    if (!B64URL.test(bodyPart) || !B64URL.test(macPart)) return null;
    const body = fromBase64Url(bodyPart);
    const given = fromBase64Url(macPart);
    // Only the canonical spelling: base64's last character carries spare bits, and a token
    // that differs only there must not pass as the same one.
    if (toBase64Url(given) !== macPart || toBase64Url(body) !== bodyPart || given.length !== 16) return null;
    this.legacyKey ??= crypto.subtle.importKey("raw", enc.encode(`unsubscribe:${this.secret}`), { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
    const mac = new Uint8Array(await crypto.subtle.sign("HMAC", await this.legacyKey, body)).slice(0, 16);
    let diff = 0;
    for (let i = 0; i < mac.length; i++) diff |= mac[i]! ^ given[i]!;
    if (diff !== 0) return null;
    return parseClaim(dec.decode(body));
  }

  /** Headers that make mail clients show a one-click unsubscribe button (RFC 2369, RFC 8058). */
  async headers(claim: UnsubscribeClaim): Promise<Record<string, string>> {
    return oneClickHeaders(await this.url(claim));
  }
}

/** The one-click unsubscribe headers for a link already made (RFC 2369, RFC 8058). */
export function oneClickHeaders(url: string): Record<string, string> {
  return { "List-Unsubscribe": `<${url}>`, "List-Unsubscribe-Post": "List-Unsubscribe=One-Click" };
}

const plainOf = (claim: UnsubscribeClaim) => enc.encode(padded(JSON.stringify([claim.tenantId, claim.email.toLowerCase(), claim.campaignId])));

function padded(json: string): string {
  const bytes = enc.encode(json).length;
  return json + " ".repeat((PAD_TO - (bytes % PAD_TO)) % PAD_TO);
}

function parseClaim(text: string): UnsubscribeClaim | null {
  const value: unknown = JSON.parse(text);
  if (!Array.isArray(value) || value.length !== 3) return null;
  const [tenantId, email, campaignId] = value as unknown[];
  if (typeof tenantId !== "string" || typeof email !== "string" || (campaignId !== null && typeof campaignId !== "string")) return null;
  return { tenantId, email, campaignId };
}

/**
 * Signed unsubscribe links (RFC 8058 one-click): the token names the tenant, the address and
 * the campaign, and carries an HMAC-SHA256 so nobody can unsubscribe an address they did not
 * receive mail at. Tokens do not expire: an old email's link must keep working.
 */
import { fromBase64Url, toBase64Url } from "../base64url";

export interface UnsubscribeClaim {
  tenantId: string;
  email: string;
  campaignId: string | null;
}

const enc = new TextEncoder();



export class UnsubscribeLinks {
  private key?: Promise<CryptoKey>;

  constructor(
    private readonly secret: string,
    /** Public base URL of the API, e.g. https://jobs.penguinmails.com */
    private readonly baseUrl: string,
  ) {}

  private hmacKey(): Promise<CryptoKey> {
    this.key ??= crypto.subtle.importKey("raw", enc.encode(`unsubscribe:${this.secret}`), { name: "HMAC", hash: "SHA-256" }, false, [
      "sign",
      "verify",
    ]);
    return this.key;
  }

  async token(claim: UnsubscribeClaim): Promise<string> {
    const body = enc.encode(JSON.stringify([claim.tenantId, claim.email.toLowerCase(), claim.campaignId]));
    const mac = new Uint8Array(await crypto.subtle.sign("HMAC", await this.hmacKey(), body));
    return `${toBase64Url(body)}.${toBase64Url(mac.slice(0, 16))}`;
  }

  async url(claim: UnsubscribeClaim): Promise<string> {
    return `${this.baseUrl.replace(/\/$/, "")}/u/${await this.token(claim)}`;
  }

  /** The claim a token carries, or null when it was not signed by us. */
  async verify(token: string): Promise<UnsubscribeClaim | null> {
    const [bodyPart, macPart] = token.split(".");
    if (!bodyPart || !macPart) return null;
    try {
      const body = fromBase64Url(bodyPart);
      const mac = new Uint8Array(await crypto.subtle.sign("HMAC", await this.hmacKey(), body)).slice(0, 16);
      const given = fromBase64Url(macPart);
      // Only the canonical spelling: base64's last character carries spare bits, and a token
      // that differs only there must not pass as the same one.
      if (given.length !== mac.length || toBase64Url(given) !== macPart || toBase64Url(body) !== bodyPart) return null;
      let diff = 0;
      for (let i = 0; i < mac.length; i++) diff |= mac[i]! ^ given[i]!;
      if (diff !== 0) return null;
      const [tenantId, email, campaignId] = JSON.parse(new TextDecoder().decode(body)) as [string, string, string | null];
      if (typeof tenantId !== "string" || typeof email !== "string") return null;
      return { tenantId, email, campaignId: campaignId ?? null };
    } catch {
      return null;
    }
  }

  /** Headers that make mail clients show a one-click unsubscribe button (RFC 2369, RFC 8058). */
  async headers(claim: UnsubscribeClaim): Promise<Record<string, string>> {
    return {
      "List-Unsubscribe": `<${await this.url(claim)}>`,
      "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
    };
  }
}

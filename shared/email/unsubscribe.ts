/**
 * Signed unsubscribe links (RFC 8058 one-click): the token names the tenant, the address and
 * the campaign, and carries an HMAC-SHA256 so nobody can unsubscribe an address they did not
 * receive mail at. Tokens do not expire: an old email's link must keep working.
 */
export interface UnsubscribeClaim {
  tenantId: string;
  email: string;
  campaignId: string | null;
}

const enc = new TextEncoder();

function b64url(bytes: Uint8Array): string {
  let s = "";
  for (const b of bytes) s += String.fromCharCode(b);
  return btoa(s).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

function fromB64url(text: string): Uint8Array<ArrayBuffer> {
  const s = atob(text.replace(/-/g, "+").replace(/_/g, "/"));
  return Uint8Array.from(s, (c) => c.charCodeAt(0));
}

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
    return `${b64url(body)}.${b64url(mac.slice(0, 16))}`;
  }

  async url(claim: UnsubscribeClaim): Promise<string> {
    return `${this.baseUrl.replace(/\/$/, "")}/u/${await this.token(claim)}`;
  }

  /** The claim a token carries, or null when it was not signed by us. */
  async verify(token: string): Promise<UnsubscribeClaim | null> {
    const [bodyPart, macPart] = token.split(".");
    if (!bodyPart || !macPart) return null;
    try {
      const body = fromB64url(bodyPart);
      const mac = new Uint8Array(await crypto.subtle.sign("HMAC", await this.hmacKey(), body)).slice(0, 16);
      const given = fromB64url(macPart);
      // Only the canonical spelling: base64's last character carries spare bits, and a token
      // that differs only there must not pass as the same one.
      if (given.length !== mac.length || b64url(given) !== macPart || b64url(body) !== bodyPart) return null;
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

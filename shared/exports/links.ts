/**
 * Signed, expiring download links for exports: /files/<token>, where the token carries the
 * export id and the expiry (unix seconds) and an HMAC-SHA256 over both. No API key is needed
 * to download: the token is the capability. Same encoding as the unsubscribe links, with its
 * own key ("export:" + secret), so a token of one kind never verifies as the other.
 */
import { fromBase64Url, toBase64Url } from "../base64url";

export interface ExportClaim {
  exportId: string;
  expiresAt: Date;
}

const enc = new TextEncoder();



export class ExportLinks {
  private key?: Promise<CryptoKey>;

  constructor(
    private readonly secret: string,
    /** Public base URL of the API, e.g. https://jobs.penguinmails.com; a function when known only once listening (port 0). */
    private readonly baseUrl: string | (() => string),
  ) {}

  private hmacKey(): Promise<CryptoKey> {
    this.key ??= crypto.subtle.importKey("raw", enc.encode(`export:${this.secret}`), { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
    return this.key;
  }

  private async mac(body: Uint8Array<ArrayBuffer>): Promise<Uint8Array> {
    return new Uint8Array(await crypto.subtle.sign("HMAC", await this.hmacKey(), body)).slice(0, 16);
  }

  async token(claim: ExportClaim): Promise<string> {
    const body = enc.encode(JSON.stringify([claim.exportId, Math.floor(claim.expiresAt.getTime() / 1000)]));
    return `${toBase64Url(body)}.${toBase64Url(await this.mac(body))}`;
  }

  async url(claim: ExportClaim): Promise<string> {
    const base = typeof this.baseUrl === "function" ? this.baseUrl() : this.baseUrl;
    return `${base.replace(/\/$/, "")}/files/${await this.token(claim)}`;
  }

  /** The claim a token carries (expired or not: the caller compares with its clock), or null when we did not sign it. */
  async verify(token: string): Promise<ExportClaim | null> {
    const [bodyPart, macPart, extra] = token.split(".");
    if (!bodyPart || !macPart || extra !== undefined) return null;
    try {
      const body = fromBase64Url(bodyPart);
      const given = fromBase64Url(macPart);
      const mac = await this.mac(body);
      // Only the canonical spelling passes (base64's last character carries spare bits).
      if (given.length !== mac.length || toBase64Url(given) !== macPart || toBase64Url(body) !== bodyPart) return null;
      let diff = 0;
      for (let i = 0; i < mac.length; i++) diff |= mac[i]! ^ given[i]!;
      if (diff !== 0) return null;
      const [exportId, exp] = JSON.parse(new TextDecoder().decode(body)) as [unknown, unknown];
      if (typeof exportId !== "string" || typeof exp !== "number" || !Number.isSafeInteger(exp)) return null;
      return { exportId, expiresAt: new Date(exp * 1000) };
    } catch {
      return null;
    }
  }
}

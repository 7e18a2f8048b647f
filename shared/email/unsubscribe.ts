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
import { nodeCrypto } from "../node-crypto";

export interface UnsubscribeClaim {
  tenantId: string;
  email: string;
  campaignId: string | null;
}

const enc = new TextEncoder();
const dec = new TextDecoder("utf-8", { fatal: true });

const PREFIX = "v2.";
/** HKDF's salt for every key a token uses. */
const SALT = enc.encode("penguinmails-jobs");
const NONCE_BYTES = 12;
const TAG_BYTES = 16;
/** The claim is padded with spaces to a multiple of this, so a link's length says little about the address. */
const PAD_TO = 32;
/** Longer than any token we issue (a 254-character address, long ids): refused unread. */
const MAX_TOKEN_CHARS = 2048;
const B64URL = /^[A-Za-z0-9_-]+$/;

interface Keys {
  aead: CryptoKey;
  nonce: CryptoKey;
  /** The key of the version-1 links (below). */
  legacy: CryptoKey;
}

/**
 * The same keys for node:crypto's synchronous HMAC and AES-GCM, as KeyObjects: node imports a
 * raw key on every createHmac / createCipheriv (10.7 and 12.6 µs a call, against 2.4 and 2.7).
 */
interface RawKeys {
  aead: import("node:crypto").KeyObject;
  nonce: import("node:crypto").KeyObject;
}

export class UnsubscribeLinks {
  private keys?: Promise<Keys>;
  private rawKeys?: RawKeys;

  constructor(
    private readonly secret: string,
    /** Public base URL of the API, e.g. https://jobs.penguinmails.com */
    private readonly baseUrl: string,
  ) {}

  private deriveKeys(): Promise<Keys> {
    this.keys ??= (async () => {
      const ikm = await crypto.subtle.importKey("raw", enc.encode(this.secret), "HKDF", false, ["deriveKey"]);
      const hkdf = (info: string) => ({ name: "HKDF", hash: "SHA-256", salt: SALT, info: enc.encode(info) });
      const [aead, nonce, legacy] = await Promise.all([
        crypto.subtle.deriveKey(hkdf("unsubscribe-token/v2/aes-256-gcm"), ikm, { name: "AES-GCM", length: 256 }, false, ["encrypt", "decrypt"]),
        crypto.subtle.deriveKey(hkdf("unsubscribe-token/v2/nonce"), ikm, { name: "HMAC", hash: "SHA-256", length: 256 }, false, ["sign"]),
        crypto.subtle.importKey("raw", enc.encode(`unsubscribe:${this.secret}`), { name: "HMAC", hash: "SHA-256" }, false, ["sign"]),
      ]);
      return { aead, nonce, legacy };
    })();
    return this.keys;
  }

  async token(claim: UnsubscribeClaim): Promise<string> {
    const plain = enc.encode(padded(JSON.stringify([claim.tenantId, claim.email.toLowerCase(), claim.campaignId])));
    const out = nodeCrypto ? this.sealWithNode(plain, nodeCrypto) : await this.sealWithWebCrypto(plain);
    return PREFIX + toBase64Url(out);
  }

  /** nonce ‖ AES-256-GCM(plain) ‖ tag, through WebCrypto (the edge). */
  private async sealWithWebCrypto(plain: Uint8Array<ArrayBuffer>): Promise<Uint8Array> {
    const { aead, nonce } = await this.deriveKeys();
    const iv = new Uint8Array(await crypto.subtle.sign("HMAC", nonce, plain)).slice(0, NONCE_BYTES);
    const sealed = new Uint8Array(await crypto.subtle.encrypt({ name: "AES-GCM", iv }, aead, plain));
    const out = new Uint8Array(NONCE_BYTES + sealed.length);
    out.set(iv);
    out.set(sealed, NONCE_BYTES);
    return out;
  }

  /**
   * The same bytes through node:crypto, synchronously: every mail carries a link, and
   * WebCrypto's per-call overhead in Node (argument normalisation, a promise and a thread-pool
   * hop per sign and per encrypt) was a quarter of a campaign's CPU in Node, about 80 µs a mail.
   * Same HKDF, same keys, same token (test/unsubscribe.test.ts compares the two paths).
   */
  private sealWithNode(plain: Uint8Array, c: NonNullable<typeof nodeCrypto>): Uint8Array {
    const keys = (this.rawKeys ??= {
      aead: c.createSecretKey(new Uint8Array(c.hkdfSync("sha256", enc.encode(this.secret), SALT, "unsubscribe-token/v2/aes-256-gcm", 32))),
      nonce: c.createSecretKey(new Uint8Array(c.hkdfSync("sha256", enc.encode(this.secret), SALT, "unsubscribe-token/v2/nonce", 32))),
    });
    const iv = c.createHmac("sha256", keys.nonce).update(plain).digest().subarray(0, NONCE_BYTES);
    const cipher = c.createCipheriv("aes-256-gcm", keys.aead, iv);
    const head = cipher.update(plain);
    const tail = cipher.final();
    const tag = cipher.getAuthTag();
    const out = new Uint8Array(NONCE_BYTES + head.length + tail.length + tag.length);
    out.set(iv);
    out.set(head, NONCE_BYTES);
    out.set(tail, NONCE_BYTES + head.length);
    out.set(tag, NONCE_BYTES + head.length + tail.length);
    return out;
  }

  /** Test seam: the token as the edge computes it, whatever this runtime has. */
  async tokenWithWebCrypto(claim: UnsubscribeClaim): Promise<string> {
    const plain = enc.encode(padded(JSON.stringify([claim.tenantId, claim.email.toLowerCase(), claim.campaignId])));
    return PREFIX + toBase64Url(await this.sealWithWebCrypto(plain));
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
      const bytes = fromBase64Url(body);
      if (bytes.length <= NONCE_BYTES + TAG_BYTES) return null;
      const { aead } = await this.deriveKeys();
      const plain = await crypto.subtle.decrypt({ name: "AES-GCM", iv: bytes.slice(0, NONCE_BYTES) }, aead, bytes.slice(NONCE_BYTES));
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
    const { legacy } = await this.deriveKeys();
    const mac = new Uint8Array(await crypto.subtle.sign("HMAC", legacy, body)).slice(0, 16);
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

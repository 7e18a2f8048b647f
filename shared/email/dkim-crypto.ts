/**
 * DKIM key material through WebCrypto only, so the API can make and seal keys on Node and on
 * the edge alike: RSA-2048 key pairs, the DNS TXT record that publishes a public key
 * (RFC 6376 3.6.1), and the sealing of private keys for storage.
 *
 * A private key is stored as `v1.` and the base64url of nonce ‖ AES-256-GCM(PKCS#8 DER) ‖ tag.
 * The AES key is derived from DKIM_ENCRYPTION_KEY by HKDF-SHA-256 with its own `info`, so it
 * is neither the setting itself nor any other component's key. The row's tenant, domain and
 * selector are the associated data: a sealed key copied onto another row does not open.
 */
import { fromBase64Url, toBase64Url } from "../base64url";

const enc = new TextEncoder();
const PREFIX = "v1.";
const NONCE_BYTES = 12;

/** Where a key belongs: bound into its seal. */
export interface DkimKeyOwner {
  tenantId: string;
  domain: string;
  selector: string;
}

export interface DkimKeyPair {
  /** PKCS#8, PEM: what nodemailer's signer takes. Never stored or shown in clear. */
  privateKeyPem: string;
  /** SubjectPublicKeyInfo, base64 (DER): the record's p= value. */
  publicKey: string;
}

/** The names of the key-encryption setting, for messages that tell an operator what to set. */
export const DKIM_KEY_SETTING = "DKIM_ENCRYPTION_KEY";

/** Thrown when a sealed key does not open: another DKIM_ENCRYPTION_KEY, or a row tampered with. */
export class DkimKeyUnreadableError extends Error {
  override name = "DkimKeyUnreadableError";
}

const base64 = (bytes: ArrayBuffer): string => {
  let s = "";
  for (const b of new Uint8Array(bytes)) s += String.fromCharCode(b);
  return btoa(s);
};

/** A fresh RSA-2048 key pair (the size Gmail and RFC 8301 ask for; 1024-bit keys are refused by many receivers). */
export async function generateDkimKeyPair(): Promise<DkimKeyPair> {
  const pair = (await crypto.subtle.generateKey(
    { name: "RSASSA-PKCS1-v1_5", modulusLength: 2048, publicExponent: new Uint8Array([1, 0, 1]), hash: "SHA-256" },
    true,
    ["sign", "verify"],
  )) as CryptoKeyPair;
  const [pkcs8, spki] = await Promise.all([crypto.subtle.exportKey("pkcs8", pair.privateKey), crypto.subtle.exportKey("spki", pair.publicKey)]);
  const lines = base64(pkcs8 as ArrayBuffer).match(/.{1,64}/g) ?? [];
  return {
    privateKeyPem: `-----BEGIN PRIVATE KEY-----\n${lines.join("\n")}\n-----END PRIVATE KEY-----\n`,
    publicKey: base64(spki as ArrayBuffer),
  };
}

/** The TXT record to publish at `<selector>._domainkey.<domain>`. */
export function dkimDnsRecord(owner: Pick<DkimKeyOwner, "domain" | "selector">, publicKey: string): { name: string; type: "TXT"; value: string } {
  return { name: `${owner.selector}._domainkey.${owner.domain}`, type: "TXT", value: `v=DKIM1; k=rsa; p=${publicKey}` };
}

/** Seals and opens private keys under the key derived from DKIM_ENCRYPTION_KEY. */
export class DkimKeyCipher {
  private key?: Promise<CryptoKey>;

  constructor(private readonly secret: string) {}

  private aead(): Promise<CryptoKey> {
    this.key ??= (async () => {
      const ikm = await crypto.subtle.importKey("raw", enc.encode(this.secret), "HKDF", false, ["deriveKey"]);
      return crypto.subtle.deriveKey(
        { name: "HKDF", hash: "SHA-256", salt: enc.encode("penguinmails-jobs"), info: enc.encode("dkim-private-key/v1/aes-256-gcm") },
        ikm,
        { name: "AES-GCM", length: 256 },
        false,
        ["encrypt", "decrypt"],
      );
    })();
    return this.key;
  }

  async seal(owner: DkimKeyOwner, privateKeyPem: string): Promise<string> {
    const iv = crypto.getRandomValues(new Uint8Array(NONCE_BYTES));
    const sealed = new Uint8Array(
      await crypto.subtle.encrypt({ name: "AES-GCM", iv, additionalData: associatedData(owner) }, await this.aead(), derOf(privateKeyPem)),
    );
    const out = new Uint8Array(NONCE_BYTES + sealed.length);
    out.set(iv);
    out.set(sealed, NONCE_BYTES);
    return PREFIX + toBase64Url(out);
  }

  /** The private key as PEM; DkimKeyUnreadableError when it does not open for this owner under this secret. */
  async open(owner: DkimKeyOwner, sealed: string): Promise<string> {
    const unreadable = () =>
      new DkimKeyUnreadableError(
        `the DKIM key of ${owner.domain} (selector ${owner.selector}) does not open: ${DKIM_KEY_SETTING} is not the one it was sealed under`,
      );
    if (!sealed.startsWith(PREFIX)) throw unreadable();
    let bytes: Uint8Array<ArrayBuffer>;
    try {
      bytes = fromBase64Url(sealed.slice(PREFIX.length));
    } catch {
      throw unreadable();
    }
    let der: ArrayBuffer;
    try {
      der = await crypto.subtle.decrypt(
        { name: "AES-GCM", iv: bytes.slice(0, NONCE_BYTES), additionalData: associatedData(owner) },
        await this.aead(),
        bytes.slice(NONCE_BYTES),
      );
    } catch {
      throw unreadable();
    }
    const lines = base64(der).match(/.{1,64}/g) ?? [];
    return `-----BEGIN PRIVATE KEY-----\n${lines.join("\n")}\n-----END PRIVATE KEY-----\n`;
  }
}

/** NUL-separated: none of the three can hold one (the text rule refuses NUL). */
const associatedData = (o: DkimKeyOwner) => enc.encode(`dkim\u0000${o.tenantId}\u0000${o.domain}\u0000${o.selector}`);

function derOf(pem: string): Uint8Array<ArrayBuffer> {
  const body = pem.replace(/-----(BEGIN|END) PRIVATE KEY-----/g, "").replace(/\s+/g, "");
  return Uint8Array.from(atob(body), (c) => c.charCodeAt(0));
}

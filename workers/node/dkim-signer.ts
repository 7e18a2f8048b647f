/**
 * DKIM signing of SMTP mail (Node only: the SMTP mailer's messages). A message is signed when
 * its tenant has an active key for its From domain (POST /v1/domains/{domain}/dkim), with
 * nodemailer's DKIM signer, the one its transports run for their `dkim` option, over the
 * message the SMTP mailer composed. Mail from a domain without a key goes out as it is.
 *
 * Keys change rarely and a message must not wait on the database and an AES open each time:
 * each (tenant, domain) is looked up and opened once, and the answer, a key or none, is kept
 * for `cacheMs` (60 s). So a new key, a rotation or a removed one reaches signing within that
 * bound in every process, with no signal between them. Concurrent sends of one domain share one
 * look-up. The private key is held as a KeyObject, which prints as nothing.
 */
import { createPrivateKey, type KeyObject } from "node:crypto";
import DKIM from "nodemailer/lib/dkim";
import { DKIM_KEY_SETTING, DkimKeyCipher, DkimKeyUnreadableError } from "../../shared/email/dkim-crypto";
import type { SealedSigningKey } from "../../shared/email/dkim-keys";
import type { OutgoingMessage } from "../../shared/email/mailer";
import { type Clock, systemClock } from "../../shared/ports";

/**
 * What the signature covers. RFC 8058 3.1: a one-click List-Unsubscribe counts only when a DKIM
 * signature covers both List-Unsubscribe and List-Unsubscribe-Post. Sender, Reply-To, Cc and the
 * threading headers are listed so they are covered when present (a field absent from the
 * message is left out of h=).
 */
export const SIGNED_HEADERS = [
  "From",
  "Sender",
  "Reply-To",
  "To",
  "Cc",
  "Subject",
  "Date",
  "Message-ID",
  "In-Reply-To",
  "References",
  "List-Unsubscribe",
  "List-Unsubscribe-Post",
  "List-Id",
  "MIME-Version",
  "Content-Type",
  "Content-Transfer-Encoding",
].join(":");

/**
 * A message that should be signed and cannot be: not the relay's fault, so not a ProviderError
 * (which would rest SMTP for every tenant, or fail over): the job retries with its backoff
 * until an operator fixes the setting, and says what to fix.
 */
export class DkimSigningError extends Error {
  override name = "DkimSigningError";
}

export interface DkimSigner {
  /** `raw` signed with the active key of its tenant's From domain, or unchanged when there is none. */
  sign(message: Pick<OutgoingMessage, "tenantId" | "from">, raw: Buffer): Promise<Buffer>;
}

export interface DkimSignerOptions {
  /** Where keys are found (DkimKeys over the database). */
  keys: { signingKey(tenantId: string, domain: string): Promise<SealedSigningKey | undefined> };
  /** DKIM_ENCRYPTION_KEY. Without it a domain that has a key fails its sends, saying what to set. */
  encryptionKey: string | undefined;
  /** How long a look-up (a key, or none) is kept. Defaults to 60 s: the bound on a rotation reaching signing. */
  cacheMs?: number;
  /** (tenant, domain) pairs kept at most; the oldest goes first. Defaults to 10,000. */
  maxEntries?: number;
  clock?: Clock;
}

interface SigningKey {
  domain: string;
  selector: string;
  privateKey: KeyObject;
}

/** The From address's domain, in lower case (what a key is registered under). */
export function fromDomainOf(from: string): string | undefined {
  return /@([^\s<>@]+?)>?\s*$/.exec(from)?.[1]?.toLowerCase();
}

export function createDkimSigner(options: DkimSignerOptions): DkimSigner {
  const cacheMs = options.cacheMs ?? 60_000;
  const maxEntries = options.maxEntries ?? 10_000;
  const clock = options.clock ?? systemClock;
  const cipher = options.encryptionKey ? new DkimKeyCipher(options.encryptionKey) : undefined;
  // Insertion order is age order: a refreshed entry is deleted and set again.
  const cache = new Map<string, { at: number; key: Promise<SigningKey | undefined> }>();

  async function load(tenantId: string, domain: string): Promise<SigningKey | undefined> {
    const found = await options.keys.signingKey(tenantId, domain);
    if (!found) return undefined;
    if (!cipher) {
      throw new DkimSigningError(`${domain} has a DKIM key but ${DKIM_KEY_SETTING} is not set on this server: its mail cannot be signed`);
    }
    try {
      const pem = await cipher.open({ tenantId, domain, selector: found.selector }, found.sealed);
      return { domain, selector: found.selector, privateKey: createPrivateKey(pem) };
    } catch (err) {
      // The cause is not attached: it could quote key material.
      throw new DkimSigningError(err instanceof DkimKeyUnreadableError ? err.message : `the DKIM key of ${domain} (selector ${found.selector}) cannot be used`);
    }
  }

  function keyFor(tenantId: string, domain: string): Promise<SigningKey | undefined> {
    const id = `${tenantId}\u0000${domain}`;
    const now = clock.now().getTime();
    const hit = cache.get(id);
    if (hit && now - hit.at < cacheMs) return hit.key;
    cache.delete(id);
    const key = load(tenantId, domain);
    cache.set(id, { at: now, key });
    // A failed look-up is not kept: the next message tries again.
    key.catch(() => {
      if (cache.get(id)?.key === key) cache.delete(id);
    });
    for (const oldest of cache.keys()) {
      if (cache.size <= maxEntries) break;
      cache.delete(oldest);
    }
    return key;
  }

  return {
    async sign(message, raw) {
      const domain = fromDomainOf(message.from);
      if (!domain) return raw;
      const key = await keyFor(message.tenantId, domain);
      if (!key) return raw;
      const signed = await collect(
        new DKIM({ domainName: key.domain, keySelector: key.selector, privateKey: key.privateKey, headerFieldNames: SIGNED_HEADERS }).sign(raw),
      );
      // nodemailer's signer leaves a message unsigned, without a word, when the key cannot sign.
      if (!signed.subarray(0, 16).toString("latin1").startsWith("DKIM-Signature:")) {
        throw new DkimSigningError(`the DKIM key of ${domain} (selector ${key.selector}) did not sign the message`);
      }
      return signed;
    },
  };
}

function collect(stream: NodeJS.ReadableStream): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    stream.on("data", (c: Buffer) => chunks.push(c));
    stream.once("error", reject);
    stream.once("end", () => resolve(Buffer.concat(chunks)));
  });
}

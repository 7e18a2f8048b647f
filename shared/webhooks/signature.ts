/**
 * Standard Webhooks signing (https://www.standardwebhooks.com): HMAC-SHA256 over
 * "<webhook-id>.<webhook-timestamp>.<body>" with the secret's bytes (the base64 after "whsec_"),
 * sent as "v1,<base64>". During a rotation every valid secret signs, space-separated, so a
 * receiver holding either the old or the new secret accepts the message. Web Crypto only.
 */

const PREFIX = "whsec_";

function toBase64(bytes: Uint8Array): string {
  let s = "";
  for (const b of bytes) s += String.fromCharCode(b);
  return btoa(s);
}

function fromBase64(text: string): Uint8Array<ArrayBuffer> {
  const s = atob(text);
  const out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i);
  return out;
}

/** A new secret: "whsec_" and the base64 of 32 random bytes. */
export function generateSecret(): string {
  return PREFIX + toBase64(crypto.getRandomValues(new Uint8Array(32)));
}

/** The key bytes of a secret ("whsec_" + base64). */
export function secretBytes(secret: string): Uint8Array<ArrayBuffer> {
  return fromBase64(secret.startsWith(PREFIX) ? secret.slice(PREFIX.length) : secret);
}

const hmacKey = (secret: string, usage: "sign" | "verify") =>
  crypto.subtle.importKey("raw", secretBytes(secret), { name: "HMAC", hash: "SHA-256" }, false, [usage]);

/** What a signature covers: "<webhook-id>.<webhook-timestamp>.<body>". */
const signedContent = (id: string, timestampSeconds: number, body: string) => new TextEncoder().encode(`${id}.${timestampSeconds}.${body}`);

/** One signature, "v1,<base64>". */
export async function sign(secret: string, id: string, timestampSeconds: number, body: string): Promise<string> {
  const mac = await crypto.subtle.sign("HMAC", await hmacKey(secret, "sign"), signedContent(id, timestampSeconds, body));
  return `v1,${toBase64(new Uint8Array(mac))}`;
}

/** The three Standard Webhooks headers for one delivery, signed with every given secret. */
export async function signedHeaders(
  secrets: readonly string[],
  id: string,
  timestampSeconds: number,
  body: string,
): Promise<{ "webhook-id": string; "webhook-timestamp": string; "webhook-signature": string }> {
  const signatures = await Promise.all(secrets.map((s) => sign(s, id, timestampSeconds, body)));
  return { "webhook-id": id, "webhook-timestamp": String(timestampSeconds), "webhook-signature": signatures.join(" ") };
}

/** How far a message's timestamp may be from now, either way, before it is refused (replays). */
export const DEFAULT_TOLERANCE_SECONDS = 5 * 60;

export type Verification = { ok: true } | { ok: false; reason: string };

/**
 * Checks a Standard Webhooks message as a receiver: the timestamp within the tolerance of now,
 * and one of the "v1,<base64>" signatures in the header made with the secret over the exact
 * body. crypto.subtle.verify compares in constant time, so a guess learns nothing from timing.
 */
export async function verifySignature(
  secret: string,
  message: { id: string; timestamp: string; signature: string; body: string },
  nowSeconds: number,
  toleranceSeconds = DEFAULT_TOLERANCE_SECONDS,
): Promise<Verification> {
  if (!/^\d{1,12}$/.test(message.timestamp)) return { ok: false, reason: "the timestamp is not a number of seconds" };
  const timestamp = Number(message.timestamp);
  if (Math.abs(nowSeconds - timestamp) > toleranceSeconds) {
    return { ok: false, reason: `the timestamp is more than ${toleranceSeconds} seconds away from now` };
  }
  const key = await hmacKey(secret, "verify");
  const signed = signedContent(message.id, timestamp, message.body);
  for (const part of message.signature.split(" ")) {
    const [version, value] = part.split(",", 2);
    if (version !== "v1" || !value) continue;
    let mac: Uint8Array<ArrayBuffer>;
    try {
      mac = fromBase64(value);
    } catch {
      continue;
    }
    if (await crypto.subtle.verify("HMAC", key, mac, signed)) return { ok: true };
  }
  return { ok: false, reason: "no signature matches" };
}

/** Public ids of webhook records: a kind prefix and 20 random base62 characters. */
const ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

export function webhookId(prefix: "whe" | "evt"): string {
  let out = "";
  while (out.length < 20) {
    for (const b of crypto.getRandomValues(new Uint8Array(32))) {
      // 248 = 4 * 62: bytes above it would make the first characters more likely.
      if (b < 248 && out.length < 20) out += ALPHABET[b % 62];
    }
  }
  return `${prefix}_${out}`;
}

/** Public ids of the email pipeline's records: a kind prefix and 16 random base62 characters. */
const ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

export function newId(prefix: "lst" | "seg" | "tpl" | "camp"): string {
  let out = "";
  while (out.length < 16) {
    for (const b of crypto.getRandomValues(new Uint8Array(24))) {
      // 248 = 4 * 62: bytes above it would make the first characters more likely.
      if (b < 248 && out.length < 16) out += ALPHABET[b % 62];
    }
  }
  return `${prefix}_${out}`;
}

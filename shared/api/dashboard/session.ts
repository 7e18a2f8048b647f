/**
 * Dashboard sessions and CSRF tokens, stateless and signed (Web Crypto HMAC-SHA256, so the same
 * code runs on Node and in Workers).
 *
 * A session cookie reads `v1.<session id>.<key id>.<expires, epoch s>.<mac>`: nothing secret in
 * it, and nothing stored server-side, so any process (or Worker isolate) holding the same
 * signing key accepts it. Logging out drops the cookie; a copy taken before stays valid until
 * it expires (12 h by default), unless its API key is revoked (checked on every request).
 *
 * A CSRF token is an HMAC of what the request is bound to: the session id for cookie sessions,
 * the key id for Bearer requests. It goes into every form as a hidden field and is checked on
 * every action POST.
 */
import type { Clock } from "../../ports";

const encoder = new TextEncoder();

/** Sessions last this long by default; then the operator pastes the key again. */
export const DEFAULT_SESSION_TTL_MS = 12 * 3_600_000;

export const SESSION_COOKIE = "pm_dashboard_session";

/**
 * Mixed into the API keys' peppered hash to derive the signing key when no session secret is
 * configured. The spaces keep it outside the alphabet of key secrets, so no API key's stored
 * hash can ever equal the derived key.
 */
export const PEPPER_DERIVATION_LABEL = "dashboard session signing key v1";

export interface Session {
  id: string;
  /** The API key that opened the session (an admin key's id, or "static-admin"). */
  keyId: string;
  /** Epoch seconds. */
  expiresAt: number;
}

function base64url(bytes: Uint8Array): string {
  let binary = "";
  for (const b of bytes) binary += String.fromCharCode(b);
  return btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

function fromBase64url(text: string): Uint8Array<ArrayBuffer> | null {
  if (!/^[A-Za-z0-9_-]*$/.test(text)) return null;
  try {
    const binary = atob(text.replace(/-/g, "+").replace(/_/g, "/"));
    return Uint8Array.from(binary, (ch) => ch.charCodeAt(0));
  } catch {
    return null;
  }
}

/** Key ids are 12 alphanumerics, or "static-admin": neither contains the "." separator. */
const KEY_ID = /^[A-Za-z0-9_-]{1,64}$/;

/** Signs and checks session cookies and CSRF tokens with one HMAC key. */
export class SessionSigner {
  private key?: Promise<CryptoKey>;

  /**
   * @param secret a configured secret, or a function giving key material derived from the API
   *   key pepper. Read on first use (Workers allow no crypto at startup), then hashed with a
   *   label, so the same secret used elsewhere yields a different key here.
   */
  constructor(
    private readonly secret: string | (() => Promise<string>),
    private readonly clock: Clock,
    readonly ttlMs: number = DEFAULT_SESSION_TTL_MS,
  ) {}

  private signingKey(): Promise<CryptoKey> {
    this.key ??= (async () => {
      const material = typeof this.secret === "string" ? this.secret : await this.secret();
      const raw = await crypto.subtle.digest("SHA-256", encoder.encode(`penguinmails-dashboard:${material}`));
      return crypto.subtle.importKey("raw", raw, { name: "HMAC", hash: "SHA-256" }, false, ["sign", "verify"]);
    })().catch((err: unknown) => {
      this.key = undefined; // try again on the next request
      throw err;
    });
    return this.key;
  }

  private async mac(purpose: string, data: string): Promise<string> {
    const sig = await crypto.subtle.sign("HMAC", await this.signingKey(), encoder.encode(`${purpose}\u0000${data}`));
    return base64url(new Uint8Array(sig));
  }

  /** Constant-time: crypto.subtle.verify compares the whole MAC. */
  private async verifyMac(purpose: string, data: string, mac: string): Promise<boolean> {
    const bytes = fromBase64url(mac);
    if (!bytes || bytes.length !== 32) return false;
    return crypto.subtle.verify("HMAC", await this.signingKey(), bytes, encoder.encode(`${purpose}\u0000${data}`));
  }

  /** A new session for an admin key, and its cookie value. */
  async issue(keyId: string): Promise<{ session: Session; value: string }> {
    if (!KEY_ID.test(keyId)) throw new Error(`unexpected key id "${keyId}"`);
    const id = base64url(crypto.getRandomValues(new Uint8Array(16)));
    const expiresAt = Math.floor((this.clock.now().getTime() + this.ttlMs) / 1000);
    const body = `v1.${id}.${keyId}.${expiresAt}`;
    return { session: { id, keyId, expiresAt }, value: `${body}.${await this.mac("session", body)}` };
  }

  /** The session a cookie value carries, or null when it is malformed, forged or expired. */
  async read(value: string | undefined): Promise<Session | null> {
    if (!value || value.length > 256) return null;
    const parts = value.split(".");
    if (parts.length !== 5) return null;
    const [version, id, keyId, expires, mac] = parts as [string, string, string, string, string];
    if (version !== "v1" || !/^[A-Za-z0-9_-]{22}$/.test(id) || !KEY_ID.test(keyId) || !/^\d{1,12}$/.test(expires)) return null;
    if (!(await this.verifyMac("session", `v1.${id}.${keyId}.${expires}`, mac))) return null;
    const expiresAt = Number(expires);
    if (expiresAt * 1000 <= this.clock.now().getTime()) return null;
    return { id, keyId, expiresAt };
  }

  /** The CSRF token of a binding ("session:<id>" or "key:<key id>"). */
  csrfToken(binding: string): Promise<string> {
    return this.mac("csrf", binding);
  }

  async checkCsrf(binding: string, token: unknown): Promise<boolean> {
    return typeof token === "string" && token.length <= 64 && this.verifyMac("csrf", binding, token);
  }
}

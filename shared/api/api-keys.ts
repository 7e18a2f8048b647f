/**
 * Bearer API keys over the `api_keys` table. A key reads `pmk_<id>_<secret>`: the id finds the
 * row, the secret proves possession. Only a peppered SHA-256 of the secret is stored, so a
 * database dump alone cannot be replayed against the API. Web Crypto only (Node and the edge).
 */
import { tenantId as tenantIdSchema } from "../jobs/fields";
import { type Clock, type SqlClient, systemClock } from "../ports";
import { ValidationError } from "../queue/errors";

export const API_KEY_PREFIX = "pmk_";
/** Length of the public key id: 12 alphanumerics (~71 bits), enough to never collide in practice. */
export const API_KEY_ID_LENGTH = 12;
/** Random bytes of a secret (256 bits). */
const SECRET_BYTES = 32;
/**
 * Successful verifications are trusted this long without a query, so a key revoked by another
 * process (`npm run keys -- revoke`, another replica) keeps working here at most this long. 5 s
 * costs one indexed lookup a key every 5 s a process, against 30 s before, which left a
 * revoked key usable for half a minute.
 */
const DEFAULT_CACHE_TTL_MS = 5_000;
const DEFAULT_CACHE_MAX = 1_000;
/** Principal id of the configured static admin key (it has no row). */
export const STATIC_ADMIN_KEY_ID = "static-admin";

/** Who a verified key speaks for. tenantId is null for admin keys, which see every tenant. */
export interface Principal {
  keyId: string;
  tenantId: string | null;
  admin: boolean;
}

/** A key as listed: never the secret, never the hash. */
export interface ApiKeyInfo {
  id: string;
  tenantId: string | null;
  admin: boolean;
  name: string;
  createdAt: Date;
  revokedAt: Date | null;
}

export interface CreatedApiKey {
  id: string;
  /** The full bearer key. Shown once: only its hash is kept. */
  key: string;
  tenantId: string | null;
  admin: boolean;
  name: string;
}

export interface CreateApiKeyInput {
  /** The tenant the key acts for; null for admin keys. */
  tenantId: string | null;
  admin: boolean;
  name: string;
}

export interface ApiKeysOptions {
  /** Server-side secret mixed into every hash. Changing it invalidates every stored key. */
  pepper: string;
  /** A configured admin key (bootstrapping: there is no key in the table to create the first one with). */
  adminKey?: string;
  /** How long a successful verification is trusted without a query. Default 5 s. */
  cacheTtlMs?: number;
  /** Most cached verifications; the oldest go first. Default 1,000. */
  cacheMax?: number;
  clock?: Clock;
}

const ALPHANUMERIC = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
const encoder = new TextEncoder();

/** Uniform random alphanumerics: bytes >= 248 are redrawn so no character is more likely than another. */
function randomAlphanumeric(length: number): string {
  let out = "";
  while (out.length < length) {
    for (const byte of crypto.getRandomValues(new Uint8Array(length * 2))) {
      if (byte < 248 && out.length < length) out += ALPHANUMERIC[byte % 62];
    }
  }
  return out;
}

function base64url(bytes: Uint8Array): string {
  let binary = "";
  for (const b of bytes) binary += String.fromCharCode(b);
  return btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

const toHex = (buf: ArrayBuffer): string => [...new Uint8Array(buf)].map((b) => b.toString(16).padStart(2, "0")).join("");

async function sha256(text: string): Promise<ArrayBuffer> {
  return crypto.subtle.digest("SHA-256", encoder.encode(text));
}

/** Compares two equal-length byte strings without an early exit. */
function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a[i]! ^ b[i]!;
  return diff === 0;
}

/** Constant-time string comparison: both sides are hashed first, so neither length nor prefix leaks. */
export async function constantTimeEqual(a: string, b: string): Promise<boolean> {
  const [ha, hb] = await Promise.all([sha256(a), sha256(b)]);
  return bytesEqual(new Uint8Array(ha), new Uint8Array(hb));
}

/** Splits `pmk_<id>_<secret>` by position (the secret is base64url and may itself contain "_"). */
export function parseApiKey(key: string): { id: string; secret: string } | null {
  if (!key.startsWith(API_KEY_PREFIX)) return null;
  const id = key.slice(API_KEY_PREFIX.length, API_KEY_PREFIX.length + API_KEY_ID_LENGTH);
  const sep = key.charAt(API_KEY_PREFIX.length + API_KEY_ID_LENGTH);
  const secret = key.slice(API_KEY_PREFIX.length + API_KEY_ID_LENGTH + 1);
  if (!/^[A-Za-z0-9]{12}$/.test(id) || sep !== "_" || !/^[A-Za-z0-9_-]{16,256}$/.test(secret)) return null;
  return { id, secret };
}

interface KeyRow {
  id: string;
  tenant_id: string | null;
  is_admin: boolean;
  name: string;
  key_hash: string;
  created_at: Date | string;
  revoked_at: Date | string | null;
}

const toDate = (v: Date | string): Date => (v instanceof Date ? v : new Date(v));

const toInfo = (r: Omit<KeyRow, "key_hash">): ApiKeyInfo => ({
  id: r.id,
  tenantId: r.tenant_id,
  admin: r.is_admin,
  name: r.name,
  createdAt: toDate(r.created_at),
  revokedAt: r.revoked_at === null ? null : toDate(r.revoked_at),
});

/** Whether any admin key is stored and not revoked (the static ADMIN_API_KEY aside): none means no one can administer yet. */
export async function hasAdminKey(sql: SqlClient): Promise<boolean> {
  const rows = await sql.query(`select 1 from api_keys where is_admin and revoked_at is null limit 1`);
  return rows.length > 0;
}

export class ApiKeys {
  private readonly pepper: string;
  private readonly adminKey?: string;
  private readonly ttlMs: number;
  private readonly cacheMax: number;
  private readonly clock: Clock;
  /** key hash -> principal: a hit proves the caller knows the secret, as the hash is the lookup. */
  private readonly cache = new Map<string, { principal: Principal; expires: number }>();

  constructor(
    private readonly sql: SqlClient,
    options: ApiKeysOptions,
  ) {
    if (!options.pepper) throw new Error("ApiKeys needs a non-empty pepper");
    this.pepper = options.pepper;
    this.adminKey = options.adminKey || undefined;
    this.ttlMs = options.cacheTtlMs ?? DEFAULT_CACHE_TTL_MS;
    this.cacheMax = options.cacheMax ?? DEFAULT_CACHE_MAX;
    this.clock = options.clock ?? systemClock;
  }

  /** hex SHA-256 of `pepper:secret`: the only form in which a key is stored. */
  async hashSecret(secret: string): Promise<string> {
    return toHex(await sha256(`${this.pepper}:${secret}`));
  }

  async create(input: CreateApiKeyInput): Promise<CreatedApiKey> {
    const name = input.name.trim();
    const issues: { path: string[]; message: string }[] = [];
    if (name.length === 0 || name.length > 200) issues.push({ path: ["name"], message: "expected 1 to 200 characters" });
    if (input.admin && input.tenantId !== null) {
      issues.push({ path: ["tenantId"], message: "an admin key belongs to no tenant; pass null" });
    }
    if (!input.admin && (input.tenantId === null || !tenantIdSchema.safeParse(input.tenantId).success)) {
      issues.push({ path: ["tenantId"], message: "a tenant key needs a tenant id (letters, digits and _ . : - only)" });
    }
    if (issues.length > 0) throw new ValidationError("invalid API key request", issues);

    const id = randomAlphanumeric(API_KEY_ID_LENGTH);
    const secret = base64url(crypto.getRandomValues(new Uint8Array(SECRET_BYTES)));
    await this.sql.query(
      `insert into api_keys (id, tenant_id, is_admin, name, key_hash, created_at) values ($1, $2, $3, $4, $5, $6)`,
      [id, input.tenantId, input.admin, name, await this.hashSecret(secret), this.clock.now().toISOString()],
    );
    return { id, key: `${API_KEY_PREFIX}${id}_${secret}`, tenantId: input.tenantId, admin: input.admin, name };
  }

  /** Revokes a key; false when there is no such live key. Cached verifications of it end at once here. */
  async revoke(id: string): Promise<boolean> {
    const rows = await this.sql.query(
      `update api_keys set revoked_at = $2 where id = $1 and revoked_at is null returning id`,
      [id, this.clock.now().toISOString()],
    );
    for (const [hash, entry] of this.cache) if (entry.principal.keyId === id) this.cache.delete(hash);
    return rows.length > 0;
  }

  async list(): Promise<ApiKeyInfo[]> {
    const rows = await this.sql.query<Omit<KeyRow, "key_hash">>(
      `select id, tenant_id, is_admin, name, created_at, revoked_at from api_keys order by created_at, id`,
    );
    return rows.map(toInfo);
  }

  /** One key as listed (revoked or not), or null. */
  async get(id: string): Promise<ApiKeyInfo | null> {
    const [row] = await this.sql.query<Omit<KeyRow, "key_hash">>(
      `select id, tenant_id, is_admin, name, created_at, revoked_at from api_keys where id = $1`,
      [id],
    );
    return row ? toInfo(row) : null;
  }

  /**
   * The principal a bearer key speaks for, or null. Other processes' revocations take effect
   * within the cache TTL (5 s by default, counted from the query that filled the entry: a hit
   * does not extend it); this instance's at once.
   */
  async verify(bearer: string): Promise<Principal | null> {
    if (this.adminKey !== undefined && (await constantTimeEqual(bearer, this.adminKey))) {
      return { keyId: STATIC_ADMIN_KEY_ID, tenantId: null, admin: true };
    }
    const parsed = parseApiKey(bearer);
    if (!parsed) return null;
    const hash = await this.hashSecret(parsed.secret);
    const now = this.clock.now().getTime();
    const cached = this.cache.get(hash);
    if (cached && cached.expires > now && cached.principal.keyId === parsed.id) return cached.principal;
    if (cached) this.cache.delete(hash);

    const [row] = await this.sql.query<Pick<KeyRow, "id" | "tenant_id" | "is_admin" | "key_hash" | "revoked_at">>(
      `select id, tenant_id, is_admin, key_hash, revoked_at from api_keys where id = $1`,
      [parsed.id],
    );
    if (!row || row.revoked_at !== null) return null;
    if (!bytesEqual(encoder.encode(row.key_hash), encoder.encode(hash))) return null;
    const principal: Principal = { keyId: row.id, tenantId: row.is_admin ? null : row.tenant_id, admin: row.is_admin };
    this.remember(hash, principal, now);
    return principal;
  }

  private remember(hash: string, principal: Principal, now: number): void {
    // Maps iterate in insertion order, so the first entry is the oldest.
    while (this.cache.size >= this.cacheMax) {
      const oldest = this.cache.keys().next();
      if (oldest.done) break;
      this.cache.delete(oldest.value);
    }
    this.cache.set(hash, { principal, expires: now + this.ttlMs });
  }
}

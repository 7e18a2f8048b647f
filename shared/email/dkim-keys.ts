/**
 * A tenant's DKIM keys, by sending domain (table dkim_keys, migration 0017): make the first
 * key, list them with their DNS records, rotate, and find the one that signs. Every statement is
 * scoped by tenant: another tenant's domain is simply not found. Private keys leave this module
 * sealed (for the signer to open); views never carry them in any form.
 *
 * A key's life: `active` (signs new mail) → `retiring` after a rotation (signs nothing, still
 * published so mail already signed with it verifies) → `retired` once retire_after has passed
 * (its DNS record may go). The last step is written when the tenant's keys of that domain are
 * next read or rotated: nothing depends on it being stored at the instant itself.
 */
import type { Clock, SqlClient } from "../ports";
import { ConflictError, NotFoundError, RateLimitedError } from "../queue/errors";
import { type DkimKeyCipher, dkimDnsRecord, generateDkimKeyPair } from "./dkim-crypto";

export type DkimKeyStatus = "active" | "retiring" | "retired";

export interface DkimKeyView {
  domain: string;
  selector: string;
  status: DkimKeyStatus;
  created_at: Date;
  /** Until when a retiring key is kept published; null for the active key. */
  retire_after: Date | null;
  /** The TXT record to publish (keep it while the key is active or retiring). */
  dns: { name: string; type: "TXT"; value: string };
}

/** What the signer needs: the selector and the sealed private key (opened with DkimKeyCipher). */
export interface SealedSigningKey {
  selector: string;
  sealed: string;
}

/** How long a rotated-out key stays published by default: mail can sit in queues for days (RFC 5321 4.5.4.1 suggests 4-5). */
export const DEFAULT_RETIRING_HOURS = 7 * 24;
/** Listings stop here: a domain rotated daily for a quarter still fits. */
const MAX_LISTED = 100;
/** Domains a tenant may have an active key for: each key is a row and a DNS record to keep. */
export const MAX_DOMAINS = 100;
/**
 * Keys a tenant may make (first keys and rotations) in an hour. An RSA-2048 key costs the API
 * process tens of milliseconds of CPU to make: unbounded, one tenant's loop of rotations would
 * take the API's cores from everyone; real rotations happen a few times a year.
 */
export const MAX_KEYS_PER_HOUR = 20;

interface Row {
  domain: string;
  selector: string;
  public_key: string;
  status: DkimKeyStatus;
  created_at: Date;
  retire_after: Date | null;
}

const VIEW_COLUMNS = "domain, selector, public_key, status, created_at, retire_after";

const viewOf = (row: Row): DkimKeyView => ({
  domain: row.domain,
  selector: row.selector,
  status: row.status,
  created_at: row.created_at,
  retire_after: row.retire_after,
  dns: dkimDnsRecord(row, row.public_key),
});

/** `pm` + the day + 8 random hex digits: a DNS label, unique per rotation, and it tells a person when the key was made. */
function newSelector(now: Date): string {
  const day = now.toISOString().slice(0, 10).replace(/-/g, "");
  const random = Array.from(crypto.getRandomValues(new Uint8Array(4)), (b) => b.toString(16).padStart(2, "0")).join("");
  return `pm${day}-${random}`;
}

export class DkimKeys {
  constructor(
    private readonly sql: SqlClient,
    private readonly clock: Clock,
    /** Undefined where DKIM_ENCRYPTION_KEY is not set: keys can be listed, not made. */
    private readonly cipher: DkimKeyCipher | undefined,
  ) {}

  /** The domain's first key. 409 when one is already active (rotate it instead). */
  async create(tenantId: string, domain: string): Promise<DkimKeyView> {
    const cipher = this.requireCipher();
    const now = this.clock.now();
    await this.checkAllowance(tenantId, domain, now);
    const selector = newSelector(now);
    const pair = await generateDkimKeyPair();
    const sealed = await cipher.seal({ tenantId, domain, selector }, pair.privateKeyPem);
    // One statement: the tenant's row (when it has none) and the key, which the partial unique
    // index refuses while another key is active (two creates at once: one wins, one gets 409).
    // An active key implies the tenant's row, so a refused create changes nothing.
    const [row] = await this.sql.query<Row>(
      `with tenant as (insert into tenants (id, name) values ($1, $1) on conflict (id) do nothing)
       insert into dkim_keys (tenant_id, domain, selector, private_key_sealed, public_key, created_at)
       values ($1, $2, $3, $4, $5, $6)
       on conflict (tenant_id, domain) where status = 'active' do nothing
       returning ${VIEW_COLUMNS}`,
      [tenantId, domain, selector, sealed, pair.publicKey, now],
    );
    if (!row) throw new ConflictError(`${domain} already has an active DKIM key; rotate it with POST /v1/domains/${domain}/dkim/rotate`);
    return viewOf(row);
  }

  /** The domain's keys, newest first (404 when this tenant has none for it). */
  async list(tenantId: string, domain: string): Promise<DkimKeyView[]> {
    await this.retireDue(tenantId, domain, this.clock.now());
    const rows = await this.sql.query<Row>(
      `select ${VIEW_COLUMNS} from dkim_keys where tenant_id = $1 and domain = $2 order by created_at desc, id desc limit $3`,
      [tenantId, domain, MAX_LISTED],
    );
    if (rows.length === 0) throw new NotFoundError(`no DKIM keys for ${domain}`);
    return rows.map(viewOf);
  }

  /**
   * A new active key under a new selector; the one it replaces signs nothing more and stays
   * `retiring` for `retiringMs` (0: retired at once). 404 when the domain has no active key.
   */
  async rotate(tenantId: string, domain: string, retiringMs: number): Promise<{ active: DkimKeyView; retiring: DkimKeyView }> {
    const cipher = this.requireCipher();
    const now = this.clock.now();
    await this.checkAllowance(tenantId, undefined, now);
    const selector = newSelector(now);
    const pair = await generateDkimKeyPair();
    const sealed = await cipher.seal({ tenantId, domain, selector }, pair.privateKeyPem);
    const retireAfter = new Date(now.getTime() + retiringMs);
    // One statement, so no moment has two active keys or none. The insert reads the updated row,
    // so it runs after the update has taken the old key out of the partial unique index; a
    // rotation racing this one waits on the row, then finds no active key and inserts nothing.
    const rows = await this.sql.query<Row & { which: "old" | "new" }>(
      `with old as (
         update dkim_keys set status = case when $7::timestamptz <= $6::timestamptz then 'retired' else 'retiring' end, retire_after = $7
         where tenant_id = $1 and domain = $2 and status = 'active'
         returning ${VIEW_COLUMNS}
       ), fresh as (
         insert into dkim_keys (tenant_id, domain, selector, private_key_sealed, public_key, created_at)
         select $1, $2, $3, $4, $5, $6 from old
         returning ${VIEW_COLUMNS}
       )
       select 'old' as which, * from old union all select 'new' as which, * from fresh`,
      [tenantId, domain, selector, sealed, pair.publicKey, now, retireAfter],
    );
    const old = rows.find((r) => r.which === "old");
    const fresh = rows.find((r) => r.which === "new");
    if (!old || !fresh) throw new NotFoundError(`no active DKIM key for ${domain}; make one with POST /v1/domains/${domain}/dkim`);
    await this.retireDue(tenantId, domain, now);
    return { active: viewOf(fresh), retiring: viewOf(old) };
  }

  /** The key that signs this tenant's mail from `domain`, sealed; undefined when none is active. */
  async signingKey(tenantId: string, domain: string): Promise<SealedSigningKey | undefined> {
    const [row] = await this.sql.query<{ selector: string; private_key_sealed: string }>(
      "select selector, private_key_sealed from dkim_keys where tenant_id = $1 and domain = $2 and status = 'active'",
      [tenantId, domain],
    );
    return row ? { selector: row.selector, sealed: row.private_key_sealed } : undefined;
  }

  /**
   * Before a key is made (the expensive part): the tenant's keys of the last hour, and for a new
   * domain the domains it already has keys for. Checked, not locked: two requests at once may
   * both pass, which bounds the excess by the concurrency of one tenant's requests.
   */
  private async checkAllowance(tenantId: string, newDomain: string | undefined, now: Date): Promise<void> {
    const [row] = await this.sql.query<{ recent: number; oldest: Date | null; domains: number; has_domain: boolean }>(
      `select (select count(*)::int from dkim_keys where tenant_id = $1 and created_at > $2) as recent,
              (select min(created_at) from dkim_keys where tenant_id = $1 and created_at > $2) as oldest,
              (select count(distinct domain)::int from dkim_keys where tenant_id = $1 and status = 'active') as domains,
              exists (select 1 from dkim_keys where tenant_id = $1 and domain = $3 and status = 'active') as has_domain`,
      [tenantId, new Date(now.getTime() - 3_600_000), newDomain ?? ""],
    );
    if (row!.recent >= MAX_KEYS_PER_HOUR) {
      const freesAt = new Date(row!.oldest!).getTime() + 3_600_000;
      throw new RateLimitedError(
        `at most ${MAX_KEYS_PER_HOUR} DKIM keys a tenant an hour (made and rotated); try again later`,
        Math.max(1, Math.ceil((freesAt - now.getTime()) / 1000)),
      );
    }
    if (newDomain !== undefined && !row!.has_domain && row!.domains >= MAX_DOMAINS) {
      throw new ConflictError(`at most ${MAX_DOMAINS} domains a tenant have DKIM keys; rotate or retire one of them first`);
    }
  }

  private async retireDue(tenantId: string, domain: string, now: Date): Promise<void> {
    await this.sql.query("update dkim_keys set status = 'retired' where tenant_id = $1 and domain = $2 and status = 'retiring' and retire_after <= $3", [
      tenantId,
      domain,
      now,
    ]);
  }

  private requireCipher(): DkimKeyCipher {
    if (!this.cipher) {
      throw new ConflictError(
        "DKIM keys cannot be made on this server: DKIM_ENCRYPTION_KEY is not set (a random secret of 32+ characters that seals the private keys; keep it stable)",
      );
    }
    return this.cipher;
  }
}

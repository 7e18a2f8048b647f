import type { SqlClient } from "../ports";

export type SuppressionReason = "unsubscribe" | "hard_bounce" | "complaint" | "manual";

/** The tenant id that suppresses an address for every tenant. */
export const GLOBAL = "*";

/**
 * Suppressions: addresses that must not receive mail from a tenant (its own list) or from
 * anyone (global: hard bounces and complaints anywhere protect the platform's reputation).
 */
export class Suppressions {
  constructor(private readonly sql: SqlClient) {}

  async add(tenantId: string, email: string, reason: SuppressionReason): Promise<void> {
    await this.sql.query(
      "insert into suppressions (tenant_id, email_lower, reason) values ($1, lower($2), $3) on conflict do nothing",
      [tenantId, email, reason],
    );
  }

  async remove(tenantId: string, email: string): Promise<boolean> {
    const rows = await this.sql.query("delete from suppressions where tenant_id = $1 and email_lower = lower($2) returning 1", [
      tenantId,
      email,
    ]);
    return rows.length > 0;
  }

  /** Which of these addresses may not receive this tenant's mail (lower-cased), in one query. */
  async suppressed(tenantId: string, emails: readonly string[]): Promise<Set<string>> {
    if (emails.length === 0) return new Set();
    const rows = await this.sql.query<{ email_lower: string }>(
      `select distinct email_lower from suppressions
       where tenant_id in ($1, '*') and email_lower = any($2::text[])`,
      [tenantId, emails.map((e) => e.toLowerCase())],
    );
    return new Set(rows.map((r) => r.email_lower));
  }

  async list(tenantId: string, opts: { after?: string; limit: number }) {
    return this.sql.query<{ email: string; reason: SuppressionReason; created_at: Date }>(
      `select email_lower as email, reason, created_at from suppressions
       where tenant_id = $1 and ($2::text is null or email_lower > $2) order by email_lower limit $3`,
      [tenantId, opts.after ?? null, opts.limit],
    );
  }
}

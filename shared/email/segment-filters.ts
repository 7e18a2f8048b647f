/**
 * A segment's conditions on its list's contacts: on an attribute (`{attribute, op, value}`), or
 * on the contact's latest human engagement (`{field: "last_opened_at" | "last_clicked_at", op:
 * "within_days", value: days}` or `op: "never"`). Engagement is what engagement-buffer.ts writes
 * into contacts.last_opened_at / last_clicked_at: human hits only, so an open by Apple's
 * prefetch or a scanner's click never puts a contact into "opened within 30 days".
 */
export interface AttributeFilter {
  attribute: string;
  op: "eq" | "neq" | "exists";
  value?: string;
}

export const ENGAGEMENT_FIELDS = ["last_opened_at", "last_clicked_at"] as const;
export type EngagementField = (typeof ENGAGEMENT_FIELDS)[number];

export type EngagementFilter = { field: EngagementField; op: "within_days"; value: number } | { field: EngagementField; op: "never" };

export type SegmentFilter = AttributeFilter | EngagementFilter;

/** The column of each engagement field: SQL text comes from this table only, never from the filter. */
const COLUMN: Record<EngagementField, string> = { last_opened_at: "c.last_opened_at", last_clicked_at: "c.last_clicked_at" };

/**
 * A segment's filters as SQL over contacts (`c` is the contacts alias), with parameters numbered
 * from `first`: used alike by the campaign fan-out and by exports. Values are always parameters;
 * "within days" is counted back from the database's now(), the clock the fan-out runs on.
 */
export function segmentFilterSql(filters: readonly SegmentFilter[], first: number): { where: string; params: string[] } {
  const parts: string[] = [];
  const params: string[] = [];
  const param = (value: string) => {
    params.push(value);
    return `$${first + params.length - 1}`;
  };
  for (const f of filters) {
    if ("field" in f) {
      const column = COLUMN[f.field];
      // A stored filter is the API's (validated); an unknown field must not widen the segment to everyone.
      if (!column) throw new Error(`unknown segment filter field ${String(f.field)}`);
      if (f.op === "never") parts.push(`${column} is null`);
      else parts.push(`${column} >= now() - make_interval(days => ${param(String(f.value))}::int)`);
      continue;
    }
    const key = param(f.attribute);
    if (f.op === "exists") parts.push(`c.attributes ? ${key}`);
    else {
      const value = param(String(f.value ?? ""));
      parts.push(f.op === "eq" ? `c.attributes->>${key} = ${value}` : `coalesce(c.attributes->>${key}, '') <> ${value}`);
    }
  }
  return { where: parts.map((p) => `and ${p}`).join(" "), params };
}

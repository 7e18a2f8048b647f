/** One condition of a segment on a contact attribute. */
export interface SegmentFilter {
  attribute: string;
  op: "eq" | "neq" | "exists";
  value?: string;
}

/**
 * A segment's filters as SQL over contact attributes (`c` is the contacts alias), with
 * parameters numbered from `first`: used alike by the campaign fan-out and by exports.
 */
export function segmentFilterSql(filters: readonly SegmentFilter[], first: number): { where: string; params: string[] } {
  const parts: string[] = [];
  const params: string[] = [];
  for (const f of filters) {
    params.push(f.attribute);
    const key = `$${first + params.length - 1}`;
    if (f.op === "exists") parts.push(`c.attributes ? ${key}`);
    else {
      params.push(String(f.value ?? ""));
      const value = `$${first + params.length - 1}`;
      parts.push(f.op === "eq" ? `c.attributes->>${key} = ${value}` : `coalesce(c.attributes->>${key}, '') <> ${value}`);
    }
  }
  return { where: parts.map((p) => `and ${p}`).join(" "), params };
}

/** How numbers and times read on the dashboard: short, for an operator scanning a table. */

/** 42 s, 3 min, 2 h 5 min, 4 d. */
export function duration(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s} s`;
  if (s < 3_600) return `${Math.floor(s / 60)} min`;
  if (s < 86_400) {
    const minutes = Math.floor((s % 3_600) / 60);
    return `${Math.floor(s / 3_600)} h${minutes ? ` ${minutes} min` : ""}`;
  }
  return `${Math.floor(s / 86_400)} d`;
}

/** "3 min ago" or "in 3 min". */
export function relative(at: Date, now: Date): string {
  const seconds = (now.getTime() - at.getTime()) / 1000;
  if (Math.abs(seconds) < 1) return "now";
  return seconds >= 0 ? `${duration(seconds)} ago` : `in ${duration(-seconds)}`;
}

/** 2024-05-01 12:34:56Z: precise, sortable, and the same for every operator. */
export function timestamp(at: Date): string {
  return at.toISOString().replace("T", " ").replace(/\.\d{3}Z$/, "Z");
}

/** 12:34 (UTC), for the chart's axis. */
export function clockTime(at: Date): string {
  return at.toISOString().slice(11, 16);
}

export function percent(ratio: number): string {
  return `${(ratio * 100).toFixed(ratio < 0.1 ? 1 : 0)}%`;
}

export function bytes(n: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let value = n;
  let i = 0;
  while (value >= 1024 && i < units.length - 1) {
    value /= 1024;
    i += 1;
  }
  return `${value.toFixed(value >= 10 || i === 0 ? 0 : 1)} ${units[i]}`;
}

/** 1234567 -> 1,234,567 (tabular figures do the rest). */
export function count(n: number): string {
  return n.toLocaleString("en-US");
}

/** Pretty JSON for <pre>; JSX escapes it on the way out. */
export function prettyJson(value: unknown): string {
  if (value === undefined) return "null";
  return JSON.stringify(value, null, 2) ?? "null";
}

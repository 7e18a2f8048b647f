/**
 * Prometheus text exposition format 0.0.4: just enough to write metric families with HELP and
 * TYPE lines, escaped labels and histograms. Written by hand because client libraries keep
 * process-global registries, which the edge (one isolate, many requests) cannot use.
 */

export const PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8";

export type MetricType = "counter" | "gauge" | "histogram";
export type Labels = Record<string, string>;

const escapeHelp = (s: string) => s.replace(/\\/g, "\\\\").replace(/\n/g, "\\n");
export const escapeLabelValue = (s: string) => s.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n");

export function formatValue(v: number): string {
  if (Number.isNaN(v)) return "NaN";
  if (v === Infinity) return "+Inf";
  if (v === -Infinity) return "-Inf";
  return String(v);
}

function formatLabels(labels: Labels): string {
  const pairs = Object.entries(labels).map(([k, v]) => `${k}="${escapeLabelValue(v)}"`);
  return pairs.length === 0 ? "" : `{${pairs.join(",")}}`;
}

export class Exposition {
  private readonly lines: string[] = [];

  /** Starts a metric family; its samples must follow before the next family. */
  family(name: string, type: MetricType, help: string): this {
    this.lines.push(`# HELP ${name} ${escapeHelp(help)}`, `# TYPE ${name} ${type}`);
    return this;
  }

  sample(name: string, labels: Labels, value: number): this {
    this.lines.push(`${name}${formatLabels(labels)} ${formatValue(value)}`);
    return this;
  }

  /**
   * One histogram series from non-cumulative bucket counts (`counts` has one element per bound
   * plus a last one for +Inf), written cumulatively as the format requires.
   */
  histogram(name: string, labels: Labels, bounds: readonly number[], counts: readonly number[], sum: number): this {
    let cumulative = 0;
    bounds.forEach((le, i) => {
      cumulative += counts[i] ?? 0;
      this.sample(`${name}_bucket`, { ...labels, le: formatValue(le) }, cumulative);
    });
    for (let i = bounds.length; i < counts.length; i++) cumulative += counts[i] ?? 0;
    this.sample(`${name}_bucket`, { ...labels, le: "+Inf" }, cumulative);
    this.sample(`${name}_sum`, labels, sum);
    return this.sample(`${name}_count`, labels, cumulative);
  }

  toString(): string {
    return `${this.lines.join("\n")}\n`;
  }
}

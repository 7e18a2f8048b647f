/**
 * Jobs completed and failed per minute over the last hour, as inline SVG drawn on the server
 * from job_stats' per-minute counters (no script, no image request).
 */
import { clockTime, count } from "./format";
import type { ThroughputPoint } from "./queries";

const WIDTH = 720;
const HEIGHT = 180;
const PAD = { left: 40, right: 10, top: 12, bottom: 24 };
const PLOT_W = WIDTH - PAD.left - PAD.right;
const PLOT_H = HEIGHT - PAD.top - PAD.bottom;

/** The smallest of 1, 2, 5 × 10^k that is at least n (and at least 1): round axis labels. */
export function niceCeiling(n: number): number {
  if (n <= 1) return 1;
  const magnitude = 10 ** Math.floor(Math.log10(n));
  for (const step of [1, 2, 5, 10]) if (step * magnitude >= n) return step * magnitude;
  return 10 * magnitude;
}

const round = (n: number) => Math.round(n * 10) / 10;

export function ThroughputChart(props: { points: readonly ThroughputPoint[] }) {
  const { points } = props;
  const n = points.length;
  const top = niceCeiling(Math.max(0, ...points.map((p) => Math.max(p.completed, p.failed))));
  const x = (i: number) => round(PAD.left + (n <= 1 ? 0 : (i * PLOT_W) / (n - 1)));
  const y = (v: number) => round(PAD.top + PLOT_H - (v / top) * PLOT_H);
  const line = (pick: (p: ThroughputPoint) => number) => points.map((p, i) => `${i === 0 ? "M" : "L"}${x(i)} ${y(pick(p))}`).join(" ");
  const baseline = y(0);
  const completedArea = n > 0 ? `${line((p) => p.completed)} L${x(n - 1)} ${baseline} L${x(0)} ${baseline} Z` : "";
  const totalCompleted = points.reduce((s, p) => s + p.completed, 0);
  const totalFailed = points.reduce((s, p) => s + p.failed, 0);
  const peak = points.reduce((m, p) => Math.max(m, p.completed + p.failed), 0);
  const slot = n > 1 ? PLOT_W / (n - 1) : PLOT_W;
  const ticks = n > 0 ? [0, Math.round((n - 1) / 4), Math.round((n - 1) / 2), Math.round((3 * (n - 1)) / 4), n - 1] : [];

  return (
    <div class="chart">
      <svg
        viewBox={`0 0 ${WIDTH} ${HEIGHT}`}
        role="img"
        aria-label={`Throughput over the last ${n} minutes: ${totalCompleted} completed, ${totalFailed} failed`}
        data-testid="throughput-chart"
      >
        {[0, top / 2, top].map((v) => (
          <g>
            <line x1={PAD.left} x2={WIDTH - PAD.right} y1={y(v)} y2={y(v)} stroke="#e6e9ee" stroke-width="1" />
            <text x={PAD.left - 6} y={y(v) + 3} text-anchor="end" font-size="10" fill="#7a8190">
              {count(v)}
            </text>
          </g>
        ))}
        {ticks.map((i) => (
          <text x={x(i)} y={HEIGHT - 6} text-anchor={i === 0 ? "start" : i === n - 1 ? "end" : "middle"} font-size="10" fill="#7a8190">
            {i === n - 1 ? `${clockTime(points[i]!.minute)} UTC` : clockTime(points[i]!.minute)}
          </text>
        ))}
        <path d={completedArea} fill="#1d8a4e" fill-opacity="0.12" stroke="none" />
        <path d={line((p) => p.completed)} fill="none" stroke="#1d8a4e" stroke-width="1.6" stroke-linejoin="round" />
        <path d={line((p) => p.failed)} fill="none" stroke="#c8372d" stroke-width="1.4" stroke-linejoin="round" />
        {points.map((p, i) =>
          p.failed > 0 ? <circle cx={x(i)} cy={y(p.failed)} r="2" fill="#c8372d" /> : null,
        )}
        {points.map((p, i) => (
          <rect x={round(x(i) - slot / 2)} y={PAD.top} width={round(slot)} height={PLOT_H} fill="transparent">
            <title>{`${clockTime(p.minute)} UTC: ${count(p.completed)} completed, ${count(p.failed)} failed`}</title>
          </rect>
        ))}
      </svg>
      <div class="legend">
        <span>
          <i style="background:#1d8a4e" />
          completed <b data-testid="throughput-completed">{count(totalCompleted)}</b>
        </span>
        <span>
          <i style="background:#c8372d" />
          failed <b data-testid="throughput-failed">{count(totalFailed)}</b>
        </span>
        <span>peak {count(peak)}/min</span>
        <span>per minute, from the workers' counters</span>
      </div>
    </div>
  );
}

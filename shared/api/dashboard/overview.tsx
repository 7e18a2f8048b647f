/**
 * GET /dashboard: the state of every lane, throughput, workers, scaling signals, and the jobs
 * that need a look (active and failed by default), on one page that refreshes itself.
 */
import { JOB_STATES } from "../../queue/job";
import type { RegisteredWorker } from "../../queue/registry";
import { DASHBOARD_PATH, type Operator } from "./access";
import { bytes, count, duration, percent, relative, timestamp } from "./format";
import { JobPageView, listUrl } from "./job-list";
import { ActionButton, CsrfField, Layout } from "./layout";
import { type JobFilter, type JobPage, type LiveCounts, type LiveState, type Overview, type TypeSummary } from "./queries";
import { ThroughputChart } from "./throughput-chart";

const COLUMNS: { state: LiveState; label: string; api: string }[] = [
  { state: "queued", label: "Waiting", api: "waiting" },
  { state: "paused", label: "Paused", api: "paused_jobs" },
  { state: "scheduled", label: "Scheduled", api: "scheduled" },
  { state: "active", label: "Active", api: "active" },
  { state: "failed", label: "Failed", api: "failed" },
];

/** A count cell; `id` names it for tests and scripts (data-count="email.send:waiting"). */
const Count = (props: { n: number; id: string }) => (
  <td class={props.n === 0 ? "num zero" : "num"} data-count={props.id}>
    {count(props.n)}
  </td>
);

function Tiles(props: { overview: Overview }) {
  const { types, workers } = props.overview;
  const sum = (pick: (t: TypeSummary) => number) => types.reduce((n, t) => n + pick(t), 0);
  const silent = workers.filter((w) => w.silent).length;
  const tiles: { label: string; n: number; tone?: string; suffix?: string }[] = [
    { label: "Waiting", n: sum((t) => t.total.queued) },
    { label: "Active", n: sum((t) => t.total.active) },
    { label: "Scheduled", n: sum((t) => t.total.scheduled) },
    { label: "Paused", n: sum((t) => t.total.paused), tone: sum((t) => t.total.paused) > 0 ? "warn" : undefined },
    { label: "Failed (dead letter)", n: sum((t) => t.total.failed), tone: sum((t) => t.total.failed) > 0 ? "bad" : undefined },
    { label: "Completed · 1 h", n: sum((t) => t.completedLastHour), tone: "good" },
    { label: "Failed · 1 h", n: sum((t) => t.failedLastHour), tone: sum((t) => t.failedLastHour) > 0 ? "bad" : undefined },
    { label: silent > 0 ? `Workers · ${silent} silent` : "Workers", n: workers.length - silent, tone: silent > 0 ? "warn" : undefined },
  ];
  return (
    <div class="tiles">
      {tiles.map((t) => (
        <div class={`tile ${t.tone ?? ""}`}>
          <div class="n">{count(t.n)}</div>
          <div class="l">{t.label}</div>
        </div>
      ))}
    </div>
  );
}

function LaneState(props: { summary: TypeSummary; now: Date }) {
  const { summary: s, now } = props;
  return (
    <span class="actions">
      {s.pausedSince ? (
        <span class="badge b-paused" title={`since ${timestamp(s.pausedSince)}`} data-testid={`paused-${s.type}`}>
          paused {relative(s.pausedSince, now)}
        </span>
      ) : (
        <span class="badge b-live">running</span>
      )}
      {s.pausedTenants.length > 0 ? (
        <span class="badge b-paused" title={s.pausedTenants.map((t) => t.tenantId).join(", ")}>
          {s.pausedTenants.length === 1 ? `tenant ${s.pausedTenants[0]!.tenantId} paused` : `${s.pausedTenants.length} tenants paused`}
        </span>
      ) : null}
    </span>
  );
}

function QueuesTable(props: { overview: Overview; operator: Operator; back: string }) {
  const { overview, operator, back } = props;
  return (
    <section class="panel" id="queues">
      <h2>
        Queues<small>live counts per type and priority; completed and failed over the last hour from the workers' counters</small>
      </h2>
      <div class="table-scroll">
        <table data-testid="queues">
          <thead>
            <tr>
              <th>Type / priority</th>
              <th>Pool</th>
              {COLUMNS.map((c) => (
                <th class="num">{c.label}</th>
              ))}
              <th class="num">Completed 1 h</th>
              <th class="num">Failed 1 h</th>
              <th>Lane</th>
              <th>Actions</th>
            </tr>
          </thead>
          <tbody>
            {overview.types.map((s) => (
              <>
                <tr class="type-row" data-type={s.type}>
                  <td class="mono">{s.type}</td>
                  <td>{s.pool ?? <span class="muted">(not in catalog)</span>}</td>
                  {COLUMNS.map((c) => (
                    <Count n={s.total[c.state]} id={`${s.type}:${c.api}`} />
                  ))}
                  <Count n={s.completedLastHour} id={`${s.type}:completed_last_hour`} />
                  <Count n={s.failedLastHour} id={`${s.type}:failed_last_hour`} />
                  <td>
                    <LaneState summary={s} now={overview.now} />
                  </td>
                  <td>
                    {s.pool ? (
                      <div class="actions">
                        {s.pausedSince ? (
                          <ActionButton operator={operator} action={`${DASHBOARD_PATH}/lanes/resume`} fields={{ type: s.type }} label="Resume" back={back} variant="primary" title={`Resume every tenant's ${s.type} jobs`} />
                        ) : (
                          <ActionButton operator={operator} action={`${DASHBOARD_PATH}/lanes/pause`} fields={{ type: s.type }} label="Pause" back={back} title={`Stop starting ${s.type} jobs (running ones finish)`} />
                        )}
                        {s.total.failed > 0 ? (
                          <ActionButton
                            operator={operator}
                            action={`${DASHBOARD_PATH}/queues/${encodeURIComponent(s.type)}/retry-failed`}
                            label={`Retry ${count(s.total.failed)} failed`}
                            back={back}
                            title={`Run every failed ${s.type} job again`}
                          />
                        ) : null}
                      </div>
                    ) : null}
                  </td>
                </tr>
                {s.byPriority.map((p) => (
                  <PriorityRow type={s.type} priority={p.priority} counts={p.counts} />
                ))}
              </>
            ))}
          </tbody>
        </table>
      </div>
    </section>
  );
}

const PriorityRow = (props: { type: string; priority: string; counts: LiveCounts }) => (
  <tr class="priority-row" data-type={props.type} data-priority={props.priority}>
    <td class="first">{props.priority}</td>
    <td />
    {COLUMNS.map((c) => (
      <Count n={props.counts[c.state]} id={`${props.type}:${props.priority}:${c.api}`} />
    ))}
    <td colspan={4} />
  </tr>
);

function PausedLanes(props: { overview: Overview; operator: Operator; back: string }) {
  const { overview, operator, back } = props;
  const lanes = overview.types.flatMap((s) => [
    ...(s.pausedSince ? [{ type: s.type, tenant: null as string | null, since: s.pausedSince }] : []),
    ...s.pausedTenants.map((t) => ({ type: s.type, tenant: t.tenantId as string | null, since: t.since })),
  ]);
  const types = overview.types.filter((s) => s.pool !== null).map((s) => s.type);
  return (
    <section class="panel" id="paused">
      <h2>
        Paused lanes<small>waiting jobs stay put until resumed; running ones finish</small>
      </h2>
      {lanes.length === 0 ? (
        <p class="muted" data-testid="no-paused-lanes">
          Every lane is running.
        </p>
      ) : (
        <table data-testid="paused-lanes">
          <thead>
            <tr>
              <th>Type</th>
              <th>Tenants</th>
              <th>Paused</th>
              <th />
            </tr>
          </thead>
          <tbody>
            {lanes.map((l) => (
              <tr data-lane={`${l.type}:${l.tenant ?? "*"}`}>
                <td class="mono">{l.type}</td>
                <td>{l.tenant === null ? <b>all tenants</b> : <span class="mono">{l.tenant}</span>}</td>
                <td title={timestamp(l.since)}>{relative(l.since, overview.now)}</td>
                <td>
                  <ActionButton
                    operator={operator}
                    action={`${DASHBOARD_PATH}/lanes/resume`}
                    fields={l.tenant === null ? { type: l.type } : { type: l.type, tenant: l.tenant }}
                    label="Resume"
                    back={back}
                    variant="primary"
                  />
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      <form method="post" action={`${DASHBOARD_PATH}/lanes/pause`} class="filters" style="margin: 12px 0 0">
        <CsrfField operator={operator} />
        <input type="hidden" name="back" value={back} />
        <label>
          One tenant's jobs of
          <select name="type" aria-label="Job type">
            {types.map((t) => (
              <option value={t}>{t}</option>
            ))}
          </select>
        </label>
        <label>
          tenant
          <input name="tenant" required pattern="[A-Za-z0-9_.:\-]{1,64}" placeholder="tenant id" aria-label="Tenant id" size={14} />
        </label>
        <button type="submit">Pause</button>
        <button type="submit" formaction={`${DASHBOARD_PATH}/lanes/resume`}>
          Resume
        </button>
      </form>
    </section>
  );
}

function memoryOf(w: RegisteredWorker) {
  if (w.memoryRatio === undefined && w.memoryRss === undefined) return <span class="muted">—</span>;
  return (
    <span class="nowrap">
      {w.memoryRatio !== undefined ? percent(w.memoryRatio) : ""}
      {w.memoryRss !== undefined ? <span class="muted small"> {bytes(w.memoryRss)}</span> : null}
    </span>
  );
}

function WorkersTable(props: { overview: Overview }) {
  const { workers, now, silentAfterMs } = props.overview;
  return (
    <section class="panel" id="workers">
      <h2>
        Workers<small>registry of the last 24 h; silent after {duration(silentAfterMs / 1000)} without a heartbeat</small>
      </h2>
      {workers.length === 0 ? (
        <p class="muted">No worker has reported in the last 24 hours.</p>
      ) : (
        <div class="table-scroll">
          <table data-testid="workers">
            <thead>
              <tr>
                <th>Worker</th>
                <th>Status</th>
                <th>Runtime</th>
                <th>Pools</th>
                <th class="num">Concurrency</th>
                <th class="num">In flight</th>
                <th>Memory</th>
                <th>Intake paused</th>
                <th>Last heartbeat</th>
                <th>Up since</th>
              </tr>
            </thead>
            <tbody>
              {workers.map((w) => {
                const load = w.concurrency > 0 ? Math.min(1, w.inFlight / w.concurrency) : 0;
                return (
                  <tr class={w.silent ? "silent" : ""} data-worker={w.id} data-silent={w.silent ? "true" : "false"}>
                    <td class="mono">{w.id}</td>
                    <td>{w.silent ? <span class="badge b-silent">silent</span> : <span class="badge b-live">live</span>}</td>
                    <td>{w.runtime}</td>
                    <td>{w.pools.join(", ")}</td>
                    <td class="num">{w.concurrency}</td>
                    <td class="num nowrap">
                      {w.inFlight}
                      <span class={load >= 0.9 ? "bar hot" : "bar"}>
                        <i style={`width:${Math.round(load * 100)}%`} />
                      </span>
                    </td>
                    <td>{memoryOf(w)}</td>
                    <td>{w.intakePaused.length > 0 ? <span class="badge b-paused">{w.intakePaused.join(", ")}</span> : <span class="muted">—</span>}</td>
                    <td class="nowrap" title={timestamp(w.heartbeatAt)}>
                      {relative(w.heartbeatAt, now)}
                    </td>
                    <td class="nowrap muted" title={timestamp(w.startedAt)}>
                      {relative(w.startedAt, now)}
                    </td>
                  </tr>
                );
              })}
            </tbody>
          </table>
        </div>
      )}
    </section>
  );
}

function ScalingTable(props: { overview: Overview }) {
  const { pools, policy } = props.overview;
  return (
    <section class="panel" id="scaling">
      <h2>
        Scaling<small>
          scale up past {count(policy.queueDepth)} waiting, or import memory over {percent(policy.importMemoryRatio)}
        </small>
      </h2>
      <div class="table-scroll">
        <table data-testid="scaling">
          <thead>
            <tr>
              <th>Pool</th>
              <th class="num">Waiting</th>
              <th class="num">Oldest</th>
              <th class="num">Active</th>
              <th class="num" title="live workers running the pool, and their slots">Workers</th>
              <th class="num">Memory</th>
              <th>Signal</th>
            </tr>
          </thead>
          <tbody>
            {pools.map((p) => (
              <tr data-pool={p.pool}>
                <td title={p.types.join(", ")}>
                  <b>{p.pool}</b>
                  <div class="muted small">{p.types.join(", ")}</div>
                </td>
                <td class="num">{count(p.queueDepth)}</td>
                <td class="num">{p.oldestWaitingSeconds > 0 ? duration(p.oldestWaitingSeconds) : "—"}</td>
                <td class="num">{count(p.active)}</td>
                <td class="num nowrap">
                  {p.workers} <span class="muted small" data-slots={String(p.concurrency)}>· {p.concurrency} slots</span>
                </td>
                <td class="num">{p.memoryUsageRatio === null ? "—" : percent(p.memoryUsageRatio)}</td>
                <td>
                  <span class={`badge b-${p.recommendation}`}>{p.recommendation === "scale_up" ? "scale up" : "hold"}</span>
                  {p.reasons.length > 0 ? <div class="small muted">{p.reasons.join("; ")}</div> : null}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
    </section>
  );
}

function JobsSection(props: {
  overview: Overview;
  operator: Operator;
  filter: JobFilter;
  pages: readonly JobPage[];
  back: string;
}) {
  const { overview, filter } = props;
  return (
    <section class="panel" id="jobs">
      <h2>Jobs</h2>
      <form method="get" action={DASHBOARD_PATH} class="filters" data-testid="job-filters">
        <label>
          Type
          <select name="type">
            <option value="">all types</option>
            {overview.types.map((s) => (
              <option value={s.type} selected={filter.type === s.type}>
                {s.type}
              </option>
            ))}
          </select>
        </label>
        <label>
          Tenant
          <input name="tenant" value={filter.tenant ?? ""} placeholder="any tenant" size={14} />
        </label>
        <label>
          State
          <select name="state">
            <option value="">active and failed</option>
            {JOB_STATES.map((s) => (
              <option value={s} selected={filter.state === s}>
                {s}
              </option>
            ))}
          </select>
        </label>
        <button type="submit">Filter</button>
        {filter.type || filter.tenant || filter.state ? <a href={listUrl({})}>Clear</a> : null}
      </form>
      {props.pages.map((page) => (
        <JobPageView page={page} filter={filter} operator={props.operator} now={overview.now} back={props.back} paged={filter.state !== undefined} />
      ))}
    </section>
  );
}

export function OverviewPage(props: {
  overview: Overview;
  operator: Operator;
  nonce: string;
  notice: string | null;
  filter: JobFilter;
  pages: readonly JobPage[];
  /** This page's own address, where actions come back to. */
  back: string;
}) {
  const { overview, operator, back } = props;
  return (
    <Layout title="Overview" nonce={props.nonce} operator={operator} live notice={props.notice}>
      <h1>
        Overview <span class="muted small" style="font-weight:400">as of {timestamp(overview.now)}</span>
      </h1>
      <Tiles overview={overview} />
      <div class="grid">
        <section class="panel" id="throughput">
          <h2>
            Throughput<small>jobs finished per minute, last hour (UTC)</small>
          </h2>
          <ThroughputChart points={overview.throughput} />
        </section>
        <ScalingTable overview={overview} />
      </div>
      <QueuesTable overview={overview} operator={operator} back={back} />
      <PausedLanes overview={overview} operator={operator} back={back} />
      <WorkersTable overview={overview} />
      <JobsSection overview={overview} operator={operator} filter={props.filter} pages={props.pages} back={back} />
    </Layout>
  );
}

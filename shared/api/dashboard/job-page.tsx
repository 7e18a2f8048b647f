/**
 * GET /dashboard/jobs/:id: everything about one job. The payload, progress and result pass
 * through job-view's redaction first; JSX escapes all of it, so a payload holding markup shows
 * as text.
 */
import type { Job } from "../../queue/job";
import type { JobView } from "../job-view";
import { DASHBOARD_PATH, type Operator } from "./access";
import { prettyJson, relative, timestamp } from "./format";
import { JobActions, JobTable, jobPath, listUrl } from "./job-list";
import { Layout, StateBadge } from "./layout";

function Moment(props: { label: string; at: Date | null; now: Date; note?: string }) {
  const { at, now } = props;
  return (
    <li class={at ? "" : "pending"} data-moment={props.label}>
      <span>{props.label}</span>
      <span class="mono">{at ? timestamp(at) : "—"}</span>
      <span class="muted">
        {at ? relative(at, now) : ""}
        {props.note ? ` · ${props.note}` : ""}
      </span>
    </li>
  );
}

function Json(props: { value: unknown; testid: string }) {
  return <pre data-testid={props.testid}>{prettyJson(props.value)}</pre>;
}

export function JobPage(props: {
  job: Job;
  view: JobView;
  childJobs: readonly Job[];
  childLimit: number;
  operator: Operator;
  nonce: string;
  now: Date;
  notice: string | null;
}) {
  const { job, view, now, operator } = props;
  const back = jobPath(job.id);
  const error = view.last_error;
  const moving = !["completed", "failed", "cancelled"].includes(job.state);
  const runNote = job.state === "scheduled" && job.runAt > now ? "waits until then" : undefined;
  return (
    <Layout title={`Job #${job.id}`} nonce={props.nonce} operator={operator} live={moving} notice={props.notice}>
      <h1 class="actions" style="gap:10px">
        <span>
          Job <span class="mono">#{job.id}</span> · <span class="mono">{job.type}</span>
        </span>
        <StateBadge state={job.state} />
        {job.cancelRequested && job.state === "active" ? <span class="badge b-cancelled">cancel requested</span> : null}
        <JobActions job={job} operator={operator} back={back} />
      </h1>
      <p class="small">
        <a href={listUrl({ type: job.type, state: job.state })}>← {job.state} {job.type} jobs</a>
        {" · "}
        <a href={DASHBOARD_PATH}>Overview</a>
      </p>

      <div class="grid">
        <section class="panel">
          <h2>Job</h2>
          <dl class="facts" data-testid="job-facts">
            <dt>State</dt>
            <dd data-testid="job-state">{job.state}</dd>
            <dt>Tenant</dt>
            <dd class="mono">{job.tenantId}</dd>
            <dt>Priority</dt>
            <dd>{job.priority}</dd>
            <dt>Attempts</dt>
            <dd data-testid="job-attempts">
              {job.attempt} of {job.maxAttempts}
            </dd>
            <dt>Idempotency key</dt>
            <dd class="mono">{job.idempotencyKey ?? <span class="muted">—</span>}</dd>
            <dt>Parent</dt>
            <dd>{job.parentId ? <a href={jobPath(job.parentId)}>#{job.parentId}</a> : <span class="muted">—</span>}</dd>
            <dt>Worker</dt>
            <dd class="mono">{job.workerId ?? <span class="muted">—</span>}</dd>
            <dt>Lease until</dt>
            <dd>{job.leaseUntil ? `${timestamp(job.leaseUntil)} (${relative(job.leaseUntil, now)})` : <span class="muted">—</span>}</dd>
          </dl>
        </section>
        <section class="panel">
          <h2>Timeline</h2>
          <ol class="timeline" data-testid="job-timeline">
            <Moment label="created" at={job.createdAt} now={now} />
            <Moment label="run at" at={job.runAt} now={now} note={runNote} />
            <Moment label="started" at={job.startedAt} now={now} note={job.startedAt ? `attempt ${job.attempt}` : undefined} />
            <Moment label="finished" at={job.finishedAt} now={now} note={job.finishedAt ? job.state : undefined} />
          </ol>
        </section>
      </div>

      {error ? (
        <section class="panel" data-testid="job-error">
          <h2>
            Last error
            <small>
              {error.attempt !== undefined ? `attempt ${error.attempt}` : ""}
              {error.at ? ` · ${error.at}` : ""}
              {error.retryable === undefined ? "" : error.retryable ? " · will be retried" : " · not retried"}
            </small>
          </h2>
          <div class="error-box mono">
            {error.name ? `${error.name}: ` : ""}
            {error.message}
          </div>
          {error.stack ? <pre data-testid="job-stack">{error.stack}</pre> : null}
        </section>
      ) : null}

      <section class="panel">
        <h2>
          Payload<small>credential-like fields are redacted</small>
        </h2>
        <Json value={view.payload} testid="job-payload" />
      </section>

      <div class="grid">
        <section class="panel">
          <h2>Progress</h2>
          {view.progress === null ? <p class="muted">None reported.</p> : <Json value={view.progress} testid="job-progress" />}
        </section>
        <section class="panel">
          <h2>Result</h2>
          {view.result === null ? <p class="muted">None.</p> : <Json value={view.result} testid="job-result" />}
        </section>
      </div>

      <section class="panel" data-testid="job-children">
        <h2>
          Children
          <small>
            jobs this one created
            {props.childJobs.length >= props.childLimit ? `; the first ${props.childLimit} shown` : ""}
          </small>
        </h2>
        <JobTable jobs={props.childJobs} operator={operator} now={now} back={back} empty="This job created no jobs." />
      </section>
    </Layout>
  );
}

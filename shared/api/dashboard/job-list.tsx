/** Tables of jobs (newest first, a page at a time) with their one-click actions. */
import type { Job, JobState } from "../../queue/job";
import { redactText } from "../../redact";
import { encodeCursor } from "../cursor";
import { DASHBOARD_PATH, type Operator } from "./access";
import { relative, timestamp } from "./format";
import { ActionButton, StateBadge } from "./layout";
import type { JobFilter, JobPage } from "./queries";

const WAITING: readonly JobState[] = ["queued", "scheduled", "paused"];

export const jobPath = (id: string) => `${DASHBOARD_PATH}/jobs/${encodeURIComponent(id)}`;

/** The overview's address with these list filters (empty ones left out). */
export function listUrl(filter: { type?: string; tenant?: string; state?: string; cursor?: string }, anchor = "#jobs"): string {
  const params = new URLSearchParams();
  for (const key of ["type", "tenant", "state", "cursor"] as const) {
    const value = filter[key];
    if (value) params.set(key, value);
  }
  const query = params.toString();
  return `${DASHBOARD_PATH}${query ? `?${query}` : ""}${anchor}`;
}

/** What happened last to the job, and when. */
function lastMove(job: Job, now: Date): { label: string; at: Date } {
  if (job.finishedAt) return { label: job.state, at: job.finishedAt };
  if (job.state === "active" && job.startedAt) return { label: "started", at: job.startedAt };
  if (job.state === "scheduled") return { label: "runs", at: job.runAt };
  return { label: job.runAt > now ? "runs" : "waiting since", at: job.runAt };
}

/** Retry for the dead letter (and cancelled jobs), cancel for anything waiting or running. */
export function JobActions(props: { job: Job; operator: Operator; back: string }) {
  const { job, operator, back } = props;
  return (
    <div class="actions">
      {job.state === "failed" || job.state === "cancelled" ? (
        <ActionButton operator={operator} action={`${jobPath(job.id)}/retry`} label="Retry" back={back} title={`Run job ${job.id} again from attempt 1`} />
      ) : null}
      {[...WAITING, "active"].includes(job.state) && !job.cancelRequested ? (
        <ActionButton operator={operator} action={`${jobPath(job.id)}/cancel`} label="Cancel" back={back} variant="danger" title={`Cancel job ${job.id}`} />
      ) : null}
      {job.cancelRequested && job.state === "active" ? <span class="badge b-cancelled">cancelling</span> : null}
    </div>
  );
}

export function JobTable(props: { jobs: readonly Job[]; operator: Operator; now: Date; back: string; empty: string }) {
  const { jobs, now } = props;
  if (jobs.length === 0) return <p class="muted">{props.empty}</p>;
  return (
    <div class="table-scroll">
      <table data-testid="job-table">
        <thead>
          <tr>
            <th>Job</th>
            <th>Type</th>
            <th>Tenant</th>
            <th>Priority</th>
            <th>State</th>
            <th class="num">Attempt</th>
            <th>Created</th>
            <th>Last change</th>
            <th>Last error</th>
            <th />
          </tr>
        </thead>
        <tbody>
          {jobs.map((job) => {
            const move = lastMove(job, now);
            return (
              <tr data-job-id={job.id} data-state={job.state}>
                <td class="mono">
                  <a href={jobPath(job.id)}>#{job.id}</a>
                </td>
                <td class="mono">{job.type}</td>
                <td class="mono">{job.tenantId}</td>
                <td>{job.priority}</td>
                <td>
                  <StateBadge state={job.state} />
                </td>
                <td class="num">
                  {job.attempt}/{job.maxAttempts}
                </td>
                <td class="nowrap" title={timestamp(job.createdAt)}>
                  {relative(job.createdAt, now)}
                </td>
                <td class="nowrap" title={timestamp(move.at)}>
                  <span class="muted">{move.label}</span> {relative(move.at, now)}
                </td>
                <td>
                  {job.lastError ? (
                    // Stored errors are redacted on write; again here for rows older than that.
                    <span class="error-msg" title={redactText(job.lastError.message)}>
                      {job.lastError.name ? `${job.lastError.name}: ` : ""}
                      {redactText(job.lastError.message)}
                    </span>
                  ) : (
                    <span class="muted">—</span>
                  )}
                </td>
                <td>
                  <JobActions job={job} operator={props.operator} back={props.back} />
                </td>
              </tr>
            );
          })}
        </tbody>
      </table>
    </div>
  );
}

const TITLES: Partial<Record<JobState, string>> = {
  active: "Active jobs",
  failed: "Failed jobs (dead letter)",
  queued: "Waiting jobs",
  scheduled: "Scheduled jobs",
  paused: "Paused jobs",
  completed: "Completed jobs",
  cancelled: "Cancelled jobs",
};

/** One state's page of jobs, with a link to the next (older) page. */
export function JobPageView(props: { page: JobPage; filter: JobFilter; operator: Operator; now: Date; back: string; paged: boolean }) {
  const { page, filter } = props;
  const next = page.nextBeforeId
    ? listUrl({ type: filter.type, tenant: filter.tenant, state: page.state, cursor: encodeCursor(page.nextBeforeId) })
    : null;
  return (
    <div data-testid={`jobs-${page.state}`} style="margin-bottom: 14px">
      <h2>
        {TITLES[page.state] ?? page.state}
        <small>newest first{props.paged && filter.beforeId ? `, older than #${filter.beforeId}` : ""}</small>
      </h2>
      <JobTable jobs={page.jobs} operator={props.operator} now={props.now} back={props.back} empty={`No ${page.state} jobs match.`} />
      <div class="pager">
        <span class="muted">
          {page.jobs.length > 0 ? `${page.jobs.length} shown · #${page.jobs[0]!.id} to #${page.jobs.at(-1)!.id}` : ""}
        </span>
        <span class="actions">
          {props.paged && filter.beforeId ? (
            <a href={listUrl({ type: filter.type, tenant: filter.tenant, state: page.state })}>← Newest</a>
          ) : null}
          {next ? (
            <a href={next} data-testid={`older-${page.state}`}>
              Older →
            </a>
          ) : null}
        </span>
      </div>
    </div>
  );
}

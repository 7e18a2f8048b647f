/**
 * Every SQL statement of the engine, one a transition, named by entity and verb.
 * Times are passed in from the injected Clock ($now), never read from the database's now(),
 * so tests can move time and every process agrees on one clock source.
 */

/** The columns of a Job, optionally qualified by a table alias (updates that join other rows). */
export const jobColumns = (alias = "") => {
  const a = alias ? `${alias}.` : "";
  // Times travel as epoch milliseconds: parsing timestamptz text costs the driver more than the query.
  const ms = (c: string) => `(extract(epoch from ${a}${c}) * 1000)::float8 as ${c}`;
  return `${a}id::text as id, ${a}tenant_id, ${a}type, ${a}priority, ${a}payload, ${a}state, ${a}attempt,
  ${a}max_attempts, ${ms("run_at")}, ${a}vtime::float8 as vtime, ${ms("lease_until")}, ${a}worker_id, ${a}cancel_requested,
  ${a}idempotency_key, ${a}parent_id::text as parent_id, ${a}progress, ${a}result, ${a}last_error,
  ${ms("created_at")}, ${ms("started_at")}, ${ms("finished_at")}`;
};
const JOB_COLUMNS = jobColumns();

/**
 * What a worker needs of a job it just claimed: the state, lease, worker, result and times are
 * known or unused, and every column returned costs the driver a parse per row on the hot path.
 */
const claimedColumns = (alias = "") => {
  const a = alias ? `${alias}.` : "";
  return `${a}id::text as id, ${a}tenant_id, ${a}type, ${a}priority, ${a}payload, ${a}attempt, ${a}max_attempts,
  (extract(epoch from ${a}run_at) * 1000)::float8 as run_at, ${a}vtime::float8 as vtime, ${a}idempotency_key,
  ${a}parent_id::text as parent_id, ${a}progress, ${a}last_error, (extract(epoch from ${a}created_at) * 1000)::float8 as created_at`;
};

const LANE_COLUMNS = `id::text as id, type, priority, vtime::float8 as vtime`;

/**
 * Fair queuing: the first virtual time to give a tenant's new jobs in a lane. A tenant joins
 * behind its own queued jobs but never behind the lane's head, so a tenant that arrives after
 * another's backlog of 20,000 is interleaved with it one for one instead of waiting for it.
 * `groups` must have columns tenant_id, type, priority.
 */
const laneBase = (groups: string) => `
  select g.tenant_id, g.type, g.priority, greatest(
    coalesce((select q.vtime - 1 from jobs q
              where q.state = 'queued' and q.type = g.type and q.priority = g.priority
              order by q.type, q.priority, q.vtime limit 1), 0),
    coalesce((select q.vtime from jobs q
              where q.state = 'queued' and q.type = g.type and q.priority = g.priority and q.tenant_id = g.tenant_id
              order by q.type, q.priority, q.tenant_id, q.vtime desc limit 1), 0)
  ) as base,
  -- A paused lane (the whole type, or this tenant's jobs of it) takes new jobs as 'paused'.
  exists (select 1 from paused_lanes p where p.type = g.type and p.tenant_id in ('*', g.tenant_id)) as paused
  from (select distinct tenant_id, type, priority from ${groups}) g`;

/**
 * JobInsertMany: $1 tenant_ids, $2 types, $3 priorities, $4 payloads, $5 max_attempts, $6 run_ats,
 * $7 idempotency_keys, $8 parent_ids, $9 now, $10 notify (Postgres driver: wake listeners),
 * $11 defer (insert as scheduled even when due: the caller's transaction will commit later, and
 * only the promoter, running after that commit, can place the jobs in Redis lanes).
 * Rows come back in id order, which is input order (identity values follow the ordered select);
 * rows whose idempotency key already exists are skipped and looked up by JobGetByIdempotencyKeys.
 */
export const JobInsertMany = `
with input as (
  select * from unnest($1::text[], $2::text[], $3::smallint[], $4::text[]::jsonb[], $5::int[], $6::timestamptz[], $7::text[], $8::bigint[])
    with ordinality as i(tenant_id, type, priority, payload, max_attempts, run_at, idempotency_key, parent_id, ord)
),
-- materialized: the lane lookups run once a (tenant, type, priority) group, not once a row
lanes as materialized (${laneBase("input")}),
inserted as (
  insert into jobs (tenant_id, type, priority, payload, state, max_attempts, run_at, vtime, idempotency_key, parent_id, created_at)
  select i.tenant_id, i.type, i.priority, i.payload,
         case when $11::boolean or i.run_at > $9::timestamptz then 'scheduled'::job_state
              when l.paused then 'paused'::job_state else 'queued'::job_state end,
         i.max_attempts, greatest(i.run_at, $9::timestamptz),
         l.base + row_number() over (partition by i.tenant_id, i.type, i.priority order by i.ord),
         i.idempotency_key, i.parent_id, $9::timestamptz
  from input i join lanes l using (tenant_id, type, priority)
  order by i.ord
  on conflict (tenant_id, type, idempotency_key) where idempotency_key is not null do nothing
  -- Only what the caller does not know already: sending the payload back costs more than the insert.
  returning id::text as id, type, state, vtime::float8 as vtime, idempotency_key
),
notified as (
  select pg_notify('pm_jobs', t.type) from (select distinct type from inserted where state = 'queued') t where $10::boolean
)
select inserted.*, (select count(*) from notified) as _n from inserted order by inserted.id::bigint`;

/** JobGetByIdempotencyKeys: $1 tenant_ids, $2 types, $3 keys (parallel arrays). */
export const JobGetByIdempotencyKeys = `
select ${JOB_COLUMNS} from jobs
where (tenant_id, type, idempotency_key) in (select * from unnest($1::text[], $2::text[], $3::text[]))`;

/**
 * JobClaimMany (Redis driver): ids popped from lanes become active if still queued. $1 ids, $2 now, $3 lease_until, $4 worker.
 * The guards below compare state as text on purpose: written `state = 'queued'` they match the
 * partial index's predicate and the planner ANDs a scan of the whole queued index (14,000 entries,
 * 6 ms a claim with a backlog) with the primary key lookup it needs (50 entries, 0.1 ms).
 */
export const JobClaimMany = `
update jobs set state = 'active', attempt = attempt + 1, started_at = $2, lease_until = $3, worker_id = $4
where id = any($1::bigint[]) and state::text = 'queued'
returning ${claimedColumns()}`;

/**
 * JobClaimNext (Postgres driver): the next queued jobs of the given types by priority and
 * fair virtual time, skipping rows other workers hold. $1 types, $2 limit, $3 now, $4 lease_until, $5 worker.
 */
export const JobClaimNext = `
with candidates as (
  select c.id from unnest($1::text[]) as t(type)
  cross join lateral (
    select id, priority, vtime from jobs
    where state = 'queued' and type = t.type
    order by priority, vtime, id
    limit $2
    for update skip locked
  ) c
  order by c.priority, c.vtime, c.id
  limit $2
)
update jobs j set state = 'active', attempt = j.attempt + 1, started_at = $3, lease_until = $4, worker_id = $5
from candidates where j.id = candidates.id
returning ${claimedColumns("j")}`;

/**
 * Whether job row `j` was taken back by the rescue from the run of attempt `attempt` and no run
 * has claimed it since (a claim raises attempt): the rescue left it queued or paused, or ended it
 * (failed on its last attempt, cancelled on a pending cancel), and stamped last_error with the
 * attempt. The rescue's own conditions for failed and cancelled are repeated so that a person
 * cancelling the queued job afterwards is not taken for the rescue. Compared as text: a cast
 * could make the whole batch's statement fail on one odd last_error.
 */
const rescuedFrom = (attempt: string) => `(j.last_error->>'name' = 'LeaseExpired' and j.last_error->>'attempt' = ${attempt}::text
  and (j.state::text in ('queued', 'paused')
       or (j.state::text in ('failed', 'cancelled') and (j.cancel_requested or j.attempt >= j.max_attempts))))`;

/**
 * JobFinishMany: records outcomes of runs. Guarded by attempt and state so that a worker whose
 * lease was lost (and whose job runs elsewhere now) cannot overwrite the new run.
 * An outcome that arrives after the rescue took the job back, before any other run claimed it,
 * still counts: its worker was slow (Postgres held a lock 8 s, past a 5 s lease), not dead, and
 * the work is done, so running it again would run it twice (97 jobs did so in a chaos run).
 * Once another run has claimed it, the late outcome is dropped and that run's outcome decides.
 * $1 ids, $2 attempts, $3 states, $4 results, $5 errors, $6 run_ats (retries), $7 now,
 * $8 refunds (a snooze: the run does not count as an attempt).
 */
export const JobFinishMany = `
update jobs j set
  state = u.state,
  attempt = case when u.refund then j.attempt - 1 else j.attempt end,
  result = coalesce(u.result, j.result),
  last_error = coalesce(u.error, j.last_error),
  run_at = coalesce(u.run_at, j.run_at),
  finished_at = case when u.state in ('completed', 'failed', 'cancelled') then $7::timestamptz end,
  lease_until = null
from unnest($1::bigint[], $2::int[], $3::text[]::job_state[], $4::text[]::jsonb[], $5::text[]::jsonb[], $6::timestamptz[], $8::boolean[])
  as u(id, attempt, state, result, error, run_at, refund)
where j.id = u.id and j.attempt = u.attempt and (j.state::text = 'active' or ${rescuedFrom("u.attempt")})
returning j.id::text as id, j.state`;

/** The virtual time at the head of each (type, priority) lane of the jobs in CTE `from`. */
const laneHeads = (from: string) => `
  select g.type, g.priority,
    (select q.vtime from jobs q where q.state = 'queued' and q.type = g.type and q.priority = g.priority
     order by q.type, q.priority, q.vtime limit 1) as head
  from (select distinct type, priority from ${from}) g`;

/**
 * A job going back into its lane (rescued, handed back) goes just ahead of the head `h.head`, or
 * keeps its own time if that is later. Not its old time: a time far back would become the lane's
 * head, and a tenant arriving next would get times from there, ahead of everyone's backlog.
 */
const aheadOfHead = "case when j.vtime > h.head then j.vtime else coalesce(h.head - 1, j.vtime) end";

/** Whether job `j`'s lane is paused (for every tenant, or for its own). */
const inPausedLane = "exists (select 1 from paused_lanes p where p.type = j.type and p.tenant_id in ('*', j.tenant_id))";

/**
 * JobReleaseMany: hands active jobs back at shutdown without counting the attempt, straight into
 * their lanes just ahead of the head, as the rescue does (JobRescueExpired): through promotion
 * they got times behind their tenant's backlog, and in a chaos run 50 jobs handed back at a
 * SIGTERM finished last, 29 s later, at the end of a 10,000-job drain. In a paused lane a job
 * waits as 'paused'. $1 ids, $2 attempts, $3 now, $4 notify (Postgres driver).
 */
export const JobReleaseMany = `
with handed as (
  select j.id, j.type, j.priority from jobs j join unnest($1::bigint[], $2::int[]) as u(id, attempt)
    on j.id = u.id and j.attempt = u.attempt
  where j.state::text = 'active'
  for update of j
),
heads as materialized (${laneHeads("handed")}),
released as (
  update jobs j set
    state = case when ${inPausedLane} then 'paused'::job_state else 'queued'::job_state end,
    vtime = ${aheadOfHead},
    run_at = $3, attempt = j.attempt - 1, lease_until = null, worker_id = null
  from handed e join heads h using (type, priority)
  where j.id = e.id
  returning j.id::text as id, j.type, j.priority, j.vtime::float8 as vtime, j.state::text as state
),
notified as (
  select pg_notify('pm_jobs', t.type) from (select distinct type from released where state = 'queued') t where $4::boolean
)
select released.*, (select count(*) from notified) as _n from released`;

/**
 * JobHeartbeatMany: extends leases of running jobs and saves their progress. Returns the jobs
 * still held, with their cancel flag; a job missing from the answer has lost its lease.
 * A lease never gets shorter (heartbeats sent on different connections may commit out of
 * order), and a heartbeat that arrives after the rescue took the job back, before another run
 * claimed it, takes it back again: its worker is alive, so the run goes on rather than being
 * aborted and started over (the job's stale lane entry is skipped by the claim).
 * Rows another transaction holds locked are skipped and come back `busy` (held, as far as this
 * snapshot shows, but not renewed): waiting on them made one locked row hold back the renewal of
 * every job of the pool, and 900 jobs ran twice when 20 rows stayed locked 8 s. The rescue skips
 * locked rows too, so a busy job cannot be taken back while the lock lasts.
 * $1 ids, $2 attempts, $3 progress, $4 lease_until.
 */
export const JobHeartbeatMany = `
with u as (
  select * from unnest($1::bigint[], $2::int[], $3::text[]::jsonb[]) as u(id, attempt, progress)
),
held as (
  select j.id from jobs j join u on j.id = u.id
  where j.attempt = u.attempt and (j.state::text = 'active' or ${rescuedFrom("u.attempt")})
  for update of j skip locked
),
renewed as (
  -- Plus the time this statement waited (behind a lock on jobs, say): the lease was stamped when
  -- the heartbeat was sent, and would otherwise end that much sooner (a duration, see the rescue).
  update jobs j set state = 'active', lease_until = greatest(j.lease_until, $4::timestamptz + (clock_timestamp() - now())),
    finished_at = null,
    progress = coalesce(u.progress, j.progress)
  from held h join u on u.id = h.id
  where j.id = h.id
  returning j.id, j.cancel_requested
)
select id::text as id, cancel_requested, false as busy from renewed
union all
select u.id::text, false, true from u join jobs j on j.id = u.id
where j.attempt = u.attempt and (j.state::text = 'active' or ${rescuedFrom("u.attempt")})
  and u.id not in (select id from held)`;

/**
 * JobPromoteDue: scheduled jobs whose time has come (delays, retries, reaped and released
 * jobs) join their lanes with fair virtual times, or wait as 'paused' in a paused lane.
 * $1 now, $2 limit, $3 notify.
 */
export const JobPromoteDue = `
with due as (
  select id, tenant_id, type, priority from jobs
  where state = 'scheduled' and run_at <= $1
  order by run_at, id
  limit $2
  for update skip locked
),
lanes as materialized (${laneBase("due")}),
ranked as (
  select d.id, l.paused, l.base + row_number() over (partition by d.tenant_id, d.type, d.priority order by d.id) as vtime
  from due d join lanes l using (tenant_id, type, priority)
),
promoted as (
  update jobs j set state = case when r.paused then 'paused'::job_state else 'queued'::job_state end, vtime = r.vtime
  from ranked r where j.id = r.id
  returning j.id::text as id, j.type, j.priority, j.vtime::float8 as vtime, j.state::text as state
),
notified as (
  select pg_notify('pm_jobs', t.type) from (select distinct type from promoted where state = 'queued') t where $3::boolean
)
select promoted.*, (select count(*) from notified) as _n from promoted`;

/**
 * JobRescueExpired: active jobs whose lease ran out before $4 (their worker died or hung) go back
 * to their lanes at once, or to failed when that was their last attempt, or to cancelled when a
 * cancel was pending. A rescued job keeps its place: it goes just ahead of its lane's head
 * (or keeps its own virtual time if that is later), not behind its tenant's backlog, where a
 * rescued high-priority email waited 30-40 s; in a paused lane it waits as 'paused'.
 * The worker's outcome, should it come late, still wins until another run claims the job (see
 * JobFinishMany). $1 now, $2 limit, $3 notify (Postgres driver), $4 expired before (now, or
 * earlier after a database stall; see Scheduler).
 */
export const JobRescueExpired = `
with expired as (
  select id, type, priority from jobs
  where state = 'active' and lease_until < $4
    -- Minus the time this statement waited (a lock on jobs): the heartbeats that waited with it
    -- were stamped before the wait. A difference of two database clock readings, so no clock but
    -- the injected one decides a time (a test's manual clock is unaffected). now() is when the
    -- statement's own transaction began: statement_timestamp() is taken after the wait when the
    -- statement is prepared (measured: 0.00002 s against 1.2 s behind a lock).
    and lease_until < $4::timestamptz - (clock_timestamp() - now())
  order by lease_until limit $2 for update skip locked
),
heads as materialized (${laneHeads("expired")}),
rescued as (
  update jobs j set
    state = case when j.cancel_requested then 'cancelled'::job_state
                 when j.attempt >= j.max_attempts then 'failed'::job_state
                 when ${inPausedLane} then 'paused'::job_state
                 else 'queued'::job_state end,
    vtime = ${aheadOfHead},
    run_at = $1,
    finished_at = case when j.cancel_requested or j.attempt >= j.max_attempts then $1::timestamptz end,
    last_error = jsonb_build_object(
      'name', 'LeaseExpired',
      'message', 'the worker stopped renewing its lease (it crashed, hung or lost its connection)',
      'worker_id', j.worker_id, 'attempt', j.attempt, 'at', $1::timestamptz,
      'retryable', not (j.cancel_requested or j.attempt >= j.max_attempts)),
    lease_until = null
  from expired e join heads h using (type, priority)
  where j.id = e.id
  returning j.id::text as id, j.type, j.priority, j.vtime::float8 as vtime, j.state::text as state
),
notified as (
  select pg_notify('pm_jobs', t.type) from (select distinct type from rescued where state = 'queued') t where $3::boolean
)
select rescued.*, (select count(*) from notified) as _n from rescued`;

/** JobCancel: waiting jobs end at once; active ones get a cancel request their worker acts on. $1 id, $2 tenant (null = any), $3 now. */
export const JobCancel = `
with target as (
  select id, state from jobs where id = $1::bigint and ($2::text is null or tenant_id = $2) for update
),
changed as (
  update jobs j set
    state = case when t.state in ('queued', 'scheduled', 'paused') then 'cancelled'::job_state else j.state end,
    finished_at = case when t.state in ('queued', 'scheduled', 'paused') then $3::timestamptz else j.finished_at end,
    cancel_requested = j.cancel_requested or t.state = 'active'
  from target t where j.id = t.id and t.state in ('queued', 'scheduled', 'paused', 'active')
  returning j.id
),
notified as (select pg_notify('pm_cancel', id::text) from changed)
select t.state as previous_state, (select count(*) from notified) as _n from target t`;

/** JobRetry: a failed or cancelled job runs again from scratch. $1 id, $2 tenant (null = any), $3 now. */
export const JobRetry = `
with target as (
  select id, state from jobs where id = $1::bigint and ($2::text is null or tenant_id = $2) for update
),
changed as (
  update jobs j set state = 'scheduled', run_at = $3, attempt = 0, finished_at = null, started_at = null,
    cancel_requested = false, lease_until = null, worker_id = null, result = null
  from target t where j.id = t.id and t.state in ('failed', 'cancelled')
  returning j.id
)
select t.state as previous_state, (select count(*) from changed) as changed from target t`;

/** JobRetryFailedOfType: the whole dead letter of one type runs again. $1 type, $2 now, $3 limit. */
export const JobRetryFailedOfType = `
with target as (select id from jobs where state = 'failed' and type = $1 limit $3 for update skip locked)
update jobs j set state = 'scheduled', run_at = $2, attempt = 0, finished_at = null, started_at = null,
  cancel_requested = false, lease_until = null, worker_id = null, result = null
from target where j.id = target.id
returning j.id::text as id`;

/** JobGet: $1 id, $2 tenant (null = any). */
export const JobGet = `select ${JOB_COLUMNS} from jobs where id = $1::bigint and ($2::text is null or tenant_id = $2)`;

/**
 * JobList: newest first, keyset-paginated by id. Built from the filters actually given, so each
 * combination is its own statement with its own plan (a prepared `$1 is null or ...` would share
 * one generic plan that suits none of them). Parameters follow the order of the filters.
 */
export function JobList(filters: { tenant: boolean; type: boolean; state: boolean; before: boolean }): string {
  const where: string[] = [];
  let n = 0;
  if (filters.tenant) where.push(`tenant_id = $${++n}`);
  if (filters.type) where.push(`type = $${++n}`);
  if (filters.state) where.push(`state = $${++n}::job_state`);
  if (filters.before) where.push(`id < $${++n}::bigint`);
  return `select ${JOB_COLUMNS} from jobs ${where.length ? `where ${where.join(" and ")}` : ""}
order by jobs.id desc limit $${++n}`;
}

/**
 * JobListQueued (reconcile): queued jobs after a cursor, in id order. $1 after id, $2 limit.
 * `jobs.id`, not `id`: a bare name in ORDER BY means the output column, here the text alias, and
 * text order ("10000" < "59") with a numeric cursor would skip jobs (so would JobList's pages).
 */
export const JobListQueued = `
select ${LANE_COLUMNS} from jobs where state = 'queued' and id > $1::bigint order by jobs.id limit $2`;

/**
 * JobListLaneHeads: the first $2 queued jobs of each (type, priority) lane of the types $1, in
 * claim order: where ids popped from Redis and never claimed would be. One probe a lane on
 * jobs_queued_idx.
 */
export const JobListLaneHeads = `
select h.id::text as id, t.type, p.priority, h.vtime::float8 as vtime
from unnest($1::text[]) as t(type)
cross join (values (0::smallint), (1::smallint), (2::smallint)) as p(priority)
cross join lateral (
  select id, vtime from jobs where state = 'queued' and type = t.type and priority = p.priority
  order by vtime, id limit $2
) h`;

/** The states the live counts report; finished jobs other than failed ones are not counted. */
const COUNTED_STATES = ["queued", "scheduled", "paused", "active", "failed"] as const;

/**
 * One branch a state, so that each reads its own partial index: written `state in (...)`, the
 * planner scanned the whole table, 800 ms a count with 10,000,000 completed jobs retained and
 * none waiting (tools/bench/backlog.ts); a branch costs what its state holds.
 */
const countByState = (columns: string) =>
  COUNTED_STATES.map(
    (state) => `select ${columns}, '${state}'::text as state, count(*)::int as count from jobs where state = '${state}' group by ${columns}`,
  ).join("\nunion all\n");

/** JobCountByTypeAndState: live counts for queues, metrics and scaling. */
export const JobCountByTypeAndState = countByState("type");

/** JobCountByTypePriorityState: the dashboard's grid. */
export const JobCountByTypePriorityState = countByState("type, priority");

/** JobListChildren: jobs a job created (fan-out), oldest first. $1 parent id, $2 limit. */
export const JobListChildren = `
select ${JOB_COLUMNS} from jobs where parent_id = $1::bigint order by jobs.id limit $2`;

/** JobOldestQueued: age of each lane's oldest waiting job. $1 now. */
export const JobOldestQueued = `
select type, extract(epoch from ($1::timestamptz - min(run_at)))::float8 as age_seconds
from jobs where state = 'queued' group by type`;

/** JobDeleteFinished: retention; one bounded batch. $1 state, $2 finished before, $3 limit. */
export const JobDeleteFinished = `
with doomed as (
  select id from jobs where state = $1::job_state and finished_at < $2 order by finished_at limit $3 for update skip locked
)
delete from jobs j using doomed where j.id = doomed.id`;

/**
 * LeaseAcquire: take or renew a named lease (the scheduler's leadership). Returns a row only
 * to the holder, with the previous holder and when its lease ended (a takeover tells the new
 * leader since when the old one had stopped renewing). $1 name, $2 holder, $3 now, $4 expires_at.
 */
export const LeaseAcquire = `
with previous as (select holder, expires_at from leases where name = $1)
insert into leases (name, holder, expires_at) values ($1, $2, $4)
on conflict (name) do update set holder = excluded.holder, expires_at = excluded.expires_at
  where leases.holder = excluded.holder or leases.expires_at < $3
returning holder, (select holder from previous) as previous_holder,
  (select (extract(epoch from expires_at) * 1000)::float8 from previous) as previous_expires_at`;

/** LeaseRelease: $1 name, $2 holder. */
export const LeaseRelease = `delete from leases where name = $1 and holder = $2`;

/**
 * StatsAdd: adds a worker's counters for one minute. $1 types, $2 minutes, $3 completed,
 * $4 failed, $5 retried, $6 duration sums, $7 bucket counts (one JSON array a row).
 */
export const StatsAdd = `
insert into job_stats as s (type, minute, completed, failed, retried, duration_sum, duration_buckets)
select u.type, u.minute, u.completed, u.failed, u.retried, u.duration_sum,
       array(select jsonb_array_elements_text(u.buckets)::bigint)
from unnest($1::text[], $2::timestamptz[], $3::bigint[], $4::bigint[], $5::bigint[], $6::float8[], $7::text[]::jsonb[])
  as u(type, minute, completed, failed, retried, duration_sum, buckets)
on conflict (type, minute) do update set
  completed = s.completed + excluded.completed,
  failed = s.failed + excluded.failed,
  retried = s.retried + excluded.retried,
  duration_sum = s.duration_sum + excluded.duration_sum,
  duration_buckets = array(select a + b from unnest(s.duration_buckets, excluded.duration_buckets) as x(a, b))`;

/** StatsTotals: all-time counters by type (Prometheus counters must never go down). */
export const StatsTotals = `
select type, sum(completed)::float8 as completed, sum(failed)::float8 as failed, sum(retried)::float8 as retried,
       sum(duration_sum)::float8 as duration_sum,
       (select array_agg(total order by i) from (
          select i, sum(b)::float8 as total from job_stats s2, unnest(s2.duration_buckets) with ordinality as x(b, i)
          where s2.type = s.type group by i) t) as buckets
from job_stats s group by type`;

/** StatsSince: completed and failed counts since a time, per type and minute. $1 since. */
export const StatsSince = `
select type, minute, completed::float8 as completed, failed::float8 as failed from job_stats
where minute >= $1 order by minute`;

/**
 * StatsRollup: folds per-minute rows older than $1 into one all-time row per type (minute =
 * epoch), so totals survive while the table stays small.
 */
export const StatsRollup = `
with old as (
  delete from job_stats where minute < $1 and minute > 'epoch'::timestamptz returning *
),
sums as (
  select type, sum(completed) as completed, sum(failed) as failed, sum(retried) as retried,
         sum(duration_sum) as duration_sum,
         (select array_agg(total order by i) from (
            select i, sum(b) as total from old o2, unnest(o2.duration_buckets) with ordinality as x(b, i)
            where o2.type = o.type group by i) t) as buckets
  from old o group by type
)
insert into job_stats as s (type, minute, completed, failed, retried, duration_sum, duration_buckets)
select type, 'epoch'::timestamptz, completed, failed, retried, duration_sum, buckets from sums
on conflict (type, minute) do update set
  completed = s.completed + excluded.completed,
  failed = s.failed + excluded.failed,
  retried = s.retried + excluded.retried,
  duration_sum = s.duration_sum + excluded.duration_sum,
  duration_buckets = array(select a + b from unnest(s.duration_buckets, excluded.duration_buckets) as x(a, b))`;

/**
 * LanePause: records the pause (it survives restarts and catches later enqueues) and moves the
 * lane's queued jobs to 'paused'; running jobs finish. $1 type, $2 tenant ('*' = every tenant).
 */
export const LanePause = `
with lane as (insert into paused_lanes (type, tenant_id) values ($1, $2) on conflict do nothing returning 1),
moved as (
  update jobs set state = 'paused'
  where state = 'queued' and type = $1 and ($2 = '*' or tenant_id = $2)
  returning 1
)
select (select count(*) from lane)::int as lanes, (select count(*) from moved)::int as jobs`;

/**
 * LaneResume: drops the pause and hands the lane's paused jobs to the promoter (as scheduled,
 * due now) unless another pause still covers them (a type-wide pause outlives a tenant's
 * resume). $1 type, $2 tenant ('*' = every tenant), $3 now.
 */
export const LaneResume = `
with gone as (delete from paused_lanes where type = $1 and tenant_id = $2 returning 1),
moved as (
  update jobs j set state = 'scheduled', run_at = $3
  where j.state = 'paused' and j.type = $1 and ($2 = '*' or j.tenant_id = $2)
    and not exists (
      select 1 from paused_lanes p
      where p.type = j.type and p.tenant_id in ('*', j.tenant_id) and not (p.type = $1 and p.tenant_id = $2))
  returning 1
)
select (select count(*) from gone)::int as lanes, (select count(*) from moved)::int as jobs`;

/** LaneListPaused. */
export const LaneListPaused = `select type, tenant_id, paused_at from paused_lanes order by type, tenant_id`;

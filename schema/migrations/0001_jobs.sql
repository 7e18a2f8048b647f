-- The ledger. A job exists once its row commits; Redis only mirrors the queued ones.
create type job_state as enum ('scheduled', 'queued', 'active', 'completed', 'failed', 'cancelled');

create table jobs (
  id               bigint generated always as identity primary key,
  tenant_id        text        not null,
  type             text        not null,
  -- 0 = high, 1 = normal, 2 = low
  priority         smallint    not null default 1 check (priority between 0 and 2),
  payload          jsonb       not null,
  state            job_state   not null,
  attempt          integer     not null default 0,
  max_attempts     integer     not null check (max_attempts >= 1),
  run_at           timestamptz not null,
  -- Virtual start time for fair queuing across tenants inside a lane (type, priority):
  -- a tenant's new job starts after its own queued jobs, but never behind the lane's head.
  vtime            bigint      not null default 0,
  lease_until      timestamptz,
  worker_id        text,
  cancel_requested boolean     not null default false,
  idempotency_key  text,
  parent_id        bigint,
  progress         jsonb,
  result           jsonb,
  last_error       jsonb,
  created_at       timestamptz not null,
  started_at       timestamptz,
  finished_at      timestamptz
);

-- Claim order (Postgres driver) and the lane head: only queued rows, so it stays small.
create index jobs_queued_idx on jobs (type, priority, vtime, id) where state = 'queued';
-- A tenant's tail in a lane, for fair queuing at enqueue.
create index jobs_queued_tenant_idx on jobs (type, priority, tenant_id, vtime) where state = 'queued';
-- Promotion of due scheduled jobs (delays and retries).
create index jobs_scheduled_idx on jobs (run_at) where state = 'scheduled';
-- The reaper: expired leases.
create index jobs_active_idx on jobs (lease_until) where state = 'active';
-- Retention cleanup and dead-letter counts.
create index jobs_finished_idx on jobs (state, finished_at) where state in ('completed', 'failed', 'cancelled');
-- Listing a tenant's jobs, newest first (the API and the dashboard).
create index jobs_tenant_idx on jobs (tenant_id, id);
-- Idempotency keys are unique per tenant and type.
create unique index jobs_idempotency_idx on jobs (tenant_id, type, idempotency_key) where idempotency_key is not null;

-- Per-minute counters the engine keeps (metrics, throughput), written in batches by workers.
create table job_stats (
  type          text        not null,
  minute        timestamptz not null,
  completed     bigint      not null default 0,
  failed        bigint      not null default 0,
  retried       bigint      not null default 0,
  duration_sum  double precision not null default 0,
  -- cumulative-free bucket counts aligned with the histogram bounds in shared/queue/stats.ts
  duration_buckets bigint[] not null,
  primary key (type, minute)
);

-- One leader at a time for the scheduler, on any driver (Neon's HTTP driver has no session locks).
create table leases (
  name        text primary key,
  holder      text        not null,
  expires_at  timestamptz not null
);

-- Bearer API keys: only a SHA-256 hash of (pepper + secret) is stored.
create table api_keys (
  id          text primary key,
  tenant_id   text,
  is_admin    boolean     not null default false,
  name        text        not null,
  key_hash    text        not null unique,
  created_at  timestamptz not null default now(),
  revoked_at  timestamptz,
  check (is_admin or tenant_id is not null)
);

-- Pause and resume: a paused job waits in state 'paused' until its lane is resumed. A lane is a
-- type (tenant_id '*': every tenant) or one tenant's jobs of a type. The table makes pauses
-- survive restarts and applies them to jobs enqueued or promoted while paused.
alter type job_state add value if not exists 'paused' after 'queued';

create table paused_lanes (
  type       text        not null,
  tenant_id  text        not null default '*',
  paused_at  timestamptz not null default now(),
  primary key (type, tenant_id)
);

-- The worker registry: each Node worker process and each edge drain reports here.
create table workers (
  id            text primary key,
  runtime       text        not null check (runtime in ('node', 'edge')),
  pools         text[]      not null,
  concurrency   integer     not null,
  in_flight     integer     not null default 0,
  memory_rss    bigint,
  memory_ratio  double precision,
  -- pools that stopped taking jobs (memory pressure)
  intake_paused text[]      not null default '{}',
  started_at    timestamptz not null,
  heartbeat_at  timestamptz not null
);
create index workers_heartbeat_idx on workers (heartbeat_at);

-- Contact imports (import.contacts): one row a job, its counters and its checkpoint. Each batch
-- of contacts commits with this row's update in one transaction, so a run after a crash skips
-- exactly the rows already committed and ends with the same counts.

create table imports (
  id              text primary key,              -- the job id
  tenant_id       text        not null,
  list_id         text,
  file_url        text        not null,
  status          text        not null default 'running' check (status in ('running', 'completed', 'failed')),
  -- data records read (the header excluded) and committed: the checkpoint
  rows_read       bigint      not null default 0,
  created         bigint      not null default 0,
  updated         bigint      not null default 0,
  invalid         bigint      not null default 0,
  duplicate       bigint      not null default 0,
  -- contacts newly added to list_id
  list_added      bigint      not null default 0,
  -- the error report (row, reason, email), written when the import finishes
  report_url      text,
  error           text,
  created_at      timestamptz not null default now(),
  updated_at      timestamptz not null default now(),
  finished_at     timestamptz
);
create index imports_tenant_idx on imports (tenant_id, created_at);

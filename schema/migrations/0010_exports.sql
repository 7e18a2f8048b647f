-- Exports (export.data): one row per export job, id = the job's id. The CSV itself lives in the
-- Storage port (url); maintenance.cleanup deletes the file and the row once expires_at passes.

create table exports (
  id           bigint primary key,               -- the export.data job's id
  tenant_id    text        not null,
  source       text        not null check (source in ('list', 'segment', 'campaign')),
  source_id    text        not null,
  status       text        not null default 'queued' check (status in ('queued', 'running', 'ready', 'failed')),
  rows         bigint      not null default 0,
  bytes        bigint      not null default 0,
  url          text,
  error        text,
  created_at   timestamptz not null default now(),
  completed_at timestamptz,
  expires_at   timestamptz not null default now() + interval '7 days'
);
create index exports_tenant_idx on exports (tenant_id, id desc);
create index exports_expires_idx on exports (expires_at);

-- Keyset pages of a campaign's sends and events (by id within the campaign).
create index email_sends_campaign_id_idx on email_sends (campaign_id, id) where campaign_id is not null;
create index email_events_campaign_id_idx on email_events (campaign_id, id) where campaign_id is not null;

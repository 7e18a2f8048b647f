-- The email pipeline's data: tenants' contacts, lists, segments, suppressions, templates,
-- campaigns, the send ledger (one row a message: what makes a second send a no-op) and events.

create table tenants (
  id          text primary key,
  name        text        not null,
  -- provider: 'resend' | 'smtp' | 'outbox'; from_email; rate_per_second; ...
  settings    jsonb       not null default '{}',
  created_at  timestamptz not null default now()
);

create table contacts (
  id          bigint generated always as identity primary key,
  tenant_id   text        not null,
  email       text        not null,
  name        text,
  attributes  jsonb       not null default '{}',
  status      text        not null default 'active' check (status in ('active', 'unsubscribed', 'bounced', 'complained')),
  created_at  timestamptz not null default now(),
  updated_at  timestamptz not null default now()
);
-- One contact per address per tenant, whatever its case.
create unique index contacts_tenant_email_idx on contacts (tenant_id, lower(email));

create table lists (
  id            text primary key,
  tenant_id     text        not null,
  name          text        not null,
  contact_count integer     not null default 0,
  created_at    timestamptz not null default now()
);
create index lists_tenant_idx on lists (tenant_id);

create table list_members (
  list_id     text   not null references lists (id) on delete cascade,
  contact_id  bigint not null references contacts (id) on delete cascade,
  added_at    timestamptz not null default now(),
  primary key (list_id, contact_id)
);

create table segments (
  id          text primary key,
  tenant_id   text        not null,
  name        text        not null,
  list_id     text        not null references lists (id) on delete cascade,
  -- [{ "attribute": "plan", "op": "eq" | "neq" | "exists", "value": "pro" }]
  filters     jsonb       not null default '[]',
  created_at  timestamptz not null default now()
);

create table suppressions (
  -- '*' suppresses the address for every tenant (global)
  tenant_id   text        not null,
  email_lower text        not null,
  reason      text        not null check (reason in ('unsubscribe', 'hard_bounce', 'complaint', 'manual')),
  created_at  timestamptz not null default now(),
  primary key (tenant_id, email_lower)
);

create table templates (
  id          text primary key,
  tenant_id   text        not null,
  name        text        not null,
  subject     text        not null,
  -- [{ "type": "heading" | "text" | "button" | "divider", "text": "...", "href": "..." }], with {{variables}}
  blocks      jsonb       not null,
  created_at  timestamptz not null default now(),
  updated_at  timestamptz not null default now()
);
create index templates_tenant_idx on templates (tenant_id);

create table campaigns (
  id                text primary key,
  tenant_id         text        not null,
  name              text        not null,
  template_id       text        not null references templates (id),
  list_id           text        references lists (id),
  segment_id        text        references segments (id),
  status            text        not null default 'draft'
                    check (status in ('draft', 'scheduled', 'sending', 'paused', 'sent', 'cancelled')),
  scheduled_at      timestamptz,
  -- fan-out checkpoint: contacts with id <= fanout_cursor have their sends; fanout_upper fixed at start
  fanout_cursor     bigint      not null default 0,
  fanout_upper      bigint,
  fanout_done       boolean     not null default false,
  recipients        integer     not null default 0,
  sent              integer     not null default 0,
  skipped           integer     not null default 0,
  failed            integer     not null default 0,
  created_at        timestamptz not null default now(),
  started_at        timestamptz,
  finished_at       timestamptz
);
create index campaigns_tenant_idx on campaigns (tenant_id);

-- The send ledger: one row a message. idempotency_key is the job (transactional mail) or the
-- campaign and contact (campaign mail): a second run finds the row and does not send again.
create table email_sends (
  id                  bigint generated always as identity primary key,
  tenant_id           text        not null,
  idempotency_key     text        not null unique,
  job_id              bigint,
  campaign_id         text,
  contact_id          bigint,
  recipient           text        not null,
  provider            text,
  provider_message_id text,
  status              text        not null check (status in ('sending', 'sent', 'skipped', 'failed')),
  detail              text,
  created_at          timestamptz not null default now(),
  sent_at             timestamptz
);
create index email_sends_campaign_idx on email_sends (campaign_id, status) where campaign_id is not null;

create table email_events (
  id          bigint generated always as identity primary key,
  tenant_id   text        not null,
  campaign_id text,
  send_id     bigint,
  type        text        not null,
  data        jsonb       not null default '{}',
  created_at  timestamptz not null default now()
);
create index email_events_campaign_idx on email_events (campaign_id, type) where campaign_id is not null;

-- The embedded default's mail provider: messages are stored here for people to read.
create table outbox_messages (
  id              bigint generated always as identity primary key,
  tenant_id       text        not null,
  idempotency_key text        not null unique,
  from_address    text        not null,
  to_address      text        not null,
  subject         text        not null,
  html            text        not null,
  text            text        not null,
  headers         jsonb       not null default '{}',
  created_at      timestamptz not null default now()
);

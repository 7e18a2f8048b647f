-- Customer webhooks (Standard Webhooks): the endpoints a tenant registered and the log of every
-- delivery attempt. Secrets are stored as given to the customer ("whsec_" + base64) because
-- signing needs them; they are shown once (at creation and rotation) and never listed or logged.

create table webhook_endpoints (
  id                          text primary key,              -- whe_…
  tenant_id                   text        not null,
  url                         text        not null,
  -- Event types this endpoint receives; empty = all.
  event_types                 text[]      not null default '{}',
  secret                      text        not null,
  -- During a rotation the previous secret signs too, until it expires.
  previous_secret             text,
  previous_secret_expires_at  timestamptz,
  status                      text        not null default 'active' check (status in ('active', 'disabled')),
  disabled_reason             text,
  -- First failed delivery since the last success; an endpoint failing for too long is disabled.
  failing_since               timestamptz,
  created_at                  timestamptz not null default now()
);
create index webhook_endpoints_tenant_idx on webhook_endpoints (tenant_id, created_at);

create table webhook_deliveries (
  id             bigint generated always as identity primary key,
  endpoint_id    text        not null references webhook_endpoints (id) on delete cascade,
  tenant_id      text        not null,
  event_id       text        not null,
  attempt        integer     not null,
  at             timestamptz not null default now(),
  duration_ms    integer,
  status_code    integer,
  -- ok: 2xx; failed: any other answer or a network error; refused: never sent (SSRF guard, disabled endpoint).
  outcome        text        not null check (outcome in ('ok', 'failed', 'refused')),
  error          text,
  -- The first 2 KiB of the answer.
  response_body  text check (octet_length(response_body) <= 2048)
);
create index webhook_deliveries_endpoint_idx on webhook_deliveries (endpoint_id, id desc);
create index webhook_deliveries_event_idx on webhook_deliveries (endpoint_id, event_id);

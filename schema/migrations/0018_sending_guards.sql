-- Sending guards: a tenant whose hard-bounce or complaint rate over a sliding window passes its
-- threshold has its campaign mail paused (shared/email/sending-guards.ts).

-- The rates are counts over a window of the events the pipeline already writes: 'sent' (one a
-- message, from the send ledger's final step), 'bounced' and 'complained' (from the provider's
-- reports). One range scan a type and tenant reads them, whatever else the tenant sent before
-- the window; without it a check read every event of the tenant (a million-send tenant: the
-- whole history, every check). It costs one more index entry an event written.
create index email_events_tenant_type_time_idx on email_events (tenant_id, type, created_at);

-- A check looks only at tenants with bounces or complaints recorded since the last check: this
-- index holds those events alone (a few in a hundred), in id order, so the next page after the
-- last one seen is one short range scan however many sends the table holds.
create index email_events_feedback_idx on email_events (id) where type in ('bounced', 'complained');

-- One row a tenant whose guard tripped once. state: 'tripped' (its campaigns are held, and any
-- it starts are paused too, until it resumes one: that is its acknowledgement), 'acknowledged'
-- (the rates are counted from acknowledged_at on, so the old events that tripped it do not trip
-- it again; back to 'clear' once the whole window is under the thresholds), or 'clear'.
-- trips counts the trips: the id of each trip's webhook event and owner email, so each goes out once.
create table sending_guards (
  tenant_id        text        primary key,
  state            text        not null check (state in ('tripped', 'acknowledged', 'clear')),
  trips            integer     not null default 0,
  -- The last trip: when, why (the rates, counts, thresholds and window then) and what it paused.
  tripped_at       timestamptz,
  trip             jsonb       not null default '{}',
  acknowledged_at  timestamptz,
  updated_at       timestamptz not null default now()
);
create index sending_guards_state_idx on sending_guards (state) where state <> 'clear';

-- How far the checks have read the bounce and complaint events (one row).
create table sending_guard_cursor (
  singleton      boolean primary key default true check (singleton),
  last_event_id  bigint  not null default 0,
  checked_at     timestamptz
);

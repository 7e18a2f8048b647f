-- Engagement tracking (issue 16): opens and clicks of campaign mail (shared/email/engagement-buffer.ts).

-- Per campaign, whether its mail carries the open pixel and tracked links; null: the tenant's
-- setting (tenants.settings.tracking), whose defaults are opens off (privacy), clicks on.
alter table campaigns
  add column track_opens  boolean,
  add column track_clicks boolean;

-- The first human open and click of each message: the unique counts, and the one email.opened /
-- email.clicked webhook a message (set where null, so only the first writer publishes).
-- Nullable columns without a default: a catalogue change, no rewrite of the ledger.
alter table email_sends
  add column first_opened_at  timestamptz,
  add column first_clicked_at timestamptz;

-- The contact's latest human engagement, for "most engaged first" and segments.
alter table contacts
  add column last_opened_at  timestamptz,
  add column last_clicked_at timestamptz;

-- The links of a campaign's mail, by their index in the message (the token carries the index
-- and the URL, sealed; this table names each index's URL for the per-link report). Written on
-- the first click of each link, not at send time: no write on the send path.
create table campaign_links (
  tenant_id    text    not null,
  campaign_id  text    not null,
  link_index   integer not null check (link_index >= 0),
  url          text    not null,
  primary key (tenant_id, campaign_id, link_index),
  foreign key (tenant_id, campaign_id) references campaigns (tenant_id, id) on delete cascade
);

-- Every hit, written in bulk (one statement a flush of the per-process buffer). machine: a
-- scanner, a prefetching proxy or a client that is not a person (the rules in
-- shared/email/machine-hits.ts), counted apart.
create table email_engagement (
  id           bigint generated always as identity primary key,
  tenant_id    text        not null,
  campaign_id  text        not null,
  send_id      bigint      not null,
  kind         text        not null check (kind in ('open', 'click')),
  link_index   integer,
  machine      boolean     not null,
  at           timestamptz not null,
  foreign key (tenant_id, campaign_id) references campaigns (tenant_id, id) on delete cascade,
  foreign key (tenant_id, send_id) references email_sends (tenant_id, id) on delete cascade
);
-- The report reads a campaign's hits (totals, per link, per minute) in one range scan.
create index email_engagement_campaign_idx on email_engagement (tenant_id, campaign_id, at);

-- Events from the other jobs to tenants' webhooks: what makes each one go out exactly once.

-- When the campaign's end (campaign.sent or campaign.cancelled) was published; null until then.
-- Publishing is keyed by the campaign, then this is set: whoever sees it null publishes again,
-- and the webhook jobs' idempotency keys make that second publication a no-op.
alter table campaigns add column end_event_at timestamptz;

-- Bounces and complaints reported by the mail provider arrive on its webhook and are retried by
-- it: the provider's id of the event (Resend: the svix-id), prefixed by the provider's name,
-- makes a repeated report record nothing.
alter table email_events add column provider_event_id text;
create unique index email_events_provider_event_idx on email_events (provider_event_id) where provider_event_id is not null;
-- A provider report names the message by the provider's id.
create index email_sends_provider_message_idx on email_sends (provider_message_id) where provider_message_id is not null;

-- Who is told when the platform disables an endpoint (410 Gone, or failing for days), and when
-- it was disabled (with the endpoint's id, the key that makes the notice go out once).
alter table webhook_endpoints add column notify_email text, add column disabled_at timestamptz;

-- A campaign batch sent to the provider in one request is recorded before the request goes
-- out: if the process dies with the request in flight, the next run resends exactly that batch
-- (same members, same order, hence the same Idempotency-Key), which the provider deduplicates,
-- instead of regrouping the messages into new requests that it would deliver again.
alter table email_sends add column batch_key text, add column batch_position integer;
create index email_sends_batch_idx on email_sends (batch_key) where batch_key is not null;

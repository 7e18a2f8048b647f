-- A message's provider identity is fixed by the first request that may have carried it.
--
-- A message sent alone goes under its own key (`job:<id>`, `camp:<campaign>:<address>`); in a
-- batch, under the batch's key (Resend takes one key per request). A chaos run found the gap:
-- a message sent alone by a worker killed before the ledger heard back was retried inside a
-- batch, whose key the provider had never seen, and was delivered twice (16 of 3,000). The
-- ledger now says, before each request, how the message goes: batch_key (0007) for a batch,
-- alone_at for a request of its own. A message with alone_at set is only ever sent alone again,
-- to the same provider; one with batch_key only in that same batch.
alter table email_sends add column alone_at timestamptz;

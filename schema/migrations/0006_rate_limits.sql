-- GCRA rate-limit state for the Postgres backend of shared/email/rate-limit.ts (the Redis
-- backend keeps the same number in a key with PX expiry). One row a key (`provider:resend`,
-- `tenant:<id>`): a small table, updated in place by one upsert a take.
--
-- Unlogged: no WAL for a hot, tiny table whose loss only forgets recent sends (after a crash
-- every key starts with a full burst, as after a Redis flush). A row whose tat is in the past
-- means the same as no row, so stale rows are harmless.
create unlogged table rate_limits (
  key      text primary key,
  -- theoretical arrival time: ms since the epoch (fractional) at which the bucket is empty again
  tat      double precision not null,
  -- the last take's decision: RETURNING sees only the new row, and a denied take keeps tat as it was
  allowed  boolean not null
);

-- Separate from 0002: a new enum value cannot be used in the transaction that adds it.
create index jobs_paused_idx on jobs (type, tenant_id) where state = 'paused';

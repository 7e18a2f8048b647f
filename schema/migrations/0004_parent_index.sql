-- A job's children (fan-out: a campaign's sends), for the dashboard's job page.
create index jobs_parent_idx on jobs (parent_id) where parent_id is not null;

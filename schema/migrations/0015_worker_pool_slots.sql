-- Each pool's own slots in a worker process ({"email": 50, "default": 10, "import": 2}): the
-- scaling signals showed every pool the process's total (62). Null for a worker whose pools
-- share one limit (an edge drain) or that predates this column: its total is used.
alter table workers add column pool_concurrency jsonb;

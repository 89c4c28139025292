-- A charge's lease generation: every taking of the lease (a request's
-- acquire, a sweeper's claim of a placing charge or of a pending refund)
-- raises it. A request is judged under one taking, and what it was judged
-- to be is written only while that very taking holds: the owner alone
-- cannot tell an older taking of a process from its newer one (its
-- sweeper may have claimed the charge again while the judgement stalled).
-- A column with a constant default rewrites nothing, but the statement
-- takes the table's exclusive lock: behind a long transaction holding any
-- lock on charges it would wait, and every charge read and write would
-- queue behind it. It gives up after a few seconds instead (the migration
-- fails and is run again by the next start).
SET LOCAL lock_timeout = '5s';
ALTER TABLE charges ADD COLUMN lease_gen bigint NOT NULL DEFAULT 0;

-- A charge's lease generation: every taking of the lease (a request's
-- acquire, a sweeper's claim of a placing charge or of a pending refund)
-- raises it. A request is judged under one taking, and what it was judged
-- to be is written only while that very taking holds: the owner alone
-- cannot tell an older taking of a process from its newer one (its
-- sweeper may have claimed the charge again while the judgement stalled).
-- A column with a constant default rewrites nothing.
ALTER TABLE charges ADD COLUMN lease_gen bigint NOT NULL DEFAULT 0;

-- A bill's updates on the hot path (its placement recorded: status,
-- pg_tx_id, updated_at; a decline; a refund's reservation) can be HOT
-- updates: Postgres writes the new row version on the same page and no
-- index entry, because no index of bills covers, or filters on, a column
-- those updates change. Every index below is on columns that never change
-- (bill_id, created_at) and filters only on settled_at, which is set once,
-- when the bill reaches its final status.

-- A callback that comes before its bill's placement is recorded, and a
-- PaySSam callback, which names the bill by an id derived from payflow's,
-- find the bill by the start of its id, whatever its status (the query
-- filters on status).
DROP INDEX IF EXISTS bills_pending_id;
CREATE INDEX bills_id_c ON bills ((bill_id COLLATE "C"));

-- Nothing looks a bill up by the PG's id any more (see above).
DROP INDEX IF EXISTS bills_pg_tx_id;

-- Reconciliation reads the bills not settled yet (requested, abandoned,
-- and the few still pending) through this index instead of one that
-- filtered on status. A settleable bill has no settled_at: every statement
-- that sets settled_at makes the bill final in the same update; the
-- clearing below only guards rows written by hand.
DROP INDEX IF EXISTS bills_awaiting;
UPDATE bills SET settled_at = NULL WHERE status IN ('requested', 'abandoned') AND settled_at IS NOT NULL;
CREATE INDEX bills_unsettled ON bills (created_at) WHERE settled_at IS NULL;

-- Room on each page for a row's next version. Applies to pages written
-- from now on; nothing is rewritten.
ALTER TABLE bills SET (fillfactor = 60);

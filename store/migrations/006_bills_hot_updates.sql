---- tern: disable-tx ----
-- A bill's updates on the hot path (its placement recorded: status,
-- pg_tx_id, updated_at; a refund's reservation) can be HOT updates:
-- Postgres writes the new row version on the same page and no index
-- entry, because no index of bills covers, or filters on, a column those
-- updates change. Every index below is on columns that never change
-- (bill_id, created_at) and filters only on settled_at, which is set once,
-- when the bill reaches its final status (declined included).
--
-- Run statement by statement, outside a transaction: the indexes are built
-- and dropped CONCURRENTLY, so reads and writes of bills go on meanwhile.
-- A run that stops part-way is run again from the start: an index it left
-- half built (invalid) is dropped and built again.

-- A callback that comes before its bill's placement is recorded, and a
-- PaySSam callback, which names the bill by an id derived from payflow's,
-- find the bill by the start of its id, whatever its status.
DROP INDEX CONCURRENTLY IF EXISTS bills_id_c;
CREATE INDEX CONCURRENTLY bills_id_c ON bills ((bill_id COLLATE "C"));

-- Reconciliation reads the bills not settled yet (requested, abandoned,
-- and the few still pending).
DROP INDEX CONCURRENTLY IF EXISTS bills_unsettled;
CREATE INDEX CONCURRENTLY bills_unsettled ON bills (created_at) WHERE settled_at IS NULL;

-- The indexes these replace: pending bills by id prefix, bills by the PG's
-- id (nothing looks a bill up by it any more), bills awaiting settlement.
DROP INDEX CONCURRENTLY IF EXISTS bills_pending_id;
DROP INDEX CONCURRENTLY IF EXISTS bills_pg_tx_id;
DROP INDEX CONCURRENTLY IF EXISTS bills_awaiting;

-- A settleable bill has no settled_at (reconciliation reads only bills
-- without it); a final one has it. Earlier releases did not set it on a
-- decline. Last, after the index builds, so that fewer declines of the
-- previous release's processes still running come after it (those stay in
-- bills_unsettled, which costs reconciliation a row it skips, nothing more).
UPDATE bills SET settled_at = NULL WHERE status IN ('pending', 'requested', 'abandoned') AND settled_at IS NOT NULL;
UPDATE bills SET settled_at = updated_at WHERE status = 'declined' AND settled_at IS NULL;

-- Room on each page for a row's next version. Applies to pages written
-- from now on; nothing is rewritten.
ALTER TABLE bills SET (fillfactor = 60);

-- A PG that gives a bill's pay URL only when the bill is created (PaySSam's
-- shortUrl) cannot be asked for it again: the URL it gave is stored with
-- the bill, apart from the API's cache (url, url_expires_at), and never
-- overwritten.
ALTER TABLE bills ADD COLUMN pg_url text, ADD COLUMN pg_url_expires_at timestamptz;

-- Callbacks that name a bill by the PG's own id (PaySSam's bill id, which is
-- the bill's pg_tx_id) find it through this index.
CREATE INDEX bills_pg_tx_id ON bills (pg_tx_id) WHERE pg_tx_id IS NOT NULL;

-- A callback can come before its bill's placement is recorded (an
-- auto-pay approved at once): such a bill is still pending, has no pg_tx_id
-- yet, and is found by the start of its id instead. Only pending bills are
-- in this index, so it stays small.
CREATE INDEX bills_pending_id ON bills ((bill_id COLLATE "C")) WHERE status = 'pending';

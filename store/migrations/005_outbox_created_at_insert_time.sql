-- An outbox row's created_at is the time the row was written, not the time
-- its transaction began. The relay's lag (payflow_outbox_relay_lag_seconds)
-- is measured from it: a group-commit flush writes many charges' rows in
-- one transaction, and the time its other statements took before this row
-- is the worker's latency, not the relay's. Changing a default rewrites
-- nothing.
ALTER TABLE outbox ALTER COLUMN created_at SET DEFAULT clock_timestamp();

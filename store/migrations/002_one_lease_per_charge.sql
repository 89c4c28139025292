-- One lease per charge. Every action on a charge (placing a bill, a refund,
-- a re-payment, a cancel) happens under the charge's lease, so two workers
-- never act on one charge at once, whichever process Kafka handed the
-- request to. A refund in flight is found by its pending row; its own lease
-- columns are no longer used (kept, so that processes of the previous
-- release still running during the upgrade do not fail on them; stop them
-- before starting this release: they do not take the charge's lease).
DROP INDEX IF EXISTS refunds_pending;
CREATE INDEX refunds_pending ON refunds (charge_pk) WHERE status = 'pending';

-- A refund's idempotency key at the PG, stored so that it never changes
-- under a refund in flight. Refunds of the previous release keep the key
-- they were sent with (merchant/refund_id, merchant/repay:<id>); new ones
-- are named by their row ('rf-<id>', see FinishRefund's callers), which no
-- merchant id can make ambiguous. A sweep waits for retry_after.
ALTER TABLE refunds ADD COLUMN pg_refund_id text, ADD COLUMN retry_after timestamptz;
UPDATE refunds SET pg_refund_id = merchant_id || '/' || refund_id;

-- Refund ids live in one namespace per kind: a merchant's refund "repay:X"
-- and the refund step of re-payment "X" are different refunds.
ALTER TABLE refunds DROP CONSTRAINT refunds_merchant_id_refund_id_key;
UPDATE refunds SET refund_id = substr(refund_id, length('repay:') + 1)
    WHERE kind = 'repay' AND refund_id LIKE 'repay:%';
ALTER TABLE refunds ADD CONSTRAINT refunds_key UNIQUE (merchant_id, kind, refund_id);

-- A request's rejection is its result: recorded with the request's event
-- id, so a redelivery replays it instead of judging the request again
-- against a later state; and with the request's own key and content (a
-- refund id, a repay id), so the same request re-sent under a new event id
-- is not judged again either.
CREATE TABLE rejected_requests (
    source          text NOT NULL,
    event_id        text NOT NULL,
    request_key     text,
    request_hash    bytea,
    reason          text NOT NULL,
    rejected_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (source, event_id)
);
CREATE INDEX rejected_requests_key ON rejected_requests (request_key) WHERE request_key IS NOT NULL;

-- Reconciliation per bill: one bill the PG cannot answer for is backed off
-- on its own and the rest proceed. Bills given up on (abandoned) stay under
-- reconciliation for a while, so a late payment is found.
ALTER TABLE bills ADD COLUMN reconcile_after timestamptz,
                  ADD COLUMN reconcile_attempts integer NOT NULL DEFAULT 0,
                  ADD COLUMN reconcile_error text;
CREATE INDEX bills_awaiting ON bills (updated_at) WHERE status IN ('requested', 'abandoned');

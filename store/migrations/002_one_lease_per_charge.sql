-- One lease per charge. Every action on a charge (placing a bill, a refund,
-- a re-payment, a cancel) happens under the charge's lease, so two workers
-- never act on one charge at once, whichever process Kafka handed the
-- request to. A refund in flight is found by its pending row; it no longer
-- carries a lease of its own.
ALTER TABLE refunds DROP COLUMN lease_owner, DROP COLUMN lease_until;
DROP INDEX IF EXISTS refunds_pending;
CREATE INDEX refunds_pending ON refunds (charge_pk) WHERE status = 'pending';

-- Refund ids live in one namespace per kind: a merchant's refund "repay:X"
-- and the refund step of re-payment "X" are different refunds.
ALTER TABLE refunds DROP CONSTRAINT refunds_merchant_id_refund_id_key;
UPDATE refunds SET refund_id = substr(refund_id, length('repay:') + 1)
    WHERE kind = 'repay' AND refund_id LIKE 'repay:%';
ALTER TABLE refunds ADD CONSTRAINT refunds_key UNIQUE (merchant_id, kind, refund_id);

-- A request's rejection is its result: recorded with the request's event
-- id, so a redelivery replays it instead of judging the request again
-- against a later state.
CREATE TABLE rejected_requests (
    source          text NOT NULL,
    event_id        text NOT NULL,
    reason          text NOT NULL,
    rejected_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (source, event_id)
);

-- Reconciliation per bill: one bill the PG cannot answer for is backed off
-- on its own and the rest proceed. Bills given up on (abandoned) stay under
-- reconciliation for a while, so a late payment is found.
ALTER TABLE bills ADD COLUMN reconcile_after timestamptz,
                  ADD COLUMN reconcile_attempts integer NOT NULL DEFAULT 0,
                  ADD COLUMN reconcile_error text;
CREATE INDEX bills_awaiting ON bills (updated_at) WHERE status IN ('requested', 'abandoned');

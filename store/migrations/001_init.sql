-- payflow's own tables. Every money column is whole KRW in a bigint.

-- Registered payment methods of platform-app members. The billing key is
-- stored only encrypted (AES-GCM, see package vault); label is what users see.
CREATE TABLE payment_methods (
    id              uuid PRIMARY KEY,
    member_id       text NOT NULL,
    label           text NOT NULL,
    billing_key_enc bytea NOT NULL,
    is_default      boolean NOT NULL DEFAULT false,
    status          text NOT NULL DEFAULT 'active'
                    CHECK (status IN ('active', 'expired', 'invalid', 'deleted')),
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX payment_methods_member ON payment_methods (member_id) WHERE status <> 'deleted';
-- At most one default method per member.
CREATE UNIQUE INDEX payment_methods_one_default ON payment_methods (member_id)
    WHERE is_default AND status <> 'deleted';

-- One row per merchant charge: (merchant_id, charge_id) is the idempotency
-- key, request_hash detects the same key sent with different content.
CREATE TABLE charges (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    merchant_id     text NOT NULL,
    charge_id       text NOT NULL,
    request_hash    bytea NOT NULL,
    request_event_id text NOT NULL,
    amount          bigint NOT NULL CHECK (amount > 0 AND amount <= 100000000),
    order_name      text NOT NULL,
    member_id       text,
    phone           text NOT NULL,
    customer_name   text NOT NULL,
    state           text NOT NULL,
    current_bill_id text,
    attempts        integer NOT NULL DEFAULT 0,
    failure_reason  text,
    -- The lease: only its holder talks to the PG about this charge. A worker
    -- that dies leaves it to expire; the next holder looks the bill up first.
    lease_owner     text,
    lease_until     timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (merchant_id, charge_id)
);
CREATE INDEX charges_placing ON charges (lease_until) WHERE state = 'placing';
CREATE INDEX charges_requested ON charges (updated_at) WHERE state = 'requested';

-- Every bill payflow ever created, stored before the PG hears of it. A charge
-- has several over its life: an auto-pay that was declined, the KakaoTalk
-- bill that replaced it, the new bill of a re-payment.
CREATE TABLE bills (
    bill_id         text PRIMARY KEY,
    charge_pk       bigint NOT NULL REFERENCES charges (id),
    method          text NOT NULL CHECK (method IN ('auto_pay', 'kakao_bill')),
    method_id       uuid,
    fallback_reason text,
    -- Set on the bills of a re-payment (repays.id): their placement is
    -- reported as payment.repay.processed.
    repay_pk        bigint,
    amount          bigint NOT NULL CHECK (amount > 0 AND amount <= 100000000),
    status          text NOT NULL,
    decline_code    text,
    pg_tx_id        text,
    paid_amount     bigint NOT NULL DEFAULT 0,
    refunded_amount bigint NOT NULL DEFAULT 0,
    -- Refunds in flight hold their amount here, so two concurrent refunds
    -- can never together exceed what was paid: the CHECK below is the guard.
    refund_reserved bigint NOT NULL DEFAULT 0,
    url             text,
    url_expires_at  timestamptz,
    settled_at      timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    CHECK (refunded_amount >= 0 AND refund_reserved >= 0),
    CHECK (refunded_amount + refund_reserved <= paid_amount)
);
CREATE INDEX bills_charge ON bills (charge_pk);

-- Refunds, including the refund step of a re-payment (kind = 'repay').
CREATE TABLE refunds (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    merchant_id     text NOT NULL,
    refund_id       text NOT NULL,
    kind            text NOT NULL DEFAULT 'refund' CHECK (kind IN ('refund', 'repay')),
    charge_pk       bigint NOT NULL REFERENCES charges (id),
    bill_id         text NOT NULL REFERENCES bills (bill_id),
    amount          bigint NOT NULL CHECK (amount > 0 AND amount <= 100000000),
    reason          text NOT NULL DEFAULT '',
    request_hash    bytea NOT NULL,
    status          text NOT NULL CHECK (status IN ('pending', 'succeeded', 'failed')),
    failure_reason  text,
    pg_tx_id        text,
    lease_owner     text,
    lease_until     timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (merchant_id, refund_id)
);
CREATE INDEX refunds_pending ON refunds (lease_until) WHERE status = 'pending';

-- Re-payments: refund the old bill, then place a new one. step records how
-- far it got so a crash resumes instead of repeating or skipping a step.
CREATE TABLE repays (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    merchant_id     text NOT NULL,
    repay_id        text NOT NULL,
    charge_pk       bigint NOT NULL REFERENCES charges (id),
    old_bill_id     text NOT NULL REFERENCES bills (bill_id),
    new_bill_id     text,
    amount          bigint NOT NULL CHECK (amount > 0 AND amount <= 100000000),
    request_hash    bytea NOT NULL,
    step            text NOT NULL CHECK (step IN ('refunding', 'placing', 'done', 'failed')),
    failure_reason  text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (merchant_id, repay_id)
);
CREATE INDEX repays_charge ON repays (charge_pk);

-- Webhook ids already applied, per provider: a replay is answered 200 and
-- changes nothing.
CREATE TABLE webhook_receipts (
    provider        text NOT NULL,
    webhook_id      text NOT NULL,
    bill_id         text NOT NULL,
    status          text NOT NULL,
    outcome         text NOT NULL,
    received_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (provider, webhook_id)
);

-- The transactional outbox. A row is written in the same transaction as the
-- state change it reports; the relay publishes unpublished rows in id order.
-- event_id is derived from the transition, so writing one transition twice
-- is a unique violation, not a duplicate event.
CREATE TABLE outbox (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id        uuid NOT NULL UNIQUE,
    topic           text NOT NULL,
    key             bytea NOT NULL,
    value           bytea NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    published_at    timestamptz
);
CREATE INDEX outbox_unpublished ON outbox (id) WHERE published_at IS NULL;

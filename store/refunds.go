package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/payflow/payflow/outbox"
	"github.com/payflow/payflow/payflow"
)

// Refund is a refund row.
type Refund struct {
	PK          int64
	MerchantID  string
	RefundID    string
	Kind        string // "refund", or "repay" for the refund step of a re-payment
	ChargePK    int64
	ChargeID    string
	BillID      string
	Amount      int64
	Reason      string
	RequestHash []byte
	Status      string // pending, succeeded, failed
}

// ErrExceedsPaid: the refund would take the bill's refunds above what was
// paid. Nothing was written.
var ErrExceedsPaid = errors.New("store: refund exceeds the paid amount")

// ErrNotPaid: the charge's current bill is not paid, so there is nothing to
// refund.
var ErrNotPaid = errors.New("store: bill is not paid")

// NewRefund is a refund about to be sent to the PG.
type NewRefund struct {
	MerchantID  string
	RefundID    string
	Kind        string
	ChargePK    int64
	BillID      string
	Amount      int64
	Reason      string
	RequestHash []byte
	LeaseOwner  string
	Lease       time.Duration
}

// CreateRefund reserves the amount on the paid bill and stores the refund
// in one statement. The reservation is the guard against over-refunding:
// the bill row's update re-checks the remaining amount after any concurrent
// refund commits, and a CHECK constraint backs it. created is false when
// the refund id exists (nothing is written then).
func (s *Store) CreateRefund(ctx context.Context, r NewRefund) (pk int64, created bool, err error) {
	var exists bool
	var reserved *int64
	err = s.Pool.QueryRow(ctx, `
WITH existing AS (
	SELECT id FROM refunds WHERE merchant_id = $1 AND refund_id = $2
), bill AS (
	UPDATE bills SET refund_reserved = refund_reserved + $5, updated_at = now()
	WHERE bill_id = $4 AND status = 'paid' AND NOT EXISTS (SELECT 1 FROM existing)
	  AND refunded_amount + refund_reserved + $5 <= paid_amount
	RETURNING bill_id
), r AS (
	INSERT INTO refunds (merchant_id, refund_id, kind, charge_pk, bill_id, amount, reason, request_hash, status, lease_owner, lease_until)
	SELECT $1, $2, $3, $6, bill_id, $5, $7, $8, 'pending', $9, now() + $10::interval FROM bill
	RETURNING id
)
SELECT EXISTS (SELECT 1 FROM existing), (SELECT id FROM r)`,
		r.MerchantID, r.RefundID, r.Kind, r.BillID, r.Amount, r.ChargePK, r.Reason, r.RequestHash, r.LeaseOwner, r.Lease,
	).Scan(&exists, &reserved)
	if err != nil {
		// A concurrent insert of the same refund id.
		if isUniqueViolation(err) {
			return 0, false, nil
		}
		return 0, false, fmt.Errorf("store: create refund: %w", err)
	}
	if exists {
		return 0, false, nil
	}
	if reserved == nil {
		var status string
		if err := s.Pool.QueryRow(ctx, `SELECT status FROM bills WHERE bill_id = $1`, r.BillID).Scan(&status); err != nil {
			return 0, false, fmt.Errorf("store: create refund: %w", err)
		}
		if status != string(payflow.BillPaid) {
			return 0, false, ErrNotPaid
		}
		return 0, false, ErrExceedsPaid
	}
	return *reserved, true, nil
}

const refundColumns = `r.id, r.merchant_id, r.refund_id, r.kind, r.charge_pk, c.charge_id, r.bill_id, r.amount, r.reason, r.request_hash, r.status`

func scanRefund(row pgx.Row) (Refund, error) {
	var r Refund
	err := row.Scan(&r.PK, &r.MerchantID, &r.RefundID, &r.Kind, &r.ChargePK, &r.ChargeID, &r.BillID, &r.Amount, &r.Reason, &r.RequestHash, &r.Status)
	if errors.Is(err, pgx.ErrNoRows) {
		return r, ErrNotFound
	}
	return r, err
}

// RefundByKey reads a merchant's refund.
func (s *Store) RefundByKey(ctx context.Context, merchantID, refundID string) (Refund, error) {
	return scanRefund(s.Pool.QueryRow(ctx, `SELECT `+refundColumns+` FROM refunds r JOIN charges c ON c.id = r.charge_pk
		WHERE r.merchant_id = $1 AND r.refund_id = $2`, merchantID, refundID))
}

// RefundByPK reads a refund.
func (s *Store) RefundByPK(ctx context.Context, pk int64) (Refund, error) {
	return scanRefund(s.Pool.QueryRow(ctx, `SELECT `+refundColumns+` FROM refunds r JOIN charges c ON c.id = r.charge_pk
		WHERE r.id = $1`, pk))
}

// ClaimRefund takes a pending refund whose lease expired or that the caller
// holds.
func (s *Store) ClaimRefund(ctx context.Context, pk int64, owner string, lease time.Duration) (bool, error) {
	tag, err := s.Pool.Exec(ctx, `UPDATE refunds SET lease_owner = $2, lease_until = now() + $3::interval, updated_at = now()
		WHERE id = $1 AND status = 'pending' AND (lease_until < now() OR lease_owner = $2)`, pk, owner, lease)
	if err != nil {
		return false, err
	}
	return tag.RowsAffected() == 1, nil
}

// ReleaseRefund ends the caller's lease at once.
func (s *Store) ReleaseRefund(ctx context.Context, pk int64, owner string) error {
	_, err := s.Pool.Exec(ctx, `UPDATE refunds SET lease_until = now() - interval '1 ms'
		WHERE id = $1 AND lease_owner = $2 AND status = 'pending'`, pk, owner)
	return err
}

// ExpiredRefunds lists pending refunds whose lease expired.
func (s *Store) ExpiredRefunds(ctx context.Context, limit int) ([]int64, error) {
	rows, err := s.Pool.Query(ctx, `SELECT id FROM refunds WHERE status = 'pending' AND lease_until < now()
		ORDER BY lease_until LIMIT $1`, limit)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowTo[int64])
}

// RefundResult is how a refund ended at the PG.
type RefundResult struct {
	Succeeded     bool
	PGTxID        string
	FailureReason string
}

// FinishRefund records a refund's outcome: on success the reserved amount
// becomes refunded, on failure the reservation is released; and the result
// events are written, in one transaction. It returns the bill's refunded
// total after the change, and ErrStale when the refund was already finished.
// then, when set, runs in the same transaction (a re-payment's next step).
func (s *Store) FinishRefund(ctx context.Context, pk int64, res RefundResult, msgs func(refundedTotal int64) ([]outbox.Message, error), then func(pgx.Tx) error) (int64, error) {
	var total int64
	err := pgx.BeginFunc(ctx, s.Pool, func(tx pgx.Tx) error {
		var chargePK, amount int64
		var billID string
		// Lock the charge first (outbox ordering), then finish the refund.
		err := tx.QueryRow(ctx, `SELECT r.charge_pk, r.bill_id, r.amount FROM refunds r
			JOIN charges c ON c.id = r.charge_pk WHERE r.id = $1 AND r.status = 'pending' FOR NO KEY UPDATE OF c, r`, pk).
			Scan(&chargePK, &billID, &amount)
		if errors.Is(err, pgx.ErrNoRows) {
			return ErrStale
		}
		if err != nil {
			return err
		}
		status, refunded := "failed", int64(0)
		if res.Succeeded {
			status, refunded = "succeeded", amount
		}
		if _, err := tx.Exec(ctx, `UPDATE refunds SET status = $2, pg_tx_id = nullif($3, ''), failure_reason = nullif($4, ''),
			lease_owner = NULL, lease_until = NULL, updated_at = now() WHERE id = $1`, pk, status, res.PGTxID, res.FailureReason); err != nil {
			return err
		}
		var paid int64
		if err := tx.QueryRow(ctx, `UPDATE bills SET refund_reserved = refund_reserved - $2, refunded_amount = refunded_amount + $3,
			updated_at = now() WHERE bill_id = $1 RETURNING refunded_amount, paid_amount`, billID, amount, refunded).Scan(&total, &paid); err != nil {
			return err
		}
		if res.Succeeded && total == paid {
			if _, err := tx.Exec(ctx, `UPDATE charges SET state = 'refunded', updated_at = now()
				WHERE id = $1 AND current_bill_id = $2`, chargePK, billID); err != nil {
				return err
			}
		}
		m, err := msgs(total)
		if err != nil {
			return err
		}
		if err := outbox.Insert(ctx, tx, m...); err != nil {
			return err
		}
		if then != nil {
			return then(tx)
		}
		return nil
	})
	return total, err
}

func isUniqueViolation(err error) bool {
	var pgErr interface{ SQLState() string }
	return errors.As(err, &pgErr) && pgErr.SQLState() == "23505"
}

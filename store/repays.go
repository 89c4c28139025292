package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/payflow/payflow/payflow"
)

// Repay is a re-payment row.
type Repay struct {
	PK          int64
	MerchantID  string
	RepayID     string
	ChargePK    int64
	OldBillID   string
	NewBillID   string
	Amount      int64
	RequestHash []byte
	Step        string // refunding, placing, done, failed
	RefundPK    int64  // its refund step, 0 when nothing was left to refund
}

// NewRepay is a re-payment about to start.
type NewRepay struct {
	MerchantID  string
	RepayID     string
	ChargePK    int64
	OldBillID   string
	Amount      int64
	RequestHash []byte
	LeaseOwner  string
	Lease       time.Duration
}

// CreateRepay stores a re-payment and, in the same transaction, its refund
// step for whatever of the old bill is still paid and not refunded (kind
// "repay", reserved like any refund). When nothing is left to refund the
// re-payment starts at step placing and RefundPK is 0. created is false
// when the repay id exists.
func (s *Store) CreateRepay(ctx context.Context, r NewRepay) (rp Repay, created bool, err error) {
	err = pgx.BeginFunc(ctx, s.Pool, func(tx pgx.Tx) error {
		var refundable int64
		var status string
		// Lock the charge, then the old bill: refunds of it wait for us.
		if err := tx.QueryRow(ctx, `SELECT b.status, b.paid_amount - b.refunded_amount - b.refund_reserved
			FROM bills b JOIN charges c ON c.id = b.charge_pk WHERE b.bill_id = $1 FOR NO KEY UPDATE OF c, b`, r.OldBillID).Scan(&status, &refundable); err != nil {
			return err
		}
		if status != string(payflow.BillPaid) {
			return ErrNotPaid
		}
		step := "refunding"
		if refundable == 0 {
			step = "placing"
		}
		tag, err := tx.Exec(ctx, `INSERT INTO repays (merchant_id, repay_id, charge_pk, old_bill_id, amount, request_hash, step)
			VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (merchant_id, repay_id) DO NOTHING`,
			r.MerchantID, r.RepayID, r.ChargePK, r.OldBillID, r.Amount, r.RequestHash, step)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return nil
		}
		created = true
		if refundable > 0 {
			if _, err := tx.Exec(ctx, `UPDATE bills SET refund_reserved = refund_reserved + $2, updated_at = now() WHERE bill_id = $1`,
				r.OldBillID, refundable); err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, `INSERT INTO refunds (merchant_id, refund_id, kind, charge_pk, bill_id, amount, reason, request_hash, status, lease_owner, lease_until)
				VALUES ($1, $2, 'repay', $3, $4, $5, 're-payment', $6, 'pending', $7, now() + $8::interval)`,
				r.MerchantID, RepayRefundID(r.RepayID), r.ChargePK, r.OldBillID, refundable, r.RequestHash, r.LeaseOwner, r.Lease); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		if errors.Is(err, ErrNotPaid) {
			return Repay{}, false, err
		}
		if isUniqueViolation(err) {
			return Repay{}, false, nil
		}
		return Repay{}, false, fmt.Errorf("store: create repay: %w", err)
	}
	if !created {
		return Repay{}, false, nil
	}
	rp, err = s.RepayByKey(ctx, r.MerchantID, r.RepayID)
	return rp, true, err
}

// RepayRefundID is the refund id of a re-payment's refund step.
func RepayRefundID(repayID string) string { return "repay:" + repayID }

const repayColumns = `p.id, p.merchant_id, p.repay_id, p.charge_pk, p.old_bill_id, coalesce(p.new_bill_id, ''), p.amount, p.request_hash, p.step,
	coalesce((SELECT r.id FROM refunds r WHERE r.merchant_id = p.merchant_id AND r.refund_id = 'repay:' || p.repay_id), 0)`

func scanRepay(row pgx.Row) (Repay, error) {
	var r Repay
	err := row.Scan(&r.PK, &r.MerchantID, &r.RepayID, &r.ChargePK, &r.OldBillID, &r.NewBillID, &r.Amount, &r.RequestHash, &r.Step, &r.RefundPK)
	if errors.Is(err, pgx.ErrNoRows) {
		return r, ErrNotFound
	}
	return r, err
}

// RepayByKey reads a merchant's re-payment.
func (s *Store) RepayByKey(ctx context.Context, merchantID, repayID string) (Repay, error) {
	return scanRepay(s.Pool.QueryRow(ctx, `SELECT `+repayColumns+` FROM repays p WHERE p.merchant_id = $1 AND p.repay_id = $2`, merchantID, repayID))
}

// RepayByPK reads a re-payment.
func (s *Store) RepayByPK(ctx context.Context, pk int64) (Repay, error) {
	return scanRepay(s.Pool.QueryRow(ctx, `SELECT `+repayColumns+` FROM repays p WHERE p.id = $1`, pk))
}

// StartRepayBill moves a re-payment to step placing: the new bill is stored
// (before the PG hears of it) and becomes the charge's current bill, and
// the charge is leased to the caller. It runs inside tx, the transaction
// that recorded the refund step's success, so the customer is never left
// refunded without the new request. It does nothing unless the re-payment
// is at the step expected.
func StartRepayBill(ctx context.Context, tx pgx.Tx, repayPK int64, fromStep string, bill Bill, owner string, lease time.Duration) error {
	var chargePK int64
	err := tx.QueryRow(ctx, `UPDATE repays SET step = 'placing', new_bill_id = $3, updated_at = now()
		WHERE id = $1 AND step = $2 RETURNING charge_pk`, repayPK, fromStep, bill.BillID).Scan(&chargePK)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil
	}
	if err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, `INSERT INTO bills (bill_id, charge_pk, method, method_id, fallback_reason, amount, status, repay_pk)
		VALUES ($1, $2, $3, nullif($4, '')::uuid, nullif($5, ''), $6, 'pending', $7)`,
		bill.BillID, chargePK, string(bill.Method), bill.MethodID, string(bill.FallbackReason), bill.Amount, repayPK); err != nil {
		return err
	}
	_, err = tx.Exec(ctx, `UPDATE charges SET state = 'placing', current_bill_id = $2, lease_owner = $3,
		lease_until = now() + $4::interval, updated_at = now() WHERE id = $1`, chargePK, bill.BillID, owner, lease)
	return err
}

// StartRepayBill is the package function run in its own transaction, for a
// re-payment with nothing to refund.
func (s *Store) StartRepayBill(ctx context.Context, repayPK int64, fromStep string, bill Bill, owner string, lease time.Duration) error {
	return pgx.BeginFunc(ctx, s.Pool, func(tx pgx.Tx) error {
		return StartRepayBill(ctx, tx, repayPK, fromStep, bill, owner, lease)
	})
}

package store

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/payflow/payflow/payflow"
)

// CreateRepay stores a re-payment and, in the same transaction, its refund
// step for whatever of the old bill is still paid and not refunded (kind
// "repay", reserved like any refund). When nothing is left to refund the
// re-payment goes straight to step placing with r.Bill, and RefundPK is 0.
// created is false when the repay id exists. payflow.ErrNotPaid when the old bill
// is not paid or no longer the charge's current bill. ErrStale, with
// nothing written, when r.Holder's taking of the charge's lease no longer
// holds: the request was judged under a lease that ran out and was taken
// again, by another worker or by this one's sweeper, and may have been
// judged otherwise since (rejected, say), so it must be judged again.
func (s *Store) CreateRepay(ctx context.Context, r payflow.NewRepay) (rp payflow.Repay, created bool, err error) {
	now := s.now()
	err = pgx.BeginFunc(ctx, s.Pool, func(tx pgx.Tx) error {
		var refundable int64
		var status, current string
		// Lock the charge, then the old bill: refunds of it wait for us.
		if err := fence(ctx, tx, r.ChargePK, r.Holder, "repay-unfenced"); err != nil {
			return err
		}
		if err := tx.QueryRow(ctx, `SELECT b.status, b.paid_amount - b.refunded_amount - b.refund_reserved, coalesce(c.current_bill_id, '')
			FROM bills b JOIN charges c ON c.id = b.charge_pk WHERE b.bill_id = $1 AND b.charge_pk = $2 FOR NO KEY UPDATE OF b`, r.OldBillID, r.ChargePK).
			Scan(&status, &refundable, &current); err != nil {
			return err
		}
		if status != string(payflow.BillPaid) || current != r.OldBillID {
			return payflow.ErrNotPaid
		}
		step := payflow.RepayRefunding
		if refundable == 0 {
			step = payflow.RepayPlacing
		}
		var pk int64
		err := tx.QueryRow(ctx, `INSERT INTO repays (merchant_id, repay_id, charge_pk, old_bill_id, amount, request_hash, step, created_at, updated_at)
			VALUES ($1, $2, $3, $4, $5, $6, 'refunding', coalesce($7::timestamptz, now()), coalesce($7::timestamptz, now())) ON CONFLICT (merchant_id, repay_id) DO NOTHING RETURNING id`,
			r.MerchantID, r.RepayID, r.ChargePK, r.OldBillID, r.Amount, r.RequestHash, now).Scan(&pk)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil
		}
		if err != nil {
			return err
		}
		created = true
		if step == payflow.RepayPlacing {
			return startRepayBill(ctx, tx, payflow.RepayNext{RepayPK: pk, Bill: r.Bill, Owner: r.Holder.Owner, Lease: r.Lease}, now)
		}
		if _, err := tx.Exec(ctx, `UPDATE bills SET refund_reserved = refund_reserved + $2, updated_at = coalesce($3::timestamptz, now()) WHERE bill_id = $1`,
			r.OldBillID, refundable, now); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `INSERT INTO refunds (merchant_id, refund_id, kind, charge_pk, bill_id, amount, reason, request_hash, status, created_at, updated_at)
			VALUES ($1, $2, 'repay', $3, $4, $5, 're-payment', $6, 'pending', coalesce($7::timestamptz, now()), coalesce($7::timestamptz, now()))`,
			r.MerchantID, r.RepayID, r.ChargePK, r.OldBillID, refundable, r.RequestHash, now)
		return err
	})
	if err != nil {
		if errors.Is(err, payflow.ErrNotPaid) {
			return payflow.Repay{}, false, err
		}
		if isUniqueViolation(err) {
			return payflow.Repay{}, false, nil
		}
		return payflow.Repay{}, false, fmt.Errorf("store: create repay: %w", err)
	}
	if !created {
		return payflow.Repay{}, false, nil
	}
	rp, err = s.RepayByKey(ctx, r.MerchantID, r.RepayID)
	return rp, true, err
}

const repayColumns = `p.id, p.merchant_id, p.repay_id, p.charge_pk, p.old_bill_id, coalesce(p.new_bill_id, ''), p.amount, p.request_hash, p.step,
	coalesce((SELECT r.id FROM refunds r WHERE r.merchant_id = p.merchant_id AND r.kind = 'repay' AND r.refund_id = p.repay_id), 0)`

func scanRepay(row pgx.Row) (payflow.Repay, error) {
	var r payflow.Repay
	err := row.Scan(&r.PK, &r.MerchantID, &r.RepayID, &r.ChargePK, &r.OldBillID, &r.NewBillID, &r.Amount, &r.RequestHash, &r.Step, &r.RefundPK)
	if errors.Is(err, pgx.ErrNoRows) {
		return r, payflow.ErrNotFound
	}
	return r, err
}

// RepayByKey reads a merchant's re-payment.
func (s *Store) RepayByKey(ctx context.Context, merchantID, repayID string) (payflow.Repay, error) {
	return scanRepay(s.Pool.QueryRow(ctx, `SELECT `+repayColumns+` FROM repays p WHERE p.merchant_id = $1 AND p.repay_id = $2`, merchantID, repayID))
}

// RepayByPK reads a re-payment.
func (s *Store) RepayByPK(ctx context.Context, pk int64) (payflow.Repay, error) {
	return scanRepay(s.Pool.QueryRow(ctx, `SELECT `+repayColumns+` FROM repays p WHERE p.id = $1`, pk))
}

// startRepayBill moves a re-payment to step placing: the new bill is
// stored (before the PG hears of it) and becomes the charge's current bill,
// and the charge is leased to n.Owner as a new taking (its generation
// raised, as every change of owner raises it: the refund step's result
// may be recorded by a worker other than the one that took the lease
// last). The placement that follows is fenced by owner, like a charge's. It is guarded by the charge's
// current bill: only a re-payment of the bill the charge still stands on
// may bill again. A re-payment that finds its charge moved on fails
// (superseded) instead of placing a second live bill.
func startRepayBill(ctx context.Context, tx pgx.Tx, n payflow.RepayNext, now any) error {
	var chargePK int64
	var oldBill string
	err := tx.QueryRow(ctx, `UPDATE repays SET step = 'placing', new_bill_id = $2, updated_at = coalesce($3::timestamptz, now())
		WHERE id = $1 AND step = 'refunding' RETURNING charge_pk, old_bill_id`, n.RepayPK, n.Bill.BillID, now).Scan(&chargePK, &oldBill)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil
	}
	if err != nil {
		return err
	}
	tag, err := tx.Exec(ctx, `UPDATE charges SET state = 'placing', current_bill_id = $3, lease_owner = $4, lease_gen = lease_gen + 1,
		lease_until = coalesce($6::timestamptz, now()) + $5::interval, updated_at = coalesce($6::timestamptz, now())
		WHERE id = $1 AND current_bill_id = $2 AND state IN ('paid', 'refunded')`, chargePK, oldBill, n.Bill.BillID, n.Owner, n.Lease, now)
	if err != nil {
		return err
	}
	if tag.RowsAffected() == 0 {
		_, err := tx.Exec(ctx, `UPDATE repays SET step = 'failed', new_bill_id = NULL, failure_reason = 'superseded', updated_at = coalesce($2::timestamptz, now())
			WHERE id = $1`, n.RepayPK, now)
		return err
	}
	_, err = tx.Exec(ctx, `INSERT INTO bills (bill_id, charge_pk, method, method_id, fallback_reason, amount, status, repay_pk, created_at, updated_at)
		VALUES ($1, $2, $3, nullif($4, '')::uuid, nullif($5, ''), $6, 'pending', $7, coalesce($8::timestamptz, now()), coalesce($8::timestamptz, now()))`,
		n.Bill.BillID, chargePK, string(n.Bill.Method), n.Bill.MethodID, string(n.Bill.FallbackReason), n.Bill.Amount, n.RepayPK, now)
	return err
}

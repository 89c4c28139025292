package store

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/payflow/payflow/payflow"
)

// ChargeView reads a merchant's charge with its bills and refunds, from one
// snapshot so that the amounts and the history agree. payflow.ErrNotFound when the
// charge does not exist for that merchant, whether or not another merchant
// has a charge of that id.
func (s *Store) ChargeView(ctx context.Context, merchantID, chargeID string) (payflow.ChargeView, error) {
	var v payflow.ChargeView
	err := pgx.BeginTxFunc(ctx, s.Pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		v = payflow.ChargeView{}
		var pk int64
		var state, method, fb, status string
		err := tx.QueryRow(ctx, `SELECT c.id, c.merchant_id, c.charge_id, c.state, coalesce(c.current_bill_id, ''),
				coalesce(b.method, ''), coalesce(b.fallback_reason, ''), coalesce(b.status, ''), coalesce(b.amount, c.amount),
				coalesce(c.failure_reason, ''), c.created_at, c.updated_at
			FROM charges c LEFT JOIN bills b ON b.bill_id = c.current_bill_id
			WHERE c.merchant_id = $1 AND c.charge_id = $2`, merchantID, chargeID).
			Scan(&pk, &v.MerchantID, &v.ChargeID, &state, &v.BillID, &method, &fb, &status, &v.Amount,
				&v.FailureReason, &v.CreatedAt, &v.UpdatedAt)
		if errors.Is(err, pgx.ErrNoRows) {
			return payflow.ErrNotFound
		}
		if err != nil {
			return err
		}
		v.State, v.Method, v.FallbackReason, v.BillStatus = payflow.ChargeState(state), payflow.Method(method),
			payflow.FallbackReason(fb), payflow.BillStatus(status)

		// Bills created in one transaction share created_at; the current
		// bill is the latest of those. A declined bill's settled_at only
		// takes it out of reconciliation's index: it was never settled.
		rows, err := tx.Query(ctx, `SELECT b.bill_id, b.method, b.status, b.amount, b.paid_amount, b.refunded_amount,
				coalesce(b.fallback_reason, ''), coalesce(b.decline_code, ''), coalesce(rp.repay_id, ''),
				b.created_at, CASE WHEN b.status <> 'declined' THEN b.settled_at END
			FROM bills b LEFT JOIN repays rp ON rp.id = b.repay_pk
			WHERE b.charge_pk = $1 ORDER BY b.created_at, b.bill_id = $2, b.bill_id`, pk, v.BillID)
		if err != nil {
			return err
		}
		v.Bills, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (payflow.BillEntry, error) {
			var e payflow.BillEntry
			var method, status, fb string
			err := r.Scan(&e.BillID, &method, &status, &e.Amount, &e.PaidAmount, &e.RefundedAmount, &fb,
				&e.DeclineCode, &e.RepayID, &e.CreatedAt, &e.SettledAt)
			e.Method, e.Status, e.FallbackReason = payflow.Method(method), payflow.BillStatus(status), payflow.FallbackReason(fb)
			return e, err
		})
		if err != nil {
			return err
		}
		for _, b := range v.Bills {
			v.PaidAmount += b.PaidAmount
			v.RefundedAmount += b.RefundedAmount
		}

		rows, err = tx.Query(ctx, `SELECT CASE WHEN kind = 'repay' THEN 'repay:' || refund_id ELSE refund_id END, kind, bill_id, amount, status, coalesce(failure_reason, ''),
				created_at, updated_at
			FROM refunds WHERE charge_pk = $1 ORDER BY created_at, id`, pk)
		if err != nil {
			return err
		}
		v.Refunds, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (payflow.RefundEntry, error) {
			var e payflow.RefundEntry
			err := r.Scan(&e.RefundID, &e.Kind, &e.BillID, &e.Amount, &e.Status, &e.FailureReason, &e.CreatedAt, &e.UpdatedAt)
			return e, err
		})
		return err
	})
	if errors.Is(err, payflow.ErrNotFound) {
		return payflow.ChargeView{}, payflow.ErrNotFound
	}
	if err != nil {
		return payflow.ChargeView{}, fmt.Errorf("store: charge view: %w", err)
	}
	return v, nil
}

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

// CreateRefund reserves the amount on the paid bill and stores the refund
// in one transaction. The reservation is the guard against over-refunding:
// the bill row's update re-checks the remaining amount after any concurrent
// refund commits, and a CHECK constraint backs it. created is false when
// the refund id exists (nothing is written then). The refund was judged
// under r.Holder's taking of the charge's lease, and is stored only while
// that taking holds: ErrStale otherwise, with nothing written (the request
// may have been judged since, against the charge as it now is).
func (s *Store) CreateRefund(ctx context.Context, r payflow.NewRefund) (pk int64, created bool, err error) {
	err = pgx.BeginFunc(ctx, s.Pool, func(tx pgx.Tx) error {
		if err := fence(ctx, tx, r.ChargePK, r.Holder, "refund-unfenced"); err != nil {
			return err
		}
		var exists bool
		var reserved *int64
		if err := tx.QueryRow(ctx, `
WITH existing AS (
	SELECT id FROM refunds WHERE merchant_id = $1 AND kind = $3 AND refund_id = $2
), bill AS (
	UPDATE bills SET refund_reserved = refund_reserved + $5, updated_at = coalesce($9::timestamptz, now())
	WHERE bill_id = $4 AND charge_pk = $6 AND status = 'paid' AND NOT EXISTS (SELECT 1 FROM existing)
	  AND refunded_amount + refund_reserved + $5 <= paid_amount
	RETURNING bill_id
), r AS (
	INSERT INTO refunds (merchant_id, refund_id, kind, charge_pk, bill_id, amount, reason, request_hash, status, created_at, updated_at)
	SELECT $1, $2, $3, $6, bill_id, $5, $7, $8, 'pending', coalesce($9::timestamptz, now()), coalesce($9::timestamptz, now()) FROM bill
	RETURNING id
)
SELECT EXISTS (SELECT 1 FROM existing), (SELECT id FROM r)`,
			r.MerchantID, r.RefundID, r.Kind, r.BillID, r.Amount, r.ChargePK, r.Reason, r.RequestHash, s.now(),
		).Scan(&exists, &reserved); err != nil {
			return err
		}
		switch {
		case exists:
			return nil
		case reserved != nil:
			pk, created = *reserved, true
			return nil
		}
		var status string
		if err := tx.QueryRow(ctx, `SELECT status FROM bills WHERE bill_id = $1`, r.BillID).Scan(&status); err != nil {
			return err
		}
		if status != string(payflow.BillPaid) {
			return payflow.ErrNotPaid
		}
		return payflow.ErrExceedsPaid
	})
	switch {
	case err == nil:
		return pk, created, nil
	case errors.Is(err, ErrStale), errors.Is(err, payflow.ErrNotPaid), errors.Is(err, payflow.ErrExceedsPaid):
		return 0, false, err
	case isUniqueViolation(err):
		// A concurrent insert of the same refund id.
		return 0, false, nil
	}
	return 0, false, fmt.Errorf("store: create refund: %w", err)
}

const refundColumns = `r.id, r.merchant_id, r.refund_id, r.kind, r.charge_pk, c.charge_id, r.bill_id, r.amount, r.reason, r.request_hash, r.status,
	coalesce(r.pg_refund_id, 'rf-' || r.id)`

func scanRefund(row pgx.Row) (payflow.Refund, error) {
	var r payflow.Refund
	err := row.Scan(&r.PK, &r.MerchantID, &r.RefundID, &r.Kind, &r.ChargePK, &r.ChargeID, &r.BillID, &r.Amount, &r.Reason, &r.RequestHash, &r.Status, &r.PGRefundID)
	if errors.Is(err, pgx.ErrNoRows) {
		return r, payflow.ErrNotFound
	}
	return r, err
}

// RefundByKey reads a merchant's refund (not a re-payment's refund step).
func (s *Store) RefundByKey(ctx context.Context, merchantID, refundID string) (payflow.Refund, error) {
	return scanRefund(s.Pool.QueryRow(ctx, `SELECT `+refundColumns+` FROM refunds r JOIN charges c ON c.id = r.charge_pk
		WHERE r.merchant_id = $1 AND r.kind = 'refund' AND r.refund_id = $2`, merchantID, refundID))
}

// RefundByPK reads a refund.
func (s *Store) RefundByPK(ctx context.Context, pk int64) (payflow.Refund, error) {
	return scanRefund(s.Pool.QueryRow(ctx, `SELECT `+refundColumns+` FROM refunds r JOIN charges c ON c.id = r.charge_pk
		WHERE r.id = $1`, pk))
}

// ClaimRefund takes the lease of a pending refund's charge, unless someone
// holds it. It reports whether the caller now holds it, and the taking.
func (s *Store) ClaimRefund(ctx context.Context, pk int64, owner string, lease time.Duration) (h payflow.Holder, ok bool, err error) {
	h.Owner = owner
	err = s.Pool.QueryRow(ctx, `UPDATE charges c SET lease_owner = $2, lease_until = coalesce($4::timestamptz, now()) + $3::interval,
			lease_gen = c.lease_gen + 1
		FROM refunds r WHERE r.id = $1 AND r.status = 'pending' AND c.id = r.charge_pk
		  AND (c.lease_until IS NULL OR c.lease_until < coalesce($4::timestamptz, now()))
		RETURNING c.lease_gen`, pk, owner, lease, s.now()).Scan(&h.Gen)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return payflow.Holder{}, false, nil
	case err != nil:
		return payflow.Holder{}, false, fmt.Errorf("store: claim refund: %w", err)
	}
	return h, true, nil
}

// ExpiredRefunds lists pending refunds that nobody holds (their worker died
// or met an unknown outcome) and whose retry is due, the longest waiting
// first: a refund that keeps failing takes its turn, it does not starve
// the others.
func (s *Store) ExpiredRefunds(ctx context.Context, limit int) ([]int64, error) {
	rows, err := s.Pool.Query(ctx, `SELECT r.id FROM refunds r JOIN charges c ON c.id = r.charge_pk
		WHERE r.status = 'pending' AND (c.lease_until IS NULL OR c.lease_until < coalesce($2::timestamptz, now()))
		  AND (r.retry_after IS NULL OR r.retry_after < coalesce($2::timestamptz, now()))
		ORDER BY coalesce(r.retry_after, r.created_at), r.id LIMIT $1`, limit, s.now())
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowTo[int64])
}

// RetryRefundLater puts off a pending refund's next attempt (its outcome
// was unknown) by wait.
func (s *Store) RetryRefundLater(ctx context.Context, pk int64, wait time.Duration) error {
	_, err := s.Pool.Exec(ctx, `UPDATE refunds SET retry_after = coalesce($3::timestamptz, now()) + $2::interval WHERE id = $1 AND status = 'pending'`, pk, wait, s.now())
	if err != nil {
		return fmt.Errorf("store: retry refund later: %w", err)
	}
	return nil
}

// FinishRefund records a refund's outcome: on success the reserved amount
// becomes refunded, on failure the reservation is released; and the result
// events are written, in one transaction. It returns the bill's refunded
// total after the change, and ErrStale when the refund was already finished.
//
// The refund step of a re-payment moves the re-payment on in the same
// transaction: on success next (its new bill) is stored and leased to owner
// for placing (see startRepayBill), on failure the re-payment fails. So the
// customer is never left refunded without the new request.
func (s *Store) FinishRefund(ctx context.Context, pk int64, res payflow.RefundResult, msgs func(refundedTotal int64) ([]outbox.Message, error), next *payflow.RepayNext) (int64, error) {
	var total int64
	now := s.now()
	err := pgx.BeginFunc(ctx, s.Pool, func(tx pgx.Tx) error {
		var chargePK, amount int64
		var billID, kind, refundID, merchantID, chargeState, currentBill string
		// Lock the charge first (outbox ordering), then finish the refund.
		err := tx.QueryRow(ctx, `SELECT r.charge_pk, r.bill_id, r.amount, r.kind, r.refund_id, r.merchant_id, c.state, coalesce(c.current_bill_id, '')
			FROM refunds r JOIN charges c ON c.id = r.charge_pk WHERE r.id = $1 AND r.status = 'pending' FOR NO KEY UPDATE OF c, r`, pk).
			Scan(&chargePK, &billID, &amount, &kind, &refundID, &merchantID, &chargeState, &currentBill)
		if errors.Is(err, pgx.ErrNoRows) {
			return ErrStale
		}
		if err != nil {
			return err
		}
		status, refunded := payflow.RefundFailed, int64(0)
		if res.Succeeded {
			status, refunded = payflow.RefundSucceeded, amount
		}
		if _, err := tx.Exec(ctx, `UPDATE refunds SET status = $2, pg_tx_id = nullif($3, ''), failure_reason = nullif($4, ''),
			updated_at = coalesce($5::timestamptz, now()) WHERE id = $1`, pk, string(status), res.PGTxID, res.FailureReason, now); err != nil {
			return err
		}
		var paid int64
		if err := tx.QueryRow(ctx, `UPDATE bills SET refund_reserved = refund_reserved - $2, refunded_amount = refunded_amount + $3,
			updated_at = coalesce($4::timestamptz, now()) WHERE bill_id = $1 RETURNING refunded_amount, paid_amount`, billID, amount, refunded, now).Scan(&total, &paid); err != nil {
			return err
		}
		// The charge follows its current bill: refunded in full, it is
		// refunded.
		if res.Succeeded && currentBill == billID {
			was := payflow.ChargeState(chargeState)
			next, err := was.Refund(total == paid)
			if err != nil {
				return err // a refunded bill's charge is paid: a broken invariant
			}
			if next != was {
				if _, err := tx.Exec(ctx, `UPDATE charges SET state = $3, updated_at = coalesce($4::timestamptz, now())
					WHERE id = $1 AND current_bill_id = $2`, chargePK, billID, string(next), now); err != nil {
					return err
				}
			}
		}
		m, err := msgs(total)
		if err != nil {
			return err
		}
		if err := outbox.Insert(ctx, tx, m...); err != nil {
			return err
		}
		if kind != "repay" {
			return nil
		}
		if !res.Succeeded {
			_, err := tx.Exec(ctx, `UPDATE repays SET step = 'failed', failure_reason = 'refund_failed', updated_at = coalesce($3::timestamptz, now())
				WHERE merchant_id = $1 AND repay_id = $2 AND step = 'refunding'`, merchantID, refundID, now)
			return err
		}
		if next == nil {
			return errors.New("store: a re-payment's refund succeeded without its next bill")
		}
		return startRepayBill(ctx, tx, *next, now)
	})
	return total, err
}

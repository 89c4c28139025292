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

// Settle applies a final result to a bill, once. A webhook's id is recorded
// in the same transaction, so a replay is answered without effect and a
// crash cannot leave a receipt without its change. events builds the result
// events; they are written in the same transaction. was is the bill's
// status as Settle found it, so that the caller can tell an ignored
// settlement that the PG's word contradicts (payflow.BillStatus.ContradictedBy).
func (s *Store) Settle(ctx context.Context, st payflow.Settlement, events func(payflow.SettledBill) ([]outbox.Message, error)) (outcome payflow.SettleOutcome, was payflow.BillStatus, err error) {
	now := s.now()
	err = pgx.BeginFunc(ctx, s.Pool, func(tx pgx.Tx) error {
		outcome, was = "", ""
		var (
			pk                 int64
			merchant, chargeID string
			method, status, fb string
			amount             int64
			currentBill, txID  string
			chargeState        string
		)
		// Lock the charge row before anything is written (the outbox
		// ordering invariant), then the bill.
		err := tx.QueryRow(ctx, `SELECT c.id, c.merchant_id, c.charge_id, coalesce(c.current_bill_id, ''), c.state,
				b.method, b.status, coalesce(b.fallback_reason, ''), b.amount, coalesce(b.pg_tx_id, '')
			FROM bills b JOIN charges c ON c.id = b.charge_pk
			WHERE b.bill_id = $1 FOR NO KEY UPDATE OF c, b`, st.BillID).
			Scan(&pk, &merchant, &chargeID, &currentBill, &chargeState, &method, &status, &fb, &amount, &txID)
		if errors.Is(err, pgx.ErrNoRows) {
			return payflow.ErrNotFound
		}
		if err != nil {
			return err
		}
		bs := payflow.BillStatus(status)
		was = bs
		if st.Amount != amount {
			return payflow.ErrAmountMismatch
		}
		if bs == payflow.BillPending {
			return payflow.ErrNotPlacedYet
		}
		if st.WebhookID != "" {
			outcome = payflow.SettleApplied
			if !bs.Settleable() {
				outcome = payflow.SettleIgnored
			}
			tag, err := tx.Exec(ctx, `INSERT INTO webhook_receipts (provider, webhook_id, bill_id, status, outcome)
				VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING`, st.Provider, st.WebhookID, st.BillID, string(st.Status), string(outcome))
			if err != nil {
				return err
			}
			if tag.RowsAffected() == 0 {
				outcome = payflow.SettleDuplicate
				return nil
			}
		}
		if !bs.Settleable() {
			outcome = payflow.SettleIgnored
			return nil
		}
		paid := int64(0)
		if st.Status == payflow.SettlePaid {
			paid = st.Amount
		}
		if st.PGTxID == "" {
			st.PGTxID = txID
		}
		if _, err := tx.Exec(ctx, `UPDATE bills SET status = $2, paid_amount = $3, pg_tx_id = nullif($4, ''),
				settled_at = coalesce($5::timestamptz, now()), updated_at = coalesce($5::timestamptz, now()) WHERE bill_id = $1`,
			st.BillID, string(st.Status), paid, st.PGTxID, now); err != nil {
			return err
		}
		// The charge follows its current bill. A late payment of an
		// abandoned bill also makes the charge paid: the money is there.
		if currentBill == st.BillID {
			next, err := payflow.ChargeState(chargeState).Settle(st.Status)
			if err != nil {
				// A settleable current bill leaves its charge requested
				// or place_failed; anything else is a broken invariant,
				// and nothing is settled.
				return err
			}
			if _, err := tx.Exec(ctx, `UPDATE charges SET state = $2, updated_at = coalesce($3::timestamptz, now()) WHERE id = $1`,
				pk, string(next), now); err != nil {
				return err
			}
		}
		msgs, err := events(payflow.SettledBill{
			Bill: payflow.Bill{BillID: st.BillID, ChargePK: pk, Method: payflow.Method(method), FallbackReason: payflow.FallbackReason(fb),
				Amount: amount, Status: payflow.BillStatus(st.Status), PGTxID: st.PGTxID},
			MerchantID: merchant, ChargeID: chargeID,
		})
		if err != nil {
			return err
		}
		if err := outbox.Insert(ctx, tx, msgs...); err != nil {
			return err
		}
		outcome = payflow.SettleApplied
		return nil
	})
	if err != nil {
		return "", "", fmt.Errorf("store: settle %s: %w", st.BillID, err)
	}
	return outcome, was, nil
}

// AbandonedWatch is how long a bill given up on (abandoned) stays under
// reconciliation: a request still in flight when its worker gave up may have
// been executed by the PG after all, and its payment must be found.
const AbandonedWatch = 7 * 24 * time.Hour

// AwaitingSettlement lists bills that should have had their result by now:
// placed at the PG longer ago than age and not final (their webhook may
// never come), and bills abandoned within AbandonedWatch. A bill whose
// last look-up failed waits out its own backoff; the others go first.
// It reads the bills without settled_at, by created_at, through their
// partial index (migration 006): a settleable bill has no settled_at, and
// was created no later than it last changed.
func (s *Store) AwaitingSettlement(ctx context.Context, age time.Duration, limit int) ([]Awaiting, error) {
	rows, err := s.Pool.Query(ctx, awaitingSQL, age, limit, AbandonedWatch, s.now())
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (Awaiting, error) {
		var a Awaiting
		var status string
		err := r.Scan(&a.BillID, &status, &a.Attempts)
		a.Status = payflow.BillStatus(status)
		return a, err
	})
}

const awaitingSQL = `SELECT bill_id, status, reconcile_attempts FROM bills
	WHERE settled_at IS NULL AND created_at < coalesce($4::timestamptz, now()) - $1::interval
	  AND status IN ('requested', 'abandoned') AND updated_at < coalesce($4::timestamptz, now()) - $1::interval
	  AND (status = 'requested' OR updated_at > coalesce($4::timestamptz, now()) - $3::interval)
	  AND (reconcile_after IS NULL OR reconcile_after < coalesce($4::timestamptz, now()))
	ORDER BY coalesce(reconcile_after, updated_at) LIMIT $2`

// Awaiting is a bill reconciliation should look up.
type Awaiting struct {
	BillID   string
	Status   payflow.BillStatus // requested or abandoned
	Attempts int                // look-ups that failed in a row
}

// ReconcileLater records that a bill was looked up and is still open
// (reason empty: its failure count restarts) or could not be settled
// (reason names why, shown to operators, and counts towards its backoff):
// it is looked at again after wait, and not before.
func (s *Store) ReconcileLater(ctx context.Context, billID string, wait time.Duration, reason string) error {
	_, err := s.Pool.Exec(ctx, `UPDATE bills SET reconcile_after = coalesce($4::timestamptz, now()) + $2::interval,
		reconcile_attempts = CASE WHEN $3 = '' THEN 0 ELSE reconcile_attempts + 1 END, reconcile_error = nullif($3, '')
		WHERE bill_id = $1`, billID, wait, reason, s.now())
	if err != nil {
		return fmt.Errorf("store: reconcile later: %w", err)
	}
	return nil
}

// CancelBill records that the bill was destroyed at the PG, a cancel
// judged under h's taking of the charge's lease: the bill and its charge
// become cancelled (if the PG's own webhook has not already said so) and
// msgs are written, in one transaction. ErrStale, with nothing written,
// when that taking no longer holds (the cancel may have been judged since)
// or the bill is neither open nor cancelled (it was settled otherwise
// meanwhile): the cancel is to be judged again, and no event says
// cancelled of a bill the database holds as paid or expired.
func (s *Store) CancelBill(ctx context.Context, chargePK int64, billID string, h payflow.Holder, msgs []outbox.Message) error {
	now := s.now()
	err := pgx.BeginFunc(ctx, s.Pool, func(tx pgx.Tx) error {
		if err := fence(ctx, tx, chargePK, h, "cancel-unfenced"); err != nil {
			return err
		}
		var status string
		if err := tx.QueryRow(ctx, `SELECT status FROM bills WHERE bill_id = $1 AND charge_pk = $2 FOR NO KEY UPDATE`,
			billID, chargePK).Scan(&status); err != nil {
			return err
		}
		switch payflow.BillStatus(status) {
		case payflow.BillCancelled: // by the PG's own webhook, or by an earlier delivery of this cancel
		case payflow.BillRequested:
			if _, err := tx.Exec(ctx, `UPDATE bills SET status = 'cancelled', settled_at = coalesce($2::timestamptz, now()), updated_at = coalesce($2::timestamptz, now())
				WHERE bill_id = $1`, billID, now); err != nil {
				return err
			}
		default:
			return ErrStale
		}
		if _, err := tx.Exec(ctx, `UPDATE charges SET state = 'cancelled', updated_at = coalesce($3::timestamptz, now())
			WHERE id = $1 AND current_bill_id = $2 AND state = 'requested'`, chargePK, billID, now); err != nil {
			return err
		}
		return outbox.Insert(ctx, tx, msgs...)
	})
	if err != nil && !errors.Is(err, ErrStale) {
		return fmt.Errorf("store: cancel bill %s: %w", billID, err)
	}
	return err
}

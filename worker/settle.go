package worker

import (
	"context"
	"errors"
	"time"

	"github.com/payflow/payflow/events"
	"github.com/payflow/payflow/outbox"
	"github.com/payflow/payflow/payflow"
	"github.com/payflow/payflow/pgclient"
	"github.com/payflow/payflow/store"
)

// Settle applies a bill's final result, from a verified webhook or from
// reconciliation, and writes its payment.settled event in the same
// transaction. Whichever gets there first settles the bill; the other finds
// it final and changes nothing.
func (w *Worker) Settle(ctx context.Context, s store.Settlement) (store.SettleOutcome, error) {
	outcome, err := w.cfg.Store.Settle(ctx, s, func(b store.SettledBill) ([]outbox.Message, error) {
		msg, err := w.message(events.TypeSettled, b.ChargeID, []string{"bill", b.Bill.BillID, "settled"}, events.Settled{
			MerchantID: b.MerchantID, ChargeID: b.ChargeID, BillID: b.Bill.BillID, Status: string(s.Status),
			Amount: b.Bill.Amount, PGTxID: b.Bill.PGTxID,
		})
		return []outbox.Message{msg}, err
	})
	if err != nil {
		return "", err
	}
	if outcome == store.SettleApplied {
		w.cfg.Committed()
		w.cfg.Observer.Result(events.TypeSettled, string(s.Status))
	}
	w.log.Info("settlement", "bill_id", s.BillID, "status", s.Status, "outcome", outcome, "webhook_id", s.WebhookID)
	return outcome, nil
}

// Reconcile asks the PG about bills that have waited longer than age for
// their result, and settles those the PG reports final: the webhook that
// should have told us was lost. It returns how many it settled.
func (w *Worker) Reconcile(ctx context.Context, age time.Duration, limit int) (int, error) {
	bills, err := w.cfg.Store.AwaitingSettlement(ctx, age.Seconds(), limit)
	if err != nil {
		return 0, err
	}
	settled := 0
	for _, id := range bills {
		p, err := w.cfg.PG.LookupPayment(ctx, id)
		if err != nil {
			if ctx.Err() != nil {
				return settled, ctx.Err()
			}
			// The PG is struggling: stop this round instead of hammering it.
			w.log.Warn("reconcile: lookup failed", "bill_id", id, "err", err)
			return settled, nil
		}
		status, final := payflow.ParseSettleStatus(string(p.Status))
		if !final || p.Status == pgclient.StatusRequested {
			if err := w.cfg.Store.TouchAwaiting(ctx, id); err != nil {
				return settled, err
			}
			continue
		}
		out, err := w.Settle(ctx, store.Settlement{BillID: id, Status: status, Amount: p.Amount, PGTxID: p.PGTxID})
		if errors.Is(err, store.ErrAmountMismatch) {
			w.log.Error("reconcile: the PG reports another amount than the bill's; left for an operator", "bill_id", id, "pg_amount", p.Amount)
			continue
		}
		if err != nil {
			return settled, err
		}
		if out == store.SettleApplied {
			settled++
		}
	}
	return settled, nil
}

// RunReconciler reconciles every interval until ctx ends.
func (w *Worker) RunReconciler(ctx context.Context, interval, age time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if n, err := w.Reconcile(ctx, age, 100); err != nil && ctx.Err() == nil {
				w.log.Warn("reconcile failed", "err", err)
			} else if n > 0 {
				w.log.Info("reconciled bills whose webhook did not come", "settled", n)
			}
		}
	}
}

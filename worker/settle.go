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
func (w *Worker) Settle(ctx context.Context, s payflow.Settlement) (payflow.SettleOutcome, error) {
	sctx, end := w.cfg.Observer.Step(ctx, StepSettle)
	outcome, was, err := w.cfg.Store.Settle(sctx, s, func(b payflow.SettledBill) ([]outbox.Message, error) {
		msg, err := w.message(events.TypeSettled, b.ChargeID, []string{"bill", b.Bill.BillID, "settled"}, events.Settled{
			MerchantID: b.MerchantID, ChargeID: b.ChargeID, BillID: b.Bill.BillID, Status: string(s.Status),
			Amount: b.Bill.Amount, PGTxID: b.Bill.PGTxID,
		})
		return []outbox.Message{msg}, err
	})
	end(err)
	if err != nil {
		return "", err
	}
	if outcome == payflow.SettleApplied {
		w.cfg.Committed()
		w.cfg.Observer.Result(events.TypeSettled, string(s.Status))
		if was == payflow.BillAbandoned && s.Status == payflow.SettlePaid {
			// Whoever found it (a webhook, a callback, reconciliation):
			// the charge was reported failed, and the customer paid.
			w.log.ErrorContext(ctx, "a bill given up on was executed by the PG after all; recorded, for an operator to refund or keep",
				"bill_id", s.BillID, "status", s.Status, "amount", s.Amount)
			w.cfg.Observer.Reconciled("late_" + string(s.Status))
		}
	}
	if outcome == payflow.SettleIgnored && was.ContradictedBy(s.Status) {
		// Found by review: an auto-pay that landed after its decline
		// was recorded (a stalled worker's request) was paid by the
		// customer, and the callback that said so was ignored without a
		// word, as if the bill were simply settled already.
		w.log.ErrorContext(ctx, "the PG reports paid a bill held final and unpaid here; not settled, for an operator to refund or keep",
			"bill_id", s.BillID, "bill_status", was, "amount", s.Amount)
		w.cfg.Observer.Reconciled("paid_contradicted")
	}
	w.log.InfoContext(ctx, "settlement", "bill_id", s.BillID, "status", s.Status, "outcome", outcome, "webhook_id", s.WebhookID)
	return outcome, nil
}

// Reconcile asks the PG about bills that have waited longer than age for
// their result, and settles those the PG reports final: the webhook that
// should have told us was lost. Bills given up on (abandoned) are asked
// about too, for a while: a request in flight when its worker gave up may
// have been executed, and its payment is recorded (and counted, for an
// operator to refund or keep). One bill's trouble is its own: a look-up
// that fails, an amount that does not match or a settlement that fails
// backs that bill off, with the reason stored, and the round goes on. It returns how many it settled.
func (w *Worker) Reconcile(ctx context.Context, age time.Duration, limit int) (int, error) {
	bills, err := w.cfg.Store.AwaitingSettlement(ctx, age, limit)
	if err != nil {
		return 0, err
	}
	settled := 0
	for _, b := range bills {
		p, err := w.cfg.PG.LookupPayment(ctx, b.BillID)
		if ctx.Err() != nil {
			return settled, ctx.Err()
		}
		switch {
		case err != nil && b.Status == payflow.BillAbandoned && pgclient.KindOf(err) == pgclient.KindNotFound:
			err = w.cfg.Store.ReconcileLater(ctx, b.BillID, reconcileBackoff(age, b.Attempts), "")
		case err != nil:
			w.log.WarnContext(ctx, "reconcile: look-up failed; this bill is backed off", "bill_id", b.BillID, "attempts", b.Attempts+1, "err", err)
			w.cfg.Observer.Reconciled("lookup_failed")
			err = w.cfg.Store.ReconcileLater(ctx, b.BillID, reconcileBackoff(age, b.Attempts), "lookup_failed: "+errorCode(err))
		default:
			var applied bool
			applied, err = w.reconcileOne(ctx, b, p, age)
			if applied {
				settled++
			}
		}
		if err != nil {
			return settled, err
		}
	}
	return settled, nil
}

// reconcileOne settles one looked-up bill if the PG reports it final.
func (w *Worker) reconcileOne(ctx context.Context, b store.Awaiting, p pgclient.Payment, age time.Duration) (bool, error) {
	if p.Status == pgclient.StatusRequested && b.Status == payflow.BillAbandoned {
		// A bill given up on is open at the PG after all (a request landed
		// late): its charge was reported failed, so the customer must not
		// be able to pay it. Destroy it and record that.
		w.log.ErrorContext(ctx, "reconcile: a bill given up on is open at the PG; destroying it", "bill_id", b.BillID)
		w.cfg.Observer.Reconciled("late_open")
		if err := w.cfg.PG.DestroyBill(ctx, b.BillID); err != nil {
			return false, w.cfg.Store.ReconcileLater(ctx, b.BillID, reconcileBackoff(age, b.Attempts), "destroy_failed: "+errorCode(err))
		}
		p.Status = pgclient.StatusCancelled
	}
	if p.Status == pgclient.StatusPaid && p.Refunded > 0 {
		// Nothing here refunded a bill not yet settled here: the money
		// went back outside payflow (an operator's cancel at the PG; a PG
		// that reports a cancelled payment as paid and refunded). Reported
		// paid, it would have the merchant deliver for money the customer
		// has back. All of it back: the bill is cancelled. Part of it: an
		// operator decides.
		w.cfg.Observer.Reconciled("refunded_outside")
		if p.Refunded < p.Amount {
			w.log.ErrorContext(ctx, "reconcile: the PG reports this bill paid and partly refunded outside payflow; left for an operator",
				"bill_id", b.BillID, "amount", p.Amount, "refunded", p.Refunded)
			return false, w.cfg.Store.ReconcileLater(ctx, b.BillID, reconcileBackoff(age, b.Attempts), "refunded_outside")
		}
		w.log.WarnContext(ctx, "reconcile: the PG reports this bill paid and refunded in full outside payflow; recorded as cancelled",
			"bill_id", b.BillID, "amount", p.Amount)
		p.Status = pgclient.StatusCancelled
	}
	status, final := payflow.ParseSettleStatus(string(p.Status))
	if !final || p.Status == pgclient.StatusRequested {
		return false, w.cfg.Store.ReconcileLater(ctx, b.BillID, age, "")
	}
	out, err := w.Settle(ctx, payflow.Settlement{BillID: b.BillID, Status: status, Amount: p.Amount, PGTxID: p.PGTxID})
	if errors.Is(err, payflow.ErrAmountMismatch) {
		w.log.ErrorContext(ctx, "reconcile: the PG reports another amount than the bill's; left for an operator", "bill_id", b.BillID, "pg_amount", p.Amount)
		w.cfg.Observer.Reconciled("amount_mismatch")
		return false, w.cfg.Store.ReconcileLater(ctx, b.BillID, reconcileBackoff(age, b.Attempts), "amount_mismatch")
	}
	if err != nil {
		if ctx.Err() != nil {
			return false, err
		}
		// One bill's trouble is its own (a broken invariant, a statement
		// refused): it is backed off with its reason, and the round goes
		// on. A database that is down fails the backoff too, which ends
		// the round.
		w.log.ErrorContext(ctx, "reconcile: the settlement failed; this bill is backed off", "bill_id", b.BillID, "err", err)
		w.cfg.Observer.Reconciled("settle_failed")
		return false, w.cfg.Store.ReconcileLater(ctx, b.BillID, reconcileBackoff(age, b.Attempts), "settle_failed: "+settleFailure(err))
	}
	return out == payflow.SettleApplied, nil
}

// settleFailure names a settlement's failure for bills.reconcile_error,
// without the values in its message.
func settleFailure(err error) string {
	var te *payflow.TransitionError
	switch {
	case errors.As(err, &te):
		return "transition"
	case store.Temporary(err):
		return "temporary"
	}
	return "error"
}

// reconcileBackoff is how long a bill waits after attempts look-ups that
// did not settle it: doubling from age, at most a day.
func reconcileBackoff(age time.Duration, attempts int) time.Duration {
	if age < time.Second {
		age = time.Second
	}
	d := age << min(attempts, 16)
	if d > 24*time.Hour || d <= 0 {
		d = 24 * time.Hour
	}
	return d
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
				w.log.WarnContext(ctx, "reconcile failed", "err", err)
			} else if n > 0 {
				w.log.InfoContext(ctx, "reconciled bills whose webhook did not come", "settled", n)
			}
		}
	}
}

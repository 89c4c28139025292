package worker

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/payflow/payflow/events"
	"github.com/payflow/payflow/outbox"
	"github.com/payflow/payflow/payflow"
	"github.com/payflow/payflow/pgclient"
	"github.com/payflow/payflow/store"
)

// refundRequest is payment.refund.requested: a partial or full refund of
// the charge's paid bill. It is judged under the charge's lease, so it
// waits for whatever earlier request still acts on the charge.
type refundRequest struct {
	w    *Worker
	env  events.Envelope
	d    events.RefundRequested
	req  payflow.RefundRequest
	hash []byte
}

func (r *refundRequest) data() any { return &r.d }

func (r *refundRequest) validate() (named, error) {
	d := r.d
	r.req = payflow.RefundRequest{MerchantID: d.MerchantID, ChargeID: d.ChargeID, RefundID: d.RefundID, Amount: d.Amount, Reason: d.Reason}
	n := named{ids: requestIDs{d.MerchantID, d.ChargeID}}
	if err := r.req.Validate(); err != nil {
		return n, err
	}
	r.hash = r.req.Fingerprint()
	n.key, n.hash = r.key(), r.hash
	return n, nil
}

// key is the request's own id, as its rejection is recorded under.
func (r *refundRequest) key() string { return "refund/" + r.req.MerchantID + "/" + r.req.RefundID }

// decided handles a refund request decided before: rejected (its
// rejection is its result) or stored under its refund id (then a pending
// one is taken over if nobody holds it).
func (r *refundRequest) decided(ctx context.Context) (bool, error) {
	req := r.req
	return decidedBefore(ctx, r.w, r.env, r.key(), r.hash, requestIDs{req.MerchantID, req.ChargeID}, "refund_id",
		func() (payflow.Refund, []byte, error) {
			rf, err := r.w.cfg.Store.RefundByKey(ctx, req.MerchantID, req.RefundID)
			return rf, rf.RequestHash, err
		},
		func(rf payflow.Refund) error {
			if rf.Status == payflow.RefundPending {
				return r.w.takeOverRefund(ctx, rf.PK)
			}
			return nil
		})
}

func (r *refundRequest) hold(ctx context.Context, n named, act func(context.Context, payflow.Charge) error) error {
	return r.w.onExisting(ctx, r.env, r, n, act)
}

// act reserves the refund's amount on the paid bill as it stores the
// refund (the store refuses what is not paid or would exceed the payment)
// and sends it to the PG.
func (r *refundRequest) act(ctx context.Context, c payflow.Charge) error {
	w, req := r.w, r.req
	if c.State == payflow.StatePaid && req.Amount != c.Bill.Amount && !pgclient.CapabilitiesOf(w.cfg.PG).PartialRefund {
		return refuse(events.RejectNotSupported, "the PG refunds only the whole payment; ask for the paid amount")
	}
	pk, created, err := w.cfg.Store.CreateRefund(ctx, payflow.NewRefund{
		MerchantID: req.MerchantID, RefundID: req.RefundID, Kind: "refund", ChargePK: c.PK, BillID: c.Bill.BillID,
		Amount: req.Amount, Reason: req.Reason, RequestHash: r.hash, Holder: holderOf(ctx),
	})
	switch {
	case errors.Is(err, store.ErrStale):
		// Judged under a lease that ran out and passed to another worker,
		// which may have judged the request otherwise: judge it again.
		return fmt.Errorf("worker: lease of charge %d lost before the refund was recorded: %w", c.PK, ErrBusy)
	case errors.Is(err, payflow.ErrNotPaid):
		return refuse(events.RejectInvalidState, "charge is "+string(c.State)+", not paid")
	case errors.Is(err, payflow.ErrExceedsPaid):
		return refuse(events.RejectAmountExceedsPaid, "refunds would exceed the paid amount")
	case err != nil:
		return err
	case !created:
		_, err := r.decided(ctx)
		return err
	}
	w.log.InfoContext(ctx, "refund accepted", "merchant_id", req.MerchantID, "charge_id", req.ChargeID, "refund_id", req.RefundID, "amount", req.Amount)
	return w.driveRefund(ctx, pk)
}

// takeOverRefund takes a pending refund whose charge nobody holds (its
// worker died or met an unknown outcome) and drives it. Held by someone, it
// is left to them.
func (w *Worker) takeOverRefund(ctx context.Context, pk int64) error {
	// This process may be driving it already (stalled past its lease): do
	// not take its lease from under it.
	if _, busy := w.driving.Load(refundKey(pk)); busy {
		return nil
	}
	r, err := w.cfg.Store.RefundByPK(ctx, pk)
	if err != nil || r.Status != payflow.RefundPending {
		return err
	}
	h, ok, err := w.cfg.Store.ClaimRefund(ctx, pk, w.cfg.Owner, w.cfg.Lease)
	if err != nil || !ok {
		return err
	}
	defer func() {
		if err := w.cfg.Store.ReleaseCharge(context.WithoutCancel(ctx), r.ChargePK, h); err != nil {
			w.log.WarnContext(ctx, "charge lease not released; it expires", "charge_pk", r.ChargePK, "err", err)
		}
	}()
	return w.driveRefund(ctx, pk)
}

// driveRefund sends a pending refund to the PG and records the outcome; the
// caller holds the charge's lease. Refunds are idempotent at the PG by
// refund id, so a retry after an unknown outcome cannot refund twice. The
// refund step of a re-payment also moves the re-payment on, in the same
// transaction, and then places its new bill.
func (w *Worker) driveRefund(ctx context.Context, pk int64) error {
	if _, busy := w.driving.LoadOrStore(refundKey(pk), true); busy {
		return nil
	}
	defer w.driving.Delete(refundKey(pk))
	r, err := w.cfg.Store.RefundByPK(ctx, pk)
	if err != nil {
		return err
	}
	if r.Status != payflow.RefundPending {
		return nil
	}
	var res pgclient.Refunded
	var final error
	b := w.newPGBackOff()
	err = w.retry(ctx, func() error {
		var err error
		res, err = w.cfg.PG.Refund(ctx, pgclient.RefundRequest{BillID: r.BillID, RefundID: r.PGRefundID, Amount: r.Amount, Reason: r.Reason})
		b.saw(err)
		if err != nil && !pgclient.Retriable(err) {
			final = err
			return nil
		}
		return err
	}, b, func(error, time.Duration) { w.cfg.Observer.Retry("refund") })
	if err != nil {
		// Unknown: the refund stays pending (its reservation held, its
		// charge busy) and the sweeper asks again, after the others.
		if err := w.cfg.Store.RetryRefundLater(context.WithoutCancel(ctx), pk, w.cfg.RetryBudget); err != nil {
			w.log.WarnContext(ctx, "refund retry not put off", "refund_id", r.RefundID, "err", err)
		}
		w.log.WarnContext(ctx, "refund outcome unknown; the sweeper will retry it", "refund_id", r.RefundID, "err", err)
		return ctx.Err()
	}
	result := payflow.RefundResult{Succeeded: final == nil, PGTxID: res.PGTxID}
	if final != nil {
		result.FailureReason = "pg_rejected: " + errorCode(final)
	}
	var next *payflow.RepayNext
	if r.Kind == "repay" && result.Succeeded {
		if next, err = w.repayNext(ctx, r); err != nil {
			return err
		}
	}
	leaseEnd := w.cfg.Now().Add(w.cfg.Lease) // a re-payment's next bill is leased with the refund's result
	_, err = w.cfg.Store.FinishRefund(context.WithoutCancel(ctx), pk, result, func(total int64) ([]outbox.Message, error) {
		typ := events.TypeRefundSucceeded
		if !result.Succeeded {
			typ = events.TypeRefundFailed
		}
		msg, err := w.message(typ, r.ChargeID, []string{"refund", itoa(r.PK), "finished"}, events.RefundResult{
			MerchantID: r.MerchantID, ChargeID: r.ChargeID, RefundID: publicRefundID(r), Amount: r.Amount, RefundedTotal: total, Reason: refundReason(r, result),
		})
		return []outbox.Message{msg}, err
	}, next)
	if errors.Is(err, store.ErrStale) {
		return nil
	}
	if err != nil {
		return err
	}
	w.cfg.Committed()
	if result.Succeeded {
		w.cfg.Observer.Result(events.TypeRefundSucceeded, r.Kind)
	} else {
		w.cfg.Observer.Result(events.TypeRefundFailed, result.FailureReason)
	}
	w.log.InfoContext(ctx, "refund finished", "refund_id", r.RefundID, "kind", r.Kind, "charge_id", r.ChargeID, "succeeded", result.Succeeded, "reason", result.FailureReason)
	if next != nil {
		return w.driveNewBill(ctx, r.ChargePK, leaseEnd)
	}
	return nil
}

// refundKey names a refund in the driving map.
func refundKey(pk int64) string { return "refund/" + itoa(pk) }

// publicRefundID is the refund id published in refund events: the
// merchant's, or "repay:<repay_id>" for a re-payment's refund step.
func publicRefundID(r payflow.Refund) string {
	if r.Kind == "repay" {
		return payflow.RepayRefundPrefix + r.RefundID
	}
	return r.RefundID
}

func refundReason(r payflow.Refund, res payflow.RefundResult) string {
	if !res.Succeeded {
		return res.FailureReason
	}
	return r.Reason
}

// SweepRefunds resumes pending refunds that nobody holds.
func (w *Worker) SweepRefunds(ctx context.Context, limit int) error {
	pks, err := w.cfg.Store.ExpiredRefunds(ctx, limit)
	if err != nil {
		return err
	}
	for _, pk := range pks {
		if err := w.takeOverRefund(ctx, pk); err != nil {
			w.log.WarnContext(ctx, "sweep: refund not finished", "refund_pk", pk, "err", err)
		}
	}
	return nil
}

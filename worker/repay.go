package worker

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/payflow/payflow/events"
	"github.com/payflow/payflow/outbox"
	"github.com/payflow/payflow/payflow"
	"github.com/payflow/payflow/store"
)

// repayRequest is payment.repay.requested: refund what is left of the
// paid bill, then bill the customer again under a new bill id through the
// same auto-pay-or-KakaoTalk decision. It is judged under the charge's
// lease, so a re-payment waits for any earlier one to finish and is then
// judged against where that left the charge; each step is recorded before
// the next starts, and the step that records the refund also stores the
// new bill, so a crash anywhere is taken over: never refunded without the
// new request, never billed twice.
type repayRequest struct {
	w    *Worker
	env  events.Envelope
	d    events.RepayRequested
	req  payflow.RepayRequest
	hash []byte
}

func (r *repayRequest) data() any { return &r.d }

func (r *repayRequest) validate() (named, error) {
	d := r.d
	r.req = payflow.RepayRequest{MerchantID: d.MerchantID, ChargeID: d.ChargeID, RepayID: d.RepayID, Amount: d.Amount}
	n := named{ids: requestIDs{d.MerchantID, d.ChargeID}}
	if err := r.req.Validate(); err != nil {
		return n, err
	}
	r.hash = r.req.Fingerprint()
	n.key, n.hash = r.key(), r.hash
	return n, nil
}

// key is the request's own id, as its rejection is recorded under.
func (r *repayRequest) key() string { return "repay/" + r.req.MerchantID + "/" + r.req.RepayID }

// decided handles a re-payment decided before: rejected, or stored under
// its repay id (then its current step goes on).
func (r *repayRequest) decided(ctx context.Context) (bool, error) {
	req := r.req
	return decidedBefore(ctx, r.w, r.env, r.key(), r.hash, requestIDs{req.MerchantID, req.ChargeID}, "repay_id",
		func() (payflow.Repay, []byte, error) {
			rp, err := r.w.cfg.Store.RepayByKey(ctx, req.MerchantID, req.RepayID)
			return rp, rp.RequestHash, err
		},
		func(rp payflow.Repay) error { return r.w.continueRepay(ctx, rp, time.Time{}) })
}

func (r *repayRequest) hold(ctx context.Context, n named, act func(context.Context, payflow.Charge) error) error {
	return r.w.onExisting(ctx, r.env, r, n, act)
}

// act stores the re-payment with its refund step and the bill that
// follows it, if the charge may be re-paid, and runs its first step.
func (r *repayRequest) act(ctx context.Context, c payflow.Charge) error {
	w, req := r.w, r.req
	if _, err := c.State.Repay(); err != nil {
		return refuse(events.RejectInvalidState, err.Error())
	}
	amount := req.Amount
	if amount == 0 {
		amount = c.Bill.Amount
	}
	bill, err := w.repayBill(ctx, c, amount)
	if err != nil {
		return err
	}
	leaseEnd := w.cfg.Now().Add(w.cfg.Lease) // CreateRepay renews the charge's lease
	rp, created, err := w.cfg.Store.CreateRepay(ctx, payflow.NewRepay{
		MerchantID: req.MerchantID, RepayID: req.RepayID, ChargePK: c.PK, OldBillID: c.Bill.BillID, Amount: amount,
		RequestHash: r.hash, Bill: bill, Holder: holderOf(ctx), Lease: w.cfg.Lease,
	})
	switch {
	case errors.Is(err, store.ErrStale):
		// Judged under a lease that ran out and passed to another worker,
		// which may have judged the request otherwise: judge it again.
		return fmt.Errorf("worker: lease of charge %d lost before the re-payment was recorded: %w", c.PK, ErrBusy)
	case errors.Is(err, payflow.ErrNotPaid):
		return refuse(events.RejectInvalidState, "the charge's bill is not paid")
	case err != nil:
		return err
	case !created:
		_, err := r.decided(ctx)
		return err
	}
	w.log.InfoContext(ctx, "re-payment accepted", "merchant_id", req.MerchantID, "charge_id", req.ChargeID, "repay_id", req.RepayID,
		"old_bill_id", c.Bill.BillID, "amount", amount)
	return w.continueRepay(ctx, rp, leaseEnd)
}

// continueRepay runs a re-payment's current step. Unless ctx runs under
// the charge's lease, a step is taken over only from a holder whose lease
// expired. leaseEnd, when not zero, is when the lease the caller just
// renewed ends by this process's clock (see driveNewBill).
func (w *Worker) continueRepay(ctx context.Context, rp payflow.Repay, leaseEnd time.Time) error {
	_, _, held := leaseOf(ctx)
	switch {
	case rp.Step == payflow.RepayRefunding && held:
		return w.driveRefund(ctx, rp.RefundPK)
	case rp.Step == payflow.RepayRefunding:
		return w.takeOverRefund(ctx, rp.RefundPK)
	case rp.Step == payflow.RepayPlacing && held:
		return w.driveNewBill(ctx, rp.ChargePK, leaseEnd)
	case rp.Step == payflow.RepayPlacing:
		_, err := w.takeOver(ctx, rp.ChargePK)
		return err
	}
	return nil // done or failed: its result is already in the outbox
}

// repayNext decides the new bill of a re-payment whose refund step
// succeeded, to be stored with that success.
func (w *Worker) repayNext(ctx context.Context, r payflow.Refund) (*payflow.RepayNext, error) {
	rp, err := w.cfg.Store.RepayByKey(ctx, r.MerchantID, r.RefundID)
	if err != nil {
		return nil, err
	}
	c, err := w.cfg.Store.ChargeByPK(ctx, rp.ChargePK)
	if err != nil {
		return nil, err
	}
	bill, err := w.repayBill(ctx, c, rp.Amount)
	if err != nil {
		return nil, err
	}
	return &payflow.RepayNext{RepayPK: rp.PK, Bill: bill, Owner: w.cfg.Owner, Lease: w.cfg.Lease}, nil
}

// repayBill decides how to bill the customer again.
func (w *Worker) repayBill(ctx context.Context, c payflow.Charge, amount int64) (payflow.Bill, error) {
	var method *payflow.StoredMethod
	if c.MemberID != "" {
		var err error
		if method, _, err = w.cfg.Methods.Default(ctx, c.MemberID); err != nil {
			return payflow.Bill{}, err
		}
	}
	dec := payflow.Decide(payflow.Customer{MemberID: c.MemberID}, method)
	return payflow.Bill{BillID: w.cfg.NewBillID(), Method: dec.Method, MethodID: dec.MethodID, FallbackReason: dec.Reason,
		Amount: amount, Status: payflow.BillPending}, nil
}

// repayProcessed builds payment.repay.processed for a re-payment's bill.
func (w *Worker) repayProcessed(ctx context.Context, c payflow.Charge, bill payflow.Bill) (outbox.Message, error) {
	rp, err := w.cfg.Store.RepayByPK(ctx, bill.RepayPK)
	if err != nil {
		return outbox.Message{}, err
	}
	return w.message(events.TypeRepayProcessed, c.ChargeID, []string{"bill", bill.BillID, "processed"}, events.RepayProcessed{
		MerchantID: c.MerchantID, ChargeID: c.ChargeID, RepayID: rp.RepayID, OldBillID: rp.OldBillID,
		BillID: bill.BillID, Method: string(bill.Method),
	})
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

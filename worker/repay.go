package worker

import (
	"context"
	"errors"
	"strconv"

	"github.com/jackc/pgx/v5"

	"github.com/payflow/payflow/events"
	"github.com/payflow/payflow/outbox"
	"github.com/payflow/payflow/payflow"
	"github.com/payflow/payflow/store"
)

// repay executes payment.repay.requested: refund what is left of the paid
// bill, then bill the customer again under a new bill id through the same
// auto-pay-or-KakaoTalk decision. Each step is recorded before the next
// starts, and the step that records the refund also stores the new bill, so
// a crash anywhere resumes: never refunded without the new request, never
// billed twice.
func (w *Worker) repay(ctx context.Context, env events.Envelope) error {
	var d events.RepayRequested
	if err := decodeData(env.Data, &d); err != nil {
		return w.reject(ctx, env, idsOf(env.Data), events.RejectInvalid, err.Error())
	}
	req := payflow.RepayRequest{MerchantID: d.MerchantID, ChargeID: d.ChargeID, RepayID: d.RepayID, Amount: d.Amount}
	who := ids{d.MerchantID, d.ChargeID}
	if err := req.Validate(); err != nil {
		return w.reject(ctx, env, who, events.RejectInvalid, err.Error())
	}
	hash := req.Fingerprint()
	rp, err := w.cfg.Store.RepayByKey(ctx, req.MerchantID, req.RepayID)
	if err == nil {
		return w.repayAgain(ctx, env, rp, hash)
	}
	if !errors.Is(err, store.ErrNotFound) {
		return err
	}
	c, err := w.cfg.Store.ChargeByKey(ctx, req.MerchantID, req.ChargeID)
	if errors.Is(err, store.ErrNotFound) {
		return w.reject(ctx, env, who, events.RejectUnknownCharge, "no such charge for this merchant")
	}
	if err != nil {
		return err
	}
	if c.State != payflow.StatePaid && c.State != payflow.StateRefunded {
		return w.reject(ctx, env, who, events.RejectInvalidState, "charge is "+string(c.State)+"; only a paid charge can be re-paid")
	}
	amount := req.Amount
	if amount == 0 {
		amount = c.Bill.Amount
	}
	rp, created, err := w.cfg.Store.CreateRepay(ctx, store.NewRepay{
		MerchantID: req.MerchantID, RepayID: req.RepayID, ChargePK: c.PK, OldBillID: c.Bill.BillID, Amount: amount,
		RequestHash: hash, LeaseOwner: w.cfg.Owner, Lease: w.cfg.Lease,
	})
	switch {
	case errors.Is(err, store.ErrNotPaid):
		return w.reject(ctx, env, who, events.RejectInvalidState, "the charge's bill is not paid")
	case err != nil:
		return err
	case !created:
		rp, err := w.cfg.Store.RepayByKey(ctx, req.MerchantID, req.RepayID)
		if err != nil {
			return err
		}
		return w.repayAgain(ctx, env, rp, hash)
	}
	w.log.Info("re-payment accepted", "merchant_id", req.MerchantID, "charge_id", req.ChargeID, "repay_id", req.RepayID,
		"old_bill_id", c.Bill.BillID, "amount", amount)
	return w.continueRepay(ctx, rp)
}

func (w *Worker) repayAgain(ctx context.Context, env events.Envelope, rp store.Repay, hash []byte) error {
	if string(rp.RequestHash) != string(hash) {
		c, _ := w.cfg.Store.ChargeByPK(ctx, rp.ChargePK)
		return w.reject(ctx, env, ids{rp.MerchantID, c.ChargeID}, events.RejectIdempotencyConflict,
			"repay_id was already used with different content")
	}
	return w.continueRepay(ctx, rp)
}

// continueRepay runs a re-payment's current step.
func (w *Worker) continueRepay(ctx context.Context, rp store.Repay) error {
	switch rp.Step {
	case "refunding":
		return w.resumeRefund(ctx, rp.RefundPK)
	case "placing":
		if rp.NewBillID == "" { // nothing was left to refund: start the new bill now
			bill, err := w.repayBill(ctx, rp)
			if err != nil {
				return err
			}
			if err := w.cfg.Store.StartRepayBill(ctx, rp.PK, "placing", bill, w.cfg.Owner, w.cfg.Lease); err != nil {
				return err
			}
		}
		return w.placeRepayBill(ctx, rp.ChargePK)
	}
	return nil // done or failed: its result is already in the outbox
}

// repayAfterRefund is called when a re-payment's refund step ended. On
// success it returns the statement that stores the new bill, to run in the
// transaction that records the refund; on failure the statement that fails
// the re-payment.
func (w *Worker) repayAfterRefund(ctx context.Context, r store.Refund, succeeded bool) (*store.Repay, func(pgx.Tx) error, error) {
	rp, err := w.cfg.Store.RepayByKey(ctx, r.MerchantID, r.RefundID[len("repay:"):])
	if err != nil {
		return nil, nil, err
	}
	if !succeeded {
		return &rp, func(tx pgx.Tx) error {
			_, err := tx.Exec(ctx, `UPDATE repays SET step = 'failed', failure_reason = 'refund_failed', updated_at = now()
				WHERE id = $1 AND step = 'refunding'`, rp.PK)
			return err
		}, nil
	}
	bill, err := w.repayBill(ctx, rp)
	if err != nil {
		return nil, nil, err
	}
	return &rp, func(tx pgx.Tx) error {
		return store.StartRepayBill(ctx, tx, rp.PK, "refunding", bill, w.cfg.Owner, w.cfg.Lease)
	}, nil
}

// repayBill decides how to bill the customer again.
func (w *Worker) repayBill(ctx context.Context, rp store.Repay) (store.Bill, error) {
	c, err := w.cfg.Store.ChargeByPK(ctx, rp.ChargePK)
	if err != nil {
		return store.Bill{}, err
	}
	var method *payflow.StoredMethod
	if c.MemberID != "" {
		if method, _, err = w.cfg.Methods.Default(ctx, c.MemberID); err != nil {
			return store.Bill{}, err
		}
	}
	dec := payflow.Decide(payflow.Customer{MemberID: c.MemberID}, method)
	return store.Bill{BillID: newBillID(), Method: dec.Method, MethodID: dec.MethodID, FallbackReason: dec.Reason,
		Amount: rp.Amount, Status: payflow.BillPending, RepayPK: rp.PK}, nil
}

// placeRepayBill drives the re-payment's new bill like any placement.
func (w *Worker) placeRepayBill(ctx context.Context, chargePK int64) error {
	return w.resume(ctx, chargePK)
}

// repayProcessed builds payment.repay.processed for a re-payment's bill.
func (w *Worker) repayProcessed(ctx context.Context, c store.Charge, bill store.Bill) (outbox.Message, error) {
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

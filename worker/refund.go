package worker

import (
	"context"
	"errors"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/jackc/pgx/v5"

	"github.com/payflow/payflow/events"
	"github.com/payflow/payflow/outbox"
	"github.com/payflow/payflow/payflow"
	"github.com/payflow/payflow/pgclient"
	"github.com/payflow/payflow/store"
)

// refund executes payment.refund.requested: a partial or full refund of the
// charge's paid bill.
func (w *Worker) refund(ctx context.Context, env events.Envelope) error {
	var d events.RefundRequested
	if err := decodeData(env.Data, &d); err != nil {
		return w.reject(ctx, env, idsOf(env.Data), events.RejectInvalid, err.Error())
	}
	req := payflow.RefundRequest{MerchantID: d.MerchantID, ChargeID: d.ChargeID, RefundID: d.RefundID, Amount: d.Amount, Reason: d.Reason}
	who := ids{d.MerchantID, d.ChargeID}
	if err := req.Validate(); err != nil {
		return w.reject(ctx, env, who, events.RejectInvalid, err.Error())
	}
	hash := req.Fingerprint()
	if done, err := w.refundAgain(ctx, env, req, hash); done || err != nil {
		return err
	}
	c, err := w.cfg.Store.ChargeByKey(ctx, req.MerchantID, req.ChargeID)
	if errors.Is(err, store.ErrNotFound) {
		return w.reject(ctx, env, who, events.RejectUnknownCharge, "no such charge for this merchant")
	}
	if err != nil {
		return err
	}
	pk, created, err := w.cfg.Store.CreateRefund(ctx, store.NewRefund{
		MerchantID: req.MerchantID, RefundID: req.RefundID, Kind: "refund", ChargePK: c.PK, BillID: c.Bill.BillID,
		Amount: req.Amount, Reason: req.Reason, RequestHash: hash, LeaseOwner: w.cfg.Owner, Lease: w.cfg.Lease,
	})
	switch {
	case errors.Is(err, store.ErrNotPaid):
		return w.reject(ctx, env, who, events.RejectInvalidState, "charge is "+string(c.State)+", not paid")
	case errors.Is(err, store.ErrExceedsPaid):
		return w.reject(ctx, env, who, events.RejectAmountExceedsPaid, "refunds would exceed the paid amount")
	case err != nil:
		return err
	case !created: // a concurrent delivery of the same refund id
		_, err := w.refundAgain(ctx, env, req, hash)
		return err
	}
	w.log.Info("refund accepted", "merchant_id", req.MerchantID, "charge_id", req.ChargeID, "refund_id", req.RefundID, "amount", req.Amount)
	return w.driveRefund(ctx, pk)
}

// refundAgain handles a refund id that already exists. done is false when
// it does not.
func (w *Worker) refundAgain(ctx context.Context, env events.Envelope, req payflow.RefundRequest, hash []byte) (done bool, err error) {
	r, err := w.cfg.Store.RefundByKey(ctx, req.MerchantID, req.RefundID)
	if errors.Is(err, store.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return true, err
	}
	if string(r.RequestHash) != string(hash) {
		return true, w.reject(ctx, env, ids{req.MerchantID, req.ChargeID}, events.RejectIdempotencyConflict,
			"refund_id was already used with different content")
	}
	if r.Status == "pending" {
		return true, w.resumeRefund(ctx, r.PK)
	}
	return true, nil
}

// resumeRefund claims a pending refund (its holder died or gave up) and
// drives it.
func (w *Worker) resumeRefund(ctx context.Context, pk int64) error {
	ok, err := w.cfg.Store.ClaimRefund(ctx, pk, w.cfg.Owner, w.cfg.Lease)
	if err != nil || !ok {
		return err
	}
	return w.driveRefund(ctx, pk)
}

// driveRefund sends a claimed refund to the PG and records the outcome.
// Refunds are idempotent at the PG by refund id, so a retry after an unknown
// outcome cannot refund twice. The refund step of a re-payment also moves
// the re-payment on, in the same transaction.
func (w *Worker) driveRefund(ctx context.Context, pk int64) error {
	key := "refund/" + itoa(pk)
	if _, busy := w.driving.LoadOrStore(key, true); busy {
		return nil
	}
	defer w.driving.Delete(key)
	r, err := w.cfg.Store.RefundByPK(ctx, pk)
	if err != nil {
		return err
	}
	if r.Status != "pending" {
		return nil
	}
	var res pgclient.Refunded
	var final error
	b := w.newPGBackOff()
	err = backoff.RetryNotify(func() error {
		var err error
		res, err = w.cfg.PG.Refund(ctx, pgclient.RefundRequest{BillID: r.BillID, RefundID: pgRefundID(r), Amount: r.Amount, Reason: r.Reason})
		b.saw(err)
		if err != nil && !pgclient.Retriable(err) {
			final = err
			return nil
		}
		return err
	}, backoff.WithContext(b, ctx), func(error, time.Duration) { w.cfg.Observer.Retry("refund") })
	if err != nil {
		// Unknown: keep the reservation and leave the refund to the sweeper.
		_ = w.cfg.Store.ReleaseRefund(context.WithoutCancel(ctx), pk, w.cfg.Owner)
		w.log.Warn("refund outcome unknown; the sweeper will retry it", "refund_id", r.RefundID, "err", err)
		return ctx.Err()
	}
	result := store.RefundResult{Succeeded: final == nil, PGTxID: res.PGTxID}
	if final != nil {
		result.FailureReason = "pg_rejected: " + errorCode(final)
	}
	var then func(pgx.Tx) error
	var repay *store.Repay
	if r.Kind == "repay" {
		if repay, then, err = w.repayAfterRefund(ctx, r, result.Succeeded); err != nil {
			return err
		}
	}
	_, err = w.cfg.Store.FinishRefund(context.WithoutCancel(ctx), pk, result, func(total int64) ([]outbox.Message, error) {
		typ := events.TypeRefundSucceeded
		if !result.Succeeded {
			typ = events.TypeRefundFailed
		}
		msg, err := w.message(typ, r.ChargeID, []string{"refund", itoa(r.PK), "finished"}, events.RefundResult{
			MerchantID: r.MerchantID, ChargeID: r.ChargeID, RefundID: r.RefundID, Amount: r.Amount, RefundedTotal: total, Reason: refundReason(r, result),
		})
		return []outbox.Message{msg}, err
	}, then)
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
	w.log.Info("refund finished", "refund_id", r.RefundID, "charge_id", r.ChargeID, "succeeded", result.Succeeded, "reason", result.FailureReason)
	if repay != nil && result.Succeeded {
		return w.placeRepayBill(ctx, repay.ChargePK)
	}
	return nil
}

// pgRefundID is the refund's idempotency key at the PG; merchants choose
// refund ids, so it is scoped by merchant.
func pgRefundID(r store.Refund) string { return r.MerchantID + "/" + r.RefundID }

func refundReason(r store.Refund, res store.RefundResult) string {
	if !res.Succeeded {
		return res.FailureReason
	}
	return r.Reason
}

// SweepRefunds resumes pending refunds whose lease expired.
func (w *Worker) SweepRefunds(ctx context.Context, limit int) error {
	pks, err := w.cfg.Store.ExpiredRefunds(ctx, limit)
	if err != nil {
		return err
	}
	for _, pk := range pks {
		if err := w.resumeRefund(ctx, pk); err != nil {
			w.log.Warn("sweep: refund not finished", "refund_pk", pk, "err", err)
		}
	}
	return nil
}

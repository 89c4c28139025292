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

// cancelRequest is payment.bill.cancel.requested: destroy the charge's
// unpaid bill at the PG (청구서파기). It is judged under the charge's
// lease: a cancel that arrives while the bill is still being placed waits
// for the placement instead of being refused. Destroying is idempotent at
// the PG, so a redelivery after a crash simply destroys again and records
// once.
type cancelRequest struct {
	w   *Worker
	env events.Envelope
	d   events.CancelRequested
	req payflow.CancelRequest
}

func (r *cancelRequest) data() any { return &r.d }

func (r *cancelRequest) validate() (named, error) {
	d := r.d
	r.req = payflow.CancelRequest{MerchantID: d.MerchantID, ChargeID: d.ChargeID, Reason: d.Reason}
	return named{ids: requestIDs{d.MerchantID, d.ChargeID}}, r.req.Validate()
}

// decided reports a cancel rejected before: a cancel has no id of its own,
// and one carried out before is found in the charge's state.
func (r *cancelRequest) decided(ctx context.Context) (bool, error) {
	return r.w.replayed(ctx, r.env, "", nil)
}

func (r *cancelRequest) hold(ctx context.Context, n named, act func(context.Context, payflow.Charge) error) error {
	return r.w.onExisting(ctx, r.env, r, n, act)
}

// act destroys the bill if the charge may be cancelled, and records it.
func (r *cancelRequest) act(ctx context.Context, c payflow.Charge) error {
	w := r.w
	if c.State == payflow.StateCancelled {
		return w.recordCancel(ctx, c) // already destroyed: the event exists, or is written once now
	}
	if _, err := c.State.Cancel(); err != nil {
		return refuse(events.RejectInvalidState, err.Error())
	}
	var final error
	b := w.newPGBackOff()
	err := w.retry(ctx, func() error {
		err := w.cfg.PG.DestroyBill(ctx, c.Bill.BillID)
		b.saw(err)
		if err != nil && !pgclient.Retriable(err) {
			final = err
			return nil
		}
		return err
	}, b, func(error, time.Duration) { w.cfg.Observer.Retry("destroy") })
	if err != nil {
		return err // the PG is unreachable: not handled yet, the consumer retries
	}
	if final != nil {
		return refuse(events.RejectInvalidState, "the PG refused to destroy the bill: "+errorCode(final))
	}
	return w.recordCancel(ctx, c)
}

func (w *Worker) recordCancel(ctx context.Context, c payflow.Charge) error {
	msg, err := w.message(events.TypeBillCancelled, c.ChargeID, []string{"bill", c.Bill.BillID, "cancelled"}, events.BillCancelled{
		MerchantID: c.MerchantID, ChargeID: c.ChargeID, BillID: c.Bill.BillID,
	})
	if err != nil {
		return err
	}
	err = w.cfg.Store.CancelBill(context.WithoutCancel(ctx), c.PK, c.Bill.BillID, holderOf(ctx), []outbox.Message{msg})
	if errors.Is(err, store.ErrStale) {
		// Judged under a lease that ran out and passed to another worker,
		// or against a bill settled since: judge it again.
		return fmt.Errorf("worker: charge %d changed before the cancel was recorded: %w", c.PK, ErrBusy)
	}
	if err != nil {
		return err
	}
	w.cfg.Committed()
	w.cfg.Observer.Result(events.TypeBillCancelled, "")
	w.log.InfoContext(ctx, "bill cancelled", "charge_id", c.ChargeID, "bill_id", c.Bill.BillID)
	return nil
}

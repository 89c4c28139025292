package worker

import (
	"context"
	"time"

	"github.com/payflow/payflow/events"
	"github.com/payflow/payflow/outbox"
	"github.com/payflow/payflow/payflow"
	"github.com/payflow/payflow/pgclient"
)

// cancel executes payment.bill.cancel.requested: destroy the charge's
// unpaid bill at the PG (청구서파기). It is judged under the charge's lease:
// a cancel that arrives while the bill is still being placed waits for the
// placement instead of being refused. Destroying is idempotent at the PG,
// so a redelivery after a crash simply destroys again and records once.
func (w *Worker) cancel(ctx context.Context, env events.Envelope) error {
	var d events.CancelRequested
	if err := decodeData(env, &d); err != nil {
		return w.reject(ctx, env, idsOf(env.Data), events.RejectInvalid, err.Error())
	}
	req := payflow.CancelRequest{MerchantID: d.MerchantID, ChargeID: d.ChargeID, Reason: d.Reason}
	who := ids{d.MerchantID, d.ChargeID}
	if err := req.Validate(); err != nil {
		return w.reject(ctx, env, who, events.RejectInvalid, err.Error())
	}
	return w.onExisting(ctx, env, existingRequest{who: who,
		decided: func(ctx context.Context, _ bool) (bool, error) { return w.replayed(ctx, env, "", nil) },
	}, func(ctx context.Context, c payflow.Charge) error {
		if c.State == payflow.StateCancelled {
			return w.recordCancel(ctx, c) // already destroyed: the event exists, or is written once now
		}
		if _, err := c.State.Cancel(); err != nil {
			return w.reject(ctx, env, who, events.RejectInvalidState, err.Error())
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
			return w.reject(ctx, env, who, events.RejectInvalidState, "the PG refused to destroy the bill: "+errorCode(final))
		}
		return w.recordCancel(ctx, c)
	})
}

func (w *Worker) recordCancel(ctx context.Context, c payflow.Charge) error {
	msg, err := w.message(events.TypeBillCancelled, c.ChargeID, []string{"bill", c.Bill.BillID, "cancelled"}, events.BillCancelled{
		MerchantID: c.MerchantID, ChargeID: c.ChargeID, BillID: c.Bill.BillID,
	})
	if err != nil {
		return err
	}
	if err := w.cfg.Store.CancelBill(context.WithoutCancel(ctx), c.PK, c.Bill.BillID, []outbox.Message{msg}); err != nil {
		return err
	}
	w.cfg.Committed()
	w.cfg.Observer.Result(events.TypeBillCancelled, "")
	w.log.InfoContext(ctx, "bill cancelled", "charge_id", c.ChargeID, "bill_id", c.Bill.BillID)
	return nil
}

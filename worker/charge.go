package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/cenkalti/backoff/v4"

	"github.com/payflow/payflow/events"
	"github.com/payflow/payflow/internal/mutation"
	"github.com/payflow/payflow/outbox"
	"github.com/payflow/payflow/payflow"
	"github.com/payflow/payflow/pgclient"
	"github.com/payflow/payflow/store"
)

// chargeRequest is payment.charge.requested.
//
// The money path: validate; decide auto-pay or KakaoTalk bill; store the
// charge, its first bill id and a lease in one statement (a crash after this
// loses nothing: the sweeper finishes it); call the PG with retries, looking
// the bill up before any retry whose predecessor may have reached the PG;
// store the outcome and its result event in one statement.
type chargeRequest struct {
	w          *Worker
	env        events.Envelope
	d          events.ChargeRequested
	req        payflow.ChargeRequest
	hash       []byte
	billingKey string // the member's default method's, read as the charge is decided
	// leaseEnd is when the lease CreateCharge takes ends at the earliest,
	// by this process's clock: read before the claim was sent.
	leaseEnd time.Time
}

func (r *chargeRequest) data() any { return &r.d }

func (r *chargeRequest) validate() (named, error) {
	d := r.d
	r.req = payflow.ChargeRequest{
		MerchantID: d.MerchantID, ChargeID: d.ChargeID, Amount: d.Amount, Currency: d.Currency, OrderName: d.OrderName,
		Customer: payflow.Customer{MemberID: d.Customer.MemberID, Phone: d.Customer.Phone, Name: d.Customer.Name},
	}
	// Its rejections are recorded under its event alone: the key of a
	// charge request is its charge's, which storing the charge guards.
	n := named{ids: requestIDs{d.MerchantID, d.ChargeID}}
	if err := r.req.Validate(); err != nil {
		return n, err
	}
	r.hash = r.req.Fingerprint()
	return n, nil
}

// decided is never true before the charge is stored: a charge request
// finds that it was decided before when storing its charge finds the
// charge there (hold), so a new charge, the common case, costs one read
// and one write before the PG call.
func (r *chargeRequest) decided(context.Context) (bool, error) { return false, nil }

// hold decides the charge and stores it with its lease, or finds it
// stored: a redelivery, a producer retry, or the same id reused.
func (r *chargeRequest) hold(ctx context.Context, _ named, act func(context.Context, payflow.Charge) error) error {
	w, req := r.w, r.req
	dec, bill, pk, created, err := r.create(ctx)
	if err != nil {
		return err
	}
	if !created {
		existing, err := w.cfg.Store.ChargeByKey(ctx, req.MerchantID, req.ChargeID)
		if err != nil {
			return err
		}
		return r.redelivered(ctx, existing)
	}
	bill.ChargePK = pk
	c := payflow.Charge{PK: pk, MerchantID: req.MerchantID, ChargeID: req.ChargeID, RequestHash: r.hash, RequestEventID: r.env.ID,
		Amount: req.Amount, OrderName: req.OrderName, MemberID: req.Customer.MemberID, Phone: req.Customer.Phone,
		CustomerName: req.Customer.Name, State: payflow.StatePlacing, LeaseOwner: w.cfg.Owner, Bill: bill}
	if w.log.Enabled(ctx, slog.LevelDebug) { // its arguments cost 2 % of serve's CPU when nobody reads them
		w.log.DebugContext(ctx, "charge accepted", "merchant_id", req.MerchantID, "charge_id", req.ChargeID, "amount", req.Amount,
			"method", dec.Method, "fallback_reason", dec.Reason, "bill_id", bill.BillID, "phone", payflow.MaskPhone(req.Customer.Phone))
	}
	return act(ctx, c)
}

// act places the new charge's first bill: the money rules were its
// judgement, and nobody has asked the PG for the bill yet.
func (r *chargeRequest) act(ctx context.Context, c payflow.Charge) error {
	w := r.w
	if _, busy := w.driving.LoadOrStore(c.PK, true); busy {
		return nil
	}
	defer w.driving.Delete(c.PK)
	return w.drive(ctx, c, start{billingKey: r.billingKey, leaseEnd: r.leaseEnd})
}

// create chooses the charge's method (auto-pay with the member's default
// method, or a KakaoTalk bill) and stores the charge with its first bill
// and a lease. created is false when the charge was there already.
func (r *chargeRequest) create(ctx context.Context) (dec payflow.Decision, bill payflow.Bill, pk int64, created bool, err error) {
	w, req := r.w, r.req
	ctx, end := w.cfg.Observer.Step(ctx, StepDecide)
	defer func() { end(err) }()
	var method *payflow.StoredMethod
	if req.Customer.MemberID != "" {
		if method, r.billingKey, err = w.cfg.Methods.Default(ctx, req.Customer.MemberID); err != nil {
			return dec, bill, 0, false, fmt.Errorf("worker: default method: %w", err)
		}
	}
	dec = payflow.Decide(req.Customer, method)
	bill = payflow.Bill{BillID: w.cfg.NewBillID(), Method: dec.Method, MethodID: dec.MethodID, FallbackReason: dec.Reason, Amount: req.Amount, Status: payflow.BillPending}
	r.leaseEnd = w.cfg.Now().Add(w.cfg.Lease)
	pk, created, err = w.cfg.Store.CreateCharge(ctx, payflow.NewCharge{
		Request: req, RequestHash: r.hash, RequestEventID: r.env.ID, Bill: bill, LeaseOwner: w.cfg.Owner, Lease: w.cfg.Lease,
	})
	return dec, bill, pk, created, err
}

// redelivered handles a charge request whose (merchant_id, charge_id) is
// stored already.
func (r *chargeRequest) redelivered(ctx context.Context, c payflow.Charge) error {
	if string(c.RequestHash) != string(r.hash) {
		return r.w.reject(ctx, r.env, requestIDs{c.MerchantID, c.ChargeID}, events.RejectIdempotencyConflict,
			"charge_id was already used with different content")
	}
	if c.State != payflow.StatePlacing {
		return nil // done before: its result is already in the outbox
	}
	// Still placing: its holder died, is retrying, or this process already
	// drives it. Take it over only if the lease allows; otherwise the holder
	// or the sweeper finishes it, and this delivery has nothing to add.
	_, err := r.w.takeOver(ctx, c.PK)
	return err
}

// takeOver claims a placing charge whose lease has expired and drives it,
// looking the bill up first because an earlier holder may have reached the
// PG. A held lease, this process's own included, means a request may still
// be in flight: then nothing is done, and the holder or the sweeper
// finishes it. held tells whether it took the charge.
func (w *Worker) takeOver(ctx context.Context, pk int64) (held bool, err error) {
	if _, busy := w.driving.LoadOrStore(pk, true); busy {
		return false, nil
	}
	defer w.driving.Delete(pk)
	leaseEnd := w.cfg.Now().Add(w.cfg.Lease)
	ok, err := w.cfg.Store.ClaimCharge(ctx, pk, w.cfg.Owner, w.cfg.Lease)
	if err != nil || !ok {
		return false, err
	}
	c, err := w.cfg.Store.ChargeByPK(ctx, pk)
	if err != nil {
		return true, err
	}
	if c.State != payflow.StatePlacing {
		return true, nil
	}
	return true, w.drive(ctx, c, start{lookUpFirst: true, leaseEnd: leaseEnd})
}

// driveNewBill drives a charge whose new bill the caller has just stored
// and leased to itself (a re-payment's), without a look-up: nobody has
// asked the PG for that bill yet. leaseEnd is when that lease ends by this
// process's clock, read before the statement that took it; zero when the
// caller cannot know (then the database's lease_until bounds the drive).
func (w *Worker) driveNewBill(ctx context.Context, pk int64, leaseEnd time.Time) error {
	if _, busy := w.driving.LoadOrStore(pk, true); busy {
		return nil
	}
	defer w.driving.Delete(pk)
	c, err := w.cfg.Store.ChargeByPK(ctx, pk)
	if err != nil {
		return err
	}
	if c.State != payflow.StatePlacing || c.LeaseOwner != w.cfg.Owner {
		return nil
	}
	// The earlier of the caller's reading and the database's record of the
	// lease's end bounds this drive: the first holds however the clocks of
	// this host and the database differ, the second however long ago the
	// caller took the lease.
	end := c.LeaseUntil
	if !leaseEnd.IsZero() && leaseEnd.Before(end) {
		end = leaseEnd
	}
	return w.drive(ctx, c, start{leaseEnd: end})
}

// start is how a drive begins.
type start struct {
	// lookUpFirst: an earlier holder of the charge may have reached the
	// PG, so the bill is looked up before anything is sent (a drive taken
	// over). Otherwise nobody has asked the PG for the bill yet.
	lookUpFirst bool
	// billingKey is the auto-pay billing key when the caller already has
	// it; otherwise it is read when needed.
	billingKey string
	// leaseEnd is when the drive's lease ends at the earliest, by this
	// process's clock: the time read before the statement that took or
	// renewed it, plus the lease. It is fixed when the lease is taken, not
	// when the drive starts: a process that stalls between the two (a
	// claim queued behind a slow flush, a paused host) must not think its
	// lease fresh, or its request could land after a successor looked the
	// bill up and gave it up without the PG ever seeing its id.
	leaseEnd time.Time
}

// outcome is how one bill's placement ended.
type outcome struct {
	accepted bool
	pgTxID   string
	url      pgclient.BillURL    // the pay URL the PG gave at acceptance, if any
	decline  payflow.DeclineCode // auto-pay refused: fall back
	failed   string              // not placed, for this reason
	unknown  bool                // the PG could not tell: leave it to the sweeper
	attempts int
}

// errLeaseRunOut stops a drive whose lease may have passed to another
// worker.
var errLeaseRunOut = errors.New("worker: the lease has run out; the charge is left to its next holder")

// failedDecline is the failure reason of a declined bill that has no
// fallback: a KakaoTalk bill the PG refused.
func failedDecline(code payflow.DeclineCode) string { return "declined: " + string(code) }

// drive places the charge's current bill until the charge leaves placing.
// The caller holds the lease.
func (w *Worker) drive(ctx context.Context, c payflow.Charge, from start) error {
	bill := c.Bill
	attempts := c.Attempts
	for {
		out := w.place(ctx, c, bill, from)
		attempts += out.attempts
		switch {
		case out.accepted:
			w.storePGURL(ctx, bill, out.url)
			return w.finish(ctx, c, bill, payflow.PlaceResult{ChargeState: payflow.StateRequested, BillStatus: payflow.BillRequested, PGTxID: out.pgTxID, Attempts: attempts})
		case out.decline != "" && bill.Method != payflow.MethodAutoPay && !mutation.On("kakao-fallback"):
			// Fallback is auto-pay's alone: a refused KakaoTalk bill ends
			// the charge, or one charge could send bills without end.
			return w.finish(ctx, c, bill, payflow.PlaceResult{ChargeState: payflow.StatePlaceFailed, BillStatus: payflow.BillDeclined,
				FailureReason: failedDecline(out.decline), Attempts: attempts})
		case out.decline != "":
			reason, methodStatus := payflow.AfterDecline(out.decline)
			next := payflow.Bill{BillID: w.cfg.NewBillID(), ChargePK: c.PK, Method: payflow.MethodKakaoBill, FallbackReason: reason,
				Amount: bill.Amount, Status: payflow.BillPending, RepayPK: bill.RepayPK}
			// Decline also renews the lease: the next bill's placement must
			// have a whole lease (retry budget plus a call timeout) too.
			renewedEnd := w.cfg.Now().Add(w.cfg.Lease)
			if err := w.cfg.Store.Decline(ctx, c.PK, bill, out.decline, methodStatus, next, w.cfg.Owner, w.cfg.Lease); err != nil {
				if errors.Is(err, store.ErrStale) {
					return nil
				}
				return err
			}
			w.log.InfoContext(ctx, "auto-pay declined; sending KakaoTalk bill", "charge_id", c.ChargeID, "declined_bill_id", bill.BillID,
				"decline", out.decline, "bill_id", next.BillID)
			bill, from.lookUpFirst, from.leaseEnd = next, false, renewedEnd
		case out.failed != "":
			return w.finish(ctx, c, bill, payflow.PlaceResult{ChargeState: payflow.StatePlaceFailed, BillStatus: payflow.BillAbandoned, FailureReason: out.failed, Attempts: attempts})
		default: // unknown, or our context ended
			// The lease is left to expire rather than released: until then a
			// request of ours may still be in flight, and a successor that
			// looked the bill up sooner could wrongly conclude it was never
			// placed.
			w.log.WarnContext(ctx, "charge outcome unknown; the sweeper will look it up when the lease expires", "charge_id", c.ChargeID, "bill_id", bill.BillID)
			return ctx.Err()
		}
	}
}

// storePGURL keeps the pay URL a PG gave when it accepted the bill, for a
// PG that cannot be asked for it again (PaySSam), before the bill is
// reported placed, so that a merchant who asks for it on charge.processed
// finds it. It is best effort: the money path does not wait on it, and a
// bill without it only has no pay URL to show.
func (w *Worker) storePGURL(ctx context.Context, bill payflow.Bill, u pgclient.BillURL) {
	if u.URL == "" {
		return
	}
	if err := w.cfg.Store.StorePGURL(context.WithoutCancel(ctx), bill.BillID, u.URL, u.ExpiresAt); err != nil {
		w.log.WarnContext(ctx, "could not store the bill's pay URL; it cannot be shown later", "bill_id", bill.BillID, "err", err)
	}
}

// finish records the placement's outcome with its result event.
func (w *Worker) finish(ctx context.Context, c payflow.Charge, bill payflow.Bill, r payflow.PlaceResult) error {
	r.ChargePK, r.BillID, r.RepayPK, r.Owner = c.PK, bill.BillID, bill.RepayPK, w.cfg.Owner
	var msg outbox.Message
	var err error
	if r.ChargeState == payflow.StateRequested && bill.RepayPK != 0 {
		msg, err = w.repayProcessed(ctx, c, bill)
	} else if r.ChargeState == payflow.StateRequested {
		msg, err = w.message(events.TypeChargeProcessed, c.ChargeID, []string{"bill", bill.BillID, "processed"}, events.ChargeProcessed{
			MerchantID: c.MerchantID, ChargeID: c.ChargeID, BillID: bill.BillID, Method: string(bill.Method), FallbackReason: string(bill.FallbackReason),
		})
	} else {
		failed := events.ChargeFailed{MerchantID: c.MerchantID, ChargeID: c.ChargeID, Reason: r.FailureReason, Attempts: r.Attempts}
		if bill.RepayPK != 0 {
			rp, rerr := w.cfg.Store.RepayByPK(ctx, bill.RepayPK)
			if rerr != nil {
				return rerr
			}
			failed.RepayID = rp.RepayID
		}
		msg, err = w.message(events.TypeChargeFailed, c.ChargeID, []string{"bill", bill.BillID, "failed"}, failed)
	}
	if err != nil {
		return err
	}
	// The PG has acted: record it even if our caller is shutting down.
	cctx, end := w.cfg.Observer.Step(context.WithoutCancel(ctx), StepCommit)
	err = w.cfg.Store.FinishPlacing(cctx, r, []outbox.Message{msg})
	end(err)
	if errors.Is(err, store.ErrStale) {
		return nil
	}
	if err != nil {
		return err
	}
	w.cfg.Committed()
	if r.ChargeState == payflow.StateRequested {
		w.cfg.Observer.Result(eventTypeOf(bill), string(bill.Method)+"/"+orNone(string(bill.FallbackReason)))
	} else {
		w.cfg.Observer.Result(events.TypeChargeFailed, r.FailureReason)
	}
	if w.log.Enabled(ctx, slog.LevelDebug) {
		w.log.DebugContext(ctx, "charge placed", "charge_id", c.ChargeID, "merchant_id", c.MerchantID, "state", r.ChargeState,
			"bill_id", bill.BillID, "method", bill.Method, "attempts", r.Attempts, "reason", r.FailureReason)
	}
	return nil
}

// place asks the PG for one bill, with retries. Before any attempt that
// follows one whose outcome is unknown (a timeout, a 5xx, a duplicate bill
// id) it looks the bill up, so a bill is never placed twice.
//
// It concludes "not placed" only when the PG said so: every attempt of
// this drive failed where the PG did not act, and no request of an earlier
// holder may still land. A drive taken over (lookUpFirst) starts with the
// earlier holder's outcome unknown; only the PG's "not found" clears it
// (that holder's requests are older than its lease, which outlasts its
// retry budget plus a call timeout, so they have landed or died). A
// request of this drive whose outcome is unknown is never cleared: it may
// still be in flight when the drive gives up.
func (w *Worker) place(ctx context.Context, c payflow.Charge, bill payflow.Bill, from start) outcome {
	var out outcome
	billingKey := from.billingKey
	// Past this deadline (a margin before the lease expires, by our own
	// clock) no request of this drive may leave: a successor may hold the
	// charge and have looked the bill up, and a request of ours landing
	// after that look-up is what makes a bill placed twice or given up on
	// while it is live.
	deadline := from.leaseEnd.Add(-w.cfg.Lease / 10)
	if mutation.On("lease-from-drive") {
		deadline = w.cfg.Now().Add(w.cfg.Lease - w.cfg.Lease/10)
	}
	leaseLost := false
	needLookup := from.lookUpFirst
	inherited, own, keyTrouble := from.lookUpFirst && !mutation.On("resume-known"), false, false
	var lastErr error
	b := w.newPGBackOff()
	op := func() error {
		if w.cfg.Now().After(deadline) {
			leaseLost = true
			return backoff.Permanent(errLeaseRunOut)
		}
		if needLookup {
			p, err := w.cfg.PG.LookupPayment(ctx, bill.BillID)
			switch {
			case err == nil:
				out = fromPayment(p, out.attempts)
				return nil
			case pgclient.KindOf(err) != pgclient.KindNotFound:
				lastErr = err
				return err
			}
			needLookup, inherited = false, false // the PG never got it: placing it is safe
		}
		if bill.Method == payflow.MethodAutoPay && billingKey == "" {
			k, err := w.cfg.Methods.BillingKey(ctx, bill.MethodID)
			switch {
			case errors.Is(err, payflow.ErrMethodUnusable) && own:
				// Deleted since an attempt of ours whose outcome is
				// unknown: the card is not sent again, and the bill is
				// not given up either, for that attempt may still land.
				// Look it up until it shows or the budget ends; then the
				// sweeper decides, once the lease has outlived it.
				needLookup, lastErr = true, err
				return err
			case errors.Is(err, payflow.ErrMethodUnusable), err != nil && mutation.On("key-blip"):
				out.decline = payflow.DeclineInvalid // deleted, or its key cannot be opened: fall back
				return nil
			case err != nil:
				// The key source is struggling, not the card: retry.
				keyTrouble, lastErr = true, err
				return err
			}
			billingKey = k
		}
		// Checked again just before the request leaves: a look-up or a
		// key read can outlast the lease (seed 11135), and what it found
		// may no longer be true for the successor.
		if w.cfg.Now().After(deadline) && !mutation.On("deadline-once") {
			leaseLost = true
			return backoff.Permanent(errLeaseRunOut)
		}
		out.attempts++
		acc, err := w.call(ctx, c, bill, billingKey)
		b.saw(err)
		if err != nil {
			// Read the key again before the next attempt: the member may
			// delete the card meanwhile (found by review: a card deleted
			// while its first attempt met a 503 was charged by the retry).
			billingKey = ""
		}
		if err == nil {
			out.accepted, out.pgTxID = true, acc.PGTxID
			out.url = pgclient.BillURL{URL: acc.URL, ExpiresAt: acc.URLExpiresAt}
			return nil
		}
		lastErr = err
		switch pgclient.KindOf(err) {
		case pgclient.KindUnknown, pgclient.KindDuplicate:
			needLookup, own = true, true
			return err
		case pgclient.KindTransient:
			return err
		case pgclient.KindDeclined:
			out.decline = declineCode(err)
			return nil
		}
		out.failed = "pg_rejected: " + errorCode(err)
		return nil
	}
	err := w.retry(ctx, op, b, func(err error, wait time.Duration) {
		w.cfg.Observer.Retry(string(bill.Method))
		w.log.WarnContext(ctx, "PG call failed; retrying", "charge_id", c.ChargeID, "bill_id", bill.BillID, "kind", pgclient.KindOf(err), "retry_in", wait)
	})
	if err == nil {
		return out
	}
	if w.cfg.Now().After(deadline) {
		leaseLost = true // a successor may hold the charge: we cannot know it was not placed
	}
	if ctx.Err() != nil || inherited || own || keyTrouble || leaseLost {
		// A request may still land, or we never got to ask: the charge
		// stays placing and the sweeper looks it up again once the lease
		// has expired, when any request in flight has long landed or died.
		return outcome{unknown: true, attempts: out.attempts}
	}
	// Every attempt failed where the PG did not act: certainly not placed.
	return outcome{failed: "retries_exhausted: " + errorCode(lastErr), attempts: out.attempts}
}

// call performs the bill's PG operation.
func (w *Worker) call(ctx context.Context, c payflow.Charge, bill payflow.Bill, billingKey string) (pgclient.Accepted, error) {
	if bill.Method == payflow.MethodAutoPay {
		return w.cfg.PG.AutoPay(ctx, pgclient.AutoPayRequest{BillID: bill.BillID, MerchantID: c.MerchantID, BillingKey: billingKey, Amount: bill.Amount, OrderName: c.OrderName})
	}
	return w.cfg.PG.SendKakaoBill(ctx, pgclient.KakaoBillRequest{BillID: bill.BillID, MerchantID: c.MerchantID, Phone: c.Phone, Name: c.CustomerName, Amount: bill.Amount, OrderName: c.OrderName})
}

// fromPayment reads a looked-up bill: the PG holds it, so it was placed,
// unless it holds it as a refused auto-pay.
func fromPayment(p pgclient.Payment, attempts int) outcome {
	if p.Status == pgclient.StatusFailed && p.Decline != "" {
		return outcome{decline: payflow.DeclineCode(p.Decline), attempts: attempts}
	}
	return outcome{accepted: true, pgTxID: p.PGTxID, attempts: attempts}
}

func declineCode(err error) payflow.DeclineCode {
	var e *pgclient.Error
	if errors.As(err, &e) && e.Code != "" {
		return payflow.DeclineCode(e.Code)
	}
	return payflow.DeclineGeneric
}

func errorCode(err error) string {
	var e *pgclient.Error
	if errors.As(err, &e) {
		if e.Code != "" {
			return e.Code
		}
		return string(e.Kind)
	}
	if err == nil {
		return "unknown"
	}
	return "error"
}

// Sweep finishes placing charges whose lease expired: a worker crashed
// mid-call, or gave up with the outcome unknown. It returns how many it
// drove to a result.
func (w *Worker) Sweep(ctx context.Context, limit int) (int, error) {
	pks, err := w.cfg.Store.ExpiredPlacing(ctx, limit)
	if err != nil {
		return 0, err
	}
	done := 0
	for _, pk := range pks {
		held, err := w.takeOver(ctx, pk)
		if err != nil {
			w.log.WarnContext(ctx, "sweep: charge not finished", "charge_pk", strconv.FormatInt(pk, 10), "err", err)
			continue
		}
		if held {
			done++
		}
	}
	return done, nil
}

// RunSweeper sweeps placing charges and pending refunds every interval until
// ctx ends.
func (w *Worker) RunSweeper(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if _, err := w.Sweep(ctx, 100); err != nil && ctx.Err() == nil {
				w.log.WarnContext(ctx, "sweep failed", "err", err)
			}
			if err := w.SweepRefunds(ctx, 100); err != nil && ctx.Err() == nil {
				w.log.WarnContext(ctx, "refund sweep failed", "err", err)
			}
		}
	}
}

func eventTypeOf(bill payflow.Bill) string {
	if bill.RepayPK != 0 {
		return events.TypeRepayProcessed
	}
	return events.TypeChargeProcessed
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

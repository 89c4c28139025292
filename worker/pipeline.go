package worker

import (
	"context"
	"errors"
	"fmt"

	"github.com/payflow/payflow/events"
	"github.com/payflow/payflow/internal/strictjson"
	"github.com/payflow/payflow/payflow"
	"github.com/payflow/payflow/store"
)

// A request is one request on its way through the pipeline (run). Each
// kind of request has its file (charge.go, refund.go, repay.go,
// cancel.go) and supplies the steps that are its own; the order of the
// steps, the rejections between them and the charge's lease are the
// pipeline's.
type request interface {
	// data is what the event's data is decoded into.
	data() any
	// validate holds the decoded data to the money rules and names the
	// request, for its rejections; the names are returned with the error
	// too, as far as the data gives them.
	validate() (named, error)
	// decided handles the request if it was decided before (its rejection
	// replayed, its record found and carried on) and says so. It runs
	// before the charge is held and again once it is (leaseOf tells).
	decided(ctx context.Context) (bool, error)
	// hold runs act with the charge the request acts on, under the
	// charge's lease: a charge request stores its charge with the lease,
	// a request on an existing charge finds it and takes the lease
	// (onExisting).
	hold(ctx context.Context, n named, act func(context.Context, payflow.Charge) error) error
	// act judges the request against the charge as it now is and carries
	// it out. A refusal it returns (refuse) is the request's rejection.
	act(ctx context.Context, c payflow.Charge) error
}

// named is what a request's rejection names: the merchant and charge, the
// request's own id (key, "" for none) and its content's fingerprint (see
// rejectRequest).
type named struct {
	ids  requestIDs
	key  string
	hash []byte
}

// run is the request pipeline, the one way every request is executed:
//
//  1. its data is decoded and held to the money rules, or it is rejected
//     invalid;
//  2. a request decided before is not judged again (decided);
//  3. the charge it acts on is held under its lease (hold): stored with
//     it, or found (else unknown_charge) and leased (ErrBusy while another
//     request holds it), then checked once more for a decision another
//     process made meanwhile;
//  4. it is judged against the charge as it now is and carried out (act);
//     a refusal is recorded as its rejection, only while the lease it was
//     judged under is still held.
func (w *Worker) run(ctx context.Context, env events.Envelope, r request) error {
	n, err := check(env, r)
	if err != nil {
		return w.reject(ctx, env, n.ids, events.RejectInvalid, err.Error())
	}
	if done, err := r.decided(ctx); done || err != nil {
		return err
	}
	return r.hold(ctx, n, func(ctx context.Context, c payflow.Charge) error {
		err := r.act(ctx, c)
		var no *refusal
		if errors.As(err, &no) {
			return w.rejectRequest(ctx, env, n.key, n.hash, n.ids, no.reason, no.detail)
		}
		return err
	})
}

// check decodes a request's data and holds it to payflow's checks. Data
// they refuse is then held to its type's schema (events/schemas, the
// contract's word on what a request may hold): the rule it breaks there,
// if any, is the rejection's detail, else the checks' own reason. The
// checks decode strictly enough to reject what cannot be a request or
// could be read two ways (numbers that are not whole, duplicate or
// case-variant keys, which no schema sees), leniently enough to let
// producers add fields; the money rules (payflow.*Request.Validate)
// follow.
//
// Data the checks accept is not held to the schema: the schemas refuse
// nothing the checks accept (FuzzSchemaRefusesNothingTheChecksAccept), so
// every request is judged as holding it to the schema first would judge
// it, verdict and detail, for about a tenth less of serve's CPU
// (docs/benchmarks.md).
func check(env events.Envelope, r request) (named, error) {
	n, err := checks(env, r)
	if err == nil {
		return n, nil
	}
	if serr := events.ValidateData(env.Type, env.Data); serr != nil {
		return named{ids: requestIDsOf(env.Data)}, serr
	}
	return n, err
}

// checks is payflow's own judgement of a request's data: strict decoding,
// then the money rules.
func checks(env events.Envelope, r request) (named, error) {
	if err := strictjson.Decode(env.Data, r.data()); err != nil {
		ids := requestIDsOf(env.Data)
		var se *strictjson.Error
		switch {
		case errors.As(err, &se) && se.Field != "":
			return named{ids: ids}, &payflow.ValidationError{Field: se.Field, Reason: se.Reason}
		case errors.Is(err, strictjson.ErrText):
			return named{ids: ids}, &payflow.ValidationError{Field: "data", Reason: se.Reason}
		}
		return named{ids: ids}, &payflow.ValidationError{Field: "data", Reason: "is not a JSON object"}
	}
	return r.validate()
}

// refusal is a request judged and refused: its rejection's reason and
// detail.
type refusal struct{ reason, detail string }

func (r *refusal) Error() string { return "worker: request refused: " + r.reason + ": " + r.detail }

// refuse refuses the request act judges: the pipeline records the
// rejection.
func refuse(reason, detail string) error { return &refusal{reason: reason, detail: detail} }

// onExisting holds the charge a request on an existing charge (a refund,
// a re-payment, a cancel) acts on: the charge is found (or the request is
// rejected unknown_charge), its lease taken, the request checked once more
// for a decision another process made meanwhile, and act runs with the
// charge as it now is, under the lease.
func (w *Worker) onExisting(ctx context.Context, env events.Envelope, r request, n named, act func(context.Context, payflow.Charge) error) error {
	c, err := w.cfg.Store.ChargeByKey(ctx, n.ids.MerchantID, n.ids.ChargeID)
	if errors.Is(err, payflow.ErrNotFound) {
		return w.rejectRequest(ctx, env, n.key, n.hash, n.ids, events.RejectUnknownCharge, "no such charge for this merchant")
	}
	if err != nil {
		return err
	}
	return w.onCharge(ctx, c.PK, func(ctx context.Context) error {
		if done, err := r.decided(ctx); done || err != nil {
			return err
		}
		c, err := w.cfg.Store.ChargeByPK(ctx, c.PK)
		if err != nil {
			return err
		}
		return act(ctx, c)
	})
}

// ErrBusy is returned (wrapped) for a request whose charge is held by an
// earlier request: a bill still being placed, a refund in flight, another
// process acting on it. The request is not judged yet; handle it again
// later, in order.
var ErrBusy = store.ErrBusy

// onCharge runs act under the charge's lease, the one lock that orders
// every action on a charge across processes: whoever acts on a charge holds
// it, and a request that finds it held waits (ErrBusy). act judges the
// request against the charge as it is under the lease. The lease is
// released afterwards unless act left the charge placing a bill, whose
// drive keeps it.
func (w *Worker) onCharge(ctx context.Context, pk int64, act func(context.Context) error) error {
	h, err := w.cfg.Store.AcquireCharge(ctx, pk, w.cfg.Owner, w.cfg.Lease)
	if err != nil {
		return fmt.Errorf("worker: charge %d: %w", pk, err)
	}
	defer func() {
		if err := w.cfg.Store.ReleaseCharge(context.WithoutCancel(ctx), pk, h); err != nil {
			w.log.WarnContext(ctx, "charge lease not released; it expires", "charge_pk", pk, "err", err)
		}
	}()
	return act(context.WithValue(ctx, leaseKey{}, taking{pk, h}))
}

// leaseKey marks a context in which the worker holds a charge's lease: its
// value is the taking (onCharge), and what is judged there is recorded only
// while that taking holds.
type leaseKey struct{}

// taking is a charge and the taking of its lease that a context runs under.
type taking struct {
	pk     int64
	holder payflow.Holder
}

// leaseOf returns the charge whose lease ctx runs under (onCharge), and
// the taking, if any.
func leaseOf(ctx context.Context) (pk int64, h payflow.Holder, held bool) {
	t, held := ctx.Value(leaseKey{}).(taking)
	return t.pk, t.holder, held
}

// holderOf is the taking of the lease ctx runs under; none (which no
// fence accepts) outside onCharge.
func holderOf(ctx context.Context) payflow.Holder {
	_, h, _ := leaseOf(ctx)
	return h
}

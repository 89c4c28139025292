// Package worker executes payment requests: it turns each input event into
// its effects at the PG and in the database, exactly once per request
// however often the event is delivered. It owns the money path from a
// decoded request to a committed result event; it does not know Kafka (the
// consumer feeds it) nor SQL (the store persists for it).
package worker

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"reflect"
	"strings"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/google/uuid"

	"github.com/payflow/payflow/events"
	"github.com/payflow/payflow/internal/mutation"
	"github.com/payflow/payflow/internal/strictjson"
	"github.com/payflow/payflow/outbox"
	"github.com/payflow/payflow/payflow"
	"github.com/payflow/payflow/pgclient"
	"github.com/payflow/payflow/reqsig"
	"github.com/payflow/payflow/store"
)

// Methods is what the worker needs of members' payment methods.
type Methods interface {
	// Default returns the member's default method with its decrypted
	// billing key (one read on the hot path), or nil when there is none.
	Default(ctx context.Context, memberID string) (*payflow.StoredMethod, string, error)
	// BillingKey returns a method's decrypted billing key, for a charge
	// taken over after a crash. An error wrapping payflow.ErrMethodUnusable
	// means the method is gone or its key provably cannot be opened: a
	// decline. Any other error is transient and retried.
	BillingKey(ctx context.Context, methodID string) (string, error)
}

// Config configures a Worker.
type Config struct {
	Store   Store
	PG      pgclient.Client
	Methods Methods
	Logger  *slog.Logger
	// Owner names this process in leases. It must be unique per process.
	Owner string
	// Lease is how long a worker may hold a charge while talking to the
	// PG. It must exceed RetryBudget plus two PG call timeouts (a look-up and a call): a lease that
	// expires while its holder still calls lets a second worker in.
	Lease time.Duration
	// RetryBudget bounds the retries of one PG operation (backoff's max
	// elapsed time).
	RetryBudget time.Duration
	// RetryInitial is the first backoff interval.
	RetryInitial time.Duration
	// Committed, when set, is called after a transaction wrote result
	// events (the relay's Wake).
	Committed func()
	// Now is the clock, for tests and the simulation: event times, retry
	// budgets and backoff read it.
	Now func() time.Time
	// Timer, when set, makes the timers retries wait on (the simulation's
	// virtual time); nil waits in real time.
	Timer func() backoff.Timer
	// Jitter, when set, is the source of the retry waits' randomness, a
	// number in [0, 1) (the simulation's seed, so a run replays exactly);
	// nil: math/rand.
	Jitter func() float64
	// NewBillID, when set, names new bills (the simulation's seed, so a
	// run replays exactly); nil: UUIDv7, unique and in creation order.
	NewBillID func() string
	// Observer, when set, hears results, retries and steps, for metrics
	// and tracing.
	Observer Observer
	// RequestKeys, when set, are the merchants whose requests must be
	// signed (PAYFLOW_MERCHANT_KEYS): their requests without a valid
	// payflowsig are rejected as unauthenticated before anything else is
	// judged. nil: no request needs a signature.
	RequestKeys *reqsig.Keys
}

// Observer hears what the worker did. Result is called once a result event
// is committed: its type and a detail (the method and fallback reason of a
// placed charge, the reason of a rejection or failure). Retry is called
// before each retry of a PG operation. Reconciled is called for each bill
// reconciliation could not settle as expected: lookup_failed,
// amount_mismatch, settle_failed, late_open (a bill given up on, open at the PG after all,
// destroyed), late_paid for a bill given up on that the customer paid
// after all (found by reconciliation or a callback alike), or
// paid_contradicted for a payment the PG reports of a bill held final and
// unpaid here, which settles nothing. Step is called as a step of a request begins (decide,
// commit, settle): the step runs in the context it returns, and end is
// called with the step's error once it is over, so a tracer can make each
// step a span of the request's trace.
type Observer interface {
	Result(eventType, detail string)
	Retry(operation string)
	Reconciled(outcome string)
	Step(ctx context.Context, step string) (stepCtx context.Context, end func(error))
}

// Steps of a request, as Observer.Step is told of them.
const (
	StepDecide = "decide" // a charge's method decided and the charge stored
	StepCommit = "commit" // a placement's outcome and result event written
	StepSettle = "settle" // a bill's final result and its event written
)

type noObserver struct{}

func (noObserver) Step(ctx context.Context, _ string) (context.Context, func(error)) {
	return ctx, endNothing
}

func endNothing(error) {}

func (noObserver) Result(string, string) {}
func (noObserver) Retry(string)          {}
func (noObserver) Reconciled(string)     {}

// Worker executes requests.
type Worker struct {
	cfg Config
	log *slog.Logger

	// driving holds the charges this process is talking to the PG about,
	// so the sweeper and a redelivery never drive one charge twice at once.
	driving sync.Map
}

// New returns a Worker.
func New(cfg Config) *Worker {
	if cfg.Lease <= 0 {
		cfg.Lease = 2 * time.Minute
	}
	if cfg.RetryBudget <= 0 {
		cfg.RetryBudget = 30 * time.Second
	}
	if cfg.RetryInitial <= 0 {
		cfg.RetryInitial = 100 * time.Millisecond
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Owner == "" {
		cfg.Owner = uuid.NewString()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Jitter == nil {
		cfg.Jitter = rand.Float64
	}
	if cfg.NewBillID == nil {
		cfg.NewBillID = func() string { return uuid.Must(uuid.NewV7()).String() }
	}
	if cfg.Committed == nil {
		cfg.Committed = func() {}
	}
	if cfg.Observer == nil {
		cfg.Observer = noObserver{}
	}
	return &Worker{cfg: cfg, log: cfg.Logger}
}

// Handle executes one input message value. It returns nil once the
// request's effects (or its rejection) are durable, an error wrapping
// events.ErrUnparseable for input that belongs in the dead-letter topic, and
// any other error when it must be tried again later.
func (w *Worker) Handle(ctx context.Context, value []byte) error {
	env, err := events.Decode(value)
	if err != nil {
		return err
	}
	merchant, signed := w.signs(env.Data)
	if signed {
		if err := w.cfg.RequestKeys.Verify(merchant, env.ID, env.TimeText, env.Data, env.Signature); err != nil {
			return w.rejectMessage(ctx, env, merchant, events.RejectUnauthenticated, err)
		}
	}
	r := w.request(env)
	if r == nil {
		// Decode admits only the types request knows.
		return fmt.Errorf("%w: type is not a request type", events.ErrUnparseable)
	}
	if signed {
		// The signature binds the event's id, time and data, not its
		// type (the contract's formula). Found by review: a signed
		// charge re-typed as a cancel by anyone who can write the topic
		// verified and destroyed the bill. So signed data is a request
		// of its event's type only if it holds no field of another
		// request type that this one lacks (each type but the cancel
		// has a field no other has), else it is unauthenticated; and
		// data that is not a valid request of the type (a cancel's sent
		// as a refund has no refund_id) is rejected invalid under the
		// digest of what was signed and its type, as a forgery is, not
		// as its event id's one result, which the genuine request
		// delivered later would be answered with.
		if err := ofItsType(env); err != nil {
			return w.rejectMessage(ctx, env, merchant, events.RejectUnauthenticated, err)
		}
		if _, err := check(env, r); err != nil {
			return w.rejectMessage(ctx, env, merchant, events.RejectInvalid, err)
		}
	}
	return w.run(ctx, env, r)
}

// request is the request env carries, nil for a type that is not one.
func (w *Worker) request(env events.Envelope) request {
	switch env.Type {
	case events.TypeChargeRequested:
		return &chargeRequest{w: w, env: env}
	case events.TypeRefundRequested:
		return &refundRequest{w: w, env: env}
	case events.TypeRepayRequested:
		return &repayRequest{w: w, env: env}
	case events.TypeCancelRequested:
		return &cancelRequest{w: w, env: env}
	}
	return nil
}

// signs returns the request's merchant when that merchant signs its
// requests. The merchant is read both the way the request's handler reads
// it (strictly) and leniently, and a keyed merchant under either reading
// needs a signature: data that cannot be read strictly is rejected as
// invalid anyway, but not before its signature is checked.
func (w *Worker) signs(data json.RawMessage) (string, bool) {
	if w.cfg.RequestKeys == nil {
		return "", false
	}
	var strict struct {
		MerchantID string `json:"merchant_id"`
	}
	if strictjson.Decode(data, &strict) == nil && w.cfg.RequestKeys.Has(strict.MerchantID) {
		return strict.MerchantID, true
	}
	var lenient struct {
		MerchantID string `json:"merchant_id"`
	}
	if json.Unmarshal(data, &lenient) == nil && w.cfg.RequestKeys.Has(lenient.MerchantID) {
		return lenient.MerchantID, true
	}
	return "", false
}

// rejectMessage writes the rejection of a message of a signing merchant
// that is not its request: its signature does not verify, or its data is
// not a request of its event's type. Nothing of it is executed or judged.
// The rejection is recorded under the digest of the message's type and
// signed content (id, time, data) rather than its event id: a forged
// message must not pre-empt the genuine request with that id, which would
// find "its" rejection and be dropped. A redelivery of the message, even
// with headers or attributes the signature does not cover changed (a
// producer retry adding a traceparent, another content mode), is the same
// digest and writes nothing again. The detail says what was wrong, never
// what was expected.
func (w *Worker) rejectMessage(ctx context.Context, env events.Envelope, merchant, reason string, why error) error {
	h := sha256.New()
	for _, part := range [][]byte{[]byte(env.Type), []byte(env.ID), []byte(env.TimeText), env.Data} {
		h.Write(binary.BigEndian.AppendUint64(nil, uint64(len(part))))
		h.Write(part)
	}
	digest := hex.EncodeToString(h.Sum(nil))
	ids := requestIDsOf(env.Data)
	ids.MerchantID = merchant
	msg, err := w.message(events.TypeRejected, ids.ChargeID, []string{"rejected", env.Source, env.ID, reason, digest}, events.Rejected{
		MerchantID:     ids.MerchantID,
		ChargeID:       ids.ChargeID,
		Reason:         reason,
		Detail:         why.Error(),
		RequestEventID: env.ID,
	})
	if err != nil {
		return err
	}
	rq := store.Request{Source: env.Source, EventID: reason + "/" + digest}
	if err := w.cfg.Store.Reject(ctx, store.Rejection{Request: rq, Reason: reason, Event: msg}); err != nil {
		return fmt.Errorf("worker: reject: %w", err)
	}
	w.cfg.Committed()
	w.cfg.Observer.Result(events.TypeRejected, reason)
	w.log.WarnContext(ctx, "signed request rejected", "type", env.Type, "event_id", env.ID, "reason", reason,
		"merchant_id", ids.MerchantID, "charge_id", ids.ChargeID, "detail", why.Error())
	return nil
}

// requestFields are the top-level fields of each request type's data, by
// type.
var requestFields = sync.OnceValue(func() map[string]map[string]bool {
	fields := map[string]map[string]bool{}
	for _, typ := range []string{events.TypeChargeRequested, events.TypeRefundRequested, events.TypeRepayRequested, events.TypeCancelRequested} {
		t := reflect.TypeOf((&Worker{}).request(events.Envelope{Type: typ}).data()).Elem()
		names := map[string]bool{}
		for i := range t.NumField() {
			if name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ","); name != "" && name != "-" {
				names[name] = true
			}
		}
		fields[typ] = names
	}
	return fields
})

// ofItsType refuses signed data that holds a field of another request type
// that its event's type does not have (see Handle). Fields no request type
// has pass, as in any request: producers may add fields of their own.
func ofItsType(env events.Envelope) error {
	fields := requestFields()
	own := fields[env.Type]
	foreign := ""
	strictjson.Members(env.Data, func(key string, _ []byte) bool {
		if own[key] {
			return true
		}
		for typ, names := range fields {
			if typ != env.Type && names[key] {
				foreign = key
				return false
			}
		}
		return true
	})
	if foreign != "" {
		return fmt.Errorf("the signed data holds %s, a field of another request type than %s", foreign, env.Type)
	}
	return nil
}

// requestIDs are the identifiers a rejection names, read as best as the
// data allows.
type requestIDs struct {
	MerchantID string `json:"merchant_id"`
	ChargeID   string `json:"charge_id"`
}

func requestIDsOf(data json.RawMessage) requestIDs {
	var v requestIDs
	_ = json.Unmarshal(data, &v)
	if len(v.MerchantID) > payflow.MaxIDLen {
		v.MerchantID = v.MerchantID[:payflow.MaxIDLen]
	}
	if len(v.ChargeID) > payflow.MaxIDLen {
		v.ChargeID = v.ChargeID[:payflow.MaxIDLen]
	}
	return v
}

// reject records the request's rejection with it and writes a
// payment.request.rejected event, in one transaction. Its event id derives
// from the request event, and a redelivered request finds its rejection
// recorded (see replayed): a rejection is the request's one result.
func (w *Worker) reject(ctx context.Context, env events.Envelope, ids requestIDs, reason, detail string) error {
	return w.rejectRequest(ctx, env, "", nil, ids, reason, detail)
}

// rejectRequest is reject for a request with an id of its own (key) and
// content hash: re-sent under a new event id, it is rejected no second
// time.
func (w *Worker) rejectRequest(ctx context.Context, env events.Envelope, key string, hash []byte, ids requestIDs, reason, detail string) error {
	msg, err := w.message(events.TypeRejected, ids.ChargeID, []string{"rejected", env.Source, env.ID}, events.Rejected{
		MerchantID:     ids.MerchantID,
		ChargeID:       ids.ChargeID,
		Reason:         reason,
		Detail:         detail,
		RequestEventID: env.ID,
	})
	if err != nil {
		return err
	}
	rq := store.Request{Source: env.Source, EventID: env.ID, Key: key, Hash: hash}
	rj := store.Rejection{Request: rq, Reason: reason, Event: msg}
	if pk, h, held := leaseOf(ctx); held {
		rj.ChargePK, rj.Holder = pk, h
	}
	err = w.cfg.Store.Reject(ctx, rj)
	if errors.Is(err, store.ErrStale) {
		// Judged under a lease that ran out (a stall) and passed to
		// another worker, which may have judged the request otherwise:
		// judge it again.
		return fmt.Errorf("worker: lease of charge %d lost before the rejection was recorded: %w", rj.ChargePK, ErrBusy)
	}
	if err != nil {
		return fmt.Errorf("worker: reject: %w", err)
	}
	w.cfg.Committed()
	w.cfg.Observer.Result(events.TypeRejected, reason)
	w.log.InfoContext(ctx, "request rejected", "type", env.Type, "event_id", env.ID, "merchant_id", ids.MerchantID,
		"charge_id", ids.ChargeID, "reason", reason, "detail", detail)
	return nil
}

// replayed reports whether the request was rejected before, by this event
// or re-sent with the same key and content under another: then its
// rejection is its result, and nothing is judged again.
func (w *Worker) replayed(ctx context.Context, env events.Envelope, key string, hash []byte) (bool, error) {
	if mutation.On("judge-again") {
		return false, nil
	}
	return w.cfg.Store.Rejected(ctx, store.Request{Source: env.Source, EventID: env.ID, Key: key, Hash: hash})
}

// decidedBefore is the "decided before" step of a request that is stored
// under its own id (refunds, re-payments): its rejection is replayed; a
// request stored under that id with the same content goes on where it
// stands (goOn); the same id with other content is a conflict. It reports
// false only when the request was never seen.
func decidedBefore[T any](ctx context.Context, w *Worker, env events.Envelope, key string, hash []byte, ids requestIDs, idName string,
	find func() (T, []byte, error), goOn func(T) error) (bool, error) {
	if done, err := w.replayed(ctx, env, key, hash); done || err != nil {
		return true, err
	}
	stored, storedHash, err := find()
	if errors.Is(err, payflow.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return true, err
	}
	if string(storedHash) != string(hash) {
		return true, w.reject(ctx, env, ids, events.RejectIdempotencyConflict, idName+" was already used with different content")
	}
	return true, goOn(stored)
}

// message builds an outbox message for a result event keyed by charge id.
func (w *Worker) message(typ, chargeID string, idParts []string, data any) (outbox.Message, error) {
	id := events.ID(idParts...)
	value, err := events.Encode(id, typ, chargeID, w.cfg.Now(), data)
	if err != nil {
		return outbox.Message{}, fmt.Errorf("worker: encode %s: %w", typ, err)
	}
	return outbox.Message{EventID: id, Topic: events.TopicEvents, Key: []byte(chargeID), Value: value}, nil
}

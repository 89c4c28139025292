// Package worker executes payment requests: it turns each input event into
// its effects at the PG and in the database, exactly once per request
// however often the event is delivered. It owns the money path from a
// decoded request to a committed result event; it does not know Kafka (the
// consumer feeds it) nor SQL (the store persists for it).
package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/payflow/payflow/events"
	"github.com/payflow/payflow/outbox"
	"github.com/payflow/payflow/payflow"
	"github.com/payflow/payflow/pgclient"
	"github.com/payflow/payflow/store"
)

// Methods is what the worker needs of members' payment methods.
type Methods interface {
	// Default returns the member's default method with its decrypted
	// billing key (one read on the hot path), or nil when there is none.
	Default(ctx context.Context, memberID string) (*payflow.StoredMethod, string, error)
	// BillingKey returns a method's decrypted billing key, for a charge
	// resumed after a crash.
	BillingKey(ctx context.Context, methodID string) (string, error)
}

// Config configures a Worker.
type Config struct {
	Store   *store.Store
	PG      pgclient.Client
	Methods Methods
	Logger  *slog.Logger
	// Owner names this process in leases. It must be unique per process.
	Owner string
	// Lease is how long a worker may hold a charge while talking to the
	// PG. It must exceed RetryBudget plus one PG call timeout: a lease that
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
	// Now is the clock, for tests.
	Now func() time.Time
	// Observer is told of results and retries, for metrics.
	Observer Observer
}

// Observer hears what the worker did. Result is called once a result event
// is committed: its type and a detail (the method and fallback reason of a
// placed charge, the reason of a rejection or failure). Retry is called
// before each retry of a PG operation.
type Observer interface {
	Result(eventType, detail string)
	Retry(operation string)
}

type noObserver struct{}

func (noObserver) Result(string, string) {}
func (noObserver) Retry(string)          {}

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
	switch env.Type {
	case events.TypeChargeRequested:
		return w.charge(ctx, env)
	case events.TypeRefundRequested:
		return w.refund(ctx, env)
	case events.TypeRepayRequested:
		return w.repay(ctx, env)
	case events.TypeCancelRequested:
		return w.cancel(ctx, env)
	}
	// Decode admits only the types above.
	return fmt.Errorf("%w: type is not a request type", events.ErrUnparseable)
}

// ids are the identifiers a rejection names, read as best as the data
// allows.
type ids struct {
	MerchantID string `json:"merchant_id"`
	ChargeID   string `json:"charge_id"`
}

func idsOf(data json.RawMessage) ids {
	var v ids
	_ = json.Unmarshal(data, &v)
	if len(v.MerchantID) > 128 {
		v.MerchantID = v.MerchantID[:128]
	}
	if len(v.ChargeID) > 128 {
		v.ChargeID = v.ChargeID[:128]
	}
	return v
}

// reject writes a payment.request.rejected event. Its id derives from the
// request event, so a redelivered request is rejected once.
func (w *Worker) reject(ctx context.Context, env events.Envelope, who ids, reason, detail string) error {
	msg, err := w.message(events.TypeRejected, who.ChargeID, []string{"rejected", env.Source, env.ID}, events.Rejected{
		MerchantID:     who.MerchantID,
		ChargeID:       who.ChargeID,
		Reason:         reason,
		Detail:         detail,
		RequestEventID: env.ID,
	})
	if err != nil {
		return err
	}
	if err := w.cfg.Store.Reject(ctx, msg); err != nil {
		return fmt.Errorf("worker: reject: %w", err)
	}
	w.cfg.Committed()
	w.cfg.Observer.Result(events.TypeRejected, reason)
	w.log.Info("request rejected", "type", env.Type, "event_id", env.ID, "merchant_id", who.MerchantID,
		"charge_id", who.ChargeID, "reason", reason, "detail", detail)
	return nil
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

// decodeData decodes an event's data strictly enough to reject what cannot
// be a request (wrong types, numbers that are not whole), leniently enough
// to let producers add fields.
func decodeData(data json.RawMessage, v any) error {
	if err := json.Unmarshal(data, v); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return &payflow.ValidationError{Field: te.Field, Reason: "has the wrong type"}
		}
		return &payflow.ValidationError{Field: "data", Reason: "is not a JSON object"}
	}
	return nil
}

func newBillID() string { return uuid.Must(uuid.NewV7()).String() }

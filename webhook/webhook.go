// Package webhook owns the PG callback receiver: POST /webhooks/pg/{provider}
// verifies the sender, parses the result and hands it to a Settler, and
// answers 2xx only once the settlement and its outbox row are committed, so
// a PG that sees an error sends again and nothing is lost.
package webhook

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"time"

	"github.com/payflow/payflow/internal/strictjson"
	"github.com/payflow/payflow/payflow"
)

// Verifier authenticates a provider's callback. Each provider signs its own
// way; Standard Webhooks (package stdwebhook) is one implementation.
type Verifier interface {
	// Verify returns the callback's unique id (its idempotency key) or an
	// error when the callback is not authentic or not fresh.
	Verify(h http.Header, body []byte) (id string, err error)
}

// Settler applies a verified final result.
type Settler interface {
	Settle(ctx context.Context, s payflow.Settlement) (payflow.SettleOutcome, error)
}

// MaxBody bounds a callback body. PG results are a few hundred bytes.
const MaxBody = 64 << 10

// Receiver is the callback endpoint.
type Receiver struct {
	Verifiers map[string]Verifier // by provider name, e.g. "sim"
	// Handlers serve the providers whose callbacks follow a protocol of
	// their own (PaySSam's unsigned hints: see PaySSam), by provider name.
	Handlers map[string]http.Handler
	Settler  Settler
	Logger   *slog.Logger
	// Observer, when set, hears each callback's result, for metrics.
	Observer Observer
}

// Observer hears what the callback endpoints do.
type Observer interface {
	// Callback is told each callback's result (bounded values: applied,
	// duplicate, ignored, bad_signature, unknown_bill, ...) and its
	// provider: a key of Receiver.Verifiers, ProviderPaySSam or
	// UnknownProvider, never the path as sent, so its values are bounded.
	Callback(provider, result string)
}

// UnknownProvider is the provider Observer.Callback is told of for a
// callback to a provider that is not configured (answered 404).
const UnknownProvider = "unknown"

// Callback is the body a PG posts.
type Callback struct {
	BillID     string    `json:"bill_id"`
	Status     string    `json:"status"`
	Amount     int64     `json:"amount"`
	PGTxID     string    `json:"pg_tx_id"`
	OccurredAt time.Time `json:"occurred_at"`
}

// ParseCallback decodes and checks a callback body. A key twice or in
// another case than the field's is refused (package strictjson), so the
// callback settles what any other reader of it sees; fields a PG adds are
// ignored. Errors name the field, never a value.
func ParseCallback(body []byte) (Callback, payflow.SettleStatus, error) {
	var cb Callback
	if err := strictjson.Decode(body, &cb); err != nil {
		var se *strictjson.Error
		if errors.As(err, &se) && se.Field != "" {
			return Callback{}, "", errors.New(se.Field + " " + se.Reason)
		}
		return Callback{}, "", errors.New("body is not a valid callback JSON object")
	}
	status, ok := payflow.ParseSettleStatus(cb.Status)
	switch {
	case payflow.ValidID(cb.BillID) != nil:
		// Bill ids are payflow's own: one that breaks the id rule names no
		// bill, and is not looked up or logged.
		return cb, "", errors.New("bill_id " + payflow.ValidID(cb.BillID).Error())
	case !ok:
		return cb, "", errors.New("status must be paid, failed, cancelled or expired")
	case cb.Amount <= 0 || cb.Amount > payflow.MaxAmount:
		return cb, "", errors.New("amount is out of range")
	case len(cb.PGTxID) > 128:
		return cb, "", errors.New("pg_tx_id is too long")
	}
	return cb, status, nil
}

func (rc *Receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	log := rc.Logger
	if log == nil {
		log = slog.Default()
	}
	provider := r.PathValue("provider")
	if h, ok := rc.Handlers[provider]; ok {
		h.ServeHTTP(w, r)
		return
	}
	v, ok := rc.Verifiers[provider]
	if !ok {
		// The path is the sender's choice: it must not become a label.
		provider = UnknownProvider
	}
	result := func(res string, status int, code, msg string) {
		if rc.Observer != nil {
			rc.Observer.Callback(provider, res)
		}
		writeJSON(w, status, code, msg, res)
	}
	if !ok {
		result("unknown_provider", http.StatusNotFound, "not_found", "unknown provider")
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBody))
	if tooLarge := (*http.MaxBytesError)(nil); errors.As(err, &tooLarge) {
		result("too_large", http.StatusRequestEntityTooLarge, "body_too_large", "callback body too large")
		return
	} else if err != nil {
		log.WarnContext(r.Context(), "webhook body unreadable", "provider", provider, "err", err)
		result("unreadable", http.StatusBadRequest, "invalid_request", "the body could not be read")
		return
	}
	id, err := v.Verify(r.Header, body)
	if err != nil {
		log.WarnContext(r.Context(), "webhook rejected", "provider", provider, "err", err)
		result("bad_signature", http.StatusUnauthorized, "unauthorized", "signature or timestamp not valid")
		return
	}
	cb, status, err := ParseCallback(body)
	if err != nil {
		result("invalid", http.StatusBadRequest, "invalid_request", err.Error())
		return
	}
	out, err := rc.Settler.Settle(r.Context(), payflow.Settlement{
		BillID: cb.BillID, Status: status, Amount: cb.Amount, PGTxID: cb.PGTxID, Provider: provider, WebhookID: id,
	})
	switch {
	case errors.Is(err, payflow.ErrNotFound):
		result("unknown_bill", http.StatusNotFound, "not_found", "unknown bill")
	case errors.Is(err, payflow.ErrAmountMismatch):
		log.ErrorContext(r.Context(), "webhook amount differs from the bill; not settled", "provider", provider, "bill_id", cb.BillID, "amount", cb.Amount)
		result("amount_mismatch", http.StatusUnprocessableEntity, "amount_mismatch", "amount does not match the bill")
	case errors.Is(err, payflow.ErrNotPlacedYet):
		result("not_ready", http.StatusConflict, "not_ready", "bill placement still in progress; retry later")
	case err != nil:
		log.ErrorContext(r.Context(), "webhook settlement failed", "provider", provider, "bill_id", cb.BillID, "err", err)
		result("error", http.StatusInternalServerError, "internal", "settlement failed; retry later")
	default:
		result(string(out), http.StatusOK, "", "")
	}
}

func writeJSON(w http.ResponseWriter, status int, code, msg, result string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	if code == "" {
		_ = json.NewEncoder(w).Encode(map[string]string{"result": result})
		return
	}
	_ = json.NewEncoder(w).Encode(map[string]any{"error": map[string]string{"code": code, "message": msg}})
}

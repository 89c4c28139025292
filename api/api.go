// Package api owns payflow's HTTP API: members' payment methods (platform
// token), merchants' charges and bill URLs (merchant token, a merchant sees
// only its own), health and readiness, with the PG webhook receiver and the
// metrics handler mounted beside them. Errors are always
// {"error":{"code","message"}}.
package api

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/payflow/payflow/payflow"
	"github.com/payflow/payflow/pgclient"
	"github.com/payflow/payflow/store"
	"github.com/payflow/payflow/vault"
)

// Config configures the API.
type Config struct {
	Store          *store.Store
	Vault          *vault.Vault
	PG             pgclient.Client
	PlatformToken  string
	MerchantTokens map[string]string // merchant id → token
	Logger         *slog.Logger
	Ready          func(ctx context.Context) error
	Metrics        http.Handler
	Webhooks       http.Handler
}

type server struct{ Config }

// MaxBody bounds request bodies.
const MaxBody = 64 << 10

// New returns the API's handler.
func New(cfg Config) http.Handler {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	s := &server{cfg}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/members/{member_id}/payment-methods", s.platform(s.addMethod))
	mux.HandleFunc("GET /v1/members/{member_id}/payment-methods", s.platform(s.listMethods))
	mux.HandleFunc("DELETE /v1/members/{member_id}/payment-methods/{id}", s.platform(s.deleteMethod))
	mux.HandleFunc("GET /v1/charges/{charge_id}", s.merchant(s.getCharge))
	mux.HandleFunc("GET /v1/charges/{charge_id}/bill-url", s.merchant(s.billURL))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("GET /readyz", s.readyz)
	if cfg.Metrics != nil {
		mux.Handle("GET /metrics", cfg.Metrics)
	}
	if cfg.Webhooks != nil {
		mux.Handle("POST /webhooks/pg/{provider}", cfg.Webhooks)
	}
	return s.logged(mux)
}

// ParseMerchantTokens reads "merchant:token,merchant2:token2".
func ParseMerchantTokens(s string) (map[string]string, error) {
	out := map[string]string{}
	for _, pair := range strings.Split(s, ",") {
		pair = strings.TrimSpace(pair)
		if pair == "" {
			continue
		}
		m, tok, ok := strings.Cut(pair, ":")
		if !ok || m == "" || tok == "" {
			return nil, errors.New("api: PAYFLOW_MERCHANT_TOKENS must be merchant:token pairs separated by commas")
		}
		out[m] = tok
	}
	return out, nil
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, map[string]any{"error": map[string]string{"code": code, "message": msg}})
}

// statusRecorder remembers the status for the access log.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (r *statusRecorder) WriteHeader(s int) { r.status = s; r.ResponseWriter.WriteHeader(s) }

// logged logs each request by route pattern: paths carry member and charge
// ids, never secrets, and the pattern keeps log cardinality low. Each
// request carries an id (the caller's X-Request-ID, or a new one), echoed in
// the answer and the log line, to trace a call across services.
func (s *server) logged(next *http.ServeMux) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rid := r.Header.Get("X-Request-ID")
		if rid == "" || len(rid) > 128 || !utf8.ValidString(rid) {
			rid = uuid.NewString()
		}
		w.Header().Set("X-Request-ID", rid)
		rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
		_, pattern := next.Handler(r)
		if pattern == "" {
			// The mux would answer with plain text; keep the JSON error shape.
			writeError(rec, http.StatusNotFound, "not_found", "no such endpoint")
		} else {
			next.ServeHTTP(rec, r)
		}
		s.Logger.Info("http", "request_id", rid, "method", r.Method, "route", pattern, "status", rec.status,
			"duration_ms", time.Since(start).Milliseconds())
	})
}

func bearer(r *http.Request) string {
	h := r.Header.Get("Authorization")
	if len(h) > 7 && strings.EqualFold(h[:7], "bearer ") {
		return h[7:]
	}
	return ""
}

func equal(a, b string) bool { return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1 }

func (s *server) platform(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if s.PlatformToken == "" || !equal(bearer(r), s.PlatformToken) {
			writeError(w, http.StatusUnauthorized, "unauthorized", "a valid platform token is required")
			return
		}
		h(w, r)
	}
}

type merchantKey struct{}

// merchant identifies the merchant by its token. Every token is compared,
// so the time taken says nothing about which merchants exist.
func (s *server) merchant(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		tok, who := bearer(r), ""
		for m, t := range s.MerchantTokens {
			if equal(tok, t) && tok != "" {
				who = m
			}
		}
		if who == "" {
			writeError(w, http.StatusUnauthorized, "unauthorized", "a valid merchant token is required")
			return
		}
		h(w, r.WithContext(context.WithValue(r.Context(), merchantKey{}, who)))
	}
}

func merchantOf(r *http.Request) string { return r.Context().Value(merchantKey{}).(string) }

func decodeBody(w http.ResponseWriter, r *http.Request, v any) bool {
	if ct := r.Header.Get("Content-Type"); ct != "" && !strings.HasPrefix(ct, "application/json") {
		writeError(w, http.StatusUnsupportedMediaType, "unsupported_media_type", "send application/json")
		return false
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBody))
	if err != nil {
		writeError(w, http.StatusRequestEntityTooLarge, "body_too_large", fmt.Sprintf("body over %d bytes", MaxBody))
		return false
	}
	dec := json.NewDecoder(strings.NewReader(string(body)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		writeError(w, http.StatusBadRequest, "invalid_request", "body is not the expected JSON object")
		return false
	}
	return true
}

func (s *server) readyz(w http.ResponseWriter, r *http.Request) {
	if s.Ready != nil {
		ctx, cancel := context.WithTimeout(r.Context(), 3*time.Second)
		defer cancel()
		if err := s.Ready(ctx); err != nil {
			writeError(w, http.StatusServiceUnavailable, "not_ready", err.Error())
			return
		}
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
}

// methodJSON is a payment method as shown: never the billing key.
type methodJSON struct {
	ID        string    `json:"id"`
	Label     string    `json:"label"`
	Default   bool      `json:"default"`
	Status    string    `json:"status"`
	CreatedAt time.Time `json:"created_at"`
}

func toJSON(m store.Method) methodJSON {
	return methodJSON{ID: m.ID, Label: m.Label, Default: m.Default, Status: string(m.Status), CreatedAt: m.CreatedAt}
}

// MaskedLabel is the label users see: the given label and the last four
// characters of the billing key, e.g. "Shinhan ****1234".
func MaskedLabel(label, billingKey string) string {
	tail := billingKey
	if n := utf8.RuneCountInString(tail); n > 4 {
		r := []rune(tail)
		tail = string(r[n-4:])
	} else {
		tail = ""
	}
	label = strings.TrimSpace(label)
	if label == "" {
		label = "Card"
	}
	return label + " ****" + tail
}

func validMember(w http.ResponseWriter, id string) bool {
	if id == "" || len(id) > 128 || !utf8.ValidString(id) {
		writeError(w, http.StatusBadRequest, "invalid_request", "member_id is not valid")
		return false
	}
	return true
}

func (s *server) addMethod(w http.ResponseWriter, r *http.Request) {
	member := r.PathValue("member_id")
	if !validMember(w, member) {
		return
	}
	var body struct {
		BillingKey string `json:"billing_key"`
		Label      string `json:"label"`
		Default    bool   `json:"default"`
	}
	if !decodeBody(w, r, &body) {
		return
	}
	if body.BillingKey == "" || len(body.BillingKey) > 256 || len(body.Label) > 64 {
		writeError(w, http.StatusBadRequest, "invalid_request", "billing_key is required (at most 256 bytes) and label at most 64")
		return
	}
	id := uuid.NewString()
	sealed, err := s.Vault.Seal([]byte(body.BillingKey), []byte(id))
	if err != nil {
		s.internal(w, "seal billing key", err)
		return
	}
	m, err := s.Store.AddMethod(r.Context(), store.Method{ID: id, MemberID: member, Label: MaskedLabel(body.Label, body.BillingKey),
		Default: body.Default, BillingKeyEnc: sealed})
	if err != nil {
		s.internal(w, "add method", err)
		return
	}
	writeJSON(w, http.StatusCreated, toJSON(m))
}

func (s *server) listMethods(w http.ResponseWriter, r *http.Request) {
	member := r.PathValue("member_id")
	if !validMember(w, member) {
		return
	}
	ms, err := s.Store.ListMethods(r.Context(), member)
	if err != nil {
		s.internal(w, "list methods", err)
		return
	}
	out := make([]methodJSON, 0, len(ms))
	for _, m := range ms {
		out = append(out, toJSON(m))
	}
	writeJSON(w, http.StatusOK, map[string]any{"payment_methods": out})
}

func (s *server) deleteMethod(w http.ResponseWriter, r *http.Request) {
	member := r.PathValue("member_id")
	if !validMember(w, member) {
		return
	}
	err := s.Store.DeleteMethod(r.Context(), member, r.PathValue("id"))
	switch {
	case errors.Is(err, store.ErrNotFound):
		writeError(w, http.StatusNotFound, "not_found", "no such payment method")
	case err != nil:
		s.internal(w, "delete method", err)
	default:
		w.WriteHeader(http.StatusNoContent)
	}
}

func (s *server) internal(w http.ResponseWriter, what string, err error) {
	s.Logger.Error("api: "+what, "err", err)
	writeError(w, http.StatusInternalServerError, "internal", "internal error")
}

func (s *server) getCharge(w http.ResponseWriter, r *http.Request) {
	v, err := s.Store.ViewCharge(r.Context(), merchantOf(r), r.PathValue("charge_id"))
	if errors.Is(err, store.ErrNotFound) {
		writeError(w, http.StatusNotFound, "not_found", "no such charge")
		return
	}
	if err != nil {
		s.internal(w, "view charge", err)
		return
	}
	c := v.Charge
	out := map[string]any{
		"merchant_id": c.MerchantID, "charge_id": c.ChargeID, "state": c.State, "amount": c.Bill.Amount,
		"bill_id": c.Bill.BillID, "method": c.Bill.Method, "paid_amount": v.PaidAmount, "refunded_amount": v.RefundedAmount,
		"created_at": v.CreatedAt, "updated_at": v.UpdatedAt,
		"history": map[string]any{"bills": v.Bills, "refunds": nonNil(v.Refunds)},
	}
	if c.Bill.FallbackReason != "" {
		out["fallback_reason"] = c.Bill.FallbackReason
	}
	if v.FailureReason != "" {
		out["failure_reason"] = v.FailureReason
	}
	if s.PG != nil && c.Bill.BillID != "" {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		p, err := s.PG.LookupPayment(ctx, c.Bill.BillID)
		cancel()
		if err != nil {
			out["pg_error"] = string(pgclient.KindOf(err))
		} else {
			out["pg_status"] = map[string]any{"status": p.Status, "amount": p.Amount, "refunded": p.Refunded, "pg_tx_id": p.PGTxID}
		}
	}
	writeJSON(w, http.StatusOK, out)
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

func (s *server) billURL(w http.ResponseWriter, r *http.Request) {
	v, err := s.Store.ViewCharge(r.Context(), merchantOf(r), r.PathValue("charge_id"))
	if errors.Is(err, store.ErrNotFound) {
		writeError(w, http.StatusNotFound, "not_found", "no such charge")
		return
	}
	if err != nil {
		s.internal(w, "view charge", err)
		return
	}
	b := v.Charge.Bill
	if b.Method != payflow.MethodKakaoBill || b.Status != payflow.BillRequested {
		writeError(w, http.StatusConflict, "invalid_state", "the charge has no unpaid KakaoTalk bill")
		return
	}
	if v.BillURL != "" && time.Until(v.BillURLExpires) > time.Minute {
		writeJSON(w, http.StatusOK, map[string]any{"bill_id": b.BillID, "url": v.BillURL, "expires_at": v.BillURLExpires.UTC()})
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	u, err := s.PG.BillURL(ctx, b.BillID)
	cancel()
	if err != nil {
		if pgclient.KindOf(err) == pgclient.KindConflict {
			writeError(w, http.StatusConflict, "invalid_state", "the PG reports the bill is no longer payable")
			return
		}
		writeError(w, http.StatusBadGateway, "pg_unavailable", "the PG did not answer; try again")
		return
	}
	if err := s.Store.CacheBillURL(r.Context(), b.BillID, u.URL, u.ExpiresAt); err != nil {
		s.Logger.Warn("api: could not cache bill url", "bill_id", b.BillID, "err", err)
	}
	writeJSON(w, http.StatusOK, map[string]any{"bill_id": b.BillID, "url": u.URL, "expires_at": u.ExpiresAt.UTC()})
}

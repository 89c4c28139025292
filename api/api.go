// Package api owns payflow's HTTP API: members' payment methods (platform
// token), merchants' charges and bill URLs (merchant token; a merchant sees
// only its own charges), health and readiness, with the PG webhook receiver
// and the metrics handler mounted beside them.
//
// It is built on the standard library's ServeMux. Every error is
// {"error":{"code":"...","message":"..."}}; billing keys, tokens and phone
// numbers never appear in an answer or a log line.
package api

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/payflow/payflow/payflow"
	"github.com/payflow/payflow/pgclient"
	"github.com/payflow/payflow/vault"
)

// Store is what the API needs of the database; *store.Store is the
// implementation. Every read is scoped to one merchant or member: another
// one's row is payflow.ErrNotFound.
type Store interface {
	Charges
	Methods
}

// Charges: what a merchant may read of its charges, and a bill's pay URL.
type Charges interface {
	ChargeView(ctx context.Context, merchantID, chargeID string) (payflow.ChargeView, error)
	CurrentBill(ctx context.Context, merchantID, chargeID string) (payflow.CachedBill, error)
	CacheBillURL(ctx context.Context, billID, url string, expiresAt time.Time) error
}

// Methods: a member's registered payment methods.
type Methods interface {
	AddMethod(ctx context.Context, m payflow.PaymentMethod) (payflow.PaymentMethod, error)
	ListMethods(ctx context.Context, memberID string) ([]payflow.PaymentMethod, error)
	DeleteMethod(ctx context.Context, memberID, id string) error
}

// Config is what the API needs; the process wires it.
type Config struct {
	Store Store
	Vault *vault.Vault
	// PG answers bill URLs and payment lookups; nil disables both (the
	// charge view then has no pg_status, bill URLs are 502).
	PG pgclient.Client
	// PlatformToken guards the payment-method endpoints; empty disables
	// them (every call is 401).
	PlatformToken string
	// MerchantTokens maps a merchant id to its token; the token decides
	// whose charges a caller sees.
	MerchantTokens map[string]string
	Logger         *slog.Logger
	// Ready reports whether the process can do its work (database and
	// Kafka reachable); nil means always ready.
	Ready func(ctx context.Context) error
	// Metrics is served at GET /metrics (e.g. promhttp); nil leaves it out.
	Metrics http.Handler
	// Webhooks is served at POST /webhooks/pg/{provider}; nil leaves it out.
	Webhooks http.Handler
}

// MaxBody bounds request bodies: the largest legitimate one is a payment
// method of a few hundred bytes.
const MaxBody = 64 << 10

type server struct {
	Config
	auth *authenticator
}

// New returns the API's handler.
func New(cfg Config) http.Handler {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	s := &server{Config: cfg, auth: newAuthenticator(cfg.PlatformToken, cfg.MerchantTokens, cfg.Logger)}
	mux := http.NewServeMux()
	for _, rt := range s.routes() {
		mux.Handle(rt.pattern, rt.h)
	}
	return s.serve(mux)
}

type route struct {
	pattern string
	h       http.Handler
}

// routes are the API's endpoints; api/openapi.json documents each of them
// (a test holds the two together).
func (s *server) routes() []route {
	rs := []route{
		{"POST /v1/members/{member_id}/payment-methods", s.platform(s.addMethod)},
		{"GET /v1/members/{member_id}/payment-methods", s.platform(s.listMethods)},
		{"DELETE /v1/members/{member_id}/payment-methods/{id}", s.platform(s.deleteMethod)},
		{"GET /v1/charges/{charge_id}", s.merchant(s.getCharge)},
		{"GET /v1/charges/{charge_id}/bill-url", s.merchant(s.billURL)},
		{"GET /healthz", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
		})},
		{"GET /readyz", http.HandlerFunc(s.readyz)},
		{"GET /openapi.json", http.HandlerFunc(serveOpenAPI)},
	}
	if s.Metrics != nil {
		rs = append(rs, route{"GET /metrics", s.Metrics})
	}
	if s.Webhooks != nil {
		rs = append(rs, route{"POST /webhooks/pg/{provider}", s.Webhooks})
	}
	return rs
}

// ParseMerchantTokens reads PAYFLOW_MERCHANT_TOKENS: "m1:tok1,m2:tok2".
// Errors name entries by position, never by their token.
func ParseMerchantTokens(s string) (map[string]string, error) {
	out := map[string]string{}
	owner := map[string]string{} // token → merchant, to refuse a shared token
	for i, pair := range strings.Split(s, ",") {
		pair = strings.TrimSpace(pair)
		if pair == "" {
			continue
		}
		m, tok, ok := strings.Cut(pair, ":")
		m, tok = strings.TrimSpace(m), strings.TrimSpace(tok)
		if !ok || m == "" || tok == "" {
			return nil, fmt.Errorf("api: PAYFLOW_MERCHANT_TOKENS entry %d is not merchant:token", i+1)
		}
		if err := payflow.ValidID(m); err != nil {
			return nil, fmt.Errorf("api: PAYFLOW_MERCHANT_TOKENS entry %d: merchant id %w", i+1, err)
		}
		if strings.ContainsFunc(tok, isSpaceOrControl) {
			return nil, fmt.Errorf("api: PAYFLOW_MERCHANT_TOKENS entry %d: the token contains spaces or control characters", i+1)
		}
		if _, dup := out[m]; dup {
			return nil, fmt.Errorf("api: PAYFLOW_MERCHANT_TOKENS names merchant %q twice", m)
		}
		if other, dup := owner[tok]; dup {
			// One token for two merchants would decide arbitrarily whose
			// charges its holder sees.
			return nil, fmt.Errorf("api: PAYFLOW_MERCHANT_TOKENS gives merchants %q and %q the same token", other, m)
		}
		out[m], owner[tok] = tok, m
	}
	return out, nil
}

func (s *server) readyz(w http.ResponseWriter, r *http.Request) {
	if s.Ready != nil {
		ctx, cancel := context.WithTimeout(r.Context(), readyTimeout)
		defer cancel()
		if err := s.Ready(ctx); err != nil {
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				err = fmt.Errorf("readiness checks did not answer within %s", readyTimeout)
			}
			s.Logger.Warn("api: not ready", "err", err)
			writeError(w, http.StatusServiceUnavailable, "not_ready", err.Error())
			return
		}
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
}

package app

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/payflow/payflow/api"
	"github.com/payflow/payflow/stdwebhook"
	"github.com/payflow/payflow/store"
	"github.com/payflow/payflow/webhook"
	"github.com/payflow/payflow/worker"
)

// httpHandler serves the API, the webhooks, health and metrics. inFlight,
// when set, is the consumer's OldestInFlight, for readiness.
func httpHandler(cfg Config, st *store.Store, methods *methodSource, wk *worker.Worker, inFlight func() time.Duration) (http.Handler, error) {
	receiver, err := webhookReceiver(cfg, wk, cfg.observe)
	if err != nil {
		return nil, err
	}
	if cfg.PaySSam != nil {
		receiver.Handlers = map[string]http.Handler{webhook.ProviderPaySSam: paySSamReceiver(cfg, st, wk, cfg.observe)}
	}
	return api.New(api.Config{
		Store: st, Vault: methods.vault, PG: cfg.PG, PlatformToken: cfg.PlatformToken, MerchantTokens: cfg.MerchantTokens,
		Logger: cfg.Logger.With("part", "api"), Metrics: promhttp.HandlerFor(cfg.gatherer(), promhttp.HandlerOpts{}),
		Webhooks: cfg.observe.t.webhook(receiver),
		Ready: func(ctx context.Context) error {
			if err := st.Pool.Ping(ctx); err != nil {
				return errors.New("database unreachable")
			}
			if err := cfg.ping(ctx); err != nil {
				return errors.New("kafka unreachable")
			}
			if inFlight != nil {
				if age := inFlight(); age > cfg.MaxInFlightAge {
					return fmt.Errorf("a request has been in flight for %s (limit %s)", age.Round(time.Second), cfg.MaxInFlightAge)
				}
			}
			return nil
		},
	}), nil
}

// gatherer is what /metrics serves.
func (c Config) gatherer() prometheus.Gatherer {
	if c.gather != nil {
		return c.gather
	}
	return c.observe.m.registry
}

// webhookReceiver is the PG callback endpoint, telling its results to o.
func webhookReceiver(cfg Config, settler webhook.Settler, o webhook.Observer) (*webhook.Receiver, error) {
	verifiers := map[string]webhook.Verifier{}
	// With PaySSam as the PG the simulator's signed webhooks are optional.
	if cfg.PaySSam == nil || cfg.WebhookSecrets != "" {
		secrets, err := stdwebhook.ParseSecrets(cfg.WebhookSecrets)
		if err != nil {
			return nil, errors.New("app: PAYFLOW_PG_WEBHOOK_SECRET: " + err.Error())
		}
		verifiers["sim"] = &stdwebhook.Verifier{Secrets: secrets}
	}
	return &webhook.Receiver{
		Verifiers: verifiers,
		Settler:   settler,
		Logger:    cfg.Logger.With("part", "webhook"),
		Observer:  o,
	}, nil
}

// httpTimeouts bound how long one connection and one request may take, so
// that a client which sends its headers and then stalls or trickles the
// body (or never sends its next request) cannot hold a handler, a database
// connection or a socket for ever.
type httpTimeouts struct {
	// ReadHeader bounds reading a request's headers.
	ReadHeader time.Duration
	// Read bounds reading a whole request, headers and body: bodies are at
	// most 64 KiB.
	Read time.Duration
	// Handler is the deadline of the request's context: database and PG
	// calls made for the request end with it.
	Handler time.Duration
	// Write bounds the exchange from the end of the headers to the end of
	// the answer; it must outlast Read and Handler, so a handler that used
	// its whole deadline can still answer.
	Write time.Duration
	// Idle bounds the wait for the next request on a kept-alive connection.
	Idle time.Duration
}

var defaultHTTPTimeouts = httpTimeouts{
	ReadHeader: 10 * time.Second,
	Read:       20 * time.Second,
	Handler:    30 * time.Second,
	Write:      60 * time.Second,
	Idle:       120 * time.Second,
}

// newHTTPServer serves h within the limits t.
func newHTTPServer(h http.Handler, t httpTimeouts) *http.Server {
	return &http.Server{
		Handler:           withDeadline(h, t.Handler),
		ReadHeaderTimeout: t.ReadHeader,
		ReadTimeout:       t.Read,
		WriteTimeout:      t.Write,
		IdleTimeout:       t.Idle,
	}
}

// withDeadline gives every request's context a deadline d away. Unlike
// http.TimeoutHandler it does not buffer answers; the handler answers the
// expiry itself (a webhook's settlement that did not commit is a 5xx, so
// the PG sends it again).
func withDeadline(h http.Handler, d time.Duration) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), d)
		defer cancel()
		h.ServeHTTP(w, r.WithContext(ctx))
	})
}

package app

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/payflow/payflow/api"
	"github.com/payflow/payflow/producer"
	"github.com/payflow/payflow/stdwebhook"
	"github.com/payflow/payflow/store"
	"github.com/payflow/payflow/webhook"
	"github.com/payflow/payflow/worker"
)

// httpHandler serves the API, the webhooks, health and metrics. inFlight,
// when set, is the consumer's OldestInFlight, for readiness.
func httpHandler(cfg Config, st *store.Store, methods *methodSource, wk *worker.Worker, inFlight func() time.Duration) (http.Handler, error) {
	secrets, err := stdwebhook.ParseSecrets(cfg.WebhookSecrets)
	if err != nil {
		return nil, errors.New("app: PAYFLOW_PG_WEBHOOK_SECRET: " + err.Error())
	}
	receiver := &webhook.Receiver{
		Verifiers: map[string]webhook.Verifier{"sim": &stdwebhook.Verifier{Secrets: secrets}},
		Settler:   wk,
		Logger:    cfg.Logger.With("part", "webhook"),
		OnResult:  metrics.webhook,
	}
	return api.New(api.Config{
		Store: st, Vault: methods.vault, PG: cfg.PG, PlatformToken: cfg.PlatformToken, MerchantTokens: cfg.MerchantTokens,
		Logger: cfg.Logger.With("part", "api"), Metrics: promhttp.HandlerFor(metrics.registry, promhttp.HandlerOpts{}),
		Webhooks: receiver,
		Ready: func(ctx context.Context) error {
			if err := st.Pool.Ping(ctx); err != nil {
				return errors.New("database unreachable")
			}
			if err := producer.Ping(ctx, cfg.Brokers); err != nil {
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

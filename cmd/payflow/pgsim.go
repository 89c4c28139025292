//go:build !production

package main

import (
	"errors"
	"log/slog"
	"net/http"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/payflow/payflow/pgclient/pgsim"
)

// pgsimCmd runs the PG simulator alone, for a stack that needs a PG to
// talk to (docker-compose.yml runs it from the image's dev target). It is
// dev tooling: the production build leaves it out.
func pgsimCmd() *cobra.Command {
	var cfg pgsim.Config
	var addr string
	cmd := &cobra.Command{
		Use:   "pgsim",
		Short: "Run the PG simulator alone (signs webhooks with PAYFLOW_PG_WEBHOOK_SECRET)",
		RunE: func(cmd *cobra.Command, _ []string) error {
			fromEnv(cmd.Flags(), "api-key", "PAYFLOW_PG_API_KEY", &cfg.APIKey)
			cfg.WebhookSecret = firstField(os.Getenv("PAYFLOW_PG_WEBHOOK_SECRET"))
			if cfg.CallbackURL != "" && cfg.WebhookSecret == "" {
				return usagef("pgsim with --callback-url needs PAYFLOW_PG_WEBHOOK_SECRET to sign webhooks")
			}
			cfg.Logger = newLogger("text", slog.LevelInfo)
			sim, err := pgsim.New(cfg)
			if err != nil {
				return err
			}
			defer sim.Close()
			srv := &http.Server{Addr: addr, Handler: sim.Handler(), ReadHeaderTimeout: 10 * time.Second}
			go func() { <-cmd.Context().Done(); _ = srv.Close() }()
			cfg.Logger.Info("pg simulator listening", "addr", addr, "callback_url", cfg.CallbackURL)
			if err := srv.ListenAndServe(); !errors.Is(err, http.ErrServerClosed) {
				return err
			}
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&addr, "addr", "127.0.0.1:8090", "listen address")
	fl.StringVar(&cfg.CallbackURL, "callback-url", "", "payflow's webhook URL, e.g. http://127.0.0.1:8080/webhooks/pg/sim")
	fl.DurationVar(&cfg.Latency, "latency", 50*time.Millisecond, "latency added to every operation")
	fl.Float64Var(&cfg.ErrorRate, "error-rate", 0, "share of calls answered 503 without executing (0..1)")
	fl.Float64Var(&cfg.TimeoutRate, "timeout-rate", 0, "share of calls executed and then left unanswered (0..1)")
	fl.Float64Var(&cfg.WebhookDropRate, "webhook-drop-rate", 0, "share of webhooks never sent (0..1)")
	fl.DurationVar(&cfg.SettleDelay, "settle-delay", 500*time.Millisecond, "when an accepted auto-pay is paid")
	fl.DurationVar(&cfg.KakaoPayDelay, "kakao-pay-delay", 2*time.Second, "when the simulated customer pays a KakaoTalk bill (0: never)")
	fl.DurationVar(&cfg.BillTTL, "bill-ttl", 0, "when unpaid KakaoTalk bills expire (0: never)")
	fl.StringVar(&cfg.PublicURL, "public-url", "", "base of bill pay URLs (default: the host the request came to)")
	fl.StringVar(&cfg.APIKey, "api-key", "", "require this bearer token from callers (default $PAYFLOW_PG_API_KEY)")
	fl.Uint64Var(&cfg.Seed, "seed", 0, "make random faults and webhook drops reproducible (0: random)")
	fl.DurationVar(&cfg.RetryAfter, "retry-after", 0, "Retry-After sent with the simulated 503s")
	return cmd
}

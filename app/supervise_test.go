package app_test

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/payflow/payflow/app"
	"github.com/payflow/payflow/devenv"
	"github.com/payflow/payflow/events"
	"github.com/payflow/payflow/internal/testdb"
	"github.com/payflow/payflow/kafkaconf"
	"github.com/payflow/payflow/pgclient"
	"github.com/payflow/payflow/stdwebhook"
	"github.com/payflow/payflow/vault"
)

// A relay that fails stops payflow, and Run returns its error: the
// process exits instead of running on without publishing.
func TestRunReturnsTheRelaysFailure(t *testing.T) {
	k, err := devenv.StartKafka("")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(k.Close)
	broke := errors.New("outbox unreadable")
	out := &logs{}
	cfg := app.Config{
		Brokers: []string{k.Addr()}, DatabaseURL: testdb.NewDSN(t), PG: acceptingPG(), VaultKey: vault.GenerateKey(),
		Roles: app.Roles{Worker: true, Relay: true}, Partitions: 1, RetryBudget: time.Minute, Lease: 2 * time.Minute,
		Logger: slog.New(slog.NewJSONHandler(out, nil)),
	}
	app.WrapComponent(&cfg, "relay", func(ctx context.Context, _ func(context.Context) error) error {
		time.Sleep(100 * time.Millisecond)
		return broke
	})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	err = app.Run(ctx, cfg)
	if !errors.Is(err, broke) || !strings.Contains(err.Error(), "relay") {
		t.Fatalf("Run = %v", err)
	}
	if ctx.Err() != nil {
		t.Fatal("Run returned only when its context ended")
	}
	if log := out.String(); !strings.Contains(log, "payflow stopping on error") || !strings.Contains(log, "outbox unreadable") {
		t.Fatalf("the failure is not in the log:\n%s", log)
	}
}

// holdPG holds every bill until released, and says when one is held.
type holdPG struct {
	pgclient.Client
	held    chan struct{}
	release chan struct{}
}

func (p *holdPG) SendKakaoBill(ctx context.Context, req pgclient.KakaoBillRequest) (pgclient.Accepted, error) {
	p.held <- struct{}{}
	<-p.release
	return pgclient.Accepted{BillID: req.BillID, PGTxID: "tx-" + req.BillID}, nil
}

// A request in flight when payflow is told to stop finishes, and its
// result is published before Run returns: the relay stops, and flushes,
// only after the consumer stopped.
func TestRunPublishesWhatInFlightRequestsWroteAtShutdown(t *testing.T) {
	k, err := devenv.StartKafka("")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(k.Close)
	pg := &holdPG{held: make(chan struct{}, 1), release: make(chan struct{})}
	var consumerStopped, relayToldEarly atomic.Bool
	ready := make(chan struct{})
	cfg := app.Config{
		Brokers: []string{k.Addr()}, DatabaseURL: testdb.NewDSN(t), PG: pg, VaultKey: vault.GenerateKey(),
		Roles: app.Roles{Worker: true, Relay: true}, Partitions: 1, RetryBudget: time.Minute, Lease: 2 * time.Minute,
		Logger: slog.New(slog.DiscardHandler), Ready: func() { close(ready) },
	}
	app.WrapComponent(&cfg, "consumer", func(ctx context.Context, run func(context.Context) error) error {
		err := run(ctx)
		consumerStopped.Store(true)
		return err
	})
	app.WrapComponent(&cfg, "relay", func(ctx context.Context, run func(context.Context) error) error {
		go func() { <-ctx.Done(); relayToldEarly.Store(!consumerStopped.Load()) }()
		return run(ctx)
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- app.Run(ctx, cfg) }()
	<-ready
	p := &payflow{kafka: k.Addr()}
	p.publish(t, charge("c-late", "010-1234-5678"))
	<-pg.held
	cancel()
	time.Sleep(300 * time.Millisecond) // the shutdown waits for the request
	close(pg.release)
	if err := <-done; err != nil {
		t.Fatalf("Run = %v", err)
	}
	if relayToldEarly.Load() {
		t.Fatal("the relay was told to stop before the consumer stopped")
	}
	m := readEvent(t, k.Addr(), &kafkaconf.Dial{}, events.TopicEvents, "payment.charge.processed")
	if string(m.Key) != "c-late" {
		t.Fatalf("published %s", m.Key)
	}
}

// A configuration that cannot work fails Run before it connects to the
// database or to Kafka.
func TestRunRefusesABadConfigurationBeforeConnecting(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var dialed atomic.Int32
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			dialed.Add(1)
			c.Close()
		}
	}()
	addr := ln.Addr().String()
	good := app.Config{
		Brokers: []string{addr}, DatabaseURL: "postgres://payflow@" + addr + "/payflow?connect_timeout=1", PG: acceptingPG(),
		VaultKey: vault.GenerateKey(), WebhookSecrets: stdwebhook.NewSecret(), RetryBudget: time.Minute, Lease: 2 * time.Minute,
		Logger: slog.New(slog.DiscardHandler),
	}
	for name, tc := range map[string]struct {
		bad  func(*app.Config)
		want string
	}{
		"no vault key":    {func(c *app.Config) { c.VaultKey = "" }, "PAYFLOW_VAULT_KEY is required"},
		"bad vault key":   {func(c *app.Config) { c.VaultKey = "not-a-key" }, ""},
		"bad secret":      {func(c *app.Config) { c.WebhookSecrets = "whsec_!" }, "PAYFLOW_PG_WEBHOOK_SECRET"},
		"bad group":       {func(c *app.Config) { c.GroupID = strings.Repeat("g", 256) }, "PAYFLOW_GROUP_ID"},
		"clashing topics": {func(c *app.Config) { c.Topics = kafkaconf.Topics{Requests: "x", Events: "x"} }, "each topic needs its own name"},
		"bad PaySSam":     {func(c *app.Config) { c.PaySSam = &app.PaySSamConfig{} }, "payssam:"},
	} {
		t.Run(name, func(t *testing.T) {
			cfg := good
			tc.bad(&cfg)
			if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Validate = %v", err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if err := app.Run(ctx, cfg); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Run = %v", err)
			}
			if n := dialed.Load(); n != 0 {
				t.Fatalf("Run connected %d times before refusing the configuration", n)
			}
		})
	}
	// The check itself can fail: the good configuration does connect.
	if err := good.Validate(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := app.Run(ctx, good); err == nil {
		t.Fatal("Run against a fake database succeeded")
	}
	if dialed.Load() == 0 {
		t.Fatal("the good configuration never connected: the check above proves nothing")
	}
}

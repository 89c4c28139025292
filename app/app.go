// Package app assembles payflow's parts into one running process: schema
// migration, topics, the consumer feeding the worker, the sweeper, the
// outbox relay and the HTTP server (API, PG webhooks, health, metrics). The
// commands in cmd/payflow only gather configuration and call Run.
package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"
	"go.opentelemetry.io/otel/trace"

	"github.com/payflow/payflow/consumer"
	"github.com/payflow/payflow/events"
	"github.com/payflow/payflow/kafkaconf"
	"github.com/payflow/payflow/outbox"
	"github.com/payflow/payflow/pgclient"
	"github.com/payflow/payflow/pgclient/payssam"
	"github.com/payflow/payflow/producer"
	"github.com/payflow/payflow/reqsig"
	"github.com/payflow/payflow/stdwebhook"
	"github.com/payflow/payflow/store"
	"github.com/payflow/payflow/vault"
	"github.com/payflow/payflow/worker"
)

// Roles says which parts of payflow this process runs. `serve` runs all by
// default; flags can split them across processes.
type Roles struct {
	Worker bool // consumer, worker and sweeper
	Relay  bool // outbox relay
	HTTP   bool // API, webhooks, health, metrics
}

// All runs every part.
var All = Roles{Worker: true, Relay: true, HTTP: true}

// Config is everything a payflow process needs.
type Config struct {
	Brokers []string
	// KafkaSecurity is the TLS and SASL of every Kafka connection (the
	// consumer, the writer, topic creation, readiness). Zero: plaintext.
	KafkaSecurity kafkaconf.Security
	DatabaseURL   string
	// DB tunes the Postgres pool: its size, the connect and statement
	// timeouts (zero: the defaults of store.Options).
	DB store.Options
	PG pgclient.Client
	// PaySSam, when set, makes PaySSam the PG: Run builds its adapter
	// (PG is then ignored) and serves its callbacks at
	// /webhooks/pg/payssam.
	PaySSam  *PaySSamConfig
	HTTPAddr string
	// HTTPListener, when set, is used instead of listening on HTTPAddr.
	HTTPListener net.Listener

	WebhookSecrets string // PAYFLOW_PG_WEBHOOK_SECRET: whsec_ secrets, space separated
	VaultKey       string // PAYFLOW_VAULT_KEY
	PlatformToken  string
	MerchantTokens map[string]string
	// RequestKeys are the merchants whose requests must be signed
	// (PAYFLOW_MERCHANT_KEYS, parsed by reqsig.ParseKeys); nil: none.
	RequestKeys *reqsig.Keys

	Roles      Roles
	Partitions int    // of the topics payflow creates when they are missing
	GroupID    string // the consumer group (default "payflow")
	// Topics names the topics; empty names are the contract's.
	Topics kafkaconf.Topics
	// SkipTopicCreation leaves the topics alone at start, for a principal
	// without the Create ACL: payflow only checks that they exist.
	SkipTopicCreation bool
	// SkipMigration leaves the schema alone at start, for a database user
	// without DDL privileges; `payflow migrate` applies it as a job.
	SkipMigration bool

	MaxInFlight int
	// MaxInFlightAge is how long a request may be in flight (fetched, not
	// finished) before the process reports itself not ready (default 5
	// minutes): a stuck request holds its partition's commits while lag
	// and throughput can look fine.
	MaxInFlightAge time.Duration
	SessionTimeout time.Duration // of the consumer group
	Lease          time.Duration
	RetryBudget    time.Duration
	SweepInterval  time.Duration
	// ReconcileAge is how long a placed bill waits for its webhook before
	// reconciliation asks the PG; ReconcileInterval how often it looks.
	ReconcileAge      time.Duration
	ReconcileInterval time.Duration

	Logger *slog.Logger
	// TracerProvider makes payflow's spans. Nil: from the OpenTelemetry
	// environment (OTEL_TRACES_EXPORTER, OTEL_EXPORTER_OTLP_ENDPOINT, ...;
	// see tracerProviderFromEnv), off unless it is configured.
	TracerProvider trace.TracerProvider
	// Ready, when set, is called once every part has started.
	Ready func()

	// observe is this run's metrics (one registry per payflow) and
	// tracing, as every package's Observer.
	observe observer
	ping    func(context.Context) error // Kafka's readiness, with the security above
	vault   *vault.Vault                // the parsed VaultKey
	// wrap, when set, wraps every component before it runs (tests).
	wrap func(component) component
	// gather is what /metrics serves: the process's metrics and this
	// run's cluster gauges.
	gather prometheus.Gatherer
}

func (c *Config) defaults() {
	if c.Partitions <= 0 {
		c.Partitions = 12
	}
	if c.GroupID == "" {
		c.GroupID = kafkaconf.DefaultGroup
	}
	c.Topics = c.Topics.WithDefaults()
	if c.SweepInterval <= 0 {
		c.SweepInterval = 5 * time.Second
	}
	if c.MaxInFlightAge <= 0 {
		c.MaxInFlightAge = 5 * time.Minute
	}
	if c.ReconcileAge <= 0 {
		c.ReconcileAge = 5 * time.Minute
	}
	if c.ReconcileInterval <= 0 {
		c.ReconcileInterval = 30 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Roles == (Roles{}) {
		c.Roles = All
	}
}

// Validate reports a configuration that cannot work: Run calls it before
// it connects to anything.
func (c Config) Validate() error {
	c.defaults()
	return c.validate()
}

// validate checks what can be checked without connecting, on a
// configuration with its defaults, and keeps the parsed vault keys.
func (c *Config) validate() error {
	if err := c.Topics.Validate(); err != nil {
		return err
	}
	if err := kafkaconf.ValidGroup(c.GroupID); err != nil {
		return err
	}
	if c.VaultKey == "" {
		return errors.New("app: PAYFLOW_VAULT_KEY is required (base64 of 32 random bytes)")
	}
	v, err := vault.ParseKeys(c.VaultKey)
	if err != nil {
		return err
	}
	c.vault = v
	if c.PaySSam != nil {
		// The adapter Run builds adds only the store's lookups.
		if _, err := payssam.New(c.PaySSam.Adapter); err != nil {
			return err
		}
	}
	if c.Roles.HTTP && (c.PaySSam == nil || c.WebhookSecrets != "") {
		if _, err := stdwebhook.ParseSecrets(c.WebhookSecrets); err != nil {
			return errors.New("app: PAYFLOW_PG_WEBHOOK_SECRET: " + err.Error())
		}
	}
	return nil
}

// Run runs payflow until ctx ends or one of its parts fails, then shuts
// down in the order written in stages. A configuration that cannot work
// fails before anything connects.
func Run(ctx context.Context, cfg Config) error {
	cfg.defaults()
	if err := cfg.validate(); err != nil {
		return err
	}
	if cfg.TracerProvider == nil {
		tp, shutdown, err := tracerProviderFromEnv(ctx)
		if err != nil {
			return err
		}
		defer func() {
			sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := shutdown(sctx); err != nil {
				cfg.Logger.Warn("trace export incomplete at shutdown", "err", err)
			}
		}()
		cfg.TracerProvider = tp
	}
	cfg.observe = observer{m: newMetrics(), t: newTracing(cfg.TracerProvider)}
	cfg.Logger = slog.New(traceLog{cfg.Logger.Handler()})
	log := cfg.Logger
	dial, err := cfg.KafkaSecurity.Dial()
	if err != nil {
		return err
	}
	defer dial.Close()
	if cfg.KafkaSecurity.SASLWithoutTLS() {
		log.Warn("kafka: SASL without TLS sends the credentials and every message unencrypted; set PAYFLOW_KAFKA_TLS=on unless the network protects them")
	}
	kopts := []producer.Option{producer.WithSecurity(dial), producer.WithTopics(cfg.Topics)}
	cfg.ping = func(ctx context.Context) error { return producer.Ping(ctx, cfg.Brokers, kopts...) }
	if cfg.SkipMigration {
		log.Info("schema migration skipped at start; run payflow migrate with each release")
	} else if err := store.MigrateWith(ctx, cfg.DatabaseURL, cfg.DB); err != nil {
		return err
	}
	if cfg.DB.GroupCommit.Observer == nil {
		cfg.DB.GroupCommit.Observer = cfg.observe
	}
	st, err := store.OpenWith(ctx, cfg.DatabaseURL, cfg.DB)
	if err != nil {
		return err
	}
	defer st.Close()
	if cfg.PaySSam != nil {
		pg, err := newPaySSam(cfg.PaySSam, st)
		if err != nil {
			return err
		}
		cfg.PG = pg
	}
	// Whatever the PG sends back is made storable before anything reads
	// it (pgclient.Sanitized), then every call is observed.
	cfg.PG = pgclient.Observed(pgclient.Sanitized(cfg.PG), cfg.observe)
	topics := producer.TopicsNamed(cfg.Topics, cfg.Partitions)
	if cfg.SkipTopicCreation {
		names := make([]string, len(topics))
		for i, t := range topics {
			names[i] = t.Name
		}
		if err := producer.CheckTopics(ctx, cfg.Brokers, names, kopts...); err != nil {
			return fmt.Errorf("app: topic creation is off (--create-topics=false): create the topics first, or grant Create and turn it on: %w", err)
		}
	} else if err := producer.EnsureTopics(ctx, cfg.Brokers, topics, kopts...); err != nil {
		return err
	}
	methods := &methodSource{st: st, vault: cfg.vault}
	writer := producer.NewWriter(cfg.Brokers, kopts...)
	defer writer.Close()

	relay := &outbox.Relay{Pool: st.Pool, Publisher: writer, Logger: log.With("part", "relay"), Observer: cfg.observe}
	notifier := outbox.NewNotifier(st.Pool)
	notifier.Leading = relay.Leading
	wk := worker.New(worker.Config{
		Store: st, PG: cfg.PG, Methods: methods, Logger: log.With("part", "worker"),
		Owner: uuid.NewString(), Lease: cfg.Lease, RetryBudget: cfg.RetryBudget,
		Committed: func() { relay.Wake(); notifier.Signal() },
		Observer:  cfg.observe, RequestKeys: cfg.RequestKeys,
	})
	if m := cfg.RequestKeys.Merchants(); len(m) > 0 && cfg.Roles.Worker {
		log.Info("signed requests required", "merchants", m)
	}

	// Figures about the whole deployment come from the leading relay only;
	// a process that runs no relay never reports them.
	leading := func() bool { return false }
	if cfg.Roles.Relay {
		leading = relay.Leading
	}
	local := prometheus.NewRegistry()
	lagClient := &kafka.Client{Addr: kafka.TCP(cfg.Brokers...), Timeout: 5 * time.Second, Transport: dial.Transport()}
	groupLag := func(ctx context.Context) (map[int]int64, error) {
		return consumer.GroupLag(ctx, lagClient, cfg.GroupID, cfg.Topics.Requests)
	}
	local.MustRegister(newClusterGauges(st, leading, cfg.ReconcileAge, groupLag))
	cfg.gather = prometheus.Gatherers{cfg.observe.m.registry, local}

	var consuming, publishing, serving stage
	var inFlight func() time.Duration
	if cfg.Roles.Worker {
		cons := consumer.New(consumer.Config{
			Brokers: cfg.Brokers, Dialer: dial.Dialer(), GroupID: cfg.GroupID, Topic: cfg.Topics.Requests,
			Handler: func(ctx context.Context, m kafka.Message) error {
				err := wk.HandleMessage(ctx, m.Value, headersOf(m))
				if errors.Is(err, events.ErrUnparseable) {
					return consumer.DeadLetter(err)
				}
				return err
			},
			DLQ: writer, Logger: log.With("part", "consumer"), MaxInFlight: cfg.MaxInFlight,
			Observer: cfg.observe, SessionTimeout: cfg.SessionTimeout,
			Retry:   retriable,
			Waiting: func(err error) bool { return errors.Is(err, worker.ErrBusy) },
		})
		inFlight = cons.OldestInFlight
		consuming = stage{
			{"consumer", cons.Run},
			{"sweeper", func(ctx context.Context) error { wk.RunSweeper(ctx, cfg.SweepInterval); return nil }},
			{"reconciler", func(ctx context.Context) error {
				wk.RunReconciler(ctx, cfg.ReconcileInterval, cfg.ReconcileAge)
				return nil
			}},
		}
	}
	if cfg.Roles.Relay {
		publishing = append(publishing, relayComponent(relay))
	}
	publishing = append(publishing, component{"notifier", func(ctx context.Context) error { notifier.Run(ctx); return nil }})
	if cfg.Roles.HTTP {
		c, err := httpComponent(cfg, st, methods, wk, inFlight)
		if err != nil {
			return err
		}
		serving = stage{c}
	}
	if cfg.wrap != nil {
		for _, s := range []stage{consuming, publishing, serving} {
			for i := range s {
				s[i] = cfg.wrap(s[i])
			}
		}
	}

	log.Info("payflow running", "brokers", cfg.Brokers, "kafka_security", cfg.KafkaSecurity.String(),
		"topic_requests", cfg.Topics.Requests, "topic_events", cfg.Topics.Events, "topic_dlq", cfg.Topics.DLQ, "group", cfg.GroupID, "worker", cfg.Roles.Worker, "relay", cfg.Roles.Relay, "http", cfg.Roles.HTTP)
	// The shutdown order, which loses nothing: stop consuming, sweeping
	// and reconciling first, letting in-flight requests finish and write
	// their results; then stop the relay, which publishes what they wrote
	// in a last pass; then stop serving HTTP.
	err = supervise(ctx, log, cfg.Ready, consuming, publishing, serving)
	log.Info("payflow stopped")
	return err
}

// relayComponent runs the relay. Told to stop, a relay that leads
// publishes what is left in a last pass, still holding its lock: the
// stages stopped before it (the consumer's in-flight requests) wrote
// results that should not wait for the next relay.
func relayComponent(relay *outbox.Relay) component {
	return component{"relay", relay.Run}
}

// httpComponent serves the API, webhooks, health and metrics. It listens
// at once, so that an address in use fails Run before anything starts;
// told to stop, it lets requests in progress finish for a few seconds.
func httpComponent(cfg Config, st *store.Store, methods *methodSource, wk *worker.Worker, inFlight func() time.Duration) (component, error) {
	h, err := httpHandler(cfg, st, methods, wk, inFlight)
	if err != nil {
		return component{}, err
	}
	ln := cfg.HTTPListener
	if ln == nil {
		if ln, err = net.Listen("tcp", cfg.HTTPAddr); err != nil {
			return component{}, fmt.Errorf("app: listen %s: %w", cfg.HTTPAddr, err)
		}
	}
	srv := newHTTPServer(h, defaultHTTPTimeouts)
	return component{"http", func(ctx context.Context) error {
		served := make(chan error, 1)
		go func() { served <- srv.Serve(ln) }()
		select {
		case err := <-served:
			return err
		case <-ctx.Done():
		}
		shutCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(shutCtx); err != nil {
			log := cfg.Logger.With("part", "http")
			log.Warn("requests still in progress at shutdown", "err", err)
		}
		return nil
	}}, nil
}

// retriable is the consumer's classifier: true for an error that waits on
// something that comes back, so the request is retried without bound; any
// other error is retried a few times, then the request is dead-lettered.
func retriable(err error) bool {
	return store.Temporary(err) || pgUnavailable(err)
}

// pgUnavailable reports a PG error after which the operation may be tried
// again (the worker returns one when the PG stayed unreachable through its
// retry budget, e.g. destroying a bill).
func pgUnavailable(err error) bool {
	var pgErr *pgclient.Error
	return errors.As(err, &pgErr) && pgclient.Retriable(pgErr)
}

// headersOf returns a message's headers as events reads them (structured
// or binary content mode).
func headersOf(m kafka.Message) []events.Header {
	hs := make([]events.Header, len(m.Headers))
	for i, h := range m.Headers {
		hs[i] = events.Header(h)
	}
	return hs
}

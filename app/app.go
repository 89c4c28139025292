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
	"net/http"
	"sync"
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
	"github.com/payflow/payflow/producer"
	"github.com/payflow/payflow/reqsig"
	"github.com/payflow/payflow/store"
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

	tracing tracing
	metrics *metricSet                  // this run's metrics, one registry per payflow
	ping    func(context.Context) error // Kafka's readiness, with the security above
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

// Run runs payflow until ctx ends, then shuts down in order: stop consuming
// and let in-flight requests finish, publish what they wrote, stop serving.
func Run(ctx context.Context, cfg Config) error {
	cfg.defaults()
	cfg.metrics = newMetrics()
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
	cfg.tracing = newTracing(cfg.TracerProvider)
	cfg.Logger = slog.New(traceLog{cfg.Logger.Handler()})
	log := cfg.Logger
	if err := cfg.Topics.Validate(); err != nil {
		return err
	}
	if err := kafkaconf.ValidGroup(cfg.GroupID); err != nil {
		return err
	}
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
	if cfg.DB.GroupCommit.Observe == nil {
		cfg.DB.GroupCommit.Observe = cfg.metrics.flushed
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
	cfg.PG = instrumentedPG{next: cfg.PG, tracing: cfg.tracing, m: cfg.metrics}
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
	methods, err := newMethodSource(st, cfg.VaultKey)
	if err != nil {
		return err
	}
	writer := producer.NewWriter(cfg.Brokers, kopts...)
	defer writer.Close()

	relay := &outbox.Relay{Pool: st.Pool, Publisher: writer, Logger: log.With("part", "relay"), Observe: cfg.metrics.relayed,
		TracerProvider: cfg.TracerProvider}
	notifier := outbox.NewNotifier(st.Pool)
	wk := worker.New(worker.Config{
		Store: st, PG: cfg.PG, Methods: methods, Logger: log.With("part", "worker"),
		Owner: uuid.NewString(), Lease: cfg.Lease, RetryBudget: cfg.RetryBudget,
		Committed: func() { relay.Wake(); notifier.Signal() },
		Observer:  observer{cfg.metrics, cfg.tracing}, RequestKeys: cfg.RequestKeys,
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
	cfg.gather = prometheus.Gatherers{cfg.metrics.registry, local}

	var wg sync.WaitGroup
	errs := make(chan error, 4)
	relayCtx, stopRelay := context.WithCancel(context.WithoutCancel(ctx))
	defer stopRelay()
	if cfg.Roles.Relay {
		wg.Add(1)
		go func() { defer wg.Done(); _ = relay.Run(relayCtx) }()
	}
	wg.Add(1)
	go func() { defer wg.Done(); notifier.Run(relayCtx) }()

	var cons *consumer.Consumer
	if cfg.Roles.Worker {
		cons = consumer.New(consumer.Config{
			Brokers: cfg.Brokers, Dialer: dial.Dialer(), GroupID: cfg.GroupID, Topic: cfg.Topics.Requests,
			Handler: func(ctx context.Context, m kafka.Message) error {
				ctx, span := cfg.tracing.consume(ctx, m)
				err := wk.HandleMessage(ctx, m.Value, headersOf(m))
				end(span, err)
				if errors.Is(err, events.ErrUnparseable) {
					return consumer.DeadLetter(err)
				}
				return err
			},
			DLQ: writer, Logger: log.With("part", "consumer"), MaxInFlight: cfg.MaxInFlight,
			OnHandled: cfg.metrics.handledOne, OnDeadLettered: cfg.metrics.deadLettered,
			SessionTimeout: cfg.SessionTimeout,
			Retry:          retriable,
			Waiting:        func(err error) bool { return errors.Is(err, worker.ErrBusy) },
		})
	}

	var srv *http.Server
	if cfg.Roles.HTTP {
		var inFlight func() time.Duration
		if cons != nil {
			inFlight = cons.OldestInFlight
		}
		srv, err = serveHTTP(cfg, st, methods, wk, inFlight, errs)
		if err != nil {
			return err
		}
	}

	workerDone := make(chan struct{})
	if cfg.Roles.Worker {
		go func() {
			defer close(workerDone)
			var sw sync.WaitGroup
			sweepCtx, stopSweep := context.WithCancel(ctx)
			sw.Add(2)
			go func() { defer sw.Done(); wk.RunSweeper(sweepCtx, cfg.SweepInterval) }()
			go func() { defer sw.Done(); wk.RunReconciler(sweepCtx, cfg.ReconcileInterval, cfg.ReconcileAge) }()
			if err := cons.Run(ctx); err != nil {
				errs <- err
			}
			stopSweep()
			sw.Wait()
		}()
	} else {
		close(workerDone)
	}

	log.Info("payflow running", "brokers", cfg.Brokers, "kafka_security", cfg.KafkaSecurity.String(),
		"topic_requests", cfg.Topics.Requests, "topic_events", cfg.Topics.Events, "topic_dlq", cfg.Topics.DLQ, "group", cfg.GroupID, "worker", cfg.Roles.Worker, "relay", cfg.Roles.Relay, "http", cfg.Roles.HTTP)
	if cfg.Ready != nil {
		cfg.Ready()
	}

	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-errs:
		log.Error("payflow stopping on error", "err", runErr)
	}

	// Shut down in the order that loses nothing: the consumer first (its
	// in-flight requests still write results), then one last relay pass
	// for what they wrote, then HTTP.
	<-workerDone
	stopRelay()
	wg.Wait()
	if cfg.Roles.Relay {
		flushCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		for {
			n, err := relay.PublishBatch(flushCtx)
			if err != nil || n == 0 {
				if err != nil {
					log.Warn("final outbox flush incomplete; the next relay publishes the rest", "err", err)
				}
				break
			}
		}
		cancel()
	}
	if srv != nil {
		shutCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = srv.Shutdown(shutCtx)
		cancel()
	}
	log.Info("payflow stopped")
	return runErr
}

func serveHTTP(cfg Config, st *store.Store, methods *methodSource, wk *worker.Worker, inFlight func() time.Duration, errs chan<- error) (*http.Server, error) {
	h, err := httpHandler(cfg, st, methods, wk, inFlight)
	if err != nil {
		return nil, err
	}
	ln := cfg.HTTPListener
	if ln == nil {
		var err error
		if ln, err = net.Listen("tcp", cfg.HTTPAddr); err != nil {
			return nil, fmt.Errorf("app: listen %s: %w", cfg.HTTPAddr, err)
		}
	}
	srv := newHTTPServer(h, defaultHTTPTimeouts)
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			errs <- err
		}
	}()
	return srv, nil
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

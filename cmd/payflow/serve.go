package main

import (
	"log/slog"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/payflow/payflow/api"
	"github.com/payflow/payflow/app"
	"github.com/payflow/payflow/kafkaconf"
	"github.com/payflow/payflow/pgclient"
	"github.com/payflow/payflow/reqsig"
	"github.com/payflow/payflow/store"
)

func serveCmd() *cobra.Command {
	var (
		kf                                      kafkaFlags
		pgf                                     pgFlags
		db                                      dbFlags
		dsn, pgURL, httpAddr, logFormat         string
		worker, relay, httpOn                   bool
		createTopics, migrate                   bool
		group                                   string
		partitions, maxInFlight                 int
		retryBudget, lease, pgTimeout, sweep    time.Duration
		sessionTimeout, reconcileAge, reconcile time.Duration
	)
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run payflow against real Kafka brokers and Postgres (worker, relay, HTTP API and webhooks)",
		RunE: func(cmd *cobra.Command, _ []string) error {
			fromEnv(cmd.Flags(), "database-url", "DATABASE_URL", &dsn)
			log := newLogger(logFormat, slog.LevelInfo)
			if err := checkLease(lease, retryBudget, pgTimeout); err != nil {
				return err
			}
			dbOpts, err := db.options(cmd.Flags(), worker)
			if err != nil {
				return err
			}
			sec, topics, err := kf.settings()
			if err != nil {
				return err
			}
			if err := kafkaconf.ValidGroup(group); err != nil {
				return usagef("%v", err)
			}
			usePaySSam, err := pgf.usesPaySSam()
			if err != nil {
				return err
			}
			var ps *app.PaySSamConfig
			if usePaySSam {
				if ps, err = pgf.paySSam(os.Getenv("PAYFLOW_PAYSSAM_API_KEY"), pgTimeout); err != nil {
					return err
				}
				pgURL = "-" // not used: PaySSam's URL is PAYFLOW_PAYSSAM_URL
			}
			if kf.brokers == "" || dsn == "" || pgURL == "" {
				return usagef("serve needs PAYFLOW_KAFKA_BROKERS, DATABASE_URL and PAYFLOW_PG_URL (or --brokers, --database-url, --pg-url)")
			}
			var pg pgclient.Client
			if !usePaySSam {
				pg = pgclient.NewHTTPClient(pgURL, pgclient.WithTimeout(pgTimeout), pgclient.WithAPIKey(os.Getenv("PAYFLOW_PG_API_KEY")))
			}
			merchants, err := api.ParseMerchantTokens(os.Getenv("PAYFLOW_MERCHANT_TOKENS"))
			if err != nil {
				return err
			}
			// Environment only: a flag would show keys in ps and --help.
			keys, err := reqsig.ParseKeys(os.Getenv(reqsig.EnvVar))
			if err != nil {
				return usagef("%v", err)
			}
			return app.Run(cmd.Context(), app.Config{
				Brokers: splitList(kf.brokers), KafkaSecurity: sec, DatabaseURL: dsn, DB: dbOpts, HTTPAddr: httpAddr,
				PG: pg, PaySSam: ps,
				WebhookSecrets: os.Getenv("PAYFLOW_PG_WEBHOOK_SECRET"), VaultKey: os.Getenv("PAYFLOW_VAULT_KEY"),
				PlatformToken: os.Getenv("PAYFLOW_API_TOKEN"), MerchantTokens: merchants, RequestKeys: keys,
				Roles: app.Roles{Worker: worker, Relay: relay, HTTP: httpOn}, Partitions: partitions,
				Topics: topics, GroupID: group, SkipTopicCreation: !createTopics, SkipMigration: !migrate,
				MaxInFlight: maxInFlight, RetryBudget: retryBudget, Lease: lease, Logger: log,
				SweepInterval: sweep, SessionTimeout: sessionTimeout,
				ReconcileAge: reconcileAge, ReconcileInterval: reconcile,
			})
		},
	}
	fl := cmd.Flags()
	addKafkaFlags(fl, &kf)
	fl.StringVar(&dsn, "database-url", "", "Postgres connection string (default $DATABASE_URL)")
	addDBFlags(fl, &db, true)
	pgf.register(fl)
	fl.StringVar(&pgURL, "pg-url", os.Getenv("PAYFLOW_PG_URL"), "the PG's base URL (--pg-provider sim)")
	fl.StringVar(&httpAddr, "http-addr", env("PAYFLOW_HTTP_ADDR", ":8080"), "HTTP listen address")
	fl.StringVar(&logFormat, "log-format", "json", "json or text")
	fl.BoolVar(&worker, "worker", true, "run the consumer, worker, sweeper and reconciler")
	fl.BoolVar(&relay, "relay", true, "run the outbox relay")
	fl.BoolVar(&httpOn, "http", true, "serve the HTTP API and PG webhooks")
	fl.StringVar(&group, "group-id", env("PAYFLOW_GROUP_ID", kafkaconf.DefaultGroup), "consumer group of the workers (PAYFLOW_GROUP_ID)")
	fl.BoolVar(&createTopics, "create-topics", true, "create missing topics at start (needs the Create ACL); off: only check that they exist")
	fl.BoolVar(&migrate, "migrate", true, "apply the schema at start (needs DDL privileges); off: run `payflow migrate` as a job with each release")
	fl.IntVar(&partitions, "partitions", 12, "partitions of topics payflow creates when missing")
	fl.IntVar(&maxInFlight, "max-in-flight", 512, "requests handled at once (different charges run concurrently)")
	fl.DurationVar(&retryBudget, "pg-retry-budget", 30*time.Second, "how long one PG operation is retried")
	fl.DurationVar(&lease, "lease", 2*time.Minute, "how long a worker holds a charge it is placing (must be longer than --pg-retry-budget plus two --pg-timeout)")
	fl.DurationVar(&pgTimeout, "pg-timeout", pgclient.DefaultTimeout, "timeout of one PG call, including reading its answer (a call that runs out of time has an unknown outcome)")
	fl.DurationVar(&sweep, "sweep-interval", 5*time.Second, "how often charges and refunds left by a dead worker are looked for")
	fl.DurationVar(&reconcileAge, "reconcile-age", 5*time.Minute, "how long a placed bill waits for its webhook before the PG is asked")
	fl.DurationVar(&reconcile, "reconcile-interval", 30*time.Second, "how often waiting bills are reconciled")
	fl.DurationVar(&sessionTimeout, "session-timeout", 10*time.Second, "consumer-group session timeout: how soon a dead worker's partitions move")
	return cmd
}

// checkLease refuses a lease that could expire while its holder still talks
// to the PG. The last step of a drive may start just before the retry budget
// ends, and one step is a lookup plus a call, each bounded by the PG timeout:
// a lease no longer than budget + 2 × timeout lets a second worker drive the
// same charge.
func checkLease(lease, retryBudget, pgTimeout time.Duration) error {
	if lease <= 0 || retryBudget <= 0 || pgTimeout <= 0 {
		return usagef("--lease (%s), --pg-retry-budget (%s) and --pg-timeout (%s) must all be positive", lease, retryBudget, pgTimeout)
	}
	if need := retryBudget + 2*pgTimeout; lease <= need {
		return usagef("--lease (%s) must be longer than --pg-retry-budget (%s) plus two --pg-timeout (2 × %s) = %s: "+
			"one step of a drive is a PG lookup plus a call, and a lease that ends while its worker still calls lets another worker in; "+
			"raise --lease or lower the others", lease, retryBudget, pgTimeout, need)
	}
	return nil
}

func migrateCmd() *cobra.Command {
	var (
		dsn string
		db  dbFlags
	)
	cmd := &cobra.Command{
		Use:   "migrate",
		Short: "Apply payflow's schema migrations to DATABASE_URL",
		RunE: func(cmd *cobra.Command, _ []string) error {
			fromEnv(cmd.Flags(), "database-url", "DATABASE_URL", &dsn)
			if dsn == "" {
				return usagef("migrate needs DATABASE_URL or --database-url")
			}
			opts, err := db.options(cmd.Flags(), false)
			if err != nil {
				return err
			}
			if err := store.MigrateWith(cmd.Context(), dsn, opts); err != nil {
				return err
			}
			cmd.Println("schema is up to date")
			return nil
		},
	}
	cmd.Flags().StringVar(&dsn, "database-url", "", "Postgres connection string (default $DATABASE_URL)")
	addDBFlags(cmd.Flags(), &db, false)
	return cmd
}

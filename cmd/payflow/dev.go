//go:build !production

package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/payflow/payflow/api"
	"github.com/payflow/payflow/app"
	"github.com/payflow/payflow/devenv"
	"github.com/payflow/payflow/pgclient"
	"github.com/payflow/payflow/pgclient/payssam"
	"github.com/payflow/payflow/pgclient/pgsim"
	"github.com/payflow/payflow/reqsig"
	"github.com/payflow/payflow/stdwebhook"
	"github.com/payflow/payflow/store"
	"github.com/payflow/payflow/vault"
)

// devFlags are the fixed addresses of `dev` (and `demo`, `bench`).
type devFlags struct {
	// provider is the PG payflow speaks to the simulator with: sim or
	// payssam (PAYFLOW_PG_PROVIDER / --pg-provider).
	provider                       string
	kafkaAddr, httpAddr, pgsimAddr string
	pgLatency                      time.Duration
	kakaoPayDelay, settleDelay     time.Duration
	// db tunes payflow's pool: bench keeps a full one, as serve does.
	db store.Options
}

func (f *devFlags) register(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.provider, "pg-provider", env("PAYFLOW_PG_PROVIDER", providerSim), "the PG protocol: sim, or payssam (the PaySSam adapter against the simulator in PaySSam mode)")
	cmd.Flags().StringVar(&f.kafkaAddr, "kafka-addr", "127.0.0.1:9092", "address of the embedded Kafka broker")
	cmd.Flags().StringVar(&f.httpAddr, "http-addr", env("PAYFLOW_HTTP_ADDR", "127.0.0.1:8080"), "address of payflow's HTTP API")
	cmd.Flags().StringVar(&f.pgsimAddr, "pgsim-addr", "127.0.0.1:8090", "address of the PG simulator")
	cmd.Flags().DurationVar(&f.pgLatency, "pg-latency", 50*time.Millisecond, "the PG simulator's latency per call")
	cmd.Flags().DurationVar(&f.kakaoPayDelay, "kakao-pay-delay", 2*time.Second, "when the simulated customer pays a KakaoTalk bill (0: never)")
	cmd.Flags().DurationVar(&f.settleDelay, "settle-delay", 500*time.Millisecond, "when the simulator settles an accepted auto-pay")
}

// devEnv is a running dev stack.
type devEnv struct {
	Kafka          string
	HTTP           string
	PGSim          string
	DatabaseURL    string
	PlatformToken  string
	MerchantTokens map[string]string
	// Provider is the PG protocol in use: sim or payssam.
	Provider string
	Sim      *pgsim.Sim
	secrets  secrets
	done     chan error
	closers  []func()
}

func (d *devEnv) Close() {
	for i := len(d.closers) - 1; i >= 0; i-- {
		d.closers[i]()
	}
}

// Wait returns when payflow stopped.
func (d *devEnv) Wait() error { return <-d.done }

// secretsFromEnv takes each secret from the environment, generating (and
// reporting) the missing ones.
type secrets struct {
	webhook, vaultKey, platform, merchants string
	generated                              []string
}

func loadSecrets() (secrets, error) {
	s := secrets{
		webhook: os.Getenv("PAYFLOW_PG_WEBHOOK_SECRET"), vaultKey: os.Getenv("PAYFLOW_VAULT_KEY"),
		platform: os.Getenv("PAYFLOW_API_TOKEN"), merchants: os.Getenv("PAYFLOW_MERCHANT_TOKENS"),
	}
	if s.webhook == "" {
		s.webhook = stdwebhook.NewSecret()
		s.generated = append(s.generated, "PAYFLOW_PG_WEBHOOK_SECRET="+s.webhook)
	}
	if s.vaultKey == "" {
		s.vaultKey = vault.GenerateKey()
		s.generated = append(s.generated, "PAYFLOW_VAULT_KEY="+s.vaultKey)
	}
	if s.platform == "" {
		s.platform = "pt_" + randomHex(16)
		s.generated = append(s.generated, "PAYFLOW_API_TOKEN="+s.platform)
	}
	if s.merchants == "" {
		s.merchants = "demo-merchant:mt_" + randomHex(16)
		s.generated = append(s.generated, "PAYFLOW_MERCHANT_TOKENS="+s.merchants)
	}
	return s, nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// startDev starts broker, database, simulator and payflow, and returns once
// payflow reports ready.
func startDev(ctx context.Context, f devFlags, log *slog.Logger, out io.Writer) (*devEnv, error) {
	return startDevWith(ctx, f, log, out, 0)
}

// startDevWith is startDev with payflow's in-flight bound (0: default) and
// the roles it runs in this process (zero: all).
func startDevWith(ctx context.Context, f devFlags, log *slog.Logger, out io.Writer, maxInFlight int, roles ...app.Roles) (*devEnv, error) {
	var r app.Roles
	if len(roles) > 0 {
		r = roles[0]
	}
	sec, err := loadSecrets()
	if err != nil {
		return nil, err
	}
	merchants, err := api.ParseMerchantTokens(sec.merchants)
	if err != nil {
		return nil, err
	}
	// Never generated: signed requests are off unless the environment
	// turns them on, since the demo's requests are not signed.
	keys, err := reqsig.ParseKeys(os.Getenv(reqsig.EnvVar))
	if err != nil {
		return nil, usagef("%v", err)
	}
	pgf := pgFlags{provider: f.provider}
	usePaySSam, err := pgf.usesPaySSam()
	if err != nil {
		return nil, err
	}
	d := &devEnv{PlatformToken: sec.platform, MerchantTokens: merchants, done: make(chan error, 1), secrets: sec}
	fail := func(err error) (*devEnv, error) { d.Close(); return nil, err }

	k, err := devenv.StartKafka(f.kafkaAddr)
	if err != nil {
		return fail(err)
	}
	d.closers = append(d.closers, k.Close)
	d.Kafka = k.Addr()

	pg, err := devenv.StartPostgres(ctx, log)
	if err != nil {
		return fail(err)
	}
	d.closers = append(d.closers, pg.Close)
	d.DatabaseURL = pg.DSN()

	httpLn, err := net.Listen("tcp", f.httpAddr)
	if err != nil {
		return fail(fmt.Errorf("listen %s: %w", f.httpAddr, err))
	}
	simLn, err := net.Listen("tcp", f.pgsimAddr)
	if err != nil {
		httpLn.Close()
		return fail(fmt.Errorf("listen %s: %w", f.pgsimAddr, err))
	}
	d.HTTP, d.PGSim = "http://"+httpLn.Addr().String(), "http://"+simLn.Addr().String()

	if _, err := stdwebhook.ParseSecrets(sec.webhook); err != nil {
		return fail(err)
	}
	simCfg := pgsim.Config{
		Latency: f.pgLatency, CallbackURL: d.HTTP + "/webhooks/pg/sim", WebhookSecret: firstField(sec.webhook),
		SettleDelay: f.settleDelay, KakaoPayDelay: f.kakaoPayDelay, PublicURL: d.PGSim, Logger: log.With("part", "pgsim"),
	}
	var pgc pgclient.Client = pgclient.NewHTTPClient(d.PGSim)
	var ps *app.PaySSamConfig
	d.Provider = providerSim
	if usePaySSam {
		d.Provider = providerPaySSam
		if ps, err = devPaySSam(&sec, merchants, d.PGSim, d.HTTP); err != nil {
			return fail(err)
		}
		simCfg.Protocol, simCfg.CallbackURL = pgsim.ProtocolPaySSam, d.HTTP+"/webhooks/pg/payssam"
		simCfg.APIKey, simCfg.PaySSamMember = ps.Adapter.APIKey, ps.Adapter.Member
		for _, code := range ps.Adapter.Merchants {
			simCfg.PaySSamStores = append(simCfg.PaySSamStores, code)
		}
		pgc = nil
	}
	sim, err := pgsim.New(simCfg)
	if err != nil {
		return fail(err)
	}
	d.Sim = sim
	simSrv := &http.Server{Handler: sim.Handler(), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = simSrv.Serve(simLn) }()
	d.closers = append(d.closers, func() { _ = simSrv.Close(); sim.Close() })

	ready := make(chan struct{})
	runCtx, stop := context.WithCancel(ctx)
	d.closers = append(d.closers, func() { stop(); <-d.done; d.done <- nil })
	go func() {
		d.done <- app.Run(runCtx, app.Config{
			Brokers: []string{d.Kafka}, DatabaseURL: d.DatabaseURL, DB: f.db, PG: pgc, PaySSam: ps,
			HTTPListener: httpLn, WebhookSecrets: sec.webhook, VaultKey: sec.vaultKey,
			PlatformToken: sec.platform, MerchantTokens: merchants, RequestKeys: keys, Logger: log,
			SweepInterval: 2 * time.Second, ReconcileAge: 30 * time.Second, ReconcileInterval: 5 * time.Second,
			MaxInFlight: maxInFlight, Roles: r,
			Ready: func() { close(ready) },
		})
	}()
	select {
	case <-ready:
	case err := <-d.done:
		d.done <- err
		if err == nil {
			err = errors.New("payflow stopped before it was ready")
		}
		return fail(err)
	case <-ctx.Done():
		return fail(ctx.Err())
	}
	fmt.Fprintf(out, "payflow dev is ready\n")
	fmt.Fprintf(out, "  kafka bootstrap   %s   (topics payment.requests, payment.events, payment.requests.dlq)\n", d.Kafka)
	fmt.Fprintf(out, "  http api          %s\n", d.HTTP)
	fmt.Fprintf(out, "  pg simulator      %s   (ledger: %s/sim/ledger)\n", d.PGSim, d.PGSim)
	fmt.Fprintf(out, "  pg provider       %s\n", d.Provider)
	fmt.Fprintf(out, "  webhook url       %s/webhooks/pg/%s\n", d.HTTP, d.Provider)
	fmt.Fprintf(out, "  platform token    %s\n", sec.platform)
	for m, t := range merchants {
		fmt.Fprintf(out, "  merchant token    %s  (merchant %s)\n", t, m)
	}
	for _, g := range sec.generated {
		fmt.Fprintf(out, "  generated         %s\n", g)
	}
	return d, nil
}

// devPaySSam is PaySSam's configuration in dev: values given in the
// environment are used as they are, missing ones are generated (and
// reported in sec) to fit the simulator at simURL, with a store code for
// every merchant that has a token.
func devPaySSam(sec *secrets, merchants map[string]string, simURL, httpURL string) (*app.PaySSamConfig, error) {
	f := pgFlags{provider: providerPaySSam, psURL: os.Getenv("PAYFLOW_PAYSSAM_URL"), psMember: os.Getenv("PAYFLOW_PAYSSAM_MEMBER"),
		psMerchants: os.Getenv("PAYFLOW_PAYSSAM_MERCHANTS"), psCallbackURL: os.Getenv("PAYFLOW_PAYSSAM_CALLBACK_URL"),
		psAllowFrom: os.Getenv("PAYFLOW_PAYSSAM_ALLOW_FROM"), psBillValidity: payssam.DefaultBillValidity}
	key := os.Getenv("PAYFLOW_PAYSSAM_API_KEY")
	gen := func(name string, v *string, value string) {
		if *v == "" {
			*v = value
			sec.generated = append(sec.generated, name+"="+value)
		}
	}
	gen("PAYFLOW_PAYSSAM_API_KEY", &key, "ps_"+randomHex(12))
	gen("PAYFLOW_PAYSSAM_MEMBER", &f.psMember, "payflowdev")
	gen("PAYFLOW_PAYSSAM_URL", &f.psURL, simURL)
	gen("PAYFLOW_PAYSSAM_CALLBACK_URL", &f.psCallbackURL, httpURL+"/webhooks/pg/payssam")
	if f.psMerchants == "" {
		ids := make([]string, 0, len(merchants))
		for m := range merchants {
			ids = append(ids, m)
		}
		sort.Strings(ids)
		var pairs []string
		for i, m := range ids {
			pairs = append(pairs, fmt.Sprintf("%s:DEVSTORE%d", m, i+1))
		}
		gen("PAYFLOW_PAYSSAM_MERCHANTS", &f.psMerchants, strings.Join(pairs, ","))
	}
	return f.paySSam(key, 0)
}

func firstField(s string) string {
	for i, c := range s {
		if c == ' ' || c == ',' {
			return s[:i]
		}
	}
	return s
}

func devCmd() *cobra.Command {
	var f devFlags
	var logFormat, only string
	cmd := &cobra.Command{
		Use:   "dev",
		Short: "Run everything in one process: embedded Kafka, Postgres, PG simulator and payflow",
		Long: `Runs everything in one process: an embedded Kafka-protocol broker, Postgres
(DATABASE_URL, else a throwaway server), the PG simulator and payflow.

--only broker runs the embedded broker alone, on --kafka-addr, for a stack of
separate processes (payflow serve, payflow pgsim, payflow bench --brokers). It
creates no topic: serve creates payflow's topics at start, as on a production
cluster.`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if cmd.Flags().Changed("only") {
				if err := onlyBroker(cmd.Flags(), only); err != nil {
					return err
				}
				return runBroker(cmd.Context(), f.kafkaAddr, cmd.OutOrStdout())
			}
			log := newLogger(logFormat, slog.LevelInfo)
			d, err := startDev(cmd.Context(), f, log, cmd.OutOrStdout())
			if err != nil {
				return err
			}
			defer d.Close()
			<-cmd.Context().Done()
			return nil
		},
	}
	f.register(cmd)
	cmd.Flags().StringVar(&logFormat, "log-format", "text", "text or json")
	cmd.Flags().StringVar(&only, "only", "", "run one part alone: broker (the embedded Kafka broker on --kafka-addr)")
	return cmd
}

// onlyBroker checks `dev --only` up front: broker is the one part dev runs
// alone, and with it no flag of the other parts applies.
func onlyBroker(fl *pflag.FlagSet, only string) error {
	if only != "broker" {
		return usagef("--only %q: the one part dev runs alone is broker", only)
	}
	var others []string
	fl.Visit(func(f *pflag.Flag) {
		if f.Name != "only" && f.Name != "kafka-addr" {
			others = append(others, "--"+f.Name)
		}
	})
	if len(others) > 0 {
		return usagef("dev --only broker runs the broker alone: %s would configure parts it does not run", strings.Join(others, ", "))
	}
	return nil
}

// runBroker runs the embedded broker alone until ctx ends.
func runBroker(ctx context.Context, addr string, out io.Writer) error {
	k, err := devenv.StartKafka(addr)
	if err != nil {
		return err
	}
	defer k.Close()
	fmt.Fprintf(out, "payflow dev: the embedded broker is ready (no topics yet: payflow serve creates them)\n")
	fmt.Fprintf(out, "  kafka bootstrap   %s\n", k.Addr())
	<-ctx.Done()
	return nil
}

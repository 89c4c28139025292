//go:build !production

package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/payflow/payflow/app"
	"github.com/payflow/payflow/bench"
	"github.com/payflow/payflow/kafkaconf"
	"github.com/payflow/payflow/store"
)

func benchCmd() *cobra.Command {
	w := bench.W1
	// payflow's pool is full from the start, as serve's is with the worker.
	f := devFlags{kafkaAddr: "127.0.0.1:0", httpAddr: "127.0.0.1:0", pgsimAddr: "127.0.0.1:0", settleDelay: time.Hour,
		db: store.Options{MinConns: store.FullPool}}
	var maxInFlight int
	var cpuProfile, report string
	var workerProcess bool
	var ext externalTarget
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Run the load benchmark (workload W1 by default; see docs/benchmarks.md)",
		Long: `Runs payflow self-contained (embedded broker, Postgres from DATABASE_URL or a
throwaway server, the PG simulator over loopback HTTP), publishes the workload
through Kafka, waits for every result on payment.events and reports throughput,
latency percentiles, relay lag, peak RSS, duplicates and missing results, and
the Postgres ceiling measured in the same run.

With --brokers, bench starts nothing and drives a payflow that is already
running (payflow serve, with payflow dev --only broker and payflow pgsim as
processes of their own): it publishes to --brokers, registers the members
through the API at --api-url with the platform token in PAYFLOW_API_TOKEN,
reads relay lag and batch sizes from --metrics-url, and counts commits,
measures the ceiling and checks the invariants in DATABASE_URL, the database
that payflow uses, with the ledger of the simulator at --pg-url. It reaches
the brokers as serve does: TLS, SASL and topic names from the same
PAYFLOW_KAFKA_* and PAYFLOW_TOPIC_* variables or the --kafka-* and --topic-*
flags.`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ext.databaseURL, ext.token = os.Getenv("DATABASE_URL"), os.Getenv("PAYFLOW_API_TOKEN")
			if err := ext.validate(cmd.Flags(), w); err != nil {
				return err
			}
			defer ext.dial.Close()
			out := cmd.OutOrStdout()
			ctx := cmd.Context()
			if cpuProfile != "" {
				pf, err := os.Create(cpuProfile)
				if err != nil {
					return err
				}
				defer pf.Close()
				if err := pprof.StartCPUProfile(pf); err != nil {
					return err
				}
				defer pprof.StopCPUProfile()
			}
			host, _ := os.Hostname()
			members := fmt.Sprintf("%d charges, %d customers (%.0f%% members with a method)", w.Charges, w.Customers, 100*w.MemberRate)
			var (
				t     bench.Target
				pgURL string
				setup string
				child *exec.Cmd
			)
			if ext.on() {
				t, pgURL = ext.target(), ext.pgURL
				setup = fmt.Sprintf("payflow bench: %s, against the running payflow at %s (brokers %s, PG simulator %s), host %s",
					members, ext.apiURL, ext.brokers, ext.pgURL, host)
			} else {
				var roles app.Roles
				if workerProcess {
					roles = app.Roles{HTTP: true} // the worker and relay run in the child below
					f.db = store.Options{}        // as serve without the worker: a pool on demand
				}
				d, err := startDevWith(ctx, f, newLogger("text", slog.LevelWarn), io.Discard, maxInFlight, roles)
				if err != nil {
					return err
				}
				defer d.Close()
				metrics := d.HTTP + "/metrics"
				if workerProcess {
					if child, metrics, err = startWorkerProcess(ctx, d, maxInFlight); err != nil {
						return err
					}
					defer func() { _ = child.Process.Signal(syscall.SIGTERM); _ = child.Wait() }()
				}
				mode := "one process"
				if workerProcess {
					mode = "worker and relay in their own serve process"
				}
				setup = fmt.Sprintf("payflow bench: %s, PG latency %s, max in flight %d, %s, host %s",
					members, f.pgLatency, maxInFlight, mode, host)
				t = bench.Target{
					Brokers: []string{d.Kafka}, DatabaseURL: d.DatabaseURL, MetricsURL: metrics,
					RegisterMember: func(ctx context.Context, member string) error {
						return registerMethod(ctx, d.HTTP, d.PlatformToken, member, "bk_bench_"+member)
					},
				}
				pgURL = d.PGSim
			}
			fmt.Fprintln(out, setup)
			rep, err := bench.Run(ctx, t, w, out)
			if err != nil {
				return err
			}
			switch {
			case child != nil:
				rep.PeakRSSMB, rep.RSSOf = procPeakRSSMB(child.Process.Pid), "the payflow serve process running worker and relay"
			case ext.on():
				rep.RSSOf = "this bench process alone, producer and result consumer; payflow's own is not measured"
			}
			rep.Print(out)
			if report != "" {
				rep.Setup = setup + ", " + time.Now().UTC().Format("2006-01-02 15:04 MST")
				if err := writeReport(report, rep); err != nil {
					return err
				}
				fmt.Fprintf(out, "report            %s\n", report)
			}
			inv, err := runCheck(ctx, kafkaSource{brokers: t.Brokers, dial: t.Dial, topics: t.Topics}, t.DatabaseURL, pgURL, false)
			if err != nil {
				return err
			}
			printCheck(out, inv)
			if rep.Missing > 0 || rep.Duplicates > 0 || !inv.OK() {
				return fmt.Errorf("bench: %d missing, %d duplicate results, %d invariant violations", rep.Missing, rep.Duplicates, len(inv.Violations))
			}
			return nil
		},
	}
	fl := cmd.Flags()
	fl.IntVar(&w.Charges, "charges", w.Charges, "charge events to publish")
	fl.IntVar(&w.Customers, "customers", w.Customers, "distinct customers")
	fl.Float64Var(&w.MemberRate, "member-rate", w.MemberRate, "share of customers who are members with a stored method")
	fl.DurationVar(&w.Timeout, "timeout", w.Timeout, "give up waiting for results after this long")
	fl.IntVar(&w.CeilingClients, "ceiling-clients", w.CeilingClients, "clients of the Postgres ceiling loop (0 skips it)")
	fl.DurationVar(&w.CeilingDuration, "ceiling-duration", w.CeilingDuration, "how long the ceiling loop runs")
	fl.DurationVar(&f.pgLatency, "pg-latency", 50*time.Millisecond, "the PG simulator's latency per call")
	fl.IntVar(&maxInFlight, "max-in-flight", 512, "requests payflow handles at once")
	fl.Float64Var(&w.Rate, "rate", 0, "publish at this many charges per second (0: all at once)")
	fl.StringVar(&cpuProfile, "cpuprofile", "", "write a CPU profile of the whole process to this file")
	fl.StringVar(&report, "report", "", "write the run as a self-contained HTML page with charts to this file")
	fl.BoolVar(&workerProcess, "worker-process", false, "run payflow's worker and relay as a separate `payflow serve` process, to measure its own RSS")
	fl.StringVar(&ext.brokers, "brokers", "", "drive the payflow already running on these Kafka brokers (comma separated) and start nothing")
	fl.StringVar(&ext.apiURL, "api-url", "", "with --brokers: base URL of that payflow's HTTP API, where members are registered (with PAYFLOW_API_TOKEN)")
	fl.StringVar(&ext.metricsURL, "metrics-url", "", "with --brokers: that payflow's Prometheus metrics, for relay lag and batch sizes (default: --api-url + /metrics)")
	fl.StringVar(&ext.pgURL, "pg-url", os.Getenv("PAYFLOW_PG_URL"), "with --brokers: the PG simulator that payflow talks to, whose ledger the invariant check reads (PAYFLOW_PG_URL)")
	addKafkaConnFlags(fl, &ext.kafka) // with --brokers: how to reach them and the topics
	return cmd
}

// externalTarget is a payflow that bench did not start: its brokers, API
// and metrics, the PG simulator it talks to, and its database.
type externalTarget struct {
	brokers, apiURL, metricsURL, pgURL string
	kafka                              kafkaFlags // TLS, SASL and topics of the brokers
	databaseURL                        string     // DATABASE_URL
	token                              string     // PAYFLOW_API_TOKEN, the platform token

	dial   *kafkaconf.Dial // from kafka, by validate
	topics kafkaconf.Topics
}

func (e *externalTarget) on() bool { return e.brokers != "" }

// selfOnly are the flags that configure the stack bench starts itself.
var selfOnly = []string{"pg-latency", "max-in-flight", "worker-process"}

// validate checks bench's target before anything starts: the flags of the
// external mode only with --brokers, and with it everything that mode needs
// and nothing that configures a stack it does not start. It fills in the
// default metrics URL.
func (e *externalTarget) validate(fl *pflag.FlagSet, w bench.Workload) error {
	if !e.on() {
		for _, name := range append([]string{"brokers", "api-url", "metrics-url", "pg-url"}, kafkaConnFlags...) {
			if fl.Changed(name) {
				return usagef("--%s targets a running payflow: give its brokers with a non-empty --brokers too", name)
			}
		}
		return nil
	}
	for _, name := range selfOnly {
		if fl.Changed(name) {
			return usagef("--%s configures the stack bench starts itself; with --brokers set it on the running payflow or simulator", name)
		}
	}
	if len(splitList(e.brokers)) == 0 {
		return usagef("--brokers %q names no broker", e.brokers)
	}
	sec, topics, err := e.kafka.settings()
	if err != nil {
		return err
	}
	if e.dial, err = sec.Dial(); err != nil {
		return usagef("%v", err)
	}
	e.topics = topics
	if e.databaseURL == "" {
		return usagef("bench --brokers needs DATABASE_URL, the database of the payflow under test: its commits are counted, its ceiling measured and its invariants checked")
	}
	if e.pgURL == "" {
		return usagef("bench --brokers needs --pg-url (PAYFLOW_PG_URL), the PG simulator that payflow talks to: the invariant check reads its ledger")
	}
	if members := int(float64(w.Customers) * w.MemberRate); members > 0 && e.apiURL == "" {
		return usagef("bench --brokers needs --api-url to register its %d members through payflow's API (or --member-rate 0)", members)
	}
	if e.apiURL != "" && e.token == "" {
		return usagef("--api-url needs PAYFLOW_API_TOKEN, the platform token of the payflow under test, to register members")
	}
	e.apiURL = strings.TrimRight(e.apiURL, "/")
	if !fl.Changed("metrics-url") && e.apiURL != "" {
		e.metricsURL = e.apiURL + "/metrics"
	}
	for name, u := range map[string]string{"api-url": e.apiURL, "metrics-url": e.metricsURL, "pg-url": e.pgURL} {
		if u == "" {
			continue
		}
		if p, err := url.Parse(u); err != nil || (p.Scheme != "http" && p.Scheme != "https") || p.Host == "" {
			return usagef("--%s %q: want an http or https URL with a host", name, u)
		}
	}
	return nil
}

// target is the external payflow as bench drives it.
func (e *externalTarget) target() bench.Target {
	return bench.Target{
		Brokers: splitList(e.brokers), Dial: e.dial, Topics: e.topics, DatabaseURL: e.databaseURL, MetricsURL: e.metricsURL,
		RegisterMember: func(ctx context.Context, member string) error {
			return registerMethod(ctx, e.apiURL, e.token, member, "bk_bench_"+member)
		},
	}
}

// startWorkerProcess runs `payflow serve` (worker and relay, and HTTP on a
// loopback port of its own for their /metrics) against the dev stack, as a
// deployment would, and returns once it is ready, with its metrics URL.
func startWorkerProcess(ctx context.Context, d *devEnv, maxInFlight int) (*exec.Cmd, string, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, "", err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, "", err
	}
	addr := ln.Addr().String()
	ln.Close()
	cmd := exec.Command(self, workerProcessArgs(d, maxInFlight, addr)...)
	cmd.Env = append(os.Environ(), "PAYFLOW_VAULT_KEY="+d.secrets.vaultKey, "PAYFLOW_PG_WEBHOOK_SECRET="+d.secrets.webhook)
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		return nil, "", err
	}
	base := "http://" + addr
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(100 * time.Millisecond) {
		if resp, err := http.Get(base + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return cmd, base + "/metrics", nil
			}
		}
		if ctx.Err() != nil || time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			return nil, "", fmt.Errorf("bench: the worker process was not ready at %s within a minute", base)
		}
	}
}

// workerProcessArgs are the arguments of the worker process. It serves
// HTTP, on httpAddr, for its /metrics: the relay's lag and the group
// commit's batches are measured where the relay and the worker run.
func workerProcessArgs(d *devEnv, maxInFlight int, httpAddr string) []string {
	return []string{"serve", "--http-addr", httpAddr, "--brokers", d.Kafka, "--database-url", d.DatabaseURL,
		"--pg-url", d.PGSim, "--max-in-flight", strconv.Itoa(maxInFlight), "--log-format", "text"}
}

func writeReport(path string, rep bench.Report) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := rep.WriteHTML(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// procPeakRSSMB is a process's peak resident set (VmHWM).
func procPeakRSSMB(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmHWM:" {
			kb, _ := strconv.ParseFloat(f[1], 64)
			return kb / 1024
		}
	}
	return 0
}

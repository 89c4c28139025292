//go:build !production

package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/payflow/payflow/app"
	"github.com/payflow/payflow/bench"
)

func benchCmd() *cobra.Command {
	w := bench.W1
	f := devFlags{kafkaAddr: "127.0.0.1:0", httpAddr: "127.0.0.1:0", pgsimAddr: "127.0.0.1:0", settleDelay: time.Hour}
	var maxInFlight int
	var cpuProfile, report string
	var workerProcess bool
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Run the load benchmark (workload W1 by default; see docs/benchmarks.md)",
		Long: `Runs payflow self-contained (embedded broker, Postgres from DATABASE_URL or a
throwaway server, the PG simulator over loopback HTTP), publishes the workload
through Kafka, waits for every result on payment.events and reports throughput,
latency percentiles, relay lag, peak RSS, duplicates and missing results, and
the Postgres ceiling measured in the same run.`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			out := cmd.OutOrStdout()
			log := newLogger("text", slog.LevelWarn)
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
			var roles app.Roles
			if workerProcess {
				roles = app.Roles{HTTP: true} // the worker and relay run in the child below
			}
			d, err := startDevWith(ctx, f, log, io.Discard, maxInFlight, roles)
			if err != nil {
				return err
			}
			defer d.Close()
			var child *exec.Cmd
			metrics := d.HTTP + "/metrics"
			if workerProcess {
				if child, metrics, err = startWorkerProcess(ctx, d, maxInFlight); err != nil {
					return err
				}
				defer func() { _ = child.Process.Signal(syscall.SIGTERM); _ = child.Wait() }()
			}
			host, _ := os.Hostname()
			mode := "one process"
			if workerProcess {
				mode = "worker and relay in their own serve process"
			}
			setup := fmt.Sprintf("payflow bench: %d charges, %d customers (%.0f%% members with a method), PG latency %s, max in flight %d, %s, host %s",
				w.Charges, w.Customers, 100*w.MemberRate, f.pgLatency, maxInFlight, mode, host)
			fmt.Fprintln(out, setup)
			rep, err := bench.Run(ctx, bench.Target{
				Brokers: []string{d.Kafka}, DatabaseURL: d.DatabaseURL, MetricsURL: metrics,
				RegisterMember: func(ctx context.Context, member string) error {
					return registerMethod(ctx, d, member, "bk_bench_"+member)
				},
			}, w, out)
			if err != nil {
				return err
			}
			if child != nil {
				rep.PeakRSSMB, rep.RSSOf = procPeakRSSMB(child.Process.Pid), "the payflow serve process running worker and relay"
			}
			rep.Print(out)
			if report != "" {
				rep.Setup = setup + ", " + time.Now().UTC().Format("2006-01-02 15:04 MST")
				if err := writeReport(report, rep); err != nil {
					return err
				}
				fmt.Fprintf(out, "report            %s\n", report)
			}
			inv, err := runCheck(ctx, kafkaSource{brokers: []string{d.Kafka}}, d.DatabaseURL, d.PGSim, false)
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
	return cmd
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

//go:build !production

package main

import (
	"fmt"
	"io"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/payflow/payflow/devenv"
	"github.com/payflow/payflow/internal/mutation"
	"github.com/payflow/payflow/sim"
)

func simCmd() *cobra.Command {
	var (
		seed, first   uint64
		seeds, steps  int
		trace, shrink bool
		mutate        string
		cfg           sim.Config
		progressEvery time.Duration
	)
	cmd := &cobra.Command{
		Use:   "sim",
		Short: "Explore the money path with the seeded simulation (see docs/reliability.md)",
		Long: `Runs the real worker and store on a Postgres database of its own (created on
the server DATABASE_URL names, else on a throwaway server, and dropped after),
with the PG, Kafka's delivery and time simulated, and checks the money model
after every step. A failure prints its seed, the broken invariants and the
whole schedule; --seed N --trace replays that seed step by step.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			out := cmd.OutOrStdout()
			ctx := cmd.Context()
			if cmd.Flags().Changed("seed") {
				first, seeds = seed, 1
			}
			if seeds < 1 || steps < 1 {
				return usagef("--seeds and --steps must be at least 1")
			}
			if err := mutation.Set(mutate); err != nil {
				return usagef("--mutation: %v", err)
			}
			pg, err := devenv.StartPostgres(ctx, slog.New(slog.NewTextHandler(io.Discard, nil)))
			if err != nil {
				return err
			}
			defer pg.Close()
			dsn, drop, err := sim.NewDatabase(ctx, pg.DSN())
			if err != nil {
				return err
			}
			defer drop()
			cfg.DSN, cfg.Steps = dsn, steps
			if trace {
				cfg.Trace = out
			}
			totals := map[string]int{}
			start, last := time.Now(), time.Now()
			done, totalSteps := 0, 0
			for s := first; s < first+uint64(seeds); s++ {
				if ctx.Err() != nil {
					break
				}
				cfg.Seed = s
				res, err := sim.Run(ctx, cfg)
				if err != nil {
					return err
				}
				done++
				totalSteps += res.Steps
				for k, n := range res.Stats {
					totals[k] += n
				}
				if !res.OK() {
					runSteps := steps
					if shrink {
						c := cfg
						c.Trace = nil
						if short, n, err := sim.Shrink(ctx, c, res); err == nil && n < steps {
							fmt.Fprintf(out, "shrunk: seed %d fails with %d steps before the drain (was %d)\n", s, n, steps)
							res, runSteps = short, n
						}
					}
					fmt.Fprintf(out, "seed %d broke the money model after step %d:\n  %s\n", s, res.Step, strings.Join(res.Violations, "\n  "))
					if !trace {
						fmt.Fprintf(out, "schedule:\n%s\n", strings.Join(res.Trace, "\n"))
					}
					fmt.Fprintf(out, "replay: payflow sim --seed %d --steps %d --trace\n", s, runSteps)
					return fmt.Errorf("seed %d failed", s)
				}
				if time.Since(last) >= progressEvery {
					last = time.Now()
					fmt.Fprintf(out, "%d/%d seeds clean, %.1f seeds/s, %d steps; %s\n", done, seeds,
						float64(done)/time.Since(start).Seconds(), totalSteps, faultSummary(totals))
				}
			}
			fmt.Fprintf(out, "%d seeds clean (%d..%d) in %s, %d steps; %s\n", done, first, first+uint64(done)-1,
				time.Since(start).Round(time.Millisecond), totalSteps, faultSummary(totals))
			return nil
		},
	}
	fl := cmd.Flags()
	fl.Uint64Var(&seed, "seed", 0, "run this one seed (replays it exactly)")
	fl.Uint64Var(&first, "first", 1, "the first seed of --seeds")
	fl.IntVar(&seeds, "seeds", 100, "how many seeds to run")
	fl.IntVar(&steps, "steps", 150, "steps with faults per seed, before the drain")
	fl.BoolVar(&trace, "trace", false, "print every step as it happens")
	fl.BoolVar(&shrink, "shrink", true, "on a failure, look for the fewest steps that still fail")
	fl.StringVar(&mutate, "mutation", "", "put a fixed bug back (a build with -tags mutation only; see docs/reliability.md)")
	// 0 leaves the shape to the seed: even seeds, which group commits,
	// run fewer processes with more partitions and charges.
	fl.IntVar(&cfg.Instances, "instances", 0, "worker processes in the consumer group (0: 3, or 2 in even seeds)")
	fl.IntVar(&cfg.Partitions, "partitions", 0, "partitions of the request topic (0: 4, or 8 in even seeds)")
	fl.IntVar(&cfg.Charges, "charges", 0, "charge ids per merchant, few so requests collide (0: 5, or 8 in even seeds)")
	fl.Float64Var(&cfg.FaultRate, "fault-rate", 0.3, "chance that a PG call meets a fault")
	fl.DurationVar(&progressEvery, "progress", 10*time.Second, "how often to print progress")
	return cmd
}

// faultSummary prints the faults and steps of a run by kind, sorted.
func faultSummary(m map[string]int) string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, fmt.Sprintf("%s=%d", k, m[k]))
	}
	return strings.Join(parts, " ")
}

package sim_test

import (
	"context"
	"flag"
	"strings"
	"testing"

	"github.com/payflow/payflow/internal/testdb"
	"github.com/payflow/payflow/sim"
	"github.com/payflow/payflow/store"
)

var (
	seeds = flag.Int("sim.seeds", 200, "how many seeds TestSeeds runs")
	first = flag.Uint64("sim.first", 1, "the first seed TestSeeds runs")
	steps = flag.Int("sim.steps", 150, "steps with faults per seed")
)

// TestSeeds runs a fixed range of seeds; a failure names its seed and
// prints the schedule, which `payflow sim --seed N --trace` replays.
func TestSeeds(t *testing.T) {
	dsn := testdb.NewDSN(t)
	ctx := context.Background()
	if err := store.Migrate(ctx, dsn); err != nil {
		t.Fatal(err)
	}
	faults := map[string]int{}
	for seed := *first; seed < *first+uint64(*seeds); seed++ {
		res, err := sim.Run(ctx, sim.Config{DSN: dsn, Seed: seed, Steps: *steps})
		if err != nil {
			t.Fatal(err)
		}
		for k, n := range res.Stats {
			faults[k] += n
		}
		if !res.OK() {
			t.Fatalf("seed %d broke the model after step %d:\n  %s\nschedule:\n%s", seed, res.Step,
				strings.Join(res.Violations, "\n  "), strings.Join(res.Trace, "\n"))
		}
	}
	t.Logf("%d seeds clean; %v", *seeds, faults)
	// A fault the run never injected is a fault it does not test: each
	// kind must have happened (with the default seeds, each many times).
	if *seeds >= 100 {
		for _, kind := range sim.FaultKinds {
			if faults[kind] == 0 {
				t.Errorf("no seed injected %s", kind)
			}
		}
	}
}

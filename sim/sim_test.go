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
	// Even seeds group claims and results: some flush must have carried
	// more than one, or the batched path went untested.
	if *seeds >= 10 && faults["group_flush"] == 0 {
		t.Errorf("no flush carried more than one claim or result")
	}
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

// TestReplay runs seeds twice: the same seed must tell the same story byte
// for byte, or a failure's trace could not be replayed. Seed 4 groups
// commits, shares flushes and breaks a connection under one; seed 3 does
// not group.
func TestReplay(t *testing.T) {
	dsn := testdb.NewDSN(t)
	ctx := context.Background()
	if err := store.Migrate(ctx, dsn); err != nil {
		t.Fatal(err)
	}
	for _, seed := range []uint64{4, 3} {
		var traces [2]string
		for i := range traces {
			res, err := sim.Run(ctx, sim.Config{DSN: dsn, Seed: seed, Steps: *steps})
			if err != nil {
				t.Fatal(err)
			}
			if !res.OK() {
				t.Fatalf("seed %d: %v", seed, res.Violations)
			}
			if seed == 4 && (res.Stats["group_flush"] == 0 || res.Stats["fault_batch_drop"] == 0) {
				t.Fatalf("seed %d no longer shares a flush and drops its connection: %v", seed, res.Stats)
			}
			traces[i] = strings.Join(res.Trace, "\n")
		}
		if traces[0] != traces[1] {
			a, b := strings.Split(traces[0], "\n"), strings.Split(traces[1], "\n")
			for i := range min(len(a), len(b)) {
				if a[i] != b[i] {
					t.Fatalf("seed %d: the replay differs at line %d:\n  %s\n  %s", seed, i+1, a[i], b[i])
				}
			}
			t.Fatalf("seed %d: the replay has %d lines, the run %d", seed, len(b), len(a))
		}
	}
}

package sim

import (
	"context"
	"fmt"
)

// Result is the outcome of one run.
type Result struct {
	Seed  uint64
	Steps int
	// Violations are the invariants broken; Step is the step after which
	// the first was seen (0 when none).
	Violations []string
	Step       int
	// Trace is every step of the run, one line each.
	Trace []string
	Stats map[string]int
}

// OK reports whether the run broke no invariant.
func (r Result) OK() bool { return len(r.Violations) == 0 }

// Run runs one seed: cfg.Steps steps with faults, each followed by the
// model's check, then the drain and the final check.
func Run(ctx context.Context, cfg Config) (Result, error) {
	w, err := New(ctx, cfg)
	if err != nil {
		return Result{}, err
	}
	defer w.Close()
	res := Result{Seed: w.cfg.Seed, Stats: w.Stats}
	fail := func(v []string) (Result, error) {
		res.Violations, res.Step, res.Steps, res.Trace = v, w.step, w.step, w.trace
		return res, nil
	}
	for range w.cfg.Steps {
		if err := w.Step(ctx); err != nil {
			return res, fmt.Errorf("sim: seed %d step %d: %w", w.cfg.Seed, w.step, err)
		}
		v, err := w.model.step(ctx)
		if err != nil {
			return res, fmt.Errorf("sim: seed %d step %d: check: %w", w.cfg.Seed, w.step, err)
		}
		if len(v) > 0 {
			return fail(v)
		}
	}
	rest, err := w.Drain(ctx)
	if err != nil {
		return res, fmt.Errorf("sim: seed %d: drain: %w", w.cfg.Seed, err)
	}
	if !rest || w.pg.runaway {
		_, why, _ := w.atRest(ctx)
		if w.pg.runaway {
			why = fmt.Sprintf("the PG was called more than %d times; a process calls without end", w.pg.maxCalls)
		}
		return fail([]string{"liveness: faults stopped, yet the world did not come to rest: " + why})
	}
	v, err := w.model.final(ctx)
	if err != nil {
		return res, fmt.Errorf("sim: seed %d: final check: %w", w.cfg.Seed, err)
	}
	if w.pg.runaway {
		v = append(v, fmt.Sprintf("liveness: the PG was called more than %d times; a process calls without end", w.pg.maxCalls))
	}
	if len(v) > 0 {
		return fail(v)
	}
	res.Steps, res.Trace = w.step, w.trace
	return res, nil
}

// Shrink looks for the shortest schedule of a failing seed: the same seed
// with fewer steps before the drain replays a prefix of the same schedule,
// so the smallest step count that still breaks the model is the shortest
// story of the bug. It returns that run and its step count (or the
// original, if none shorter fails).
func Shrink(ctx context.Context, cfg Config, failed Result) (Result, int, error) {
	best := failed
	lo, hi := 1, cfg.Steps // hi fails
	for lo < hi {
		mid := (lo + hi) / 2
		c := cfg
		c.Steps, c.Trace = mid, nil
		res, err := Run(ctx, c)
		if err != nil {
			return best, hi, err
		}
		if res.OK() {
			lo = mid + 1
		} else {
			hi, best = mid, res
		}
	}
	return best, hi, nil
}

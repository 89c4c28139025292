package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"golang.org/x/sync/errgroup"
)

// component is one named, long-running part of payflow (the consumer, the
// relay, the HTTP server, ...). run runs it until ctx ends and then
// returns nil; any other return, an error or nil before it was told to
// stop, is a failure that stops the whole process.
type component struct {
	name string
	run  func(ctx context.Context) error
}

// stage is components that start together and are told to stop together.
type stage []component

// errStoppedEarly is the failure of a component that returned before it
// was told to stop.
var errStoppedEarly = errors.New("stopped on its own")

// supervise runs every component of every stage until ctx ends or one
// fails, then stops the stages one after the other, in the order given: a
// stage is told to stop only once every component of the stages before it
// has returned. started, when set, is called once every component runs.
// It returns the first failure, naming its component, and nil when ctx
// ended and every component stopped cleanly.
func supervise(ctx context.Context, log *slog.Logger, started func(), stages ...stage) error {
	failed := make(chan error, 1) // the first failure; later ones are in the groups
	stops := make([]context.CancelFunc, len(stages))
	groups := make([]*errgroup.Group, len(stages))
	for i, s := range stages {
		// A stage's context keeps ctx's values, not its end: a stage stops
		// when its turn comes, not when ctx ends.
		sctx, stop := context.WithCancel(context.WithoutCancel(ctx))
		stops[i], groups[i] = stop, new(errgroup.Group)
		for _, c := range s {
			groups[i].Go(func() error {
				err := c.run(sctx)
				if err == nil && sctx.Err() == nil {
					err = errStoppedEarly
				}
				if err == nil {
					return nil
				}
				err = fmt.Errorf("app: %s: %w", c.name, err)
				select {
				case failed <- err:
				default:
				}
				return err
			})
		}
	}
	if started != nil {
		started()
	}

	var first error
	select {
	case <-ctx.Done():
	case first = <-failed:
		log.Error("payflow stopping on error", "err", first)
	}
	for i, stop := range stops {
		stop()
		if err := groups[i].Wait(); err != nil && err != first {
			log.Error("payflow part failed while stopping", "err", err)
			if first == nil {
				first = err
			}
		}
	}
	return first
}

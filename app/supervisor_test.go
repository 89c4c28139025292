package app

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"
)

// journal records what components did, in order.
type journal struct {
	mu     sync.Mutex
	events []string
}

func (j *journal) add(e string) { j.mu.Lock(); defer j.mu.Unlock(); j.events = append(j.events, e) }
func (j *journal) list() []string {
	j.mu.Lock()
	defer j.mu.Unlock()
	return slices.Clone(j.events)
}

// until runs until told to stop, takes a while to stop (as a consumer
// finishing its in-flight requests does), and notes when it was told and
// when it returned.
func until(j *journal, name string, linger time.Duration) component {
	return component{name, func(ctx context.Context) error {
		<-ctx.Done()
		j.add(name + " told")
		time.Sleep(linger)
		j.add(name + " stopped")
		return nil
	}}
}

// Each stage is told to stop only once every component of the stages
// before it has returned, whatever their pace.
func TestSuperviseStopsTheStagesInOrder(t *testing.T) {
	j := &journal{}
	ctx, cancel := context.WithCancel(context.Background())
	started := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- supervise(ctx, slog.New(slog.DiscardHandler), func() { close(started) },
			stage{until(j, "consumer", 100*time.Millisecond), until(j, "sweeper", 0)},
			stage{until(j, "relay", 50*time.Millisecond)},
			stage{until(j, "http", 0)})
	}()
	<-started
	time.Sleep(20 * time.Millisecond)
	if got := j.list(); len(got) != 0 {
		t.Fatalf("components told to stop before ctx ended: %v", got)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("supervise = %v after a clean stop", err)
	}
	got := j.list()
	pos := func(e string) int {
		i := slices.Index(got, e)
		if i < 0 {
			t.Fatalf("%q missing from %v", e, got)
		}
		return i
	}
	for _, before := range []string{"consumer stopped", "sweeper stopped"} {
		if pos(before) > pos("relay told") {
			t.Errorf("the relay was told to stop before %s: %v", before, got)
		}
	}
	if pos("relay stopped") > pos("http told") {
		t.Errorf("http was told to stop before the relay stopped: %v", got)
	}
}

// A component that fails stops every other, in the same order, and its
// error, naming it, is what supervise returns.
func TestSuperviseReturnsTheFirstFailure(t *testing.T) {
	j := &journal{}
	broke := errors.New("lost the database")
	failing := component{"relay", func(ctx context.Context) error {
		time.Sleep(20 * time.Millisecond)
		return broke
	}}
	done := make(chan error, 1)
	go func() {
		done <- supervise(context.Background(), slog.New(slog.DiscardHandler), nil,
			stage{until(j, "consumer", 0)}, stage{failing, until(j, "notifier", 0)}, stage{until(j, "http", 0)})
	}()
	select {
	case err := <-done:
		if !errors.Is(err, broke) || err.Error() != "app: relay: lost the database" {
			t.Fatalf("supervise = %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a failed component did not stop the others")
	}
	want := []string{"consumer told", "consumer stopped", "notifier told", "notifier stopped", "http told", "http stopped"}
	if got := j.list(); !slices.Equal(got, want) {
		t.Fatalf("stopped as %v, want %v", got, want)
	}
}

// A component that returns before it was told to stop, even without an
// error, has failed: the process must not go on without it.
func TestSuperviseTreatsAnEarlyReturnAsAFailure(t *testing.T) {
	quit := component{"sweeper", func(context.Context) error { return nil }}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := supervise(ctx, slog.New(slog.DiscardHandler), nil, stage{quit})
	if !errors.Is(err, errStoppedEarly) || ctx.Err() != nil {
		t.Fatalf("supervise = %v (ctx %v)", err, ctx.Err())
	}
}

// A failure while stopping is returned too, not only one that starts the
// shutdown.
func TestSuperviseReturnsAFailureWhileStopping(t *testing.T) {
	broke := errors.New("commit failed")
	c := component{"consumer", func(ctx context.Context) error { <-ctx.Done(); return broke }}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := supervise(ctx, slog.New(slog.DiscardHandler), nil, stage{c}); !errors.Is(err, broke) {
		t.Fatalf("supervise = %v", err)
	}
}

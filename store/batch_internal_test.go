package store

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

// The group commit's schedule, without a database: a lone call is sent at
// once and alone; calls that arrive while it is in flight go together in
// the next flush, in order, bounded by MaxBatch; a queued call whose
// caller stopped waiting is not sent.
func TestGroupCommitterSchedule(t *testing.T) {
	var mu sync.Mutex
	var flushes [][]int
	release := make(chan struct{})
	first := make(chan struct{})
	record := func(items []int) {
		mu.Lock()
		defer mu.Unlock()
		flushes = append(flushes, items)
	}
	one := func(_ context.Context, item int) (int, error) {
		record([]int{item})
		if item == 0 {
			close(first)
			<-release // the first flush stays in flight
		}
		return item * 10, nil
	}
	many := func(_ context.Context, items []int, out []outcome[int]) error {
		record(append([]int(nil), items...))
		for i, it := range items {
			out[i].res = it * 10
			if it == 3 {
				out[i].err = ErrStale
			}
		}
		return nil
	}
	g := newGroupCommitter("t", true, GroupCommit{MaxBatch: 3}, one, many)
	ctx := context.Background()
	results := make([]int, 6)
	errs := make([]error, 6)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); results[0], errs[0] = g.do(ctx, 0) }()
	<-first
	gone, leave := context.WithCancel(ctx)
	for i := 1; i <= 5; i++ {
		c := ctx
		if i == 2 {
			c = gone
		}
		wg.Add(1)
		go func() { defer wg.Done(); results[i], errs[i] = g.do(c, i) }()
		waitQueued(t, g, i)
	}
	leave()
	close(release)
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()

	want := [][]int{{0}, {1, 3, 4}, {5}}
	if len(flushes) != len(want) {
		t.Fatalf("flushes %v, want %v", flushes, want)
	}
	for i := range want {
		if len(flushes[i]) != len(want[i]) {
			t.Fatalf("flushes %v, want %v", flushes, want)
		}
		for j := range want[i] {
			if flushes[i][j] != want[i][j] {
				t.Fatalf("flushes %v, want %v", flushes, want)
			}
		}
	}
	for i := range 6 {
		switch {
		case i == 2:
			if !errors.Is(errs[i], context.Canceled) {
				t.Fatalf("the call whose caller left: %v, want context.Canceled", errs[i])
			}
		case i == 3:
			if !errors.Is(errs[i], ErrStale) {
				t.Fatalf("call 3: %v, want its own ErrStale", errs[i])
			}
		default:
			if errs[i] != nil || results[i] != i*10 {
				t.Fatalf("call %d: %d, %v; want its own result %d", i, results[i], errs[i], i*10)
			}
		}
	}
	// The slot is freed once the last flush has told its callers.
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(time.Millisecond) {
		g.mu.Lock()
		inFlight, queued := g.inFlight, len(g.queue)
		g.mu.Unlock()
		if inFlight == 0 && queued == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after the flushes: %d in flight, %d queued", inFlight, queued)
		}
	}
}

func waitQueued(t *testing.T, g *groupCommitter[int, int], n int) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		g.mu.Lock()
		q := len(g.queue)
		g.mu.Unlock()
		if q >= n {
			return
		}
	}
	t.Fatalf("%d calls never queued", n)
}

// Go and Wait hand the schedule to the caller: a queued call waits through
// Wait, and what queued is sent only when the func given to Go runs.
func TestGroupCommitterSeams(t *testing.T) {
	release := make(chan struct{})
	first := make(chan struct{})
	one := func(_ context.Context, item int) (int, error) {
		if item == 0 {
			close(first)
			<-release
		}
		return item * 10, nil
	}
	many := func(context.Context, []int, []outcome[int]) error { return errors.New("unused") }
	started := make(chan func(), 1)
	waits := make(chan struct{}, 1)
	g := newGroupCommitter("t", true, GroupCommit{
		Go: func(f func()) { started <- f },
		Wait: func(ctx context.Context, done <-chan struct{}) {
			waits <- struct{}{}
			<-done
		},
	}, one, many)
	ctx := context.Background()
	go func() { _, _ = g.do(ctx, 0) }()
	<-first
	res := make(chan int)
	go func() {
		r, err := g.do(ctx, 1)
		if err != nil {
			t.Error(err)
		}
		res <- r
	}()
	waitQueued(t, g, 1)
	close(release)
	<-waits
	var flush func()
	select {
	case flush = <-started:
	case <-time.After(5 * time.Second):
		t.Fatal("the flush of the queued call was not handed to Go")
	}
	select {
	case r := <-res:
		t.Fatalf("the queued call returned %d before its flush ran", r)
	default:
	}
	flush()
	if r := <-res; r != 10 {
		t.Fatalf("queued call: %d, want 10", r)
	}
}

// The group commit's default timeout follows the connections' statement
// timeout, whichever way it was set.
func TestStatementTimeoutParameter(t *testing.T) {
	for param, want := range map[string]time.Duration{
		"":      DefaultStatementTimeout,
		"0":     DefaultStatementTimeout, // none: the server waits for ever
		"5000":  5 * time.Second,         // OpenWith's milliseconds
		"45s":   45 * time.Second,        // a DSN's, with Postgres's units
		"2min":  2 * time.Minute,
		"1h":    time.Hour,
		"1d":    24 * time.Hour,
		"250ms": 250 * time.Millisecond,
		"1.5s":  DefaultStatementTimeout, // Postgres takes it; this bound need not
		"bogus": DefaultStatementTimeout,
	} {
		if got := statementTimeout(param); got != want {
			t.Errorf("statement_timeout %q: %s, want %s", param, got, want)
		}
	}
}

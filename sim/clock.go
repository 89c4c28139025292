package sim

import (
	"sync"
	"time"

	"github.com/cenkalti/backoff/v4"
)

// Clock is the simulation's virtual time. Waiting costs nothing: a retry's
// backoff moves the clock forward and fires at once, so a retry budget of
// minutes runs in microseconds and always allows the same attempts.
type Clock struct {
	mu  sync.Mutex
	now time.Time
	// wait, when set, runs at every timer start: the simulation parks the
	// waiting task there, so the world moves on while a process waits to
	// retry.
	wait func()
}

// NewClock starts virtual time at a fixed instant, so traces are stable.
func NewClock() *Clock { return &Clock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)} }

// Now returns the virtual time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Advance moves the virtual time forward.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// Timer returns a backoff timer on this clock.
func (c *Clock) Timer() backoff.Timer { return &timer{c: c} }

type timer struct {
	c  *Clock
	ch chan time.Time
}

func (t *timer) Start(d time.Duration) {
	if t.c.wait != nil {
		t.c.wait()
	}
	t.c.Advance(d)
	t.ch = make(chan time.Time, 1)
	t.ch <- t.c.Now()
}

func (t *timer) Stop() {}

func (t *timer) C() <-chan time.Time { return t.ch }

package store

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// Group commit. The hot path's two writes, a charge's claim (CreateCharge)
// and its result (FinishPlacing), and its one read, a member's default
// method (DefaultMethod), go through a groupCommitter each: a caller
// that finds no flush of its kind in flight sends its statement at once,
// alone, exactly as without grouping (no added latency at low load); a
// caller that arrives while flushes are in flight queues, and everything
// queued goes together in the next flush: one round trip, one commit (a
// pgx batch, which Postgres runs as one implicit transaction). So batches
// grow only while flushes are in flight, like Nagle's algorithm with an
// immediate first send.
//
// Each write of a batch is the very statement it would be alone, with its
// own arguments: its outcome (created or not; recorded or ErrStale) is its
// own, read from its own result. Those statements do not raise for an
// item's condition (ON CONFLICT DO NOTHING, a fenced UPDATE counted), so one
// item's "no" does not fail the others. Should a statement raise anyway
// (the server reports an error: the batch's transaction was rolled back,
// nothing of it was written), every item is sent again alone, so the error
// is its own item's. A batch that fails without the server's answer (a
// broken connection, a timeout) may or may not have committed: every caller
// in it gets the error, as a single statement's caller would, and each
// statement is safe to send again (see DESIGN.md, "Group commit").
//
// The reads of a batch go as one statement for all their members, each
// caller taking its own member's row. No member id can make that statement
// fail (DefaultMethod answers one the database cannot hold without asking),
// so an error the server reports is the whole batch's (a timeout, a lock,
// a shutdown): every caller gets it, as a read alone would, and nothing is
// sent again.

// GroupCommit tunes the grouping of the hot path's writes and its read.
type GroupCommit struct {
	// Flushes is how many flushes of one kind may be in flight at once
	// before callers queue: 0 is DefaultGroupCommitFlushes; negative means
	// no limit, so nothing ever queues and every statement is sent alone.
	Flushes int
	// MaxBatch bounds the items of one flush: 0 is DefaultGroupCommitMaxBatch.
	MaxBatch int
	// Timeout bounds one flush, a lone call's included, from taking a
	// connection to its commit's answer. A flush whose connection went
	// silent (a host gone, a NAT that forgot it) is given up: its
	// connection is closed and each of its callers gets the error, as
	// for any lost answer (what it may have written is found by the
	// retry). Without it the flush holds its slot until TCP gives up,
	// many minutes, and every claim and result of the process queues
	// behind it. 0: the connections' statement timeout (or
	// DefaultStatementTimeout when none is set) plus 10 s.
	Timeout time.Duration
	// Observer, when set, hears every flush.
	Observer Observer
	// Go and Wait, when set, replace how a flush of what queued is started
	// (go f()) and how a queued caller waits for its flush (until done is
	// closed or ctx is done). A deterministic simulation, which runs one
	// task at a time, sets them so that both are its scheduler's to run;
	// production leaves them nil.
	Go   func(f func())
	Wait func(ctx context.Context, done <-chan struct{})
}

// Defaults of GroupCommit.
const (
	DefaultGroupCommitFlushes  = 1
	DefaultGroupCommitMaxBatch = 128
)

// groupCommitter coalesces concurrent calls of one kind. I is an item, R
// its result.
type groupCommitter[I, R any] struct {
	kind     string
	flushes  int // <= 0: no limit
	maxBatch int
	timeout  time.Duration
	observer Observer
	spawn    func(func())
	wait     func(context.Context, <-chan struct{})
	// one sends an item alone; many sends several in one transaction and
	// fills one outcome for each, or returns the error of the whole.
	// soloOnRefusal: when the server refuses a batch, each item is sent
	// again alone, so that an error one item caused is that item's only.
	soloOnRefusal bool
	one           func(ctx context.Context, item I) (R, error)
	many          func(ctx context.Context, items []I, out []outcome[R]) error

	mu       sync.Mutex
	inFlight int
	queue    []*groupCall[I, R]
}

type outcome[R any] struct {
	res R
	err error
}

// Observer hears what the group committer does. As every payflow
// observer, any method that does not start something is an event.
type Observer interface {
	// Flushed is told of each flush: its kind ("create_charge",
	// "finish_placing", "default_method"), how many items it carried, and
	// how long its round trip and commit took.
	Flushed(kind string, items int, took time.Duration)
}

type groupCall[I, R any] struct {
	ctx  context.Context
	item I
	outcome[R]
	done chan struct{}
}

func newGroupCommitter[I, R any](kind string, soloOnRefusal bool, o GroupCommit,
	one func(context.Context, I) (R, error), many func(context.Context, []I, []outcome[R]) error) *groupCommitter[I, R] {
	g := &groupCommitter[I, R]{kind: kind, flushes: o.Flushes, maxBatch: o.MaxBatch, timeout: o.Timeout, observer: o.Observer,
		spawn: o.Go, wait: o.Wait, soloOnRefusal: soloOnRefusal, one: one, many: many}
	if g.flushes == 0 {
		g.flushes = DefaultGroupCommitFlushes
	}
	if g.maxBatch <= 0 {
		g.maxBatch = DefaultGroupCommitMaxBatch
	}
	if g.spawn == nil {
		g.spawn = func(f func()) { go f() }
	}
	return g
}

// do sends item, alone at once when a flush may start, else with the next
// flush, and returns its own outcome once its transaction has committed
// (or failed).
func (g *groupCommitter[I, R]) do(ctx context.Context, item I) (R, error) {
	g.mu.Lock()
	if g.flushes > 0 && g.inFlight >= g.flushes {
		c := &groupCall[I, R]{ctx: ctx, item: item, done: make(chan struct{})}
		g.queue = append(g.queue, c)
		g.mu.Unlock()
		if g.wait != nil {
			g.wait(ctx, c.done)
		}
		select {
		case <-c.done:
			return c.res, c.err
		case <-ctx.Done():
			// Unless a flush has taken it already, the item is dropped
			// unsent; if one has, the caller cannot know whether it
			// committed, as with a statement whose answer is lost.
			var zero R
			return zero, ctx.Err()
		}
	}
	g.inFlight++
	g.mu.Unlock()
	start := time.Now()
	res, err := g.bounded(ctx, func(ctx context.Context) (R, error) { return g.one(ctx, item) })
	g.observed(1, start)
	g.next(ctx)
	return res, err
}

// bounded runs a flush under the timeout.
func (g *groupCommitter[I, R]) bounded(ctx context.Context, f func(context.Context) (R, error)) (R, error) {
	if g.timeout <= 0 {
		return f(ctx)
	}
	ctx, cancel := context.WithTimeout(ctx, g.timeout)
	defer cancel()
	return f(ctx)
}

// next hands the flush slot just freed to what queued meanwhile: another
// goroutine sends it, so the caller that held the slot returns now.
func (g *groupCommitter[I, R]) next(ctx context.Context) {
	g.mu.Lock()
	batch := g.take()
	if len(batch) == 0 {
		g.inFlight--
		g.mu.Unlock()
		return
	}
	g.mu.Unlock()
	g.spawn(func() { g.drain(context.WithoutCancel(ctx), batch) })
}

// take removes up to maxBatch queued calls; g.mu is held. A call whose
// caller has stopped waiting is dropped, not sent: nothing of it is written.
func (g *groupCommitter[I, R]) take() []*groupCall[I, R] {
	var batch []*groupCall[I, R]
	i := 0
	for ; i < len(g.queue) && len(batch) < g.maxBatch; i++ {
		c := g.queue[i]
		if err := c.ctx.Err(); err != nil {
			c.err = err
			close(c.done)
			continue
		}
		batch = append(batch, c)
	}
	g.queue = append(g.queue[:0:0], g.queue[i:]...)
	return batch
}

// drain sends batches until nothing is queued, then frees the slot.
func (g *groupCommitter[I, R]) drain(ctx context.Context, batch []*groupCall[I, R]) {
	for len(batch) > 0 {
		g.flush(ctx, batch)
		g.mu.Lock()
		batch = g.take()
		if len(batch) == 0 {
			g.inFlight--
		}
		g.mu.Unlock()
	}
}

// flush sends batch in one transaction and tells each caller its outcome.
func (g *groupCommitter[I, R]) flush(ctx context.Context, batch []*groupCall[I, R]) {
	defer func() {
		for _, c := range batch {
			close(c.done)
		}
	}()
	start := time.Now()
	if len(batch) == 1 {
		c := batch[0]
		c.res, c.err = g.bounded(ctx, func(ctx context.Context) (R, error) { return g.one(ctx, c.item) })
		g.observed(1, start)
		return
	}
	items := make([]I, len(batch))
	for i, c := range batch {
		items[i] = c.item
	}
	out := make([]outcome[R], len(batch))
	var zero R
	_, err := g.bounded(ctx, func(ctx context.Context) (R, error) { return zero, g.many(ctx, items, out) })
	g.observed(len(batch), start)
	var pgErr *pgconn.PgError
	switch {
	case err == nil:
		for i, c := range batch {
			c.outcome = out[i]
		}
	case g.soloOnRefusal && errors.As(err, &pgErr):
		// The server refused a statement, so the whole transaction rolled
		// back and nothing of it was written: send each item alone, and
		// the error lands on its own item only.
		for _, c := range batch {
			start := time.Now()
			c.res, c.err = g.bounded(ctx, func(ctx context.Context) (R, error) { return g.one(ctx, c.item) })
			g.observed(1, start)
		}
	default:
		for _, c := range batch {
			c.err = err
		}
	}
}

func (g *groupCommitter[I, R]) observed(n int, start time.Time) {
	if g.observer != nil {
		g.observer.Flushed(g.kind, n, time.Since(start))
	}
}

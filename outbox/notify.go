package outbox

import (
	"context"
	"time"
)

// Notifier wakes relays in other processes after commits, sending at most
// one NOTIFY per Interval. A NOTIFY inside every transaction makes Postgres
// serialise committing transactions on its notification queue: removing it
// from the hot transaction raised W1 throughput by 45% (docs/benchmarks.md).
// Writers call Signal after they commit; the relay in the same process is
// woken directly (Relay.Wake), and the poll interval covers a NOTIFY lost
// with a crash.
type Notifier struct {
	DB       Execer
	Interval time.Duration // default 5 ms
	// Leading, when set, reports whether the relay of this process leads
	// (Relay.Leading). Only the leading relay listens, so while it is this
	// process's, a NOTIFY would wake nobody that Relay.Wake has not: Signal
	// then sends none. A relay that loses the lead just after hands over to
	// one that publishes as it takes the lock.
	Leading func() bool

	signal chan struct{}
}

// NewNotifier returns a Notifier; Run sends the notifications.
func NewNotifier(db Execer) *Notifier {
	return &Notifier{DB: db, Interval: 5 * time.Millisecond, signal: make(chan struct{}, 1)}
}

// Signal records that rows were committed. It never blocks.
func (n *Notifier) Signal() {
	if n.Leading != nil && n.Leading() {
		return
	}
	select {
	case n.signal <- struct{}{}:
	default:
	}
}

// Run sends one NOTIFY per burst of signals until ctx ends.
func (n *Notifier) Run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-n.signal:
		}
		_ = Notify(ctx, n.DB) // best effort: relays also poll
		select {
		case <-ctx.Done():
			return
		case <-time.After(n.Interval):
		}
	}
}

// Notify wakes every listening relay now.
func Notify(ctx context.Context, db Execer) error {
	_, err := db.Exec(ctx, "SELECT pg_notify('"+Channel+"', '')")
	return err
}

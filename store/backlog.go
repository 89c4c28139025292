package store

import (
	"context"
	"fmt"
	"time"
)

// Backlog is the work the whole deployment has not finished yet, as the
// database holds it (the cluster gauges report it).
type Backlog struct {
	// Unpublished is the outbox rows committed and not yet published.
	Unpublished int64
	// PlacingPastLease is the charges still placing a bill whose lease has
	// run out: a worker died or stalled, and the sweeper has yet to take
	// them over.
	PlacingPastLease int64
	// AwaitingSettlement is the charges whose bill the PG accepted and that
	// have not changed for longer than the age Backlog was given.
	AwaitingSettlement int64
}

// Backlog counts the deployment's unfinished work. Charges awaiting
// settlement count once they have been requested for longer than
// awaitingAge. Times are the store's clock, like every other statement's.
func (s *Store) Backlog(ctx context.Context, awaitingAge time.Duration) (Backlog, error) {
	var b Backlog
	err := s.Pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM outbox WHERE published_at IS NULL),
		(SELECT count(*) FROM charges WHERE state = 'placing' AND lease_until < coalesce($2::timestamptz, now())),
		(SELECT count(*) FROM charges WHERE state = 'requested' AND updated_at < coalesce($2::timestamptz, now()) - $1::interval)`,
		awaitingAge, s.now()).Scan(&b.Unpublished, &b.PlacingPastLease, &b.AwaitingSettlement)
	if err != nil {
		return Backlog{}, fmt.Errorf("store: backlog: %w", err)
	}
	return b, nil
}

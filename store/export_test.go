package store

import (
	"context"

	"github.com/payflow/payflow/outbox"
	"github.com/payflow/payflow/payflow"
)

// The statements of the lookups whose plans a test checks.
const (
	AwaitingSQL        = awaitingSQL
	BillsWithPrefixSQL = billsWithPrefixSQL
)

// MigrateTo applies migrations up to version, for tests of an upgrade.
func MigrateTo(ctx context.Context, dsn string, version int32) error {
	return migrateTo(ctx, dsn, Options{}, version)
}

// CreateTogether sends cs as one flush of the claims' group commit, so a
// test chooses what shares a transaction.
func (s *Store) CreateTogether(ctx context.Context, cs []payflow.NewCharge) (pks []int64, created []bool, errs []error) {
	batch := make([]*groupCall[[]any, createResult], len(cs))
	for i, c := range cs {
		batch[i] = &groupCall[[]any, createResult]{ctx: ctx, item: s.createArgs(c), done: make(chan struct{})}
	}
	s.creates.flush(ctx, batch)
	for _, c := range batch {
		pks, created, errs = append(pks, c.res.pk), append(created, c.res.created), append(errs, c.err)
	}
	return pks, created, errs
}

// FinishTogether sends rs (each with its message) as one flush of the
// results' group commit.
func (s *Store) FinishTogether(ctx context.Context, rs []payflow.PlaceResult, msgs []outbox.Message) []error {
	batch := make([]*groupCall[[]any, struct{}], len(rs))
	for i, r := range rs {
		batch[i] = &groupCall[[]any, struct{}]{ctx: ctx, item: s.finishArgs(ctx, r, []outbox.Message{msgs[i]}), done: make(chan struct{})}
	}
	s.finishes.flush(ctx, batch)
	errs := make([]error, len(batch))
	for i, c := range batch {
		errs[i] = c.err
	}
	return errs
}

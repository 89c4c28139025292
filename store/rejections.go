package store

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/payflow/payflow/outbox"
	"github.com/payflow/payflow/payflow"
)

// Request names a request for its rejection record: the event that carried
// it, and, for requests with an id of their own (a refund, a re-payment),
// that id and the request's content.
type Request struct {
	Source  string
	EventID string
	Key     string // e.g. "refund/<merchant>/<refund_id>"; empty for none
	Hash    []byte
}

// Rejection is a request's rejection and the result event that reports it.
type Rejection struct {
	Request
	Reason string
	Event  outbox.Message
	// ChargePK and Holder, when set, fence the rejection: it was judged
	// under Holder's taking of the charge's lease, and is recorded only
	// while that taking holds (ErrStale otherwise: the request may have
	// been judged since, against the charge as it now is).
	ChargePK int64
	Holder   payflow.Holder
}

// Reject records a rejection with its request and writes its event, in one
// transaction. A request rejected before is not recorded twice.
func (s *Store) Reject(ctx context.Context, r Rejection) error {
	return pgx.BeginFunc(ctx, s.Pool, func(tx pgx.Tx) error {
		if r.ChargePK != 0 {
			if err := fence(ctx, tx, r.ChargePK, r.Holder, "reject-unfenced"); err != nil {
				return err
			}
		}
		tag, err := tx.Exec(ctx, `INSERT INTO rejected_requests (source, event_id, request_key, request_hash, reason)
			VALUES ($1, $2, nullif($3, ''), $4, $5) ON CONFLICT DO NOTHING`, r.Source, r.EventID, r.Key, r.Hash, r.Reason)
		if err != nil || tag.RowsAffected() == 0 {
			return err
		}
		return outbox.Insert(ctx, tx, r.Event)
	})
}

// Rejected reports whether the request was rejected before, delivered by
// this event or re-sent under another one with the same key and content:
// its rejection is its result, replayed rather than judged again.
func (s *Store) Rejected(ctx context.Context, r Request) (bool, error) {
	var yes bool
	err := s.Pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM rejected_requests WHERE source = $1 AND event_id = $2)
		OR EXISTS (SELECT 1 FROM rejected_requests WHERE $3 <> '' AND request_key = $3 AND request_hash = $4)`,
		r.Source, r.EventID, r.Key, r.Hash).Scan(&yes)
	if err != nil {
		return false, fmt.Errorf("store: rejected: %w", err)
	}
	return yes, nil
}

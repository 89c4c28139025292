package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/payflow/payflow/payflow"
)

// Method is a member's registered payment method. BillingKeyEnc is the
// sealed billing key; it never leaves payflow.
type Method struct {
	ID            string
	MemberID      string
	Label         string
	Default       bool
	Status        payflow.MethodStatus
	BillingKeyEnc []byte
	CreatedAt     time.Time
}

// AddMethod stores a method. m.ID must be set (the caller seals the key
// with the id as associated data). The member's first method becomes the
// default; a new default replaces the old one in the same transaction.
func (s *Store) AddMethod(ctx context.Context, m Method) (Method, error) {
	err := pgx.BeginFunc(ctx, s.Pool, func(tx pgx.Tx) error {
		// Serialise a member's changes so "first method" and "one default"
		// hold under concurrent registrations.
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtext('payment_methods:' || $1))`, m.MemberID); err != nil {
			return err
		}
		var others int
		if err := tx.QueryRow(ctx, `SELECT count(*) FROM payment_methods WHERE member_id = $1 AND status = 'active'`, m.MemberID).Scan(&others); err != nil {
			return err
		}
		if others == 0 {
			m.Default = true
		}
		if m.Default {
			if _, err := tx.Exec(ctx, `UPDATE payment_methods SET is_default = false, updated_at = now()
				WHERE member_id = $1 AND is_default`, m.MemberID); err != nil {
				return err
			}
		}
		return tx.QueryRow(ctx, `INSERT INTO payment_methods (id, member_id, label, billing_key_enc, is_default)
			VALUES ($1, $2, $3, $4, $5) RETURNING created_at`, m.ID, m.MemberID, m.Label, m.BillingKeyEnc, m.Default).Scan(&m.CreatedAt)
	})
	if err != nil {
		return Method{}, fmt.Errorf("store: add method: %w", err)
	}
	m.Status = payflow.MethodActive
	return m, nil
}

const methodColumns = `id::text, member_id, label, is_default, status, billing_key_enc, created_at`

func scanMethod(row pgx.Row) (Method, error) {
	var m Method
	var st string
	err := row.Scan(&m.ID, &m.MemberID, &m.Label, &m.Default, &st, &m.BillingKeyEnc, &m.CreatedAt)
	m.Status = payflow.MethodStatus(st)
	return m, err
}

// ListMethods returns a member's methods that are not deleted, the default
// first.
func (s *Store) ListMethods(ctx context.Context, memberID string) ([]Method, error) {
	rows, err := s.Pool.Query(ctx, `SELECT `+methodColumns+` FROM payment_methods
		WHERE member_id = $1 AND status <> 'deleted' ORDER BY is_default DESC, created_at DESC`, memberID)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (Method, error) { return scanMethod(r) })
}

// DeleteMethod removes a member's method. If it was the default, the most
// recent remaining active method becomes the default. ErrNotFound for an
// unknown id or another member's.
func (s *Store) DeleteMethod(ctx context.Context, memberID, id string) error {
	if _, err := uuid.Parse(id); err != nil {
		return ErrNotFound
	}
	return pgx.BeginFunc(ctx, s.Pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtext('payment_methods:' || $1))`, memberID); err != nil {
			return err
		}
		var wasDefault bool
		err := tx.QueryRow(ctx, `UPDATE payment_methods SET status = 'deleted', is_default = false, billing_key_enc = '\x'::bytea,
			updated_at = now() WHERE id = $1 AND member_id = $2 AND status <> 'deleted'
			RETURNING (SELECT is_default FROM payment_methods WHERE id = $1)`, id, memberID).Scan(&wasDefault)
		if errors.Is(err, pgx.ErrNoRows) {
			return ErrNotFound
		}
		if err != nil || !wasDefault {
			return err
		}
		_, err = tx.Exec(ctx, `UPDATE payment_methods SET is_default = true, updated_at = now() WHERE id = (
			SELECT id FROM payment_methods WHERE member_id = $1 AND status = 'active' ORDER BY created_at DESC LIMIT 1)`, memberID)
		return err
	})
}

// DefaultMethod returns the member's default method, or nil when there is
// none.
func (s *Store) DefaultMethod(ctx context.Context, memberID string) (*Method, error) {
	m, err := scanMethod(s.Pool.QueryRow(ctx, `SELECT `+methodColumns+` FROM payment_methods
		WHERE member_id = $1 AND is_default AND status <> 'deleted'`, memberID))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return &m, nil
}

// MethodByID returns a method that is not deleted.
func (s *Store) MethodByID(ctx context.Context, id string) (Method, error) {
	m, err := scanMethod(s.Pool.QueryRow(ctx, `SELECT `+methodColumns+` FROM payment_methods
		WHERE id = $1 AND status <> 'deleted'`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return m, ErrNotFound
	}
	return m, err
}

// ResealMethods passes every stored billing key through reseal and stores
// the result where it changed; a key rotation re-seals with the new key.
// It returns how many were rewritten.
func (s *Store) ResealMethods(ctx context.Context, reseal func(id string, sealed []byte) ([]byte, bool, error)) (int, error) {
	rows, err := s.Pool.Query(ctx, `SELECT id::text, billing_key_enc FROM payment_methods WHERE status <> 'deleted'`)
	if err != nil {
		return 0, err
	}
	type row struct {
		id     string
		sealed []byte
	}
	all, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (row, error) {
		var x row
		return x, r.Scan(&x.id, &x.sealed)
	})
	if err != nil {
		return 0, err
	}
	n := 0
	for _, r := range all {
		next, changed, err := reseal(r.id, r.sealed)
		if err != nil {
			return n, fmt.Errorf("store: reseal method %s: %w", r.id, err)
		}
		if !changed {
			continue
		}
		// Only if nobody changed it meanwhile.
		tag, err := s.Pool.Exec(ctx, `UPDATE payment_methods SET billing_key_enc = $2, updated_at = now()
			WHERE id = $1 AND billing_key_enc = $3`, r.id, next, r.sealed)
		if err != nil {
			return n, err
		}
		n += int(tag.RowsAffected())
	}
	return n, nil
}

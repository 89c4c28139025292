package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/payflow/payflow/payflow"
)

// lockMember serialises changes to one member's methods, so that "the first
// method is the default" and "a new default replaces the old one" hold when
// two registrations race. A row lock cannot do it: the first method has no
// row to lock yet.
func lockMember(ctx context.Context, tx pgx.Tx, memberID string) error {
	_, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtext('payment_methods:' || $1))`, memberID)
	return err
}

// isUUID accepts only the canonical 36-character form: ids come from URLs,
// and uuid.Parse's braced and URN forms (or Postgres's own leniency) would
// make one method reachable under several spellings.
func isUUID(s string) bool {
	_, err := uuid.Parse(s)
	return err == nil && len(s) == 36
}

// AddMethod stores a new method. m.ID must be a UUID and m.BillingKeyEnc the
// key sealed with that id as associated data; Status is ignored (a new
// method is active). The method becomes the member's default when asked,
// and also when the member has no usable default: a member's first card,
// or the card that replaces an expired one, is the one users expect to be
// charged. A new default replaces the old one in the same transaction.
func (s *Store) AddMethod(ctx context.Context, m payflow.PaymentMethod) (payflow.PaymentMethod, error) {
	if !isUUID(m.ID) {
		return payflow.PaymentMethod{}, errors.New("store: add method: id must be a UUID")
	}
	if m.MemberID == "" || len(m.BillingKeyEnc) == 0 {
		return payflow.PaymentMethod{}, errors.New("store: add method: member id and sealed billing key are required")
	}
	err := pgx.BeginFunc(ctx, s.Pool, func(tx pgx.Tx) error {
		if err := lockMember(ctx, tx, m.MemberID); err != nil {
			return err
		}
		if !m.Default {
			var usable bool
			if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM payment_methods
				WHERE member_id = $1 AND is_default AND status = 'active')`, m.MemberID).Scan(&usable); err != nil {
				return err
			}
			m.Default = !usable
		}
		if m.Default {
			if _, err := tx.Exec(ctx, `UPDATE payment_methods SET is_default = false, updated_at = coalesce($2::timestamptz, now())
				WHERE member_id = $1 AND is_default`, m.MemberID, s.now()); err != nil {
				return err
			}
		}
		return tx.QueryRow(ctx, `INSERT INTO payment_methods (id, member_id, label, billing_key_enc, is_default, created_at, updated_at)
			VALUES ($1, $2, $3, $4, $5, coalesce($6::timestamptz, now()), coalesce($6::timestamptz, now())) RETURNING status, created_at, updated_at`,
			m.ID, m.MemberID, m.Label, m.BillingKeyEnc, m.Default, s.now()).Scan(&m.Status, &m.CreatedAt, &m.UpdatedAt)
	})
	if err != nil {
		return payflow.PaymentMethod{}, fmt.Errorf("store: add method: %w", err)
	}
	return m, nil
}

const methodColumns = `id::text, member_id, label, is_default, status, billing_key_enc, created_at, updated_at`

func scanMethod(row pgx.Row) (payflow.PaymentMethod, error) {
	var m payflow.PaymentMethod
	var st string
	err := row.Scan(&m.ID, &m.MemberID, &m.Label, &m.Default, &st, &m.BillingKeyEnc, &m.CreatedAt, &m.UpdatedAt)
	m.Status = payflow.MethodStatus(st)
	return m, err
}

// ListMethods returns a member's methods that are not deleted (expired and
// invalid ones included, so the member sees why a card is not charged):
// the default first, then the newest first.
func (s *Store) ListMethods(ctx context.Context, memberID string) ([]payflow.PaymentMethod, error) {
	rows, err := s.Pool.Query(ctx, `SELECT `+methodColumns+` FROM payment_methods
		WHERE member_id = $1 AND status <> 'deleted' ORDER BY is_default DESC, created_at DESC, id`, memberID)
	if err != nil {
		return nil, fmt.Errorf("store: list methods: %w", err)
	}
	ms, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (payflow.PaymentMethod, error) { return scanMethod(r) })
	if err != nil {
		return nil, fmt.Errorf("store: list methods: %w", err)
	}
	return ms, nil
}

// DeleteMethod deletes a member's method. The row stays (bills refer to
// it) with status deleted, but its sealed billing key is erased. If it was
// the default, the most recent remaining active method becomes the
// default. payflow.ErrNotFound for an unknown id, an already deleted one or another
// member's: callers must not learn which.
func (s *Store) DeleteMethod(ctx context.Context, memberID, id string) error {
	if !isUUID(id) {
		return payflow.ErrNotFound
	}
	err := pgx.BeginFunc(ctx, s.Pool, func(tx pgx.Tx) error {
		if err := lockMember(ctx, tx, memberID); err != nil {
			return err
		}
		var wasDefault bool
		err := tx.QueryRow(ctx, `SELECT is_default FROM payment_methods
			WHERE id = $1 AND member_id = $2 AND status <> 'deleted'`, id, memberID).Scan(&wasDefault)
		if errors.Is(err, pgx.ErrNoRows) {
			return payflow.ErrNotFound
		}
		if err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `UPDATE payment_methods SET status = 'deleted', is_default = false,
			billing_key_enc = '\x'::bytea, updated_at = coalesce($2::timestamptz, now()) WHERE id = $1`, id, s.now()); err != nil {
			return err
		}
		if !wasDefault {
			return nil
		}
		_, err = tx.Exec(ctx, `UPDATE payment_methods SET is_default = true, updated_at = coalesce($2::timestamptz, now()) WHERE id = (
			SELECT id FROM payment_methods WHERE member_id = $1 AND status = 'active'
			ORDER BY created_at DESC, id DESC LIMIT 1)`, memberID, s.now())
		return err
	})
	if err != nil && !errors.Is(err, payflow.ErrNotFound) {
		return fmt.Errorf("store: delete method: %w", err)
	}
	return err
}

// DefaultMethod returns the member's default method with its sealed billing
// key, or nil when there is none. An expired or invalid default is returned
// as it is: the charge decision reports it as the reason for not using
// auto-pay, which tells the merchant more than "no method" would.
//
// It is the hot path's one read, once for each member's charge: the reads
// of concurrent charges are grouped as the hot path's writes are (see
// GroupCommit), into one statement for all their members.
func (s *Store) DefaultMethod(ctx context.Context, memberID string) (*payflow.PaymentMethod, error) {
	if !storable(memberID) {
		// No member has it: the database cannot hold such an id. Asking
		// would fail the statement, and with it the batch of others' reads.
		return nil, nil
	}
	if s.defaults == nil {
		return s.defaultOne(ctx, memberID)
	}
	return s.defaults.do(ctx, memberID)
}

const defaultMethodSQL = `SELECT ` + methodColumns + ` FROM payment_methods
	WHERE member_id = ANY($1) AND is_default AND status <> 'deleted'`

// defaultOne reads one member's default method alone.
func (s *Store) defaultOne(ctx context.Context, memberID string) (*payflow.PaymentMethod, error) {
	m, err := scanMethod(s.Pool.QueryRow(ctx, defaultMethodSQL, []string{memberID}))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("store: default method: %w", err)
	}
	return &m, nil
}

// defaultMany reads several members' default methods in one statement. A
// member has at most one (a unique index); each caller gets a copy of its
// own, its sealed key included, however often its member was asked for.
func (s *Store) defaultMany(ctx context.Context, memberIDs []string, out []outcome[*payflow.PaymentMethod]) error {
	rows, err := s.Pool.Query(ctx, defaultMethodSQL, memberIDs)
	if err != nil {
		return fmt.Errorf("store: default methods: %w", err)
	}
	found, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (payflow.PaymentMethod, error) { return scanMethod(r) })
	if err != nil {
		return fmt.Errorf("store: default methods: %w", err)
	}
	byMember := make(map[string]int, len(found))
	for i, m := range found {
		byMember[m.MemberID] = i
	}
	for i, id := range memberIDs {
		if j, ok := byMember[id]; ok {
			m := found[j]
			m.BillingKeyEnc = bytes.Clone(m.BillingKeyEnc)
			out[i].res = &m
		}
	}
	return nil
}

// SetMethodStatus records what the PG said about a method: expired or
// invalid (or active again). It does not move the default: charging
// another card than the one the member chose would surprise them more than
// a KakaoTalk bill. Deleting goes through DeleteMethod, which also erases
// the key; a deleted method is payflow.ErrNotFound here, never revived.
func (s *Store) SetMethodStatus(ctx context.Context, id string, status payflow.MethodStatus) error {
	switch status {
	case payflow.MethodActive, payflow.MethodExpired, payflow.MethodInvalid:
	default:
		return fmt.Errorf("store: set method status: %q is not settable (use DeleteMethod to delete)", status)
	}
	if !isUUID(id) {
		return payflow.ErrNotFound
	}
	tag, err := s.Pool.Exec(ctx, `UPDATE payment_methods SET status = $2, updated_at = coalesce($3::timestamptz, now())
		WHERE id = $1 AND status <> 'deleted'`, id, string(status), s.now())
	if err != nil {
		return fmt.Errorf("store: set method status: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return payflow.ErrNotFound
	}
	return nil
}

// MethodByID returns a method that is not deleted.
func (s *Store) MethodByID(ctx context.Context, id string) (payflow.PaymentMethod, error) {
	if !isUUID(id) {
		return payflow.PaymentMethod{}, payflow.ErrNotFound
	}
	m, err := scanMethod(s.Pool.QueryRow(ctx, `SELECT `+methodColumns+` FROM payment_methods
		WHERE id = $1 AND status <> 'deleted'`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return payflow.PaymentMethod{}, payflow.ErrNotFound
	}
	if err != nil {
		return payflow.PaymentMethod{}, fmt.Errorf("store: method: %w", err)
	}
	return m, nil
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
		tag, err := s.Pool.Exec(ctx, `UPDATE payment_methods SET billing_key_enc = $2, updated_at = coalesce($4::timestamptz, now())
			WHERE id = $1 AND billing_key_enc = $3`, r.id, next, r.sealed, s.now())
		if err != nil {
			return n, err
		}
		n += int(tag.RowsAffected())
	}
	return n, nil
}

// storable reports whether Postgres can hold s as text: valid UTF-8 without
// NUL.
func storable(s string) bool {
	return utf8.ValidString(s) && strings.IndexByte(s, 0) < 0
}

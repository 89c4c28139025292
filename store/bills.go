package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/payflow/payflow/payflow"
)

// StorePGURL records the pay URL the PG gave when it accepted a bill, for a
// PG that cannot be asked for it again (pgclient.Accepted.URL). The first
// URL stored stays: a bill has one link. payflow.ErrNotFound for an unknown bill.
func (s *Store) StorePGURL(ctx context.Context, billID, url string, expiresAt time.Time) error {
	var exp *time.Time
	if !expiresAt.IsZero() {
		exp = &expiresAt
	}
	tag, err := s.Pool.Exec(ctx, `UPDATE bills SET pg_url = coalesce(pg_url, $2), pg_url_expires_at = coalesce(pg_url_expires_at, $3)
		WHERE bill_id = $1`, billID, url, exp)
	if err != nil {
		return fmt.Errorf("store: store pg url: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return payflow.ErrNotFound
	}
	return nil
}

// PGURL returns the pay URL stored for a bill by StorePGURL: empty when
// none was. payflow.ErrNotFound for an unknown bill.
func (s *Store) PGURL(ctx context.Context, billID string) (url string, expiresAt time.Time, err error) {
	var exp *time.Time
	err = s.Pool.QueryRow(ctx, `SELECT coalesce(pg_url, ''), pg_url_expires_at FROM bills WHERE bill_id = $1`, billID).Scan(&url, &exp)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", time.Time{}, payflow.ErrNotFound
	}
	if err != nil {
		return "", time.Time{}, fmt.Errorf("store: pg url: %w", err)
	}
	if exp != nil {
		expiresAt = *exp
	}
	return url, expiresAt, nil
}

// MerchantOf returns the merchant whose charge a bill belongs to.
// payflow.ErrNotFound for an unknown bill.
func (s *Store) MerchantOf(ctx context.Context, billID string) (string, error) {
	var m string
	err := s.Pool.QueryRow(ctx, `SELECT c.merchant_id FROM bills b JOIN charges c ON c.id = b.charge_pk WHERE b.bill_id = $1`, billID).Scan(&m)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", payflow.ErrNotFound
	}
	if err != nil {
		return "", fmt.Errorf("store: merchant of bill: %w", err)
	}
	return m, nil
}

// BillsWithPrefix returns the bills whose id starts with prefix, whatever
// their status, at most a few: for a callback that names a bill by an id
// the PG derived from payflow's (PaySSam's, see payssam.UUIDPrefix), which
// may come before the bill's placement is recorded (it is then pending).
// The lookup uses an index on bill_id alone, so that no index of bills
// covers a column the hot path's updates change (migration 006).
func (s *Store) BillsWithPrefix(ctx context.Context, prefix string) ([]payflow.Bill, error) {
	rows, err := s.Pool.Query(ctx, billsWithPrefixSQL, prefix)
	if err != nil {
		return nil, fmt.Errorf("store: bills with prefix: %w", err)
	}
	return collectBills(rows)
}

const billsWithPrefixSQL = `SELECT bill_id, charge_pk, method, coalesce(method_id::text, ''), coalesce(fallback_reason, ''),
		amount, status, coalesce(pg_tx_id, ''), coalesce(repay_pk, 0)
	FROM bills WHERE bill_id COLLATE "C" >= $1 AND bill_id COLLATE "C" < $1 || '~' LIMIT 8`

func collectBills(rows pgx.Rows) ([]payflow.Bill, error) {
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (payflow.Bill, error) {
		var b payflow.Bill
		var method, fb, status string
		err := r.Scan(&b.BillID, &b.ChargePK, &method, &b.MethodID, &fb, &b.Amount, &status, &b.PGTxID, &b.RepayPK)
		b.Method, b.FallbackReason, b.Status = payflow.Method(method), payflow.FallbackReason(fb), payflow.BillStatus(status)
		return b, err
	})
}

// CurrentBill reads a merchant's charge's current bill with its cached pay
// URL. payflow.ErrNotFound when the charge does not exist for that merchant; a
// charge without a current bill gives a CachedBill with an empty BillID.
func (s *Store) CurrentBill(ctx context.Context, merchantID, chargeID string) (payflow.CachedBill, error) {
	var b payflow.CachedBill
	var method, fb, status string
	var expires *time.Time
	err := s.Pool.QueryRow(ctx, `SELECT c.id, coalesce(b.bill_id, ''), coalesce(b.method, ''), coalesce(b.method_id::text, ''),
			coalesce(b.fallback_reason, ''), coalesce(b.amount, 0), coalesce(b.status, ''), coalesce(b.pg_tx_id, ''),
			coalesce(b.repay_pk, 0), coalesce(b.url, ''), b.url_expires_at
		FROM charges c LEFT JOIN bills b ON b.bill_id = c.current_bill_id
		WHERE c.merchant_id = $1 AND c.charge_id = $2`, merchantID, chargeID).
		Scan(&b.ChargePK, &b.BillID, &method, &b.MethodID, &fb, &b.Amount, &status, &b.PGTxID, &b.RepayPK, &b.URL, &expires)
	if errors.Is(err, pgx.ErrNoRows) {
		return payflow.CachedBill{}, payflow.ErrNotFound
	}
	if err != nil {
		return payflow.CachedBill{}, fmt.Errorf("store: current bill: %w", err)
	}
	b.Method, b.FallbackReason, b.Status = payflow.Method(method), payflow.FallbackReason(fb), payflow.BillStatus(status)
	if expires != nil {
		b.URLExpiresAt = *expires
	}
	return b, nil
}

// CacheBillURL remembers a bill's pay URL until it expires, so that asking
// for it again does not cost a PG call. payflow.ErrNotFound for an unknown bill.
func (s *Store) CacheBillURL(ctx context.Context, billID, url string, expiresAt time.Time) error {
	tag, err := s.Pool.Exec(ctx, `UPDATE bills SET url = $2, url_expires_at = $3 WHERE bill_id = $1`, billID, url, expiresAt)
	if err != nil {
		return fmt.Errorf("store: cache bill url: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return payflow.ErrNotFound
	}
	return nil
}

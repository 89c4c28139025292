package store

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"
)

// ChargeView is a charge as the API shows it to its merchant.
type ChargeView struct {
	Charge         Charge
	FailureReason  string
	PaidAmount     int64
	RefundedAmount int64
	CreatedAt      time.Time
	UpdatedAt      time.Time
	Bills          []BillView
	Refunds        []RefundView
	BillURL        string
	BillURLExpires time.Time
}

// BillView is one bill in a charge's history.
type BillView struct {
	BillID         string     `json:"bill_id"`
	Method         string     `json:"method"`
	Status         string     `json:"status"`
	Amount         int64      `json:"amount"`
	FallbackReason string     `json:"fallback_reason,omitempty"`
	DeclineCode    string     `json:"decline_code,omitempty"`
	CreatedAt      time.Time  `json:"created_at"`
	SettledAt      *time.Time `json:"settled_at,omitempty"`
}

// RefundView is one refund in a charge's history.
type RefundView struct {
	RefundID  string    `json:"refund_id"`
	Kind      string    `json:"kind"`
	BillID    string    `json:"bill_id"`
	Amount    int64     `json:"amount"`
	Status    string    `json:"status"`
	CreatedAt time.Time `json:"created_at"`
}

// ViewCharge reads a merchant's charge with its bills and refunds.
// ErrNotFound when it does not exist for that merchant.
func (s *Store) ViewCharge(ctx context.Context, merchantID, chargeID string) (ChargeView, error) {
	c, err := s.ChargeByKey(ctx, merchantID, chargeID)
	if err != nil {
		return ChargeView{}, err
	}
	v := ChargeView{Charge: c}
	if err := s.Pool.QueryRow(ctx, `SELECT coalesce(c.failure_reason, ''), c.created_at, c.updated_at,
			coalesce(b.paid_amount, 0), coalesce(b.refunded_amount, 0), coalesce(b.url, ''), coalesce(b.url_expires_at, 'epoch')
		FROM charges c LEFT JOIN bills b ON b.bill_id = c.current_bill_id WHERE c.id = $1`, c.PK).
		Scan(&v.FailureReason, &v.CreatedAt, &v.UpdatedAt, &v.PaidAmount, &v.RefundedAmount, &v.BillURL, &v.BillURLExpires); err != nil {
		return v, err
	}
	rows, err := s.Pool.Query(ctx, `SELECT bill_id, method, status, amount, coalesce(fallback_reason, ''), coalesce(decline_code, ''),
		created_at, settled_at FROM bills WHERE charge_pk = $1 ORDER BY created_at, bill_id`, c.PK)
	if err != nil {
		return v, err
	}
	if v.Bills, err = pgx.CollectRows(rows, pgx.RowToStructByPos[BillView]); err != nil {
		return v, err
	}
	rows, err = s.Pool.Query(ctx, `SELECT refund_id, kind, bill_id, amount, status, created_at FROM refunds
		WHERE charge_pk = $1 ORDER BY id`, c.PK)
	if err != nil {
		return v, err
	}
	v.Refunds, err = pgx.CollectRows(rows, pgx.RowToStructByPos[RefundView])
	return v, err
}

// CacheBillURL remembers a bill's pay URL until it expires.
func (s *Store) CacheBillURL(ctx context.Context, billID, url string, expires time.Time) error {
	_, err := s.Pool.Exec(ctx, `UPDATE bills SET url = $2, url_expires_at = $3 WHERE bill_id = $1`, billID, url, expires)
	return err
}

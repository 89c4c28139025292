package payflow

import "errors"

// Refund is a refund of a paid bill.
type Refund struct {
	PK          int64
	MerchantID  string
	RefundID    string
	Kind        string // "refund", or "repay" for the refund step of a re-payment
	ChargePK    int64
	ChargeID    string
	BillID      string
	Amount      int64
	Reason      string
	RequestHash []byte
	Status      RefundStatus
	// PGRefundID is the refund's idempotency key at the PG, the same for
	// every retry.
	PGRefundID string
}

// RefundStatus is where a refund stands. While it is pending its amount is
// reserved on the paid bill (and its charge is busy); the PG's answer makes
// it final, once:
//
//	pending ──► succeeded   (the reservation becomes refunded)
//	   └──────► failed      (the reservation is released)
type RefundStatus string

const (
	RefundPending   RefundStatus = "pending"
	RefundSucceeded RefundStatus = "succeeded"
	RefundFailed    RefundStatus = "failed"
)

// NewRefund is a refund about to be sent to the PG.
type NewRefund struct {
	MerchantID  string
	RefundID    string
	Kind        string
	ChargePK    int64
	BillID      string
	Amount      int64
	Reason      string
	RequestHash []byte
	// Holder is the taking of the charge's lease the refund was judged
	// under: it is stored only while that taking holds.
	Holder Holder
}

// RefundResult is how a refund ended at the PG.
type RefundResult struct {
	Succeeded     bool
	PGTxID        string
	FailureReason string
}

// A refund's refusals. The store checks both on the locked bill row, where
// concurrent refunds cannot race past them.
var (
	// ErrExceedsPaid: the refund would take the bill's refunds above what
	// was paid. Nothing was written.
	ErrExceedsPaid = errors.New("payflow: refund exceeds the paid amount")
	// ErrNotPaid: the charge's current bill is not paid, so there is
	// nothing to refund (or to re-pay).
	ErrNotPaid = errors.New("payflow: bill is not paid")
)

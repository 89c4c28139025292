package payflow

import "time"

// ChargeView is a charge as the charges API shows it to its merchant: where
// it stands, its current bill, the money that moved, and its history.
type ChargeView struct {
	MerchantID     string
	ChargeID       string
	State          ChargeState
	BillID         string // the current bill; the one a webhook or bill URL is about
	Method         Method
	FallbackReason FallbackReason
	BillStatus     BillStatus
	// Amount is the current bill's: what the customer is asked for now
	// (a re-payment may ask for another amount than the original charge).
	Amount int64
	// PaidAmount and RefundedAmount add up every bill of the charge, so
	// that after a re-payment paid − refunded is still what the customer
	// is out of pocket.
	PaidAmount     int64
	RefundedAmount int64
	FailureReason  string
	CreatedAt      time.Time
	UpdatedAt      time.Time
	Bills          []BillEntry   // oldest first
	Refunds        []RefundEntry // oldest first
}

// BillEntry is one bill in a charge's history: a declined auto-pay, the
// KakaoTalk bill that replaced it, a re-payment's new bill.
type BillEntry struct {
	BillID         string
	Method         Method
	Status         BillStatus
	Amount         int64
	PaidAmount     int64
	RefundedAmount int64
	FallbackReason FallbackReason
	DeclineCode    string
	RepayID        string // set on a re-payment's bill
	CreatedAt      time.Time
	SettledAt      *time.Time
}

// RefundEntry is one refund in a charge's history, including the refund
// step of a re-payment (Kind "repay").
type RefundEntry struct {
	RefundID      string
	Kind          string
	BillID        string
	Amount        int64
	Status        RefundStatus
	FailureReason string
	CreatedAt     time.Time
	UpdatedAt     time.Time
}

// CachedBill is a charge's current bill with the pay URL cached for it.
type CachedBill struct {
	Bill
	URL          string    // empty when none is cached
	URLExpiresAt time.Time // zero when none is cached
}

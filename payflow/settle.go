package payflow

import "errors"

// Settlement is a bill's final result as the PG reports it.
type Settlement struct {
	BillID string
	Status SettleStatus
	Amount int64
	PGTxID string
	// Provider and WebhookID identify the webhook that reported it; empty
	// for reconciliation.
	Provider  string
	WebhookID string
}

// SettleOutcome says what a settlement did.
type SettleOutcome string

const (
	SettleApplied   SettleOutcome = "applied"   // the bill moved to its final status
	SettleDuplicate SettleOutcome = "duplicate" // this webhook id was seen before
	SettleIgnored   SettleOutcome = "ignored"   // the bill was already final: recorded, not applied
)

var (
	// ErrAmountMismatch: the PG reports another amount than the bill's.
	ErrAmountMismatch = errors.New("payflow: amount does not match the bill")
	// ErrNotPlacedYet: the bill's placement is still being recorded; the
	// sender should try again shortly.
	ErrNotPlacedYet = errors.New("payflow: bill not placed yet")
)

// SettledBill is what the event of an applied settlement needs.
type SettledBill struct {
	Bill       Bill
	MerchantID string
	ChargeID   string
}

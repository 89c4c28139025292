package events

// Data of the input events, as upstream services send it.

// ChargeRequested is the data of payment.charge.requested.
type ChargeRequested struct {
	MerchantID string   `json:"merchant_id"`
	ChargeID   string   `json:"charge_id"`
	Amount     int64    `json:"amount"`
	Currency   string   `json:"currency"`
	OrderName  string   `json:"order_name"`
	Customer   Customer `json:"customer"`
}

// Customer is the consumer to charge.
type Customer struct {
	MemberID string `json:"member_id,omitempty"`
	Phone    string `json:"phone"`
	Name     string `json:"name"`
}

// RefundRequested is the data of payment.refund.requested.
type RefundRequested struct {
	MerchantID string `json:"merchant_id"`
	ChargeID   string `json:"charge_id"`
	RefundID   string `json:"refund_id"`
	Amount     int64  `json:"amount"`
	Reason     string `json:"reason"`
}

// RepayRequested is the data of payment.repay.requested.
type RepayRequested struct {
	MerchantID string `json:"merchant_id"`
	ChargeID   string `json:"charge_id"`
	RepayID    string `json:"repay_id"`
	Amount     int64  `json:"amount,omitempty"`
}

// CancelRequested is the data of payment.bill.cancel.requested.
type CancelRequested struct {
	MerchantID string `json:"merchant_id"`
	ChargeID   string `json:"charge_id"`
	Reason     string `json:"reason"`
}

// Data of the output events.

// ChargeProcessed is the data of payment.charge.processed.
type ChargeProcessed struct {
	MerchantID     string `json:"merchant_id"`
	ChargeID       string `json:"charge_id"`
	BillID         string `json:"bill_id"`
	Method         string `json:"method"`
	FallbackReason string `json:"fallback_reason,omitempty"`
}

// ChargeFailed is the data of payment.charge.failed.
type ChargeFailed struct {
	MerchantID string `json:"merchant_id"`
	ChargeID   string `json:"charge_id"`
	Reason     string `json:"reason"`
	Attempts   int    `json:"attempts"`
	// RepayID is set when the bill that could not be placed was a
	// re-payment's: the re-payment's one result (its refund step has its
	// own).
	RepayID string `json:"repay_id,omitempty"`
}

// Settled is the data of payment.settled.
type Settled struct {
	MerchantID string `json:"merchant_id"`
	ChargeID   string `json:"charge_id"`
	BillID     string `json:"bill_id"`
	Status     string `json:"status"`
	Amount     int64  `json:"amount"`
	PGTxID     string `json:"pg_tx_id"`
}

// RefundResult is the data of payment.refund.succeeded and .failed.
type RefundResult struct {
	MerchantID    string `json:"merchant_id"`
	ChargeID      string `json:"charge_id"`
	RefundID      string `json:"refund_id"`
	Amount        int64  `json:"amount"`
	RefundedTotal int64  `json:"refunded_total"`
	Reason        string `json:"reason,omitempty"`
}

// RepayProcessed is the data of payment.repay.processed.
type RepayProcessed struct {
	MerchantID string `json:"merchant_id"`
	ChargeID   string `json:"charge_id"`
	RepayID    string `json:"repay_id"`
	OldBillID  string `json:"old_bill_id"`
	BillID     string `json:"bill_id"`
	Method     string `json:"method"`
}

// BillCancelled is the data of payment.bill.cancelled.
type BillCancelled struct {
	MerchantID string `json:"merchant_id"`
	ChargeID   string `json:"charge_id"`
	BillID     string `json:"bill_id"`
}

// Rejection reasons of payment.request.rejected.
const (
	RejectInvalid             = "invalid"
	RejectUnknownCharge       = "unknown_charge"
	RejectAmountExceedsPaid   = "amount_exceeds_paid"
	RejectIdempotencyConflict = "idempotency_conflict"
	RejectInvalidState        = "invalid_state"
	// RejectNotSupported: the configured PG cannot do it (a partial refund
	// where the PG cancels only in full).
	RejectNotSupported = "not_supported"
	// RejectUnauthenticated: the request's merchant signs its requests
	// (PAYFLOW_MERCHANT_KEYS) and this one carries no valid signature.
	RejectUnauthenticated = "unauthenticated"
)

// Rejected is the data of payment.request.rejected.
type Rejected struct {
	MerchantID     string `json:"merchant_id"`
	ChargeID       string `json:"charge_id"`
	Reason         string `json:"reason"`
	Detail         string `json:"detail"`
	RequestEventID string `json:"request_event_id"`
}

package payflow

import (
	"errors"
	"time"
)

// Charge is a charge with its current bill, as stored.
type Charge struct {
	PK             int64
	MerchantID     string
	ChargeID       string
	RequestHash    []byte
	RequestEventID string
	Amount         int64
	OrderName      string
	MemberID       string
	Phone          string
	CustomerName   string
	State          ChargeState
	Attempts       int
	LeaseOwner     string
	LeaseUntil     time.Time
	Bill           Bill
}

// Bill is one bill of a charge.
type Bill struct {
	BillID         string
	ChargePK       int64
	Method         Method
	MethodID       string // empty unless auto-pay
	FallbackReason FallbackReason
	Amount         int64
	Status         BillStatus
	PGTxID         string
	RepayPK        int64 // the re-payment this bill belongs to, or 0
}

// NewCharge is a charge about to be placed, with the first bill the
// decision chose for it.
type NewCharge struct {
	Request        ChargeRequest
	RequestHash    []byte
	RequestEventID string
	Bill           Bill
	LeaseOwner     string
	Lease          time.Duration
}

// PlaceResult is how a placing charge's current bill ended.
type PlaceResult struct {
	ChargePK      int64
	BillID        string
	ChargeState   ChargeState // requested or place_failed
	BillStatus    BillStatus  // requested (or already settled) or abandoned
	PGTxID        string
	FailureReason string
	Attempts      int
	RepayPK       int64 // the bill's re-payment, finished along with it
	// Owner is the worker recording it; it must still hold the lease.
	Owner string
}

// Holder is one taking of a charge's lease: the process that took it and
// the lease generation that taking set (every taking raises the charge's).
// A request is judged under one taking, and what it was judged to be is
// written only while that same taking holds the charge: neither an expiry
// taken up by another process nor a later taking by the same one (its
// sweeper claiming the charge again while the judgement stalled) lets an
// older judgement through.
type Holder struct {
	Owner string
	Gen   int64
}

// ErrNotFound is returned when the charge, bill, refund, re-payment or
// payment method asked for does not exist (or belongs to another merchant
// or member: callers must not learn the difference).
var ErrNotFound = errors.New("payflow: not found")

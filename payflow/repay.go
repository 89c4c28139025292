package payflow

import "time"

// Repay is a re-payment: the refund of what is left of a paid bill, then a
// new bill.
type Repay struct {
	PK          int64
	MerchantID  string
	RepayID     string
	ChargePK    int64
	OldBillID   string
	NewBillID   string
	Amount      int64
	RequestHash []byte
	Step        RepayStep
	RefundPK    int64 // its refund step, 0 when nothing was left to refund
}

// RepayStep is where a re-payment stands:
//
//	refunding ──► placing ──► done     (the new bill was accepted)
//	    │            └──────► failed   (the new bill could not be placed)
//	    └──► failed                    (the refund failed, or the charge
//	                                    moved on meanwhile: superseded)
//
// A re-payment with nothing left to refund goes from refunding to placing
// in the transaction that stores it.
type RepayStep string

const (
	RepayRefunding RepayStep = "refunding"
	RepayPlacing   RepayStep = "placing"
	RepayDone      RepayStep = "done"
	RepayFailed    RepayStep = "failed"
)

// NewRepay is a re-payment about to start, judged under Holder's taking of
// the charge's lease: it is stored only while that taking holds, and its
// new bill is then leased to Holder.Owner for Lease.
type NewRepay struct {
	MerchantID  string
	RepayID     string
	ChargePK    int64
	OldBillID   string
	Amount      int64
	RequestHash []byte
	// Bill is the new bill, placed at once when nothing of the old bill is
	// left to refund; otherwise the refund step's success places a bill of
	// its own decision.
	Bill   Bill
	Holder Holder
	Lease  time.Duration
}

// RepayNext is a re-payment's new bill, to be stored and leased for
// placing.
type RepayNext struct {
	RepayPK int64
	Bill    Bill
	Owner   string
	Lease   time.Duration
}

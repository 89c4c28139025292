package payflow

// ChargeState is where a charge stands. A charge's state follows its current
// bill: a re-payment puts a paid charge back to placing under a new bill.
//
//	placing ──► requested ──► paid ──(repay)──► placing …
//	   │            │          └──(full refund)──► refunded
//	   │            ├──► failed
//	   ▼            ├──► cancelled
//	place_failed    └──► expired
type ChargeState string

const (
	// StatePlacing: a bill id is stored and the PG is being (or may have
	// been) asked for it. The outcome is unknown until it leaves this state.
	StatePlacing ChargeState = "placing"
	// StateRequested: the PG accepted the bill; its result comes by webhook
	// or reconciliation.
	StateRequested ChargeState = "requested"
	// StatePlaceFailed: the PG could not be asked (retries exhausted or a
	// non-retriable error). Terminal.
	StatePlaceFailed ChargeState = "place_failed"
	StatePaid        ChargeState = "paid"
	// StateRefunded: the paid amount was refunded in full.
	StateRefunded  ChargeState = "refunded"
	StateFailed    ChargeState = "failed"
	StateCancelled ChargeState = "cancelled"
	StateExpired   ChargeState = "expired"
)

// SettleStatus is the final result of a bill reported by the PG.
type SettleStatus string

const (
	SettlePaid      SettleStatus = "paid"
	SettleFailed    SettleStatus = "failed"
	SettleCancelled SettleStatus = "cancelled"
	SettleExpired   SettleStatus = "expired"
)

// ParseSettleStatus accepts only the four final statuses.
func ParseSettleStatus(s string) (SettleStatus, bool) {
	switch st := SettleStatus(s); st {
	case SettlePaid, SettleFailed, SettleCancelled, SettleExpired:
		return st, true
	}
	return "", false
}

// ChargeState is the charge state a settled bill leaves its charge in.
func (s SettleStatus) ChargeState() ChargeState {
	switch s {
	case SettlePaid:
		return StatePaid
	case SettleFailed:
		return StateFailed
	case SettleCancelled:
		return StateCancelled
	}
	return StateExpired
}

// BillStatus is the life of one bill at the PG. A bill is settled at most
// once: once it leaves pending or requested it never changes again.
type BillStatus string

const (
	BillPending   BillStatus = "pending"   // stored; the PG call may or may not have happened
	BillRequested BillStatus = "requested" // the PG accepted it
	BillDeclined  BillStatus = "declined"  // the PG refused an auto-pay; a fallback bill follows
	BillAbandoned BillStatus = "abandoned" // never placed at the PG (retries exhausted)
	BillPaid      BillStatus = "paid"
	BillFailed    BillStatus = "failed"
	BillCancelled BillStatus = "cancelled"
	BillExpired   BillStatus = "expired"
)

// Settleable reports whether a webhook or reconciliation may still settle a
// bill in this status. An abandoned bill is settleable: if the PG took
// money for a bill payflow gave up on (its request was lost in flight),
// that payment is real and must be recorded, not ignored.
func (s BillStatus) Settleable() bool { return s == BillRequested || s == BillAbandoned }

// ContradictedBy reports whether the PG's word st contradicts this
// status: the PG reports paid a bill held final here and not paid
// (declined, failed, cancelled, expired). Nothing settles such a bill, but
// the customer's money may have been taken with no result here for it: an
// auto-pay that landed after its decline was recorded, a bill paid in the
// instant it was destroyed. An operator must refund or keep it.
func (s BillStatus) ContradictedBy(st SettleStatus) bool {
	return st == SettlePaid && s.Final() && s != BillPaid
}

// Final reports whether the bill will never change again.
func (s BillStatus) Final() bool {
	switch s {
	case BillPaid, BillFailed, BillCancelled, BillExpired, BillDeclined:
		return true
	}
	return false
}

package payflow

import (
	"errors"
	"fmt"
)

// ChargeEvent is something that happens to a charge: an input of the charge
// state machine. Its transitions are pure functions of the state (Next and
// the methods named after the events); the store applies their results
// under the charge's lock, and the worker asks them before it acts.
type ChargeEvent string

const (
	// EventAccept: the PG accepted the bill being placed.
	EventAccept ChargeEvent = "accept"
	// EventDecline: the PG refused an auto-pay bill; a KakaoTalk bill with
	// a new bill id is placed next, so the charge stays placing.
	EventDecline ChargeEvent = "decline"
	// EventFailPlacement: the bill could not be placed (retries exhausted,
	// a non-retriable error, a refused KakaoTalk bill).
	EventFailPlacement ChargeEvent = "fail_placement"
	// The PG's final result for the charge's current bill, by webhook or
	// reconciliation. A charge whose placement failed can still settle:
	// an abandoned bill the PG executed after all (BillStatus.Settleable
	// decides which bills may).
	EventSettlePaid      ChargeEvent = "settle_paid"
	EventSettleFailed    ChargeEvent = "settle_failed"
	EventSettleCancelled ChargeEvent = "settle_cancelled"
	EventSettleExpired   ChargeEvent = "settle_expired"
	// EventRefundPart: a refund that leaves part of the payment.
	EventRefundPart ChargeEvent = "refund_part"
	// EventRefundFull: a refund that brings the refunded total to the paid
	// amount.
	EventRefundFull ChargeEvent = "refund_full"
	// EventRepay: a re-payment places a new bill (after refunding what is
	// left of the paid one).
	EventRepay ChargeEvent = "repay"
	// EventCancel: the unpaid bill is destroyed at the PG.
	EventCancel ChargeEvent = "cancel"
)

// ChargeStates lists every charge state, in the order of the charge's life.
var ChargeStates = []ChargeState{
	StatePlacing, StateRequested, StatePlaceFailed, StatePaid, StateRefunded,
	StateFailed, StateCancelled, StateExpired,
}

// ChargeEvents lists every charge event.
var ChargeEvents = []ChargeEvent{
	EventAccept, EventDecline, EventFailPlacement,
	EventSettlePaid, EventSettleFailed, EventSettleCancelled, EventSettleExpired,
	EventRefundPart, EventRefundFull, EventRepay, EventCancel,
}

// ErrTransition is what every refused transition matches (errors.Is).
var ErrTransition = errors.New("transition not allowed")

// TransitionError is a refused transition: Event cannot happen to a charge
// in state From. Its message is fit for a rejection's detail.
type TransitionError struct {
	From  ChargeState
	Event ChargeEvent
}

func (e *TransitionError) Error() string {
	switch e.Event {
	case EventRepay:
		return "charge is " + string(e.From) + "; only a paid charge can be re-paid"
	case EventCancel:
		return "charge is " + string(e.From) + "; only an unpaid bill can be cancelled"
	case EventRefundPart, EventRefundFull:
		return "charge is " + string(e.From) + ", not paid"
	}
	return fmt.Sprintf("charge is %s; %s is not allowed", e.From, e.Event)
}

// Is makes every TransitionError match ErrTransition.
func (e *TransitionError) Is(target error) bool { return target == ErrTransition }

// Next is the charge state machine: the state event leaves a charge in
// state s in, or a *TransitionError when the event cannot happen to it.
// A charge follows its current bill; final states change only through a
// new bill (a re-payment).
func (s ChargeState) Next(ev ChargeEvent) (ChargeState, error) {
	refuse := func() (ChargeState, error) { return s, &TransitionError{From: s, Event: ev} }
	switch ev {
	case EventAccept:
		if s == StatePlacing {
			return StateRequested, nil
		}
	case EventDecline:
		if s == StatePlacing {
			return StatePlacing, nil
		}
	case EventFailPlacement:
		if s == StatePlacing {
			return StatePlaceFailed, nil
		}
	case EventSettlePaid, EventSettleFailed, EventSettleCancelled, EventSettleExpired:
		if s == StateRequested || s == StatePlaceFailed {
			return settleStatusOf(ev).ChargeState(), nil
		}
	case EventRefundPart:
		if s == StatePaid {
			return StatePaid, nil
		}
	case EventRefundFull:
		if s == StatePaid {
			return StateRefunded, nil
		}
	case EventRepay:
		if s == StatePaid || s == StateRefunded {
			return StatePlacing, nil
		}
	case EventCancel:
		if s == StateRequested {
			return StateCancelled, nil
		}
	}
	return refuse()
}

// Accept is Next(EventAccept): placing → requested.
func (s ChargeState) Accept() (ChargeState, error) { return s.Next(EventAccept) }

// Decline is Next(EventDecline): placing stays placing, on a new bill.
func (s ChargeState) Decline() (ChargeState, error) { return s.Next(EventDecline) }

// FailPlacement is Next(EventFailPlacement): placing → place_failed.
func (s ChargeState) FailPlacement() (ChargeState, error) { return s.Next(EventFailPlacement) }

// Settle moves a charge to its current bill's final status.
func (s ChargeState) Settle(st SettleStatus) (ChargeState, error) { return s.Next(st.Event()) }

// Refund is a refund's success: full when the refunded total reaches the
// paid amount (paid → refunded), else the charge stays paid.
func (s ChargeState) Refund(full bool) (ChargeState, error) {
	if full {
		return s.Next(EventRefundFull)
	}
	return s.Next(EventRefundPart)
}

// Repay is Next(EventRepay): a paid or refunded charge places a new bill.
func (s ChargeState) Repay() (ChargeState, error) { return s.Next(EventRepay) }

// Cancel is Next(EventCancel): a requested (unpaid) bill is destroyed.
func (s ChargeState) Cancel() (ChargeState, error) { return s.Next(EventCancel) }

// Event is the charge event of a bill settling with this status.
func (s SettleStatus) Event() ChargeEvent {
	switch s {
	case SettlePaid:
		return EventSettlePaid
	case SettleFailed:
		return EventSettleFailed
	case SettleCancelled:
		return EventSettleCancelled
	case SettleExpired:
		return EventSettleExpired
	}
	return ChargeEvent("settle_" + string(s)) // no such event: refused
}

func settleStatusOf(ev ChargeEvent) SettleStatus {
	switch ev {
	case EventSettlePaid:
		return SettlePaid
	case EventSettleFailed:
		return SettleFailed
	case EventSettleCancelled:
		return SettleCancelled
	}
	return SettleExpired
}

package checker

import (
	"encoding/json"
	"fmt"
	"sort"

	"github.com/segmentio/kafka-go"

	"github.com/payflow/payflow/events"
)

// Request is one request event as it was published to payment.requests:
// the parts the request invariants need.
type Request struct {
	EventID    string
	Type       string // events.Type*Requested
	MerchantID string
	ChargeID   string
	RefundID   string // refunds
	RepayID    string // re-payments
	Amount     int64  // charges and refunds; re-payments (0: the original amount)
}

// ParseRequests reads the request events out of payment.requests's
// messages. What is not a request event at all (unparseable, dead-lettered
// by payflow) is skipped; a request whose data breaks the contract is kept
// with what could be read, since payflow owes it a rejection.
func ParseRequests(msgs []kafka.Message) []Request {
	var out []Request
	for _, m := range msgs {
		headers := make([]events.Header, len(m.Headers))
		for i, h := range m.Headers {
			headers[i] = events.Header(h)
		}
		env, err := events.DecodeMessage(m.Value, headers) // either content mode, as payflow reads it
		if err != nil {
			continue
		}
		var d struct {
			MerchantID string `json:"merchant_id"`
			ChargeID   string `json:"charge_id"`
			RefundID   string `json:"refund_id"`
			RepayID    string `json:"repay_id"`
			Amount     int64  `json:"amount"`
		}
		_ = json.Unmarshal(env.Data, &d) // partial on a type error: payflow rejects it as invalid
		out = append(out, Request{EventID: env.ID, Type: env.Type, MerchantID: d.MerchantID, ChargeID: d.ChargeID,
			RefundID: d.RefundID, RepayID: d.RepayID, Amount: d.Amount})
	}
	return out
}

// RequestReport is the outcome of CheckRequests.
type RequestReport struct {
	// Requests counts distinct request events (by event id) per type.
	Requests map[string]int
	// Outcomes counts how the requests ended, as "<kind> <outcome>":
	// "cancel cancelled", "refund succeeded", "repay rejected:invalid_state"…
	Outcomes   map[string]int
	Violations []string
}

// OK reports whether no invariant was violated.
func (r RequestReport) OK() bool { return len(r.Violations) == 0 }

func (r *RequestReport) violate(format string, a ...any) {
	if len(r.Violations) < 100 {
		r.Violations = append(r.Violations, fmt.Sprintf(format, a...))
	}
}

// result is one distinct event of the result topic, with the position of
// its first copy there (all events of a charge share one partition, so
// offsets order them).
type result struct {
	ID, Type                             string
	MerchantID, ChargeID, BillID         string
	OldBillID, RefundID, RepayID, Reason string
	RequestEventID                       string
	partition                            int
	offset                               int64
}

func (e result) charge() string { return e.MerchantID + "/" + e.ChargeID }

// before reports whether e was published before o on their partition.
func (e result) before(o result) bool { return e.partition == o.partition && e.offset < o.offset }

// CheckRequests verifies, from the outside, that every request event got
// its one result and that no request moved money it must not have. reqs
// are the requests as published (ParseRequests of payment.requests; a
// request published twice with one event id counts once), ledger the PG's
// executed operations, published the result topic's content. It needs no
// database, so `payflow check --requests` and the chaos test run it alike.
//
// The invariants:
//
//   - a charge request has a placement result (payment.charge.processed or
//     .failed) for its charge, or a rejection naming its event id;
//   - a cancel has payment.bill.cancelled for its charge or one rejection
//     naming its event id: never both, never none; a bill cancelled here
//     was destroyed at the PG, and no bill of a charge whose cancel was
//     rejected was destroyed there (this assumes no cancel follows a
//     re-payment of the same charge);
//   - a refund id has at most one payment.refund.succeeded or .failed
//     (however often it was requested, under however many event ids); each
//     of its requests is either rejected once, a re-send (same content,
//     new event id) of a rejected one, or covered by that result;
//     a refund id whose every request was rejected has no result, and no
//     request is rejected after its refund id had its result (a re-send is
//     not judged again; idempotency conflicts aside);
//   - a re-payment id has at most one payment.repay.processed and at most
//     one refund step result ("repay:<id>"), the same rules of rejection
//     as refunds, and no paid bill is re-paid twice (two repay.processed
//     with one old_bill_id);
//   - per charge, in the PG's order of operations, the money taken (bills
//     settled paid) minus the money refunded never exceeds the largest
//     amount of the charge's bills at the PG and never goes below zero;
//     money moved for a bill that no published event names is reported.
//
// A re-payment's refund step is published as refund "repay:<x>"; merchants'
// refund ids may not start with "repay:" (payflow rejects them), so the two
// are never confused here.
func CheckRequests(reqs []Request, ledger []LedgerEntry, published []kafka.Message) RequestReport {
	r := RequestReport{Requests: map[string]int{}, Outcomes: map[string]int{}}

	// Results, deduplicated by event id, at their first position.
	byID := map[string]result{}
	for _, m := range published {
		var e struct {
			ID   string `json:"id"`
			Type string `json:"type"`
			Data struct {
				MerchantID     string `json:"merchant_id"`
				ChargeID       string `json:"charge_id"`
				BillID         string `json:"bill_id"`
				OldBillID      string `json:"old_bill_id"`
				RefundID       string `json:"refund_id"`
				RepayID        string `json:"repay_id"`
				Reason         string `json:"reason"`
				RequestEventID string `json:"request_event_id"`
			} `json:"data"`
		}
		if err := json.Unmarshal(m.Value, &e); err != nil {
			continue // Check reports it
		}
		if prev, ok := byID[e.ID]; ok && (prev.partition != m.Partition || prev.offset <= m.Offset) {
			continue
		}
		d := e.Data
		byID[e.ID] = result{ID: e.ID, Type: e.Type, MerchantID: d.MerchantID, ChargeID: d.ChargeID, BillID: d.BillID,
			OldBillID: d.OldBillID, RefundID: d.RefundID, RepayID: d.RepayID, Reason: d.Reason, RequestEventID: d.RequestEventID,
			partition: m.Partition, offset: m.Offset}
	}
	all := make([]result, 0, len(byID))
	for _, e := range byID {
		all = append(all, e)
	}
	sort.Slice(all, func(i, j int) bool {
		if all[i].partition != all[j].partition {
			return all[i].partition < all[j].partition
		}
		return all[i].offset < all[j].offset
	})

	rejections := map[string][]result{} // by request event id
	placements := map[string][]result{} // charge.processed and .failed, by charge
	cancelled := map[string][]result{}  // bill.cancelled, by charge
	refundRes := map[string][]result{}  // refund.succeeded and .failed, by merchant/refund id
	repaid := map[string][]result{}     // repay.processed, by merchant/repay id
	repaidBill := map[string][]result{} // repay.processed, by old bill
	billCharge := map[string]string{}   // bill id → merchant/charge
	for _, e := range all {
		if e.BillID != "" {
			billCharge[e.BillID] = e.charge()
		}
		switch e.Type {
		case events.TypeRejected:
			rejections[e.RequestEventID] = append(rejections[e.RequestEventID], e)
		case events.TypeChargeProcessed, events.TypeChargeFailed:
			placements[e.charge()] = append(placements[e.charge()], e)
		case events.TypeBillCancelled:
			cancelled[e.charge()] = append(cancelled[e.charge()], e)
		case events.TypeRefundSucceeded, events.TypeRefundFailed:
			k := e.MerchantID + "/" + e.RefundID
			refundRes[k] = append(refundRes[k], e)
		case events.TypeRepayProcessed:
			k := e.MerchantID + "/" + e.RepayID
			repaid[k] = append(repaid[k], e)
			repaidBill[e.OldBillID] = append(repaidBill[e.OldBillID], e)
			if e.OldBillID != "" {
				billCharge[e.OldBillID] = e.charge()
			}
		}
	}

	// Requests, once per event id, grouped by what they name.
	seen := map[string]bool{}
	var charges, cancels []Request
	refunds, repays := map[string][]Request{}, map[string][]Request{}
	var refundKeys, repayKeys []string
	for _, q := range reqs {
		if seen[q.EventID] {
			continue
		}
		seen[q.EventID] = true
		r.Requests[q.Type]++
		switch q.Type {
		case events.TypeChargeRequested:
			charges = append(charges, q)
		case events.TypeCancelRequested:
			cancels = append(cancels, q)
		case events.TypeRefundRequested:
			k := q.MerchantID + "/" + q.RefundID
			if refunds[k] == nil {
				refundKeys = append(refundKeys, k)
			}
			refunds[k] = append(refunds[k], q)
		case events.TypeRepayRequested:
			k := q.MerchantID + "/" + q.RepayID
			if repays[k] == nil {
				repayKeys = append(repayKeys, k)
			}
			repays[k] = append(repays[k], q)
		}
	}
	charge := func(q Request) string { return q.MerchantID + "/" + q.ChargeID }
	rejectedOnce := func(kind string, q Request) []result {
		rej := rejections[q.EventID]
		if len(rej) > 1 {
			r.violate("%s request %s (charge %s) was rejected %d times", kind, q.EventID, charge(q), len(rej))
		}
		return rej
	}

	for _, q := range charges {
		rej := rejectedOnce("charge", q)
		switch {
		case len(rej) > 0:
			r.Outcomes["charge rejected:"+rej[0].Reason]++
		case len(placements[charge(q)]) > 0:
			r.Outcomes["charge "+placements[charge(q)][0].Type]++
		default:
			r.violate("charge request %s (charge %s) has no result: no placement result, no rejection", q.EventID, charge(q))
		}
	}

	// Cancels: the bill cancelled or the request rejected, one of the two.
	rejectedCancel := map[string]string{} // charge → a rejected cancel's event id
	for _, q := range cancels {
		rej := rejectedOnce("cancel", q)
		c := cancelled[charge(q)]
		switch {
		case len(rej) == 0 && len(c) == 0:
			r.violate("cancel request %s (charge %s) has no result: no payment.bill.cancelled, no rejection", q.EventID, charge(q))
		case len(rej) > 0 && len(c) > 0:
			r.violate("cancel request %s (charge %s) was rejected (%s) and its bill %s cancelled", q.EventID, charge(q), rej[0].Reason, c[0].BillID)
		case len(rej) > 0:
			r.Outcomes["cancel rejected:"+rej[0].Reason]++
		default:
			r.Outcomes["cancel cancelled"]++
		}
		if len(rej) > 0 {
			rejectedCancel[charge(q)] = q.EventID
		}
	}
	destroyed := map[string]bool{}
	for _, e := range ledger {
		if e.Op != "destroy" || e.Outcome != "cancelled" {
			continue
		}
		destroyed[e.BillID] = true
		k, ok := billCharge[e.BillID]
		switch {
		case !ok:
			r.violate("bill %s was destroyed at the PG, but no published event names its charge", e.BillID)
		case rejectedCancel[k] != "":
			r.violate("bill %s of charge %s was destroyed at the PG although its cancel %s was rejected", e.BillID, k, rejectedCancel[k])
		}
	}
	for _, e := range all {
		if e.Type == events.TypeBillCancelled && !destroyed[e.BillID] {
			r.violate("payment.bill.cancelled for bill %s (charge %s), which the PG never destroyed", e.BillID, e.charge())
		}
	}

	// Refunds and re-payments: one result per id, each request either
	// rejected once or covered by it, never both.
	// A request re-sent under a new event id with the same content is the
	// same request: payflow replays its first outcome, a rejection
	// included, and writes nothing new for the re-sent event.
	content := func(q Request) string { return fmt.Sprintf("%s/%d", charge(q), q.Amount) }
	judged := func(kind, id string, qs []Request, results []result) {
		rejectedContent := map[string]bool{}
		for _, q := range qs {
			if len(rejections[q.EventID]) > 0 {
				rejectedContent[content(q)] = true
			}
		}
		allRejected := true
		for _, q := range qs {
			rej := rejectedOnce(kind, q)
			if len(rej) == 0 && len(results) == 0 && rejectedContent[content(q)] {
				r.Outcomes[kind+" re-sent after its rejection"]++
				continue
			}
			if len(rej) == 0 {
				allRejected = false
				if len(results) == 0 {
					r.violate("%s request %s (%s %s, charge %s) has no result", kind, q.EventID, kind, id, charge(q))
				}
				continue
			}
			r.Outcomes[kind+" rejected:"+rej[0].Reason]++
			if len(results) > 0 && rej[0].Reason != events.RejectIdempotencyConflict && results[0].before(rej[0]) {
				r.violate("%s request %s (charge %s) was rejected (%s) after %s %s had its result %s: judged again",
					kind, q.EventID, charge(q), rej[0].Reason, kind, id, results[0].Type)
			}
		}
		if len(results) > 0 && allRejected {
			r.violate("%s %s (charge %s) was rejected every time it was requested, yet has %s", kind, id, charge(qs[0]), results[0].Type)
		}
	}
	for _, k := range refundKeys {
		qs := refunds[k]
		res := refundRes[k]
		judged("refund", qs[0].RefundID, qs, res)
		if n := count(res, events.TypeRefundSucceeded); n > 1 {
			r.violate("refund %s (charge %s) succeeded %d times", qs[0].RefundID, charge(qs[0]), n)
		} else if len(res) > 1 {
			r.violate("refund %s (charge %s) has %d results", qs[0].RefundID, charge(qs[0]), len(res))
		}
		if len(res) > 0 {
			r.Outcomes["refund "+res[0].Type]++
		}
	}
	for _, k := range repayKeys {
		qs := repays[k]
		id := qs[0].RepayID
		step := refundRes[qs[0].MerchantID+"/repay:"+id]
		done := repaid[k]
		res := append(append([]result(nil), step...), done...)
		sort.Slice(res, func(i, j int) bool { return res[i].before(res[j]) })
		if len(res) == 0 {
			// Nothing left to refund and the new bill could not be
			// placed: the re-payment's only result is charge.failed.
			res = laterFailures(placements[charge(qs[0])])
		}
		judged("repay", id, qs, res)
		if len(done) > 1 {
			r.violate("re-payment %s (charge %s) has %d payment.repay.processed", id, charge(qs[0]), len(done))
		}
		if n := count(step, events.TypeRefundSucceeded); n > 1 {
			r.violate("re-payment %s (charge %s) refunded its old bill %d times", id, charge(qs[0]), n)
		}
		switch {
		case len(done) > 0:
			r.Outcomes["repay processed"]++
		case len(step) > 0:
			r.Outcomes["repay "+step[0].Type]++
		}
	}
	for bill, rs := range repaidBill {
		if len(rs) > 1 {
			r.violate("bill %s (charge %s) was re-paid %d times (re-payments %s and %s)", bill, rs[0].charge(), len(rs), rs[0].RepayID, rs[1].RepayID)
		}
	}

	// Money per charge, in the PG's order: taken minus refunded stays
	// within the charge's largest bill and never goes negative.
	limit := map[string]int64{}
	for _, e := range ledger {
		if (e.Op == "auto_pay" || e.Op == "kakao_bill") && e.Outcome == "accepted" {
			if k, ok := billCharge[e.BillID]; ok {
				limit[k] = max(limit[k], e.Amount)
			}
		}
	}
	net := map[string]int64{}
	reported := map[string]bool{}
	for _, e := range ledger {
		var delta int64
		switch {
		case e.Op == "settle" && e.Outcome == "paid":
			delta = e.Amount
		case e.Op == "refund" && e.Outcome == "refunded":
			delta = -e.Amount
		default:
			continue
		}
		k, ok := billCharge[e.BillID]
		if !ok {
			r.violate("the PG moved %d for bill %s (%s %s), but no published event names its charge", delta, e.BillID, e.Op, e.Outcome)
			continue
		}
		net[k] += delta
		switch {
		case reported[k]:
		case net[k] > limit[k]:
			reported[k] = true
			r.violate("charge %s: the PG holds %d of the customer's money after %s %s of bill %s, more than its largest bill (%d)",
				k, net[k], e.Op, e.Outcome, e.BillID, limit[k])
		case net[k] < 0:
			reported[k] = true
			r.violate("charge %s: the PG refunded %d more than it took, after refund of bill %s", k, -net[k], e.BillID)
		}
	}
	return r
}

func count(rs []result, typ string) int {
	n := 0
	for _, e := range rs {
		if e.Type == typ {
			n++
		}
	}
	return n
}

// laterFailures are the placement failures of a charge published after its
// first placement result: those of re-payments' new bills.
func laterFailures(placements []result) []result {
	var out []result
	for i, e := range placements {
		if i > 0 && e.Type == events.TypeChargeFailed {
			out = append(out, e)
		}
	}
	return out
}

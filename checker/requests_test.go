package checker_test

import (
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/payflow/payflow/checker"
	"github.com/payflow/payflow/events"
)

// run is a run's published requests, result topic and PG ledger, built in
// the order things happened.
type run struct {
	reqs   []checker.Request
	topic  []kafka.Message
	ledger []checker.LedgerEntry
}

// result publishes a result event on partition 0 (a charge's events share
// one partition).
func (r *run) result(id, typ, charge string, data any) {
	v, err := events.Encode(id, typ, charge, time.Now(), data)
	if err != nil {
		panic(err)
	}
	r.topic = append(r.topic, kafka.Message{Partition: 0, Offset: int64(len(r.topic)), Value: v})
}

func (r *run) request(q checker.Request) {
	if q.MerchantID == "" {
		q.MerchantID = "m"
	}
	r.reqs = append(r.reqs, q)
}

func (r *run) pg(op, bill string, amount int64, outcome string) {
	r.ledger = append(r.ledger, checker.LedgerEntry{Op: op, BillID: bill, Amount: amount, Outcome: outcome})
}

// charge is a charge request whose bill was placed (and, if paid, paid at
// the PG).
func (r *run) charge(id, bill string, amount int64, paid bool) {
	r.request(checker.Request{EventID: "charge-" + id, Type: events.TypeChargeRequested, ChargeID: id, Amount: amount})
	r.pg("kakao_bill", bill, amount, "accepted")
	r.result("processed-"+bill, events.TypeChargeProcessed, id, events.ChargeProcessed{MerchantID: "m", ChargeID: id, BillID: bill, Method: "kakao_bill"})
	if paid {
		r.pg("settle", bill, amount, "paid")
		r.result("settled-"+bill, events.TypeSettled, id, events.Settled{MerchantID: "m", ChargeID: id, BillID: bill, Status: "paid", Amount: amount})
	}
}

func (r *run) reject(id, charge, requestEventID, reason string) {
	r.result(id, events.TypeRejected, charge, events.Rejected{MerchantID: "m", ChargeID: charge, Reason: reason, RequestEventID: requestEventID})
}

func (r *run) refunded(id, typ, charge, refundID, bill string, amount int64) {
	if typ == events.TypeRefundSucceeded {
		r.pg("refund", bill, amount, "refunded")
	}
	r.result(id, typ, charge, events.RefundResult{MerchantID: "m", ChargeID: charge, RefundID: refundID, Amount: amount})
}

func (r *run) repaid(id, charge, repayID, oldBill, bill string, amount int64) {
	r.pg("kakao_bill", bill, amount, "accepted")
	r.result(id, events.TypeRepayProcessed, charge, events.RepayProcessed{MerchantID: "m", ChargeID: charge, RepayID: repayID, OldBillID: oldBill, BillID: bill, Method: "kakao_bill"})
}

func (r *run) cancelled(charge, bill string) {
	r.result("cancelled-"+bill, events.TypeBillCancelled, charge, events.BillCancelled{MerchantID: "m", ChargeID: charge, BillID: bill})
}

func TestRequestsOfACleanRunHaveNoViolations(t *testing.T) {
	var r run
	// c1: a refund rejected before the bill was paid and re-sent under a
	// new event id (and once more under that id); then a re-payment, and
	// a second one that waited and was refused.
	r.charge("c1", "b1", 1000, false)
	r.request(checker.Request{EventID: "e-r1", Type: events.TypeRefundRequested, ChargeID: "c1", RefundID: "r1", Amount: 400})
	r.reject("rej-r1", "c1", "e-r1", events.RejectInvalidState)
	r.pg("settle", "b1", 1000, "paid")
	r.result("settled-b1", events.TypeSettled, "c1", events.Settled{MerchantID: "m", ChargeID: "c1", BillID: "b1", Status: "paid", Amount: 1000})
	// The same request re-sent later is replayed as rejected (no new
	// result); one of other content under the same id is a new request.
	r.request(checker.Request{EventID: "e-r1-resent", Type: events.TypeRefundRequested, ChargeID: "c1", RefundID: "r1", Amount: 400})
	for range 2 {
		r.request(checker.Request{EventID: "e-r1b", Type: events.TypeRefundRequested, ChargeID: "c1", RefundID: "r1", Amount: 300})
	}
	r.refunded("refund-r1", events.TypeRefundSucceeded, "c1", "r1", "b1", 300)
	r.request(checker.Request{EventID: "e-p1", Type: events.TypeRepayRequested, ChargeID: "c1", RepayID: "p1"})
	r.request(checker.Request{EventID: "e-p1b", Type: events.TypeRepayRequested, ChargeID: "c1", RepayID: "p1"}) // same content, new id
	r.request(checker.Request{EventID: "e-p2", Type: events.TypeRepayRequested, ChargeID: "c1", RepayID: "p2"})
	r.refunded("refund-p1", events.TypeRefundSucceeded, "c1", "repay:p1", "b1", 700)
	r.repaid("repaid-p1", "c1", "p1", "b1", "b1n", 1000)
	r.reject("rej-p2", "c1", "e-p2", events.RejectInvalidState)
	r.pg("settle", "b1n", 1000, "paid")
	r.result("settled-b1n", events.TypeSettled, "c1", events.Settled{MerchantID: "m", ChargeID: "c1", BillID: "b1n", Status: "paid", Amount: 1000})
	r.topic = append(r.topic, r.topic[len(r.topic)-3]) // at least once: a result published again

	// c2: cancelled while placing (waited, then destroyed); c3: paid
	// before its cancel, which is refused.
	r.request(checker.Request{EventID: "e-x2", Type: events.TypeCancelRequested, ChargeID: "c2"})
	r.charge("c2", "b2", 2000, false)
	r.pg("destroy", "b2", 2000, "cancelled")
	r.cancelled("c2", "b2")
	r.charge("c3", "b3", 3000, true)
	r.request(checker.Request{EventID: "e-x3", Type: events.TypeCancelRequested, ChargeID: "c3"})
	r.reject("rej-x3", "c3", "e-x3", events.RejectInvalidState)

	// c4: refunded in full, then re-paid with nothing left to refund,
	// whose new bill could not be placed.
	r.charge("c4", "b4", 500, true)
	r.request(checker.Request{EventID: "e-r4", Type: events.TypeRefundRequested, ChargeID: "c4", RefundID: "r4", Amount: 500})
	r.refunded("refund-r4", events.TypeRefundSucceeded, "c4", "r4", "b4", 500)
	r.request(checker.Request{EventID: "e-p4", Type: events.TypeRepayRequested, ChargeID: "c4", RepayID: "p4"})
	r.result("failed-b4n", events.TypeChargeFailed, "c4", events.ChargeFailed{MerchantID: "m", ChargeID: "c4", Reason: "pg unavailable"})

	rep := checker.CheckRequests(r.reqs, r.ledger, r.topic)
	if !rep.OK() {
		t.Fatalf("violations:\n%s", strings.Join(rep.Violations, "\n"))
	}
	if rep.Requests[events.TypeRefundRequested] != 4 || rep.Outcomes["cancel cancelled"] != 1 || rep.Outcomes["repay processed"] != 1 ||
		rep.Outcomes["repay rejected:invalid_state"] != 1 || rep.Outcomes["refund "+events.TypeRefundSucceeded] != 2 {
		t.Errorf("counts: %v %v", rep.Requests, rep.Outcomes)
	}
}

func TestEachRequestViolationIsFound(t *testing.T) {
	var r run
	// A charge request with nothing: lost.
	r.request(checker.Request{EventID: "e-lost", Type: events.TypeChargeRequested, ChargeID: "lost", Amount: 1000})

	// Cancels: none, both, and a bill destroyed after its cancel was
	// refused (cancelled here though never destroyed there, too).
	r.charge("v1", "bv1", 1000, false)
	r.request(checker.Request{EventID: "e-v1", Type: events.TypeCancelRequested, ChargeID: "v1"})
	r.charge("v2", "bv2", 1000, false)
	r.request(checker.Request{EventID: "e-v2", Type: events.TypeCancelRequested, ChargeID: "v2"})
	r.reject("rej-v2", "v2", "e-v2", events.RejectInvalidState)
	r.cancelled("v2", "bv2")
	r.charge("v3", "bv3", 1000, false)
	r.request(checker.Request{EventID: "e-v3", Type: events.TypeCancelRequested, ChargeID: "v3"})
	r.reject("rej-v3", "v3", "e-v3", events.RejectInvalidState)
	r.pg("destroy", "bv3", 1000, "cancelled")

	// Refunds: none; a re-send under a new event id refunded again; one
	// both rejected and executed; a re-send judged again after its
	// refund succeeded; a request rejected twice.
	r.charge("v5", "bv5", 1000, true)
	r.request(checker.Request{EventID: "e-v5", Type: events.TypeRefundRequested, ChargeID: "v5", RefundID: "rv5", Amount: 100})
	r.charge("v6", "bv6", 1000, true)
	r.request(checker.Request{EventID: "e-v6a", Type: events.TypeRefundRequested, ChargeID: "v6", RefundID: "rv6", Amount: 100})
	r.request(checker.Request{EventID: "e-v6b", Type: events.TypeRefundRequested, ChargeID: "v6", RefundID: "rv6", Amount: 100})
	r.refunded("refund-v6a", events.TypeRefundSucceeded, "v6", "rv6", "bv6", 100)
	r.refunded("refund-v6b", events.TypeRefundSucceeded, "v6", "rv6", "bv6", 100)
	r.charge("v7", "bv7", 1000, true)
	r.request(checker.Request{EventID: "e-v7", Type: events.TypeRefundRequested, ChargeID: "v7", RefundID: "rv7", Amount: 100})
	r.reject("rej-v7", "v7", "e-v7", events.RejectInvalidState)
	r.refunded("refund-v7", events.TypeRefundSucceeded, "v7", "rv7", "bv7", 100)
	r.charge("v8", "bv8", 1000, true)
	r.request(checker.Request{EventID: "e-v8a", Type: events.TypeRefundRequested, ChargeID: "v8", RefundID: "rv8", Amount: 100})
	r.refunded("refund-v8", events.TypeRefundSucceeded, "v8", "rv8", "bv8", 100)
	r.request(checker.Request{EventID: "e-v8b", Type: events.TypeRefundRequested, ChargeID: "v8", RefundID: "rv8", Amount: 100})
	r.reject("rej-v8b", "v8", "e-v8b", events.RejectAmountExceedsPaid)
	r.charge("v9", "bv9", 1000, false)
	r.request(checker.Request{EventID: "e-v9", Type: events.TypeRefundRequested, ChargeID: "v9", RefundID: "rv9", Amount: 100})
	r.reject("rej-v9a", "v9", "e-v9", events.RejectInvalidState)
	r.reject("rej-v9b", "v9", "e-v9", events.RejectInvalidState)

	// Re-payments: processed twice; processed although rejected; one paid
	// bill re-paid by two re-payments (the customer billed twice with
	// one refund: more money at the PG than the charge's largest bill);
	// one with no result.
	r.charge("v10", "bv10", 1000, true)
	r.request(checker.Request{EventID: "e-v10", Type: events.TypeRepayRequested, ChargeID: "v10", RepayID: "pv10"})
	r.refunded("refund-pv10", events.TypeRefundSucceeded, "v10", "repay:pv10", "bv10", 1000)
	r.repaid("repaid-pv10a", "v10", "pv10", "bv10", "bv10a", 1000)
	r.repaid("repaid-pv10b", "v10", "pv10", "bv10a", "bv10b", 1000)
	r.charge("v11", "bv11", 1000, false)
	r.request(checker.Request{EventID: "e-v11", Type: events.TypeRepayRequested, ChargeID: "v11", RepayID: "pv11"})
	r.reject("rej-v11", "v11", "e-v11", events.RejectInvalidState)
	r.repaid("repaid-pv11", "v11", "pv11", "bv11", "bv11n", 1000)
	r.charge("v12", "bv12", 1000, true)
	r.request(checker.Request{EventID: "e-v12a", Type: events.TypeRepayRequested, ChargeID: "v12", RepayID: "pv12a"})
	r.request(checker.Request{EventID: "e-v12b", Type: events.TypeRepayRequested, ChargeID: "v12", RepayID: "pv12b"})
	r.refunded("refund-pv12a", events.TypeRefundSucceeded, "v12", "repay:pv12a", "bv12", 1000)
	r.repaid("repaid-pv12a", "v12", "pv12a", "bv12", "bv12a", 1000)
	r.repaid("repaid-pv12b", "v12", "pv12b", "bv12", "bv12b", 1000)
	r.pg("settle", "bv12a", 1000, "paid")
	r.pg("settle", "bv12b", 1000, "paid")
	r.charge("v13", "bv13", 1000, true)
	r.request(checker.Request{EventID: "e-v13", Type: events.TypeRepayRequested, ChargeID: "v13", RepayID: "pv13"})

	// Money: refunded before anything was paid; money for a bill no
	// event names.
	r.charge("v14", "bv14", 1000, false)
	r.pg("refund", "bv14", 300, "refunded")
	r.pg("settle", "ghost-bill", 1000, "paid")

	rep := checker.CheckRequests(r.reqs, r.ledger, r.topic)
	all := strings.Join(rep.Violations, "\n")
	for _, want := range []string{
		"charge request e-lost (charge m/lost) has no result",
		"cancel request e-v1 (charge m/v1) has no result",
		"cancel request e-v2 (charge m/v2) was rejected (invalid_state) and its bill bv2 cancelled",
		"payment.bill.cancelled for bill bv2 (charge m/v2), which the PG never destroyed",
		"bill bv3 of charge m/v3 was destroyed at the PG although its cancel e-v3 was rejected",
		"refund request e-v5 (refund rv5, charge m/v5) has no result",
		"refund rv6 (charge m/v6) succeeded 2 times",
		"refund rv7 (charge m/v7) was rejected every time it was requested, yet has payment.refund.succeeded",
		"refund request e-v8b (charge m/v8) was rejected (amount_exceeds_paid) after refund rv8 had its result",
		"refund request e-v9 (charge m/v9) was rejected 2 times",
		"re-payment pv10 (charge m/v10) has 2 payment.repay.processed",
		"repay pv11 (charge m/v11) was rejected every time it was requested, yet has payment.repay.processed",
		"bill bv12 (charge m/v12) was re-paid 2 times",
		"charge m/v12: the PG holds 2000 of the customer's money after settle paid of bill bv12b, more than its largest bill (1000)",
		"repay request e-v13 (repay pv13, charge m/v13) has no result",
		"charge m/v14: the PG refunded 300 more than it took",
		"the PG moved 1000 for bill ghost-bill (settle paid), but no published event names its charge",
	} {
		if !strings.Contains(all, want) {
			t.Errorf("not reported: %q", want)
		}
	}
	if t.Failed() {
		t.Logf("report:\n%s", all)
	}
	if n := len(rep.Violations); n != 17 {
		t.Errorf("%d violations, want 17 (one per plant):\n%s", n, all)
	}
}

func TestParseRequestsSkipsWhatIsNoRequest(t *testing.T) {
	refund := []byte(`{"specversion":"1.0","id":"e1","source":"s","type":"payment.refund.requested","datacontenttype":"application/json",
		"data":{"merchant_id":"m","charge_id":"c","refund_id":"r","amount":"100"}}`)
	got := checker.ParseRequests([]kafka.Message{{Value: []byte("not json")}, {Value: refund}})
	if len(got) != 1 || got[0].EventID != "e1" || got[0].Type != events.TypeRefundRequested || got[0].RefundID != "r" || got[0].ChargeID != "c" {
		t.Fatalf("%+v", got)
	}
}

func TestParseRequestsReadsBinaryMode(t *testing.T) {
	m := kafka.Message{Value: []byte(`{"merchant_id":"m","charge_id":"c","amount":100}`), Headers: []kafka.Header{
		{Key: "ce_specversion", Value: []byte("1.0")}, {Key: "ce_id", Value: []byte("e2")}, {Key: "ce_source", Value: []byte("s")},
		{Key: "ce_type", Value: []byte(events.TypeChargeRequested)}, {Key: "content-type", Value: []byte("application/json")},
	}}
	got := checker.ParseRequests([]kafka.Message{m})
	if len(got) != 1 || got[0].EventID != "e2" || got[0].Type != events.TypeChargeRequested || got[0].ChargeID != "c" || got[0].Amount != 100 {
		t.Fatalf("%+v", got)
	}
}

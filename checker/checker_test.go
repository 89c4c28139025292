package checker_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/payflow/payflow/checker"
	"github.com/payflow/payflow/events"
	"github.com/payflow/payflow/internal/testdb"
	"github.com/payflow/payflow/outbox"
	"github.com/payflow/payflow/payflow"
	"github.com/payflow/payflow/store"
)

func charge(t *testing.T, st *store.Store, id, bill string, finish bool) outbox.Message {
	t.Helper()
	ctx := context.Background()
	req := payflow.ChargeRequest{MerchantID: "m", ChargeID: id, Amount: 1000, Currency: "KRW", OrderName: "o",
		Customer: payflow.Customer{Phone: "+821012345678", Name: "n"}}
	pk, _, err := st.CreateCharge(ctx, payflow.NewCharge{Request: req, RequestHash: req.Fingerprint(), RequestEventID: "e",
		Bill: payflow.Bill{BillID: bill, Method: payflow.MethodKakaoBill, Amount: 1000}, LeaseOwner: "w", Lease: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	v, _ := events.Encode(events.ID(bill), events.TypeChargeProcessed, id, time.Now(), events.ChargeProcessed{MerchantID: "m", ChargeID: id, BillID: bill})
	msg := outbox.Message{EventID: events.ID(bill), Topic: events.TopicEvents, Key: []byte(id), Value: v}
	if finish {
		if err := st.FinishPlacing(ctx, payflow.PlaceResult{ChargePK: pk, BillID: bill, ChargeState: payflow.StateRequested, BillStatus: payflow.BillRequested, Owner: "w"}, []outbox.Message{msg}); err != nil {
			t.Fatal(err)
		}
		if _, err := st.Pool.Exec(ctx, `UPDATE outbox SET published_at = now()`); err != nil {
			t.Fatal(err)
		}
	}
	return msg
}

func TestCleanRunHasNoViolations(t *testing.T) {
	st := testdb.New(t)
	m := charge(t, st, "c1", "b1", true)
	rep, err := checker.Check(context.Background(), st.Pool,
		[]checker.LedgerEntry{{Op: "kakao_bill", BillID: "b1", Outcome: "accepted"}},
		[]kafka.Message{{Value: m.Value}, {Value: m.Value}}) // a redelivery is fine
	if err != nil || !rep.OK() {
		t.Fatalf("%v %v", rep.Violations, err)
	}
}

func TestEachViolationIsFound(t *testing.T) {
	st := testdb.New(t)
	ctx := context.Background()
	ok := charge(t, st, "c1", "b1", true)
	charge(t, st, "stuck", "b2", false) // never finished, no result
	forged, _ := events.Encode(events.ID("x"), events.TypeChargeProcessed, "ghost", time.Now(), events.ChargeProcessed{MerchantID: "m", ChargeID: "ghost"})
	// An open bill marked settled, as no statement of payflow's writes it.
	if _, err := st.Pool.Exec(ctx, `UPDATE bills SET settled_at = now() WHERE bill_id = 'b2'`); err != nil {
		t.Fatal(err)
	}
	if err := outbox.Insert(ctx, st.Pool, outbox.Message{EventID: events.ID("late"), Topic: events.TopicEvents, Key: []byte("c1"), Value: []byte("{}")}); err != nil {
		t.Fatal(err)
	}
	rep, err := checker.Check(ctx, st.Pool,
		[]checker.LedgerEntry{
			{Op: "kakao_bill", BillID: "b1", Outcome: "accepted"},
			{Op: "kakao_bill", BillID: "b1", Outcome: "accepted"},
			{Op: "kakao_bill", BillID: "unknown-bill", Outcome: "accepted"},
			{Op: "settle", BillID: "b1", Outcome: "paid"}, // the PG says paid; here it is only requested
		},
		[]kafka.Message{{Value: ok.Value}, {Value: forged}})
	if err != nil {
		t.Fatal(err)
	}
	all := strings.Join(rep.Violations, "\n")
	for _, want := range []string{
		"m/stuck is still placing",
		"m/stuck has 0 placement results",
		"bill b1 was charged 2 times",
		"unknown-bill, which the database does not know",
		"was never published",
		"published but the database does not hold it",
		"the PG settled bill b1 as paid; the database has it requested",
		"bill b2 is pending, yet marked settled",
	} {
		if !strings.Contains(all, want) {
			t.Errorf("not reported: %q\nreport:\n%s", want, all)
		}
	}
}

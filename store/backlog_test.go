package store_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/payflow/payflow/outbox"
	"github.com/payflow/payflow/payflow"
	"github.com/payflow/payflow/store"
)

// Backlog counts unpublished outbox rows, charges placing past their lease
// and charges awaiting settlement past the age given, by the store's clock.
func TestBacklog(t *testing.T) {
	ctx := context.Background()
	clock := &fakeClock{now: time.Date(2001, 1, 1, 0, 0, 0, 0, time.UTC)}
	st := openWithClock(t, clock)
	want := func(step string, w store.Backlog) {
		t.Helper()
		got, err := st.Backlog(ctx, time.Hour)
		if err != nil || got != w {
			t.Fatalf("%s: backlog %+v, %v; want %+v", step, got, err, w)
		}
	}
	create := func(charge string) int64 {
		t.Helper()
		req := payflow.ChargeRequest{MerchantID: "m1", ChargeID: charge, Amount: 700, Currency: "KRW", OrderName: "o",
			Customer: payflow.Customer{Phone: "+821012345678"}}
		pk, _, err := st.CreateCharge(ctx, payflow.NewCharge{Request: req, RequestHash: req.Fingerprint(), RequestEventID: "e-" + charge,
			Bill:       payflow.Bill{BillID: "b-" + charge, Method: payflow.MethodKakaoBill, FallbackReason: payflow.FallbackNotMember, Amount: 700},
			LeaseOwner: "w1", Lease: time.Minute})
		if err != nil {
			t.Fatal(err)
		}
		return pk
	}
	want("empty", store.Backlog{})

	create("c1")
	c2 := create("c2")
	want("inside the lease", store.Backlog{})
	clock.Advance(time.Minute + time.Second)
	want("past the lease", store.Backlog{PlacingPastLease: 2})

	msg := outbox.Message{EventID: uuid.NewString(), Topic: "payment.events", Key: []byte("c2"), Value: []byte("{}")}
	if err := st.FinishPlacing(ctx, payflow.PlaceResult{ChargePK: c2, BillID: "b-c2", ChargeState: payflow.StateRequested,
		BillStatus: payflow.BillRequested, PGTxID: "tx", Attempts: 1, Owner: "w1"}, []outbox.Message{msg}); err != nil {
		t.Fatal(err)
	}
	want("one placed, its event unpublished", store.Backlog{Unpublished: 1, PlacingPastLease: 1})
	clock.Advance(time.Hour + time.Second)
	want("awaiting past the age", store.Backlog{Unpublished: 1, PlacingPastLease: 1, AwaitingSettlement: 1})

	if _, err := st.Pool.Exec(ctx, `UPDATE outbox SET published_at = now()`); err != nil {
		t.Fatal(err)
	}
	want("published", store.Backlog{PlacingPastLease: 1, AwaitingSettlement: 1})
}

package store_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/payflow/payflow/internal/testdb"
	"github.com/payflow/payflow/payflow"
	"github.com/payflow/payflow/store"
)

// A decline is fenced by the lease as a whole: a worker that no longer
// holds the charge writes nothing of it; the holder declines the bill,
// marks the method, switches the charge to the next bill and renews its
// lease together.
func TestDeclineWritesAllOrNothingUnderTheLease(t *testing.T) {
	st := testdb.New(t)
	ctx := context.Background()
	m, err := st.AddMethod(ctx, payflow.PaymentMethod{ID: uuid.NewString(), MemberID: "mem", Label: "card", BillingKeyEnc: []byte("sealed")})
	if err != nil {
		t.Fatal(err)
	}
	c := newCharge("c1", "b-auto", "w1")
	c.Bill.Method, c.Bill.MethodID, c.Bill.FallbackReason = payflow.MethodAutoPay, m.ID, ""
	pk, _, err := st.CreateCharge(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	declined := payflow.Bill{BillID: "b-auto", MethodID: m.ID}
	next := payflow.Bill{BillID: "b-kakao", Method: payflow.MethodKakaoBill, FallbackReason: payflow.FallbackMethodExpired, Amount: 700}
	state := func() string {
		var s string
		if err := st.Pool.QueryRow(ctx, `SELECT c.current_bill_id || ' ' || b.status || ' ' || coalesce(b.decline_code, '-') || ' ' || m.status || ' ' ||
			(SELECT count(*) FROM bills WHERE charge_pk = c.id)
			FROM charges c JOIN bills b ON b.bill_id = 'b-auto' JOIN payment_methods m ON m.id = $2 WHERE c.id = $1`, pk, m.ID).Scan(&s); err != nil {
			t.Fatal(err)
		}
		return s
	}

	if err := st.Decline(ctx, pk, declined, payflow.DeclineExpired, payflow.MethodExpired, next, "w2", time.Minute); !errors.Is(err, store.ErrStale) {
		t.Fatalf("decline by a worker without the lease = %v, want ErrStale", err)
	}
	if got := state(); got != "b-auto pending - active 1" {
		t.Fatalf("after a refused decline: %s, want it untouched", got)
	}

	before, err := st.ChargeByPK(ctx, pk)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(10 * time.Millisecond)
	if err := st.Decline(ctx, pk, declined, payflow.DeclineExpired, payflow.MethodExpired, next, "w1", time.Hour); err != nil {
		t.Fatal(err)
	}
	if got := state(); got != "b-kakao declined expired expired 2" {
		t.Fatalf("after the decline: %s", got)
	}
	after, err := st.ChargeByPK(ctx, pk)
	if err != nil {
		t.Fatal(err)
	}
	if after.Bill.BillID != "b-kakao" || after.Bill.Method != payflow.MethodKakaoBill || after.Bill.FallbackReason != payflow.FallbackMethodExpired ||
		after.Bill.Status != payflow.BillPending || after.Bill.Amount != 700 || after.LeaseOwner != "w1" ||
		after.LeaseUntil.Sub(before.LeaseUntil) < 50*time.Minute {
		t.Fatalf("charge after the decline: %+v (lease before %v)", after, before.LeaseUntil)
	}

	// The same decline again: the charge no longer places that bill.
	if err := st.Decline(ctx, pk, declined, payflow.DeclineExpired, payflow.MethodExpired, next, "w1", time.Hour); !errors.Is(err, store.ErrStale) {
		t.Fatalf("a second decline of the same bill = %v, want ErrStale", err)
	}
}

// A decline that leaves the method usable (a limit) does not touch it.
func TestDeclineOfALimitLeavesTheMethodActive(t *testing.T) {
	st := testdb.New(t)
	ctx := context.Background()
	m, err := st.AddMethod(ctx, payflow.PaymentMethod{ID: uuid.NewString(), MemberID: "mem", Label: "card", BillingKeyEnc: []byte("sealed")})
	if err != nil {
		t.Fatal(err)
	}
	c := newCharge("c1", "b-auto", "w1")
	c.Bill.Method, c.Bill.MethodID, c.Bill.FallbackReason = payflow.MethodAutoPay, m.ID, ""
	pk, _, err := st.CreateCharge(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	next := payflow.Bill{BillID: "b-kakao", Method: payflow.MethodKakaoBill, FallbackReason: payflow.FallbackMethodLimit, Amount: 700}
	if err := st.Decline(ctx, pk, payflow.Bill{BillID: "b-auto", MethodID: m.ID}, payflow.DeclineLimit, payflow.MethodActive, next, "w1", time.Minute); err != nil {
		t.Fatal(err)
	}
	if d, err := st.DefaultMethod(ctx, "mem"); err != nil || d == nil || d.Status != payflow.MethodActive {
		t.Fatalf("default method after a limit decline = %+v, %v; want it active", d, err)
	}
	if n := count(t, st, `SELECT count(*) FROM bills WHERE bill_id = 'b-auto' AND status = 'declined' AND decline_code = 'limit_exceeded'`); n != 1 {
		t.Fatal("the declined bill was not recorded")
	}
}

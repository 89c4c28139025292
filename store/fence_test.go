package store_test

// The fences: what a request was judged to be is written only while the
// lease it was judged under is held (DESIGN.md, "Refunds, re-payments,
// cancels", step 4).

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/payflow/payflow/internal/testdb"
	"github.com/payflow/payflow/outbox"
	"github.com/payflow/payflow/payflow"
	"github.com/payflow/payflow/store"
)

// A re-payment is recorded only under the lease it was judged under (found
// by the simulation, seed 55: a worker judged a re-payment, stalled past
// its lease, and another worker took the lease, rejected the same request
// and released the charge; the first then created the re-payment, so the
// request was both rejected and carried out). A worker that does not hold
// the charge writes nothing and gets ErrStale; the holder creates it.
func TestCreateRepayOnlyUnderTheLease(t *testing.T) {
	st := testdb.New(t)
	ctx := context.Background()
	pk := requested(t, st, "c1", "b1")
	cvPaid(t, st, "b1", 700)
	repay := func(owner string) error {
		_, _, err := st.CreateRepay(ctx, payflow.NewRepay{MerchantID: "m1", RepayID: "rp1", ChargePK: pk, OldBillID: "b1",
			Amount: 700, RequestHash: []byte("h"), Owner: owner, Lease: time.Minute,
			Bill: payflow.Bill{BillID: "b2", Method: payflow.MethodKakaoBill, Amount: 700}})
		return err
	}
	if err := repay("w2"); !errors.Is(err, store.ErrStale) {
		t.Fatalf("re-payment by a worker without the lease: %v, want ErrStale", err)
	}
	if n := count(t, st, `SELECT count(*) FROM repays`) + count(t, st, `SELECT count(*) FROM refunds`); n != 0 {
		t.Fatalf("%d rows written without the lease", n)
	}
	if err := st.AcquireCharge(ctx, pk, "w2", time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := repay("w2"); err != nil {
		t.Fatalf("re-payment by the holder: %v", err)
	}
	if n := count(t, st, `SELECT count(*) FROM repays`); n != 1 {
		t.Fatalf("%d re-payments, want 1", n)
	}
}

// A refund is stored only under the lease it was judged under, as a
// re-payment is: a worker whose lease ran out (free now, or taken by
// another worker that may have judged the same request otherwise) writes
// nothing, reserves nothing and gets ErrStale; the holder stores it.
func TestCreateRefundOnlyUnderTheLease(t *testing.T) {
	st := testdb.New(t)
	ctx := context.Background()
	pk := requested(t, st, "c1", "b1")
	cvPaid(t, st, "b1", 700)
	refund := func(owner string) (bool, error) {
		_, created, err := st.CreateRefund(ctx, payflow.NewRefund{MerchantID: "m1", RefundID: "r1", Kind: "refund", ChargePK: pk,
			BillID: "b1", Amount: 300, RequestHash: []byte("h"), Owner: owner})
		return created, err
	}
	nothing := func(when string) {
		t.Helper()
		if n := count(t, st, `SELECT count(*) FROM refunds`) + count(t, st, `SELECT refund_reserved::int FROM bills WHERE bill_id = 'b1'`); n != 0 {
			t.Fatalf("%s: a refund stored or reserved without the lease", when)
		}
	}
	if _, err := refund("w1"); !errors.Is(err, store.ErrStale) {
		t.Fatalf("refund by a worker whose lease was released: %v, want ErrStale", err)
	}
	nothing("nobody holds the charge")
	if err := st.AcquireCharge(ctx, pk, "w2", time.Minute); err != nil {
		t.Fatal(err)
	}
	if _, err := refund("w1"); !errors.Is(err, store.ErrStale) {
		t.Fatalf("refund by a worker whose lease another took: %v, want ErrStale", err)
	}
	nothing("another worker holds the charge")
	if created, err := refund("w2"); err != nil || !created {
		t.Fatalf("refund by the holder: created %v, %v", created, err)
	}
	if n := count(t, st, `SELECT refund_reserved::int FROM bills WHERE bill_id = 'b1'`); n != 300 {
		t.Fatalf("%d reserved, want 300", n)
	}
}

// A cancel is recorded only under the lease it was judged under: a
// worker whose lease ran out writes nothing, neither the cancellation nor
// its event, and gets ErrStale; the holder records it, once however often
// it is delivered.
func TestCancelBillOnlyUnderTheLease(t *testing.T) {
	st := testdb.New(t)
	ctx := context.Background()
	pk := requested(t, st, "c1", "b1")
	msg := resultMsg("c1")
	before := count(t, st, `SELECT count(*) FROM outbox`)
	nothing := func(when string) {
		t.Helper()
		c, err := st.ChargeByPK(ctx, pk)
		if err != nil {
			t.Fatal(err)
		}
		if c.State != payflow.StateRequested || c.Bill.Status != payflow.BillRequested || count(t, st, `SELECT count(*) FROM outbox`) != before {
			t.Fatalf("%s: charge %s, bill %s, %d events written without the lease", when, c.State, c.Bill.Status,
				count(t, st, `SELECT count(*) FROM outbox`)-before)
		}
	}
	if err := st.CancelBill(ctx, pk, "b1", "w1", []outbox.Message{msg}); !errors.Is(err, store.ErrStale) {
		t.Fatalf("cancel by a worker whose lease was released: %v, want ErrStale", err)
	}
	nothing("nobody holds the charge")
	if err := st.AcquireCharge(ctx, pk, "w2", time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := st.CancelBill(ctx, pk, "b1", "w1", []outbox.Message{msg}); !errors.Is(err, store.ErrStale) {
		t.Fatalf("cancel by a worker whose lease another took: %v, want ErrStale", err)
	}
	nothing("another worker holds the charge")
	for i := 0; i < 2; i++ {
		if err := st.CancelBill(ctx, pk, "b1", "w2", []outbox.Message{msg}); err != nil {
			t.Fatalf("cancel %d by the holder: %v", i+1, err)
		}
	}
	c, err := st.ChargeByPK(ctx, pk)
	if err != nil {
		t.Fatal(err)
	}
	if c.State != payflow.StateCancelled || c.Bill.Status != payflow.BillCancelled {
		t.Fatalf("after the holder's cancel: charge %s, bill %s", c.State, c.Bill.Status)
	}
	if n := count(t, st, `SELECT count(*) FROM outbox`) - before; n != 1 {
		t.Fatalf("%d events, want 1", n)
	}
}

// A cancel of a bill settled otherwise since it was judged (paid, here)
// writes nothing: no event may say cancelled of a bill the database holds
// as paid. ErrStale sends the cancel to be judged again, and refused.
func TestCancelOfABillSettledMeanwhileWritesNothing(t *testing.T) {
	st := testdb.New(t)
	ctx := context.Background()
	pk := requested(t, st, "c1", "b1")
	if err := st.AcquireCharge(ctx, pk, "w1", time.Minute); err != nil {
		t.Fatal(err)
	}
	cvPaid(t, st, "b1", 700)
	before := count(t, st, `SELECT count(*) FROM outbox`)
	if err := st.CancelBill(ctx, pk, "b1", "w1", []outbox.Message{resultMsg("c1")}); !errors.Is(err, store.ErrStale) {
		t.Fatalf("cancel of a paid bill: %v, want ErrStale", err)
	}
	c, err := st.ChargeByPK(ctx, pk)
	if err != nil {
		t.Fatal(err)
	}
	if n := count(t, st, `SELECT count(*) FROM outbox`) - before; n != 0 || c.State != payflow.StatePaid || c.Bill.Status != payflow.BillPaid {
		t.Fatalf("charge %s, bill %s, %d events written", c.State, c.Bill.Status, n)
	}
}

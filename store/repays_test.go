package store_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/payflow/payflow/internal/testdb"
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

package store_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/payflow/payflow/internal/testdb"
	"github.com/payflow/payflow/outbox"
	"github.com/payflow/payflow/payflow"
	"github.com/payflow/payflow/store"
)

// fakeClock is a clock a test moves by hand.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// openWithClock opens a second store on t's database that measures time by
// clock.
func openWithClock(t *testing.T, clock *fakeClock) *store.Store {
	t.Helper()
	dsn := testdb.NewDSN(t)
	ctx := context.Background()
	if err := store.Migrate(ctx, dsn); err != nil {
		t.Fatal(err)
	}
	st, err := store.OpenWith(ctx, dsn, store.Options{Clock: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	return st
}

// placingCharge stores charge m1/c1 of 700 placing bill b1, leased to w1
// for a minute.
func placingCharge(t *testing.T, st *store.Store) int64 {
	t.Helper()
	req := payflow.ChargeRequest{MerchantID: "m1", ChargeID: "c1", Amount: 700, Currency: "KRW", OrderName: "o",
		Customer: payflow.Customer{Phone: "+821012345678"}}
	pk, _, err := st.CreateCharge(context.Background(), payflow.NewCharge{Request: req, RequestHash: req.Fingerprint(), RequestEventID: "e1",
		Bill:       payflow.Bill{BillID: "b1", Method: payflow.MethodKakaoBill, FallbackReason: payflow.FallbackNotMember, Amount: 700},
		LeaseOwner: "w1", Lease: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	return pk
}

// With a clock given, leases, waits and timestamps follow it and never the
// database's: a lease expires when the clock passes it, however little
// real time went by, and not before, however much did.
func TestLeasesFollowTheGivenClock(t *testing.T) {
	ctx := context.Background()
	clock := &fakeClock{now: time.Date(2001, 1, 1, 0, 0, 0, 0, time.UTC)}
	st := openWithClock(t, clock)
	pk := placingCharge(t, st)
	// The database's clock is 25 years past the lease: it must not count.
	if ok, err := st.ClaimCharge(ctx, pk, "w2", time.Minute); err != nil || ok {
		t.Fatalf("claim inside the clock's lease = %v, %v; want refused", ok, err)
	}
	if ids, err := st.ExpiredPlacing(ctx, 10); err != nil || len(ids) != 0 {
		t.Fatalf("expired placing inside the lease = %v, %v", ids, err)
	}
	clock.Advance(time.Minute + time.Second)
	if ids, err := st.ExpiredPlacing(ctx, 10); err != nil || len(ids) != 1 {
		t.Fatalf("expired placing after the lease = %v, %v", ids, err)
	}
	if ok, err := st.ClaimCharge(ctx, pk, "w2", time.Minute); err != nil || !ok {
		t.Fatalf("claim after the clock passed the lease = %v, %v; want taken", ok, err)
	}
	if err := st.FinishPlacing(ctx, payflow.PlaceResult{ChargePK: pk, BillID: "b1", ChargeState: payflow.StateRequested,
		BillStatus: payflow.BillRequested, PGTxID: "tx1", Attempts: 1, Owner: "w2"}, nil); err != nil {
		t.Fatal(err)
	}

	// Reconciliation's age and backoff follow the clock too.
	if got, err := st.AwaitingSettlement(ctx, time.Hour, 10); err != nil || len(got) != 0 {
		t.Fatalf("awaiting settlement before the age = %v, %v", got, err)
	}
	clock.Advance(time.Hour + time.Second)
	if got, err := st.AwaitingSettlement(ctx, time.Hour, 10); err != nil || len(got) != 1 {
		t.Fatalf("awaiting settlement after the age = %v, %v", got, err)
	}
	if err := st.ReconcileLater(ctx, "b1", 10*time.Minute, "lookup_failed: x"); err != nil {
		t.Fatal(err)
	}
	if got, err := st.AwaitingSettlement(ctx, time.Hour, 10); err != nil || len(got) != 0 {
		t.Fatalf("awaiting settlement inside its backoff = %v, %v", got, err)
	}
	clock.Advance(10*time.Minute + time.Second)
	if got, err := st.AwaitingSettlement(ctx, time.Hour, 10); err != nil || len(got) != 1 {
		t.Fatalf("awaiting settlement after its backoff = %v, %v", got, err)
	}

	// Every other change is stamped with the clock as well.
	if _, _, err := st.Settle(ctx, payflow.Settlement{BillID: "b1", Status: payflow.SettlePaid, Amount: 700, PGTxID: "tx1",
		Provider: "sim", WebhookID: "wh1"}, func(payflow.SettledBill) ([]outbox.Message, error) { return nil, nil }); err != nil {
		t.Fatal(err)
	}
	h, err := st.AcquireCharge(ctx, pk, "w3", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	rpk, _, err := st.CreateRefund(ctx, payflow.NewRefund{MerchantID: "m1", RefundID: "r1", Kind: "refund", ChargePK: pk,
		BillID: "b1", Amount: 100, Reason: "x", RequestHash: []byte{1}, Holder: h})
	if err != nil {
		t.Fatal(err)
	}
	if err := st.RetryRefundLater(ctx, rpk, time.Minute); err != nil {
		t.Fatal(err)
	}
	if _, err := st.FinishRefund(ctx, rpk, payflow.RefundResult{Succeeded: true, PGTxID: "rtx"},
		func(int64) ([]outbox.Message, error) { return nil, nil }, nil); err != nil {
		t.Fatal(err)
	}
	m, err := st.AddMethod(ctx, payflow.PaymentMethod{ID: uuid.NewString(), MemberID: "mem", Label: "card", Default: true, BillingKeyEnc: []byte("k")})
	if err != nil {
		t.Fatal(err)
	}
	if err := st.SetMethodStatus(ctx, m.ID, payflow.MethodExpired); err != nil {
		t.Fatal(err)
	}
	if err := st.DeleteMethod(ctx, "mem", m.ID); err != nil {
		t.Fatal(err)
	}

	var late int
	if err := st.Pool.QueryRow(ctx, `SELECT
		(SELECT count(*) FROM charges WHERE greatest(created_at, updated_at, lease_until) > $1) +
		(SELECT count(*) FROM bills WHERE greatest(created_at, updated_at, settled_at, reconcile_after) > $1) +
		(SELECT count(*) FROM refunds WHERE greatest(created_at, updated_at, retry_after) > $1) +
		(SELECT count(*) FROM payment_methods WHERE greatest(created_at, updated_at) > $1)`,
		clock.Now().Add(time.Hour)).Scan(&late); err != nil {
		t.Fatal(err)
	}
	if late != 0 {
		t.Fatalf("%d rows carry a time from the database's clock, not the given one", late)
	}
}

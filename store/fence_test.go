package store_test

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

// fenced is one write that records what a request on an existing charge
// was judged to be.
type fenced struct {
	name string
	paid bool // the charge's bill is paid first (else left requested)
	// write records the judgement made under h.
	write func(st *store.Store, pk int64, h payflow.Holder) error
	// written counts what write left behind.
	written func(t *testing.T, st *store.Store) int
}

var fencedWrites = []fenced{
	{"rejection", false,
		func(st *store.Store, pk int64, h payflow.Holder) error {
			return st.Reject(context.Background(), store.Rejection{Request: store.Request{Source: "s", EventID: "e1"},
				Reason: "invalid_state", Event: resultMsg("c1"), ChargePK: pk, Holder: h})
		},
		func(t *testing.T, st *store.Store) int { return count(t, st, `SELECT count(*) FROM rejected_requests`) }},
	{"refund", true,
		func(st *store.Store, pk int64, h payflow.Holder) error {
			_, _, err := st.CreateRefund(context.Background(), payflow.NewRefund{MerchantID: "m1", RefundID: "r1", Kind: "refund",
				ChargePK: pk, BillID: "b1", Amount: 300, RequestHash: []byte("h"), Holder: h})
			return err
		},
		func(t *testing.T, st *store.Store) int {
			return count(t, st, `SELECT count(*) FROM refunds`) + count(t, st, `SELECT refund_reserved::int FROM bills WHERE bill_id = 'b1'`)
		}},
	{"re-payment", true,
		func(st *store.Store, pk int64, h payflow.Holder) error {
			_, _, err := st.CreateRepay(context.Background(), payflow.NewRepay{MerchantID: "m1", RepayID: "rp1", ChargePK: pk, OldBillID: "b1",
				Amount: 700, RequestHash: []byte("h"), Holder: h, Lease: time.Minute,
				Bill: payflow.Bill{BillID: "b2", Method: payflow.MethodKakaoBill, Amount: 700}})
			return err
		},
		func(t *testing.T, st *store.Store) int {
			return count(t, st, `SELECT count(*) FROM repays`) + count(t, st, `SELECT count(*) FROM refunds`)
		}},
	{"cancel", false,
		func(st *store.Store, pk int64, h payflow.Holder) error {
			return st.CancelBill(context.Background(), pk, "b1", h, []outbox.Message{resultMsg("c1")})
		},
		func(t *testing.T, st *store.Store) int {
			return count(t, st, `SELECT count(*) FROM bills WHERE status = 'cancelled'`) + count(t, st, `SELECT count(*) FROM charges WHERE state = 'cancelled'`)
		}},
}

// taken stores charge c1 with its bill b1 placed and takes its lease as
// w1.
func taken(t *testing.T) (*store.Store, int64, payflow.Holder) {
	t.Helper()
	st := testdb.New(t)
	pk := requested(t, st, "c1", "b1")
	h, err := st.AcquireCharge(context.Background(), pk, "w1", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	return st, pk, h
}

// expire ends the charge's lease by its time, taken by nobody.
func expire(t *testing.T, st *store.Store, pk int64) {
	t.Helper()
	if _, err := st.Pool.Exec(context.Background(), `UPDATE charges SET lease_until = now() - interval '1 second' WHERE id = $1`, pk); err != nil {
		t.Fatal(err)
	}
}

// What a request on an existing charge was judged to be is written only
// while the very taking of the charge's lease it was judged under holds
// (found by the simulation for a rejection, seed 53, and a re-payment,
// seed 55; by review for a refund and a cancel, and for a taking by the
// same process: its sweeper claiming a pending refund of the charge while
// the judgement stalled). A judgement whose lease was released, taken by
// another worker, or taken again by the same one writes nothing and gets
// ErrStale; under its own taking it is written, even once that lease has
// expired, as long as nobody took it since.
func TestAJudgementIsWrittenOnlyUnderItsOwnTakingOfTheLease(t *testing.T) {
	for _, f := range fencedWrites {
		t.Run(f.name, func(t *testing.T) {
			st := testdb.New(t)
			ctx := context.Background()
			pk := requested(t, st, "c1", "b1")
			if f.paid {
				cvPaid(t, st, "b1", 700)
			}
			outboxBefore := count(t, st, `SELECT count(*) FROM outbox`)
			take := func(owner string) payflow.Holder {
				t.Helper()
				h, err := st.AcquireCharge(ctx, pk, owner, time.Minute)
				if err != nil {
					t.Fatal(err)
				}
				return h
			}
			stale := func(h payflow.Holder, when string) {
				t.Helper()
				if err := f.write(st, pk, h); !errors.Is(err, store.ErrStale) {
					t.Fatalf("%s: %v, want ErrStale", when, err)
				}
				if n, events := f.written(t, st), count(t, st, `SELECT count(*) FROM outbox`)-outboxBefore; n != 0 || events != 0 {
					t.Fatalf("%s: %d rows and %d events written", when, n, events)
				}
			}
			h1 := take("w1")
			if err := st.ReleaseCharge(ctx, pk, h1); err != nil {
				t.Fatal(err)
			}
			stale(h1, "the lease released")
			h2 := take("w2")
			stale(h1, "the lease taken by another worker")
			if err := st.ReleaseCharge(ctx, pk, h2); err != nil {
				t.Fatal(err)
			}
			h3 := take("w1")
			if h3.Gen <= h1.Gen {
				t.Fatalf("taking %d after taking %d: a taking must raise the generation", h3.Gen, h1.Gen)
			}
			stale(h1, "the lease taken again by the same process")
			// Nor does the older taking's release end the newer one.
			if err := st.ReleaseCharge(ctx, pk, h1); err != nil {
				t.Fatal(err)
			}
			if _, err := st.AcquireCharge(ctx, pk, "w2", time.Minute); !errors.Is(err, store.ErrBusy) {
				t.Fatalf("taking a charge after an older taking's release: %v, want ErrBusy (the newer taking holds)", err)
			}
			// The lease of h3 runs out, and nobody takes it.
			if _, err := st.Pool.Exec(ctx, `UPDATE charges SET lease_until = now() - interval '1 second' WHERE id = $1`, pk); err != nil {
				t.Fatal(err)
			}
			if err := f.write(st, pk, h3); err != nil {
				t.Fatalf("under its own taking: %v", err)
			}
			if n := f.written(t, st); n == 0 {
				t.Fatal("nothing written under its own taking")
			}
		})
	}
}

// A sweeper's claims are takings too: a judgement made before a claim of
// the same charge, by any process, is stale after it.
func TestAClaimIsATaking(t *testing.T) {
	st, pk, h := taken(t)
	ctx := context.Background()
	cvPaid(t, st, "b1", 700)
	rpk, _, err := st.CreateRefund(ctx, payflow.NewRefund{MerchantID: "m1", RefundID: "r1", Kind: "refund", ChargePK: pk,
		BillID: "b1", Amount: 100, RequestHash: []byte("h"), Holder: h})
	if err != nil {
		t.Fatal(err)
	}
	// The lease runs out with r1 pending; w1's own sweeper claims r1.
	expire(t, st, pk)
	if _, ok, err := st.ClaimRefund(ctx, rpk, "w1", time.Minute); err != nil || !ok {
		t.Fatalf("claim: %v, %v", ok, err)
	}
	_, _, err = st.CreateRefund(ctx, payflow.NewRefund{MerchantID: "m1", RefundID: "r2", Kind: "refund", ChargePK: pk,
		BillID: "b1", Amount: 100, RequestHash: []byte("h"), Holder: h})
	if !errors.Is(err, store.ErrStale) {
		t.Fatalf("a refund judged before the claim: %v, want ErrStale", err)
	}
}

// A claim of a placing charge is a taking as well. A process of the
// previous release leaves the generation as it was when it takes the
// charge (here: to place a re-payment's bill, and then dies), so only the
// claim that follows tells a judgement made before it from the claimer's
// own.
func TestAClaimOfAPlacingChargeIsATaking(t *testing.T) {
	st, pk, h := taken(t)
	ctx := context.Background()
	if _, err := st.Pool.Exec(ctx, `UPDATE charges SET state = 'placing', lease_owner = 'old', lease_until = now() - interval '1 second'
		WHERE id = $1`, pk); err != nil {
		t.Fatal(err)
	}
	if ok, err := st.ClaimCharge(ctx, pk, "w1", time.Minute); err != nil || !ok {
		t.Fatalf("claim: %v, %v", ok, err)
	}
	err := st.Reject(ctx, store.Rejection{Request: store.Request{Source: "s", EventID: "e1"}, Reason: "invalid_state",
		Event: resultMsg("c1"), ChargePK: pk, Holder: h})
	if !errors.Is(err, store.ErrStale) {
		t.Fatalf("a rejection judged before the claim: %v, want ErrStale", err)
	}
}

// A refund stored while another worker waits to take the charge keeps it
// busy: the taking reads the pending refunds after the refund's
// transaction ended, not as they were when it began to wait.
func TestATakingSeesTheRefundItWaitedFor(t *testing.T) {
	st := testdb.New(t)
	ctx := context.Background()
	pk := requested(t, st, "c1", "b1")
	cvPaid(t, st, "b1", 700)
	// A refund's transaction holds the charge (as CreateRefund's does,
	// under a lease that ran out and that nobody took, which its fence
	// lets write); w2 tries to take the charge meanwhile.
	tx, err := st.Pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, `SELECT 1 FROM charges WHERE id = $1 FOR NO KEY UPDATE`, pk); err != nil {
		t.Fatal(err)
	}
	got := make(chan error, 1)
	go func() {
		_, err := st.AcquireCharge(ctx, pk, "w2", time.Minute)
		got <- err
	}()
	// Let w2's taking begin to wait for the row.
	for count(t, st, `SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'`) == 0 {
		select {
		case err := <-got:
			t.Fatalf("the taking did not wait for the charge's row: %v", err)
		case <-time.After(5 * time.Millisecond):
		}
	}
	if _, err := tx.Exec(ctx, `INSERT INTO refunds (merchant_id, refund_id, kind, charge_pk, bill_id, amount, request_hash, status)
		VALUES ('m1', 'r1', 'refund', $1, 'b1', 100, 'h', 'pending')`, pk); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-got; !errors.Is(err, store.ErrBusy) {
		t.Fatalf("taking a charge with a refund pending: %v, want ErrBusy", err)
	}
}

// A cancel of a bill settled otherwise since it was judged (paid, here)
// writes nothing: no event may say cancelled of a bill the database holds
// as paid. ErrStale sends the cancel to be judged again, and refused.
func TestCancelOfABillSettledMeanwhileWritesNothing(t *testing.T) {
	st, pk, h := taken(t)
	ctx := context.Background()
	cvPaid(t, st, "b1", 700)
	before := count(t, st, `SELECT count(*) FROM outbox`)
	if err := st.CancelBill(ctx, pk, "b1", h, []outbox.Message{resultMsg("c1")}); !errors.Is(err, store.ErrStale) {
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

// A cancel delivered again under a later taking records the cancellation
// once: one event.
func TestACancelRecordedTwiceWritesOneEvent(t *testing.T) {
	st := testdb.New(t)
	ctx := context.Background()
	pk := requested(t, st, "c1", "b1")
	before := count(t, st, `SELECT count(*) FROM outbox`)
	msg := resultMsg("c1")
	for i := 0; i < 2; i++ {
		h, err := st.AcquireCharge(ctx, pk, "w1", time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		if err := st.CancelBill(ctx, pk, "b1", h, []outbox.Message{msg}); err != nil {
			t.Fatalf("cancel %d: %v", i+1, err)
		}
		if err := st.ReleaseCharge(ctx, pk, h); err != nil {
			t.Fatal(err)
		}
	}
	if n := count(t, st, `SELECT count(*) FROM outbox`) - before; n != 1 {
		t.Fatalf("%d events, want 1", n)
	}
}

// Every change of a charge's lease owner raises the generation, the
// re-payment's too: a refund step's result that places the new bill hands
// the lease to the worker that recorded it, which need not be the one that
// took it last. Here w1's drive of the refund step stalled, w2 claimed the
// refund, and w1's result landed first: the lease passes to w1 as a new
// taking, not as w2's taking under w1's name.
func TestARepaymentsNewBillIsATaking(t *testing.T) {
	st, pk, h1 := taken(t)
	ctx := context.Background()
	cvPaid(t, st, "b1", 700)
	rp, _, err := st.CreateRepay(ctx, payflow.NewRepay{MerchantID: "m1", RepayID: "rp1", ChargePK: pk, OldBillID: "b1",
		Amount: 700, RequestHash: []byte("h"), Holder: h1, Lease: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	expire(t, st, pk)
	h2, ok, err := st.ClaimRefund(ctx, rp.RefundPK, "w2", time.Minute)
	if err != nil || !ok {
		t.Fatalf("claim: %v, %v", ok, err)
	}
	next := &payflow.RepayNext{RepayPK: rp.PK, Bill: payflow.Bill{BillID: "b2", Method: payflow.MethodKakaoBill, Amount: 700},
		Owner: "w1", Lease: time.Minute}
	if _, err := st.FinishRefund(ctx, rp.RefundPK, payflow.RefundResult{Succeeded: true},
		func(int64) ([]outbox.Message, error) { return []outbox.Message{resultMsg("c1")}, nil }, next); err != nil {
		t.Fatal(err)
	}
	var owner string
	var gen int64
	if err := st.Pool.QueryRow(ctx, `SELECT lease_owner, lease_gen FROM charges WHERE id = $1`, pk).Scan(&owner, &gen); err != nil {
		t.Fatal(err)
	}
	if owner != "w1" || gen <= h2.Gen {
		t.Fatalf("lease (%s, %d) after w2's taking %d passed to w1: want w1 under a generation above it", owner, gen, h2.Gen)
	}
}

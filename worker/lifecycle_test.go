package worker_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/payflow/payflow/events"
	"github.com/payflow/payflow/payflow"
	"github.com/payflow/payflow/pgclient"
)

func requestEvent(typ string, d map[string]any) []byte {
	seq := eventSeq.Add(1)
	d["merchant_id"] = "m1"
	b, _ := json.Marshal(map[string]any{"specversion": "1.0", "id": fmt.Sprintf("evt-%d", seq), "source": "test",
		"type": typ, "datacontenttype": "application/json", "data": d})
	return b
}

func refundEvent(charge, refund string, amount int64) []byte {
	return requestEvent(events.TypeRefundRequested, map[string]any{"charge_id": charge, "refund_id": refund, "amount": amount, "reason": "r"})
}

// paid places a non-member charge and settles it paid at the PG and here.
func (e *env) paid(charge string, amount int64) string {
	e.t.Helper()
	bill := e.placed(charge, amount)
	e.pg.mu.Lock()
	p := e.pg.bills[bill]
	p.Status = pgclient.StatusPaid
	e.pg.bills[bill] = p
	e.pg.mu.Unlock()
	if _, err := e.w.Settle(context.Background(), payflow.Settlement{BillID: bill, Status: payflow.SettlePaid, Amount: amount}); err != nil {
		e.t.Fatal(err)
	}
	return bill
}

func (e *env) ofType(typ string) []map[string]any {
	var out []map[string]any
	for _, r := range e.results() {
		if r["type"] == typ {
			out = append(out, r)
		}
	}
	return out
}

func TestPartialThenFullRefund(t *testing.T) {
	e := setup(t, methods{})
	e.paid("c1", 5000)
	e.handle(refundEvent("c1", "r1", 2000))
	e.handle(refundEvent("c1", "r2", 3000))
	ok := e.ofType(events.TypeRefundSucceeded)
	if len(ok) != 2 || data(ok[0])["refunded_total"] != 2000.0 || data(ok[1])["refunded_total"] != 5000.0 {
		t.Fatalf("refund events = %v", ok)
	}
	c, _ := e.st.ChargeByKey(context.Background(), "m1", "c1")
	if c.State != payflow.StateRefunded {
		t.Fatalf("state = %s, want refunded", c.State)
	}
	e.handle(refundEvent("c1", "r3", 1))
	if rej := e.ofType(events.TypeRejected); len(rej) != 1 || data(rej[0])["reason"] != "amount_exceeds_paid" {
		t.Fatalf("rejections = %v", rej)
	}
}

func TestRefundIDIsIdempotent(t *testing.T) {
	e := setup(t, methods{})
	e.paid("c1", 5000)
	ev := refundEvent("c1", "r1", 1000)
	e.handle(ev)
	e.handle(ev)
	e.handle(refundEvent("c1", "r1", 1000)) // re-sent with a new event id
	if e.pg.refundCount != 1 || len(e.ofType(events.TypeRefundSucceeded)) != 1 {
		t.Fatalf("PG refunds %d, events %d", e.pg.refundCount, len(e.ofType(events.TypeRefundSucceeded)))
	}
	e.handle(refundEvent("c1", "r1", 2000))
	if rej := e.ofType(events.TypeRejected); len(rej) != 1 || data(rej[0])["reason"] != "idempotency_conflict" {
		t.Fatalf("rejections = %v", rej)
	}
}

// Concurrent refunds on one bill: the database lets through exactly what
// was paid, however they interleave. Through the worker they take turns on
// the charge's lease (one waits while another acts: ErrBusy, tried again as
// the consumer would); under it, the bill row's reservation and CHECK
// guard any writers that bypass the lease.
func TestConcurrentRefundsNeverExceedThePaidAmount(t *testing.T) {
	e := setup(t, methods{})
	bill := e.paid("c1", 5000)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for i := 0; i < 10; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			handleUntilDone(ctx, t, e.w, refundEvent("c1", fmt.Sprint("r", i), 1000))
		}()
	}
	wg.Wait()
	var refunded, reserved int64
	if err := e.st.Pool.QueryRow(context.Background(), "SELECT refunded_amount, refund_reserved FROM bills WHERE bill_id = $1", bill).Scan(&refunded, &reserved); err != nil {
		t.Fatal(err)
	}
	if refunded != 5000 || reserved != 0 || e.pg.refundCount != 5 {
		t.Fatalf("refunded %d reserved %d, PG refunds %d; want 5000, 0, 5", refunded, reserved, e.pg.refundCount)
	}
	if n := len(e.ofType(events.TypeRejected)); n != 5 {
		t.Fatalf("%d rejections, want 5", n)
	}

	// The store's own guard: ten refunds at once under one taking of the
	// lease (the charge's row lock serialises them; the bill row's check
	// refuses the sixth).
	bill2 := e.paid("c2", 5000)
	c2, _ := e.st.ChargeByKey(ctx, "m1", "c2")
	h, err := e.st.AcquireCharge(ctx, c2.PK, "test", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	var created sync.Map
	for i := 0; i < 10; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, ok, err := e.st.CreateRefund(ctx, payflow.NewRefund{MerchantID: "m1", RefundID: fmt.Sprint("direct", i), Kind: "refund",
				ChargePK: c2.PK, BillID: bill2, Amount: 1000, RequestHash: []byte("h"), Holder: h})
			if err != nil && !errors.Is(err, payflow.ErrExceedsPaid) {
				t.Error(err)
			}
			created.Store(i, ok)
		}()
	}
	wg.Wait()
	n := 0
	created.Range(func(_, ok any) bool {
		if ok.(bool) {
			n++
		}
		return true
	})
	if n != 5 {
		t.Fatalf("%d refunds of 1000 reserved on a bill of 5000, want 5", n)
	}
}

func TestRefundRejections(t *testing.T) {
	e := setup(t, methods{})
	e.placed("unpaid", 1000)
	e.handle(refundEvent("unpaid", "r1", 500))
	e.handle(refundEvent("nope", "r2", 500))
	e.handle(refundEvent("unpaid", "r3", -1))
	rej := e.ofType(events.TypeRejected)
	want := []string{"invalid_state", "unknown_charge", "invalid"}
	if len(rej) != len(want) {
		t.Fatalf("rejections = %v", rej)
	}
	for i, r := range rej {
		if data(r)["reason"] != want[i] {
			t.Fatalf("rejection %d = %v, want %s", i, data(r), want[i])
		}
	}
}

func TestRepayRefundsThenBillsAgain(t *testing.T) {
	e := setup(t, methods{})
	old := e.paid("c1", 5000)
	e.handle(requestEvent(events.TypeRepayRequested, map[string]any{"charge_id": "c1", "repay_id": "p1", "amount": 4000}))
	rp := e.ofType(events.TypeRepayProcessed)
	if len(rp) != 1 {
		t.Fatalf("repay events = %v", e.results())
	}
	d := data(rp[0])
	if d["old_bill_id"] != old || d["bill_id"] == old || d["method"] != "kakao_bill" || d["repay_id"] != "p1" {
		t.Fatalf("repay.processed = %v", d)
	}
	if e.pg.refundCount != 1 || e.pg.count("kakao_bill") != 2 {
		t.Fatalf("PG refunds %d, bills %d", e.pg.refundCount, e.pg.count("kakao_bill"))
	}
	c, _ := e.st.ChargeByKey(context.Background(), "m1", "c1")
	if c.State != payflow.StateRequested || c.Bill.Amount != 4000 {
		t.Fatalf("charge %s amount %d", c.State, c.Bill.Amount)
	}
	// A redelivery changes nothing.
	e.handle(requestEvent(events.TypeRepayRequested, map[string]any{"charge_id": "c1", "repay_id": "p1", "amount": 4000}))
	if len(e.ofType(events.TypeRepayProcessed)) != 1 || e.pg.count("kakao_bill") != 2 {
		t.Fatal("a redelivered re-payment acted again")
	}
}

// The worker dies after the PG refunded but before it recorded that: the
// sweeper resumes, the PG's refund idempotency keeps it one refund, and the
// new bill is placed once.
func TestRepayResumesAfterACrashBetweenSteps(t *testing.T) {
	e := setup(t, methods{})
	e.paid("c1", 5000)
	// The refund reaches the PG and the answer is lost; the retry budget
	// then runs out on an unreachable PG.
	e.pg.failNext("refund", fault{kind: pgclient.KindUnknown, after: true})
	for i := 0; i < 10000; i++ {
		e.pg.failNext("refund", fault{kind: pgclient.KindTransient})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	_ = e.w.Handle(ctx, requestEvent(events.TypeRepayRequested, map[string]any{"charge_id": "c1", "repay_id": "p1"}))
	cancel()
	if len(e.ofType(events.TypeRepayProcessed)) != 0 {
		t.Fatal("re-payment finished although its refund was never confirmed")
	}
	e.pg.mu.Lock()
	e.pg.faults["refund"] = nil
	e.pg.mu.Unlock()
	e.refundsDue()
	if err := e.w.SweepRefunds(context.Background(), 10); err != nil {
		t.Fatal(err)
	}
	if e.pg.refundCount != 1 {
		t.Fatalf("PG refunds = %d, want 1", e.pg.refundCount)
	}
	if rp := e.ofType(events.TypeRepayProcessed); len(rp) != 1 || e.pg.count("kakao_bill") != 2 {
		t.Fatalf("repay events %v, bills %d", rp, e.pg.count("kakao_bill"))
	}
}

func TestCancelUnpaidBillOnlyOnce(t *testing.T) {
	e := setup(t, methods{})
	bill := e.placed("c1", 1000)
	cancel := requestEvent(events.TypeCancelRequested, map[string]any{"charge_id": "c1", "reason": "x"})
	e.handle(cancel)
	e.handle(cancel)
	ev := e.ofType(events.TypeBillCancelled)
	if len(ev) != 1 || data(ev[0])["bill_id"] != bill {
		t.Fatalf("cancel events = %v", ev)
	}
	c, _ := e.st.ChargeByKey(context.Background(), "m1", "c1")
	if c.State != payflow.StateCancelled {
		t.Fatalf("state = %s", c.State)
	}
}

func TestCancelPaidBillIsInvalidState(t *testing.T) {
	e := setup(t, methods{})
	e.paid("c1", 1000)
	e.handle(requestEvent(events.TypeCancelRequested, map[string]any{"charge_id": "c1", "reason": "x"}))
	if rej := e.ofType(events.TypeRejected); len(rej) != 1 || data(rej[0])["reason"] != "invalid_state" {
		t.Fatalf("rejections = %v", rej)
	}
	if n := e.pg.count("destroy"); n != 0 {
		t.Fatalf("destroy called %d times for a paid bill", n)
	}
}

package worker_test

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/payflow/payflow/events"
	"github.com/payflow/payflow/payflow"
	"github.com/payflow/payflow/pgclient"
)

// placed handles a non-member charge and returns its bill id.
func (e *env) placed(charge string, amount int64) string {
	e.t.Helper()
	e.handle(chargeEvent(charge, "", amount))
	c, err := e.st.ChargeByKey(context.Background(), "m1", charge)
	if err != nil {
		e.t.Fatal(err)
	}
	if c.State != payflow.StateRequested {
		e.t.Fatalf("charge state = %s, want requested", c.State)
	}
	return c.Bill.BillID
}

func (e *env) settledEvents() []map[string]any {
	var out []map[string]any
	for _, r := range e.results() {
		if r["type"] == events.TypeSettled {
			out = append(out, r)
		}
	}
	return out
}

func TestWebhookSettlesOnceAndReplayHasNoEffect(t *testing.T) {
	e := setup(t, methods{})
	bill := e.placed("c1", 5000)
	s := payflow.Settlement{BillID: bill, Status: payflow.SettlePaid, Amount: 5000, PGTxID: "tx", Provider: "sim", WebhookID: "wh-1"}
	out, err := e.w.Settle(context.Background(), s)
	if err != nil || out != payflow.SettleApplied {
		t.Fatalf("first: %v %v", out, err)
	}
	out, err = e.w.Settle(context.Background(), s)
	if err != nil || out != payflow.SettleDuplicate {
		t.Fatalf("replay: %v %v", out, err)
	}
	ev := e.settledEvents()
	if len(ev) != 1 || data(ev[0])["status"] != "paid" || data(ev[0])["amount"] != 5000.0 {
		t.Fatalf("settled events = %v", ev)
	}
	c, _ := e.st.ChargeByKey(context.Background(), "m1", "c1")
	if c.State != payflow.StatePaid {
		t.Fatalf("charge state = %s", c.State)
	}
}

func TestLateCallbackNeverFlipsAFinalState(t *testing.T) {
	e := setup(t, methods{})
	bill := e.placed("c1", 5000)
	ctx := context.Background()
	if _, err := e.w.Settle(ctx, payflow.Settlement{BillID: bill, Status: payflow.SettlePaid, Amount: 5000, Provider: "sim", WebhookID: "a"}); err != nil {
		t.Fatal(err)
	}
	out, err := e.w.Settle(ctx, payflow.Settlement{BillID: bill, Status: payflow.SettleFailed, Amount: 5000, Provider: "sim", WebhookID: "b"})
	if err != nil || out != payflow.SettleIgnored {
		t.Fatalf("late failed: %v %v", out, err)
	}
	var outcome string
	if err := e.st.Pool.QueryRow(ctx, "SELECT outcome FROM webhook_receipts WHERE webhook_id = 'b'").Scan(&outcome); err != nil || outcome != "ignored" {
		t.Fatalf("the late callback was not recorded: %q %v", outcome, err)
	}
	c, _ := e.st.ChargeByKey(ctx, "m1", "c1")
	if c.State != payflow.StatePaid || len(e.settledEvents()) != 1 {
		t.Fatalf("state %s, %d settled events", c.State, len(e.settledEvents()))
	}
}

func TestSettlementRejectsWrongAmountAndUnknownBill(t *testing.T) {
	e := setup(t, methods{})
	bill := e.placed("c1", 5000)
	ctx := context.Background()
	if _, err := e.w.Settle(ctx, payflow.Settlement{BillID: bill, Status: payflow.SettlePaid, Amount: 4999, Provider: "sim", WebhookID: "x"}); !errors.Is(err, payflow.ErrAmountMismatch) {
		t.Fatalf("wrong amount: %v", err)
	}
	if _, err := e.w.Settle(ctx, payflow.Settlement{BillID: "nope", Status: payflow.SettlePaid, Amount: 5000, Provider: "sim", WebhookID: "y"}); !errors.Is(err, payflow.ErrNotFound) {
		t.Fatalf("unknown bill: %v", err)
	}
	// Neither left a receipt, so a corrected resend is still applied.
	if out, err := e.w.Settle(ctx, payflow.Settlement{BillID: bill, Status: payflow.SettlePaid, Amount: 5000, Provider: "sim", WebhookID: "x"}); err != nil || out != payflow.SettleApplied {
		t.Fatalf("resend: %v %v", out, err)
	}
}

func TestReconciliationSettlesWhatTheWebhookNeverReported(t *testing.T) {
	e := setup(t, methods{})
	bill := e.placed("c1", 5000)
	e.pg.mu.Lock()
	p := e.pg.bills[bill]
	p.Status = pgclient.StatusPaid
	e.pg.bills[bill] = p
	e.pg.mu.Unlock()
	n, err := e.w.Reconcile(context.Background(), 0, 10)
	if err != nil || n != 1 {
		t.Fatalf("reconciled %d, %v", n, err)
	}
	if ev := e.settledEvents(); len(ev) != 1 || data(ev[0])["status"] != "paid" {
		t.Fatalf("settled = %v", ev)
	}
	// Nothing left to do on the next round.
	if n, _ := e.w.Reconcile(context.Background(), 0, 10); n != 0 {
		t.Fatalf("second round settled %d", n)
	}
}

// The webhook and reconciliation race for one bill: exactly one settles.
func TestWebhookAndReconciliationRace(t *testing.T) {
	e := setup(t, methods{})
	ctx := context.Background()
	for round := 0; round < 10; round++ {
		bill := e.placed("race-"+string(rune('a'+round)), 1000)
		e.pg.mu.Lock()
		p := e.pg.bills[bill]
		p.Status = pgclient.StatusPaid
		e.pg.bills[bill] = p
		e.pg.mu.Unlock()
		var wg sync.WaitGroup
		wg.Add(2)
		go func() {
			defer wg.Done()
			_, _ = e.w.Settle(ctx, payflow.Settlement{BillID: bill, Status: payflow.SettlePaid, Amount: 1000, Provider: "sim", WebhookID: "w-" + bill})
		}()
		go func() { defer wg.Done(); _, _ = e.w.Reconcile(ctx, 0, 10) }()
		wg.Wait()
	}
	if n := len(e.settledEvents()); n != 10 {
		t.Fatalf("%d settled events for 10 bills", n)
	}
}

package worker_test

// Tests for the money bugs found by review after round one: each reproduces
// one interleaving that used to charge twice, lose money or give one
// request two results (DESIGN.md's failure-window table names them).

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/payflow/payflow/events"
	"github.com/payflow/payflow/internal/testdb"
	"github.com/payflow/payflow/outbox"
	"github.com/payflow/payflow/payflow"
	"github.com/payflow/payflow/pgclient"
	"github.com/payflow/payflow/store"
	"github.com/payflow/payflow/worker"
)

// setPG sets what the PG holds for a bill.
func (e *env) setPG(bill string, f func(*pgclient.Payment)) {
	e.pg.mu.Lock()
	defer e.pg.mu.Unlock()
	p := e.pg.bills[bill]
	f(&p)
	e.pg.bills[bill] = p
}

func (e *env) clearFaults() {
	e.pg.mu.Lock()
	defer e.pg.mu.Unlock()
	e.pg.faults = map[string][]fault{}
}

func (e *env) expireLeases() {
	e.t.Helper()
	if _, err := e.st.Pool.Exec(context.Background(), `UPDATE charges SET lease_until = now() - interval '1 second' WHERE lease_until IS NOT NULL`); err != nil {
		e.t.Fatal(err)
	}
}

// abandoned handles a charge whose every attempt meets a PG that did not
// act, so it is given up (place_failed, its bill abandoned), and returns it.
func (e *env) abandoned(charge string, amount int64) payflow.Charge {
	e.t.Helper()
	for i := 0; i < 10000; i++ {
		e.pg.failNext("kakao_bill", fault{kind: pgclient.KindTransient})
	}
	e.handle(chargeEvent(charge, "", amount))
	e.clearFaults()
	c, err := e.st.ChargeByKey(context.Background(), "m1", charge)
	if err != nil || c.State != payflow.StatePlaceFailed {
		e.t.Fatalf("state %s, %v; want place_failed", c.State, err)
	}
	return c
}

// refundsDue lets the wait before a refund's next attempt pass.
func (e *env) refundsDue() {
	e.t.Helper()
	if _, err := e.st.Pool.Exec(context.Background(), `UPDATE refunds SET retry_after = NULL`); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) chargeState(charge string) payflow.ChargeState {
	e.t.Helper()
	c, err := e.st.ChargeByKey(context.Background(), "m1", charge)
	if err != nil {
		e.t.Fatal(err)
	}
	return c.State
}

func repayEvent(charge, repay string) []byte {
	return requestEvent(events.TypeRepayRequested, map[string]any{"charge_id": charge, "repay_id": repay})
}

func cancelEvent(charge string) []byte {
	return requestEvent(events.TypeCancelRequested, map[string]any{"charge_id": charge, "reason": "x"})
}

// merchantEvent is a request event of another merchant than m1.
func merchantEvent(typ, merchant string, d map[string]any) []byte {
	seq := eventSeq.Add(1)
	d["merchant_id"] = merchant
	b, _ := json.Marshal(map[string]any{"specversion": "1.0", "id": fmt.Sprintf("evt-%d", seq), "source": "test",
		"type": typ, "datacontenttype": "application/json", "data": d})
	return b
}

func eventID(ev []byte) string {
	var v struct{ ID string }
	_ = json.Unmarshal(ev, &v)
	return v.ID
}

// handleUntilDone handles ev as the consumer would: an error means "not
// handled yet", and the message is tried again.
func handleUntilDone(ctx context.Context, t *testing.T, w *worker.Worker, ev []byte) {
	t.Helper()
	for {
		err := w.Handle(ctx, ev)
		if err == nil {
			return
		}
		if ctx.Err() != nil {
			t.Errorf("not handled before the deadline: %v", err)
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Case 1: re-payment P1's refund has an unknown outcome for its whole retry
// budget; re-payment P2 of the same charge arrives. P2 must wait for P1 and
// then be judged: the charge is no longer paid, so P2 is refused. Before,
// P2 billed the customer again with nothing refunded, and P1's refund later
// placed a third bill.
func TestASecondRepaymentWaitsForTheFirst(t *testing.T) {
	e := setup(t, methods{})
	ctx := context.Background()
	e.paid("c1", 5000)
	e.pg.failNext("refund", fault{kind: pgclient.KindUnknown, after: true})
	for i := 0; i < 10000; i++ {
		e.pg.failNext("refund", fault{kind: pgclient.KindTransient})
	}
	short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	_ = e.w.Handle(short, repayEvent("c1", "p1"))
	cancel()
	p2 := repayEvent("c1", "p2")
	_ = e.w.Handle(ctx, p2) // judged now, or told to wait
	if n := e.pg.count("kakao_bill"); n != 1 {
		t.Fatalf("%d KakaoTalk bills while the first re-payment's refund is unconfirmed, want 1", n)
	}
	e.clearFaults()
	e.refundsDue()
	if err := e.w.SweepRefunds(ctx, 10); err != nil {
		t.Fatal(err)
	}
	e.handle(p2)
	if e.pg.refundCount != 1 || e.pg.count("kakao_bill") != 2 {
		t.Fatalf("PG refunds %d, bills %d; want 1 refund and the first re-payment's one new bill", e.pg.refundCount, e.pg.count("kakao_bill"))
	}
	if rp := e.ofType(events.TypeRepayProcessed); len(rp) != 1 || data(rp[0])["repay_id"] != "p1" {
		t.Fatalf("repay.processed = %v", rp)
	}
	rej := e.ofType(events.TypeRejected)
	if len(rej) != 1 || data(rej[0])["reason"] != "invalid_state" || data(rej[0])["request_event_id"] != eventID(p2) {
		t.Fatalf("rejections = %v, want the second re-payment refused invalid_state", rej)
	}
}

// Case 2: a worker placed the bill and died; the sweeper resumes while the
// PG's look-up is down for the whole retry budget. Not knowing is not "not
// placed": the charge must stay placing, never be reported failed.
func TestAResumedDriveThatCannotLookUpIsNotAFailure(t *testing.T) {
	e := setup(t, methods{})
	ctx := context.Background()
	e.stranded("dead-worker", time.Millisecond)
	if _, err := e.pg.SendKakaoBill(ctx, pgclient.KakaoBillRequest{BillID: "bill-1", Amount: 700, Phone: "+821012345678"}); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 10000; i++ {
		e.pg.failNext("lookup", fault{kind: pgclient.KindTransient})
	}
	time.Sleep(5 * time.Millisecond)
	if _, err := e.w.Sweep(ctx, 10); err != nil {
		t.Fatal(err)
	}
	if res := e.results(); len(res) != 0 {
		t.Fatalf("a charge the PG executed was reported while its look-up was down: %v", res)
	}
	if s := e.chargeState("c1"); s != payflow.StatePlacing {
		t.Fatalf("state %s, want placing", s)
	}
	e.clearFaults()
	e.expireLeases()
	if _, err := e.w.Sweep(ctx, 10); err != nil {
		t.Fatal(err)
	}
	res := e.results()
	if len(res) != 1 || res[0]["type"] != events.TypeChargeProcessed || data(res[0])["bill_id"] != "bill-1" {
		t.Fatalf("results = %v, want bill-1 processed", res)
	}
	if n := e.pg.count("kakao_bill"); n != 1 {
		t.Fatalf("kakao_bill calls = %d, want 1", n)
	}
}

// Case 2, the other half: a bill given up on stays under reconciliation, so
// a payment the PG executed after all is found and recorded.
func TestALatePaymentOfAnAbandonedBillIsFound(t *testing.T) {
	e := setup(t, methods{})
	ctx := context.Background()
	c := e.abandoned("c1", 700)
	e.setPG(c.Bill.BillID, func(p *pgclient.Payment) {
		*p = pgclient.Payment{BillID: c.Bill.BillID, Status: pgclient.StatusPaid, Amount: 700, PGTxID: "tx-late"}
	})
	if _, err := e.w.Reconcile(ctx, 0, 10); err != nil {
		t.Fatal(err)
	}
	if ev := e.settledEvents(); len(ev) != 1 || data(ev[0])["status"] != "paid" {
		t.Fatalf("settled = %v, want the late payment recorded", ev)
	}
	if s := e.chargeState("c1"); s != payflow.StatePaid {
		t.Fatalf("state %s, want paid", s)
	}
}

// troubleObserver records what the worker reports as reconciliation
// trouble.
type troubleObserver struct {
	mu  sync.Mutex
	got []string
}

func (*troubleObserver) Result(string, string) {}
func (*troubleObserver) Retry(string)          {}
func (o *troubleObserver) Reconciled(outcome string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.got = append(o.got, outcome)
}
func (*troubleObserver) Step(ctx context.Context, _ string) (context.Context, func(error)) {
	return ctx, func(error) {}
}

func (o *troubleObserver) outcomes() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return fmt.Sprint(o.got)
}

// A late payment of a bill given up on is reported for an operator however
// it is found: by a webhook or callback (Settle) as by reconciliation. A
// bill given up on that closes without payment is not, nor is a bill that
// was open.
func TestALatePaymentIsReportedHoweverItIsFound(t *testing.T) {
	e := setup(t, methods{})
	ctx := context.Background()
	o := &troubleObserver{}
	w := worker.New(worker.Config{Store: e.st, PG: e.pg, Methods: methods{}, Lease: time.Minute,
		RetryBudget: 2 * time.Second, RetryInitial: time.Millisecond, Observer: o})
	byWebhook := e.abandoned("c1", 700)
	if out, err := w.Settle(ctx, payflow.Settlement{BillID: byWebhook.Bill.BillID, Status: payflow.SettlePaid, Amount: 700,
		Provider: "test", WebhookID: "wh-1"}); err != nil || out != payflow.SettleApplied {
		t.Fatalf("settle = %s, %v", out, err)
	}
	if got := o.outcomes(); got != "[late_paid]" {
		t.Fatalf("reported %s after a webhook's late payment, want [late_paid]", got)
	}
	if out, err := w.Settle(ctx, payflow.Settlement{BillID: byWebhook.Bill.BillID, Status: payflow.SettlePaid, Amount: 700,
		Provider: "test", WebhookID: "wh-1"}); err != nil || out != payflow.SettleDuplicate {
		t.Fatalf("the webhook again: %s, %v", out, err)
	}
	if got := o.outcomes(); got != "[late_paid]" {
		t.Fatalf("reported %s after the webhook came again, want it once", got)
	}
	byReconciliation := e.abandoned("c2", 800)
	e.setPG(byReconciliation.Bill.BillID, func(p *pgclient.Payment) {
		*p = pgclient.Payment{BillID: byReconciliation.Bill.BillID, Status: pgclient.StatusPaid, Amount: 800, PGTxID: "tx-late"}
	})
	if n, err := w.Reconcile(ctx, 0, 10); err != nil || n != 1 {
		t.Fatalf("reconciled %d, %v", n, err)
	}
	if got := o.outcomes(); got != "[late_paid late_paid]" {
		t.Fatalf("reported %s after reconciliation's, want it once more", got)
	}
	closed := e.abandoned("c4", 600)
	if _, err := w.Settle(ctx, payflow.Settlement{BillID: closed.Bill.BillID, Status: payflow.SettleCancelled, Amount: 600,
		Provider: "test", WebhookID: "wh-4"}); err != nil {
		t.Fatal(err)
	}
	if got := o.outcomes(); got != "[late_paid late_paid]" {
		t.Fatalf("reported %s after a bill given up on was cancelled, which moved no money", got)
	}
	open := e.placed("c3", 900)
	if _, err := w.Settle(ctx, payflow.Settlement{BillID: open, Status: payflow.SettlePaid, Amount: 900, Provider: "test", WebhookID: "wh-3"}); err != nil {
		t.Fatal(err)
	}
	if got := o.outcomes(); got != "[late_paid late_paid]" {
		t.Fatalf("reported %s after an open bill was paid", got)
	}
}

// A payment the PG reports for a bill held final and unpaid here (an
// auto-pay that landed after its decline was recorded, a bill paid after
// it expired) settles nothing, but it is reported for an operator, once:
// found by review, such a callback was ignored without a word, as if the
// bill were paid already. A bill that closes without payment, or a payment
// of a bill already paid, is not reported.
func TestAPaymentOfABillHeldUnpaidIsReported(t *testing.T) {
	e := setup(t, methods{"mem1": "decline_card"})
	ctx := context.Background()
	o := &troubleObserver{}
	w := worker.New(worker.Config{Store: e.st, PG: e.pg, Methods: methods{"mem1": "decline_card"}, Lease: time.Minute,
		RetryBudget: 2 * time.Second, RetryInitial: time.Millisecond, Observer: o})
	e.handle(chargeEvent("c1", "mem1", 5000))
	var declined string
	if err := e.st.Pool.QueryRow(ctx, `SELECT bill_id FROM bills WHERE status = 'declined'`).Scan(&declined); err != nil {
		t.Fatal(err)
	}
	expired := e.placed("c2", 900)
	paid := e.placed("c3", 700)
	for _, s := range []payflow.Settlement{
		{BillID: expired, Status: payflow.SettleExpired, Amount: 900, Provider: "test", WebhookID: "wh-1"},
		{BillID: paid, Status: payflow.SettlePaid, Amount: 700, Provider: "test", WebhookID: "wh-2"},
		{BillID: declined, Status: payflow.SettleFailed, Amount: 5000, Provider: "test", WebhookID: "wh-3"},
		{BillID: paid, Status: payflow.SettlePaid, Amount: 700, Provider: "test", WebhookID: "wh-4"},
	} {
		if _, err := w.Settle(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	if got := o.outcomes(); got != "[]" {
		t.Fatalf("reported %s before any contradiction", got)
	}
	for i, s := range []payflow.Settlement{
		{BillID: declined, Status: payflow.SettlePaid, Amount: 5000, Provider: "test", WebhookID: "wh-5"},
		{BillID: declined, Status: payflow.SettlePaid, Amount: 5000, Provider: "test", WebhookID: "wh-5"},
		{BillID: expired, Status: payflow.SettlePaid, Amount: 900}, // reconciliation's word
	} {
		out, err := w.Settle(ctx, s)
		if want := []payflow.SettleOutcome{payflow.SettleIgnored, payflow.SettleDuplicate, payflow.SettleIgnored}[i]; err != nil || out != want {
			t.Fatalf("settlement %d: %s, %v; want %s", i, out, err, want)
		}
	}
	if got := o.outcomes(); got != "[paid_contradicted paid_contradicted]" {
		t.Fatalf("reported %s, want each contradicted bill once", got)
	}
	var n int
	if err := e.st.Pool.QueryRow(ctx, `SELECT count(*) FROM bills WHERE status = 'paid'`).Scan(&n); err != nil || n != 1 {
		t.Fatalf("%d bills paid (%v), want only c3's", n, err)
	}
}

// Case 3: a producer retry of a charge, on the same lane of the same
// process, while that process's lease still runs after an unknown outcome:
// the first request may still be in flight, so nobody may drive the charge
// before the lease expires, its holder included.
func TestADuplicateInsideTheHoldersOwnLeaseDoesNotDriveAgain(t *testing.T) {
	e := setup(t, methods{})
	e.pg.failNext("kakao_bill", fault{kind: pgclient.KindUnknown}) // in flight
	for i := 0; i < 10000; i++ {
		e.pg.failNext("kakao_bill", fault{kind: pgclient.KindTransient})
	}
	e.handle(chargeEvent("c1", "", 700))
	before := e.pg.count("kakao_bill") + e.pg.count("lookup")
	e.handle(chargeEvent("c1", "", 700))
	if after := e.pg.count("kakao_bill") + e.pg.count("lookup"); after != before {
		t.Fatalf("the duplicate called the PG %d times inside the lease", after-before)
	}
	if res := e.results(); len(res) != 0 {
		t.Fatalf("results = %v", res)
	}
}

// Case 4: a bill the PG no longer knows must not stop the bills behind it.
func TestOneBillThePGCannotAnswerForDoesNotStopReconciliation(t *testing.T) {
	e := setup(t, methods{})
	ctx := context.Background()
	lost := e.placed("c-lost", 1000)
	paid := e.placed("c-paid", 2000)
	e.pg.mu.Lock()
	delete(e.pg.bills, lost)
	e.pg.mu.Unlock()
	e.setPG(paid, func(p *pgclient.Payment) { p.Status = pgclient.StatusPaid })
	if _, err := e.w.Reconcile(ctx, 0, 10); err != nil {
		t.Fatal(err)
	}
	if ev := e.settledEvents(); len(ev) != 1 || data(ev[0])["bill_id"] != paid {
		t.Fatalf("settled = %v, want %s", ev, paid)
	}
	var reason string
	if err := e.st.Pool.QueryRow(ctx, `SELECT coalesce(reconcile_error, '') FROM bills WHERE bill_id = $1`, lost).Scan(&reason); err != nil {
		t.Fatal(err)
	}
	if reason == "" {
		t.Fatal("the bill the PG cannot answer for shows no reconciliation error")
	}
}

// A bill whose settlement fails (here a broken invariant: its charge is in a
// state no settlement leaves) is backed off with the reason stored, and the
// round goes on. Found by review: the round ended at it, and since it kept
// the earliest place in the queue, every round after it ended there too.
func TestABillThatCannotBeSettledDoesNotStopReconciliation(t *testing.T) {
	e := setup(t, methods{})
	ctx := context.Background()
	broken := e.placed("c-broken", 1000)
	paid := e.placed("c-paid", 2000)
	e.setPG(broken, func(p *pgclient.Payment) { p.Status = pgclient.StatusPaid })
	e.setPG(paid, func(p *pgclient.Payment) { p.Status = pgclient.StatusPaid })
	if _, err := e.st.Pool.Exec(ctx, `UPDATE charges SET state = 'cancelled' WHERE charge_id = 'c-broken'`); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		if _, err := e.w.Reconcile(ctx, 0, 1); err != nil {
			t.Fatalf("round %d: %v", i+1, err)
		}
	}
	if ev := e.settledEvents(); len(ev) != 1 || data(ev[0])["bill_id"] != paid {
		t.Fatalf("settled = %v, want %s", ev, paid)
	}
	var reason string
	if err := e.st.Pool.QueryRow(ctx, `SELECT coalesce(reconcile_error, '') FROM bills WHERE bill_id = $1`, broken).Scan(&reason); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(reason, "settle_failed") {
		t.Fatalf("the bill that cannot be settled shows %q", reason)
	}
}

// Case 4: bills whose amount differs at the PG are left for an operator;
// they must not take every round's places.
func TestAmountMismatchesDoNotStarveReconciliation(t *testing.T) {
	e := setup(t, methods{})
	ctx := context.Background()
	odd := e.placed("c-odd", 1000)
	paid := e.placed("c-paid", 2000)
	e.setPG(odd, func(p *pgclient.Payment) { p.Status, p.Amount = pgclient.StatusPaid, 999 })
	e.setPG(paid, func(p *pgclient.Payment) { p.Status = pgclient.StatusPaid })
	for i := 0; i < 3; i++ {
		if _, err := e.w.Reconcile(ctx, 0, 1); err != nil {
			t.Fatal(err)
		}
	}
	if ev := e.settledEvents(); len(ev) != 1 || data(ev[0])["bill_id"] != paid {
		t.Fatalf("settled = %v, want %s", ev, paid)
	}
}

// Case 5: a merchant's refund id "repay:p1" and re-payment "p1" are two
// requests; before, the re-payment's internal refund id collided and the
// request failed forever. Internally each kind has its own namespace; the
// published one ("repay:<id>" for a re-payment's refund step) is reserved,
// so a merchant's "repay:p1" is refused with a clear reason and the
// re-payment goes through.
func TestAMerchantRefundIDNeverCollidesWithARepayment(t *testing.T) {
	e := setup(t, methods{})
	e.paid("c1", 5000)
	e.handle(refundEvent("c1", "repay:p1", 1000))
	e.handle(repayEvent("c1", "p1"))
	if rp := e.ofType(events.TypeRepayProcessed); len(rp) != 1 {
		t.Fatalf("repay.processed = %v", e.results())
	}
	if rej := e.ofType(events.TypeRejected); len(rej) != 1 || data(rej[0])["reason"] != "invalid" {
		t.Fatalf("rejections = %v, want the reserved refund id refused", rej)
	}
	if ok := e.ofType(events.TypeRefundSucceeded); len(ok) != 1 || data(ok[0])["refund_id"] != "repay:p1" {
		t.Fatalf("refund.succeeded = %v, want the re-payment's", ok)
	}
	if e.pg.refundCount != 1 {
		t.Fatalf("PG refunds = %d, want 1", e.pg.refundCount)
	}
}

// The PG's refund id must be unambiguous: merchant "m" refund "1/x" and
// merchant "m/1" refund "x" are two refunds, not one.
func TestPGRefundIDsAreUnambiguous(t *testing.T) {
	e := setup(t, methods{})
	ctx := context.Background()
	for _, merchant := range []string{"m", "m/1"} {
		e.handle(merchantEvent(events.TypeChargeRequested, merchant, map[string]any{"charge_id": "c", "amount": 1000, "currency": "KRW",
			"order_name": "o", "customer": map[string]any{"phone": "010-1234-5678", "name": "Kim"}}))
		c, err := e.st.ChargeByKey(ctx, merchant, "c")
		if err != nil {
			t.Fatal(err)
		}
		e.setPG(c.Bill.BillID, func(p *pgclient.Payment) { p.Status = pgclient.StatusPaid })
		if _, err := e.w.Settle(ctx, payflow.Settlement{BillID: c.Bill.BillID, Status: payflow.SettlePaid, Amount: 1000}); err != nil {
			t.Fatal(err)
		}
	}
	e.handle(merchantEvent(events.TypeRefundRequested, "m", map[string]any{"charge_id": "c", "refund_id": "1/x", "amount": 500, "reason": "r"}))
	e.handle(merchantEvent(events.TypeRefundRequested, "m/1", map[string]any{"charge_id": "c", "refund_id": "x", "amount": 500, "reason": "r"}))
	if e.pg.refundCount != 2 {
		t.Fatalf("PG refunds = %d, want 2", e.pg.refundCount)
	}
}

// flakyKeys is a key source that cannot be read right now (a pool timeout,
// a database blip).
type flakyKeys struct{ methods }

func (flakyKeys) BillingKey(context.Context, string) (string, error) {
	return "", errors.New("pool: acquire timeout")
}

// Case 6: a transient error reading a billing key is no decline: the card
// is not given up and no KakaoTalk bill replaces it.
func TestAKeySourceBlipDoesNotDisableTheCard(t *testing.T) {
	st := testdb.New(t)
	pg := newFakePG()
	w := worker.New(worker.Config{Store: st, PG: pg, Methods: flakyKeys{methods{"mem1": "bk"}}, Lease: time.Minute,
		RetryBudget: 300 * time.Millisecond, RetryInitial: time.Millisecond})
	ctx := context.Background()
	req := payflow.ChargeRequest{MerchantID: "m1", ChargeID: "c1", Amount: 700, Currency: "KRW", OrderName: "order",
		Customer: payflow.Customer{MemberID: "mem1", Phone: "+821012345678", Name: "Kim"}}
	if _, _, err := st.CreateCharge(ctx, payflow.NewCharge{Request: req, RequestHash: req.Fingerprint(), RequestEventID: "e",
		Bill:       payflow.Bill{BillID: "bill-1", Method: payflow.MethodAutoPay, MethodID: methodID("mem1"), Amount: 700},
		LeaseOwner: "dead-worker", Lease: time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(5 * time.Millisecond)
	if _, err := w.Sweep(ctx, 10); err != nil {
		t.Fatal(err)
	}
	var declined int
	if err := st.Pool.QueryRow(ctx, `SELECT count(*) FROM bills WHERE status = 'declined'`).Scan(&declined); err != nil {
		t.Fatal(err)
	}
	if declined != 0 || pg.count("kakao_bill") != 0 {
		t.Fatalf("a key-source blip declined the card: %d declined bills, %d KakaoTalk bills", declined, pg.count("kakao_bill"))
	}
}

// Case 7: a refund rejected while its charge was unpaid, redelivered after
// the customer paid: the request's one result is its rejection.
func TestARejectionIsTheRequestsOneResult(t *testing.T) {
	e := setup(t, methods{})
	ctx := context.Background()
	bill := e.placed("c1", 5000)
	ev := refundEvent("c1", "r1", 1000)
	e.handle(ev)
	e.setPG(bill, func(p *pgclient.Payment) { p.Status = pgclient.StatusPaid })
	if _, err := e.w.Settle(ctx, payflow.Settlement{BillID: bill, Status: payflow.SettlePaid, Amount: 5000}); err != nil {
		t.Fatal(err)
	}
	e.handle(ev) // the process died before the offset commit
	if ok := e.ofType(events.TypeRefundSucceeded); len(ok) != 0 || e.pg.refundCount != 0 {
		t.Fatalf("a rejected request was executed on redelivery: %v", ok)
	}
	if rej := e.ofType(events.TypeRejected); len(rej) != 1 {
		t.Fatalf("rejections = %v", rej)
	}
}

// Case 8: fallback is for auto-pay only; a declined KakaoTalk bill ends the
// charge instead of sending another bill.
func TestADeclinedKakaoBillFailsTheChargeWithoutAnotherBill(t *testing.T) {
	e := setup(t, methods{})
	for i := 0; i < 1000; i++ {
		e.pg.failNext("kakao_bill", fault{kind: pgclient.KindDeclined})
	}
	e.handle(chargeEvent("c1", "", 700))
	if n := e.pg.count("kakao_bill"); n != 1 {
		t.Fatalf("%d KakaoTalk bills for one charge, want 1", n)
	}
	if res := e.results(); len(res) != 1 || res[0]["type"] != events.TypeChargeFailed {
		t.Fatalf("results = %v, want charge.failed", res)
	}
	// The refused bill is declined, not given up on: reconciliation does
	// not chase it.
	if _, err := e.w.Reconcile(context.Background(), 0, 10); err != nil {
		t.Fatal(err)
	}
	if res := e.results(); len(res) != 1 {
		t.Fatalf("results after reconciliation = %v", res)
	}
}

// Case 9: after a rebalance kafka-go still hands the revoked process the
// messages it fetched, so two processes run one charge's requests at once.
// Each request must still get one result: the cancel is either executed or
// refused, never both, and never refused while the other executes it.
func TestTwoProcessesOnOneChargeGiveEachRequestOneResult(t *testing.T) {
	e := setup(t, methods{})
	e.pg.delay = 300 * time.Millisecond
	b := worker.New(worker.Config{Store: e.st, PG: e.pg, Methods: methods{}, Lease: time.Minute,
		RetryBudget: 2 * time.Second, RetryInitial: time.Millisecond})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	charge, cancelReq := chargeEvent("c1", "", 1000), cancelEvent("c1")
	var wg sync.WaitGroup
	for i, w := range []*worker.Worker{e.w, b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			time.Sleep(time.Duration(i) * 100 * time.Millisecond) // the second starts mid-placement
			handleUntilDone(ctx, t, w, charge)
			handleUntilDone(ctx, t, w, cancelReq)
		}()
	}
	wg.Wait()
	var cancelled, rejected int
	for _, r := range e.results() {
		switch {
		case r["type"] == events.TypeBillCancelled:
			cancelled++
		case r["type"] == events.TypeRejected && data(r)["request_event_id"] == eventID(cancelReq):
			rejected++
		}
	}
	if cancelled+rejected != 1 {
		t.Fatalf("the cancel got %d bill.cancelled and %d rejections", cancelled, rejected)
	}
	if rejected == 1 && e.pg.count("destroy") > 0 {
		t.Fatal("the bill was destroyed at the PG after its cancel was refused")
	}
}

// Case 10: a cancel that arrives while its charge is being placed waits
// for the placement, then cancels: "still placing" means "not yet".
func TestACancelWhileTheBillIsBeingPlacedWaits(t *testing.T) {
	e := setup(t, methods{})
	ctx := context.Background()
	e.stranded("live-worker", time.Hour)
	cancelReq := cancelEvent("c1")
	if err := e.w.Handle(ctx, cancelReq); err == nil {
		t.Fatal("a cancel was judged while its charge was still being placed")
	}
	if rej := e.ofType(events.TypeRejected); len(rej) != 0 {
		t.Fatalf("rejections = %v", rej)
	}
	e.expireLeases()
	if _, err := e.w.Sweep(ctx, 10); err != nil {
		t.Fatal(err)
	}
	e.handle(cancelReq)
	if ev := e.ofType(events.TypeBillCancelled); len(ev) != 1 || len(e.ofType(events.TypeRejected)) != 0 {
		t.Fatalf("results = %v, want the bill cancelled", e.results())
	}
}

// unreachablePG is a PG this worker cannot reach: every bill is refused
// before the PG acts (503, connection refused).
type unreachablePG struct{ *fakePG }

func (p unreachablePG) SendKakaoBill(context.Context, pgclient.KakaoBillRequest) (pgclient.Accepted, error) {
	time.Sleep(20 * time.Millisecond)
	return pgclient.Accepted{}, &pgclient.Error{Op: "kakao_bill", Kind: pgclient.KindTransient, Message: "unreachable"}
}

// Case 11 (found by the chaos run): worker A stalls past its lease (a
// database restart, a starved CPU); worker B takes the charge over and its
// PG call is accepted; A's retry budget then ends with "never placed" by
// its own attempts. A no longer holds the charge, so its conclusion must
// not be recorded: before, A wrote place_failed and abandoned the bill
// that B had placed, and the customer paid a bill payflow had given up on.
func TestAWorkerThatLostItsLeaseRecordsNothing(t *testing.T) {
	e := setup(t, methods{})
	ctx := context.Background()
	a := worker.New(worker.Config{Store: e.st, PG: unreachablePG{e.pg}, Methods: methods{}, Owner: "A", Lease: 100 * time.Millisecond,
		RetryBudget: 700 * time.Millisecond, RetryInitial: 10 * time.Millisecond})
	b := worker.New(worker.Config{Store: e.st, PG: e.pg, Methods: methods{}, Owner: "B", Lease: time.Minute,
		RetryBudget: 2 * time.Second, RetryInitial: time.Millisecond})
	e.pg.delay = time.Second
	done := make(chan error, 1)
	go func() { done <- a.Handle(ctx, chargeEvent("c1", "", 700)) }()
	time.Sleep(300 * time.Millisecond) // A's lease has expired; A is still retrying
	if n, err := b.Sweep(ctx, 10); err != nil || n != 1 {
		t.Fatalf("B swept %d, %v", n, err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	c, _ := e.st.ChargeByKey(ctx, "m1", "c1")
	res := e.results()
	if c.State != payflow.StateRequested || len(res) != 1 || res[0]["type"] != events.TypeChargeProcessed {
		t.Fatalf("state %s, results %v; want the bill B placed recorded, and nothing of A's", c.State, res)
	}
}

// The same refund re-sent under a new event id after its rejection is the
// same request: it is not judged again (the contract: a re-sent identical
// request makes no second result).
func TestAResentRejectedRefundIsNotJudgedAgain(t *testing.T) {
	e := setup(t, methods{})
	ctx := context.Background()
	bill := e.placed("c1", 5000)
	e.handle(refundEvent("c1", "r1", 1000))
	e.setPG(bill, func(p *pgclient.Payment) { p.Status = pgclient.StatusPaid })
	if _, err := e.w.Settle(ctx, payflow.Settlement{BillID: bill, Status: payflow.SettlePaid, Amount: 5000}); err != nil {
		t.Fatal(err)
	}
	e.handle(refundEvent("c1", "r1", 1000))
	if ok := e.ofType(events.TypeRefundSucceeded); len(ok) != 0 || e.pg.refundCount != 0 {
		t.Fatalf("a re-sent rejected refund was executed: %v", ok)
	}
	if rej := e.ofType(events.TypeRejected); len(rej) != 1 {
		t.Fatalf("rejections = %v, want the first only", rej)
	}
	// Other content under the same refund id is another request.
	e.handle(refundEvent("c1", "r1", 999))
	if ok := e.ofType(events.TypeRefundSucceeded); len(ok) != 1 {
		t.Fatalf("refund.succeeded = %v", ok)
	}
}

// A bill given up on that is open at the PG after all (a request landed
// late) is destroyed: its charge was reported failed, the customer must not
// pay it.
func TestAnAbandonedBillOpenAtThePGIsDestroyed(t *testing.T) {
	e := setup(t, methods{})
	ctx := context.Background()
	c := e.abandoned("c1", 700)
	e.setPG(c.Bill.BillID, func(p *pgclient.Payment) {
		*p = pgclient.Payment{BillID: c.Bill.BillID, Status: pgclient.StatusRequested, Amount: 700}
	})
	if _, err := e.w.Reconcile(ctx, 0, 10); err != nil {
		t.Fatal(err)
	}
	if p := e.pg.bills[c.Bill.BillID]; p.Status != pgclient.StatusCancelled {
		t.Fatalf("the PG holds the bill %s, want it destroyed", p.Status)
	}
	if ev := e.settledEvents(); len(ev) != 1 || data(ev[0])["status"] != "cancelled" {
		t.Fatalf("settled = %v", ev)
	}
}

// fullCancelPG is a PG that can only cancel a payment in full.
type fullCancelPG struct{ *fakePG }

func (fullCancelPG) Capabilities() pgclient.Capabilities { return pgclient.Capabilities{} }

// A partial refund on a PG that cancels only in full is refused
// not_supported and never sent; a full one goes through.
func TestAPartialRefundThePGCannotDoIsNotSupported(t *testing.T) {
	e := setup(t, methods{})
	e.w = worker.New(worker.Config{Store: e.st, PG: fullCancelPG{e.pg}, Methods: methods{}, Lease: time.Minute,
		RetryBudget: 2 * time.Second, RetryInitial: time.Millisecond})
	e.paid("c1", 5000)
	e.handle(refundEvent("c1", "r1", 1000))
	if rej := e.ofType(events.TypeRejected); len(rej) != 1 || data(rej[0])["reason"] != "not_supported" {
		t.Fatalf("rejections = %v, want not_supported", rej)
	}
	if e.pg.count("refund") != 0 {
		t.Fatal("a partial refund was sent to a PG that cannot do it")
	}
	e.handle(refundEvent("c1", "r2", 5000))
	if ok := e.ofType(events.TypeRefundSucceeded); len(ok) != 1 {
		t.Fatalf("refund.succeeded = %v", ok)
	}
}

// stallingPG is a PG whose answer takes longer than the lease: the caller's
// clock moves on by a lease while it waits, and the answer is "refused".
type stallingPG struct {
	*fakePG
	now *time.Time
}

func (p stallingPG) SendKakaoBill(context.Context, pgclient.KakaoBillRequest) (pgclient.Accepted, error) {
	p.mu.Lock()
	p.calls["kakao_bill"]++
	p.mu.Unlock()
	*p.now = p.now.Add(2 * time.Minute)
	return pgclient.Accepted{}, &pgclient.Error{Op: "kakao_bill", Kind: pgclient.KindTransient}
}

// A worker that stalled past its lease (found by the simulation: a
// successor had looked the bill up and placed it meanwhile) sends nothing
// more and concludes nothing: its lease may be another's.
func TestADriveStopsWhenItsLeaseHasRunOut(t *testing.T) {
	st := testdb.New(t)
	now := time.Now()
	pg := stallingPG{newFakePG(), &now}
	w := worker.New(worker.Config{Store: st, PG: pg, Methods: methods{}, Lease: time.Minute,
		RetryBudget: 10 * time.Minute, RetryInitial: time.Millisecond, Now: func() time.Time { return now }})
	if err := w.Handle(context.Background(), chargeEvent("c1", "", 700)); err != nil {
		t.Fatal(err)
	}
	if n := pg.count("kakao_bill"); n != 1 {
		t.Fatalf("kakao_bill calls = %d, want 1: no request after the lease ran out", n)
	}
	c, _ := st.ChargeByKey(context.Background(), "m1", "c1")
	if c.State != payflow.StatePlacing {
		t.Fatalf("state %s, want placing: a worker whose lease ran out concludes nothing", c.State)
	}
}

// stallAfterClaim moves the clock past the lease as the decide step, the
// claim included, ends: a process paused right after its claim committed.
type stallAfterClaim struct {
	troubleObserver
	now   *time.Time
	lease time.Duration
}

func (o *stallAfterClaim) Step(ctx context.Context, step string) (context.Context, func(error)) {
	return ctx, func(error) {
		if step == worker.StepDecide {
			*o.now = o.now.Add(2 * o.lease)
		}
	}
}

// A process that stalls between its claim and its first PG call (found by
// the simulation, seed 10252: a successor took the charge over, could not
// open the billing key and fell back to a KakaoTalk bill without the PG
// ever seeing the auto-pay bill's id; the stalled process then sent that
// id, and the customer was charged twice) sends nothing: its lease is
// counted from the claim, not from when its drive begins.
func TestADriveAfterAStallPastTheLeaseSendsNothing(t *testing.T) {
	st := testdb.New(t)
	now := time.Now()
	pg := newFakePG()
	w := worker.New(worker.Config{Store: st, PG: pg, Methods: methods{}, Lease: time.Minute,
		RetryBudget: 10 * time.Second, RetryInitial: time.Millisecond, Now: func() time.Time { return now },
		Observer: &stallAfterClaim{now: &now, lease: time.Minute}})
	if err := w.Handle(context.Background(), chargeEvent("c1", "", 700)); err != nil {
		t.Fatal(err)
	}
	if n := pg.count("kakao_bill"); n != 0 {
		t.Fatalf("kakao_bill calls = %d, want none after the lease ran out", n)
	}
	c, _ := st.ChargeByKey(context.Background(), "m1", "c1")
	if c.State != payflow.StatePlacing {
		t.Fatalf("state %s, want placing: left to the next holder", c.State)
	}
}

// slowLookupPG answers a look-up only after the caller's clock has moved
// past a lease: the answer ("not found") is true when the PG gave it, not
// when the caller reads it.
type slowLookupPG struct {
	*fakePG
	now *time.Time
}

func (p slowLookupPG) LookupPayment(ctx context.Context, billID string) (pgclient.Payment, error) {
	pay, err := p.fakePG.LookupPayment(ctx, billID)
	*p.now = p.now.Add(2 * time.Minute)
	return pay, err
}

// A drive taken over whose look-up of the bill answers only after its
// lease has run out sends nothing (found by the simulation, seed 11135:
// the deadline was checked before the look-up and not again before the
// call, so a request left past the lease, and the successor that had
// looked the bill up meanwhile gave up a bill the PG then declined).
func TestADriveWhoseLookupOutlivesTheLeaseSendsNothing(t *testing.T) {
	e := setup(t, methods{})
	e.pg.failNext("kakao_bill", fault{kind: pgclient.KindUnknown}) // may be in flight: left placing
	for i := 0; i < 10000; i++ {
		e.pg.failNext("kakao_bill", fault{kind: pgclient.KindTransient})
	}
	e.handle(chargeEvent("c1", "", 700))
	e.clearFaults()
	e.expireLeases()
	before := e.pg.count("kakao_bill")
	now := time.Now()
	successor := worker.New(worker.Config{Store: e.st, PG: slowLookupPG{e.pg, &now}, Methods: methods{}, Lease: time.Minute,
		RetryBudget: 10 * time.Second, RetryInitial: time.Millisecond, Now: func() time.Time { return now }})
	if n, err := successor.Sweep(context.Background(), 10); err != nil || n != 1 {
		t.Fatalf("swept %d, %v", n, err)
	}
	if n := e.pg.count("kakao_bill") - before; n != 0 {
		t.Fatalf("kakao_bill calls after the look-up = %d, want none: the lease had run out", n)
	}
	if s := e.chargeState("c1"); s != payflow.StatePlacing {
		t.Fatalf("state %s, want placing: left to the next holder", s)
	}
}

// A bill paid and then refunded outside payflow (a PG that reports a
// cancelled payment as paid with the amount refunded, as PaySSam's C
// state does; an operator's cancel in the PG's console) must not be
// reported paid when reconciliation finds it: the merchant would deliver
// for money the customer has back. A full return settles the bill
// cancelled; a partial one is left for an operator.
func TestAPaymentReturnedOutsidePayflowIsNotReportedPaid(t *testing.T) {
	e := setup(t, methods{})
	ctx := context.Background()
	full := e.placed("c-full", 700)
	part := e.placed("c-part", 900)
	e.setPG(full, func(p *pgclient.Payment) {
		p.Status, p.Amount, p.Refunded = pgclient.StatusPaid, 700, 700
	})
	e.setPG(part, func(p *pgclient.Payment) {
		p.Status, p.Amount, p.Refunded = pgclient.StatusPaid, 900, 100
	})
	if _, err := e.w.Reconcile(ctx, 0, 10); err != nil {
		t.Fatal(err)
	}
	for _, ev := range e.settledEvents() {
		if data(ev)["status"] == "paid" {
			t.Fatalf("settled %v: reported paid though the money went back", data(ev))
		}
	}
	if s := e.chargeState("c-full"); s != payflow.StateCancelled {
		t.Fatalf("fully returned: state %s, want cancelled", s)
	}
	if s := e.chargeState("c-part"); s != payflow.StateRequested {
		t.Fatalf("partly returned: state %s, want requested (left for an operator)", s)
	}
	var reason string
	if err := e.st.Pool.QueryRow(ctx, `SELECT coalesce(reconcile_error, '') FROM bills WHERE bill_id = $1`, part).Scan(&reason); err != nil {
		t.Fatal(err)
	}
	if reason != "refunded_outside" {
		t.Fatalf("partly returned: reconcile_error %q, want refunded_outside", reason)
	}
}

// successor is a store in front of which someone else acts on the charge,
// once, just before a refund is stored or a cancel recorded: the judging
// worker stalled past its lease meanwhile.
type successor struct {
	*store.Store
	once sync.Once
	act  func(pk int64)
}

func (s *successor) CreateRefund(ctx context.Context, r payflow.NewRefund) (int64, bool, error) {
	s.once.Do(func() { s.act(r.ChargePK) })
	return s.Store.CreateRefund(ctx, r)
}

func (s *successor) CancelBill(ctx context.Context, pk int64, billID string, h payflow.Holder, msgs []outbox.Message) error {
	s.once.Do(func() { s.act(pk) })
	return s.Store.CancelBill(ctx, pk, billID, h, msgs)
}

// A refund or cancel judged under a taking of the charge's lease that no
// longer holds is not carried out: the request is busy, and judged again
// once the charge is free. The lease may have been taken by another
// worker, or by this very process again (its sweeper claiming the charge
// while the judgement stalled), or another worker may have judged the same
// request otherwise and rejected it: then the rejection is its one result.
func TestARefundOrCancelJudgedUnderALostLeaseIsJudgedAgain(t *testing.T) {
	kinds := []struct {
		name, result string
		request      func() []byte
		carried      func(e *env) int
	}{
		{"refund", events.TypeRefundSucceeded, func() []byte { return refundEvent("c1", "r1", 700) },
			func(e *env) int { return e.pg.refundCount }},
		{"cancel", events.TypeBillCancelled, func() []byte {
			return requestEvent(events.TypeCancelRequested, map[string]any{"charge_id": "c1", "reason": "x"})
		}, func(e *env) int { return e.pg.count("destroy") }},
	}
	exec := func(t *testing.T, st *store.Store, sql string, args ...any) {
		t.Helper()
		if _, err := st.Pool.Exec(context.Background(), sql, args...); err != nil {
			t.Fatal(err)
		}
	}
	takers := []struct {
		name     string
		rejected bool
		act      func(t *testing.T, st *store.Store, pk int64, req []byte)
	}{
		{"another worker took the lease", false, func(t *testing.T, st *store.Store, pk int64, _ []byte) {
			exec(t, st, `UPDATE charges SET lease_owner = 'w2', lease_gen = lease_gen + 1, lease_until = now() + interval '1 minute' WHERE id = $1`, pk)
		}},
		{"this process took the lease again", false, func(t *testing.T, st *store.Store, pk int64, _ []byte) {
			exec(t, st, `UPDATE charges SET lease_gen = lease_gen + 1, lease_until = now() + interval '1 minute' WHERE id = $1`, pk)
		}},
		{"another worker rejected the request", true, func(t *testing.T, st *store.Store, pk int64, req []byte) {
			exec(t, st, `UPDATE charges SET lease_owner = 'w2', lease_gen = lease_gen + 1, lease_until = now() + interval '1 minute' WHERE id = $1`, pk)
			var env struct{ ID, Source string }
			if err := json.Unmarshal(req, &env); err != nil {
				t.Fatal(err)
			}
			id := events.ID("rejected", env.Source, env.ID)
			v, err := events.Encode(id, events.TypeRejected, "c1", time.Now(), events.Rejected{MerchantID: "m1", ChargeID: "c1",
				Reason: events.RejectInvalidState, Detail: "judged otherwise", RequestEventID: env.ID})
			if err != nil {
				t.Fatal(err)
			}
			var gen int64
			if err := st.Pool.QueryRow(context.Background(), `SELECT lease_gen FROM charges WHERE id = $1`, pk).Scan(&gen); err != nil {
				t.Fatal(err)
			}
			if err := st.Reject(context.Background(), store.Rejection{Request: store.Request{Source: env.Source, EventID: env.ID},
				Reason: events.RejectInvalidState, Event: outbox.Message{EventID: id, Topic: events.TopicEvents, Key: []byte("c1"), Value: v},
				ChargePK: pk, Holder: payflow.Holder{Owner: "w2", Gen: gen}}); err != nil {
				t.Fatal(err)
			}
			exec(t, st, `UPDATE charges SET lease_owner = NULL, lease_until = NULL WHERE id = $1`, pk)
		}},
	}
	for _, k := range kinds {
		for _, tk := range takers {
			t.Run(k.name+"/"+tk.name, func(t *testing.T) {
				e := setup(t, methods{})
				ctx := context.Background()
				if k.name == "refund" {
					e.paid("c1", 700)
				} else {
					e.placed("c1", 700)
				}
				req := k.request()
				st := &successor{Store: e.st, act: func(pk int64) { tk.act(t, e.st, pk, req) }}
				e.w = worker.New(worker.Config{Store: st, PG: e.pg, Methods: methods{}, Lease: time.Minute,
					RetryBudget: 2 * time.Second, RetryInitial: time.Millisecond})
				before := k.carried(e)
				if err := e.w.Handle(ctx, req); !errors.Is(err, worker.ErrBusy) {
					t.Fatalf("handled under a lost lease: %v, want ErrBusy", err)
				}
				var refunds int
				if err := e.st.Pool.QueryRow(ctx, `SELECT count(*) FROM refunds`).Scan(&refunds); err != nil {
					t.Fatal(err)
				}
				if refunds != 0 || len(e.ofType(k.result)) != 0 {
					t.Fatalf("%d refunds stored, %d results written under a lost lease", refunds, len(e.ofType(k.result)))
				}
				// The charge is free again.
				exec(t, e.st, `UPDATE charges SET lease_owner = NULL, lease_until = NULL`)
				e.handle(req)
				results, rejections := len(e.ofType(k.result)), len(e.ofType(events.TypeRejected))
				if tk.rejected {
					if results != 0 || rejections != 1 || (k.name == "refund" && k.carried(e) != before) {
						t.Fatalf("%d results, %d rejections, carried out %d times; want the rejection alone", results, rejections, k.carried(e)-before)
					}
					return
				}
				if results != 1 || rejections != 0 || (k.name == "refund" && k.carried(e) != before+1) {
					t.Fatalf("%d results, %d rejections, carried out %d times; want it once", results, rejections, k.carried(e)-before)
				}
			})
		}
	}
}

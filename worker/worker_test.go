package worker_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/payflow/payflow/events"
	"github.com/payflow/payflow/internal/testdb"
	"github.com/payflow/payflow/payflow"
	"github.com/payflow/payflow/pgclient"
	"github.com/payflow/payflow/store"
	"github.com/payflow/payflow/worker"
)

// fakePG is a PG that executes what it is asked, counts every call, and
// fails on demand. A fault "after" executes the call and then reports an
// unknown outcome, like a timeout after the PG charged.
type fakePG struct {
	mu     sync.Mutex
	bills  map[string]pgclient.Payment
	calls  map[string]int
	faults map[string][]fault

	refunds     map[string]pgclient.Refunded
	refundCount int // refunds that moved money

	delay time.Duration // of every bill placement, like a slow PG
}

type fault struct {
	kind       pgclient.Kind
	after      bool          // execute, then fail
	retryAfter time.Duration // the PG's Retry-After
}

func newFakePG() *fakePG {
	return &fakePG{bills: map[string]pgclient.Payment{}, calls: map[string]int{}, faults: map[string][]fault{}}
}

func (p *fakePG) failNext(op string, f ...fault) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.faults[op] = append(p.faults[op], f...)
}

func (p *fakePG) count(op string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.calls[op]
}

// next returns the fault for this call of op, if any.
func (p *fakePG) next(op string) (fault, bool) {
	p.calls[op]++
	if q := p.faults[op]; len(q) > 0 {
		p.faults[op] = q[1:]
		return q[0], true
	}
	return fault{}, false
}

func (p *fakePG) place(ctx context.Context, op, billID, method string, amount int64, to, decline string) (pgclient.Accepted, error) {
	if err := ctx.Err(); err != nil {
		return pgclient.Accepted{}, &pgclient.Error{Op: op, Kind: pgclient.KindUnknown, Message: err.Error()}
	}
	if billID == "" || amount <= 0 || amount > payflow.MaxAmount || to == "" {
		return pgclient.Accepted{}, &pgclient.Error{Op: op, Kind: pgclient.KindInvalid, Code: "invalid_request"}
	}
	p.mu.Lock()
	delay := p.delay
	p.mu.Unlock()
	time.Sleep(delay)
	p.mu.Lock()
	defer p.mu.Unlock()
	f, faulty := p.next(op)
	if faulty && !f.after {
		return pgclient.Accepted{}, &pgclient.Error{Op: op, Kind: f.kind, Message: "injected", RetryAfter: f.retryAfter}
	}
	if _, dup := p.bills[billID]; dup {
		return pgclient.Accepted{}, &pgclient.Error{Op: op, Kind: pgclient.KindDuplicate, Message: "bill id used"}
	}
	pay := pgclient.Payment{BillID: billID, Method: method, Status: pgclient.StatusRequested, Amount: amount, PGTxID: "tx-" + billID}
	if decline != "" {
		pay.Status, pay.Decline = pgclient.StatusFailed, decline
	}
	p.bills[billID] = pay
	if faulty {
		return pgclient.Accepted{}, &pgclient.Error{Op: op, Kind: f.kind, Message: "injected after execute"}
	}
	if decline != "" {
		return pgclient.Accepted{}, &pgclient.Error{Op: op, Kind: pgclient.KindDeclined, Code: decline}
	}
	return pgclient.Accepted{BillID: billID, PGTxID: pay.PGTxID}, nil
}

func (p *fakePG) AutoPay(ctx context.Context, r pgclient.AutoPayRequest) (pgclient.Accepted, error) {
	decline := ""
	if strings.HasPrefix(r.BillingKey, "decline_") {
		decline = "declined"
	}
	if strings.HasPrefix(r.BillingKey, "expired_") {
		decline = "expired"
	}
	return p.place(ctx, "auto_pay", r.BillID, "auto_pay", r.Amount, r.BillingKey, decline)
}

func (p *fakePG) SendKakaoBill(ctx context.Context, r pgclient.KakaoBillRequest) (pgclient.Accepted, error) {
	return p.place(ctx, "kakao_bill", r.BillID, "kakao_bill", r.Amount, r.Phone, "")
}

func (p *fakePG) LookupPayment(ctx context.Context, billID string) (pgclient.Payment, error) {
	if err := ctx.Err(); err != nil {
		return pgclient.Payment{}, &pgclient.Error{Op: "lookup", Kind: pgclient.KindUnknown, Message: err.Error()}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if f, faulty := p.next("lookup"); faulty {
		return pgclient.Payment{}, &pgclient.Error{Op: "lookup", Kind: f.kind}
	}
	pay, ok := p.bills[billID]
	if !ok {
		return pgclient.Payment{}, &pgclient.Error{Op: "lookup", Kind: pgclient.KindNotFound}
	}
	return pay, nil
}

func (p *fakePG) BillURL(_ context.Context, billID string) (pgclient.BillURL, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	pay, ok := p.bills[billID]
	switch {
	case !ok:
		return pgclient.BillURL{}, &pgclient.Error{Op: "bill_url", Kind: pgclient.KindNotFound}
	case pay.Status != pgclient.StatusRequested:
		return pgclient.BillURL{}, &pgclient.Error{Op: "bill_url", Kind: pgclient.KindConflict, Code: "not_payable"}
	}
	return pgclient.BillURL{URL: "https://pay.invalid/" + billID, ExpiresAt: time.Now().Add(time.Hour)}, nil
}

// Refund is idempotent by refund id, as the interface requires.
func (p *fakePG) Refund(_ context.Context, r pgclient.RefundRequest) (pgclient.Refunded, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	f, faulty := p.next("refund")
	if faulty && !f.after {
		return pgclient.Refunded{}, &pgclient.Error{Op: "refund", Kind: f.kind}
	}
	if p.refunds == nil {
		p.refunds = map[string]pgclient.Refunded{}
	}
	if r.Amount <= 0 {
		return pgclient.Refunded{}, &pgclient.Error{Op: "refund", Kind: pgclient.KindInvalid, Code: "invalid_request"}
	}
	if done, ok := p.refunds[r.RefundID]; ok {
		if done.Amount != r.Amount {
			return pgclient.Refunded{}, &pgclient.Error{Op: "refund", Kind: pgclient.KindConflict, Code: "refund_id_reused"}
		}
		return done, nil
	}
	pay, ok := p.bills[r.BillID]
	switch {
	case !ok:
		return pgclient.Refunded{}, &pgclient.Error{Op: "refund", Kind: pgclient.KindNotFound}
	case pay.Status != pgclient.StatusPaid || pay.Refunded+r.Amount > pay.Amount:
		return pgclient.Refunded{}, &pgclient.Error{Op: "refund", Kind: pgclient.KindConflict, Code: "not_refundable"}
	}
	pay.Refunded += r.Amount
	p.bills[r.BillID] = pay
	p.refundCount++
	done := pgclient.Refunded{RefundID: r.RefundID, Amount: r.Amount, RefundedTotal: pay.Refunded, PGTxID: "rf-" + r.RefundID}
	p.refunds[r.RefundID] = done
	if faulty {
		return pgclient.Refunded{}, &pgclient.Error{Op: "refund", Kind: f.kind}
	}
	return done, nil
}

func (p *fakePG) DestroyBill(_ context.Context, billID string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.next("destroy")
	pay, ok := p.bills[billID]
	switch {
	case !ok:
		return &pgclient.Error{Op: "destroy", Kind: pgclient.KindNotFound}
	case pay.Status == pgclient.StatusCancelled:
		return nil
	case pay.Status != pgclient.StatusRequested:
		return &pgclient.Error{Op: "destroy", Kind: pgclient.KindConflict, Code: "bill_paid"}
	}
	pay.Status = pgclient.StatusCancelled
	p.bills[billID] = pay
	return nil
}

// methods is a member → billing key table; a member's method id is
// derived from the member id.
type methods map[string]string

func methodID(member string) string { return uuid.NewSHA1(uuid.NameSpaceOID, []byte(member)).String() }

func (m methods) Default(_ context.Context, member string) (*payflow.StoredMethod, string, error) {
	key, ok := m[member]
	if !ok {
		return nil, "", nil
	}
	return &payflow.StoredMethod{ID: methodID(member), Status: payflow.MethodActive}, key, nil
}

func (m methods) BillingKey(_ context.Context, id string) (string, error) {
	for member, key := range m {
		if methodID(member) == id {
			return key, nil
		}
	}
	return "", errors.New("no such method")
}

type env struct {
	t  *testing.T
	st *store.Store
	pg *fakePG
	w  *worker.Worker
}

func setup(t *testing.T, m methods) *env {
	t.Helper()
	st := testdb.New(t)
	pg := newFakePG()
	w := worker.New(worker.Config{Store: st, PG: pg, Methods: m, Lease: time.Minute,
		RetryBudget: 2 * time.Second, RetryInitial: time.Millisecond})
	return &env{t: t, st: st, pg: pg, w: w}
}

var eventSeq atomic.Int64

func chargeEvent(charge, member string, amount int64) []byte {
	seq := eventSeq.Add(1)
	cust := map[string]any{"phone": "010-1234-5678", "name": "Kim"}
	if member != "" {
		cust["member_id"] = member
	}
	b, _ := json.Marshal(map[string]any{
		"specversion": "1.0", "id": fmt.Sprintf("evt-%d", seq), "source": "test", "type": events.TypeChargeRequested,
		"subject": charge, "datacontenttype": "application/json",
		"data": map[string]any{"merchant_id": "m1", "charge_id": charge, "amount": amount, "currency": "KRW",
			"order_name": "order", "customer": cust},
	})
	return b
}

// results returns the result events in the outbox, in order.
func (e *env) results() []map[string]any {
	e.t.Helper()
	rows, err := e.st.Pool.Query(context.Background(), "SELECT value FROM outbox ORDER BY id")
	if err != nil {
		e.t.Fatal(err)
	}
	defer rows.Close()
	var out []map[string]any
	for rows.Next() {
		var v []byte
		if err := rows.Scan(&v); err != nil {
			e.t.Fatal(err)
		}
		// Every event a test sees the worker produce is held to the
		// contract (events/asyncapi.yaml and its schemas).
		if err := events.CheckResult(v); err != nil {
			e.t.Errorf("a result event breaks its schema: %v\n%s", err, v)
		}
		var ev map[string]any
		if err := json.Unmarshal(v, &ev); err != nil {
			e.t.Fatal(err)
		}
		out = append(out, ev)
	}
	return out
}

func (e *env) handle(v []byte) {
	e.t.Helper()
	if err := e.w.Handle(context.Background(), v); err != nil {
		e.t.Fatalf("handle: %v", err)
	}
}

func data(ev map[string]any) map[string]any { return ev["data"].(map[string]any) }

func TestMemberWithMethodIsChargedByAutoPay(t *testing.T) {
	e := setup(t, methods{"mem1": "bk_good"})
	e.handle(chargeEvent("c1", "mem1", 5000))
	res := e.results()
	if len(res) != 1 || res[0]["type"] != events.TypeChargeProcessed {
		t.Fatalf("results = %v", res)
	}
	d := data(res[0])
	if d["method"] != "auto_pay" || d["fallback_reason"] != nil || d["bill_id"] == "" {
		t.Fatalf("processed data = %v", d)
	}
	if e.pg.count("auto_pay") != 1 || e.pg.count("kakao_bill") != 0 {
		t.Fatalf("PG calls: auto_pay %d kakao %d", e.pg.count("auto_pay"), e.pg.count("kakao_bill"))
	}
}

func TestEveryoneElseGetsAKakaoBill(t *testing.T) {
	e := setup(t, methods{})
	e.handle(chargeEvent("c-nonmember", "", 1000))
	e.handle(chargeEvent("c-nomethod", "mem-without", 1000))
	res := e.results()
	if len(res) != 2 {
		t.Fatalf("results = %v", res)
	}
	for i, want := range []string{"not_member", "no_method"} {
		if d := data(res[i]); d["method"] != "kakao_bill" || d["fallback_reason"] != want {
			t.Fatalf("result %d = %v, want kakao_bill/%s", i, d, want)
		}
	}
}

func TestDeclinedCardFallsBackToAKakaoBillUnderANewBillID(t *testing.T) {
	e := setup(t, methods{"mem1": "decline_card"})
	e.handle(chargeEvent("c1", "mem1", 5000))
	res := e.results()
	if len(res) != 1 {
		t.Fatalf("results = %v", res)
	}
	d := data(res[0])
	if d["method"] != "kakao_bill" || d["fallback_reason"] != "method_declined" {
		t.Fatalf("processed = %v", d)
	}
	var declined string
	if err := e.st.Pool.QueryRow(context.Background(), "SELECT bill_id FROM bills WHERE status = 'declined'").Scan(&declined); err != nil {
		t.Fatal(err)
	}
	if declined == d["bill_id"] {
		t.Fatal("the fallback bill reuses the declined bill's id")
	}
}

func TestRedeliveryMakesNoSecondPGCallAndNoSecondResult(t *testing.T) {
	e := setup(t, methods{"mem1": "bk"})
	ev := chargeEvent("c1", "mem1", 5000)
	for i := 0; i < 3; i++ {
		e.handle(ev)
	}
	// A producer retry: same content, new event id.
	e.handle(chargeEvent("c1", "mem1", 5000))
	if n := e.pg.count("auto_pay"); n != 1 {
		t.Fatalf("auto_pay calls = %d, want 1", n)
	}
	if res := e.results(); len(res) != 1 {
		t.Fatalf("%d results, want 1: %v", len(res), res)
	}
}

func TestSameChargeIDWithOtherContentIsAConflict(t *testing.T) {
	e := setup(t, methods{})
	e.handle(chargeEvent("c1", "", 5000))
	e.handle(chargeEvent("c1", "", 6000))
	res := e.results()
	if len(res) != 2 || res[1]["type"] != events.TypeRejected || data(res[1])["reason"] != "idempotency_conflict" {
		t.Fatalf("results = %v", res)
	}
	if n := e.pg.count("kakao_bill"); n != 1 {
		t.Fatalf("kakao_bill calls = %d, want 1", n)
	}
}

func TestTimeoutAfterChargeIsLookedUpNotRepeated(t *testing.T) {
	e := setup(t, methods{"mem1": "bk"})
	// The PG charges, then the answer is lost.
	e.pg.failNext("auto_pay", fault{kind: pgclient.KindUnknown, after: true})
	e.handle(chargeEvent("c1", "mem1", 5000))
	if n := e.pg.count("auto_pay"); n != 1 {
		t.Fatalf("auto_pay calls = %d, want 1 (the retry must look up, not charge)", n)
	}
	if n := e.pg.count("lookup"); n < 1 {
		t.Fatal("no lookup after an unknown outcome")
	}
	res := e.results()
	if len(res) != 1 || res[0]["type"] != events.TypeChargeProcessed {
		t.Fatalf("results = %v", res)
	}
}

func TestTransientErrorsAreRetried(t *testing.T) {
	e := setup(t, methods{})
	e.pg.failNext("kakao_bill", fault{kind: pgclient.KindTransient}, fault{kind: pgclient.KindTransient})
	e.handle(chargeEvent("c1", "", 5000))
	if n := e.pg.count("kakao_bill"); n != 3 {
		t.Fatalf("kakao_bill calls = %d, want 3", n)
	}
	if res := e.results(); len(res) != 1 || res[0]["type"] != events.TypeChargeProcessed {
		t.Fatalf("results = %v", res)
	}
}

func TestNonRetriableErrorFailsAtOnce(t *testing.T) {
	e := setup(t, methods{})
	e.pg.failNext("kakao_bill", fault{kind: pgclient.KindInvalid})
	e.handle(chargeEvent("c1", "", 5000))
	if n := e.pg.count("kakao_bill"); n != 1 {
		t.Fatalf("kakao_bill calls = %d, want 1", n)
	}
	res := e.results()
	if len(res) != 1 || res[0]["type"] != events.TypeChargeFailed || data(res[0])["attempts"] != 1.0 {
		t.Fatalf("results = %v", res)
	}
}

func TestExhaustedRetriesFailTheCharge(t *testing.T) {
	e := setup(t, methods{})
	for i := 0; i < 1000; i++ {
		e.pg.failNext("kakao_bill", fault{kind: pgclient.KindTransient})
	}
	e.handle(chargeEvent("c1", "", 5000))
	res := e.results()
	if len(res) != 1 || res[0]["type"] != events.TypeChargeFailed {
		t.Fatalf("results = %v", res)
	}
	if a := data(res[0])["attempts"].(float64); a < 2 || int(a) != e.pg.count("kakao_bill") {
		t.Fatalf("attempts = %v, PG saw %d", a, e.pg.count("kakao_bill"))
	}
}

// stranded stores charge c1 (matching chargeEvent("c1", "", 700)) with bill
// "bill-1" as a worker that holds the lease for lease and then dies would leave it.
func (e *env) stranded(owner string, lease time.Duration) {
	e.t.Helper()
	req := payflow.ChargeRequest{MerchantID: "m1", ChargeID: "c1", Amount: 700, Currency: "KRW", OrderName: "order",
		Customer: payflow.Customer{Phone: "+821012345678", Name: "Kim"}}
	if _, _, err := e.st.CreateCharge(context.Background(), payflow.NewCharge{Request: req, RequestHash: req.Fingerprint(), RequestEventID: "e",
		Bill:       payflow.Bill{BillID: "bill-1", Method: payflow.MethodKakaoBill, FallbackReason: payflow.FallbackNotMember, Amount: 700},
		LeaseOwner: owner, Lease: lease}); err != nil {
		e.t.Fatal(err)
	}
}

// A worker that dies after storing the bill but before the PG call leaves a
// placing charge; the sweeper places it, once.
func TestSweeperFinishesAChargeWhoseWorkerDiedBeforeCalling(t *testing.T) {
	e := setup(t, methods{})
	ctx := context.Background()
	e.stranded("dead-worker", time.Millisecond)
	time.Sleep(5 * time.Millisecond)
	if _, err := e.w.Sweep(ctx, 10); err != nil {
		t.Fatal(err)
	}
	if n := e.pg.count("kakao_bill"); n != 1 {
		t.Fatalf("kakao_bill calls = %d, want 1", n)
	}
	res := e.results()
	if len(res) != 1 || data(res[0])["bill_id"] != "bill-1" {
		t.Fatalf("results = %v", res)
	}
}

// A worker that dies after the PG accepted but before recording it: the
// sweeper finds the bill at the PG and records it without calling again.
func TestSweeperFinishesAChargeWhoseWorkerDiedAfterCalling(t *testing.T) {
	e := setup(t, methods{})
	ctx := context.Background()
	e.stranded("dead-worker", time.Millisecond)
	if _, err := e.pg.SendKakaoBill(ctx, pgclient.KakaoBillRequest{BillID: "bill-1", Amount: 700, Phone: "+821012345678"}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(5 * time.Millisecond)
	// A redelivery of the request arrives too: it must not call either.
	e.handle(chargeEvent("c1", "", 700))
	if _, err := e.w.Sweep(ctx, 10); err != nil {
		t.Fatal(err)
	}
	if n := e.pg.count("kakao_bill"); n != 1 {
		t.Fatalf("kakao_bill calls = %d, want 1", n)
	}
	if res := e.results(); len(res) != 1 || res[0]["type"] != events.TypeChargeProcessed {
		t.Fatalf("results = %v", res)
	}
}

// While another live worker holds the lease, a redelivery must not call the
// PG: two workers calling at once is how a bill gets charged twice.
func TestRedeliveryDuringAnotherWorkersLeaseDoesNotCall(t *testing.T) {
	e := setup(t, methods{})
	e.stranded("live-worker", time.Hour)
	e.handle(chargeEvent("c1", "", 700))
	if n := e.pg.count("kakao_bill") + e.pg.count("lookup"); n != 0 {
		t.Fatalf("PG called %d times during another worker's lease", n)
	}
}

func TestInvalidRequestsAreRejectedNotLost(t *testing.T) {
	e := setup(t, methods{})
	for _, amount := range []int64{0, -5, payflow.MaxAmount + 1} {
		e.handle(chargeEvent(fmt.Sprint("c", amount), "", amount))
	}
	res := e.results()
	if len(res) != 3 {
		t.Fatalf("results = %v", res)
	}
	for _, r := range res {
		if r["type"] != events.TypeRejected || data(r)["reason"] != "invalid" || data(r)["request_event_id"] == "" {
			t.Fatalf("rejection = %v", r)
		}
	}
	if e.pg.count("kakao_bill") != 0 {
		t.Fatal("an invalid charge reached the PG")
	}
}

func TestUnparseableInputIsForTheDeadLetterTopic(t *testing.T) {
	e := setup(t, methods{})
	for _, v := range []string{"not json", `{"specversion":"1.0"}`, `{"specversion":"1.0","id":"1","source":"s","type":"nope","data":{}}`} {
		if err := e.w.Handle(context.Background(), []byte(v)); !errors.Is(err, events.ErrUnparseable) {
			t.Fatalf("%q: err = %v, want ErrUnparseable", v, err)
		}
	}
}

// A PG that answers 503 with Retry-After is not asked again sooner.
func TestRetryAfterIsHonoured(t *testing.T) {
	e := setup(t, methods{})
	e.pg.failNext("kakao_bill", fault{kind: pgclient.KindTransient, retryAfter: 300 * time.Millisecond})
	start := time.Now()
	e.handle(chargeEvent("c1", "", 100))
	if waited := time.Since(start); waited < 300*time.Millisecond {
		t.Fatalf("retried after %s; the PG asked for 300ms", waited)
	}
	if n := e.pg.count("kakao_bill"); n != 2 {
		t.Fatalf("kakao_bill calls = %d, want 2", n)
	}
}

// A request still in flight when the worker gives up: the first call times
// out before the PG executed it, the lookup says "not found", every retry
// meets an outage. The charge must not be reported failed (the first request
// may still land); the sweeper settles it once the PG knows.
func TestGivingUpAfterAnUnknownOutcomeIsNotFailure(t *testing.T) {
	e := setup(t, methods{})
	e.pg.failNext("kakao_bill", fault{kind: pgclient.KindUnknown}) // not executed yet: in flight
	for i := 0; i < 1000; i++ {
		e.pg.failNext("kakao_bill", fault{kind: pgclient.KindTransient})
	}
	ctx := context.Background()
	e.handle(chargeEvent("c1", "", 700))
	if res := e.results(); len(res) != 0 {
		t.Fatalf("a charge whose first request may still land was reported: %v", res)
	}
	c, err := e.st.ChargeByKey(ctx, "m1", "c1")
	if err != nil || c.State != payflow.StatePlacing {
		t.Fatalf("state %s, %v; want placing", c.State, err)
	}
	// Not before the lease expires: a request of ours may still be in flight.
	if n, _ := e.w.Sweep(ctx, 10); n != 0 {
		t.Fatalf("swept %d charges whose lease has not expired", n)
	}
	// The lease expires; the delayed request has landed at the PG; the
	// outage ends.
	if _, err := e.st.Pool.Exec(ctx, `UPDATE charges SET lease_until = now() - interval '1 second'`); err != nil {
		t.Fatal(err)
	}
	e.pg.mu.Lock()
	e.pg.faults["kakao_bill"] = nil
	e.pg.bills[c.Bill.BillID] = pgclient.Payment{BillID: c.Bill.BillID, Status: pgclient.StatusRequested, Amount: 700}
	e.pg.mu.Unlock()
	if _, err := e.w.Sweep(ctx, 10); err != nil {
		t.Fatal(err)
	}
	res := e.results()
	if len(res) != 1 || res[0]["type"] != events.TypeChargeProcessed {
		t.Fatalf("results = %v, want one charge.processed", res)
	}
}

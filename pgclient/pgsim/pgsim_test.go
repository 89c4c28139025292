package pgsim_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/payflow/payflow/pgclient"
	"github.com/payflow/payflow/pgclient/pgclienttest"
	"github.com/payflow/payflow/pgclient/pgsim"
	"github.com/payflow/payflow/stdwebhook"
)

const phone = "+821012345678"

func start(t *testing.T, cfg pgsim.Config, opts ...pgclient.HTTPOption) (*pgsim.Sim, *pgclient.HTTPClient, string) {
	t.Helper()
	sim := newSim(t, cfg)
	srv := httptest.NewServer(sim.Handler())
	t.Cleanup(srv.Close) // before the simulator closes
	opts = append([]pgclient.HTTPOption{pgclient.WithTimeout(5 * time.Second)}, opts...)
	return sim, pgclient.NewHTTPClient(srv.URL, opts...), srv.URL
}

func harness(sim *pgsim.Sim, c pgclient.Client) pgclienttest.Harness {
	return pgclienttest.Harness{
		New: func(*testing.T) pgclient.Client { return c },
		Settle: func(t *testing.T, billID string, status pgclient.PaymentStatus) {
			t.Helper()
			if err := sim.Settle(billID, status); err != nil {
				t.Fatalf("settle %s %s: %v", billID, status, err)
			}
		},
		GoodKey:     "bk_good",
		DeclineKeys: pgsim.DeclineKeys(),
	}
}

// The HTTP adapter talking to the simulator over loopback HTTP passes the
// suite every adapter must pass.
func TestHTTPAdapterSuite(t *testing.T) {
	sim, c, _ := start(t, pgsim.Config{SettleDelay: -1})
	pgclienttest.Run(t, harness(sim, c))
	for _, e := range sim.Ledger() {
		if n := sim.Charged(e.BillID); n > 1 {
			t.Fatalf("bill %s charged %d times", e.BillID, n)
		}
	}
}

// The same with an API key and some latency, as `payflow dev` runs it.
func TestHTTPAdapterSuiteWithAPIKeyAndLatency(t *testing.T) {
	if testing.Short() {
		t.Skip("slow")
	}
	sim, c, _ := start(t, pgsim.Config{SettleDelay: -1, APIKey: "k3y", Latency: 2 * time.Millisecond}, pgclient.WithAPIKey("k3y"))
	pgclienttest.Run(t, harness(sim, c))
}

func TestAPIKeyIsRequiredWhenConfigured(t *testing.T) {
	sim, _, url := start(t, pgsim.Config{APIKey: "k3y"})
	for _, c := range []*pgclient.HTTPClient{pgclient.NewHTTPClient(url), pgclient.NewHTTPClient(url, pgclient.WithAPIKey("wrong"))} {
		_, err := c.SendKakaoBill(context.Background(), pgclient.KakaoBillRequest{BillID: "b1", Phone: phone, Amount: 100})
		if pgclient.KindOf(err) != pgclient.KindInvalid {
			t.Fatalf("without the key: %v", err)
		}
	}
	if len(sim.Ledger()) != 0 {
		t.Fatalf("an unauthorised request was executed: %+v", sim.Ledger())
	}
	if _, err := pgclient.NewHTTPClient(url, pgclient.WithAPIKey("k3y")).SendKakaoBill(context.Background(), pgclient.KakaoBillRequest{BillID: "b1", Phone: phone, Amount: 100}); err != nil {
		t.Fatalf("with the key: %v", err)
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	for name, cfg := range map[string]pgsim.Config{
		"error rate above 1":     {ErrorRate: 1.5},
		"negative timeout rate":  {TimeoutRate: -0.1},
		"callback without key":   {CallbackURL: "http://127.0.0.1:1/cb"},
		"callback with raw key":  {CallbackURL: "http://127.0.0.1:1/cb", WebhookSecret: "plain"},
		"webhook drop rate of 2": {WebhookDropRate: 2},
	} {
		if _, err := pgsim.New(cfg); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// receiver is a webhook endpoint that verifies what it gets.
type receiver struct {
	t        *testing.T
	v        *stdwebhook.Verifier
	mu       sync.Mutex
	fail     int // answer 500 to this many attempts first
	attempts []string
	got      []pgsim.Notification
	ids      []string
	srv      *httptest.Server
}

func newReceiver(t *testing.T, secret string, fail int) *receiver {
	secrets, err := stdwebhook.ParseSecrets(secret)
	if err != nil {
		t.Fatal(err)
	}
	r := &receiver{t: t, v: &stdwebhook.Verifier{Secrets: secrets}, fail: fail}
	r.srv = httptest.NewServer(http.HandlerFunc(r.serve))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) serve(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	id, err := r.v.Verify(req.Header, body)
	if err != nil {
		r.t.Errorf("webhook does not verify: %v", err)
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.attempts = append(r.attempts, id)
	if r.fail > 0 {
		r.fail--
		w.WriteHeader(http.StatusInternalServerError)
		return
	}
	var n pgsim.Notification
	if err := json.Unmarshal(body, &n); err != nil {
		r.t.Errorf("webhook body: %v", err)
	}
	var raw map[string]any
	_ = json.Unmarshal(body, &raw)
	if s, _ := raw["occurred_at"].(string); s == "" {
		r.t.Errorf("occurred_at missing in %s", body)
	} else if _, err := time.Parse(time.RFC3339, s); err != nil {
		r.t.Errorf("occurred_at %q is not RFC 3339", s)
	}
	r.got, r.ids = append(r.got, n), append(r.ids, id)
}

func (r *receiver) wait(n int) []pgsim.Notification {
	r.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		r.mu.Lock()
		if len(r.got) >= n {
			got := append([]pgsim.Notification(nil), r.got...)
			r.mu.Unlock()
			return got
		}
		r.mu.Unlock()
		time.Sleep(10 * time.Millisecond)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.t.Fatalf("got %d webhooks, want %d", len(r.got), n)
	return nil
}

func TestWebhooksAreSignedAndRetriedUnderOneID(t *testing.T) {
	secret := stdwebhook.NewSecret()
	rc := newReceiver(t, secret, 2)
	sim, c, _ := start(t, pgsim.Config{CallbackURL: rc.srv.URL, WebhookSecret: secret, SettleDelay: 10 * time.Millisecond})
	acc, err := c.AutoPay(context.Background(), pgclient.AutoPayRequest{BillID: "b1", BillingKey: "bk", Amount: 700, OrderName: "o"})
	if err != nil {
		t.Fatal(err)
	}
	got := rc.wait(1)
	if got[0] != (pgsim.Notification{BillID: "b1", Status: "paid", Amount: 700, PGTxID: acc.PGTxID, OccurredAt: got[0].OccurredAt}) {
		t.Fatalf("webhook = %+v", got[0])
	}
	rc.mu.Lock()
	attempts := append([]string(nil), rc.attempts...)
	rc.mu.Unlock()
	if len(attempts) != 3 || attempts[0] != attempts[1] || attempts[1] != attempts[2] {
		t.Fatalf("a retried notification must keep its webhook-id: %v", attempts)
	}
	// A second bill's notification has an id of its own.
	if _, err := c.SendKakaoBill(context.Background(), pgclient.KakaoBillRequest{BillID: "b2", Phone: phone, Amount: 300}); err != nil {
		t.Fatal(err)
	}
	if err := sim.Settle("b2", pgclient.StatusPaid); err != nil {
		t.Fatal(err)
	}
	got = rc.wait(2)
	rc.mu.Lock()
	ids := append([]string(nil), rc.ids...)
	rc.mu.Unlock()
	if got[1].BillID != "b2" || ids[0] == ids[1] {
		t.Fatalf("second notification %+v with ids %v", got[1], ids)
	}
	waitLedger(t, sim, func(es []pgsim.Entry) bool {
		n := 0
		for _, e := range es {
			if e.Op == pgsim.OpWebhook && e.Outcome == "delivered" {
				n++
				if e.BillID == "b1" && (e.Attempts != 3 || e.WebhookID != ids[0]) {
					t.Fatalf("ledger of b1's webhook: %+v", e)
				}
			}
		}
		return n == 2
	})
}

func waitLedger(t *testing.T, sim *pgsim.Sim, done func([]pgsim.Entry) bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !done(sim.Ledger()) {
		if time.Now().After(deadline) {
			t.Fatalf("ledger never reached the expected state: %+v", sim.Ledger())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestKakaoBillLifecycles(t *testing.T) {
	secret := stdwebhook.NewSecret()
	rc := newReceiver(t, secret, 0)
	sim, c, _ := start(t, pgsim.Config{CallbackURL: rc.srv.URL, WebhookSecret: secret, KakaoPayDelay: 30 * time.Millisecond, BillTTL: 300 * time.Millisecond})
	ctx := context.Background()
	send := func(id, to string) {
		t.Helper()
		if _, err := c.SendKakaoBill(ctx, pgclient.KakaoBillRequest{BillID: id, Phone: to, Amount: 1000}); err != nil {
			t.Fatal(err)
		}
	}
	send("paid-by-customer", phone)
	send("never-paid", "010-9999-0000")
	send("destroyed", "010-9999-0000")
	if err := c.DestroyBill(ctx, "destroyed"); err != nil {
		t.Fatal(err)
	}
	got := rc.wait(3)
	status := map[string]string{}
	for _, n := range got {
		if _, dup := status[n.BillID]; dup {
			t.Fatalf("two webhooks for %s", n.BillID)
		}
		status[n.BillID] = n.Status
	}
	want := map[string]string{"paid-by-customer": "paid", "never-paid": "expired", "destroyed": "cancelled"}
	for id, st := range want {
		if status[id] != st {
			t.Fatalf("webhook statuses %v, want %v", status, want)
		}
		if p, _ := sim.Payment(id); string(p.Status) != st {
			t.Fatalf("%s is %s at the PG, want %s", id, p.Status, st)
		}
	}
	// The paid bill's expiry timer was stopped when it was paid.
	time.Sleep(350 * time.Millisecond)
	if p, _ := sim.Payment("paid-by-customer"); p.Status != pgclient.StatusPaid {
		t.Fatalf("a paid bill later became %s", p.Status)
	}
}

func TestWebhookDropAndGiveUp(t *testing.T) {
	secret := stdwebhook.NewSecret()
	rc := newReceiver(t, secret, 0)
	sim, c, _ := start(t, pgsim.Config{CallbackURL: rc.srv.URL, WebhookSecret: secret, WebhookDropRate: 1, SettleDelay: time.Millisecond})
	if _, err := c.AutoPay(context.Background(), pgclient.AutoPayRequest{BillID: "b1", BillingKey: "bk", Amount: 100}); err != nil {
		t.Fatal(err)
	}
	waitLedger(t, sim, func(es []pgsim.Entry) bool {
		return len(es) > 0 && es[len(es)-1].Op == pgsim.OpWebhook && es[len(es)-1].Outcome == "dropped"
	})
	time.Sleep(50 * time.Millisecond)
	rc.mu.Lock()
	if len(rc.attempts) != 0 {
		t.Fatalf("a dropped webhook was sent %d times", len(rc.attempts))
	}
	rc.mu.Unlock()

	// A receiver that never answers 2xx: the PG gives up after
	// WebhookMaxElapsed, having tried more than once.
	rc2 := newReceiver(t, secret, 1<<30)
	sim2, c2, _ := start(t, pgsim.Config{CallbackURL: rc2.srv.URL, WebhookSecret: secret, WebhookMaxElapsed: 400 * time.Millisecond, SettleDelay: time.Millisecond})
	if _, err := c2.AutoPay(context.Background(), pgclient.AutoPayRequest{BillID: "b1", BillingKey: "bk", Amount: 100}); err != nil {
		t.Fatal(err)
	}
	waitLedger(t, sim2, func(es []pgsim.Entry) bool {
		for _, e := range es {
			if e.Op == pgsim.OpWebhook {
				if e.Outcome != "undelivered" || e.Attempts < 2 {
					t.Fatalf("ledger: %+v", e)
				}
				return true
			}
		}
		return false
	})
}

func TestCloseStopsSettlements(t *testing.T) {
	secret := stdwebhook.NewSecret()
	rc := newReceiver(t, secret, 0)
	sim := newSim(t, pgsim.Config{CallbackURL: rc.srv.URL, WebhookSecret: secret, SettleDelay: 50 * time.Millisecond})
	if _, err := sim.Client().AutoPay(context.Background(), pgclient.AutoPayRequest{BillID: "b1", BillingKey: "bk", Amount: 100}); err != nil {
		t.Fatal(err)
	}
	sim.Close()
	sim.Close() // idempotent
	time.Sleep(100 * time.Millisecond)
	if p, _ := sim.Payment("b1"); p.Status != pgclient.StatusRequested {
		t.Fatalf("settled after Close: %s", p.Status)
	}
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if len(rc.attempts) != 0 {
		t.Fatal("webhook sent after Close")
	}
}

func TestErrorRateExecutesNothing(t *testing.T) {
	sim, c, _ := start(t, pgsim.Config{ErrorRate: 1, RetryAfter: 1500 * time.Millisecond})
	_, err := c.AutoPay(context.Background(), pgclient.AutoPayRequest{BillID: "b1", BillingKey: "bk", Amount: 100})
	var e *pgclient.Error
	if !errors.As(err, &e) || e.Kind != pgclient.KindTransient || e.RetryAfter != 2*time.Second {
		t.Fatalf("err = %#v, want transient with Retry-After 2s", err)
	}
	if sim.Calls(pgsim.OpAutoPay) != 1 || len(sim.Ledger()) != 0 || sim.Charged("b1") != 0 {
		t.Fatalf("calls %d, ledger %+v", sim.Calls(pgsim.OpAutoPay), sim.Ledger())
	}
}

func TestTimeoutRateExecutesThenHolds(t *testing.T) {
	sim, c, _ := start(t, pgsim.Config{TimeoutRate: 1, TimeoutHold: 10 * time.Second, SettleDelay: -1}, pgclient.WithTimeout(200*time.Millisecond))
	begin := time.Now()
	_, err := c.AutoPay(context.Background(), pgclient.AutoPayRequest{BillID: "b1", BillingKey: "bk", Amount: 100})
	if pgclient.KindOf(err) != pgclient.KindUnknown || time.Since(begin) > 5*time.Second {
		t.Fatalf("err = %v after %s, want unknown at the client's timeout", err, time.Since(begin))
	}
	if sim.Charged("b1") != 1 {
		t.Fatal("the held operation was not executed")
	}
	// A patient client gets a 504 once TimeoutHold passes: still unknown.
	sim2, c2, _ := start(t, pgsim.Config{TimeoutRate: 1, TimeoutHold: 50 * time.Millisecond})
	_, err = c2.SendKakaoBill(context.Background(), pgclient.KakaoBillRequest{BillID: "b1", Phone: phone, Amount: 100})
	if pgclient.KindOf(err) != pgclient.KindUnknown || sim2.Charged("b1") != 1 {
		t.Fatalf("err = %v, charged %d", err, sim2.Charged("b1"))
	}
}

// Latency happens before execution, and a caller that gives up during it
// leaves nothing executed.
func TestLatencyRespectsTheCaller(t *testing.T) {
	sim, c, _ := start(t, pgsim.Config{Latency: 400 * time.Millisecond}, pgclient.WithTimeout(100*time.Millisecond))
	begin := time.Now()
	_, err := c.AutoPay(context.Background(), pgclient.AutoPayRequest{BillID: "b1", BillingKey: "bk", Amount: 100})
	if err == nil || time.Since(begin) > 300*time.Millisecond {
		t.Fatalf("err = %v after %s", err, time.Since(begin))
	}
	// Past the end of the latency: a simulator that ignored the caller
	// would have executed by now.
	time.Sleep(time.Until(begin.Add(600 * time.Millisecond)))
	if len(sim.Ledger()) != 0 {
		t.Fatalf("executed although the caller left during the latency: %+v", sim.Ledger())
	}
	sim2, c2, _ := start(t, pgsim.Config{Latency: 80 * time.Millisecond})
	begin = time.Now()
	if _, err := c2.LookupPayment(context.Background(), "nope"); pgclient.KindOf(err) != pgclient.KindNotFound {
		t.Fatal(err)
	}
	if d := time.Since(begin); d < 80*time.Millisecond {
		t.Fatalf("answered in %s, under the latency", d)
	}
	if sim2.Calls(pgsim.OpLookup) != 1 {
		t.Fatal("call not counted")
	}
}

// With a seed, the random faults repeat exactly: a chaos run can be
// replayed.
func TestSeededFaultsAreReproducible(t *testing.T) {
	run := func() string {
		_, c, _ := start(t, pgsim.Config{Seed: 42, ErrorRate: 0.5})
		var b strings.Builder
		for range 40 {
			_, err := c.LookupPayment(context.Background(), "nope")
			b.WriteString(string(pgclient.KindOf(err))[:1])
		}
		return b.String()
	}
	a, b := run(), run()
	if a != b {
		t.Fatalf("same seed, different faults:\n%s\n%s", a, b)
	}
	if !strings.Contains(a, "t") || !strings.Contains(a, "n") {
		t.Fatalf("a 0.5 error rate gave %s", a)
	}
}

func TestFailNextModes(t *testing.T) {
	sim, c, _ := start(t, pgsim.Config{SettleDelay: -1, TimeoutHold: 5 * time.Second}, pgclient.WithTimeout(300*time.Millisecond))
	ctx := context.Background()
	sim.FailNext(pgsim.OpRefund, pgsim.FaultUnavailable, 2)
	sim.FailNext(pgsim.OpLookup, pgsim.FaultInternalAfterExecute, 1)
	if _, err := c.SendKakaoBill(ctx, pgclient.KakaoBillRequest{BillID: "b1", Phone: phone, Amount: 1000}); err != nil {
		t.Fatal("a fault queued for another op fired:", err)
	}
	if _, err := c.LookupPayment(ctx, "b1"); pgclient.KindOf(err) != pgclient.KindUnknown {
		t.Fatalf("lookup with a 500 fault: %v", err)
	}
	if _, err := c.LookupPayment(ctx, "b1"); err != nil {
		t.Fatalf("the fault fired twice: %v", err)
	}
	if err := sim.Settle("b1", pgclient.StatusPaid); err != nil {
		t.Fatal(err)
	}
	req := pgclient.RefundRequest{BillID: "b1", RefundID: "r1", Amount: 400}
	for range 2 {
		if _, err := c.Refund(ctx, req); pgclient.KindOf(err) != pgclient.KindTransient {
			t.Fatalf("refund with a 503 fault: %v", err)
		}
	}
	if p, _ := sim.Payment("b1"); p.Refunded != 0 {
		t.Fatal("a 503 refunded")
	}
	sim.FailNext(pgsim.OpRefund, pgsim.FaultTimeoutAfterExecute, 1)
	if _, err := c.Refund(ctx, req); pgclient.KindOf(err) != pgclient.KindUnknown {
		t.Fatalf("refund with a timeout fault: %v", err)
	}
	// The retry after the unknown outcome is answered from the first
	// execution: refunded once.
	res, err := c.Refund(ctx, req)
	if err != nil || res.RefundedTotal != 400 {
		t.Fatalf("retry: %+v %v", res, err)
	}
	if p, _ := sim.Payment("b1"); p.Refunded != 400 {
		t.Fatalf("refunded %d, want 400", p.Refunded)
	}
	if got := sim.Calls(pgsim.OpRefund); got != 4 {
		t.Fatalf("refund calls = %d, want 4", got)
	}
	var outcomes []string
	for _, e := range sim.Ledger() {
		if e.Op == pgsim.OpRefund {
			outcomes = append(outcomes, e.Outcome)
		}
	}
	if strings.Join(outcomes, ",") != "refunded,replayed" {
		t.Fatalf("refund ledger = %v", outcomes)
	}
}

// A bill id sent again is refused and recorded as a duplicate: the ledger
// shows payflow tried, and the bill was charged once.
func TestDuplicateIsRecordedNotCharged(t *testing.T) {
	sim, c, _ := start(t, pgsim.Config{SettleDelay: -1})
	ctx := context.Background()
	if _, err := c.AutoPay(ctx, pgclient.AutoPayRequest{BillID: "b1", BillingKey: "bk", Amount: 100}); err != nil {
		t.Fatal(err)
	}
	_, err := c.AutoPay(ctx, pgclient.AutoPayRequest{BillID: "b1", BillingKey: "bk", Amount: 100})
	if pgclient.KindOf(err) != pgclient.KindDuplicate {
		t.Fatal(err)
	}
	if sim.Charged("b1") != 1 {
		t.Fatalf("charged %d", sim.Charged("b1"))
	}
	l := sim.Ledger()
	if len(l) != 2 || l[0].Outcome != pgsim.OutcomeAccepted || l[1].Outcome != pgsim.OutcomeDuplicate || l[1].Amount != 100 {
		t.Fatalf("ledger = %+v", l)
	}
}

func TestSimEndpoints(t *testing.T) {
	sim, c, url := start(t, pgsim.Config{SettleDelay: -1})
	ctx := context.Background()
	post := func(path, body string) int {
		t.Helper()
		resp, err := http.Post(url+path, "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for _, id := range []string{"b1", "b2", "b3"} {
		if _, err := c.SendKakaoBill(ctx, pgclient.KakaoBillRequest{BillID: id, Phone: phone, Amount: 100}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.AutoPay(ctx, pgclient.AutoPayRequest{BillID: "d1", BillingKey: "limit_x", Amount: 100}); pgclient.KindOf(err) != pgclient.KindDeclined {
		t.Fatal(err)
	}
	if code := post("/sim/settle", `{"bill_id":"b1","status":"expired"}`); code != 200 {
		t.Fatalf("settle: %d", code)
	}
	if code := post("/sim/settle", `{"bill_id":"b1","status":"paid"}`); code != 409 {
		t.Fatalf("settle of a final bill: %d", code)
	}
	if code := post("/sim/settle", `{"bill_id":"zz","status":"paid"}`); code != 404 {
		t.Fatalf("settle of an unknown bill: %d", code)
	}
	if code := post("/sim/settle", `{"bill_id":"b2","status":"requested"}`); code != 400 {
		t.Fatalf("settle to requested: %d", code)
	}
	if code := post("/pay/b2", ``); code != 200 {
		t.Fatalf("pay page: %d", code)
	}
	if p, _ := sim.Payment("b2"); p.Status != pgclient.StatusPaid {
		t.Fatalf("b2 after the pay page: %s", p.Status)
	}
	if code := post("/sim/fail-next", `{"op":"lookup","mode":"unavailable","n":1}`); code != 200 {
		t.Fatalf("fail-next: %d", code)
	}
	if code := post("/sim/fail-next", `{"op":"lookup","mode":"explode","n":1}`); code != 400 {
		t.Fatalf("fail-next with a bad mode: %d", code)
	}
	if _, err := c.LookupPayment(ctx, "b3"); pgclient.KindOf(err) != pgclient.KindTransient {
		t.Fatalf("lookup after /sim/fail-next: %v", err)
	}

	get := func(path string, v any) {
		t.Helper()
		resp, err := http.Get(url + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
			t.Fatal(err)
		}
	}
	var all, forB1, settles []pgsim.Entry
	get("/sim/ledger", &all)
	get("/sim/ledger?bill_id=b1", &forB1)
	get("/sim/ledger?op=settle", &settles)
	if len(all) != len(sim.Ledger()) || len(all) != 6 {
		t.Fatalf("ledger = %+v", all)
	}
	if len(forB1) != 2 || forB1[0].Outcome != "accepted" || forB1[1].Op != "settle" || forB1[1].Outcome != "expired" {
		t.Fatalf("ledger of b1 = %+v", forB1)
	}
	if len(settles) != 2 {
		t.Fatalf("settles = %+v", settles)
	}
	if all[3].Op != "auto_pay" || all[3].Outcome != "declined:limit_exceeded" {
		t.Fatalf("decline entry = %+v", all[3])
	}
	var calls map[string]int
	get("/sim/calls", &calls)
	if calls["kakao_bill"] != 3 || calls["lookup"] != 1 || calls["auto_pay"] != 1 {
		t.Fatalf("calls = %v", calls)
	}
	var empty []pgsim.Entry
	get("/sim/ledger?bill_id=none", &empty)
	if empty == nil || len(empty) != 0 {
		t.Fatalf("an empty ledger must be [], got %v", empty)
	}
}

func TestBillURLBase(t *testing.T) {
	_, c, url := start(t, pgsim.Config{})
	ctx := context.Background()
	if _, err := c.SendKakaoBill(ctx, pgclient.KakaoBillRequest{BillID: "b1", Phone: phone, Amount: 100}); err != nil {
		t.Fatal(err)
	}
	u, err := c.BillURL(ctx, "b1")
	if err != nil || u.URL != url+"/pay/b1" {
		t.Fatalf("bill url = %+v %v, want on %s", u, err, url)
	}
	if d := time.Until(u.ExpiresAt); d < 23*time.Hour || d > 25*time.Hour {
		t.Fatalf("expires in %s", d)
	}

	_, c2, _ := start(t, pgsim.Config{PublicURL: "https://pay.example/", BillTTL: time.Hour})
	if _, err := c2.SendKakaoBill(ctx, pgclient.KakaoBillRequest{BillID: "b1", Phone: phone, Amount: 100}); err != nil {
		t.Fatal(err)
	}
	u, err = c2.BillURL(ctx, "b1")
	if err != nil || u.URL != "https://pay.example/pay/b1" {
		t.Fatalf("bill url = %+v %v", u, err)
	}
	if d := time.Until(u.ExpiresAt); d > time.Hour || d < 58*time.Minute {
		t.Fatalf("a bill expiring in an hour has a URL valid for %s", d)
	}
	if _, err := c2.AutoPay(ctx, pgclient.AutoPayRequest{BillID: "a1", BillingKey: "bk", Amount: 100}); err != nil {
		t.Fatal(err)
	}
	if _, err := c2.BillURL(ctx, "a1"); pgclient.KindOf(err) != pgclient.KindConflict {
		t.Fatalf("bill URL of an auto-pay: %v", err)
	}
}

// Billing keys and phone numbers are secrets of payflow's customers: the
// simulator's log must not show them, even at debug level.
func TestLogsHoldNoBillingKeyOrPhone(t *testing.T) {
	var buf bytes.Buffer
	var mu sync.Mutex
	log := slog.New(slog.NewTextHandler(lockedWriter{&mu, &buf}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	secret := stdwebhook.NewSecret()
	cb := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(500) }))
	defer cb.Close()
	sim, c, _ := start(t, pgsim.Config{Logger: log, CallbackURL: cb.URL, WebhookSecret: secret, WebhookMaxElapsed: 100 * time.Millisecond, SettleDelay: time.Millisecond, KakaoPayDelay: time.Millisecond})
	ctx := context.Background()
	key := "bk_live_SECRETKEY_4242"
	_, _ = c.AutoPay(ctx, pgclient.AutoPayRequest{BillID: "b1", BillingKey: key, Amount: 100})
	_, _ = c.AutoPay(ctx, pgclient.AutoPayRequest{BillID: "b1", BillingKey: key, Amount: 100})
	_, _ = c.AutoPay(ctx, pgclient.AutoPayRequest{BillID: "b2", BillingKey: "decline_" + key, Amount: 100})
	_, _ = c.SendKakaoBill(ctx, pgclient.KakaoBillRequest{BillID: "b3", Phone: "+821098765432", Amount: 100})
	waitLedger(t, sim, func(es []pgsim.Entry) bool {
		n := 0
		for _, e := range es {
			if e.Op == pgsim.OpWebhook {
				n++
			}
		}
		return n == 2
	})
	mu.Lock()
	out := buf.String()
	mu.Unlock()
	if !strings.Contains(out, "b3") || !strings.Contains(out, "5432") {
		t.Fatalf("the log does not even mention the bills:\n%s", out)
	}
	for _, secret := range []string{"SECRETKEY", "98765432", "1098765"} {
		if strings.Contains(out, secret) {
			t.Fatalf("the log shows %q:\n%s", secret, out)
		}
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// Many callers at once, on the same bills: the simulator's state stays
// consistent (run with -race).
func TestConcurrentMixedOperations(t *testing.T) {
	sim, c, _ := start(t, pgsim.Config{SettleDelay: time.Millisecond})
	ctx := context.Background()
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 25 {
				id := "b" + string(rune('a'+i%5))
				_, _ = c.AutoPay(ctx, pgclient.AutoPayRequest{BillID: id, BillingKey: "bk", Amount: 1000})
				_, _ = c.LookupPayment(ctx, id)
				_, _ = c.Refund(ctx, pgclient.RefundRequest{BillID: id, RefundID: id + "-r" + string(rune('0'+g)), Amount: 100})
				_ = sim.Calls(pgsim.OpRefund)
				_ = sim.Ledger()
			}
		}()
	}
	wg.Wait()
	for i := range 5 {
		id := "b" + string(rune('a'+i))
		if n := sim.Charged(id); n != 1 {
			t.Fatalf("%s charged %d times", id, n)
		}
		p, _ := sim.Payment(id)
		if p.Refunded > p.Amount || p.Refunded%100 != 0 {
			t.Fatalf("%s: %+v", id, p)
		}
	}
}

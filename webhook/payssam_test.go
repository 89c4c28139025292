package webhook_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/payflow/payflow/events"
	"github.com/payflow/payflow/internal/testdb"
	"github.com/payflow/payflow/payflow"
	"github.com/payflow/payflow/pgclient"
	"github.com/payflow/payflow/pgclient/payssam"
	"github.com/payflow/payflow/pgclient/pgsim"
	"github.com/payflow/payflow/store"
	"github.com/payflow/payflow/webhook"
	"github.com/payflow/payflow/worker"
)

const (
	psKey    = "ps_test_key_0123456789"
	psMember = "payflowmember"
)

// psEnv is payflow end to end against the simulator in PaySSam mode: the
// real adapter, worker, store and callback receiver.
type psEnv struct {
	t       *testing.T
	st      *store.Store
	sim     *pgsim.Sim
	pg      *payssam.Client
	w       *worker.Worker
	h       *webhook.PaySSam
	url     string
	logs    *bytes.Buffer
	mu      sync.Mutex
	results map[string]int
}

func newPSEnv(t *testing.T) *psEnv {
	t.Helper()
	st := testdb.New(t)
	sim, err := pgsim.New(pgsim.Config{Protocol: pgsim.ProtocolPaySSam, APIKey: psKey, PaySSamMember: psMember,
		PaySSamStores: []string{"STORE1"}, SettleDelay: -1, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(sim.Handler())
	t.Cleanup(func() { srv.Close(); sim.Close() })
	e := &psEnv{t: t, st: st, sim: sim, url: srv.URL, logs: &bytes.Buffer{}, results: map[string]int{}}
	e.pg = e.client(srv.URL)
	e.w = worker.New(worker.Config{Store: st, PG: e.pg, Methods: noMethods{}, Lease: time.Minute,
		RetryBudget: 2 * time.Second, RetryInitial: time.Millisecond})
	e.h = &webhook.PaySSam{Bills: st.BillsWithPrefix, PG: e.pg, Settler: e.w, APIKey: psKey,
		Logger: slog.New(slog.NewTextHandler(&lockedWriter{w: e.logs}, nil)),
		Observer: callbacks(func(provider, result string) {
			if provider != webhook.ProviderPaySSam {
				t.Errorf("provider label %q", provider)
			}
			e.mu.Lock()
			e.results[result]++
			e.mu.Unlock()
		})}
	return e
}

// client is an adapter as app wires it: merchant and stored URL from the
// store.
func (e *psEnv) client(url string) *payssam.Client {
	c, err := payssam.New(payssam.Config{URL: url, APIKey: psKey, Member: psMember,
		Merchants: map[string]string{"m1": "STORE1"}, CallbackURL: "https://payflow.example/webhooks/pg/payssam",
		Timeout: 5 * time.Second, MerchantOf: e.st.MerchantOf,
		StoredURL: func(ctx context.Context, billID string) (pgclient.BillURL, error) {
			u, exp, err := e.st.PGURL(ctx, billID)
			return pgclient.BillURL{URL: u, ExpiresAt: exp}, err
		}})
	if err != nil {
		e.t.Fatal(err)
	}
	return c
}

type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

type noMethods struct{}

func (noMethods) Default(context.Context, string) (*payflow.StoredMethod, string, error) {
	return nil, "", nil
}
func (noMethods) BillingKey(context.Context, string) (string, error) {
	return "", payflow.ErrMethodUnusable
}

var psSeq atomic.Int64

func psEvent(typ, charge string, d map[string]any) []byte {
	d["merchant_id"], d["charge_id"] = "m1", charge
	b, _ := json.Marshal(map[string]any{"specversion": "1.0", "id": fmt.Sprintf("ps-evt-%d", psSeq.Add(1)), "source": "test",
		"type": typ, "subject": charge, "datacontenttype": "application/json", "data": d})
	return b
}

func (e *psEnv) handle(v []byte) {
	e.t.Helper()
	if err := e.w.Handle(context.Background(), v); err != nil {
		e.t.Fatalf("handle: %v", err)
	}
}

// placed sends a KakaoTalk bill for a non-member and returns payflow's and
// PaySSam's bill ids.
func (e *psEnv) placed(charge string, amount int64) (billID, psID string) {
	e.t.Helper()
	e.handle(psEvent(events.TypeChargeRequested, charge, map[string]any{"amount": amount, "currency": "KRW", "order_name": "order",
		"customer": map[string]any{"phone": "+821012345678", "name": "Kim"}}))
	c, err := e.st.ChargeByKey(context.Background(), "m1", charge)
	if err != nil || c.State != payflow.StateRequested {
		e.t.Fatalf("charge %+v, %v", c, err)
	}
	return c.Bill.BillID, payssam.BillID(c.Bill.BillID)
}

func (e *psEnv) post(body, remote string) *httptest.ResponseRecorder {
	e.t.Helper()
	req := httptest.NewRequest("POST", "/webhooks/pg/payssam", strings.NewReader(body))
	if remote != "" {
		req.RemoteAddr = remote
	}
	rec := httptest.NewRecorder()
	rc := &webhook.Receiver{Handlers: map[string]http.Handler{webhook.ProviderPaySSam: e.h}}
	mux := http.NewServeMux()
	mux.Handle("POST /webhooks/pg/{provider}", rc)
	mux.ServeHTTP(rec, req)
	return rec
}

func (e *psEnv) outbox(typ string) []map[string]any {
	e.t.Helper()
	rows, err := e.st.Pool.Query(context.Background(), "SELECT value FROM outbox ORDER BY id")
	if err != nil {
		e.t.Fatal(err)
	}
	defer rows.Close()
	var out []map[string]any
	for rows.Next() {
		var v []byte
		var ev map[string]any
		if err := rows.Scan(&v); err != nil {
			e.t.Fatal(err)
		}
		_ = json.Unmarshal(v, &ev)
		if ev["type"] == typ {
			out = append(out, ev)
		}
	}
	return out
}

func (e *psEnv) result(r string) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.results[r]
}

func v2(psID string, price int64) string {
	return fmt.Sprintf(`{"apiKey":%q,"billId":%q,"apprState":"F","apprPrice":"%d","apprNum":"12345678","apprDt":"20261125103000","apprPayType":"CARD_VAN"}`, psKey, psID, price)
}

func wantAck(t *testing.T, rec *httptest.ResponseRecorder) {
	t.Helper()
	if rec.Code != 200 || rec.Body.String() != webhook.PaySSamAck {
		t.Fatalf("answer %d %q, want 200 %s", rec.Code, rec.Body.String(), webhook.PaySSamAck)
	}
}

// A callback is a hint: the bill is settled only once PaySSam's own lookup
// reports it paid, and only once however often PaySSam sends it again.
func TestPaySSamCallbackSettlesOnlyWhatThePGConfirms(t *testing.T) {
	e := newPSEnv(t)
	bill, ps := e.placed("c1", 5000)

	// Unpaid at PaySSam: a forged or early callback settles nothing.
	wantAck(t, e.post(v2(ps, 5000), ""))
	if got := e.outbox(events.TypeSettled); len(got) != 0 || e.result("unconfirmed") != 1 {
		t.Fatalf("settled on an unconfirmed callback: %v %v", got, e.results)
	}

	if err := e.sim.Settle(ps, pgclient.StatusPaid); err != nil {
		t.Fatal(err)
	}
	wantAck(t, e.post(v2(ps, 5000), ""))
	settled := e.outbox(events.TypeSettled)
	if len(settled) != 1 || settled[0]["data"].(map[string]any)["status"] != "paid" || settled[0]["data"].(map[string]any)["bill_id"] != bill {
		t.Fatalf("settled events %v", settled)
	}
	if c, _ := e.st.ChargeByKey(context.Background(), "m1", "c1"); c.State != payflow.StatePaid {
		t.Fatalf("charge state %s", c.State)
	}
	// PaySSam's hourly retries: acknowledged, no second settlement, and
	// no PG call for a bill already settled.
	lookups := e.sim.Calls(pgsim.OpLookup)
	for range 3 {
		wantAck(t, e.post(v2(ps, 5000), ""))
	}
	if n := len(e.outbox(events.TypeSettled)); n != 1 || e.sim.Calls(pgsim.OpLookup) != lookups {
		t.Fatalf("after retries: %d settled, %d lookups (was %d)", n, e.sim.Calls(pgsim.OpLookup), lookups)
	}
	if e.result("applied") != 1 || e.result("duplicate") != 3 {
		t.Fatalf("results %v", e.results)
	}
}

// v1 snake_case bodies and bodies without apiKey (seen from PaySSam) are
// accepted; a body with both namings of a field is not.
func TestPaySSamCallbackV1BodyAndMissingAPIKey(t *testing.T) {
	e := newPSEnv(t)
	_, ps1 := e.placed("c1", 5000)
	_, ps2 := e.placed("c2", 7000)
	for _, ps := range []string{ps1, ps2} {
		if err := e.sim.Settle(ps, pgclient.StatusPaid); err != nil {
			t.Fatal(err)
		}
	}
	wantAck(t, e.post(fmt.Sprintf(`{"apikey":%q,"bill_id":%q,"appr_state":"F","appr_price":5000,"appr_num":"1"}`, psKey, ps1), ""))
	wantAck(t, e.post(fmt.Sprintf(`{"billId":%q,"apprState":"F","apprPrice":"7000"}`, ps2), ""))
	if n := len(e.outbox(events.TypeSettled)); n != 2 {
		t.Fatalf("%d settled, want 2", n)
	}
	if rec := e.post(fmt.Sprintf(`{"billId":%q,"bill_id":%q,"apprState":"F"}`, ps1, ps1), ""); rec.Code != 400 {
		t.Fatalf("both namings: %d", rec.Code)
	}
}

// Unknown bills and a lookup that fails settle nothing. The first are
// decided (PaySSam's answer, so it stops); a failed lookup is not (PaySSam
// sends it again). A callback's price is a hint like the rest of it: one
// that differs from the bill's decides nothing, the lookup does.
func TestPaySSamCallbackRefusals(t *testing.T) {
	e := newPSEnv(t)
	_, ps := e.placed("c1", 5000)
	if err := e.sim.Settle(ps, pgclient.StatusPaid); err != nil {
		t.Fatal(err)
	}
	wantAck(t, e.post(v2("NOSUCHBILL0000000001", 5000), ""))
	// An id of PaySSam's hashed family (payssam.BillID of an id that is
	// not a UUIDv7) names no bill payflow makes: refused without a query.
	lookups := e.h.Bills
	e.h.Bills = func(context.Context, string) ([]payflow.Bill, error) {
		t.Error("a hashed-family PaySSam id was looked up")
		return nil, nil
	}
	wantAck(t, e.post(v2(payssam.BillID("not-a-uuid"), 5000), ""))
	e.h.Bills = lookups
	e.sim.FailNext(pgsim.OpLookup, pgsim.FaultUnavailable, 1)
	if rec := e.post(v2(ps, 5000), ""); rec.Code != http.StatusServiceUnavailable || rec.Body.String() == webhook.PaySSamAck {
		t.Fatalf("failed lookup answered %d %s", rec.Code, rec.Body.String())
	}
	if n := len(e.outbox(events.TypeSettled)); n != 0 {
		t.Fatalf("%d settled", n)
	}
	if e.result("unknown_bill") != 2 || e.result("lookup_failed") != 1 {
		t.Fatalf("results %v", e.results)
	}
	// The retry of the failed one settles it, whatever price it names:
	// at the bill's amount, which PaySSam's lookup confirmed.
	wantAck(t, e.post(v2(ps, 4000), ""))
	settled := e.outbox(events.TypeSettled)
	if len(settled) != 1 || settled[0]["data"].(map[string]any)["amount"] != float64(5000) {
		t.Fatalf("settled after the retry: %v", settled)
	}
}

// A callback for a bill held declined, cancelled or expired here is looked
// up: if PaySSam holds it paid, the customer's money was taken with no
// result here, and the settlement reports it (worker
// TestAPaymentOfABillHeldUnpaidIsReported) without settling anything.
// Found by review: it was answered "duplicate" without a look.
func TestPaySSamCallbackForABillHeldUnpaidIsLookedUp(t *testing.T) {
	e := newPSEnv(t)
	bill, ps := e.placed("c1", 5000)
	if _, err := e.st.Pool.Exec(context.Background(), `UPDATE bills SET status = 'declined', settled_at = now() WHERE bill_id = $1`, bill); err != nil {
		t.Fatal(err)
	}
	if err := e.sim.Settle(ps, pgclient.StatusPaid); err != nil {
		t.Fatal(err)
	}
	lookups := e.sim.Calls(pgsim.OpLookup)
	wantAck(t, e.post(v2(ps, 5000), ""))
	if e.sim.Calls(pgsim.OpLookup) != lookups+1 || e.result("ignored") != 1 || len(e.outbox(events.TypeSettled)) != 0 {
		t.Fatalf("lookups %d, results %v, %d settled", e.sim.Calls(pgsim.OpLookup)-lookups, e.results, len(e.outbox(events.TypeSettled)))
	}
}

// A refunded (C) or destroyed (D) bill does not settle as a payment from a
// callback; a state other than F is acknowledged and ignored.
func TestPaySSamCallbackForACancelledBillDoesNotSettle(t *testing.T) {
	e := newPSEnv(t)
	bill, ps := e.placed("c1", 5000)
	if err := e.pg.DestroyBill(context.Background(), bill); err != nil {
		t.Fatal(err)
	}
	wantAck(t, e.post(v2(ps, 5000), ""))
	wantAck(t, e.post(strings.Replace(v2(ps, 5000), `"F"`, `"D"`, 1), ""))
	if n := len(e.outbox(events.TypeSettled)); n != 0 || e.result("unconfirmed") != 1 || e.result("ignored") != 1 {
		t.Fatalf("%d settled, results %v", n, e.results)
	}
}

// The allow-list and apiKey check refuse before anything is looked up,
// and the apiKey never reaches the logs.
func TestPaySSamCallbackSourceAndAPIKey(t *testing.T) {
	e := newPSEnv(t)
	_, ps := e.placed("c1", 5000)
	if err := e.sim.Settle(ps, pgclient.StatusPaid); err != nil {
		t.Fatal(err)
	}
	allow, err := webhook.ParseAllowList("52.78.118.82, 10.0.0.0/8")
	if err != nil {
		t.Fatal(err)
	}
	e.h.AllowFrom = allow
	lookups := e.sim.Calls(pgsim.OpLookup)
	if rec := e.post(v2(ps, 5000), "192.0.2.1:4444"); rec.Code != http.StatusForbidden {
		t.Fatalf("outside the allow-list: %d", rec.Code)
	}
	forged := strings.Replace(v2(ps, 5000), psKey, "someone_elses_key", 1)
	if rec := e.post(forged, "10.1.2.3:4444"); rec.Code != http.StatusUnauthorized {
		t.Fatalf("wrong apiKey: %d", rec.Code)
	}
	if e.sim.Calls(pgsim.OpLookup) != lookups || len(e.outbox(events.TypeSettled)) != 0 {
		t.Fatal("a refused callback reached the PG or settled")
	}
	wantAck(t, e.post(v2(ps, 5000), "52.78.118.82:4444"))
	if n := len(e.outbox(events.TypeSettled)); n != 1 {
		t.Fatalf("%d settled from an allowed source", n)
	}
	if strings.Contains(e.logs.String(), psKey) || strings.Contains(e.logs.String(), "someone_elses_key") {
		t.Fatalf("an apiKey was logged: %s", e.logs.String())
	}
	if _, err := webhook.ParseAllowList("52.78.118.82,nope"); err == nil {
		t.Fatal("a bad allow-list entry was accepted")
	}
}

// PaySSam sends only successful payments: a lost callback is settled by
// reconciliation, which asks /bill/read.
func TestPaySSamLostCallbackIsSettledByReconciliation(t *testing.T) {
	e := newPSEnv(t)
	bill, ps := e.placed("c1", 5000)
	if n, err := e.w.Reconcile(context.Background(), 0, 10); err != nil || n != 0 {
		t.Fatalf("an unpaid bill reconciled: %d, %v", n, err)
	}
	if err := e.sim.Settle(ps, pgclient.StatusPaid); err != nil {
		t.Fatal(err)
	}
	// A fresh adapter: nothing in memory, the store tells its merchant.
	e.w = worker.New(worker.Config{Store: e.st, PG: e.client(e.pgURL()), Methods: noMethods{}, Lease: time.Minute,
		RetryBudget: 2 * time.Second, RetryInitial: time.Millisecond})
	n, err := e.w.Reconcile(context.Background(), 0, 10)
	if err != nil || n != 1 {
		t.Fatalf("reconciled %d, %v", n, err)
	}
	settled := e.outbox(events.TypeSettled)
	if len(settled) != 1 || settled[0]["data"].(map[string]any)["bill_id"] != bill || settled[0]["data"].(map[string]any)["amount"] != 5000.0 {
		t.Fatalf("settled %v", settled)
	}
	// The callback arriving late changes nothing.
	wantAck(t, e.post(v2(ps, 5000), ""))
	if n := len(e.outbox(events.TypeSettled)); n != 1 {
		t.Fatalf("%d settled", n)
	}
}

// A partial refund is refused not_supported and never reaches PaySSam; a
// full one cancels the bill.
func TestPaySSamPartialRefundIsNotSupported(t *testing.T) {
	e := newPSEnv(t)
	_, ps := e.placed("c1", 5000)
	if err := e.sim.Settle(ps, pgclient.StatusPaid); err != nil {
		t.Fatal(err)
	}
	wantAck(t, e.post(v2(ps, 5000), ""))
	e.handle(psEvent(events.TypeRefundRequested, "c1", map[string]any{"refund_id": "r1", "amount": 1000, "reason": "one item"}))
	rej := e.outbox(events.TypeRejected)
	if len(rej) != 1 || rej[0]["data"].(map[string]any)["reason"] != "not_supported" {
		t.Fatalf("rejections %v", rej)
	}
	if n := e.sim.Calls(pgsim.OpRefund); n != 0 {
		t.Fatalf("%d cancels sent for a partial refund", n)
	}
	e.handle(psEvent(events.TypeRefundRequested, "c1", map[string]any{"refund_id": "r2", "amount": 5000, "reason": "all"}))
	if ok := e.outbox(events.TypeRefundSucceeded); len(ok) != 1 {
		t.Fatalf("refund.succeeded %v", ok)
	}
	if p, _ := e.sim.Payment(ps); p.Refunded != 5000 {
		t.Fatalf("PaySSam bill %+v", p)
	}
}

// A callback that overtakes its bill's placement record is asked again,
// not dropped: it settles once the placement is recorded.
func TestPaySSamCallbackBeforeThePlacementIsRecorded(t *testing.T) {
	e := newPSEnv(t)
	bill, ps := e.placed("c1", 5000)
	if err := e.sim.Settle(ps, pgclient.StatusPaid); err != nil {
		t.Fatal(err)
	}
	// As if the worker had not recorded the placement yet.
	if _, err := e.st.Pool.Exec(context.Background(), `UPDATE bills SET status = 'pending', pg_tx_id = NULL WHERE bill_id = $1`, bill); err != nil {
		t.Fatal(err)
	}
	if rec := e.post(v2(ps, 5000), ""); rec.Code != http.StatusServiceUnavailable || rec.Body.String() == webhook.PaySSamAck {
		t.Fatalf("answered %d %s while the placement is being recorded", rec.Code, rec.Body.String())
	}
	if _, err := e.st.Pool.Exec(context.Background(), `UPDATE bills SET status = 'requested', pg_tx_id = $2 WHERE bill_id = $1`, bill, ps); err != nil {
		t.Fatal(err)
	}
	wantAck(t, e.post(v2(ps, 5000), ""))
	if n := len(e.outbox(events.TypeSettled)); n != 1 || e.result("not_ready") != 1 {
		t.Fatalf("%d settled, results %v", n, e.results)
	}
}

// The pay URL PaySSam gives only at creation is stored, and a process that
// did not create the bill answers it from the store.
func TestPaySSamBillURLComesFromTheStore(t *testing.T) {
	e := newPSEnv(t)
	bill, ps := e.placed("c1", 5000)
	u, _, err := e.st.PGURL(context.Background(), bill)
	if err != nil || !strings.HasSuffix(u, "/pay/"+ps) {
		t.Fatalf("stored URL %q, %v", u, err)
	}
	got, err := e.client(e.pgURL()).BillURL(context.Background(), bill)
	if err != nil || got.URL != u || got.ExpiresAt.Before(time.Now()) {
		t.Fatalf("bill URL from another process: %+v, %v", got, err)
	}
}

func (e *psEnv) pgURL() string { return e.url }

// A stray byte that is not UTF-8 in a field payflow ignores (a name in a
// legacy Korean encoding) does not make a callback unreadable: found by
// review, once strictjson refused such text the callback was answered 400.
func TestPaySSamCallbackWithLegacyEncodedIgnoredField(t *testing.T) {
	body := []byte("{\"billId\":\"ABC123\",\"apprState\":\"F\",\"apprPrice\":\"1000\",\"userName\":\"\xc8\xab\xb1\xe6\xb5\xbf\"}")
	cb, err := webhook.ParsePaySSamCallback(body)
	if err != nil || cb.BillID != "ABC123" || cb.Price != 1000 {
		t.Fatalf("%+v, %v", cb, err)
	}
}

func FuzzParsePaySSamCallback(f *testing.F) {
	for _, s := range []string{
		v2("T2026050100000000001", 5000),
		`{"apikey":"k","bill_id":"ABC","appr_state":"F","appr_price":5000}`,
		`{"billId":"ABC","apprState":"F","apprPrice":5000.0}`,
		`{"billId":"ABC","bill_id":"ABC","apprState":"F"}`,
		`{"billId":"ABC","BILLID":"X","apprState":"F"}`,
		`{"billId":"ABC","apprState":"F","apprPrice":"-7"}`,
		`{"billId":"한글","apprState":"F"}`,
		`[]`, `null`, ``,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		cb, err := webhook.ParsePaySSamCallback(body)
		if err != nil {
			if strings.Contains(err.Error(), string(body)) && len(body) > 8 {
				t.Fatalf("error quotes the body: %v", err)
			}
			return
		}
		if cb.BillID == "" || len(cb.BillID) > payssam.BillIDLen || cb.State == "" || cb.Price < 0 || cb.Price > payflow.MaxAmount {
			t.Fatalf("accepted %+v", cb)
		}
	})
}

// A bill given up on (abandoned) that the customer paid after all is found
// by its callback and settled once, after PaySSam's lookup confirms it, as
// reconciliation would settle it; the callback sent again changes nothing.
func TestPaySSamCallbackSettlesALatePaymentOfAnAbandonedBill(t *testing.T) {
	e := newPSEnv(t)
	bill, ps := e.placed("c1", 5000)
	// As if every placement attempt had failed without an answer and the
	// worker had given the bill up, while PaySSam had created it.
	for _, q := range []string{`UPDATE bills SET status = 'abandoned', pg_tx_id = NULL WHERE bill_id = $1`,
		`UPDATE charges SET state = 'place_failed' WHERE current_bill_id = $1`} {
		if _, err := e.st.Pool.Exec(context.Background(), q, bill); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.sim.Settle(ps, pgclient.StatusPaid); err != nil {
		t.Fatal(err)
	}
	wantAck(t, e.post(v2(ps, 5000), ""))
	wantAck(t, e.post(v2(ps, 5000), ""))
	if n := len(e.outbox(events.TypeSettled)); n != 1 || e.result("applied") != 1 || e.result("duplicate") != 1 {
		t.Fatalf("%d settled, results %v", n, e.results)
	}
	var status string
	if err := e.st.Pool.QueryRow(context.Background(), `SELECT status FROM bills WHERE bill_id = $1`, bill).Scan(&status); err != nil || status != "paid" {
		t.Fatalf("bill %s, %v", status, err)
	}
}

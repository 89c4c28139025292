package pgclient_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/payflow/payflow/pgclient"
	"github.com/payflow/payflow/pgclient/pgsim"
)

var ctx = context.Background()

func kakao(id string) pgclient.KakaoBillRequest {
	return pgclient.KakaoBillRequest{BillID: id, Phone: "+821012345678", Amount: 100, OrderName: "o"}
}

func simulator(t *testing.T, cfg pgsim.Config) (*pgsim.Sim, string) {
	t.Helper()
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	sim, err := pgsim.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(sim.Handler())
	t.Cleanup(func() { srv.Close(); sim.Close() })
	return sim, srv.URL
}

func asError(t *testing.T, err error) *pgclient.Error {
	t.Helper()
	var e *pgclient.Error
	if !errors.As(err, &e) {
		t.Fatalf("err = %v (%T), want *pgclient.Error", err, err)
	}
	return e
}

func deadAddress(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// The simulator's fault modes, seen through the adapter: each maps to the
// kind that tells the worker whether the PG may have acted, and the
// simulator proves whether it did.
func TestClassificationOfSimulatedFaults(t *testing.T) {
	sim, url := simulator(t, pgsim.Config{TimeoutHold: 10 * time.Second, RetryAfter: 3 * time.Second})
	c := pgclient.NewHTTPClient(url, pgclient.WithTimeout(300*time.Millisecond))

	sim.FailNext(pgsim.OpKakaoBill, pgsim.FaultUnavailable, 1)
	_, err := c.SendKakaoBill(ctx, kakao("b1"))
	if e := asError(t, err); e.Kind != pgclient.KindTransient || e.RetryAfter != 3*time.Second || e.Op != "kakao_bill" {
		t.Fatalf("503: %#v", e)
	}
	if sim.Charged("b1") != 0 {
		t.Fatal("a 503 executed")
	}

	sim.FailNext(pgsim.OpKakaoBill, pgsim.FaultInternalAfterExecute, 1)
	_, err = c.SendKakaoBill(ctx, kakao("b2"))
	if e := asError(t, err); e.Kind != pgclient.KindUnknown {
		t.Fatalf("500: %#v", e)
	}
	if sim.Charged("b2") != 1 {
		t.Fatal("the 500 fault did not execute first")
	}

	sim.FailNext(pgsim.OpKakaoBill, pgsim.FaultTimeoutAfterExecute, 1)
	begin := time.Now()
	_, err = c.SendKakaoBill(ctx, kakao("b3"))
	if e := asError(t, err); e.Kind != pgclient.KindUnknown || !pgclient.Retriable(err) {
		t.Fatalf("timeout: %#v", e)
	}
	if d := time.Since(begin); d > 3*time.Second {
		t.Fatalf("the per-call timeout did not apply: %s", d)
	}
	if sim.Charged("b3") != 1 {
		t.Fatal("the timeout fault did not execute first")
	}

	// The caller's own deadline, shorter than the adapter's, counts too.
	sim.FailNext(pgsim.OpLookup, pgsim.FaultTimeoutAfterExecute, 1)
	short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	if _, err := c.LookupPayment(short, "b3"); pgclient.KindOf(err) != pgclient.KindUnknown {
		t.Fatalf("caller deadline after sending: %v", err)
	}
}

func TestConnectionRefusedIsTransient(t *testing.T) {
	c := pgclient.NewHTTPClient("http://" + deadAddress(t))
	_, err := c.AutoPay(ctx, pgclient.AutoPayRequest{BillID: "b1", BillingKey: "bk", Amount: 100})
	if e := asError(t, err); e.Kind != pgclient.KindTransient || e.Op != "auto_pay" {
		t.Fatalf("connection refused: %#v", e)
	}
}

// Failures before a connection exists are transient whatever the transport
// reports: a DNS failure, or a connect that outlasts the deadline.
func TestFailuresBeforeConnectingAreTransient(t *testing.T) {
	dnsFail := pgclient.NewTransport()
	dnsFail.DialContext = func(context.Context, string, string) (net.Conn, error) {
		return nil, &net.OpError{Op: "dial", Net: "tcp", Err: &net.DNSError{Err: "no such host", Name: "pg.invalid", IsNotFound: true}}
	}
	hang := pgclient.NewTransport()
	hang.DialContext = func(ctx context.Context, _, _ string) (net.Conn, error) {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	for name, tr := range map[string]*http.Transport{"dns": dnsFail, "connect timeout": hang} {
		c := pgclient.NewHTTPClient("http://pg.invalid", pgclient.WithHTTPClient(&http.Client{Transport: tr}), pgclient.WithTimeout(100*time.Millisecond))
		_, err := c.AutoPay(ctx, pgclient.AutoPayRequest{BillID: "b1", BillingKey: "bk", Amount: 100})
		if e := asError(t, err); e.Kind != pgclient.KindTransient {
			t.Errorf("%s: %#v", name, e)
		}
	}
}

// A real DNS failure, through the default transport.
func TestUnresolvableHostIsTransient(t *testing.T) {
	c := pgclient.NewHTTPClient("http://payflow-pg.invalid", pgclient.WithTimeout(3*time.Second))
	_, err := c.LookupPayment(ctx, "b1")
	if k := pgclient.KindOf(err); k != pgclient.KindTransient {
		t.Fatalf("unresolvable host: %v (%s)", err, k)
	}
}

// A connection the PG drops after reading the whole request: it may have
// acted, and the adapter must not resend the POST on its own.
func TestResetAfterSendingIsUnknown(t *testing.T) {
	var requests atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.ReadAll(r.Body)
		requests.Add(1)
		conn, _, err := w.(http.Hijacker).Hijack()
		if err != nil {
			t.Error(err)
			return
		}
		if tc, ok := conn.(*net.TCPConn); ok {
			_ = tc.SetLinger(0) // RST, not FIN
		}
		conn.Close()
	}))
	defer srv.Close()
	c := pgclient.NewHTTPClient(srv.URL)
	for i := range 3 { // fresh and reused connections alike
		_, err := c.AutoPay(ctx, pgclient.AutoPayRequest{BillID: "b1", BillingKey: "bk", Amount: 100})
		if e := asError(t, err); e.Kind != pgclient.KindUnknown {
			t.Fatalf("attempt %d: reset after sending: %#v", i, e)
		}
		if n := requests.Load(); n != int32(i+1) {
			t.Fatalf("the PG received %d requests after %d calls: the POST was resent", n, i+1)
		}
	}
}

// A proxy in front of the PG that forwards the request and then answers a
// bare 503 of its own (an upstream that went away mid-answer, a health
// check that flipped): the PG acted, so the outcome is unknown, and only
// the PG's own 503 answer is transient.
func TestProxy503AfterForwardingIsUnknown(t *testing.T) {
	sim, url := simulator(t, pgsim.Config{})
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		req, _ := http.NewRequestWithContext(r.Context(), r.Method, url+r.URL.Path, r.Body)
		req.Header = r.Header.Clone()
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Error(err)
			return
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		w.Header().Set("Content-Type", "text/html")
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = io.WriteString(w, "<html><body><h1>503 Service Unavailable</h1></body></html>")
	}))
	defer proxy.Close()
	_, err := pgclient.NewHTTPClient(proxy.URL).SendKakaoBill(ctx, kakao("b1"))
	if e := asError(t, err); e.Kind != pgclient.KindUnknown {
		t.Fatalf("a proxy's 503 after forwarding: %#v", e)
	}
	if sim.Charged("b1") != 1 {
		t.Fatal("the proxy did not forward the request")
	}
}

// scripted answers every request with one status, headers and body.
func scripted(t *testing.T, status int, header http.Header, body string) *pgclient.HTTPClient {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for k, v := range header {
			w.Header()[k] = v
		}
		w.WriteHeader(status)
		_, _ = io.WriteString(w, body)
	}))
	t.Cleanup(srv.Close)
	return pgclient.NewHTTPClient(srv.URL)
}

func errBody(kind, code, msg string) string {
	b, _ := json.Marshal(map[string]any{"error": map[string]string{"kind": kind, "code": code, "message": msg}})
	return string(b)
}

func TestStatusClassification(t *testing.T) {
	inAMinute := time.Now().Add(time.Minute).UTC().Format(http.TimeFormat)
	cases := []struct {
		name       string
		status     int
		header     http.Header
		body       string
		kind       pgclient.Kind
		code       string
		retryAfter time.Duration // lower bound
	}{
		// Only the PG's own "unavailable" answer proves it did not act; a 503
		// from a proxy in front of it may come after it forwarded the request.
		{"503 from the PG, with seconds", 503, http.Header{"Retry-After": {"7"}}, errBody("transient", "unavailable", "busy"), pgclient.KindTransient, "unavailable", 7 * time.Second},
		{"503 from the PG, without Retry-After", 503, nil, errBody("transient", "unavailable", "busy"), pgclient.KindTransient, "unavailable", 0},
		{"503 without body", 503, nil, "", pgclient.KindUnknown, "", 0},
		{"503 page from a proxy", 503, http.Header{"Content-Type": {"text/html"}}, "<html><body>503 Service Unavailable</body></html>", pgclient.KindUnknown, "", 0},
		{"503 from a proxy, with seconds", 503, http.Header{"Retry-After": {"4"}}, "no healthy upstream", pgclient.KindUnknown, "", 4 * time.Second},
		{"503 with another code", 503, nil, errBody("transient", "overloaded", "busy"), pgclient.KindUnknown, "overloaded", 0},
		{"503 with the code but another kind", 503, nil, errBody("unknown", "unavailable", "?"), pgclient.KindUnknown, "unavailable", 0},
		{"503 with the kind but no code", 503, nil, errBody("transient", "", "busy"), pgclient.KindUnknown, "", 0},
		{"503 with other JSON", 503, nil, `{"message":"unavailable"}`, pgclient.KindUnknown, "", 0},
		{"429 with a date", 429, http.Header{"Retry-After": {inAMinute}}, "slow down", pgclient.KindTransient, "", 50 * time.Second},
		{"429 with garbage", 429, http.Header{"Retry-After": {"soon"}}, "", pgclient.KindTransient, "", 0},
		{"429 from the PG", 429, nil, errBody("transient", "rate_limited", "slow down"), pgclient.KindTransient, "rate_limited", 0},
		{"500", 500, nil, errBody("unknown", "internal", "boom"), pgclient.KindUnknown, "internal", 0},
		{"500 claiming transient", 500, nil, errBody("transient", "unavailable", "?"), pgclient.KindUnknown, "unavailable", 0},
		{"502 from a gateway", 502, nil, "<html>bad gateway</html>", pgclient.KindUnknown, "", 0},
		{"502 with the PG's unavailable answer", 502, nil, errBody("transient", "unavailable", "?"), pgclient.KindUnknown, "unavailable", 0},
		{"504 from a gateway", 504, nil, "", pgclient.KindUnknown, "", 0},
		{"504 claiming a decline", 504, nil, errBody("declined", "declined", "?"), pgclient.KindUnknown, "declined", 0},
		{"599", 599, nil, "", pgclient.KindUnknown, "", 0},
		{"402 declined", 402, nil, errBody("declined", "limit_exceeded", "limit"), pgclient.KindDeclined, "limit_exceeded", 0},
		{"402 without body", 402, nil, "", pgclient.KindDeclined, "", 0},
		{"400 invalid", 400, nil, errBody("invalid", "invalid_request", "amount"), pgclient.KindInvalid, "invalid_request", 0},
		{"401", 401, nil, "", pgclient.KindInvalid, "", 0},
		{"422 without kind", 422, nil, `{"error":{"code":"x"}}`, pgclient.KindInvalid, "x", 0},
		{"404 not found", 404, nil, errBody("not_found", "not_found", "no bill"), pgclient.KindNotFound, "not_found", 0},
		{"404 without body", 404, nil, "", pgclient.KindNotFound, "", 0},
		{"409 duplicate", 409, nil, errBody("duplicate", "duplicate_bill", "used"), pgclient.KindDuplicate, "duplicate_bill", 0},
		{"409 conflict", 409, nil, errBody("conflict", "exceeds_paid", "too much"), pgclient.KindConflict, "exceeds_paid", 0},
		{"409 without body", 409, nil, "", pgclient.KindConflict, "", 0},
		{"409 with an unknown kind", 409, nil, errBody("weird", "w", ""), pgclient.KindConflict, "w", 0},
		{"302 is never followed", 302, http.Header{"Location": {"/elsewhere"}}, "", pgclient.KindInvalid, "", 0},
		{"200 undecodable", 200, nil, "not json", pgclient.KindUnknown, "", 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := scripted(t, tc.status, tc.header, tc.body)
			_, err := c.Refund(ctx, pgclient.RefundRequest{BillID: "b1", RefundID: "r1", Amount: 100})
			e := asError(t, err)
			if e.Kind != tc.kind || e.Code != tc.code || e.Op != "refund" {
				t.Fatalf("got %#v, want kind %s code %q", e, tc.kind, tc.code)
			}
			if e.RetryAfter < tc.retryAfter || tc.retryAfter == 0 && e.RetryAfter != 0 || e.RetryAfter > tc.retryAfter+time.Minute {
				t.Fatalf("RetryAfter = %s, want about %s", e.RetryAfter, tc.retryAfter)
			}
			if e.Message == "" {
				t.Fatal("empty message")
			}
		})
	}
}

func TestSuccessAnswersDecode(t *testing.T) {
	c := scripted(t, 200, nil, `{"bill_id":"b1","method":"auto_pay","status":"paid","amount":500,"refunded":100,"pg_tx_id":"tx1"}`)
	p, err := c.LookupPayment(ctx, "b1")
	if err != nil || p != (pgclient.Payment{BillID: "b1", Method: "auto_pay", Status: pgclient.StatusPaid, Amount: 500, Refunded: 100, PGTxID: "tx1"}) {
		t.Fatalf("lookup = %+v %v", p, err)
	}
	if err := scripted(t, 200, nil, "").DestroyBill(ctx, "b1"); err != nil {
		t.Fatalf("destroy with an empty 200: %v", err)
	}
}

// The adapter speaks the documented protocol: paths, JSON bodies, headers.
func TestRequestsFollowTheProtocol(t *testing.T) {
	type seen struct {
		path, auth, ctype string
		body              map[string]any
	}
	var mu sync.Mutex
	var got []seen
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body map[string]any
		_ = json.NewDecoder(r.Body).Decode(&body)
		mu.Lock()
		got = append(got, seen{r.Method + " " + r.URL.Path, r.Header.Get("Authorization"), r.Header.Get("Content-Type"), body})
		mu.Unlock()
		_, _ = io.WriteString(w, `{}`)
	}))
	defer srv.Close()
	c := pgclient.NewHTTPClient(srv.URL+"/pg/", pgclient.WithAPIKey("k"))
	_, _ = c.AutoPay(ctx, pgclient.AutoPayRequest{BillID: "b1", BillingKey: "bk", Amount: 1})
	_, _ = c.SendKakaoBill(ctx, kakao("b2"))
	_, _ = c.BillURL(ctx, "b3")
	_, _ = c.LookupPayment(ctx, "b4")
	_, _ = c.Refund(ctx, pgclient.RefundRequest{BillID: "b5", RefundID: "r5", Amount: 1})
	_ = c.DestroyBill(ctx, "b6")
	want := []string{"/v1/payments/auto-pay", "/v1/bills/kakao", "/v1/bills/url", "/v1/payments/lookup", "/v1/refunds", "/v1/bills/destroy"}
	if len(got) != len(want) {
		t.Fatalf("requests = %+v", got)
	}
	for i, s := range got {
		if s.path != "POST /pg"+want[i] || s.auth != "Bearer k" || s.ctype != "application/json" {
			t.Fatalf("request %d = %+v", i, s)
		}
		if s.body["bill_id"] != "b"+string(rune('1'+i)) {
			t.Fatalf("request %d body = %v", i, s.body)
		}
	}
	if got[0].body["billing_key"] != "bk" || got[4].body["refund_id"] != "r5" {
		t.Fatalf("bodies = %+v", got)
	}
}

// Errors end up in logs and events: a billing key or phone number the PG
// echoed back must not be in them.
func TestErrorsNeverCarryTheBillingKey(t *testing.T) {
	const key = "bk_live_VERYSECRET_9999"
	const phone = "+821055556666"
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body map[string]any
		_ = json.NewDecoder(r.Body).Decode(&body)
		echo := "key " + toString(body["billing_key"]) + " phone " + toString(body["phone"])
		w.WriteHeader(402)
		_, _ = io.WriteString(w, errBody("declined", "bad:"+toString(body["billing_key"])+toString(body["phone"]), echo))
	}))
	defer srv.Close()
	c := pgclient.NewHTTPClient(srv.URL)
	_, err1 := c.AutoPay(ctx, pgclient.AutoPayRequest{BillID: "b1", BillingKey: key, Amount: 100})
	_, err2 := c.SendKakaoBill(ctx, pgclient.KakaoBillRequest{BillID: "b2", Phone: phone, Amount: 100})
	for _, err := range []error{err1, err2} {
		e := asError(t, err)
		if e.Kind != pgclient.KindDeclined || !strings.Contains(e.Message, "[redacted]") {
			t.Fatalf("err = %#v", e)
		}
		if s := err.Error() + e.Code + e.Message; strings.Contains(s, "VERYSECRET") || strings.Contains(s, "55556666") {
			t.Fatalf("the error shows a secret: %s", s)
		}
	}
	// And the simulator's own decline does not carry it either.
	_, url := simulator(t, pgsim.Config{})
	_, err := pgclient.NewHTTPClient(url).AutoPay(ctx, pgclient.AutoPayRequest{BillID: "b1", BillingKey: "decline_" + key, Amount: 100})
	if e := asError(t, err); e.Kind != pgclient.KindDeclined || strings.Contains(err.Error(), "VERYSECRET") {
		t.Fatalf("err = %v", err)
	}
}

func toString(v any) string {
	s, _ := v.(string)
	return s
}

// Hundreds of concurrent calls keep their connections: a second wave opens
// (almost) none, where the standard transport would re-dial most of them.
func TestConnectionsAreReusedUnderConcurrency(t *testing.T) {
	sim, err := pgsim.New(pgsim.Config{Latency: 20 * time.Millisecond, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer sim.Close()
	var dials atomic.Int32
	srv := httptest.NewUnstartedServer(sim.Handler())
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			dials.Add(1)
		}
	}
	srv.Start()
	defer srv.Close()
	c := pgclient.NewHTTPClient(srv.URL)
	const n = 200
	wave := func() {
		var wg sync.WaitGroup
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if _, err := c.LookupPayment(ctx, "b"+string(rune(i))); pgclient.KindOf(err) != pgclient.KindNotFound {
					t.Errorf("lookup: %v", err)
				}
			}()
		}
		wg.Wait()
	}
	wave()
	first := dials.Load()
	// A call returns before its connection is back in the idle pool (the
	// transport's read loop puts it there): give the pool a moment, or a
	// busy machine makes the second wave dial for connections that are
	// about to be free. The default transport keeps 2 idle connections per
	// host, so without a tuned pool the second wave would dial ~n-2 times;
	// a tuned one dials a handful at most.
	time.Sleep(200 * time.Millisecond)
	wave()
	// A wave reaches only as many calls at once as the machine lets start
	// within one answer's latency: a busy machine's first wave may open
	// fewer connections than the second needs. Those few more are fine;
	// what is not is dialling again for connections the pool should keep.
	if extra := dials.Load() - first; extra > max(0, n-first)+n/10 {
		t.Fatalf("the second wave of %d calls opened %d new connections (first wave: %d)", n, extra, first)
	}
}

package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/payflow/payflow/api"
	"github.com/payflow/payflow/internal/testdb"
	"github.com/payflow/payflow/payflow"
	"github.com/payflow/payflow/pgclient"
	"github.com/payflow/payflow/store"
	"github.com/payflow/payflow/vault"
)

// pg answers lookups and bill URLs.
type pg struct {
	pgclient.Client
	urlCalls int
}

func (p *pg) LookupPayment(_ context.Context, id string) (pgclient.Payment, error) {
	return pgclient.Payment{BillID: id, Status: pgclient.StatusRequested, Amount: 5000}, nil
}

func (p *pg) BillURL(_ context.Context, id string) (pgclient.BillURL, error) {
	p.urlCalls++
	return pgclient.BillURL{URL: "https://pay.example/" + id, ExpiresAt: time.Now().Add(time.Hour)}, nil
}

type env struct {
	t    *testing.T
	h    http.Handler
	st   *store.Store
	pg   *pg
	logs *bytes.Buffer
}

func setup(t *testing.T) *env {
	st := testdb.New(t)
	v, _ := vault.New(vault.GenerateKey())
	logs := &bytes.Buffer{}
	p := &pg{}
	h := api.New(api.Config{Store: st, Vault: v, PG: p, PlatformToken: "platform-secret",
		MerchantTokens: map[string]string{"m1": "tok-m1", "m2": "tok-m2"},
		Logger:         slog.New(slog.NewJSONHandler(logs, nil))})
	return &env{t: t, h: h, st: st, pg: p, logs: logs}
}

func (e *env) do(method, path, token, body string) (*httptest.ResponseRecorder, map[string]any) {
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	rec := httptest.NewRecorder()
	e.h.ServeHTTP(rec, req)
	var out map[string]any
	_ = json.Unmarshal(rec.Body.Bytes(), &out)
	return rec, out
}

func TestPaymentMethods(t *testing.T) {
	e := setup(t)
	rec, first := e.do("POST", "/v1/members/mem1/payment-methods", "platform-secret", `{"billing_key":"bk_live_secret_9876","label":"Shinhan"}`)
	if rec.Code != 201 || first["label"] != "Shinhan ****9876" || first["default"] != true {
		t.Fatalf("add: %d %v", rec.Code, first)
	}
	rec, second := e.do("POST", "/v1/members/mem1/payment-methods", "platform-secret", `{"billing_key":"bk_other_1111","label":"KB","default":true}`)
	if rec.Code != 201 || second["default"] != true {
		t.Fatalf("add second: %d %v", rec.Code, second)
	}
	rec, list := e.do("GET", "/v1/members/mem1/payment-methods", "platform-secret", "")
	ms := list["payment_methods"].([]any)
	if rec.Code != 200 || len(ms) != 2 || ms[0].(map[string]any)["id"] != second["id"] || ms[1].(map[string]any)["default"] != false {
		t.Fatalf("list: %d %v", rec.Code, list)
	}
	rec, _ = e.do("DELETE", "/v1/members/mem1/payment-methods/"+second["id"].(string), "platform-secret", "")
	if rec.Code != 204 {
		t.Fatalf("delete: %d", rec.Code)
	}
	// The remaining method is promoted to default.
	if m, _ := e.st.DefaultMethod(context.Background(), "mem1"); m == nil || m.ID != first["id"] {
		t.Fatalf("default after delete = %+v", m)
	}
	for _, c := range []struct{ method, path, token, body string }{
		{"DELETE", "/v1/members/mem1/payment-methods/" + second["id"].(string), "platform-secret", ""},
		{"DELETE", "/v1/members/other/payment-methods/" + first["id"].(string), "platform-secret", ""},
		{"DELETE", "/v1/members/mem1/payment-methods/not-a-uuid", "platform-secret", ""},
	} {
		if rec, _ := e.do(c.method, c.path, c.token, c.body); rec.Code != 404 {
			t.Fatalf("%s %s: %d, want 404", c.method, c.path, rec.Code)
		}
	}
	// The billing key never leaves: not in answers, not in logs, not in the
	// database in the clear.
	all := e.logs.String()
	for _, r := range []string{fmtJSON(first), fmtJSON(second), fmtJSON(list)} {
		all += r
	}
	if strings.Contains(all, "bk_live_secret") || strings.Contains(all, "bk_other") {
		t.Fatal("a billing key leaked into an answer or a log")
	}
	var clear int
	_ = e.st.Pool.QueryRow(context.Background(), `SELECT count(*) FROM payment_methods WHERE position('bk_live'::bytea in billing_key_enc) > 0`).Scan(&clear)
	if clear != 0 {
		t.Fatal("a billing key is stored in the clear")
	}
}

func fmtJSON(v any) string { b, _ := json.Marshal(v); return string(b) }

func TestAuthAndBadInput(t *testing.T) {
	e := setup(t)
	cases := []struct {
		method, path, token, body string
		want                      int
	}{
		{"GET", "/v1/members/mem1/payment-methods", "", "", 401},
		{"GET", "/v1/members/mem1/payment-methods", "tok-m1", "", 401}, // a merchant token is not the platform's
		{"GET", "/v1/charges/c1", "platform-secret", "", 401},
		{"GET", "/v1/charges/c1", "wrong", "", 401},
		{"POST", "/v1/members/mem1/payment-methods", "platform-secret", `{"billing_key":""}`, 400},
		{"POST", "/v1/members/mem1/payment-methods", "platform-secret", `not json`, 400},
		{"POST", "/v1/members/mem1/payment-methods", "platform-secret", `{"billing_key":"x","extra":1}`, 400},
		{"POST", "/v1/members/mem1/payment-methods", "platform-secret", `{"billing_key":"` + strings.Repeat("x", api.MaxBody) + `"}`, 413},
		{"GET", "/v1/nowhere", "", "", 404},
		{"GET", "/healthz", "", "", 200},
	}
	for _, c := range cases {
		rec, body := e.do(c.method, c.path, c.token, c.body)
		if rec.Code != c.want {
			t.Errorf("%s %s: %d, want %d (%s)", c.method, c.path, rec.Code, c.want, rec.Body)
		}
		if c.want >= 400 && body["error"] == nil {
			t.Errorf("%s %s: error body %s", c.method, c.path, rec.Body)
		}
	}
	if strings.Contains(e.logs.String(), "platform-secret") || strings.Contains(e.logs.String(), "tok-m1") {
		t.Fatal("a token was logged")
	}
}

func seedCharge(t *testing.T, st *store.Store, merchant, charge string, state payflow.ChargeState, method payflow.Method) string {
	t.Helper()
	ctx := context.Background()
	req := payflow.ChargeRequest{MerchantID: merchant, ChargeID: charge, Amount: 5000, Currency: "KRW", OrderName: "o",
		Customer: payflow.Customer{Phone: "+821012345678", Name: "Kim"}}
	bill := "bill-" + merchant + "-" + charge
	pk, _, err := st.CreateCharge(ctx, store.NewCharge{Request: req, RequestHash: req.Fingerprint(), RequestEventID: "e",
		Bill: store.Bill{BillID: bill, Method: method, Amount: 5000}, LeaseOwner: "w", Lease: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if err := st.FinishPlacing(ctx, store.PlaceResult{ChargePK: pk, BillID: bill, ChargeState: state, BillStatus: payflow.BillRequested}, nil); err != nil {
		t.Fatal(err)
	}
	return bill
}

func TestChargesAreMerchantScoped(t *testing.T) {
	e := setup(t)
	bill := seedCharge(t, e.st, "m1", "c1", payflow.StateRequested, payflow.MethodKakaoBill)
	rec, body := e.do("GET", "/v1/charges/c1", "tok-m1", "")
	if rec.Code != 200 || body["bill_id"] != bill || body["state"] != "requested" || body["pg_status"] == nil {
		t.Fatalf("own charge: %d %v", rec.Code, body)
	}
	if h := body["history"].(map[string]any)["bills"].([]any); len(h) != 1 {
		t.Fatalf("history = %v", body["history"])
	}
	if rec, _ := e.do("GET", "/v1/charges/c1", "tok-m2", ""); rec.Code != 404 {
		t.Fatalf("another merchant's charge: %d, want 404", rec.Code)
	}
	if rec, _ := e.do("GET", "/v1/charges/unknown", "tok-m1", ""); rec.Code != 404 {
		t.Fatalf("unknown charge: %d", rec.Code)
	}
}

func TestBillURLIsCachedWhileValid(t *testing.T) {
	e := setup(t)
	bill := seedCharge(t, e.st, "m1", "c1", payflow.StateRequested, payflow.MethodKakaoBill)
	for i := 0; i < 3; i++ {
		rec, body := e.do("GET", "/v1/charges/c1/bill-url", "tok-m1", "")
		if rec.Code != 200 || body["url"] != "https://pay.example/"+bill {
			t.Fatalf("bill url: %d %v", rec.Code, body)
		}
	}
	if e.pg.urlCalls != 1 {
		t.Fatalf("PG asked %d times, want 1 (cached)", e.pg.urlCalls)
	}
	seedCharge(t, e.st, "m1", "c2", payflow.StateRequested, payflow.MethodAutoPay)
	if rec, body := e.do("GET", "/v1/charges/c2/bill-url", "tok-m1", ""); rec.Code != 409 {
		t.Fatalf("auto-pay bill url: %d %v", rec.Code, body)
	}
	if rec, _ := e.do("GET", "/v1/charges/c1/bill-url", "tok-m2", ""); rec.Code != 404 {
		t.Fatalf("another merchant's bill url: %d", rec.Code)
	}
}

func TestRequestIDsAreEchoedAndLogged(t *testing.T) {
	e := setup(t)
	req := httptest.NewRequest("GET", "/healthz", nil)
	req.Header.Set("X-Request-ID", "trace-123")
	rec := httptest.NewRecorder()
	e.h.ServeHTTP(rec, req)
	if rec.Header().Get("X-Request-ID") != "trace-123" || !strings.Contains(e.logs.String(), `"request_id":"trace-123"`) {
		t.Fatalf("header %q, logs %s", rec.Header().Get("X-Request-ID"), e.logs.String())
	}
	rec = httptest.NewRecorder()
	e.h.ServeHTTP(rec, httptest.NewRequest("GET", "/healthz", nil))
	if len(rec.Header().Get("X-Request-ID")) < 16 {
		t.Fatal("no request id was generated")
	}
}

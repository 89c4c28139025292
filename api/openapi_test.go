package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/payflow/payflow/api"
	"github.com/payflow/payflow/outbox"
	"github.com/payflow/payflow/payflow"
	"github.com/payflow/payflow/pgclient/pgsim"
	"github.com/payflow/payflow/stdwebhook"
	"github.com/payflow/payflow/store"
	"github.com/payflow/payflow/webhook"
)

// storeSettler settles webhooks in the store, with no result events.
type storeSettler struct{ st *store.Store }

func (s storeSettler) Settle(ctx context.Context, st payflow.Settlement) (payflow.SettleOutcome, error) {
	out, _, err := s.st.Settle(ctx, st, func(payflow.SettledBill) ([]outbox.Message, error) { return nil, nil })
	return out, err
}

// openAPIDoc loads and validates the served document.
func openAPIDoc(t *testing.T) (*openapi3.T, routers.Router) {
	t.Helper()
	doc, err := openapi3.NewLoader().LoadFromData(api.OpenAPI)
	if err != nil {
		t.Fatal(err)
	}
	if !doc.IsOpenAPI31OrLater() {
		t.Fatalf("openapi %s, want 3.1", doc.OpenAPI)
	}
	if err := doc.Validate(context.Background()); err != nil {
		t.Fatalf("the document is not valid OpenAPI: %v", err)
	}
	router, err := gorillamux.NewRouter(doc)
	if err != nil {
		t.Fatal(err)
	}
	return doc, router
}

// apiCall is one request of the conformance test. badRequest marks a
// request that breaks the document on purpose (its answer is still
// checked).
type apiCall struct {
	name                      string
	method, path, token, body string
	header                    http.Header
	badRequest                bool
	want                      int
}

// Every request and every answer of a representative set of calls, errors
// included, is what api/openapi.json says, and every operation it
// documents is called: the document cannot drift from the handlers.
func TestOpenAPIDescribesTheAPI(t *testing.T) {
	doc, router := openAPIDoc(t)
	secret := stdwebhook.NewSecret()
	sec, err := stdwebhook.ParseSecret(secret)
	if err != nil {
		t.Fatal(err)
	}
	ready := error(nil)
	e := setup(t, func(c *api.Config) {
		c.Metrics = promhttp.Handler()
		c.Ready = func(context.Context) error { return ready }
		// Webhooks as payflow serves them: Standard Webhooks over the store.
		c.Webhooks = &webhook.Receiver{Verifiers: map[string]webhook.Verifier{"sim": &stdwebhook.Verifier{Secrets: []stdwebhook.Secret{sec}}},
			Settler: storeSettler{c.Store.(*store.Store)}, Logger: c.Logger}
	})

	kakao := seedKakao(t, e, "m1", "c1", "010-1234-5678")
	auto := seedAutoPay(t, e, "m1", "c2")
	pay(t, e, auto)
	seedKakao(t, e, "m1", "c3", "010-1234-5678")
	other := seedKakao(t, e, "m1", "c4", "010-1234-5678")
	pending := "bill-m1-c5"
	createCharge(t, e.st, "m1", "c5", "010-1234-5678", payflow.Bill{BillID: pending, Method: "kakao_bill", FallbackReason: "no_method"})

	signed := func(id, body string) http.Header {
		return stdwebhook.Headers(sec, id, time.Now(), []byte(body))
	}
	callback := func(bill string, amount int) string {
		b, _ := json.Marshal(map[string]any{"bill_id": bill, "status": "paid", "amount": amount, "pg_tx_id": "pgtx-" + bill,
			"occurred_at": time.Now().UTC().Format(time.RFC3339)})
		return string(b)
	}
	paid, mismatch, unknown, notPlaced := callback(kakao, 5000), callback(other, 4000), callback("no-such-bill", 5000), callback(pending, 5000)
	weird := `{"bill_id":"` + kakao + `","status":"weird","amount":5000}`
	forged := signed("wh-forged", paid)
	forged.Set("webhook-signature", "v1,AAAA")
	big := `{"billing_key":"` + strings.Repeat("k", api.MaxBody) + `"}`

	calls := []apiCall{
		{name: "add method", method: "POST", path: "/v1/members/mem1/payment-methods", token: platformToken,
			body: `{"billing_key":"bk_4242424242","label":"Shinhan","default":true}`, want: 201},
		{name: "add second method", method: "POST", path: "/v1/members/mem1/payment-methods", token: platformToken,
			body: `{"billing_key":"bk_5555444433","label":"KB"}`, want: 201},
		{name: "list methods", method: "GET", path: "/v1/members/mem1/payment-methods", token: platformToken, want: 200},
		{name: "list no methods", method: "GET", path: "/v1/members/mem2/payment-methods", token: platformToken, want: 200},
		{name: "delete unknown method", method: "DELETE", path: "/v1/members/mem1/payment-methods/nope", token: platformToken, want: 404},
		{name: "method of a bad member id", method: "GET", path: "/v1/members/a%20b/payment-methods", token: platformToken, want: 400},
		{name: "add method without billing key", method: "POST", path: "/v1/members/mem1/payment-methods", token: platformToken,
			body: `{"label":"x"}`, badRequest: true, want: 400},
		{name: "add method with unknown field", method: "POST", path: "/v1/members/mem1/payment-methods", token: platformToken,
			body: `{"billing_key":"bk_1","Billing_Key":"bk_2"}`, badRequest: true, want: 400},
		{name: "add method too large", method: "POST", path: "/v1/members/mem1/payment-methods", token: platformToken,
			body: big, badRequest: true, want: 413},
		{name: "methods without token", method: "GET", path: "/v1/members/mem1/payment-methods", want: 401},
		{name: "methods with a merchant token", method: "GET", path: "/v1/members/mem1/payment-methods", token: m1Token, want: 401},

		{name: "kakao charge", method: "GET", path: "/v1/charges/c1", token: m1Token, want: 200},
		{name: "paid auto-pay charge", method: "GET", path: "/v1/charges/c2", token: m1Token, want: 200},
		{name: "pending charge", method: "GET", path: "/v1/charges/c5", token: m1Token, want: 200},
		{name: "unknown charge", method: "GET", path: "/v1/charges/nope", token: m1Token, want: 404},
		{name: "another merchant's charge", method: "GET", path: "/v1/charges/c1", token: m2Token, want: 404},
		{name: "charge without token", method: "GET", path: "/v1/charges/c1", want: 401},
		{name: "bill url", method: "GET", path: "/v1/charges/c1/bill-url", token: m1Token, want: 200},
		{name: "cached bill url", method: "GET", path: "/v1/charges/c1/bill-url", token: m1Token, want: 200},
		{name: "bill url of a paid auto-pay", method: "GET", path: "/v1/charges/c2/bill-url", token: m1Token, want: 409},
		{name: "bill url of an unknown charge", method: "GET", path: "/v1/charges/nope/bill-url", token: m1Token, want: 404},

		{name: "webhook", method: "POST", path: "/webhooks/pg/sim", body: paid, header: signed("wh-1", paid), want: 200},
		{name: "webhook replayed", method: "POST", path: "/webhooks/pg/sim", body: paid, header: signed("wh-1", paid), want: 200},
		{name: "webhook for a final bill", method: "POST", path: "/webhooks/pg/sim", body: paid, header: signed("wh-2", paid), want: 200},
		{name: "webhook with a bad signature", method: "POST", path: "/webhooks/pg/sim", body: paid, header: forged, want: 401},
		{name: "webhook unsigned", method: "POST", path: "/webhooks/pg/sim", body: paid, want: 401},
		{name: "webhook for an unknown bill", method: "POST", path: "/webhooks/pg/sim", body: unknown, header: signed("wh-3", unknown), want: 404},
		{name: "webhook amount mismatch", method: "POST", path: "/webhooks/pg/sim", body: mismatch, header: signed("wh-4", mismatch), want: 422},
		{name: "webhook before placement", method: "POST", path: "/webhooks/pg/sim", body: notPlaced, header: signed("wh-5", notPlaced), want: 409},
		{name: "webhook invalid", method: "POST", path: "/webhooks/pg/sim", body: weird, header: signed("wh-6", weird), badRequest: true, want: 400},
		{name: "webhook unknown provider", method: "POST", path: "/webhooks/pg/other", body: paid, header: signed("wh-7", paid), want: 404},

		{name: "healthz", method: "GET", path: "/healthz", want: 200},
		{name: "readyz", method: "GET", path: "/readyz", header: http.Header{"X-Request-Id": {"req-1"}}, want: 200},
		{name: "metrics", method: "GET", path: "/metrics", want: 200},
		{name: "openapi", method: "GET", path: "/openapi.json", want: 200},
	}
	called := map[string]bool{}
	run := func(c apiCall) []byte {
		t.Helper()
		route, params, err := router.FindRoute(httptest.NewRequest(c.method, c.path, nil))
		if err != nil {
			t.Fatalf("%s: %s %s is not in the document: %v", c.name, c.method, c.path, err)
		}
		called[c.method+" "+route.Path] = true
		req := httptest.NewRequest(c.method, c.path, strings.NewReader(c.body))
		if c.body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		if c.token != "" {
			req.Header.Set("Authorization", "Bearer "+c.token)
		}
		for k, v := range c.header {
			req.Header[k] = v
		}
		in := &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route,
			Options: &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc, IncludeResponseStatus: true}}
		err = openapi3filter.ValidateRequest(context.Background(), in)
		switch {
		case err != nil && !c.badRequest:
			t.Errorf("%s: the request breaks the document: %v", c.name, err)
		case err == nil && c.badRequest:
			t.Errorf("%s: the document admits a request the API refuses", c.name)
		}
		req.Body = io.NopCloser(strings.NewReader(c.body))
		rec := httptest.NewRecorder()
		e.h.ServeHTTP(rec, req)
		if rec.Code != c.want {
			t.Errorf("%s: %d, want %d: %s", c.name, rec.Code, c.want, rec.Body)
		}
		body := rec.Body.Bytes()
		out := &openapi3filter.ResponseValidationInput{RequestValidationInput: in, Status: rec.Code, Header: rec.Header(),
			Body: io.NopCloser(bytes.NewReader(body)), Options: in.Options}
		if err := openapi3filter.ValidateResponse(context.Background(), out); err != nil {
			t.Errorf("%s: the answer %d breaks the document: %v\n%s", c.name, rec.Code, err, body)
		}
		return body
	}
	for _, c := range calls {
		run(c)
	}

	// The calls that need the state the ones above made, or a failing PG
	// or database.
	listed := run(apiCall{name: "list", method: "GET", path: "/v1/members/mem1/payment-methods", token: platformToken, want: 200})
	var list struct {
		PaymentMethods []struct{ ID string } `json:"payment_methods"`
	}
	if err := json.Unmarshal(listed, &list); err != nil || len(list.PaymentMethods) != 2 {
		t.Fatalf("methods: %s %v", listed, err)
	}
	run(apiCall{name: "delete method", method: "DELETE", path: "/v1/members/mem1/payment-methods/" + list.PaymentMethods[0].ID, token: platformToken, want: 204})
	e.pg.FailNext(pgsim.OpLookup, pgsim.FaultUnavailable, 1)
	e.pg.FailNext(pgsim.OpBillURL, pgsim.FaultUnavailable, 1)
	run(apiCall{name: "charge while the PG fails", method: "GET", path: "/v1/charges/c3", token: m1Token, want: 200})
	run(apiCall{name: "bill url while the PG fails", method: "GET", path: "/v1/charges/c3/bill-url", token: m1Token, want: 502})
	ready = errors.New("database unreachable")
	run(apiCall{name: "not ready", method: "GET", path: "/readyz", want: 503})

	for path, item := range doc.Paths.Map() {
		for method := range item.Operations() {
			if !called[method+" "+path] {
				t.Errorf("%s %s is documented but not exercised here", method, path)
			}
		}
	}
}

// GET /openapi.json serves the checked-in document.
func TestOpenAPIIsServed(t *testing.T) {
	e := setup(t)
	rec, body := e.do("GET", "/openapi.json", "", "")
	if rec.Code != 200 || rec.Header().Get("Content-Type") != "application/json" || !bytes.Equal(rec.Body.Bytes(), api.OpenAPI) {
		t.Fatalf("%d %s", rec.Code, rec.Header())
	}
	if body["openapi"] != "3.1.0" {
		t.Fatalf("openapi = %v", body["openapi"])
	}
}

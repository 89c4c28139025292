package webhook_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/payflow/payflow/payflow"
	"github.com/payflow/payflow/webhook"
)

// headerVerifier trusts a request that carries the right token.
type headerVerifier struct{}

func (headerVerifier) Verify(h http.Header, _ []byte) (string, error) {
	if h.Get("x-token") != "good" {
		return "", errors.New("bad token")
	}
	return h.Get("webhook-id"), nil
}

type settler struct {
	got []payflow.Settlement
	err error
	out payflow.SettleOutcome
}

func (s *settler) Settle(_ context.Context, st payflow.Settlement) (payflow.SettleOutcome, error) {
	s.got = append(s.got, st)
	return s.out, s.err
}

func post(t *testing.T, h http.Handler, token, body string) *httptest.ResponseRecorder {
	t.Helper()
	mux := http.NewServeMux()
	mux.Handle("POST /webhooks/pg/{provider}", h)
	req := httptest.NewRequest("POST", "/webhooks/pg/sim", strings.NewReader(body))
	req.Header.Set("x-token", token)
	req.Header.Set("webhook-id", "wh-1")
	rec := httptest.NewRecorder()
	mux.ServeHTTP(rec, req)
	return rec
}

const good = `{"bill_id":"b1","status":"paid","amount":5000,"pg_tx_id":"tx","occurred_at":"2026-11-25T00:00:00Z"}`

func TestReceiverStatusCodes(t *testing.T) {
	cases := []struct {
		name, token, body string
		err               error
		want              int
	}{
		{"applied", "good", good, nil, 200},
		{"forged", "bad", good, nil, 401},
		{"unknown bill", "good", good, payflow.ErrNotFound, 404},
		{"amount mismatch", "good", good, payflow.ErrAmountMismatch, 422},
		{"not placed yet", "good", good, payflow.ErrNotPlacedYet, 409},
		{"database down", "good", good, errors.New("boom"), 500},
		{"bad status", "good", `{"bill_id":"b1","status":"maybe","amount":1}`, nil, 400},
		{"negative amount", "good", `{"bill_id":"b1","status":"paid","amount":-1}`, nil, 400},
		{"not json", "good", `nope`, nil, 400},
		{"too large", "good", `{"bill_id":"` + strings.Repeat("x", webhook.MaxBody) + `"}`, nil, 413},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := &settler{err: c.err, out: payflow.SettleApplied}
			rc := &webhook.Receiver{Verifiers: map[string]webhook.Verifier{"sim": headerVerifier{}}, Settler: s}
			rec := post(t, rc, c.token, c.body)
			if rec.Code != c.want {
				t.Fatalf("status = %d, want %d: %s", rec.Code, c.want, rec.Body)
			}
			if c.want == 401 && len(s.got) != 0 {
				t.Fatal("a forged callback reached the settler")
			}
			if c.want >= 400 && !strings.Contains(rec.Body.String(), `"error"`) {
				t.Fatalf("error body = %s", rec.Body)
			}
		})
	}
}

func TestReceiverPassesTheWebhookIDAsIdempotencyKey(t *testing.T) {
	s := &settler{out: payflow.SettleDuplicate}
	rc := &webhook.Receiver{Verifiers: map[string]webhook.Verifier{"sim": headerVerifier{}}, Settler: s}
	rec := post(t, rc, "good", good)
	if rec.Code != 200 || len(s.got) != 1 || s.got[0].WebhookID != "wh-1" || s.got[0].Provider != "sim" || s.got[0].Amount != 5000 {
		t.Fatalf("code %d, settled %+v", rec.Code, s.got)
	}
}

// A callback means one thing to every reader: a key twice, or in another
// case than the field's, is refused (encoding/json alone would take the
// last, or match case-insensitively). Fields a PG adds are ignored.
func TestParseCallbackIsStrict(t *testing.T) {
	for _, body := range []string{
		`{"bill_id":"b1","status":"paid","amount":700,"amount":5000}`,
		`{"bill_id":"b1","status":"paid","amount":700,"AMOUNT":5000}`,
		`{"bill_id":"b1","Status":"paid","amount":5000}`,
		`{"bill_id":"b1","status":"failed","status":"paid","amount":5000}`,
		`{"BILL_ID":"b1","status":"paid","amount":5000}`,
		`{"bill_id":"b1","status":"paid","amount":5000,"extra":{"a":1,"a":2}}`,
	} {
		_, _, err := webhook.ParseCallback([]byte(body))
		if err == nil {
			t.Errorf("accepted %s", body)
			continue
		}
		for _, value := range []string{"700", "5000", "failed", "b1"} {
			if strings.Contains(err.Error(), value) {
				t.Errorf("%s: the error repeats a value: %v", body, err)
			}
		}
	}
	cb, status, err := webhook.ParseCallback([]byte(`{"bill_id":"b1","status":"paid","amount":5000,"pg_tx_id":"tx","extra":{"x":[1]},"occurred_at":"2026-11-25T00:00:00Z"}`))
	if err != nil || cb.BillID != "b1" || status != "paid" || cb.Amount != 5000 || cb.PGTxID != "tx" {
		t.Fatalf("%+v %s %v", cb, status, err)
	}
}

func FuzzParseCallback(f *testing.F) {
	f.Add([]byte(good))
	f.Add([]byte(`{"bill_id":"","status":"paid","amount":1e30}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, body []byte) {
		cb, status, err := webhook.ParseCallback(body)
		if err == nil && (cb.BillID == "" || status == "" || cb.Amount <= 0) {
			t.Fatalf("accepted an invalid callback: %+v", cb)
		}
	})
}

// Only configured providers are served. Any other path is 404 in the
// contract's error shape and is reported under one fixed provider label,
// so unauthenticated requests cannot grow the metrics without bound.
func TestUnknownProvidersAreNotMetricLabels(t *testing.T) {
	reported := map[[2]string]int{}
	s := &settler{out: payflow.SettleApplied}
	rc := &webhook.Receiver{Verifiers: map[string]webhook.Verifier{"sim": headerVerifier{}}, Settler: s,
		Observer: callbacks(func(provider, result string) { reported[[2]string{provider, result}]++ })}
	mux := http.NewServeMux()
	mux.Handle("POST /webhooks/pg/{provider}", rc)
	providers := []string{"SIM", "sim%20", "Sim", "payssam", "%3Cscript%3E", strings.Repeat("p", 300), "%ED%95%9C"}
	for i := range 200 {
		providers = append(providers, fmt.Sprintf("random-%d", i))
	}
	for _, p := range providers {
		req := httptest.NewRequest("POST", "/webhooks/pg/"+p, strings.NewReader(good))
		req.Header.Set("x-token", "good")
		req.Header.Set("webhook-id", "wh-1")
		rec := httptest.NewRecorder()
		mux.ServeHTTP(rec, req)
		var body struct {
			Error struct{ Code, Message string }
		}
		if rec.Code != http.StatusNotFound || json.Unmarshal(rec.Body.Bytes(), &body) != nil || body.Error.Code != "not_found" || body.Error.Message == "" {
			t.Fatalf("provider %q: %d %s", p, rec.Code, rec.Body)
		}
	}
	if len(s.got) != 0 {
		t.Fatalf("an unknown provider's callback was settled: %+v", s.got)
	}
	if len(reported) != 1 || reported[[2]string{"unknown", "unknown_provider"}] != len(providers) {
		t.Fatalf("reported %d label sets, want one (unknown, unknown_provider)", len(reported))
	}
	if rec := post(t, rc, "good", good); rec.Code != 200 || reported[[2]string{"sim", "applied"}] != 1 {
		t.Fatalf("sim: %d, reported %v", rec.Code, reported)
	}
}

type failingBody struct{}

func (failingBody) Read([]byte) (int, error) { return 0, errors.New("i/o timeout") }

// A body that cannot be read (the client stalled past the server's read
// timeout, the connection broke) is not "too large".
func TestUnreadableBodyIsNotTooLarge(t *testing.T) {
	var results []string
	rc := &webhook.Receiver{Verifiers: map[string]webhook.Verifier{"sim": headerVerifier{}}, Settler: &settler{},
		Observer: callbacks(func(_, result string) { results = append(results, result) })}
	mux := http.NewServeMux()
	mux.Handle("POST /webhooks/pg/{provider}", rc)
	req := httptest.NewRequest("POST", "/webhooks/pg/sim", io.MultiReader(strings.NewReader(`{"bill_id":`), failingBody{}))
	rec := httptest.NewRecorder()
	mux.ServeHTTP(rec, req)
	if rec.Code != http.StatusBadRequest || !strings.Contains(rec.Body.String(), `"invalid_request"`) ||
		len(results) != 1 || results[0] != "unreadable" {
		t.Fatalf("%d %s, results %v", rec.Code, rec.Body, results)
	}
}

// A bill id follows payflow's one id rule (payflow.ValidID): one that breaks
// it is refused as invalid before any lookup, and the error does not quote it.
func TestParseCallbackAppliesTheIDRule(t *testing.T) {
	for _, id := range []string{"", "b\u00a01", "b 1", "b\x7f", "주문", strings.Repeat("b", payflow.MaxIDLen+1)} {
		body, _ := json.Marshal(map[string]any{"bill_id": id, "status": "paid", "amount": 5000})
		_, _, err := webhook.ParseCallback(body)
		if err == nil {
			t.Errorf("accepted bill_id %q", id)
			continue
		}
		if !strings.HasPrefix(err.Error(), "bill_id ") || (id != "" && strings.Contains(err.Error(), id)) {
			t.Errorf("bill_id %q: error %q", id, err)
		}
	}
	if _, _, err := webhook.ParseCallback([]byte(fmt.Sprintf(`{"bill_id":%q,"status":"paid","amount":5000}`, strings.Repeat("b", payflow.MaxIDLen)))); err != nil {
		t.Errorf("a bill id of MaxIDLen bytes: %v", err)
	}
}

// callbacks is an observer that hears callbacks' results.
type callbacks func(provider, result string)

func (f callbacks) Callback(provider, result string) { f(provider, result) }

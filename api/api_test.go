package api_test

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

	"github.com/payflow/payflow/api"
	"github.com/payflow/payflow/internal/testdb"
	"github.com/payflow/payflow/pgclient/pgsim"
	"github.com/payflow/payflow/store"
	"github.com/payflow/payflow/vault"
)

const (
	platformToken = "platform-secret-token"
	m1Token       = "merchant-one-token"
	m2Token       = "merchant-two-token"
)

// lockedBuffer collects log output; handlers may log from any goroutine.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

type env struct {
	t     *testing.T
	h     http.Handler
	st    *store.Store
	vault *vault.Vault
	// pg is the PG the API asks, through its in-process client; its
	// FailNext and Calls stand in for a failing PG and count what the API
	// asked.
	pg   *pgsim.Sim
	logs *lockedBuffer
	// bodies holds every answer, to check that no secret ever leaves.
	bodies strings.Builder
}

func setup(t *testing.T, edit ...func(*api.Config)) *env {
	t.Helper()
	return setupWithPG(t, pgsim.Config{}, edit...)
}

// setupWithPG is setup on a PG configured as given. Its bills settle only
// when a test says so, and its pay URLs are on https://pay.example.
func setupWithPG(t *testing.T, pgcfg pgsim.Config, edit ...func(*api.Config)) *env {
	t.Helper()
	st := testdb.New(t)
	v, err := vault.New(vault.GenerateKey())
	if err != nil {
		t.Fatal(err)
	}
	pgcfg.SettleDelay, pgcfg.PublicURL = -1, "https://pay.example"
	pgcfg.TimeoutHold = 10 * time.Second // bounded, so that a caller without a deadline fails the test instead of hanging it
	pgcfg.Logger = slog.New(slog.DiscardHandler)
	pg, err := pgsim.New(pgcfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pg.Close)
	e := &env{t: t, st: st, vault: v, pg: pg, logs: &lockedBuffer{}}
	cfg := api.Config{Store: st, Vault: v, PG: pg.Client(), PlatformToken: platformToken,
		MerchantTokens: map[string]string{"m1": m1Token, "m2": m2Token},
		Logger:         slog.New(slog.NewJSONHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))}
	for _, f := range edit {
		f(&cfg)
	}
	e.h = api.New(cfg)
	return e
}

type call struct {
	method, path, token, body string
	contentType               string // defaults to application/json when there is a body; "-" for none
	header                    http.Header
}

func (e *env) call(c call) (*httptest.ResponseRecorder, map[string]any) {
	e.t.Helper()
	req := httptest.NewRequest(c.method, c.path, strings.NewReader(c.body))
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	if c.contentType == "-" {
		req.Header.Del("Content-Type")
	} else if c.contentType != "" {
		req.Header.Set("Content-Type", c.contentType)
	} else if c.body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range c.header {
		req.Header[k] = v
	}
	rec := httptest.NewRecorder()
	e.h.ServeHTTP(rec, req)
	e.bodies.WriteString(rec.Body.String())
	var out map[string]any
	if rec.Body.Len() > 0 {
		if ct := rec.Header().Get("Content-Type"); ct == "application/json" {
			if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil {
				e.t.Fatalf("%s %s: answer is not JSON: %v: %s", c.method, c.path, err, rec.Body)
			}
		}
	}
	return rec, out
}

func (e *env) do(method, path, token, body string) (*httptest.ResponseRecorder, map[string]any) {
	e.t.Helper()
	return e.call(call{method: method, path: path, token: token, body: body})
}

// errCode returns the error code of an error answer, failing the test when
// the answer does not have the error shape.
func errCode(t *testing.T, rec *httptest.ResponseRecorder, body map[string]any) string {
	t.Helper()
	e, ok := body["error"].(map[string]any)
	if !ok || len(body) != 1 {
		t.Fatalf("answer %d is not {\"error\":{...}}: %s", rec.Code, rec.Body)
	}
	code, _ := e["code"].(string)
	if msg, _ := e["message"].(string); code == "" || msg == "" {
		t.Fatalf("error without code or message: %s", rec.Body)
	}
	return code
}

// logLines parses the JSON log output.
func (e *env) logLines() []map[string]any {
	e.t.Helper()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(e.logs.String()), "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			e.t.Fatalf("log line is not JSON: %s", line)
		}
		out = append(out, m)
	}
	return out
}

func TestHealthz(t *testing.T) {
	e := setup(t, func(c *api.Config) {
		c.Ready = func(context.Context) error { return errors.New("kafka unreachable") }
	})
	// Liveness does not depend on readiness.
	rec, body := e.do("GET", "/healthz", "", "")
	if rec.Code != 200 || body["status"] != "ok" || len(body) != 1 {
		t.Fatalf("healthz: %d %s", rec.Code, rec.Body)
	}
}

func TestReadyz(t *testing.T) {
	var failing error
	e := setup(t, func(c *api.Config) {
		c.Ready = func(ctx context.Context) error {
			if _, ok := ctx.Deadline(); !ok {
				return errors.New("the readiness check has no deadline")
			}
			return failing
		}
	})
	if rec, body := e.do("GET", "/readyz", "", ""); rec.Code != 200 || body["status"] != "ready" {
		t.Fatalf("ready: %d %s", rec.Code, rec.Body)
	}
	failing = errors.New("database unreachable")
	rec, body := e.do("GET", "/readyz", "", "")
	if rec.Code != 503 || errCode(t, rec, body) != "not_ready" || !strings.Contains(rec.Body.String(), "database unreachable") {
		t.Fatalf("not ready: %d %s", rec.Code, rec.Body)
	}
}

func TestMetricsAndWebhooksAreMounted(t *testing.T) {
	var provider string
	e := setup(t, func(c *api.Config) {
		c.Metrics = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "payflow_up 1\n") })
		c.Webhooks = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			provider = r.PathValue("provider")
			w.WriteHeader(http.StatusAccepted)
		})
	})
	if rec, _ := e.do("GET", "/metrics", "", ""); rec.Code != 200 || rec.Body.String() != "payflow_up 1\n" {
		t.Fatalf("metrics: %d %q", rec.Code, rec.Body)
	}
	// Webhooks carry their own signatures: no bearer token needed.
	if rec, _ := e.do("POST", "/webhooks/pg/sim", "", `{}`); rec.Code != 202 || provider != "sim" {
		t.Fatalf("webhook: %d, provider %q", rec.Code, provider)
	}
	rec, body := e.do("GET", "/webhooks/pg/sim", "", "")
	if rec.Code != 405 || errCode(t, rec, body) != "method_not_allowed" || rec.Header().Get("Allow") != "POST" {
		t.Fatalf("GET webhook: %d allow %q %s", rec.Code, rec.Header().Get("Allow"), rec.Body)
	}
}

func TestOptionalHandlersLeftOut(t *testing.T) {
	e := setup(t, func(c *api.Config) { c.Ready = nil })
	for _, c := range [][2]string{{"GET", "/metrics"}, {"POST", "/webhooks/pg/sim"}} {
		rec, body := e.do(c[0], c[1], "", "")
		if rec.Code != 404 || errCode(t, rec, body) != "not_found" {
			t.Fatalf("%v without a handler: %d %s", c, rec.Code, rec.Body)
		}
	}
	if rec, _ := e.do("GET", "/readyz", "", ""); rec.Code != 200 {
		t.Fatalf("readyz without checks: %d", rec.Code)
	}
}

func TestUnknownRoutesAndMethods(t *testing.T) {
	e := setup(t)
	rec, body := e.do("GET", "/v1/nowhere", platformToken, "")
	if rec.Code != 404 || errCode(t, rec, body) != "not_found" {
		t.Fatalf("unknown path: %d %s", rec.Code, rec.Body)
	}
	rec, body = e.do("PUT", "/v1/charges/c1", m1Token, `{}`)
	if rec.Code != 405 || errCode(t, rec, body) != "method_not_allowed" || !strings.Contains(rec.Header().Get("Allow"), "GET") {
		t.Fatalf("PUT charge: %d allow %q %s", rec.Code, rec.Header().Get("Allow"), rec.Body)
	}
	rec, body = e.do("PATCH", "/v1/members/mem1/payment-methods", platformToken, `{}`)
	if rec.Code != 405 || errCode(t, rec, body) != "method_not_allowed" {
		t.Fatalf("PATCH methods: %d %s", rec.Code, rec.Body)
	}
}

func TestPanicsAnswer500AndAreLogged(t *testing.T) {
	e := setup(t, func(c *api.Config) {
		c.Metrics = http.HandlerFunc(func(http.ResponseWriter, *http.Request) { panic("boom") })
	})
	rec, body := e.do("GET", "/metrics", "", "")
	if rec.Code != 500 || errCode(t, rec, body) != "internal" {
		t.Fatalf("panic: %d %s", rec.Code, rec.Body)
	}
	if !strings.Contains(e.logs.String(), `"panic":"boom"`) {
		t.Fatalf("panic not logged: %s", e.logs)
	}
	// The server still answers.
	if rec, _ := e.do("GET", "/healthz", "", ""); rec.Code != 200 {
		t.Fatal("no answer after a panic")
	}
}

func TestAccessLog(t *testing.T) {
	e := setup(t)
	seedKakao(t, e, "m1", "c-secret-ish-id", "+821099998888")
	e.do("GET", "/v1/charges/c-secret-ish-id", m1Token, "")
	e.do("GET", "/v1/charges/c1", "wrong-token", "")
	var access []map[string]any
	for _, l := range e.logLines() {
		if l["msg"] == "http" {
			access = append(access, l)
		}
	}
	if len(access) != 2 {
		t.Fatalf("%d access log lines, want 2: %s", len(access), e.logs)
	}
	ok, denied := access[0], access[1]
	if ok["method"] != "GET" || ok["route"] != "GET /v1/charges/{charge_id}" || ok["status"] != float64(200) ||
		ok["merchant_id"] != "m1" || ok["duration_ms"] == nil || ok["request_id"] == "" {
		t.Fatalf("access log: %v", ok)
	}
	if denied["status"] != float64(401) || denied["merchant_id"] != nil {
		t.Fatalf("denied access log: %v", denied)
	}
	logs := e.logs.String()
	for _, secret := range []string{"c-secret-ish-id", m1Token, "wrong-token", "99998888", "1099998888"} {
		if strings.Contains(logs, secret) {
			t.Fatalf("the log holds %q: %s", secret, logs)
		}
	}
}

// A client's request id is echoed and logged only if it is short and made
// of characters that are safe in a header, a log line and a web page;
// anything else is replaced by a fresh UUID.
func TestRequestIDs(t *testing.T) {
	e := setup(t)
	for _, good := range []string{"trace-123", "a", "0af7651916cd43dd8448eb211c80319c", "svc.checkout:req_42-7",
		"f47ac10b-58cc-4372-a567-0e02b2c3d479", strings.Repeat("x", 64)} {
		rec, _ := e.call(call{method: "GET", path: "/healthz", header: http.Header{"X-Request-Id": {good}}})
		if rec.Header().Get("X-Request-ID") != good || !strings.Contains(e.logs.String(), `"request_id":"`+good+`"`) {
			t.Fatalf("%q: header %q, logs %s", good, rec.Header().Get("X-Request-ID"), e.logs)
		}
	}
	for _, bad := range []string{"", "has spaces", strings.Repeat("x", 65), strings.Repeat("x", 200), "bad\x01id",
		"<script>alert(1)</script>", `"quoted"`, "a/b", "a\\b", "id;drop", "트레이스", "emoji-\U0001F600", "a%0d%0ab",
		"line\nbreak", "{{.}}", "a,b", "a=b"} {
		rec, _ := e.call(call{method: "GET", path: "/healthz", header: http.Header{"X-Request-Id": {bad}}})
		if got := rec.Header().Get("X-Request-ID"); got == bad || len(got) != 36 {
			t.Fatalf("request id %q answered as %q, want a fresh UUID", bad, got)
		}
	}
	for _, leaked := range []string{"<script>", "quoted", "트레이스", "drop"} {
		if strings.Contains(e.logs.String(), leaked) {
			t.Fatalf("the log holds the client's request id %q: %s", leaked, e.logs)
		}
	}
}

func TestParseMerchantTokens(t *testing.T) {
	got, err := api.ParseMerchantTokens(" m1:tok1 , m2:tok:with:colons,, ")
	if err != nil || len(got) != 2 || got["m1"] != "tok1" || got["m2"] != "tok:with:colons" {
		t.Fatalf("parse: %v %v", got, err)
	}
	if got, err := api.ParseMerchantTokens(""); err != nil || len(got) != 0 {
		t.Fatalf("empty: %v %v", got, err)
	}
	for _, bad := range []string{"m1", "m1:", ":secret-tok", "m1:secret-a,m1:secret-b", "m1:secret-tok,m2:secret-tok",
		"m1:secret tok", "m 1:secret-tok"} {
		_, err := api.ParseMerchantTokens(bad)
		if err == nil {
			t.Errorf("%q accepted", bad)
			continue
		}
		if strings.Contains(err.Error(), "secret") {
			t.Errorf("%q: the error repeats a token: %v", bad, err)
		}
	}
}

// A JSON body is understood whatever Content-Type curl sent with it.
func TestJSONBodyWithoutJSONContentType(t *testing.T) {
	e := setup(t)
	for _, ct := range []string{"application/x-www-form-urlencoded", "", "text/plain"} {
		req := httptest.NewRequest("POST", "/v1/members/m-ct/payment-methods", strings.NewReader(`{"billing_key":"bk_plain_curl_1234","label":"KB"}`))
		req.Header.Set("Authorization", "Bearer "+platformToken)
		if ct != "" {
			req.Header.Set("Content-Type", ct)
		}
		rec := httptest.NewRecorder()
		e.h.ServeHTTP(rec, req)
		if rec.Code != http.StatusCreated {
			t.Fatalf("Content-Type %q: %d %s", ct, rec.Code, rec.Body)
		}
	}
}

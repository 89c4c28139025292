package api_test

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/payflow/payflow/api"
)

const methodsPath = "/v1/members/mem1/payment-methods"

func TestAuth(t *testing.T) {
	e := setup(t)
	seedKakao(t, e, "m1", "c1", "+821012345678")
	cases := []struct {
		name, method, path string
		auth               string // the whole Authorization header
	}{
		{"no header", "GET", methodsPath, ""},
		{"not bearer", "GET", methodsPath, "Basic " + platformToken},
		{"bearer without token", "GET", methodsPath, "Bearer "},
		{"wrong token", "GET", methodsPath, "Bearer nope"},
		{"platform token with a suffix", "GET", methodsPath, "Bearer " + platformToken + "x"},
		{"platform token's prefix", "GET", methodsPath, "Bearer " + platformToken[:len(platformToken)-1]},
		{"a merchant token is not the platform's", "GET", methodsPath, "Bearer " + m1Token},
		{"a merchant token cannot add methods", "POST", methodsPath, "Bearer " + m1Token},
		{"a merchant token cannot delete methods", "DELETE", methodsPath + "/x", "Bearer " + m1Token},
		{"the platform token is not a merchant's", "GET", "/v1/charges/c1", "Bearer " + platformToken},
		{"no merchant token", "GET", "/v1/charges/c1", ""},
		{"unknown merchant token", "GET", "/v1/charges/c1", "Bearer merchant-three-token"},
		{"tokens are case-sensitive", "GET", "/v1/charges/c1", "Bearer " + strings.ToUpper(m1Token)},
		{"bill url without a token", "GET", "/v1/charges/c1/bill-url", ""},
	}
	for _, c := range cases {
		req := call{method: c.method, path: c.path, header: http.Header{}}
		if c.auth != "" {
			req.header.Set("Authorization", c.auth)
		}
		if c.method == "POST" {
			req.body = `{"billing_key":"bk_live_0000111122223333"}`
		}
		rec, body := e.call(req)
		if rec.Code != 401 || errCode(t, rec, body) != "unauthorized" || !strings.HasPrefix(rec.Header().Get("WWW-Authenticate"), "Bearer") {
			t.Errorf("%s: %d %s", c.name, rec.Code, rec.Body)
		}
	}
	// Unknown and missing tokens get the same answer: no hint of which
	// merchants exist.
	a, _ := e.do("GET", "/v1/charges/c1", "merchant-three-token", "")
	b, _ := e.do("GET", "/v1/charges/c1", "", "")
	if a.Body.String() != b.Body.String() {
		t.Fatalf("answers differ: %s vs %s", a.Body, b.Body)
	}
	// The scheme is case-insensitive (RFC 9110); the right tokens work.
	rec, _ := e.call(call{method: "GET", path: methodsPath, header: http.Header{"Authorization": {"bearer " + platformToken}}})
	if rec.Code != 200 {
		t.Fatalf("lower-case scheme: %d %s", rec.Code, rec.Body)
	}
	if rec, _ := e.do("GET", "/v1/charges/c1", m1Token, ""); rec.Code != 200 {
		t.Fatalf("merchant token: %d %s", rec.Code, rec.Body)
	}
	if logs := e.logs.String(); strings.Contains(logs, platformToken) || strings.Contains(logs, m1Token) {
		t.Fatal("a token was logged")
	}
}

func TestMisconfiguredTokensAreRefused(t *testing.T) {
	e := setup(t, func(c *api.Config) {
		c.PlatformToken = ""
		c.MerchantTokens = map[string]string{"m1": "shared", "m2": "shared", "m3": ""}
	})
	seedKakao(t, e, "m1", "c1", "+821012345678")
	for _, c := range []struct{ path, token string }{
		{methodsPath, ""},            // no platform token: nothing opens the endpoint
		{"/v1/charges/c1", "shared"}, // a token of two merchants belongs to neither
	} {
		rec, _ := e.call(call{method: "GET", path: c.path, header: http.Header{"Authorization": {"Bearer " + c.token}}})
		if rec.Code != 401 {
			t.Errorf("%s with %q: %d, want 401", c.path, c.token, rec.Code)
		}
	}
	if logs := e.logs.String(); !strings.Contains(logs, "share a token") || strings.Contains(logs, `"shared"`) {
		t.Fatalf("the shared token is not reported, or is logged: %s", logs)
	}
}

func TestPaymentMethodLifecycle(t *testing.T) {
	e := setup(t)
	// An empty list is a list.
	rec, list := e.do("GET", methodsPath, platformToken, "")
	if rec.Code != 200 || rec.Body.String() != "{\"payment_methods\":[]}\n" {
		t.Fatalf("empty list: %d %s", rec.Code, rec.Body)
	}

	rec, first := e.do("POST", methodsPath, platformToken, `{"billing_key":"bk_live_secret_9876","label":"Shinhan"}`)
	if rec.Code != 201 || first["label"] != "Shinhan ****9876" || first["default"] != true || first["status"] != "active" ||
		first["id"] == "" || first["created_at"] == nil {
		t.Fatalf("add the first (default even if not asked): %d %s", rec.Code, rec.Body)
	}
	rec, second := e.do("POST", methodsPath, platformToken, `{"billing_key":"bk_live_other_1111","label":"  KB국민 ","default":true}`)
	if rec.Code != 201 || second["default"] != true || second["label"] != "KB국민 ****1111" {
		t.Fatalf("add a new default: %d %s", rec.Code, rec.Body)
	}
	rec, third := e.do("POST", methodsPath, platformToken, `{"billing_key":"bk_live_third_2222","default":false}`)
	if rec.Code != 201 || third["default"] != false || third["label"] != "Card ****2222" {
		t.Fatalf("add a third: %d %s", rec.Code, rec.Body)
	}

	rec, list = e.do("GET", methodsPath, platformToken, "")
	ms, _ := list["payment_methods"].([]any)
	if rec.Code != 200 || len(ms) != 3 {
		t.Fatalf("list: %d %s", rec.Code, rec.Body)
	}
	order := []string{}
	for _, m := range ms {
		mm := m.(map[string]any)
		order = append(order, mm["id"].(string))
		if len(mm) != 5 {
			t.Fatalf("a listed method has fields beyond id, label, default, status, created_at: %v", mm)
		}
	}
	if want := []string{second["id"].(string), third["id"].(string), first["id"].(string)}; strings.Join(order, ",") != strings.Join(want, ",") {
		t.Fatalf("order %v, want the default first, then the newest", order)
	}
	// Another member sees none of them.
	if _, other := e.do("GET", "/v1/members/mem2/payment-methods", platformToken, ""); len(other["payment_methods"].([]any)) != 0 {
		t.Fatalf("another member's list: %v", other)
	}

	rec, _ = e.do("DELETE", methodsPath+"/"+second["id"].(string), platformToken, "")
	if rec.Code != 204 || rec.Body.Len() != 0 {
		t.Fatalf("delete: %d %s", rec.Code, rec.Body)
	}
	// The most recent remaining method is promoted to default.
	if m, _ := e.st.DefaultMethod(context.Background(), "mem1"); m == nil || m.ID != third["id"] {
		t.Fatalf("default after deleting it = %+v, want the third", m)
	}
	for name, path := range map[string]string{
		"deleted twice":    methodsPath + "/" + second["id"].(string),
		"another member's": "/v1/members/mem2/payment-methods/" + first["id"].(string),
		"unknown":          methodsPath + "/0195f3c4-7b1e-7000-8000-000000000000",
		"not a uuid":       methodsPath + "/not-a-uuid",
	} {
		rec, body := e.do("DELETE", path, platformToken, "")
		if rec.Code != 404 || errCode(t, rec, body) != "not_found" {
			t.Errorf("%s: %d %s, want 404", name, rec.Code, rec.Body)
		}
	}
	if _, list = e.do("GET", methodsPath, platformToken, ""); len(list["payment_methods"].([]any)) != 2 {
		t.Fatalf("after deleting one: %v", list)
	}
}

func TestBillingKeysNeverLeave(t *testing.T) {
	e := setup(t)
	const key = "bk_live_TOPSECRET_42424242"
	rec, m := e.do("POST", methodsPath, platformToken, `{"billing_key":"`+key+`","label":"Hyundai"}`)
	if rec.Code != 201 {
		t.Fatalf("add: %d %s", rec.Code, rec.Body)
	}
	e.do("GET", methodsPath, platformToken, "")
	// Bad requests that carry the key must not echo it either.
	e.do("POST", methodsPath, platformToken, `{"billing_key":"`+key+`","extra":1}`)
	e.do("POST", methodsPath, platformToken, `{"billing_key":"`+key+`","default":"yes"}`)
	e.do("POST", methodsPath, platformToken, `{"billing_key":"`+key+`"} trailing`)
	e.do("POST", methodsPath, platformToken, `{"billing_key":"`+key+` x"}`)
	e.do("POST", methodsPath, platformToken, `{"billing_key":"`+key)
	e.do("DELETE", methodsPath+"/"+m["id"].(string), platformToken, "")

	for where, text := range map[string]string{"answers": e.bodies.String(), "logs": e.logs.String()} {
		if strings.Contains(text, "TOPSECRET") {
			t.Fatalf("the billing key is in the %s: %s", where, text)
		}
	}

	// At rest it is sealed, bound to its row.
	e2 := setup(t)
	_, m2 := e2.do("POST", methodsPath, platformToken, `{"billing_key":"`+key+`","label":"Hyundai"}`)
	var sealed []byte
	if err := e2.st.Pool.QueryRow(context.Background(), `SELECT billing_key_enc FROM payment_methods WHERE id = $1`, m2["id"]).Scan(&sealed); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(sealed), "TOPSECRET") {
		t.Fatal("the billing key is stored in the clear")
	}
	if pt, err := e2.vault.Open(sealed, []byte(m2["id"].(string))); err != nil || string(pt) != key {
		t.Fatalf("the stored value does not open to the key with its method id: %q %v", pt, err)
	}
	if _, err := e2.vault.Open(sealed, []byte("another-id")); err == nil {
		t.Fatal("the stored value is not bound to its method id")
	}
}

func TestPaymentMethodBadRequests(t *testing.T) {
	e := setup(t)
	big := `{"billing_key":"` + strings.Repeat("x", api.MaxBody) + `"}`
	cases := []struct {
		name     string
		c        call
		status   int
		code     string
		inMsg    string
		notInMsg string
	}{
		{"not JSON", call{body: `not json`}, 400, "invalid_request", "not valid JSON", ""},
		{"empty body", call{contentType: "application/json"}, 400, "invalid_request", "empty", ""},
		{"truncated", call{body: `{"billing_key":"bk_123456789"`}, 400, "invalid_request", "", "bk_123456789"},
		{"unknown field", call{body: `{"billing_key":"bk_123456789","extra":1}`}, 400, "invalid_request", `"extra"`, "bk_123456789"},
		{"two objects", call{body: `{"billing_key":"bk_123456789"}{}`}, 400, "invalid_request", "exactly one", ""},
		{"an array", call{body: `["bk_123456789"]`}, 400, "invalid_request", "", "bk_123456789"},
		{"wrong type", call{body: `{"billing_key":"bk_123456789","default":"yes"}`}, 400, "invalid_request", "default", "yes"},
		{"key not a string", call{body: `{"billing_key":123456789}`}, 400, "invalid_request", "billing_key", "123456789"},
		{"no billing key", call{body: `{"label":"Shinhan"}`}, 400, "invalid_request", "billing_key", ""},
		{"key with spaces", call{body: `{"billing_key":"bk 123456789"}`}, 400, "invalid_request", "billing_key", "bk 123456789"},
		{"key too long", call{body: `{"billing_key":"` + strings.Repeat("k", 257) + `"}`}, 400, "invalid_request", "billing_key", ""},
		{"label too long", call{body: `{"billing_key":"bk_123456789","label":"` + strings.Repeat("가", 65) + `"}`}, 400, "invalid_request", "label", ""},
		{"label with a newline", call{body: `{"billing_key":"bk_123456789","label":"a\nb"}`}, 400, "invalid_request", "label", ""},
		// Found by review: encoding/json reads these as U+FFFD, and the key
		// was stored altered.
		{"key not UTF-8", call{body: "{\"billing_key\":\"bk_live_\xff12345678\"}"}, 400, "invalid_request", "UTF-8", "bk_live"},
		{"label not UTF-8", call{body: "{\"billing_key\":\"bk_123456789\",\"label\":\"Shin\xffhan\"}"}, 400, "invalid_request", "UTF-8", "Shin"},
		{"key with half a surrogate pair", call{body: `{"billing_key":"bk_live_\ud80012345678"}`}, 400, "invalid_request", "UTF-8", "bk_live"},
		{"duplicate key", call{body: `{"billing_key":"bk_123456789","billing_key":"bk_987654321"}`}, 400, "invalid_request", "billing_key", "bk_"},
		{"duplicate key, last valid", call{body: `{"billing_key":"bk 1","billing_key":"bk_987654321"}`}, 400, "invalid_request", "billing_key", "bk_"},
		{"key in another case", call{body: `{"BILLING_KEY":"bk_123456789"}`}, 400, "invalid_request", "billing_key", "bk_"},
		{"case variant of a set key", call{body: `{"billing_key":"bk_123456789","Billing_Key":"bk_987654321"}`}, 400, "invalid_request", "billing_key", "bk_"},
		{"case variant, Kelvin sign", call{body: `{"billing_\u212Aey":"bk_123456789"}`}, 400, "invalid_request", "billing_key", "bk_"},
		{"duplicate label", call{body: `{"billing_key":"bk_123456789","label":"KB","label":"Shinhan"}`}, 400, "invalid_request", "label", "Shinhan"},
		{"escaped duplicate", call{body: `{"billing_key":"bk_123456789","\u0064efault":true,"default":false}`}, 400, "invalid_request", "default", ""},
		{"body too large", call{body: big}, 413, "body_too_large", "", ""},
		{"form body", call{body: `billing_key=x`, contentType: "application/x-www-form-urlencoded"}, 400, "invalid_request", "", ""},
		{"bad member id", call{path: "/v1/members/a%20b/payment-methods", body: `{"billing_key":"bk_123456789"}`}, 400, "invalid_request", "member_id", ""},
		{"member id with a no-break space", call{path: "/v1/members/a%C2%A0b/payment-methods", body: `{"billing_key":"bk_123456789"}`}, 400, "invalid_request", "member_id", ""},
		{"member id not ASCII", call{path: "/v1/members/%ED%9A%8C%EC%9B%90/payment-methods", body: `{"billing_key":"bk_123456789"}`}, 400, "invalid_request", "member_id", ""},
		{"member id too long", call{path: "/v1/members/" + strings.Repeat("m", 129) + "/payment-methods", body: `{"billing_key":"bk_123456789"}`}, 400, "invalid_request", "member_id", ""},
	}
	for _, c := range cases {
		c.c.method, c.c.token = "POST", platformToken
		if c.c.path == "" {
			c.c.path = methodsPath
		}
		rec, body := e.call(c.c)
		if rec.Code != c.status {
			t.Errorf("%s: %d, want %d: %s", c.name, rec.Code, c.status, rec.Body)
			continue
		}
		if got := errCode(t, rec, body); got != c.code {
			t.Errorf("%s: code %s, want %s", c.name, got, c.code)
		}
		msg := body["error"].(map[string]any)["message"].(string)
		if c.inMsg != "" && !strings.Contains(msg, c.inMsg) {
			t.Errorf("%s: message %q does not mention %q", c.name, msg, c.inMsg)
		}
		if c.notInMsg != "" && strings.Contains(msg, c.notInMsg) {
			t.Errorf("%s: message %q repeats the value %q", c.name, msg, c.notInMsg)
		}
	}
	// Nothing was stored by any of them.
	if _, list := e.do("GET", methodsPath, platformToken, ""); len(list["payment_methods"].([]any)) != 0 {
		t.Fatalf("a bad request stored a method: %v", list)
	}
	// Content-Type parameters are fine.
	rec, _ := e.call(call{method: "POST", path: methodsPath, token: platformToken, body: `{"billing_key":"bk_123456789"}`,
		contentType: "application/json; charset=utf-8"})
	if rec.Code != 201 {
		t.Fatalf("charset parameter: %d %s", rec.Code, rec.Body)
	}
}

func TestMaskedLabel(t *testing.T) {
	for _, c := range []struct{ label, key, want string }{
		{"Shinhan", "bk_live_1234", "Shinhan ****1234"},
		{" Shinhan ", "bk_live_1234", "Shinhan ****1234"},
		{"", "bk_live_1234", "Card ****1234"},
		{"신한카드", "빌링키빌링키5678", "신한카드 ****5678"},
		{"Short", "1234567", "Short ****"}, // would show more than half
		{"Short", "12345678", "Short ****5678"},
	} {
		if got := api.MaskedLabel(c.label, c.key); got != c.want {
			t.Errorf("MaskedLabel(%q, %q) = %q, want %q", c.label, c.key, got, c.want)
		}
	}
}

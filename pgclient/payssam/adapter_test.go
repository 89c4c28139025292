package payssam_test

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

	"github.com/google/uuid"

	"github.com/payflow/payflow/pgclient"
	"github.com/payflow/payflow/pgclient/payssam"
	"github.com/payflow/payflow/pgclient/pgsim"
)

var bg = context.Background()

func kakao(id string, amount int64) pgclient.KakaoBillRequest {
	return pgclient.KakaoBillRequest{BillID: id, MerchantID: "m1", Phone: "+821012345678", Name: "Kim", Amount: amount, OrderName: "order"}
}

func asError(t *testing.T, err error) *pgclient.Error {
	t.Helper()
	var e *pgclient.Error
	if !errors.As(err, &e) {
		t.Fatalf("err = %v (%T), want *pgclient.Error", err, err)
	}
	return e
}

// The simulator checks the hash: a request with a wrong one is refused
// with VALIDATION_002 and creates nothing.
func TestSimulatorRefusesABadHash(t *testing.T) {
	sim, url := simulated(t, pgsim.Config{})
	post := func(path string, body any) payssam.Response {
		raw, _ := json.Marshal(body)
		resp, err := http.Post(url+path, "application/json", bytes.NewReader(raw))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var r payssam.Response
		if resp.StatusCode != 200 || json.NewDecoder(resp.Body).Decode(&r) != nil {
			t.Fatalf("%s answered %d", path, resp.StatusCode)
		}
		return r
	}
	b := payssam.BillRequest{BillID: "A1", SendType: "TALK", ProductName: "p", Price: "1000", MemberName: "m", Phone: "01012345678", CallbackURL: "https://x.example/cb"}
	b.Hash = payssam.Hash("A1", "", "1000") // 2 fields where /bill wants 3
	env := payssam.Envelope[payssam.BillRequest]{APIKey: testKey, Member: testMember, Merchant: "STORE1", Bill: b}
	if r := post(payssam.PathBill, env); r.Code != payssam.CodeHashMismatch {
		t.Fatalf("bad hash: %+v", r)
	}
	if sim.Charged("A1") != 0 {
		t.Fatal("a bill with a bad hash was created")
	}
	env.Bill.Hash = env.Bill.WantHash()
	if r := post(payssam.PathBill, env); r.Code != payssam.CodeOK {
		t.Fatalf("good hash: %+v", r)
	}
	if r := post(payssam.PathBill, env); r.Code != payssam.CodeDuplicateBillV1 {
		t.Fatalf("the bill id again: %+v", r)
	}
	// Destroy with the bill's phone in the hash: refused, as PaySSam does.
	d := payssam.DestroyRequest{BillID: "A1", Price: "1000", Hash: payssam.Hash("A1", "01012345678", "1000")}
	if r := post(payssam.PathDestroy, payssam.Envelope[payssam.DestroyRequest]{APIKey: testKey, Member: testMember, Merchant: "STORE1", Bill: d}); r.Code != payssam.CodeHashMismatch {
		t.Fatalf("destroy hashed with the phone: %+v", r)
	}
	wrongKey := env
	wrongKey.APIKey = "other"
	if r := post(payssam.PathRead, wrongKey); r.Code != "PARTNER_003" {
		t.Fatalf("wrong api key: %+v", r)
	}
}

// A partial refund is refused as not supported; with the paid amount given
// nothing at all is sent, and without it only a read.
func TestPartialRefundSendsNothing(t *testing.T) {
	sim, url := simulated(t, pgsim.Config{})
	c := newClient(t, url)
	id := uuid.Must(uuid.NewV7()).String()
	if _, err := c.SendKakaoBill(bg, kakao(id, 5000)); err != nil {
		t.Fatal(err)
	}
	if err := sim.Settle(payssam.BillID(id), pgclient.StatusPaid); err != nil {
		t.Fatal(err)
	}
	reads := sim.Calls(pgsim.OpLookup)
	_, err := c.Refund(bg, pgclient.RefundRequest{BillID: id, RefundID: "r1", Amount: 1000, PaidAmount: 5000})
	if !pgclient.NotSupported(err) || asError(t, err).Op != "refund" {
		t.Fatalf("partial refund with the paid amount: %v", err)
	}
	if sim.Calls(pgsim.OpLookup) != reads || sim.Calls(pgsim.OpRefund) != 0 {
		t.Fatal("a partial refund with the paid amount given called PaySSam")
	}
	if _, err := c.Refund(bg, pgclient.RefundRequest{BillID: id, RefundID: "r1", Amount: 1000}); !pgclient.NotSupported(err) {
		t.Fatalf("partial refund: %v", err)
	}
	if sim.Calls(pgsim.OpRefund) != 0 {
		t.Fatal("a cancel was sent for a partial refund")
	}
	if caps := pgclient.CapabilitiesOf(c); caps.PartialRefund {
		t.Fatalf("capabilities = %+v", caps)
	}
}

// A client that did not create a bill finds its store: by MerchantOf, or
// by reading at each store.
func TestBillsOfAnotherProcessAreFound(t *testing.T) {
	_, url := simulated(t, pgsim.Config{PaySSamStores: []string{"STORE1", "STORE2"}})
	stores := func(c *payssam.Config) { c.Merchants = map[string]string{"m1": "STORE2", "m2": "STORE1"} }
	id := uuid.Must(uuid.NewV7()).String()
	acc, err := newClient(t, url, stores).SendKakaoBill(bg, kakao(id, 700))
	if err != nil || acc.URL == "" || acc.PGTxID != payssam.BillID(id) {
		t.Fatalf("accepted = %+v %v", acc, err)
	}
	p, err := newClient(t, url, stores).LookupPayment(bg, id)
	if err != nil || p.Status != pgclient.StatusRequested || p.Amount != 700 {
		t.Fatalf("lookup by probing the stores: %+v %v", p, err)
	}
	var asked string
	viaHook := newClient(t, url, stores, func(c *payssam.Config) {
		c.MerchantOf = func(_ context.Context, billID string) (string, error) { asked = billID; return "m1", nil }
		c.StoredURL = func(context.Context, string) (pgclient.BillURL, error) {
			return pgclient.BillURL{URL: acc.URL, ExpiresAt: time.Now().Add(time.Hour)}, nil
		}
	})
	u, err := viaHook.BillURL(bg, id)
	if err != nil || u.URL != acc.URL || asked != id {
		t.Fatalf("bill url from the stored one: %+v %v (asked %q)", u, err, asked)
	}
	_, err = newClient(t, url, stores).BillURL(bg, id)
	if e := asError(t, err); e.Code != payssam.CodeURLNotStored || pgclient.Retriable(err) {
		t.Fatalf("bill url nobody stored: %#v", e)
	}
}

// The simulator's faults, seen through the adapter: a PaySSam that may have
// acted is unknown, and the bill was placed once.
func TestFaultsAreUnknown(t *testing.T) {
	sim, url := simulated(t, pgsim.Config{TimeoutHold: 5 * time.Second})
	c := newClient(t, url, func(c *payssam.Config) { c.Timeout = 300 * time.Millisecond })
	for _, mode := range []pgsim.FaultMode{pgsim.FaultUnavailable, pgsim.FaultInternalAfterExecute, pgsim.FaultTimeoutAfterExecute} {
		sim.FailNext(pgsim.OpKakaoBill, mode, 1)
		id := uuid.Must(uuid.NewV7()).String()
		_, err := c.SendKakaoBill(bg, kakao(id, 100))
		if e := asError(t, err); e.Kind != pgclient.KindUnknown || e.Op != "kakao_bill" {
			t.Fatalf("%s: %#v", mode, e)
		}
		// What payflow does next: look the bill up, and adopt it if there.
		p, err := c.LookupPayment(bg, id)
		if mode == pgsim.FaultUnavailable {
			if pgclient.KindOf(err) != pgclient.KindNotFound {
				t.Fatalf("%s: lookup %v", mode, err)
			}
			continue
		}
		if err != nil || p.Status != pgclient.StatusRequested || sim.Charged(payssam.BillID(id)) != 1 {
			t.Fatalf("%s: lookup %+v %v", mode, p, err)
		}
		_, err = c.SendKakaoBill(bg, kakao(id, 100))
		if pgclient.KindOf(err) != pgclient.KindDuplicate {
			t.Fatalf("%s: sending again: %v", mode, err)
		}
	}
}

// scripted answers every request with one status and body.
func scripted(t *testing.T, status int, body string) *payssam.Client {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.WriteHeader(status)
		_, _ = io.WriteString(w, body)
	}))
	t.Cleanup(srv.Close)
	return newClient(t, srv.URL)
}

func answer(code, msg string) string {
	b, _ := json.Marshal(map[string]any{"code": code, "message": msg, "data": nil})
	return string(b)
}

func TestAnswerClassification(t *testing.T) {
	cases := []struct {
		name   string
		status int
		body   string
		kind   pgclient.Kind
		code   string
	}{
		{"hash mismatch", 200, answer("VALIDATION_002", "해싱값을 확인하시기 바랍니다."), pgclient.KindInvalid, "VALIDATION_002"},
		{"another validation code", 200, answer("VALIDATION_009", "?"), pgclient.KindInvalid, "VALIDATION_009"},
		{"points ran out", 200, answer("POINT_001", "포인트 부족"), pgclient.KindTransient, "POINT_001"},
		{"duplicate (v1 code)", 200, answer("9800", "이미 사용된 bill_id"), pgclient.KindDuplicate, "9800"},
		{"duplicate as a number", 200, `{"code":9800,"msg":"used"}`, pgclient.KindDuplicate, "9800"},
		{"server error", 200, answer("ERROR", "오류"), pgclient.KindUnknown, "ERROR"},
		{"VAN failure", 200, answer("PAYMENT_001", "VAN"), pgclient.KindUnknown, "PAYMENT_001"},
		{"maintenance", 200, answer("MAINTAINED_METHOD", "점검"), pgclient.KindTransient, "MAINTAINED_METHOD"},
		{"no such partner", 200, answer("PARTNER_005", "?"), pgclient.KindInvalid, "PARTNER_005"},
		{"not sendable", 200, answer("BILL_006", "?"), pgclient.KindConflict, "BILL_006"},
		{"unmapped code", 200, answer("SOMETHING_NEW", "?"), pgclient.KindInvalid, "SOMETHING_NEW"},
		{"no code", 200, `{"message":"ok"}`, pgclient.KindUnknown, ""},
		{"not JSON", 200, "<html>ok</html>", pgclient.KindUnknown, ""},
		{"success without data", 200, answer("0000", "성공"), pgclient.KindUnknown, "0000"},
		{"502 from a gateway", 502, "<html>bad gateway</html>", pgclient.KindUnknown, ""},
		{"500 with a code", 500, answer("BILL_003", "?"), pgclient.KindUnknown, "BILL_003"},
		{"429", 429, "", pgclient.KindTransient, ""},
		{"404 from a wrong URL", 404, "not found", pgclient.KindInvalid, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := scripted(t, tc.status, tc.body).SendKakaoBill(bg, kakao("b1", 100))
			e := asError(t, err)
			if e.Kind != tc.kind || e.Code != tc.code || e.Op != "kakao_bill" || e.Message == "" {
				t.Fatalf("got %#v, want kind %s code %q", e, tc.kind, tc.code)
			}
		})
	}
	_, err := scripted(t, 200, answer("POINT_001", "")).SendKakaoBill(bg, kakao("b1", 100))
	if !payssam.PointsExhausted(err) || payssam.PointsExhausted(errors.New("POINT_001")) {
		t.Fatalf("POINT_001 not recognisable: %v", err)
	}
	_, err = scripted(t, 200, answer("BILL_003", "청구서를 찾을 수 없습니다")).LookupPayment(bg, "b1")
	if pgclient.KindOf(err) != pgclient.KindNotFound {
		t.Fatalf("BILL_003 on a lookup: %v", err)
	}
	_, err = scripted(t, 200, `{"code":"0000","data":{"billId":"`+payssam.BillID("b1")+`","apprState":"X"}}`).LookupPayment(bg, "b1")
	if e := asError(t, err); e.Kind != pgclient.KindUnknown || e.Code != payssam.CodeUnknownState {
		t.Fatalf("an unknown state: %#v", e)
	}
	// A paid or cancelled bill's amount is the approved one, or 0, which
	// confirms no settlement (found by review: the bill's own price, or
	// the amount sent, stood in for it and "confirmed" what PaySSam never
	// stated). The bill is still paid: a placement's look-up finds it. An
	// unpaid bill may fall back to its price.
	for _, state := range []string{"F", "C"} {
		body := `{"code":"0000","data":{"billId":"` + payssam.BillID("b1") + `","apprState":"` + state + `","price":"1000"}}`
		p, err := scripted(t, 200, body).LookupPayment(bg, "b1")
		if err != nil || p.Status != pgclient.StatusPaid || p.Amount != 0 || p.Refunded != 0 {
			t.Fatalf("state %s without apprPrice: %+v, %v; want paid, amount 0", state, p, err)
		}
	}
	body := `{"code":"0000","data":{"billId":"` + payssam.BillID("b1") + `","apprState":"W","price":"1000"}}`
	if p, err := scripted(t, 200, body).LookupPayment(bg, "b1"); err != nil || p.Status != pgclient.StatusRequested || p.Amount != 1000 {
		t.Fatalf("an unpaid bill without apprPrice: %+v, %v", p, err)
	}
}

// PaySSam may echo what it was sent; errors keep neither the API key nor
// the phone nor the billing key.
func TestErrorsCarryNoSecrets(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		raw, _ := io.ReadAll(r.Body)
		_, _ = io.WriteString(w, answer("VALIDATION_001", string(raw)))
	}))
	defer srv.Close()
	c := newClient(t, srv.URL)
	_, err1 := c.SendKakaoBill(bg, kakao("b1", 100))
	_, err2 := c.AutoPay(bg, pgclient.AutoPayRequest{BillID: "b2", MerchantID: "m1", BillingKey: "rp_VERYSECRET", Amount: 100})
	for _, err := range []error{err1, err2} {
		s := err.Error()
		if strings.Contains(s, testKey) || strings.Contains(s, "01012345678") || strings.Contains(s, "VERYSECRET") {
			t.Fatalf("the error shows a secret: %s", s)
		}
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	good := payssam.Config{URL: "https://sandbox.example/partner", APIKey: "k", Member: "m", Merchants: map[string]string{"m1": "S1"}, CallbackURL: "https://payflow.example/cb"}
	if _, err := payssam.New(good); err != nil {
		t.Fatal(err)
	}
	for name, mod := range map[string]func(*payssam.Config){
		"no URL":          func(c *payssam.Config) { c.URL = "" },
		"relative URL":    func(c *payssam.Config) { c.URL = "/partner" },
		"no key":          func(c *payssam.Config) { c.APIKey = "" },
		"long key":        func(c *payssam.Config) { c.APIKey = strings.Repeat("k", 33) },
		"no member":       func(c *payssam.Config) { c.Member = "" },
		"no merchants":    func(c *payssam.Config) { c.Merchants = nil },
		"empty store":     func(c *payssam.Config) { c.Merchants = map[string]string{"m1": ""} },
		"no callback":     func(c *payssam.Config) { c.CallbackURL = "" },
		"relative callbk": func(c *payssam.Config) { c.CallbackURL = "/cb" },
	} {
		cfg := good
		mod(&cfg)
		if _, err := payssam.New(cfg); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	m, err := payssam.ParseMerchants(" m1:S1, m2:S2 ")
	if err != nil || len(m) != 2 || m["m2"] != "S2" {
		t.Fatalf("ParseMerchants = %v %v", m, err)
	}
	for _, bad := range []string{"", "m1", "m1:", ":S1", "m1:S1,m1:S2"} {
		if _, err := payssam.ParseMerchants(bad); err == nil {
			t.Errorf("ParseMerchants(%q) accepted", bad)
		}
	}
}

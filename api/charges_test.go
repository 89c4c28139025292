package api_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/payflow/payflow/api"
	"github.com/payflow/payflow/outbox"
	"github.com/payflow/payflow/payflow"
	"github.com/payflow/payflow/pgclient"
	"github.com/payflow/payflow/pgclient/pgsim"
	"github.com/payflow/payflow/store"
)

func createCharge(t *testing.T, st *store.Store, merchant, charge, phone string, bill payflow.Bill) int64 {
	t.Helper()
	req := payflow.ChargeRequest{MerchantID: merchant, ChargeID: charge, Amount: 5000, Currency: "KRW", OrderName: "coffee",
		Customer: payflow.Customer{MemberID: "mem1", Phone: phone, Name: "Kim"}}
	bill.Amount = 5000
	pk, created, err := st.CreateCharge(context.Background(), payflow.NewCharge{Request: req, RequestHash: req.Fingerprint(),
		RequestEventID: "evt-" + merchant + "-" + charge, Bill: bill, LeaseOwner: "test", Lease: time.Minute})
	if err != nil || !created {
		t.Fatalf("create charge: %v (created %v)", err, created)
	}
	return pk
}

func placed(t *testing.T, st *store.Store, pk int64, billID string) {
	t.Helper()
	if err := st.FinishPlacing(context.Background(), payflow.PlaceResult{ChargePK: pk, BillID: billID, ChargeState: payflow.StateRequested,
		BillStatus: payflow.BillRequested, PGTxID: "pgtx-" + billID, Attempts: 1, Owner: "test"}, nil); err != nil {
		t.Fatal(err)
	}
}

// seedKakao stores a charge whose KakaoTalk bill the PG accepted.
func seedKakao(t *testing.T, e *env, merchant, charge, phone string) string {
	t.Helper()
	bill := "bill-" + merchant + "-" + charge
	pk := createCharge(t, e.st, merchant, charge, phone, payflow.Bill{BillID: bill, Method: payflow.MethodKakaoBill, FallbackReason: payflow.FallbackNoMethod})
	e.sendKakao(bill, phone)
	placed(t, e.st, pk, bill)
	return bill
}

func seedAutoPay(t *testing.T, e *env, merchant, charge string) string {
	t.Helper()
	bill := "bill-" + merchant + "-" + charge
	pk := createCharge(t, e.st, merchant, charge, "+821012345678", payflow.Bill{BillID: bill, Method: payflow.MethodAutoPay})
	if _, err := e.pg.Client().AutoPay(context.Background(), pgclient.AutoPayRequest{BillID: bill, MerchantID: merchant, BillingKey: "bk_good", Amount: 5000, OrderName: "coffee"}); err != nil {
		t.Fatal(err)
	}
	placed(t, e.st, pk, bill)
	return bill
}

// sendKakao places a KakaoTalk bill at the PG.
func (e *env) sendKakao(bill, phone string) {
	e.t.Helper()
	if _, err := e.pg.Client().SendKakaoBill(context.Background(), pgclient.KakaoBillRequest{BillID: bill, Phone: phone, Name: "Kim", Amount: 5000, OrderName: "coffee"}); err != nil {
		e.t.Fatal(err)
	}
}

// pay settles a bill as paid, at the PG and as its webhook would in the
// store.
func pay(t *testing.T, e *env, bill string) {
	t.Helper()
	if err := e.pg.Settle(bill, pgclient.StatusPaid); err != nil {
		t.Fatal(err)
	}
	if _, _, err := e.st.Settle(context.Background(), payflow.Settlement{BillID: bill, Status: payflow.SettlePaid, Amount: 5000, PGTxID: "pgtx-" + bill},
		func(payflow.SettledBill) ([]outbox.Message, error) { return nil, nil }); err != nil {
		t.Fatal(err)
	}
}

func TestChargeView(t *testing.T) {
	e := setup(t)
	ctx := context.Background()
	const phone = "+821077776666"
	pk := createCharge(t, e.st, "m1", "c1", phone, payflow.Bill{BillID: "b-auto", Method: payflow.MethodAutoPay})
	if err := e.st.Decline(ctx, pk, payflow.Bill{BillID: "b-auto"}, payflow.DeclineExpired, payflow.MethodExpired,
		payflow.Bill{BillID: "b-kakao", Method: payflow.MethodKakaoBill, FallbackReason: payflow.FallbackMethodExpired, Amount: 5000}, "test", time.Minute); err != nil {
		t.Fatal(err)
	}
	e.sendKakao("b-kakao", phone)
	placed(t, e.st, pk, "b-kakao")

	rec, v := e.do("GET", "/v1/charges/c1", m1Token, "")
	if rec.Code != 200 {
		t.Fatalf("view: %d %s", rec.Code, rec.Body)
	}
	for k, want := range map[string]any{
		"merchant_id": "m1", "charge_id": "c1", "state": "requested", "bill_id": "b-kakao", "bill_status": "requested",
		"method": "kakao_bill", "fallback_reason": "method_expired", "amount": float64(5000),
		"paid_amount": float64(0), "refunded_amount": float64(0),
	} {
		if v[k] != want {
			t.Errorf("%s = %v, want %v", k, v[k], want)
		}
	}
	for _, k := range []string{"created_at", "updated_at"} {
		if _, err := time.Parse(time.RFC3339Nano, v[k].(string)); err != nil {
			t.Errorf("%s: %v", k, err)
		}
	}
	hist := v["history"].(map[string]any)
	bills := hist["bills"].([]any)
	if len(bills) != 2 || len(hist["refunds"].([]any)) != 0 {
		t.Fatalf("history: %v", hist)
	}
	declined, kakao := bills[0].(map[string]any), bills[1].(map[string]any)
	if declined["bill_id"] != "b-auto" || declined["method"] != "auto_pay" || declined["status"] != "declined" ||
		declined["decline_code"] != "expired" || declined["settled_at"] != nil {
		t.Fatalf("declined bill: %v", declined)
	}
	if kakao["bill_id"] != "b-kakao" || kakao["status"] != "requested" || kakao["fallback_reason"] != "method_expired" {
		t.Fatalf("KakaoTalk bill: %v", kakao)
	}
	pg := v["pg_status"].(map[string]any)
	if pg["status"] != "requested" || pg["amount"] != float64(5000) || v["pg_error"] != nil {
		t.Fatalf("pg_status: %v, pg_error %v", pg, v["pg_error"])
	}
	// The customer's phone is not the merchant API's business to echo.
	if strings.Contains(rec.Body.String(), "77776666") {
		t.Fatalf("the phone number is in the answer: %s", rec.Body)
	}

	// Paid, then partly refunded.
	pay(t, e, "b-kakao")
	h, err := e.st.AcquireCharge(ctx, pk, "test", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	rpk, _, err := e.st.CreateRefund(ctx, payflow.NewRefund{MerchantID: "m1", RefundID: "r1", Kind: "refund", ChargePK: pk, BillID: "b-kakao",
		Amount: 2000, Reason: "broken cup", RequestHash: []byte("h"), Holder: h})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.st.FinishRefund(ctx, rpk, payflow.RefundResult{Succeeded: true, PGTxID: "rtx"},
		func(int64) ([]outbox.Message, error) { return nil, nil }, nil); err != nil {
		t.Fatal(err)
	}
	_, v = e.do("GET", "/v1/charges/c1", m1Token, "")
	if v["state"] != "paid" || v["paid_amount"] != float64(5000) || v["refunded_amount"] != float64(2000) {
		t.Fatalf("after payment and refund: %v", v)
	}
	refunds := v["history"].(map[string]any)["refunds"].([]any)
	if len(refunds) != 1 {
		t.Fatalf("refunds: %v", refunds)
	}
	if r := refunds[0].(map[string]any); r["refund_id"] != "r1" || r["amount"] != float64(2000) || r["status"] != "succeeded" || r["bill_id"] != "b-kakao" {
		t.Fatalf("refund: %v", r)
	}
	if b := v["history"].(map[string]any)["bills"].([]any)[1].(map[string]any); b["settled_at"] == nil || b["paid_amount"] != float64(5000) {
		t.Fatalf("paid bill: %v", b)
	}
}

func TestChargesAreMerchantScoped(t *testing.T) {
	e := setup(t)
	seedKakao(t, e, "m1", "c1", "+821012345678")
	seedKakao(t, e, "m1", "shared", "+821012345678")
	seedKakao(t, e, "m2", "shared", "+821012345678")

	for _, path := range []string{"/v1/charges/c1", "/v1/charges/c1/bill-url"} {
		other, _ := e.do("GET", path, m2Token, "")
		missing, _ := e.do("GET", strings.Replace(path, "c1", "never-existed", 1), m2Token, "")
		if other.Code != 404 {
			t.Fatalf("%s with another merchant's token: %d, want 404 (never 403)", path, other.Code)
		}
		// Indistinguishable from a charge that does not exist.
		if other.Body.String() != missing.Body.String() {
			t.Fatalf("%s: %s vs %s", path, other.Body, missing.Body)
		}
		if own, _ := e.do("GET", path, m1Token, ""); own.Code != 200 {
			t.Fatalf("%s with its merchant's token: %d %s", path, own.Code, own.Body)
		}
	}
	// The same charge id at two merchants is two charges.
	for token, want := range map[string]string{m1Token: "bill-m1-shared", m2Token: "bill-m2-shared"} {
		if _, v := e.do("GET", "/v1/charges/shared", token, ""); v["bill_id"] != want {
			t.Fatalf("shared id: bill %v, want %s", v["bill_id"], want)
		}
	}
	// An id that breaks payflow's id rules cannot exist.
	for _, id := range []string{"a%20b", "a%C2%A0b", "%EC%A3%BC%EB%AC%B8", "a%7Fb"} {
		if rec, _ := e.do("GET", "/v1/charges/"+id, m1Token, ""); rec.Code != 404 {
			t.Fatalf("malformed id %s: %d", id, rec.Code)
		}
	}
}

func TestChargeViewWhenThePGFails(t *testing.T) {
	e := setup(t)
	seedKakao(t, e, "m1", "c1", "+821012345678")

	e.pg.FailNext(pgsim.OpLookup, pgsim.FaultUnavailable, 1)
	rec, v := e.do("GET", "/v1/charges/c1", m1Token, "")
	if rec.Code != 200 || v["pg_status"] != nil || v["pg_error"] != "transient" || v["state"] != "requested" {
		t.Fatalf("PG error: %d %s", rec.Code, rec.Body)
	}

	// The PG executes the lookup and holds its answer until the caller
	// gives up.
	e.pg.FailNext(pgsim.OpLookup, pgsim.FaultTimeoutAfterExecute, 1)
	start := time.Now()
	rec, v = e.do("GET", "/v1/charges/c1", m1Token, "")
	took := time.Since(start)
	if rec.Code != 200 || v["pg_status"] != nil || v["pg_error"] != "timeout" {
		t.Fatalf("PG hangs: %d %s", rec.Code, rec.Body)
	}
	if took > 4*time.Second {
		t.Fatalf("a hanging PG held the answer for %s", took)
	}
}

func TestChargeViewWithoutAPG(t *testing.T) {
	e := setup(t, func(c *api.Config) { c.PG = nil })
	seedKakao(t, e, "m1", "c1", "+821012345678")
	rec, v := e.do("GET", "/v1/charges/c1", m1Token, "")
	if rec.Code != 200 || v["pg_status"] != nil || v["pg_error"] != nil || v["bill_id"] != "bill-m1-c1" {
		t.Fatalf("no PG: %d %s", rec.Code, rec.Body)
	}
	rec, body := e.do("GET", "/v1/charges/c1/bill-url", m1Token, "")
	if rec.Code != 502 || errCode(t, rec, body) != "pg_unavailable" {
		t.Fatalf("bill url without a PG: %d %s", rec.Code, rec.Body)
	}
}

func TestBillURLIsCachedWhileValid(t *testing.T) {
	e := setup(t)
	bill := seedKakao(t, e, "m1", "c1", "+821012345678")
	for range 3 {
		rec, body := e.do("GET", "/v1/charges/c1/bill-url", m1Token, "")
		if rec.Code != 200 || body["bill_id"] != bill || body["url"] != "https://pay.example/pay/"+bill || len(body) != 3 {
			t.Fatalf("bill url: %d %s", rec.Code, rec.Body)
		}
		exp, err := time.Parse(time.RFC3339Nano, body["expires_at"].(string))
		if err != nil || time.Until(exp) < 50*time.Minute {
			t.Fatalf("expires_at %v: %v", body["expires_at"], err)
		}
	}
	if n := e.pg.Calls(pgsim.OpBillURL); n != 1 {
		t.Fatalf("the PG was asked %d times, want 1 (then the cache)", n)
	}
	if b, _ := e.st.CurrentBill(context.Background(), "m1", "c1"); b.URL != "https://pay.example/pay/"+bill {
		t.Fatalf("not cached in the database: %+v", b)
	}
}

func TestBillURLAboutToExpireIsRefreshed(t *testing.T) {
	// The bill expires, and its URL with it, sooner than the API's minimum
	// validity.
	e := setupWithPG(t, pgsim.Config{BillTTL: 30 * time.Second})
	seedKakao(t, e, "m1", "c1", "+821012345678")
	for range 2 {
		if rec, _ := e.do("GET", "/v1/charges/c1/bill-url", m1Token, ""); rec.Code != 200 {
			t.Fatalf("bill url: %d %s", rec.Code, rec.Body)
		}
	}
	if n := e.pg.Calls(pgsim.OpBillURL); n != 2 {
		t.Fatalf("the PG was asked %d times, want 2: a URL about to expire is not handed out again", n)
	}
}

func TestBillURLOnlyForUnpaidKakaoBills(t *testing.T) {
	e := setup(t)
	seedAutoPay(t, e, "m1", "auto")
	pay(t, e, seedKakao(t, e, "m1", "paid", "+821012345678"))
	createCharge(t, e.st, "m1", "pending", "+821012345678", payflow.Bill{BillID: "b-pending", Method: payflow.MethodKakaoBill})
	for _, c := range []string{"auto", "paid", "pending"} {
		rec, body := e.do("GET", "/v1/charges/"+c+"/bill-url", m1Token, "")
		if rec.Code != 409 || errCode(t, rec, body) != "invalid_state" {
			t.Errorf("%s: %d %s, want 409 invalid_state", c, rec.Code, rec.Body)
		}
	}
	if n := e.pg.Calls(pgsim.OpBillURL); n != 0 {
		t.Fatalf("the PG was asked for %d URLs of bills that have none", n)
	}
	if rec, body := e.do("GET", "/v1/charges/nope/bill-url", m1Token, ""); rec.Code != 404 || errCode(t, rec, body) != "not_found" {
		t.Fatalf("unknown charge: %d %s", rec.Code, rec.Body)
	}
}

func TestBillURLWhenThePGFails(t *testing.T) {
	e := setup(t)
	seedKakao(t, e, "m1", "c1", "+821012345678")
	for _, fault := range []pgsim.FaultMode{
		pgsim.FaultUnavailable,          // transient
		pgsim.FaultInternalAfterExecute, // unknown
	} {
		e.pg.FailNext(pgsim.OpBillURL, fault, 1)
		rec, body := e.do("GET", "/v1/charges/c1/bill-url", m1Token, "")
		if rec.Code != 502 || errCode(t, rec, body) != "pg_unavailable" {
			t.Errorf("%s: %d %s, want 502 pg_unavailable", fault, rec.Code, rec.Body)
		}
	}
	// A failure caches nothing: the next call asks again and succeeds.
	if rec, _ := e.do("GET", "/v1/charges/c1/bill-url", m1Token, ""); rec.Code != 200 || e.pg.Calls(pgsim.OpBillURL) != 3 {
		t.Fatalf("after the PG recovered: %d %s", rec.Code, rec.Body)
	}
	// The customer paid and the webhook has not arrived: the PG refuses a
	// pay URL (conflict).
	bill := seedKakao(t, e, "m1", "c2", "+821012345678")
	if err := e.pg.Settle(bill, pgclient.StatusPaid); err != nil {
		t.Fatal(err)
	}
	if rec, body := e.do("GET", "/v1/charges/c2/bill-url", m1Token, ""); rec.Code != 409 || errCode(t, rec, body) != "invalid_state" {
		t.Errorf("bill paid at the PG: %d %s, want 409 invalid_state", rec.Code, rec.Body)
	}
}

func TestChargeAnswersAreNotCached(t *testing.T) {
	e := setup(t)
	seedKakao(t, e, "m1", "c1", "+821012345678")
	rec, _ := e.do("GET", "/v1/charges/c1", m1Token, "")
	if rec.Header().Get("Cache-Control") != "no-store" || rec.Header().Get("Content-Type") != "application/json" {
		t.Fatalf("headers: %v", rec.Header())
	}
	var v map[string]json.RawMessage
	if err := json.Unmarshal(rec.Body.Bytes(), &v); err != nil {
		t.Fatal(err)
	}
}

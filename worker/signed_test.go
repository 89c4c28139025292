package worker_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/payflow/payflow/events"
	"github.com/payflow/payflow/reqsig"
	"github.com/payflow/payflow/stdwebhook"
	"github.com/payflow/payflow/worker"
)

// keyedWorker is a worker on e's store and PG that requires signatures
// from the merchants in keys (PAYFLOW_MERCHANT_KEYS syntax). e's own worker
// requires none, so a test can set state up with it.
func (e *env) keyedWorker(keys string) *worker.Worker {
	e.t.Helper()
	k, err := reqsig.ParseKeys(keys)
	if err != nil {
		e.t.Fatal(err)
	}
	return worker.New(worker.Config{Store: e.st, PG: e.pg, Methods: methods{}, Lease: time.Minute,
		RetryBudget: 2 * time.Second, RetryInitial: time.Millisecond, RequestKeys: k})
}

func handleWith(t *testing.T, w *worker.Worker, v []byte) {
	t.Helper()
	if err := w.Handle(context.Background(), v); err != nil {
		t.Fatalf("handle: %v", err)
	}
}

// signedCharge is a non-member charge request of merchant, with the given
// event id, signed with keys (none: unsigned).
func signedCharge(t *testing.T, id, merchant, charge string, amount int64, keys ...string) []byte {
	t.Helper()
	return signedRequest(t, events.TypeChargeRequested, id, map[string]any{"merchant_id": merchant, "charge_id": charge, "amount": amount,
		"currency": "KRW", "order_name": "order", "customer": map[string]any{"phone": "010-1234-5678", "name": "Kim"}}, keys...)
}

// signedRequest is a request event of type typ with data, signed with keys
// (none: unsigned).
func signedRequest(t *testing.T, typ, id string, data map[string]any, keys ...string) []byte {
	t.Helper()
	v, _ := json.Marshal(map[string]any{
		"specversion": "1.0", "id": id, "source": "shop", "type": typ, "subject": data["charge_id"],
		"time": "2024-05-01T10:00:00.000Z", "datacontenttype": "application/json", "data": data,
	})
	if len(keys) == 0 {
		return v
	}
	secrets := make([]stdwebhook.Secret, len(keys))
	for i, k := range keys {
		s, err := stdwebhook.ParseSecret(k)
		if err != nil {
			t.Fatal(err)
		}
		secrets[i] = s
	}
	signed, err := reqsig.SignEvent(v, secrets...)
	if err != nil {
		t.Fatal(err)
	}
	return signed
}

func signatureOf(t *testing.T, v []byte) string {
	t.Helper()
	env, err := events.Decode(v)
	if err != nil {
		t.Fatal(err)
	}
	return env.Signature
}

// unauthenticated checks that the only results are n unauthenticated
// rejections, that no PG call was made and no charge stored.
func (e *env) unauthenticated(n int, charge string) []map[string]any {
	e.t.Helper()
	res := e.results()
	if len(res) != n {
		e.t.Fatalf("results = %v, want %d rejections", res, n)
	}
	for _, r := range res {
		if r["type"] != events.TypeRejected || data(r)["reason"] != events.RejectUnauthenticated {
			e.t.Fatalf("result = %v, want an unauthenticated rejection", r)
		}
	}
	if calls := e.pg.count("auto_pay") + e.pg.count("kakao_bill") + e.pg.count("refund") + e.pg.count("destroy") + e.pg.count("lookup"); calls != 0 {
		e.t.Fatalf("PG calls = %d, want none", calls)
	}
	if _, err := e.st.ChargeByKey(context.Background(), "m1", charge); err == nil {
		e.t.Fatal("the charge was stored")
	}
	return res
}

func TestSignValidRequestIsAccepted(t *testing.T) {
	e := setup(t, methods{})
	key := stdwebhook.NewSecret()
	w := e.keyedWorker("m1:" + key)
	ev := signedCharge(t, "e1", "m1", "c1", 5000, key)
	handleWith(t, w, ev)
	handleWith(t, w, ev) // a redelivery
	res := e.results()
	if len(res) != 1 || res[0]["type"] != events.TypeChargeProcessed {
		t.Fatalf("results = %v", res)
	}
	if n := e.pg.count("kakao_bill"); n != 1 {
		t.Fatalf("kakao_bill calls = %d", n)
	}
}

func TestUnauthForgedSignatureIsRejected(t *testing.T) {
	e := setup(t, methods{})
	key := stdwebhook.NewSecret()
	w := e.keyedWorker("m1:" + key)
	genuine := signatureOf(t, signedCharge(t, "e1", "m1", "c1", 5000, key))
	forged := signedCharge(t, "e1", "m1", "c1", 5000, stdwebhook.NewSecret())
	handleWith(t, w, forged)
	handleWith(t, w, forged) // a redelivery writes nothing again
	res := e.unauthenticated(1, "c1")
	d := data(res[0])
	if d["merchant_id"] != "m1" || d["charge_id"] != "c1" || d["request_event_id"] != "e1" {
		t.Fatalf("rejection = %v", d)
	}
	// Neither the expected signature nor the key leaks.
	all := fmt.Sprint(e.results())
	for _, secret := range []string{strings.TrimPrefix(genuine, "v1,"), strings.TrimPrefix(key, "whsec_")} {
		if strings.Contains(all, secret) {
			t.Fatalf("a rejection holds a secret: %s", all)
		}
	}
}

func TestUnauthValidSignatureReplayedOnOtherData(t *testing.T) {
	e := setup(t, methods{})
	key := stdwebhook.NewSecret()
	w := e.keyedWorker("m1:" + key)
	genuine := signedCharge(t, "e1", "m1", "c1", 5000, key)
	// Same id and time, the amount changed, the genuine signature copied.
	replayed := withAttr(t, signedCharge(t, "e1", "m1", "c1", 5000000), "payflowsig", signatureOf(t, genuine))
	handleWith(t, w, replayed)
	e.unauthenticated(1, "c1")

	// The forgery came first under the genuine event's id; the genuine
	// request is still executed, once, with its own amount.
	handleWith(t, w, genuine)
	c, err := e.st.ChargeByKey(context.Background(), "m1", "c1")
	if err != nil || c.Amount != 5000 {
		t.Fatalf("charge = %+v, %v; want the genuine 5000", c, err)
	}
	if len(e.ofType(events.TypeChargeProcessed)) != 1 || e.pg.count("kakao_bill") != 1 {
		t.Fatalf("results = %v", e.results())
	}
}

func TestUnauthUnsignedRequestFromAKeyedMerchant(t *testing.T) {
	e := setup(t, methods{})
	w := e.keyedWorker("m1:" + stdwebhook.NewSecret())
	handleWith(t, w, signedCharge(t, "e1", "m1", "c1", 5000))
	res := e.unauthenticated(1, "c1")
	if d := data(res[0]); !strings.Contains(d["detail"].(string), "no payflowsig") {
		t.Fatalf("detail = %v", d["detail"])
	}
}

// Every request type is checked, not only charges: an unsigned refund or
// cancel of a keyed merchant's charge touches neither the PG nor the charge.
func TestUnauthUnsignedRefundAndCancel(t *testing.T) {
	e := setup(t, methods{})
	e.paid("c-paid", 1000)   // set up by the worker that needs no signature
	e.placed("c-open", 1000) // an unpaid bill
	before := len(e.results())
	calls := e.pg.count("refund") + e.pg.count("destroy")
	w := e.keyedWorker("m1:" + stdwebhook.NewSecret())
	handleWith(t, w, refundEvent("c-paid", "r1", 1000))
	handleWith(t, w, cancelEvent("c-open"))
	handleWith(t, w, repayEvent("c-paid", "rp1"))
	res := e.results()[before:]
	if len(res) != 3 {
		t.Fatalf("results = %v", res)
	}
	for _, r := range res {
		if data(r)["reason"] != events.RejectUnauthenticated {
			t.Fatalf("result = %v", r)
		}
	}
	if n := e.pg.count("refund") + e.pg.count("destroy"); n != calls {
		t.Fatalf("PG refund/destroy calls = %d, want %d", n, calls)
	}
}

func TestSignKeyRotation(t *testing.T) {
	e := setup(t, methods{})
	oldKey, newKey := stdwebhook.NewSecret(), stdwebhook.NewSecret()
	both := e.keyedWorker("m1:" + oldKey + ",m1:" + newKey)
	handleWith(t, both, signedCharge(t, "e1", "m1", "c-old", 1000, oldKey))
	handleWith(t, both, signedCharge(t, "e2", "m1", "c-new", 1000, newKey))
	handleWith(t, both, signedCharge(t, "e3", "m1", "c-both", 1000, oldKey, newKey))
	if n := len(e.ofType(events.TypeChargeProcessed)); n != 3 {
		t.Fatalf("processed = %d, want 3: %v", n, e.results())
	}
	newOnly := e.keyedWorker("m1:" + newKey)
	handleWith(t, newOnly, signedCharge(t, "e4", "m1", "c-late", 1000, oldKey))
	handleWith(t, newOnly, signedCharge(t, "e5", "m1", "c-moved", 1000, oldKey, newKey))
	rej := e.ofType(events.TypeRejected)
	if len(rej) != 1 || data(rej[0])["charge_id"] != "c-late" || data(rej[0])["reason"] != events.RejectUnauthenticated {
		t.Fatalf("rejections = %v, want c-late unauthenticated", rej)
	}
	if n := len(e.ofType(events.TypeChargeProcessed)); n != 4 {
		t.Fatalf("processed = %d, want 4", n)
	}
}

func TestSignUnkeyedMerchantIsUnaffected(t *testing.T) {
	e := setup(t, methods{})
	w := e.keyedWorker("other-merchant:" + stdwebhook.NewSecret())
	handleWith(t, w, signedCharge(t, "e1", "m1", "c1", 5000))
	// A signature a merchant without keys sends along is not checked.
	handleWith(t, w, withAttr(t, signedCharge(t, "e2", "m1", "c2", 5000), "payflowsig", "v1,AAAA"))
	if n := len(e.ofType(events.TypeChargeProcessed)); n != 2 {
		t.Fatalf("results = %v", e.results())
	}
}

// A merchant id readable two ways (a case-variant key) names a keyed
// merchant under one of them: it needs a signature too.
func TestUnauthAmbiguousMerchantNeedsASignature(t *testing.T) {
	e := setup(t, methods{})
	w := e.keyedWorker("m1:" + stdwebhook.NewSecret())
	v := []byte(`{"specversion":"1.0","id":"e1","source":"shop","type":"payment.charge.requested","data":` +
		`{"merchant_id":"m2","MERCHANT_ID":"m1","charge_id":"c1","amount":1000,"currency":"KRW","order_name":"o","customer":{"phone":"010-1234-5678"}}}`)
	handleWith(t, w, v)
	e.unauthenticated(1, "c1")
}

// A forged request under a genuine request's event id, handled first, does
// not make the genuine one look already judged (cancels, refunds and
// re-payments look their event id up among rejections).
func TestUnauthForgeryDoesNotPreemptTheGenuineRequest(t *testing.T) {
	e := setup(t, methods{})
	bill := e.placed("c1", 1000)
	key := stdwebhook.NewSecret()
	w := e.keyedWorker("m1:" + key)
	cancel, _ := json.Marshal(map[string]any{
		"specversion": "1.0", "id": "cancel-1", "source": "shop", "type": events.TypeCancelRequested, "subject": "c1",
		"time": "2024-05-01T10:00:00.000Z", "data": map[string]any{"merchant_id": "m1", "charge_id": "c1", "reason": "x"},
	})
	handleWith(t, w, cancel) // unsigned, same id as the genuine one below
	if rej := e.ofType(events.TypeRejected); len(rej) != 1 || data(rej[0])["reason"] != events.RejectUnauthenticated {
		t.Fatalf("rejections = %v", rej)
	}
	k, _ := stdwebhook.ParseSecret(key)
	genuine, err := reqsig.SignEvent(cancel, k)
	if err != nil {
		t.Fatal(err)
	}
	handleWith(t, w, genuine)
	ev := e.ofType(events.TypeBillCancelled)
	if len(ev) != 1 || data(ev[0])["bill_id"] != bill {
		t.Fatalf("cancel events = %v, results = %v", ev, e.results())
	}
}

// The signature binds a request's id, time and data, not its type (the
// contract's formula). Found by review: a signed charge request re-typed
// as a cancel by anyone who can write the topic verified, and destroyed
// the merchant's bill. A signed request's data must hold its own type's
// fields only, so no request's signed data passes for another type's; a
// re-typed one is unauthenticated, or invalid when it holds no field its
// new type does not know (a cancel's data as a refund's), and neither
// rejection answers the genuine request of its event id.
func TestSignSignedDataCannotBeRetyped(t *testing.T) {
	e := setup(t, methods{})
	key := stdwebhook.NewSecret()
	w := e.keyedWorker("m1:" + key)
	charge := signedCharge(t, "e1", "m1", "c1", 5000, key)
	handleWith(t, w, charge)
	refund := signedRequest(t, events.TypeRefundRequested, "e2",
		map[string]any{"merchant_id": "m1", "charge_id": "c1", "refund_id": "r1", "amount": 100, "reason": "x"}, key)
	cancel := signedRequest(t, events.TypeCancelRequested, "e3", map[string]any{"merchant_id": "m1", "charge_id": "c1", "reason": "x"}, key)
	for _, forged := range [][]byte{
		withAttr(t, charge, "type", events.TypeCancelRequested), withAttr(t, charge, "type", events.TypeRefundRequested), withAttr(t, charge, "type", events.TypeRepayRequested),
		withAttr(t, refund, "type", events.TypeCancelRequested), withAttr(t, refund, "type", events.TypeRepayRequested),
		withAttr(t, cancel, "type", events.TypeRepayRequested), withAttr(t, cancel, "type", events.TypeRefundRequested),
	} {
		handleWith(t, w, forged)
	}
	res := e.results()
	if len(res) != 8 {
		t.Fatalf("results = %v, want the charge's and 7 rejections", res)
	}
	for i, r := range res[1:] {
		want := events.RejectUnauthenticated
		if i == 6 {
			want = events.RejectInvalid
		}
		if r["type"] != events.TypeRejected || data(r)["reason"] != want {
			t.Fatalf("re-typed request %d: %v, want rejected %s", i, r, want)
		}
	}
	if n := e.pg.count("destroy") + e.pg.count("refund"); n != 0 {
		t.Fatalf("%d destroy or refund calls for re-typed requests", n)
	}
	handleWith(t, w, cancel) // the genuine cancel, after a forgery under its id
	if got := e.ofType(events.TypeBillCancelled); len(got) != 1 {
		t.Fatalf("the genuine signed cancel: %v", e.results())
	}
}

// withAttr is v with the attribute name set to val: another signature, a
// type the signature does not cover, or what a producer retry may change.
func withAttr(t *testing.T, v []byte, name, val string) []byte {
	t.Helper()
	var m map[string]json.RawMessage
	if err := json.Unmarshal(v, &m); err != nil {
		t.Fatal(err)
	}
	m[name], _ = json.Marshal(val)
	out, _ := json.Marshal(m)
	return out
}

// A signed invalid request re-published with an attribute the signature
// does not cover (a producer retry with a new traceparent) still has one
// result: found by review, the rejection was keyed by the whole message's
// bytes, so the retry was rejected a second time.
func TestSignSignedInvalidRequestResentHasOneResult(t *testing.T) {
	e := setup(t, methods{})
	key := stdwebhook.NewSecret()
	w := e.keyedWorker("m1:" + key)
	bad := signedRequest(t, events.TypeRefundRequested, "e-bad",
		map[string]any{"merchant_id": "m1", "charge_id": "c1", "refund_id": "r1", "amount": -5, "reason": "x"}, key)
	handleWith(t, w, bad)
	handleWith(t, w, withAttr(t, bad, "traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"))
	if rej := e.ofType(events.TypeRejected); len(rej) != 1 || data(rej[0])["reason"] != events.RejectInvalid {
		t.Fatalf("rejections of one request = %v, want one, invalid", rej)
	}
}

// A signed request may hold fields of the producer's own, as any request
// may (the schemas allow them): only a field of another request type makes
// it unauthenticated. Found by review: every unknown field did.
func TestSignSignedRequestMayHoldFieldsOfItsOwn(t *testing.T) {
	e := setup(t, methods{})
	key := stdwebhook.NewSecret()
	w := e.keyedWorker("m1:" + key)
	handleWith(t, w, signedRequest(t, events.TypeChargeRequested, "e-x", map[string]any{"merchant_id": "m1", "charge_id": "c1", "amount": 1000,
		"currency": "KRW", "order_name": "o", "customer": map[string]any{"phone": "010-1234-5678"}, "note": "gift"}, key))
	if n := len(e.ofType(events.TypeChargeProcessed)); n != 1 {
		t.Fatalf("results = %v", e.results())
	}
}

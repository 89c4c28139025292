package worker_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/payflow/payflow/events"
	"github.com/payflow/payflow/internal/testdb"
	"github.com/payflow/payflow/worker"
)

// Logs never hold a full phone number or a billing key, even at debug level
// and through the decline, retry and failure paths.
func TestLogsMaskPhonesAndNeverHoldBillingKeys(t *testing.T) {
	var logs bytes.Buffer
	st := testdb.New(t)
	pg := newFakePG()
	w := worker.New(worker.Config{Store: st, PG: pg, Methods: methods{"mem1": "decline_secret_key_4242", "mem2": "bk_secret_key_9999"},
		Lease: time.Minute, RetryBudget: 200 * time.Millisecond, RetryInitial: time.Millisecond,
		Logger: slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	ctx := context.Background()
	pg.failNext("auto_pay", fault{kind: "unknown", after: false})
	for _, ev := range [][]byte{chargeEvent("c1", "mem1", 100), chargeEvent("c2", "mem2", 100), chargeEvent("c3", "", 100)} {
		if err := w.Handle(ctx, ev); err != nil {
			t.Fatal(err)
		}
	}
	out := logs.String()
	if out == "" {
		t.Fatal("nothing was logged; the test proves nothing")
	}
	for _, secret := range []string{"1012345678", "010-1234-5678", "secret_key"} {
		if strings.Contains(out, secret) {
			t.Fatalf("logs contain %q:\n%s", secret, out)
		}
	}
}

// Well-formed events whose data has the wrong types, overflowing numbers or
// hostile text get a rejection, never a panic, never silence.
func TestHostileDataIsRejected(t *testing.T) {
	e := setup(t, methods{})
	bad := []string{
		`{"merchant_id":"m1","charge_id":"t1","amount":"5000","currency":"KRW","order_name":"o","customer":{"phone":"010-1234-5678"}}`,
		`{"merchant_id":"m1","charge_id":"t2","amount":1e30,"currency":"KRW","order_name":"o","customer":{"phone":"010-1234-5678"}}`,
		`{"merchant_id":"m1","charge_id":"t3","amount":99.5,"currency":"KRW","order_name":"o","customer":{"phone":"010-1234-5678"}}`,
		`{"merchant_id":"m1","charge_id":"t4","amount":9223372036854775807,"currency":"KRW","order_name":"o","customer":{"phone":"010-1234-5678"}}`,
		`{"merchant_id":"m1","charge_id":"t5; DROP TABLE charges;--","amount":100,"currency":"KRW","order_name":"o","customer":{"phone":"010-1234-5678"}}`,
		`{"merchant_id":"m1","charge_id":"t6","amount":100,"currency":"KRW","order_name":"o","customer":{"phone":"<script>alert(1)</script>"}}`,
		`{"merchant_id":"m1","charge_id":"t7","amount":100,"currency":"KRW","order_name":"o","customer":"nobody"}`,
		`{"merchant_id":"m1","charge_id":"t8\u00a0x","amount":100,"currency":"KRW","order_name":"o","customer":{"phone":"010-1234-5678"}}`,
		`[1,2,3]`,
		`"just a string"`,
	}
	for i, d := range bad {
		ev, _ := json.Marshal(map[string]any{"specversion": "1.0", "id": "hostile-" + string(rune('a'+i)), "source": "t",
			"type": events.TypeChargeRequested, "data": json.RawMessage(d)})
		if err := e.w.Handle(context.Background(), ev); err != nil {
			t.Fatalf("%s: %v", d, err)
		}
	}
	res := e.results()
	if len(res) != len(bad) {
		t.Fatalf("%d results for %d hostile events", len(res), len(bad))
	}
	for _, r := range res {
		if r["type"] != events.TypeRejected || data(r)["reason"] != "invalid" {
			t.Fatalf("result = %v", r)
		}
	}
	if e.pg.count("kakao_bill")+e.pg.count("auto_pay") != 0 {
		t.Fatal("a hostile event reached the PG")
	}
}

// Text that is not UTF-8 in request data (a stray byte, an escape of half
// a surrogate pair) is rejected invalid, not stored as U+FFFD: found by
// review, "order\xffname" was charged and stored as "order\uFFFDname",
// and a re-send with another stray byte passed for the same request.
func TestTextThatIsNotUTF8IsRejected(t *testing.T) {
	e := setup(t, methods{})
	for i, name := range []string{"order\xffname", `order\ud800name`, `order\udfffname`} {
		e.handle([]byte(fmt.Sprintf(`{"specversion":"1.0","id":"u8-%d","source":"t","type":"payment.charge.requested","datacontenttype":"application/json",`+
			`"data":{"merchant_id":"m1","charge_id":"u%d","amount":100,"currency":"KRW","order_name":"%s","customer":{"phone":"010-1234-5678","name":"K"}}}`, i, i, name)))
	}
	res := e.results()
	if len(res) != 3 {
		t.Fatalf("results = %v", res)
	}
	for _, r := range res {
		if r["type"] != events.TypeRejected || data(r)["reason"] != "invalid" || !strings.Contains(data(r)["detail"].(string), "UTF-8") {
			t.Fatalf("result = %v, want rejected invalid for its text", r)
		}
	}
	if n := e.pg.count("kakao_bill"); n != 0 {
		t.Fatalf("%d bills placed", n)
	}
}

// Keys that encoding/json would fold or let the last of win are refused:
// a validator in front of payflow must read the same request payflow does.
func TestAmbiguousKeysAreRejected(t *testing.T) {
	e := setup(t, methods{})
	for i, body := range []string{
		`{"merchant_id":"m1","charge_id":"c%d","amount":700,"AMOUNT":-7,"currency":"KRW","order_name":"o","customer":{"phone":"01012345678","name":"K"}}`,
		`{"merchant_id":"m1","charge_id":"c%d","amount":700,"amount":7,"currency":"KRW","order_name":"o","customer":{"phone":"01012345678","name":"K"}}`,
		`{"merchant_id":"m1","charge_id":"c%d","Amount":700,"currency":"KRW","order_name":"o","customer":{"phone":"01012345678","name":"K"}}`,
		`{"merchant_id":"m1","charge_id":"c%d","amount":700,"currency":"KRW","order_name":"o","customer":{"phone":"01012345678","phone":"01099998888","name":"K"}}`,
	} {
		ev := fmt.Sprintf(`{"specversion":"1.0","id":"amb-%d","source":"test","type":"payment.charge.requested","datacontenttype":"application/json","data":`+body+`}`, i, i)
		e.handle([]byte(ev))
	}
	res := e.results()
	if len(res) != 4 {
		t.Fatalf("results = %v", res)
	}
	for _, r := range res {
		if r["type"] != events.TypeRejected || data(r)["reason"] != "invalid" {
			t.Fatalf("an ambiguous request was not rejected invalid: %v", r)
		}
	}
	if n := e.pg.count("kakao_bill"); n != 0 {
		t.Fatalf("%d bills placed for ambiguous requests", n)
	}
}

package events_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/payflow/payflow/events"
	"github.com/payflow/payflow/internal/strictjson"
	"github.com/payflow/payflow/payflow"
)

// validates reports whether payflow's own checks, which ran alone before
// the schemas, accept a request's data: strict decoding and the money
// rules.
func validates(typ string, data []byte) bool {
	switch typ {
	case events.TypeChargeRequested:
		var d events.ChargeRequested
		if strictjson.Decode(data, &d) != nil {
			return false
		}
		r := payflow.ChargeRequest{MerchantID: d.MerchantID, ChargeID: d.ChargeID, Amount: d.Amount, Currency: d.Currency,
			OrderName: d.OrderName, Customer: payflow.Customer{MemberID: d.Customer.MemberID, Phone: d.Customer.Phone, Name: d.Customer.Name}}
		return r.Validate() == nil
	case events.TypeRefundRequested:
		var d events.RefundRequested
		if strictjson.Decode(data, &d) != nil {
			return false
		}
		r := payflow.RefundRequest{MerchantID: d.MerchantID, ChargeID: d.ChargeID, RefundID: d.RefundID, Amount: d.Amount, Reason: d.Reason}
		return r.Validate() == nil
	case events.TypeRepayRequested:
		var d events.RepayRequested
		if strictjson.Decode(data, &d) != nil {
			return false
		}
		r := payflow.RepayRequest{MerchantID: d.MerchantID, ChargeID: d.ChargeID, RepayID: d.RepayID, Amount: d.Amount}
		return r.Validate() == nil
	case events.TypeCancelRequested:
		var d events.CancelRequested
		if strictjson.Decode(data, &d) != nil {
			return false
		}
		r := payflow.CancelRequest{MerchantID: d.MerchantID, ChargeID: d.ChargeID, Reason: d.Reason}
		return r.Validate() == nil
	}
	return false
}

// The schemas reject no request data that payflow's own checks accept:
// putting them in front changed which requests are executed only in
// what they add to the detail of a rejection. (Where they are looser,
// as in counting characters where payflow counts bytes, payflow's checks
// still follow them.)
func FuzzSchemaRejectsNothingValidateAccepts(f *testing.F) {
	files, _ := filepath.Glob("testdata/requests/*.json")
	invalid, _ := filepath.Glob("testdata/requests/invalid/*.json")
	for _, file := range append(files, invalid...) {
		b, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		var ev struct {
			Type string
			Data json.RawMessage
		}
		if err := json.Unmarshal(b, &ev); err != nil {
			f.Fatal(err)
		}
		f.Add(ev.Type, []byte(ev.Data))
	}
	for _, s := range []struct{ typ, data string }{
		{events.TypeChargeRequested, `{"merchant_id":"m","charge_id":"c","amount":1,"currency":"KRW","order_name":"\u3000x","customer":{"phone":" 0-1-0 1234 5678 -","member_id":""}}`},
		{events.TypeChargeRequested, `{"merchant_id":"m","charge_id":"c","amount":1,"currency":"KRW","order_name":"x","customer":{"phone":"+1 2345678"}}`},
		{events.TypeChargeRequested, `{"merchant_id":"m","charge_id":"c","amount":1,"currency":"KRW","order_name":"x","customer":{"phone":"+123456789012345","name":"\u0007"}}`},
		{events.TypeChargeRequested, `{"merchant_id":"m\u00a0","charge_id":"c\u0085","amount":1e2,"currency":"KRW","order_name":"x","customer":{"phone":"0101234567"}}`},
		{events.TypeRefundRequested, `{"merchant_id":"m","charge_id":"c","refund_id":"Repay:1","amount":100000000,"reason":null}`},
		{events.TypeRepayRequested, `{"merchant_id":"m","charge_id":"c","repay_id":"r","amount":null}`},
		{events.TypeCancelRequested, `{"merchant_id":"m","charge_id":"c"}`},
	} {
		f.Add(s.typ, []byte(s.data))
	}
	f.Fuzz(func(t *testing.T, typ string, data []byte) {
		if events.DataSchema(typ) == nil || !json.Valid(data) {
			return
		}
		if validates(typ, data) {
			if err := events.ValidateData(typ, data); err != nil {
				t.Fatalf("%s %s: payflow accepts it, the schema says %v", typ, data, err)
			}
		}
	})
}

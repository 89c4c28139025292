package worker_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/payflow/payflow/events"
	"github.com/payflow/payflow/worker"
)

// The schemas refuse no request data that payflow's own checks accept.
// The pipeline holds data to its schema only once the checks refused it
// (check), so this is what makes that the same as holding it to the schema
// first: the same requests are executed, and a rejection quotes the
// schema's rule whenever the data breaks one. (Where the schemas are
// looser, as in counting characters where payflow counts bytes, payflow's
// checks still refuse.)
func FuzzSchemaRefusesNothingTheChecksAccept(f *testing.F) {
	files, _ := filepath.Glob("../events/testdata/requests/*.json")
	invalid, _ := filepath.Glob("../events/testdata/requests/invalid/*.json")
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
		if worker.ChecksAccept(typ, data) {
			if err := events.ValidateData(typ, data); err != nil {
				t.Fatalf("%s %s: payflow's checks accept it, the schema says %v", typ, data, err)
			}
		}
	})
}

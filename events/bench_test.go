package events_test

import (
	"testing"
	"time"

	"github.com/payflow/payflow/events"
	"github.com/payflow/payflow/internal/strictjson"
)

var request = []byte(`{"specversion":"1.0","id":"6f1c1d9e-2c1a-4f9e-9a7e-0d7b1f8c2a11","source":"shop","type":"payment.charge.requested",
"subject":"c-1","time":"2026-11-25T00:00:00.000Z","datacontenttype":"application/json","data":{"merchant_id":"m","charge_id":"c-1",
"amount":15000,"currency":"KRW","order_name":"coffee beans","customer":{"member_id":"m-1","phone":"010-1234-5678","name":"Kim"}}}`)

func BenchmarkDecode(b *testing.B) {
	b.SetBytes(int64(len(request)))
	for b.Loop() {
		if _, err := events.Decode(request); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecodeRequest is a request's decoding as the worker does it:
// the envelope, then the data, strictly; with its schema in front
// (schema) or without (strict only, as before the schemas).
func BenchmarkDecodeRequest(b *testing.B) {
	for _, withSchema := range []bool{false, true} {
		name := "strict"
		if withSchema {
			name = "schema+strict"
		}
		b.Run(name, func(b *testing.B) {
			b.SetBytes(int64(len(request)))
			for b.Loop() {
				env, err := events.Decode(request)
				if err != nil {
					b.Fatal(err)
				}
				if withSchema {
					if err := events.ValidateData(env.Type, env.Data); err != nil {
						b.Fatal(err)
					}
				}
				var d events.ChargeRequested
				if err := strictjson.Decode(env.Data, &d); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkEncode(b *testing.B) {
	at := time.Now()
	d := events.ChargeProcessed{MerchantID: "m", ChargeID: "c-1", BillID: "01a2118e-884f-7df2-86f4-0c2003a3a31d", Method: "auto_pay"}
	for b.Loop() {
		if _, err := events.Encode(events.ID("bill", d.BillID, "processed"), events.TypeChargeProcessed, d.ChargeID, at, d); err != nil {
			b.Fatal(err)
		}
	}
}

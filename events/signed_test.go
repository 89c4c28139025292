package events_test

import (
	"errors"
	"testing"

	"github.com/payflow/payflow/events"
)

// A signature covers the bytes the producer sent, so the envelope must
// carry them as sent: data with its spacing, key order and escapes, and
// the time attribute as written, not re-formatted.
func TestSignedEnvelopeCarriesTheBytesAsSent(t *testing.T) {
	data := `{ "merchant_id" : "m1",  "charge_id":"c\u0031", "amount":1000 }`
	v := []byte(`{"specversion":"1.0","id":"e1","source":"shop","type":"payment.charge.requested",
		"time":"2024-05-01T19:00:00.120+09:00","datacontenttype":"application/json",
		"payflowsig":"v1,AAAA v1,BBBB","data":   ` + data + `  }`)
	env, err := events.Decode(v)
	if err != nil {
		t.Fatal(err)
	}
	if string(env.Data) != data {
		t.Fatalf("data = %s, want the bytes as sent %s", env.Data, data)
	}
	if env.TimeText != "2024-05-01T19:00:00.120+09:00" {
		t.Fatalf("time text = %q", env.TimeText)
	}
	if env.Signature != "v1,AAAA v1,BBBB" {
		t.Fatalf("signature = %q", env.Signature)
	}
}

func TestSignedEnvelopeWithoutSignatureOrTime(t *testing.T) {
	v := []byte(`{"specversion":"1.0","id":"e1","source":"shop","type":"payment.charge.requested","payflowsig":12,"data":{"a":1}}`)
	env, err := events.Decode(v)
	if err != nil {
		t.Fatal(err)
	}
	if env.Signature != "" || env.TimeText != "" {
		t.Fatalf("signature %q time %q, want both empty", env.Signature, env.TimeText)
	}
}

// With both, a parser taking the last one could execute other bytes than
// the signature covers.
func TestSignedEnvelopeRefusesDataAndDataBase64Together(t *testing.T) {
	for _, v := range []string{
		`{"specversion":"1.0","id":"e1","source":"s","type":"payment.charge.requested","data":{"amount":1},"data_base64":"eyJhbW91bnQiOjJ9"}`,
		`{"specversion":"1.0","id":"e1","source":"s","type":"payment.charge.requested","data_base64":"eyJhbW91bnQiOjJ9","data":{"amount":1}}`,
	} {
		if _, err := events.Decode([]byte(v)); !errors.Is(err, events.ErrUnparseable) {
			t.Fatalf("Decode(%s) = %v, want unparseable", v, err)
		}
	}
}

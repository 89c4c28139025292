package events_test

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/payflow/payflow/events"
)

const chargeData = `{"merchant_id":"m","charge_id":"c1","amount":100,"currency":"KRW","order_name":"coffee","customer":{"phone":"010-1234-5678"}}`

// binaryHeaders are the headers of chargeData's event in binary mode.
func binaryHeaders() []events.Header {
	return []events.Header{
		{Key: "ce_specversion", Value: []byte("1.0")},
		{Key: "ce_id", Value: []byte("e1")},
		{Key: "ce_source", Value: []byte("shop")},
		{Key: "ce_type", Value: []byte(events.TypeChargeRequested)},
		{Key: "ce_subject", Value: []byte("c1")},
		{Key: "ce_time", Value: []byte("2026-11-25T00:00:00.000Z")},
		{Key: "ce_payflowsig", Value: []byte("v1,c2lnbmF0dXJl")},
		{Key: "content-type", Value: []byte("application/json")},
		{Key: "traceparent", Value: []byte("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")},
	}
}

// The structured equivalent of binaryHeaders with chargeData.
const structuredCharge = `{"specversion":"1.0","id":"e1","source":"shop","type":"payment.charge.requested","subject":"c1",` +
	`"time":"2026-11-25T00:00:00.000Z","payflowsig":"v1,c2lnbmF0dXJl","datacontenttype":"application/json","data":` + chargeData + `}`

func TestBinaryModeDecodesLikeStructuredMode(t *testing.T) {
	want, err := events.Decode([]byte(structuredCharge))
	if err != nil {
		t.Fatal(err)
	}
	got, err := events.DecodeMessage([]byte(chargeData), binaryHeaders())
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("binary mode = %+v\nstructured  = %+v", got, want)
	}
	if string(got.Data) != chargeData {
		t.Fatalf("data = %s, want the value's bytes unchanged", got.Data)
	}

	// Header names are case-insensitive, as in the SDK's Kafka bindings;
	// content-type is optional (absent means JSON).
	var upper []events.Header
	for _, h := range binaryHeaders() {
		if h.Key != "content-type" {
			upper = append(upper, events.Header{Key: strings.ToUpper(h.Key), Value: h.Value})
		}
	}
	if got, err := events.DecodeMessage([]byte(chargeData), upper); err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("upper-case headers: %+v, %v", got, err)
	}
}

func TestStructuredModeIsReadAsBefore(t *testing.T) {
	want, _ := events.Decode([]byte(structuredCharge))
	for name, headers := range map[string][]events.Header{
		"no headers":   nil,
		"content-type": {{Key: "content-type", Value: []byte(events.ContentType)}},
		"with charset": {{Key: "Content-Type", Value: []byte("application/cloudevents+json; charset=UTF-8")}},
		// The content type decides: ce_ headers beside a structured event
		// are not the event's.
		"stray ce_ header": {{Key: "content-type", Value: []byte(events.ContentType)}, {Key: "ce_id", Value: []byte("other")}},
		"other headers":    {{Key: "traceparent", Value: []byte("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")}},
	} {
		got, err := events.DecodeMessage([]byte(structuredCharge), headers)
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("%s: %+v, %v", name, got, err)
		}
		if events.Binary(headers) {
			t.Errorf("%s: read as binary mode", name)
		}
	}
}

func TestBinaryModeRejectsWhatIsNotARequest(t *testing.T) {
	without := func(key string) []events.Header {
		var hs []events.Header
		for _, h := range binaryHeaders() {
			if h.Key != key {
				hs = append(hs, h)
			}
		}
		return hs
	}
	with := func(key, value string) []events.Header {
		hs := without(key)
		return append(hs, events.Header{Key: key, Value: []byte(value)})
	}
	plus := func(key, value string) []events.Header {
		return append(binaryHeaders(), events.Header{Key: key, Value: []byte(value)})
	}
	const secret = "01012345678"
	cases := map[string]struct {
		value   string
		headers []events.Header
	}{
		"no ce_id":                            {chargeData, without("ce_id")},
		"no ce_source":                        {chargeData, without("ce_source")},
		"no ce_type":                          {chargeData, without("ce_type")},
		"no ce_specversion":                   {chargeData, without("ce_specversion")},
		"empty ce_id":                         {chargeData, with("ce_id", "")},
		"unknown specversion":                 {chargeData, with("ce_specversion", "9.9")},
		"not a request type":                  {chargeData, with("ce_type", events.TypeSettled)},
		"bad time":                            {chargeData, with("ce_time", secret)},
		"NUL in id":                           {chargeData, with("ce_id", "e1\x00"+secret)},
		"control char in source":              {chargeData, with("ce_source", "shop\n"+secret)},
		"invalid UTF-8 subject":               {chargeData, with("ce_subject", "c1\xff")},
		"long id":                             {chargeData, with("ce_id", strings.Repeat("x", events.MaxAttributeLen+1))},
		"long extension":                      {chargeData, with("ce_payflowsig", strings.Repeat("x", events.MaxExtensionLen+1))},
		"NUL in extension":                    {chargeData, with("ce_payflowsig", "v1,\x00")},
		"bad extension name":                  {chargeData, plus("ce_pay-flow", "x")},
		"empty extension name":                {chargeData, plus("ce_", "x")},
		"ce_data":                             {chargeData, plus("ce_data", "{}")},
		"ce_id twice":                         {chargeData, plus("ce_id", "e2")},
		"ce_id twice, any case":               {chargeData, plus("CE_ID", "e1")},
		"extension twice":                     {chargeData, plus("ce_payflowsig", "v1,b3RoZXI=")},
		"content-type twice":                  {chargeData, plus("Content-Type", "application/json")},
		"content-type and ce_datacontenttype": {chargeData, plus("ce_datacontenttype", "application/json")},
		"xml data":                            {"<a/>", with("content-type", "application/xml")},
		"not JSON":                            {"{" + secret, binaryHeaders()},
		"no data":                             {"", binaryHeaders()},
		"too large":                           {`"` + strings.Repeat("x", events.MaxEventSize) + `"`, binaryHeaders()},
		"headers too large": {chargeData, append(binaryHeaders(), func() []events.Header {
			var hs []events.Header
			for i := range 100 {
				hs = append(hs, events.Header{Key: "ce_x" + strings.Repeat("a", i%10) + string(rune('a'+i%26)) + string(rune('a'+i/26)), Value: []byte(strings.Repeat("y", 1000))})
			}
			return hs
		}()...)},
	}
	for name, c := range cases {
		_, err := events.DecodeMessage([]byte(c.value), c.headers)
		if !errors.Is(err, events.ErrUnparseable) {
			t.Errorf("%s: err = %v, want ErrUnparseable", name, err)
			continue
		}
		t.Logf("%s: %v", name, err)
		// Errors go to logs and dead-letter headers: they quote nothing.
		if strings.Contains(err.Error(), secret) || strings.Contains(err.Error(), "pay-flow") {
			t.Errorf("%s: error quotes the input: %v", name, err)
		}
	}
}

// A binary-mode message is refused (ErrUnparseable) or read into an
// envelope as safe as a structured one's, whatever its headers and value
// hold. Decode checks the structured rendering; this holds the rendering
// itself (escaping header values into JSON) to it.
func FuzzDecodeMessage(f *testing.F) {
	f.Add("e1", "shop", events.TypeChargeRequested, "c1", "application/json", []byte(chargeData))
	f.Add("e\x001", "shop", events.TypeRefundRequested, "c\xff", "application/json; charset=utf-8", []byte(`{"a":1}`))
	f.Add("<e&1>", `sh"op\`, events.TypeCancelRequested, "\u2028", events.ContentType, []byte(structuredCharge))
	f.Add("", "", "", "", "", []byte(``))
	f.Fuzz(func(t *testing.T, id, source, typ, subject, contentType string, value []byte) {
		headers := []events.Header{
			{Key: "ce_specversion", Value: []byte("1.0")},
			{Key: "ce_id", Value: []byte(id)},
			{Key: "ce_source", Value: []byte(source)},
			{Key: "ce_type", Value: []byte(typ)},
			{Key: "ce_subject", Value: []byte(subject)},
			{Key: "content-type", Value: []byte(contentType)},
		}
		env, err := events.DecodeMessage(value, headers)
		if err != nil {
			if !errors.Is(err, events.ErrUnparseable) {
				t.Fatalf("error does not wrap ErrUnparseable: %v", err)
			}
			return
		}
		checkAccepted(t, env)
	})
}

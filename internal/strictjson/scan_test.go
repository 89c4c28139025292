package strictjson

import (
	"encoding/json"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"
)

type scanInner struct {
	MemberID string `json:"member_id,omitempty"`
	Phone    string `json:"phone"`
}

type scanEmbedded struct {
	Deep string `json:"deep"`
	X    int    `json:"x"`
}

type scanEmbeddedPtr struct {
	Inner string `json:"inner"`
}

// valueUnmarshaler decodes itself through a value receiver.
type valueUnmarshaler struct{}

func (valueUnmarshaler) UnmarshalJSON([]byte) error { return nil }

// scanDoc has what the walks treat specially: nested structs, maps,
// slices, arrays, interfaces, pointers, ",string", custom decoders (at the
// top and inside), embedded fields, untagged fields and a non-ASCII tag.
type scanDoc struct {
	scanEmbedded
	*scanEmbeddedPtr
	Amount   int64                `json:"amount"`
	Count    int                  `json:"count,string"`
	Customer *scanInner           `json:"customer"`
	Items    []scanInner          `json:"items"`
	Pair     [2]scanInner         `json:"pair"`
	Labels   map[string]scanInner `json:"labels"`
	Any      any                  `json:"any"`
	When     *time.Time           `json:"when"`
	Times    []time.Time          `json:"times"`
	Raw      json.RawMessage      `json:"raw"`
	Untagged string
	Accent   string                   `json:"émoji"`
	Number   json.Number              `json:"number"`
	Addr     netip.Addr               `json:"addr"` // encoding.TextUnmarshaler
	Value    valueUnmarshaler         `json:"value"`
	ByAddr   map[netip.Addr]scanInner `json:"by_addr"`
	ByInt    map[int]scanInner        `json:"by_int"`
	Quoted   *int                     `json:"quoted,string"`
	Kelvin   string                   `json:"k"`
}

var scanTargets = []reflect.Type{
	reflect.TypeFor[scanDoc](),
	reflect.TypeFor[any](),
	reflect.TypeFor[map[string]scanDoc](),
	reflect.TypeFor[[]scanDoc](),
	reflect.TypeFor[time.Time](),
}

var scanSeeds = []string{
	`{"amount":5000,"count":"7","customer":{"member_id":"m","phone":"010"},"items":[{"phone":"1"},{"phone":"2","phone":"3"}],
	  "pair":[{"phone":"a"},{"PHONE":"b"}],"labels":{"a":{"phone":"x"},"A":{"Phone":"y"}},"any":{"k":[1,"x",null,{"z":false,"z":true}]},
	  "when":"2026-11-25T00:00:00Z","times":["2026-11-25T00:00:00Z",{"a":1,"a":2}],"raw":{"r":1,"r":2},"Untagged":"u","émoji":"e","deep":"d","x":1}`,
	`{"amount":700,"AMOUNT":-7}`,
	`{"amount":700,"amount":-7}`,
	`{"\u0061mount":1,"amount":2}`,
	`{"a\ud800":1,"a\udbff":2}`,
	"{\"a\xff\":1,\"a\xfe\":2}",
	`{"ÉMOJI":"e"}`,
	`{"émoji":"e","\u00e9moji":"f"}`,
	`{"customer":null,"when":null,"items":null,"any":null,"times":[null]}`,
	`{"when":"yesterday"}`,
	`{"when":{"x":1,"x":2}}`,
	`{"times":[1,"2026-11-25T00:00:00Z"],"unknown":{"q":[{"r":1,"r":1}]}}`,
	`{"customer":{"phone":"0"},"customer":{}}`,
	`{"": 1, "":2}`,
	` [ {"x" : 1 , "X" : 2 } , [ ] , { } ] `,
	`[{"deep":"\"}\\","Deep":1}]`,
	`{"x":{"amount":1},"y":{"amount":1,"Amount":2}}`,
	`"2026-11-25T00:00:00Z"`,
	`null`,
	`12.5e-3`,
	`true`,
	`{"number":1e999,"addr":"::1","value":{"a":1,"a":2},"by_addr":{"::1":{"phone":"1"},"::1":{}},"by_int":{"1":{},"01":{"PHONE":"x"}},
	  "quoted":"7","inner":"i","K":"kelvin","\u212a":"k"}`,
	`{"addr":{"x":[1,{"y":1,"y":2}]},"number":"12"}`,
}

// The scan over a valid document's bytes finds the same first error as the
// token walk, for every target and option: the scan is the walk, faster.
func FuzzScanAgreesWithWalk(f *testing.F) {
	for _, s := range scanSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		scanAgrees(t, data)
	})
}

func TestScanAgreesWithWalk(t *testing.T) {
	for _, s := range scanSeeds {
		if !json.Valid([]byte(s)) {
			t.Fatalf("seed %q is not valid JSON", s)
		}
		scanAgrees(t, []byte(s))
	}
}

// Nesting up to encoding/json's limit, inside values that decode
// themselves too: the scan, which has no depth limit of its own, agrees
// with the walk, which has one.
func TestScanAgreesWithWalkAtTheNestingLimit(t *testing.T) {
	const limit = 10000
	for _, doc := range []string{
		strings.Repeat("[", limit) + strings.Repeat("]", limit),
		`{"raw":` + strings.Repeat("[", limit-1) + strings.Repeat("]", limit-1) + `}`,
		`{"when":` + strings.Repeat(`{"a":`, limit-1) + "1" + strings.Repeat("}", limit-1) + `}`,
		`{"any":` + strings.Repeat(`{"a":`, limit-2) + `{"b":1,"b":2}` + strings.Repeat("}", limit-2) + `}`,
	} {
		if !json.Valid([]byte(doc)) {
			t.Fatalf("a document %d deep is not valid JSON", limit)
		}
		scanAgrees(t, []byte(doc))
	}
	deeper := strings.Repeat("[", limit+1) + strings.Repeat("]", limit+1)
	if json.Valid([]byte(deeper)) {
		t.Fatal("json.Valid accepts a document deeper than the walk's limit: the scan would need a limit of its own")
	}
}

func scanAgrees(t *testing.T, data []byte) {
	t.Helper()
	if !json.Valid(data) {
		return
	}
	for _, typ := range scanTargets {
		for _, c := range []config{{}, {rejectUnknown: true}} {
			s := &scanner{data: data, cfg: c}
			got := s.value(typ, "")
			want := walkTokens(data, typ, c)
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("%q into %v (%+v): scan %v, walk %v", data, typ, c, got, want)
			}
			if got == nil {
				if s.space(); s.pos != len(data) {
					t.Fatalf("%q into %v: the scan stopped at byte %d of %d", data, typ, s.pos, len(data))
				}
			}
		}
	}
}

type benchCustomer struct {
	MemberID string `json:"member_id,omitempty"`
	Phone    string `json:"phone"`
	Name     string `json:"name"`
}

type benchRequest struct {
	MerchantID string        `json:"merchant_id"`
	ChargeID   string        `json:"charge_id"`
	Amount     int64         `json:"amount"`
	Currency   string        `json:"currency"`
	OrderName  string        `json:"order_name"`
	Customer   benchCustomer `json:"customer"`
}

var benchData = []byte(`{"merchant_id":"m","charge_id":"c-1","amount":15000,"currency":"KRW","order_name":"coffee beans",
"customer":{"member_id":"m-1","phone":"010-1234-5678","name":"Kim"}}`)

// BenchmarkWalk compares the two walks of a charge request's data, side by
// side, and Decode as a whole (the walk, then encoding/json).
func BenchmarkWalk(b *testing.B) {
	typ := reflect.TypeFor[benchRequest]()
	b.Run("tokens", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if err := walkTokens(benchData, typ, config{}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("scan", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if err := walk(benchData, typ, config{}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("decode", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var v benchRequest
			if err := Decode(benchData, &v); err != nil {
				b.Fatal(err)
			}
		}
	})
}

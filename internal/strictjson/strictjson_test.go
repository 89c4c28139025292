package strictjson_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/payflow/payflow/internal/strictjson"
)

type customer struct {
	MemberID string `json:"member_id,omitempty"`
	Phone    string `json:"phone"`
}

type charge struct {
	MerchantID string   `json:"merchant_id"`
	Amount     int64    `json:"amount"`
	Customer   customer `json:"customer"`
	Tags       []string `json:"tags"`
}

func decodeErr(t *testing.T, doc string, v any, opts ...strictjson.Option) *strictjson.Error {
	t.Helper()
	err := strictjson.Decode([]byte(doc), v, opts...)
	if err == nil {
		t.Fatalf("%s: accepted", doc)
	}
	var se *strictjson.Error
	if !errors.As(err, &se) {
		t.Fatalf("%s: %T %v, want *strictjson.Error", doc, err, err)
	}
	return se
}

func TestDuplicateKeysAreRefusedAtAnyDepth(t *testing.T) {
	for _, c := range []struct{ doc, field string }{
		{`{"amount":700,"amount":-7}`, "amount"},
		{`{"amount":700,"\u0061mount":-7}`, "amount"},
		{`{"customer":{"phone":"01012345678","phone":"01099999999"}}`, "customer.phone"},
		{`{"tags":["a"],"customer":{},"tags":[]}`, "tags"},
		// Keys that name no field: skipped, but still one meaning only.
		{`{"extra":1,"extra":2}`, "extra"},
		{`{"extra":{"deep":[{"k":1,"k":2}]}}`, "extra.deep[0].k"},
		{`{"customer":{"note":{"x":1,"x":1}}}`, "customer.note.x"},
	} {
		var v charge
		se := decodeErr(t, c.doc, &v)
		if !errors.Is(se, strictjson.ErrDuplicateKey) || se.Field != c.field || se.Reason != "appears more than once" {
			t.Errorf("%s: %+v (%v), want a duplicate %s", c.doc, se, se, c.field)
		}
		if !reflect.DeepEqual(v, charge{}) {
			t.Errorf("%s: the target was written: %+v", c.doc, v)
		}
	}
	// Maps and interface values too.
	var m map[string]any
	if se := decodeErr(t, `{"a":{"b":[1,{"c":1,"c":1}]}}`, &m); se.Field != "a.b[1].c" || !errors.Is(se, strictjson.ErrDuplicateKey) {
		t.Errorf("map: %+v", se)
	}
	var a any
	if se := decodeErr(t, `[{"a":1,"a":1}]`, &a); se.Field != "[0].a" || !errors.Is(se, strictjson.ErrDuplicateKey) {
		t.Errorf("any: %+v", se)
	}
	// Inside values that decode themselves.
	var raw struct {
		R json.RawMessage `json:"r"`
		T time.Time       `json:"t"`
	}
	if se := decodeErr(t, `{"r":{"a":1,"a":2}}`, &raw); se.Field != "r.a" || !errors.Is(se, strictjson.ErrDuplicateKey) {
		t.Errorf("raw: %+v", se)
	}
	// Keys of a map differ by case: they are not duplicates.
	if err := strictjson.Decode([]byte(`{"a":1,"A":2}`), &m); err != nil || len(m) != 2 {
		t.Errorf("map keys in two cases: %v %v", m, err)
	}
}

func TestKeysMustMatchFieldNamesExactly(t *testing.T) {
	for _, c := range []struct{ doc, field string }{
		{`{"amount":700,"AMOUNT":-7}`, "amount"},
		{`{"Amount":700}`, "amount"},
		{`{"customer":{"Phone":"01012345678"}}`, "customer.phone"},
		{`{"merchant_ID":"m1"}`, "merchant_id"},
		{`{"tags":[],"TAGS":[]}`, "tags"},
		{`{"customer":{"member_id":"m","member_i\u0044":"n"}}`, "customer.member_id"},
	} {
		var v charge
		se := decodeErr(t, c.doc, &v)
		if !errors.Is(se, strictjson.ErrCaseMismatch) || se.Field != c.field {
			t.Errorf("%s: %+v (%v), want a case mismatch on %s", c.doc, se, se, c.field)
		}
	}
	// encoding/json folds the Kelvin sign to k and the long s to s.
	var k struct {
		Key string `json:"key"`
		Sum int    `json:"sum"`
	}
	for _, doc := range []string{`{"\u212Aey":"x"}`, `{"\u017Fum":1}`} {
		if se := decodeErr(t, doc, &k); !errors.Is(se, strictjson.ErrCaseMismatch) {
			t.Errorf("%s: %+v", doc, se)
		}
	}
	// Untagged fields are named by the Go field name, exactly.
	var u struct{ Label string }
	if err := strictjson.Decode([]byte(`{"Label":"x"}`), &u); err != nil || u.Label != "x" {
		t.Errorf("untagged: %+v %v", u, err)
	}
	if se := decodeErr(t, `{"label":"x"}`, &u); !errors.Is(se, strictjson.ErrCaseMismatch) || se.Field != "Label" {
		t.Errorf("untagged in another case: %+v", se)
	}
}

func TestUnknownFieldsAreAnOption(t *testing.T) {
	doc := []byte(`{"merchant_id":"m1","amount":5000,"customer":{"phone":"010","note":"x"},"source":{"app":"y"}}`)
	var v charge
	if err := strictjson.Decode(doc, &v); err != nil || v.MerchantID != "m1" || v.Amount != 5000 || v.Customer.Phone != "010" {
		t.Fatalf("unknown fields allowed: %+v %v", v, err)
	}
	se := decodeErr(t, string(doc), &charge{}, strictjson.RejectUnknownFields())
	if !errors.Is(se, strictjson.ErrUnknownField) || se.Field != "customer.note" || se.Reason != "is not a known field" {
		t.Fatalf("unknown fields refused: %+v", se)
	}
	// A map under the option still takes any key.
	var m struct {
		M map[string]int `json:"m"`
	}
	if err := strictjson.Decode([]byte(`{"m":{"anything":1}}`), &m, strictjson.RejectUnknownFields()); err != nil {
		t.Fatal(err)
	}
}

func TestErrorsNameTheFieldButNeverAValue(t *testing.T) {
	var when struct {
		At   time.Time  `json:"at"`
		Opt  *time.Time `json:"opt"`
		List []charge   `json:"list"`
	}
	for _, c := range []struct {
		doc   string
		v     any
		kind  error
		field string
	}{
		{`{"amount":"SECRET"}`, &charge{}, strictjson.ErrType, "amount"},
		{`{"amount":1e300}`, &charge{}, strictjson.ErrType, "amount"},
		{`{"amount":12.5}`, &charge{}, strictjson.ErrType, "amount"},
		{`{"customer":{"phone":99998888}}`, &charge{}, strictjson.ErrType, "customer.phone"},
		{`{"customer":"SECRET"}`, &charge{}, strictjson.ErrType, "customer"},
		{`{"tags":"SECRET"}`, &charge{}, strictjson.ErrType, "tags"},
		{`["SECRET"]`, &charge{}, strictjson.ErrType, ""},
		{`{"at":"SECRET"}`, &when, strictjson.ErrValue, "at"},
		{`{"opt":"SECRET"}`, &when, strictjson.ErrValue, "opt"},
		{`{"list":[{},{"amount":"SECRET"}]}`, &when, strictjson.ErrType, "list.amount"},
		{`{"SECRET":1}`, &charge{}, strictjson.ErrUnknownField, "SECRET"},
		{`{"amount":SECRET}`, &charge{}, strictjson.ErrSyntax, ""},
		{`{"amount":"SECRET`, &charge{}, strictjson.ErrSyntax, ""},
		{`{"amount":1}{"amount":2}`, &charge{}, strictjson.ErrSyntax, ""},
		{`{"amount":1} SECRET`, &charge{}, strictjson.ErrSyntax, ""},
		{`  `, &charge{}, strictjson.ErrSyntax, ""},
		{`{"amount":1,}`, &charge{}, strictjson.ErrSyntax, ""},
		{strings.Repeat("[", 10001) + strings.Repeat("]", 10001), new(any), strictjson.ErrSyntax, ""},
	} {
		se := decodeErr(t, c.doc, c.v, strictjson.RejectUnknownFields())
		if !errors.Is(se, c.kind) || se.Field != c.field || se.Reason == "" {
			t.Errorf("%.40s: %+v (%v), want %v on %q", c.doc, se, se, c.kind, c.field)
		}
		if strings.Contains(se.Reason, "SECRET") || strings.Contains(se.Reason, "9999") ||
			(c.kind != strictjson.ErrUnknownField && strings.Contains(se.Error(), "SECRET")) {
			t.Errorf("%s: the error repeats a value: %v", c.doc, se)
		}
	}
	// An empty key is named, not taken for the whole document.
	if se := decodeErr(t, `{"customer":{"":1,"":2}}`, &charge{}); se.Field != `customer.""` {
		t.Errorf("empty key: %+v", se)
	}
	if se := decodeErr(t, `{"":1,"":2}`, &charge{}); se.Field != `""` {
		t.Errorf("empty key: %+v", se)
	}
	// A long unknown key is not repeated whole.
	long := strings.Repeat("k", 500)
	if se := decodeErr(t, `{"`+long+`":1}`, &charge{}, strictjson.RejectUnknownFields()); len(se.Field) > 80 {
		t.Errorf("the error repeats a %d-byte key", len(se.Field))
	}
}

func TestNestingUpToEncodingJSONsLimitIsFine(t *testing.T) {
	doc := strings.Repeat("[", 10000) + strings.Repeat("]", 10000)
	var v any
	if err := strictjson.Decode([]byte(doc), &v); err != nil {
		t.Fatal(err)
	}
}

func TestInvalidTargets(t *testing.T) {
	var v charge
	for _, target := range []any{nil, v, (*charge)(nil)} {
		err := strictjson.Decode([]byte(`{}`), target)
		var inv *json.InvalidUnmarshalError
		if !errors.As(err, &inv) {
			t.Errorf("%T: %v", target, err)
		}
	}
}

// Embedded structs resolve names as encoding/json does: the shallower
// field wins, a tagged one beats an untagged one, a tie hides both, and an
// exact name is looked up before a folded one.
type (
	embA struct {
		X    int    `json:"x"`
		Name string `json:"name"`
		Deep string `json:"deep"`
	}
	EmbB struct {
		X int // "X": differs from embA's "x" only in case
		Y int
	}
	embC struct {
		Y int // ties with EmbB's Y: both hidden
	}
	outer struct {
		embA
		*EmbB
		embC
		Name string `json:"name"`
	}
)

func TestEmbeddedFieldsFollowEncodingJSON(t *testing.T) {
	for _, doc := range []string{`{"name":"n","deep":"d","x":1,"X":2}`, `{"X":2}`, `{"x":1}`} {
		var got, want outer
		err := strictjson.Decode([]byte(doc), &got)
		werr := json.Unmarshal([]byte(doc), &want)
		if err != nil || werr != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("%s: %+v %v, encoding/json %+v %v", doc, got, err, want, werr)
		}
	}
	// Y is hidden, so under the option it is unknown.
	if se := decodeErr(t, `{"Y":1}`, &outer{}, strictjson.RejectUnknownFields()); !errors.Is(se, strictjson.ErrUnknownField) {
		t.Errorf("hidden field: %+v", se)
	}
	if se := decodeErr(t, `{"DEEP":"d"}`, &outer{}); !errors.Is(se, strictjson.ErrCaseMismatch) || se.Field != "deep" {
		t.Errorf("promoted field in another case: %+v", se)
	}
}

// Everything without duplicate keys or case variants decodes exactly as
// encoding/json decodes it.
func TestAgreesWithEncodingJSON(t *testing.T) {
	for _, doc := range fuzzSeeds {
		compare(t, []byte(doc))
	}
}

// fuzzDoc exercises what Decode treats specially: nested structs, maps,
// slices, interfaces, pointers, ",string", custom decoders, embedded
// fields with hidden names, untagged fields and a non-ASCII tag.
type fuzzDoc struct {
	embA
	*EmbB
	embC
	Amount   int64             `json:"amount"`
	Name     string            `json:"name"`
	Flag     bool              `json:"flag"`
	Ratio    float64           `json:"ratio"`
	Count    int               `json:"count,string"`
	Customer *customer         `json:"customer"`
	Items    []charge          `json:"items"`
	Pair     [2]int            `json:"pair"`
	Labels   map[string]string `json:"labels"`
	Any      any               `json:"any"`
	When     *time.Time        `json:"when"`
	Raw      json.RawMessage   `json:"raw"`
	Num      json.Number       `json:"num"`
	Bytes    []byte            `json:"bytes"`
	Untagged string
	Accent   string `json:"émoji"`
	Skipped  string `json:"-"`
}

var fuzzSeeds = []string{
	`{"amount":5000,"name":"n","flag":true,"ratio":0.5,"count":"7","customer":{"member_id":"m","phone":"010"},
	  "items":[{"merchant_id":"m1","amount":1,"tags":["a"]}],"pair":[1,2],"labels":{"a":"b","A":"c"},
	  "any":{"k":[1,"x",null,{"z":false}]},"when":"2026-11-25T00:00:00Z","raw":{"r":1},"num":1e400,
	  "bytes":"AAE=","Untagged":"u","émoji":"e","deep":"d","x":1,"X":2,"Y":2,"extra":{"anything":[1]}}`,
	`{"amount":700,"AMOUNT":-7}`,
	`{"amount":700,"amount":-7}`,
	`{"customer":null,"when":null,"items":null,"any":null}`,
	`{"x":1,"name":"outer"}`,
	`{"count":7}`,
	`{"when":"yesterday"}`,
	`{"amount":1.5}`,
	`{"ÉMOJI":"e"}`,
	`[1,2]`,
	`"just a string"`,
	`null`,
	`{"amount":1} {}`,
	`{"a":`,
	``,
}

func FuzzDecode(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		compare(t, data)
	})
}

// compare decodes data with Decode and with encoding/json, with and without
// refusing unknown fields, and checks that they agree unless data holds a
// duplicate key or a key that folds to a field name it does not equal.
func compare(t *testing.T, data []byte) {
	t.Helper()
	for _, reject := range []bool{false, true} {
		var got, want fuzzDoc
		var opts []strictjson.Option
		dec := json.NewDecoder(bytes.NewReader(data))
		if reject {
			opts = append(opts, strictjson.RejectUnknownFields())
			dec.DisallowUnknownFields()
		}
		err := strictjson.Decode(data, &got, opts...)
		werr := dec.Decode(&want)
		if werr == nil && !json.Valid(data) {
			werr = errors.New("trailing data")
		}
		var se *strictjson.Error
		if err != nil && !errors.As(err, &se) {
			t.Fatalf("%q: %T %v", data, err, err)
		}
		dup, caseVariant := ambiguities(data)
		switch {
		case se != nil && errors.Is(se, strictjson.ErrDuplicateKey):
			if !dup {
				t.Fatalf("%q: duplicate key reported, but there is none: %v", data, se)
			}
		case se != nil && errors.Is(se, strictjson.ErrText):
			if !badTextAt(data, se.Reason) {
				t.Fatalf("%q: invalid text reported where there is none: %v", data, se)
			}
		case se != nil && errors.Is(se, strictjson.ErrCaseMismatch):
			if !caseVariant {
				t.Fatalf("%q: case mismatch reported, but no key folds to a field name: %v", data, se)
			}
		case dup || caseVariant:
			// encoding/json reads these its own lax way: no comparison.
		case (err == nil) != (werr == nil):
			t.Fatalf("%q (reject unknown %v): strictjson %v, encoding/json %v", data, reject, err, werr)
		case err == nil && !reflect.DeepEqual(got, want):
			t.Fatalf("%q: strictjson %+v, encoding/json %+v", data, got, want)
		}
		if err != nil && (strings.Contains(se.Reason, `"`) || len(se.Field) > 4*len(data)+8) {
			t.Fatalf("%q: error %q", data, se)
		}
	}
}

// badTextAt says whether the offset reason names (as "at byte N") is the
// start of a byte sequence that is not UTF-8, or of a real \u escape (one
// not itself escaped) of a surrogate half.
func badTextAt(data []byte, reason string) bool {
	_, after, ok := strings.Cut(reason, "at byte ")
	if !ok {
		return false
	}
	at, err := strconv.Atoi(strings.TrimSuffix(after, ")"))
	if err != nil || at < 0 || at >= len(data) {
		return false
	}
	if r, size := utf8.DecodeRune(data[at:]); r == utf8.RuneError && size == 1 {
		return true
	}
	slashes := 0
	for i := at - 1; i >= 0 && data[i] == '\\'; i-- {
		slashes++
	}
	if slashes%2 != 0 || at+6 > len(data) || data[at] != '\\' || data[at+1] != 'u' {
		return false
	}
	r, err := strconv.ParseUint(string(data[at+2:at+6]), 16, 32)
	return err == nil && r >= 0xD800 && r <= 0xDFFF
}

// Text is refused unless it is valid UTF-8 (found by review: encoding/json
// reads a stray byte, or an escape of half a surrogate pair, as U+FFFD, so
// "order\xffname" was stored as "order\uFFFDname", and two documents that
// differ there were one request). Whole pairs, escaped backslashes and
// UTF-8 beyond ASCII are text like any other.
func TestTextMustBeValidUTF8(t *testing.T) {
	for _, doc := range []string{
		"{\"name\":\"order\xffname\"}",
		"{\"na\xfeme\":\"x\"}",
		"{\"unknown\":[\"\xc3\"]}",
		`{"name":"\ud800"}`,
		`{"name":"\udc00"}`,
		`{"name":"\ud800\u0041"}`,
		`{"name":"\uD83D"}`,
	} {
		var v fuzzDoc
		if se := decodeErr(t, doc, &v); !errors.Is(se, strictjson.ErrText) || !badTextAt([]byte(doc), se.Reason) {
			t.Errorf("%q: %v, want invalid text where it is", doc, se)
		}
	}
	var v fuzzDoc
	if err := strictjson.Decode([]byte("{\"name\":\"order\xffname\"}"), &v, strictjson.ReplaceInvalidText()); err != nil || v.Name != "order\uFFFDname" {
		t.Errorf("with ReplaceInvalidText: %q, %v", v.Name, err)
	}
	for _, doc := range []string{`{"name":"\ud83d\ude00"}`, `{"name":"\\ud800"}`, `{"name":"é 한글"}`, `{"name":"\u00e9"}`} {
		var v fuzzDoc
		if err := strictjson.Decode([]byte(doc), &v); err != nil {
			t.Errorf("%q: %v", doc, err)
		}
	}
}

// ambiguities says whether any object in data holds a key twice, and
// whether any key differs from a name fuzzDoc's structs use but folds to
// it (in encoding/json's sense, via strings.EqualFold). It knows nothing
// of which struct an object decodes into, so it over-approximates.
func ambiguities(data []byte) (dup, caseVariant bool) {
	names := map[string]bool{}
	var collect func(reflect.Type)
	collect = func(t reflect.Type) {
		for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice || t.Kind() == reflect.Array || t.Kind() == reflect.Map {
			t = t.Elem()
		}
		if t.Kind() != reflect.Struct || t == reflect.TypeFor[time.Time]() {
			return
		}
		for i := range t.NumField() {
			f := t.Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			if name == "" {
				name = f.Name
			}
			names[name] = true
			collect(f.Type)
		}
	}
	collect(reflect.TypeFor[fuzzDoc]())
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	type frame struct {
		keys   map[string]bool
		object bool
		key    bool // the next token in this object is a key
	}
	var frames []*frame
	for {
		tok, err := dec.Token()
		if err != nil {
			return dup, caseVariant
		}
		var top *frame
		if len(frames) > 0 {
			top = frames[len(frames)-1]
		}
		if top != nil && top.object && top.key {
			if k, ok := tok.(string); ok {
				if top.keys[k] {
					dup = true
				}
				top.keys[k] = true
				if !names[k] {
					for n := range names {
						if strings.EqualFold(n, k) {
							caseVariant = true
						}
					}
				}
				top.key = false
				continue
			}
		}
		if top != nil && top.object {
			top.key = true // after this value, a key
		}
		switch tok {
		case json.Delim('{'):
			frames = append(frames, &frame{keys: map[string]bool{}, object: true, key: true})
		case json.Delim('['):
			frames = append(frames, &frame{})
		case json.Delim('}'), json.Delim(']'):
			frames = frames[:len(frames)-1]
			if len(frames) > 0 && frames[len(frames)-1].object {
				frames[len(frames)-1].key = true
			}
		}
	}
}

// Package strictjson owns how payflow reads JSON that comes from outside:
// API bodies, PG callbacks and the data of request events. Every reader of
// such a document must see the same values, whatever JSON library it uses.
// encoding/json alone does not guarantee that: it matches object keys to
// struct fields case-insensitively and lets the last of duplicate keys
// win, so {"amount":700,"AMOUNT":-7} is -7 to payflow and may be 700 to a
// validator in front of it.
//
// Decode is encoding/json's Unmarshal with those ambiguities refused:
//
//   - a key that appears twice in one object, at any depth (also inside
//     maps, interface values and fields that are skipped);
//   - a key that names a struct field only case-insensitively: a key must
//     equal the field's JSON name exactly;
//   - with RejectUnknownFields, a key that names no field at all;
//   - text that is not valid UTF-8: a string's raw bytes, or an escape of
//     half a surrogate pair (encoding/json reads both as U+FFFD, so two
//     different documents would be the same request).
//
// Everything else (types, numbers, null, unknown fields without the option,
// json.Unmarshaler and encoding.TextUnmarshaler) behaves as in
// encoding/json. Errors are *Error: they name the field and say what is
// wrong, but never repeat a value, so they can be shown to the sender and
// logged without leaking what the document held.
//
// A request event's data, which producers may extend with fields of their
// own, is decoded without options; an error becomes a validation error:
//
//	var req events.ChargeRequested
//	if err := strictjson.Decode(data, &req); err != nil {
//		var se *strictjson.Error
//		if errors.As(err, &se) && se.Field != "" {
//			return &payflow.ValidationError{Field: se.Field, Reason: se.Reason}
//		}
//		return &payflow.ValidationError{Field: "data", Reason: "is not a JSON object"}
//	}
//
// An API body must hold known fields only:
//
//	err := strictjson.Decode(body, &v, strictjson.RejectUnknownFields())
package strictjson

import (
	"bytes"
	"encoding"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"unicode"
	"unicode/utf8"
)

// The kinds of Error; test them with errors.Is.
var (
	// ErrSyntax: the document is not exactly one JSON value (empty,
	// truncated, malformed, nested too deeply, or followed by more).
	ErrSyntax = errors.New("not valid JSON")
	// ErrDuplicateKey: an object holds a key twice.
	ErrDuplicateKey = errors.New("duplicate key")
	// ErrCaseMismatch: a key equals a field's name only case-insensitively.
	ErrCaseMismatch = errors.New("key differs from the field name in case")
	// ErrUnknownField: a key names no field (only with RejectUnknownFields).
	ErrUnknownField = errors.New("unknown field")
	// ErrType: a value has the wrong JSON type for its field, or a number
	// does not fit it.
	ErrType = errors.New("wrong type")
	// ErrValue: a value of the right JSON type that its field's own
	// decoding refused (a time that is not RFC 3339, for instance).
	ErrValue = errors.New("invalid value")
	// ErrText: the document holds text that is not valid UTF-8.
	ErrText = errors.New("invalid text")
)

// Error says which field of a document is wrong and why. It never holds a
// value from the document. Its Field and Reason read as a sentence: Field
// "customer.phone", Reason "appears more than once".
type Error struct {
	// Field is the path of the offending key or value: JSON names joined
	// with dots, array elements as [i] ("items[2].name"; a wrong type, as
	// encoding/json reports it, has no indices: "items.name"), an empty key
	// as "". It is empty when the document as a whole is wrong (not JSON,
	// not an object).
	Field string
	// Reason says what is wrong, starting with a verb: "appears more than
	// once", "must be a string", "is not valid JSON (at byte 17)".
	Reason string

	kind error
}

func (e *Error) Error() string {
	if e.Field == "" {
		return "the document " + e.Reason
	}
	return e.Field + ": " + e.Reason
}

// Unwrap returns the kind of error: ErrSyntax, ErrDuplicateKey,
// ErrCaseMismatch, ErrUnknownField, ErrType, ErrValue or ErrText.
func (e *Error) Unwrap() error { return e.kind }

// Option changes what Decode accepts.
type Option func(*config)

type config struct {
	rejectUnknown bool
	lenientText   bool
}

// RejectUnknownFields makes a key that names no field of the target struct
// an error (ErrUnknownField), like json.Decoder.DisallowUnknownFields.
// Without it such keys are skipped, as encoding/json does, though their
// values are still checked for duplicate keys.
func RejectUnknownFields() Option { return func(c *config) { c.rejectUnknown = true } }

// ReplaceInvalidText reads text that is not valid UTF-8 as encoding/json
// does, as U+FFFD, instead of refusing the document (ErrText): for a
// document that is only a hint, whose fields payflow checks elsewhere (a
// PG's unsigned callback, which a stray byte in a field payflow ignores
// should not make unreadable).
func ReplaceInvalidText() Option { return func(c *config) { c.lenientText = true } }

// maxDepth is encoding/json's nesting limit.
const maxDepth = 10000

// Decode decodes the one JSON value in data into v, which must be a
// non-nil pointer, refusing what the package comment lists. Any error it
// returns other than for an invalid v is an *Error. On an error v may be
// partly written; do not use it.
func Decode(data []byte, v any, opts ...Option) error {
	var c config
	for _, o := range opts {
		o(&c)
	}
	rv := reflect.ValueOf(v)
	if rv.Kind() != reflect.Pointer || rv.IsNil() {
		return &json.InvalidUnmarshalError{Type: reflect.TypeOf(v)}
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return &Error{Reason: "is empty", kind: ErrSyntax}
	}
	// First walk the document: keys and duplicates (and for a document
	// that is not valid JSON, where it goes wrong), without writing v.
	if err := walk(data, rv.Type().Elem(), c); err != nil {
		return err
	}
	if at := badText(data); at >= 0 && !c.lenientText {
		return &Error{Reason: "holds text that is not valid UTF-8 (at byte " + strconv.Itoa(at) + ")", kind: ErrText}
	}
	// Then let encoding/json decode what is now unambiguous.
	dec := json.NewDecoder(bytes.NewReader(data))
	if c.rejectUnknown {
		dec.DisallowUnknownFields()
	}
	if err := dec.Decode(v); err != nil {
		return decodeError(err)
	}
	return nil
}

// badText returns the offset of the first byte of data that is not valid
// UTF-8, or of the first escape of half a surrogate pair (\ud800 alone),
// or -1. Outside strings a valid document holds ASCII only, so the bytes
// need no parsing, only the escapes.
func badText(data []byte) int {
	for i := 0; i < len(data); {
		switch c := data[i]; {
		case c == '\\' && i+1 < len(data) && data[i+1] == 'u':
			r := hex4(data, i+2)
			switch {
			case r >= 0xDC00 && r <= 0xDFFF: // a low half alone
				return i
			case r >= 0xD800 && r <= 0xDBFF:
				if i+12 <= len(data) && data[i+6] == '\\' && data[i+7] == 'u' {
					if lo := hex4(data, i+8); lo >= 0xDC00 && lo <= 0xDFFF {
						i += 12
						continue
					}
				}
				return i // a high half without its low one
			}
			i += 2
		case c == '\\':
			i += 2 // an escape of one character: \\ or \" among them
		case c < utf8.RuneSelf:
			i++
		default:
			r, size := utf8.DecodeRune(data[i:])
			if r == utf8.RuneError && size == 1 {
				return i
			}
			i += size
		}
	}
	return -1
}

// hex4 is the value of the four hex digits at data[i:], or -1.
func hex4(data []byte, i int) rune {
	if i+4 > len(data) {
		return -1
	}
	var r rune
	for _, c := range data[i : i+4] {
		switch {
		case '0' <= c && c <= '9':
			r = r<<4 | rune(c-'0')
		case 'a' <= c && c <= 'f':
			r = r<<4 | rune(c-'a'+10)
		case 'A' <= c && c <= 'F':
			r = r<<4 | rune(c-'A'+10)
		default:
			return -1
		}
	}
	return r
}

// walk finds the first of the errors the package comment lists in data,
// which is to be decoded into a t. A valid document is scanned over its
// bytes; any other is walked token by token, whose errors say where it
// stops being JSON. Both find the same first error in a valid document
// (FuzzScanAgreesWithWalk).
func walk(data []byte, t reflect.Type, c config) error {
	if json.Valid(data) {
		s := &scanner{data: data, cfg: c}
		return s.value(t, "")
	}
	return walkTokens(data, t, c)
}

// walkTokens walks data token by token.
func walkTokens(data []byte, t reflect.Type, c config) error {
	w := &walker{dec: newDecoder(data), cfg: c}
	if err := w.value(t, ""); err != nil {
		return err
	}
	if _, err := w.dec.Token(); err != io.EOF {
		if err != nil {
			return syntaxError(err)
		}
		return &Error{Reason: "holds more than one JSON value", kind: ErrSyntax}
	}
	return nil
}

func newDecoder(data []byte) *json.Decoder {
	dec := json.NewDecoder(bytes.NewReader(data))
	// Numbers stay text: a walk must not fail on one that overflows a
	// float64 where the target is a json.Number or skipped.
	dec.UseNumber()
	return dec
}

type walker struct {
	dec   *json.Decoder
	cfg   config
	depth int
}

var (
	jsonUnmarshaler = reflect.TypeFor[json.Unmarshaler]()
	textUnmarshaler = reflect.TypeFor[encoding.TextUnmarshaler]()
)

// value walks the next value, which is to be decoded into a t (nil: into
// nothing in particular, so only its syntax and duplicate keys matter).
func (w *walker) value(t reflect.Type, path string) error {
	t, custom := target(t)
	if custom {
		return w.custom(t, path)
	}
	tok, err := w.dec.Token()
	if err != nil {
		return syntaxError(err)
	}
	switch tok {
	case json.Delim('{'):
		return w.object(t, path)
	case json.Delim('['):
		return w.array(t, path)
	}
	return nil // a literal: its type is encoding/json's to check
}

func (w *walker) enter() error {
	if w.depth++; w.depth > maxDepth {
		return &Error{Reason: "is nested too deeply", kind: ErrSyntax}
	}
	return nil
}

func (w *walker) object(t reflect.Type, path string) error {
	if err := w.enter(); err != nil {
		return err
	}
	o := w.cfg.object(t, path)
	for w.dec.More() {
		tok, err := w.dec.Token()
		if err != nil {
			return syntaxError(err)
		}
		key, _ := tok.(string) // the decoder allows only strings here
		child, err := o.member(key)
		if err != nil {
			return err
		}
		if err := w.value(child, join(path, key)); err != nil {
			return err
		}
	}
	if _, err := w.dec.Token(); err != nil { // '}'
		return syntaxError(err)
	}
	w.depth--
	return nil
}

func (w *walker) array(t reflect.Type, path string) error {
	if err := w.enter(); err != nil {
		return err
	}
	elem := element(t)
	for i := 0; w.dec.More(); i++ {
		if err := w.value(elem, path+"["+strconv.Itoa(i)+"]"); err != nil {
			return err
		}
	}
	if _, err := w.dec.Token(); err != nil { // ']'
		return syntaxError(err)
	}
	w.depth--
	return nil
}

// target is the type a value decodes into once pointers are followed, and
// whether that type decodes itself (json.Unmarshaler,
// encoding.TextUnmarshaler). nil: into nothing in particular.
func target(t reflect.Type) (reflect.Type, bool) {
	for t != nil && t.Kind() != reflect.Interface {
		if t.Implements(jsonUnmarshaler) || reflect.PointerTo(t).Implements(jsonUnmarshaler) ||
			t.Implements(textUnmarshaler) || reflect.PointerTo(t).Implements(textUnmarshaler) {
			return t, true
		}
		if t.Kind() != reflect.Pointer {
			break
		}
		t = t.Elem()
	}
	return t, false
}

// element is the type of an array's elements when it decodes into a t.
func element(t reflect.Type) reflect.Type {
	if t != nil && (t.Kind() == reflect.Slice || t.Kind() == reflect.Array) {
		return t.Elem()
	}
	return nil
}

// objectKeys judges the keys of one object, in order, as both walks read
// them.
type objectKeys struct {
	cfg    config
	path   string
	fields *structFields // into a struct
	elem   reflect.Type  // into a map
	seen   map[string]bool
}

func (c config) object(t reflect.Type, path string) objectKeys {
	o := objectKeys{cfg: c, path: path}
	if t != nil {
		switch t.Kind() {
		case reflect.Struct:
			o.fields = cachedFields(t)
		case reflect.Map:
			o.elem = t.Elem()
		}
	}
	return o
}

// member judges the object's next key: the error it makes, or the type its
// value decodes into (nil: nothing in particular).
func (o *objectKeys) member(key string) (reflect.Type, error) {
	if o.seen[key] {
		return nil, &Error{Field: join(o.path, key), Reason: "appears more than once", kind: ErrDuplicateKey}
	}
	if o.seen == nil {
		o.seen = make(map[string]bool, 8)
	}
	o.seen[key] = true
	if o.fields == nil {
		return o.elem, nil
	}
	f, exact := o.fields.exact[key]
	switch {
	case exact && f.quoted:
		return nil, nil // a number or bool in a string: encoding/json's to check
	case exact:
		return f.typ, nil
	}
	if f, ok := o.fields.folded[foldName(key)]; ok {
		return nil, &Error{Field: join(o.path, f.name), Reason: "is spelled with other letter case; keys must match field names exactly",
			kind: ErrCaseMismatch}
	}
	if o.cfg.rejectUnknown {
		return nil, &Error{Field: join(o.path, key), Reason: "is not a known field", kind: ErrUnknownField}
	}
	return nil, nil
}

// custom walks a value that decodes itself (json.Unmarshaler,
// encoding.TextUnmarshaler): its keys are its own business, but its
// duplicates are not, and its errors must name the field, which
// encoding/json does not do for them.
func (w *walker) custom(t reflect.Type, path string) error {
	var raw json.RawMessage
	if err := w.dec.Decode(&raw); err != nil {
		return syntaxError(err)
	}
	inner := &walker{dec: newDecoder(raw), cfg: w.cfg, depth: w.depth}
	if err := inner.value(nil, path); err != nil {
		return err
	}
	return decodeCustom(raw, t, path)
}

// decodeCustom lets a t decode raw, a value it decodes itself, to find the
// error encoding/json would report for it without naming the field. raw
// may be a window on the caller's document: an Unmarshaler must not write
// to its input (json.Unmarshaler's contract), and none of payflow's does.
func decodeCustom(raw []byte, t reflect.Type, path string) error {
	if string(raw) == "null" {
		return nil // a pointer field takes null without asking its type
	}
	if err := json.Unmarshal(raw, reflect.New(t).Interface()); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return &Error{Field: path, Reason: typeReason(te.Type), kind: ErrType}
		}
		return &Error{Field: path, Reason: "has an invalid value", kind: ErrValue}
	}
	return nil
}

// maxKeyInPath bounds how much of a key that is not a field name an error
// repeats.
const maxKeyInPath = 64

func join(path, key string) string {
	switch {
	case key == "":
		key = `""` // an empty Field means the whole document
	case len(key) > maxKeyInPath:
		cut := maxKeyInPath
		for cut > 0 && !utf8.RuneStart(key[cut]) {
			cut--
		}
		key = key[:cut] + "…"
	}
	if path == "" {
		return key
	}
	return path + "." + key
}

func syntaxError(err error) error {
	var syn *json.SyntaxError
	switch {
	case errors.As(err, &syn):
		// Its message quotes the offending character: only the offset.
		return &Error{Reason: fmt.Sprintf("is not valid JSON (at byte %d)", syn.Offset), kind: ErrSyntax}
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		// Decode has refused an empty document: this one ends early.
		return &Error{Reason: "is truncated", kind: ErrSyntax}
	}
	return &Error{Reason: "is not valid JSON", kind: ErrSyntax}
}

// decodeError translates what encoding/json reports after the walk, which
// leaves only type errors and the errors of custom decoders to report.
func decodeError(err error) error {
	var te *json.UnmarshalTypeError
	var inv *json.InvalidUnmarshalError
	switch {
	case errors.As(err, &te):
		return &Error{Field: te.Field, Reason: typeReason(te.Type), kind: ErrType}
	case errors.As(err, &inv):
		return err
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		// The walk refuses these first; kept for safety, without the key.
		return &Error{Reason: "has an unknown field", kind: ErrUnknownField}
	}
	var syn *json.SyntaxError
	if errors.As(err, &syn) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		return syntaxError(err)
	}
	return &Error{Reason: "has an invalid value", kind: ErrValue}
}

func typeReason(t reflect.Type) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.Bool:
		return "must be true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return "must be a whole number in range"
	case reflect.Float32, reflect.Float64:
		return "must be a number in range"
	case reflect.String:
		return "must be a string"
	case reflect.Struct, reflect.Map:
		return "must be a JSON object"
	case reflect.Slice:
		if t.Elem().Kind() == reflect.Uint8 {
			return "must be a base64 string"
		}
		return "must be a JSON array"
	case reflect.Array:
		return "must be a JSON array"
	}
	return "has the wrong type"
}

// structFields are the JSON names of a struct's fields as encoding/json
// resolves them (embedded structs, tags, dominance).
type structFields struct {
	exact  map[string]field
	folded map[string]field // by foldName; the first field wins, as in encoding/json
}

type field struct {
	name   string
	typ    reflect.Type
	quoted bool // ",string"
	tagged bool
	index  []int
}

var fieldCache sync.Map // reflect.Type → *structFields

func cachedFields(t reflect.Type) *structFields {
	if f, ok := fieldCache.Load(t); ok {
		return f.(*structFields)
	}
	f, _ := fieldCache.LoadOrStore(t, typeFields(t))
	return f.(*structFields)
}

// typeFields follows encoding/json's typeFields: breadth first through
// embedded structs; of the fields that share a name the shallowest wins,
// a tagged one before an untagged one at the same depth, and a tie hides
// them all.
func typeFields(t reflect.Type) *structFields {
	type queued struct {
		typ   reflect.Type
		index []int
	}
	var all []field
	next := []queued{{typ: t}}
	var count, nextCount map[reflect.Type]int
	visited := map[reflect.Type]bool{}
	for len(next) > 0 {
		current := next
		next = nil
		count, nextCount = nextCount, map[reflect.Type]int{}
		for _, q := range current {
			if visited[q.typ] {
				continue
			}
			visited[q.typ] = true
			for i := 0; i < q.typ.NumField(); i++ {
				sf := q.typ.Field(i)
				if sf.Anonymous {
					et := sf.Type
					if et.Kind() == reflect.Pointer {
						et = et.Elem()
					}
					if !sf.IsExported() && et.Kind() != reflect.Struct {
						continue
					}
				} else if !sf.IsExported() {
					continue
				}
				tag := sf.Tag.Get("json")
				if tag == "-" {
					continue
				}
				name, opts, _ := strings.Cut(tag, ",")
				if !validTag(name) {
					name = ""
				}
				index := append(append([]int(nil), q.index...), i)
				ft := sf.Type
				if ft.Name() == "" && ft.Kind() == reflect.Pointer {
					ft = ft.Elem()
				}
				if name != "" || !sf.Anonymous || ft.Kind() != reflect.Struct {
					f := field{name: name, typ: sf.Type, tagged: name != "", index: index}
					if name == "" {
						f.name = sf.Name
					}
					if hasOption(opts, "string") {
						switch ft.Kind() {
						case reflect.Bool, reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
							reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr,
							reflect.Float32, reflect.Float64, reflect.String:
							f.quoted = true
						}
					}
					all = append(all, f)
					if count[q.typ] > 1 {
						// The same struct embedded twice at one level: its
						// fields hide each other.
						all = append(all, f)
					}
					continue
				}
				nextCount[ft]++
				if nextCount[ft] == 1 {
					next = append(next, queued{typ: ft, index: index})
				}
			}
		}
	}
	byName := map[string][]field{}
	var order []string
	for _, f := range all {
		if _, ok := byName[f.name]; !ok {
			order = append(order, f.name)
		}
		byName[f.name] = append(byName[f.name], f)
	}
	var kept []field
	for _, name := range order {
		fs := byName[name]
		best, tie := fs[0], false
		for _, f := range fs[1:] {
			switch {
			case len(f.index) < len(best.index) || (len(f.index) == len(best.index) && f.tagged && !best.tagged):
				best, tie = f, false
			case len(f.index) == len(best.index) && f.tagged == best.tagged:
				tie = true
			}
		}
		if !tie {
			kept = append(kept, best)
		}
	}
	// encoding/json gives a folded name to the first field in index order.
	sortByIndex(kept)
	sf := &structFields{exact: map[string]field{}, folded: map[string]field{}}
	for _, f := range kept {
		sf.exact[f.name] = f
		if _, ok := sf.folded[foldName(f.name)]; !ok {
			sf.folded[foldName(f.name)] = f
		}
	}
	return sf
}

func sortByIndex(fs []field) {
	for i := 1; i < len(fs); i++ {
		for j := i; j > 0 && lessIndex(fs[j].index, fs[j-1].index); j-- {
			fs[j], fs[j-1] = fs[j-1], fs[j]
		}
	}
}

func lessIndex(a, b []int) bool {
	for i := 0; i < len(a) && i < len(b); i++ {
		if a[i] != b[i] {
			return a[i] < b[i]
		}
	}
	return len(a) < len(b)
}

func hasOption(opts, name string) bool {
	for opts != "" {
		var o string
		o, opts, _ = strings.Cut(opts, ",")
		if o == name {
			return true
		}
	}
	return false
}

// validTag is encoding/json's rule for a usable tag name.
func validTag(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		switch {
		case strings.ContainsRune("!#$%&()*+-./:;<=>?@[]^_{|}~ ", c):
		case !unicode.IsLetter(c) && !unicode.IsDigit(c):
			return false
		}
	}
	return true
}

// foldName is encoding/json's case folding of keys: two keys match a
// field alike if their foldNames are equal.
func foldName(s string) string {
	var b strings.Builder
	for _, r := range s {
		if r < utf8.RuneSelf {
			if 'a' <= r && r <= 'z' {
				r -= 'a' - 'A'
			}
			b.WriteRune(r)
			continue
		}
		for {
			r2 := unicode.SimpleFold(r)
			if r2 <= r {
				r = r2
				break
			}
			r = r2
		}
		b.WriteRune(r)
	}
	return b.String()
}

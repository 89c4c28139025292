package events

import (
	"bytes"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"path"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/santhosh-tekuri/jsonschema/v6/kind"

	"github.com/payflow/payflow/internal/mutation"
)

// The JSON Schemas (draft-07) of every event's data, the ones events/asyncapi.yaml
// refers to. Requests' data is validated against them before anything
// else reads it (ValidateData); tests hold every event payflow emits to
// them.
//
//go:embed schemas/*.json
var schemaFS embed.FS

// DataSchemas names the schema file (in events/schemas) of each event
// type's data.
var DataSchemas = map[string]string{
	TypeChargeRequested: "charge-requested.json",
	TypeRefundRequested: "refund-requested.json",
	TypeRepayRequested:  "repay-requested.json",
	TypeCancelRequested: "bill-cancel-requested.json",
	TypeChargeProcessed: "charge-processed.json",
	TypeChargeFailed:    "charge-failed.json",
	TypeSettled:         "settled.json",
	TypeRefundSucceeded: "refund-succeeded.json",
	TypeRefundFailed:    "refund-failed.json",
	TypeRepayProcessed:  "repay-processed.json",
	TypeBillCancelled:   "bill-cancelled.json",
	TypeRejected:        "request-rejected.json",
}

// DeadLetterHeadersSchema is the schema file of a dead letter's headers.
const DeadLetterHeadersSchema = "dlq-headers.json"

// SchemaBase is the URL the schema files are known under; they refer to
// each other relative to it. Nothing is ever loaded from it.
const SchemaBase = "file:///payflow/events/schemas/"

// compiled are the schemas, compiled once.
type compiled struct {
	byFile map[string]*jsonschema.Schema
	// rules are the descriptions of the (sub)schemas that carry a pattern
	// or a not, by location: a rule's own words, used as the message when
	// the rule is broken (the value itself is never repeated).
	rules map[string]string
}

var schemas = sync.OnceValues(func() (*compiled, error) {
	c := NewSchemaCompiler()
	if err := AddSchemaFiles(c, SchemaBase, schemaFS, "schemas"); err != nil {
		return nil, err
	}
	out := &compiled{byFile: map[string]*jsonschema.Schema{}, rules: map[string]string{}}
	files := []string{DeadLetterHeadersSchema, RequestEnvelopeSchema, ResultEnvelopeSchema}
	for _, f := range DataSchemas {
		files = append(files, f)
	}
	for _, f := range files {
		s, err := c.Compile(SchemaBase + f)
		if err != nil {
			return nil, fmt.Errorf("events: schema %s: %w", f, err)
		}
		out.byFile[f] = s
		collectRules(s, out.rules, map[*jsonschema.Schema]bool{})
	}
	return out, nil
})

// NewSchemaCompiler returns a compiler that reads draft-07 and loads
// nothing by itself: every document it may refer to is added beforehand.
func NewSchemaCompiler() *jsonschema.Compiler {
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft7)
	c.UseLoader(jsonschema.SchemeURLLoader{})
	return c
}

// AddSchemaFiles adds every .json file of dir in fsys to c, under base.
func AddSchemaFiles(c *jsonschema.Compiler, base string, fsys fs.FS, dir string) error {
	entries, err := fs.ReadDir(fsys, dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if path.Ext(e.Name()) != ".json" {
			continue
		}
		b, err := fs.ReadFile(fsys, path.Join(dir, e.Name()))
		if err != nil {
			return err
		}
		doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
		if err != nil {
			return fmt.Errorf("events: schema %s: %w", e.Name(), err)
		}
		if err := c.AddResource(base+e.Name(), doc); err != nil {
			return err
		}
	}
	return nil
}

func collectRules(s *jsonschema.Schema, rules map[string]string, seen map[*jsonschema.Schema]bool) {
	if s == nil || seen[s] {
		return
	}
	seen[s] = true
	if (s.Pattern != nil || s.Not != nil) && s.Description != "" {
		rules[s.Location] = s.Description
	}
	collectRules(s.Ref, rules, seen)
	collectRules(s.Not, rules, seen)
	for _, sub := range slices.Concat(s.AllOf, s.AnyOf, s.OneOf) {
		collectRules(sub, rules, seen)
	}
	for _, sub := range s.Properties {
		collectRules(sub, rules, seen)
	}
	if sub, ok := s.AdditionalProperties.(*jsonschema.Schema); ok {
		collectRules(sub, rules, seen)
	}
}

// DataSchema returns the compiled schema of an event type's data, nil for
// a type without one.
func DataSchema(typ string) *jsonschema.Schema {
	c, err := schemas()
	if err != nil {
		panic(err) // embedded at build time; TestSchemasCompile
	}
	return c.byFile[DataSchemas[typ]]
}

// ValidateData holds an event's data to its type's schema. It returns nil
// when the data is valid (or the type has no schema), else a *SchemaError
// naming each field at fault and the rule it breaks.
//
// A rejection quotes the schema's own rule when the data breaks one. The
// worker asks the schema only about data its own checks (strict decoding,
// the money rules) refuse: the schemas refuse nothing those accept, which
// the worker's FuzzSchemaRefusesNothingTheChecksAccept holds.
func ValidateData(typ string, data []byte) error {
	s := DataSchema(typ)
	if s == nil {
		return nil
	}
	if typ == TypeRefundRequested && mutation.On("repay-prefix") {
		// The bug put back drops the rule from the schema as well.
		data = bytes.ReplaceAll(data, []byte(`"repay:`), []byte(`"repay-`))
	}
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(data))
	if err != nil {
		return &SchemaError{Violations: []Violation{{Field: "data", Reason: "is not JSON"}}}
	}
	return Explain(s.Validate(v))
}

// validateValue is ValidateData for data already parsed.
func validateValue(typ string, v any) error {
	s := DataSchema(typ)
	if s == nil {
		return nil
	}
	return Explain(s.Validate(v))
}

// SchemaError says how a document breaks its schema.
type SchemaError struct {
	Violations []Violation
}

// Violation is one broken rule: Field is the path of the value at fault
// (JSON names joined with dots, "data" for the document itself), Reason
// the rule, in words taken from the schema. Neither quotes the value: a
// rejection is published and logged, and the value may be a phone number.
type Violation struct {
	Field  string
	Reason string
}

func (e *SchemaError) Error() string {
	parts := make([]string, len(e.Violations))
	for i, v := range e.Violations {
		parts[i] = v.Field + ": " + v.Reason
	}
	return strings.Join(parts, "; ")
}

// Explain turns a validation error of this package's schemas into a
// *SchemaError (nil stays nil; an error that is not a validation error is
// returned as it is). Each field is named once, with the first rule it
// breaks, in field order.
func Explain(err error) error {
	if err == nil {
		return nil
	}
	var ve *jsonschema.ValidationError
	if !errors.As(err, &ve) {
		return err
	}
	c, cerr := schemas()
	if cerr != nil {
		return cerr
	}
	var vs []Violation
	leaves(ve, func(e *jsonschema.ValidationError) {
		vs = append(vs, c.explain(e)...)
	})
	slices.SortStableFunc(vs, func(a, b Violation) int { return strings.Compare(a.Field, b.Field) })
	vs = slices.CompactFunc(vs, func(a, b Violation) bool { return a.Field == b.Field })
	if len(vs) == 0 {
		vs = []Violation{{Field: "data", Reason: "does not match its schema"}}
	}
	return &SchemaError{Violations: vs}
}

// leaves calls f for each error of the tree that has no causes: the rules
// actually broken, below the allOf, $ref and schema nodes that group them.
func leaves(e *jsonschema.ValidationError, f func(*jsonschema.ValidationError)) {
	if len(e.Causes) == 0 {
		f(e)
		return
	}
	for _, c := range e.Causes {
		leaves(c, f)
	}
}

func (c *compiled) explain(e *jsonschema.ValidationError) []Violation {
	field := fieldPath(e.InstanceLocation)
	one := func(reason string) []Violation { return []Violation{{Field: field, Reason: reason}} }
	switch k := e.ErrorKind.(type) {
	case *kind.Required:
		var vs []Violation
		for _, name := range k.Missing {
			vs = append(vs, Violation{Field: fieldPath(append(slices.Clone(e.InstanceLocation), name)), Reason: "is required"})
		}
		return vs
	case *kind.AdditionalProperties:
		var vs []Violation
		for _, name := range k.Properties {
			vs = append(vs, Violation{Field: fieldPath(append(slices.Clone(e.InstanceLocation), name)), Reason: "is not a field of this event"})
		}
		return vs
	case *kind.Type:
		return one(fmt.Sprintf("must be %s, not %s", strings.Join(k.Want, " or "), k.Got))
	case *kind.Minimum:
		return one("must be at least " + k.Want.RatString())
	case *kind.Maximum:
		return one("must be at most " + k.Want.RatString())
	case *kind.MinLength:
		if k.Want == 1 {
			return one("must not be empty")
		}
		return one(fmt.Sprintf("must be at least %d characters long", k.Want))
	case *kind.MaxLength:
		return one(fmt.Sprintf("is longer than %d characters", k.Want))
	case *kind.Const:
		return one("must be " + display(k.Want))
	case *kind.Enum:
		want := make([]string, len(k.Want))
		for i, w := range k.Want {
			want[i] = display(w)
		}
		return one("must be one of " + strings.Join(want, ", "))
	case *kind.Pattern:
		if rule := c.rules[e.SchemaURL]; rule != "" {
			return one(rule)
		}
		return one("must match the pattern " + k.Want)
	case *kind.Not:
		if rule := c.rules[e.SchemaURL]; rule != "" {
			return one(rule)
		}
	}
	return one("breaks the schema's " + strings.Join(e.ErrorKind.KeywordPath(), "/") + " rule")
}

// fieldPath renders an instance location as payflow's validation errors
// name fields: "customer.phone"; "data" for the document itself.
func fieldPath(loc []string) string {
	if len(loc) == 0 {
		return "data"
	}
	var b strings.Builder
	for i, tok := range loc {
		if _, err := strconv.Atoi(tok); err == nil {
			b.WriteString("[" + tok + "]")
			continue
		}
		if i > 0 {
			b.WriteByte('.')
		}
		b.WriteString(tok)
	}
	return b.String()
}

// display renders a value taken from a schema (a const or enum member).
func display(v any) string {
	switch v := v.(type) {
	case string:
		return v
	case json.Number:
		return v.String()
	case *big.Rat:
		return v.RatString()
	}
	b, _ := json.Marshal(v)
	return string(b)
}

// The envelopes' schema files.
const (
	RequestEnvelopeSchema = "request-event.json"
	ResultEnvelopeSchema  = "result-event.json"
)

// CheckResult holds an event payflow publishes (a message value of
// payment.events) to the contract: its envelope and its data, each to its
// schema. Tests use it on every event they see payflow produce.
func CheckResult(value []byte) error { return checkEvent(ResultEnvelopeSchema, value) }

// CheckRequest holds a request in JSON structured mode to the contract,
// as CheckResult does a result.
func CheckRequest(value []byte) error { return checkEvent(RequestEnvelopeSchema, value) }

func checkEvent(envelope string, value []byte) error {
	c, err := schemas()
	if err != nil {
		return err
	}
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(value))
	if err != nil {
		return fmt.Errorf("not JSON: %w", err)
	}
	if err := Explain(c.byFile[envelope].Validate(v)); err != nil {
		return fmt.Errorf("envelope: %w", err)
	}
	ev := v.(map[string]any) // the envelope schema requires an object
	typ, _ := ev["type"].(string)
	if err := validateValue(typ, ev["data"]); err != nil {
		return fmt.Errorf("%s data: %w", typ, err)
	}
	return nil
}

// CheckDeadLetterHeaders holds a dead letter's headers to the contract.
func CheckDeadLetterHeaders(headers map[string]string) error {
	c, err := schemas()
	if err != nil {
		return err
	}
	doc := make(map[string]any, len(headers))
	for k, v := range headers {
		doc[k] = v
	}
	return Explain(c.byFile[DeadLetterHeadersSchema].Validate(doc))
}
